#ifndef RAGD_UPSTREAM_LLM_H
#define RAGD_UPSTREAM_LLM_H

/* Calls to the LLM backends — embeddings in batches and streamed chat — with every
 * protection around each attempt (docs/internals/llm.md): host choice (skip OPEN breakers,
 * fewest in flight), a bulkhead per (backend, model) that queues or sheds, a circuit breaker
 * per (backend, operation, model), full-jitter retries on another host within the deadline
 * and a retry budget. Wire formats: Ollama (/api/embed, /api/chat) or OpenAI-compatible
 * (/v1/embeddings, /v1/chat/completions), one codec each (codec.h); breakers and bulkheads
 * through one registry per llm (registry.h).
 *
 * Threads: loop thread only, callbacks included.
 *
 * Callbacks (docs/internals/callbacks.md): a task's final callback (llm_embed_cb, or
 * on_done of a chat) runs exactly once, from the loop, on a later turn than any call of
 * this module — never inside llm_embed, llm_chat, llm_task_cancel or llm_cancel_all. After
 * llm_task_cancel that one callback says LLM_CANCELLED, whatever the task had reached. The
 * task is freed right after its final callback returns; its handle must not be used after
 * that. A function that returns NULL instead of a task never calls back. Inside its own
 * objects the module follows the same rule: bulkhead decisions are delivered from a
 * zero-timeout event, so a release or a cancel never runs another task's code. */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "upstream/breaker.h"
#include "upstream/bulkhead.h"
#include "upstream/client.h"
#include "upstream/inject.h"
#include "upstream/probe.h"
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
    double probe_interval_ms; /* reachability probes of every host (0 = none; see probe.h) */
    size_t max_response_bytes;
    breaker_config breaker;
    bulkhead_config bulkhead;
    retry_policy retry;
    retry_budget_config budget;
    /* The configured models (copied): their breakers and bulkheads are never evicted. Any
     * other model a call names gets them on demand, at most max_models such models at a
     * time (RAGD_MAX_MODELS; docs/internals/codec.md "registry"). */
    const char *const *models;
    size_t n_models;
    size_t max_models;
} llm_config;

/* The defaults (docs/configuration.md: embed 30 s, generate 60 s, batch 32, ...; max_models 32). */
void llm_config_default(llm_config *c);

typedef enum {
    LLM_OK = 0,
    LLM_UNAVAILABLE, /* every host failed or has its breaker open */
    LLM_OVERLOADED,  /* shed by a bulkhead, or the backends are busy: 503 + Retry-After */
    LLM_TIMEOUT,     /* the deadline passed */
    LLM_REJECTED,    /* the backend refused the request itself (4xx other than 404) */
    LLM_NOT_FOUND,   /* the backend does not know the model (404) */
    LLM_BAD_REPLY,   /* the backend answered something that is not a valid reply */
    LLM_CANCELLED,   /* llm_task_cancel or llm_cancel_all: the owner stopped it */
} llm_status;
const char *llm_status_name(llm_status s);

typedef struct llm llm;
typedef struct llm_task llm_task;

ragd_err llm_new(struct event_base *base, upstream_client *client, const llm_config *cfg, upstream_clock clock,
                 upstream_rand rnd, llm **out, char *err, size_t errlen);
/* Frees. Tasks still alive (their final callback not yet run) are dropped without a
 * callback: at shutdown call llm_cancel_all and let the loop deliver first. NULL ok. */
void llm_free(llm *l);

/* Shutdown: every task ends with LLM_CANCELLED on a later loop turn, and from now on
 * llm_embed and llm_chat refuse (NULL). */
void llm_cancel_all(llm *l);
/* Tasks whose final callback has not run yet. */
size_t llm_task_count(const llm *l);

/* Embeddings: n*dim floats in input order (valid during the call), or an error. */
typedef void (*llm_embed_cb)(llm_status st, const float *vectors, size_t dim, const char *message, void *arg);
/* Embeds n >= 1 texts (copied) in batches of cfg.embed_batch, at most hosts ×
 * max_concurrent batches unfinished at a time (each success starts the next), so a large
 * document never fills the bulkhead queues by itself; the first failing batch ends the
 * task (and the others). deadline_ms
 * is absolute on the injected clock. NULL when it cannot start (n == 0, no memory, after
 * llm_cancel_all): cb will not be called. */
llm_task *llm_embed(llm *l, const char *model, const char *const *texts, const size_t *lens, size_t n,
                    double deadline_ms, llm_embed_cb cb, void *arg);

typedef struct {
    double ttfb_ms;
    double total_ms;
    bool model_loaded; /* the backend loaded the model during the call */
    int attempts;
    /* What the backend reported in its last chunk, -1 (or "") when it did not say:
     * token counts (Ollama prompt_eval_count / eval_count, OpenAI usage) and durations in
     * nanoseconds (Ollama only), why it stopped ("stop", "length"). */
    long long prompt_tokens, completion_tokens;
    long long load_ns, prompt_eval_ns, eval_ns;
    char done_reason[16];
} llm_chat_stats;

