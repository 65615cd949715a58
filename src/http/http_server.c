#include "http/http_server.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <ctype.h>

#include "app.h"
#include "http/handlers.h"
#include "http/request_int.h"
#include "http/server_int.h"
#include "obs/metrics.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/ratelimit.h"

/* ---- the query string ---- */

/* Splits target's query string (after '?') into req->args: '&'-separated, "key=value" or
 * "key", '+' read as a space, then percent-decoded. Empty pieces are skipped. */
static void http_collect_args(http_request *req, const char *q, size_t n)
{
    size_t i = 0;
    while (i < n && !req->bad_query && !req->args_no_memory) {
        size_t e = i;
        while (e < n && q[e] != '&')
            e++;
        if (e > i) {
            if (req->n_args == HTTP_MAX_ARGS) {
                req->bad_query = true;
                break;
            }
            char piece[HTTP_PARSE_MAX_TARGET + 1];
            size_t pn = e - i;
            memcpy(piece, q + i, pn);
            for (size_t j = 0; j < pn; j++)
                if (piece[j] == '+')
                    piece[j] = ' ';
            const char *eq = memchr(piece, '=', pn);
            size_t kn = eq ? (size_t)(eq - piece) : pn;
            const char *v = eq ? eq + 1 : piece + pn;
            size_t vn = eq ? pn - kn - 1 : 0;
            char *key = http_percent_decode(piece, kn);
            char *value = http_percent_decode(v, vn);
            if (!key || !value) {
                /* A NULL for a well-formed piece means no memory, not a bad request. */
                if (http_percent_valid(piece, kn) && http_percent_valid(v, vn))
                    req->args_no_memory = true;
                else
                    req->bad_query = true;
                free(key);
                free(value);
                break;
            }
            req->args[req->n_args].key = key;
            req->args[req->n_args].value = value;
            req->n_args++;
        }
        i = e + 1;
    }
}

void http_request_id(char *out, const char *given, size_t n)
{
    bool ok = given && n > 0 && n < HTTP_REQUEST_ID_SIZE;
    for (size_t i = 0; ok && i < n; i++)
        ok = isalnum((unsigned char)given[i]) || given[i] == '.' || given[i] == '_' || given[i] == '-' || given[i] == ':';
    if (ok) {
        memcpy(out, given, n);
        out[n] = '\0';
        return;
    }
    unsigned char rnd[16];
    if (hash_random_bytes(rnd, sizeof rnd) != 0)
        memset(rnd, 0, sizeof rnd);
    for (size_t i = 0; i < sizeof rnd; i++)
        snprintf(out + 2 * i, 3, "%02x", rnd[i]);
}

static http_method http_method_of(const char *m)
{
    if (strcmp(m, "GET") == 0)
        return HTTP_GET;
    if (strcmp(m, "POST") == 0)
        return HTTP_POST;
    if (strcmp(m, "DELETE") == 0)
        return HTTP_DELETE;
    if (strcmp(m, "HEAD") == 0)
        return HTTP_HEAD;
    return HTTP_OTHER;
}

/* method_name is NULL when it could not be copied; any other method is "OTHER". */
const char *http_method_label(http_method m)
{
    switch (m) {
    case HTTP_GET: return "GET";
    case HTTP_POST: return "POST";
    case HTTP_DELETE: return "DELETE";
    case HTTP_HEAD: return "HEAD";
    case HTTP_OTHER: break;
    }
    return "OTHER";
}

/* Media type without parameters, lower-cased. */
static void http_media_type(const char *ct, size_t n, char *out, size_t outlen)
{
    size_t o = 0;
    for (size_t i = 0; ct && i < n && ct[i] != ';' && o + 1 < outlen; i++)
        if (!isspace((unsigned char)ct[i]))
            out[o++] = (char)tolower((unsigned char)ct[i]);
    out[o] = '\0';
}

/* The Content-Type's parameters (from its first ';', as sent) into req->content_params;
 * when they do not fit, none are kept and content_params_too_long says so. */
static void http_media_params(http_request *req, const char *ct, size_t n)
{
    const char *semi = ct ? memchr(ct, ';', n) : NULL;
    size_t pn = semi ? n - (size_t)(semi - ct) : 0;
    req->content_params[0] = '\0';
    req->content_params_too_long = pn >= sizeof req->content_params;
    if (semi && !req->content_params_too_long) {
        memcpy(req->content_params, semi, pn);
        req->content_params[pn] = '\0';
    }
}

