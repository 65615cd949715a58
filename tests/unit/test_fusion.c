/* Unit tests for src/rag/fusion.c: reciprocal rank fusion, min-max normalisation, weighted
 * score fusion, document diversity, the relevance floor. */
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

/* The naive checks of the random tests: id is in out with the score computed directly, and
 * out is best first, ties by lower id. */
static void assert_fused_score(const fusion_item *out, size_t n, int64_t id, double want)
{
    bool found = false;
    for (size_t i = 0; i < n; i++)
        if (out[i].id == id) {
            assert_true(fabs(out[i].score - want) < 1e-12);
            found = true;
        }
    assert_true(found);
}

static void assert_fused_order(const fusion_item *out, size_t n)
{
    for (size_t i = 1; i < n; i++) {
        assert_true(out[i - 1].score >= out[i].score);
        if (out[i - 1].score == out[i].score)
            assert_true(out[i - 1].id < out[i].id);
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
        assert_fused_score(out, n, id, want);
    }
    assert_int_equal(n, distinct);
    assert_fused_order(out, n);
    free(out);
}

/* ---------------------------------------------------------------- weighted RRF */

static void test_rrf_weighted(void **state)
{
    const int64_t a[] = {1, 2};
    const int64_t b[] = {2, 3};
    const int64_t *lists[] = {a, b};
    const size_t lens[] = {2, 2};
    const double w[] = {0.25, 0.75};
    fusion_item out[4];
    assert_int_equal(fusion_rrf_weighted(lists, lens, w, 2, 60, out, 4), 3);
    assert_item(&out[0], 2, 0.25 / 62 + 0.75 / 61);
    assert_item(&out[1], 3, 0.75 / 62);
    assert_item(&out[2], 1, 0.25 / 61);
    assert_true(fabs(fusion_rrf_best_weighted(w, 2, 60) - 1.0 / 61) < EPS);
    /* An id first in both lists has distance exactly 0. */
    const int64_t c[] = {9, 1};
    const int64_t d[] = {9};
    const int64_t *cd[] = {c, d};
    const size_t lcd[] = {2, 1};
    const double w3[] = {0.3, 0.7};
    assert_int_equal(fusion_rrf_weighted(cd, lcd, w3, 2, 60, out, 4), 2);
    assert_true(1.0 - out[0].score / fusion_rrf_best_weighted(w3, 2, 60) == 0.0);
    /* Bad weights (negative, NaN, none positive) mean equal weights: plain RRF. */
    const double bad[][2] = {{-1.0, 1.0}, {NAN, 1.0}, {0.0, 0.0}, {INFINITY, 1.0}};
    fusion_item plain[4];
    assert_int_equal(fusion_rrf(lists, lens, 2, 60, plain, 4), 3);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(fusion_rrf_weighted(lists, lens, bad[i], 2, 60, out, 4), 3);
        for (size_t j = 0; j < 3; j++) {
            assert_int_equal(out[j].id, plain[j].id);
            assert_true(out[j].score == plain[j].score);
        }
        assert_true(fusion_rrf_best_weighted(bad[i], 2, 60) == fusion_rrf_best(2, 60));
    }
    /* A weight of 0 silences a list; its ids still come out, at score 0, after the others. */
    const double only_b[] = {0.0, 1.0};
    assert_int_equal(fusion_rrf_weighted(lists, lens, only_b, 2, 60, out, 4), 3);
    assert_item(&out[0], 2, 1.0 / 61);
    assert_item(&out[1], 3, 1.0 / 62);
    assert_item(&out[2], 1, 0.0);
}

/* ---------------------------------------------------------------- min-max */

