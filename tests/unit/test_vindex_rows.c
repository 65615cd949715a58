/* Unit tests for vindex_add_rows (src/index/vindex.c): the same calls made row by row with
 * vindex_add and in blocks with vindex_add_rows leave identical indexes — rows, float and
 * int8 copies (column by column), scales, ids, the chunk map — at several dimensions
 * (blocks of 256 rows, of 64, of 4), with chunk ids repeated within a call and across
 * calls, refused vectors (NaN) skipped and counted, growth without a reservation, and
 * searches giving the same hits. The file includes vindex.c to compare the internals. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include "../../src/index/vindex.c"

#include "test_rng.h"

static void assert_same_index(vindex *a, vindex *b)
{
    assert_int_equal(a->n, b->n);
    assert_int_equal(a->dim, b->dim);
    size_t dim = a->dim;
    assert_memory_equal(a->vecs, b->vecs, a->n * dim * sizeof(float));
    assert_memory_equal(a->q8scale, b->q8scale, a->n * sizeof(float));
    assert_memory_equal(a->chunks, b->chunks, a->n * sizeof(int64_t));
    assert_memory_equal(a->docs, b->docs, a->n * sizeof(int64_t));
    for (size_t d = 0; d < dim; d++)
        assert_memory_equal(a->q8col + d * a->col_stride, b->q8col + d * b->col_stride, a->n);
    for (size_t r = 0; r < a->n; r++) { /* the map finds every row in both */
        assert_int_equal(a->map[map_find(a, a->chunks[r])], r);
        assert_int_equal(b->map[map_find(b, b->chunks[r])], r);
    }
}

static void run_dim(size_t dim, uint64_t seed)
{
    rng r = {seed};
    vindex *a = vindex_new(dim), *b = vindex_new(dim);
    assert_non_null(a);
    assert_non_null(b);
    enum { MAX_CALL = 700 };
    int64_t *ids = malloc(MAX_CALL * sizeof *ids), *docs = malloc(MAX_CALL * sizeof *docs);
    float *vecs = malloc(MAX_CALL * dim * sizeof *vecs);
    assert_non_null(ids);
    assert_non_null(docs);
    assert_non_null(vecs);
    int64_t next_id = 1;
    size_t calls = dim > 1000 ? 6 : 14;
    for (size_t call = 0; call < calls; call++) {
        size_t n = rng_below(&r, call % 3 == 0 ? MAX_CALL : 40);
        size_t want_fail = 0;
        for (size_t i = 0; i < n; i++) {
            /* mostly new ids; some repeat an earlier call's, some an earlier row of this call */
            size_t pick = rng_below(&r, 10);
            ids[i] = pick == 0 && next_id > 1 ? 1 + (int64_t)rng_below(&r, (size_t)next_id - 1)
                     : pick == 1 && i > 0     ? ids[rng_below(&r, i)]
                                              : next_id++;
            docs[i] = 1 + (int64_t)rng_below(&r, 50);
            rng_vec(&r, vecs + i * dim, dim);
            if (rng_below(&r, 3) == 0) /* some of unit length already, as the builtin embedder's */
                for (size_t d = 0; d < dim; d++)
                    vecs[i * dim + d] = d == i % dim ? 1.0f : 0.0f;
            if (rng_below(&r, 50) == 0) {
                vecs[i * dim + dim / 2] = NAN;
                want_fail++;
            }
        }
        if (call % 2 == 1) { /* half the calls under a reservation, as in the store's hook */
            assert_int_equal(vindex_reserve(a, n), RAGD_OK);
            assert_int_equal(vindex_reserve(b, n), RAGD_OK);
        }
        size_t fail_a = 0;
        for (size_t i = 0; i < n; i++)
            fail_a += vindex_add(a, ids[i], docs[i], vecs + i * dim) != RAGD_OK;
        size_t fail_b = 99;
        const float *rows[MAX_CALL];
        for (size_t i = 0; i < n; i++) /* one row pointer each, as the store hands them */
            rows[i] = vecs + i * dim;
        ragd_err rc = vindex_add_rows(b, n, ids, docs, rows, &fail_b);
        assert_int_equal(fail_a, want_fail);
        assert_int_equal(fail_b, want_fail);
        assert_int_equal(rc, want_fail ? RAGD_EINVAL : RAGD_OK);
        if (call % 2 == 1) {
            vindex_release(a, n);
            vindex_release(b, n);
        }
        assert_same_index(a, b);
    }
    float *q = malloc(dim * sizeof *q);
    assert_non_null(q);
    vindex_hit ha[10], hb[10];
    for (int k = 0; k < 5; k++) {
        rng_vec(&r, q, dim);
        size_t na = vindex_search(a, q, 10, NULL, NULL, ha), nb = vindex_search(b, q, 10, NULL, NULL, hb);
        assert_int_equal(na, nb);
        for (size_t i = 0; i < na; i++) {
            assert_int_equal(ha[i].chunk_id, hb[i].chunk_id);
            assert_true(ha[i].score == hb[i].score);
        }
    }
    free(q);
    free(ids);
    free(docs);
    free(vecs);
    vindex_free(a);
    vindex_free(b);
}

