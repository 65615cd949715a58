/* The semantic answer cache: see cache.h for the contract, docs/internals/cache.md for the
 * design (sharding, the approximate LRU, invalidation tickets). */
#include "rag/cache.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "util/hash.h"
#include "util/queue.h"

/* NFC + full Unicode case folding (no compatibility folding: see cache_normalize). */
#define CACHE_NORM_OPTS (UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_CASEFOLD)
/* Code points normalised on the stack (2 KB): queries up to ~500 characters allocate nothing. */
#define CACHE_STACK_CPS 512
/* Initial buckets of each shard's two hash tables (they double at load factor 1). */
#define CACHE_HTAB_MIN 64
/* Invalidation epochs: one slot per hash of the collection id (a collision only refuses a
 * store that was safe). */
#define CACHE_NSLOTS 64
/* Largest embedding dimension accepted (sizes stay far from overflow). */
#define CACHE_MAX_DIM ((size_t)1 << 16)
#define CACHE_MAX_SHARDS 256

typedef _Atomic uint64_t cache_atomic_u64;

/* ---- values ---- */

struct cache_value {
    atomic_size_t refs;
    size_t len;
    size_t meta_len;
    char bytes[]; /* data, NUL, meta */
};

const void *cache_value_data(const cache_value *v, size_t *len)
{
    *len = v->len;
    return v->bytes;
}

const void *cache_value_meta(const cache_value *v, size_t *len)
{
    *len = v->meta_len;
    return v->meta_len ? v->bytes + v->len + 1 : NULL;
}

cache_value *cache_value_retain(cache_value *v)
{
    atomic_fetch_add_explicit(&v->refs, 1, memory_order_relaxed);
    return v;
}

void cache_value_release(cache_value *v)
{
    if (v && atomic_fetch_sub_explicit(&v->refs, 1, memory_order_acq_rel) == 1)
        free(v);
}

/* ---- a chained hash table of intrusive nodes (no locking: the shard's lock guards it) ---- */

typedef struct cache_hnode {
    struct cache_hnode *next;
    uint64_t hash;
} cache_hnode;

typedef struct {
    cache_hnode **b;
    size_t mask;
    size_t n;
} cache_htab;

static ragd_err cache_htab_init(cache_htab *t)
{
    t->b = calloc(CACHE_HTAB_MIN, sizeof *t->b);
    t->mask = CACHE_HTAB_MIN - 1;
    t->n = 0;
    return t->b ? RAGD_OK : RAGD_ENOMEM;
}

/* Doubling; when there is no memory for it the table keeps working with longer chains. */
static void cache_htab_grow(cache_htab *t)
{
    size_t cap = (t->mask + 1) * 2;
    cache_hnode **nb = calloc(cap, sizeof *nb);
    if (!nb)
        return;
    for (size_t i = 0; i <= t->mask; i++) {
        cache_hnode *n = t->b[i];
        while (n) {
            cache_hnode *next = n->next;
            cache_hnode **slot = &nb[n->hash & (cap - 1)];
            n->next = *slot;
            *slot = n;
            n = next;
        }
    }
    free(t->b);
    t->b = nb;
    t->mask = cap - 1;
}

static void cache_htab_insert(cache_htab *t, cache_hnode *n)
{
    if (t->n > t->mask)
        cache_htab_grow(t);
    cache_hnode **slot = &t->b[n->hash & t->mask];
    n->next = *slot;
    *slot = n;
    t->n++;
}

static void cache_htab_remove(cache_htab *t, cache_hnode *n)
{
    cache_hnode **pp = &t->b[n->hash & t->mask];
    while (*pp != n)
        pp = &(*pp)->next;
    *pp = n->next;
    t->n--;
}

/* ---- entries, groups, shards ---- */

/* All entries of one key (collection, version, params) in one shard. */
typedef struct {
    cache_hnode hn;     /* in the shard's group table, hash of the key */
    queue_node entries; /* the key's entries in this shard, most recently stored first */
    size_t n;
    size_t bytes;
    int64_t coll_id;
    int64_t version;
    size_t params_len;
    char params[];
} cache_group;

typedef struct {
    cache_hnode hn;     /* in the shard's exact table, hash of key + normalised text */
    queue_node lru;     /* the shard's LRU list: head = most recently stored or spared */
    queue_node age;     /* the shard's store order: head = oldest (expires first) */
    queue_node in_group;
    cache_group *g;
    cache_value *v;
    double stored_ms;
    double norm;        /* L2 norm of emb; 0 = no embedding (exact lookups only) */
    uint64_t seq;       /* position stamp in the global order of stores and second chances */
    atomic_bool ref;    /* looked up since the eviction hand last passed it */
    size_t bytes;       /* counted against max_bytes: entry + value */
    size_t dim;
    size_t text_len;
    float *emb;         /* dim floats right after the struct */
    char *text;         /* then the normalised text and a NUL */
} cache_entry;

