/* `ragd config`: the configuration `ragd serve` would take from this environment (and the
 * RAGD_CONFIG_FILE it names) — every variable config.c reads, its effective value and
 * where it came from: env, the file, or the default. Secrets are never printed. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_int.h"
#include "config.h"
#include "util/url.h"

extern char **environ;

typedef enum {
    V_STR,     /* char array */
    V_URL,     /* char array, credentials redacted */
    V_SIZE,    /* size_t */
    V_UINT,    /* unsigned */
    V_SECONDS, /* double */
    V_ONOFF,   /* bool */
    V_CHOICE,  /* an enum or int indexing `choices` */
    V_SECRET,  /* char array: shown as set or not, never its value */
    V_PATH,    /* a *_FILE or list variable: the environment's text, which is no secret */
} value_kind;

typedef struct {
    const char *name;
    value_kind kind;
    size_t off;
    const char *const *choices;
} value_desc;

#define F(field) offsetof(ragd_config, field)
static const char *const embedders[] = {"auto", "builtin", "ollama", "openai", NULL};
static const char *const generators[] = {"auto", "ollama", "openai", "extractive", NULL};
static const char *const levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const policies[] = {"flag", "block", "off", NULL};
static const char *const spotlights[] = {"fence", "datamark", NULL};
static const char *const rerankers[] = {"off", "http", "llm", NULL};
static const char *const shapes[] = {"auto", "tei", "cohere", NULL};
static const char *const fusions[] = {"weighted", "rrf", NULL};
static const char *const log_formats[] = {"text", "json", NULL};

/* The variables shown from the parsed configuration; the others (listen address, lists,
 * rate limits, fusion weights) are formatted by config_value_special. */
