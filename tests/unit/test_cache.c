/* Unit tests for rag/cache: exact and semantic hits, normalisation, key isolation,
 * invalidation and its tickets, LRU by bytes, TTL, values outliving their entries,
 * allocation failures, and threads hammering one cache (make tsan). A fake clock and
 * seeded random sources: nothing sleeps.
 *
 * cache.c is compiled into this file (static functions are tested that way) with malloc and calloc redirected
 * to a counter that can fail the Nth allocation, and so that the tests can see its
 * internals (the invalidation slots). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

/* ---- allocation failure injection (before cache.c, whose headers are included above) ---- */

static atomic_long alloc_seen;     /* allocations counted since arming */
static atomic_long alloc_fail_at;  /* 0 = off; else fail the Nth (and later ones if persistent) */
static atomic_bool alloc_persistent;
static atomic_long alloc_failed;

static bool alloc_should_fail(void)
{
    long at = atomic_load_explicit(&alloc_fail_at, memory_order_relaxed);
    if (at == 0)
        return false;
    long n = atomic_fetch_add(&alloc_seen, 1) + 1;
    bool fail = n == at || (n > at && atomic_load(&alloc_persistent));
    if (fail)
        atomic_fetch_add(&alloc_failed, 1);
    return fail;
}

static void *fault_malloc(size_t n) { return alloc_should_fail() ? NULL : malloc(n); }
static void *fault_calloc(size_t n, size_t m) { return alloc_should_fail() ? NULL : calloc(n, m); }

#define malloc fault_malloc
#define calloc fault_calloc
#include "rag/cache.c"
#undef malloc
#undef calloc

static void alloc_arm(long at, bool persistent)
{
    atomic_store(&alloc_seen, 0);
    atomic_store(&alloc_failed, 0);
    atomic_store(&alloc_persistent, persistent);
    atomic_store(&alloc_fail_at, at);
}

static void alloc_disarm(void) { atomic_store(&alloc_fail_at, 0); }

/* ---- fakes and helpers ---- */

static double clk; /* milliseconds; only the main thread changes it */

static double fake_now(void *arg)
{
    (void)arg;
    return clk;
}

static upstream_clock test_clock(void) { return (upstream_clock){.now_ms = fake_now, .arg = NULL}; }

static uint64_t rnd_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static cache *make_cfg(double threshold, size_t max_bytes, double ttl_ms, size_t shards, size_t max_scan)
{
    cache_config cfg;
    cache_config_default(&cfg);
    cfg.threshold = threshold;
    cfg.max_bytes = max_bytes;
    cfg.ttl_ms = ttl_ms;
    cfg.shards = shards;
    cfg.max_scan = max_scan;
    cache *c = NULL;
    assert_int_equal(cache_new(&cfg, test_clock(), &c), RAGD_OK);
    assert_non_null(c);
    return c;
}

static cache *make(void) { return make_cfg(0.95, CACHE_DEFAULT_MAX_BYTES, 3600e3, 16, 256); }

/* A key as the query engine would build it: params is a canonical string of the fields
 * that change the answer. */
static cache_key key_of(int64_t coll, int64_t version, const char *params)
{
    return (cache_key){.coll_id = coll, .version = version, .params = params, .params_len = strlen(params)};
}

static cache_query text_q(const char *text) { return (cache_query){.text = text, .text_len = strlen(text)}; }

static cache_query emb_q(const char *text, const float *emb, size_t dim)
{
    return (cache_query){.text = text, .text_len = strlen(text), .embedding = emb, .dim = dim};
}

static const char P[] = "method=hybrid;k=5;filter={};provider=auto;model=llama3.2;options={};rerank=0";

static void put(cache *c, const cache_key *k, const cache_query *q, const char *data)
{
    assert_int_equal(cache_store(c, cache_ticket(c), k, q, data, strlen(data), NULL, 0), RAGD_OK);
}

/* Looks up and returns whether it hit; on a hit the data must be `want` (when given). */
static bool hits(cache *c, const cache_key *k, const cache_query *q, const char *want)
{
    cache_hit h;
    ragd_err e = cache_lookup(c, k, q, 0, &h);
    if (e != RAGD_OK) {
        assert_int_equal(e, RAGD_ENOTFOUND);
        assert_null(h.value);
        return false;
    }
    size_t len = 0;
    const char *d = cache_value_data(h.value, &len);
    if (want) {
        assert_int_equal(len, strlen(want));
        assert_string_equal(d, want);
    }
    cache_value_release(h.value);
    return true;
}

static char *norm(const char *s)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(cache_normalize(s, strlen(s), &out, &len), RAGD_OK);
    assert_int_equal(strlen(out), len);
    return out;
}

static void assert_norm(const char *in, const char *want)
{
    char *got = norm(in);
    assert_string_equal(got, want);
    free(got);
}

static int setup(void **state)
{
    (void)state;
    clk = 1000;
    alloc_disarm();
    return 0;
}

/* ---- tests ---- */

