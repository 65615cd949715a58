#ifndef RAGD_CONFIG_H
#define RAGD_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "util/log.h"

/* Server configuration: the environment variables of shared/API.md that this build uses,
 * plus a few RAGD_* of its own (docs/configuration.md). Validated as a whole at start-up:
 * a bad value is an error naming the variable and what it accepts, never a silent default. */
typedef enum { CONFIG_EMBEDDER_BUILTIN } config_embedder;
typedef enum { CONFIG_GENERATOR_EXTRACTIVE } config_generator;

typedef struct {
    char listen_host[256];
    int listen_port; /* 0 = any free port (printed at start-up) */
    char data_dir[1024];
    char default_db[65];
    config_embedder embedder;
    config_generator generator;
    size_t pool_size;       /* RAGD_POOL_SIZE: store read connections */
    size_t workers;         /* RAGD_WORKERS: worker threads, default one per core */
    size_t worker_queue;    /* RAGD_WORKER_QUEUE: jobs waiting before 503 */
    size_t chunk_size;      /* RAGD_CHUNK_SIZE */
    size_t chunk_overlap;   /* RAGD_CHUNK_OVERLAP */
    double shutdown_grace_s;
    size_t max_body_bytes;  /* RAGD_MAX_BODY_BYTES */
    size_t max_connections; /* RAGD_MAX_CONNECTIONS */
    unsigned idle_timeout_s; /* RAGD_IDLE_TIMEOUT_S: a connection idle this long is closed */
    bool synchronous_full;  /* RAGD_SYNCHRONOUS=full */
    log_level log_level;
} ragd_config;

/* Fills c from the environment (defaults for unset variables). Returns 0, or -1 with a
 * message naming the variable in err. */
int config_from_env(ragd_config *c, char *err, size_t errlen);

/* Applies a `--listen HOST:PORT` or `--data DIR` style override (name is the variable it
 * stands for, e.g. "RAGD_LISTEN"). Returns 0 or -1 with a message in err. */
int config_set(ragd_config *c, const char *name, const char *value, char *err, size_t errlen);

/* Cross-field checks (chunk overlap under half the chunk size, ...). 0 or -1 + err. */
int config_check(const ragd_config *c, char *err, size_t errlen);

#endif
