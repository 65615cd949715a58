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

#define CLI_MAX_BODY_BYTES ((size_t)10 * 1024 * 1024) /* the server's RAGD_MAX_BODY_BYTES
                                                           when /health does not say */
#define CLI_BATCH_FILES 32
#define CLI_BATCH_BYTES ((size_t)4 * 1024 * 1024)
#define CLI_INGEST_JOBS 3 /* ingest requests in flight at once: while the server's writer
                             stores one batch its workers prepare the next (BENCHMARKS.md,
                             issue 11) */
#define CLI_MAX_JOBS 8
#define CLI_RESPONSE_CAP ((size_t)64 * 1024 * 1024)
#define CLI_MAX_ID_BYTES 256 /* RAG_INGEST_ID_MAX */
#define CLI_MAX_DEPTH 64        /* directory nesting below one argument */
#define CLI_MAX_FILES 1000000   /* files collected by one `ragd ingest` */
#define CLI_SHOWN_PATH 4352      /* a path as printed in a message (cli_printable) */
#define CLI_MAX_KNOWN 10000000  /* documents --sync reads from a listing before giving up */
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
    CLI_OPT_BATCH = 1u << 6,    /* --batch N, --jobs N */
    CLI_OPT_REEMBED = 1u << 7, /* --embedder E, --model M, --wait, --status */
    CLI_OPT_INGEST = 1u << 8,  /* --id-prefix P, --sync, --watch, --all */
    CLI_OPT_EMBEDDER = 1u << 9, /* --embedder E alone (dbs create) */
    CLI_OPT_CHUNKS = 1u << 10, /* --chunk-size N, --chunk-overlap N */
    CLI_OPT_YES = 1u << 11,    /* --yes */
    CLI_OPT_FORCE = 1u << 12,  /* --force */
    CLI_OPT_DATA = 1u << 13,   /* --data DIR */
};

typedef struct {
    const char *url;    /* --url, else $RAGD_URL, else CLI_DEFAULT_URL; points into argv/env */
    const char *db;     /* NULL: the server's default collection */
    const char *method; /* NULL: the server's default */
    int k;              /* 0: the server's default */
    int batch;          /* files per ingest request */
    int jobs;           /* ingest requests in flight at once, 1..CLI_MAX_JOBS */
    bool stream, json, help;
    const char *embedder; /* reembed: --embedder (NULL: not given) */
    const char *model;    /* reembed: --model (NULL: the server's choice) */
    bool wait, status_only; /* reembed: --wait, --status */
    const char *id_prefix; /* ingest: --id-prefix (NULL: none) */
    bool sync, watch, all;  /* ingest: --sync, --watch (implies sync), --all */
    bool yes, force;        /* dbs rm: --yes; backup: --force */
    const char *data_dir;   /* backup: --data DIR (NULL: $RAGD_DATA_DIR, else ./data) */
    int chunk_size, chunk_overlap; /* dbs create (0: the server's default; overlap -1: default) */
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
    char *path;               /* as opened: the argument, or argument + "/" + relative path */
    char *id;                 /* --id-prefix + the path relative to the argument's parent folder
                                 (the file name for a file argument) */
    const char *format;       /* JSON "format" of a text kind (rag/formats.h: "text" | "markdown" |
                                 "html" | "rst"), NULL: none is sent
                                 and the server decides by the source's name (static) */
    const char *content_type; /* the Content-Type of a raw body, by extension (static) */
    bool text_kind;           /* a kind that goes in a JSON batch when it is valid UTF-8 */
    bool junk;                /* not a document type (pictures, archives...): skipped unless --all */
} cli_file;

/* Where one PATH argument puts its documents in the id space: a folder's files have ids
 * starting with `id` ("P" + "docs/"), a file argument has exactly `id`. */
typedef struct {
    char *id;
    bool is_dir;
} cli_root;

typedef struct {
    const char *id_prefix; /* --id-prefix (NULL: none); set before cli_walk_add, borrowed */
    bool all;              /* --all: junk types are sent too */
    cli_file *files;
    size_t n, alloc;
    cli_root *roots;
    size_t nroots, roots_alloc;
    cli_root *unseen;    /* parts of the tree the walk could not list (unreadable or vanished
                            folders, too deep, entries lstat failed on): their documents are
                            not known to be gone, so --sync keeps them */
    size_t nunseen, unseen_alloc;
    size_t hidden;       /* dot entries not entered (not counted as skipped files) */
    size_t symlink_dirs; /* symbolic links to directories: not followed */
    size_t bad_name;     /* names that cannot be a document id (warned) */
    size_t dup_ids;      /* later files whose id an earlier file already has (warned) */
    size_t errors;       /* unreadable directories, special files, too deep (warned) */
} cli_walk;

