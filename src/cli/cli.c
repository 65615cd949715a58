/* The command-line client: command dispatch, usage texts and option parsing. The commands
 * themselves live in cli_ingest.c and cli_query.c; see docs/internals/cli.md. */
#include "cli/cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_int.h"

typedef struct {
    const char *name;
    unsigned opts;
    const char *usage;
    int (*run)(const cli_opts *o);
    size_t min_args, max_args; /* positionals */
} cli_command;

static int cli_cmd_version(const cli_opts *o)
{
    printf("ragd %s\n", RAGD_VERSION);
    return CLI_EXIT_OK;
}

static const cli_command commands[] = {
    {"ingest", CLI_OPT_URL | CLI_OPT_DB | CLI_OPT_BATCH,
     "usage: ragd ingest PATH... [--db NAME] [--url URL] [--batch N]\n"
     "\n"
     "Send files and whole folders to a running ragd. Folders are walked recursively,\n"
     "skipping dot entries and symbolic links to folders. Ingested extensions: .txt .text\n"
     ".md .markdown .html .htm; other files are skipped and counted, as are files over\n"
     "10 MiB and files that are not UTF-8. A document's id is its path relative to the\n"
     "argument it was found under (the file name for a file argument).\n"
     "\n"
     "  --db NAME   collection (default: the server's default collection)\n"
     "  --url URL   server (default: $RAGD_URL, else " CLI_DEFAULT_URL ")\n"
     "  --batch N   files per request, 1..10000 (default 32; a request also stops at ~4 MiB)\n",
     cli_cmd_ingest, 1, SIZE_MAX},
    {"query", CLI_OPT_URL | CLI_OPT_DB | CLI_OPT_K | CLI_OPT_METHOD | CLI_OPT_STREAM | CLI_OPT_JSON,
     "usage: ragd query \"QUESTION\" [--db NAME] [--k N] [--method M] [--stream] [--url URL] "
     "[--json]\n"
     "\n"
     "Ask a question; print the answer, then its sources.\n"
     "\n"
     "  --db NAME   collection (default: the server's default collection)\n"
     "  --k N       passages to retrieve, 1..100 (default 5)\n"
     "  --method M  hybrid (default), vector or keyword\n"
     "  --stream    print the answer as it is generated\n"
     "  --json      print the server's raw JSON response (not with --stream)\n"
     "  --url URL   server (default: $RAGD_URL, else " CLI_DEFAULT_URL ")\n",
     cli_cmd_query, 1, SIZE_MAX},
    {"dbs", CLI_OPT_URL | CLI_OPT_JSON,
     "usage: ragd dbs [--url URL] [--json]\n"
     "\n"
     "List the collections: NAME DOCUMENTS CHUNKS EMBED_MODEL.\n"
     "\n"
     "  --json      print the server's raw JSON response\n"
     "  --url URL   server (default: $RAGD_URL, else " CLI_DEFAULT_URL ")\n",
     cli_cmd_dbs, 0, 0},
    {"health", CLI_OPT_URL,
     "usage: ragd health [--url URL]\n"
     "\n"
     "Print the server's health. Exit status: 0 healthy, 1 degraded or unhealthy,\n"
     "2 unreachable.\n"
     "\n"
     "  --url URL   server (default: $RAGD_URL, else " CLI_DEFAULT_URL ")\n",
     cli_cmd_health, 0, 0},
    {"reembed", CLI_OPT_URL | CLI_OPT_REEMBED,
     "usage: ragd reembed DB --embedder E [--model M] [--wait] [--url URL]\n"
     "       ragd reembed DB --status [--url URL]\n"
     "\n"
     "Re-embed collection DB with another embedder, in the background: queries keep using\n"
     "the old vectors until every chunk has a new one, then the new ones replace them at once.\n"
     "Cancel with DELETE /api/dbs/DB/reembed.\n"
     "\n"
     "  --embedder E  builtin, or the server's upstream embedder (ollama or openai)\n"
     "  --model M     the embedding model (default: the server's EMBED_MODEL)\n"
     "  --wait        follow the progress until the job is done (exit 0) or failed (exit 1)\n"
     "  --status      print the collection's job: state, embedder, model, done/total\n"
     "  --url URL     server (default: $RAGD_URL, else " CLI_DEFAULT_URL ")\n",
     cli_cmd_reembed, 1, 1},
    {"version", 0, "usage: ragd version\n\nPrint the version.\n", cli_cmd_version, 0, 0},
};

