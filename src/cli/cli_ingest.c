/* `ragd ingest`: read the walked files, send them in JSON batches, show progress. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_int.h"
#include "util/utf8.h"

/* ---- reading one file ---- */

ragd_err cli_read_file(const char *path, size_t max, char **out, size_t *len, char *err,
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
    if (n >= 3 && memcmp(data, "\xEF\xBB\xBF", 3) == 0) {
        memmove(data, data + 3, n - 3 + 1);
        n -= 3;
    }
    if (!utf8_valid(data, n)) {
        free(data);
        e = RAGD_EINVAL;
        goto out;
    }
    *out = data;
    *len = n;
out:
    if (e == RAGD_ETOOBIG)
        snprintf(err, errlen, "larger than %zu MiB", max >> 20);
    else if (e == RAGD_EINVAL)
        snprintf(err, errlen, "not valid UTF-8 text");
    else if (e == RAGD_ENOMEM)
        snprintf(err, errlen, "out of memory");
    strbuf_cleanup(&sb);
    close(fd);
    return e;
}

char *cli_doc_json(const cli_file *f, const char *text, size_t len)
{
    char *out = NULL;
    json_t *doc = json_object();
    if (!doc)
        return NULL;
    /* The source is the path as given; when that is not UTF-8 (a folder argument with a
     * non-UTF-8 name) the id, which always is, stands in for it. */
    const char *source = utf8_valid(f->path, strlen(f->path)) ? f->path : f->id;
    if (json_object_set_new(doc, "id", json_string(f->id)) != 0 ||
        json_object_set_new(doc, "text", json_stringn(text, len)) != 0 ||
        json_object_set_new(doc, "source", json_string(source)) != 0 ||
        json_object_set_new(doc, "format", json_string(f->format)) != 0)
        goto out;
    out = json_dumps(doc, JSON_COMPACT);
out:
    json_decref(doc);
    return out;
}

/* ---- batches ---- */

