/* Fusion of ranked lists, document diversity and the relevance floor. See
 * docs/internals/retrieval.md. */
#include "rag/fusion.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* At most this many input entries in all lists together (a query fuses two lists of at
 * most RAGD_FUSION_DEPTH ids); more gives 0, like an allocation failure. */
#define FUSION_MAX_ENTRIES ((size_t)1 << 24)

void fusion_params_default(fusion_params *p)
{
    p->method = FUSION_WEIGHTED;
    p->w_keyword = FUSION_DEFAULT_W_KEYWORD;
    p->w_vector = FUSION_DEFAULT_W_VECTOR;
    p->depth = FUSION_DEFAULT_DEPTH;
    p->max_per_doc = FUSION_DEFAULT_MAX_PER_DOC;
    p->floor = FUSION_DEFAULT_FLOOR;
}

typedef struct {
    int64_t id;
    size_t list;
    double key; /* RRF: the 1-based rank (smaller is better); weighted: the normalised score */
} entry;

/* By id, then list, then key ascending: for RRF the first entry of each (id, list) run is
 * the best rank. */
static int entry_cmp_rank(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    if (a->id != b->id)
        return a->id < b->id ? -1 : 1;
    if (a->list != b->list)
        return a->list < b->list ? -1 : 1;
    return (a->key > b->key) - (a->key < b->key);
}

/* By id, then list, then key descending: for scores the first of a run is the best. */
static int entry_cmp_score(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    if (a->id != b->id || a->list != b->list)
        return entry_cmp_rank(pa, pb);
    return (a->key < b->key) - (a->key > b->key);
}

/* Best first: higher score, then lower id. */
static int item_cmp(const void *pa, const void *pb)
{
    const fusion_item *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* Whether weights can be used as given: every one finite and >= 0, at least one > 0. */
static bool fusion_weights_ok(const double *w, size_t n)
{
    if (w == NULL)
        return false;
    bool positive = false;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(w[i]) || w[i] < 0.0)
            return false;
        positive = positive || w[i] > 0.0;
    }
    return positive;
}

static double fusion_weight(const double *w, bool ok, size_t list)
{
    return ok ? w[list] : 1.0;
}

/* Sums each id's runs of entries (sorted by id, list, best first): the first entry of each
 * (id, list) run counts, through contrib; later duplicates in a list count nothing. Then
 * sorts best first and copies up to max_out. Returns how many were written. */
static size_t fusion_collect(entry *e, size_t ne, fusion_item *items, const double *w, bool w_ok, bool rrf,
                             double k_rrf, double divisor, fusion_item *out, size_t max_out)
{
    size_t nitems = 0;
    for (size_t i = 0; i < ne;) {
        int64_t id = e[i].id;
        double score = 0.0;
        size_t j = i;
        while (j < ne && e[j].id == id) {
            size_t list = e[j].list;
            double wl = fusion_weight(w, w_ok, list);
            score += rrf ? wl / (k_rrf + e[j].key) : wl * e[j].key;
            while (j < ne && e[j].id == id && e[j].list == list)
                j++;
        }
        items[nitems].id = id;
        items[nitems].score = rrf ? score : score / divisor;
        nitems++;
        i = j;
    }
    qsort(items, nitems, sizeof *items, item_cmp);
    size_t nout = nitems < max_out ? nitems : max_out;
    for (size_t i = 0; i < nout; i++)
        out[i] = items[i];
    return nout;
}

/* Total entries of the non-NULL lists, or 0 when they exceed FUSION_MAX_ENTRIES. */
static size_t fusion_total(const void *const *lists, const size_t *lens, size_t nlists)
{
    size_t total = 0;
    for (size_t l = 0; l < nlists; l++) {
        if (lists[l] == NULL)
            continue;
        if (lens[l] > FUSION_MAX_ENTRIES - total)
            return 0;
        total += lens[l];
    }
    return total;
}

/* fusion_rrf_weighted: see the header. A list that is NULL counts as empty; a k_rrf that
 * is negative or not finite is replaced by FUSION_RRF_K. Each id's score is summed in list
 * order, so equal inputs give bit-identical scores. */
size_t fusion_rrf_weighted(const int64_t *const *lists, const size_t *lens, const double *weights, size_t nlists,
                           double k_rrf, fusion_item *out, size_t max_out)
{
    entry *e = NULL;
    fusion_item *items = NULL;
    size_t nout = 0;
    if (lists == NULL || lens == NULL || out == NULL || max_out == 0)
        goto out;
    if (!isfinite(k_rrf) || k_rrf < 0.0)
        k_rrf = FUSION_RRF_K;
    size_t total = fusion_total((const void *const *)lists, lens, nlists);
    if (total == 0)
        goto out;
    e = malloc(total * sizeof *e);
    items = malloc(total * sizeof *items);
    if (e == NULL || items == NULL)
        goto out;
    size_t ne = 0;
    for (size_t l = 0; l < nlists; l++) {
        if (lists[l] == NULL)
            continue;
        for (size_t r = 0; r < lens[l]; r++) {
            e[ne].id = lists[l][r];
            e[ne].list = l;
            e[ne].key = (double)(r + 1);
            ne++;
        }
    }
    qsort(e, ne, sizeof *e, entry_cmp_rank);
    nout = fusion_collect(e, ne, items, weights, fusion_weights_ok(weights, nlists), true, k_rrf, 1.0, out, max_out);
out:
    free(e);
    free(items);
    return nout;
}

