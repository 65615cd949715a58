/* POST /api/ingest: JSON batches and raw text/markdown/HTML bodies. On a worker: parse,
 * validate, skip known duplicates, turn HTML into text, chunk, embed; then one write to
 * the store's writer, answered after its commit. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app.h"
#include "http/fields.h"
#include "http/handlers.h"
#include "rag/embed_builtin.h"
#include "text/chunker.h"
#include "text/doccontext.h"
#include "text/html.h"
#include "util/hash.h"
#include "util/names.h"
#include "obs/metrics.h"
#include "upstream/llm.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/loopq.h"
#include "util/jsontext.h"
#include "util/utf8.h"
#include "util/workpool.h"

#define INGEST_MAX_DOCS 10000
#define INGEST_MAX_ID 256

typedef enum { INGEST_TEXT, INGEST_MARKDOWN, INGEST_HTML } ingest_format;

typedef struct {
    char *id;
    char *text; /* the text that is stored and chunked (HTML already turned into text) */
    size_t text_len;
    char *metadata_json;
    char *source;
    char *title;     /* text/doccontext.h */
    char **headings; /* per chunk, markdown only (else NULL) */
    char hash[STORE_HASH_HEX + 1];
    bool markdown;  /* chunk with markdown structure */
    bool repeated;  /* the same id stands earlier in the batch */
    bool duplicate; /* known before chunking: same id, same hash */
    int64_t *starts;
    int64_t *ends;
    float *vectors;
    size_t n_chunks;
} ingest_doc;

/* An ingest across its steps, owned by its request (freed by the request's cleanup, on
 * the loop, whatever path it took). One thread at a time: a worker (parse, chunk, builtin
 * embedding), the loop (upstream embedding), the store's writer (the write and its reply). */
typedef struct {
    store_write w; /* first: the done callback gets &job->w */
    http_request *req;
    ingest_doc *docs;
    store_doc *sdocs;
    size_t n;
    /* embedding by an upstream embedder (on the loop) */
    char model[STORE_MODEL_MAX + 1];
    int expect_dim;      /* an existing collection's dimension, 0 for a new one */
    bool fallback;       /* RAGD_EMBEDDER=auto and a new collection: builtin if upstream fails */
    const char **texts;  /* every chunk's text, in document order */
    size_t *lens;
    size_t n_texts;
    llm_task *task;
    loopq_item item;
    char warning[600]; /* what the client should know about the embedder chosen, or "" */
    char *ack;         /* the 200 body's memory, allocated before the write (ingest_write_ack) */
    size_t ack_cap;
    bool new_collection; /* the collection did not exist when the job looked */
    bool retried;        /* the job was run again after a concurrent creation (ingest_done) */
} ingest_job;

/* Frees what the job holds and zeroes it, keeping its request and whether it was retried. */
static void ingest_job_clear(ingest_job *job)
{
    for (size_t i = 0; i < job->n; i++) {
        ingest_doc *d = &job->docs[i];
        free(d->id);
        free(d->text);
        free(d->metadata_json);
        free(d->source);
        free(d->title);
        doccontext_paths_free(d->headings, d->n_chunks);
        free(d->starts);
        free(d->ends);
        free(d->vectors);
    }
    free(job->docs);
    free(job->sdocs);
    free(job->texts);
    free(job->lens);
    free(job->ack);
    *job = (ingest_job){.req = job->req, .retried = job->retried};
}

static void ingest_job_free(void *arg)
{
    ingest_job_clear(arg);
    free(arg);
}

static ingest_format ingest_format_of_source(const char *source)
{
    const char *dot = source ? strrchr(source, '.') : NULL;
    if (dot && (strcasecmp(dot, ".md") == 0 || strcasecmp(dot, ".markdown") == 0))
        return INGEST_MARKDOWN;
    if (dot && (strcasecmp(dot, ".html") == 0 || strcasecmp(dot, ".htm") == 0))
        return INGEST_HTML;
    return INGEST_TEXT;
}

static bool ingest_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > INGEST_MAX_ID)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
            return false;
    return true;
}

/* Stored metadata: the client's object plus "source" when given separately. */
static char *ingest_metadata(json_t *meta, const char *source)
{
    json_t *m = meta ? json_deep_copy(meta) : json_object();
    bool ok = m != NULL;
    if (ok && source && !json_object_get(m, "source")) {
        json_t *s = json_string(source);
        ok = s && json_object_set_new(m, "source", s) == 0; /* a lost "source" is no 200 */
    }
    char *text = ok ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    return text;
}