void cli_usage(FILE *f)
{
    fputs("usage: ragd COMMAND [OPTIONS]\n"
          "\n"
          "commands:\n"
          "  serve [--listen HOST:PORT] [--data DIR]     run the server\n"
          "  ingest PATH... [--db NAME] [--url URL]      send files or folders to a server\n"
          "  query \"QUESTION\" [--db NAME] [--k N] [--stream] [--url URL]\n"
          "                                              ask; print the answer and sources\n"
          "  dbs [--url URL]                             list collections\n"
          "  health [--url URL]                          print the server's health\n"
          "  reembed DB --embedder E [--model M] [--wait]\n"
          "                                              re-embed a collection in the background\n"
          "  version                                     print the version\n"
          "\n"
          "`ragd COMMAND --help` describes a command. --url defaults to $RAGD_URL, else\n" CLI_DEFAULT_URL
          ".\n",
          f);
}

/* ---- options ---- */

typedef struct {
    const char *name; /* without the leading "--" */
    unsigned bit;
    bool takes_value;
} cli_option;

static const cli_option options[] = {
    {"url", CLI_OPT_URL, true},       {"db", CLI_OPT_DB, true},
    {"k", CLI_OPT_K, true},           {"top-k", CLI_OPT_K, true},
    {"method", CLI_OPT_METHOD, true}, {"stream", CLI_OPT_STREAM, false},
    {"json", CLI_OPT_JSON, false},    {"batch", CLI_OPT_BATCH, true},
    {"embedder", CLI_OPT_REEMBED, true}, {"model", CLI_OPT_REEMBED, true},
    {"wait", CLI_OPT_REEMBED, false},    {"status", CLI_OPT_REEMBED, false},
};

/* Parses a decimal integer in [lo, hi] with nothing around it. */
static bool cli_parse_int(const char *s, long lo, long hi, int *out)
{
    if (!*s || *s == ' ' || *s == '+')
        return false;
    errno = 0;
    char *end = NULL;
    long v = strtol(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = (int)v;
    return true;
}

bool cli_valid_db_name(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64 || s[0] == '.')
        return false;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                  c == '_' || c == '.' || c == '-';
        if (!ok)
            return false;
    }
    return true;
}

static ragd_err cli_set_opt(const cli_option *opt, const char *val, cli_opts *o, char *err,
                            size_t errlen)
{
    switch (opt->bit) {
    case CLI_OPT_URL:
        if (strncmp(val, "http://", 7) != 0 && strncmp(val, "https://", 8) != 0) {
            snprintf(err, errlen, "--url: must start with http:// or https://");
            return RAGD_EINVAL;
        }
        o->url = val;
        break;
    case CLI_OPT_DB:
        if (!cli_valid_db_name(val)) {
            snprintf(err, errlen,
                     "--db: must be 1-64 of [A-Za-z0-9_.-], not starting with '.'");
            return RAGD_EINVAL;
        }
        o->db = val;
        break;
    case CLI_OPT_K:
        if (!cli_parse_int(val, 1, 100, &o->k)) {
            snprintf(err, errlen, "--%s: must be an integer from 1 to 100", opt->name);
            return RAGD_EINVAL;
        }
        break;
    case CLI_OPT_METHOD:
        if (strcmp(val, "hybrid") != 0 && strcmp(val, "vector") != 0 &&
            strcmp(val, "keyword") != 0) {
            snprintf(err, errlen, "--method: must be hybrid, vector or keyword");
            return RAGD_EINVAL;
        }
        o->method = val;
        break;
    case CLI_OPT_BATCH:
        if (!cli_parse_int(val, 1, 10000, &o->batch)) {
            snprintf(err, errlen, "--batch: must be an integer from 1 to 10000");
            return RAGD_EINVAL;
        }
        break;
    case CLI_OPT_STREAM:
        o->stream = true;
        break;
    case CLI_OPT_REEMBED: /* one bit for the four reembed options: told apart by name */
        if (strcmp(opt->name, "embedder") == 0)
            o->embedder = val;
        else if (strcmp(opt->name, "model") == 0)
            o->model = val;
        else if (strcmp(opt->name, "wait") == 0)
            o->wait = true;
        else
            o->status_only = true;
        break;
    case CLI_OPT_JSON:
        o->json = true;
        break;
    default:
        break;
    }
    return RAGD_OK;
}

