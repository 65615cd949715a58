#ifndef RAGD_CLI_CLI_INT_H
#define RAGD_CLI_CLI_INT_H

/* Internals of the command-line client, shared by the files of src/cli/ and tests/unit/test_cli.c.
 * Not a contract for anyone else: src/cli/cli.h is. */

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "util/err.h"
#include "util/sse.h"
#include "util/strbuf.h"

#define CLI_DEFAULT_URL "http://127.0.0.1:8000"
#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_UNREACHABLE 2 /* `ragd health` only */

#define CLI_MAX_FILE_BYTES ((size_t)10 * 1024 * 1024) /* RAGD_MAX_BODY_BYTES default */
#define CLI_MAX_BODY_BYTES ((size_t)10 * 1024 * 1024) /* one ingest request, JSON-encoded */
#define CLI_BATCH_FILES 32
#define CLI_BATCH_BYTES ((size_t)4 * 1024 * 1024)
#define CLI_RESPONSE_CAP ((size_t)64 * 1024 * 1024)
#define CLI_MAX_ID_CHARS 256
#define CLI_MAX_DEPTH 64        /* directory nesting below one argument */
#define CLI_MAX_FILES 1000000   /* files collected by one `ragd ingest` */
#define CLI_SSE_LINE_CAP ((size_t)16 * 1024 * 1024)
#define CLI_CONNECT_TIMEOUT_S 5L
#define CLI_INGEST_TIMEOUT_S 300L
#define CLI_QUERY_TIMEOUT_S 120L
#define CLI_SHORT_TIMEOUT_S 30L /* dbs, health */

/* ---- options (cli.c) ---- */

/* Which options a command accepts (bit set for cli_parse_opts). */
enum {
    CLI_OPT_URL = 1u << 0,
    CLI_OPT_DB = 1u << 1,
    CLI_OPT_K = 1u << 2,
    CLI_OPT_METHOD = 1u << 3,
    CLI_OPT_STREAM = 1u << 4,
    CLI_OPT_JSON = 1u << 5,
    CLI_OPT_BATCH = 1u << 6,
    CLI_OPT_REEMBED = 1u << 7, /* --embedder E, --model M, --wait, --status */
};

typedef struct {
    const char *url;    /* --url, else $RAGD_URL, else CLI_DEFAULT_URL; points into argv/env */
    const char *db;     /* NULL: the server's default collection */
    const char *method; /* NULL: the server's default */
    int k;              /* 0: the server's default */
    int batch;          /* files per ingest request */
    bool stream, json, help;
    const char *embedder; /* reembed: --embedder (NULL: not given) */
    const char *model;    /* reembed: --model (NULL: the server's choice) */
    bool wait, status_only; /* reembed: --wait, --status */
    const char **args;  /* positional arguments (pointers into argv), heap array */
    size_t nargs;
} cli_opts;

/* Parses argv[1..argc) (argv[0] is the command name) into *o, accepting only the options in
 * `allowed` (CLI_OPT_* bits; --help is always accepted). "--opt VALUE", "--opt=VALUE" and
 * "--" are understood; positionals may come anywhere. Returns RAGD_EINVAL with a one-line
 * message in err for an unknown option, a missing or bad value; RAGD_ENOMEM. Call
 * cli_opts_cleanup afterwards in every case. */
ragd_err cli_parse_opts(int argc, char **argv, unsigned allowed, cli_opts *o, char *err,
                        size_t errlen);
void cli_opts_cleanup(cli_opts *o);

/* True when s is a collection name the server accepts: 1-64 of [A-Za-z0-9_.-], no leading '.'. */
bool cli_valid_db_name(const char *s);

/* ---- walking folders (cli_walk.c) ---- */

typedef struct {
    char *path;         /* as opened: the argument, or argument + "/" + id */
    char *id;           /* relative to the argument; the file name for a file argument */
    const char *format; /* "text" | "markdown" | "html" (static) */
} cli_file;

typedef struct {
    cli_file *files;
    size_t n, alloc;
    size_t unsupported;  /* regular files with another extension (counted, not reported) */
    size_t hidden;       /* dot entries not entered (not counted as skipped files) */
    size_t symlink_dirs; /* symbolic links to directories: not followed */
    size_t bad_name;     /* names that cannot be a document id (warned) */
    size_t dup_ids;      /* later files whose id an earlier file already has (warned) */
    size_t errors;       /* unreadable directories, special files, too deep (warned) */
} cli_walk;

/* The document format for a file name by its extension (case-insensitive), or NULL when the
 * extension is not one ragd ingests. The result is a static string. */
const char *cli_format_for(const char *name);

/* True when id can be a document id: 1..256 UTF-8 characters, no control characters. */
bool cli_valid_id(const char *id);

void cli_walk_init(cli_walk *w);
void cli_walk_cleanup(cli_walk *w);
/* Adds the file `arg`, or every supported file under the folder `arg` (recursively, in name
 * order, skipping dot entries and symbolic links to folders; the argument itself is followed
 * even when it is a link or starts with '.', since the user named it). Warnings for skipped
 * entries go to `warn` (may be NULL). Returns RAGD_ENOTFOUND with a message when arg cannot
 * be accessed, RAGD_ETOOBIG past CLI_MAX_FILES, RAGD_ENOMEM. */
