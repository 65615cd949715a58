#include "config.h"

#include "util/names.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>


static const char *env_or(const char *name, const char *fallback)
{
    const char *v = getenv(name);
    return (v && *v) ? v : fallback;
}

/* Strict unsigned parse: digits only, within [min, max]. */
static int parse_size(const char *name, const char *v, size_t min, size_t max, size_t *out, char *err,
                      size_t errlen)
{
    char *end = NULL;
    errno = 0;
    unsigned long long n = strtoull(v, &end, 10);
    if (*v < '0' || *v > '9' || errno || *end || n < min || n > max) {
        snprintf(err, errlen, "%s: '%s' is not a whole number from %zu to %zu", name, v, min, max);
        return -1;
    }
    *out = (size_t)n;
    return 0;
}

static int parse_seconds(const char *name, const char *v, double min, double max, double *out, char *err,
                         size_t errlen)
{
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= min && d <= max)) {
        snprintf(err, errlen, "%s: '%s' is not a number of seconds from %g to %g", name, v, min, max);
        return -1;
    }
    *out = d;
    return 0;
}

static int parse_listen(ragd_config *c, const char *v, char *err, size_t errlen)
{
    const char *colon = strrchr(v, ':');
    size_t hostlen = colon ? (size_t)(colon - v) : 0;
    size_t port = 0;
    if (!colon || hostlen == 0 || hostlen >= sizeof c->listen_host ||
        parse_size("RAGD_LISTEN", colon + 1, 0, 65535, &port, err, errlen) != 0) {
        snprintf(err, errlen, "RAGD_LISTEN: '%s' is not HOST:PORT (e.g. 127.0.0.1:8000, [::1]:8000)", v);
        return -1;
    }
    const char *host = v;
    if (host[0] == '[' && hostlen >= 2 && host[hostlen - 1] == ']') {
        host++;
        hostlen -= 2;
    }
    memcpy(c->listen_host, host, hostlen);
    c->listen_host[hostlen] = '\0';
    c->listen_port = (int)port;
    return 0;
}

int config_set(ragd_config *c, const char *name, const char *v, char *err, size_t errlen)
{
    size_t n = 0;
    if (strcmp(name, "RAGD_LISTEN") == 0)
        return parse_listen(c, v, err, errlen);
    if (strcmp(name, "RAGD_DATA_DIR") == 0) {
        if (strlen(v) >= sizeof c->data_dir) {
            snprintf(err, errlen, "RAGD_DATA_DIR: path longer than %zu bytes", sizeof c->data_dir - 1);
            return -1;
        }
        snprintf(c->data_dir, sizeof c->data_dir, "%s", v);
        return 0;
    }
    if (strcmp(name, "RAGD_DEFAULT_DB") == 0) {
        if (!names_db_valid(v)) {
            snprintf(err, errlen, "RAGD_DEFAULT_DB: '%s' is not 1-64 of [A-Za-z0-9_.-] not starting with '.'", v);
            return -1;
        }
        snprintf(c->default_db, sizeof c->default_db, "%s", v);
        return 0;
    }
    if (strcmp(name, "RAGD_EMBEDDER") == 0) {
        if (strcmp(v, "auto") == 0 || strcmp(v, "builtin") == 0) {
            c->embedder = CONFIG_EMBEDDER_BUILTIN;
            return 0;
        }
        if (strcmp(v, "ollama") == 0 || strcmp(v, "openai") == 0)
            snprintf(err, errlen, "RAGD_EMBEDDER: '%s' needs the upstream layer, not in this build; use auto or builtin", v);
        else
            snprintf(err, errlen, "RAGD_EMBEDDER: '%s' is not one of auto, builtin", v);
        return -1;
    }
    if (strcmp(name, "RAGD_GENERATOR") == 0) {
        if (strcmp(v, "auto") == 0 || strcmp(v, "extractive") == 0) {
            c->generator = CONFIG_GENERATOR_EXTRACTIVE;
            return 0;
        }
        if (strcmp(v, "ollama") == 0 || strcmp(v, "openai") == 0)
            snprintf(err, errlen, "RAGD_GENERATOR: '%s' needs the upstream layer, not in this build; use auto or extractive", v);
        else
            snprintf(err, errlen, "RAGD_GENERATOR: '%s' is not one of auto, extractive", v);
        return -1;
    }
    if (strcmp(name, "RAGD_POOL_SIZE") == 0)
        return parse_size(name, v, 1, 256, &c->pool_size, err, errlen);
    if (strcmp(name, "RAGD_WORKERS") == 0)
        return parse_size(name, v, 1, 256, &c->workers, err, errlen);
    if (strcmp(name, "RAGD_WORKER_QUEUE") == 0)
        return parse_size(name, v, 1, 1000000, &c->worker_queue, err, errlen);
    if (strcmp(name, "RAGD_CHUNK_SIZE") == 0)
        return parse_size(name, v, 100, 8000, &c->chunk_size, err, errlen);
    if (strcmp(name, "RAGD_CHUNK_OVERLAP") == 0)
        return parse_size(name, v, 0, 3999, &c->chunk_overlap, err, errlen);
    if (strcmp(name, "RAGD_SHUTDOWN_GRACE_S") == 0)
        return parse_seconds(name, v, 0, 3600, &c->shutdown_grace_s, err, errlen);
    if (strcmp(name, "RAGD_MAX_BODY_BYTES") == 0)
        return parse_size(name, v, 1024, (size_t)1 << 30, &c->max_body_bytes, err, errlen);
    if (strcmp(name, "RAGD_MAX_CONNECTIONS") == 0)
        return parse_size(name, v, 1, 100000, &c->max_connections, err, errlen);
    if (strcmp(name, "RAGD_IDLE_TIMEOUT_S") == 0) {
        if (parse_size(name, v, 1, 86400, &n, err, errlen) != 0)
            return -1;
        c->idle_timeout_s = (unsigned)n;
        return 0;
    }
    if (strcmp(name, "RAGD_SYNCHRONOUS") == 0) {
        if (strcmp(v, "normal") != 0 && strcmp(v, "full") != 0) {
            snprintf(err, errlen, "RAGD_SYNCHRONOUS: '%s' is not one of normal, full", v);
            return -1;
        }
        c->synchronous_full = strcmp(v, "full") == 0;
        return 0;
    }
    if (strcmp(name, "RAGD_LOG_LEVEL") == 0) {
        int lvl = log_parse_level(v);
        if (lvl < 0) {
            snprintf(err, errlen, "RAGD_LOG_LEVEL: '%s' is not one of debug, info, warn, error", v);
            return -1;
        }
        c->log_level = (log_level)lvl;
        return 0;
    }
    snprintf(err, errlen, "%s: unknown setting", name);
    return -1;
}

