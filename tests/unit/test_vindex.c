/* Unit tests for src/index/vindex.c: exact top-k against brute force, ties, filters,
 * replace, remove, dimensions, bad input, the collection set, and concurrent use. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "index/vindex.h"

#include "test_rng.h"

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* ---- brute force reference ---- */
static void normalise(float *v, size_t dim)
{
    double ss = 0;
    for (size_t i = 0; i < dim; i++)
        ss += (double)v[i] * v[i];
    if (ss > 0)
        for (size_t i = 0; i < dim; i++)
            v[i] = (float)(v[i] / sqrt(ss));
}

static double dot(const float *a, const float *b, size_t dim)
{
    double s = 0;
    for (size_t i = 0; i < dim; i++)
        s += (double)a[i] * b[i];
    return s;
}

typedef struct {
    int64_t id;
    int64_t doc;
    double score;
} ref_hit;

static int ref_cmp(const void *pa, const void *pb)
{
    const ref_hit *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return a->id < b->id ? -1 : (a->id > b->id);
}

/* Results are best first, ties by lower chunk id. */
static void assert_ordered(const vindex_hit *h, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        assert_true(h[i - 1].score >= h[i].score);
        if (h[i - 1].score == h[i].score)
            assert_true(h[i - 1].chunk_id < h[i].chunk_id);
    }
}

static bool even_doc(int64_t doc, void *arg)
{
    size_t *calls = arg;
    (*calls)++;
    return doc % 2 == 0;
}

/* Compares vindex_search with a brute-force ranking, optionally only over even docs. */
static void check_against_brute_force(size_t dim, size_t n, size_t nq, bool filtered)
{
    rng r = {0x1234567ULL + dim};
    vindex *ix = vindex_new(dim);
    assert_non_null(ix);
    float *vecs = malloc(n * dim * sizeof *vecs);
    float *q = malloc(dim * sizeof *q);
    ref_hit *ref = malloc(n * sizeof *ref);
    vindex_hit *out = malloc((n + 5) * sizeof *out);
    assert_non_null(vecs);
    assert_non_null(q);
    assert_non_null(ref);
    assert_non_null(out);
    for (size_t i = 0; i < n; i++) {
        rng_vec(&r, vecs + i * dim, dim);
        /* chunk ids deliberately not in insertion order */
        assert_int_equal(vindex_add(ix, (int64_t)(n - i) * 7, (int64_t)(i / 3), vecs + i * dim),
                         RAGD_OK);
        normalise(vecs + i * dim, dim);
    }
    assert_int_equal(vindex_count(ix), n);
    const size_t ks[] = {1, 10, 100, n + 5};
    for (size_t qi = 0; qi < nq; qi++) {
        rng_vec(&r, q, dim);
        float qn[8192];
        memcpy(qn, q, dim * sizeof *q);
        normalise(qn, dim);
        size_t nref = 0;
        for (size_t i = 0; i < n; i++) {
            if (filtered && (i / 3) % 2 != 0)
                continue;
            ref[nref].id = (int64_t)(n - i) * 7;
            ref[nref].doc = (int64_t)(i / 3);
            ref[nref].score = dot(qn, vecs + i * dim, dim);
            nref++;
        }
        qsort(ref, nref, sizeof *ref, ref_cmp);
        for (size_t ki = 0; ki < sizeof ks / sizeof ks[0]; ki++) {
            size_t k = ks[ki];
            size_t calls = 0;
            size_t got = vindex_search(ix, q, k, filtered ? even_doc : NULL, &calls, out);
            assert_int_equal(got, k < nref ? k : nref);
            assert_ordered(out, got);
            if (filtered)
                assert_true(calls > 0 && calls <= n);
            for (size_t i = 0; i < got; i++) {
                /* Same scores rank by rank (float vs double rounding aside), and each
                 * hit carries its own chunk's score and document. */
                assert_true(fabs(out[i].score - ref[i].score) < 1e-5);
                size_t row = n - (size_t)(out[i].chunk_id / 7);
                assert_int_equal(out[i].chunk_id % 7, 0);
                assert_int_equal(out[i].doc_rowid, (int64_t)(row / 3));
                assert_true(fabs(out[i].score - dot(qn, vecs + row * dim, dim)) < 1e-5);
                if (filtered)
                    assert_int_equal(out[i].doc_rowid % 2, 0);
            }
            /* The best hit is the true best unless two are within rounding. */
            if (got > 1 && ref[0].score - ref[1].score > 1e-5)
                assert_int_equal(out[0].chunk_id, ref[0].id);
        }
    }
    free(vecs);
    free(q);
    free(ref);
    free(out);
    vindex_free(ix);
}

