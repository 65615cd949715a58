#include "http/http_server.h"

#include <event2/event.h>
#include <microhttpd.h>
#include <openssl/crypto.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <ctype.h>

#include "app.h"
#include "http/request_int.h"
#include "obs/metrics.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/ratelimit.h"

struct http_server {
    struct app *app;
    struct MHD_Daemon *daemon;
    const http_route *routes;
    size_t n_routes;
    struct event *io;
    struct event *timer;
    int listen_fd;
    int port;
    size_t in_flight;
};

/* ---- the MHD <-> libevent glue ---- */

static void http_server_run(http_server *s)
{
    MHD_run(s->daemon);
    MHD_UNSIGNED_LONG_LONG ms = 0;
    if (MHD_get_timeout(s->daemon, &ms) == MHD_YES) {
        struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((ms % 1000) * 1000)};
        evtimer_add(s->timer, &tv);
    } else {
        evtimer_del(s->timer);
    }
}

static void http_server_on_event(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_server_run(arg);
}

/* ---- request set-up ---- */

static size_t http_unescape_none(void *cls, struct MHD_Connection *c, char *uri)
{
    (void)cls;
    (void)c;
    return strlen(uri); /* ragd decodes path segments and arguments itself */
}

/* ---- NUL bytes in the request line and headers ----
 *
 * libmicrohttpd 0.9.x hands the request line and headers to ragd as C strings, parsed in
 * place in the connection's read buffer; a NUL byte the client sent is not refused but ends
 * the string: `DELETE /api/dbs/victim\0_backup` reached ragd as `/api/dbs/victim`, an
 * argument or header value lost everything after the NUL, and a header line starting with
 * NUL was taken for the empty line that ends the header block. (libmicrohttpd 1.0 refuses
 * such requests itself at its default strictness: 400 for a header, the connection closed
 * for the request line.)
 *
 * No MHD API gives the lengths of what it parsed (MHD_lookup_connection_value_n reports
 * strlen), so ragd checks that the strings MHD handed over account for every byte of the
 * header block. MHD tells how long the block was (MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE,
 * counted from the method's first byte to the end of the empty line), and 0.9.x parses it
 * in place, only ever writing NULs over the separators:
 *
 *     METHOD \0 [SP...] URI \0 VERSION T { NAME \0 [SP/HT...] VALUE T } T
 *
 * where T is a line end (CRLF -> two NULs, bare LF -> one), the \0 after METHOD was a space,
 * the \0 after NAME the colon, and the one after the URI the space before the version. The
 * URI's length is taken before MHD cuts its query string up: strlen of the URI that the URI
 * log callback sees. A client's NUL shows as an element shorter than its place in the block:
 * the walk does not land on the next element. A NUL as the very last byte of a line that
 * ends in a bare LF cannot be told from a CR; it hides no byte from ragd.
 *
 * The walk reads only inside the block and compares pointers for equality; when MHD's
 * strings are not where this layout puts them (a header folded over two lines, which 0.9.75
 * appends to the header's name in a copy, or another parser) the request is refused:
 * failing closed, loudly, rather than acting on a request ragd cannot see whole. */
#if MHD_VERSION < 0x01000000
#define HTTP_CHECK_HEADER_BLOCK 1

typedef struct {
    const char *p;   /* the next byte of the block not yet accounted for */
    const char *end; /* one past the block's last byte */
    bool ok;         /* false once a byte is found that no string accounts for */
} http_block_walk;

/* Steps over the string at w->p and the one NUL that ends it, when that NUL lies inside
 * the block; else fails the walk. */
static void http_walk_string(http_block_walk *w)
{
    if (!w->ok)
        return;
    size_t room = (size_t)(w->end - w->p);
    size_t n = strnlen(w->p, room);
    w->ok = n < room;
    if (w->ok)
        w->p += n + 1;
}

/* Steps over bytes equal to `skip` (at most max of them, at least min) until the walk
 * reaches `next`; next NULL means the end of the block. */
