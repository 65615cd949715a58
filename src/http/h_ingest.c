/* POST /api/ingest: JSON batches and raw text/markdown/HTML bodies, parsed on a worker
 * into an ingest job of the engine (rag/ingest.h), whose outcome is rendered here. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "http/fields.h"
#include "http/handlers.h"
#include "rag/ingest.h"
#include "util/jsontext.h"
#include "util/names.h"
#include "util/utf8.h"

#define INGEST_MAX_DOCS 10000

/* One /api/ingest, owned by its request (freed by the request's cleanup, on the loop). */
typedef struct {
    http_request *req;
    rag_ingest *job; /* until rag_ingest_run takes it */
    char *ack;       /* the 200 body's memory, allocated before the run (ingest_ack_size) */
    size_t ack_cap;
} ingest_call;

static void ingest_call_free(void *arg)
{
    ingest_call *c = arg;
    rag_ingest_free(c->job);
    free(c->ack);
    free(c);
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

/* Adds one submitted document to the job; doc and field name it and its text in messages.
 * Returns false after replying. */
static bool ingest_add(http_request *req, rag_ingest *job, const char *text, size_t len, rag_format fmt,
                       const char *id, const char *source, json_t *meta, const char *doc, const char *field)
{
    char *metadata = ingest_metadata(meta, source);
    if (!metadata) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return false;
    }
    /* Metadata comes back with every passage of the document: bounded here, so that one
     * small query cannot make a response of hundreds of megabytes. */
    size_t cap = req->app->cfg.max_metadata_bytes;
    if (strlen(metadata) > cap) {
        free(metadata);
        http_reply_error(req, 422, "validation_error", "%s: metadata is over %zu bytes as JSON (RAGD_MAX_METADATA_BYTES)",
                         doc, cap);
        return false;
    }
    json_t *mt = meta ? json_object_get(meta, "title") : NULL;
    rag_document d = {
        .id = id,
        .text = text,
        .len = len,
        .format = fmt,
        .source = source,
        .metadata_json = metadata,
        .title = json_is_string(mt) ? json_string_value(mt) : NULL,
        .title_len = json_is_string(mt) ? json_string_length(mt) : 0,
    };
    char why[300];
    rag_status st = rag_ingest_add(job, &d, why, sizeof why);
    free(metadata);
    if (st == RAG_E_INVALID)
        http_reply_error(req, 422, "validation_error", "%s: %s", field, why);
    else if (st != RAG_OK)
        handlers_reply_rag_status(req, st, why);
    return st == RAG_OK;
}

static bool ingest_new_job(http_request *req, ingest_call *c, const char *db, size_t n)
{
    c->job = rag_ingest_new(req->app->engine, db, n);
    if (!c->job)
        http_reply_error(req, 503, "overloaded", "out of memory");
    return c->job != NULL;
}

static bool ingest_parse_json(http_request *req, ingest_call *c)
{
    json_t *body = http_json_object(req);
    bool ok = false;
    if (!body)
        return false;
    const char *db = NULL;
    if (!fields_db(req, body, &db))
        goto out;
    json_t *docs = json_object_get(body, "documents");
    if (!json_is_array(docs) || json_array_size(docs) == 0 || json_array_size(docs) > INGEST_MAX_DOCS) {
        http_reply_error(req, 422, "validation_error", "documents: must be an array of 1 to %d documents",
                         INGEST_MAX_DOCS);
        goto out;
    }
    if (!ingest_new_job(req, c, db, json_array_size(docs)))
        goto out;
    /* in rag_format's order; the binary formats come as raw bodies, not JSON strings */
    static const char *const formats[] = {"text", "markdown", "html", "auto", "rst", NULL};
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
            !fields_string(req, doc, "id", false, RAG_INGEST_ID_MAX, &id) ||
            !fields_string(req, doc, "source", false, 1024, &source) || !fields_object(req, doc, "metadata", &meta))
            goto out;
        if (id && !rag_ingest_id_valid(id)) {
            http_reply_error(req, 422, "validation_error", "%s.id: must be 1-%d characters without control characters",
                             field, RAG_INGEST_ID_MAX);
            goto out;
        }
        if (!fields_choice(req, doc, "format", formats, (int)rag_format_text_only(rag_format_of_source(source)), &fmt))
            goto out;
        if (!ingest_add(req, c->job, text, json_string_length(tv), (rag_format)fmt, id, source, meta, field,
                        text_field))
            goto out;
    }
    ok = true;
out:
    json_decref(body);
    return ok;
}

