/* Health and operations routes. They run on the loop thread: each reads a few counters
 * and never blocks. */
#include "app.h"
#include "http/handlers.h"
#include "rag/embed_builtin.h"
#include "util/clock.h"
#include "util/workpool.h"

void handlers_health(http_request *req)
{
    app *a = req->app;
    bool ready = atomic_load(&a->ready);
    bool draining = atomic_load(&a->draining);
    const char *status = ready ? "healthy" : "degraded";
    char ts[32];
    clock_utc_rfc3339(ts, sizeof ts);
    json_t *store_info = json_pack("{s:b, s:s, s:i, s:s}", "healthy", a->st != NULL, "path", a->db_path, "schema_version",
                              store_schema_version(), "state",
                              draining ? "shutting_down" : (ready ? "ready" : "loading"));
    json_t *embedder = json_pack("{s:s, s:s, s:i, s:b}", "name", "builtin", "model", EMBED_BUILTIN_NAME, "dim",
                                 EMBED_BUILTIN_DIM, "healthy", 1);
    json_t *generator = json_pack("{s:s, s:b}", "name", "extractive", "healthy", 1);
    json_t *body = json_pack("{s:s, s:{s:o, s:o, s:o}, s:s, s:f}", "status", status, "services", "store", store_info,
                             "embedder", embedder, "generator", generator, "timestamp", ts, "uptime_s",
                             (clock_now_ms() - a->started_ms) / 1000.0);
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
    json_t *body = json_pack("{s:I, s:I, s:I, s:b, s:I, s:I, s:f, s:I, s:I, s:I, s:{s:I, s:I, s:I}}", "pool_size",
                             (json_int_t)ps.pool_size, "available", (json_int_t)ps.available, "in_use",
                             (json_int_t)ps.in_use, "initialized", ps.initialized, "acquires", (json_int_t)ps.acquires,
                             "waits", (json_int_t)ps.waits, "wait_ms_total", ps.wait_ms_total, "write_queue",
                             (json_int_t)ps.write_queue, "write_groups", (json_int_t)ps.write_groups, "writes",
                             (json_int_t)ps.writes, "workers", "threads", (json_int_t)workpool_threads(wp), "busy",
                             (json_int_t)workpool_busy(wp), "queued", (json_int_t)workpool_queued(wp));
    http_reply_json(req, 200, body);
}
