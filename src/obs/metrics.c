#include "obs/metrics.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "app.h"
#include "rag/cache.h"
#include "rag/rerank.h"
#include "store/store.h"
#include "upstream/llm.h"
#include "util/strbuf.h"
#include "util/workpool.h"

#define METRICS_MAX_SERIES 512
#define METRICS_MAX_ROUTES 64
#define METRICS_BUCKETS 12

static const double metrics_bounds[METRICS_BUCKETS - 1] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

typedef struct {
    const char *route;
    char method[8];
    int status;
    unsigned long long count;
} metrics_series;

typedef struct {
    const char *route;
    unsigned long long buckets[METRICS_BUCKETS]; /* non-cumulative; the last is +Inf */
    unsigned long long count;
    double sum;
} metrics_histogram;

/* Upstream call durations: LLM calls run from milliseconds (an embedding) to minutes (a
 * long answer on a CPU, a cold model load). */
#define METRICS_UPSTREAM_BUCKETS 15
#define METRICS_MAX_UPSTREAM 64
static const double metrics_upstream_bounds[METRICS_UPSTREAM_BUCKETS - 1] = {
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
/* Embedding batch sizes: RAGD_EMBED_BATCH goes up to 2048. */
#define METRICS_BATCH_BUCKETS 13
static const double metrics_batch_bounds[METRICS_BATCH_BUCKETS - 1] = {1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048};

typedef struct {
    char backend[200];
    const char *op; /* static */
    unsigned long long buckets[METRICS_UPSTREAM_BUCKETS];
    unsigned long long count;
    double sum;
} metrics_upstream_hist;

typedef struct {
    char backend[200];
    unsigned long long buckets[METRICS_BATCH_BUCKETS];
    unsigned long long count;
    double sum;
} metrics_batch_hist;

static metrics_upstream_hist metrics_upstream_calls[METRICS_MAX_UPSTREAM];
static size_t metrics_n_upstream;
static metrics_batch_hist metrics_batches[METRICS_MAX_UPSTREAM];
static size_t metrics_n_batches;

static const char *const metrics_query_methods[] = {"hybrid", "vector", "keyword"};
static const char *const metrics_query_generators[] = {"llm", "extractive", "cache", "none"};
static atomic_ullong metrics_queries[3][4];

static pthread_mutex_t metrics_lock = PTHREAD_MUTEX_INITIALIZER;
static metrics_series metrics_requests[METRICS_MAX_SERIES];
static size_t metrics_n_requests;
static metrics_histogram metrics_durations[METRICS_MAX_ROUTES];
static size_t metrics_n_durations;
static atomic_ullong metrics_ingested_documents, metrics_ingested_chunks, metrics_shed, metrics_rate_limited;

void metrics_http_observe(const char *route, const char *method, int status, double seconds)
{
    pthread_mutex_lock(&metrics_lock);
    size_t i = 0;
    while (i < metrics_n_requests && !(metrics_requests[i].route == route && metrics_requests[i].status == status &&
                                       strcmp(metrics_requests[i].method, method) == 0))
        i++;
    if (i == metrics_n_requests && i < METRICS_MAX_SERIES) {
        metrics_requests[i].route = route;
        snprintf(metrics_requests[i].method, sizeof metrics_requests[i].method, "%s", method);
        metrics_requests[i].status = status;
        metrics_n_requests++;
    }
    if (i < metrics_n_requests)
        metrics_requests[i].count++;
    size_t h = 0;
    while (h < metrics_n_durations && metrics_durations[h].route != route)
        h++;
    if (h == metrics_n_durations && h < METRICS_MAX_ROUTES)
        metrics_durations[metrics_n_durations++].route = route;
    if (h < metrics_n_durations) {
        size_t b = 0;
        while (b < METRICS_BUCKETS - 1 && seconds > metrics_bounds[b])
            b++;
        metrics_durations[h].buckets[b]++;
        metrics_durations[h].count++;
        metrics_durations[h].sum += seconds;
    }
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_count_ingest(size_t documents, size_t chunks)
{
    atomic_fetch_add(&metrics_ingested_documents, documents);
    atomic_fetch_add(&metrics_ingested_chunks, chunks);
}

void metrics_count_shed(void) { atomic_fetch_add(&metrics_shed, 1); }

void metrics_count_rate_limited(void) { atomic_fetch_add(&metrics_rate_limited, 1); }

/* The bucket of v among n - 1 bounds (the last bucket is +Inf). */
static size_t metrics_bucket(const double *bounds, size_t n, double v)
{
    size_t b = 0;
    while (b < n - 1 && v > bounds[b])
        b++;
    return b;
}

void metrics_upstream_observe(const char *backend, const char *op, double seconds)
{
    pthread_mutex_lock(&metrics_lock);
    size_t i = 0;
    while (i < metrics_n_upstream &&
           !(strcmp(metrics_upstream_calls[i].op, op) == 0 && strcmp(metrics_upstream_calls[i].backend, backend) == 0))
        i++;
    if (i == metrics_n_upstream && i < METRICS_MAX_UPSTREAM) {
        snprintf(metrics_upstream_calls[i].backend, sizeof metrics_upstream_calls[i].backend, "%s", backend);
        metrics_upstream_calls[i].op = op;
        metrics_n_upstream++;
    }
    if (i < metrics_n_upstream) {
        metrics_upstream_hist *h = &metrics_upstream_calls[i];
        h->buckets[metrics_bucket(metrics_upstream_bounds, METRICS_UPSTREAM_BUCKETS, seconds)]++;
        h->count++;
        h->sum += seconds;
    }
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_embed_batch_observe(const char *backend, size_t texts)
{
    pthread_mutex_lock(&metrics_lock);
    size_t i = 0;
    while (i < metrics_n_batches && strcmp(metrics_batches[i].backend, backend) != 0)
        i++;
    if (i == metrics_n_batches && i < METRICS_MAX_UPSTREAM) {
        snprintf(metrics_batches[i].backend, sizeof metrics_batches[i].backend, "%s", backend);
        metrics_n_batches++;
    }
    if (i < metrics_n_batches) {
        metrics_batch_hist *h = &metrics_batches[i];
        h->buckets[metrics_bucket(metrics_batch_bounds, METRICS_BATCH_BUCKETS, (double)texts)]++;
        h->count++;
        h->sum += (double)texts;
    }
    pthread_mutex_unlock(&metrics_lock);
}

void metrics_count_query(const char *method, const char *generator)
{
    for (size_t m = 0; m < 3; m++)
        for (size_t g = 0; g < 4; g++)
            if (strcmp(method, metrics_query_methods[m]) == 0 && strcmp(generator, metrics_query_generators[g]) == 0)
                atomic_fetch_add(&metrics_queries[m][g], 1);
}

static void metrics_family(strbuf *sb, const char *name, const char *type, const char *help);

/* ragd_injection_total: the fixed (where, action) pairs the engine and ingest count. */
static const struct {
    const char *where, *action;
} metrics_injection_kinds[] = {
    {"query", "blocked"}, {"query", "flagged"}, {"chunk", "quarantined"}, {"chunk", "flagged"}, {"output", "withheld"},
};
#define METRICS_INJECTION_KINDS (sizeof metrics_injection_kinds / sizeof *metrics_injection_kinds)
static atomic_ullong metrics_injection[METRICS_INJECTION_KINDS];

void metrics_count_injection_n(const char *where, const char *action, size_t n)
{
    for (size_t i = 0; i < METRICS_INJECTION_KINDS; i++)
        if (strcmp(metrics_injection_kinds[i].where, where) == 0 && strcmp(metrics_injection_kinds[i].action, action) == 0)
            atomic_fetch_add(&metrics_injection[i], n);
}

void metrics_count_injection(const char *where, const char *action) { metrics_count_injection_n(where, action, 1); }

static void metrics_injection_render(strbuf *sb)
{
    metrics_family(sb, "ragd_injection_total", "counter",
                   "Prompt-injection verdicts acted on: questions blocked or flagged, chunks quarantined or flagged "
                   "at ingest, answers withheld.");
    for (size_t i = 0; i < METRICS_INJECTION_KINDS; i++)
        strbuf_appendf(sb, "ragd_injection_total{where=\"%s\",action=\"%s\"} %llu\n", metrics_injection_kinds[i].where,
                       metrics_injection_kinds[i].action, (unsigned long long)atomic_load(&metrics_injection[i]));
}

/* ---- rendering ---- */

static void metrics_family(strbuf *sb, const char *name, const char *type, const char *help)
{
    strbuf_appendf(sb, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void metrics_process(strbuf *sb)
{
    long page = sysconf(_SC_PAGESIZE), ticks = sysconf(_SC_CLK_TCK);
    unsigned long long size = 0, resident = 0, utime = 0, stime = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (f) {
        if (fscanf(f, "%llu %llu", &size, &resident) != 2)
            resident = 0;
        fclose(f);
    }
    f = fopen("/proc/self/stat", "r");
    if (f) {
        char buf[1024];
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')'); /* the command name may hold spaces */
        if (p && sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &utime, &stime) != 2)
            utime = stime = 0;
        fclose(f);
    }
    int fds = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d) {
        while (readdir(d))
            fds++;
        closedir(d);
        fds -= 3; /* ".", ".." and the directory's own descriptor */
    }
    metrics_family(sb, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    strbuf_appendf(sb, "process_resident_memory_bytes %llu\n", resident * (unsigned long long)page);
    metrics_family(sb, "process_open_fds", "gauge", "Number of open file descriptors.");
    strbuf_appendf(sb, "process_open_fds %d\n", fds);
    metrics_family(sb, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    strbuf_appendf(sb, "process_cpu_seconds_total %.2f\n", (double)(utime + stime) / (double)(ticks > 0 ? ticks : 100));
}

static void metrics_http(strbuf *sb)
{
    pthread_mutex_lock(&metrics_lock);
    metrics_family(sb, "ragd_http_requests_total", "counter", "HTTP requests by route pattern, method and status.");
    for (size_t i = 0; i < metrics_n_requests; i++)
        strbuf_appendf(sb, "ragd_http_requests_total{route=\"%s\",method=\"%s\",code=\"%d\"} %llu\n",
                       metrics_requests[i].route, metrics_requests[i].method, metrics_requests[i].status,
                       metrics_requests[i].count);
    metrics_family(sb, "ragd_http_request_duration_seconds", "histogram", "HTTP request duration by route pattern.");
    for (size_t h = 0; h < metrics_n_durations; h++) {
        const metrics_histogram *m = &metrics_durations[h];
        unsigned long long cum = 0;
        for (size_t b = 0; b < METRICS_BUCKETS; b++) {
            cum += m->buckets[b];
            if (b < METRICS_BUCKETS - 1)
                strbuf_appendf(sb, "ragd_http_request_duration_seconds_bucket{route=\"%s\",le=\"%g\"} %llu\n", m->route,
                               metrics_bounds[b], cum);
            else
                strbuf_appendf(sb, "ragd_http_request_duration_seconds_bucket{route=\"%s\",le=\"+Inf\"} %llu\n",
                               m->route, cum);
        }
        strbuf_appendf(sb, "ragd_http_request_duration_seconds_sum{route=\"%s\"} %.6f\n", m->route, m->sum);
        strbuf_appendf(sb, "ragd_http_request_duration_seconds_count{route=\"%s\"} %llu\n", m->route, m->count);
    }
    pthread_mutex_unlock(&metrics_lock);
}

/* Label values come from the configuration (URLs, model names); quotes and backslashes
 * are escaped all the same. */
static void metrics_label(strbuf *sb, const char *v)
{
    for (; *v; v++) {
        if (*v == '\n') {
            strbuf_appends(sb, "\\n");
            continue;
        }
        if (*v == '"' || *v == '\\')
            strbuf_append(sb, "\\", 1);
        strbuf_append(sb, v, 1);
    }
}

/* backend="…",model="…" */
static void metrics_backend_labels(strbuf *sb, const char *backend, const char *model)
{
    strbuf_appends(sb, "backend=\"");
    metrics_label(sb, backend);
    strbuf_appends(sb, "\",model=\"");
    metrics_label(sb, model);
    strbuf_appends(sb, "\"");
}

static void metrics_upstream(strbuf *sb, struct app *a)
{
    static const char *const families[][3] = {
        {"ragd_breaker_state", "gauge", "Circuit breaker state: 0 closed, 1 open, 2 half-open."},
        {"ragd_breaker_transitions_total", "counter", "Circuit breaker transitions by target state."},
        {"ragd_upstream_requests_total", "counter", "Upstream calls by backend, model, operation and outcome."},
        {"ragd_breaker_not_permitted_total", "counter", "Calls refused by an open breaker."},
    };
    for (size_t f = 0; f < sizeof families / sizeof *families; f++) {
        metrics_family(sb, families[f][0], families[f][1], families[f][2]);
        for (int k = 0; k < 3; k++) { /* Ollama, OpenAI, the HTTP reranker */
            breaker_registry *reg = k < 2 ? (a->llms[k] ? llm_breakers(a->llms[k]) : NULL) : rerank_breakers(a->reranker);
            if (!reg)
                continue;
            for (size_t i = 0; i < breaker_registry_count(reg); i++) {
                breaker *b = breaker_registry_at(reg, i);
                breaker_snapshot s;
                breaker_snapshot_get(b, &s);
                strbuf lab;
                strbuf_init(&lab, 4096);
                metrics_backend_labels(&lab, breaker_backend(b), breaker_model(b));
                strbuf_appendf(&lab, ",op=\"%s\"", breaker_op(b));
                const char *l = lab.data ? lab.data : "";
                if (f == 0) {
                    int v = s.state == BREAKER_OPEN || s.state == BREAKER_FORCED_OPEN ? 1 : s.state == BREAKER_HALF_OPEN ? 2 : 0;
                    strbuf_appendf(sb, "ragd_breaker_state{%s} %d\n", l, v);
                } else if (f == 1) {
                    static const char *const to[] = {"closed", "open", "half_open", "forced_open", "disabled"};
                    for (int t = 0; t < BREAKER_NSTATES; t++)
                        strbuf_appendf(sb, "ragd_breaker_transitions_total{%s,to=\"%s\"} %llu\n", l, to[t],
                                       (unsigned long long)s.transitions[t]);
                } else if (f == 2) {
                    strbuf_appendf(sb, "ragd_upstream_requests_total{%s,outcome=\"success\"} %llu\n", l,
                                   (unsigned long long)s.successes);
                    strbuf_appendf(sb, "ragd_upstream_requests_total{%s,outcome=\"failure\"} %llu\n", l,
                                   (unsigned long long)s.failures);
                    strbuf_appendf(sb, "ragd_upstream_requests_total{%s,outcome=\"overload\"} %llu\n", l,
                                   (unsigned long long)s.overload);
                    strbuf_appendf(sb, "ragd_upstream_requests_total{%s,outcome=\"neutral\"} %llu\n", l,
                                   (unsigned long long)s.neutral);
                } else {
                    strbuf_appendf(sb, "ragd_breaker_not_permitted_total{%s} %llu\n", l,
                                   (unsigned long long)s.not_permitted);
                }
                strbuf_cleanup(&lab);
            }
        }
    }
    /* each family's samples together, as the text format requires */
    for (int gauge = 0; gauge < 2; gauge++) {
        const char *name = gauge == 0 ? "ragd_bulkhead_in_flight" : "ragd_bulkhead_queued";
        metrics_family(sb, name, "gauge",
                       gauge == 0 ? "Upstream calls in flight per backend and model."
                                  : "Upstream calls waiting per backend and model.");
        for (int k = 0; k < 3; k++) { /* Ollama, OpenAI, the HTTP reranker */
            bulkhead_set *set = k < 2 ? (a->llms[k] ? llm_bulkheads(a->llms[k]) : NULL) : rerank_bulkheads(a->reranker);
            if (!set)
                continue;
            for (size_t i = 0; i < bulkhead_set_count(set); i++) {
                bulkhead *bh = bulkhead_set_at(set, i);
                bulkhead_stats st = bulkhead_get_stats(bh);
                strbuf_appendf(sb, "%s{", name);
                metrics_backend_labels(sb, bulkhead_backend(bh), bulkhead_model(bh));
                strbuf_appendf(sb, "} %d\n", gauge == 0 ? st.in_flight : st.queued);
            }
        }
    }
}

/* The answer cache's counters (cache_stats_get: atomic reads, no lock); zeros without one. */
static void metrics_cache(strbuf *sb, const cache *c)
{
    cache_stats st;
    memset(&st, 0, sizeof st);
    if (c)
        cache_stats_get(c, &st);
    metrics_family(sb, "ragd_cache_requests_total", "counter", "Semantic cache lookups by result.");
    strbuf_appendf(sb, "ragd_cache_requests_total{result=\"hit\"} %llu\nragd_cache_requests_total{result=\"miss\"} %llu\n",
                   (unsigned long long)st.hits, (unsigned long long)st.misses);
    metrics_family(sb, "ragd_cache_evictions_total", "counter",
                   "Semantic cache entries dropped: size (LRU, over RAGD_CACHE_MAX_BYTES), ttl, invalidated.");
    strbuf_appendf(sb,
                   "ragd_cache_evictions_total{reason=\"size\"} %llu\nragd_cache_evictions_total{reason=\"ttl\"} %llu\n"
                   "ragd_cache_evictions_total{reason=\"invalidated\"} %llu\n",
                   (unsigned long long)st.evictions, (unsigned long long)st.expirations,
                   (unsigned long long)st.invalidations);
    metrics_family(sb, "ragd_cache_entries", "gauge", "Answers held by the semantic cache.");
    strbuf_appendf(sb, "ragd_cache_entries %zu\n", st.entries);
    metrics_family(sb, "ragd_cache_bytes", "gauge", "Bytes held by the semantic cache, as counted against RAGD_CACHE_MAX_BYTES.");
    strbuf_appendf(sb, "ragd_cache_bytes %zu\n", st.bytes);
}

/* name_bucket{labels,le="…"} lines (cumulative), then _sum and _count, for one series. */
static void metrics_histogram_series(strbuf *sb, const char *name, const char *labels, const double *bounds,
                                     size_t n, const unsigned long long *buckets, unsigned long long count, double sum)
{
    unsigned long long cum = 0;
    for (size_t b = 0; b < n; b++) {
        cum += buckets[b];
        if (b < n - 1)
            strbuf_appendf(sb, "%s_bucket{%s,le=\"%g\"} %llu\n", name, labels, bounds[b], cum);
        else
            strbuf_appendf(sb, "%s_bucket{%s,le=\"+Inf\"} %llu\n", name, labels, cum);
    }
    strbuf_appendf(sb, "%s_sum{%s} %.6f\n%s_count{%s} %llu\n", name, labels, sum, name, labels, count);
}

static void metrics_upstream_histograms(strbuf *sb)
{
    pthread_mutex_lock(&metrics_lock);
    metrics_family(sb, "ragd_upstream_request_duration_seconds", "histogram",
                   "Duration of each HTTP call to a model backend (every attempt) by backend and operation.");
    for (size_t i = 0; i < metrics_n_upstream; i++) {
        const metrics_upstream_hist *h = &metrics_upstream_calls[i];
        strbuf lab;
        strbuf_init(&lab, 1024);
        strbuf_appends(&lab, "backend=\"");
        metrics_label(&lab, h->backend);
        strbuf_appendf(&lab, "\",op=\"%s\"", h->op);
        metrics_histogram_series(sb, "ragd_upstream_request_duration_seconds", lab.data ? lab.data : "",
                                 metrics_upstream_bounds, METRICS_UPSTREAM_BUCKETS, h->buckets, h->count, h->sum);
        strbuf_cleanup(&lab);
    }
    metrics_family(sb, "ragd_embed_batch_size", "histogram", "Texts per embedding call sent to a backend.");
    for (size_t i = 0; i < metrics_n_batches; i++) {
        const metrics_batch_hist *h = &metrics_batches[i];
        strbuf lab;
        strbuf_init(&lab, 1024);
        strbuf_appends(&lab, "backend=\"");
        metrics_label(&lab, h->backend);
        strbuf_appends(&lab, "\"");
        metrics_histogram_series(sb, "ragd_embed_batch_size", lab.data ? lab.data : "", metrics_batch_bounds,
                                 METRICS_BATCH_BUCKETS, h->buckets, h->count, h->sum);
        strbuf_cleanup(&lab);
    }
    pthread_mutex_unlock(&metrics_lock);
}

static void metrics_queries_render(strbuf *sb)
{
    metrics_family(sb, "ragd_queries_total", "counter",
                   "Queries and retrievals answered, by retrieval method and by who answered: llm, extractive, "
                   "cache, none (a retrieval).");
    for (size_t m = 0; m < 3; m++)
        for (size_t g = 0; g < 4; g++)
            strbuf_appendf(sb, "ragd_queries_total{method=\"%s\",generator=\"%s\"} %llu\n", metrics_query_methods[m],
                           metrics_query_generators[g], (unsigned long long)atomic_load(&metrics_queries[m][g]));
}

/* The store's pool and writer and the two worker pools: /api/pool/stats's figures. */
static void metrics_pools(strbuf *sb, struct app *a)
{
    store_pool_stats ps;
    store_pool_stats_get(a->st, &ps);
    metrics_family(sb, "ragd_pool_connections", "gauge", "Store read connections by state.");
    strbuf_appendf(sb, "ragd_pool_connections{state=\"available\"} %zu\nragd_pool_connections{state=\"in_use\"} %zu\n",
                   ps.available, ps.in_use);
    metrics_family(sb, "ragd_pool_acquires_total", "counter", "Borrows of a store read connection.");
    strbuf_appendf(sb, "ragd_pool_acquires_total %llu\n", (unsigned long long)ps.acquires);
    metrics_family(sb, "ragd_pool_waits_total", "counter", "Borrows of a store read connection that had to wait.");
    strbuf_appendf(sb, "ragd_pool_waits_total %llu\n", (unsigned long long)ps.waits);
    metrics_family(sb, "ragd_pool_wait_seconds_total", "counter", "Time spent waiting for a store read connection.");
    strbuf_appendf(sb, "ragd_pool_wait_seconds_total %.6f\n", ps.wait_ms_total / 1000.0);
    metrics_family(sb, "ragd_store_write_queue", "gauge", "Writes queued for the store's writer.");
    strbuf_appendf(sb, "ragd_store_write_queue %zu\n", ps.write_queue);
    metrics_family(sb, "ragd_store_write_groups_total", "counter", "Transactions committed by the store's writer.");
    strbuf_appendf(sb, "ragd_store_write_groups_total %llu\n", (unsigned long long)ps.write_groups);
    metrics_family(sb, "ragd_store_writes_total", "counter", "Writes the store's writer acknowledged.");
    strbuf_appendf(sb, "ragd_store_writes_total %llu\n", (unsigned long long)ps.writes);
    static const char *const names[] = {"query", "ingest"};
    workpool *pools[] = {a->pool, a->ingest_pool};
    metrics_family(sb, "ragd_worker_threads", "gauge", "Threads of each worker pool.");
    for (size_t i = 0; i < 2; i++)
        strbuf_appendf(sb, "ragd_worker_threads{pool=\"%s\"} %zu\n", names[i], pools[i] ? workpool_threads(pools[i]) : 0);
    metrics_family(sb, "ragd_worker_busy", "gauge", "Threads of each worker pool running a job.");
    for (size_t i = 0; i < 2; i++)
        strbuf_appendf(sb, "ragd_worker_busy{pool=\"%s\"} %zu\n", names[i], pools[i] ? workpool_busy(pools[i]) : 0);
    metrics_family(sb, "ragd_worker_queued", "gauge", "Jobs waiting for a thread of each worker pool.");
    for (size_t i = 0; i < 2; i++)
        strbuf_appendf(sb, "ragd_worker_queued{pool=\"%s\"} %zu\n", names[i], pools[i] ? workpool_queued(pools[i]) : 0);
}

char *metrics_render(struct app *a, size_t *len)
{
    strbuf sb;
    strbuf_init(&sb, (size_t)16 << 20);
    metrics_http(&sb);
    metrics_pools(&sb, a);
    metrics_family(&sb, "ragd_ingested_documents_total", "counter", "Documents committed by ingests.");
    strbuf_appendf(&sb, "ragd_ingested_documents_total %llu\n", (unsigned long long)atomic_load(&metrics_ingested_documents));
    metrics_family(&sb, "ragd_ingested_chunks_total", "counter", "Chunks committed by ingests.");
    strbuf_appendf(&sb, "ragd_ingested_chunks_total %llu\n", (unsigned long long)atomic_load(&metrics_ingested_chunks));
    metrics_family(&sb, "ragd_shed_total", "counter", "Requests shed with 503 overloaded.");
    strbuf_appendf(&sb, "ragd_shed_total %llu\n", (unsigned long long)atomic_load(&metrics_shed));
    metrics_family(&sb, "ragd_request_body_bytes", "gauge",
                   "Request-body bytes held in memory, as counted against RAGD_MAX_BODY_BYTES_TOTAL.");
    strbuf_appendf(&sb, "ragd_request_body_bytes %zu\n", body_budget_used(&a->body_budget));
    metrics_family(&sb, "ragd_rate_limited_total", "counter", "Requests refused with 429 rate_limited.");
    strbuf_appendf(&sb, "ragd_rate_limited_total %llu\n", (unsigned long long)atomic_load(&metrics_rate_limited));
    metrics_injection_render(&sb);
    metrics_cache(&sb, a->cache);
    metrics_queries_render(&sb);
    metrics_upstream(&sb, a);
    metrics_upstream_histograms(&sb);
    metrics_process(&sb);
    return strbuf_detach(&sb, len);
}
