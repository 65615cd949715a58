/* `ragd ingest`: read the walked files, send them in JSON batches, show progress. */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_int.h"
#include "util/hash.h"
#include "util/jsonw.h"
#include "util/strbuf.h"
#include "util/utf8.h"

/* ---- reading one file ---- */

ragd_err cli_read_bytes(const char *path, size_t max, char **out, size_t *len, char *err,
                        size_t errlen)
{
    ragd_err e = RAGD_OK;
    strbuf sb;
    strbuf_init(&sb, max);
    *out = NULL;
    *len = 0;
    err[0] = '\0';
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0) {
        snprintf(err, errlen, "%s", strerror(errno));
        return RAGD_EIO;
    }
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        snprintf(err, errlen, "not a regular file");
        e = RAGD_EIO;
        goto out;
    }
    if ((unsigned long long)st.st_size > max) {
        e = RAGD_ETOOBIG;
        goto out;
    }
    char chunk[65536];
    for (;;) {
        ssize_t got = read(fd, chunk, sizeof chunk);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            snprintf(err, errlen, "%s", strerror(errno));
            e = RAGD_EIO;
            goto out;
        }
        if (got == 0)
            break;
        e = strbuf_append(&sb, chunk, (size_t)got); /* the file may have grown since fstat */
        if (e)
            goto out;
    }
    size_t n = 0;
    char *data = strbuf_detach(&sb, &n);
    if (!data) {
        data = calloc(1, 1);
        if (!data) {
            e = RAGD_ENOMEM;
            goto out;
        }
    }
    *out = data;
    *len = n;
out:
    if (e == RAGD_ETOOBIG)
        snprintf(err, errlen, "larger than %zu MiB", max >> 20);
    else if (e == RAGD_ENOMEM)
        snprintf(err, errlen, "out of memory");
    strbuf_cleanup(&sb);
    close(fd);
    return e;
}

size_t cli_text_start(const char *data, size_t n)
{
    size_t skip = n >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0 ? 3 : 0;
    return utf8_valid(data + skip, n - skip) ? skip : SIZE_MAX;
}

ragd_err cli_read_file(const char *path, size_t max, char **out, size_t *len, char *err,
                       size_t errlen)
{
    ragd_err e = cli_read_bytes(path, max, out, len, err, errlen);
    if (e)
        return e;
    size_t start = cli_text_start(*out, *len);
    if (start == SIZE_MAX) {
        free(*out);
        *out = NULL;
        *len = 0;
        snprintf(err, errlen, "not valid UTF-8 text");
        return RAGD_EINVAL;
    }
    memmove(*out, *out + start, *len - start + 1);
    *len -= start;
    return RAGD_OK;
}

char *cli_doc_json(const cli_file *f, const char *text, size_t len)
{
    /* Written with jsonw, not a jansson tree: building and dumping one copied and re-checked
     * every byte of the text, about half of the client's CPU on a large ingest. */
    /* The source is the path as given; when that is not UTF-8 (a folder argument with a
     * non-UTF-8 name) the id, which always is, stands in for it. */
    const char *source = utf8_valid(f->path, strlen(f->path)) ? f->path : f->id;
    strbuf sb; /* cap: every byte escaped as \u00XX (6 bytes), and the names and punctuation */
    strbuf_init(&sb, 6 * (len + strlen(f->id) + strlen(source) + (f->format ? strlen(f->format) : 0)) + 64);
    jsonw w;
    jsonw_init(&w, &sb);
    jsonw_object_begin(&w);
    jsonw_key(&w, "id");
    jsonw_string(&w, f->id);
    jsonw_key(&w, "text");
    jsonw_stringn(&w, text, len);
    jsonw_key(&w, "source");
    jsonw_string(&w, source);
    if (f->format) {
        jsonw_key(&w, "format");
        jsonw_string(&w, f->format);
    }
    jsonw_object_end(&w);
    char *out = jsonw_status(&w) == RAGD_OK ? strbuf_detach(&sb, NULL) : NULL;
    strbuf_cleanup(&sb);
    return out;
}

/* ---- batches ---- */

ragd_err cli_batch_init(cli_batch *b, const char *db, size_t max_docs, size_t max_bytes,
                        size_t body_cap)
{
    memset(b, 0, sizeof *b);
    strbuf_init(&b->body, body_cap);
    b->body_cap = body_cap;
    b->max_docs = max_docs;
    b->max_bytes = max_bytes < body_cap ? max_bytes : body_cap;
    strbuf pre;
    strbuf_init(&pre, 1024);
    ragd_err e = RAGD_OK;
    if (db) {
        json_t *s = json_string(db);
        char *enc = s ? json_dumps(s, JSON_ENCODE_ANY) : NULL;
        e = enc ? strbuf_appendf(&pre, "{\"db\":%s,\"documents\":[", enc) : RAGD_ENOMEM;
        free(enc);
        json_decref(s);
    } else {
        e = strbuf_appends(&pre, "{\"documents\":[");
    }
    if (!e)
        b->prefix = strbuf_detach(&pre, NULL);
    strbuf_cleanup(&pre);
    if (!e)
        cli_batch_reset(b);
    if (!e && b->body.len == 0)
        e = RAGD_ENOMEM;
    return e;
}

void cli_batch_cleanup(cli_batch *b)
{
    strbuf_cleanup(&b->body);
    free(b->prefix);
    b->prefix = NULL;
    b->ndocs = 0;
}

void cli_batch_reset(cli_batch *b)
{
    strbuf_reset(&b->body);
    b->ndocs = 0;
    if (b->prefix && strbuf_appends(&b->body, b->prefix) != RAGD_OK)
        strbuf_reset(&b->body); /* cannot happen: the prefix is tiny; init reports it */
}

/* The body length once a document of n bytes and the closing "]}" are added. */
static size_t cli_batch_len_with(const cli_batch *b, size_t n)
{
    return b->body.len + (b->ndocs ? 1 : 0) + n + 2;
}