static void test_minmax(void **state)
{
    const double in[] = {10.0, 4.0, 7.0, 4.0};
    double out[4];
    fusion_minmax(in, 4, out);
    assert_true(out[0] == 1.0);
    assert_true(out[1] == 0.0);
    assert_true(fabs(out[2] - 0.5) < EPS);
    assert_true(out[3] == 0.0);
    /* In place. */
    double io[] = {-2.0, -1.0, 0.0};
    fusion_minmax(io, 3, io);
    assert_true(io[0] == 0.0 && io[1] == 0.5 && io[2] == 1.0);
    /* One value, or all equal: 1 each (the best of its list). */
    const double one[] = {0.2};
    fusion_minmax(one, 1, out);
    assert_true(out[0] == 1.0);
    const double same[] = {3.0, 3.0, 3.0};
    fusion_minmax(same, 3, out);
    assert_true(out[0] == 1.0 && out[1] == 1.0 && out[2] == 1.0);
    /* Non-finite values give 0 and do not stretch the range. */
    const double odd[] = {NAN, 2.0, INFINITY, 1.0, -INFINITY};
    double o5[5];
    fusion_minmax(odd, 5, o5);
    assert_true(o5[0] == 0.0 && o5[1] == 1.0 && o5[2] == 0.0 && o5[3] == 0.0 && o5[4] == 0.0);
    fusion_minmax(NULL, 0, NULL); /* nothing to do */
}

/* ---------------------------------------------------------------- weighted fusion */

static void test_weighted_hand_computed(void **state)
{
    /* Vector: cosine 0.9, 0.5, 0.1 -> 1, 0.5, 0. Keyword: bm25 8, 4, 2 -> 1, 1/3, 0. */
    const int64_t vid[] = {1, 2, 3};
    const double vs[] = {0.9, 0.5, 0.1};
    const int64_t kid[] = {3, 4, 1};
    const double ks[] = {8.0, 4.0, 2.0};
    const int64_t *ids[] = {vid, kid};
    const double *sc[] = {vs, ks};
    const size_t lens[] = {3, 3};
    const double w[] = {0.3, 0.7};
    fusion_item out[8];
    assert_int_equal(fusion_weighted(ids, sc, lens, w, 2, out, 8), 4);
    /* 3: 0.3*0 + 0.7*1 = 0.7; 1: 0.3*1 + 0.7*0 = 0.3; 4: 0.7/3; 2: 0.3*0.5 = 0.15. */
    assert_item(&out[0], 3, 0.7);
    assert_item(&out[1], 1, 0.3);
    assert_item(&out[2], 4, 0.7 / 3.0);
    assert_item(&out[3], 2, 0.15);
    /* Only the ratio of the weights counts. */
    const double w10[] = {3.0, 7.0};
    fusion_item out10[8];
    assert_int_equal(fusion_weighted(ids, sc, lens, w10, 2, out10, 8), 4);
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(out10[i].id, out[i].id);
        assert_true(fabs(out10[i].score - out[i].score) < EPS);
    }
    /* The weights decide: keyword-heavy puts the keyword's best first, vector-heavy the
     * vector's. */
    const double wv[] = {0.9, 0.1};
    assert_int_equal(fusion_weighted(ids, sc, lens, wv, 2, out, 8), 4);
    assert_int_equal(out[0].id, 1);
    /* NULL weights: equal. 3 and 1 tie at 0.5 (bit-identical), lower id first. */
    assert_int_equal(fusion_weighted(ids, sc, lens, NULL, 2, out, 8), 4);
    assert_int_equal(out[0].id, 1);
    assert_int_equal(out[1].id, 3);
    assert_true(out[0].score == out[1].score);
    assert_item(&out[0], 1, 0.5);
}

static void test_weighted_best_is_exactly_one(void **state)
{
    /* An id that is the best of every list scores exactly 1, whatever the weights. */
    const int64_t vid[] = {5, 6};
    const double vs[] = {0.31, 0.2};
    const int64_t kid[] = {6, 5};
    const double ks[] = {1.0, 13.7};
    const int64_t *ids[] = {vid, kid};
    const double *sc[] = {vs, ks};
    const size_t lens[] = {2, 2};
    const double weights[][2] = {{0.15, 0.85}, {0.1, 0.2}, {1.0 / 3, 2.0 / 3}, {0.7, 0.3}, {1e-9, 1000}};
    fusion_item out[4];
    for (size_t i = 0; i < sizeof weights / sizeof *weights; i++) {
        assert_int_equal(fusion_weighted(ids, sc, lens, weights[i], 2, out, 4), 2);
        assert_int_equal(out[0].id, 5);
        assert_true(out[0].score == 1.0);
        assert_true(out[1].score == 0.0);
    }
}

