/* The asynchronous steps of the compatible routes that are not chats (compat.h): model
 * lists (a worker lists the collections, the loop asks the backend), questions to the
 * backend about its models, a collection looked up for /api/show, and embeddings. */
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "http/compat.h"
#include "http/handlers.h"
#include "rag/embed_builtin.h"
#include "rag/embed_texts.h"
#include "util/clock.h"
#include "util/log.h"

#define COMPAT_META_TIMEOUT_MS 5000.0 /* a model list waits this long for the backend */

/* A zeroed state of size bytes owned by req (freed by cleanup when req is freed), or NULL
 * after replying 503. */
static void *compat_state_new(http_request *req, size_t size, void (*cleanup)(void *))
{
    void *state = calloc(1, size);
    if (!state) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return NULL;
    }
    http_set_cleanup(req, cleanup, state);
    return state;
}

/* On a worker: collection db into out. RAGD_ENOTFOUND is left to the caller to answer;
 * any other failure has been answered (503 store closing, 500). */
static ragd_err compat_collection_lookup(http_request *req, const char *db, store_collection *out)
{
    store_reader *r = handlers_reader(req);
    if (!r)
        return RAGD_ECLOSED;
    ragd_err rc = store_collection_get(r, db, out);
    store_reader_release(r);
    if (rc != RAGD_OK && rc != RAGD_ENOTFOUND)
        http_reply_error(req, 500, "internal", "looking the collection up failed: %s", ragd_strerror(rc));
    return rc;
}

/* ---- model lists ---- */

typedef struct {
    http_request *req;
    compat_models_render render;
    store_collection *cs;
    size_t n;
    llm_task *task;
    loopq_item item;
} compat_models_call;

static void compat_models_free(void *arg)
{
    compat_models_call *m = arg;
    free(m->cs);
    free(m);
}

static void compat_models_on_meta(llm_status st, json_t *reply, const char *message, void *arg)
{
    compat_models_call *m = arg;
    m->task = NULL;
    if (st != LLM_OK)
        log_debug("request %s: the backend's model list: %s (%s); collections only", m->req->request_id,
                  llm_status_name(st), message ? message : "");
    m->render(m->req, m->cs, m->n, st == LLM_OK && json_is_array(reply) ? reply : NULL);
    http_complete(m->req);
}

/* On the loop, after the worker listed the collections. */
static void compat_models_step(void *arg)
{
    compat_models_call *m = arg;
    app *a = m->req->app;
    if (a->generator && rag_engine_llm_in_use(a->engine, a->generator))
        m->task = llm_meta(a->generator, LLM_META_MODELS, NULL, clock_now_ms() + COMPAT_META_TIMEOUT_MS,
                           compat_models_on_meta, m);
    if (m->task)
        return;
    m->render(m->req, m->cs, m->n, NULL);
    http_complete(m->req);
}

static void compat_models_work(http_request *req)
{
    compat_models_call *m = req->cleanup_arg;
    store_reader *r = handlers_reader(req);
    if (!r)
        return;
    ragd_err rc = store_collection_list(r, &m->cs, &m->n);
    store_reader_release(r);
    if (rc != RAGD_OK) {
        http_reply_error(req, 500, "internal", "listing collections failed: %s", ragd_strerror(rc));
        return;
    }
    http_hold(req);
    loopq_post(req->app->lq, &m->item, compat_models_step, m);
}

void compat_list_models(http_request *req, compat_models_render render)
{
    compat_models_call *m = compat_state_new(req, sizeof *m, compat_models_free);
    if (!m)
        return;
    m->req = req;
    m->render = render;
    http_defer(req, compat_models_work);
}

/* ---- questions to the backend ---- */

typedef struct {
    http_request *req;
    compat_meta_render render;
    char model[COMPAT_MODEL_MAX + 1];
} compat_meta_call;

static void compat_meta_on_reply(llm_status st, json_t *reply, const char *message, void *arg)
{
    compat_meta_call *m = arg;
    m->render(m->req, st, reply, message, m->model);
    http_complete(m->req);
}

void compat_meta(http_request *req, llm_meta_kind what, const char *model, compat_meta_render render)
{
    app *a = req->app;
    compat_meta_call *m = compat_state_new(req, sizeof *m, free);
    if (!m)
        return;
    m->req = req;
    m->render = render;
    snprintf(m->model, sizeof m->model, "%s", model ? model : "");
    llm_task *t = NULL;
    if (a->generator) {
        http_go_async(req);
        t = llm_meta(a->generator, what, model, clock_now_ms() + COMPAT_META_TIMEOUT_MS, compat_meta_on_reply, m);
        if (t)
            return;
    }
    render(req, LLM_UNAVAILABLE, NULL, "no LLM backend is configured", m->model);
    if (a->generator)
        http_complete(req);
}

/* ---- a collection for /api/show ---- */

typedef struct {
    compat_collection_render render;
    char db[STORE_NAME_MAX + 1];
    char model[COMPAT_MODEL_MAX + 1];
} compat_show_call;

