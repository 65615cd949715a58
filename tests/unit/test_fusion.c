/* Unit tests for src/rag/fusion.c (reciprocal rank fusion). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>

#include "rag/fusion.h"

#define EPS 1e-15

static void assert_item(const fusion_item *it, int64_t id, double score)
{
    assert_int_equal(it->id, id);
    assert_true(fabs(it->score - score) < EPS);
}

static void test_hand_computed(void **state)
{
    const int64_t a[] = {1, 2, 3};
    const int64_t b[] = {3, 1, 4};
    const int64_t *lists[] = {a, b};
    const size_t lens[] = {3, 3};
    fusion_item out[10];
    size_t n = fusion_rrf(lists, lens, 2, FUSION_RRF_K, out, 10);
    assert_int_equal(n, 4);
    assert_item(&out[0], 1, 1.0 / 61 + 1.0 / 62);
    assert_item(&out[1], 3, 1.0 / 63 + 1.0 / 61);
    assert_item(&out[2], 2, 1.0 / 62);
    assert_item(&out[3], 4, 1.0 / 63);

    /* k = 0: plain 1/rank. */
    n = fusion_rrf(lists, lens, 2, 0.0, out, 10);
    assert_int_equal(n, 4);
    assert_item(&out[0], 1, 1.0 + 0.5);
    assert_item(&out[1], 3, 1.0 / 3 + 1.0);
    assert_item(&out[2], 2, 0.5);
    assert_item(&out[3], 4, 1.0 / 3);
}

static void test_single_list_keeps_order(void **state)
{
    const int64_t a[] = {9, -4, 100, 7};
    const int64_t *lists[] = {a};
    const size_t lens[] = {4};
    fusion_item out[4];
    assert_int_equal(fusion_rrf(lists, lens, 1, 60, out, 4), 4);
    for (size_t i = 0; i < 4; i++)
        assert_item(&out[i], a[i], 1.0 / (60.0 + (double)i + 1));
}

static void test_duplicates(void **state)
{
    /* 5 counts once, at rank 1; 6 keeps its position rank 3. */
    const int64_t a[] = {5, 5, 6, 5};
    const int64_t b[] = {6, 6};
    const int64_t *lists[] = {a, b};
    const size_t lens[] = {4, 2};
    fusion_item out[10];
    size_t n = fusion_rrf(lists, lens, 2, 60, out, 10);
    assert_int_equal(n, 2);
    assert_item(&out[0], 6, 1.0 / 63 + 1.0 / 61);
    assert_item(&out[1], 5, 1.0 / 61);
    /* The same list passed twice counts twice: they are separate lists. */
    const int64_t *twice[] = {a, a};
    const size_t lens2[] = {4, 4};
    n = fusion_rrf(twice, lens2, 2, 60, out, 10);
    assert_int_equal(n, 2);
    assert_item(&out[0], 5, 2.0 / 61);
    assert_item(&out[1], 6, 2.0 / 63);
}

static void test_ties_lower_id_first(void **state)
{
    const int64_t a[] = {20, 30};
    const int64_t b[] = {10, 40};
    const int64_t *lists[] = {a, b};
    const size_t lens[] = {2, 2};
    fusion_item out[4];
    assert_int_equal(fusion_rrf(lists, lens, 2, 60, out, 4), 4);
    assert_int_equal(out[0].id, 10);
    assert_int_equal(out[1].id, 20);
    assert_int_equal(out[2].id, 30);
    assert_int_equal(out[3].id, 40);
    assert_true(out[0].score == out[1].score); /* bit-identical, not just close */
    /* Symmetric positions in swapped lists give exactly equal sums. */
    const int64_t c[] = {1, 2};
    const int64_t d[] = {2, 1};
    const int64_t *cd[] = {c, d};
    assert_int_equal(fusion_rrf(cd, lens, 2, 60, out, 4), 2);
    assert_int_equal(out[0].id, 1);
    assert_int_equal(out[1].id, 2);
}

static void test_empty_and_bad(void **state)
{
    fusion_item out[4];
    const int64_t a[] = {1};
    const int64_t *lists[] = {a, NULL};
    const size_t lens[] = {0, 5}; /* an empty list, and a NULL list (ignored) */
    assert_int_equal(fusion_rrf(lists, lens, 2, 60, out, 4), 0);
    assert_int_equal(fusion_rrf(lists, lens, 0, 60, out, 4), 0);
    assert_int_equal(fusion_rrf(NULL, lens, 2, 60, out, 4), 0);
    assert_int_equal(fusion_rrf(lists, NULL, 2, 60, out, 4), 0);
    const size_t lens1[] = {1, 5};
    assert_int_equal(fusion_rrf(lists, lens1, 2, 60, NULL, 4), 0);
    assert_int_equal(fusion_rrf(lists, lens1, 2, 60, out, 0), 0);
    assert_int_equal(fusion_rrf(lists, lens1, 2, 60, out, 4), 1);
    assert_item(&out[0], 1, 1.0 / 61);
    /* A bad k falls back to FUSION_RRF_K. */
    assert_int_equal(fusion_rrf(lists, lens1, 2, -3.0, out, 4), 1);
    assert_item(&out[0], 1, 1.0 / 61);
    assert_int_equal(fusion_rrf(lists, lens1, 2, NAN, out, 4), 1);
    assert_item(&out[0], 1, 1.0 / 61);
}