typedef struct {
    pthread_rwlock_t lock;
    cache_htab exact;  /* cache_entry by key + text */
    cache_htab groups; /* cache_group by key */
    queue_node lru;
    queue_node age;
    /* Read without the lock (victim choice, stats); written under the write lock. */
    cache_atomic_u64 tail_seq; /* seq of the LRU tail, UINT64_MAX when the shard is empty */
    atomic_size_t entries;
    atomic_size_t bytes;
    cache_atomic_u64 hits_exact, hits_semantic, misses, stores, refused, evictions, expirations, invalidations;
} cache_shard;

/* A shard padded to whole cache lines, so that two shards' locks never share one. */
typedef union {
    cache_shard s;
    char pad[(sizeof(cache_shard) + 63) / 64 * 64];
} cache_shard_slot;

struct cache {
    cache_config cfg;
    upstream_clock clock;
    size_t shard_mask;
    size_t scan_per_shard;
    size_t max_entry;
    uint64_t seed;           /* of the hashes */
    void *raw;               /* the allocation the shards live in */
    cache_shard_slot *shards; /* 64-byte aligned inside raw */
    char pad[64];            /* what lookups read (above) and what stores write (below) on
                              * different cache lines */
    atomic_size_t bytes;     /* total over the shards: what max_bytes bounds */
    cache_atomic_u64 seq;       /* LRU stamps */
    cache_atomic_u64 epoch;     /* invalidations so far: the ticket */
    cache_atomic_u64 slots[CACHE_NSLOTS]; /* epoch of the last invalidation per collection hash */
};

static uint64_t cache_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* A word-at-a-time multiplicative hash: the keys are ~100-byte params plus the query, and
 * FNV-1a's byte-at-a-time multiply chain was half the cost of a hit. Seeded per cache from
 * the OS (cache_new), so which texts share a bucket cannot be planned from outside; a
 * bucket chain is in any case bounded by the entries max_bytes holds. */
static uint64_t cache_hash_bytes(const void *p, size_t n, uint64_t h)
{
    const unsigned char *b = p;
    h ^= (uint64_t)n * 0x9e3779b97f4a7c15ULL;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, b, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ULL;
        h ^= h >> 29;
        b += 8;
        n -= 8;
    }
    uint64_t w = 0;
    memcpy(&w, b, n);
    return cache_mix((h ^ w) * 0x94d049bb133111ebULL);
}

static uint64_t cache_key_hash(const cache *c, const cache_key *k)
{
    uint64_t seed = c->seed ^ cache_mix((uint64_t)k->coll_id) ^ cache_mix((uint64_t)k->version + 0x9e3779b97f4a7c15ULL);
    return cache_hash_bytes(k->params ? k->params : "", k->params_len, seed);
}

static uint64_t cache_text_hash(uint64_t key_hash, const char *text, size_t len)
{
    return cache_hash_bytes(text, len, key_hash);
}

/* The shard of an entry: by key AND text, so that one hot collection (whose queries mostly
 * share one key) spreads over every shard. The tables index with the low bits. */
static cache_shard *cache_shard_of(cache *c, uint64_t text_hash)
{
    return &c->shards[(text_hash >> 40) & c->shard_mask].s;
}

static cache_atomic_u64 *cache_slot(cache *c, int64_t coll_id)
{
    return &c->slots[cache_mix((uint64_t)coll_id) % CACHE_NSLOTS];
}

static bool cache_group_is(const cache_group *g, const cache_key *k)
{
    return g->coll_id == k->coll_id && g->version == k->version && g->params_len == k->params_len &&
           (k->params_len == 0 || memcmp(g->params, k->params, k->params_len) == 0);
}

static cache_group *cache_find_group(cache_shard *s, uint64_t gh, const cache_key *k)
{
    for (cache_hnode *n = s->groups.b[gh & s->groups.mask]; n; n = n->next) {
        cache_group *g = (cache_group *)n;
        if (n->hash == gh && cache_group_is(g, k))
            return g;
    }
    return NULL;
}