/* Fills d from one submitted document: hash and default id from the original bytes; HTML
 * is turned into text; markdown is kept for the chunker; metadata gets "source". Returns
 * false after replying. */
static bool ingest_prepare(http_request *req, ingest_doc *d, const char *text, size_t len, ingest_format fmt,
                           const char *id, const char *source, json_t *meta, const char *field)
{
    d->markdown = fmt == INGEST_MARKDOWN;
    d->source = source ? strdup(source) : NULL;
    d->metadata_json = ingest_metadata(meta, source);
    hash_sha256_hex(text, len, d->hash);
    d->id = strdup(id ? id : d->hash);
    size_t html_title_len = 0;
    if (fmt == INGEST_HTML) {
        ragd_err rc = html_to_text_title(text, len, &d->text, &d->text_len, &html_title_len);
        if (rc) {
            http_reply_error(req, 422, "validation_error", "%s: HTML could not be read (%s)", field, ragd_strerror(rc));
            return false;
        }
    } else {
        d->text = malloc(len + 1);
        if (d->text) {
            memcpy(d->text, text, len);
            d->text[len] = '\0';
        }
        d->text_len = len;
    }
    if (!d->id || !d->text || !d->metadata_json || (source && !d->source)) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return false;
    }
    json_t *mt = meta ? json_object_get(meta, "title") : NULL;
    doccontext_in in = {
        .meta_title = json_is_string(mt) ? json_string_value(mt) : NULL,
        .meta_title_len = json_is_string(mt) ? json_string_length(mt) : 0,
        .html_title = html_title_len ? d->text : NULL,
        .html_title_len = html_title_len,
        .text = d->text,
        .text_len = d->text_len,
        .markdown = d->markdown,
        .source = source,
        .id = id,
    };
    if (doccontext_title(&in, &d->title) != RAGD_OK) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return false;
    }
    return true;
}

static bool ingest_parse_json(http_request *req, ingest_job *job, char *db)
{
    json_t *body = http_json_object(req);
    bool ok = false;
    if (!body)
        return false;
    const char *name = NULL;
    if (!fields_db(req, body, &name))
        goto out;
    snprintf(db, STORE_NAME_MAX + 1, "%s", name); /* the body is freed before the write */
    json_t *docs = json_object_get(body, "documents");
    if (!json_is_array(docs) || json_array_size(docs) == 0 || json_array_size(docs) > INGEST_MAX_DOCS) {
        http_reply_error(req, 422, "validation_error", "documents: must be an array of 1 to %d documents",
                         INGEST_MAX_DOCS);
        goto out;
    }
    job->docs = calloc(json_array_size(docs), sizeof *job->docs);
    if (!job->docs) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        goto out;
    }
    static const char *const formats[] = {"text", "markdown", "html", NULL};
    for (size_t i = 0; i < json_array_size(docs); i++) {
        json_t *doc = json_array_get(docs, i);
        char field[64];
        snprintf(field, sizeof field, "documents[%zu]", i);
        if (!json_is_object(doc)) {
            http_reply_error(req, 422, "validation_error", "%s: must be an object", field);
            goto out;
        }
        const char *text = NULL, *id = NULL, *source = NULL;
        json_t *meta = NULL;
        int fmt = 0;
        char text_field[96];
        snprintf(text_field, sizeof text_field, "%s.text", field);
        json_t *tv = json_object_get(doc, "text");
        if (!json_is_string(tv)) {
            http_reply_error(req, 422, "validation_error", "%s: %s", text_field, tv ? "must be a string" : "is required");
            goto out;
        }
        if (!fields_string(req, doc, "text", true, SIZE_MAX, &text) ||
            !fields_string(req, doc, "id", false, INGEST_MAX_ID, &id) ||
            !fields_string(req, doc, "source", false, 1024, &source) || !fields_object(req, doc, "metadata", &meta))
            goto out;
        if (id && !ingest_id_valid(id)) {
            http_reply_error(req, 422, "validation_error", "%s.id: must be 1-%d characters without control characters",
                             field, INGEST_MAX_ID);
            goto out;
        }
        if (!fields_choice(req, doc, "format", formats, (int)ingest_format_of_source(source), &fmt))
            goto out;
        ingest_doc *d = &job->docs[job->n++];
        if (!ingest_prepare(req, d, text, json_string_length(tv), (ingest_format)fmt, id, source, meta, text_field))
            goto out;
    }
    ok = true;
