#include "server.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <event2/event.h>
#include <event2/thread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "app.h"
#include "guard/guard.h"
#include "http/handlers.h"
#include "http/http_server.h"
#include "rag/cache.h"
#include "rag/engine.h"
#include "rag/reembed.h"
#include "rag/rerank.h"
#include "rag/retrieve.h"
#include "store/store.h"
#include "text/extract.h"
#include "upstream/client.h"
#include "upstream/llm.h"
#include <curl/curl.h>
#include "util/clock.h"
#include "util/dirlock.h"
#include "util/log.h"
#include "util/loopq.h"
#include "util/ratelimit.h"
#include "util/workpool.h"

#define SERVER_DRAIN_POLL_MS 20
#define SERVER_INGEST_NICE 10 /* the ingest pool's threads: nice +10 (workpool_new_niced) */
#define RAGD_RATE_CLIENTS 16384 /* buckets per limiter: ~1.5 MB (util/ratelimit.h) */
#define SERVER_CANCEL_TURNS_MAX 1000 /* loop turns to wait for cancelled tasks' callbacks */

/* Shutdown goes DRAINING (in-flight requests finish within the grace period) →
 * CANCELLING (every upstream task was cancelled; their CANCELLED callbacks answer their
 * requests on the next loop turns) → the rest, in one step (server_finish_end). */
typedef enum { SERVER_RUNNING, SERVER_DRAINING, SERVER_CANCELLING } server_phase;

typedef struct {
    app a;
    struct event *sig_event; /* the read end of the signal pipe */
    struct event *hup_event; /* SIGHUP: reload (libevent's evsignal, on the loop) */
    config_raw raw;          /* the variables as loaded, to tell what a reload changes */
    server_phase phase;      /* loop thread only */
    struct event *drain_timer;
    double drain_started_ms;
    int cancel_turns;
    int exit_code;
} server;

/* ---- start-up: the index loads on a worker while the server already answers health ---- */

typedef struct {
    server *srv;
    loopq_item done_item;
    size_t vectors;
    double ms;
    ragd_err rc;
} server_load;

static void server_load_done(void *arg)
{
    server_load *load = arg;
    if (load->rc) {
        log_error("index: loading failed: %s", ragd_strerror(load->rc));
        load->srv->exit_code = 1;
        raise(SIGTERM);
    } else if (!atomic_load(&load->srv->a.draining)) {
        atomic_store(&load->srv->a.ready, true);
        log_info("index: %zu vectors loaded in %.1f ms; ready", load->vectors, load->ms);
        rag_reembed_resume(load->srv->a.reembed); /* jobs a restart interrupted */
    }
    free(load);
}

static void server_load_work(void *arg)
{
    server_load *load = arg;
    double t0 = clock_now_ms();
    store_reader *r = store_reader_acquire(load->srv->a.st);
    load->rc = r ? rag_index_load(load->srv->a.index, r, &load->vectors) : RAGD_ECLOSED;
    store_reader_release(r);
    load->ms = clock_now_ms() - t0;
    loopq_post(load->srv->a.lq, &load->done_item, server_load_done, load);
}

/* The store's commit hook: the in-memory index follows every write, and a committed change
 * of a collection drops its cached answers (after the index has it, so no answer computed
 * from the new state is refused and none from the old one survives). Writer thread. */
static ragd_err server_on_commit(const store_change *change, void *arg)
{
    app *a = arg;
    ragd_err rc = rag_index_on_commit(change, a->index);
    if (change->phase == STORE_CHANGE_COMMITTED && a->cache)
        cache_invalidate_collection(a->cache, change->coll_id);
    return rc;
}

/* ---- shutdown ---- */

/* One llm for the Ollama URLs or for the OpenAI-compatible URL, with the breaker, bulkhead
 * and retry settings of the environment. */
