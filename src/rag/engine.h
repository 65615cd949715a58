#ifndef RAGD_RAG_ENGINE_H
#define RAGD_RAG_ENGINE_H

/* The query engine (docs/internals/engine.md): one asynchronous pipeline — collection
 * lookup → query embedding → retrieval and fusion → rerank (when asked) → prompt → generation,
 * with the extractive answer as the fallback — that knows nothing of HTTP. /api/query and
 * /api/retrieve are adapters that parse a request into a rag_request and render the
 * events; a chat with a rag/ model on the Ollama- and OpenAI-compatible routes is a third
 * (http/compat.c).
 *
 * Threads and callbacks (docs/internals/callbacks.md): rag_query_start, rag_query_cancel and
 * every sink callback run on the loop thread. on_done runs exactly once per started query,
 * on a later loop turn than any engine call — never inside rag_query_start or
 * rag_query_cancel. The query is freed right after on_done returns; its handle must not be
 * used after that. Whatever the sink's ctx points at must live until on_done. */
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

#include "rag/retrieve.h"
#include "store/store.h"
#include "util/err.h"

struct event_base;
typedef struct loopq loopq;
typedef struct workpool workpool;
typedef struct llm llm;
typedef struct cache cache;
typedef struct rerank rerank;
typedef struct rag_engine rag_engine;
typedef struct rag_query_op rag_query_op;

/* How new collections are embedded (RAGD_EMBEDDER): the builtin embedder, the upstream
 * embedder, or the upstream one when it answers and else the builtin one (auto). */
typedef enum { RAG_EMBED_AUTO = 0, RAG_EMBED_BUILTIN, RAG_EMBED_UPSTREAM } rag_embed_choice;

typedef enum { RAG_PROVIDER_AUTO = 0, RAG_PROVIDER_EXTRACTIVE, RAG_PROVIDER_OLLAMA, RAG_PROVIDER_OPENAI } rag_provider;

/* What is done with a question the prompt-injection screen flags (RAGD_INJECTION_POLICY):
 * answered and marked (flag, the default), refused (block, /api/query only), or not judged. */
typedef enum { RAG_INJECTION_FLAG = 0, RAG_INJECTION_BLOCK, RAG_INJECTION_OFF } rag_injection_policy;

/* What the engine needs, wired by the server. Borrowed: all must outlive the engine. */
typedef struct {
    store *st;
    rag_index *index;
    workpool *pool;             /* queries, retrieval, store reads */
    workpool *ingest_pool;      /* ingest runs and re-embedding (NULL: pool) */
    loopq *lq;
    llm *generator;             /* NULL: extractive answers only */
    const char *generator_name; /* "ollama", "openai" or "extractive" */
    llm *embedder;              /* NULL: no upstream-embedded collections */
    const char *embedder_name;
    bool llm_requested;         /* the user configured an LLM (config_llm_requested) */
    const char *llm_model;      /* LLM_MODEL: the default generation model */
    double generate_timeout_ms;
    double embed_timeout_ms;
    cache *cache;               /* the semantic answer cache (rag/cache.h), or NULL: off */
    const fusion_params *fusion; /* hybrid fusion, per-document cap, relevance floor; NULL = defaults */
    /* ingest (rag/ingest.h) */
    rag_embed_choice embed_choice; /* new collections */
    const char *embed_model;       /* EMBED_MODEL: the upstream model of new collections */
    size_t chunk_size, chunk_overlap; /* new collections (existing ones keep theirs) */
    const atomic_bool *stopping;   /* set when shutdown's grace period is over; NULL: never */
    /* prompt-injection defence (docs/internals/fence.md) */
    rag_injection_policy injection_policy; /* the question's screen */
    double chunk_threshold;        /* a chunk scoring at least this is quarantined at ingest; <= 0: the
                                    * screen's default (guard_quarantine_threshold()) */
    bool quarantine_off;           /* RAGD_INJECTION_QUARANTINE=off: chunks are scored, never quarantined */
    int spotlight;                 /* fence_mode: FENCE_MODE_FENCE (default) or FENCE_MODE_DATAMARK */
    /* reranking (rag/rerank.h) */
    rerank *reranker;              /* NULL: RAGD_RERANKER=off (a request asking is answered unreranked, flagged) */
    size_t rerank_candidates;      /* retrieved and reranked: max(k, this); 0 = k */
    size_t context_tokens;         /* RAGD_CONTEXT_TOKENS: the LLM's context; 0 = by backend and model
                                    * (rag/budget.h) */
} rag_engine_config;

