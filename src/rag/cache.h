#ifndef RAGD_RAG_CACHE_H
#define RAGD_RAG_CACHE_H

/* The semantic answer cache (docs/internals/cache.md): answers reused for the same
 * collection version and query parameters when the query text is the same after
 * normalisation, or when its embedding is within a cosine threshold of a stored one.
 *
 * What the caller does, in order (the cache knows nothing of HTTP, JSON or the store):
 *   1. t = cache_ticket(c)                       before reading the collection or the index
 *   2. read the collection (id, version)         in the snapshot the retrieval will use
 *   3. cache_lookup(c, key, text, no embedding)  optional: an exact hit skips the embed call
 *   4. embed the query; cache_lookup(c, key, text + embedding)  exact, then semantic
 *   5. on a miss: answer; if the answer is not degraded, cache_store(c, t, key, ...)
 * and, from the store's commit path, cache_invalidate_collection(c, id) after any committed
 * change of a collection (ingest, document delete, re-embed, drop) is visible to readers.
 *
 * Degraded answers are never stored: the caller decides (the cache cannot tell).
 *
 * Thread safety: every function may be called from any thread, concurrently. Lookups take
 * a shard's read lock only; stores, evictions and invalidations take write locks of one
 * shard at a time. No callback is ever called. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "upstream/inject.h"
#include "util/err.h"

typedef struct cache cache;

/* A stored answer: immutable, reference-counted. A lookup hands out its own reference,
 * which stays valid (bytes unchanged) until cache_value_release, whatever the cache does
 * meanwhile (eviction, invalidation, cache_free). */
typedef struct cache_value cache_value;

typedef struct {
    double threshold;  /* (0, 1]: a semantic hit needs cosine >= threshold (RAGD_CACHE_THRESHOLD) */
    size_t max_bytes;  /* bound on the bytes held (RAGD_CACHE_MAX_BYTES); at least CACHE_MIN_BYTES */
    double ttl_ms;     /* > 0: an entry is served while now < stored + ttl_ms (RAGD_CACHE_TTL_S) */
    size_t shards;     /* a power of two from 1 to 256 (default 16) */
    size_t max_scan;   /* a semantic lookup compares at most this many stored embeddings of the
                        * key (default 256): max(1, max_scan / shards) newest per shard */
} cache_config;

#define CACHE_MIN_BYTES ((size_t)64 << 10)
#define CACHE_DEFAULT_MAX_BYTES ((size_t)64 << 20)
#define CACHE_DEFAULT_TTL_S 3600
#define CACHE_DEFAULT_THRESHOLD 0.95
/* Bound on a key's params string (cache_key.params_len). */
#define CACHE_MAX_PARAMS 65536

/* The defaults above: threshold 0.95, 64 MiB, one hour, 16 shards, 256 compared. */
void cache_config_default(cache_config *cfg);

/* The defaults with RAGD_CACHE_THRESHOLD, RAGD_CACHE_MAX_BYTES and RAGD_CACHE_TTL_S of rc
 * (config.c validated them). Whether to make a cache at all is rc->cache_enabled. */
void cache_config_from(const ragd_config *rc, cache_config *cfg);

/* Makes a cache. clock gives monotonic milliseconds from any thread (upstream/inject.h:
 * upstream_clock_system() in the server, a fake clock in tests). Returns RAGD_EINVAL for a
 * configuration outside the ranges above, RAGD_ENOMEM; *out is set only on RAGD_OK. */
ragd_err cache_new(const cache_config *cfg, upstream_clock clock, cache **out);

/* Frees the cache and its entries. Values still held by readers stay valid until
 * released. No other call may be running or follow. NULL is accepted. */
void cache_free(cache *c);

/* What an answer depends on besides the query. Two lookups can share an answer only if
 * all three fields are equal: coll_id and version as integers, params byte for byte.
 *
 * params is a canonical string the caller builds from every request field that changes
 * the answer — method, k, the filter (canonical JSON: sorted keys, compact), the
 * generator/provider, the model, the LLM options, rerank — and NOT from fields that only
 * change the presentation (stream). Canonical means: the same request gives the same
 * bytes. The cache compares it in full (a hash only picks the bucket), so no two different
 * params ever share an answer. params_len <= CACHE_MAX_PARAMS; params may hold any bytes. */
typedef struct {
    int64_t coll_id;    /* the collection's id (never reused: AUTOINCREMENT) */
    int64_t version;    /* its version, read before retrieval (cache_ticket comes first) */
    const char *params; /* NULL only with params_len 0 */
    size_t params_len;
} cache_key;

/* The query side of a lookup or a store. text is UTF-8 (not NUL-terminated: text_len
 * counts); it is normalised (cache_normalize). embedding may be NULL (dim 0): an exact
 * lookup only, or a stored entry that only exact lookups find. A zero vector counts as
 * none. The embedding need not be L2-normalised (the cosine divides by both norms); it
 * must be finite. */
typedef struct {
    const char *text;
    size_t text_len;
    const float *embedding;
    size_t dim;
} cache_query;

typedef struct {
    cache_value *value; /* the caller's reference: cache_value_release it */
    bool exact;         /* same normalised text (similarity 1) */
    double similarity;  /* the cosine of a semantic hit; 1 for an exact one */
} cache_hit;

