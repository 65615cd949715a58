#ifndef RAGD_OBS_METRICS_H
#define RAGD_OBS_METRICS_H

/* Prometheus metrics (text exposition format 0.0.4): the process-wide counters and
 * histograms of ragd, plus the state of the store pool and of the upstream breakers and
 * bulkheads read when /metrics is rendered. Label values are bounded: route patterns,
 * methods, status codes, backend URLs, and model names from the configuration (a request
 * may only name LLM_MODEL or one of RAGD_LLM_MODELS; embedding models come from the
 * collections, which take EMBED_MODEL). */
#include <stddef.h>

struct app;

/* One finished HTTP request. route is a route pattern (a static string), method its
 * name. Thread-safe. */
void metrics_http_observe(const char *route, const char *method, int status, double seconds);
/* Documents and chunks committed by an ingest. Thread-safe. */
void metrics_count_ingest(size_t documents, size_t chunks);
/* A request shed with 503 overloaded. Thread-safe. */
void metrics_count_shed(void);
/* One 429 rate_limited answer. */
void metrics_count_rate_limited(void);
/* A prompt-injection verdict acted on (ragd_injection_total): where is "query", "chunk" or
 * "output"; action "blocked", "flagged", "quarantined" or "withheld". n times. Other pairs
 * are not counted. Thread-safe. */
void metrics_count_injection(const char *where, const char *action);
void metrics_count_injection_n(const char *where, const char *action, size_t n);

/* One finished HTTP call to a model backend (every attempt, whatever its outcome):
 * ragd_upstream_request_duration_seconds{backend,op}. backend is the configured URL as
 * shown (userinfo redacted; copied), op "embed", "chat", "models" or "rerank" (a string
 * with static storage: the pointer is kept). At most METRICS_MAX_UPSTREAM series; past
 * that, calls are not observed. Thread-safe. */
void metrics_upstream_observe(const char *backend, const char *op, double seconds);
/* Texts in one embedding batch sent to backend: ragd_embed_batch_size{backend}. Thread-safe. */
void metrics_embed_batch_observe(const char *backend, size_t texts);
/* One answered query or retrieval (ragd_queries_total): method "hybrid", "vector" or
 * "keyword"; generator "llm", "extractive", "cache" or "none" (retrieval). Other values are
 * not counted. Thread-safe. */
void metrics_count_query(const char *method, const char *generator);

/* The whole exposition, malloc'd (free it); NULL on no memory. Loop thread (it reads the
 * loop-only bulkhead state). */
char *metrics_render(struct app *a, size_t *len);

#endif