static void test_topk_brute_force(void **state)
{
    check_against_brute_force(37, 3000, 20, false); /* dim not a multiple of 16: tail */
    check_against_brute_force(64, 1000, 10, false);
    check_against_brute_force(5, 500, 10, false);
    /* from 4,096 rows on the search takes its candidates from the int8 copy: still the
     * exact top-k, scores and order (rescored from the float rows) */
    check_against_brute_force(64, 6000, 30, false);
    check_against_brute_force(512, 5000, 20, false);
    check_against_brute_force(37, 8000, 20, true);
}

static void test_topk_filtered(void **state) { check_against_brute_force(48, 2000, 10, true); }

static void test_new_dims(void **state)
{
    assert_null(vindex_new(0));
    assert_null(vindex_new(8193));
    assert_int_equal(vindex_dim(NULL), 0);
    const size_t dims[] = {1, 15, 16, 17, 8192};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++) {
        size_t dim = dims[i];
        vindex *ix = vindex_new(dim);
        assert_non_null(ix);
        assert_int_equal(vindex_dim(ix), dim);
        assert_int_equal(vindex_count(ix), 0);
        float *v = calloc(dim, sizeof *v);
        assert_non_null(v);
        vindex_hit h[2];
        assert_int_equal(vindex_search(ix, v, 2, NULL, NULL, h), 0); /* empty index */
        v[dim - 1] = -2.0f;
        assert_int_equal(vindex_add(ix, 1, 1, v), RAGD_OK);
        v[dim - 1] = 0.5f;
        assert_int_equal(vindex_search(ix, v, 2, NULL, NULL, h), 1);
        assert_true(fabsf(h[0].score + 1.0f) < 1e-6f); /* opposite direction: -1 */
        free(v);
        vindex_free(ix);
    }
    vindex_free(NULL);
}

static void test_normalise_and_bad_input(void **state)
{
    vindex *ix = vindex_new(2);
    assert_non_null(ix);
    float a[2] = {3, 4};
    float zero[2] = {0, 0};
    float bad[2] = {NAN, 1};
    float inf[2] = {INFINITY, 1};
    assert_int_equal(vindex_add(ix, 1, 1, a), RAGD_OK);
    assert_int_equal(vindex_add(ix, 2, 1, zero), RAGD_OK);
    assert_int_equal(vindex_add(ix, 3, 1, bad), RAGD_EINVAL);
    assert_int_equal(vindex_add(ix, 1, 1, inf), RAGD_EINVAL); /* replace refused, kept */
    assert_int_equal(vindex_add(ix, 4, 1, NULL), RAGD_EINVAL);
    assert_int_equal(vindex_add(NULL, 4, 1, a), RAGD_EINVAL);
    assert_int_equal(vindex_count(ix), 2);
    assert_int_equal(vindex_count(NULL), 0);

    vindex_hit h[4];
    float q[2] = {30, 40};
    assert_int_equal(vindex_search(ix, q, 4, NULL, NULL, h), 2);
    assert_int_equal(h[0].chunk_id, 1);
    assert_true(fabsf(h[0].score - 1.0f) < 1e-6f);
    assert_int_equal(h[1].chunk_id, 2);
    assert_true(h[1].score == 0.0f);
    float q2[2] = {-4, 3}; /* orthogonal to a */
    assert_int_equal(vindex_search(ix, q2, 1, NULL, NULL, h), 1);
    assert_true(fabsf(h[0].score) < 1e-6f);

    assert_int_equal(vindex_search(ix, q, 0, NULL, NULL, h), 0);
    assert_int_equal(vindex_search(ix, bad, 4, NULL, NULL, h), 0);
    assert_int_equal(vindex_search(ix, NULL, 4, NULL, NULL, h), 0);
    assert_int_equal(vindex_search(ix, q, 4, NULL, NULL, NULL), 0);
    assert_int_equal(vindex_search(NULL, q, 4, NULL, NULL, h), 0);
    /* A zero query scores 0 everywhere: ties by chunk id. */
    assert_int_equal(vindex_search(ix, zero, 4, NULL, NULL, h), 2);
    assert_int_equal(h[0].chunk_id, 1);
    assert_int_equal(h[1].chunk_id, 2);
    vindex_free(ix);
}