static const value_desc descs[] = {
    {"RAGD_DATA_DIR", V_STR, F(data_dir), NULL},
    {"RAGD_DEFAULT_DB", V_STR, F(default_db), NULL},
    {"RAGD_EMBEDDER", V_CHOICE, F(embedder), embedders},
    {"RAGD_GENERATOR", V_CHOICE, F(generator), generators},
    {"RAGD_POOL_SIZE", V_SIZE, F(pool_size), NULL},
    {"RAGD_WORKERS", V_SIZE, F(workers), NULL},
    {"RAGD_WORKER_QUEUE", V_SIZE, F(worker_queue), NULL},
    {"RAGD_INGEST_WORKERS", V_SIZE, F(ingest_workers), NULL},
    {"RAGD_CHUNK_SIZE", V_SIZE, F(chunk_size), NULL},
    {"RAGD_CHUNK_OVERLAP", V_SIZE, F(chunk_overlap), NULL},
    {"RAGD_CONTEXT_TOKENS", V_SIZE, F(context_tokens), NULL},
    {"RAGD_SHUTDOWN_GRACE_S", V_SECONDS, F(shutdown_grace_s), NULL},
    {"RAGD_MAX_BODY_BYTES", V_SIZE, F(max_body_bytes), NULL},
    {"RAGD_MAX_OUTPUT_BYTES", V_SIZE, F(max_output_bytes), NULL},
    {"RAGD_MIN_SEND_RATE", V_SIZE, F(min_send_rate), NULL},
    {"RAGD_MAX_METADATA_BYTES", V_SIZE, F(max_metadata_bytes), NULL},
    {"RAGD_MAX_RESPONSE_BYTES", V_SIZE, F(max_response_bytes), NULL},
    {"RAGD_MAX_CONNECTIONS", V_SIZE, F(max_connections), NULL},
    {"RAGD_IDLE_TIMEOUT_S", V_UINT, F(idle_timeout_s), NULL},
    {"RAGD_MAX_CONNECTIONS_PER_IP", V_SIZE, F(max_connections_per_ip), NULL},
    {"RAGD_HEADER_TIMEOUT_S", V_UINT, F(header_timeout_s), NULL},
    {"RAGD_BODY_TIMEOUT_S", V_UINT, F(body_timeout_s), NULL},
    {"RAGD_MAX_HEADER_BYTES", V_SIZE, F(max_header_bytes), NULL},
    {"RAGD_MAX_DB_BYTES", V_SIZE, F(max_db_bytes), NULL},
    {"RAGD_LOG_LEVEL", V_CHOICE, F(log_level), levels},
    {"RAGD_LOG_FORMAT", V_CHOICE, F(log_format), log_formats},
    {"OPENAI_BASE_URL", V_URL, F(openai_url), NULL},
    {"OPENAI_API_KEY", V_SECRET, F(openai_api_key), NULL},
    {"RAGD_ADMIN_TOKEN", V_SECRET, F(admin_token), NULL},
    {"LLM_MODEL", V_STR, F(llm_model), NULL},
    {"RAGD_LLM_MODELS", V_STR, F(llm_models), NULL},
    {"EMBED_MODEL", V_STR, F(embed_model), NULL},
    {"RAGD_MAX_CONCURRENT", V_SIZE, F(max_concurrent), NULL},
    {"RAGD_MAX_MODELS", V_SIZE, F(max_models), NULL},
    {"RAGD_MAX_QUEUE", V_SIZE, F(max_queue), NULL},
    {"RAGD_BREAKER_FAILURES", V_SIZE, F(breaker_failures), NULL},
    {"RAGD_BREAKER_RECOVERY_S", V_SECONDS, F(breaker_recovery_s), NULL},
    {"RAGD_EMBED_TIMEOUT_S", V_SECONDS, F(embed_timeout_s), NULL},
    {"RAGD_GENERATE_TIMEOUT_S", V_SECONDS, F(generate_timeout_s), NULL},
    {"RAGD_EMBED_BATCH", V_SIZE, F(embed_batch), NULL},
    {"RAGD_CACHE", V_ONOFF, F(cache_enabled), NULL},
    {"RAGD_CACHE_THRESHOLD", V_SECONDS, F(cache_threshold), NULL},
    {"RAGD_CACHE_MAX_BYTES", V_SIZE, F(cache_max_bytes), NULL},
    {"RAGD_CACHE_TTL_S", V_SECONDS, F(cache_ttl_s), NULL},
    {"RAGD_INJECTION_POLICY", V_CHOICE, F(injection_policy), policies},
    {"RAGD_INJECTION_CHUNK_THRESHOLD", V_SECONDS, F(injection_chunk_threshold), NULL},
    {"RAGD_INJECTION_QUARANTINE", V_ONOFF, F(injection_quarantine), NULL},
    {"RAGD_SPOTLIGHT", V_CHOICE, F(spotlight), spotlights},
    {"RAGD_RERANKER", V_CHOICE, F(reranker), rerankers},
    {"RAGD_RERANK", V_ONOFF, F(rerank_default), NULL},
    {"RAGD_RERANK_URL", V_URL, F(rerank_url), NULL},
    {"RAGD_RERANK_SHAPE", V_CHOICE, F(rerank_shape), shapes},
    {"RAGD_RERANK_MODEL", V_STR, F(rerank_model), NULL},
    {"RAGD_RERANK_BATCH", V_SIZE, F(rerank_batch), NULL},
    {"RAGD_RERANK_API_KEY", V_SECRET, F(rerank_api_key), NULL},
    {"RAGD_RERANK_TIMEOUT_S", V_SECONDS, F(rerank_timeout_s), NULL},
    {"RAGD_RERANK_CANDIDATES", V_SIZE, F(rerank_candidates), NULL},
    {"RAGD_API_KEYS_FILE", V_PATH, 0, NULL},
    {"RAGD_ADMIN_TOKEN_FILE", V_PATH, 0, NULL},
    {"OPENAI_API_KEY_FILE", V_PATH, 0, NULL},
    {"RAGD_RERANK_API_KEY_FILE", V_PATH, 0, NULL},
    {"RAGD_TRUSTED_PROXIES", V_PATH, 0, NULL},
};
#undef F

static const char *env_value(const char *name)
{
    const char *v = getenv(name);
    return v && *v ? v : NULL;
}

static void rate_text(const ratelimit_spec *r, char *out, size_t outlen)
{
    if (r->count == 0)
        snprintf(out, outlen, "0 (no limit)");
    else
        snprintf(out, outlen, "%u/%s", r->count,
                 r->period_s <= 1 ? "second" : r->period_s <= 60 ? "minute" : "hour");
}