static bool http_body_type_ok(http_body_kind kind, const char *type)
{
    if (kind == HTTP_BODY_NONE)
        return true;
    if (type[0] == '\0' || strcmp(type, "application/json") == 0)
        return true;
    return kind == HTTP_BODY_INGEST && handlers_ingest_accepts(type);
}

/* The host a client reached us by, for the curl commands of a 415: the Host header when it
 * is a plain host[:port] (1-100 bytes of letters, digits, ".-:[]"), else localhost:PORT. */
static void http_reached_host(const app *a, const http_head *h, const char *buf, char *out, size_t cap)
{
    size_t n = 0;
    const char *v = http_head_get(h, buf, "host", &n);
    bool plain = v && n > 0 && n <= 100;
    for (size_t i = 0; plain && i < n; i++)
        plain = isalnum((unsigned char)v[i]) || strchr(".-:[]", v[i]) != NULL;
    if (plain)
        snprintf(out, cap, "%.*s", (int)n, v);
    else
        snprintf(out, cap, "localhost:%d", a->cfg.listen_port > 0 ? a->cfg.listen_port : 8000);
}

/* 415: names what the route takes, and for /api/ingest how to send a file with curl. */
static void http_reply_unsupported_type(http_request *req, const http_route *route, const char *host)
{
    if (route->post_body != HTTP_BODY_INGEST) {
        http_reply_error(req, 415, "unsupported_media_type",
                         "Content-Type '%s' is not accepted by %s: it takes application/json (or no Content-Type)",
                         req->content_type, req->route_name);
        return;
    }
    bool form = strcmp(req->content_type, "application/x-www-form-urlencoded") == 0;
    char types[HANDLERS_INGEST_RAW_TYPES_MAX];
    handlers_ingest_raw_types(types, sizeof types);
    http_reply_error(req, 415, "unsupported_media_type",
                     "Content-Type '%s' is not accepted by /api/ingest%s. It takes application/json (documents as "
                     "JSON), multipart/form-data (file uploads) or one file as the raw body: %s. Upload files: "
                     "curl -F file=@doc.pdf 'http://%s/api/ingest?db=x'; send one file as it is: curl --data-binary "
                     "@doc.pdf -H 'Content-Type: application/pdf' 'http://%s/api/ingest?db=x&source=doc.pdf'",
                     req->content_type, form ? " (what curl --data-binary sends without -H 'Content-Type: ...')" : "",
                     types, host, host);
}

/* Whether a request changes anything (ingest, create, delete, the admin routes): what a
 * read-only API key may not do. /api/query and /api/retrieve are POSTs that only read. */
static bool http_route_writes(const http_request *req)
{
    if (strncmp(req->route_name, "/api/admin/", 11) == 0)
        return true;
    if (req->method == HTTP_GET || req->dialect != HTTP_DIALECT_RAGD)
        return false; /* the Ollama and OpenAI routes only read (chat, embeddings, model lists) */
    return strcmp(req->route_name, "/api/query") != 0 && strcmp(req->route_name, "/api/retrieve") != 0;
}

/* Rate limits (util/ratelimit.h, docs/api.md "Rate limits"): /api/query and /api/retrieve
 * by RATE_LIMIT_QUERY, /api/ingest by RAGD_RATE_LIMIT_INGEST, per client — its API key when
 * keys are configured (the request has passed http_authorized), else its address. Every
 * answer of a limited route carries X-RateLimit-*; past the limit, 429 rate_limited with
 * Retry-After. Replies and returns false when refused. */
static bool http_rate_allowed(const app *a, http_request *req, const http_conn *c)
{
    bool query = strcmp(req->route_name, "/api/query") == 0 || strcmp(req->route_name, "/api/retrieve") == 0 ||
                 (req->dialect != HTTP_DIALECT_RAGD && req->method == HTTP_POST); /* chat, generate, embed, show */
    ratelimit *rl = query ? a->rate_query : strcmp(req->route_name, "/api/ingest") == 0 ? a->rate_ingest : NULL;
    if (!rl)
        return true;
    char client[600];
    size_t n;
    if (a->cfg.api_keys.n > 0) {
        n = (size_t)snprintf(client, sizeof client, "k:%s", req->credential);
    } else {
        char host[64];
        cidr_addr_format(&c->client, host, sizeof host); /* the peer, or by X-Forwarded-For */
        n = (size_t)snprintf(client, sizeof client, "a:%s", host);
    }
    ratelimit_take(rl, client, n < sizeof client ? n : sizeof client - 1, clock_now_ms(), &req->rate);
    if (req->rate.allowed)
        return true;
    snprintf(req->retry_after, sizeof req->retry_after, "%u", req->rate.retry_s);
    metrics_count_rate_limited();
    http_reply_error(req, 429, "rate_limited", "too many requests: %s allows %u per %s; retry in %u s",
                     query ? "RATE_LIMIT_QUERY" : "RAGD_RATE_LIMIT_INGEST", req->rate.limit,
                     ratelimit_unit(query ? &a->cfg.rate_query : &a->cfg.rate_ingest), req->rate.retry_s);
    return false;
}