/* cache_lookup flags */
#define CACHE_LOOKUP_NO_MISS_COUNT 1u /* a miss is not counted: this request will look up
                                       * again (with its embedding), and that one counts */

/* Looks the answer up: first the entry with the same key and the same normalised text
 * (O(1)); else, when q has an embedding, the entry of the same key whose embedding has
 * the highest cosine >= threshold among the key's newest max(1, max_scan / shards) entries
 * in each shard (O(max_scan * dim); entries of another dimension or without an embedding
 * skipped). Expired entries are never returned.
 * Returns RAGD_OK with *hit filled (a reference the caller releases), or RAGD_ENOTFOUND
 * (a miss; *hit zeroed), or RAGD_EINVAL (text not valid UTF-8, a non-finite embedding, a
 * NULL with a length), RAGD_ETOOBIG (params too long), RAGD_ENOMEM (a very long query
 * needs heap to normalise) — the caller treats every error as a miss. Every call that
 * does not return RAGD_OK counts one miss, unless flags has CACHE_LOOKUP_NO_MISS_COUNT. */
ragd_err cache_lookup(cache *c, const cache_key *key, const cache_query *q, unsigned flags, cache_hit *hit);

/* What cache_store compares to learn whether the collection changed while the answer was
 * being computed: take it before reading anything the answer depends on. */
uint64_t cache_ticket(const cache *c);

/* Stores an answer: data[0..len) (opaque: e.g. the response JSON without its per-request
 * fields) and meta[0..meta_len) (opaque, small: what a replay needs besides), both copied,
 * under key and q's normalised text and embedding, replacing an entry with the same key and
 * text. Then evicts least recently used entries (of the whole cache, approximately) until
 * the cache is within max_bytes. Returns RAGD_OK, or, with nothing stored:
 * RAGD_ECONFLICT   the key's collection was invalidated after `ticket` was taken (the
 *                  answer may predate the change);
 * RAGD_ETOOBIG     the entry would take more than max_bytes / 4, or params too long;
 * RAGD_EINVAL      text not valid UTF-8, a non-finite embedding, a NULL with a length;
 * RAGD_ENOMEM.
 * The caller never stores a degraded answer. */
ragd_err cache_store(cache *c, uint64_t ticket, const cache_key *key, const cache_query *q, const void *data,
                     size_t len, const void *meta, size_t meta_len);

/* Drops every entry of the collection (every version and params), and makes stores whose
 * ticket was taken before this call refuse that collection. Call it after a committed
 * change of the collection is visible to readers (store and vector index), and when the
 * collection is dropped. Takes each shard's write lock in turn: O(keys cached, over all
 * collections, + entries dropped). */
void cache_invalidate_collection(cache *c, int64_t coll_id);

/* Drops every entry (counted as invalidated). */
void cache_clear(cache *c);

/* Drops the entries whose TTL has passed. Optional: expired entries are never served, and
 * lookups and evictions remove those they meet; a periodic call returns their memory
 * sooner. O(number of expired entries + shards). */
void cache_purge_expired(cache *c);

/* The value's data: *len bytes, followed by a NUL that *len does not count. */
const void *cache_value_data(const cache_value *v, size_t *len);
/* The value's meta: *len bytes (NULL and 0 when none was stored). */
const void *cache_value_meta(const cache_value *v, size_t *len);
/* Another reference to v (e.g. to hand the value to another thread); returns v. */
cache_value *cache_value_retain(cache_value *v);
/* Gives a reference back; the last one frees the value. NULL is accepted. */
void cache_value_release(cache_value *v);

/* Counters since cache_new and the current size; totals over the shards, each read
 * atomically (not one snapshot of the whole cache). */
typedef struct {
    uint64_t hits;          /* hits_exact + hits_semantic */
    uint64_t hits_exact;
    uint64_t hits_semantic;
    uint64_t misses;        /* lookups that returned no value (errors too), as counted above */
    uint64_t stores;        /* entries stored (replacements included) */
    uint64_t refused;       /* stores refused: RAGD_ECONFLICT, RAGD_ETOOBIG */
    uint64_t evictions;     /* entries dropped to stay within max_bytes (LRU) */
    uint64_t expirations;   /* entries dropped because their TTL passed */
    uint64_t invalidations; /* entries dropped by cache_invalidate_collection, cache_clear */
    size_t entries;
    size_t bytes;           /* as counted against max_bytes */
} cache_stats;

void cache_stats_get(const cache *c, cache_stats *out);

/* The normal form used for exact matches, malloc'd into *out (NUL-terminated, *out_len
 * bytes; free it): canonical composition (NFC) with full Unicode case folding, every run of
 * Unicode White_Space turned into one space, leading and trailing ones removed. No
 * compatibility folding (NFKC) and no punctuation removal: "x²" and "x2", "C++" and "C"
 * stay different questions. Returns RAGD_EINVAL for text that is not valid UTF-8, or
 * RAGD_ENOMEM. The lookup itself normalises on the stack for queries up to ~1 KB. */
ragd_err cache_normalize(const char *text, size_t len, char **out, size_t *out_len);

#endif
