/* Health and operations routes. They run on the loop thread: each reads a few counters
 * and never blocks. */
#include <string.h>
#include <time.h>

#include <stdlib.h>

#include "app.h"
#include "obs/metrics.h"
#include "http/handlers.h"
#include "rag/embed_builtin.h"
#include "util/clock.h"
#include "rag/engine.h"
#include "rag/rerank.h"
#include "upstream/llm.h"
#include "util/workpool.h"

/* OPEN > HALF_OPEN > CLOSED, for the worst-of summaries of /health (docs/api.md "Health"). */
static int health_rank(breaker_state s)
{
    switch (s) {
    case BREAKER_OPEN:
    case BREAKER_FORCED_OPEN: return 2;
    case BREAKER_HALF_OPEN: return 1;
    default: return 0;
    }
}

static const char *health_state_name(int rank) { return rank == 2 ? "OPEN" : rank == 1 ? "HALF_OPEN" : "CLOSED"; }

static json_t *health_time(double age_ms)
{
    if (age_ms < 0)
        return json_null();
    char ts[32];
    time_t when = time(NULL) - (time_t)(age_ms / 1000);
    struct tm tm;
    gmtime_r(&when, &tm);
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return json_string(ts);
}

/* services.<backend> (docs/api.md "Health": services.ollama): the worst breaker state over every
 * host and model, each host's state, load and reachability, and whether ragd uses the
 * backend at all. A backend is "Operational" only once something answered there; under the
 * defaults with nothing at the default address it is "not in use", which is no failure.
 * *healthy is false when the backend is in use and a breaker is not CLOSED or no host
 * answers. */
static json_t *health_backend(app *a, llm *l, const char *role, bool *healthy)
{
    breaker_registry *reg = llm_breakers(l);
    bulkhead_set *bhs = llm_bulkheads(l);
    unsigned max_failures = 0;
    double last_age = -1;
    int worst = 0;
    bool any_up = false, any_known = false;
    json_t *backends = json_array();
    for (size_t h = 0; h < llm_host_count(l); h++) {
        const char *url = llm_host_url(l, h);
        int rank = 0, in_flight = 0, queued = 0;
        for (size_t i = 0; i < breaker_registry_count(reg); i++) {
            breaker *b = breaker_registry_at(reg, i);
            if (strcmp(breaker_backend(b), url) != 0)
                continue;
            breaker_snapshot s;
            breaker_snapshot_get(b, &s);
            if (health_rank(s.state) > rank)
                rank = health_rank(s.state);
            if (s.consecutive_failures > max_failures)
                max_failures = s.consecutive_failures;
            if (s.has_last_failure && (last_age < 0 || s.last_failure_age_ms < last_age))
                last_age = s.last_failure_age_ms;
        }
        for (size_t i = 0; i < bulkhead_set_count(bhs); i++) {
            bulkhead *bh = bulkhead_set_at(bhs, i);
            if (strcmp(bulkhead_backend(bh), url) != 0)
                continue;
            bulkhead_stats st = bulkhead_get_stats(bh);
            in_flight += st.in_flight;
            queued += st.queued;
        }
        if (rank > worst)
            worst = rank;
        probe_host_info reach;
        llm_host_reach(l, h, &reach);
        any_up = any_up || reach.state == PROBE_UP;
        any_known = any_known || reach.state != PROBE_UNKNOWN;
        json_t *host = json_pack("{s:s, s:s, s:s, s:b, s:o, s:i, s:i}", "url", url, "state", health_state_name(rank),
                                 "reachability", probe_state_name(reach.state), "ever_reached", reach.ever_reached,
                                 "last_checked", health_time(reach.age_ms), "in_flight", in_flight, "queued", queued);
        if (reach.error[0])
            json_object_set_new(host, "error", json_string(reach.error));
        json_array_append_new(backends, host);
    }
    bool in_use = rag_engine_llm_in_use(a->engine, l);
    char message[400];
    if (!in_use) {
        snprintf(message, sizeof message,
                 "Not in use: no LLM backend is configured (OLLAMA_BASE_URL, OPENAI_BASE_URL) and nothing has answered "
                 "at %s; ragd answers from its embedded parts (builtin embeddings, extractive answers) and uses the "
                 "backend as soon as it answers",
                 llm_host_url(l, 0));
    } else if (worst == 2) {
        snprintf(message, sizeof message, "Circuit OPEN - Service unavailable");
    } else if (worst == 1) {
        snprintf(message, sizeof message, "Circuit HALF_OPEN - Testing recovery");
    } else if (any_up) {
        snprintf(message, sizeof message, "Operational");
    } else if (!any_known) {
        snprintf(message, sizeof message, "Not reached yet: probing %s", llm_host_url(l, 0));
    } else {
        probe_host_info first;
        llm_host_reach(l, 0, &first);
        snprintf(message, sizeof message, "Unreachable: %s%s%s", llm_host_url(l, 0), first.error[0] ? ": " : "",
                 first.error);
    }
    *healthy = !in_use || (worst == 0 && any_up);
    return json_pack("{s:b, s:b, s:s, s:b, s:{s:s, s:i, s:o}, s:s, s:s, s:o}", "healthy", *healthy, "in_use", in_use,
                     "role", role, "reachable", any_up, "circuit_breaker", "state", health_state_name(worst),
                     "failure_count", (int)max_failures, "last_failure", health_time(last_age), "message", message,
                     "model", l == a->generator ? a->cfg.llm_model : a->cfg.embed_model, "backends", backends);
}

