/* bench_cache: the semantic answer cache (src/rag/cache.c) under load. Not part of the test
 * suite. `make bench` runs it as `build/bench_cache`; alone:
 *   make build/bench_cache && build/bench_cache [entries] [dim] [seconds] [value_bytes]
 * (defaults 10000 768 1 4096).
 *
 * One hot collection, as in a real deployment: every entry shares one key (collection,
 * version, params), `entries` different questions, each with a `dim` embedding and a
 * `value_bytes` answer. Then, for 1 and 2 threads, each thread looks up as fast as it can
 * for `seconds`:
 *   exact hit, spread   random stored questions (different case and spacing)
 *   exact hit, one      the same question every time (one hot entry: the worst sharing)
 *   exact hit, 1 shard  spread, on a cache built with one shard (one rwlock for all)
 *   semantic hit        a new text whose embedding is near a stored one: a full scan of
 *                       the key's newest 256 entries (the bound) at `dim`
 *   miss                a new text, an embedding near none: the same scan, no result
 * and prints lookups/s over all threads, and per lookup per thread its wall time and its
 * thread CPU time (on a shared machine the wall time includes waiting for a core; the CPU
 * time is what the lookup costs, and grows with two threads only if they contend). Also the
 * cost of a store (with eviction once the cache is full). Real clock (CLOCK_MONOTONIC). */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rag/cache.h"
#include "util/clock.h"

typedef struct {
    size_t entries, dim, value_bytes;
    double seconds;
    char **texts;    /* stored questions */
    char **lookups;  /* the same questions, other case and spacing */
    float *embs;     /* entries x dim */
    float *far;      /* an embedding near none */
} bench_data;

static uint64_t bench_rng = 0x9e3779b97f4a7c15ULL;

static uint64_t bench_next(void)
{
    bench_rng ^= bench_rng >> 12;
    bench_rng ^= bench_rng << 25;
    bench_rng ^= bench_rng >> 27;
    return bench_rng * 0x2545f4914f6cdd1dULL;
}

static float bench_float(void) { return (float)((double)(bench_next() >> 11) / 9007199254740992.0) * 2.0f - 1.0f; }

static const char PARAMS[] = "method=hybrid;k=5;filter={};provider=auto;model=llama3.2;options={};rerank=0";

static cache_key bench_key(void)
{
    return (cache_key){.coll_id = 1, .version = 42, .params = PARAMS, .params_len = sizeof PARAMS - 1};
}

typedef enum { CASE_SPREAD, CASE_ONE, CASE_SEMANTIC, CASE_MISS } bench_case;

typedef struct {
    cache *c;
    const bench_data *d;
    bench_case kind;
    unsigned seed;
    pthread_barrier_t *start;
    unsigned long long ops, hits;
    double ns_per_op;     /* wall time */
    double cpu_ns_per_op; /* this thread's CPU time: what a lookup costs, whatever else runs */
} bench_thread;

