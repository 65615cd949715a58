#ifndef RAGD_RAG_FUSION_H
#define RAGD_RAG_FUSION_H

/* Fusion of ranked candidate lists (vector and keyword) into one ranking, the choice of
 * the final k (at most N chunks per document) and the relevance floor. Pure functions: no
 * I/O, no globals. See docs/internals/retrieval.md. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reciprocal rank fusion (Cormack et al. 2009): score(id) = sum over lists containing it
 * of w_list / (k_rrf + rank), rank starting at 1. */
#define FUSION_RRF_K 60.0

typedef enum {
    FUSION_WEIGHTED = 0, /* min-max normalised scores, weighted sum (the default) */
    FUSION_RRF,          /* weighted reciprocal rank fusion */
} fusion_method;

/* How hybrid retrieval fuses and selects. Defaults (fusion_params_default) were chosen on
 * `make eval` (BENCHMARKS.md). */
typedef struct {
    fusion_method method;
    double w_keyword;       /* list weights, >= 0, not both 0; only their ratio matters */
    double w_vector;
    size_t depth;           /* candidates taken from each list (at least k are taken) */
    size_t max_per_doc;     /* at most this many chunks of one document in the top k; 0 = no cap */
    double floor;           /* relevance floor (cosine similarity), builtin collections; 0 = off */
} fusion_params;

#define FUSION_DEFAULT_W_KEYWORD 0.85
#define FUSION_DEFAULT_W_VECTOR 0.15
#define FUSION_DEFAULT_DEPTH 50
#define FUSION_DEFAULT_MAX_PER_DOC 2
#define FUSION_DEFAULT_FLOOR 0.45

void fusion_params_default(fusion_params *p);

typedef struct {
    int64_t id;
    double score;
} fusion_item;

/* Fuses nlists ranked lists (best first; duplicates inside one list count once, at their
 * best rank) by weighted RRF: weights NULL means 1 for every list, and so does a weights
 * array with a negative or non-finite entry or no positive one. Writes up to max_out
 * items, best first, ties broken by lower id, and returns how many. Returns 0 on
 * allocation failure. */
size_t fusion_rrf_weighted(const int64_t *const *lists, const size_t *lens, const double *weights, size_t nlists,
                           double k_rrf, fusion_item *out, size_t max_out);
/* fusion_rrf_weighted with every weight 1. */
size_t fusion_rrf(const int64_t *const *lists, const size_t *lens, size_t nlists, double k_rrf,
                  fusion_item *out, size_t max_out);

/* The best possible weighted RRF score: sum of w / (k_rrf + 1), an id ranked first in
 * every list (weights as in fusion_rrf_weighted). Used to turn a fused score into a
 * distance in [0, 1): distance = 1 - score / best, exactly 0 for that id. */
double fusion_rrf_best_weighted(const double *weights, size_t nlists, double k_rrf);
double fusion_rrf_best(size_t nlists, double k_rrf); /* every weight 1 */

/* Min-max normalisation: out[i] = (in[i] - min) / (max - min), so the best of the list is 1
 * and the worst 0; all equal (or n == 1) gives 1 for each. A non-finite in[i] gives 0 and
 * takes no part in min and max. in and out may be the same array. */
void fusion_minmax(const double *in, size_t n, double *out);

/* Weighted score fusion: each list's scores (higher is better; in any order) are min-max
 * normalised over that list (fusion_minmax), and an id scores
 *     sum over lists of w_list * norm_list(id) / sum of all w_list
 * where norm_list(id) is 0 for an id the list lacks, so the fused score is in [0, 1] and
 * exactly 1 for an id that is the best of every list. Duplicates inside one list count
 * once, with their best score. weights as in fusion_rrf_weighted. Writes up to max_out
 * items, best first, ties broken by lower id; returns how many, 0 on allocation failure.
 * A NULL list (ids or scores) counts as empty. */
size_t fusion_weighted(const int64_t *const *ids, const double *const *scores, const size_t *lens,
                       const double *weights, size_t nlists, fusion_item *out, size_t max_out);

/* Document diversity: picks up to k of n ranked candidates (groups[i] = the document of
 * candidate i), best first, skipping a candidate whose document already has max_per_group
 * picks; when that leaves fewer than k, the skipped candidates fill the remaining places,
 * best first. Writes the picked indices to picked (room for min(n, k)) in ascending order —
 * rank order, so scores still descend — and returns how many. max_per_group 0 = no cap
 * (the first k). */
size_t fusion_diversify(const int64_t *groups, size_t n, size_t max_per_group, size_t k, size_t *picked);

/* The relevance floor: true when nothing matches a query — no keyword candidate, and no
 * vector candidate or the best one's similarity under floor (floor <= 0: never on
 * similarity alone). */
bool fusion_nothing_relevant(size_t n_keyword, size_t n_vector, double best_similarity, double floor);

#endif