static ragd_err server_llm_new(app *a, bool openai, llm **out, char *err, size_t errlen)
{
    const ragd_config *cfg = &a->cfg;
    llm_config lc;
    llm_config_default(&lc);
    const char *urls[CONFIG_MAX_BACKENDS];
    for (size_t i = 0; i < cfg->n_ollama_urls; i++)
        urls[i] = cfg->ollama_urls[i];
    if (openai)
        urls[0] = cfg->openai_url;
    lc.kind = openai ? LLM_KIND_OPENAI : LLM_KIND_OLLAMA;
    lc.urls = urls;
    lc.n_urls = openai ? 1 : cfg->n_ollama_urls;
    lc.api_key = openai && cfg->openai_api_key[0] ? cfg->openai_api_key : NULL;
    lc.embed_batch = cfg->embed_batch;
    lc.embed_timeout_ms = cfg->embed_timeout_s * 1000;
    lc.generate_timeout_ms = cfg->generate_timeout_s * 1000;
    lc.ttfb_timeout_ms = lc.generate_timeout_ms; /* a cold model load may take most of it */
    lc.bulkhead.max_concurrent = (int)cfg->max_concurrent;
    lc.bulkhead.max_queue = (int)cfg->max_queue;
    lc.breaker.failure_threshold = (unsigned)cfg->breaker_failures;
    lc.breaker.open_ms = cfg->breaker_recovery_s * 1000;
    lc.probe_interval_ms = lc.breaker.open_ms; /* reachability at the breakers' pace */
    /* The configured models keep their breakers and bulkheads; others (pass-through) get
     * them on demand, at most RAGD_MAX_MODELS at a time. */
    char listed[sizeof cfg->llm_models];
    snprintf(listed, sizeof listed, "%s", cfg->llm_models);
    const char *models[3 + sizeof cfg->llm_models / 2];
    size_t n_models = 0;
    models[n_models++] = cfg->llm_model;
    models[n_models++] = cfg->embed_model;
    if (cfg->rerank_model[0])
        models[n_models++] = cfg->rerank_model;
    char *save = NULL;
    for (char *m = strtok_r(listed, ",", &save); m; m = strtok_r(NULL, ",", &save))
        if (*m)
            models[n_models++] = m;
    lc.models = models;
    lc.n_models = n_models;
    lc.max_models = cfg->max_models;
    if (lc.breaker.open_max_ms < lc.breaker.open_ms)
        lc.breaker.open_max_ms = lc.breaker.open_ms;
    ragd_err e = llm_new(a->base, a->upstream, &lc, upstream_clock_system(), upstream_rand_system(), out, err, errlen);
    if (e == RAGD_OK)
        log_info("upstream: %s at %s%s", openai ? "openai" : "ollama", llm_host_url(*out, 0),
                 lc.n_urls > 1 ? " and others" : "");
    return e;
}

/* The reranker of RAGD_RERANKER (rag/rerank.h): an HTTP service behind its own breaker and
 * bulkhead on the shared upstream client, or a judge on the generator. */
static ragd_err server_reranker_start(app *a, char *err, size_t errlen)
{
    const ragd_config *cfg = &a->cfg;
    if (cfg->reranker == RERANK_KIND_OFF)
        return RAGD_OK;
    rerank_config rc;
    rerank_config_default(&rc);
    rc.kind = (rerank_kind)cfg->reranker;
    rc.url = cfg->rerank_url;
    rc.shape = (rerank_shape)cfg->rerank_shape;
    rc.model = cfg->rerank_model[0] ? cfg->rerank_model : rc.kind == RERANK_KIND_LLM ? cfg->llm_model : "";
    rc.api_key = cfg->rerank_api_key[0] ? cfg->rerank_api_key : NULL;
    rc.batch = cfg->rerank_batch;
    rc.timeout_ms = cfg->rerank_timeout_s * 1000;
    rc.bulkhead.max_concurrent = (int)cfg->max_concurrent;
    rc.bulkhead.max_queue = (int)cfg->max_queue;
    rc.breaker.failure_threshold = (unsigned)cfg->breaker_failures;
    rc.breaker.open_ms = cfg->breaker_recovery_s * 1000;
    if (rc.breaker.open_max_ms < rc.breaker.open_ms)
        rc.breaker.open_max_ms = rc.breaker.open_ms;
    rc.judge = a->generator;
    rc.spotlight = cfg->spotlight;
    char why[300] = "";
    ragd_err e = rerank_new(a->base, a->upstream, &rc, upstream_clock_system(), upstream_rand_system(), &a->reranker, why,
                            sizeof why);
    if (e != RAGD_OK) {
        snprintf(err, errlen, "reranker: %s", why);
        return e;
    }
    if (rc.kind == RERANK_KIND_HTTP)
        log_info("reranker: http at %s (%s shape, %zu documents per call%s%s)", rerank_url_shown(a->reranker),
                 rerank_is_tei(a->reranker) ? "TEI" : "Cohere", rc.batch, rc.model[0] ? ", model " : "", rc.model);
    else
        log_info("reranker: llm judge on %s (model %s)", a->generator_name, rc.model);
    return RAGD_OK;
}