out:
    json_decref(body);
    return ok;
}

static bool ingest_parse_raw(http_request *req, ingest_job *job, char *db)
{
    const char *db_arg = http_arg_get(req, "db");
    const char *id = http_arg_get(req, "id");
    const char *source = http_arg_get(req, "source");
    const char *name = db_arg ? db_arg : req->app->cfg.default_db;
    if (!names_db_valid(name)) {
        http_reply_error(req, 422, "validation_error", "db: must be 1-64 characters of [A-Za-z0-9_.-], not starting with '.'");
        return false;
    }
    snprintf(db, STORE_NAME_MAX + 1, "%s", name);
    if (id && (!ingest_id_valid(id) || !utf8_valid(id, strlen(id)))) {
        http_reply_error(req, 422, "validation_error", "id: must be 1-%d characters without control characters",
                         INGEST_MAX_ID);
        return false;
    }
    if (source && !utf8_valid(source, strlen(source))) {
        http_reply_error(req, 422, "validation_error", "source: must be valid UTF-8");
        return false;
    }
    if (req->body.len == 0 || !utf8_valid(req->body.data, req->body.len)) {
        http_reply_error(req, 422, "validation_error", "body: must be non-empty valid UTF-8 text without NUL bytes");
        return false;
    }
    ingest_format fmt = strcmp(req->content_type, "text/html") == 0       ? INGEST_HTML
                        : strcmp(req->content_type, "text/markdown") == 0 ? INGEST_MARKDOWN
                                                                           : INGEST_TEXT;
    job->docs = calloc(1, sizeof *job->docs);
    if (!job->docs) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return false;
    }
    ingest_doc *d = &job->docs[job->n++];
    return ingest_prepare(req, d, req->body.data, req->body.len, fmt, id, source, NULL, "body");
}

static int ingest_cmp_id(const void *a, const void *b)
{
    const ingest_doc *x = *(ingest_doc *const *)a, *y = *(ingest_doc *const *)b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x < y ? -1 : x > y);
}

/* Marks every document whose id also stands earlier in the batch (sorting pointers by id,
 * then by position). Returns false when out of memory. */
static bool ingest_mark_repeats(ingest_job *job)
{
    ingest_doc **order = malloc(job->n * sizeof *order);
    if (!order)
        return false;
    for (size_t i = 0; i < job->n; i++)
        order[i] = &job->docs[i];
    qsort(order, job->n, sizeof *order, ingest_cmp_id);
    for (size_t i = 1; i < job->n; i++)
        order[i]->repeated = strcmp(order[i - 1]->id, order[i]->id) == 0;
    free(order);
    return true;
}

/* Chunks one document (offsets only). Returns false after replying. */
static bool ingest_chunk(http_request *req, ingest_doc *d, const chunk_params *cp)
{
    chunk_format fmt = d->markdown ? CHUNK_FORMAT_MARKDOWN : CHUNK_FORMAT_PLAIN;
    text_span *spans = NULL;
    size_t n = 0;
    ragd_err rc = chunker_split(d->text, d->text_len, fmt, cp, &spans, &n);
    if (rc) {
        http_reply_error(req, rc == RAGD_ENOMEM ? 503 : 422, rc == RAGD_ENOMEM ? "overloaded" : "validation_error",
                         "document '%s': cannot be chunked (%s)", d->id, ragd_strerror(rc));
        return false;
    }
    d->starts = calloc(n ? n : 1, sizeof *d->starts);
    d->ends = calloc(n ? n : 1, sizeof *d->ends);
    bool ok = d->starts && d->ends;
    for (size_t i = 0; ok && i < n; i++) {
        d->starts[i] = (int64_t)spans[i].start;
        d->ends[i] = (int64_t)spans[i].end;
    }
    free(spans);
    if (ok && d->markdown && n > 0) {
        rc = doccontext_headings(d->text, d->text_len, d->starts, n, &d->headings);
        ok = rc == RAGD_OK;
    }
    if (!ok) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return false;
    }
    d->n_chunks = n;
    return true;
}