static void http_walk_to(http_block_walk *w, const char *next, char skip, size_t min, size_t max)
{
    const char *target = next ? next : w->end;
    size_t n = 0;
    while (w->ok && w->p != w->end && w->p != target && n < max && *w->p == skip) {
        w->p++;
        n++;
    }
    w->ok = w->ok && w->p == target && n >= min;
}

static enum MHD_Result http_walk_header(void *cls, enum MHD_ValueKind kind, const char *name, const char *value)
{
    (void)kind;
    http_block_walk *w = cls;
    w->ok = w->ok && value;
    http_walk_to(w, name, '\0', 0, 1); /* the second NUL of the line end before (CRLF) */
    http_walk_string(w);               /* the name and its colon */
    while (w->ok && w->p != w->end && w->p != value && (*w->p == ' ' || *w->p == '\t'))
        w->p++;
    w->ok = w->ok && w->p == value;
    http_walk_string(w); /* the value and the first NUL of its line end */
    return w->ok ? MHD_YES : MHD_NO;
}

/* True when the request line and headers MHD handed over are the whole header block, i.e.
 * the client sent no NUL byte in them (see above). uri_len: strlen of the URI as the URI log
 * callback saw it. Call on the first access-handler call, before anything reads the
 * request's strings. */
static bool http_header_block_whole(struct MHD_Connection *c, const char *method, const char *url,
                                    const char *version, size_t uri_len)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_REQUEST_HEADER_SIZE);
    if (!ci || !method || !url || !version || ci->header_size == 0)
        return false;
    http_block_walk w = {.p = method, .end = method + ci->header_size, .ok = true};
    http_walk_string(&w);                        /* the method and the space after it */
    http_walk_to(&w, url, ' ', 0, SIZE_MAX);     /* more spaces, which MHD tolerates */
    w.ok = w.ok && (size_t)(w.end - w.p) > uri_len && w.p[uri_len] == '\0' && w.p + uri_len + 1 == version;
    if (w.ok)
        w.p = version;                           /* past the URI and the space before the version */
    http_walk_string(&w);                        /* the version and the first NUL of its line end */
    if (w.ok)
        MHD_get_connection_values(c, MHD_HEADER_KIND, http_walk_header, &w);
    http_walk_to(&w, NULL, '\0', 1, 3);          /* the rest of the last line end, the empty line */
    return w.ok;
}
#endif

/* MHD's URI log callback, called once per request as soon as the request line is read:
 * the request object is made here so that the URI's length is taken before MHD cuts up the
 * query string (see the header-block walk above). MHD hands the result to the access
 * handler and to the completed callback as *con_cls; the completed callback frees it. */
static void *http_on_request_line(void *cls, const char *uri, struct MHD_Connection *c)
{
    http_server *s = cls;
    http_request *req = http_request_new(s->app, c, s->app->cfg.max_body_bytes);
    if (!req)
        return NULL; /* the access handler then refuses the request */
    req->uri_len = uri ? strlen(uri) : 0;
    return req;
}

static enum MHD_Result http_collect_arg(void *cls, enum MHD_ValueKind kind, const char *key, const char *value)
{
    (void)kind;
    http_request *req = cls;
    if (req->n_args == HTTP_MAX_ARGS) {
        req->bad_query = true;
        return MHD_NO;
    }
    char *k = http_percent_decode(key, strlen(key));
    char *v = value ? http_percent_decode(value, strlen(value)) : strdup("");
    if (!k || !v) {
        /* A NULL for a well-formed argument means no memory, not a bad request. */
        if ((k || http_percent_valid(key, strlen(key))) && (v || (value && http_percent_valid(value, strlen(value)))))
            req->args_no_memory = true;
        else
            req->bad_query = true;
        free(k);
        free(v);
        return MHD_NO;
    }
    req->args[req->n_args].key = k;
    req->args[req->n_args].value = v;
    req->n_args++;
    return MHD_YES;
}