static void test_exact_hit(void **state)
{
    (void)state;
    cache *c = make();
    cache_key k = key_of(1, 7, P);
    cache_query q = text_q("What is WAL mode?");
    assert_false(hits(c, &k, &q, NULL));
    const char meta[] = {1, 0, 2}; /* opaque, with a NUL inside */
    const char *data = "{\"answer\":\"a\"}";
    assert_int_equal(cache_store(c, cache_ticket(c), &k, &q, data, strlen(data), meta, sizeof meta), RAGD_OK);

    cache_hit h;
    assert_int_equal(cache_lookup(c, &k, &q, 0, &h), RAGD_OK);
    assert_true(h.exact);
    assert_true(h.similarity == 1.0);
    size_t len = 0, mlen = 0;
    assert_string_equal(cache_value_data(h.value, &len), data);
    assert_int_equal(len, strlen(data));
    const char *m = cache_value_meta(h.value, &mlen);
    assert_int_equal(mlen, sizeof meta);
    assert_memory_equal(m, meta, sizeof meta);
    /* a second reference, as the loop would take to replay the answer */
    cache_value *again = cache_value_retain(h.value);
    cache_value_release(h.value);
    assert_string_equal(cache_value_data(again, &len), data);
    cache_value_release(again);
    cache_value_release(NULL);

    /* No meta: NULL and 0. Empty data is a valid answer too. */
    cache_query q2 = text_q("other");
    put(c, &k, &q2, "");
    assert_int_equal(cache_lookup(c, &k, &q2, 0, &h), RAGD_OK);
    assert_null(cache_value_meta(h.value, &mlen));
    assert_int_equal(mlen, 0);
    assert_string_equal(cache_value_data(h.value, &len), "");
    cache_value_release(h.value);

    /* Storing the same key and text again replaces the answer. */
    put(c, &k, &q, "second");
    assert_true(hits(c, &k, &q, "second"));

    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.hits, 3);
    assert_int_equal(st.hits_exact, 3);
    assert_int_equal(st.hits_semantic, 0);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.stores, 3);
    assert_int_equal(st.entries, 2);
    assert_true(st.bytes > 0);
    cache_free(c);
}

static void test_normalisation(void **state)
{
    (void)state;
    /* case and whitespace (ASCII fast path) */
    assert_norm("  What IS\tWAL\r\n\n mode?  ", "what is wal mode?");
    assert_norm("", "");
    assert_norm(" \t\n ", "");
    /* Unicode: full case folding, NFC, every White_Space code point */
    assert_norm("ÉCOLE", "école");
    assert_norm("E\xcc\x81" "cole", "école");                  /* decomposed É folds to composed é */
    assert_norm("Straße", "strasse");                          /* full folding */
    assert_norm("ΣΊΣΥΦΟΣ", "σίσυφοσ");
    assert_norm("a\xc2\xa0\xe3\x80\x80" "b\xe2\x80\xa8" "c\xc2\x85", "a b c"); /* NBSP, ideographic, LS, NEL */
    assert_norm("\xe2\x80\x89x\xe2\x80\x80y\xe2\x80\x8a", "x y");          /* thin, en quad, hair */
    assert_norm("x\xe2\x80\x8by", "x\xe2\x80\x8by"); /* U+200B is not White_Space: kept */
    /* the general path agrees with the ASCII one */
    assert_norm("  Hello   WORLD é ", "hello world é");
    /* what is deliberately not folded: compatibility forms, punctuation */
    assert_norm("ＡＢＣ", "ａｂｃ");
    char *a = norm("x²"), *b = norm("x2");
    assert_string_not_equal(a, b);
    free(a);
    free(b);
    a = norm("C++?");
    b = norm("C?");
    assert_string_not_equal(a, b);
    free(a);
    free(b);

    /* Long texts take the heap path, ASCII and not. */
    size_t n = 5000;
    char *s = malloc(n * 3 + 1), *want = malloc(n + 1);
    assert_non_null(s);
    assert_non_null(want);
    for (size_t i = 0; i < n; i++) {
        s[i] = i % 2 ? 'A' : ' '; /* " A A ... A" */
        want[i] = i % 2 ? ' ' : 'a';
    }
    s[n] = '\0';
    want[n - 1] = '\0'; /* "a a ... a" */
    assert_norm(s, want);
    for (size_t i = 0; i < n; i++)
        memcpy(s + i * 2, "\xc3\x89", 2); /* É x 5000 */
    s[n * 2] = '\0';
    char *got = norm(s);
    assert_int_equal(strlen(got), n * 2);
    for (size_t i = 0; i < n; i++)
        assert_memory_equal(got + i * 2, "\xc3\xa9", 2);
    free(got);
    free(s);
    free(want);

    /* Not UTF-8: refused, by lookups and stores too. */
    char *out = (char *)1;
    size_t len = 9;
    assert_int_equal(cache_normalize("ab\xff", 3, &out, &len), RAGD_EINVAL);
    assert_null(out);
    assert_int_equal(cache_normalize("\xed\xa0\x80", 3, &out, &len), RAGD_EINVAL); /* a surrogate */

    /* Lookups match across case, spacing and Unicode forms. */
    cache *c = make();
    cache_key k = key_of(1, 1, P);
    cache_query q = text_q("Qu'est-ce que l'ÉCOLE ?");
    put(c, &k, &q, "x");
    cache_query same[] = {text_q("  qu'est-ce   que l'école ? "), text_q("QU'EST-CE QUE L'E\xcc\x81" "COLE ?"),
                          text_q("qu'est-ce\xc2\xa0que\tl'école ?")};
    for (size_t i = 0; i < 3; i++)
        assert_true(hits(c, &k, &same[i], "x"));
    cache_query other = text_q("qu'est-ce que l'ecole ?"); /* no accent: another text */
    assert_false(hits(c, &k, &other, NULL));
    cache_query bad = text_q("\xc3");
    cache_hit h;
    assert_int_equal(cache_lookup(c, &k, &bad, 0, &h), RAGD_EINVAL);
    assert_null(h.value);
    assert_int_equal(cache_store(c, cache_ticket(c), &k, &bad, "x", 1, NULL, 0), RAGD_EINVAL);
    cache_free(c);
}

/* cos(q, e) = 19/20 exactly for q = (1,0,0,0,0), e = (19,5,3,2,1): |e| = 20 and every
 * partial result is a small integer, so the division is the correctly rounded 0.95. */
static const float E95[5] = {19, 5, 3, 2, 1};
static const float Q1[5] = {1, 0, 0, 0, 0};