/* Fills f->format, content_type, text_kind and junk from the extension of name
 * (case-insensitive). No extension: a text kind with no format (the server decides);
 * an unknown one: raw application/octet-stream (the server sniffs the bytes). */
void cli_kind_of(const char *name, cli_file *f);

/* The JSON format of a text kind by extension ("text" | "markdown" | "html" | "rst"), or NULL when
 * the file is not sent with a format (no or another extension). Static. */
const char *cli_format_for(const char *name);

/* A file name or id as it can be printed on a terminal: out gets s with every control
 * byte (C0, DEL) as '?', cut to cap - 1 bytes; returns out. A name's escape sequence or
 * newline could otherwise rewrite the screen or forge a line of output. */
const char *cli_printable(const char *s, char *out, size_t cap);

/* True when id can be a document id: 1..256 bytes of UTF-8, no control characters. */
bool cli_valid_id(const char *id);

void cli_walk_init(cli_walk *w);
void cli_walk_cleanup(cli_walk *w);
/* Adds the file `arg`, or every regular file under the folder `arg` (recursively, in name
 * order, skipping dot entries and symbolic links to folders; the argument itself is followed
 * even when it is a link or starts with '.', since the user named it), and records the
 * argument's root. Warnings for skipped entries go to `warn` (may be NULL). Returns
 * RAGD_ENOTFOUND with a message when arg cannot be accessed, RAGD_ETOOBIG past
 * CLI_MAX_FILES, RAGD_ENOMEM. */
ragd_err cli_walk_add(cli_walk *w, const char *arg, FILE *warn, char *err, size_t errlen);
/* True when a document id falls under one of the walked arguments (a folder's id prefix,
 * or a file argument's exact id) and under no part of the tree the walk could not list:
 * what --sync may remove when no file has it any more. */
bool cli_walk_covers(const cli_walk *w, const char *id);
/* Drops every file whose id an earlier file already has (counted in dup_ids, warned). */
ragd_err cli_walk_dedupe(cli_walk *w, FILE *warn);
/* Files the walk decided not to send, from every cause. */
size_t cli_walk_skipped(const cli_walk *w);

/* ---- ingest (cli_ingest.c) ---- */

/* Reads a whole regular file of at most `max` bytes into a malloc'd NUL-terminated buffer,
 * as it is. RAGD_ETOOBIG when it is larger (checked on fstat and while reading), RAGD_EIO
 * when it cannot be read, RAGD_ENOMEM (message in err). */
ragd_err cli_read_bytes(const char *path, size_t max, char **out, size_t *len, char *err,
                        size_t errlen);
/* Where the text of data[0..n) starts once a UTF-8 byte-order mark is dropped (0 or 3), or
 * SIZE_MAX when the rest is not valid UTF-8 (a NUL byte counts as invalid). */
size_t cli_text_start(const char *data, size_t n);

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
    strbuf body;      /* capped at body_cap (minus the closing "]}") */
    size_t body_cap;  /* the server's RAGD_MAX_BODY_BYTES */
    size_t ndocs;
    size_t max_docs;  /* flush after this many documents */
    size_t max_bytes; /* flush before the body would pass this size */
    char *prefix;     /* {"db":"x","documents":[ */
} cli_batch;

/* An empty batch for collection db (NULL: the server's default), flushed at max_docs
 * documents or max_bytes (capped at body_cap, the server's limit). RAGD_ENOMEM, or
 * RAGD_OK; cli_batch_cleanup either way. */
ragd_err cli_batch_init(cli_batch *b, const char *db, size_t max_docs, size_t max_bytes,
                        size_t body_cap);
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

/* What the server allows, from GET /health (cli_server_info). */
typedef struct {
    bool reached;    /* /health answered at all (else `error` says why) */
    size_t max_body; /* limits.max_body_bytes, else CLI_MAX_BODY_BYTES */
    char db[65];     /* --db, else the server's default_db, else "default" */
    char error[512];
} cli_server;

/* Fills srv from GET /health (defaults when it does not answer: reached says so). */
void cli_server_info(const cli_opts *o, cli_server *srv);

/* The documents of a collection, sorted by id (for --sync). */
typedef struct {
    char *id;
    char hash[65];  /* content_hash: SHA-256 hex of the bytes the server was sent */
    bool present;   /* a walked file has this id */
} cli_known;