static double bench_cpu_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void *bench_main(void *arg)
{
    bench_thread *t = arg;
    const bench_data *d = t->d;
    cache_key k = bench_key();
    float *near = malloc(d->dim * sizeof *near);
    if (!near)
        return NULL;
    uint64_t r = 0x853c49e6748fea9bULL * (t->seed + 1);
    pthread_barrier_wait(t->start);
    double t0 = clock_now_ms(), deadline = t0 + d->seconds * 1000.0, now = t0, cpu0 = bench_cpu_ns();
    unsigned long long ops = 0, hits = 0;
    while (now < deadline) {
        for (int i = 0; i < 256; i++) {
            r = r * 6364136223846793005ULL + 1442695040888963407ULL;
            size_t j = (size_t)(r >> 33) % d->entries;
            cache_query q = {0};
            char text[64];
            if (t->kind == CASE_SPREAD || t->kind == CASE_ONE) {
                q.text = d->lookups[t->kind == CASE_ONE ? 0 : j];
                q.text_len = strlen(q.text);
            } else {
                /* a new question each time; the embedding: a stored one, slightly moved, or
                 * one near none */
                snprintf(text, sizeof text, "a question never asked %llu", (unsigned long long)(r >> 20));
                q.text = text;
                q.text_len = strlen(text);
                if (t->kind == CASE_SEMANTIC) {
                    memcpy(near, d->embs + ((d->entries - 1 - j % 64) * d->dim), d->dim * sizeof *near);
                    near[j % d->dim] += 0.01f;
                    q.embedding = near;
                } else {
                    q.embedding = d->far;
                }
                q.dim = d->dim;
            }
            cache_hit h;
            if (cache_lookup(t->c, &k, &q, 0, &h) == RAGD_OK) {
                hits++;
                cache_value_release(h.value);
            }
            ops++;
        }
        now = clock_now_ms();
    }
    t->ops = ops;
    t->hits = hits;
    t->ns_per_op = (now - t0) * 1e6 / (double)ops;
    t->cpu_ns_per_op = (bench_cpu_ns() - cpu0) / (double)ops;
    free(near);
    return NULL;
}

static int bench_run(const char *name, cache *c, const bench_data *d, bench_case kind, int nthreads)
{
    pthread_t th[2];
    bench_thread ts[2];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)nthreads);
    for (int i = 0; i < nthreads; i++) {
        ts[i] = (bench_thread){.c = c, .d = d, .kind = kind, .seed = (unsigned)i, .start = &start};
        if (pthread_create(&th[i], NULL, bench_main, &ts[i]) != 0)
            return -1;
    }
    unsigned long long ops = 0, hits = 0;
    double ns = 0, cpu = 0;
    for (int i = 0; i < nthreads; i++) {
        pthread_join(th[i], NULL);
        ops += ts[i].ops;
        hits += ts[i].hits;
        ns += ts[i].ns_per_op / nthreads;
        cpu += ts[i].cpu_ns_per_op / nthreads;
    }
    pthread_barrier_destroy(&start);
    printf("%-22s %d thread%s %10.0f lookups/s  %7.0f ns wall  %7.0f ns CPU per lookup  hits %5.1f %%\n", name,
           nthreads, nthreads > 1 ? "s" : " ", (double)ops / d->seconds, ns, cpu,
           ops ? 100.0 * (double)hits / (double)ops : 0);
    return 0;
}

/* A cache of `shards` shards holding every entry; returns the store cost in *store_us. */
static cache *bench_fill(const bench_data *d, size_t shards, double *store_us)
{
    cache_config cfg;
    cache_config_default(&cfg);
    cfg.shards = shards;
    cfg.max_bytes = (size_t)1 << 30; /* everything fits: the lookups measure hits */
    cache *c = NULL;
    if (cache_new(&cfg, upstream_clock_system(), &c) != RAGD_OK)
        return NULL;
    char *value = malloc(d->value_bytes);
    if (!value) {
        cache_free(c);
        return NULL;
    }
    memset(value, 'v', d->value_bytes);
    cache_key k = bench_key();
    double t0 = clock_now_ms();
    for (size_t i = 0; i < d->entries; i++) {
        cache_query q = {.text = d->texts[i], .text_len = strlen(d->texts[i]), .embedding = d->embs + i * d->dim,
                         .dim = d->dim};
        if (cache_store(c, cache_ticket(c), &k, &q, value, d->value_bytes, NULL, 0) != RAGD_OK) {
            fprintf(stderr, "bench_cache: store failed\n");
            free(value);
            cache_free(c);
            return NULL;
        }
    }
    *store_us = (clock_now_ms() - t0) * 1000.0 / (double)d->entries;
    free(value);
    return c;
}