static void test_semantic_threshold(void **state)
{
    (void)state;
    cache *c = make(); /* threshold 0.95 */
    cache_key k = key_of(1, 1, P);
    cache_query stored = emb_q("how do readers work during a write", E95, 5);
    put(c, &k, &stored, "A");

    /* cosine exactly t: a hit, reported as semantic with its similarity */
    cache_query q = emb_q("what happens to readers while writing", Q1, 5);
    cache_hit h;
    assert_int_equal(cache_lookup(c, &k, &q, 0, &h), RAGD_OK);
    assert_false(h.exact);
    assert_true(h.similarity == 0.95);
    assert_string_equal(cache_value_data(h.value, &(size_t){0}), "A");
    cache_value_release(h.value);

    /* just below t: q = (1, -0.001, 0, 0, 0) gives 18.995 / 20.00001 = 0.94974... */
    const float below[5] = {1, -0.001f, 0, 0, 0};
    cache_query qb = emb_q("what happens to readers while writing", below, 5);
    assert_false(hits(c, &k, &qb, NULL));
    /* The text alone (no embedding) never hits semantically. */
    cache_query qt = text_q("what happens to readers while writing");
    assert_false(hits(c, &k, &qt, NULL));
    cache_free(c);

    /* t one ulp above the cosine: a miss. */
    c = make_cfg(nextafter(0.95, 1.0), CACHE_DEFAULT_MAX_BYTES, 3600e3, 16, 256);
    put(c, &k, &stored, "A");
    assert_false(hits(c, &k, &q, NULL));
    cache_free(c);

    /* t = 1: only the same direction (any length) hits. */
    c = make_cfg(1.0, CACHE_DEFAULT_MAX_BYTES, 3600e3, 16, 256);
    const float e[2] = {2, 0}, same_dir[2] = {0.5f, 0}, near[2] = {1, 0.001f};
    cache_query s1 = emb_q("one", e, 2), q1 = emb_q("two", same_dir, 2), q2 = emb_q("three", near, 2);
    put(c, &k, &s1, "D");
    assert_true(hits(c, &k, &q1, "D"));
    assert_false(hits(c, &k, &q2, NULL));
    cache_free(c);

    /* Several above t: the most similar wins. Other dimensions and zero vectors never match. */
    c = make_cfg(0.5, CACHE_DEFAULT_MAX_BYTES, 3600e3, 16, 256);
    const float a[2] = {1, 1}, b[2] = {1, 0.2f}, zero[2] = {0, 0}, d3[3] = {1, 0, 0};
    cache_query sa = emb_q("a", a, 2), sb = emb_q("b", b, 2), sz = emb_q("z", zero, 2), s3 = emb_q("three dims", d3, 3);
    put(c, &k, &sa, "A");
    put(c, &k, &sb, "B");
    put(c, &k, &sz, "Z");
    cache_query qq = emb_q("query", Q1, 2);
    assert_true(hits(c, &k, &qq, "B"));
    put(c, &k, &s3, "3");
    cache_query q3 = emb_q("query", d3, 3);
    assert_true(hits(c, &k, &q3, "3"));
    cache_query q4 = emb_q("query", E95, 4);
    assert_false(hits(c, &k, &q4, NULL));
    cache_query qz = emb_q("query", zero, 2);
    assert_false(hits(c, &k, &qz, NULL));
    cache_query zexact = emb_q("z", zero, 2); /* a zero-vector entry still matches exactly */
    assert_true(hits(c, &k, &zexact, "Z"));

    /* Non-finite embeddings are refused. */
    const float nan_v[2] = {NAN, 1}, inf_v[2] = {INFINITY, 0};
    cache_query qn = emb_q("n", nan_v, 2), qi = emb_q("i", inf_v, 2);
    assert_int_equal(cache_lookup(c, &k, &qn, 0, &h), RAGD_EINVAL);
    assert_int_equal(cache_store(c, cache_ticket(c), &k, &qi, "x", 1, NULL, 0), RAGD_EINVAL);
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.hits_semantic, 2);
    assert_int_equal(st.hits_exact, 1);
    cache_free(c);
}

/* The scan is bounded: the newest max_scan / shards entries of the key per shard. */
static void test_scan_bound(void **state)
{
    (void)state;
    cache *c = make_cfg(0.95, CACHE_DEFAULT_MAX_BYTES, 3600e3, 1, 2);
    cache_key k = key_of(1, 1, P);
    const float x[2] = {1, 0}, y[2] = {0, 1};
    cache_query old = emb_q("old", x, 2), n1 = emb_q("new one", y, 2), n2 = emb_q("new two", y, 2);
    put(c, &k, &old, "old");
    cache_query q = emb_q("query", x, 2);
    assert_true(hits(c, &k, &q, "old"));
    put(c, &k, &n1, "n1");
    assert_true(hits(c, &k, &q, "old"));
    put(c, &k, &n2, "n2");
    assert_false(hits(c, &k, &q, NULL)); /* "old" is third newest: not compared */
    assert_true(hits(c, &k, &old, "old")); /* exact lookups are not bounded */
    cache_free(c);
}

