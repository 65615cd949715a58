#ifndef RAGD_UPSTREAM_LLM_H
#define RAGD_UPSTREAM_LLM_H

/* Calls to the LLM backends — embeddings in batches and streamed chat — with every
 * protection of shared/RESILIENCE.md around each attempt: host choice (skip OPEN breakers,
 * fewest in flight), a bulkhead per (backend, model) that queues or sheds, a circuit breaker
 * per (backend, operation, model), full-jitter retries on another host within the deadline
 * and a retry budget. Wire formats: Ollama (/api/embed, /api/chat) or OpenAI-compatible
 * (/v1/embeddings, /v1/chat/completions).
 *
 * Threads: loop thread only, callbacks included. A task's final callback runs exactly once,
 * never inside the call that started the task (the first attempt runs from the loop),
 * unless llm_task_cancel was called first (then none runs); the task is freed after it. */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "upstream/breaker.h"
#include "upstream/bulkhead.h"
#include "upstream/client.h"
#include "upstream/inject.h"
#include "upstream/retry.h"

struct event_base;

typedef enum { LLM_KIND_OLLAMA, LLM_KIND_OPENAI } llm_kind;

typedef struct {
    llm_kind kind;
    const char *const *urls; /* base URLs, e.g. "http://127.0.0.1:11434" (copied) */
    size_t n_urls;
    const char *api_key;     /* OpenAI bearer token or NULL (copied; never logged) */
    size_t embed_batch;      /* inputs per embed call (RAGD_EMBED_BATCH) */
    double embed_timeout_ms; /* total of one embed call */
    double generate_timeout_ms;
    double connect_timeout_ms;
    double ttfb_timeout_ms;  /* allowance for a model load before the first byte */
    double idle_timeout_ms;  /* gap between stream pieces */
    size_t max_response_bytes;
    breaker_config breaker;
    bulkhead_config bulkhead;
    retry_policy retry;
    retry_budget_config budget;
} llm_config;

/* Defaults of shared/API.md (embed 30 s, generate 60 s, batch 32, ...). */
void llm_config_default(llm_config *c);

typedef enum {
    LLM_OK = 0,
    LLM_UNAVAILABLE, /* every host failed or has its breaker open */
    LLM_OVERLOADED,  /* shed by a bulkhead, or the backends are busy: 503 + Retry-After */
    LLM_TIMEOUT,     /* the deadline passed */
    LLM_REJECTED,    /* the backend refused the request itself (4xx: unknown model, ...) */
    LLM_BAD_REPLY,   /* the backend answered something that is not a valid reply */
} llm_status;
const char *llm_status_name(llm_status s);

typedef struct llm llm;
typedef struct llm_task llm_task;

ragd_err llm_new(struct event_base *base, upstream_client *client, const llm_config *cfg, upstream_clock clock,
                 upstream_rand rnd, llm **out, char *err, size_t errlen);
/* Cancels every task (no callbacks) and frees. NULL ok. */
void llm_free(llm *l);

/* Embeddings: n*dim floats in input order (valid during the call), or an error. */
typedef void (*llm_embed_cb)(llm_status st, const float *vectors, size_t dim, const char *message, void *arg);
/* Embeds n >= 1 texts (copied) in batches of cfg.embed_batch, several batches in flight
 * within the bulkhead. deadline_ms is absolute on the injected clock. NULL when it cannot
 * start (n == 0, no memory): cb will not be called. */
llm_task *llm_embed(llm *l, const char *model, const char *const *texts, const size_t *lens, size_t n,
                    double deadline_ms, llm_embed_cb cb, void *arg);

typedef struct {
    double ttfb_ms;
    double total_ms;
    bool model_loaded; /* the backend loaded the model during the call */
    int attempts;
} llm_chat_stats;

typedef struct {
    /* Each piece of the answer as it arrives; return non-zero to stop (then on_done says
     * LLM_OK with what was sent). Once a piece was delivered the call is not retried. */
    int (*on_text)(const char *p, size_t n, void *arg);
    void (*on_done)(llm_status st, const char *message, const llm_chat_stats *stats, void *arg);
    void *arg;
} llm_chat_handlers;

/* Streams a chat completion. NULL when it cannot start (no memory). */
llm_task *llm_chat(llm *l, const char *model, const char *system, const char *user, json_t *options,
                   double deadline_ms, const llm_chat_handlers *h);

/* Stops a task; none of its callbacks runs afterwards. Not from inside its own callbacks. */
void llm_task_cancel(llm_task *t);

/* For /health and /metrics. */
breaker_registry *llm_breakers(llm *l);
bulkhead_set *llm_bulkheads(llm *l);
size_t llm_host_count(const llm *l);
const char *llm_host_url(const llm *l, size_t i);

#endif