/* The routes that need no API key: the health routes (a supervisor has none) and the web
 * page's (/, /assets/app.js, /assets/app.css): they hold no data, and the page must load to
 * ask for a key. */
static bool http_route_open(const char *route_name)
{
    return strncmp(route_name, "/health", 7) == 0 || strcmp(route_name, "/") == 0 ||
           strncmp(route_name, "/assets/", 8) == 0;
}

/* API keys (util/apikeys.h, docs/api.md "Authentication"): with keys configured every route
 * but the open ones (http_route_open) needs one — 401 unauthorized without a valid
 * one, 403 forbidden when a read-only key asks to change something. The admin token
 * (RAGD_ADMIN_TOKEN) counts as a read-write key. Replies and returns false when refused. */
static bool http_authorized(const app *a, http_request *req)
{
    const ragd_config *cfg = &a->cfg;
    if (cfg->api_keys.n == 0 || http_route_open(req->route_name))
        return true;
    apikey_access got = APIKEY_NONE;
    size_t n = strlen(req->credential);
    if (n > 0 && !req->credential_too_long) {
        got = apikeys_check(&cfg->api_keys, req->credential, n);
        size_t tn = strlen(cfg->admin_token);
        if (got == APIKEY_NONE && tn > 0 && n == tn && CRYPTO_memcmp(req->credential, cfg->admin_token, n) == 0)
            got = APIKEY_WRITE;
    }
    if (got == APIKEY_NONE) {
        req->www_authenticate = true;
        http_reply_error(req, 401, "unauthorized", "%s",
                         n > 0 || req->credential_too_long
                             ? "the API key is not valid"
                             : "an API key is needed: send 'Authorization: Bearer KEY' or 'X-API-Key: KEY'");
        return false;
    }
    if (got == APIKEY_READ && http_route_writes(req)) {
        http_reply_error(req, 403, "forbidden", "this API key is read-only: %s %s needs a read-write key",
                         req->method_name, req->route_name);
        return false;
    }
    return true;
}

/* X-Forwarded-For: every such header's value, joined with commas in order, into out; the
 * last header alone when they do not fit together. */
static const char *http_xff(const http_head *h, const char *buf, char *out, size_t cap, size_t *len)
{
    size_t last_len, joined_len;
    const char *last = http_head_last(h, buf, "x-forwarded-for", &last_len);
    if (!last)
        return NULL;
    bool fits = http_head_join(h, buf, "x-forwarded-for", ",", out, cap, &joined_len);
    *len = fits ? joined_len : last_len;
    return fits ? out : last;
}

/* An absolute-form target ("http://host:port/path?query", RFC 9112 3.2.2) as its origin form:
 * the part from the path on (*len updated; empty when the URI has no path: read as "/").
 * Any other target is returned unchanged. */
static const char *http_origin_form(const char *t, size_t *len)
{
    size_t scheme = *len >= 7 && strncasecmp(t, "http://", 7) == 0    ? 7
                    : *len >= 8 && strncasecmp(t, "https://", 8) == 0 ? 8
                                                                       : 0;
    if (scheme == 0)
        return t;
    size_t i = scheme;
    while (i < *len && t[i] != '/' && t[i] != '?')
        i++;
    *len -= i;
    return t + i;
}

/* Credentials: "Authorization: Bearer KEY" (exactly one space or tab after "Bearer")
 * or "X-API-Key: KEY". False when a header of either name comes more than once (ambiguous:
 * which one would be checked?). */