bool cli_batch_full(const cli_batch *b, size_t n)
{
    if (b->ndocs == 0)
        return false;
    return b->ndocs >= b->max_docs || cli_batch_len_with(b, n) > b->max_bytes;
}

ragd_err cli_batch_add(cli_batch *b, const char *doc, size_t n)
{
    if (n > b->body_cap || cli_batch_len_with(b, n) > b->body_cap)
        return RAGD_ETOOBIG;
    size_t before = b->body.len;
    ragd_err e = RAGD_OK;
    if (b->ndocs)
        e = strbuf_append(&b->body, ",", 1);
    if (!e)
        e = strbuf_append(&b->body, doc, n);
    if (e) {
        b->body.len = before; /* drop a lone ',' */
        b->body.data[before] = '\0';
        return e;
    }
    b->ndocs++;
    return RAGD_OK;
}

const char *cli_batch_finish(cli_batch *b, size_t *len)
{
    /* Room for "]}" was kept by cli_batch_add, so this cannot pass the cap. */
    if (strbuf_append(&b->body, "]}", 2) != RAGD_OK)
        return NULL;
    *len = b->body.len;
    return b->body.data;
}

/* ---- progress ---- */

void cli_progress_format(char *buf, size_t buflen, size_t done, size_t total, size_t skipped,
                         int width)
{
    char bar[256];
    if (width < 1)
        width = 1;
    if (width > (int)sizeof bar - 1)
        width = (int)sizeof bar - 1;
    size_t w = (size_t)width;
    size_t filled = (total == 0 || done >= total) ? w : done * w / total;
    for (size_t i = 0; i < w; i++)
        bar[i] = i < filled ? '=' : ' ';
    if (filled < w)
        bar[filled] = '>';
    bar[w] = '\0';
    snprintf(buf, buflen, "[%s] %zu/%zu files  %zu skipped", bar, done, total, skipped);
}

typedef struct {
    FILE *f;
    bool tty;   /* draw the bar; else print nothing until the summary */
    bool shown; /* the bar is on screen (a warning must clear it first) */
    size_t total, done, skipped;
} progress;

static void progress_draw(progress *p)
{
    if (!p->tty)
        return;
    char line[400]; /* bar (<= 255) + the counts */
    cli_progress_format(line, sizeof line, p->done, p->total, p->skipped, 30);
    fprintf(p->f, "\r%s\033[K", line);
    fflush(p->f);
    p->shown = true;
}

static void progress_clear(progress *p)
{
    if (p->tty && p->shown) {
        fputs("\r\033[K", p->f);
        p->shown = false;
    }
}

static void progress_warn(progress *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void progress_warn(progress *p, const char *fmt, ...)
{
    progress_clear(p);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(p->f, fmt, ap);
    va_end(ap);
    progress_draw(p);
}

/* ---- what the server allows ---- */

void cli_server_info(const cli_opts *o, cli_server *srv)
{
    memset(srv, 0, sizeof *srv);
    srv->max_body = CLI_MAX_BODY_BYTES;
    snprintf(srv->db, sizeof srv->db, "%s", o->db ? o->db : "default");
    cli_response r;
    cli_response_init(&r);
    char err[512];
    json_t *root = NULL;
    srv->reached = cli_http(o->url, "/health", NULL, 0, CLI_SHORT_TIMEOUT_S, NULL, NULL, &r, err,
                            sizeof err) == RAGD_OK;
    if (!srv->reached) {
        snprintf(srv->error, sizeof srv->error, "%s", err);
        goto out;
    }
    if (r.status < 200 || r.status >= 300)
        goto out; /* an older or guarded server: the defaults stand */
    root = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
    json_t *max = json_object_get(json_object_get(root, "limits"), "max_body_bytes");
    if (json_is_integer(max) && json_integer_value(max) >= 1024)
        srv->max_body = (size_t)json_integer_value(max);
    const char *db = json_string_value(json_object_get(root, "default_db"));
    if (!o->db && db && cli_valid_db_name(db))
        snprintf(srv->db, sizeof srv->db, "%s", db);
out:
    json_decref(root);
    cli_response_cleanup(&r);
}

/* ---- the documents a collection holds (for --sync) ---- */

static int known_cmp(const void *a, const void *b)
{
    return strcmp(((const cli_known *)a)->id, ((const cli_known *)b)->id);
}

void cli_known_cleanup(cli_known_set *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->docs[i].id);
    free(k->docs);
    memset(k, 0, sizeof *k);
}

cli_known *cli_known_find(const cli_known_set *k, const char *id)
{
    cli_known key = {.id = (char *)id};
    return k->n ? bsearch(&key, k->docs, k->n, sizeof key, known_cmp) : NULL;
}

/* Appends the documents of one listing page; RAGD_EINVAL when the page is not one. */
static ragd_err known_add_page(cli_known_set *k, json_t *docs)
{
    size_t i;
    json_t *d;
    json_array_foreach(docs, i, d) {
        const char *id = json_string_value(json_object_get(d, "id"));
        const char *hash = json_string_value(json_object_get(d, "content_hash"));
        if (!id)
            return RAGD_EINVAL;
        if (k->n == k->alloc) {
            size_t na = k->alloc ? k->alloc * 2 : 256;
            cli_known *nd = realloc(k->docs, na * sizeof *nd);
            if (!nd)
                return RAGD_ENOMEM;
            k->docs = nd;
            k->alloc = na;
        }
        cli_known *e = &k->docs[k->n];
        memset(e, 0, sizeof *e);
        e->id = strdup(id);
        if (!e->id)
            return RAGD_ENOMEM;
        snprintf(e->hash, sizeof e->hash, "%s", hash ? hash : "");
        k->n++;
    }
    return RAGD_OK;
}

/* Keeps one entry per id. Pages are read at offsets, so a document added or removed while
 * they are read shifts the next page and an id can come twice; a second entry that no
 * walked file marks present would send its document to DELETE. */