/* Embeds every chunk of the job with the builtin embedder (worker). */
static bool ingest_embed_builtin(ingest_job *job)
{
    for (size_t k = 0; k < job->n; k++) {
        ingest_doc *d = &job->docs[k];
        free(d->vectors);
        d->vectors = calloc((d->n_chunks ? d->n_chunks : 1) * EMBED_BUILTIN_DIM, sizeof *d->vectors);
        if (!d->vectors)
            return false;
        for (size_t i = 0; i < d->n_chunks; i++)
            if (embed_builtin(d->text + d->starts[i], (size_t)(d->ends[i] - d->starts[i]),
                              d->vectors + i * EMBED_BUILTIN_DIM) != RAGD_OK)
                return false;
    }
    snprintf(job->w.embed_model, sizeof job->w.embed_model, "%s", EMBED_BUILTIN_NAME);
    job->w.dim = EMBED_BUILTIN_DIM;
    return true;
}

/* The acknowledgement of a committed ingest is written into memory allocated before the
 * write was submitted: once the documents are stored the client must learn it, so nothing
 * after the commit may fail for want of memory. Its size bounds what is written: every
 * string escaped (at most 6 bytes a byte) plus the fixed text and the numbers. */
static size_t ingest_ack_size(const ingest_job *job)
{
    size_t n = 6 * (STORE_NAME_MAX + sizeof job->warning + STORE_MODEL_MAX + 16) + 512;
    for (size_t i = 0; i < job->n; i++)
        n += 6 * strlen(job->docs[i].id) + 4;
    return n;
}