/* Stores into a full cache: every store evicts. */
static double bench_store_evicting(const bench_data *d)
{
    cache_config cfg;
    cache_config_default(&cfg);
    cfg.max_bytes = (size_t)4 << 20; /* ~800 entries of 5 KB */
    cache *c = NULL;
    char *value = malloc(d->value_bytes);
    if (!value || cache_new(&cfg, upstream_clock_system(), &c) != RAGD_OK) {
        free(value);
        return -1;
    }
    memset(value, 'v', d->value_bytes);
    cache_key k = bench_key();
    double t0 = clock_now_ms();
    for (size_t i = 0; i < d->entries; i++) {
        cache_query q = {.text = d->texts[i], .text_len = strlen(d->texts[i]), .embedding = d->embs + i * d->dim,
                         .dim = d->dim};
        cache_store(c, cache_ticket(c), &k, &q, value, d->value_bytes, NULL, 0);
    }
    double us = (clock_now_ms() - t0) * 1000.0 / (double)d->entries;
    cache_stats st;
    cache_stats_get(c, &st);
    printf("store into a full 4 MiB cache: %.2f us/store (%llu evictions, %zu entries held)\n", us,
           (unsigned long long)st.evictions, st.entries);
    cache_free(c);
    free(value);
    return us;
}

int main(int argc, char **argv)
{
    bench_data d = {
        .entries = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000,
        .dim = argc > 2 ? strtoul(argv[2], NULL, 10) : 768,
        .seconds = argc > 3 ? strtod(argv[3], NULL) : 1.0,
        .value_bytes = argc > 4 ? strtoul(argv[4], NULL, 10) : 4096,
    };
    if (d.entries < 64 || d.dim == 0 || !(d.seconds > 0)) {
        fprintf(stderr, "usage: bench_cache [entries >= 64] [dim] [seconds] [value_bytes]\n");
        return 2;
    }
    d.texts = calloc(d.entries, sizeof *d.texts);
    d.lookups = calloc(d.entries, sizeof *d.lookups);
    d.embs = malloc(d.entries * d.dim * sizeof *d.embs);
    d.far = malloc(d.dim * sizeof *d.far);
    if (!d.texts || !d.lookups || !d.embs || !d.far)
        return 1;
    for (size_t i = 0; i < d.entries; i++) {
        char buf[128];
        snprintf(buf, sizeof buf, "How does the write-ahead log handle case %zu of concurrent readers?", i);
        d.texts[i] = strdup(buf);
        snprintf(buf, sizeof buf, "  how does the WRITE-AHEAD log handle case %zu of  concurrent readers? ", i);
        d.lookups[i] = strdup(buf);
        if (!d.texts[i] || !d.lookups[i])
            return 1;
    }
    for (size_t i = 0; i < d.entries * d.dim; i++)
        d.embs[i] = bench_float();
    for (size_t i = 0; i < d.dim; i++)
        d.far[i] = bench_float();

    printf("bench_cache: %zu entries under one key, dim %zu, %zu-byte values, %.1f s per case\n", d.entries, d.dim,
           d.value_bytes, d.seconds);
    double store_us = 0, store1_us = 0;
    cache *c = bench_fill(&d, 16, &store_us);
    cache *c1 = bench_fill(&d, 1, &store1_us);
    if (!c || !c1)
        return 1;
    printf("store (cache not full): %.2f us/store\n", store_us);
    for (int n = 1; n <= 2; n++) {
        if (bench_run("exact hit, spread", c, &d, CASE_SPREAD, n) || bench_run("exact hit, one entry", c, &d, CASE_ONE, n) ||
            bench_run("exact hit, 1 shard", c1, &d, CASE_SPREAD, n) ||
            bench_run("semantic hit (scan)", c, &d, CASE_SEMANTIC, n) || bench_run("miss (scan)", c, &d, CASE_MISS, n))
            return 1;
    }
    bench_store_evicting(&d);
    cache_free(c);
    cache_free(c1);
    for (size_t i = 0; i < d.entries; i++) {
        free(d.texts[i]);
        free(d.lookups[i]);
    }
    free(d.texts);
    free(d.lookups);
    free(d.embs);
    free(d.far);
    return 0;
}