static void known_drop_repeats(cli_known_set *k)
{
    size_t out = 0;
    for (size_t i = 0; i < k->n; i++) {
        if (out > 0 && strcmp(k->docs[out - 1].id, k->docs[i].id) == 0) {
            free(k->docs[i].id);
            continue;
        }
        k->docs[out++] = k->docs[i];
    }
    k->n = out;
}

bool cli_known_fetch(const cli_opts *o, const char *db, cli_known_set *k)
{
    bool ok = false;
    long long offset = 0;
    cli_response r;
    cli_response_init(&r);
    strbuf path;
    strbuf_init(&path, 1024);
    json_t *root = NULL;
    memset(k, 0, sizeof *k);
    for (;;) {
        char err[512];
        strbuf_reset(&path);
        if (strbuf_appendf(&path, "/api/dbs/%s/documents?limit=1000&offset=%lld", db, offset)) {
            fprintf(stderr, "ragd: out of memory\n");
            goto out;
        }
        cli_response_cleanup(&r);
        if (cli_http(o->url, path.data, NULL, 0, CLI_SHORT_TIMEOUT_S, NULL, NULL, &r, err,
                     sizeof err) != RAGD_OK) {
            fprintf(stderr, "ragd: %s\n", err);
            goto out;
        }
        if (r.status == 404 && offset == 0) {
            ok = true; /* no such collection yet: it holds nothing, the first ingest creates it */
            goto out;
        }
        json_decref(root);
        root = cli_answer_object(&r);
        json_t *docs = root ? json_object_get(root, "documents") : NULL;
        if (!json_is_array(docs)) {
            if (root)
                fprintf(stderr, "ragd: the server's document listing has no \"documents\" list\n");
            goto out;
        }
        if (k->n > CLI_MAX_KNOWN) {
            fprintf(stderr, "ragd: the server's document listing does not end (over %d documents)\n",
                    CLI_MAX_KNOWN);
            goto out;
        }
        ragd_err e = known_add_page(k, docs);
        if (e) {
            fprintf(stderr, "ragd: %s\n", e == RAGD_ENOMEM ? "out of memory" : "a listed document has no id");
            goto out;
        }
        size_t got = json_array_size(docs);
        offset += (long long)got;
        bool truncated = json_is_true(json_object_get(root, "truncated"));
        long long total = json_integer_value(json_object_get(root, "total"));
        if (got == 0 || (!truncated && (got < 1000 || offset >= total)))
            break;
    }
    if (k->n > 1)
        qsort(k->docs, k->n, sizeof *k->docs, known_cmp);
    known_drop_repeats(k);
    ok = true;
out:
    if (!ok)
        cli_known_cleanup(k);
    json_decref(root);
    strbuf_cleanup(&path);
    cli_response_cleanup(&r);
    return ok;
}

/* ---- the files --watch saw last round ---- */

void cli_stat_cache_cleanup(cli_stat_cache *c)
{
    for (size_t i = 0; i < c->n; i++)
        free(c->e[i].path);
    free(c->e);
    memset(c, 0, sizeof *c);
}

static int stat_entry_cmp(const void *a, const void *b)
{
    return strcmp(((const cli_stat_entry *)a)->path, ((const cli_stat_entry *)b)->path);
}

static void stat_entry_fill(cli_stat_entry *e, const struct stat *st)
{
    e->dev = (unsigned long long)st->st_dev;
    e->ino = (unsigned long long)st->st_ino;
    e->size = (unsigned long long)st->st_size;
    e->mtime_s = (long long)st->st_mtim.tv_sec;
    e->mtime_ns = (long long)st->st_mtim.tv_nsec;
    e->ctime_s = (long long)st->st_ctim.tv_sec;
    e->ctime_ns = (long long)st->st_ctim.tv_nsec;
}

/* What was remembered of path when the file looks untouched since, else NULL. */
static const cli_stat_entry *stat_cache_find(const cli_stat_cache *c, const char *path, const struct stat *st)
{
    if (!c || c->n == 0)
        return NULL;
    cli_stat_entry key = {.path = (char *)path}, now;
    const cli_stat_entry *e = bsearch(&key, c->e, c->n, sizeof key, stat_entry_cmp);
    if (!e)
        return NULL;
    stat_entry_fill(&now, st);
    bool same = e->dev == now.dev && e->ino == now.ino && e->size == now.size && e->mtime_s == now.mtime_s &&
                e->mtime_ns == now.mtime_ns && e->ctime_s == now.ctime_s && e->ctime_ns == now.ctime_ns;
    return same ? e : NULL;
}

/* Remembers path's stat and hash for the next round; a failure only costs a read then. */
static void stat_cache_put(cli_stat_cache *c, const char *path, const struct stat *st, const char *hash,
                           bool refused)
{
    if (c->n == c->alloc) {
        size_t na = c->alloc ? c->alloc * 2 : 256;
        cli_stat_entry *ne = realloc(c->e, na * sizeof *ne);
        if (!ne)
            return;
        c->e = ne;
        c->alloc = na;
    }
    cli_stat_entry *e = &c->e[c->n];
    e->path = strdup(path);
    if (!e->path)
        return;
    stat_entry_fill(e, st);
    snprintf(e->hash, sizeof e->hash, "%s", hash);
    e->refused = refused;
    c->n++;
}

/* Marks this round's entry of path refused (the entries are still in the order put). */
static void stat_cache_mark_refused(cli_stat_cache *c, const char *path)
{
    for (size_t i = c->n; i-- > 0;) {
        if (strcmp(c->e[i].path, path) == 0) {
            c->e[i].refused = true;
            return;
        }
    }
}

/* ---- the command ---- */

/* A file waiting in a JSON batch: where its document sits in the body, and what a
 * success means for --sync. */
typedef struct {
    const cli_file *file;
    size_t off, len;
    cli_change change;
} pending;

/* A request slot and its sender thread. The main thread fills a FREE slot and makes it
 * BUSY; the sender sends it and makes it DONE; the main thread takes the answer and makes
 * it FREE again. The state changes under the ingest's mutex, and every other field belongs
 * to whoever's turn it is, so the totals, the progress bar and stderr are the main
 * thread's alone (no lock around them). */
