/* Collections ("dbs") and their documents. Reads run on a worker with a borrowed store
 * reader; changes go to the store's writer and are answered after their commit. */
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "http/fields.h"
#include "http/handlers.h"
#include "rag/embed_builtin.h"
#include "util/names.h"

#define DOCS_PAGE_DEFAULT 100
#define DOCS_PAGE_MAX 1000

/* The collection name in the path; replies 422 when it is not a valid name. */
static const char *dbs_path_name(http_request *req)
{
    const char *name = req->params[0];
    if (!names_db_valid(name)) {
        http_reply_error(req, 422, "validation_error",
                         "name: must be 1-64 characters of [A-Za-z0-9_.-], not starting with '.'");
        return NULL;
    }
    return name;
}

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
    http_reply_json(req, 200, json_pack("{s:o}", "dbs", arr));
}

void handlers_dbs_list(http_request *req) { http_defer(req, dbs_list_work); }

static void dbs_get_work(http_request *req)
{
    const char *name = dbs_path_name(req);
    if (!name)
        return;
    store_reader *r = handlers_reader(req);
    if (!r)
        return;
    store_collection c;
    if (handlers_collection(req, r, name, &c))
        http_reply_json(req, 200, handlers_collection_json(&c));
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
    const char *name = dbs_path_name(req);
    if (!name)
        return;
    store_write *w = calloc(1, sizeof *w);
    if (!w) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    w->kind = STORE_W_DROP_COLLECTION;
    snprintf(w->collection, sizeof w->collection, "%s", name);
    w->done = dbs_delete_done;
    w->arg = req;
    if (!handlers_submit(req, w))
        free(w);
}

void handlers_dbs_delete(http_request *req) { http_defer(req, dbs_delete_work); }

/* ---- documents ---- */

static json_t *dbs_document_json(const store_document *d)
{
    return json_pack("{s:s, s:s?, s:o, s:I, s:I, s:s, s:s, s:s}", "id", d->doc_id, "source", d->source, "metadata",
                     handlers_metadata(d->metadata_json), "chunks", (json_int_t)d->chunks, "version",
                     (json_int_t)d->version, "content_hash", d->content_hash, "created_at", d->created_at,
                     "updated_at", d->updated_at);
}

static void documents_list_work(http_request *req)
{
    const char *name = dbs_path_name(req);
    long long limit = 0, offset = 0;
    if (!name || !fields_arg_int(req, "limit", DOCS_PAGE_DEFAULT, 1, DOCS_PAGE_MAX, &limit) ||
        !fields_arg_int(req, "offset", 0, 0, INT64_MAX, &offset))
        return;
    store_reader *r = handlers_reader(req);
    if (!r)
        return;
    store_collection c;
    store_document *docs = NULL;
    size_t n = 0;
    int64_t total = 0;
    if (!handlers_collection(req, r, name, &c))
        goto out;
    ragd_err rc = store_document_list(r, c.id, (size_t)limit, (size_t)offset, &docs, &n, &total);
    if (rc) {
        http_reply_error(req, 500, "internal", "listing documents failed: %s", ragd_strerror(rc));
        goto out;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, dbs_document_json(&docs[i]));
    http_reply_json(req, 200,
                    json_pack("{s:s, s:I, s:I, s:I, s:o}", "db", c.name, "total", (json_int_t)total, "limit",
                              (json_int_t)limit, "offset", (json_int_t)offset, "documents", arr));
out:
    store_document_list_free(docs, n);
    store_reader_release(r);
}

void handlers_documents_list(http_request *req) { http_defer(req, documents_list_work); }

static void document_get_work(http_request *req)
{
    const char *name = dbs_path_name(req);
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
    http_reply_json(req, 200, body);
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
    const char *name = dbs_path_name(req);
    if (!name)
        return;
    /* Tell a missing collection (db_not_found) from a missing document up front. */
    store_reader *r = handlers_reader(req);
    if (!r)
        return;
    store_collection c;
    bool exists = handlers_collection(req, r, name, &c);
    store_reader_release(r);
    if (!exists)
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