static cache_entry *cache_find_exact(cache_shard *s, uint64_t th, const cache_key *k, const char *text, size_t len)
{
    for (cache_hnode *n = s->exact.b[th & s->exact.mask]; n; n = n->next) {
        cache_entry *e = (cache_entry *)n;
        if (n->hash == th && e->text_len == len && memcmp(e->text, text, len) == 0 && cache_group_is(e->g, k))
            return e;
    }
    return NULL;
}

static bool cache_expired(const cache *c, const cache_entry *e, double now)
{
    return now >= e->stored_ms + c->cfg.ttl_ms;
}

static void cache_update_tail(cache_shard *s)
{
    queue_node *t = s->lru.prev;
    uint64_t seq = t == &s->lru ? UINT64_MAX : queue_data(t, cache_entry, lru)->seq;
    atomic_store_explicit(&s->tail_seq, seq, memory_order_relaxed);
}

static void cache_count(cache_atomic_u64 *counter) { atomic_fetch_add_explicit(counter, 1, memory_order_relaxed); }

static void cache_account(cache *c, cache_shard *s, size_t bytes, bool add)
{
    if (add) {
        atomic_fetch_add_explicit(&s->bytes, bytes, memory_order_relaxed);
        atomic_fetch_add(&c->bytes, bytes);
    } else {
        atomic_fetch_sub_explicit(&s->bytes, bytes, memory_order_relaxed);
        atomic_fetch_sub(&c->bytes, bytes);
    }
}

/* Takes e out of every list of its shard and frees it (its value lives on while readers
 * hold it); frees its group when it was the last entry. Write lock held. */
static void cache_unlink(cache *c, cache_shard *s, cache_entry *e, cache_atomic_u64 *reason)
{
    cache_htab_remove(&s->exact, &e->hn);
    queue_remove(&e->lru);
    queue_remove(&e->age);
    queue_remove(&e->in_group);
    cache_group *g = e->g;
    if (--g->n == 0) {
        cache_htab_remove(&s->groups, &g->hn);
        cache_account(c, s, g->bytes, false);
        free(g);
    }
    cache_account(c, s, e->bytes, false);
    atomic_fetch_sub_explicit(&s->entries, 1, memory_order_relaxed);
    cache_update_tail(s);
    if (reason)
        cache_count(reason);
    cache_value_release(e->v);
    free(e);
}

/* Drops the shard's expired entries: a prefix of its store order. Write lock held. */
static void cache_drop_expired_locked(cache *c, cache_shard *s, double now)
{
    for (queue_node *n = queue_first(&s->age); n; n = queue_first(&s->age)) {
        cache_entry *e = queue_data(n, cache_entry, age);
        if (!cache_expired(c, e, now))
            break;
        cache_unlink(c, s, e, &s->expirations);
    }
}

static void cache_purge_shard(cache *c, cache_shard *s)
{
    pthread_rwlock_wrlock(&s->lock);
    cache_drop_expired_locked(c, s, c->clock.now_ms(c->clock.arg));
    pthread_rwlock_unlock(&s->lock);
}

void cache_purge_expired(cache *c)
{
    for (size_t i = 0; i <= c->shard_mask; i++)
        cache_purge_shard(c, &c->shards[i].s);
}

/* ---- normalisation ---- */