static bool http_credential_headers(const http_head *h, const char *buf, const char **auth, size_t *an,
                                    const char **api_key, size_t *kn)
{
    size_t n_auth = 0, n_key = 0;
    for (size_t i = 0; i < h->n_headers; i++) {
        const http_header_span *f = &h->headers[i];
        const char *name = buf + f->name.off;
        if (f->name.len == 13 && strncasecmp(name, "authorization", 13) == 0) {
            n_auth++;
            *auth = buf + f->value.off;
            *an = f->value.len;
        } else if (f->name.len == 9 && strncasecmp(name, "x-api-key", 9) == 0) {
            n_key++;
            *api_key = buf + f->value.off;
            *kn = f->value.len;
        }
    }
    return n_auth <= 1 && n_key <= 1;
}

bool http_server_begin(http_server *s, http_conn *c, const char *buf)
{
    http_request *req = c->req;
    const http_head *h = &c->head;
    req->t_start_ms = clock_now_ms();
    req->method_name = strndup(buf + h->method.off, h->method.len);
    size_t target_len = h->target.len;
    const char *target = http_origin_form(buf + h->target.off, &target_len);
    const char *q = memchr(target, '?', target_len);
    size_t path_len = q ? (size_t)(q - target) : target_len;
    req->path = path_len > 0 ? strndup(target, path_len) : strdup("/");
    req->method = req->method_name ? http_method_of(req->method_name) : HTTP_OTHER;
    size_t n = 0;
    const char *v = http_head_get(h, buf, "x-request-id", &n);
    http_request_id(req->request_id, v, n);
    v = http_head_get(h, buf, "content-type", &n);
    http_media_type(v, n, req->content_type, sizeof req->content_type);
    http_media_params(req, v, n);
    size_t an = 0, kn = 0;
    const char *auth = NULL, *api_key = NULL;
    bool one_credential = http_credential_headers(h, buf, &auth, &an, &api_key, &kn);
    const char *cred = NULL;
    size_t cn = 0;
    if (auth && an >= 7 && strncasecmp(auth, "Bearer", 6) == 0 && (auth[6] == ' ' || auth[6] == '\t')) {
        cred = auth + 7;
        cn = an - 7;
    } else if (api_key) {
        cred = api_key;
        cn = kn;
    }
    if (cred && cn >= sizeof req->credential)
        req->credential_too_long = true;
    else if (cred)
        snprintf(req->credential, sizeof req->credential, "%.*s", (int)cn, cred);
    v = http_head_get(h, buf, "accept", &n);
    req->accept_sse = v && memmem(v, n, "text/event-stream", 17);
    req->accept_html = http_head_any_contains(h, buf, "accept", "text/html");
    size_t inm_len;
    req->if_none_match_too_long = !http_head_join(h, buf, "if-none-match", ", ", req->if_none_match,
                                                  sizeof req->if_none_match, &inm_len);
    char xff_buf[2048];
    size_t xn = 0;
    const char *xff = http_xff(h, buf, xff_buf, sizeof xff_buf, &xn);
    c->client = cidr_client_of(&s->app->cfg.trusted_proxies, &c->peer, xff, xn);
    if (!req->method_name || !req->path) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return true;
    }
    if (q)
        http_collect_args(req, q + 1, target_len - path_len - 1);
    if (req->args_no_memory) {
        http_reply_error(req, 503, "overloaded", "out of memory while reading the query string");
        return true;
    }
    if (!one_credential) {
        http_reply_error(req, 400, "invalid_json",
                         "more than one Authorization or X-API-Key header: send one credential");
        return true;
    }
    if (req->bad_query) {
        http_reply_error(req, 400, "invalid_json", "bad query string: malformed %%-escape or more than %d arguments",
                         HTTP_MAX_ARGS);
        return true;
    }
    const http_route *route = NULL;
    switch (http_route_match(s->routes, s->n_routes, req, &route)) {
    case HTTP_ROUTE_NOT_FOUND:
        if (strncmp(req->path, "/v1/", 4) == 0 || strcmp(req->path, "/v1") == 0)
            req->dialect = HTTP_DIALECT_OPENAI; /* every /v1 path is OpenAI's */
        http_reply_error(req, 404, "not_found", "no route for %s %s", req->method_name, req->path);
        return true;
    case HTTP_ROUTE_BAD_ENCODING:
        http_reply_error(req, 400, "invalid_json", "bad path: malformed %%-escape");
        return true;
    case HTTP_ROUTE_NO_MEMORY:
        http_reply_error(req, 503, "overloaded", "out of memory while reading the path");
        return true;
    case HTTP_ROUTE_BAD_METHOD:
        http_reply_error(req, 405, "method_not_allowed", "%s is not allowed on %s (allowed: %s)", req->method_name,
                         req->route_name, req->allow);
        return true;
    case HTTP_ROUTE_FOUND:
        break;
    }

    /* A connection on a reserve slot: the last slots are kept for the health routes, so that a
     * supervisor is answered while slow clients hold every other one. */
    if (c->reserve && strncmp(req->route_name, "/health", 7) != 0) {
        snprintf(req->retry_after, sizeof req->retry_after, "1");
        http_reply_error(req, 503, "overloaded", "every connection slot is taken (RAGD_MAX_CONNECTIONS); retry shortly");
        return true;
    }
    if (!http_authorized(s->app, req) || !http_rate_allowed(s->app, req, c))
        return true;
    /* While draining only the health routes answer: a supervisor watches them. */
    if (atomic_load(&s->app->draining) && strncmp(req->route_name, "/health", 7) != 0) {
        snprintf(req->retry_after, sizeof req->retry_after, "1");
        http_reply_error(req, 503, "not_ready", "server is shutting down");
        return true;
    }
    if (!atomic_load(&s->app->ready) &&
        (strncmp(req->route_name, "/api/", 5) == 0 || strncmp(req->route_name, "/v1/", 4) == 0) &&
        strcmp(req->route_name, "/api/pool/stats") != 0) {
        snprintf(req->retry_after, sizeof req->retry_after, "1");
        http_reply_error(req, 503, "not_ready", "server is starting (loading the vector index)");
        return true;
    }
    if (h->has_length && h->content_length > s->app->cfg.max_body_bytes) {
        http_reply_error(req, 413, "payload_too_large",
                         "body of %llu bytes is over RAGD_MAX_BODY_BYTES (%zu bytes): send less per request, or "
                         "raise RAGD_MAX_BODY_BYTES on the server",
                         (unsigned long long)h->content_length, s->app->cfg.max_body_bytes);
        return true;
    }
    /* Ollama reads every body as JSON whatever its Content-Type, and its clients rely on it
     * (`curl URL -d '{...}'`, as in Ollama's own docs, labels the body a form). */
    if (req->method == HTTP_POST && route->dialect != HTTP_DIALECT_OLLAMA &&
        !http_body_type_ok(route->post_body, req->content_type)) {
        char host[128];
        http_reached_host(s->app, h, buf, host, sizeof host);
        http_reply_unsupported_type(req, route, host);
        return true;
    }
    return false;
}