static void test_weighted_duplicates_missing_and_bad(void **state)
{
    /* A duplicate in a list counts once, with its best score; an id missing from a list
     * gets 0 from it. */
    const int64_t vid[] = {1, 1, 2};
    const double vs[] = {0.2, 0.8, 0.5};
    const int64_t kid[] = {2};
    const double ks[] = {3.0};
    const int64_t *ids[] = {vid, kid};
    const double *sc[] = {vs, ks};
    const size_t lens[] = {3, 1};
    const double w[] = {0.5, 0.5};
    fusion_item out[4];
    assert_int_equal(fusion_weighted(ids, sc, lens, w, 2, out, 4), 2);
    /* vector: 1 -> max(0, 1) = 1; 2 -> 0.5; keyword: 2 -> 1 (alone) */
    assert_item(&out[0], 2, 0.75);
    assert_item(&out[1], 1, 0.5);
    /* One list empty or NULL: the other's normalised scores times its share of the weight. */
    const size_t lens0[] = {3, 0};
    assert_int_equal(fusion_weighted(ids, sc, lens0, w, 2, out, 4), 2);
    assert_item(&out[0], 1, 0.5);
    assert_item(&out[1], 2, 0.25);
    const int64_t *ids_null[] = {vid, NULL};
    assert_int_equal(fusion_weighted(ids_null, sc, lens, w, 2, out, 4), 2);
    assert_item(&out[0], 1, 0.5);
    /* Nothing at all, bad arguments. */
    const size_t none[] = {0, 0};
    assert_int_equal(fusion_weighted(ids, sc, none, w, 2, out, 4), 0);
    assert_int_equal(fusion_weighted(NULL, sc, lens, w, 2, out, 4), 0);
    assert_int_equal(fusion_weighted(ids, NULL, lens, w, 2, out, 4), 0);
    assert_int_equal(fusion_weighted(ids, sc, lens, w, 2, NULL, 4), 0);
    assert_int_equal(fusion_weighted(ids, sc, lens, w, 2, out, 0), 0);
    /* max_out cuts after sorting. */
    assert_int_equal(fusion_weighted(ids, sc, lens, w, 2, out, 1), 1);
    assert_int_equal(out[0].id, 2);
    /* Bad weights mean equal weights. */
    const double bad[] = {-0.5, 2.0};
    fusion_item eq[4];
    assert_int_equal(fusion_weighted(ids, sc, lens, bad, 2, out, 4), 2);
    assert_int_equal(fusion_weighted(ids, sc, lens, NULL, 2, eq, 4), 2);
    assert_true(out[0].id == eq[0].id && out[0].score == eq[0].score);
    assert_true(out[1].id == eq[1].id && out[1].score == eq[1].score);
}

static void test_weighted_ties(void **state)
{
    /* Symmetric inputs give bit-identical scores; ties go to the lower id. */
    const int64_t a[] = {7, 3};
    const double as[] = {1.0, 0.0};
    const int64_t b[] = {3, 7};
    const double bs[] = {5.0, 1.0};
    const int64_t *ids[] = {a, b};
    const double *sc[] = {as, bs};
    const size_t lens[] = {2, 2};
    fusion_item out[2];
    assert_int_equal(fusion_weighted(ids, sc, lens, NULL, 2, out, 2), 2);
    assert_int_equal(out[0].id, 3);
    assert_int_equal(out[1].id, 7);
    assert_true(out[0].score == out[1].score);
}

