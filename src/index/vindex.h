#ifndef RAGD_INDEX_VINDEX_H
#define RAGD_INDEX_VINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* The in-memory vector index of one collection: float32 vectors of one dimension, each
 * tagged with its chunk id and its document's row id. Exact search by dot product
 * (vectors are stored L2-normalised, so this is cosine similarity), written as a plain
 * loop over contiguous floats so the compiler vectorises it. No I/O.
 *
 * Thread-safety: every function may be called from any thread; searches share a
 * read lock, add/remove take the write lock. */
typedef struct vindex vindex;

typedef struct {
    int64_t chunk_id;
    int64_t doc_rowid;
    float score; /* cosine similarity, higher is better */
} vindex_hit;

/* Returns true when a document's chunks may be returned. */
typedef bool (*vindex_filter_fn)(int64_t doc_rowid, void *arg);

vindex *vindex_new(size_t dim); /* NULL on bad dim (0 or > 8192) or no memory */
void vindex_free(vindex *ix);   /* NULL ok */
size_t vindex_dim(const vindex *ix);
size_t vindex_count(vindex *ix);

/* Adds one vector (copied, and normalised if it is not). A chunk id already present is
 * replaced. */
ragd_err vindex_add(vindex *ix, int64_t chunk_id, int64_t doc_rowid, const float *vec);
/* As vindex_add of each of the n vectors (rows[i]: dim floats) in order, faster: one lock,
 * and the int8 copy written a block of rows at a time. A row that vindex_add would refuse
 * is skipped (counted in *failed, NULL ok) and the others are added; returns the first
 * refusal's error, RAGD_OK when none. Allocates only when reservations do not cover the
 * new rows. */
ragd_err vindex_add_rows(vindex *ix, size_t n, const int64_t *chunk_ids, const int64_t *doc_rowids,
                         const float *const *rows, size_t *failed);
/* Makes room for k more rows on top of those in use and those reserved before, so that
 * adds of new chunk ids cannot fail for want of memory until vindex_release gives the
 * rows back (the store reserves before COMMIT, adds after it: see rag_index_on_commit).
 * RAGD_ENOMEM (nothing changed) or RAGD_ETOOBIG. */
ragd_err vindex_reserve(vindex *ix, size_t k);
void vindex_release(vindex *ix, size_t k);
/* Removes every vector of a document; returns how many went. */
size_t vindex_remove_doc(vindex *ix, int64_t doc_rowid);

/* Top-k by similarity to query (normalised internally), best first, ties by lower
 * chunk id. Only documents for which filter returns true count (filter NULL = all).
 * Writes at most k hits to out and returns how many. */
size_t vindex_search(vindex *ix, const float *query, size_t k, vindex_filter_fn filter, void *arg,
                     vindex_hit *out);

/* A set of indexes keyed by collection id, for the whole process. Thread-safe.
 * vindex_set_get returns the index (creating it with `dim` when create is true; NULL when
 * absent and !create, or when an existing index has another dim). The set owns the
 * indexes; vindex_set_drop frees one. Callers must not hold a vindex across a drop of
 * the same collection: ragd drops only from the store's writer thread after the
 * collection is gone, and searches look the index up per query. */
typedef struct vindex_set vindex_set;
vindex_set *vindex_set_new(void);
void vindex_set_free(vindex_set *set);
vindex *vindex_set_get(vindex_set *set, int64_t collection_id, size_t dim, bool create);
void vindex_set_drop(vindex_set *set, int64_t collection_id);
/* Puts ix (owned by the set from now on) in place of the collection's index and returns the
 * one it replaced (the caller frees it; NULL when there was none). Never fails when the
 * collection has an index already; when it has none, ix is added, and on no memory (or
 * VINDEX_SET_MAX) ix itself comes back, not taken. Same rule as for a drop: nobody may hold
 * the old index across the call. */
vindex *vindex_set_replace(vindex_set *set, int64_t collection_id, vindex *ix);

#endif