/* ---- accepting ---- */

size_t http_target_loggable(const char *target, size_t len)
{
    const char *q = memchr(target, '?', len);
    size_t n = q ? (size_t)(q - target) : len;
    return n > 200 ? 200 : n;
}

void http_server_refuse_fd(int fd, const char *message, const char *rid_known, bool loud)
{
    /* What the client sent already is read first (a close with unread bytes is a reset,
     * which can destroy the reply on its way), and parsed for the log line and the id. */
    char in[16384];
    size_t have = 0;
    while (have < sizeof in) {
        ssize_t r = recv(fd, in + have, sizeof in - have, MSG_DONTWAIT);
        if (r <= 0)
            break;
        have += (size_t)r;
    }
    http_head h;
    http_head_init(&h, sizeof in);
    bool parsed = !rid_known && http_head_parse(&h, in, have) == HTTP_PARSE_DONE;
    char rid[HTTP_REQUEST_ID_SIZE];
    if (rid_known) {
        snprintf(rid, sizeof rid, "%s", rid_known);
    } else {
        size_t gn = 0;
        const char *given = parsed ? http_head_get(&h, in, "x-request-id", &gn) : NULL;
        http_request_id(rid, given, gn);
    }
    if (loud && parsed) /* in the access log's form */
        log_warn("%.*s %.*s 503 (%s) id=%s", (int)h.method.len, in + h.method.off,
                 (int)http_target_loggable(in + h.target.off, h.target.len), in + h.target.off, message, rid);
    else if (loud)
        log_warn("? unmatched 503 (%s) id=%s", message, rid);
    char reply[768];
    int body = snprintf(NULL, 0,
                        "{\"error\":{\"code\":\"overloaded\",\"message\":\"%s\",\"request_id\":\"%s\"},\"detail\":\"%s\"}",
                        message, rid, message);
    int n = snprintf(reply, sizeof reply,
                     "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json; charset=utf-8\r\n"
                     "Content-Length: %d\r\nX-Request-ID: %s\r\nRetry-After: 1\r\nCache-Control: no-store\r\n"
                     "Connection: close\r\n\r\n"
                     "{\"error\":{\"code\":\"overloaded\",\"message\":\"%s\",\"request_id\":\"%s\"},\"detail\":\"%s\"}",
                     body, rid, message, rid, message);
    if (n > 0 && (size_t)n < sizeof reply) {
        ssize_t w = send(fd, reply, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)w;
    }
    shutdown(fd, SHUT_WR);
}