/* Random lists against a direct computation of the formula. */
static void test_weighted_random_vs_naive(void **state)
{
    enum { N = 200, IDS = 300 };
    uint64_t s = 99;
    int64_t vid[N], kid[N];
    double vs[N], ks[N];
    for (size_t i = 0; i < N; i++) {
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        vid[i] = (int64_t)((s >> 33) % IDS);
        vs[i] = (double)((s >> 11) % 1000) / 1000.0;
        s = s * 6364136223846793005ULL + 1442695040888963407ULL;
        kid[i] = (int64_t)((s >> 33) % IDS);
        ks[i] = (double)((s >> 11) % 5000) / 100.0;
    }
    const int64_t *ids[] = {vid, kid};
    const double *sc[] = {vs, ks};
    const size_t lens[] = {N, N - 17};
    const double w[] = {0.15, 0.85};
    double lo[2] = {INFINITY, INFINITY}, hi[2] = {-INFINITY, -INFINITY};
    for (size_t l = 0; l < 2; l++)
        for (size_t i = 0; i < lens[l]; i++) {
            lo[l] = fmin(lo[l], sc[l][i]);
            hi[l] = fmax(hi[l], sc[l][i]);
        }
    fusion_item *out = malloc(IDS * sizeof *out);
    assert_non_null(out);
    size_t n = fusion_weighted(ids, sc, lens, w, 2, out, IDS);
    size_t distinct = 0;
    for (int64_t id = 0; id < IDS; id++) {
        double want = 0.0;
        bool present = false;
        for (size_t l = 0; l < 2; l++) {
            double best = -1.0;
            for (size_t i = 0; i < lens[l]; i++)
                if (ids[l][i] == id)
                    best = fmax(best, (sc[l][i] - lo[l]) / (hi[l] - lo[l]));
            if (best >= 0.0) {
                want += w[l] * best;
                present = true;
            }
        }
        if (!present)
            continue;
        distinct++;
        want /= w[0] + w[1];
        assert_fused_score(out, n, id, want);
    }
    assert_int_equal(n, distinct);
    assert_fused_order(out, n);
    for (size_t i = 0; i < n; i++)
        assert_true(out[i].score >= 0.0 && out[i].score <= 1.0);
    free(out);
}

/* ---------------------------------------------------------------- diversity */

static void test_diversify_cap(void **state)
{
    /* Documents of 8 ranked candidates: A A A B A C B C. */
    const int64_t g[] = {10, 10, 10, 20, 10, 30, 20, 30};
    size_t picked[8];
    /* At most 2 per document: A A B C B (A's third and fourth skipped). */
    assert_int_equal(fusion_diversify(g, 8, 2, 5, picked), 5);
    const size_t want2[] = {0, 1, 3, 5, 6};
    for (size_t i = 0; i < 5; i++)
        assert_int_equal(picked[i], want2[i]);
    /* At most 1: A B C, then nothing new: A's second fills the fourth place, in rank order. */
    assert_int_equal(fusion_diversify(g, 8, 1, 4, picked), 4);
    const size_t want1[] = {0, 1, 3, 5};
    for (size_t i = 0; i < 4; i++)
        assert_int_equal(picked[i], want1[i]);
    /* k larger than n: every candidate, in rank order. */
    assert_int_equal(fusion_diversify(g, 8, 1, 20, picked), 8);
    for (size_t i = 0; i < 8; i++)
        assert_int_equal(picked[i], i);
    /* No cap: the first k. */
    assert_int_equal(fusion_diversify(g, 8, 0, 3, picked), 3);
    for (size_t i = 0; i < 3; i++)
        assert_int_equal(picked[i], i);
}

static void test_diversify_one_document(void **state)
{
    /* A collection of one document still gives k chunks (the cap has no one else to
     * prefer), best first. */
    const int64_t g[] = {4, 4, 4, 4, 4};
    size_t picked[5];
    assert_int_equal(fusion_diversify(g, 5, 2, 3, picked), 3);
    assert_int_equal(picked[0], 0);
    assert_int_equal(picked[1], 1);
    assert_int_equal(picked[2], 2);
    /* Edge cases. */
    assert_int_equal(fusion_diversify(g, 0, 2, 3, picked), 0);
    assert_int_equal(fusion_diversify(g, 5, 2, 0, picked), 0);
    assert_int_equal(fusion_diversify(NULL, 5, 2, 3, picked), 0);
    assert_int_equal(fusion_diversify(g, 5, 2, 3, NULL), 0);
}

