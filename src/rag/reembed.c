/* Re-embedding in the background. See reembed.h and docs/internals/reembed.md.
 *
 * A job's steps, and the thread each runs on:
 *   start (writer)     the job's row committed → started callback → next
 *   next (any)         to a worker (queue full: again after a short wait, from the loop)
 *   step (worker)      up to RAG_REEMBED_BATCH chunks without a new vector, after the last
 *                      one stored, by id; none left → swap; builtin → vectors here → write;
 *                      upstream →
 *   embed (loop)       llm_embed → vectors → write; a failure is tried again after 1, 2,
 *                      4 s (a timer), then the job fails
 *   write (writer)     the vectors stored → next; the swap committed → the end; the swap
 *                      found chunks ingested meanwhile → next, from the first chunk
 * One thread at a time touches a run; every hand-over goes through the worker pool, the loop
 * queue, a timer or the store's writer. A write refused because the job is no longer the
 * collection's running one (cancelled) ends the run quietly; so do shutdown and cancellation
 * of the upstream call: the job stays "running" in the store and resumes at the next start. */
#include "rag/reembed.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rag/embed_builtin.h"
#include "upstream/llm.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/loopq.h"
#include "util/queue.h"
#include "util/utf8.h"
#include "util/workpool.h"

#define REEMBED_BUSY_WAIT_MS 200 /* a full worker or store queue: try again after this */

struct rag_reembed {
    const rag_engine_config *cfg;
    struct event_base *base;
    pthread_mutex_t mu;
    queue_node runs; /* live runs, under mu */
};

typedef struct reembed_run reembed_run;
struct reembed_run {
    rag_reembed *m;
    store_write w;
    char db[STORE_NAME_MAX + 1];
    char embedder[16];
    char model[STORE_MODEL_MAX + 1];
    bool builtin;
    int64_t job_id;
    int64_t coll_id;
    int64_t after; /* the last chunk id whose vector was stored in this pass */
    /* the batch in hand */
    store_chunk *chunks;
    size_t n;
    const char **texts;
    size_t *lens;
    int64_t *ids;
    float *vectors;
    int dim;
    int attempts; /* failed upstream tries of this batch */
    bool probe;   /* the batch is one text embedded for the dimension only */
    llm_task *task;
    struct event *timer;
    void (*later)(reembed_run *r); /* what the timer runs (loop) */
    loopq_item item;
    queue_node link;
    rag_reembed_started_fn started;
    void *ctx;
    char why[300];
};

/* ---- the manager ---- */

rag_reembed *rag_reembed_new(const rag_engine_config *cfg, struct event_base *base)
{
    rag_reembed *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    m->cfg = cfg;
    m->base = base;
    pthread_mutex_init(&m->mu, NULL);
    queue_init(&m->runs);
    return m;
}

static void run_batch_free(reembed_run *r)
{
    store_chunks_free(r->chunks, r->n);
    free(r->texts);
    free(r->lens);
    free(r->ids);
    free(r->vectors);
    r->chunks = NULL;
    r->texts = NULL;
    r->lens = NULL;
    r->ids = NULL;
    r->vectors = NULL;
    r->n = 0;
}

static void run_free(reembed_run *r)
{
    run_batch_free(r);
    if (r->timer)
        event_free(r->timer);
    free(r);
}

void rag_reembed_free(rag_reembed *m)
{
    if (!m)
        return;
    queue_node *q;
    while ((q = queue_pop(&m->runs)) != NULL)
        run_free(queue_data(q, reembed_run, link));
    pthread_mutex_destroy(&m->mu);
    free(m);
}

/* A run, registered. NULL: no memory. */
static reembed_run *run_new(rag_reembed *m, const char *db, const char *embedder, const char *model)
{
    reembed_run *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    r->m = m;
    snprintf(r->db, sizeof r->db, "%s", db);
    snprintf(r->embedder, sizeof r->embedder, "%s", embedder);
    snprintf(r->model, sizeof r->model, "%s", model);
    r->builtin = strcmp(model, EMBED_BUILTIN_NAME) == 0;
    r->dim = r->builtin ? EMBED_BUILTIN_DIM : 0;
    pthread_mutex_lock(&m->mu);
    queue_insert_tail(&m->runs, &r->link);
    pthread_mutex_unlock(&m->mu);
    return r;
}