/* True when fd's pending bytes hold a whole head (or a refusable one), or the client closed. */
static bool http_head_arrived(int fd)
{
    char peek[8192];
    ssize_t r = recv(fd, peek, sizeof peek, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
        return true;
    if (r < 0)
        return false;
    http_head h;
    http_head_init(&h, sizeof peek);
    return http_head_parse(&h, peek, (size_t)r) != HTTP_PARSE_MORE || (size_t)r == sizeof peek;
}

static void http_reap_refused(evutil_socket_t unused, short what, void *arg)
{
    (void)unused;
    (void)what;
    http_server *s = arg;
    double now = clock_now_ms();
    size_t kept = 0;
    bool waiting = false;
    for (size_t i = 0; i < s->n_refused; i++) {
        int fd = s->refused[i].fd;
        if (s->refused[i].message) { /* not answered yet */
            if (now < s->refused[i].until_ms && !http_head_arrived(fd)) {
                s->refused[kept++] = s->refused[i];
                waiting = true;
                continue;
            }
            http_server_refuse_fd(fd, s->refused[i].message, NULL, true);
            s->refused[i].message = NULL;
            s->refused[i].until_ms = now + 1000.0;
        }
        char sink[4096];
        ssize_t r;
        int reads = 0;
        while ((r = recv(fd, sink, sizeof sink, MSG_DONTWAIT)) > 0 && ++reads < 64)
            ;
        bool open = r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR);
        if ((open || reads == 64) && now < s->refused[i].until_ms)
            s->refused[kept++] = s->refused[i];
        else
            close(fd);
    }
    s->n_refused = kept;
    struct timeval tv = {0, waiting ? 10000 : 100000};
    if (s->n_refused > 0)
        evtimer_add(s->reaper, &tv);
}

/* Adds fd to the table (message: answer pending). False when full or the reaper cannot run. */
static bool http_refused_add(http_server *s, int fd, const char *message, double for_ms)
{
    struct timeval tv = {0, 10000};
    if (s->n_refused == HTTP_REFUSED_MAX || evtimer_add(s->reaper, &tv) != 0)
        return false;
    s->refused[s->n_refused].fd = fd;
    s->refused[s->n_refused].until_ms = clock_now_ms() + for_ms;
    s->refused[s->n_refused].message = message;
    s->n_refused++;
    return true;
}

void http_server_close_refused(http_server *s, int fd)
{
    if (!http_refused_add(s, fd, NULL, 1000.0))
        close(fd);
}

void http_server_refuse_later(http_server *s, int fd, const char *message)
{
    if (http_refused_add(s, fd, message, 1000.0))
        return;
    http_server_refuse_fd(fd, message, NULL, true);
    close(fd);
}

static cidr_addr http_peer_of(const struct sockaddr_storage *ss)
{
    cidr_addr a;
    memset(&a, 0, sizeof a);
    if (ss->ss_family == AF_INET) {
        a.bytes[10] = a.bytes[11] = 0xff;
        memcpy(a.bytes + 12, &((const struct sockaddr_in *)ss)->sin_addr, 4);
    } else if (ss->ss_family == AF_INET6) {
        memcpy(a.bytes, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
    }
    return a;
}

/* The connections open from peer; *in_reserve: how many of them hold a reserve slot. */
static size_t http_conns_from(const http_server *s, const cidr_addr *peer, size_t *in_reserve)
{
    size_t n = 0;
    *in_reserve = 0;
    for (const http_conn *c = s->conns; c; c = c->next) {
        if (memcmp(c->peer.bytes, peer->bytes, 16) == 0) {
            n++;
            *in_reserve += c->reserve;
        }
    }
    return n;
}

/* Out of descriptors (EMFILE): the spare descriptor is given up for a moment so that the
 * waiting connection can be taken and closed — the client sees a close, not a hang in the
 * backlog, and the loop does not spin on a listener that stays readable. False when there is
 * no spare (then accepting pauses for 100 ms). Warns at most once a minute. */
static bool http_accept_and_close(http_server *s, int lfd, int err)
{
    double now = clock_now_ms();
    if (s->emfile_warned_ms == 0 || now - s->emfile_warned_ms >= 60000.0) {
        s->emfile_warned_ms = now;
        log_warn("http: cannot accept: %s (%zu connections open, cap %zu); new connections are closed at once "
                 "(this warning: at most once a minute)", strerror(err), s->n_conns, s->max_conns);
    }
    if (err != EMFILE || s->spare_fd < 0)
        return false;
    close(s->spare_fd);
    s->spare_fd = -1;
    int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd >= 0) {
        metrics_count_shed();
        close(fd);
    }
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    return fd >= 0 && s->spare_fd >= 0;
}