ragd_err cli_walk_add(cli_walk *w, const char *arg, FILE *warn, char *err, size_t errlen);
/* Drops every file whose id an earlier file already has (counted in dup_ids, warned). */
ragd_err cli_walk_dedupe(cli_walk *w, FILE *warn);
/* Files the walk decided not to send, from every cause. */
size_t cli_walk_skipped(const cli_walk *w);

/* ---- ingest (cli_ingest.c) ---- */

/* Reads a whole regular file of at most `max` bytes into a malloc'd NUL-terminated buffer,
 * dropping a leading UTF-8 byte-order mark. Returns RAGD_ETOOBIG when the file is larger,
 * RAGD_EINVAL when it is not valid UTF-8 (or holds a NUL byte), RAGD_EIO when it cannot be
 * read (message in err). An empty file is returned as an empty buffer. */
ragd_err cli_read_file(const char *path, size_t max, char **out, size_t *len, char *err,
                       size_t errlen);

/* The JSON object {"id","text","source","format"} of one document, compact, malloc'd;
 * NULL on allocation failure. text must be valid UTF-8. */
char *cli_doc_json(const cli_file *f, const char *text, size_t len);

/* One ingest request being assembled: {"db":…,"documents":[doc,doc,…]}. */
typedef struct {
    strbuf body;      /* capped at CLI_MAX_BODY_BYTES (minus the closing "]}") */
    size_t ndocs;
    size_t max_docs;  /* flush after this many documents */
    size_t max_bytes; /* flush before the body would pass this size */
    char *prefix;     /* {"db":"x","documents":[ */
} cli_batch;

ragd_err cli_batch_init(cli_batch *b, const char *db, size_t max_docs, size_t max_bytes);
void cli_batch_cleanup(cli_batch *b);
/* True when a document of n encoded bytes must go into the next request: this one holds
 * max_docs documents already, or is non-empty and would pass max_bytes. */
bool cli_batch_full(const cli_batch *b, size_t n);
/* Appends a document. RAGD_ETOOBIG when it does not fit the body cap (the batch is unchanged;
 * on an empty batch that means the document can never be sent). */
ragd_err cli_batch_add(cli_batch *b, const char *doc, size_t n);
/* Closes the JSON and returns the body (owned by the batch) and its length. Call
 * cli_batch_reset before adding again. */
const char *cli_batch_finish(cli_batch *b, size_t *len);
void cli_batch_reset(cli_batch *b);

/* Formats the progress bar "[=====>    ] 120/300 files  2 skipped" (bar `width` characters
 * inside the brackets) into buf. */
void cli_progress_format(char *buf, size_t buflen, size_t done, size_t total, size_t skipped,
                         int width);

int cli_cmd_ingest(const cli_opts *o);

/* ---- HTTP (cli_http.c) ---- */

/* Called with each piece of a text/event-stream body of a 2xx answer; returns false to abort. */
typedef bool (*cli_stream_fn)(const char *p, size_t n, void *ud);

typedef struct {
    long status;           /* HTTP status; 0 when no answer arrived */
    strbuf body;           /* the body (not for streamed answers), capped at CLI_RESPONSE_CAP */
    char content_type[96]; /* "" when absent */
    bool streamed;         /* the body went to the stream callback */
} cli_response;

void cli_response_init(cli_response *r);
void cli_response_cleanup(cli_response *r);

/* Sends one request to base_url + path (a trailing '/' of base_url is ignored): a POST of the
 * JSON `body` when body is non-NULL, else a GET. When `on_stream` is set and the answer is
 * 2xx text/event-stream, the body is handed to it instead of being buffered. Returns RAGD_OK
 * when an answer arrived (whatever its status), RAGD_EIO when the server could not be reached
 * ("cannot reach URL: why" in err), RAGD_ETOOBIG when the answer passed the cap, RAGD_ECLOSED
 * when the transfer failed later (timeout, reset, callback abort), RAGD_ENOMEM. */
ragd_err cli_http(const char *base_url, const char *path, const char *body, size_t len,
                  long timeout_s, cli_stream_fn on_stream, void *ud, cli_response *r, char *err,
                  size_t errlen);

/* The one-line message for a non-2xx answer: the server's error.message and the status,
 * e.g. "collection 'x' does not exist (HTTP 404 db_not_found)". */
void cli_http_error_message(const cli_response *r, char *out, size_t outlen);

/* Parses a 2xx answer into a JSON object (the caller decrefs it), or prints why not
 * ("ragd: ..." on stderr) and returns NULL. */
json_t *cli_answer_object(const cli_response *r);

/* Sends body (NULL: none) to path and parses the 2xx answer. Returns the JSON object (the
 * caller decrefs it; r keeps the raw body), or NULL after printing why. *reached, when not
 * NULL, is set false when no answer arrived at all (the request itself failed). */
json_t *cli_request_object(const cli_opts *o, const char *path, const char *body, long timeout_s,
                           cli_response *r, bool *reached);

/* ---- query, dbs, health (cli_query.c) ---- */

int cli_cmd_query(const cli_opts *o);
int cli_cmd_dbs(const cli_opts *o);
int cli_cmd_health(const cli_opts *o);

/* ---- reembed (cli_reembed.c) ---- */

int cli_cmd_reembed(const cli_opts *o);

#endif