static void test_rows_dims(void **state)
{
    (void)state;
    run_dim(3, 11);    /* blocks of 256 rows */
    run_dim(512, 12);  /* the builtin embedder's: 64 */
    run_dim(8192, 13); /* the largest: 4 */
}

static void test_rows_refusals(void **state)
{
    (void)state;
    vindex *ix = vindex_new(4);
    assert_non_null(ix);
    size_t failed = 7;
    assert_int_equal(vindex_add_rows(ix, 0, NULL, NULL, NULL, &failed), RAGD_OK); /* nothing */
    assert_int_equal(failed, 0);
    int64_t id = 1;
    assert_int_equal(vindex_add_rows(ix, 1, &id, NULL, NULL, NULL), RAGD_EINVAL);
    assert_int_equal(vindex_add_rows(NULL, 0, NULL, NULL, NULL, NULL), RAGD_EINVAL);
    assert_int_equal(vindex_count(ix), 0);
    /* a NULL row is refused and counted; the others are added */
    const float v[4] = {1, 0, 0, 0};
    const float *rows[3] = {v, NULL, v};
    int64_t ids[3] = {1, 2, 3}, docs[3] = {1, 1, 1};
    assert_int_equal(vindex_add_rows(ix, 3, ids, docs, rows, &failed), RAGD_EINVAL);
    assert_int_equal(failed, 1);
    assert_int_equal(vindex_count(ix), 2);
    vindex_free(ix);
}

/* vec_quantise rounds as lrintf does (to nearest, ties to even) and finds the same
 * maximum: random rows of several lengths (tails past the blocks of eight), rows whose
 * values scale to exact halves (the ties), zero rows and negative zeros. */
static float quantise_reference(int8_t *dst, const float *src, size_t n)
{
    float m = 0.0f;
    for (size_t i = 0; i < n; i++)
        m = fabsf(src[i]) > m ? fabsf(src[i]) : m;
    if (m == 0.0f) {
        memset(dst, 0, n);
        return 0.0f;
    }
    float inv = 127.0f / m;
    for (size_t i = 0; i < n; i++)
        dst[i] = (int8_t)lrintf(src[i] * inv);
    return m / 127.0f;
}

static void assert_quantise_same(const float *v, size_t n)
{
    int8_t got[600], want[600];
    float s_got = vec_quantise(got, v, n), s_want = quantise_reference(want, v, n);
    assert_memory_equal(&s_got, &s_want, sizeof s_got);
    assert_memory_equal(got, want, n);
}

static void test_quantise_rounding(void **state)
{
    (void)state;
    rng r = {77};
    float v[600];
    for (int round = 0; round < 400; round++) {
        size_t n = 1 + rng_below(&r, 600);
        rng_vec(&r, v, n);
        if (round % 4 == 1) /* values of a few bits: many land on halves after scaling */
            for (size_t i = 0; i < n; i++)
                v[i] = (float)((int)rng_below(&r, 509) - 254) / 2.0f;
        if (round % 4 == 2) /* the maximum in the tail past the blocks of eight */
            v[n - 1] = 2.0f;
        assert_quantise_same(v, n);
    }
    /* inv is exactly 1 here, so every other value is a tie: 0.5 -> 0, 1.5 -> 2, 2.5 -> 2 */
    const float ties[] = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, -126.5f, 3.5f, -0.0f};
    assert_quantise_same(ties, sizeof ties / sizeof ties[0]);
    int8_t q[11];
    vec_quantise(q, ties, 11);
    const int8_t want[] = {127, 0, 2, 2, 0, -2, -2, 126, -126, 4, 0};
    assert_memory_equal(q, want, sizeof want);
    const float zeros[] = {0.0f, -0.0f, 0.0f};
    assert_quantise_same(zeros, 3);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rows_dims),
        cmocka_unit_test(test_rows_refusals),
        cmocka_unit_test(test_quantise_rounding),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