/* services.reranker: the kind, and for an HTTP service its breaker state and load (its
 * state does not make the server degraded: a reranker that fails leaves the fused order). */
static json_t *health_reranker(app *a)
{
    if (!a->reranker)
        return json_pack("{s:s, s:b, s:b}", "kind", "off", "in_use", 0, "healthy", 1);
    if (rerank_get_kind(a->reranker) == RERANK_KIND_LLM)
        return json_pack("{s:s, s:s, s:s, s:b, s:b}", "kind", "llm", "via", a->generator_name, "model",
                         a->cfg.rerank_model[0] ? a->cfg.rerank_model : a->cfg.llm_model, "in_use", 1, "healthy", 1);
    breaker_registry *reg = rerank_breakers(a->reranker);
    bulkhead_set *bhs = rerank_bulkheads(a->reranker);
    int rank = 0, in_flight = 0, queued = 0;
    unsigned failures = 0;
    for (size_t i = 0; i < breaker_registry_count(reg); i++) {
        breaker_snapshot s;
        breaker_snapshot_get(breaker_registry_at(reg, i), &s);
        if (health_rank(s.state) > rank)
            rank = health_rank(s.state);
        if (s.consecutive_failures > failures)
            failures = s.consecutive_failures;
    }
    for (size_t i = 0; i < bulkhead_set_count(bhs); i++) {
        bulkhead_stats st = bulkhead_get_stats(bulkhead_set_at(bhs, i));
        in_flight += st.in_flight;
        queued += st.queued;
    }
    return json_pack("{s:s, s:s, s:s, s:b, s:b, s:{s:s, s:i}, s:i, s:i}", "kind", "http", "url",
                     rerank_url_shown(a->reranker), "shape", rerank_is_tei(a->reranker) ? "tei" : "cohere",
                     "in_use", 1, "healthy", rank == 0, "circuit_breaker", "state", health_state_name(rank),
                     "failure_count", (int)failures, "in_flight", in_flight, "queued", queued);
}

/* A worker pool's threads, busy and queued jobs. */
static json_t *health_pool(workpool *p)
{
    return json_pack("{s:I, s:I, s:I}", "threads", (json_int_t)workpool_threads(p), "busy",
                     (json_int_t)workpool_busy(p), "queued", (json_int_t)workpool_queued(p));
}