/* The run ends (the job itself stays as the store has it). Any thread. */
static void run_end(reembed_run *r)
{
    pthread_mutex_lock(&r->m->mu);
    queue_remove(&r->link);
    pthread_mutex_unlock(&r->m->mu);
    run_free(r);
}

static bool run_stopping(const reembed_run *r)
{
    const atomic_bool *s = r->m->cfg->stopping;
    return s && atomic_load(s);
}

/* ---- hand-overs ---- */

static void run_step(void *arg);
static void run_embed(reembed_run *r);
static void run_submit(reembed_run *r, store_write_kind kind);

static void run_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    reembed_run *r = arg;
    r->later(r);
}

/* Arms the timer (loop), posted by run_later. */
static void run_arm(void *arg)
{
    reembed_run *r = arg;
    int ms = r->attempts > 0 ? 1000 << (r->attempts - 1) : REEMBED_BUSY_WAIT_MS;
    if (run_stopping(r)) {
        run_end(r);
        return;
    }
    if (!r->timer)
        r->timer = evtimer_new(r->m->base, run_on_timer, r);
    struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
    if (!r->timer || evtimer_add(r->timer, &tv) != 0) {
        log_error("reembed '%s': cannot arm a timer; the job resumes at the next start", r->db);
        run_end(r);
    }
}

/* fn(r) on the loop after a wait (1 s << (attempts - 1), or a short one when attempts is 0). */
static void run_later(reembed_run *r, void (*fn)(reembed_run *r))
{
    r->later = fn;
    loopq_post(r->m->cfg->lq, &r->item, run_arm, r);
}

/* A step dropped by the worker pool at shutdown. */
static void run_dropped(void *arg) { run_end(arg); }

static void run_next(reembed_run *r);
static void run_next_later(reembed_run *r) { run_next(r); }

/* The next step, on a worker. Any thread. */
static void run_next(reembed_run *r)
{
    if (run_stopping(r)) {
        run_end(r);
        return;
    }
    ragd_err rc = workpool_submit(r->m->cfg->ingest_pool, run_step, run_dropped, r);
    if (rc == RAGD_EBUSY) {
        r->attempts = 0;
        run_later(r, run_next_later);
    } else if (rc != RAGD_OK) {
        log_warn("reembed '%s': worker pool refused the next step (%s); the job resumes at the next start", r->db,
                 ragd_strerror(rc));
        run_end(r);
    }
}

/* The job stops as failed (why in r->why): the store keeps it, with the vectors so far. */
static void run_fail(reembed_run *r)
{
    utf8_sanitize(r->why);
    log_warn("reembed '%s' to '%s': failed: %s", r->db, r->model, r->why);
    run_submit(r, STORE_W_REEMBED_FAIL);
}

/* ---- the step (worker) ---- */

/* Copies every chunk's text pointer for the upstream embedder; false when out of memory. */
static bool run_texts(reembed_run *r)
{
    r->texts = calloc(r->n, sizeof *r->texts);
    r->lens = calloc(r->n, sizeof *r->lens);
    if (!r->texts || !r->lens)
        return false;
    for (size_t i = 0; i < r->n; i++) {
        r->texts[i] = r->chunks[i].text;
        r->lens[i] = strlen(r->chunks[i].text);
        if (r->lens[i] == 0) { /* an embedder may refuse an empty input */
            r->texts[i] = " ";
            r->lens[i] = 1;
        }
    }
    return true;
}

static bool run_builtin(reembed_run *r)
{
    r->vectors = calloc(r->n * EMBED_BUILTIN_DIM, sizeof *r->vectors);
    if (!r->vectors)
        return false;
    for (size_t i = 0; i < r->n; i++)
        if (embed_builtin(r->chunks[i].text, strlen(r->chunks[i].text), r->vectors + i * EMBED_BUILTIN_DIM) != RAGD_OK)
            return false;
    r->dim = EMBED_BUILTIN_DIM;
    return true;
}

