#ifndef RAGD_RAG_RERANK_H
#define RAGD_RAG_RERANK_H

/* The reranker (docs/internals/rerank.md): scores a query's candidate passages for the
 * question, all calls of one query in parallel, so that the engine can reorder them.
 * Two kinds, chosen by RAGD_RERANKER:
 * - http: a rerank service. A URL whose path ends in "/rerank" without "/v1" speaks Hugging
 *   Face TEI ({"query","texts"} → [{"index","score"}]); any other path the Cohere / Jina /
 *   Infinity / llama.cpp shape ({"model","query","documents","top_n"} →
 *   {"results":[{"index","relevance_score"}]}). RAGD_RERANK_BATCH documents per call, behind
 *   its own circuit breaker and bulkhead, through the shared upstream client (pooled
 *   connections); no retries: a reranker that fails leaves the fused order.
 * - llm: a judge on the generation backend — one chat per candidate asking for a 0–10
 *   relevance number, within that backend's own bulkhead and breaker (llm.h). The passage
 *   goes into the prompt fenced (rag/fence.h), as chunk text is untrusted. A reply without a
 *   number leaves that candidate unscored (NAN).
 *
 * Threads: loop thread only, callbacks included.
 * Callbacks (docs/internals/callbacks.md): a task's callback runs exactly once, from the
 * loop, on a later turn than any call of this module — never inside rerank_start,
 * rerank_task_cancel or rerank_cancel_all. After rerank_task_cancel it says
 * RERANK_CANCELLED. The task is freed right after its callback returns. */
#include <stdbool.h>
#include <stddef.h>

#include "upstream/breaker.h"
#include "upstream/bulkhead.h"
#include "util/err.h"

struct event_base;
typedef struct upstream_client upstream_client;
typedef struct llm llm;

typedef enum { RERANK_KIND_OFF = 0, RERANK_KIND_HTTP, RERANK_KIND_LLM } rerank_kind;
/* The wire shape of an http reranker: from the URL's path (auto), or forced (RAGD_RERANK_SHAPE). */
typedef enum { RERANK_SHAPE_AUTO = 0, RERANK_SHAPE_TEI, RERANK_SHAPE_COHERE } rerank_shape;
/* "off", "http", "llm" */
const char *rerank_kind_name(rerank_kind k);

typedef struct {
    rerank_kind kind;
    const char *url;          /* http: the full endpoint (copied) */
    rerank_shape shape;       /* http: auto = TEI when rerank_url_is_tei(url), else Cohere */
    const char *model;        /* http: sent as "model" (Cohere shape; may be ""); llm: the judge's model */
    const char *api_key;      /* http: Bearer token or NULL (copied; never logged) */
    size_t batch;             /* http: documents per call (>= 1) */
    double timeout_ms;        /* one rerank at most this long (the query's deadline may cut it shorter) */
    double connect_timeout_ms;
    size_t max_response_bytes; /* http: one reply's body */
    breaker_config breaker;   /* http */
    bulkhead_config bulkhead; /* http */
    llm *judge;               /* llm: the generator (borrowed; must outlive the reranker) */
    int spotlight;            /* llm: fence_mode of the judge's prompt */
} rerank_config;

/* Defaults: batch 8, timeout 10 s, connect 2 s, replies up to 4 MiB, breaker and bulkhead
 * defaults. */
void rerank_config_default(rerank_config *c);

/* Whether the URL speaks TEI's shape (its path ends in "/rerank" and holds no "/v1/"). */
bool rerank_url_is_tei(const char *url);

typedef enum {
    RERANK_OK = 0,
    RERANK_UNAVAILABLE, /* refused, unreachable, the breaker is open, or an HTTP error */
    RERANK_OVERLOADED,  /* shed by the bulkhead, or the service said it is busy */
    RERANK_TIMEOUT,     /* the deadline passed */
    RERANK_BAD_REPLY,   /* an answer that is not a valid rerank reply */
    RERANK_CANCELLED,
} rerank_status;
const char *rerank_status_name(rerank_status s);

typedef struct rerank rerank;
typedef struct rerank_task rerank_task;

/* kind off: *out = NULL and RAGD_OK. http needs client and url; llm needs judge. RAGD_EINVAL
 * (message in err), RAGD_ENOMEM. */
ragd_err rerank_new(struct event_base *base, upstream_client *client, const rerank_config *cfg, upstream_clock clock,
                    upstream_rand rnd, rerank **out, char *err, size_t errlen);
/* Frees; tasks still alive are dropped without a callback (call rerank_cancel_all and let
 * the loop deliver first). NULL ok. */
void rerank_free(rerank *r);
rerank_kind rerank_get_kind(const rerank *r);

/* The scores of a task's n candidates, in their input order: higher is more relevant, NAN
 * for a candidate that got no score. Valid during the callback. On failure scores is NULL
 * and message says why. */
typedef void (*rerank_cb)(rerank_status st, const float *scores, size_t n, const char *message, void *arg);

/* Scores docs[0..n) (copied) for the query (copied). deadline_ms is absolute on the
 * injected clock. NULL when it cannot start (n == 0, no memory, after rerank_cancel_all):
 * cb will not be called. */
rerank_task *rerank_start(rerank *r, const char *query, size_t query_len, const char *const *docs,
                          const size_t *lens, size_t n, double deadline_ms, rerank_cb cb, void *arg);

/* Stops a task: its calls end now, its callback says RERANK_CANCELLED on a later turn. A
 * no-op once cancelled or once the callback began. */
void rerank_task_cancel(rerank_task *t);

/* Shutdown: every task is cancelled, and rerank_start refuses from now on. */
void rerank_cancel_all(rerank *r);
size_t rerank_task_count(const rerank *r);

/* The new order of n candidates given their scores: order[i] is the index of the candidate
 * that goes to place i. Scored candidates (not NAN) are sorted best first, stably, among
 * the places scored candidates held; unscored ones keep their places. Returns how many were
 * scored. Pure. */
size_t rerank_order(const float *scores, size_t n, size_t *order);

/* For /health and /metrics (http kind; NULL for llm, whose calls show under the generator). */
breaker_registry *rerank_breakers(rerank *r);
bulkhead_set *rerank_bulkheads(rerank *r);
/* Whether an http reranker speaks TEI's shape (else Cohere's). */
bool rerank_is_tei(const rerank *r);
/* The endpoint as it may be shown (credentials redacted), "" for llm. */
const char *rerank_url_shown(const rerank *r);

#endif