int config_check(const ragd_config *c, char *err, size_t errlen)
{
    if (c->chunk_overlap >= c->chunk_size / 2) { /* the chunker's own rule, integer half */
        snprintf(err, errlen, "RAGD_CHUNK_OVERLAP: %zu must be less than half of RAGD_CHUNK_SIZE (%zu)",
                 c->chunk_overlap, c->chunk_size);
        return -1;
    }
    return 0;
}

static const char *const config_names[] = {
    "RAGD_LISTEN",      "RAGD_DATA_DIR",         "RAGD_DEFAULT_DB",      "RAGD_EMBEDDER",
    "RAGD_GENERATOR",   "RAGD_POOL_SIZE",        "RAGD_WORKERS",         "RAGD_WORKER_QUEUE",
    "RAGD_CHUNK_SIZE",  "RAGD_CHUNK_OVERLAP",    "RAGD_SHUTDOWN_GRACE_S", "RAGD_MAX_BODY_BYTES",
    "RAGD_MAX_CONNECTIONS", "RAGD_IDLE_TIMEOUT_S", "RAGD_SYNCHRONOUS",   "RAGD_LOG_LEVEL",
};

int config_from_env(ragd_config *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(c->listen_host, sizeof c->listen_host, "127.0.0.1");
    c->listen_port = 8000;
    snprintf(c->data_dir, sizeof c->data_dir, "./data");
    snprintf(c->default_db, sizeof c->default_db, "default");
    c->embedder = CONFIG_EMBEDDER_BUILTIN;
    c->generator = CONFIG_GENERATOR_EXTRACTIVE;
    c->pool_size = 10;
    c->workers = cores > 0 ? (size_t)cores : 2;
    c->worker_queue = 1024;
    c->chunk_size = 1000;
    c->chunk_overlap = 150;
    c->shutdown_grace_s = 10;
    c->max_body_bytes = 10485760;
    c->max_connections = 1024;
    c->idle_timeout_s = 60;
    c->log_level = LOG_INFO;

    for (size_t i = 0; i < sizeof config_names / sizeof *config_names; i++) {
        const char *v = env_or(config_names[i], NULL);
        if (v && config_set(c, config_names[i], v, err, errlen) != 0)
            return -1;
    }
    return config_check(c, err, errlen);
}
