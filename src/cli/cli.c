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
    {"ingest", CLI_OPT_URL | CLI_OPT_DB | CLI_OPT_BATCH | CLI_OPT_INGEST,
     "usage: ragd ingest PATH... [--db NAME] [--id-prefix P] [--sync] [--watch] [--all]\n"
     "                  [--batch N] [--jobs N] [--url URL]\n"
     "\n"
     "Send files and whole folders to a running ragd. Folders are walked recursively,\n"
     "skipping dot entries and symbolic links to folders. A document's id is the file's path\n"
     "from the folder argument's parent (`ragd ingest a/ b/` gives a/manual.html and\n"
     "b/manual.html), or the file name for a file argument.\n"
     "\n"
     "Every file is sent: valid UTF-8 text (.txt .md .html .rst, no extension, any unknown\n"
     "extension) in JSON batches; the rest (PDF, DOCX, ODT, EPUB, .gz, text in another\n"
     "charset) one file per request as a raw body, for the server to read. A file the server\n"
     "refuses is reported and counted, and the others still go; the exit status is then 1.\n"
     "Skipped, with a count: files larger than the server's RAGD_MAX_BODY_BYTES (read from\n"
     "its /health), empty files, and types that are never documents (pictures, sound, video,\n"
     "archives such as .zip or .tar.gz, compiled code, fonts) unless --all.\n"
     "\n"
     "  --db NAME       collection (default: the server's default collection)\n"
     "  --id-prefix P   put P in front of every id (e.g. --id-prefix host1/)\n"
     "  --sync          make the collection match the files: send new and changed files\n"
     "                  (changed: other bytes), skip unchanged ones, and remove documents\n"
     "                  under the arguments' ids whose files are gone\n"
     "  --watch         --sync, then keep watching the folders (inotify) and sync again\n"
     "                  ~0.5 s after each burst of changes (a file the server refused is\n"
     "                  not sent again until it changes); Ctrl-C or SIGTERM ends it\n"
     "  --all           send pictures, archives and other non-document types too\n"
     "  --batch N       files per request, 1..10000 (default 32; a request also stops at ~4 MiB)\n"
     "  --jobs N        requests in flight at once, 1..8 (default 3): the server stores one\n"
     "                  batch while it reads and embeds the next; answers may come in any order\n"
     "  --url URL       server (default: $RAGD_URL, else " CLI_DEFAULT_URL ")\n",
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
    {"dbs", CLI_OPT_URL | CLI_OPT_JSON | CLI_OPT_EMBEDDER | CLI_OPT_CHUNKS | CLI_OPT_YES,
     "usage: ragd dbs [--json] [--url URL]\n"
     "       ragd dbs create NAME [--embedder E] [--chunk-size N] [--chunk-overlap N] [--url URL]\n"
     "       ragd dbs rm NAME [--yes] [--url URL]\n"
     "\n"
     "List the collections (NAME DOCUMENTS CHUNKS EMBED_MODEL), create one, or delete one\n"
     "with all its documents.\n"
     "\n"
     "  --json             print the server's raw JSON response (listing)\n"
     "  --embedder E       create: the embedder, builtin (the only one a new collection\n"
     "                     takes in this build; the default)\n"
     "  --chunk-size N     create: characters per chunk, 100..8000 (default RAGD_CHUNK_SIZE)\n"
     "  --chunk-overlap N  create: characters shared by neighbouring chunks, less than half\n"
     "                     the chunk size (default RAGD_CHUNK_OVERLAP)\n"
     "  --yes              rm: do not ask (needed when stdin is not a terminal)\n"
     "  --url URL          server (default: $RAGD_URL, else " CLI_DEFAULT_URL ")\n",
     cli_cmd_dbs, 0, 2},
    {"docs", CLI_OPT_URL | CLI_OPT_JSON,
     "usage: ragd docs DB [--json] [--url URL]\n"
     "\n"
     "List the documents of collection DB: ID CHUNKS BYTES (of stored text) UPDATED TITLE\n"
     "(the metadata's title, else -).\n"
     "\n"
     "  --json      print {\"db\", \"total\", \"documents\": [...]} with every document\n"
     "  --url URL   server (default: $RAGD_URL, else " CLI_DEFAULT_URL ")\n",
     cli_cmd_docs, 1, 1},
    {"rm", CLI_OPT_URL,
     "usage: ragd rm DB ID... [--url URL]\n"
     "\n"
     "Delete documents from collection DB by id. An id that is not there is reported and\n"
     "the others are still deleted; the exit status is then 1.\n"
     "\n"
     "  --url URL   server (default: $RAGD_URL, else " CLI_DEFAULT_URL ")\n",
     cli_cmd_rm, 2, SIZE_MAX},
    {"config", 0,
     "usage: ragd config\n"
     "\n"
     "Print the configuration `ragd serve` would run with in this environment: every\n"
     "variable, its effective value, and where it came from (default or env). Secrets (API\n"
     "keys, tokens) show as \"(set, redacted)\". Exit status 1 when a value is invalid (the\n"
     "server would refuse to start; the message says why).\n",
     cli_cmd_config, 0, 0},
    {"backup", CLI_OPT_DATA | CLI_OPT_FORCE,
     "usage: ragd backup PATH [--data DIR] [--force]\n"
     "\n"
     "Copy the database to PATH while the server runs (SQLite's online backup, a few pages\n"
     "at a time, reading a consistent snapshot; the server keeps serving and writing).\n"
     "The copy is written to PATH.tmp, checked (PRAGMA integrity_check), then renamed.\n"
     "The data directory's lock is not taken.\n"
     "\n"
     "  --data DIR  the server's data directory (default: $RAGD_DATA_DIR, else ./data)\n"
     "  --force     replace PATH when it exists\n",
     cli_cmd_backup, 1, 1},
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
          "  ingest PATH... [--db NAME] [--id-prefix P] [--sync] [--watch] [--all] [--batch N] [--jobs N]\n"
          "                                              send files or folders to a server\n"
          "  query \"QUESTION\" [--db NAME] [--k N] [--method M] [--stream] [--json]\n"
          "                                              ask; print the answer and sources\n"
          "  dbs [--json]                                list collections\n"
          "  dbs create NAME [--embedder E] [--chunk-size N] [--chunk-overlap N]\n"
          "                                              create a collection\n"
          "  dbs rm NAME [--yes]                         delete a collection\n"
          "  docs DB [--json]                            list a collection's documents\n"
          "  rm DB ID...                                 delete documents\n"
          "  health                                      print the server's health\n"
          "  reembed DB --embedder E [--model M] [--wait], reembed DB --status\n"
          "                                              re-embed a collection in the background\n"
          "  config                                      print the effective configuration\n"
          "  backup PATH [--data DIR] [--force]          copy the database while serving\n"
          "  version                                     print the version\n"
          "  help [COMMAND]                              print this, or a command's usage\n"
          "\n"
          "`ragd COMMAND --help` describes a command and every flag. Client commands take\n"
          "--url URL (default: $RAGD_URL, else " CLI_DEFAULT_URL "); RAGD_API_KEY, when set,\n"
          "is sent as the bearer key.\n",
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
    {"jobs", CLI_OPT_BATCH, true},
    {"embedder", CLI_OPT_REEMBED, true}, {"model", CLI_OPT_REEMBED, true},
    {"wait", CLI_OPT_REEMBED, false},    {"status", CLI_OPT_REEMBED, false},
    {"id-prefix", CLI_OPT_INGEST, true}, {"sync", CLI_OPT_INGEST, false},
    {"watch", CLI_OPT_INGEST, false},    {"all", CLI_OPT_INGEST, false},
    {"embedder", CLI_OPT_EMBEDDER, true}, {"chunk-size", CLI_OPT_CHUNKS, true},
    {"chunk-overlap", CLI_OPT_CHUNKS, true}, {"yes", CLI_OPT_YES, false},
    {"force", CLI_OPT_FORCE, false},     {"data", CLI_OPT_DATA, true},
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
    case CLI_OPT_BATCH: /* --batch and --jobs: told apart by name */
        if (strcmp(opt->name, "jobs") == 0) {
            if (!cli_parse_int(val, 1, CLI_MAX_JOBS, &o->jobs)) {
                snprintf(err, errlen, "--jobs: must be an integer from 1 to %d", CLI_MAX_JOBS);
                return RAGD_EINVAL;
            }
        } else if (!cli_parse_int(val, 1, 10000, &o->batch)) {
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
    case CLI_OPT_INGEST: /* told apart by name, like the reembed options */
        if (strcmp(opt->name, "id-prefix") == 0) {
            if (strlen(val) > 200 || !cli_valid_id(val)) {
                snprintf(err, errlen, "--id-prefix: must be 1-200 bytes of UTF-8 without control characters");
                return RAGD_EINVAL;
            }
            o->id_prefix = val;
        } else if (strcmp(opt->name, "sync") == 0) {
            o->sync = true;
        } else if (strcmp(opt->name, "watch") == 0) {
            o->watch = o->sync = true;
        } else {
            o->all = true;
        }
        break;
    case CLI_OPT_EMBEDDER:
        o->embedder = val;
        break;
    case CLI_OPT_CHUNKS:
        if (strcmp(opt->name, "chunk-size") == 0 ? !cli_parse_int(val, 100, 8000, &o->chunk_size)
                                                 : !cli_parse_int(val, 0, 3999, &o->chunk_overlap)) {
            snprintf(err, errlen, "--%s: must be an integer from %s", opt->name,
                     strcmp(opt->name, "chunk-size") == 0 ? "100 to 8000" : "0 to 3999");
            return RAGD_EINVAL;
        }
        break;
    case CLI_OPT_YES:
        o->yes = true;
        break;
    case CLI_OPT_FORCE:
        o->force = true;
        break;
    case CLI_OPT_DATA:
        if (!val[0]) {
            snprintf(err, errlen, "--data: must be a folder");
            return RAGD_EINVAL;
        }
        o->data_dir = val;
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
    o->jobs = CLI_INGEST_JOBS;
    o->chunk_overlap = -1;
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
        const cli_option *opt = NULL; /* a name may stand in the table for two bits */
        for (size_t j = 0; j < sizeof options / sizeof options[0]; j++) {
            if (strlen(options[j].name) == nlen && strncmp(options[j].name, name, nlen) == 0 &&
                (allowed & options[j].bit))
                opt = &options[j];
        }
        if (!opt) {
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
    if (strcmp(argv[0], "help") == 0 && argc > 1) { /* `ragd help COMMAND` */
        for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++) {
            if (strcmp(commands[i].name, argv[1]) == 0) {
                fputs(commands[i].usage, stdout);
                return CLI_EXIT_OK;
            }
        }
        if (strcmp(argv[1], "serve") != 0) {
            fprintf(stderr, "ragd: unknown command '%s'\n", argv[1]);
            cli_usage(stderr);
            return CLI_EXIT_USAGE;
        }
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