/* printf at out + *len, never past cap (the text is cut there, *len stays below cap). */
static void ack_printf(char *out, size_t cap, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void ack_printf(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

/* Writes the 200 body into job->ack (ingest_ack_size bytes); returns its length. */
static size_t ingest_write_ack(ingest_job *job, size_t duplicates)
{
    const store_write *w = &job->w;
    const char *embed_model = w->coll.embed_model[0] ? w->coll.embed_model : w->embed_model;
    const char *embedder = strcmp(embed_model, EMBED_BUILTIN_NAME) == 0 ? "builtin" : job->req->app->embedder_name;
    char *out = job->ack;
    size_t cap = job->ack_cap, len = 0;
    /* every piece fits by construction (ingest_ack_size); ack_printf and jsontext_escape
     * both stop at the cap if not */
    ack_printf(out, cap, &len, "{\"db\":\"");
    jsontext_escape(out, cap, &len, w->collection);
    ack_printf(out, cap, &len, "\",\"documents\":%zu,\"chunks\":%lld,\"duplicates\":%zu,\"ids\":[", job->n,
               (long long)w->chunks_written, duplicates);
    for (size_t i = 0; i < job->n; i++) {
        ack_printf(out, cap, &len, "%s\"", i ? "," : "");
        jsontext_escape(out, cap, &len, job->docs[i].id);
        ack_printf(out, cap, &len, "\"");
    }
    ack_printf(out, cap, &len, "],\"created\":%s,\"embedder\":\"%s\",\"embed_model\":\"",
               w->created ? "true" : "false", embedder);
    jsontext_escape(out, cap, &len, embed_model);
    ack_printf(out, cap, &len, "\",\"warnings\":[");
    if (job->warning[0]) {
        ack_printf(out, cap, &len, "\"");
        jsontext_escape(out, cap, &len, job->warning);
        ack_printf(out, cap, &len, "\"");
    }
    ack_printf(out, cap, &len, "]}");
    return len;
}

static void ingest_work(http_request *req);

/* The whole ingest again, on a worker, after a concurrent request created the collection
 * with another embedder; gives back the part the write held. */
static void ingest_redo(void *arg)
{
    http_request *req = ((ingest_job *)arg)->req;
    ingest_work(req);
    http_complete(req);
}

static void ingest_redo_dropped(void *arg) { handlers_reply_dropped(((ingest_job *)arg)->req); }

/* The writer's answer (writer thread): the response, then the request may go. */
static void ingest_done(store_write *w, void *arg)
{
    ingest_job *job = (ingest_job *)w;
    http_request *req = arg;
    if (w->status == RAGD_ECONFLICT && job->new_collection && !job->retried) {
        /* Two first ingests raced to create the collection (under auto one may have been
         * embedded by the backend, the other by builtin): this one runs once more against
         * the collection as it now is, as if it had come a moment later. */
        log_info("ingest into '%s': the collection was created meanwhile (%s); ingesting again", w->collection,
                 w->message);
        ingest_job_clear(job);
        job->retried = true;
        handlers_submit_work(req, ingest_redo, ingest_redo_dropped, job);
        return;
    }
    if (w->status == RAGD_OK) {
        size_t duplicates = 0;
        for (size_t i = 0; i < job->n; i++)
            duplicates += job->sdocs[i].result == STORE_DOC_DUPLICATE;
        metrics_count_ingest(job->n - duplicates, (size_t)w->chunks_written);
        size_t len = ingest_write_ack(job, duplicates);
        http_reply_owned(req, 200, "application/json; charset=utf-8", job->ack, len);
        job->ack = NULL;
    } else {
        handlers_reply_write_error(req, w, "db_not_found");
    }
    http_complete(req);
}

static void ingest_submit(ingest_job *job);

/* ---- embedding by the upstream embedder (loop thread) ---- */

/* Builtin embedding after all, for a new collection under RAGD_EMBEDDER=auto whose
 * backend did not answer (worker). Gives back the hold taken for the upstream step. */
static void ingest_fallback_work(void *arg)
{
    ingest_job *job = arg;
    http_request *req = job->req;
    log_info("ingest into new collection '%s': %s", job->w.collection, job->warning);
    if (!ingest_embed_builtin(job))
        http_reply_error(req, 503, "overloaded", "out of memory");
    else
        ingest_submit(job);
    http_complete(req);
}

static void ingest_fallback_cancelled(void *arg) { handlers_reply_dropped(((ingest_job *)arg)->req); }

/* Falls back to the builtin embedder, saying why in the response's warnings. */
static void ingest_use_builtin(ingest_job *job, const char *why)
{
    http_request *req = job->req;
    app *a = req->app;
    snprintf(job->warning, sizeof job->warning,
             "collection '%s' was created with the builtin embedder %s (RAGD_EMBEDDER=auto): %s; new collections "
             "will use the %s backend's %s once it answers",
             job->w.collection, EMBED_BUILTIN_NAME, why, a->embedder_name, job->model);
    utf8_sanitize(job->warning);
    handlers_submit_work(req, ingest_fallback_work, ingest_fallback_cancelled, job);
}

/* The upstream embedding failed (st, message): the builtin fallback for a new collection
 * under auto, else 503 and nothing is stored. */
static void ingest_embed_failed(ingest_job *job, llm_status st, const char *message, size_t dim)
{
    http_request *req = job->req;
    app *a = req->app;
    char detail[400];
    snprintf(detail, sizeof detail, "%s", message && *message ? message : "no detail");
    utf8_sanitize(detail);
    if (job->fallback && st != LLM_OK && st != LLM_CANCELLED) {
        char why[520];
        snprintf(why, sizeof why, "the embedder %s did not answer (%s: %s)", a->embedder_name, llm_status_name(st),
                 detail);
        ingest_use_builtin(job, why);
        return;
    }
    snprintf(req->retry_after, sizeof req->retry_after, "1");
    if (st == LLM_CANCELLED)
        http_reply_error(req, 503, "not_ready", "server is shutting down");
    else if (st == LLM_OVERLOADED)
        http_reply_error(req, 503, "overloaded", "embedder %s is overloaded: %s", a->embedder_name, detail);
    else if (st == LLM_OK)
        http_reply_error(req, 503, "upstream_unavailable", "embedder %s returned vectors of dimension %zu, the collection has %d",
                         a->embedder_name, dim, job->expect_dim);
    else
        http_reply_error(req, 503, "upstream_unavailable", "embedder %s %s: %s", a->embedder_name, llm_status_name(st),
                         detail);
    http_complete(req);
}

static void ingest_on_embedded(llm_status st, const float *v, size_t dim, const char *message, void *arg)
{
    ingest_job *job = arg;
    http_request *req = job->req;
    job->task = NULL;
    if (!(st == LLM_OK && v && dim > 0 && (job->expect_dim == 0 || dim == (size_t)job->expect_dim))) {
        ingest_embed_failed(job, st, message, dim);
        return;
    }
    bool ok = true;
    size_t at = 0;
    for (size_t k = 0; ok && k < job->n; k++) {
        ingest_doc *d = &job->docs[k];
        free(d->vectors);
        d->vectors = malloc((d->n_chunks ? d->n_chunks : 1) * dim * sizeof *d->vectors);
        ok = d->vectors != NULL;
        if (ok && d->n_chunks)
            memcpy(d->vectors, v + at * dim, d->n_chunks * dim * sizeof *v);
        at += d->n_chunks;
    }
    snprintf(job->w.embed_model, sizeof job->w.embed_model, "%s", job->model);
    job->w.dim = (int)dim;
    if (!ok)
        http_reply_error(req, 503, "overloaded", "out of memory");
    else
        ingest_submit(job);
    http_complete(req); /* the hold taken for the upstream step */
}

/* Whether a new collection under auto should try the backend: when something answered
 * there lately, or — until anything is known — when the user asked for it. */
static bool ingest_try_backend(const app *a)
{
    probe_host_info h;
    bool unknown = true;
    for (size_t i = 0; i < llm_host_count(a->embedder); i++) {
        llm_host_reach(a->embedder, i, &h);
        if (h.state == PROBE_UP)
            return true;
        unknown = unknown && h.state == PROBE_UNKNOWN;
    }
    return unknown && config_llm_requested(&a->cfg);
}

static void ingest_embed_start(void *arg)
{
    ingest_job *job = arg;
    app *a = job->req->app;
    if (job->fallback && !ingest_try_backend(a)) {
        probe_host_info h;
        llm_host_reach(a->embedder, 0, &h);
        char why[400];
        snprintf(why, sizeof why, "nothing answers at %s%s%s%s", llm_host_url(a->embedder, 0), h.error[0] ? " (" : "",
                 h.error, h.error[0] ? ")" : "");
        ingest_use_builtin(job, why);
        return;
    }
    job->task = llm_embed(a->embedder, job->model, job->texts, job->lens, job->n_texts,
                          clock_now_ms() + a->cfg.embed_timeout_s * 1000, ingest_on_embedded, job);
    if (!job->task) /* no callback will come */
        ingest_embed_failed(job, atomic_load(&a->stopping) ? LLM_CANCELLED : LLM_UNAVAILABLE,
                            "the call could not start", 0);
}

/* Sends every chunk to the upstream embedder from the loop: 1 when started, 0 when there
 * is nothing to embed (all duplicates), -1 after replying 503 (no memory). */
static int ingest_embed_upstream(ingest_job *job)
{
    size_t total = 0;
    for (size_t k = 0; k < job->n; k++)
        total += job->docs[k].n_chunks;
    if (total == 0)
        return 0;
    job->texts = calloc(total, sizeof *job->texts);
    job->lens = calloc(total, sizeof *job->lens);
    if (!job->texts || !job->lens) {
        http_reply_error(job->req, 503, "overloaded", "out of memory");
        return -1;
    }
    for (size_t k = 0; k < job->n; k++) {
        ingest_doc *d = &job->docs[k];
        for (size_t i = 0; i < d->n_chunks; i++) {
            job->texts[job->n_texts] = d->text + d->starts[i];
            job->lens[job->n_texts++] = (size_t)(d->ends[i] - d->starts[i]);
        }
    }
    http_hold(job->req);
    loopq_post(job->req->app->lq, &job->item, ingest_embed_start, job);
    return 1;
}

static void ingest_work(http_request *req)
{
    const ragd_config *cfg = &req->app->cfg;
    ingest_job *job = req->cleanup_arg;
    store_reader *r = NULL;
    char db[STORE_NAME_MAX + 1] = "";
    bool json = req->content_type[0] == '\0' || strcmp(req->content_type, "application/json") == 0;
    if (!(json ? ingest_parse_json(req, job, db) : ingest_parse_raw(req, job, db)))
        goto fail;

    store_write *w = &job->w;
    w->kind = STORE_W_INGEST;
    snprintf(w->collection, sizeof w->collection, "%s", db);
    snprintf(w->embed_model, sizeof w->embed_model, "%s", EMBED_BUILTIN_NAME);
    w->dim = EMBED_BUILTIN_DIM;
    w->chunk_size = (int)cfg->chunk_size;
    w->chunk_overlap = (int)cfg->chunk_overlap;

    r = handlers_reader(req);
    if (!r)
        goto fail;
    store_collection coll;
    ragd_err rc = store_collection_get(r, db, &coll);
    bool upstream = false;
    if (rc == RAGD_OK) {
        upstream = strcmp(coll.embed_model, EMBED_BUILTIN_NAME) != 0;
        if (upstream && !req->app->embedder) {
            http_reply_error(req, 409, "embed_model_mismatch",
                             "collection '%s' was embedded with '%s' (dim %d); no upstream embedder is configured", db,
                             coll.embed_model, coll.dim);
            goto fail;
        }
        if (upstream) {
            snprintf(job->model, sizeof job->model, "%s", coll.embed_model);
            job->expect_dim = coll.dim;
        }
        w->chunk_size = coll.chunk_size;
        w->chunk_overlap = coll.chunk_overlap;
    } else if (rc == RAGD_ENOTFOUND) {
        /* a new collection takes the configured embedder */
        job->new_collection = true;
        upstream = cfg->embedder != CONFIG_EMBEDDER_BUILTIN && req->app->embedder;
        job->fallback = cfg->embedder == CONFIG_EMBEDDER_AUTO;
        snprintf(job->model, sizeof job->model, "%s", cfg->embed_model);
    } else {
        if (rc == RAGD_ENOMEM)
            http_reply_error(req, 503, "overloaded", "reading collection '%s': out of memory", db);
        else
            http_reply_error(req, 500, "internal", "reading collection failed: %s", ragd_strerror(rc));
        goto fail;
    }
    chunk_params cp = {.chunk_size = (size_t)w->chunk_size, .overlap = (size_t)w->chunk_overlap};
    if (!ingest_mark_repeats(job)) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < job->n; i++) {
        ingest_doc *d = &job->docs[i];
        char known[STORE_HASH_HEX + 1];
        /* Skip chunking a document the store already holds unchanged, unless its id comes
         * earlier in this batch too (that one would change it first). */
        if (rc == RAGD_OK && !d->repeated && store_document_hash(r, coll.id, d->id, known) == RAGD_OK &&
            strcmp(known, d->hash) == 0) {
            d->duplicate = true;
            d->n_chunks = 0;
            continue;
        }
        if (!ingest_chunk(req, d, &cp))
            goto fail;
    }
    store_reader_release(r);
    r = NULL;
    int started = upstream ? ingest_embed_upstream(job) : 0;
    if (started > 0)
        return; /* the job goes on from the loop */
    if (started < 0)
        goto fail;
    if (upstream && job->expect_dim > 0) { /* nothing new to embed in an upstream collection */
        snprintf(w->embed_model, sizeof w->embed_model, "%s", job->model);
        w->dim = job->expect_dim;
    } else if (!ingest_embed_builtin(job)) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        goto fail;
    }
    ingest_submit(job);
    return;
fail:
    store_reader_release(r);
}

