#include "config.h"

#include "util/names.h"
#include "util/url.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
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

static int parse_number(const char *name, const char *v, double min, double max, double *out, char *err,
                        size_t errlen)
{
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || !(d >= min && d <= max)) {
        snprintf(err, errlen, "%s: '%s' is not a number from %g to %g", name, v, min, max);
        return -1;
    }
    *out = d;
    return 0;
}

/* RAGD_FUSION_WEIGHTS: "keyword:W,vector:W" in either order; a list left out weighs 0;
 * weights from 0 to 1000, not both 0 (only their ratio matters). */
static int config_parse_weights(ragd_config *c, const char *v, char *err, size_t errlen)
{
    double w[2] = {0.0, 0.0}; /* keyword, vector */
    bool seen[2] = {false, false};
    const char *p = v;
    while (*p) {
        const char *colon = strchr(p, ':');
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (!colon || (comma && colon > comma))
            goto bad;
        size_t namelen = (size_t)(colon - p);
        int which = namelen == 7 && strncmp(p, "keyword", 7) == 0  ? 0
                    : namelen == 6 && strncmp(p, "vector", 6) == 0 ? 1
                                                                   : -1;
        char num[64];
        size_t numlen = len - namelen - 1;
        if (which < 0 || seen[which] || numlen == 0 || numlen >= sizeof num)
            goto bad;
        memcpy(num, colon + 1, numlen);
        num[numlen] = '\0';
        char *end = NULL;
        errno = 0;
        double d = strtod(num, &end);
        if (errno || end == num || *end || !(d >= 0.0 && d <= 1000.0))
            goto bad;
        w[which] = d;
        seen[which] = true;
        p += len;
        if (*p == ',' && *++p == '\0')
            goto bad; /* a trailing comma */
    }
    if (!(w[0] > 0.0 || w[1] > 0.0))
        goto bad;
    c->fusion.w_keyword = w[0];
    c->fusion.w_vector = w[1];
    return 0;
bad:
    snprintf(err, errlen,
             "RAGD_FUSION_WEIGHTS: '%s' is not keyword:W,vector:W (e.g. keyword:0.85,vector:0.15; each from 0 to "
             "1000, not both 0)",
             v);
    return -1;
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

static bool config_url_ok(const char *v)
{
    return strncmp(v, "http://", 7) == 0 || strncmp(v, "https://", 8) == 0;
}

/* OLLAMA_BASE_URL: one URL or a comma-separated list of them. */
static int config_parse_urls(ragd_config *c, const char *v, char *err, size_t errlen)
{
    size_t n = 0;
    const char *p = v;
    while (*p) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        while (len && *p == ' ') {
            p++;
            len--;
        }
        while (len && p[len - 1] == ' ')
            len--;
        if (n == CONFIG_MAX_BACKENDS || len == 0 || len >= sizeof c->ollama_urls[0]) {
            snprintf(err, errlen, "OLLAMA_BASE_URL: is not 1 to %d comma-separated http(s) URLs",
                     CONFIG_MAX_BACKENDS);
            return -1;
        }
        memcpy(c->ollama_urls[n], p, len);
        c->ollama_urls[n][len] = '\0';
        if (!config_url_ok(c->ollama_urls[n])) {
            char shown[sizeof c->ollama_urls[n] * 3];
            url_redact(c->ollama_urls[n], shown, sizeof shown);
            snprintf(err, errlen, "OLLAMA_BASE_URL: '%s' is not an http:// or https:// URL", shown);
            return -1;
        }
        n++;
        p += len;
        while (*p == ' ')
            p++;
        if (*p == ',')
            p++;
    }
    if (n == 0) {
        snprintf(err, errlen, "OLLAMA_BASE_URL: empty");
        return -1;
    }
    c->n_ollama_urls = n;
    return 0;
}

/* A secret read from a file (the *_FILE variables): the first line, without its newline. */
static int config_read_secret(const char *path, const char *name, char *out, size_t outlen, char *err, size_t errlen)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot read '%s'", name, path);
        return -1;
    }
    char *line = fgets(out, (int)outlen, f);
    fclose(f);
    if (!line) {
        snprintf(err, errlen, "%s: '%s' is empty", name, path);
        return -1;
    }
    out[strcspn(out, "\r\n")] = '\0';
    return 0;
}

/* The API keys of a file (RAGD_API_KEYS_FILE): one entry a line, '#' comments. */
static int config_read_keys(const char *path, apikeys *ks, char *err, size_t errlen)
{
    enum { CAP = 64 * 1024 };
    static char buf[CAP + 1];
    FILE *f = fopen(path, "r");
    if (!f) {
        snprintf(err, errlen, "RAGD_API_KEYS_FILE: cannot read '%s'", path);
        return -1;
    }
    size_t n = fread(buf, 1, CAP + 1, f);
    fclose(f);
    if (n > CAP) {
        snprintf(err, errlen, "RAGD_API_KEYS_FILE: '%s' is over %d bytes", path, CAP);
        return -1;
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', n)) {
        snprintf(err, errlen, "RAGD_API_KEYS_FILE: '%s' holds a NUL byte", path);
        return -1;
    }
    return apikeys_add(ks, buf, '\n', "RAGD_API_KEYS_FILE", err, errlen);
}