/* The generator and the embedder: Ollama or an OpenAI-compatible server behind breakers,
 * bulkheads and retries, on the loop. Both NULL when neither uses an LLM backend. */
static ragd_err server_generator_start(app *a, char *err, size_t errlen)
{
    const ragd_config *cfg = &a->cfg;
    a->generator_name = "extractive";
    a->embedder_name = "builtin";
    bool gen_ollama = cfg->generator == CONFIG_GENERATOR_AUTO || cfg->generator == CONFIG_GENERATOR_OLLAMA;
    bool gen_openai = cfg->generator == CONFIG_GENERATOR_OPENAI;
    bool emb_ollama = cfg->embedder == CONFIG_EMBEDDER_AUTO || cfg->embedder == CONFIG_EMBEDDER_OLLAMA;
    bool emb_openai = cfg->embedder == CONFIG_EMBEDDER_OPENAI;
    if (!gen_ollama && !gen_openai && !emb_ollama && !emb_openai && cfg->reranker != RERANK_KIND_HTTP)
        return RAGD_OK;
    upstream_client_options co = {.max_host_connections = (long)cfg->max_concurrent * 2 + 4, .max_total_connections = 256};
    a->upstream = upstream_client_new(a->base, &co);
    if (!a->upstream) {
        snprintf(err, errlen, "out of memory");
        return RAGD_ENOMEM;
    }
    ragd_err e = RAGD_OK;
    if (gen_ollama || emb_ollama)
        e = server_llm_new(a, false, &a->llms[0], err, errlen);
    if (!e && (gen_openai || emb_openai))
        e = server_llm_new(a, true, &a->llms[1], err, errlen);
    if (e)
        return e;
    if (gen_ollama || gen_openai) {
        a->generator = gen_openai ? a->llms[1] : a->llms[0];
        a->generator_name = gen_openai ? "openai" : "ollama";
        log_info("generator: %s (model %s)", a->generator_name, cfg->llm_model);
    }
    if (emb_ollama || emb_openai) {
        a->embedder = emb_openai ? a->llms[1] : a->llms[0];
        a->embedder_name = emb_openai ? "openai" : "ollama";
        log_info("embedder: %s (model %s%s)", a->embedder_name, cfg->embed_model,
                 cfg->embedder == CONFIG_EMBEDDER_AUTO ? ", builtin when it does not answer" : "");
    }
    for (int i = 0; i < 2; i++)
        if (a->llms[i])
            llm_probe_start(a->llms[i]);
    return server_reranker_start(a, err, errlen);
}

/* Every upstream task ends with one CANCELLED callback on a later loop turn; from now on
 * no new task starts. */
static void server_generator_cancel(app *a)
{
    for (int i = 0; i < 2; i++)
        if (a->llms[i])
            llm_cancel_all(a->llms[i]);
    rerank_cancel_all(a->reranker);
}

static size_t server_generator_tasks(const app *a)
{
    size_t n = 0;
    for (int i = 0; i < 2; i++)
        if (a->llms[i])
            n += llm_task_count(a->llms[i]);
    return n + rerank_task_count(a->reranker);
}

/* Frees the upstream layer; its tasks' callbacks must have run (server_generator_cancel
 * and a few loop turns), or they are dropped unanswered. */
static void server_generator_stop(app *a)
{
    size_t left = server_generator_tasks(a);
    if (left)
        log_error("shutdown: %zu upstream tasks still running are dropped", left);
    rerank_free(a->reranker); /* before the llms: its judge calls are theirs */
    a->reranker = NULL;
    for (int i = 0; i < 2; i++) {
        llm_free(a->llms[i]);
        a->llms[i] = NULL;
    }
    a->generator = NULL;
    a->embedder = NULL;
    upstream_client_free(a->upstream);
    a->upstream = NULL;
}

/* Runs the loop queue until it stays empty: a step it runs may post the next one (a query's
 * last steps end in on_done, whose reply posts the hand-back to the HTTP server). Bounded. */
