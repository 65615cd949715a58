/* Collections ("dbs") and their documents. Reads run on a worker with a borrowed store
 * reader; changes go to the store's writer and are answered after their commit. */
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "http/fields.h"
#include "http/handlers.h"
#include "rag/embed_builtin.h"
#include "util/jsonw.h"
#include "util/log.h"
#include "util/loopq.h"
#include "util/names.h"
#include "util/workpool.h"

#define DOCS_PAGE_DEFAULT 100
#define DOCS_PAGE_MAX 1000

/* GET /api/dbs: every collection (worker). */
static void dbs_list_work(http_request *req)
{
    store_reader *r = handlers_reader(req);
    if (!r)
        return;
    store_collection *cs = NULL;
    size_t n = 0;
    ragd_err rc = store_collection_list(r, &cs, &n);
    store_reader_release(r);
    if (rc) {
        http_reply_error(req, 500, "internal", "listing collections failed: %s", ragd_strerror(rc));
        return;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, handlers_collection_json(&cs[i]));
    free(cs);
    handlers_reply_json_capped(req, 200, json_pack("{s:o}", "dbs", arr));
}

void handlers_dbs_list(http_request *req) { http_defer(req, dbs_list_work); }

static void dbs_get_work(http_request *req)
{
    const char *name = handlers_path_db(req);
    if (!name)
        return;
    store_reader *r = handlers_reader(req);
    if (!r)
        return;
    store_collection c;
    store_reembed_job job;
    if (handlers_collection(req, r, name, &c)) {
        json_t *body = handlers_collection_json(&c);
        if (body && store_reembed_get(r, c.id, &job) == RAGD_OK) /* the re-embedding job, if any */
            json_object_set_new(body, "reembed", handlers_reembed_json(&job));
        http_reply_json(req, 200, body);
    }
    store_reader_release(r);
}

void handlers_dbs_get(http_request *req) { http_defer(req, dbs_get_work); }

/* ---- changes through the writer ---- */

static void dbs_create_done(store_write *w, void *arg)
{
    http_request *req = arg;
    if (w->status == RAGD_OK)
        http_reply_json(req, w->created ? 201 : 200, handlers_collection_json(&w->coll));
    else
        handlers_reply_write_error(req, w, "db_not_found");
    free(w);
    http_complete(req);
}

static void dbs_create_work(http_request *req)
{
    json_t *body = http_json_object(req);
    if (!body)
        return;
    const ragd_config *cfg = &req->app->cfg;
    const char *name = NULL, *model = NULL;
    long long size = 0, overlap = 0;
    store_write *w = NULL;
    if (!fields_string(req, body, "name", true, 64, &name))
        goto out;
    if (!names_db_valid(name)) {
        http_reply_error(req, 422, "validation_error",
                         "name: must be 1-64 characters of [A-Za-z0-9_.-], not starting with '.'");
        goto out;
    }
    if (!fields_string(req, body, "embed_model", false, STORE_MODEL_MAX, &model))
        goto out;
    if (model && strcmp(model, EMBED_BUILTIN_NAME) != 0 && strcmp(model, "builtin") != 0) {
        http_reply_error(req, 422, "validation_error",
                         "embed_model: only '%s' (the builtin embedder) is available in this build", EMBED_BUILTIN_NAME);
        goto out;
    }
    if (!fields_int(req, body, "chunk_size", (long long)cfg->chunk_size, 100, 8000, &size))
        goto out;
    if (!fields_int(req, body, "chunk_overlap", size / 2 > (long long)cfg->chunk_overlap ? (long long)cfg->chunk_overlap : 0,
                    0, size / 2 - 1, &overlap))
        goto out;
    w = calloc(1, sizeof *w);
    if (!w) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        goto out;
    }
    w->kind = STORE_W_CREATE_COLLECTION;
    snprintf(w->collection, sizeof w->collection, "%s", name);
    snprintf(w->embed_model, sizeof w->embed_model, "%s", EMBED_BUILTIN_NAME);
    w->dim = EMBED_BUILTIN_DIM;
    w->chunk_size = (int)size;
    w->chunk_overlap = (int)overlap;
    w->done = dbs_create_done;
    w->arg = req;
    if (!handlers_submit(req, w))
        free(w);
out:
    json_decref(body);
}

void handlers_dbs_create(http_request *req) { http_defer(req, dbs_create_work); }

static void dbs_delete_done(store_write *w, void *arg)
{
    http_request *req = arg;
    if (w->status == RAGD_OK)
        http_reply_json(req, 200, json_pack("{s:s}", "deleted", w->collection));
    else
        handlers_reply_write_error(req, w, "db_not_found");
    free(w);
    http_complete(req);
}

