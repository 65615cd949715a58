/* Re-embedding a collection (docs/api.md, docs/internals/reembed.md):
 * POST /api/dbs/{name}/reembed starts a job (202), GET shows it, DELETE cancels it. The job
 * itself runs in rag/reembed.c; these are adapters. */
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "http/fields.h"
#include "http/handlers.h"
#include "rag/reembed.h"

json_t *handlers_reembed_json(const store_reembed_job *j)
{
    json_t *o = json_pack("{s:s, s:s, s:s, s:I, s:I, s:s, s:s}", "state", j->state, "embedder", j->embedder, "model",
                          j->model, "done", (json_int_t)j->done, "total", (json_int_t)j->total, "started_at",
                          j->started_at, "updated_at", j->updated_at);
    if (o && j->dim > 0)
        json_object_set_new(o, "dim", json_integer(j->dim));
    if (o && j->error[0])
        json_object_set_new(o, "error", json_string(j->error));
    return o;
}

/* ---- POST: start ---- */

/* The job's row committed or refused (store writer thread). */
static void reembed_started(const store_write *w, void *ctx)
{
    http_request *req = ctx;
    switch (w->status) {
    case RAGD_OK:
        http_reply_json(req, 202,
                        json_pack("{s:s, s:{s:s, s:s, s:s, s:I}}", "db", w->collection, "reembed", "state", "running",
                                  "embedder", w->embedder, "model", w->embed_model, "total",
                                  (json_int_t)w->coll.chunks));
        break;
    case RAGD_ECONFLICT:
        http_reply_error(req, 409, "reembed_running", "%s", w->message);
        break;
    case RAGD_ENOTFOUND:
        http_reply_error(req, 404, "db_not_found", "%s", w->message);
        break;
    default:
        handlers_reply_write_error(req, w, "db_not_found");
        break;
    }
    http_complete(req);
}

static void reembed_start_work(http_request *req)
{
    const char *name = handlers_path_db(req);
    json_t *body = name ? http_json_object(req) : NULL;
    if (!body)
        return;
    const char *embedder = NULL, *model = NULL;
    char resolved[STORE_MODEL_MAX + 1], why[300];
    if (!fields_string(req, body, "embedder", true, 15, &embedder) ||
        !fields_string(req, body, "model", false, STORE_MODEL_MAX, &model))
        goto out;
    if (!rag_reembed_resolve(rag_engine_cfg(req->app->engine), embedder, model, resolved, sizeof resolved, why,
                             sizeof why)) {
        http_reply_error(req, 422, "validation_error", "%s", why);
        goto out;
    }
    http_hold(req);
    ragd_err rc = rag_reembed_start(req->app->reembed, name, embedder, resolved, reembed_started, req);
    if (rc != RAGD_OK) {
        snprintf(req->retry_after, sizeof req->retry_after, "1");
        if (rc == RAGD_ECLOSED)
            http_reply_error(req, 503, "not_ready", "server is shutting down");
        else
            http_reply_error(req, 503, "overloaded", "server busy (%s), retry shortly", ragd_strerror(rc));
        http_complete(req);
    }
out:
    json_decref(body);
}

void handlers_reembed_start(http_request *req) { http_defer(req, reembed_start_work); }

/* ---- GET: progress ---- */

static void reembed_get_work(http_request *req)
{
    const char *name = handlers_path_db(req);
    if (!name)
        return;
    store_reader *r = handlers_reader(req);
    if (!r)
        return;
    store_collection c;
    store_reembed_job j;
    if (handlers_collection(req, r, name, &c)) {
        ragd_err rc = store_reembed_get(r, c.id, &j);
        if (rc == RAGD_OK)
            http_reply_json(req, 200, json_pack("{s:s, s:o}", "db", c.name, "reembed", handlers_reembed_json(&j)));
        else if (rc == RAGD_ENOTFOUND)
            http_reply_error(req, 404, "reembed_not_found", "collection '%s' has no re-embedding job", name);
        else
            http_reply_error(req, rc == RAGD_ENOMEM ? 503 : 500, rc == RAGD_ENOMEM ? "overloaded" : "internal",
                             "reading the re-embedding job failed: %s", ragd_strerror(rc));
    }
    store_reader_release(r);
}

void handlers_reembed_get(http_request *req) { http_defer(req, reembed_get_work); }

/* ---- DELETE: cancel ---- */

static void reembed_cancel_done(store_write *w, void *arg)
{
    http_request *req = arg;
    if (w->status == RAGD_OK)
        http_reply_json(req, 200, json_pack("{s:s, s:b, s:s}", "db", w->collection, "cancelled", 1, "model",
                                            w->embed_model));
    else
        handlers_reply_write_error(req, w, "reembed_not_found");
    free(w);
    http_complete(req);
}

static void reembed_cancel_work(http_request *req)
{
    const char *name = handlers_path_db(req);
    if (!name)
        return;
    /* a missing collection (db_not_found) told from a collection without a job */
    if (handlers_collection_exists(req, name))
        handlers_submit_collection_write(req, STORE_W_REEMBED_CANCEL, name, reembed_cancel_done);
}

void handlers_reembed_cancel(http_request *req) { http_defer(req, reembed_cancel_work); }