/* v as one of choices (its index in *out), or an error listing them. */
static int config_choice(const char *name, const char *v, const char *const *choices, size_t n, int *out, char *err,
                         size_t errlen)
{
    char list[128] = "";
    for (size_t i = 0; i < n; i++) {
        if (strcmp(v, choices[i]) == 0) {
            *out = (int)i;
            return 0;
        }
        snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "", choices[i]);
    }
    snprintf(err, errlen, "%s: '%s' is not one of %s", name, v, list);
    return -1;
}

/* Copies v into a fixed buffer, or an error when it does not fit. */
static int config_copy(const char *name, const char *v, char *dst, size_t dstlen, char *err, size_t errlen)
{
    if (strlen(v) >= dstlen) {
        snprintf(err, errlen, "%s: longer than %zu bytes", name, dstlen - 1);
        return -1;
    }
    snprintf(dst, dstlen, "%s", v);
    return 0;
}

int config_set(ragd_config *c, const char *name, const char *v, char *err, size_t errlen)
{
    size_t n = 0;
    if (strcmp(name, "RAGD_LISTEN") == 0)
        return parse_listen(c, v, err, errlen);
    if (strcmp(name, "RAGD_DATA_DIR") == 0)
        return config_copy(name, v, c->data_dir, sizeof c->data_dir, err, errlen);
    if (strcmp(name, "RAGD_DEFAULT_DB") == 0) {
        if (!names_db_valid(v)) {
            snprintf(err, errlen, "RAGD_DEFAULT_DB: '%s' is not 1-64 of [A-Za-z0-9_.-] not starting with '.'", v);
            return -1;
        }
        snprintf(c->default_db, sizeof c->default_db, "%s", v);
        return 0;
    }
    if (strcmp(name, "RAGD_EMBEDDER") == 0) {
        static const char *const embs[] = {"auto", "builtin", "ollama", "openai"}; /* config_embedder order */
        int i = 0;
        if (config_choice(name, v, embs, 4, &i, err, errlen) != 0)
            return -1;
        c->embedder = (config_embedder)i;
        return 0;
    }
    if (strcmp(name, "RAGD_GENERATOR") == 0) {
        static const char *const gens[] = {"auto", "ollama", "openai", "extractive"}; /* config_generator order */
        int i = 0;
        if (config_choice(name, v, gens, 4, &i, err, errlen) != 0)
            return -1;
        c->generator = (config_generator)i;
        return 0;
    }
    if (strcmp(name, "OLLAMA_BASE_URL") == 0) {
        c->ollama_url_set = true;
        return config_parse_urls(c, v, err, errlen);
    }
    if (strcmp(name, "OPENAI_BASE_URL") == 0) {
        if (!config_url_ok(v) || strlen(v) >= sizeof c->openai_url) {
            char shown[sizeof c->openai_url * 3];
            url_redact(v, shown, sizeof shown);
            snprintf(err, errlen, "OPENAI_BASE_URL: '%s' is not an http:// or https:// URL", shown);
            return -1;
        }
        snprintf(c->openai_url, sizeof c->openai_url, "%s", v);
        return 0;
    }
    if (strcmp(name, "OPENAI_API_KEY") == 0)
        return config_copy(name, v, c->openai_api_key, sizeof c->openai_api_key, err, errlen);
    if (strcmp(name, "RAGD_ADMIN_TOKEN") == 0) {
        if (strlen(v) < 16 || strlen(v) >= sizeof c->admin_token) {
            snprintf(err, errlen, "RAGD_ADMIN_TOKEN: must be 16 to %zu characters", sizeof c->admin_token - 1);
            return -1;
        }
        snprintf(c->admin_token, sizeof c->admin_token, "%s", v);
        return 0;
    }
    if (strcmp(name, "RATE_LIMIT_QUERY") == 0 || strcmp(name, "RAGD_RATE_LIMIT_INGEST") == 0) {
        ratelimit_spec *spec = strcmp(name, "RATE_LIMIT_QUERY") == 0 ? &c->rate_query : &c->rate_ingest;
        if (ratelimit_parse(v, spec) != 0) {
            snprintf(err, errlen, "%s: '%s' is not N/second, N/minute or N/hour (N from 1 to 1000000), or 0", name, v);
            return -1;
        }
        return 0;
    }
    if (strcmp(name, "RAGD_API_KEYS") == 0)
        return apikeys_add(&c->api_keys, v, ',', name, err, errlen);
    if (strcmp(name, "RAGD_API_KEYS_FILE") == 0)
        return config_read_keys(v, &c->api_keys, err, errlen);
    if (strcmp(name, "RAGD_ADMIN_TOKEN_FILE") == 0)
        return config_read_secret(v, "RAGD_ADMIN_TOKEN_FILE", c->admin_token, sizeof c->admin_token, err, errlen);
    if (strcmp(name, "OPENAI_API_KEY_FILE") == 0)
        return config_read_secret(v, "OPENAI_API_KEY_FILE", c->openai_api_key, sizeof c->openai_api_key, err, errlen);
    if (strcmp(name, "LLM_MODEL") == 0 || strcmp(name, "EMBED_MODEL") == 0) {
        char *dst = name[0] == 'L' ? c->llm_model : c->embed_model;
        if (strlen(v) >= sizeof c->llm_model || strpbrk(v, " \t\r\n\"")) {
            snprintf(err, errlen, "%s: '%s' is not a model name", name, v);
            return -1;
        }
        snprintf(dst, sizeof c->llm_model, "%s", v);
        return 0;
    }
    if (strcmp(name, "RAGD_LLM_MODELS") == 0) {
        if (strlen(v) >= sizeof c->llm_models || strpbrk(v, " \t\r\n\"")) {
            snprintf(err, errlen, "RAGD_LLM_MODELS: '%s' is not a comma-separated list of model names", v);
            return -1;
        }
        snprintf(c->llm_models, sizeof c->llm_models, "%s", v);
        return 0;
    }
    if (strcmp(name, "RAGD_MAX_CONCURRENT") == 0)
        return parse_size(name, v, 1, 10000, &c->max_concurrent, err, errlen);
    if (strcmp(name, "RAGD_MAX_MODELS") == 0)
        return parse_size(name, v, 1, 1024, &c->max_models, err, errlen);
    if (strcmp(name, "RAGD_MAX_QUEUE") == 0)
        return parse_size(name, v, 0, 100000, &c->max_queue, err, errlen);
    if (strcmp(name, "RAGD_BREAKER_FAILURES") == 0)
        return parse_size(name, v, 1, 1000, &c->breaker_failures, err, errlen);
    if (strcmp(name, "RAGD_BREAKER_RECOVERY_S") == 0)
        return parse_seconds(name, v, 0.001, 86400, &c->breaker_recovery_s, err, errlen);
    if (strcmp(name, "RAGD_EXTRACT_TIMEOUT_S") == 0)
        return parse_size(name, v, 1, 3600, &c->extract_timeout_s, err, errlen);
    if (strcmp(name, "RAGD_EMBED_TIMEOUT_S") == 0)
        return parse_seconds(name, v, 0.001, 3600, &c->embed_timeout_s, err, errlen);
    if (strcmp(name, "RAGD_GENERATE_TIMEOUT_S") == 0)
        return parse_seconds(name, v, 0.001, 3600, &c->generate_timeout_s, err, errlen);
    if (strcmp(name, "RAGD_EMBED_BATCH") == 0)
        return parse_size(name, v, 1, 2048, &c->embed_batch, err, errlen);
    if (strcmp(name, "RAGD_POOL_SIZE") == 0)
        return parse_size(name, v, 1, 256, &c->pool_size, err, errlen);
    if (strcmp(name, "RAGD_WORKERS") == 0)
        return parse_size(name, v, 1, 256, &c->workers, err, errlen);
    if (strcmp(name, "RAGD_INGEST_WORKERS") == 0)
        return parse_size(name, v, 1, 256, &c->ingest_workers, err, errlen);
    if (strcmp(name, "RAGD_WORKER_QUEUE") == 0)
        return parse_size(name, v, 1, 1000000, &c->worker_queue, err, errlen);
    if (strcmp(name, "RAGD_CHUNK_SIZE") == 0)
        return parse_size(name, v, 100, 8000, &c->chunk_size, err, errlen);
    if (strcmp(name, "RAGD_CHUNK_OVERLAP") == 0)
        return parse_size(name, v, 0, 3999, &c->chunk_overlap, err, errlen);
    if (strcmp(name, "RAGD_CONTEXT_TOKENS") == 0)
        return parse_size(name, v, 512, (size_t)16 << 20, &c->context_tokens, err, errlen);
    if (strcmp(name, "RAGD_SHUTDOWN_GRACE_S") == 0)
        return parse_seconds(name, v, 0, 3600, &c->shutdown_grace_s, err, errlen);
    if (strcmp(name, "RAGD_MAX_METADATA_BYTES") == 0)
        return parse_size(name, v, 256, (size_t)16 << 20, &c->max_metadata_bytes, err, errlen);
    if (strcmp(name, "RAGD_MAX_RESPONSE_BYTES") == 0)
        return parse_size(name, v, 65536, (size_t)1 << 30, &c->max_response_bytes, err, errlen);
    if (strcmp(name, "RAGD_MAX_OUTPUT_BYTES") == 0)
        return parse_size(name, v, 65536, (size_t)1 << 40, &c->max_output_bytes, err, errlen);
    if (strcmp(name, "RAGD_MIN_SEND_RATE") == 0)
        return parse_size(name, v, 0, (size_t)1 << 30, &c->min_send_rate, err, errlen);
    if (strcmp(name, "RAGD_MAX_BODY_BYTES") == 0)
        return parse_size(name, v, 1024, (size_t)1 << 30, &c->max_body_bytes, err, errlen);
    if (strcmp(name, "RAGD_MAX_BODY_BYTES_TOTAL") == 0)
        return parse_size(name, v, 1024, (size_t)1 << 40, &c->max_body_bytes_total, err, errlen);
    if (strcmp(name, "RAGD_MAX_CONNECTIONS") == 0)
        return parse_size(name, v, 1, 100000, &c->max_connections, err, errlen);
    if (strcmp(name, "RAGD_IDLE_TIMEOUT_S") == 0) {
        if (parse_size(name, v, 1, 86400, &n, err, errlen) != 0)
            return -1;
        c->idle_timeout_s = (unsigned)n;
        return 0;
    }
    if (strcmp(name, "RAGD_MAX_CONNECTIONS_PER_IP") == 0)
        return parse_size(name, v, 1, 100000, &c->max_connections_per_ip, err, errlen);
    if (strcmp(name, "RAGD_HEADER_TIMEOUT_S") == 0 || strcmp(name, "RAGD_BODY_TIMEOUT_S") == 0) {
        if (parse_size(name, v, 1, 86400, &n, err, errlen) != 0)
            return -1;
        *(name[5] == 'H' ? &c->header_timeout_s : &c->body_timeout_s) = (unsigned)n;
        return 0;
    }
    if (strcmp(name, "RAGD_MAX_HEADER_BYTES") == 0)
        return parse_size(name, v, 1024, (size_t)1 << 20, &c->max_header_bytes, err, errlen);
    if (strcmp(name, "RAGD_TRUSTED_PROXIES") == 0)
        return cidr_list_parse(&c->trusted_proxies, v, err, errlen);
    if (strcmp(name, "RAGD_SYNCHRONOUS") == 0) {
        static const char *const modes[] = {"normal", "full"};
        int i = 0;
        if (config_choice(name, v, modes, 2, &i, err, errlen) != 0)
            return -1;
        c->synchronous_full = i == 1;
        return 0;
    }
    if (strcmp(name, "RAGD_MAX_DB_BYTES") == 0) {
        /* 0 = no quota; else at least 1 MiB, so that a typo in the unit cannot make every
         * write fail at once. */
        const size_t lo = (size_t)1 << 20, hi = (size_t)1 << 50;
        if (parse_size(name, v, 0, hi, &n, err, errlen) != 0 || (n != 0 && n < lo)) {
            snprintf(err, errlen, "RAGD_MAX_DB_BYTES: '%s' is not 0 (no quota) or a whole number of bytes from %zu to %zu",
                     v, lo, hi);
            return -1;
        }
        c->max_db_bytes = n;
        return 0;
    }
    if (strcmp(name, "RAGD_FUSION") == 0) {
        static const char *const methods[] = {"weighted", "rrf"}; /* fusion_method order */
        int i = 0;
        if (config_choice(name, v, methods, 2, &i, err, errlen) != 0)
            return -1;
        c->fusion.method = (fusion_method)i;
        return 0;
    }
    if (strcmp(name, "RAGD_FUSION_WEIGHTS") == 0)
        return config_parse_weights(c, v, err, errlen);
    if (strcmp(name, "RAGD_FUSION_DEPTH") == 0)
        return parse_size(name, v, 1, 1000, &c->fusion.depth, err, errlen);
    if (strcmp(name, "RAGD_MAX_CHUNKS_PER_DOC") == 0)
        return parse_size(name, v, 0, 100, &c->fusion.max_per_doc, err, errlen);
    if (strcmp(name, "RAGD_RELEVANCE_FLOOR") == 0)
        return parse_number(name, v, 0.0, 1.0, &c->fusion.floor, err, errlen);
    if (strcmp(name, "RAGD_CACHE") == 0) {
        static const char *const modes[] = {"off", "on"};
        int i = 0;
        if (config_choice(name, v, modes, 2, &i, err, errlen) != 0)
            return -1;
        c->cache_enabled = i == 1;
        return 0;
    }
    if (strcmp(name, "RAGD_CACHE_THRESHOLD") == 0) {
        char *end = NULL;
        errno = 0;
        double t = strtod(v, &end);
        if (errno || end == v || *end || !(t > 0 && t <= 1)) {
            snprintf(err, errlen, "RAGD_CACHE_THRESHOLD: '%s' is not a number greater than 0 and at most 1", v);
            return -1;
        }
        c->cache_threshold = t;
        return 0;
    }
    if (strcmp(name, "RAGD_CACHE_MAX_BYTES") == 0) /* 1 MiB at least: a unit typo must not make it useless */
        return parse_size(name, v, (size_t)1 << 20, (size_t)1 << 40, &c->cache_max_bytes, err, errlen);
    if (strcmp(name, "RAGD_CACHE_TTL_S") == 0)
        return parse_seconds(name, v, 1, 2592000, &c->cache_ttl_s, err, errlen);
    if (strcmp(name, "RAGD_RERANKER") == 0) {
        static const char *const kinds[] = {"off", "http", "llm"}; /* rerank_kind order */
        return config_choice(name, v, kinds, 3, &c->reranker, err, errlen);
    }
    if (strcmp(name, "RAGD_RERANK_SHAPE") == 0) {
        static const char *const shapes[] = {"auto", "tei", "cohere"}; /* rerank_shape order */
        return config_choice(name, v, shapes, 3, &c->rerank_shape, err, errlen);
    }
    if (strcmp(name, "RAGD_RERANK") == 0) {
        static const char *const modes[] = {"off", "on"};
        int i = 0;
        if (config_choice(name, v, modes, 2, &i, err, errlen) != 0)
            return -1;
        c->rerank_default = i == 1;
        return 0;
    }
    if (strcmp(name, "RAGD_RERANK_URL") == 0) {
        if (!config_url_ok(v) || strlen(v) >= sizeof c->rerank_url) {
            char shown[sizeof c->rerank_url * 3];
            url_redact(v, shown, sizeof shown);
            snprintf(err, errlen, "RAGD_RERANK_URL: '%s' is not an http:// or https:// URL", shown);
            return -1;
        }
        snprintf(c->rerank_url, sizeof c->rerank_url, "%s", v);
        return 0;
    }
    if (strcmp(name, "RAGD_RERANK_MODEL") == 0) {
        if (strlen(v) >= sizeof c->rerank_model || strpbrk(v, " \t\r\n\"")) {
            snprintf(err, errlen, "RAGD_RERANK_MODEL: '%s' is not a model name", v);
            return -1;
        }
        snprintf(c->rerank_model, sizeof c->rerank_model, "%s", v);
        return 0;
    }
    if (strcmp(name, "RAGD_RERANK_BATCH") == 0)
        return parse_size(name, v, 1, 1000, &c->rerank_batch, err, errlen);
    if (strcmp(name, "RAGD_RERANK_CANDIDATES") == 0)
        return parse_size(name, v, 1, 100, &c->rerank_candidates, err, errlen);
    if (strcmp(name, "RAGD_RERANK_TIMEOUT_S") == 0)
        return parse_seconds(name, v, 0.001, 3600, &c->rerank_timeout_s, err, errlen);
    if (strcmp(name, "RAGD_RERANK_API_KEY") == 0)
        return config_copy(name, v, c->rerank_api_key, sizeof c->rerank_api_key, err, errlen);
    if (strcmp(name, "RAGD_RERANK_API_KEY_FILE") == 0)
        return config_read_secret(v, "RAGD_RERANK_API_KEY_FILE", c->rerank_api_key, sizeof c->rerank_api_key, err,
                                  errlen);
    if (strcmp(name, "RAGD_INJECTION_POLICY") == 0) {
        static const char *const policies[] = {"flag", "block", "off"}; /* rag_injection_policy order */
        return config_choice(name, v, policies, 3, &c->injection_policy, err, errlen);
    }
    if (strcmp(name, "RAGD_INJECTION_CHUNK_THRESHOLD") == 0) {
        char *end = NULL;
        errno = 0;
        double t = strtod(v, &end);
        if (errno || end == v || *end || !(t > 0 && t <= 1)) {
            snprintf(err, errlen, "RAGD_INJECTION_CHUNK_THRESHOLD: '%s' is not a number greater than 0 and at most 1", v);
            return -1;
        }
        c->injection_chunk_threshold = t;
        return 0;
    }
    if (strcmp(name, "RAGD_INJECTION_QUARANTINE") == 0) {
        static const char *const modes[] = {"off", "on"};
        int i = 0;
        if (config_choice(name, v, modes, 2, &i, err, errlen) != 0)
            return -1;
        c->injection_quarantine = i == 1;
        return 0;
    }
    if (strcmp(name, "RAGD_SPOTLIGHT") == 0) {
        static const char *const modes[] = {"fence", "datamark"}; /* fence_mode order */
        return config_choice(name, v, modes, 2, &c->spotlight, err, errlen);
    }
    if (strcmp(name, "RAGD_LOG_FORMAT") == 0) {
        int f = log_parse_format(v);
        if (f < 0) {
            snprintf(err, errlen, "RAGD_LOG_FORMAT: '%s' is not one of text, json", v);
            return -1;
        }
        c->log_format = (log_format)f;
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
    if (c->generator == CONFIG_GENERATOR_OPENAI && !c->openai_url[0]) {
        snprintf(err, errlen, "RAGD_GENERATOR: 'openai' needs OPENAI_BASE_URL");
        return -1;
    }
    if (c->embedder == CONFIG_EMBEDDER_OPENAI && !c->openai_url[0]) {
        snprintf(err, errlen, "RAGD_EMBEDDER: 'openai' needs OPENAI_BASE_URL");
        return -1;
    }
    if (config_body_bytes_total(c) < c->max_body_bytes) {
        snprintf(err, errlen, "RAGD_MAX_BODY_BYTES_TOTAL: %zu is below RAGD_MAX_BODY_BYTES (%zu): no body that large "
                 "could ever be read", config_body_bytes_total(c), c->max_body_bytes);
        return -1;
    }
    if (c->chunk_overlap >= c->chunk_size / 2) { /* the chunker's own rule, integer half */
        snprintf(err, errlen, "RAGD_CHUNK_OVERLAP: %zu must be less than half of RAGD_CHUNK_SIZE (%zu)",
                 c->chunk_overlap, c->chunk_size);
        return -1;
    }
    if (c->reranker == 1 && !c->rerank_url[0]) {
        snprintf(err, errlen, "RAGD_RERANKER=http needs RAGD_RERANK_URL, the rerank service's full endpoint "
                              "(e.g. http://127.0.0.1:8080/rerank for TEI, http://127.0.0.1:8080/v1/rerank for llama.cpp)");
        return -1;
    }
    if (c->reranker == 2 && c->generator == CONFIG_GENERATOR_EXTRACTIVE) {
        snprintf(err, errlen, "RAGD_RERANKER=llm needs an LLM generator, and RAGD_GENERATOR is extractive");
        return -1;
    }
    if (c->max_connections_per_ip != 0 && c->max_connections_per_ip >= c->max_connections) {
        snprintf(err, errlen, "RAGD_MAX_CONNECTIONS_PER_IP: %zu must be below RAGD_MAX_CONNECTIONS (%zu)",
                 c->max_connections_per_ip, c->max_connections);
        return -1;
    }
    return 0;
}

static const char *const config_names[] = {
    "RAGD_LISTEN",      "RAGD_DATA_DIR",         "RAGD_DEFAULT_DB",      "RAGD_EMBEDDER",
    "RAGD_GENERATOR",   "RAGD_POOL_SIZE",        "RAGD_WORKERS",         "RAGD_WORKER_QUEUE", "RAGD_INGEST_WORKERS",
    "RAGD_CHUNK_SIZE",  "RAGD_CHUNK_OVERLAP",    "RAGD_SHUTDOWN_GRACE_S", "RAGD_MAX_BODY_BYTES", "RAGD_MAX_BODY_BYTES_TOTAL", "RAGD_MAX_OUTPUT_BYTES", "RAGD_MIN_SEND_RATE",
    "RAGD_MAX_CONNECTIONS", "RAGD_IDLE_TIMEOUT_S", "RAGD_SYNCHRONOUS",   "RAGD_LOG_LEVEL",
    "OLLAMA_BASE_URL",  "OPENAI_BASE_URL",       "OPENAI_API_KEY",       "OPENAI_API_KEY_FILE",
    "LLM_MODEL",        "EMBED_MODEL",           "RAGD_MAX_CONCURRENT",  "RAGD_MAX_QUEUE",
    "RAGD_BREAKER_FAILURES", "RAGD_BREAKER_RECOVERY_S", "RAGD_EMBED_TIMEOUT_S", "RAGD_GENERATE_TIMEOUT_S", "RAGD_EXTRACT_TIMEOUT_S",
    "RAGD_EMBED_BATCH", "RAGD_ADMIN_TOKEN", "RAGD_ADMIN_TOKEN_FILE", "RAGD_LLM_MODELS", "RAGD_MAX_MODELS",
    "RAGD_MAX_DB_BYTES", "RAGD_CACHE",         "RAGD_CACHE_THRESHOLD", "RAGD_CACHE_MAX_BYTES",
    "RAGD_CACHE_TTL_S", "RAGD_FUSION",         "RAGD_FUSION_WEIGHTS",  "RAGD_FUSION_DEPTH",
    "RAGD_MAX_CHUNKS_PER_DOC", "RAGD_RELEVANCE_FLOOR", "RAGD_API_KEYS", "RAGD_API_KEYS_FILE",
    "RATE_LIMIT_QUERY", "RAGD_RATE_LIMIT_INGEST", "RAGD_MAX_METADATA_BYTES", "RAGD_MAX_RESPONSE_BYTES",
    "RAGD_INJECTION_POLICY", "RAGD_INJECTION_CHUNK_THRESHOLD", "RAGD_INJECTION_QUARANTINE", "RAGD_SPOTLIGHT",
    "RAGD_MAX_CONNECTIONS_PER_IP", "RAGD_HEADER_TIMEOUT_S", "RAGD_BODY_TIMEOUT_S", "RAGD_MAX_HEADER_BYTES",
    "RAGD_TRUSTED_PROXIES",
    "RAGD_RERANKER", "RAGD_RERANK", "RAGD_RERANK_URL", "RAGD_RERANK_MODEL", "RAGD_RERANK_BATCH",
    "RAGD_RERANK_CANDIDATES", "RAGD_RERANK_TIMEOUT_S", "RAGD_RERANK_SHAPE", "RAGD_RERANK_API_KEY", "RAGD_RERANK_API_KEY_FILE",
    "RAGD_CONTEXT_TOKENS", "RAGD_LOG_FORMAT",
};
#define CONFIG_N_NAMES (sizeof config_names / sizeof *config_names)
_Static_assert(CONFIG_N_NAMES <= CONFIG_MAX_NAMES, "config_raw holds every variable");

size_t config_count(void) { return CONFIG_N_NAMES; }

size_t config_body_bytes_total(const ragd_config *c)
{
    if (c->max_body_bytes_total)
        return c->max_body_bytes_total;
    size_t eight = c->max_body_bytes * 8;
    return eight > ((size_t)256 << 20) ? eight : (size_t)256 << 20;
}
const char *config_name(size_t i) { return i < CONFIG_N_NAMES ? config_names[i] : NULL; }

void config_raw_free(config_raw *raw)
{
    for (size_t i = 0; raw && i < CONFIG_MAX_NAMES; i++) {
        if (raw->values[i]) /* some are secrets */
            explicit_bzero(raw->values[i], strlen(raw->values[i]));
        free(raw->values[i]);
        raw->values[i] = NULL;
    }
}

bool config_raw_differs(const config_raw *a, const config_raw *b, size_t i)
{
    const char *x = a->values[i], *y = b->values[i];
    if (!x || !y)
        return x != y;
    return strcmp(x, y) != 0;
}

static ssize_t config_index_of(const char *name, size_t len)
{
    for (size_t i = 0; i < CONFIG_N_NAMES; i++)
        if (strlen(config_names[i]) == len && strncmp(config_names[i], name, len) == 0)
            return (ssize_t)i;
    return -1;
}

/* raw->values[i] = a copy of v (n bytes). -1 when out of memory. */
static int config_raw_put(config_raw *raw, size_t i, const char *v, size_t n)
{
    char *copy = strndup(v, n);
    if (!copy)
        return -1;
    free(raw->values[i]);
    raw->values[i] = copy;
    return 0;
}

/* RAGD_CONFIG_FILE: "KEY=VALUE" lines over raw. Blank lines and lines starting with '#'
 * are skipped, an "export " before the key is allowed, blanks around key and value are
 * dropped, and a value in matching single or double quotes loses them (the subset of a
 * systemd EnvironmentFile or a shell file that ragd reads). An unknown key, or a line
 * without '=', is an error naming the line. At most 64 KiB. */
static int config_file_overlay(const char *path, config_raw *raw, char *err, size_t errlen)
{
    enum { CAP = 64 * 1024 };
    char *buf = malloc(CAP + 1);
    FILE *f = buf ? fopen(path, "r") : NULL;
    int rc = -1;
    if (!buf) {
        snprintf(err, errlen, "RAGD_CONFIG_FILE: out of memory");
        goto out;
    }
    if (!f) {
        snprintf(err, errlen, "RAGD_CONFIG_FILE: cannot read '%s': %s", path, strerror(errno));
        goto out;
    }
    size_t n = fread(buf, 1, CAP + 1, f);
    if (n > CAP) {
        snprintf(err, errlen, "RAGD_CONFIG_FILE: '%s' is over %d bytes", path, CAP);
        goto out;
    }
    buf[n] = '\0';
    if (memchr(buf, '\0', n)) {
        snprintf(err, errlen, "RAGD_CONFIG_FILE: '%s' holds a NUL byte", path);
        goto out;
    }
    size_t line_no = 0;
    for (char *line = buf; line && *line;) {
        char *next = strchr(line, '\n');
        if (next)
            *next++ = '\0';
        line_no++;
        line[strcspn(line, "\r")] = '\0';
        while (*line == ' ' || *line == '\t')
            line++;
        if (*line == '\0' || *line == '#') {
            line = next;
            continue;
        }
        if (strncmp(line, "export ", 7) == 0)
            line += 7;
        char *eq = strchr(line, '=');
        size_t kn = eq ? (size_t)(eq - line) : 0;
        while (kn > 0 && (line[kn - 1] == ' ' || line[kn - 1] == '\t'))
            kn--;
        ssize_t idx = eq ? config_index_of(line, kn) : -1;
        if (idx < 0) {
            /* never the value: the line may hold a secret */
            snprintf(err, errlen, "RAGD_CONFIG_FILE: '%s' line %zu: %s", path, line_no,
                     eq ? "not a ragd variable (docs/configuration.md lists them)" : "not KEY=VALUE");
            goto out;
        }
        char *v = eq + 1;
        while (*v == ' ' || *v == '\t')
            v++;
        size_t vn = strlen(v);
        while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
            vn--;
        if (vn >= 2 && (v[0] == '"' || v[0] == '\'') && v[vn - 1] == v[0]) {
            v++;
            vn -= 2;
        }
        if (config_raw_put(raw, (size_t)idx, v, vn) != 0) {
            snprintf(err, errlen, "RAGD_CONFIG_FILE: out of memory");
            goto out;
        }
        line = next;
    }
    rc = 0;
out:
    if (f)
        fclose(f);
    free(buf);
    return rc;
}

bool config_llm_requested(const ragd_config *c)
{
    return c->ollama_url_set || c->openai_url[0] || c->generator == CONFIG_GENERATOR_OLLAMA ||
           c->generator == CONFIG_GENERATOR_OPENAI || c->embedder == CONFIG_EMBEDDER_OLLAMA ||
           c->embedder == CONFIG_EMBEDDER_OPENAI;
}

int config_load(ragd_config *c, config_raw *raw, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    snprintf(c->listen_host, sizeof c->listen_host, "127.0.0.1");
    c->listen_port = 8000;
    snprintf(c->data_dir, sizeof c->data_dir, "./data");
    snprintf(c->default_db, sizeof c->default_db, "default");
    c->embedder = CONFIG_EMBEDDER_AUTO;
    c->generator = CONFIG_GENERATOR_AUTO;
    snprintf(c->ollama_urls[0], sizeof c->ollama_urls[0], "http://localhost:11434");
    c->n_ollama_urls = 1;
    snprintf(c->llm_model, sizeof c->llm_model, "llama3.2");
    snprintf(c->embed_model, sizeof c->embed_model, "nomic-embed-text");
    c->max_concurrent = 10;
    c->max_models = 32;
    c->max_queue = 100;
    c->breaker_failures = 5;
    c->breaker_recovery_s = 30;
    c->embed_timeout_s = 30;
    c->generate_timeout_s = 60;
    c->embed_batch = 32;
    c->pool_size = 10;
    c->workers = cores > 0 ? (size_t)cores : 2;
    c->ingest_workers = c->workers;
    c->worker_queue = 1024;
    c->chunk_size = 1000;
    c->chunk_overlap = 150;
    c->shutdown_grace_s = 10;
    c->extract_timeout_s = 30;
    c->max_body_bytes = 10485760;
    c->max_output_bytes = (size_t)256 << 20;
    c->min_send_rate = 16384;
    c->max_metadata_bytes = 65536;
    c->max_response_bytes = (size_t)16 << 20;
    c->max_connections = 1024;
    c->idle_timeout_s = 60;
    c->header_timeout_s = 10;
    c->body_timeout_s = 60;
    c->max_header_bytes = (size_t)64 << 10;
    c->log_level = LOG_INFO;
    fusion_params_default(&c->fusion);
    c->cache_enabled = true;
    c->cache_threshold = 0.95;
    c->cache_max_bytes = (size_t)64 << 20;
    c->cache_ttl_s = 3600;
    c->injection_quarantine = true;
    c->rerank_batch = 8;
    c->rerank_candidates = 20;
    c->rerank_timeout_s = 10;

    c->log_format = LOG_FORMAT_TEXT;

    for (size_t i = 0; i < CONFIG_N_NAMES; i++) {
        const char *v = env_or(config_names[i], NULL);
        if (v && config_raw_put(raw, i, v, strlen(v)) != 0) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
    }
    const char *file = env_or("RAGD_CONFIG_FILE", NULL);
    if (file) {
        if (config_copy("RAGD_CONFIG_FILE", file, c->config_file, sizeof c->config_file, err, errlen) != 0 ||
            config_file_overlay(file, raw, err, errlen) != 0)
            return -1;
    }
    for (size_t i = 0; i < CONFIG_N_NAMES; i++) {
        if (raw->values[i] && raw->values[i][0] && config_set(c, config_names[i], raw->values[i], err, errlen) != 0)
            return -1;
    }
    return config_check(c, err, errlen);
}

int config_from_env(ragd_config *c, char *err, size_t errlen)
{
    config_raw raw = {{0}};
    int rc = config_load(c, &raw, err, errlen);
    config_raw_free(&raw);
    return rc;
}