static void test_diversify_random(void **state)
{
    /* Invariants on random inputs: indices ascend, no document above the cap while
     * another candidate was skipped, count = min(n, k). */
    uint64_t s = 5;
    int64_t g[60];
    size_t picked[60];
    for (int round = 0; round < 200; round++) {
        size_t n = (size_t)round % 60 + 1;
        size_t k = (size_t)round % 13 + 1;
        size_t cap = (size_t)round % 4;
        for (size_t i = 0; i < n; i++) {
            s = s * 6364136223846793005ULL + 1442695040888963407ULL;
            g[i] = (int64_t)((s >> 33) % 6);
        }
        size_t m = fusion_diversify(g, n, cap, k, picked);
        assert_int_equal(m, n < k ? n : k);
        for (size_t i = 1; i < m; i++)
            assert_true(picked[i - 1] < picked[i]);
        if (cap == 0)
            continue;
        /* Count per document; if some document is over the cap, every candidate not
         * picked must be over the cap too (nothing better was left out). */
        size_t over = 0;
        for (size_t i = 0; i < m; i++) {
            size_t same = 0;
            for (size_t j = 0; j < m; j++)
                same += g[picked[j]] == g[picked[i]];
            over += same > cap;
        }
        if (over == 0)
            continue;
        for (size_t i = 0; i < n; i++) {
            bool was_picked = false;
            for (size_t j = 0; j < m; j++)
                was_picked = was_picked || picked[j] == i;
            if (was_picked)
                continue;
            size_t same = 0;
            for (size_t j = 0; j < m; j++)
                same += g[picked[j]] == g[i];
            assert_true(same >= cap);
        }
    }
}

/* ---------------------------------------------------------------- the floor */

static void test_floor(void **state)
{
    /* A keyword match always counts as relevant, whatever the vector side says. */
    assert_false(fusion_nothing_relevant(1, 0, 0.0, 0.45));
    assert_false(fusion_nothing_relevant(3, 10, 0.01, 0.45));
    /* No keyword match: the best vector similarity decides. */
    assert_true(fusion_nothing_relevant(0, 10, 0.2, 0.45));
    assert_true(fusion_nothing_relevant(0, 10, 0.4499, 0.45));
    assert_false(fusion_nothing_relevant(0, 10, 0.45, 0.45)); /* at the floor is above it */
    assert_false(fusion_nothing_relevant(0, 10, 0.9, 0.45));
    assert_true(fusion_nothing_relevant(0, 10, NAN, 0.45));
    /* Floor off: only "no candidate at all" is nothing. */
    assert_false(fusion_nothing_relevant(0, 10, 0.01, 0.0));
    assert_false(fusion_nothing_relevant(0, 10, -0.5, 0.0));
    assert_true(fusion_nothing_relevant(0, 0, 0.0, 0.0));
    assert_true(fusion_nothing_relevant(0, 0, 0.9, 0.45));
}

static void test_defaults(void **state)
{
    fusion_params p;
    fusion_params_default(&p);
    assert_int_equal(p.method, FUSION_WEIGHTED);
    assert_true(p.w_keyword == FUSION_DEFAULT_W_KEYWORD && p.w_vector == FUSION_DEFAULT_W_VECTOR);
    assert_true(p.w_keyword > p.w_vector);
    assert_int_equal(p.depth, FUSION_DEFAULT_DEPTH);
    assert_int_equal(p.max_per_doc, FUSION_DEFAULT_MAX_PER_DOC);
    assert_true(p.floor == FUSION_DEFAULT_FLOOR);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_computed),       cmocka_unit_test(test_single_list_keeps_order),
        cmocka_unit_test(test_duplicates),          cmocka_unit_test(test_ties_lower_id_first),
        cmocka_unit_test(test_empty_and_bad),       cmocka_unit_test(test_max_out),
        cmocka_unit_test(test_best),                cmocka_unit_test(test_random_vs_naive),
        cmocka_unit_test(test_rrf_weighted),        cmocka_unit_test(test_minmax),
        cmocka_unit_test(test_weighted_hand_computed), cmocka_unit_test(test_weighted_best_is_exactly_one),
        cmocka_unit_test(test_weighted_duplicates_missing_and_bad), cmocka_unit_test(test_weighted_ties),
        cmocka_unit_test(test_weighted_random_vs_naive), cmocka_unit_test(test_diversify_cap),
        cmocka_unit_test(test_diversify_one_document), cmocka_unit_test(test_diversify_random),
        cmocka_unit_test(test_floor),               cmocka_unit_test(test_defaults),
    };
    return cmocka_run_group_tests_name("fusion", tests, NULL, NULL);
}