static void run_post_embed(void *arg) { run_embed(arg); }

static void run_step(void *arg)
{
    reembed_run *r = arg;
    const rag_engine_config *cfg = r->m->cfg;
    store_reader *rd = store_reader_acquire(cfg->st);
    if (!rd) {
        run_end(r);
        return;
    }
    run_batch_free(r);
    ragd_err rc = store_reembed_pending(rd, r->coll_id, r->after, RAG_REEMBED_BATCH, &r->chunks, &r->n);
    store_reader_release(rd);
    if (rc) {
        snprintf(r->why, sizeof r->why, "reading the chunks to embed: %s", ragd_strerror(rc));
        run_fail(r);
        return;
    }
    if (r->n == 0 && !r->builtin && r->dim == 0) {
        /* Nothing (left) to embed and the model's dimension unknown to this run: one text
         * embedded for it, so that even a collection without chunks swaps to the right dim. */
        r->texts = calloc(1, sizeof *r->texts);
        r->lens = calloc(1, sizeof *r->lens);
        if (!r->texts || !r->lens) {
            snprintf(r->why, sizeof r->why, "out of memory");
            run_fail(r);
            return;
        }
        r->texts[0] = r->db;
        r->lens[0] = strlen(r->db);
        r->n = 1;
        r->probe = true;
        r->attempts = 0;
        loopq_post(cfg->lq, &r->item, run_post_embed, r);
        return;
    }
    if (r->n == 0) {
        run_submit(r, STORE_W_REEMBED_SWAP);
        return;
    }
    r->ids = malloc(r->n * sizeof *r->ids);
    if (!r->ids) {
        snprintf(r->why, sizeof r->why, "out of memory");
        run_fail(r);
        return;
    }
    for (size_t i = 0; i < r->n; i++)
        r->ids[i] = r->chunks[i].chunk_id;
    if (r->builtin) {
        if (!run_builtin(r)) {
            snprintf(r->why, sizeof r->why, "out of memory");
            run_fail(r);
            return;
        }
        run_submit(r, STORE_W_REEMBED_VECTORS);
        return;
    }
    if (!run_texts(r)) {
        snprintf(r->why, sizeof r->why, "out of memory");
        run_fail(r);
        return;
    }
    r->attempts = 0;
    loopq_post(cfg->lq, &r->item, run_post_embed, r);
}

/* ---- the upstream embedder (loop) ---- */

static void run_on_embedded(llm_status st, const float *v, size_t dim, const char *message, void *arg)
{
    reembed_run *r = arg;
    r->task = NULL;
    if (st == LLM_CANCELLED) { /* shutdown: the job resumes at the next start */
        run_end(r);
        return;
    }
    if (st != LLM_OK || !v || dim == 0) {
        snprintf(r->why, sizeof r->why, "embedder %s (model %s) %s: %s", r->m->cfg->embedder_name, r->model,
                 llm_status_name(st), message && *message ? message : "no detail");
        if (++r->attempts < RAG_REEMBED_ATTEMPTS && st != LLM_REJECTED && st != LLM_NOT_FOUND) {
            log_info("reembed '%s': %s; trying again", r->db, r->why);
            run_later(r, run_embed);
            return;
        }
        run_fail(r);
        return;
    }
    if (r->probe) {
        r->probe = false;
        r->dim = (int)dim;
        run_batch_free(r);
        run_next(r);
        return;
    }
    r->vectors = malloc(r->n * dim * sizeof *r->vectors);
    if (!r->vectors) {
        snprintf(r->why, sizeof r->why, "out of memory");
        run_fail(r);
        return;
    }
    memcpy(r->vectors, v, r->n * dim * sizeof *v);
    r->dim = (int)dim;
    run_submit(r, STORE_W_REEMBED_VECTORS);
}