static void test_ties(void **state)
{
    vindex *ix = vindex_new(3);
    assert_non_null(ix);
    float v[3] = {1, 2, 3};
    float w[3] = {1, 2, 2.5f};
    const int64_t ids[] = {50, 7, 900, 3, 42, -5};
    for (size_t i = 0; i < sizeof ids / sizeof ids[0]; i++)
        assert_int_equal(vindex_add(ix, ids[i], ids[i] * 10, v), RAGD_OK);
    assert_int_equal(vindex_add(ix, 1, 1, w), RAGD_OK); /* lower id but lower score */
    vindex_hit h[10];
    size_t got = vindex_search(ix, v, 10, NULL, NULL, h);
    assert_int_equal(got, 7);
    const int64_t want[] = {-5, 3, 7, 42, 50, 900, 1};
    for (size_t i = 0; i < got; i++) {
        assert_int_equal(h[i].chunk_id, want[i]);
        if (i + 1 < got)
            assert_int_equal(h[i].doc_rowid, want[i] * 10);
    }
    /* A bounded heap must keep the lowest ids among equals, whatever the insert order. */
    got = vindex_search(ix, v, 3, NULL, NULL, h);
    assert_int_equal(got, 3);
    assert_int_equal(h[0].chunk_id, -5);
    assert_int_equal(h[1].chunk_id, 3);
    assert_int_equal(h[2].chunk_id, 7);
    vindex_free(ix);
}

/* Identical vectors (a text stored twice) tie exactly: past 4,096 rows too, where the
 * candidates come from the int8 pass, the lowest chunk ids win, whatever the rows' order. */
static void test_ties_quantised(void **state)
{
    const size_t dim = 16, n = 6000, bases = 20, k = 10;
    vindex *ix = vindex_new(dim);
    assert_non_null(ix);
    float base[20][16];
    rng r = {12345};
    for (size_t b = 0; b < bases; b++)
        rng_vec(&r, base[b], dim);
    for (size_t i = 0; i < n; i++) /* chunk ids scattered over the rows */
        assert_int_equal(vindex_add(ix, (int64_t)((i * 7919) % 100003), (int64_t)i, base[i % bases]), RAGD_OK);
    /* the rows holding base 3, by chunk id: the exact answer */
    int64_t want[400];
    size_t nw = 0;
    for (size_t i = 3; i < n; i += bases)
        want[nw++] = (int64_t)((i * 7919) % 100003);
    qsort(want, nw, sizeof *want, cmp_i64);
    vindex_hit h[16];
    size_t got = vindex_search(ix, base[3], k, NULL, NULL, h);
    assert_int_equal(got, k);
    for (size_t i = 0; i < k; i++)
        assert_int_equal(h[i].chunk_id, want[i]);
    vindex_free(ix);
}