static void http_on_accept_resume(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_server *s = arg;
    if (s->listen_fd >= 0)
        event_add(s->accept_ev, NULL);
}

/* Takes every waiting connection: full (RAGD_MAX_CONNECTIONS) means accepted and closed at
 * once, rather than left in the backlog; over RAGD_MAX_CONNECTIONS_PER_IP, a 503 and closed;
 * in the last `reserve` slots, served for /health* only. */
static void http_on_accept(evutil_socket_t lfd, short what, void *arg)
{
    (void)what;
    http_server *s = arg;
    for (int i = 0; i < 64; i++) {
        struct sockaddr_storage ss;
        socklen_t sl = sizeof ss;
        int fd = accept4(lfd, (struct sockaddr *)&ss, &sl, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
                if (http_accept_and_close(s, lfd, errno))
                    continue;
                event_del(s->accept_ev);
                struct timeval tv = {0, 100000};
                evtimer_add(s->accept_pause, &tv);
            }
            return;
        }
        if (s->n_conns >= s->max_conns) {
            log_debug("http: every connection slot is taken; a new connection closed");
            metrics_count_shed();
            close(fd);
            continue;
        }
        cidr_addr peer = http_peer_of(&ss);
        size_t peer_reserve = 0;
        bool reserve = s->n_conns >= s->max_conns - s->reserve;
        if (http_conns_from(s, &peer, &peer_reserve) >= s->per_ip) {
            log_debug("http: too many connections from one address; refused");
            metrics_count_shed();
            http_server_refuse_fd(fd, "too many connections from this address (RAGD_MAX_CONNECTIONS_PER_IP)", NULL, false);
            http_server_close_refused(s, fd);
            continue;
        }
        if (reserve && peer_reserve > 0) { /* one reserve slot per address: for it, the server is full */
            log_debug("http: this address holds a reserve slot already; a new connection closed");
            metrics_count_shed();
            close(fd);
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        http_conn_new(s, fd, &peer, reserve);
    }
}

void http_server_conn_gone(http_server *s, http_conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    c->prev = c->next = NULL;
    s->n_conns--;
}

/* ---- lifecycle ---- */

/* The effective connection cap: RLIMIT_NOFILE's soft limit is raised to the hard one; when
 * RAGD_MAX_CONNECTIONS and the descriptors ragd needs besides (64 for data files, logs and the
 * loop, 2 per upstream host and slot, the spare) do not fit, the cap is lowered to fit, with one
 * warning naming the numbers. */
static size_t http_fit_connections(const ragd_config *cfg)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return cfg->max_connections;
    if (rl.rlim_cur != RLIM_INFINITY && (rl.rlim_max == RLIM_INFINITY || rl.rlim_cur < rl.rlim_max)) {
        struct rlimit want = {.rlim_cur = rl.rlim_max, .rlim_max = rl.rlim_max};
        if (setrlimit(RLIMIT_NOFILE, &want) == 0)
            rl.rlim_cur = rl.rlim_max;
    }
    if (rl.rlim_cur == RLIM_INFINITY)
        return cfg->max_connections;
    size_t hosts = cfg->n_ollama_urls + (cfg->openai_url[0] != '\0');
    if (hosts == 0)
        hosts = 1;
    size_t besides = 64 + 2 * hosts * cfg->max_concurrent + 1;
    size_t limit = rl.rlim_cur > (rlim_t)SIZE_MAX ? SIZE_MAX : (size_t)rl.rlim_cur;
    if (cfg->max_connections + besides <= limit)
        return cfg->max_connections;
    size_t cap = limit > besides + 16 ? limit - besides : 16;
    log_warn("http: RAGD_MAX_CONNECTIONS=%zu does not fit the descriptor limit (RLIMIT_NOFILE %zu, %zu kept for "
             "files, upstream connections and a spare): at most %zu connections (raise `ulimit -n`)",
             cfg->max_connections, limit, besides, cap);
    return cap;
}
static int http_listen_socket(const char *host, int port, int *bound_port, char *err, size_t errlen)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *res = NULL;
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    int rc = getaddrinfo(host, portstr, &hints, &res);
    if (rc != 0) {
        snprintf(err, errlen, "RAGD_LISTEN: cannot resolve '%s': %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0)
            continue;
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 && listen(fd, 512) == 0)
            break;
        snprintf(err, errlen, "RAGD_LISTEN: cannot listen on %s:%d: %s", host, port, strerror(errno));
        close(fd);
        fd = -1;
    }
    freeaddrinfo(res);
    if (fd < 0)
        return -1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    getsockname(fd, (struct sockaddr *)&ss, &sl);
    *bound_port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
                                           : ntohs(((struct sockaddr_in *)&ss)->sin_port);
    return fd;
}