/* The request id: the client's X-Request-ID when it is of a safe form, else 32 random hex
 * digits. out has HTTP_REQUEST_ID_SIZE bytes. */
static void http_request_id(char *out, const char *given)
{
    bool ok = given && *given && strlen(given) < HTTP_REQUEST_ID_SIZE;
    for (const char *p = given; ok && *p; p++)
        ok = isalnum((unsigned char)*p) || *p == '.' || *p == '_' || *p == '-' || *p == ':';
    if (ok) {
        snprintf(out, HTTP_REQUEST_ID_SIZE, "%s", given);
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

/* The method as a metrics label: never NULL (method_name is, when it could not be
 * copied), and bounded (any other method is "OTHER"). */
static const char *http_method_label(http_method m)
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
static void http_media_type(const char *ct, char *out, size_t outlen)
{
    size_t o = 0;
    for (const char *p = ct ? ct : ""; *p && *p != ';' && o + 1 < outlen; p++)
        if (!isspace((unsigned char)*p))
            out[o++] = (char)tolower((unsigned char)*p);
    out[o] = '\0';
}

static bool http_body_type_ok(http_body_kind kind, const char *type)
{
    if (kind == HTTP_BODY_NONE)
        return true;
    if (type[0] == '\0' || strcmp(type, "application/json") == 0)
        return true;
    return kind == HTTP_BODY_INGEST &&
           (strcmp(type, "text/plain") == 0 || strcmp(type, "text/markdown") == 0 || strcmp(type, "text/html") == 0);
}

/* Whether a request changes anything (ingest, create, delete, the admin routes): what a
 * read-only API key may not do. /api/query and /api/retrieve are POSTs that only read. */
static bool http_route_writes(const http_request *req)
{
    if (strncmp(req->route_name, "/api/admin/", 11) == 0)
        return true;
    if (req->method == HTTP_GET)
        return false;
    return strcmp(req->route_name, "/api/query") != 0 && strcmp(req->route_name, "/api/retrieve") != 0;
}

/* Rate limits (util/ratelimit.h, docs/api.md "Rate limits"): /api/query and /api/retrieve
 * by RATE_LIMIT_QUERY, /api/ingest by RAGD_RATE_LIMIT_INGEST, per client — its API key when
 * keys are configured (the request has passed http_authorized), else its address. Every
 * answer of a limited route carries X-RateLimit-*; past the limit, 429 rate_limited with
 * Retry-After. Replies and returns false when refused. */
static bool http_rate_allowed(const app *a, http_request *req, struct MHD_Connection *c)
{
    bool query = strcmp(req->route_name, "/api/query") == 0 || strcmp(req->route_name, "/api/retrieve") == 0;
    ratelimit *rl = query ? a->rate_query : strcmp(req->route_name, "/api/ingest") == 0 ? a->rate_ingest : NULL;
    if (!rl)
        return true;
    char client[600];
    size_t n;
    if (a->cfg.api_keys.n > 0) {
        n = (size_t)snprintf(client, sizeof client, "k:%s", req->credential);
    } else {
        const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
        char host[NI_MAXHOST] = "?";
        if (ci && ci->client_addr)
            getnameinfo(ci->client_addr,
                        ci->client_addr->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
                        host, sizeof host, NULL, 0, NI_NUMERICHOST);
        n = (size_t)snprintf(client, sizeof client, "a:%s", host);
    }
    ratelimit_take(rl, client, n < sizeof client ? n : sizeof client - 1, clock_now_ms(), &req->rate);
    if (req->rate.allowed)
        return true;
    snprintf(req->retry_after, sizeof req->retry_after, "%u", req->rate.retry_s);
    http_reply_error(req, 429, "rate_limited", "too many requests: %s allows %u per %s; retry in %u s",
                     query ? "RATE_LIMIT_QUERY" : "RAGD_RATE_LIMIT_INGEST", req->rate.limit,
                     ratelimit_unit(query ? &a->cfg.rate_query : &a->cfg.rate_ingest), req->rate.retry_s);
    return false;
}

/* API keys (util/apikeys.h, docs/api.md "Authentication"): with keys configured every route
 * but /health, /health/live and /health/ready needs one — 401 unauthorized without a valid
 * one, 403 forbidden when a read-only key asks to change something. The admin token
 * (RAGD_ADMIN_TOKEN) counts as a read-write key. Replies and returns false when refused. */
static bool http_authorized(const app *a, http_request *req)
{
    const ragd_config *cfg = &a->cfg;
    if (cfg->api_keys.n == 0 || strncmp(req->route_name, "/health", 7) == 0)
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

/* Everything decided from the request line and headers, before any body byte is read.
 * Returns true when a response is already set (an early reply). */
static bool http_request_begin(http_server *s, http_request *req, const char *url, const char *method,
                               const char *version)
{
    struct MHD_Connection *c = req->conn;
    req->t_start_ms = clock_now_ms();
    req->method_name = strdup(method);
    req->path = strdup(url);
    req->method = http_method_of(method);
#ifdef HTTP_CHECK_HEADER_BLOCK
    if (!http_header_block_whole(c, method, url, version, req->uri_len)) {
        /* nothing MHD parsed can be trusted, the X-Request-ID header included */
        http_request_id(req->request_id, NULL);
        http_reply_error(req, 400, "invalid_json",
                         "bad request: a NUL byte in the request line or a header (or a header folded over two lines)");
        return true;
    }
#else
    (void)version; /* libmicrohttpd 1.0 refuses NUL bytes in the request line and headers itself */
#endif
    http_request_id(req->request_id, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-ID"));
    http_media_type(MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_TYPE),
                    req->content_type, sizeof req->content_type);
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    const char *api_key = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-API-Key");
    const char *cred = auth && strncasecmp(auth, "Bearer ", 7) == 0 ? auth + 7 : api_key;
    if (cred && strlen(cred) >= sizeof req->credential)
        req->credential_too_long = true;
    else if (cred)
        snprintf(req->credential, sizeof req->credential, "%s", cred);
    const char *accept = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
    req->accept_sse = accept && strstr(accept, "text/event-stream");
    if (!req->method_name || !req->path) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return true;
    }
    MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, http_collect_arg, req);
    if (req->args_no_memory) {
        http_reply_error(req, 503, "overloaded", "out of memory while reading the query string");
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

    if (!http_authorized(s->app, req) || !http_rate_allowed(s->app, req, c))
        return true;
    /* While draining only the health routes answer: a supervisor watches them. */
    if (atomic_load(&s->app->draining) && strncmp(req->route_name, "/health", 7) != 0) {
        snprintf(req->retry_after, sizeof req->retry_after, "1");
        http_reply_error(req, 503, "not_ready", "server is shutting down");
        return true;
    }
    if (!atomic_load(&s->app->ready) && strncmp(req->route_name, "/api/", 5) == 0 &&
        strcmp(req->route_name, "/api/pool/stats") != 0) {
        snprintf(req->retry_after, sizeof req->retry_after, "1");
        http_reply_error(req, 503, "not_ready", "server is starting (loading the vector index)");
        return true;
    }
    const char *cl = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl) {
        char *end = NULL;
        unsigned long long declared = strtoull(cl, &end, 10);
        if (end != cl && declared > s->app->cfg.max_body_bytes) {
            http_reply_error(req, 413, "payload_too_large", "body of %llu bytes is over the limit of %zu bytes",
                             declared, s->app->cfg.max_body_bytes);
            return true;
        }
    }
    if (req->method == HTTP_POST && !http_body_type_ok(route->post_body, req->content_type)) {
        http_reply_error(req, 415, "unsupported_media_type", "Content-Type '%s' is not accepted here%s",
                         req->content_type,
                         route->post_body == HTTP_BODY_INGEST
                             ? "; use application/json, text/plain, text/markdown or text/html"
                             : "; use application/json");
        return true;
    }
    return false;
}

/* ---- MHD callbacks ---- */

/* *con_cls of a connection whose http_request could not be allocated: answered 503 at
 * once (http_reply_unallocated), the rest of its upload read and dropped. */
static char http_unallocated;

/* 503 overloaded in the envelope, built on the stack: there is no http_request to hold it
 * (MHD copies the body into its own memory). */
static enum MHD_Result http_reply_unallocated(struct MHD_Connection *c, const char *method, const char *url)
{
    char rid[HTTP_REQUEST_ID_SIZE];
    http_request_id(rid, MHD_lookup_connection_value(c, MHD_HEADER_KIND, "X-Request-ID"));
    char body[512];
    int n = snprintf(body, sizeof body,
                     "{\"error\":{\"code\":\"overloaded\",\"message\":\"out of memory\",\"request_id\":\"%s\"},"
                     "\"detail\":\"out of memory\"}",
                     rid);
    /* In the access log's form (the request never reaches http_on_completed). */
    log_warn("%s %s 503 (out of memory for the request) id=%s", method, url, rid);
    struct MHD_Response *resp = MHD_create_response_from_buffer((size_t)n, body, MHD_RESPMEM_MUST_COPY);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json; charset=utf-8");
    MHD_add_response_header(resp, "X-Request-ID", rid);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, "1");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
    enum MHD_Result rc = MHD_queue_response(c, 503, resp);
    MHD_destroy_response(resp);
    return rc;
}