static void test_replace(void **state)
{
    vindex *ix = vindex_new(2);
    assert_non_null(ix);
    float a[2] = {1, 0};
    float b[2] = {0, 1};
    assert_int_equal(vindex_add(ix, 10, 100, a), RAGD_OK);
    assert_int_equal(vindex_add(ix, 11, 100, a), RAGD_OK);
    assert_int_equal(vindex_add(ix, 10, 200, b), RAGD_OK); /* same chunk: replaced */
    assert_int_equal(vindex_count(ix), 2);
    vindex_hit h[3];
    assert_int_equal(vindex_search(ix, b, 3, NULL, NULL, h), 2);
    assert_int_equal(h[0].chunk_id, 10);
    assert_int_equal(h[0].doc_rowid, 200);
    assert_true(fabsf(h[0].score - 1.0f) < 1e-6f);
    assert_int_equal(h[1].chunk_id, 11);
    /* The replaced row moved to doc 200: removing doc 100 leaves it. */
    assert_int_equal(vindex_remove_doc(ix, 100), 1);
    assert_int_equal(vindex_count(ix), 1);
    assert_int_equal(vindex_remove_doc(ix, 200), 1);
    assert_int_equal(vindex_count(ix), 0);
    vindex_free(ix);
}

/* Reservations: what the store takes before COMMIT so that the adds after it cannot fail
 * (the allocation torture pass checks that they allocate nothing). */
static void test_reserve(void **state)
{
    assert_int_equal(vindex_reserve(NULL, 1), RAGD_EINVAL);
    vindex_release(NULL, 1);
    vindex *ix = vindex_new(4);
    assert_non_null(ix);
    assert_int_equal(vindex_reserve(ix, 1000), RAGD_OK);
    assert_int_equal(vindex_reserve(ix, 24), RAGD_OK); /* cumulative */
    float v[4] = {1, 2, 3, 4};
    for (int64_t i = 0; i < 1024; i++)
        assert_int_equal(vindex_add(ix, i, i / 8, v), RAGD_OK);
    vindex_release(ix, 1024);
    assert_int_equal(vindex_count(ix), 1024);
    /* Removing most rows with a reservation outstanding keeps room for it. */
    assert_int_equal(vindex_reserve(ix, 512), RAGD_OK);
    for (int64_t d = 0; d < 120; d++)
        assert_int_equal(vindex_remove_doc(ix, d), 8);
    assert_int_equal(vindex_count(ix), 64);
    for (int64_t i = 5000; i < 5512; i++)
        assert_int_equal(vindex_add(ix, i, 999, v), RAGD_OK);
    vindex_release(ix, 100000); /* more than reserved: all of it */
    assert_int_equal(vindex_count(ix), 576);
    assert_int_equal(vindex_reserve(ix, (size_t)1 << 40), RAGD_ETOOBIG);
    vindex_free(ix);
}

/* Many adds, removals and replaces: the chunk map and the rows must stay in step
 * (a broken map shows up as duplicates, lost rows or wrong replaces). */
static void test_remove_many(void **state)
{
    enum { N = 20000, DIM = 8 };
    rng r = {42};
    vindex *ix = vindex_new(DIM);
    assert_non_null(ix);
    float v[DIM];
    for (int64_t c = 0; c < N; c++) {
        rng_vec(&r, v, DIM);
        assert_int_equal(vindex_add(ix, c * 3 + 1, c % 100, v), RAGD_OK);
    }
    assert_int_equal(vindex_count(ix), N);
    assert_int_equal(vindex_remove_doc(ix, 12345), 0);
    size_t left = N;
    for (int64_t d = 0; d < 100; d += 2) {
        assert_int_equal(vindex_remove_doc(ix, d), N / 100);
        left -= N / 100;
    }
    assert_int_equal(vindex_count(ix), left);
    /* Re-adding every chunk id: odd docs replace (count unchanged), even docs re-add. */
    for (int64_t c = 0; c < N; c++) {
        if ((c % 100) % 2 == 1) {
            v[0] = 1.0f;
            for (int i = 1; i < DIM; i++)
                v[i] = 0.0f;
            assert_int_equal(vindex_add(ix, c * 3 + 1, c % 100, v), RAGD_OK);
        }
    }
    assert_int_equal(vindex_count(ix), left);
    vindex_hit *h = malloc(N * sizeof *h);
    assert_non_null(h);
    size_t got = vindex_search(ix, v, N, NULL, NULL, h);
    assert_int_equal(got, left);
    for (size_t i = 0; i < got; i++) {
        assert_true(fabsf(h[i].score - 1.0f) < 1e-6f); /* every row was replaced */
        assert_int_equal(h[i].doc_rowid % 2, 1);
        if (i > 0)
            assert_true(h[i].chunk_id > h[i - 1].chunk_id); /* distinct, tie order */
    }
    /* Remove everything (storage shrinks), then the index works as new. */
    for (int64_t d = 1; d < 100; d += 2)
        assert_int_equal(vindex_remove_doc(ix, d), N / 100);
    assert_int_equal(vindex_count(ix), 0);
    assert_int_equal(vindex_search(ix, v, 5, NULL, NULL, h), 0);
    assert_int_equal(vindex_add(ix, 1, 1, v), RAGD_OK);
    assert_int_equal(vindex_search(ix, v, 5, NULL, NULL, h), 1);
    assert_int_equal(vindex_remove_doc(NULL, 1), 0);
    free(h);
    vindex_free(ix);
}