/* The chunk threshold in force: the configured one, else the screen's default. */
float rag_engine_chunk_threshold(const rag_engine_config *cfg);

rag_engine *rag_engine_new(const rag_engine_config *cfg);
void rag_engine_free(rag_engine *e); /* NULL ok; no query may be running */
/* The configuration the engine was made with (for its other modules). */
const rag_engine_config *rag_engine_cfg(const rag_engine *e);

/* Whether the engine uses the LLM backend l now: the user asked for an LLM, or something
 * answered there since start-up (llm_ever_reached). Until then the defaults run on the
 * embedded parts as intended, and an absent backend is no failure. Loop thread. */
bool rag_engine_llm_in_use(const rag_engine *e, const llm *l);

/* ---- a query ---- */

/* One earlier turn of a conversation. */
typedef struct {
    const char *role; /* "user" or "assistant" (other roles are not kept) */
    const char *text;
    size_t len;
} rag_turn;

/* A query's inputs. The strings and the filter's values point into `hold` (a JSON value the
 * request keeps a reference on) or are owned by the request: the request is taken by
 * rag_query_start and freed by the engine (rag_request_cleanup), whatever happens. */
typedef struct {
    json_t *hold;        /* one reference, released by rag_request_cleanup; may be NULL */
    const char *db;      /* collection name */
    const char *text;    /* the question */
    size_t len;
    size_t k;
    rag_method method;
    store_filter filter; /* terms points at `terms`, values into `values` */
    store_filter_term terms[STORE_FILTER_MAX_TERMS];
    store_value *values; /* malloc'd, all terms' values */
    bool generate;       /* /api/query: an answer; false: only the passages */
    bool use_cache;      /* may be answered from (and stored in) the semantic cache */
    rag_provider provider;
    const char *model;   /* the generation model, NULL for the default */
    json_t *options;     /* passed to the LLM (borrowed from hold), or NULL */
    bool include_quarantined; /* retrieve only: quarantined chunks are returned too, marked
                               * (never from or into the cache) */
    bool rerank;         /* reorder the fused candidates with the reranker (the adapter applies
                          * RAGD_RERANK when the request does not say) */
    /* The conversation before the question, oldest first (a chat with a rag/ model, or
     * /api/query's history): malloc'd array freed by rag_request_cleanup, texts borrowed
     * from hold. Retrieval uses the latest turns to make a follow-up question
     * self-contained, and the prompt carries them within its budget (oldest dropped first). */
    rag_turn *history;
    size_t n_history;
    json_t *format;      /* passed to the LLM as the client gave it (borrowed from hold), or NULL */
    json_t *keep_alive;  /* likewise (an Ollama backend keeps the model loaded this long), or NULL */
} rag_request;

void rag_request_cleanup(rag_request *r);

typedef enum {
    RAG_OK = 0,
    RAG_E_NOT_FOUND,  /* no such collection */
    RAG_E_MISMATCH,   /* the collection's embedder is not available here */
    RAG_E_INVALID,    /* the store refused the request (a filter it cannot run) */
    RAG_E_OVERLOADED, /* shed: a queue is full or memory ran out; retry later */
    RAG_E_NOT_READY,  /* the server is shutting down */
    RAG_E_CANCELLED,  /* rag_query_cancel */
    RAG_E_UPSTREAM,   /* a backend the request needs did not answer; retry later (ingest) */
    RAG_E_STORE,      /* the store's writer refused the write; the outcome says why (ingest) */
    RAG_E_INJECTION,  /* the question was refused as a prompt injection (policy block) */
    RAG_E_INTERNAL,   /* a bug or an I/O error */
} rag_status;
const char *rag_status_name(rag_status s);