static bool ingest_parse_raw(http_request *req, ingest_call *c)
{
    const char *db_arg = http_arg_get(req, "db");
    const char *id = http_arg_get(req, "id");
    const char *source = http_arg_get(req, "source");
    const char *db = db_arg ? db_arg : req->app->cfg.default_db;
    if (!names_db_valid(db)) {
        http_reply_error(req, 422, "validation_error", "db: must be 1-64 characters of [A-Za-z0-9_.-], not starting with '.'");
        return false;
    }
    if (id && (!rag_ingest_id_valid(id) || !utf8_valid(id, strlen(id)))) {
        http_reply_error(req, 422, "validation_error", "id: must be 1-%d characters without control characters",
                         RAG_INGEST_ID_MAX);
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
    rag_format fmt = strcmp(req->content_type, "text/html") == 0       ? RAG_FORMAT_HTML
                     : strcmp(req->content_type, "text/markdown") == 0 ? RAG_FORMAT_MARKDOWN
                                                                        : RAG_FORMAT_TEXT;
    return ingest_new_job(req, c, db, 1) &&
           ingest_add(req, c->job, req->body.data, req->body.len, fmt, id, source, NULL, "source", "body");
}

/* ---- the acknowledgement ---- */

/* The acknowledgement of a committed ingest is written into memory allocated before the
 * job ran: once the documents are stored the client must learn it, so nothing after the
 * commit may fail for want of memory. Its size bounds what is written: every string
 * escaped (at most 6 bytes a byte) plus the fixed text and the numbers. */
static size_t ingest_ack_size(const rag_ingest *job, size_t n)
{
    size_t size = 6 * (STORE_NAME_MAX + RAG_INGEST_WARNING_MAX + STORE_MODEL_MAX + 16) + 512;
    for (size_t i = 0; i < n; i++)
        size += 2 * (6 * strlen(rag_ingest_doc_id(job, i)) + 4) + 48; /* in ids, and in quarantined_documents */
    return size;
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

/* Writes the 200 body into c->ack (ingest_ack_size bytes); returns its length. */
static size_t ingest_write_ack(ingest_call *c, const rag_ingest_outcome *o, const rag_ingest *job)
{
    char *out = c->ack;
    size_t cap = c->ack_cap, len = 0;
    /* every piece fits by construction (ingest_ack_size); ack_printf and jsontext_escape
     * both stop at the cap if not */
    ack_printf(out, cap, &len, "{\"db\":\"");
    jsontext_escape(out, cap, &len, o->db);
    ack_printf(out, cap, &len, "\",\"documents\":%zu,\"chunks\":%lld,\"duplicates\":%zu,\"ids\":[", o->documents,
               (long long)o->chunks, o->duplicates);
    for (size_t i = 0; i < o->documents; i++) {
        ack_printf(out, cap, &len, "%s\"", i ? "," : "");
        jsontext_escape(out, cap, &len, rag_ingest_doc_id(job, i));
        ack_printf(out, cap, &len, "\"");
    }
    ack_printf(out, cap, &len, "],\"created\":%s,\"embedder\":\"%s\",\"embed_model\":\"",
               o->created ? "true" : "false", o->embedder);
    jsontext_escape(out, cap, &len, o->embed_model);
    /* the injection screen: chunks quarantined, in all and per document that has any */
    ack_printf(out, cap, &len, "\",\"quarantined\":%zu,\"quarantined_documents\":[", o->quarantined);
    bool first = true;
    for (size_t i = 0; i < o->documents; i++) {
        size_t nq = rag_ingest_doc_quarantined(job, i);
        if (!nq)
            continue;
        ack_printf(out, cap, &len, "%s{\"id\":\"", first ? "" : ",");
        jsontext_escape(out, cap, &len, rag_ingest_doc_id(job, i));
        ack_printf(out, cap, &len, "\",\"quarantined\":%zu}", nq);
        first = false;
    }
    ack_printf(out, cap, &len, "],\"warnings\":[");
    if (o->warning[0]) {
        ack_printf(out, cap, &len, "\"");
        jsontext_escape(out, cap, &len, o->warning);
        ack_printf(out, cap, &len, "\"");
    }
    ack_printf(out, cap, &len, "]}");
    return len;
}

/* The engine's outcome (writer, worker or loop thread): the response, then the request may go. */
static void ingest_on_done(const rag_ingest_outcome *o, const rag_ingest *job, void *ctx)
{
    ingest_call *c = ctx;
    http_request *req = c->req;
    if (o->status == RAG_OK) {
        size_t len = ingest_write_ack(c, o, job);
        http_reply_owned(req, 200, "application/json; charset=utf-8", c->ack, len);
        c->ack = NULL;
    } else if (o->write) {
        handlers_reply_write_error(req, o->write, "db_not_found");
    } else {
        handlers_reply_rag_status(req, o->status, o->message);
    }
    http_complete(req);
}

/* On a worker: the request parsed into a job, which the engine runs. */
static void ingest_work(http_request *req)
{
    ingest_call *c = req->cleanup_arg;
    bool json = req->content_type[0] == '\0' || strcmp(req->content_type, "application/json") == 0;
    if (!(json ? ingest_parse_json(req, c) : ingest_parse_raw(req, c)))
        return;
    c->ack_cap = ingest_ack_size(c->job, rag_ingest_docs(c->job));
    c->ack = malloc(c->ack_cap);
    if (!c->ack) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    rag_ingest *job = c->job;
    c->job = NULL; /* the engine's now */
    char why[700];
    http_hold(req); /* given back by ingest_on_done, which may come before the run returns */
    rag_status st = rag_ingest_run(job, ingest_on_done, c, why, sizeof why);
    if (st != RAG_OK) {
        handlers_reply_rag_status(req, st, why);
        http_complete(req);
    }
}

/* Arrival (loop): the call is made and owned by the request; a worker does the rest. */
void handlers_ingest(http_request *req)
{
    ingest_call *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(req->retry_after, sizeof req->retry_after, "1");
        http_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    c->req = req;
    http_set_cleanup(req, ingest_call_free, c);
    http_defer(req, ingest_work);
}
