#ifndef RAGD_RAG_FUSION_H
#define RAGD_RAG_FUSION_H

#include <stddef.h>
#include <stdint.h>

/* Reciprocal rank fusion (Cormack et al. 2009): score(id) = sum over lists containing it
 * of 1 / (k_rrf + rank), rank starting at 1. */
#define FUSION_RRF_K 60.0

typedef struct {
    int64_t id;
    double score;
} fusion_item;

/* Fuses nlists ranked lists (best first; duplicates inside one list count once, at their
 * best rank). Writes up to max_out items, best first, ties broken by lower id, and returns
 * how many. Returns 0 on allocation failure. */
size_t fusion_rrf(const int64_t *const *lists, const size_t *lens, size_t nlists, double k_rrf,
                  fusion_item *out, size_t max_out);

/* The best possible RRF score for nlists lists: nlists / (k_rrf + 1). Used to turn a fused
 * score into a distance in [0, 1): distance = 1 - score / best. */
double fusion_rrf_best(size_t nlists, double k_rrf);

#endif
