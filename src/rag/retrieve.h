#ifndef RAGD_RAG_RETRIEVE_H
#define RAGD_RAG_RETRIEVE_H

/* Retrieval: vector top-k (in-memory vector index), keyword top-k (in-memory BM25F index,
 * index/kindex.h), and their fusion (weighted normalised scores or reciprocal rank), at most
 * N chunks per document, a relevance floor, with metadata filters; plus keeping both
 * in-memory indexes in step with the store (start-up load and the writer's commit hook). */
#include <stdbool.h>
#include <stddef.h>

#include "rag/fusion.h"
#include "store/store.h"
#include "util/err.h"

typedef struct rag_index rag_index;

rag_index *rag_index_new(void);
void rag_index_free(rag_index *ri); /* NULL ok */

/* Loads every stored embedding into memory (start-up; before the store accepts writes).
 * Returns the number of vectors loaded in *count. */
ragd_err rag_index_load(rag_index *ri, store_reader *r, size_t *count);
/* A store_commit_hook: reserves room for a change before it commits (RAGD_ENOMEM refuses
 * the write), applies it after. arg is the rag_index. */
ragd_err rag_index_on_commit(const store_change *change, void *arg);

typedef enum { RAG_HYBRID = 0, RAG_VECTOR, RAG_KEYWORD } rag_method;
const char *rag_method_name(rag_method m);

typedef struct {
    const char *text;
    size_t len;
    size_t k;
    rag_method method;
    const store_filter *filter; /* NULL = none */
    /* The query's embedding by the collection's own (upstream) embedder, coll->dim floats;
     * NULL: the builtin embedder computes it (builtin collections only). */
    const float *vector;
    /* Fusion, diversity and floor (the server's RAGD_FUSION* settings); NULL = the
     * defaults of fusion_params_default. */
    const fusion_params *fusion;
    /* Quarantined chunks (docs/internals/fence.md) are left out of the result unless this is
     * set (then they come marked: row.quarantined); the next candidates take their places
     * (up to 3 rounds of picking again; after that the result may hold fewer than k). */
    bool include_quarantined;
} rag_query;

typedef struct {
    store_hit_row row;
    double score;    /* similarity-like, higher is better: 1 - distance */
    double distance; /* smaller is better; see docs/api.md */
    bool has_rerank_score; /* the reranker scored this hit (rag/rerank.h) */
    float rerank_score;
    /* A passage of /api/query (rag/passages.h): the chunks row.ordinal ..
     * row.ordinal + n_chunks - 1 merged into row.text. 0 or 1: one chunk as retrieved. */
    int n_chunks;
} rag_hit;

typedef struct {
    rag_hit *hits;
    size_t n;
    double embed_ms;
    double retrieve_ms;
} rag_result;

/* Retrieves the best k chunks of collection coll for q. Chunks that vanish between the
 * index lookup and the fetch (a concurrent replace) are skipped, so every hit is a chunk
 * of one committed snapshot. */
ragd_err rag_retrieve(rag_index *ri, store_reader *r, const store_collection *coll, const rag_query *q,
                      rag_result *out, char *err, size_t errlen);
void rag_result_cleanup(rag_result *res);

#endif