static enum MHD_Result http_on_access(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                      const char *version, const char *upload_data, size_t *upload_data_size,
                                      void **con_cls)
{
    http_server *s = cls;
    http_request *req = *con_cls;
    if (*con_cls == &http_unallocated) { /* answered 503 at the start: drop the upload */
        *upload_data_size = 0;
        return MHD_YES;
    }
    if (!req) { /* http_on_request_line had no memory for it */
        *con_cls = &http_unallocated;
        return http_reply_unallocated(c, method, url);
    }
    if (!req->begun) {
        req->begun = true;
        s->in_flight++; /* counted from the headers on: one still sending them does not delay a drain */
        if (http_request_begin(s, req, url, method, version)) {
            req->early = true;
            return http_request_send(req);
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        ragd_err e = strbuf_append(&req->body, upload_data, *upload_data_size);
        *upload_data_size = 0;
        if (e == RAGD_OK)
            return MHD_YES;
        /* Only a chunked body gets here (a declared length over the cap was refused before
         * any body byte): answer now and close, rather than read on to an end that may never
         * come. */
        strbuf_cleanup(&req->body);
        if (e == RAGD_ETOOBIG)
            http_reply_error(req, 413, "payload_too_large", "body is over the limit of %zu bytes",
                             s->app->cfg.max_body_bytes);
        else
            http_reply_error(req, 503, "overloaded", "out of memory for the request body");
        return http_request_send_and_close(req);
    }
    if (req->answered)
        return MHD_YES;
    if (req->deferred)
        return MHD_YES; /* spurious call while a worker has it */
    if (req->status == 0 && atomic_load(&s->app->stopping) && strncmp(req->route_name, "/health", 7) != 0) {
        /* the body finished after the grace period: workers and store are gone */
        snprintf(req->retry_after, sizeof req->retry_after, "1");
        http_reply_error(req, 503, "not_ready", "server is shutting down");
    }
    if (req->status == 0) {
        req->handler(req);
        if (req->deferred) {
            MHD_suspend_connection(c);
            return MHD_YES;
        }
    }
    return http_request_send(req);
}

static void http_on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe)
{
    (void)c;
    http_server *s = cls;
    http_request *req = *con_cls;
    if (!req || *con_cls == &http_unallocated) {
        *con_cls = NULL;
        return;
    }
    *con_cls = NULL;
    if (req->begun)
        s->in_flight--;
    double ms = clock_now_ms() - req->t_start_ms;
    if (req->answered)
        metrics_http_observe(req->route_name, http_method_label(req->method), req->status,
                             ms / 1000.0);
    if (req->answered)
        log_info("%s %s %d %.1fms id=%s", req->method_name ? req->method_name : "?", req->route_name, req->status, ms,
                 req->request_id);
    else
        log_info("%s %s aborted (%d) %.1fms id=%s", req->method_name ? req->method_name : "?", req->route_name,
                 (int)toe, ms, req->request_id);
    req->conn = NULL;
    bool unfinished = toe != MHD_REQUEST_TERMINATED_COMPLETED_OK;
    if (req->on_close && unfinished)
        req->on_close(req->on_close_arg); /* e.g. cancel the upstream call feeding a stream */
    req->on_close = NULL;
    http_request_unref(req);
}