static void dbs_delete_work(http_request *req)
{
    const char *name = handlers_path_db(req);
    if (!name)
        return;
    handlers_submit_collection_write(req, STORE_W_DROP_COLLECTION, name, dbs_delete_done);
}

void handlers_dbs_delete(http_request *req) { http_defer(req, dbs_delete_work); }

/* ---- documents ---- */

static json_t *dbs_document_json(const store_document *d)
{
    return json_pack("{s:s, s:s?, s:s?, s:o, s:I, s:I, s:I, s:s, s:s, s:s}", "id", d->doc_id, "source", d->source,
                     "title", d->title, "metadata",
                     handlers_metadata(d->metadata_json), "chunks", (json_int_t)d->chunks, "text_bytes",
                     (json_int_t)d->text_bytes, "version", (json_int_t)d->version, "content_hash", d->content_hash,
                     "created_at", d->created_at, "updated_at", d->updated_at);
}

/* The listing is written in pages straight into a chunked response, so the memory it takes
 * is one page plus the HTTP layer's buffered bytes, whatever `limit` is: 1,000 documents of
 * 64 KiB metadata once made a 270 MB body. A listing that fits in its first page is
 * answered in one body, as before. Each page is read on a worker with a reader borrowed for
 * that page only, and written from the loop.
 *
 * The HTTP layer buffers what the client has not read yet, up to 16 MiB (request.h), and
 * tells nothing of how much is pending; a stream written past that is cut. So one listing
 * carries at most DOCS_STREAM_BUDGET bytes (or RAGD_MAX_RESPONSE_BYTES when smaller): the
 * documents that would pass it are left for the next request, and the body ends with
 * "truncated": true — the client goes on from offset + the number of documents it got. At
 * least one document is always listed, so paging always moves on.
 *
 * Pages are read by offset, so a collection changed while its listing streams may show a
 * document twice or miss one (as two paged requests would). */
#define DOCS_PAGE_BYTES ((size_t)1 << 20)
#define DOCS_PAGE_MAX_DOCS 64
#define DOCS_STREAM_BUDGET ((size_t)15 << 20) /* under the HTTP layer's 16 MiB stream buffer */

typedef struct {
    http_request *req;
    app *a;
    store_collection coll;
    long long limit, offset;
    size_t written;  /* documents written so far */
    size_t per_page; /* documents read per page */
    size_t budget;   /* bytes the whole body may take */
    size_t bytes;    /* bytes of the body handed to the stream so far */
    strbuf page;     /* the next piece of the body, filled on a worker */
    jsonw w;         /* writes into page; its nesting carries over from page to page */
    bool last;       /* page ends the body */
    bool gone;       /* the client went away: the stream stops at the next page */
    http_stream *out;
    loopq_item item;
} docs_listing;

static void docs_listing_free(void *arg)
{
    docs_listing *l = arg;
    strbuf_cleanup(&l->page);
    free(l);
}

/* One document as the listing has always written it. The stored metadata is a JSON
 * object's text, copied as it is ({} when there is none). */
static void docs_write_document(jsonw *w, const store_document *d)
{
    const char *m = d->metadata_json && d->metadata_json[0] == '{' ? d->metadata_json : "{}";
    jsonw_object_begin(w);
    jsonw_key(w, "id");
    jsonw_string(w, d->doc_id);
    jsonw_key(w, "source");
    jsonw_string(w, d->source);
    jsonw_key(w, "title");
    jsonw_string(w, d->title);
    jsonw_key(w, "metadata");
    jsonw_raw(w, m);
    jsonw_key(w, "chunks");
    jsonw_int(w, d->chunks);
    jsonw_key(w, "text_bytes");
    jsonw_int(w, d->text_bytes);
    jsonw_key(w, "version");
    jsonw_int(w, d->version);
    jsonw_key(w, "content_hash");
    jsonw_string(w, d->content_hash);
    jsonw_key(w, "created_at");
    jsonw_string(w, d->created_at);
    jsonw_key(w, "updated_at");
    jsonw_string(w, d->updated_at);
    jsonw_object_end(w);
}

/* Reads the next page into l->page (worker). The first page carries the head of the body;
 * the last its end. RAGD_OK, or why the page could not be read or written. */