static void test_keys_isolated(void **state)
{
    (void)state;
    cache *c = make();
    cache_key k = key_of(1, 3, "method=hybrid;k=5;filter={};provider=auto;model=llama3.2");
    cache_query q = emb_q("How does WAL work?", E95, 5);
    put(c, &k, &q, "base");
    assert_true(hits(c, &k, &q, "base"));

    const char *other_params[] = {
        "method=vector;k=5;filter={};provider=auto;model=llama3.2",
        "method=hybrid;k=50;filter={};provider=auto;model=llama3.2",
        "method=hybrid;k=5;filter={\"topic\":\"db\"};provider=auto;model=llama3.2",
        "method=hybrid;k=5;filter={};provider=ollama;model=llama3.2",
        "method=hybrid;k=5;filter={};provider=auto;model=mistral",
        "method=hybrid;k=5;filter={};provider=auto;model=llama3.2;", /* a prefix is not equal */
        "method=hybrid;k=5;filter={};provider=auto;model=llama3",
        "",
    };
    for (size_t i = 0; i < sizeof other_params / sizeof *other_params; i++) {
        cache_key o = key_of(1, 3, other_params[i]);
        assert_false(hits(c, &o, &q, NULL));
    }
    cache_key v = key_of(1, 4, k.params), w = key_of(2, 3, k.params);
    assert_false(hits(c, &v, &q, NULL));
    assert_false(hits(c, &w, &q, NULL));
    /* Semantic lookups stay within the key too. */
    cache_query sem = emb_q("something else", Q1, 5);
    assert_true(hits(c, &k, &sem, "base"));
    assert_false(hits(c, &v, &sem, NULL));

    /* The comparison itself, field by field (the hashes above already differ). */
    cache_key g_key = key_of(1, 3, "k=5");
    union {
        cache_group g;
        char room[sizeof(cache_group) + 8];
    } gbuf;
    memset(&gbuf, 0, sizeof gbuf);
    gbuf.g.coll_id = 1;
    gbuf.g.version = 3;
    gbuf.g.params_len = 3;
    memcpy(gbuf.g.params, "k=5", 3);
    assert_true(cache_group_is(&gbuf.g, &g_key));
    cache_key g_other[] = {key_of(2, 3, "k=5"), key_of(1, 4, "k=5"), key_of(1, 3, "k=6"), key_of(1, 3, "k=50")};
    for (size_t i = 0; i < 4; i++)
        assert_false(cache_group_is(&gbuf.g, &g_other[i]));

    /* params are bytes: a NUL inside counts; too long is refused. */
    cache_key z1 = {.coll_id = 1, .version = 3, .params = "a\0b", .params_len = 3};
    cache_key z2 = {.coll_id = 1, .version = 3, .params = "a\0c", .params_len = 3};
    put(c, &z1, &q, "z1");
    assert_true(hits(c, &z1, &q, "z1"));
    assert_false(hits(c, &z2, &q, NULL));
    char *big = calloc(1, CACHE_MAX_PARAMS + 1);
    assert_non_null(big);
    cache_key kb = {.coll_id = 1, .version = 3, .params = big, .params_len = CACHE_MAX_PARAMS + 1};
    cache_hit h;
    assert_int_equal(cache_lookup(c, &kb, &q, 0, &h), RAGD_ETOOBIG);
    assert_int_equal(cache_store(c, cache_ticket(c), &kb, &q, "x", 1, NULL, 0), RAGD_ETOOBIG);
    kb.params_len = CACHE_MAX_PARAMS;
    put(c, &kb, &q, "big");
    assert_true(hits(c, &kb, &q, "big"));
    free(big);
    cache_free(c);
}

/* Two collection ids whose invalidation slots differ (a shared slot only refuses safe
 * stores, but this test wants to see the other collection unaffected). */
static int64_t other_coll(cache *c, int64_t coll)
{
    int64_t o = coll + 1;
    while (cache_slot(c, o) == cache_slot(c, coll))
        o++;
    return o;
}

static void test_invalidation(void **state)
{
    (void)state;
    cache *c = make();
    int64_t c1 = 1, c2 = other_coll(c, c1);
    cache_key k1 = key_of(c1, 5, P), k1b = key_of(c1, 5, "other params"), k2 = key_of(c2, 5, P);
    cache_query q = emb_q("How does WAL work?", E95, 5), q2 = text_q("second question");
    put(c, &k1, &q, "one");
    put(c, &k1, &q2, "one-b");
    put(c, &k1b, &q, "one-c");
    put(c, &k2, &q, "two");

    uint64_t before = cache_ticket(c);
    cache_invalidate_collection(c, c1);
    uint64_t after = cache_ticket(c);
    assert_true(after > before);
    assert_false(hits(c, &k1, &q, NULL));
    assert_false(hits(c, &k1, &q2, NULL));
    assert_false(hits(c, &k1b, &q, NULL));
    cache_query sem = emb_q("other words", Q1, 5);
    assert_false(hits(c, &k1, &sem, NULL));
    assert_true(hits(c, &k2, &q, "two"));
    assert_true(hits(c, &k2, &sem, "two"));
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.invalidations, 3);
    assert_int_equal(st.entries, 1);

    /* An answer computed across the change (ticket taken before it) is refused; one
     * computed after is stored; the other collection is not affected. */
    assert_int_equal(cache_store(c, before, &k1, &q, "stale", 5, NULL, 0), RAGD_ECONFLICT);
    assert_false(hits(c, &k1, &q, NULL));
    assert_int_equal(cache_store(c, before, &k2, &q2, "fine", 4, NULL, 0), RAGD_OK);
    assert_int_equal(cache_store(c, after, &k1, &q, "fresh", 5, NULL, 0), RAGD_OK);
    assert_true(hits(c, &k1, &q, "fresh"));
    cache_stats_get(c, &st);
    assert_int_equal(st.refused, 1);

    /* Invalidating a collection with nothing cached is harmless; clear drops all. */
    cache_invalidate_collection(c, 999);
    assert_true(hits(c, &k1, &q, "fresh"));
    cache_clear(c);
    assert_false(hits(c, &k1, &q, NULL));
    assert_false(hits(c, &k2, &q, NULL));
    cache_stats_get(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.invalidations, 6);
    cache_free(c);
}

/* Peeks at an entry without marking it used (the LRU test must not disturb the order). */
static bool present(cache *c, const cache_key *k, const char *text)
{
    cache_normbuf nb;
    const char *t = NULL;
    size_t len = 0;
    assert_int_equal(cache_norm_run(&nb, text, strlen(text), &t, &len), RAGD_OK);
    uint64_t th = cache_text_hash(cache_key_hash(c, k), t, len);
    bool found = cache_find_exact(cache_shard_of(c, th), th, k, t, len) != NULL;
    free(nb.heap);
    return found;
}