static void http_mhd_log(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    log_debug("http: %s", line);
}

/* ---- lifecycle ---- */

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
    s->listen_fd = http_listen_socket(a->cfg.listen_host, a->cfg.listen_port, &s->port, err, errlen);
    if (s->listen_fd < 0)
        goto fail;
    s->daemon = MHD_start_daemon(
        MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG, 0, NULL, NULL, http_on_access, s,
        MHD_OPTION_EXTERNAL_LOGGER, http_mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, s->listen_fd, MHD_OPTION_NOTIFY_COMPLETED, http_on_completed, s,
        MHD_OPTION_URI_LOG_CALLBACK, http_on_request_line, s,
        MHD_OPTION_UNESCAPE_CALLBACK, http_unescape_none, NULL, MHD_OPTION_CONNECTION_LIMIT,
        (unsigned)a->cfg.max_connections, MHD_OPTION_CONNECTION_TIMEOUT, a->cfg.idle_timeout_s,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024, MHD_OPTION_END);
    if (!s->daemon) {
        snprintf(err, errlen, "cannot start the HTTP server on %s:%d", a->cfg.listen_host, s->port);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    if (!info) {
        snprintf(err, errlen, "HTTP server has no epoll descriptor");
        goto fail;
    }
    s->io = event_new(a->base, info->epoll_fd, EV_READ | EV_PERSIST, http_server_on_event, s);
    s->timer = evtimer_new(a->base, http_server_on_event, s);
    if (!s->io || !s->timer || event_add(s->io, NULL) != 0) {
        snprintf(err, errlen, "cannot watch the HTTP server's descriptor");
        goto fail;
    }
    http_server_run(s);
    return s;
fail:
    if (!s->daemon && s->listen_fd >= 0)
        close(s->listen_fd);
    s->listen_fd = -1;
    http_server_stop(s);
    return NULL;
}

int http_server_port(const http_server *s) { return s->port; }

void http_server_kick(http_server *s)
{
    struct timeval now = {0, 0};
    evtimer_add(s->timer, &now);
}
size_t http_server_in_flight(const http_server *s) { return s->in_flight; }

void http_server_quiesce(http_server *s)
{
    if (!s || s->listen_fd < 0)
        return;
    MHD_socket fd = MHD_quiesce_daemon(s->daemon);
    if (fd != MHD_INVALID_SOCKET)
        close(fd);
    s->listen_fd = -1;
    http_server_run(s);
}

void http_server_stop(http_server *s)
{
    if (!s)
        return;
    if (s->io)
        event_free(s->io);
    if (s->timer)
        event_free(s->timer);
    if (s->daemon) {
        /* Let resumed connections send their replies: MHD must not be stopped while one
         * is still suspended. */
        for (int i = 0; i < 8; i++)
            MHD_run(s->daemon);
        MHD_socket fd = s->listen_fd >= 0 ? MHD_quiesce_daemon(s->daemon) : MHD_INVALID_SOCKET;
        MHD_stop_daemon(s->daemon);
        if (fd != MHD_INVALID_SOCKET)
            close(fd);
    }
    free(s);
}