typedef enum { SLOT_FREE, SLOT_BUSY, SLOT_DONE } slot_state;

typedef struct {
    struct ingest *in;
    pthread_t thread;
    slot_state state;
    /* the request: a JSON batch (nqueued > 0) or one raw body (raw_file set) */
    cli_batch batch;
    pending *queued; /* the batch's files, o->batch of them at most */
    size_t nqueued;
    const cli_file *raw_file;
    char *raw_data; /* owned */
    cli_change raw_change;
    strbuf raw_path;
    cli_request q;
    /* the answer */
    ragd_err sent;
    cli_response r;
    char err[512];
} ingest_slot;

typedef struct ingest {
    const cli_opts *o;
    const cli_server *srv;
    cli_pass *pass;
    cli_known_set *known; /* --sync: what the collection holds; NULL otherwise */
    cli_stat_cache *old_cache; /* --watch: the last round's files (NULL: none kept) */
    cli_stat_cache new_cache;  /* this round's, replacing it at the end */
    cli_batch batch;           /* the batch being filled (swapped with a slot's on sending) */
    pending *queued;
    size_t nqueued;
    progress prog;
    /* requests in flight: slots[0..nthreads) have a running sender */
    ingest_slot *slots;
    size_t nslots, nthreads;
    bool window_ready; /* mu and cond initialised */
    pthread_mutex_t mu;
    pthread_cond_t cond; /* a slot changed state, or quit was set */
    bool quit;
    /* the first failure that ends the run: printed once nothing is in flight */
    bool fatal, fatal_printed;
    char fatal_msg[512];
} ingest;

static void ingest_count_success(ingest *in, cli_change change)
{
    cli_pass *p = in->pass;
    p->sent++;
    if (change == CLI_CHANGE_ADDED)
        p->added++;
    else if (change == CLI_CHANGE_CHANGED)
        p->changed++;
}

/* Adds a 2xx ingest answer's counts. */
static bool ingest_take_answer(ingest *in, const cli_response *r, char *err, size_t errlen)
{
    json_t *root = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);
    if (!json_is_object(root)) {
        json_decref(root);
        snprintf(err, errlen, "the server's answer to an ingest is not a JSON object");
        return false;
    }
    in->pass->documents += json_integer_value(json_object_get(root, "documents"));
    in->pass->chunks += json_integer_value(json_object_get(root, "chunks"));
    in->pass->duplicates += json_integer_value(json_object_get(root, "duplicates"));
    json_decref(root);
    return true;
}

/* A refusal that concerns the documents sent, not the server or the connection: the file
 * is reported and counted, and the run goes on. */
static bool ingest_per_file_status(long status)
{
    return status == 413 || status == 415 || status == 422;
}

static void ingest_file_failed(ingest *in, const cli_file *f, const char *msg)
{
    stat_cache_mark_refused(&in->new_cache, f->path);
    in->pass->failed++;
    in->prog.done++;
    char shown[CLI_SHOWN_PATH];
    progress_warn(&in->prog, "ragd: error: %s: %s\n", cli_printable(f->path, shown, sizeof shown), msg);
}

/* Records a failure that ends the run: no new request is handed out from now on, and the
 * first such message is printed by ingest_fatal_print once the requests in flight have
 * answered (so it counts every file they got in). */
static void ingest_fatal(ingest *in, const char *msg)
{
    if (in->fatal)
        return;
    snprintf(in->fatal_msg, sizeof in->fatal_msg, "%s", msg);
    in->fatal = true;
}

static void ingest_fatal_print(ingest *in)
{
    if (!in->fatal || in->fatal_printed)
        return;
    progress_clear(&in->prog);
    if (in->pass->sent > 0)
        fprintf(stderr, "ragd: %s (%zu files were ingested before this failure)\n", in->fatal_msg,
                in->pass->sent);
    else
        fprintf(stderr, "ragd: %s\n", in->fatal_msg);
    in->fatal_printed = true;
}

/* Judges one exchange: returns the response status, or 0 after a fatal failure (recorded):
 * no answer, a status that is not per-file (5xx, 401, 429...), a 2xx that is not JSON. */
static long ingest_judge(ingest *in, ragd_err sent, const char *send_err, cli_response *r)
{
    char err[512];
    if (sent != RAGD_OK) {
        ingest_fatal(in, send_err);
        return 0;
    }
    if (r->status >= 200 && r->status < 300) {
        if (!ingest_take_answer(in, r, err, sizeof err)) {
            ingest_fatal(in, err);
            return 0;
        }
    } else if (!ingest_per_file_status(r->status)) {
        cli_http_error_message(r, err, sizeof err);
        ingest_fatal(in, err);
        return 0;
    }
    return r->status;
}

/* Sends one document of a refused batch alone, from the main thread, to learn whether it
 * is the one at fault. Returns false after a fatal failure (recorded). */
static bool ingest_send_alone(ingest *in, const cli_batch *from, const pending *p)
{
    cli_response r;
    cli_response_init(&r);
    strbuf body;
    strbuf_init(&body, from->body_cap);
    const char *doc = from->body.data + p->off;
    bool ok = false;
    char err[512];
    if (strbuf_appends(&body, from->prefix) || strbuf_append(&body, doc, p->len) ||
        strbuf_append(&body, "]}", 2)) {
        ingest_fatal(in, "out of memory");
        goto out;
    }
    cli_request q = {.method = "POST", .path = "/api/ingest", .body = body.data, .len = body.len,
                     .timeout_s = CLI_INGEST_TIMEOUT_S};
    ragd_err sent = cli_http_send(in->o->url, &q, &r, err, sizeof err);
    long status = ingest_judge(in, sent, err, &r);
    if (status == 0)
        goto out;
    if (status >= 200 && status < 300) {
        ingest_count_success(in, p->change);
        in->prog.done++;
        progress_draw(&in->prog);
    } else {
        char msg[512];
        cli_http_error_message(&r, msg, sizeof msg);
        ingest_file_failed(in, p->file, msg);
    }
    ok = true;
out:
    strbuf_cleanup(&body);
    cli_response_cleanup(&r);
    return ok;
}