size_t fusion_rrf(const int64_t *const *lists, const size_t *lens, size_t nlists, double k_rrf,
                  fusion_item *out, size_t max_out)
{
    return fusion_rrf_weighted(lists, lens, NULL, nlists, k_rrf, out, max_out);
}

/* fusion_rrf_best_weighted: the sum fusion_rrf_weighted makes for an id ranked first in
 * every list, computed the same way, so that 1 - score / best is exactly 0 for it (never
 * a tiny negative); 0 for no lists. Uses the same substitutes for bad weights and k_rrf. */
double fusion_rrf_best_weighted(const double *weights, size_t nlists, double k_rrf)
{
    if (!isfinite(k_rrf) || k_rrf < 0.0)
        k_rrf = FUSION_RRF_K;
    bool ok = fusion_weights_ok(weights, nlists);
    if (!ok && nlists > 1024)
        return (double)nlists / (k_rrf + 1.0);
    double best = 0.0;
    for (size_t i = 0; i < nlists; i++)
        best += fusion_weight(weights, ok, i) / (k_rrf + 1.0);
    return best;
}

double fusion_rrf_best(size_t nlists, double k_rrf)
{
    return fusion_rrf_best_weighted(NULL, nlists, k_rrf);
}

void fusion_minmax(const double *in, size_t n, double *out)
{
    double lo = INFINITY, hi = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(in[i]))
            continue;
        lo = in[i] < lo ? in[i] : lo;
        hi = in[i] > hi ? in[i] : hi;
    }
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(in[i]))
            out[i] = 0.0;
        else if (hi > lo)
            out[i] = (in[i] - lo) / (hi - lo);
        else
            out[i] = 1.0;
    }
}

/* fusion_weighted: see the header. The divisor is the sum of all weights, added in list
 * order like each id's numerator, so an id that is the best of every list scores exactly
 * 1. */
size_t fusion_weighted(const int64_t *const *ids, const double *const *scores, const size_t *lens,
                       const double *weights, size_t nlists, fusion_item *out, size_t max_out)
{
    entry *e = NULL;
    fusion_item *items = NULL;
    double *norm = NULL;
    size_t nout = 0;
    if (ids == NULL || scores == NULL || lens == NULL || out == NULL || max_out == 0)
        goto out;
    size_t total = 0, longest = 0;
    for (size_t l = 0; l < nlists; l++) {
        if (ids[l] == NULL || scores[l] == NULL)
            continue;
        if (lens[l] > FUSION_MAX_ENTRIES - total)
            goto out;
        total += lens[l];
        longest = lens[l] > longest ? lens[l] : longest;
    }
    if (total == 0)
        goto out;
    e = malloc(total * sizeof *e);
    items = malloc(total * sizeof *items);
    norm = malloc(longest * sizeof *norm);
    if (e == NULL || items == NULL || norm == NULL)
        goto out;
    bool w_ok = fusion_weights_ok(weights, nlists);
    double divisor = 0.0;
    size_t ne = 0;
    for (size_t l = 0; l < nlists; l++) {
        divisor += fusion_weight(weights, w_ok, l);
        if (ids[l] == NULL || scores[l] == NULL)
            continue;
        fusion_minmax(scores[l], lens[l], norm);
        for (size_t r = 0; r < lens[l]; r++) {
            e[ne].id = ids[l][r];
            e[ne].list = l;
            e[ne].key = norm[r];
            ne++;
        }
    }
    qsort(e, ne, sizeof *e, entry_cmp_score);
    nout = fusion_collect(e, ne, items, weights, w_ok, false, 0.0, divisor, out, max_out);
out:
    free(e);
    free(items);
    free(norm);
    return nout;
}

static int size_cmp(const void *pa, const void *pb)
{
    size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
    return (a > b) - (a < b);
}

/* fusion_diversify: see the header. O(n * k): k is at most 100 and n a few hundred. */
size_t fusion_diversify(const int64_t *groups, size_t n, size_t max_per_group, size_t k, size_t *picked)
{
    size_t m = 0;
    if (groups == NULL || picked == NULL)
        return 0;
    for (size_t i = 0; i < n && m < k; i++) {
        size_t same = 0;
        for (size_t j = 0; max_per_group > 0 && j < m; j++)
            same += groups[picked[j]] == groups[i];
        if (max_per_group == 0 || same < max_per_group)
            picked[m++] = i;
    }
    if (m < k && m < n) {
        /* The skipped candidates, best first: picked[0..first) is ascending, so one walk
         * finds them; then rank order again. */
        size_t first = m, p = 0;
        for (size_t i = 0; i < n && m < k; i++) {
            if (p < first && picked[p] == i) {
                p++;
                continue;
            }
            picked[m++] = i;
        }
        qsort(picked, m, sizeof *picked, size_cmp);
    }
    return m;
}

bool fusion_nothing_relevant(size_t n_keyword, size_t n_vector, double best_similarity, double floor)
{
    if (n_keyword > 0)
        return false;
    return n_vector == 0 || (floor > 0.0 && !(best_similarity >= floor));
}