static void run_embed(reembed_run *r)
{
    const rag_engine_config *cfg = r->m->cfg;
    if (run_stopping(r)) {
        run_end(r);
        return;
    }
    if (!cfg->embedder) {
        snprintf(r->why, sizeof r->why, "no upstream embedder is configured");
        run_fail(r);
        return;
    }
    r->task = llm_embed(cfg->embedder, r->model, r->texts, r->lens, r->n, clock_now_ms() + cfg->embed_timeout_ms,
                        run_on_embedded, r);
    if (!r->task) {
        if (run_stopping(r)) {
            run_end(r);
            return;
        }
        snprintf(r->why, sizeof r->why, "the embedding call could not start");
        run_fail(r);
    }
}

/* ---- writes ---- */

static void run_written(store_write *w, void *arg);

static void run_resubmit(reembed_run *r) { run_submit(r, r->w.kind); }

/* Queues the run's next write. Any thread. */
static void run_submit(reembed_run *r, store_write_kind kind)
{
    store_write *w = &r->w;
    *w = (store_write){.kind = kind, .job_id = r->job_id};
    snprintf(w->collection, sizeof w->collection, "%s", r->db);
    if (kind == STORE_W_REEMBED_START) {
        snprintf(w->embedder, sizeof w->embedder, "%s", r->embedder);
        snprintf(w->embed_model, sizeof w->embed_model, "%s", r->model);
    } else if (kind == STORE_W_REEMBED_VECTORS) {
        w->chunk_ids = r->ids;
        w->vectors = r->vectors;
        w->n_vectors = r->n;
        w->dim = r->dim;
    } else if (kind == STORE_W_REEMBED_FAIL) {
        w->error = r->why;
    } else if (kind == STORE_W_REEMBED_SWAP) {
        w->dim = r->dim; /* the new dim when no batch stored one (a collection without chunks) */
    }
    w->done = run_written;
    w->arg = r;
    ragd_err rc = store_submit(r->m->cfg->st, w);
    if (rc == RAGD_EBUSY && kind != STORE_W_REEMBED_START) {
        r->attempts = 0;
        run_later(r, run_resubmit);
    } else if (rc != RAGD_OK) {
        if (kind == STORE_W_REEMBED_START) /* the caller hears it from rag_reembed_start */
            return;
        log_warn("reembed '%s': the store refused a write (%s); the job resumes at the next start", r->db,
                 ragd_strerror(rc));
        run_end(r);
    }
}

/* The writer's answer (writer thread). */
static void run_written(store_write *w, void *arg)
{
    reembed_run *r = arg;
    switch (w->kind) {
    case STORE_W_REEMBED_START:
        if (r->started)
            r->started(w, r->ctx);
        if (w->status != RAGD_OK) {
            run_end(r);
            return;
        }
        r->job_id = w->job_id;
        r->coll_id = w->coll.id;
        log_info("reembed '%s': job %lld to %s '%s' for %lld chunks", r->db, (long long)r->job_id, r->embedder,
                 r->model, (long long)w->coll.chunks);
        run_next(r);
        return;
    case STORE_W_REEMBED_VECTORS:
        if (w->status == RAGD_OK) {
            r->after = r->ids[r->n - 1];
            run_next(r);
            return;
        }
        break;
    case STORE_W_REEMBED_SWAP:
        if (w->status == RAGD_OK) {
            log_info("reembed '%s': swapped to '%s' (dim %d, %lld chunks, version %lld)", r->db, r->model,
                     w->coll.dim, (long long)w->coll.chunks, (long long)w->coll.version);
            run_end(r);
            return;
        }
        if (w->status == RAGD_EBUSY && w->missing > 0) { /* chunks ingested meanwhile */
            log_info("reembed '%s': %lld chunks arrived during the job; embedding them", r->db,
                     (long long)w->missing);
            r->after = 0;
            run_next(r);
            return;
        }
        break;
    case STORE_W_REEMBED_FAIL:
        run_end(r);
        return;
    default:
        break;
    }
    if (w->status == RAGD_ENOTFOUND) { /* cancelled, replaced, or the collection dropped */
        log_info("reembed '%s': job %lld stopped: %s", r->db, (long long)r->job_id, w->message);
        run_end(r);
        return;
    }
    snprintf(r->why, sizeof r->why, "%s", w->message[0] ? w->message : ragd_strerror(w->status));
    run_fail(r);
}

/* ---- starting and resuming ---- */