/* ---- requests in flight ---- */

static void *ingest_sender_main(void *arg)
{
    ingest_slot *s = arg;
    ingest *in = s->in;
    pthread_mutex_lock(&in->mu);
    for (;;) {
        while (s->state != SLOT_BUSY && !in->quit)
            pthread_cond_wait(&in->cond, &in->mu);
        if (s->state != SLOT_BUSY)
            break; /* quit, and nothing to send */
        pthread_mutex_unlock(&in->mu);
        s->sent = cli_http_send(in->o->url, &s->q, &s->r, s->err, sizeof s->err);
        pthread_mutex_lock(&in->mu);
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&in->cond);
    }
    pthread_mutex_unlock(&in->mu);
    return NULL;
}

/* Takes a DONE slot's answer into the totals, as the one-request-at-a-time loop did: a
 * success counts its files; a per-file refusal names the file, or (a batch of several)
 * re-sends each document alone from here; anything else is fatal. Then frees the slot.
 * Main thread, mu not held. */
static void ingest_slot_finish(ingest *in, ingest_slot *s)
{
    long status = ingest_judge(in, s->sent, s->err, &s->r);
    if (status >= 200 && status < 300) {
        if (s->raw_file)
            ingest_count_success(in, s->raw_change);
        for (size_t i = 0; i < s->nqueued; i++)
            ingest_count_success(in, s->queued[i].change);
        in->prog.done += s->raw_file ? 1 : s->nqueued;
        progress_draw(&in->prog);
    } else if (status != 0 && (s->raw_file || s->nqueued == 1)) {
        char msg[512];
        cli_http_error_message(&s->r, msg, sizeof msg);
        ingest_file_failed(in, s->raw_file ? s->raw_file : s->queued[0].file, msg);
    } else if (status != 0) {
        for (size_t i = 0; i < s->nqueued && !in->fatal; i++)
            (void)ingest_send_alone(in, &s->batch, &s->queued[i]);
    }
    cli_response_cleanup(&s->r);
    cli_response_init(&s->r);
    cli_batch_reset(&s->batch);
    s->nqueued = 0;
    free(s->raw_data);
    s->raw_data = NULL;
    s->raw_file = NULL;
    strbuf_reset(&s->raw_path);
    pthread_mutex_lock(&in->mu);
    s->state = SLOT_FREE;
    pthread_mutex_unlock(&in->mu);
}

/* Returns a FREE slot for the next request, waiting for one when all are in flight. Every
 * answer already in is taken first, so a failure that has arrived stops the sending.
 * NULL once the run has failed (recorded). */
static ingest_slot *ingest_slot_get(ingest *in)
{
    for (;;) {
        ingest_slot *done = NULL, *free_slot = NULL;
        pthread_mutex_lock(&in->mu);
        while (!done && !free_slot) {
            for (size_t i = 0; i < in->nthreads; i++) {
                if (!done && in->slots[i].state == SLOT_DONE)
                    done = &in->slots[i];
                if (!free_slot && in->slots[i].state == SLOT_FREE)
                    free_slot = &in->slots[i];
            }
            if (!done && !free_slot)
                pthread_cond_wait(&in->cond, &in->mu);
        }
        pthread_mutex_unlock(&in->mu);
        if (!done)
            return in->fatal ? NULL : free_slot;
        ingest_slot_finish(in, done);
    }
}

static void ingest_slot_submit(ingest *in, ingest_slot *s)
{
    pthread_mutex_lock(&in->mu);
    s->state = SLOT_BUSY;
    pthread_cond_broadcast(&in->cond);
    pthread_mutex_unlock(&in->mu);
}

/* Waits until no request is in flight, taking each answer as it comes. Main thread. */
static void ingest_wait_all(ingest *in)
{
    if (!in->window_ready)
        return;
    for (;;) {
        ingest_slot *done = NULL;
        bool busy = true;
        pthread_mutex_lock(&in->mu);
        while (!done && busy) {
            busy = false;
            for (size_t i = 0; i < in->nthreads; i++) {
                if (!done && in->slots[i].state == SLOT_DONE)
                    done = &in->slots[i];
                busy = busy || in->slots[i].state == SLOT_BUSY;
            }
            if (!done && busy)
                pthread_cond_wait(&in->cond, &in->mu);
        }
        pthread_mutex_unlock(&in->mu);
        if (!done)
            return;
        ingest_slot_finish(in, done);
    }
}

/* Sets up o->jobs slots, each with a batch of its own, and starts their senders. Fewer
 * threads than asked is accepted; none is an error. False when out of memory or threads. */
static bool ingest_window_start(ingest *in)
{
    size_t jobs = (size_t)in->o->jobs;
    in->slots = calloc(jobs, sizeof *in->slots);
    if (!in->slots)
        return false;
    for (size_t i = 0; i < jobs; i++) {
        ingest_slot *s = &in->slots[i];
        s->in = in;
        strbuf_init(&s->raw_path, 8192);
        cli_response_init(&s->r);
        s->queued = calloc((size_t)in->o->batch, sizeof *s->queued);
        if (!s->queued || cli_batch_init(&s->batch, in->o->db, (size_t)in->o->batch, CLI_BATCH_BYTES,
                                         in->srv->max_body) != RAGD_OK) {
            free(s->queued);
            strbuf_cleanup(&s->raw_path);
            return false;
        }
        in->nslots++;
    }
    pthread_mutex_init(&in->mu, NULL);
    pthread_cond_init(&in->cond, NULL);
    in->window_ready = true;
    for (size_t i = 0; i < jobs; i++) {
        if (pthread_create(&in->slots[i].thread, NULL, ingest_sender_main, &in->slots[i]) != 0)
            break;
        in->nthreads++;
    }
    return in->nthreads > 0;
}