/* Unicode White_Space (PropList.txt). */
static bool cache_is_space(int32_t cp)
{
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

/* Where a normalisation is written: on the stack for short texts, else heap (freed by the
 * caller: free(nb.heap)). The union lets the ASCII path reuse the code point buffer. */
typedef struct {
    union {
        utf8proc_int32_t cps[CACHE_STACK_CPS + 1];
        char bytes[(CACHE_STACK_CPS + 1) * sizeof(utf8proc_int32_t)];
    } st;
    void *heap;
} cache_normbuf;

/* Normalises s[0..n) into nb; *out (NUL-terminated, *out_len bytes) points into nb. */
static ragd_err cache_norm_run(cache_normbuf *nb, const char *s, size_t n, const char **out, size_t *out_len)
{
    const unsigned char *p = (const unsigned char *)s;
    nb->heap = NULL;
    size_t i = 0;
    while (i < n && p[i] < 0x80)
        i++;
    if (i == n) {
        /* ASCII: case folding is lower-casing and NFC changes nothing — the general path
         * below gives the same bytes, only slower. */
        char *dst = nb->st.bytes;
        if (n >= sizeof nb->st.bytes) {
            dst = nb->heap = malloc(n + 1);
            if (!dst)
                return RAGD_ENOMEM;
        }
        size_t m = 0;
        bool space = false;
        for (i = 0; i < n; i++) {
            unsigned char ch = p[i];
            if (cache_is_space(ch)) {
                space = true;
                continue;
            }
            if (space && m)
                dst[m++] = ' ';
            space = false;
            dst[m++] = (char)(ch >= 'A' && ch <= 'Z' ? ch + 32 : ch);
        }
        dst[m] = '\0';
        *out = dst;
        *out_len = m;
        return RAGD_OK;
    }
    if (n > (size_t)1 << 30)
        return RAGD_ETOOBIG;
    utf8proc_int32_t *buf = nb->st.cps;
    utf8proc_ssize_t k = utf8proc_decompose_custom(p, (utf8proc_ssize_t)n, buf, CACHE_STACK_CPS, CACHE_NORM_OPTS,
                                                   NULL, NULL);
    if (k < 0)
        return RAGD_EINVAL; /* not valid UTF-8 (surrogates and overlongs included) */
    if (k > CACHE_STACK_CPS) {
        /* one slot more: utf8proc_reencode writes a NUL after its output, in place */
        buf = nb->heap = malloc(((size_t)k + 1) * sizeof *buf);
        if (!buf)
            return RAGD_ENOMEM;
        utf8proc_ssize_t k2 = utf8proc_decompose_custom(p, (utf8proc_ssize_t)n, buf, k, CACHE_NORM_OPTS, NULL, NULL);
        if (k2 < 0 || k2 > k)
            return RAGD_EINVAL;
        k = k2;
    }
    /* Whitespace collapsed before composition: no canonical composition involves a space. */
    utf8proc_ssize_t m = 0;
    bool space = false;
    for (utf8proc_ssize_t j = 0; j < k; j++) {
        if (cache_is_space(buf[j])) {
            space = true;
            continue;
        }
        if (space && m)
            buf[m++] = ' ';
        space = false;
        buf[m++] = buf[j];
    }
    utf8proc_ssize_t blen = utf8proc_reencode(buf, m, CACHE_NORM_OPTS);
    if (blen < 0)
        return RAGD_EINVAL;
    *out = (const char *)buf;
    *out_len = (size_t)blen;
    return RAGD_OK;
}

ragd_err cache_normalize(const char *text, size_t len, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (!text && len)
        return RAGD_EINVAL;
    cache_normbuf *nb = malloc(sizeof *nb);
    if (!nb)
        return RAGD_ENOMEM;
    const char *norm = NULL;
    size_t n = 0;
    ragd_err e = cache_norm_run(nb, text ? text : "", len, &norm, &n);
    if (e == RAGD_OK) {
        *out = malloc(n + 1);
        if (*out) {
            memcpy(*out, norm, n + 1);
            *out_len = n;
        } else {
            e = RAGD_ENOMEM;
        }
    }
    free(nb->heap);
    free(nb);
    return e;
}

/* ---- vectors ---- */

/* The L2 norm (in double), 0 for no or a zero vector; RAGD_EINVAL for a non-finite value. */
static ragd_err cache_norm_of(const float *v, size_t dim, double *norm)
{
    double ss = 0;
    for (size_t i = 0; i < dim; i++) {
        if (!isfinite(v[i]))
            return RAGD_EINVAL;
        ss += (double)v[i] * (double)v[i];
    }
    *norm = sqrt(ss);
    return RAGD_OK;
}

/* Dot product in float, 8 lanes (GCC/Clang vector extension; SSE2 or NEON), the way an
 * embedding scan is usually done: relative error ~1e-6 for a 1,000-dim embedding, exact
 * for small integer components (the tests' exact thresholds). */
typedef float cache_v4 __attribute__((vector_size(16)));

static double cache_dot(const float *a, const float *b, size_t n)
{
    cache_v4 s0 = {0, 0, 0, 0}, s1 = {0, 0, 0, 0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        cache_v4 a0, a1, b0, b1;
        memcpy(&a0, a + i, sizeof a0);
        memcpy(&a1, a + i + 4, sizeof a1);
        memcpy(&b0, b + i, sizeof b0);
        memcpy(&b1, b + i + 4, sizeof b1);
        s0 += a0 * b0;
        s1 += a1 * b1;
    }
    cache_v4 s = s0 + s1;
    float r = (s[0] + s[1]) + (s[2] + s[3]);
    for (; i < n; i++)
        r += a[i] * b[i];
    return (double)r;
}

/* ---- life cycle ---- */

void cache_config_default(cache_config *cfg)
{
    cfg->threshold = CACHE_DEFAULT_THRESHOLD;
    cfg->max_bytes = CACHE_DEFAULT_MAX_BYTES;
    cfg->ttl_ms = CACHE_DEFAULT_TTL_S * 1000.0;
    cfg->shards = 16;
    cfg->max_scan = 256;
}

void cache_config_from(const ragd_config *rc, cache_config *cfg)
{
    cache_config_default(cfg);
    cfg->threshold = rc->cache_threshold;
    cfg->max_bytes = rc->cache_max_bytes;
    cfg->ttl_ms = rc->cache_ttl_s * 1000.0;
}

ragd_err cache_new(const cache_config *cfg, upstream_clock clock, cache **out)
{
    *out = NULL;
    if (!cfg || !clock.now_ms || !(cfg->threshold > 0 && cfg->threshold <= 1) || cfg->max_bytes < CACHE_MIN_BYTES ||
        !(cfg->ttl_ms > 0) || cfg->shards < 1 || cfg->shards > CACHE_MAX_SHARDS ||
        (cfg->shards & (cfg->shards - 1)) != 0 || cfg->max_scan < 1)
        return RAGD_EINVAL;
    cache *c = calloc(1, sizeof *c);
    if (!c)
        return RAGD_ENOMEM;
    c->cfg = *cfg;
    c->clock = clock;
    c->shard_mask = cfg->shards - 1;
    c->scan_per_shard = cfg->max_scan / cfg->shards ? cfg->max_scan / cfg->shards : 1;
    c->max_entry = cfg->max_bytes / 4;
    if (hash_random_bytes(&c->seed, sizeof c->seed) != 0)
        c->seed = 0x2545f4914f6cdd1dULL; /* still correct, only predictable */
    c->raw = calloc(1, cfg->shards * sizeof(cache_shard_slot) + 63);
    if (!c->raw) {
        free(c);
        return RAGD_ENOMEM;
    }
    c->shards = (cache_shard_slot *)(((uintptr_t)c->raw + 63) & ~(uintptr_t)63);
    size_t made = 0;
    ragd_err e = RAGD_OK;
    for (; made < cfg->shards; made++) {
        cache_shard *s = &c->shards[made].s;
        pthread_rwlockattr_t attr;
        /* Writers first: a stream of lookups must not keep stores and invalidations out. */
        pthread_rwlockattr_init(&attr);
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        int rc = pthread_rwlock_init(&s->lock, &attr);
        pthread_rwlockattr_destroy(&attr);
        if (rc != 0) {
            e = RAGD_ENOMEM;
            break;
        }
        if (cache_htab_init(&s->exact) != RAGD_OK || cache_htab_init(&s->groups) != RAGD_OK) {
            free(s->exact.b);
            free(s->groups.b);
            pthread_rwlock_destroy(&s->lock);
            e = RAGD_ENOMEM;
            break;
        }
        queue_init(&s->lru);
        queue_init(&s->age);
        atomic_init(&s->tail_seq, UINT64_MAX);
    }
    if (e != RAGD_OK) {
        for (size_t i = 0; i < made; i++) {
            cache_shard *s = &c->shards[i].s;
            free(s->exact.b);
            free(s->groups.b);
            pthread_rwlock_destroy(&s->lock);
        }
        free(c->raw);
        free(c);
        return e;
    }
    *out = c;
    return RAGD_OK;
}

void cache_free(cache *c)
{
    if (!c)
        return;
    cache_clear(c);
    for (size_t i = 0; i <= c->shard_mask; i++) {
        cache_shard *s = &c->shards[i].s;
        free(s->exact.b);
        free(s->groups.b);
        pthread_rwlock_destroy(&s->lock);
    }
    free(c->raw);
    free(c);
}

/* ---- lookup ---- */

static ragd_err cache_check_args(const cache_key *key, const cache_query *q)
{
    if (!key || !q || (!key->params && key->params_len) || (!q->text && q->text_len) ||
        (!q->embedding && q->dim) || q->dim > CACHE_MAX_DIM)
        return RAGD_EINVAL;
    if (key->params_len > CACHE_MAX_PARAMS)
        return RAGD_ETOOBIG;
    return RAGD_OK;
}

static void cache_mark_used(cache_entry *e)
{
    /* Read first: a hot entry's line is not written on every hit. */
    if (!atomic_load_explicit(&e->ref, memory_order_relaxed))
        atomic_store_explicit(&e->ref, true, memory_order_relaxed);
}

/* The best cosine >= threshold among the newest scan_per_shard entries of the key in each
 * shard (read locks, one shard at a time). The best so far is held by reference, so a
 * shard dropping it meanwhile does no harm. */
static void cache_scan(cache *c, const cache_key *key, uint64_t gh, const cache_query *q, double qnorm, cache_hit *hit)
{
    double best = -INFINITY;
    double now = c->clock.now_ms(c->clock.arg);
    for (size_t i = 0; i <= c->shard_mask; i++) {
        cache_shard *s = &c->shards[i].s;
        bool expired = false;
        pthread_rwlock_rdlock(&s->lock);
        cache_group *g = cache_find_group(s, gh, key);
        size_t seen = 0;
        queue_node *n;
        if (g) {
            queue_foreach(n, &g->entries)
            {
                if (seen++ == c->scan_per_shard)
                    break;
                cache_entry *e = queue_data(n, cache_entry, in_group);
                if (cache_expired(c, e, now)) {
                    expired = true; /* the rest of the list is older still */
                    break;
                }
                if (e->norm == 0 || e->dim != q->dim)
                    continue;
                double cos = cache_dot(q->embedding, e->emb, q->dim) / (qnorm * e->norm);
                if (isfinite(cos) && cos >= c->cfg.threshold && cos > best) {
                    best = cos;
                    cache_value_release(hit->value);
                    hit->value = cache_value_retain(e->v);
                    cache_mark_used(e);
                }
            }
        }
        pthread_rwlock_unlock(&s->lock);
        if (expired)
            cache_purge_shard(c, s);
    }
    if (hit->value) {
        hit->exact = false;
        hit->similarity = best;
    }
}

ragd_err cache_lookup(cache *c, const cache_key *key, const cache_query *q, unsigned flags, cache_hit *hit)
{
    cache_normbuf nb;
    nb.heap = NULL;
    cache_shard *s = &c->shards[0].s; /* where a miss is counted before the shard is known */
    memset(hit, 0, sizeof *hit);
    double qnorm = 0;
    const char *text = NULL;
    size_t len = 0;
    ragd_err e = cache_check_args(key, q);
    if (e == RAGD_OK && q->dim)
        e = cache_norm_of(q->embedding, q->dim, &qnorm);
    if (e == RAGD_OK)
        e = cache_norm_run(&nb, q->text ? q->text : "", q->text_len, &text, &len);
    if (e != RAGD_OK)
        goto out;

    uint64_t gh = cache_key_hash(c, key), th = cache_text_hash(gh, text, len);
    s = cache_shard_of(c, th);
    bool expired = false;
    pthread_rwlock_rdlock(&s->lock);
    cache_entry *en = cache_find_exact(s, th, key, text, len);
    if (en && cache_expired(c, en, c->clock.now_ms(c->clock.arg))) {
        expired = true;
        en = NULL;
    }
    if (en) {
        hit->value = cache_value_retain(en->v);
        hit->exact = true;
        hit->similarity = 1;
        cache_mark_used(en);
    }
    pthread_rwlock_unlock(&s->lock);
    if (expired)
        cache_purge_shard(c, s);
    if (!hit->value && qnorm > 0)
        cache_scan(c, key, gh, q, qnorm, hit);
    if (hit->value) {
        cache_count(hit->exact ? &s->hits_exact : &s->hits_semantic);
        goto out;
    }
    e = RAGD_ENOTFOUND;
out:
    free(nb.heap);
    if (e != RAGD_OK && !(flags & CACHE_LOOKUP_NO_MISS_COUNT))
        cache_count(&s->misses);
    return e;
}

/* ---- store and eviction ---- */

uint64_t cache_ticket(const cache *c) { return atomic_load(&c->epoch); }

/* Evicts until the cache is within max_bytes: each round takes the shard whose LRU tail is
 * oldest (by the global stamp; read without locks, so approximate under concurrency) and,
 * under its write lock, drops an expired entry if it has one, else its LRU tail — unless
 * that was looked up since it was stamped: then it gets a second chance (restamped, moved
 * to the head; CLOCK), at most `entries` second chances per call so it always ends. */
static void cache_make_room(cache *c)
{
    size_t chances = 0, max_chances = 0;
    for (size_t i = 0; i <= c->shard_mask; i++)
        max_chances += atomic_load_explicit(&c->shards[i].s.entries, memory_order_relaxed);
    while (atomic_load(&c->bytes) > c->cfg.max_bytes) {
        cache_shard *s = NULL;
        uint64_t oldest = UINT64_MAX;
        for (size_t i = 0; i <= c->shard_mask; i++) {
            uint64_t t = atomic_load_explicit(&c->shards[i].s.tail_seq, memory_order_relaxed);
            if (t < oldest) {
                oldest = t;
                s = &c->shards[i].s;
            }
        }
        if (!s)
            break; /* nothing left to evict */
        pthread_rwlock_wrlock(&s->lock);
        queue_node *a = queue_first(&s->age);
        if (a && cache_expired(c, queue_data(a, cache_entry, age), c->clock.now_ms(c->clock.arg))) {
            cache_unlink(c, s, queue_data(a, cache_entry, age), &s->expirations);
        } else if (s->lru.prev != &s->lru) {
            cache_entry *e = queue_data(s->lru.prev, cache_entry, lru);
            if (atomic_load_explicit(&e->ref, memory_order_relaxed) && chances < max_chances) {
                chances++;
                atomic_store_explicit(&e->ref, false, memory_order_relaxed);
                e->seq = atomic_fetch_add(&c->seq, 1) + 1;
                queue_remove(&e->lru);
                queue_insert_head(&s->lru, &e->lru);
                cache_update_tail(s);
            } else {
                cache_unlink(c, s, e, &s->evictions);
            }
        }
        pthread_rwlock_unlock(&s->lock);
    }
}

ragd_err cache_store(cache *c, uint64_t ticket, const cache_key *key, const cache_query *q, const void *data,
                     size_t len, const void *meta, size_t meta_len)
{
    cache_normbuf nb;
    nb.heap = NULL;
    cache_value *v = NULL;
    cache_entry *en = NULL;
    cache_shard *s = &c->shards[0].s;
    double qnorm = 0;
    const char *text = NULL;
    size_t tlen = 0;
    ragd_err e = cache_check_args(key, q);
    if (e == RAGD_OK && ((!data && len) || (!meta && meta_len)))
        e = RAGD_EINVAL;
    if (e == RAGD_OK && q->dim)
        e = cache_norm_of(q->embedding, q->dim, &qnorm);
    if (e == RAGD_OK)
        e = cache_norm_run(&nb, q->text ? q->text : "", q->text_len, &text, &tlen);
    if (e != RAGD_OK)
        goto out;

    size_t dim = qnorm > 0 ? q->dim : 0;
    size_t gbytes = sizeof(cache_group) + key->params_len + 1;
    /* Each term is checked before the sum, so nothing overflows. */
    if (len > c->max_entry || meta_len > c->max_entry || tlen > c->max_entry) {
        e = RAGD_ETOOBIG;
        goto out;
    }
    size_t vbytes = sizeof(cache_value) + len + 1 + meta_len;
    size_t ebytes = sizeof(cache_entry) + dim * sizeof(float) + tlen + 1;
    if (vbytes + ebytes + gbytes > c->max_entry) {
        e = RAGD_ETOOBIG;
        goto out;
    }
    v = malloc(vbytes);
    en = malloc(ebytes);
    if (!v || !en) {
        e = RAGD_ENOMEM;
        goto out;
    }
    atomic_init(&v->refs, 1);
    v->len = len;
    v->meta_len = meta_len;
    if (len)
        memcpy(v->bytes, data, len);
    v->bytes[len] = '\0';
    if (meta_len)
        memcpy(v->bytes + len + 1, meta, meta_len);

    memset(en, 0, sizeof *en);
    en->v = v;
    en->norm = qnorm;
    en->dim = dim;
    en->bytes = vbytes + ebytes;
    en->emb = (float *)(en + 1);
    en->text = (char *)(en->emb + dim);
    en->text_len = tlen;
    if (dim)
        memcpy(en->emb, q->embedding, dim * sizeof(float));
    memcpy(en->text, text, tlen);
    en->text[tlen] = '\0';
    queue_node_init(&en->lru);
    queue_node_init(&en->age);
    queue_node_init(&en->in_group);
    atomic_init(&en->ref, false);

    uint64_t gh = cache_key_hash(c, key);
    en->hn.hash = cache_text_hash(gh, text, tlen);
    s = cache_shard_of(c, en->hn.hash);

    pthread_rwlock_wrlock(&s->lock);
    /* Under the shard lock: an invalidation bumps the slot before it sweeps this shard, so
     * either this sees the bump, or the sweep comes after this insert and drops it. */
    if (atomic_load(cache_slot(c, key->coll_id)) > ticket) {
        pthread_rwlock_unlock(&s->lock);
        e = RAGD_ECONFLICT;
        goto out;
    }
    cache_entry *old = cache_find_exact(s, en->hn.hash, key, text, tlen);
    cache_group *g = cache_find_group(s, gh, key);
    if (!g) {
        g = malloc(gbytes);
        if (!g) {
            pthread_rwlock_unlock(&s->lock);
            e = RAGD_ENOMEM;
            goto out;
        }
        memset(g, 0, sizeof *g);
        g->hn.hash = gh;
        queue_init(&g->entries);
        g->bytes = gbytes;
        g->coll_id = key->coll_id;
        g->version = key->version;
        g->params_len = key->params_len;
        if (key->params_len)
            memcpy(g->params, key->params, key->params_len);
        g->params[key->params_len] = '\0';
        cache_htab_insert(&s->groups, &g->hn);
        cache_account(c, s, gbytes, true);
    }
    en->g = g;
    en->stored_ms = c->clock.now_ms(c->clock.arg); /* under the lock: `age` stays sorted */
    en->seq = atomic_fetch_add(&c->seq, 1) + 1;
    cache_htab_insert(&s->exact, &en->hn);
    queue_insert_head(&s->lru, &en->lru);
    queue_insert_tail(&s->age, &en->age);
    queue_insert_head(&g->entries, &en->in_group);
    g->n++;
    atomic_fetch_add_explicit(&s->entries, 1, memory_order_relaxed);
    cache_account(c, s, en->bytes, true);
    cache_update_tail(s);
    /* Replaced only now: a store that fails leaves the old answer in place, and the group
     * (which the old entry may have been alone in) lives on with the new one. */
    if (old)
        cache_unlink(c, s, old, NULL);
    pthread_rwlock_unlock(&s->lock);
    en = NULL;
    v = NULL;
    cache_count(&s->stores);
    cache_make_room(c);
out:
    if (e == RAGD_ECONFLICT || e == RAGD_ETOOBIG)
        cache_count(&s->refused);
    free(en);
    free(v);
    free(nb.heap);
    return e;
}

/* ---- invalidation ---- */

/* Drops every entry of the groups that `pred` selects, in every shard. */
static void cache_sweep(cache *c, bool all, int64_t coll_id)
{
    for (size_t i = 0; i <= c->shard_mask; i++) {
        cache_shard *s = &c->shards[i].s;
        pthread_rwlock_wrlock(&s->lock);
        for (size_t b = 0; b <= s->groups.mask && s->groups.n; b++) {
            cache_hnode *n = s->groups.b[b];
            while (n) {
                cache_hnode *next = n->next; /* the group goes away with its last entry */
                cache_group *g = (cache_group *)n;
                if (all || g->coll_id == coll_id) {
                    size_t left = g->n;
                    while (left--)
                        cache_unlink(c, s, queue_data(queue_first(&g->entries), cache_entry, in_group),
                                     &s->invalidations);
                }
                n = next;
            }
        }
        pthread_rwlock_unlock(&s->lock);
    }
}

void cache_invalidate_collection(cache *c, int64_t coll_id)
{
    uint64_t epoch = atomic_fetch_add(&c->epoch, 1) + 1;
    cache_atomic_u64 *slot = cache_slot(c, coll_id);
    uint64_t cur = atomic_load(slot);
    while (cur < epoch && !atomic_compare_exchange_weak(slot, &cur, epoch))
        ;
    cache_sweep(c, false, coll_id);
}

void cache_clear(cache *c) { cache_sweep(c, true, 0); }

/* ---- stats ---- */

void cache_stats_get(const cache *c, cache_stats *out)
{
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i <= c->shard_mask; i++) {
        cache_shard *s = &c->shards[i].s;
        out->hits_exact += atomic_load_explicit(&s->hits_exact, memory_order_relaxed);
        out->hits_semantic += atomic_load_explicit(&s->hits_semantic, memory_order_relaxed);
        out->misses += atomic_load_explicit(&s->misses, memory_order_relaxed);
        out->stores += atomic_load_explicit(&s->stores, memory_order_relaxed);
        out->refused += atomic_load_explicit(&s->refused, memory_order_relaxed);
        out->evictions += atomic_load_explicit(&s->evictions, memory_order_relaxed);
        out->expirations += atomic_load_explicit(&s->expirations, memory_order_relaxed);
        out->invalidations += atomic_load_explicit(&s->invalidations, memory_order_relaxed);
        out->entries += atomic_load_explicit(&s->entries, memory_order_relaxed);
        out->bytes += atomic_load_explicit(&s->bytes, memory_order_relaxed);
    }
    out->hits = out->hits_exact + out->hits_semantic;
}