static void test_max_out(void **state)
{
    const int64_t a[] = {1, 2, 3, 4, 5};
    const int64_t b[] = {5, 4, 3, 2, 1, 6};
    const int64_t *lists[] = {a, b};
    const size_t lens[] = {5, 6};
    fusion_item all[10], top[2];
    assert_int_equal(fusion_rrf(lists, lens, 2, 60, all, 10), 6);
    assert_int_equal(fusion_rrf(lists, lens, 2, 60, top, 2), 2);
    assert_int_equal(top[0].id, all[0].id);
    assert_int_equal(top[1].id, all[1].id);
    /* 1 and 5 tie (1/61 + 1/65), 2 and 4 tie (1/62 + 1/64): lower id first. */
    assert_int_equal(all[0].id, 1);
    assert_int_equal(all[1].id, 5);
    assert_int_equal(all[2].id, 2);
    assert_int_equal(all[3].id, 4);
    assert_int_equal(all[4].id, 3);
    assert_int_equal(all[5].id, 6);
}

static void test_best(void **state)
{
    assert_true(fusion_rrf_best(0, 60) == 0.0);
    assert_true(fabs(fusion_rrf_best(2, 60) - 2.0 / 61) < EPS);
    assert_true(fabs(fusion_rrf_best(3, 0) - 3.0) < EPS);
    /* The id ranked first in every list is at distance exactly 0. */
    const int64_t a[] = {7, 1};
    const int64_t b[] = {7, 2};
    const int64_t c[] = {7};
    const int64_t *lists[] = {a, b, c};
    const size_t lens[] = {2, 2, 1};
    fusion_item out[3];
    assert_int_equal(fusion_rrf(lists, lens, 3, 60, out, 3), 3);
    assert_int_equal(out[0].id, 7);
    assert_true(1.0 - out[0].score / fusion_rrf_best(3, 60) == 0.0);
    for (size_t i = 1; i < 3; i++) {
        double dist = 1.0 - out[i].score / fusion_rrf_best(3, 60);
        assert_true(dist > 0.0 && dist < 1.0);
    }
}

/* Random lists against a direct O(n^2) computation. */
static void test_random_vs_naive(void **state)
{
    enum { L = 4, N = 300, IDS = 400 };
    uint64_t s = 12345;
    int64_t lists_data[L][N];
    for (size_t l = 0; l < L; l++)
        for (size_t r = 0; r < N; r++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            lists_data[l][r] = (int64_t)((s >> 33) % IDS);
        }
    const int64_t *lists[L];
    size_t lens[L];
    for (size_t l = 0; l < L; l++) {
        lists[l] = lists_data[l];
        lens[l] = N - l * 10;
    }
    fusion_item *out = malloc(IDS * sizeof *out);
    assert_non_null(out);
    size_t n = fusion_rrf(lists, lens, L, 60, out, IDS);
    double want_sum = 0.0;
    size_t distinct = 0;
    for (int64_t id = 0; id < IDS; id++) {
        double want = 0.0;
        for (size_t l = 0; l < L; l++)
            for (size_t r = 0; r < lens[l]; r++)
                if (lists[l][r] == id) {
                    want += 1.0 / (60.0 + (double)r + 1);
                    break;
                }
        if (want == 0.0)
            continue;
        distinct++;
        want_sum += want;
        bool found = false;
        for (size_t i = 0; i < n; i++)
            if (out[i].id == id) {
                assert_true(fabs(out[i].score - want) < 1e-12);
                found = true;
            }
        assert_true(found);
    }
    assert_int_equal(n, distinct);
    for (size_t i = 1; i < n; i++) {
        assert_true(out[i - 1].score >= out[i].score);
        if (out[i - 1].score == out[i].score)
            assert_true(out[i - 1].id < out[i].id);
    }
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed),       cmocka_unit_test(test_single_list_keeps_order),
        cmocka_unit_test(test_duplicates),          cmocka_unit_test(test_ties_lower_id_first),
        cmocka_unit_test(test_empty_and_bad),       cmocka_unit_test(test_max_out),
        cmocka_unit_test(test_best),                cmocka_unit_test(test_random_vs_naive),
    };
    return cmocka_run_group_tests_name("fusion", tests, NULL, NULL);
}