static void test_lru_by_bytes(void **state)
{
    (void)state;
    /* 64 KiB, entries of ~12 KB (under the 16 KiB per-entry cap): five fit, not six. */
    cache *c = make_cfg(0.95, CACHE_MIN_BYTES, 3600e3, 16, 256);
    cache_key k = key_of(1, 1, P);
    static char big[12000];
    memset(big, 'x', sizeof big - 1);
    const char *names[] = {"q0", "q1", "q2", "q3", "q4", "q5", "q6"};
    for (int i = 0; i < 5; i++) {
        cache_query q = text_q(names[i]);
        put(c, &k, &q, big);
    }
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.entries, 5);
    assert_int_equal(st.evictions, 0);
    assert_true(st.bytes <= CACHE_MIN_BYTES);

    cache_query q0 = text_q("q0");
    assert_true(hits(c, &k, &q0, NULL)); /* q0 is used: q1 is now the least recently used */

    cache_query q5 = text_q("q5");
    put(c, &k, &q5, big);
    cache_stats_get(c, &st);
    assert_int_equal(st.evictions, 1);
    assert_true(st.bytes <= CACHE_MIN_BYTES);
    assert_true(present(c, &k, "q0"));
    assert_false(present(c, &k, "q1"));
    for (int i = 2; i <= 5; i++)
        assert_true(present(c, &k, names[i]));

    cache_query q6 = text_q("q6");
    put(c, &k, &q6, big);
    cache_stats_get(c, &st);
    assert_int_equal(st.evictions, 2);
    assert_false(present(c, &k, "q2")); /* then q2, the oldest unused */
    assert_true(present(c, &k, "q0"));
    for (int i = 3; i <= 6; i++)
        assert_true(present(c, &k, names[i]));
    assert_int_equal(st.entries, 5);
    assert_true(st.bytes <= CACHE_MIN_BYTES);

    /* An entry over max_bytes / 4 is refused, and nothing is evicted for it. */
    static char huge[CACHE_MIN_BYTES / 4 + 1];
    memset(huge, 'y', sizeof huge);
    cache_query qh = text_q("huge");
    assert_int_equal(cache_store(c, cache_ticket(c), &k, &qh, huge, sizeof huge, NULL, 0), RAGD_ETOOBIG);
    cache_stats_get(c, &st);
    assert_int_equal(st.entries, 5);
    assert_int_equal(st.refused, 1);
    cache_free(c);
}

static void test_ttl(void **state)
{
    (void)state;
    cache *c = make_cfg(0.95, CACHE_DEFAULT_MAX_BYTES, 1000, 16, 256);
    cache_key k = key_of(1, 1, P);
    cache_query q = emb_q("question", E95, 5), sem = emb_q("near", Q1, 5);
    clk = 5000;
    put(c, &k, &q, "A");
    clk = 5999.999;
    assert_true(hits(c, &k, &q, "A"));
    assert_true(hits(c, &k, &sem, "A"));
    clk = 6000; /* stored + ttl: expired, by either path (the semantic one first) */
    assert_false(hits(c, &k, &sem, NULL));
    assert_false(hits(c, &k, &q, NULL));
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.expirations, 1); /* the lookup dropped it */
    assert_int_equal(st.entries, 0);

    /* A hit does not extend the TTL; re-storing does. */
    put(c, &k, &q, "B");
    clk = 6500;
    assert_true(hits(c, &k, &q, "B"));
    clk = 7000;
    assert_false(hits(c, &k, &q, NULL));
    put(c, &k, &q, "C");
    clk = 7999;
    assert_true(hits(c, &k, &q, "C"));

    /* cache_purge_expired drops what nobody looked up. */
    for (int i = 0; i < 20; i++) {
        char t[16];
        snprintf(t, sizeof t, "t%d", i);
        cache_query qi = text_q(t);
        put(c, &k, &qi, "x");
    }
    cache_stats_get(c, &st);
    assert_int_equal(st.entries, 21);
    clk = 8999.5;
    cache_purge_expired(c);
    cache_stats_get(c, &st);
    assert_int_equal(st.entries, 0);
    assert_int_equal(st.bytes, 0);
    assert_int_equal(st.expirations, 23);
    cache_free(c);
}

static void test_value_outlives_entry(void **state)
{
    (void)state;
    cache *c = make_cfg(0.95, CACHE_MIN_BYTES, 3600e3, 4, 256);
    cache_key k = key_of(1, 1, P);
    cache_query q = text_q("held");
    static char big[12000];
    memset(big, 'h', sizeof big - 1);
    put(c, &k, &q, big);
    cache_hit h1, h2, h3;
    assert_int_equal(cache_lookup(c, &k, &q, 0, &h1), RAGD_OK);

    /* Evicted by size: more entries than fit, none looked up. */
    for (int i = 0; i < 10; i++) {
        char t[16];
        snprintf(t, sizeof t, "fill%d", i);
        cache_query qi = text_q(t);
        put(c, &k, &qi, big);
    }
    assert_false(present(c, &k, "held"));
    size_t len = 0;
    assert_int_equal(strlen(cache_value_data(h1.value, &len)), sizeof big - 1);

    /* Replaced, invalidated, and the whole cache freed while held. */
    put(c, &k, &q, "v2");
    assert_int_equal(cache_lookup(c, &k, &q, 0, &h2), RAGD_OK);
    put(c, &k, &q, "v3");
    assert_int_equal(cache_lookup(c, &k, &q, 0, &h3), RAGD_OK);
    cache_invalidate_collection(c, 1);
    cache_free(c);
    assert_string_equal(cache_value_data(h2.value, &len), "v2");
    assert_string_equal(cache_value_data(h3.value, &len), "v3");
    assert_int_equal(big[0], ((const char *)cache_value_data(h1.value, &len))[0]);
    cache_value_release(h1.value);
    cache_value_release(h2.value);
    cache_value_release(h3.value);
}