typedef struct {
    /* Each piece of the answer as it arrives; return non-zero to stop (then on_done says
     * LLM_OK with what was sent). Once a piece was delivered the call is not retried. */
    int (*on_text)(const char *p, size_t n, void *arg);
    void (*on_done)(llm_status st, const char *message, const llm_chat_stats *stats, void *arg);
    void *arg;
} llm_chat_handlers;

/* A place toward the generator held for a request that has not reached it yet (it is
 * still being retrieved), so that shedding on arrival counts it. */
typedef struct {
    llm *l;
    char model[128];
    bool held;
} llm_reservation;

/* Reserves a place toward (every host of) model: LLM_OK and r->held, or LLM_OVERLOADED
 * when the calls in flight, queued and reserved already fill every slot and queue place
 * of every host, or when model is not configured and max_models others are in use — shed
 * the request (503 + Retry-After). */
llm_status llm_reserve(llm *l, const char *model, llm_reservation *r);
/* Gives a reservation back; a no-op when not held. */
void llm_unreserve(llm_reservation *r);

/* Streams a chat completion. reserved (may be NULL) is taken over: the task holds it until
 * it has its own bulkhead place. NULL when it cannot start (no memory, after
 * llm_cancel_all): no callback will run, and *reserved is left to the caller. */
llm_task *llm_chat(llm *l, const char *model, const char *system, const char *user, json_t *options,
                   double deadline_ms, const llm_chat_handlers *h, llm_reservation *reserved);

/* A chat as a client sends it (the Ollama- and OpenAI-compatible routes, and the engine):
 * messages [{"role","content"}] (system messages included, in order), and what passes to the
 * backend as given — options (Ollama's names; an OpenAI-compatible backend gets temperature,
 * top_p, seed, stop, num_predict as max_tokens), format ("json" or a JSON schema; OpenAI:
 * response_format), keep_alive (Ollama only). All borrowed: the call copies what it needs
 * before it returns. NULL fields are left out. */
typedef struct {
    json_t *messages;
    json_t *options;
    json_t *format;
    json_t *keep_alive;
} llm_chat_request;

/* llm_chat with a whole conversation; the same contract (reservation, callbacks, retries
 * until the first piece went out). */
llm_task *llm_chat_messages(llm *l, const char *model, const llm_chat_request *rq, double deadline_ms,
                            const llm_chat_handlers *h, llm_reservation *reserved);

/* What the compatible routes ask a backend about its models, normalised to Ollama's shapes
 * whatever the backend speaks:
 * - LLM_META_MODELS: the list of /api/tags entries {name, model, modified_at, size, digest,
 *   details} (an OpenAI-compatible backend's /v1/models mapped onto them);
 * - LLM_META_SHOW: the /api/show object of `model` (OpenAI: built from /v1/models, or
 *   LLM_NOT_FOUND);
 * - LLM_META_RUNNING: the list of /api/ps entries (OpenAI: an empty list);
 * - LLM_META_VERSION: {"version": "..."} (OpenAI: LLM_REJECTED).
 * One call to one host behind the breaker of (host, "models", model or ""), no retries; the
 * reply is borrowed for the callback. Same callback rule as every task. */
typedef enum { LLM_META_MODELS, LLM_META_SHOW, LLM_META_RUNNING, LLM_META_VERSION } llm_meta_kind;
typedef void (*llm_meta_cb)(llm_status st, json_t *reply, const char *message, void *arg);
llm_task *llm_meta(llm *l, llm_meta_kind what, const char *model, double deadline_ms, llm_meta_cb cb, void *arg);

/* Stops a task: its attempt ends now (slot, permit and HTTP call given back), and its
 * final callback runs on a later loop turn with LLM_CANCELLED. Safe from anywhere on the
 * loop thread, the task's own on_text included; a no-op once cancelled or after the final
 * callback began. */
void llm_task_cancel(llm_task *t);

/* For /health and /metrics: where the breakers and bulkheads live. Those of the configured
 * models stay; those of models named on demand may be removed (registry.h) — iterate them
 * on the loop thread and keep no pointer across loop turns. */
breaker_registry *llm_breakers(llm *l);
bulkhead_set *llm_bulkheads(llm *l);
size_t llm_host_count(const llm *l);
const char *llm_host_url(const llm *l, size_t i);

/* Reachability (probe.h): starts the probes (when probe_interval_ms > 0); every answer of
 * a real call counts as evidence too. */
void llm_probe_start(llm *l);
void llm_host_reach(const llm *l, size_t i, probe_host_info *out);
/* Some host answered since start-up (a probe or a call). */
bool llm_ever_reached(const llm *l);
/* Some host's last evidence is an answer. */
bool llm_reachable(const llm *l);

#endif
