#ifndef RAGD_APP_H
#define RAGD_APP_H

/* The explicit context handed to HTTP handlers: what the server wired together. Owned by
 * server.c; handlers read it and never free any of it. */
#include <stdatomic.h>
#include <stdbool.h>

#include "config.h"
#include "http/body_budget.h"

struct event_base;
typedef struct loopq loopq;
typedef struct workpool workpool;
typedef struct store store;
typedef struct rag_index rag_index;
typedef struct http_server http_server;
typedef struct upstream_client upstream_client;
typedef struct llm llm;
typedef struct rag_engine rag_engine;
typedef struct cache cache;
typedef struct ratelimit ratelimit;
typedef struct rag_reembed rag_reembed;
typedef struct rerank rerank;

typedef struct app {
    ragd_config cfg;
    struct event_base *base;
    loopq *lq;
    workpool *pool;        /* queries, retrieval, store reads, every other deferred handler */
    workpool *ingest_pool; /* ingest and re-embedding (RAGD_INGEST_WORKERS, niced threads) */
    store *st;
    rag_index *index;
    http_server *http;
    upstream_client *upstream;     /* HTTP client for the LLM backends (NULL: extractive only) */
    llm *generator;                /* the configured generator backend(s), or NULL */
    const char *generator_name;    /* "ollama", "openai" or "extractive" */
    llm *embedder;                 /* the backend(s) embedding for upstream collections, or NULL */
    const char *embedder_name;     /* "ollama", "openai" or "builtin" */
    llm *llms[2];                  /* what generator and embedder point into (Ollama, OpenAI) */
    rag_engine *engine;            /* the query pipeline (rag/engine.h) */
    rag_reembed *reembed;          /* background re-embedding jobs (rag/reembed.h) */
    rerank *reranker;              /* RAGD_RERANKER (rag/rerank.h), NULL when off */
    ratelimit *rate_query;         /* per-client limits (util/ratelimit.h), NULL when off */
    ratelimit *rate_ingest;
    cache *cache;                  /* the semantic answer cache; NULL when RAGD_CACHE=off (or not
                                    * made): /metrics then shows its families at 0 */
    body_budget body_budget; /* request-body bytes held (RAGD_MAX_BODY_BYTES_TOTAL), http/conn.c */
    char db_path[1200];
    atomic_bool ready;    /* store open and vector index loaded, not draining */
    atomic_bool draining; /* shutdown began (SIGTERM): readiness off, listener closed */
    atomic_bool stopping; /* the grace period is over: workers, store and generator go away */
    double started_ms;
} app;

#endif