static void compat_show_work(http_request *req)
{
    compat_show_call *s = req->cleanup_arg;
    store_collection c;
    ragd_err rc = compat_collection_lookup(req, s->db, &c);
    if (rc == RAGD_OK)
        s->render(req, &c, s->model);
    else if (rc == RAGD_ENOTFOUND)
        s->render(req, NULL, s->model);
}

void compat_show_collection(http_request *req, const char *db, const char *model, compat_collection_render render)
{
    compat_show_call *s = compat_state_new(req, sizeof *s, free);
    if (!s)
        return;
    s->render = render;
    snprintf(s->db, sizeof s->db, "%s", db);
    snprintf(s->model, sizeof s->model, "%s", model);
    http_defer(req, compat_show_work);
}

/* ---- embeddings ---- */

typedef struct {
    http_request *req;
    compat_embed_render render;
    char model[COMPAT_MODEL_MAX + 1];
    char db[STORE_NAME_MAX + 1];
    json_t *hold;
    const char **texts;
    size_t *lens;
    size_t n;
    size_t tokens;
    store_collection coll;
    llm_task *task;
    double started_ms; /* when the upstream embedding began: its time goes to the access line */
    loopq_item item;
} compat_embed_call;

static void compat_embed_free(void *arg)
{
    compat_embed_call *e = arg;
    json_decref(e->hold);
    free(e->texts);
    free(e->lens);
    free(e);
}

static void compat_embed_on_vectors(llm_status st, const float *vectors, size_t dim, const char *message, void *arg)
{
    compat_embed_call *e = arg;
    e->task = NULL;
    e->req->upstream.embed_ms = clock_now_ms() - e->started_ms;
    if (st == LLM_OK)
        e->render(e->req, e->model, vectors, e->n, dim, e->tokens);
    else
        compat_reply_llm_status(e->req, st, message, e->model);
    http_complete(e->req);
}

/* On the loop: the collection's model upstream. */
static void compat_embed_upstream_step(void *arg)
{
    compat_embed_call *e = arg;
    e->started_ms = clock_now_ms();
    e->task = rag_embed_texts_upstream(e->req->app->engine, &e->coll, e->texts, e->lens, e->n,
                                       compat_embed_on_vectors, e);
    if (e->task)
        return;
    http_reply_error(e->req, 503, "overloaded", "the embedding could not start (out of memory or shutting down)");
    http_complete(e->req);
}

/* On a worker: the collection, then the builtin embedder here or the upstream one on the loop. */
static void compat_embed_rag_work(http_request *req)
{
    compat_embed_call *e = req->cleanup_arg;
    ragd_err rc = compat_collection_lookup(req, e->db, &e->coll);
    if (rc == RAGD_ENOTFOUND)
        compat_reply_model_not_found(req, e->model);
    if (rc != RAGD_OK)
        return;
    switch (rag_embed_texts_kind(req->app->engine, &e->coll)) {
    case RAG_TEXTS_BUILTIN: {
        float *v = malloc(e->n * EMBED_BUILTIN_DIM * sizeof *v);
        if (!v || rag_embed_texts_builtin(e->texts, e->lens, e->n, v) != RAGD_OK)
            http_reply_error(req, 503, "overloaded", "out of memory");
        else
            e->render(req, e->model, v, e->n, EMBED_BUILTIN_DIM, e->tokens);
        free(v);
        return;
    }
    case RAG_TEXTS_UPSTREAM:
        http_hold(req);
        loopq_post(req->app->lq, &e->item, compat_embed_upstream_step, e);
        return;
    case RAG_TEXTS_UNAVAILABLE: break;
    }
    http_reply_error(req, 409, "embed_model_mismatch",
                     "collection '%s' is embedded with '%s' upstream and no upstream embedder is configured", e->db,
                     e->coll.embed_model);
}

void compat_embed_run(http_request *req, const char *model, json_t *hold, const char **texts, size_t *lens, size_t n,
                      compat_embed_render render)
{
    app *a = req->app;
    compat_embed_call *e = compat_state_new(req, sizeof *e, compat_embed_free);
    if (!e) {
        json_decref(hold);
        free(texts);
        free(lens);
        return;
    }
    e->req = req;
    e->render = render;
    e->hold = hold;
    e->texts = texts;
    e->lens = lens;
    e->n = n;
    snprintf(e->model, sizeof e->model, "%s", model);
    for (size_t i = 0; i < n; i++)
        e->tokens += (lens[i] + 3) / 4;
    if (n == 0) {
        render(req, model, NULL, 0, 0, 0);
        return;
    }
    if (compat_rag_db(model, e->db)) {
        http_defer(req, compat_embed_rag_work);
        return;
    }
    llm *l = a->embedder ? a->embedder : a->generator;
    if (!l) {
        compat_reply_model_not_found(req, model);
        return;
    }
    http_go_async(req);
    e->started_ms = clock_now_ms();
    e->task = llm_embed(l, model, e->texts, e->lens, n, clock_now_ms() + a->cfg.embed_timeout_s * 1000.0,
                        compat_embed_on_vectors, e);
    if (e->task) {
        return;
    }
    http_reply_error(req, 503, "overloaded", "the embedding could not start (out of memory or shutting down)");
    http_complete(req);
}