ragd_err cli_parse_opts(int argc, char **argv, unsigned allowed, cli_opts *o, char *err,
                        size_t errlen)
{
    memset(o, 0, sizeof *o);
    o->batch = CLI_BATCH_FILES;
    const char *env = getenv("RAGD_URL");
    o->url = (env && *env) ? env : CLI_DEFAULT_URL;
    err[0] = '\0';
    o->args = calloc(argc > 0 ? (size_t)argc : 1, sizeof *o->args);
    if (!o->args)
        return RAGD_ENOMEM;

    bool only_positionals = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (only_positionals || a[0] != '-' || strcmp(a, "-") == 0) {
            o->args[o->nargs++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            only_positionals = true;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            o->help = true;
            continue;
        }
        if (strncmp(a, "--", 2) != 0) {
            snprintf(err, errlen, "unknown option '%s'", a);
            return RAGD_EINVAL;
        }
        const char *name = a + 2;
        const char *eq = strchr(name, '=');
        size_t nlen = eq ? (size_t)(eq - name) : strlen(name);
        const cli_option *opt = NULL;
        for (size_t j = 0; j < sizeof options / sizeof options[0]; j++) {
            if (strlen(options[j].name) == nlen && strncmp(options[j].name, name, nlen) == 0)
                opt = &options[j];
        }
        if (!opt || !(allowed & opt->bit)) {
            snprintf(err, errlen, "unknown option '--%.*s'", (int)(nlen > 64 ? 64 : nlen), name);
            return RAGD_EINVAL;
        }
        const char *val = NULL;
        if (opt->takes_value) {
            if (eq) {
                val = eq + 1;
            } else if (i + 1 < argc) {
                val = argv[++i];
            } else {
                snprintf(err, errlen, "option '--%s' needs a value", opt->name);
                return RAGD_EINVAL;
            }
        } else if (eq) {
            snprintf(err, errlen, "option '--%s' takes no value", opt->name);
            return RAGD_EINVAL;
        }
        ragd_err e = cli_set_opt(opt, val, o, err, errlen);
        if (e)
            return e;
    }
    if (o->stream && o->json) {
        snprintf(err, errlen, "--stream and --json cannot be combined");
        return RAGD_EINVAL;
    }
    return RAGD_OK;
}

void cli_opts_cleanup(cli_opts *o)
{
    free(o->args);
    o->args = NULL;
    o->nargs = 0;
}

/* ---- dispatch ---- */

int cli_main(int argc, char **argv)
{
    if (argc < 1 || !argv[0]) {
        cli_usage(stderr);
        return CLI_EXIT_USAGE;
    }
    if (strcmp(argv[0], "--help") == 0 || strcmp(argv[0], "-h") == 0 ||
        strcmp(argv[0], "help") == 0) {
        cli_usage(stdout);
        return CLI_EXIT_OK;
    }
    if (strcmp(argv[0], "--version") == 0)
        return cli_cmd_version(NULL);
    const cli_command *cmd = NULL;
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
        if (strcmp(commands[i].name, argv[0]) == 0)
            cmd = &commands[i];
    }
    if (!cmd) {
        fprintf(stderr, "ragd: unknown command '%s'\n", argv[0]);
        cli_usage(stderr);
        return CLI_EXIT_USAGE;
    }

    int status = CLI_EXIT_USAGE;
    char err[256];
    cli_opts o;
    ragd_err e = cli_parse_opts(argc, argv, cmd->opts, &o, err, sizeof err);
    if (e == RAGD_ENOMEM) {
        fprintf(stderr, "ragd: out of memory\n");
        status = CLI_EXIT_FAIL;
        goto out;
    }
    if (e) {
        fprintf(stderr, "ragd %s: %s\n%s", cmd->name, err, cmd->usage);
        goto out;
    }
    if (o.help) {
        fputs(cmd->usage, stdout);
        status = CLI_EXIT_OK;
        goto out;
    }
    if (o.nargs < cmd->min_args || o.nargs > cmd->max_args) {
        fprintf(stderr, "ragd %s: %s\n%s", cmd->name,
                o.nargs < cmd->min_args ? "missing argument" : "too many arguments", cmd->usage);
        goto out;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        fprintf(stderr, "ragd: cannot initialise libcurl\n");
        status = CLI_EXIT_FAIL;
        goto out;
    }
    status = cmd->run(&o);
    curl_global_cleanup();
out:
    cli_opts_cleanup(&o);
    return status;
}