void handlers_health(http_request *req)
{
    app *a = req->app;
    bool ready = atomic_load(&a->ready);
    bool draining = atomic_load(&a->draining);
    char ts[32];
    clock_utc_rfc3339(ts, sizeof ts);
    store_space sp; /* a full store (writes answer 507) makes the server degraded */
    store_space_get(a->st, &sp);
    json_t *store_info = json_pack("{s:b, s:s, s:s, s:i, s:s, s:o, s:I}", "healthy", a->st != NULL && !sp.full,
                                   "message", sp.full ? sp.message : "Operational", "path", a->db_path,
                                   "schema_version", store_schema_version(), "state",
                                   draining ? "shutting_down" : (ready ? "ready" : "loading"), "quota_bytes",
                                   sp.quota_bytes ? json_integer((json_int_t)sp.quota_bytes) : json_null(),
                                   "used_bytes", (json_int_t)sp.used_bytes);
    bool embedder_in_use = rag_engine_llm_in_use(a->engine, a->embedder);
    json_t *embedder = a->embedder
                           ? json_pack("{s:s, s:s, s:s, s:b, s:b, s:b}", "name", a->embedder_name, "model",
                                       a->cfg.embed_model, "fallback", EMBED_BUILTIN_NAME, "builtin_fallback",
                                       a->cfg.embedder == CONFIG_EMBEDDER_AUTO, "in_use", embedder_in_use, "healthy", 1)
                           : json_pack("{s:s, s:s, s:i, s:b, s:b}", "name", "builtin", "model", EMBED_BUILTIN_NAME, "dim",
                                       EMBED_BUILTIN_DIM, "in_use", 1, "healthy", 1);
    bool generator_in_use = rag_engine_llm_in_use(a->engine, a->generator);
    json_t *generator = json_pack("{s:s, s:s, s:b, s:b}", "name", generator_in_use ? a->generator_name : "extractive",
                                  "configured", a->generator_name, "in_use", generator_in_use, "healthy", 1);
    if (a->generator && !generator_in_use)
        json_object_set_new(generator, "reason",
                            json_string("RAGD_GENERATOR=auto and no LLM has answered yet: answers are extractive (not "
                                        "degraded) until one does"));
    json_t *services = json_pack("{s:o, s:o, s:o}", "store", store_info, "embedder", embedder, "generator", generator);
    json_object_set_new(services, "reranker", health_reranker(a));
    bool healthy = ready && !sp.full;
    for (int i = 0; i < 2; i++) {
        llm *l = a->llms[i];
        if (!l)
            continue;
        const char *role = l == a->generator && l == a->embedder ? "generator+embedder"
                           : l == a->generator                  ? "generator"
                                                                : "embedder";
        bool ok = true;
        json_object_set_new(services, i == 0 ? "ollama" : "openai", health_backend(a, l, role, &ok));
        if (!ok) {
            healthy = false;
            json_object_set_new(l == a->generator ? generator : embedder, "healthy", json_false());
        }
    }
    json_t *body = json_pack("{s:s, s:o, s:s, s:f}", "status", healthy ? "healthy" : "degraded", "services", services,
                             "timestamp", ts, "uptime_s", (clock_now_ms() - a->started_ms) / 1000.0);
    /* what a client needs before it sends: `ragd ingest` sizes its requests by these */
    json_object_set_new(body, "default_db", json_string(a->cfg.default_db));
    json_object_set_new(body, "pools",
                        json_pack("{s:o, s:o}", "workers", health_pool(a->pool), "ingest_workers",
                                  health_pool(a->ingest_pool)));
    json_object_set_new(body, "limits", json_pack("{s:I}", "max_body_bytes", (json_int_t)a->cfg.max_body_bytes));
    http_reply_json(req, 200, body);
}

void handlers_health_live(http_request *req) { http_reply_json(req, 200, json_pack("{s:s}", "status", "alive")); }

void handlers_health_ready(http_request *req)
{
    if (atomic_load(&req->app->ready) && !atomic_load(&req->app->draining))
        http_reply_json(req, 200, json_pack("{s:s}", "status", "ready"));
    else
        http_reply_json(req, 503, json_pack("{s:s}", "status", "not_ready"));
}

void handlers_pool_stats(http_request *req)
{
    store_pool_stats ps;
    store_pool_stats_get(req->app->st, &ps);
    workpool *wp = req->app->pool;
    workpool *ip = req->app->ingest_pool;
    json_t *body = json_pack("{s:I, s:I, s:I, s:b, s:I, s:I, s:f, s:I, s:I, s:I, s:{s:I, s:I, s:I}, s:{s:I, s:I, s:I}}",
                             "pool_size",
                             (json_int_t)ps.pool_size, "available", (json_int_t)ps.available, "in_use",
                             (json_int_t)ps.in_use, "initialized", ps.initialized, "acquires", (json_int_t)ps.acquires,
                             "waits", (json_int_t)ps.waits, "wait_ms_total", ps.wait_ms_total, "write_queue",
                             (json_int_t)ps.write_queue, "write_groups", (json_int_t)ps.write_groups, "writes",
                             (json_int_t)ps.writes, "workers", "threads", (json_int_t)workpool_threads(wp), "busy",
                             (json_int_t)workpool_busy(wp), "queued", (json_int_t)workpool_queued(wp),
                             "ingest_workers", "threads", (json_int_t)workpool_threads(ip), "busy",
                             (json_int_t)workpool_busy(ip), "queued", (json_int_t)workpool_queued(ip));
    http_reply_json(req, 200, body);
}

void handlers_metrics(http_request *req)
{
    size_t len = 0;
    char *text = metrics_render(req->app, &len);
    if (!text) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    http_reply_raw(req, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
}