/* Hands the job to the store's writer, whose done callback replies; replies itself when
 * it cannot. */
static void ingest_submit(ingest_job *job)
{
    http_request *req = job->req;
    store_write *w = &job->w;
    job->sdocs = calloc(job->n, sizeof *job->sdocs);
    job->ack_cap = ingest_ack_size(job);
    job->ack = malloc(job->ack_cap);
    if (!job->sdocs || !job->ack) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    for (size_t i = 0; i < job->n; i++) {
        ingest_doc *d = &job->docs[i];
        store_doc *sd = &job->sdocs[i];
        sd->doc_id = d->id;
        memcpy(sd->content_hash, d->hash, sizeof sd->content_hash);
        sd->text = d->text;
        sd->text_len = d->text_len;
        sd->metadata_json = d->metadata_json;
        sd->source = d->source;
        sd->n_chunks = d->n_chunks;
        sd->chunk_starts = d->starts;
        sd->chunk_ends = d->ends;
        sd->vectors = d->vectors;
        sd->title = d->title;
        sd->chunk_headings = (const char *const *)d->headings;
        sd->expect_duplicate = d->duplicate;
    }
    w->docs = job->sdocs;
    w->n_docs = job->n;
    w->done = ingest_done;
    w->arg = req;
    handlers_submit(req, w);
}

/* Arrival (loop): the job is made and owned by the request; a worker does the rest. */
void handlers_ingest(http_request *req)
{
    ingest_job *job = calloc(1, sizeof *job);
    if (!job) {
        snprintf(req->retry_after, sizeof req->retry_after, "1");
        http_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    job->req = req;
    http_set_cleanup(req, ingest_job_free, job);
    http_defer(req, ingest_work);
}