http_server *http_server_start(struct app *a, const http_route *routes, size_t n_routes, char *err, size_t errlen)
{
    http_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    s->app = a;
    a->http = s;
    s->routes = routes;
    s->n_routes = n_routes;
    const ragd_config *cfg = &a->cfg;
    s->listen_fd = -1;
    s->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    s->max_conns = http_fit_connections(cfg);
    /* The reserve: 1/16 of the slots, at most 32, none when there is a single slot. */
    s->reserve = s->max_conns / 16;
    if (s->reserve > 32)
        s->reserve = 32;
    if (s->reserve == 0 && s->max_conns > 1)
        s->reserve = 1;
    s->per_ip = cfg->max_connections_per_ip;
    if (s->per_ip == 0) { /* the default: 64, below the total */
        s->per_ip = 64;
        if (s->per_ip >= s->max_conns)
            s->per_ip = s->max_conns > 1 ? s->max_conns - 1 : 1;
    }
    log_info("http: up to %zu connections (%zu of them kept for /health*, one per address), %zu per address",
             s->max_conns, s->reserve, s->per_ip);
    s->listen_fd = http_listen_socket(cfg->listen_host, cfg->listen_port, &s->port, err, errlen);
    if (s->listen_fd < 0)
        goto fail;
    if (fcntl(s->listen_fd, F_SETFL, fcntl(s->listen_fd, F_GETFL) | O_NONBLOCK) != 0) {
        snprintf(err, errlen, "cannot make the listening socket non-blocking");
        goto fail;
    }
    s->accept_ev = event_new(a->base, s->listen_fd, EV_READ | EV_PERSIST, http_on_accept, s);
    s->accept_pause = evtimer_new(a->base, http_on_accept_resume, s);
    s->reaper = evtimer_new(a->base, http_reap_refused, s);
    if (!s->accept_ev || !s->accept_pause || !s->reaper || event_add(s->accept_ev, NULL) != 0) {
        snprintf(err, errlen, "cannot watch the HTTP server's listening socket");
        goto fail;
    }
    return s;
fail:
    http_server_stop(s);
    return NULL;
}

int http_server_port(const http_server *s) { return s->port; }

size_t http_server_in_flight(const http_server *s) { return s->in_flight; }

void http_server_quiesce(http_server *s)
{
    if (!s || s->listen_fd < 0)
        return;
    event_del(s->accept_ev);
    evtimer_del(s->accept_pause);
    close(s->listen_fd);
    s->listen_fd = -1;
    /* Connections waiting for a request are closed; those with one are served, then closed. */
    http_conn *next = NULL;
    for (http_conn *c = s->conns; c; c = next) {
        next = c->next;
        if (http_conn_idle(c))
            http_conn_close(c, false);
    }
}

void http_server_stop(http_server *s)
{
    if (!s)
        return;
    /* What is queued goes out if the socket takes it now; then every connection closes. */
    while (s->conns) {
        http_conn *c = s->conns;
        struct evbuffer *out = bufferevent_get_output(c->bev);
        evbuffer_unfreeze(out, 1); /* the bufferevent keeps its output's start frozen for itself */
        evbuffer_write(out, c->fd);
        http_conn_close(c, true);
    }
    if (s->accept_ev)
        event_free(s->accept_ev);
    if (s->accept_pause)
        event_free(s->accept_pause);
    if (s->reaper)
        event_free(s->reaper);
    for (size_t i = 0; i < s->n_refused; i++)
        close(s->refused[i].fd);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    if (s->spare_fd >= 0)
        close(s->spare_fd);
    free(s);
}