bool rag_reembed_resolve(const rag_engine_config *cfg, const char *embedder, const char *model, char *out_model,
                         size_t out_cap, char *why, size_t why_cap)
{
    if (strcmp(embedder, "builtin") == 0) {
        if (model && strcmp(model, "builtin") != 0 && strcmp(model, EMBED_BUILTIN_NAME) != 0) {
            snprintf(why, why_cap, "model: the builtin embedder has one model, '%s'", EMBED_BUILTIN_NAME);
            return false;
        }
        snprintf(out_model, out_cap, "%s", EMBED_BUILTIN_NAME);
        return true;
    }
    if (strcmp(embedder, "ollama") != 0 && strcmp(embedder, "openai") != 0) {
        snprintf(why, why_cap, "embedder: must be 'builtin', 'ollama' or 'openai'");
        return false;
    }
    if (!cfg->embedder || !cfg->embedder_name || strcmp(cfg->embedder_name, embedder) != 0) {
        snprintf(why, why_cap, "embedder: '%s' is not configured on this server (its upstream embedder is %s)",
                 embedder, cfg->embedder ? cfg->embedder_name : "none");
        return false;
    }
    const char *m = model ? model : cfg->embed_model;
    bool control = false; /* no model name has one; the name is stored, sent and shown */
    for (const char *p = m; p && *p && !control; p++)
        control = (unsigned char)*p < 0x20 || *p == 0x7f;
    if (!m || !m[0] || strcmp(m, EMBED_BUILTIN_NAME) == 0 || strlen(m) > STORE_MODEL_MAX || control) {
        snprintf(why, why_cap, "model: an upstream embedding model name of 1..%d bytes without control characters",
                 STORE_MODEL_MAX);
        return false;
    }
    snprintf(out_model, out_cap, "%s", m);
    return true;
}

ragd_err rag_reembed_start(rag_reembed *m, const char *db, const char *embedder, const char *model,
                           rag_reembed_started_fn started, void *ctx)
{
    reembed_run *r = run_new(m, db, embedder, model);
    if (!r)
        return RAGD_ENOMEM;
    r->started = started;
    r->ctx = ctx;
    store_write *w = &r->w;
    *w = (store_write){.kind = STORE_W_REEMBED_START, .done = run_written, .arg = r};
    snprintf(w->collection, sizeof w->collection, "%s", db);
    snprintf(w->embedder, sizeof w->embedder, "%s", embedder);
    snprintf(w->embed_model, sizeof w->embed_model, "%s", model);
    ragd_err rc = store_submit(m->cfg->st, w);
    if (rc != RAGD_OK)
        run_end(r);
    return rc;
}

static void resume_work(void *arg)
{
    rag_reembed *m = arg;
    store_reader *rd = store_reader_acquire(m->cfg->st);
    if (!rd)
        return;
    store_reembed_job *jobs = NULL;
    size_t n = 0;
    ragd_err rc = store_reembed_running(rd, &jobs, &n);
    store_reader_release(rd);
    if (rc) {
        log_error("reembed: cannot read the running jobs: %s", ragd_strerror(rc));
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const store_reembed_job *j = &jobs[i];
        reembed_run *r = run_new(m, j->collection, j->embedder, j->model);
        if (!r) {
            log_error("reembed '%s': out of memory resuming the job", j->collection);
            continue;
        }
        r->job_id = j->job_id;
        r->coll_id = j->coll_id;
        log_info("reembed '%s': resuming job %lld to %s '%s'", r->db, (long long)r->job_id, r->embedder, r->model);
        char model[STORE_MODEL_MAX + 1];
        if (!r->builtin && !rag_reembed_resolve(m->cfg, j->embedder, j->model, model, sizeof model, r->why,
                                                sizeof r->why)) {
            run_fail(r);
            continue;
        }
        run_next(r);
    }
    free(jobs);
}

void rag_reembed_resume(rag_reembed *m)
{
    if (m && workpool_submit(m->cfg->ingest_pool, resume_work, NULL, m) != RAGD_OK)
        log_error("reembed: cannot resume the running jobs (worker pool refused)");
}
