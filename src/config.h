#ifndef RAGD_CONFIG_H
#define RAGD_CONFIG_H

#include "util/apikeys.h"
#include "util/cidr.h"
#include "util/ratelimit.h"
#include <stdbool.h>
#include <stddef.h>

#include "rag/fusion.h"
#include "util/log.h"

/* Server configuration: the environment variables of docs/configuration.md. Validated as a whole at start-up:
 * a bad value is an error naming the variable and what it accepts, never a silent default. */
typedef enum {
    CONFIG_EMBEDDER_AUTO,    /* new collections: Ollama's EMBED_MODEL if it answers, else builtin */
    CONFIG_EMBEDDER_BUILTIN, /* feature hashing, no model */
    CONFIG_EMBEDDER_OLLAMA,  /* new collections: Ollama's EMBED_MODEL */
    CONFIG_EMBEDDER_OPENAI,  /* new collections: the OpenAI-compatible server's EMBED_MODEL */
} config_embedder;
typedef enum {
    CONFIG_GENERATOR_AUTO,       /* Ollama, degrading to extractive */
    CONFIG_GENERATOR_OLLAMA,     /* Ollama, degrading to extractive (flagged) */
    CONFIG_GENERATOR_OPENAI,     /* an OpenAI-compatible server, degrading likewise */
    CONFIG_GENERATOR_EXTRACTIVE, /* no LLM */
} config_generator;

#define CONFIG_MAX_BACKENDS 16

typedef struct {
    char listen_host[256];
    int listen_port; /* 0 = any free port (printed at start-up) */
    char data_dir[1024];
    char default_db[65];
    config_embedder embedder;
    config_generator generator;
    size_t pool_size;       /* RAGD_POOL_SIZE: store read connections */
    size_t workers;         /* RAGD_WORKERS: worker threads, default one per core */
    size_t ingest_workers;  /* RAGD_INGEST_WORKERS: the ingest pool's threads, default one per core */
    size_t worker_queue;    /* RAGD_WORKER_QUEUE: jobs waiting before 503 */
    size_t chunk_size;      /* RAGD_CHUNK_SIZE */
    size_t chunk_overlap;   /* RAGD_CHUNK_OVERLAP */
    size_t context_tokens;  /* RAGD_CONTEXT_TOKENS: the LLM's context; 0 = by backend and model */
    double shutdown_grace_s;
    size_t extract_timeout_s; /* RAGD_EXTRACT_TIMEOUT_S: reading one uploaded document, whole seconds */
    size_t max_body_bytes;  /* RAGD_MAX_BODY_BYTES */
    /* RAGD_MAX_BODY_BYTES_TOTAL: request-body bytes held in memory by all connections
     * together; 0 = not set, config_body_bytes_total gives the default */
    size_t max_body_bytes_total;
    size_t max_output_bytes; /* RAGD_MAX_OUTPUT_BYTES: bytes queued for all clients together */
    size_t min_send_rate;    /* RAGD_MIN_SEND_RATE: bytes/s a client with a reply waiting must take */
    size_t max_metadata_bytes; /* RAGD_MAX_METADATA_BYTES: a document's metadata as stored JSON */
    size_t max_response_bytes; /* RAGD_MAX_RESPONSE_BYTES: a JSON response body built in memory */
    size_t max_connections; /* RAGD_MAX_CONNECTIONS */
    unsigned idle_timeout_s; /* RAGD_IDLE_TIMEOUT_S: a connection idle this long is closed */
    size_t max_connections_per_ip; /* RAGD_MAX_CONNECTIONS_PER_IP; 0 = default (64, below the total) */
    unsigned header_timeout_s; /* RAGD_HEADER_TIMEOUT_S: request line and headers complete within it */
    unsigned body_timeout_s;   /* RAGD_BODY_TIMEOUT_S: the whole body within it after the headers */
    size_t max_header_bytes;   /* RAGD_MAX_HEADER_BYTES: request line + headers (and trailers) */
    cidr_list trusted_proxies; /* RAGD_TRUSTED_PROXIES: peers whose X-Forwarded-For is believed */
    bool synchronous_full;  /* RAGD_SYNCHRONOUS=full */
    size_t max_db_bytes;    /* RAGD_MAX_DB_BYTES: store quota, 0 = none */
    log_level log_level;
    log_format log_format;  /* RAGD_LOG_FORMAT: text or json */
    char config_file[1024]; /* RAGD_CONFIG_FILE: KEY=VALUE lines read at start and on SIGHUP; "" = none */

    /* the upstream (LLM) layer */
    char ollama_urls[CONFIG_MAX_BACKENDS][256]; /* OLLAMA_BASE_URL, comma-separated */
    size_t n_ollama_urls;
    bool ollama_url_set;      /* OLLAMA_BASE_URL was given (else the default address is tried) */
    char openai_url[256];     /* OPENAI_BASE_URL, "" when unset */
    char openai_api_key[512]; /* OPENAI_API_KEY or OPENAI_API_KEY_FILE; a secret: never logged */
    char admin_token[512];    /* RAGD_ADMIN_TOKEN or RAGD_ADMIN_TOKEN_FILE; "" = admin routes off */
    apikeys api_keys;
    ratelimit_spec rate_query;  /* RATE_LIMIT_QUERY: /api/query and /api/retrieve per client; count 0 = none */
    ratelimit_spec rate_ingest; /* RAGD_RATE_LIMIT_INGEST: /api/ingest per client */         /* RAGD_API_KEYS and RAGD_API_KEYS_FILE (digests); none = no authentication */
    char llm_model[128];      /* LLM_MODEL */
    char llm_models[1024];    /* RAGD_LLM_MODELS: comma-separated models a request may name; "" = LLM_MODEL only */
    char embed_model[128];    /* EMBED_MODEL */
    size_t max_concurrent;    /* RAGD_MAX_CONCURRENT, per backend and model */
    size_t max_models;        /* RAGD_MAX_MODELS: models outside the configuration with breakers at once */
    size_t max_queue;         /* RAGD_MAX_QUEUE */
    size_t breaker_failures;  /* RAGD_BREAKER_FAILURES */
    double breaker_recovery_s; /* RAGD_BREAKER_RECOVERY_S */
    double embed_timeout_s;   /* RAGD_EMBED_TIMEOUT_S */
    double generate_timeout_s; /* RAGD_GENERATE_TIMEOUT_S */
    size_t embed_batch;       /* RAGD_EMBED_BATCH */

    /* hybrid retrieval: RAGD_FUSION, RAGD_FUSION_WEIGHTS, RAGD_FUSION_DEPTH,
     * RAGD_MAX_CHUNKS_PER_DOC, RAGD_RELEVANCE_FLOOR */
    fusion_params fusion;

    /* the semantic answer cache (rag/cache.h) */
    bool cache_enabled;       /* RAGD_CACHE=on|off */
    double cache_threshold;   /* RAGD_CACHE_THRESHOLD: cosine for a semantic hit, 0 < t <= 1 */
    size_t cache_max_bytes;   /* RAGD_CACHE_MAX_BYTES */
    double cache_ttl_s;       /* RAGD_CACHE_TTL_S */

    /* prompt-injection defence (docs/internals/fence.md) */
    int injection_policy;      /* RAGD_INJECTION_POLICY: rag_injection_policy (flag, block, off) */
    double injection_chunk_threshold; /* RAGD_INJECTION_CHUNK_THRESHOLD; 0 = the screen's default */
    bool injection_quarantine; /* RAGD_INJECTION_QUARANTINE=on|off */
    int spotlight;             /* RAGD_SPOTLIGHT: fence_mode (fence, datamark) */

    /* reranking (rag/rerank.h, docs/internals/rerank.md) */
    int reranker;              /* RAGD_RERANKER: rerank_kind (off, http, llm) */
    bool rerank_default;       /* RAGD_RERANK=on|off: a request that does not say `rerank` is reranked */
    char rerank_url[1024];     /* RAGD_RERANK_URL: the full endpoint */
    int rerank_shape;          /* RAGD_RERANK_SHAPE: rerank_shape (auto, tei, cohere) */
    char rerank_model[128];    /* RAGD_RERANK_MODEL: sent to the service; the judge's model for llm ("" = LLM_MODEL) */
    size_t rerank_batch;       /* RAGD_RERANK_BATCH: documents per call */
    char rerank_api_key[512];  /* RAGD_RERANK_API_KEY or RAGD_RERANK_API_KEY_FILE; a secret: never logged */
    double rerank_timeout_s;   /* RAGD_RERANK_TIMEOUT_S: one query's reranking at most */
    size_t rerank_candidates;  /* RAGD_RERANK_CANDIDATES: candidates retrieved and reranked (at least k) */
} ragd_config;