static void server_drain_loopq(server *srv)
{
    for (int i = 0; i < 100 && loopq_drain(srv->a.lq) > 0; i++)
        ;
}

/* The last step: workers joined, the store closed (queued writes committed and
 * answered), the HTTP server stopped (requests freed), then the upstream layer. */
static void server_finish_end(server *srv)
{
    workpool_shutdown(srv->a.pool); /* lets the jobs already running finish; submits now fail */
    workpool_shutdown(srv->a.ingest_pool); /* the same; neither pool's jobs submit to the other */
    server_drain_loopq(srv);        /* hands their results back (no new upstream task starts) */
    store_close(srv->a.st);         /* commits queued writes; their callbacks run */
    srv->a.st = NULL;
    server_drain_loopq(srv);        /* hands finished requests back to the HTTP server */
    http_server_stop(srv->a.http);  /* frees every request: their cleanups may touch the llms */
    srv->a.http = NULL;
    server_generator_stop(&srv->a);
    workpool_free(srv->a.pool);     /* only now: the HTTP server's last requests may still try to submit */
    srv->a.pool = NULL;
    workpool_free(srv->a.ingest_pool);
    srv->a.ingest_pool = NULL;
    log_info("shutdown: complete");
    event_base_loopbreak(srv->a.base);
}

/* The grace period is over (or nothing is in flight): no handler may run any more, work
 * not started is refused, and every upstream task is cancelled. Their CANCELLED callbacks
 * answer their requests on the next loop turns; the drain tick then finishes. */
static void server_finish_begin(server *srv)
{
    size_t left = http_server_in_flight(srv->a.http);
    if (left)
        log_warn("shutdown: grace period over with %zu requests in flight; %zu not started are refused", left,
                 workpool_cancel_queued(srv->a.pool) + workpool_cancel_queued(srv->a.ingest_pool));
    atomic_store(&srv->a.stopping, true); /* from here on no handler may run */
    extract_stop_children(); /* PDF readers: killed now, not waited for until their deadline */
    server_generator_cancel(&srv->a);
    srv->phase = SERVER_CANCELLING;
    srv->cancel_turns = 0;
}

static void server_arm_drain(server *srv, long us)
{
    struct timeval tv = {0, us};
    evtimer_add(srv->drain_timer, &tv);
}

static void server_on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    server *srv = arg;
    if (srv->phase == SERVER_DRAINING) {
        bool grace_over = clock_now_ms() - srv->drain_started_ms >= srv->a.cfg.shutdown_grace_s * 1000.0;
        if (http_server_in_flight(srv->a.http) > 0 && !grace_over) {
            server_arm_drain(srv, SERVER_DRAIN_POLL_MS * 1000);
            return;
        }
        server_finish_begin(srv);
    }
    if (server_generator_tasks(&srv->a) > 0 && srv->cancel_turns++ < SERVER_CANCEL_TURNS_MAX) {
        server_arm_drain(srv, 0); /* the next loop turn delivers the CANCELLED callbacks */
        return;
    }
    server_finish_end(srv);
}

/* Signals: the handler itself turns readiness off and marks the server draining (lock-free
 * atomics are async-signal-safe), then wakes the loop through a pipe. Worker and writer
 * threads block SIGTERM/SIGINT, so the handler runs on the loop thread and every request
 * that thread reads after the signal already sees "draining". (libevent's evsignal would
 * only set the flags on a later loop iteration, racing with requests already readable.) */
static app *server_signal_app;
static int server_signal_pipe[2] = {-1, -1};

static void server_signal_handler(int sig)
{
    int saved = errno;
    atomic_store(&server_signal_app->ready, false);
    atomic_store(&server_signal_app->draining, true);
    unsigned char b = (unsigned char)sig;
    ssize_t n = write(server_signal_pipe[1], &b, 1);
    (void)n; /* a full pipe already holds a wake-up */
    errno = saved;
}