static void test_miss_count_flag(void **state)
{
    (void)state;
    cache *c = make();
    cache_key k = key_of(1, 1, P);
    cache_query text = text_q("q"), full = emb_q("q", E95, 5);
    cache_hit h;
    /* A request's first look (text only) does not count its miss; the second one does. */
    assert_int_equal(cache_lookup(c, &k, &text, CACHE_LOOKUP_NO_MISS_COUNT, &h), RAGD_ENOTFOUND);
    assert_int_equal(cache_lookup(c, &k, &full, 0, &h), RAGD_ENOTFOUND);
    put(c, &k, &full, "a");
    assert_int_equal(cache_lookup(c, &k, &text, CACHE_LOOKUP_NO_MISS_COUNT, &h), RAGD_OK);
    cache_value_release(h.value);
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.hits, 1);
    cache_free(c);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    cache_config cfg;
    cache *c = (cache *)1;
    const struct {
        double threshold;
        size_t max_bytes;
        double ttl_ms;
        size_t shards, max_scan;
    } bad[] = {
        {0, CACHE_DEFAULT_MAX_BYTES, 1000, 16, 256},    {1.0001, CACHE_DEFAULT_MAX_BYTES, 1000, 16, 256},
        {NAN, CACHE_DEFAULT_MAX_BYTES, 1000, 16, 256},  {-0.5, CACHE_DEFAULT_MAX_BYTES, 1000, 16, 256},
        {0.9, CACHE_MIN_BYTES - 1, 1000, 16, 256},      {0.9, CACHE_DEFAULT_MAX_BYTES, 0, 16, 256},
        {0.9, CACHE_DEFAULT_MAX_BYTES, NAN, 16, 256},   {0.9, CACHE_DEFAULT_MAX_BYTES, 1000, 0, 256},
        {0.9, CACHE_DEFAULT_MAX_BYTES, 1000, 12, 256},  {0.9, CACHE_DEFAULT_MAX_BYTES, 1000, 512, 256},
        {0.9, CACHE_DEFAULT_MAX_BYTES, 1000, 16, 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cache_config_default(&cfg);
        cfg.threshold = bad[i].threshold;
        cfg.max_bytes = bad[i].max_bytes;
        cfg.ttl_ms = bad[i].ttl_ms;
        cfg.shards = bad[i].shards;
        cfg.max_scan = bad[i].max_scan;
        assert_int_equal(cache_new(&cfg, test_clock(), &c), RAGD_EINVAL);
        assert_null(c);
        c = (cache *)1;
    }
    cache_config_default(&cfg);
    assert_int_equal(cache_new(&cfg, (upstream_clock){0}, &c), RAGD_EINVAL);
    cache_free(NULL);

    c = make();
    cache_key k = key_of(1, 1, P);
    cache_query q = text_q("q");
    cache_hit h;
    cache_key nullp = {.coll_id = 1, .params = NULL, .params_len = 3};
    cache_query nullt = {.text = NULL, .text_len = 2}, nulle = {.text = "q", .text_len = 1, .dim = 4};
    assert_int_equal(cache_lookup(c, &nullp, &q, 0, &h), RAGD_EINVAL);
    assert_int_equal(cache_lookup(c, &k, &nullt, 0, &h), RAGD_EINVAL);
    assert_int_equal(cache_lookup(c, &k, &nulle, 0, &h), RAGD_EINVAL);
    assert_int_equal(cache_lookup(c, NULL, &q, 0, &h), RAGD_EINVAL);
    assert_int_equal(cache_store(c, cache_ticket(c), &k, &q, NULL, 3, NULL, 0), RAGD_EINVAL);
    assert_int_equal(cache_store(c, cache_ticket(c), &k, &q, "x", 1, NULL, 3), RAGD_EINVAL);
    cache_key empty = {.coll_id = 1, .params = NULL, .params_len = 0};
    cache_query none = {.text = NULL, .text_len = 0};
    assert_int_equal(cache_store(c, cache_ticket(c), &empty, &none, "e", 1, NULL, 0), RAGD_OK);
    assert_true(hits(c, &empty, &none, "e"));
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.misses, 4); /* errors count as misses */
    cache_free(c);
}

/* Every allocation of cache_new, cache_store (new key, long text), cache_lookup (long text)
 * and cache_normalize failed in turn, once and from then on: the call says RAGD_ENOMEM,
 * leaves the cache as it was, and leaks nothing (ASan). */