static ragd_err docs_read_page(docs_listing *l, store_reader *r)
{
    size_t left = (size_t)l->limit - l->written;
    size_t want = left < l->per_page ? left : l->per_page;
    store_document *docs = NULL;
    size_t n = 0;
    int64_t total = 0;
    ragd_err rc = store_document_list(r, l->coll.id, want, (size_t)l->offset + l->written, &docs, &n, &total);
    if (rc)
        return rc;
    jsonw *w = &l->w;
    if (l->written == 0 && l->page.len == 0) {
        jsonw_object_begin(w);
        jsonw_key(w, "db");
        jsonw_string(w, l->coll.name);
        jsonw_key(w, "total");
        jsonw_int(w, total);
        jsonw_key(w, "limit");
        jsonw_int(w, l->limit);
        jsonw_key(w, "offset");
        jsonw_int(w, l->offset);
        jsonw_key(w, "documents");
        jsonw_array_begin(w);
    }
    bool truncated = false;
    for (size_t i = 0; i < n && !truncated; i++) {
        size_t mark = l->page.len;
        jsonw before = *w;
        docs_write_document(w, &docs[i]);
        /* over the budget (room kept for the end): the document waits for the next request */
        if (l->written > 0 && l->bytes + l->page.len + 32 > l->budget) {
            strbuf_truncate(&l->page, mark);
            *w = before;
            truncated = true;
            break;
        }
        l->written++;
    }
    l->last = truncated || n < want || l->written >= (size_t)l->limit;
    if (l->last) {
        jsonw_array_end(w);
        if (truncated) {
            jsonw_key(w, "truncated");
            jsonw_bool(w, true);
        }
        jsonw_object_end(w);
    }
    store_document_list_free(docs, n);
    return jsonw_status(w);
}

/* The end of a streamed listing (loop). A listing cut short (no memory, store closing,
 * client gone) ends without its closing brackets: the client sees JSON that does not parse,
 * never a listing that looks whole. */
static void docs_stream_finish(docs_listing *l)
{
    http_request *req = l->req;
    http_stream_end(l->out);
    http_on_close(req, NULL, NULL);
    http_release(req); /* the stream's hold: l may be freed with the request here */
}

static void docs_on_client_gone(void *arg)
{
    docs_listing *l = arg;
    l->gone = true;
}

static void docs_page_work(void *arg);

/* A page not yet read when the workers stop (shutdown): the stream ends there. */
static void docs_page_cancel(void *arg) { docs_stream_finish(arg); }

/* Writes the page read and asks for the next one (loop). */
static void docs_stream_page(void *arg)
{
    docs_listing *l = arg;
    if (l->page.len > 0 && jsonw_status(&l->w) == RAGD_OK) {
        http_stream_write(l->out, l->page.data, l->page.len);
        l->bytes += l->page.len;
    }
    strbuf_reset(&l->page);
    if (l->gone || l->last || jsonw_status(&l->w) != RAGD_OK ||
        workpool_submit(l->a->pool, docs_page_work, docs_page_cancel, l) != RAGD_OK) {
        docs_stream_finish(l);
    }
}

/* The next page, on a worker; its writing goes back to the loop. */
static void docs_page_work(void *arg)
{
    docs_listing *l = arg;
    store_reader *r = store_reader_acquire(l->a->st);
    ragd_err rc = r ? docs_read_page(l, r) : RAGD_ECLOSED;
    if (r)
        store_reader_release(r);
    if (rc) {
        log_warn("request %s: document listing cut short after %zu documents: %s", l->req->request_id, l->written,
                 ragd_strerror(rc));
        if (jsonw_status(&l->w) == RAGD_OK)
            l->w.err = rc; /* stops the stream */
    }
    loopq_post(l->a->lq, &l->item, docs_stream_page, l);
}

/* The first page was read and more follow: the response becomes a stream (loop). */
static void docs_stream_begin(void *arg)
{
    docs_listing *l = arg;
    http_request *req = l->req;
    l->out = http_stream_begin(req, "application/json; charset=utf-8");
    if (!l->out) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        http_complete(req);
        return;
    }
    http_retain(req); /* the stream's own hold, released in docs_stream_finish */
    http_on_close(req, docs_on_client_gone, l);
    http_complete(req); /* the response (the stream) goes now */
    docs_stream_page(l);
}