static int server_signals_install(server *srv)
{
    if (pipe2(server_signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0)
        return -1;
    server_signal_app = &srv->a;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = server_signal_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    return sigaction(SIGTERM, &sa, NULL) == 0 && sigaction(SIGINT, &sa, NULL) == 0 ? 0 : -1;
}

static void server_signals_close(void)
{
    signal(SIGTERM, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    for (int i = 0; i < 2; i++) {
        if (server_signal_pipe[i] >= 0)
            close(server_signal_pipe[i]);
        server_signal_pipe[i] = -1;
    }
}

/* Blocks (how = SIG_BLOCK) or unblocks the shutdown signals in the calling thread;
 * threads started while they are blocked inherit the mask. */
static void server_signals_mask(int how)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP); /* libevent's handler then runs on the loop thread, after start-up */
    pthread_sigmask(how, &set, NULL);
}

static void server_on_signal(evutil_socket_t fd, short what, void *arg)
{
    (void)what;
    server *srv = arg;
    unsigned char sig = 0;
    while (read(fd, &sig, 1) == 1)
        ;
    if (srv->phase != SERVER_RUNNING)
        return;
    srv->phase = SERVER_DRAINING;
    log_info("shutdown: signal %d; draining (grace %.1f s)", (int)sig, srv->a.cfg.shutdown_grace_s);
    http_server_quiesce(srv->a.http);
    srv->drain_started_ms = clock_now_ms();
    server_on_drain_tick(-1, 0, srv);
}

/* ---- reload (SIGHUP) ---- */

/* What a reload applies: read per request on the loop thread only (keys, token, limits,
 * body cap) or atomically (log level and format). Everything else is fixed at start. */
