#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "http/handlers.h"
#include "upstream/llm.h"
#include "util/workpool.h"
#include "util/jsonmem.h"
#include "util/names.h"

store_reader *handlers_reader(http_request *req)
{
    store_reader *r = store_reader_acquire(req->app->st);
    if (!r)
        http_reply_error(req, 503, "not_ready", "store is closing");
    return r;
}

const char *handlers_path_db(http_request *req)
{
    const char *name = req->params[0];
    if (!names_db_valid(name)) {
        http_reply_error(req, 422, "validation_error", "name: must be 1-64 characters of [A-Za-z0-9_.-], not starting with '.'");
        return NULL;
    }
    return name;
}

bool handlers_collection_exists(http_request *req, const char *name)
{
    store_reader *r = handlers_reader(req);
    if (!r)
        return false;
    store_collection c;
    bool exists = handlers_collection(req, r, name, &c);
    store_reader_release(r);
    return exists;
}

bool handlers_collection(http_request *req, store_reader *r, const char *name, store_collection *out)
{
    ragd_err rc = store_collection_get(r, name, out);
    if (rc == RAGD_OK)
        return true;
    if (rc == RAGD_ENOTFOUND)
        http_reply_error(req, 404, "db_not_found", "collection '%s' does not exist", name);
    else if (rc == RAGD_ENOMEM)
        http_reply_error(req, 503, "overloaded", "reading collection '%s': out of memory", name);
    else
        http_reply_error(req, 500, "internal", "reading collection '%s' failed: %s", name, ragd_strerror(rc));
    return false;
}

json_t *handlers_collection_json(const store_collection *c)
{
    return json_pack("{s:s, s:I, s:I, s:s, s:i, s:i, s:i, s:I, s:s}", "name", c->name, "documents",
                     (json_int_t)c->documents, "chunks", (json_int_t)c->chunks, "embed_model", c->embed_model, "dim",
                     c->dim, "chunk_size", c->chunk_size, "chunk_overlap", c->chunk_overlap, "version",
                     (json_int_t)c->version, "created_at", c->created_at);
}

json_t *handlers_metadata(const char *metadata_json)
{
    unsigned long failed = jsonmem_failures();
    json_t *m = metadata_json ? json_loads(metadata_json, 0, NULL) : NULL;
    if (jsonmem_failures() != failed) { /* out of memory: m, if any, may be altered */
        json_decref(m);
        return NULL;
    }
    if (!json_is_object(m)) {
        json_decref(m);
        m = json_object();
    }
    return m;
}

/* json_dump_callback's sink: appends into a capped strbuf; -1 (and why) stops the dump. */
typedef struct {
    strbuf sb;
    ragd_err err;
} handlers_dump;

static int handlers_dump_append(const char *buffer, size_t size, void *data)
{
    handlers_dump *d = data;
    d->err = strbuf_append(&d->sb, buffer, size);
    return d->err == RAGD_OK ? 0 : -1;
}

void handlers_reply_json_capped(http_request *req, int status, json_t *body)
{
    size_t cap = req->app->cfg.max_response_bytes;
    handlers_dump d = {.err = body ? RAGD_OK : RAGD_ENOMEM};
    strbuf_init(&d.sb, cap);
    if (body && json_dump_callback(body, handlers_dump_append, &d, JSON_COMPACT) == 0)
        d.err = strbuf_append(&d.sb, "", 1); /* the NUL http_reply_owned wants */
    else if (d.err == RAGD_OK)
        d.err = RAGD_ENOMEM; /* jansson failed by itself: it could not allocate */
    json_decref(body);
    if (d.err == RAGD_OK) {
        size_t len;
        char *text = strbuf_detach(&d.sb, &len);
        http_reply_owned(req, status, "application/json; charset=utf-8", text, len - 1);
    } else if (d.err == RAGD_ETOOBIG) {
        http_reply_error(req, 500, "response_too_large", "the response would exceed RAGD_MAX_RESPONSE_BYTES (%zu bytes)",
                         cap);
    } else {
        http_reply_error(req, 503, "overloaded", "out of memory while writing the response");
    }
    strbuf_cleanup(&d.sb);
}