static void test_allocation_failures(void **state)
{
    (void)state;
    cache_config cfg;
    cache_config_default(&cfg);
    for (int persistent = 0; persistent < 2; persistent++) {
        for (long n = 1;; n++) {
            cache *c = NULL;
            alloc_arm(n, persistent);
            ragd_err e = cache_new(&cfg, test_clock(), &c);
            alloc_disarm();
            if (atomic_load(&alloc_failed) == 0) {
                assert_int_equal(e, RAGD_OK);
                assert_true(n > 30); /* the cache, its shards, 16 x 2 tables */
                cache_free(c);
                break;
            }
            assert_int_equal(e, RAGD_ENOMEM);
            assert_null(c);
        }
    }

    /* A long non-ASCII text needs the heap to normalise. */
    size_t n = 3000;
    char *longq = malloc(n * 2 + 1);
    assert_non_null(longq);
    for (size_t i = 0; i < n; i++)
        memcpy(longq + i * 2, "\xc3\x89", 2);
    longq[n * 2] = '\0';
    cache_query queries[] = {emb_q("short", E95, 5), emb_q(longq, E95, 5)};
    for (int persistent = 0; persistent < 2; persistent++) {
        for (size_t qi = 0; qi < 2; qi++) {
            cache *c = make();
            cache_key k = key_of(1, 1, P);
            cache_query warm = text_q("warm");
            put(c, &k, &warm, "w");
            cache_key fresh = key_of(2, 1, P); /* a new key: the store allocates its group too */
            for (long at = 1;; at++) {
                cache_stats before, after;
                cache_stats_get(c, &before);
                alloc_arm(at, persistent);
                ragd_err e = cache_store(c, cache_ticket(c), &fresh, &queries[qi], "answer", 6, "m", 1);
                alloc_disarm();
                cache_stats_get(c, &after);
                if (atomic_load(&alloc_failed) == 0) {
                    assert_int_equal(e, RAGD_OK);
                    assert_int_equal(after.entries, before.entries + 1);
                    assert_true(at > (qi ? 4 : 3)); /* (text,) value, entry, group failed */
                    break;
                }
                assert_int_equal(e, RAGD_ENOMEM);
                assert_int_equal(after.entries, before.entries);
                assert_int_equal(after.bytes, before.bytes);
                assert_false(hits(c, &fresh, &queries[qi], NULL));
            }
            for (long at = 1;; at++) {
                cache_hit h;
                alloc_arm(at, persistent);
                ragd_err e = cache_lookup(c, &fresh, &queries[qi], 0, &h);
                alloc_disarm();
                if (atomic_load(&alloc_failed) == 0) {
                    assert_int_equal(e, RAGD_OK);
                    cache_value_release(h.value);
                    break;
                }
                assert_int_equal(e, RAGD_ENOMEM);
                assert_null(h.value);
            }
            for (long at = 1;; at++) {
                char *out = NULL;
                size_t len = 0;
                alloc_arm(at, persistent);
                ragd_err e = cache_normalize(queries[qi].text, queries[qi].text_len, &out, &len);
                alloc_disarm();
                if (atomic_load(&alloc_failed) == 0) {
                    assert_int_equal(e, RAGD_OK);
                    free(out);
                    break;
                }
                assert_int_equal(e, RAGD_ENOMEM);
                assert_null(out);
            }
            /* A replacement that fails leaves the old answer. */
            for (long at = 1;; at++) {
                alloc_arm(at, persistent);
                ragd_err e = cache_store(c, cache_ticket(c), &k, &warm, "new", 3, NULL, 0);
                alloc_disarm();
                if (atomic_load(&alloc_failed) == 0) {
                    assert_int_equal(e, RAGD_OK);
                    break;
                }
                assert_int_equal(e, RAGD_ENOMEM);
                assert_true(hits(c, &k, &warm, "w"));
            }
            assert_true(hits(c, &k, &warm, "new"));
            cache_free(c);
        }
    }
    free(longq);

    /* The hash tables cannot grow: stores still work, on longer chains. */
    cache *c = make_cfg(0.95, CACHE_DEFAULT_MAX_BYTES, 3600e3, 1, 256);
    cache_key k = key_of(1, 1, P);
    cache_query q0 = text_q("g0");
    put(c, &k, &q0, "x"); /* makes the key's group */
    for (int i = 1; i < 300; i++) {
        char t[16];
        snprintf(t, sizeof t, "g%d", i);
        cache_query qi = text_q(t);
        /* fail the table growth when it comes (value and entry allocations come first) */
        alloc_arm(3, false);
        ragd_err e = cache_store(c, cache_ticket(c), &k, &qi, "x", 1, NULL, 0);
        alloc_disarm();
        assert_int_equal(e, RAGD_OK);
    }
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.entries, 300);
    assert_int_equal(c->shards[0].s.exact.mask + 1, CACHE_HTAB_MIN);
    for (int i = 0; i < 300; i++) {
        char t[16];
        snprintf(t, sizeof t, "g%d", i);
        cache_query qi = text_q(t);
        assert_true(hits(c, &k, &qi, "x"));
    }
    cache_free(c);
}

/* ---- threads ---- */

#define HAMMER_THREADS 4
#define HAMMER_OPS 20000
#define HAMMER_COLLS 3
#define HAMMER_TEXTS 64

typedef struct {
    cache *c;
    uint64_t seed;
    long lookups, bad;
} hammer;

/* The answer names its key and text, so a reader can check it got an answer of its key. */
static void hammer_answer(char *buf, size_t len, int64_t coll, int64_t version, int p, int t)
{
    snprintf(buf, len, "c%lld v%lld p%d t%d", (long long)coll, (long long)version, p, t);
}

static void *hammer_main(void *arg)
{
    hammer *h = arg;
    static const char *const params[] = {"k=5", "k=6"};
    for (int i = 0; i < HAMMER_OPS; i++) {
        uint64_t r = rnd_next(&h->seed);
        int64_t coll = (int64_t)(r % HAMMER_COLLS) + 1, version = (int64_t)((r >> 8) % 2);
        int p = (int)((r >> 16) % 2), t = (int)((r >> 24) % HAMMER_TEXTS);
        char text[32], want[64];
        snprintf(text, sizeof text, "Question %d", t);
        float emb[8];
        for (int d = 0; d < 8; d++)
            emb[d] = (float)((t * 7 + d * 3) % 11) + (d == t % 8 ? 5.0f : 0.0f);
        cache_key k = key_of(coll, version, params[p]);
        cache_query q = emb_q(text, emb, 8);
        unsigned op = (unsigned)((r >> 32) % 100);
        if (op < 60) {
            cache_hit hit;
            h->lookups++;
            if (cache_lookup(h->c, &k, &q, 0, &hit) == RAGD_OK) {
                size_t len = 0;
                const char *d = cache_value_data(hit.value, &len);
                /* the answer is of this key (a semantic hit may be of another text) */
                char prefix[48];
                snprintf(prefix, sizeof prefix, "c%lld v%lld p%d t", (long long)coll, (long long)version, p);
                if (strncmp(d, prefix, strlen(prefix)) != 0 || strlen(d) != len)
                    h->bad++;
                hammer_answer(want, sizeof want, coll, version, p, t);
                if (hit.exact && strcmp(d, want) != 0)
                    h->bad++;
                cache_value_release(hit.value);
            }
        } else if (op < 95) {
            hammer_answer(want, sizeof want, coll, version, p, t);
            char payload[2048];
            size_t n = strlen(want);
            memcpy(payload, want, n + 1); /* the NUL ends the string the readers compare */
            memset(payload + n + 1, 'p', sizeof payload - n - 1);
            ragd_err e = cache_store(h->c, cache_ticket(h->c), &k, &q, payload, n, payload, sizeof payload);
            if (e != RAGD_OK && e != RAGD_ECONFLICT)
                h->bad++;
        } else if (op < 98) {
            cache_invalidate_collection(h->c, coll);
        } else {
            cache_purge_expired(h->c);
        }
    }
    return NULL;
}

