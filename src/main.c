/* ragd: argv and environment to a configuration, then run the server or a client
 * command. Nothing else lives here. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "config.h"
#include "server.h"
#include "text/extract.h"
#include "util/jsonmem.h"
#include "util/log.h"

static void main_serve_usage(FILE *f)
{
    fprintf(f, "usage: ragd serve [--listen HOST:PORT] [--data DIR]\n"
               "Runs the server. Configuration comes from the environment (see docs/configuration.md),\n"
               "overlaid by the KEY=VALUE file RAGD_CONFIG_FILE names, if any; a flag wins over both\n"
               "(RAGD_LISTEN, RAGD_DATA_DIR). SIGHUP re-reads the file and applies API keys, log level\n"
               "and format, rate limits and RAGD_MAX_BODY_BYTES; SIGTERM drains and stops.\n");
}

/* A configuration error, before the log is set up: as a JSON record when the environment
 * asks for JSON logs (a supervisor parsing them sees it too), else "ragd: message". */
static void main_config_error(const char *err)
{
    const char *format = getenv("RAGD_LOG_FORMAT");
    if (format && log_parse_format(format) == LOG_FORMAT_JSON) {
        log_set_format(LOG_FORMAT_JSON);
        log_error("ragd: %s", err);
        return;
    }
    fprintf(stderr, "ragd: %s\n", err);
}

static int main_serve(int argc, char **argv)
{
    ragd_config cfg;
    char err[512];
    if (config_from_env(&cfg, err, sizeof err) != 0) {
        main_config_error(err);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        const char *var = NULL;
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            main_serve_usage(stdout);
            return 0;
        }
        if (strcmp(argv[i], "--listen") == 0)
            var = "RAGD_LISTEN";
        else if (strcmp(argv[i], "--data") == 0)
            var = "RAGD_DATA_DIR";
        if (!var || i + 1 >= argc) {
            fprintf(stderr, var ? "ragd serve: %s needs a value\n" : "ragd serve: unknown option '%s'\n", argv[i]);
            main_serve_usage(stderr);
            return 2;
        }
        if (config_set(&cfg, var, argv[++i], err, sizeof err) != 0) {
            main_config_error(err);
            return 2;
        }
    }
    /* PDFs are read by this same binary in a child process (text/extract.h). */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n <= 0 || (size_t)n >= sizeof self - 1) {
        main_config_error("cannot find this program's own path (/proc/self/exe), needed to read PDFs");
        return 2;
    }
    self[n] = '\0';
    if (extract_configure(self, (int)cfg.extract_timeout_s) != RAGD_OK) {
        main_config_error("RAGD_EXTRACT_TIMEOUT_S: out of range");
        return 2;
    }
    return server_run(&cfg);
}

int main(int argc, char **argv)
{
    jsonmem_init(); /* before any jansson call: a failed allocation must not go unnoticed */
    /* A write past RLIMIT_FSIZE (`ulimit -f`) raises SIGXFSZ, whose default action kills the
     * process (with a core) in the middle of a transaction. Ignored, the write fails with
     * EFBIG instead, which the store answers as a full store (507, docs/internals/store.md).
     * Set here, not inherited: a parent that ignores it (Python does) would hide the problem. */
    signal(SIGXFSZ, SIG_IGN);
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || (strcmp(argv[1], "help") == 0 && argc == 2)) {
        cli_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "__extract-pdf") == 0) /* hidden: the server's PDF reader child */
        return extract_pdf_child_main(argc - 1, argv + 1);
    if (strcmp(argv[1], "serve") == 0)
        return main_serve(argc - 1, argv + 1);
    return cli_main(argc - 1, argv + 1);
}
