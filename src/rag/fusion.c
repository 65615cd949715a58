/* Reciprocal rank fusion of ranked id lists. See docs/internals/retrieval.md. */
#include "rag/fusion.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

/* At most this many input entries in all lists together (a query fuses a few lists of
 * at most a few hundred ids); more gives 0, like an allocation failure. */
#define FUSION_MAX_ENTRIES ((size_t)1 << 24)

typedef struct {
    int64_t id;
    size_t list;
    size_t rank; /* 1-based */
} entry;

/* By id, then list, then rank: the first entry of each (id, list) run is the best rank. */
static int entry_cmp(const void *pa, const void *pb)
{
    const entry *a = pa, *b = pb;
    if (a->id != b->id)
        return a->id < b->id ? -1 : 1;
    if (a->list != b->list)
        return a->list < b->list ? -1 : 1;
    return (a->rank > b->rank) - (a->rank < b->rank);
}

/* Best first: higher score, then lower id. */
static int item_cmp(const void *pa, const void *pb)
{
    const fusion_item *a = pa, *b = pb;
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    return (a->id > b->id) - (a->id < b->id);
}

/* fusion_rrf: see the header. A list that is NULL counts as empty; a k_rrf that is
 * negative or not finite is replaced by FUSION_RRF_K. Each id's score is summed in list
 * order, so equal inputs give bit-identical scores. */
size_t fusion_rrf(const int64_t *const *lists, const size_t *lens, size_t nlists, double k_rrf,
                  fusion_item *out, size_t max_out)
{
    entry *e = NULL;
    fusion_item *items = NULL;
    size_t nout = 0;
    if (lists == NULL || lens == NULL || out == NULL || max_out == 0)
        goto out;
    if (!isfinite(k_rrf) || k_rrf < 0.0)
        k_rrf = FUSION_RRF_K;

    size_t total = 0;
    for (size_t l = 0; l < nlists; l++) {
        if (lists[l] == NULL)
            continue;
        if (lens[l] > FUSION_MAX_ENTRIES - total)
            goto out;
        total += lens[l];
    }
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
            e[ne].rank = r + 1;
            ne++;
        }
    }
    qsort(e, ne, sizeof *e, entry_cmp);

    size_t nitems = 0;
    for (size_t i = 0; i < ne;) {
        int64_t id = e[i].id;
        double score = 0.0;
        size_t j = i;
        while (j < ne && e[j].id == id) {
            size_t list = e[j].list;
            score += 1.0 / (k_rrf + (double)e[j].rank); /* best rank in this list */
            while (j < ne && e[j].id == id && e[j].list == list)
                j++; /* later duplicates in the same list count nothing */
        }
        items[nitems].id = id;
        items[nitems].score = score;
        nitems++;
        i = j;
    }
    qsort(items, nitems, sizeof *items, item_cmp);
    nout = nitems < max_out ? nitems : max_out;
    for (size_t i = 0; i < nout; i++)
        out[i] = items[i];
out:
    free(e);
    free(items);
    return nout;
}

/* fusion_rrf_best: nlists / (k_rrf + 1), the score of an id ranked first everywhere;
 * 0 for no lists. Computed as the same sum fusion_rrf makes for such an id, so that
 * 1 - score / best is exactly 0 for it (never a tiny negative). Uses the same substitute
 * for a bad k_rrf as fusion_rrf. */
double fusion_rrf_best(size_t nlists, double k_rrf)
{
    if (!isfinite(k_rrf) || k_rrf < 0.0)
        k_rrf = FUSION_RRF_K;
    if (nlists > 1024)
        return (double)nlists / (k_rrf + 1.0);
    double best = 0.0;
    for (size_t i = 0; i < nlists; i++)
        best += 1.0 / (k_rrf + 1.0);
    return best;
}