static bool filter_arg(int64_t doc, void *arg) { return doc == *(int64_t *)arg; }

static void test_filter_none_and_arg(void **state)
{
    vindex *ix = vindex_new(2);
    assert_non_null(ix);
    float a[2] = {1, 1};
    for (int64_t c = 0; c < 10; c++)
        assert_int_equal(vindex_add(ix, c, c % 3, a), RAGD_OK);
    vindex_hit h[10];
    int64_t want = 99;
    assert_int_equal(vindex_search(ix, a, 10, filter_arg, &want, h), 0);
    want = 1;
    size_t got = vindex_search(ix, a, 10, filter_arg, &want, h);
    assert_int_equal(got, 3);
    assert_int_equal(h[0].chunk_id, 1);
    assert_int_equal(h[1].chunk_id, 4);
    assert_int_equal(h[2].chunk_id, 7);
    vindex_free(ix);
}

/* ---- concurrency: readers search while a writer adds and removes ---- */
enum { CDIM = 32, ANCHORS = 16 };

typedef struct {
    vindex *ix;
    float anchors[ANCHORS][CDIM];
    int stop; /* accessed with __atomic builtins */
    int failures;
} conc_state;

static void *reader_main(void *p)
{
    conc_state *cs = p;
    vindex_hit h[5];
    for (int iter = 0; iter < 300; iter++) {
        int a = iter % ANCHORS;
        size_t got = vindex_search(cs->ix, cs->anchors[a], 5, NULL, NULL, h);
        /* Anchors are never removed; each is unit length, so it finds itself first. */
        bool ok = got == 5 && h[0].chunk_id == a && fabsf(h[0].score - 1.0f) < 1e-5f;
        for (size_t i = 1; i < got; i++)
            ok = ok && h[i - 1].score >= h[i].score;
        if (!ok)
            __atomic_add_fetch(&cs->failures, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void *writer_main(void *p)
{
    conc_state *cs = p;
    rng r = {777};
    float v[CDIM];
    int64_t next = 1000;
    for (int round = 0; round < 200 && !__atomic_load_n(&cs->stop, __ATOMIC_RELAXED); round++) {
        int64_t doc = 1000 + round;
        for (int i = 0; i < 20; i++) {
            rng_vec(&r, v, CDIM);
            for (int j = 0; j < CDIM; j++)
                v[j] *= 0.5f; /* random directions never beat an anchor on itself */
            if (vindex_add(cs->ix, next++, doc, v) != RAGD_OK)
                __atomic_add_fetch(&cs->failures, 1, __ATOMIC_RELAXED);
        }
        if (round % 2 == 1 && vindex_remove_doc(cs->ix, doc - 1) != 20)
            __atomic_add_fetch(&cs->failures, 1, __ATOMIC_RELAXED);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    conc_state *cs = calloc(1, sizeof *cs);
    assert_non_null(cs);
    cs->ix = vindex_new(CDIM);
    assert_non_null(cs->ix);
    for (int a = 0; a < ANCHORS; a++) {
        for (int j = 0; j < CDIM; j++)
            cs->anchors[a][j] = 0.0f;
        cs->anchors[a][a] = 1.0f; /* orthogonal unit anchors */
        assert_int_equal(vindex_add(cs->ix, a, 1, cs->anchors[a]), RAGD_OK);
    }
    pthread_t readers[4], writer;
    assert_int_equal(pthread_create(&writer, NULL, writer_main, cs), 0);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&readers[i], NULL, reader_main, cs), 0);
    for (int i = 0; i < 4; i++)
        pthread_join(readers[i], NULL);
    __atomic_store_n(&cs->stop, 1, __ATOMIC_RELAXED);
    pthread_join(writer, NULL);
    assert_int_equal(cs->failures, 0);
    assert_true(vindex_count(cs->ix) >= ANCHORS);
    vindex_free(cs->ix);
    free(cs);
}

/* ---- vindex_set ---- */
static void test_set(void **state)
{
    vindex_set *set = vindex_set_new();
    assert_non_null(set);
    assert_null(vindex_set_get(set, 1, 4, false));
    vindex *a = vindex_set_get(set, 1, 4, true);
    assert_non_null(a);
    assert_int_equal(vindex_dim(a), 4);
    assert_ptr_equal(vindex_set_get(set, 1, 4, false), a);
    assert_ptr_equal(vindex_set_get(set, 1, 4, true), a);
    assert_ptr_equal(vindex_set_get(set, 1, 0, false), a); /* dim 0: any */
    assert_null(vindex_set_get(set, 1, 8, true));           /* other dim */
    assert_null(vindex_set_get(set, 1, 8, false));
    assert_null(vindex_set_get(set, 2, 0, true)); /* bad dim for a new index */
    assert_null(vindex_set_get(set, 2, 0, false));
    float v[4] = {1, 0, 0, 0};
    assert_int_equal(vindex_add(a, 1, 1, v), RAGD_OK);
    for (int64_t c = 2; c < 100; c++)
        assert_non_null(vindex_set_get(set, c, 16, true));
    assert_ptr_equal(vindex_set_get(set, 1, 4, false), a);
    vindex_set_drop(set, 1);
    vindex_set_drop(set, 1);   /* absent: nothing */
    vindex_set_drop(set, 555); /* never there */
    assert_null(vindex_set_get(set, 1, 4, false));
    vindex *b = vindex_set_get(set, 1, 8, true); /* recreated with another dim */
    assert_non_null(b);
    assert_int_equal(vindex_count(b), 0);
    assert_non_null(vindex_set_get(set, 50, 16, false));
    vindex_set_drop(NULL, 1);
    assert_null(vindex_set_get(NULL, 1, 4, true));

    /* replace: in place of an existing index (the old one comes back), or added when absent */
    vindex *c3 = vindex_new(3);
    assert_ptr_equal(vindex_set_replace(set, 1, c3), b);
    vindex_free(b);
    assert_ptr_equal(vindex_set_get(set, 1, 3, false), c3);
    assert_null(vindex_set_get(set, 1, 8, false)); /* the old dimension is gone */
    vindex *d = vindex_new(5);
    assert_null(vindex_set_replace(set, 777, d)); /* absent: added, nothing to free */
    assert_ptr_equal(vindex_set_get(set, 777, 5, false), d);
    assert_null(vindex_set_replace(set, 9, NULL));
    vindex *e = vindex_new(2);
    assert_ptr_equal(vindex_set_replace(NULL, 1, e), e); /* not taken */
    vindex_free(e);
    vindex_set_free(set); /* frees the indexes still inside */
    vindex_set_free(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_topk_brute_force),
        cmocka_unit_test(test_topk_filtered),
        cmocka_unit_test(test_new_dims),
        cmocka_unit_test(test_normalise_and_bad_input),
        cmocka_unit_test(test_ties),
        cmocka_unit_test(test_ties_quantised),
        cmocka_unit_test(test_replace),
        cmocka_unit_test(test_reserve),
        cmocka_unit_test(test_remove_many),
        cmocka_unit_test(test_filter_none_and_arg),
        cmocka_unit_test(test_concurrent),
        cmocka_unit_test(test_set),
    };
    return cmocka_run_group_tests_name("vindex", tests, NULL, NULL);
}