/* Waits for the requests in flight, stops the senders and frees the slots. */
static void ingest_window_stop(ingest *in)
{
    if (in->window_ready) {
        ingest_wait_all(in);
        pthread_mutex_lock(&in->mu);
        in->quit = true;
        pthread_cond_broadcast(&in->cond);
        pthread_mutex_unlock(&in->mu);
        for (size_t i = 0; i < in->nthreads; i++)
            pthread_join(in->slots[i].thread, NULL);
        pthread_cond_destroy(&in->cond);
        pthread_mutex_destroy(&in->mu);
        in->window_ready = false;
    }
    for (size_t i = 0; i < in->nslots; i++) {
        ingest_slot *s = &in->slots[i];
        cli_batch_cleanup(&s->batch);
        free(s->queued);
        free(s->raw_data);
        strbuf_cleanup(&s->raw_path);
        cli_response_cleanup(&s->r);
    }
    free(in->slots);
    in->slots = NULL;
    in->nslots = in->nthreads = 0;
}

/* ---- sending ---- */

/* Hands the current batch to a slot (its emptied batch comes back to fill), so that up to
 * o->jobs requests are in flight. Returns false once the run has failed. */
static bool ingest_flush(ingest *in)
{
    if (in->nqueued == 0)
        return true;
    size_t len = 0;
    const char *body = cli_batch_finish(&in->batch, &len);
    if (!body) {
        ingest_fatal(in, "out of memory");
        return false;
    }
    ingest_slot *s = ingest_slot_get(in);
    if (!s)
        return false;
    cli_batch filled = in->batch;
    in->batch = s->batch;
    s->batch = filled;
    pending *files = in->queued;
    in->queued = s->queued;
    s->queued = files;
    s->nqueued = in->nqueued;
    in->nqueued = 0;
    s->q = (cli_request){.method = "POST", .path = "/api/ingest", .body = s->batch.body.data,
                         .len = len, .timeout_s = CLI_INGEST_TIMEOUT_S};
    ingest_slot_submit(in, s);
    return true;
}

/* /api/ingest?db=D&id=ID&source=S for a raw body. */
static ragd_err ingest_raw_path(strbuf *sb, const ingest *in, const cli_file *f)
{
    const char *source = utf8_valid(f->path, strlen(f->path)) ? f->path : f->id;
    ragd_err e = strbuf_appends(sb, "/api/ingest?id=");
    if (!e)
        e = cli_url_escape(sb, f->id, false);
    if (!e)
        e = strbuf_appends(sb, "&source=");
    if (!e)
        e = cli_url_escape(sb, source, false);
    if (!e && in->o->db) /* else the server's default collection, as for a JSON batch */
        e = strbuf_appendf(sb, "&db=%s", in->o->db);
    return e;
}

/* Sends a file that is not UTF-8 text of a known kind as a raw body, alone, in a slot of
 * its own; takes *data (the whole file, len bytes) when it does. Returns false once the run
 * has failed. */
static bool ingest_raw(ingest *in, const cli_file *f, char **data, size_t len, cli_change change)
{
    ingest_slot *s = ingest_slot_get(in);
    if (!s)
        return false;
    if (ingest_raw_path(&s->raw_path, in, f) != RAGD_OK) {
        strbuf_reset(&s->raw_path);
        ingest_file_failed(in, f, "its id or path is too long for a URL");
        return true;
    }
    s->raw_file = f;
    s->raw_data = *data;
    *data = NULL;
    s->raw_change = change;
    s->q = (cli_request){.method = "POST", .path = s->raw_path.data, .body = s->raw_data,
                         .len = len, .content_type = f->content_type,
                         .timeout_s = CLI_INGEST_TIMEOUT_S};
    ingest_slot_submit(in, s);
    return true;
}

static void ingest_skip(ingest *in, size_t *counter, const char *path, const char *why)
{
    (*counter)++;
    in->prog.skipped++;
    in->prog.done++;
    char shown[CLI_SHOWN_PATH];
    if (why)
        progress_warn(&in->prog, "ragd: warning: skipping %s: %s\n", cli_printable(path, shown, sizeof shown), why);
    else
        progress_draw(&in->prog);
}

/* Queues a UTF-8 text file in the JSON batch, sending the batch first when it is full. */
static bool ingest_json(ingest *in, const cli_file *f, const char *text, size_t len,
                        cli_change change)
{
    char *doc = cli_doc_json(f, text, len);
    bool ok = false;
    if (!doc) {
        ingest_fatal(in, "out of memory");
        return false;
    }
    size_t n = strlen(doc);
    if ((cli_batch_full(&in->batch, n) || in->nqueued >= (size_t)in->o->batch) && !ingest_flush(in))
        goto out;
    ragd_err e = cli_batch_add(&in->batch, doc, n);
    if (e == RAGD_ETOOBIG && in->batch.ndocs > 0) {
        /* Fits no partly filled request: send what is queued and retry alone. */
        if (!ingest_flush(in))
            goto out;
        e = cli_batch_add(&in->batch, doc, n);
    }
    if (e == RAGD_ETOOBIG) {
        char why[200];
        snprintf(why, sizeof why,
                 "over the server's limit of %zu bytes per request once encoded as JSON "
                 "(RAGD_MAX_BODY_BYTES)",
                 in->srv->max_body);
        ingest_skip(in, &in->pass->too_big, f->path, why);
        ok = true;
        goto out;
    }
    if (e) {
        ingest_fatal(in, ragd_strerror(e));
        goto out;
    }
    in->queued[in->nqueued++] = (pending){
        .file = f, .off = in->batch.body.len - n, .len = n, .change = change};
    ok = true;
out:
    free(doc);
    return ok;
}

/* Reads one file and sends or queues it. Returns false on a failure that ends the run
 * (message already printed). */