/* The variables that are not one field of a simple kind; false when name is none of them. */
static bool config_value_special(const ragd_config *c, const char *name, char *out, size_t outlen)
{
    if (strcmp(name, "RAGD_LISTEN") == 0) {
        bool v6 = strchr(c->listen_host, ':') != NULL;
        snprintf(out, outlen, "%s%s%s:%d", v6 ? "[" : "", c->listen_host, v6 ? "]" : "", c->listen_port);
    } else if (strcmp(name, "OLLAMA_BASE_URL") == 0) {
        size_t len = 0;
        out[0] = '\0';
        for (size_t i = 0; i < c->n_ollama_urls && len + 1 < outlen; i++) {
            char shown[1024];
            url_redact(c->ollama_urls[i], shown, sizeof shown);
            len += (size_t)snprintf(out + len, outlen - len, "%s%s", i ? "," : "", shown);
        }
    } else if (strcmp(name, "RAGD_API_KEYS") == 0) {
        if (c->api_keys.n)
            snprintf(out, outlen, "(set, redacted: %zu keys with the file's)", c->api_keys.n);
        else
            snprintf(out, outlen, "(not set: no authentication)");
    } else if (strcmp(name, "RATE_LIMIT_QUERY") == 0) {
        rate_text(&c->rate_query, out, outlen);
    } else if (strcmp(name, "RAGD_RATE_LIMIT_INGEST") == 0) {
        rate_text(&c->rate_ingest, out, outlen);
    } else if (strcmp(name, "RAGD_MAX_BODY_BYTES_TOTAL") == 0) {
        snprintf(out, outlen, "%zu", config_body_bytes_total(c));
    } else if (strcmp(name, "RAGD_SYNCHRONOUS") == 0) {
        snprintf(out, outlen, "%s", c->synchronous_full ? "full" : "normal");
    } else if (strcmp(name, "RAGD_FUSION") == 0) {
        snprintf(out, outlen, "%s", (int)c->fusion.method < 2 ? fusions[c->fusion.method] : "?");
    } else if (strcmp(name, "RAGD_FUSION_WEIGHTS") == 0) {
        snprintf(out, outlen, "keyword:%g,vector:%g", c->fusion.w_keyword, c->fusion.w_vector);
    } else if (strcmp(name, "RAGD_FUSION_DEPTH") == 0) {
        snprintf(out, outlen, "%zu", c->fusion.depth);
    } else if (strcmp(name, "RAGD_MAX_CHUNKS_PER_DOC") == 0) {
        snprintf(out, outlen, "%zu", c->fusion.max_per_doc);
    } else if (strcmp(name, "RAGD_RELEVANCE_FLOOR") == 0) {
        snprintf(out, outlen, "%g", c->fusion.floor);
    } else {
        return false;
    }
    return true;
}

/* The effective value of one variable as text; loaded is its raw text as read (environment
 * or file), NULL when unset. */
static void config_value(const ragd_config *c, const char *name, const char *loaded, char *out, size_t outlen)
{
    if (config_value_special(c, name, out, outlen))
        return;
    const value_desc *d = NULL;
    for (size_t i = 0; i < sizeof descs / sizeof descs[0]; i++) {
        if (strcmp(descs[i].name, name) == 0)
            d = &descs[i];
    }
    const char *env = loaded && loaded[0] ? loaded : NULL;
    if (!d) {
        /* a variable this listing does not know how to format: its text as read */
        snprintf(out, outlen, "%s", env ? env : "(default)");
        return;
    }
    const char *base = (const char *)c + d->off;
    switch (d->kind) {
    case V_STR:
        snprintf(out, outlen, "%s", base[0] ? base : "(empty)");
        break;
    case V_URL:
        if (base[0])
            url_redact(base, out, outlen);
        else
            snprintf(out, outlen, "(not set)");
        break;
    case V_SIZE:
        snprintf(out, outlen, "%zu", *(const size_t *)(const void *)base);
        break;
    case V_UINT:
        snprintf(out, outlen, "%u", *(const unsigned *)(const void *)base);
        break;
    case V_SECONDS:
        snprintf(out, outlen, "%g", *(const double *)(const void *)base);
        break;
    case V_ONOFF:
        snprintf(out, outlen, "%s", *(const bool *)(const void *)base ? "on" : "off");
        break;
    case V_CHOICE: {
        int i = *(const int *)(const void *)base; /* the enums are int-sized */
        int n = 0;
        while (d->choices[n])
            n++;
        snprintf(out, outlen, "%s", i >= 0 && i < n ? d->choices[i] : "?");
        break;
    }
    case V_SECRET:
        snprintf(out, outlen, "%s", base[0] ? "(set, redacted)" : "(not set)");
        break;
    case V_PATH:
        snprintf(out, outlen, "%s", env ? env : "(not set)");
        break;
    }
}