/* Fills c from the environment (defaults for unset variables) and RAGD_CONFIG_FILE when the
 * environment names one: a variable the file sets wins over the environment's. Returns 0,
 * or -1 with a message naming the variable (and the file's line) in err. */
int config_from_env(ragd_config *c, char *err, size_t errlen);

/* The raw value of every variable as the configuration was loaded (environment overlaid by
 * RAGD_CONFIG_FILE), to tell on a reload which variables changed. Values are malloc'd;
 * NULL = unset. Holds secrets: never log a value. */
#define CONFIG_MAX_NAMES 128
typedef struct {
    char *values[CONFIG_MAX_NAMES];
} config_raw;

/* config_from_env that also fills raw (free it with config_raw_free, even on failure). */
int config_load(ragd_config *c, config_raw *raw, char *err, size_t errlen);
void config_raw_free(config_raw *raw);
/* The variables config_load reads, in a fixed order: config_name(i) for i < config_count(). */
size_t config_count(void);
/* The effective RAGD_MAX_BODY_BYTES_TOTAL: the value set, else max(256 MiB, 8 x
 * RAGD_MAX_BODY_BYTES) — eight maximal bodies at once, and never below what the output
 * side may queue by default (RAGD_MAX_OUTPUT_BYTES), so normal use never meets it. */
size_t config_body_bytes_total(const ragd_config *c);
const char *config_name(size_t i);
/* Whether variable i has a different raw value in a and b (set vs unset counts). */
bool config_raw_differs(const config_raw *a, const config_raw *b, size_t i);

/* Applies a `--listen HOST:PORT` or `--data DIR` style override (name is the variable it
 * stands for, e.g. "RAGD_LISTEN"). Returns 0 or -1 with a message in err. */
int config_set(ragd_config *c, const char *name, const char *value, char *err, size_t errlen);

/* Cross-field checks (chunk overlap under half the chunk size, ...). 0 or -1 + err. */
int config_check(const ragd_config *c, char *err, size_t errlen);

/* Whether the user asked for an LLM backend: OLLAMA_BASE_URL or OPENAI_BASE_URL given, or
 * RAGD_GENERATOR / RAGD_EMBEDDER naming a backend. When not, `auto` tries Ollama's default
 * address and, while nothing has answered there, runs on the embedded parts as intended
 * (not a degradation). */
bool config_llm_requested(const ragd_config *c);

#endif