static bool ingest_file(ingest *in, const cli_file *f)
{
    bool ok = false;
    char *data = NULL;
    size_t len = 0;
    char err[256];
    cli_pass *p = in->pass;
    if (f->junk && !in->o->all) {
        ingest_skip(in, &p->junk, f->path, NULL);
        return true;
    }
    struct stat st;
    bool have_stat = in->known && in->old_cache && stat(f->path, &st) == 0;
    const cli_stat_entry *remembered = have_stat ? stat_cache_find(in->old_cache, f->path, &st) : NULL;
    if (remembered && remembered->refused) {
        /* refused last round, untouched since: the same bytes would be refused again */
        stat_cache_put(&in->new_cache, f->path, &st, remembered->hash, true);
        ingest_skip(in, &p->refused_before, f->path, NULL);
        return true;
    }
    cli_known *same = remembered ? cli_known_find(in->known, f->id) : NULL;
    if (same && strcmp(same->hash, remembered->hash) == 0) {
        /* untouched since the last round, and the server holds these bytes: not read again */
        stat_cache_put(&in->new_cache, f->path, &st, remembered->hash, false);
        p->unchanged++;
        in->prog.done++;
        return true;
    }
    ragd_err e = cli_read_bytes(f->path, in->srv->max_body, &data, &len, err, sizeof err);
    if (e == RAGD_ENOMEM) {
        ingest_fatal(in, "out of memory reading a file");
        goto out;
    }
    if (e == RAGD_ETOOBIG) {
        char why[200];
        snprintf(why, sizeof why, "larger than the server's limit of %zu bytes (RAGD_MAX_BODY_BYTES)",
                 in->srv->max_body);
        ingest_skip(in, &p->too_big, f->path, why);
        ok = true;
        goto out;
    }
    if (e) {
        ingest_skip(in, &p->unreadable, f->path, err);
        ok = true;
        goto out;
    }
    size_t start = f->text_kind ? cli_text_start(data, len) : SIZE_MAX;
    bool as_json = start != SIZE_MAX;
    const char *send = as_json ? data + start : data;
    size_t send_len = as_json ? len - start : len;
    if (send_len == 0) {
        ingest_skip(in, &p->empty, f->path, "empty file");
        ok = true;
        goto out;
    }
    cli_change change = CLI_CHANGE_ADDED;
    if (in->known) {
        /* The server keeps the SHA-256 of the bytes it was sent: the same bytes, no change. */
        char hash[65];
        hash_sha256_hex(send, send_len, hash);
        if (have_stat)
            stat_cache_put(&in->new_cache, f->path, &st, hash, false);
        cli_known *k = cli_known_find(in->known, f->id);
        if (k && strcmp(k->hash, hash) == 0) {
            p->unchanged++;
            in->prog.done++;
            progress_draw(&in->prog);
            ok = true;
            goto out;
        }
        change = k ? CLI_CHANGE_CHANGED : CLI_CHANGE_ADDED;
    }
    /* a raw body is the whole file (send == data): the slot takes it */
    ok = as_json ? ingest_json(in, f, send, send_len, change)
                 : ingest_raw(in, f, &data, send_len, change);
out:
    free(data);
    return ok;
}

/* DELETE /api/dbs/DB/documents/ID; 404 counts as already gone. */
static bool ingest_remove(ingest *in, const char *id)
{
    bool ok = false;
    char err[512];
    cli_response r;
    cli_response_init(&r);
    strbuf path;
    strbuf_init(&path, 8192);
    if (strbuf_appendf(&path, "/api/dbs/%s/documents/", in->srv->db) ||
        cli_url_escape(&path, id, true)) {
        ingest_fatal(in, "a document id is too long for a URL");
        goto out;
    }
    cli_request q = {.method = "DELETE", .path = path.data, .timeout_s = CLI_SHORT_TIMEOUT_S};
    if (cli_http_send(in->o->url, &q, &r, err, sizeof err) != RAGD_OK) {
        ingest_fatal(in, err);
        goto out;
    }
    if ((r.status < 200 || r.status >= 300) && r.status != 404) {
        cli_http_error_message(&r, err, sizeof err);
        ingest_fatal(in, err);
        goto out;
    }
    in->pass->removed++;
    ok = true;
out:
    strbuf_cleanup(&path);
    cli_response_cleanup(&r);
    return ok;
}

/* Appends ", N what" to the reasons list when n > 0. */
static void add_reason(strbuf *sb, size_t n, const char *what)
{
    if (n == 0)
        return;
    ragd_err e = strbuf_appendf(sb, "%s%zu %s", sb->len ? ", " : "", n, what);
    (void)e; /* a truncated summary is harmless */
}

static void ingest_summary(const ingest *in, const cli_walk *w)
{
    const cli_pass *p = in->pass;
    strbuf why;
    strbuf_init(&why, 1024);
    add_reason(&why, p->junk, "not a document type");
    add_reason(&why, p->too_big, "too big");
    add_reason(&why, p->empty, "empty");
    add_reason(&why, p->refused_before, "refused before and unchanged since");
    add_reason(&why, p->unreadable + w->errors, "unreadable");
    add_reason(&why, w->bad_name, "unusable name");
    add_reason(&why, w->dup_ids, "duplicate id");
    add_reason(&why, w->symlink_dirs, "symlinked folder");
    char failed[64] = "";
    if (p->failed)
        snprintf(failed, sizeof failed, ", %zu failed", p->failed);
    char unchanged[64] = "";
    if (in->known)
        snprintf(unchanged, sizeof unchanged, ", %zu unchanged", p->unchanged);
    fprintf(stderr, "ragd: %zu files: %zu sent%s%s, %zu skipped%s%s%s\n", in->prog.total, p->sent,
            unchanged, failed, in->prog.skipped, why.len ? " (" : "", why.len ? why.data : "",
            why.len ? ")" : "");
    strbuf_cleanup(&why);
}

/* True when SIGINT or SIGTERM waits (--watch blocks them to end between files). */
static bool ingest_stop_requested(void)
{
    sigset_t pend;
    return sigpending(&pend) == 0 && (sigismember(&pend, SIGINT) == 1 || sigismember(&pend, SIGTERM) == 1);
}