ragd_err cli_batch_init(cli_batch *b, const char *db, size_t max_docs, size_t max_bytes)
{
    memset(b, 0, sizeof *b);
    strbuf_init(&b->body, CLI_MAX_BODY_BYTES);
    b->max_docs = max_docs;
    b->max_bytes = max_bytes < CLI_MAX_BODY_BYTES ? max_bytes : CLI_MAX_BODY_BYTES;
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
    if (n > CLI_MAX_BODY_BYTES || cli_batch_len_with(b, n) > CLI_MAX_BODY_BYTES)
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

/* ---- the command ---- */

/* Requests in flight at once: while the server's writer stores one batch, its workers
 * prepare the next ones (3 measured steadier than 2 on two cores; BENCHMARKS.md "Ingest
 * throughput (issue 11)"). */
#define INGEST_IN_FLIGHT 3

struct ingest;

/* A sender thread and the batch it posts (busy: from hand-over until its answer is in). */
typedef struct {
    struct ingest *in;
    cli_batch batch;
    size_t files;
    bool busy;
    pthread_t thread;
} ingest_sender;

typedef struct ingest {
    const cli_opts *o;
    cli_batch batch;
    progress prog;
    size_t in_batch; /* files in the batch being assembled */
    size_t sent;     /* files acknowledged by the server */
    long long documents, chunks, duplicates;
    char db[128];
    /* skip counts of the reading phase */
    size_t too_big, not_utf8, empty, unreadable, too_big_json;
    /* the senders; everything below is guarded by mu (the main thread alone prints) */
    ingest_sender senders[INGEST_IN_FLIGHT];
    size_t n_senders;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* a sender took a batch, finished one, or quit is set */
    size_t acked;        /* files acknowledged, not yet counted in prog.done */
    bool failed;         /* a request failed: send no more */
    bool quit;
    char failure[512];
} ingest;

/* Posts one batch and takes its answer into the totals (a sender thread, mu not held).
 * False with the one-line error in err on failure. */
static bool ingest_post(ingest *in, cli_batch *batch, char *err, size_t errlen)
{
    bool ok = false;
    cli_response r;
    cli_response_init(&r);
    json_t *root = NULL;
    size_t len = 0;
    const char *body = cli_batch_finish(batch, &len);
    if (!body) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    ragd_err e = cli_http(in->o->url, "/api/ingest", body, len, CLI_INGEST_TIMEOUT_S, NULL, NULL,
                          &r, err, errlen);
    if (e)
        goto out;
    if (r.status < 200 || r.status >= 300) {
        cli_http_error_message(&r, err, errlen);
        goto out;
    }
    root = json_loadb(r.body.data ? r.body.data : "", r.body.len, 0, NULL);
    if (!json_is_object(root)) {
        snprintf(err, errlen, "the server's answer to an ingest is not a JSON object");
        goto out;
    }
    pthread_mutex_lock(&in->mu);
    in->documents += json_integer_value(json_object_get(root, "documents"));
    in->chunks += json_integer_value(json_object_get(root, "chunks"));
    in->duplicates += json_integer_value(json_object_get(root, "duplicates"));
    const char *db = json_string_value(json_object_get(root, "db"));
    if (db)
        snprintf(in->db, sizeof in->db, "%s", db);
    pthread_mutex_unlock(&in->mu);
    ok = true;
out:
    json_decref(root);
    cli_response_cleanup(&r);
    return ok;
}

static void *ingest_sender_main(void *arg)
{
    ingest_sender *sd = arg;
    ingest *in = sd->in;
    char err[512];
    pthread_mutex_lock(&in->mu);
    for (;;) {
        while (!sd->busy && !in->quit)
            pthread_cond_wait(&in->cond, &in->mu);
        if (!sd->busy)
            break;
        pthread_mutex_unlock(&in->mu);
        bool ok = ingest_post(in, &sd->batch, err, sizeof err);
        pthread_mutex_lock(&in->mu);
        if (ok) {
            in->sent += sd->files;
            in->acked += sd->files;
        } else if (!in->failed) {
            in->failed = true;
            snprintf(in->failure, sizeof in->failure, "%s", err);
        }
        cli_batch_reset(&sd->batch);
        sd->busy = false;
        pthread_cond_broadcast(&in->cond);
    }
    pthread_mutex_unlock(&in->mu);
    return NULL;
}

/* Counts acknowledged files into the progress bar; once every request has its answer
 * (settled), prints the failure, once, with every file acknowledged by then — the same
 * count whichever request the server answered first. Main thread, mu held. */
static void ingest_show(ingest *in, bool settled)
{
    if (in->acked) {
        in->prog.done += in->acked;
        in->acked = 0;
        progress_draw(&in->prog);
    }
    if (settled && in->failed && in->failure[0]) {
        progress_clear(&in->prog);
        if (in->sent > 0)
            fprintf(stderr, "ragd: %s (%zu files were ingested before this failure)\n", in->failure,
                    in->sent);
        else
            fprintf(stderr, "ragd: %s\n", in->failure);
        in->failure[0] = '\0';
    }
}

/* Hands the current batch to a free sender (waiting for one), so up to INGEST_IN_FLIGHT
 * requests are in flight. Returns false once a request has failed (ingest_senders_stop
 * prints it). */
static bool ingest_send(ingest *in)
{
    pthread_mutex_lock(&in->mu);
    ingest_sender *free_sender = NULL;
    while (!in->failed && !free_sender) {
        for (size_t i = 0; i < in->n_senders && !free_sender; i++)
            if (!in->senders[i].busy)
                free_sender = &in->senders[i];
        if (!free_sender)
            pthread_cond_wait(&in->cond, &in->mu);
        ingest_show(in, false);
    }
    bool ok = !in->failed;
    if (ok) {
        cli_batch assembled = in->batch; /* the sender's emptied batch comes back to assemble */
        in->batch = free_sender->batch;
        free_sender->batch = assembled;
        free_sender->files = in->in_batch;
        free_sender->busy = true;
        in->in_batch = 0;
        pthread_cond_broadcast(&in->cond);
    }
    ingest_show(in, false);
    pthread_mutex_unlock(&in->mu);
    return ok;
}

/* Starts the senders, each with a batch of its own. False when out of memory or threads. */
static bool ingest_senders_start(ingest *in)
{
    for (size_t i = 0; i < INGEST_IN_FLIGHT; i++) {
        ingest_sender *sd = &in->senders[i];
        sd->in = in;
        if (cli_batch_init(&sd->batch, in->o->db, (size_t)in->o->batch, CLI_BATCH_BYTES) != RAGD_OK)
            return false;
        if (pthread_create(&sd->thread, NULL, ingest_sender_main, sd) != 0) {
            cli_batch_cleanup(&sd->batch);
            return false;
        }
        in->n_senders++;
    }
    return true;
}

/* Waits for every request in flight, prints a failure, stops the senders and frees their
 * batches. Returns false when a request failed. */
static bool ingest_senders_stop(ingest *in)
{
    pthread_mutex_lock(&in->mu);
    for (;;) {
        bool busy = false;
        for (size_t i = 0; i < in->n_senders; i++)
            busy = busy || in->senders[i].busy;
        ingest_show(in, !busy);
        if (!busy)
            break;
        pthread_cond_wait(&in->cond, &in->mu);
    }
    in->quit = true;
    pthread_cond_broadcast(&in->cond);
    bool ok = !in->failed;
    pthread_mutex_unlock(&in->mu);
    for (size_t i = 0; i < in->n_senders; i++) {
        pthread_join(in->senders[i].thread, NULL);
        cli_batch_cleanup(&in->senders[i].batch);
    }
    in->n_senders = 0;
    return ok;
}

static void ingest_skip(ingest *in, size_t *counter, const char *path, const char *why)
{
    (*counter)++;
    in->prog.skipped++;
    in->prog.done++;
    if (why)
        progress_warn(&in->prog, "ragd: warning: skipping %s: %s\n", path, why);
    else
        progress_draw(&in->prog);
}

/* Reads one file and queues it, sending the batch first when it is full. Returns false on a
 * failure that ends the command (message already printed). */
static bool ingest_file(ingest *in, const cli_file *f)
{
    bool ok = false;
    char *text = NULL, *doc = NULL;
    size_t len = 0;
    char err[256];
    ragd_err e = cli_read_file(f->path, CLI_MAX_FILE_BYTES, &text, &len, err, sizeof err);
    if (e == RAGD_ENOMEM) {
        progress_clear(&in->prog);
        fprintf(stderr, "ragd: out of memory reading %s\n", f->path);
        goto out;
    }
    if (e) {
        size_t *c = e == RAGD_ETOOBIG ? &in->too_big
                    : e == RAGD_EINVAL ? &in->not_utf8
                                       : &in->unreadable;
        ingest_skip(in, c, f->path, err);
        ok = true;
        goto out;
    }
    if (len == 0) {
        ingest_skip(in, &in->empty, f->path, "empty file");
        ok = true;
        goto out;
    }
    doc = cli_doc_json(f, text, len);
    if (!doc) {
        progress_clear(&in->prog);
        fprintf(stderr, "ragd: out of memory encoding %s\n", f->path);
        goto out;
    }
    size_t n = strlen(doc);
    if (cli_batch_full(&in->batch, n) && !ingest_send(in))
        goto out;
    e = cli_batch_add(&in->batch, doc, n);
    if (e == RAGD_ETOOBIG && in->batch.ndocs > 0) {
        /* Fits no partly filled request: send what is queued and retry alone. */
        if (!ingest_send(in))
            goto out;
        e = cli_batch_add(&in->batch, doc, n);
    }
    if (e == RAGD_ETOOBIG) {
        ingest_skip(in, &in->too_big_json, f->path,
                    "larger than one request may be once encoded as JSON");
        ok = true;
        goto out;
    }
    if (e) {
        progress_clear(&in->prog);
        fprintf(stderr, "ragd: %s\n", ragd_strerror(e));
        goto out;
    }
    in->in_batch++;
    ok = true;
out:
    free(text);
    free(doc);
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
    strbuf why;
    strbuf_init(&why, 1024);
    add_reason(&why, w->unsupported, "unsupported type");
    add_reason(&why, in->too_big + in->too_big_json, "too big");
    add_reason(&why, in->not_utf8, "not UTF-8");
    add_reason(&why, in->empty, "empty");
    add_reason(&why, in->unreadable + w->errors, "unreadable");
    add_reason(&why, w->bad_name, "unusable name");
    add_reason(&why, w->dup_ids, "duplicate id");
    add_reason(&why, w->symlink_dirs, "symlinked folder");
    fprintf(stderr, "ragd: %zu files: %zu sent, %zu skipped%s%s%s\n", in->prog.total, in->sent,
            in->prog.skipped, why.len ? " (" : "", why.len ? why.data : "", why.len ? ")" : "");
    strbuf_cleanup(&why);
}

int cli_cmd_ingest(const cli_opts *o)
{
    int status = CLI_EXIT_FAIL;
    char err[512];
    cli_walk w;
    cli_walk_init(&w);
    ingest in;
    memset(&in, 0, sizeof in);
    in.o = o;
    snprintf(in.db, sizeof in.db, "%s", o->db ? o->db : "default");
    bool batch_ready = false;

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
    if (w.n == 0) {
        fprintf(stderr, "ragd: nothing to ingest: no supported files (.txt .text .md .markdown "
                        ".html .htm) found, %zu skipped\n",
                cli_walk_skipped(&w));
        goto out;
    }
    if (cli_batch_init(&in.batch, o->db, (size_t)o->batch, CLI_BATCH_BYTES) != RAGD_OK) {
        fprintf(stderr, "ragd: out of memory\n");
        goto out;
    }
    batch_ready = true;
    pthread_mutex_init(&in.mu, NULL);
    pthread_cond_init(&in.cond, NULL);
    if (!ingest_senders_start(&in)) {
        fprintf(stderr, "ragd: out of memory\n");
        goto out;
    }
    in.prog.f = stderr;
    in.prog.tty = isatty(STDERR_FILENO) == 1;
    in.prog.skipped = cli_walk_skipped(&w);
    in.prog.total = w.n + in.prog.skipped;
    in.prog.done = in.prog.skipped;
    progress_draw(&in.prog);

    bool sent_all = true;
    for (size_t i = 0; sent_all && i < w.n; i++)
        sent_all = ingest_file(&in, &w.files[i]);
    if (sent_all && in.batch.ndocs > 0)
        sent_all = ingest_send(&in);
    if (!ingest_senders_stop(&in) || !sent_all)
        goto out;
    if (in.prog.tty) {
        /* Leave the finished bar on screen. */
        progress_draw(&in.prog);
        fputc('\n', stderr);
        in.prog.shown = false;
    }
    ingest_summary(&in, &w);
    if (in.sent == 0) {
        fprintf(stderr, "ragd: nothing to ingest: every file was skipped\n");
        goto out;
    }
    printf("ingested %lld documents (%lld chunks, %lld duplicates) into %s\n", in.documents,
           in.chunks, in.duplicates, in.db);
    status = CLI_EXIT_OK;
out:
    if (batch_ready) {
        (void)ingest_senders_stop(&in); /* after a failure: the other request's answer */
        pthread_cond_destroy(&in.cond);
        pthread_mutex_destroy(&in.mu);
    }
    progress_clear(&in.prog);
    if (batch_ready)
        cli_batch_cleanup(&in.batch);
    cli_walk_cleanup(&w);
    return status;
}