void handlers_reply_write_error(http_request *req, const store_write *w, const char *not_found_code)
{
    switch (w->status) {
    case RAGD_ENOTFOUND:
        http_reply_error(req, 404, not_found_code, "%s", w->message[0] ? w->message : "not found");
        break;
    case RAGD_ECONFLICT:
        http_reply_error(req, 409, w->kind == STORE_W_INGEST ? "embed_model_mismatch" : "conflict", "%s", w->message);
        break;
    case RAGD_EINVAL:
        http_reply_error(req, 422, "validation_error", "%s", w->message);
        break;
    case RAGD_EBUSY:
    case RAGD_ECLOSED:
        snprintf(req->retry_after, sizeof req->retry_after, "1");
        http_reply_error(req, 503, "overloaded", "%s", w->message[0] ? w->message : "store is busy or closing; retry");
        break;
    case RAGD_ENOMEM:
        snprintf(req->retry_after, sizeof req->retry_after, "1");
        http_reply_error(req, 503, "overloaded", "store ran out of memory; retry: %s", w->message);
        break;
    case RAGD_ENOSPC:
        /* 507 (RFC 4918): the server cannot store what the request needs. Not 503: retrying
         * soon does not help until an operator frees space, so no Retry-After. */
        http_reply_error(req, 507, "insufficient_storage", "%s", w->message[0] ? w->message : "disk full");
        break;
    default:
        http_reply_error(req, 500, "internal", "store write failed: %s", w->message[0] ? w->message : ragd_strerror(w->status));
        break;
    }
}

/* 503 for a queue that refused the request's next step (RAGD_EBUSY full, RAGD_ENOMEM no
 * memory: overloaded, retry; RAGD_ECLOSED: shutting down). */
static void handlers_reply_refused(http_request *req, ragd_err rc, const char *queue)
{
    snprintf(req->retry_after, sizeof req->retry_after, "1");
    if (rc == RAGD_EBUSY)
        http_reply_error(req, 503, "overloaded", "server busy: %s full, retry shortly", queue);
    else if (rc == RAGD_ENOMEM)
        http_reply_error(req, 503, "overloaded", "out of memory for the %s, retry shortly", queue);
    else
        http_reply_error(req, 503, "not_ready", "server is shutting down");
}

bool handlers_submit(http_request *req, store_write *w)
{
    http_hold(req);
    ragd_err rc = store_submit(req->app->st, w);
    if (rc == RAGD_OK)
        return true;
    handlers_reply_refused(req, rc, "store write queue");
    http_complete(req);
    return false;
}

bool handlers_submit_collection_write(http_request *req, store_write_kind kind, const char *name,
                                      void (*done)(store_write *w, void *arg))
{
    store_write *w = calloc(1, sizeof *w);
    if (!w) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return false;
    }
    w->kind = kind;
    snprintf(w->collection, sizeof w->collection, "%s", name);
    w->done = done;
    w->arg = req;
    if (handlers_submit(req, w))
        return true;
    free(w);
    return false;
}

void handlers_reply_dropped(http_request *req)
{
    snprintf(req->retry_after, sizeof req->retry_after, "1");
    http_reply_error(req, 503, "not_ready", "server shut down before this request was processed");
    http_complete(req);
}

void handlers_reply_rag_status(http_request *req, rag_status st, const char *message)
{
    switch (st) {
    case RAG_E_NOT_FOUND: http_reply_error(req, 404, "db_not_found", "%s", message); return;
    case RAG_E_MISMATCH: http_reply_error(req, 409, "embed_model_mismatch", "%s", message); return;
    case RAG_E_INVALID: http_reply_error(req, 422, "validation_error", "%s", message); return;
    case RAG_E_INJECTION: http_reply_error(req, 422, "prompt_injection", "%s", message); return;
    case RAG_E_OVERLOADED:
    case RAG_E_UPSTREAM:
    case RAG_E_NOT_READY:
    case RAG_E_CANCELLED:
        snprintf(req->retry_after, sizeof req->retry_after, "1");
        http_reply_error(req, 503,
                         st == RAG_E_OVERLOADED ? "overloaded"
                         : st == RAG_E_UPSTREAM ? "upstream_unavailable"
                                                : "not_ready",
                         "%s", message);
        return;
    case RAG_OK:
    case RAG_E_STORE:
    case RAG_E_INTERNAL: break;
    }
    http_reply_error(req, 500, "internal", "%s", message);
}

bool handlers_llm_model_allowed(const ragd_config *cfg, const char *model)
{
    if (strcmp(model, cfg->llm_model) == 0)
        return true;
    size_t n = strlen(model);
    for (const char *p = cfg->llm_models; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, model, n) == 0)
            return true;
        p += len + (comma ? 1 : 0);
    }
    return false;
}