static void test_threads(void **state)
{
    (void)state;
    /* 64 KiB and ~2.3 KB entries: evictions all the time, while others read. */
    cache *c = make_cfg(0.9, CACHE_MIN_BYTES, 3600e3, 4, 16);
    pthread_t th[HAMMER_THREADS];
    hammer hs[HAMMER_THREADS];
    for (int i = 0; i < HAMMER_THREADS; i++) {
        hs[i] = (hammer){.c = c, .seed = 42 + (uint64_t)i};
        assert_int_equal(pthread_create(&th[i], NULL, hammer_main, &hs[i]), 0);
    }
    long lookups = 0;
    for (int i = 0; i < HAMMER_THREADS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(hs[i].bad, 0);
        lookups += hs[i].lookups;
    }
    cache_stats st;
    cache_stats_get(c, &st);
    assert_int_equal(st.hits + st.misses, (uint64_t)lookups);
    assert_true(st.hits > 0);
    assert_true(st.evictions > 0);
    assert_true(st.bytes <= CACHE_MIN_BYTES);
    /* The counts agree with what the shards hold. */
    size_t entries = 0;
    for (size_t i = 0; i <= c->shard_mask; i++) {
        cache_shard *s = &c->shards[i].s;
        size_t n = 0;
        queue_node *it;
        queue_foreach(it, &s->lru)
            n++;
        assert_int_equal(n, s->exact.n);
        entries += n;
    }
    assert_int_equal(entries, st.entries);
    cache_free(c);
}

/* ---- configuration ---- */

static void test_config_env(void **state)
{
    (void)state;
    static const char *const vars[] = {"RAGD_CACHE", "RAGD_CACHE_THRESHOLD", "RAGD_CACHE_MAX_BYTES", "RAGD_CACHE_TTL_S"};
    for (size_t i = 0; i < 4; i++)
        unsetenv(vars[i]);
    ragd_config rc;
    char err[256];
    assert_int_equal(config_from_env(&rc, err, sizeof err), 0);
    assert_true(rc.cache_enabled);
    cache_config from, def;
    cache_config_from(&rc, &from);
    cache_config_default(&def);
    /* config.c's defaults are the cache's own */
    assert_true(from.threshold == def.threshold);
    assert_int_equal(from.max_bytes, def.max_bytes);
    assert_true(from.ttl_ms == def.ttl_ms);

    setenv("RAGD_CACHE", "off", 1);
    setenv("RAGD_CACHE_THRESHOLD", "1", 1);
    setenv("RAGD_CACHE_MAX_BYTES", "1048576", 1);
    setenv("RAGD_CACHE_TTL_S", "0.5", 1);
    assert_int_equal(config_from_env(&rc, err, sizeof err), -1); /* TTL: at least 1 s */
    assert_non_null(strstr(err, "RAGD_CACHE_TTL_S"));
    setenv("RAGD_CACHE_TTL_S", "1.5", 1);
    assert_int_equal(config_from_env(&rc, err, sizeof err), 0);
    assert_false(rc.cache_enabled);
    assert_true(rc.cache_threshold == 1.0);
    assert_int_equal(rc.cache_max_bytes, 1048576);
    cache_config_from(&rc, &from);
    assert_true(from.ttl_ms == 1500);
    cache *c = NULL;
    assert_int_equal(cache_new(&from, test_clock(), &c), RAGD_OK);
    cache_free(c);
    for (size_t i = 0; i < 4; i++)
        unsetenv(vars[i]);

    const char *bad[][2] = {
        {"RAGD_CACHE", "yes"},           {"RAGD_CACHE", "ON"},
        {"RAGD_CACHE_THRESHOLD", "0"},   {"RAGD_CACHE_THRESHOLD", "1.01"},
        {"RAGD_CACHE_THRESHOLD", "-0.9"}, {"RAGD_CACHE_THRESHOLD", "nan"},
        {"RAGD_CACHE_THRESHOLD", "0.9x"}, {"RAGD_CACHE_THRESHOLD", "inf"},
        {"RAGD_CACHE_MAX_BYTES", "64MB"}, {"RAGD_CACHE_MAX_BYTES", "1000"},
        {"RAGD_CACHE_MAX_BYTES", "-1"},  {"RAGD_CACHE_TTL_S", "0"},
        {"RAGD_CACHE_TTL_S", "-5"},      {"RAGD_CACHE_TTL_S", "1h"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv(bad[i][0], bad[i][1], 1);
        assert_int_equal(config_from_env(&rc, err, sizeof err), -1);
        assert_non_null(strstr(err, bad[i][0]));
        unsetenv(bad[i][0]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_exact_hit, setup),
        cmocka_unit_test_setup(test_normalisation, setup),
        cmocka_unit_test_setup(test_semantic_threshold, setup),
        cmocka_unit_test_setup(test_scan_bound, setup),
        cmocka_unit_test_setup(test_keys_isolated, setup),
        cmocka_unit_test_setup(test_invalidation, setup),
        cmocka_unit_test_setup(test_lru_by_bytes, setup),
        cmocka_unit_test_setup(test_ttl, setup),
        cmocka_unit_test_setup(test_value_outlives_entry, setup),
        cmocka_unit_test_setup(test_miss_count_flag, setup),
        cmocka_unit_test_setup(test_bad_arguments, setup),
        cmocka_unit_test_setup(test_allocation_failures, setup),
        cmocka_unit_test_setup(test_threads, setup),
        cmocka_unit_test_setup(test_config_env, setup),
    };
    return cmocka_run_group_tests_name("cache", tests, NULL, NULL);
}