/* Where variable i's value came from: RAGD_CONFIG_FILE (it wins over the environment), the
 * variable itself, the file variable standing for it, or the default. */
static const char *config_source(const config_raw *raw, size_t i, char *buf, size_t buflen)
{
    const char *name = config_name(i);
    const char *env = env_value(name);
    const char *loaded = raw->values[i];
    if (loaded && loaded[0] && (!env || strcmp(env, loaded) != 0))
        return "file (RAGD_CONFIG_FILE)";
    if (env)
        return "env";
    char file_var[96];
    snprintf(file_var, sizeof file_var, "%.64s_FILE", name);
    for (size_t j = 0; j < config_count(); j++) {
        if (strcmp(config_name(j), file_var) == 0 && raw->values[j] && raw->values[j][0]) {
            snprintf(buf, buflen, "%s (%s)", env_value(file_var) ? "env" : "file", file_var);
            return buf;
        }
    }
    return "default";
}

/* True when name is one config.c reads, or one of the client's. */
static bool config_known(const char *name, size_t len)
{
    static const char *const others[] = {"RAGD_URL", "RAGD_API_KEY", "RAGD_BIN", "RAGD_CONFIG_FILE"};
    for (size_t i = 0; i < config_count(); i++) {
        if (strlen(config_name(i)) == len && strncmp(config_name(i), name, len) == 0)
            return true;
    }
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++) {
        if (strlen(others[i]) == len && strncmp(others[i], name, len) == 0)
            return true;
    }
    return false;
}

int cli_cmd_config(const cli_opts *o)
{
    (void)o;
    static ragd_config c; /* large (key digests, proxy lists): not on the stack */
    config_raw raw = {{0}};
    char err[512];
    int status = CLI_EXIT_OK;
    if (config_load(&c, &raw, err, sizeof err) != 0) {
        fprintf(stderr, "ragd: invalid configuration: %s\n", err);
        status = CLI_EXIT_FAIL;
        /* the values shown are then the ones read before the bad one; the rest are defaults */
    }
    printf("%-32s %-40s %s\n", "VARIABLE", "VALUE", "SOURCE");
    const char *file = env_value("RAGD_CONFIG_FILE");
    printf("%-32s %-40s %s\n", "RAGD_CONFIG_FILE", file ? file : "(not set)", file ? "env" : "default");
    for (size_t i = 0; i < config_count(); i++) {
        char value[2048], srcbuf[160];
        config_value(&c, config_name(i), raw.values[i], value, sizeof value);
        printf("%-32s %-40s %s\n", config_name(i), value, config_source(&raw, i, srcbuf, sizeof srcbuf));
    }
    /* the client's own */
    const char *url = env_value("RAGD_URL");
    char url_shown[2048];
    url_redact(url ? url : CLI_DEFAULT_URL, url_shown, sizeof url_shown); /* user:password@ */
    printf("%-32s %-40s %s\n", "RAGD_URL", url_shown, url ? "env (client)" : "default (client)");
    printf("%-32s %-40s %s\n", "RAGD_API_KEY", env_value("RAGD_API_KEY") ? "(set, redacted)" : "(not set)",
           env_value("RAGD_API_KEY") ? "env (client)" : "default (client)");
    /* a RAGD_ or LLM_ variable nobody reads is most likely a typo */
    for (char **e = environ; e && *e; e++) {
        const char *eq = strchr(*e, '=');
        if (!eq || (strncmp(*e, "RAGD_", 5) != 0 && strncmp(*e, "LLM_", 4) != 0))
            continue;
        size_t len = (size_t)(eq - *e);
        if (!config_known(*e, len))
            fprintf(stderr, "ragd: warning: %.*s is set but ragd reads no such variable (a typo?)\n",
                    (int)(len > 64 ? 64 : len), *e);
    }
    config_raw_free(&raw);
    return status;
}