typedef struct {
    double embed, retrieve, rerank, generate, total;
} rag_timings;

/* What the prompt-injection defence saw in one query. */
typedef struct {
    bool flagged;                /* the question scored at or above the query threshold */
    float score;                 /* the question's score (0 when not judged) */
    const char *rule;            /* the L1 rule that fired (static), or NULL */
    bool output_withheld;        /* the LLM's answer leaked the canary or the system prompt */
    const char *withheld_reason; /* "canary" or "system_prompt" when withheld */
} rag_injection;

/* What a query came to. Valid during the callback that receives it. */
typedef struct {
    rag_status status;
    const char *message;         /* why, when status != RAG_OK */
    const store_collection *coll; /* the collection (NULL before it was looked up) */
    rag_method method;           /* the method actually used (keyword when the embedder failed) */
    const rag_result *res;       /* the passages, best first (NULL before retrieval) */
    const char *answer;          /* generate: the answer; NULL for retrieve */
    const char *provider;        /* who answered: "ollama", "openai", "extractive" */
    const char *model;           /* the LLM's model, NULL for extractive */
    const char *degraded_reason; /* NULL unless the answer or the retrieval is degraded */
    const char *stream_error;    /* the LLM failed after tokens went out through on_token */
    const char *stream_error_code; /* its error code: "upstream_unavailable" or "prompt_injection" */
    const rag_injection *injection; /* never NULL */
    bool cached;                 /* answered from the semantic cache */
    bool reranked;               /* the passages are in the reranker's order (hits carry rerank_score) */
    const char *rerank_skipped_reason; /* the request asked for reranking and it was not done: why */
    rag_timings timings;
    /* generate: the sources the answer cites ([n] markers, checked: rag/citations.h),
     * sorted, each once */
    const int *cited;
    size_t n_cited;
    /* what fitting the prompt to the model's context did; NULL when no prompt was built
     * (extractive, cached, retrieve) */
    const struct rag_prompt_fit_s *prompt;
} rag_outcome;

typedef struct {
    /* The passages are known and an LLM is about to answer (generate only, and only when
     * an LLM is asked): an adapter that streams can prepare (or wait for the first token,
     * so that a query shed by the LLM can still be answered 503). Optional. */
    void (*on_sources)(const rag_outcome *o, void *ctx);
    /* A piece of the LLM's answer; return non-zero to stop generating (the answer so far
     * is then the answer). Pieces are released by the output guard FENCE_HOLDBACK_BYTES
     * behind the LLM (rag/fence.h), so a short answer may come whole in on_done without
     * any on_token. Optional. */
    int (*on_token)(const char *p, size_t n, void *ctx);
    /* Exactly once. */
    void (*on_done)(const rag_outcome *o, void *ctx);
} rag_sink;

/* Starts a query. RAG_OK: *out is the running query, on_done will be called. Any other
 * status (RAG_E_OVERLOADED: the generator is saturated, shed on arrival; RAG_E_NOT_READY:
 * shutting down): nothing started and no callback will come. req is taken either way.
 * Loop thread. */
rag_status rag_query_start(rag_engine *e, rag_request *req, const rag_sink *sink, void *ctx, rag_query_op **out);

/* Stops a query: no on_sources or on_token after this; on_done comes on a later loop turn
 * with RAG_E_CANCELLED, or with the result when the query had already finished. Loop
 * thread; a no-op once on_done began. */
void rag_query_cancel(rag_query_op *q);

#endif