typedef struct {
    cli_known *docs;
    size_t n, alloc;
} cli_known_set;

/* Lists every document of collection db (GET /api/dbs/DB/documents, page after page; a
 * missing collection holds nothing). False after printing why. */
bool cli_known_fetch(const cli_opts *o, const char *db, cli_known_set *k);
/* The listed document with that id (k is sorted by cli_known_fetch), or NULL. */
cli_known *cli_known_find(const cli_known_set *k, const char *id);
void cli_known_cleanup(cli_known_set *k);

typedef enum { CLI_CHANGE_ADDED, CLI_CHANGE_CHANGED } cli_change;

/* What one ingest or sync pass did. */
typedef struct {
    size_t sent, failed;                       /* files the server took; refused (422, 415, 413) */
    size_t added, changed, unchanged, removed; /* --sync */
    size_t junk, too_big, empty, unreadable;   /* skipped while reading */
    size_t refused_before;                     /* --watch: refused last round, untouched since */
    long long documents, chunks, duplicates;   /* sums of the server's answers */
} cli_pass;

/* What --watch remembers of each file between rounds: a file whose inode, size, mtime and
 * ctime are unchanged has the same bytes, so its hash is taken from here instead of reading
 * it again (git's index does the same); one the server refused is not sent again until it
 * changes (touching it is enough). Entries sorted by path. */
typedef struct {
    char *path;
    unsigned long long dev, ino, size;
    long long mtime_s, mtime_ns, ctime_s, ctime_ns;
    char hash[65];
    bool refused; /* the server refused these bytes (413, 415, 422): not sent again */
} cli_stat_entry;

typedef struct {
    cli_stat_entry *e;
    size_t n, alloc;
} cli_stat_cache;

void cli_stat_cache_cleanup(cli_stat_cache *c);

/* One pass of `ragd ingest` over o->args: walk, (sync: list the collection, skip files whose
 * bytes it holds, remove documents whose files are gone), send. Prints per-file errors, a
 * summary on stderr and one result line on stdout. cache (sync only, may be NULL) is read
 * and replaced by this pass's files. Returns the exit status: 1 when a file
 * failed, a fatal error ended the pass, or (without sync) nothing was sent. */
int cli_ingest_pass(const cli_opts *o, const cli_server *srv, bool sync, bool show_progress,
                    cli_stat_cache *cache, cli_pass *pass);

int cli_cmd_ingest(const cli_opts *o);

/* ---- watch (cli_watch.c) ---- */

/* `ragd ingest --watch`: a sync, then another after each burst of changes under the
 * arguments (inotify, debounced), until SIGINT or SIGTERM (exit 0). */
int cli_watch(const cli_opts *o, const cli_server *srv);

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

/* One request: cli_http's arguments plus a method ("GET", "POST", "DELETE") and the body's
 * Content-Type (NULL: application/json). A body is sent whenever it is non-NULL. */
typedef struct {
    const char *method;
    const char *path; /* percent-encoded as needed (cli_path_escape) */
    const char *body;
    size_t len;
    const char *content_type;
    long timeout_s;
    cli_stream_fn on_stream;
    void *ud;
} cli_request;

/* cli_http with every choice spelled out; same returns. */
ragd_err cli_http_send(const char *base_url, const cli_request *q, cli_response *r, char *err,
                       size_t errlen);

/* Appends s to sb percent-encoded for a URL path (keep_slash: '/' stays) or a query value:
 * everything but [A-Za-z0-9-._~] (and '/') becomes %XX. RAGD_ETOOBIG past sb's cap. */
ragd_err cli_url_escape(strbuf *sb, const char *s, bool keep_slash);

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

/* ---- query, health (cli_query.c) ---- */

/* Prints a raw answer body on stdout, ending it with a newline. */
void cli_print_raw(const cli_response *r);
int cli_cmd_query(const cli_opts *o);
int cli_cmd_health(const cli_opts *o);

/* ---- dbs, docs, rm (cli_dbs.c) ---- */
/* Each cli_cmd_* runs one subcommand and returns the process's exit status (CLI_EXIT_*). */

int cli_cmd_dbs(const cli_opts *o);
int cli_cmd_docs(const cli_opts *o);
int cli_cmd_rm(const cli_opts *o);

/* ---- config (cli_config.c), backup (cli_backup.c) ---- */

int cli_cmd_config(const cli_opts *o);
int cli_cmd_backup(const cli_opts *o);

/* ---- reembed (cli_reembed.c) ---- */

int cli_cmd_reembed(const cli_opts *o);

#endif