static void documents_list_work(http_request *req)
{
    docs_listing *l = req->cleanup_arg;
    const char *name = handlers_path_db(req);
    if (!name || !fields_arg_int(req, "limit", DOCS_PAGE_DEFAULT, 1, DOCS_PAGE_MAX, &l->limit) ||
        !fields_arg_int(req, "offset", 0, 0, INT64_MAX, &l->offset))
        return;
    store_reader *r = handlers_reader(req);
    if (!r)
        return;
    if (!handlers_collection(req, r, name, &l->coll)) {
        store_reader_release(r);
        return;
    }
    l->budget = l->a->cfg.max_response_bytes < DOCS_STREAM_BUDGET ? l->a->cfg.max_response_bytes : DOCS_STREAM_BUDGET;
    size_t per_page = DOCS_PAGE_BYTES / l->a->cfg.max_metadata_bytes;
    l->per_page = per_page < 1 ? 1 : per_page > DOCS_PAGE_MAX_DOCS ? DOCS_PAGE_MAX_DOCS : per_page;
    ragd_err rc = docs_read_page(l, r);
    store_reader_release(r);
    if (rc == RAGD_ENOMEM) {
        http_reply_error(req, 503, "overloaded", "out of memory while listing documents");
    } else if (rc) {
        http_reply_error(req, 500, "internal", "listing documents failed: %s", ragd_strerror(rc));
    } else if (l->last) { /* it all fits in one page: one body */
        http_reply_raw(req, 200, "application/json; charset=utf-8", l->page.data, l->page.len);
    } else {
        http_hold(req);
        loopq_post(l->a->lq, &l->item, docs_stream_begin, l);
    }
}

/* Arrival (loop): the listing's state belongs to the request. */
void handlers_documents_list(http_request *req)
{
    docs_listing *l = calloc(1, sizeof *l);
    if (!l) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    l->req = req;
    l->a = req->app;
    strbuf_init(&l->page, DOCS_PAGE_BYTES + req->app->cfg.max_metadata_bytes + 65536);
    jsonw_init(&l->w, &l->page);
    http_set_cleanup(req, docs_listing_free, l);
    http_defer(req, documents_list_work);
}

static void document_get_work(http_request *req)
{
    const char *name = handlers_path_db(req);
    if (!name)
        return;
    const char *doc_id = req->params[1];
    store_reader *r = handlers_reader(req);
    if (!r)
        return;
    store_collection c;
    store_document d = {0};
    store_chunk *chunks = NULL;
    size_t n = 0;
    if (!handlers_collection(req, r, name, &c))
        goto out;
    ragd_err rc = store_document_get(r, c.id, doc_id, &d, &chunks, &n);
    if (rc == RAGD_ENOTFOUND) {
        http_reply_error(req, 404, "document_not_found", "document '%s' does not exist in '%s'", doc_id, name);
        goto out;
    }
    if (rc) {
        http_reply_error(req, 500, "internal", "reading document failed: %s", ragd_strerror(rc));
        goto out;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:i, s:s, s:I, s:I}", "chunk", chunks[i].ordinal, "text", chunks[i].text,
                                             "start", (json_int_t)chunks[i].start, "end", (json_int_t)chunks[i].end));
    json_t *body = dbs_document_json(&d);
    json_object_set_new(body, "db", json_string(c.name));
    json_object_set_new(body, "chunks", arr);
    handlers_reply_json_capped(req, 200, body);
out:
    store_document_cleanup(&d);
    store_chunks_free(chunks, n);
    store_reader_release(r);
}

void handlers_document_get(http_request *req) { http_defer(req, document_get_work); }

typedef struct {
    store_write w;
    char doc_id[];
} dbs_doc_delete;

static void document_delete_done(store_write *w, void *arg)
{
    http_request *req = arg;
    if (w->status == RAGD_OK)
        http_reply_json(req, 200, json_pack("{s:s, s:s}", "deleted", w->doc_id, "db", w->collection));
    else
        handlers_reply_write_error(req, w, "document_not_found");
    free(w);
    http_complete(req);
}

static void document_delete_work(http_request *req)
{
    const char *name = handlers_path_db(req);
    if (!name)
        return;
    /* Tell a missing collection (db_not_found) from a missing document up front. */
    if (!handlers_collection_exists(req, name))
        return;
    size_t idlen = strlen(req->params[1]);
    dbs_doc_delete *dd = calloc(1, sizeof *dd + idlen + 1);
    if (!dd) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    memcpy(dd->doc_id, req->params[1], idlen + 1);
    store_write *w = &dd->w;
    w->kind = STORE_W_DELETE_DOCUMENT;
    snprintf(w->collection, sizeof w->collection, "%s", name);
    w->doc_id = dd->doc_id;
    w->done = document_delete_done;
    w->arg = req;
    if (!handlers_submit(req, w))
        free(dd);
}

void handlers_document_delete(http_request *req) { http_defer(req, document_delete_work); }