static bool server_reloadable(const char *name)
{
    static const char *const names[] = {"RAGD_API_KEYS",      "RAGD_API_KEYS_FILE", "RAGD_ADMIN_TOKEN",
                                        "RAGD_ADMIN_TOKEN_FILE", "RAGD_LOG_LEVEL",   "RAGD_LOG_FORMAT",
                                        "RATE_LIMIT_QUERY",   "RAGD_RATE_LIMIT_INGEST", "RAGD_MAX_BODY_BYTES",
                                        "RAGD_MAX_BODY_BYTES_TOTAL"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        if (strcmp(name, names[i]) == 0)
            return true;
    return false;
}

static void server_list_add(char *list, size_t cap, const char *item)
{
    size_t n = strlen(list);
    snprintf(list + n, cap - n, "%s%s", n ? ", " : "", item);
}

static bool server_rate_same(const ratelimit_spec *a, const ratelimit_spec *b)
{
    return a->count == b->count && (a->count == 0 || a->period_s == b->period_s);
}

/* A new limiter for spec when it differs from the running one (its buckets start full);
 * false when out of memory (the running one is kept). */
static bool server_rate_swap(ratelimit **rl, ratelimit_spec *cur, const ratelimit_spec *next)
{
    if (server_rate_same(cur, next))
        return true;
    ratelimit *fresh = next->count ? ratelimit_new(next, RAGD_RATE_CLIENTS) : NULL;
    if (next->count && !fresh)
        return false;
    ratelimit_free(*rl);
    *rl = fresh;
    *cur = *next;
    return true;
}

/* SIGHUP: the environment again (a process cannot re-read its own: it is the one it started
 * with) overlaid by RAGD_CONFIG_FILE, read now. A configuration that does not load is
 * refused whole and the running one kept. The reloadable settings are applied; the others
 * that changed are named as needing a restart, and stay pending (named again at every
 * reload until then). One log line; never a value, since several are secrets. Loop thread. */
static void server_on_sighup(evutil_socket_t sig, short what, void *arg)
{
    (void)sig;
    (void)what;
    server *srv = arg;
    app *a = &srv->a;
    ragd_config next;
    config_raw raw = {{0}};
    char err[512] = "";
    char applied[2048] = "", restart[2048] = "";
    if (config_load(&next, &raw, err, sizeof err) != 0) {
        log_error("reload (SIGHUP): refused, the running configuration is kept: %s", err);
        goto out;
    }
    for (size_t i = 0; i < config_count(); i++) {
        if (!config_raw_differs(&srv->raw, &raw, i))
            continue;
        const char *name = config_name(i);
        server_list_add(server_reloadable(name) ? applied : restart, server_reloadable(name) ? sizeof applied : sizeof restart,
                        name);
        if (!server_reloadable(name)) { /* pending: compared with the running value again next time */
            free(raw.values[i]);
            raw.values[i] = srv->raw.values[i];
            srv->raw.values[i] = NULL;
        }
    }
    /* the *_FILE variables may name the same file with new contents */
    if (next.api_keys.n != a->cfg.api_keys.n ||
        memcmp(next.api_keys.keys, a->cfg.api_keys.keys, next.api_keys.n * sizeof *next.api_keys.keys) != 0) {
        if (!strstr(applied, "RAGD_API_KEYS"))
            server_list_add(applied, sizeof applied, "RAGD_API_KEYS_FILE (contents)");
    }
    if (strcmp(next.admin_token, a->cfg.admin_token) != 0 && !strstr(applied, "RAGD_ADMIN_TOKEN"))
        server_list_add(applied, sizeof applied, "RAGD_ADMIN_TOKEN_FILE (contents)");
    if (!server_rate_swap(&a->rate_query, &a->cfg.rate_query, &next.rate_query) ||
        !server_rate_swap(&a->rate_ingest, &a->cfg.rate_ingest, &next.rate_ingest)) {
        log_error("reload (SIGHUP): out of memory for the new rate limiters; the limits are unchanged");
        goto out;
    }
    a->cfg.api_keys = next.api_keys;
    memcpy(a->cfg.admin_token, next.admin_token, sizeof a->cfg.admin_token);
    a->cfg.max_body_bytes = next.max_body_bytes;
    a->cfg.max_body_bytes_total = next.max_body_bytes_total; /* the bytes in use stay counted */
    a->cfg.log_level = next.log_level;
    a->cfg.log_format = next.log_format;
    log_set_format(next.log_format);
    log_set_level(next.log_level);
    /* the reload's own line is always written: at info, or at the level when that is higher */
    log_fields(next.log_level > LOG_INFO ? next.log_level : LOG_INFO, "reload (SIGHUP): configuration read",
               (log_field[]){LOG_STR("applied", applied[0] ? applied : "nothing changed"),
                             LOG_STR("needs_restart", restart[0] ? restart : "nothing"),
                             LOG_STR("config_file", a->cfg.config_file[0] ? a->cfg.config_file : NULL)},
               3);
    config_raw_free(&srv->raw);
    srv->raw = raw;
    memset(&raw, 0, sizeof raw);
out:
    config_raw_free(&raw);
    explicit_bzero(&next, sizeof next); /* keys' digests, tokens */
}

/* ---- run ---- */

static int server_make_dirs(const char *dir)
{
    char path[1024];
    snprintf(path, sizeof path, "%s", dir);
    for (char *p = path + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(path, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return (mkdir(path, 0755) != 0 && errno != EEXIST) ? -1 : 0;
}

int server_run(const ragd_config *cfg)
{
    server srv;
    memset(&srv, 0, sizeof srv);
    srv.a.cfg = *cfg;
    srv.a.started_ms = clock_now_ms();
    srv.exit_code = 1;
    char err[512] = "";
    log_set_level(cfg->log_level);
    log_set_format(cfg->log_format);
    signal(SIGPIPE, SIG_IGN);
    /* The snapshot a reload compares with: loaded again here (server_run takes a finished
     * configuration), the same environment and, a moment later, the same file. */
    ragd_config loaded;
    if (config_load(&loaded, &srv.raw, err, sizeof err) != 0)
        log_warn("config: %s (a reload will say so again)", err);
    explicit_bzero(&loaded, sizeof loaded);
    if (cfg->config_file[0])
        log_info("config: RAGD_CONFIG_FILE %s read; SIGHUP reads it again", cfg->config_file);

    if (server_signals_install(&srv) != 0) {
        log_error("cannot install signal handlers: %s", strerror(errno));
        return 1;
    }
    server_signals_mask(SIG_BLOCK); /* threads made from here on inherit it */
    curl_global_init(CURL_GLOBAL_DEFAULT);
    store_configure_process();
    if (evthread_use_pthreads() != 0 || !(srv.a.base = event_base_new())) {
        log_error("cannot create the event loop");
        server_signals_close();
        return 1;
    }
    if (server_make_dirs(cfg->data_dir) != 0) {
        log_error("RAGD_DATA_DIR: cannot create '%s': %s", cfg->data_dir, strerror(errno));
        goto out;
    }
    /* One server per data directory (docs/internals/store.md): held until the process
     * ends, however it ends; the kernel drops the flock then, after the store is closed. */
    int dir_lock = -1;
    pid_t holder = 0;
    ragd_err lock_rc = dirlock_acquire(cfg->data_dir, &dir_lock, &holder, err, sizeof err);
    if (lock_rc != RAGD_OK) {
        if (lock_rc == RAGD_EBUSY && holder > 0)
            log_error("RAGD_DATA_DIR: '%s' is in use by another ragd (pid %ld); one server per data directory",
                      cfg->data_dir, (long)holder);
        else if (lock_rc == RAGD_EBUSY)
            log_error("RAGD_DATA_DIR: '%s' is in use by another ragd; one server per data directory", cfg->data_dir);
        else
            log_error("RAGD_DATA_DIR: %s", err);
        srv.exit_code = 2;
        goto out;
    }
    snprintf(srv.a.db_path, sizeof srv.a.db_path, "%s/ragd.db", cfg->data_dir);
    store_options so = {.path = srv.a.db_path,
                        .read_conns = cfg->pool_size,
                        .synchronous_full = cfg->synchronous_full,
                        .max_queue = 1024,
                        .max_group = 64,
                        .max_db_bytes = cfg->max_db_bytes};
    if (store_open(&so, &srv.a.st, err, sizeof err) != RAGD_OK) {
        log_error("store: cannot open %s: %s", srv.a.db_path, err);
        goto out;
    }
    if (server_generator_start(&srv.a, err, sizeof err) != RAGD_OK) {
        log_error("generator: %s", err);
        goto out;
    }
    if (guard_init() != RAGD_OK) { /* the prompt-injection screen's rules: before any worker runs */
        log_error("prompt-injection screen: a rule does not compile");
        goto out;
    }
    srv.a.index = rag_index_new();
    srv.a.lq = loopq_new(srv.a.base);
    srv.a.pool = workpool_new(cfg->workers, cfg->worker_queue);
    /* Ingest and re-embedding on their own threads, niced: queries never queue behind them, and
     * on a busy machine the kernel runs the query workers first (docs/internals/server.md). */
    srv.a.ingest_pool = workpool_new_niced(cfg->ingest_workers, cfg->worker_queue, SERVER_INGEST_NICE);
    if (cfg->cache_enabled) {
        cache_config cc;
        cache_config_from(cfg, &cc);
        if (cache_new(&cc, upstream_clock_system(), &srv.a.cache) != RAGD_OK) {
            log_error("out of memory at start-up (cache)");
            goto out;
        }
    }
    srv.a.rate_query = cfg->rate_query.count ? ratelimit_new(&cfg->rate_query, RAGD_RATE_CLIENTS) : NULL;
    srv.a.rate_ingest = cfg->rate_ingest.count ? ratelimit_new(&cfg->rate_ingest, RAGD_RATE_CLIENTS) : NULL;
    if ((cfg->rate_query.count && !srv.a.rate_query) || (cfg->rate_ingest.count && !srv.a.rate_ingest)) {
        log_error("out of memory at start-up (rate limits)");
        goto out;
    }
    rag_engine_config ec = {.st = srv.a.st,
                            .index = srv.a.index,
                            .pool = srv.a.pool,
                            .ingest_pool = srv.a.ingest_pool,
                            .lq = srv.a.lq,
                            .generator = srv.a.generator,
                            .generator_name = srv.a.generator_name,
                            .embedder = srv.a.embedder,
                            .embedder_name = srv.a.embedder_name,
                            .llm_requested = config_llm_requested(cfg),
                            .llm_model = cfg->llm_model,
                            .generate_timeout_ms = cfg->generate_timeout_s * 1000,
                            .embed_timeout_ms = cfg->embed_timeout_s * 1000,
                            .cache = srv.a.cache,
                            .fusion = &srv.a.cfg.fusion,
                            .embed_choice = cfg->embedder == CONFIG_EMBEDDER_BUILTIN ? RAG_EMBED_BUILTIN
                                            : cfg->embedder == CONFIG_EMBEDDER_AUTO  ? RAG_EMBED_AUTO
                                                                                     : RAG_EMBED_UPSTREAM,
                            .embed_model = cfg->embed_model,
                            .chunk_size = cfg->chunk_size,
                            .chunk_overlap = cfg->chunk_overlap,
                            .context_tokens = cfg->context_tokens,
                            .stopping = &srv.a.stopping,
                            .injection_policy = (rag_injection_policy)cfg->injection_policy,
                            .chunk_threshold = cfg->injection_chunk_threshold,
                            .quarantine_off = !cfg->injection_quarantine,
                            .spotlight = cfg->spotlight,
                            .reranker = srv.a.reranker,
                            .rerank_candidates = cfg->rerank_candidates};
    srv.a.engine = rag_engine_new(&ec);
    srv.a.reembed = srv.a.engine ? rag_reembed_new(rag_engine_cfg(srv.a.engine), srv.a.base) : NULL;
    if (!srv.a.index || !srv.a.lq || !srv.a.pool || !srv.a.ingest_pool || !srv.a.engine || !srv.a.reembed) {
        log_error("out of memory at start-up");
        goto out;
    }
    /* Threads by name in top -H, ps -L and perf (docs/operations.md): the loop stays "ragd" */
    workpool_name_threads(srv.a.pool, "ragd-worker");
    workpool_name_threads(srv.a.ingest_pool, "ragd-ingest");
    store_set_commit_hook(srv.a.st, server_on_commit, &srv.a);

    srv.a.http = http_server_start(&srv.a, handlers_routes, handlers_routes_count, err, sizeof err);
    if (!srv.a.http) {
        log_error("%s", err);
        goto out;
    }
    srv.sig_event = event_new(srv.a.base, server_signal_pipe[0], EV_READ | EV_PERSIST, server_on_signal, &srv);
    srv.hup_event = evsignal_new(srv.a.base, SIGHUP, server_on_sighup, &srv);
    srv.drain_timer = evtimer_new(srv.a.base, server_on_drain_tick, &srv);
    if (!srv.sig_event || !srv.hup_event || !srv.drain_timer || event_add(srv.sig_event, NULL) ||
        event_add(srv.hup_event, NULL)) {
        log_error("cannot watch for signals");
        goto out;
    }
    log_info("ragd listening on http://%s:%d (data %s, %zu workers, %zu ingest workers, %zu store readers)",
             cfg->listen_host, http_server_port(srv.a.http), srv.a.db_path, cfg->workers, cfg->ingest_workers,
             cfg->pool_size);
    bool ipv6 = strchr(cfg->listen_host, ':') != NULL; /* a literal IPv6 address goes in brackets */
    log_info("the web page: open http://%s%s%s:%d/ in a browser", ipv6 ? "[" : "", cfg->listen_host, ipv6 ? "]" : "",
             http_server_port(srv.a.http));

    server_load *load = calloc(1, sizeof *load);
    if (load)
        load->srv = &srv;
    if (!load || workpool_submit(srv.a.pool, server_load_work, NULL, load) != RAGD_OK) {
        free(load);
        log_error("cannot start loading the index");
        goto out;
    }
    srv.exit_code = 0;
    server_signals_mask(SIG_UNBLOCK); /* every thread exists now: signals reach the loop thread */
    if (atomic_load(&srv.a.draining))
        server_on_signal(server_signal_pipe[0], 0, &srv); /* signalled during start-up */
    event_base_dispatch(srv.a.base);

out:
    if (srv.a.http) { /* start-up failed after the server began: nothing was served */
        atomic_store(&srv.a.draining, true);
        server_finish_begin(&srv);
        server_finish_end(&srv);
    }
    workpool_free(srv.a.pool);
    workpool_free(srv.a.ingest_pool);
    store_close(srv.a.st);
    if (srv.a.lq)
        loopq_drain(srv.a.lq);
    server_generator_stop(&srv.a);
    if (srv.a.lq)
        loopq_free(srv.a.lq);
    rag_reembed_free(srv.a.reembed); /* nothing runs any more; before the engine and the loop go */
    rag_engine_free(srv.a.engine);
    ratelimit_free(srv.a.rate_query);
    ratelimit_free(srv.a.rate_ingest);
    cache_free(srv.a.cache);
    rag_index_free(srv.a.index);
    guard_shutdown();
    if (srv.sig_event)
        event_free(srv.sig_event);
    if (srv.hup_event)
        event_free(srv.hup_event);
    config_raw_free(&srv.raw);
    server_signals_close();
    if (srv.drain_timer)
        event_free(srv.drain_timer);
    event_base_free(srv.a.base);
    curl_global_cleanup();
    return srv.exit_code;
}