int cli_ingest_pass(const cli_opts *o, const cli_server *srv, bool sync, bool show_progress,
                    cli_stat_cache *cache, cli_pass *pass)
{
    int status = CLI_EXIT_FAIL;
    char err[512];
    cli_walk w;
    cli_walk_init(&w);
    w.id_prefix = o->id_prefix;
    w.all = o->all;
    cli_known_set known;
    memset(&known, 0, sizeof known);
    ingest in;
    memset(&in, 0, sizeof in);
    memset(pass, 0, sizeof *pass);
    in.o = o;
    in.srv = srv;
    in.pass = pass;
    in.old_cache = cache;
    bool batch_ready = false;

    for (size_t i = 0; sync && !o->id_prefix && i < o->nargs; i++) {
        /* "/" gives ids with no folder name in front ("etc/x"): every id of the collection
         * would be under it, and each one no file has (JSON documents...) would be deleted */
        char *real = realpath(o->args[i], NULL);
        bool is_root = real && strcmp(real, "/") == 0;
        free(real);
        if (is_root) {
            fprintf(stderr, "ragd: --sync of '/' would take every document of the collection for "
                            "one of its files: give --id-prefix (e.g. --id-prefix host1/)\n");
            goto out;
        }
    }
    for (size_t i = 0; i < o->nargs; i++) {
        ragd_err e = cli_walk_add(&w, o->args[i], stderr, err, sizeof err);
        if (e) {
            fprintf(stderr, "ragd: %s\n", err);
            goto out;
        }
    }
    if (cli_walk_dedupe(&w, stderr) != RAGD_OK) {
        fprintf(stderr, "ragd: out of memory\n");
        goto out;
    }
    if (w.n == 0 && !sync) {
        fprintf(stderr, "ragd: nothing to ingest: no files found, %zu skipped\n",
                cli_walk_skipped(&w));
        goto out;
    }
    if (sync) {
        if (!cli_known_fetch(o, srv->db, &known))
            goto out;
        in.known = &known;
    }
    in.queued = calloc((size_t)o->batch, sizeof *in.queued);
    if (!in.queued ||
        cli_batch_init(&in.batch, o->db, (size_t)o->batch, CLI_BATCH_BYTES, srv->max_body) != RAGD_OK) {
        fprintf(stderr, "ragd: out of memory\n");
        goto out;
    }
    batch_ready = true;
    if (!ingest_window_start(&in)) {
        fprintf(stderr, "ragd: out of memory or threads for the requests in flight\n");
        goto out;
    }
    in.prog.f = stderr;
    in.prog.tty = show_progress && isatty(STDERR_FILENO) == 1;
    in.prog.skipped = cli_walk_skipped(&w);
    in.prog.total = w.n + in.prog.skipped;
    in.prog.done = in.prog.skipped;
    progress_draw(&in.prog);

    for (size_t i = 0; i < w.n; i++) {
        cli_known *k = in.known ? cli_known_find(in.known, w.files[i].id) : NULL;
        if (k)
            k->present = true; /* a file has this id, sent or not: its document stays */
        if (ingest_stop_requested()) {
            ingest_fatal(&in, "interrupted");
            goto out;
        }
        if (!ingest_file(&in, &w.files[i]) || in.fatal)
            goto out;
    }
    if (!ingest_flush(&in))
        goto out;
    ingest_wait_all(&in); /* every send answered before a document is removed */
    if (in.fatal)
        goto out;
    for (size_t i = 0; i < known.n; i++) {
        /* under a walked root, no file any more: the file was deleted or moved away */
        if (!known.docs[i].present && cli_walk_covers(&w, known.docs[i].id) &&
            !ingest_remove(&in, known.docs[i].id))
            goto out;
    }
    if (in.prog.tty) {
        /* Leave the finished bar on screen. */
        progress_draw(&in.prog);
        fputc('\n', stderr);
        in.prog.shown = false;
    }
    ingest_summary(&in, &w);
    if (sync) {
        printf("synced %s: %zu added, %zu changed, %zu unchanged, %zu removed%s\n", srv->db,
               pass->added, pass->changed, pass->unchanged, pass->removed,
               pass->failed ? " (some files failed: see above)" : "");
    } else if (pass->sent > 0) {
        printf("ingested %lld documents (%lld chunks, %lld duplicates) into %s\n", pass->documents,
               pass->chunks, pass->duplicates, srv->db);
    }
    fflush(stdout);
    if (pass->failed > 0) {
        fprintf(stderr, "ragd: %zu files could not be ingested (see the errors above)\n", pass->failed);
        goto out;
    }
    if (!sync && pass->sent == 0) {
        fprintf(stderr, "ragd: nothing to ingest: every file was skipped\n");
        goto out;
    }
    status = CLI_EXIT_OK;
out:
    ingest_window_stop(&in); /* after a failure: the answers still in flight, then its message */
    ingest_fatal_print(&in);
    if (cache) { /* this round's files become the next round's memory */
        cli_stat_cache_cleanup(cache);
        *cache = in.new_cache;
        if (cache->n > 1)
            qsort(cache->e, cache->n, sizeof *cache->e, stat_entry_cmp);
    } else {
        cli_stat_cache_cleanup(&in.new_cache);
    }
    progress_clear(&in.prog);
    if (batch_ready)
        cli_batch_cleanup(&in.batch);
    free(in.queued);
    cli_known_cleanup(&known);
    cli_walk_cleanup(&w);
    return status;
}

int cli_cmd_ingest(const cli_opts *o)
{
    cli_server srv;
    cli_server_info(o, &srv);
    if (!srv.reached) {
        fprintf(stderr, "ragd: %s\n", srv.error);
        return CLI_EXIT_FAIL;
    }
    if (o->watch)
        return cli_watch(o, &srv);
    cli_pass pass;
    return cli_ingest_pass(o, &srv, o->sync, true, NULL, &pass);
}
