#include "http/request.h"

#include <errno.h>
#include <event2/event.h>
#include <sys/socket.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "http/conn.h"
#include "http/http_server.h"
#include "http/request_int.h"
#include "obs/metrics.h"
#include "util/jsonmem.h"
#include "util/jsontext.h"
#include "util/log.h"
#include "util/loopq.h"
#include "util/utf8.h"
#include "util/workpool.h"


#define HTTP_STREAM_CAP ((size_t)16 << 20)

http_request *http_request_new(struct app *owner, struct http_conn *conn, size_t body_cap)
{
    http_request *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->app = owner;
    req->conn = conn;
    req->refs = 1;
    req->route_name = "unmatched";
    strbuf_init(&req->body, body_cap);
    return req;
}

void http_request_ref(http_request *req) { req->refs++; }

void http_request_drop_body(http_request *req)
{
    strbuf_cleanup(&req->body);
    if (req->body_charged) /* none without an app (a test's request) */
        body_budget_release(&req->app->body_budget, &req->body_charged);
}

void http_request_unref(http_request *req)
{
    if (!req || --req->refs > 0)
        return;
    if (req->cleanup)
        req->cleanup(req->cleanup_arg);
    free(req->method_name);
    free(req->path);
    for (size_t i = 0; i < req->n_params; i++)
        free(req->params[i]);
    for (size_t i = 0; i < req->n_args; i++) {
        free(req->args[i].key);
        free(req->args[i].value);
    }
    http_unwatch_close(req);
    http_request_drop_body(req);
    free(req->resp_body);
    if (req->stream) {
        strbuf_cleanup(&req->stream->out);
        free(req->stream->content_type);
        free(req->stream);
    }
    free(req);
}

/* EV_CLOSED (a FIN) or EV_READ: epoll reports a reset (EPOLLHUP/EPOLLERR) as readable, not
 * as closed, so readability is checked with a peek: end of stream or an error means gone;
 * bytes waiting (a pipelined request) belong to the connection, so the watch just stops. */
static void http_on_hangup(evutil_socket_t fd, short what, void *arg)
{
    http_request *req = arg;
    bool gone = (what & EV_CLOSED) != 0;
    if (!gone) {
        char b;
        ssize_t n = recv(fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        gone = n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return; /* spurious: keep watching */
    }
    void (*fn)(void *) = req->close_fn;
    void *fn_arg = req->close_arg;
    http_unwatch_close(req);
    if (gone)
        req->client_gone = true;
    if (gone && fn)
        fn(fn_arg);
}

void http_watch_close(http_request *req, void (*fn)(void *arg), void *arg)
{
    if (!req->conn || req->close_watch ||
        !(event_base_get_features(req->app->base) & EV_FEATURE_EARLY_CLOSE))
        return;
    req->close_watch = event_new(req->app->base, http_conn_fd(req->conn), EV_READ | EV_CLOSED | EV_PERSIST, http_on_hangup, req);
    if (!req->close_watch || event_add(req->close_watch, NULL) != 0) {
        if (req->close_watch)
            event_free(req->close_watch);
        req->close_watch = NULL;
        return;
    }
    req->close_fn = fn;
    req->close_arg = arg;
}

void http_unwatch_close(http_request *req)
{
    if (req->close_watch)
        event_free(req->close_watch);
    req->close_watch = NULL;
    req->close_fn = NULL;
    req->close_arg = NULL;
}

void http_set_cleanup(http_request *req, void (*fn)(void *arg), void *arg)
{
    req->cleanup = fn;
    req->cleanup_arg = arg;
}

void http_retain(http_request *req) { http_request_ref(req); }
void http_release(http_request *req) { http_request_unref(req); }

void http_on_close(http_request *req, void (*fn)(void *arg), void *arg)
{
    req->on_close = fn;
    req->on_close_arg = arg;
}

http_stream *http_stream_begin(http_request *req, const char *content_type)
{
    http_stream *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->req = req;
    s->content_type = strdup(content_type);
    strbuf_init(&s->out, HTTP_STREAM_CAP);
    if (!s->content_type) {
        free(s);
        return NULL;
    }
    req->stream = s;
    req->status = 200;
    return s;
}

void http_stream_write(http_stream *s, const char *p, size_t n)
{
    if (s->ended)
        return;
    if (s->live) {
        if (!s->req->conn)
            return; /* the client is gone */
        if (!http_conn_stream_write(s->req->conn, p, n))
            http_stream_end(s); /* a client that does not read cannot grow our memory */
        else
            s->req->bytes_out += n;
        return;
    }
    if (strbuf_append(&s->out, p, n) != RAGD_OK)
        s->ended = true; /* before the head went out: capped the same way (counted at the flush) */
}

void http_stream_end(http_stream *s)
{
    s->ended = true;
    if (s->live && s->req->conn)
        http_conn_stream_end(s->req->conn);
}

bool http_stream_ended(const http_stream *s) { return s->ended; }

void http_stream_flush(http_stream *s)
{
    s->live = true;
    bool ended = s->ended;
    s->ended = false;
    if (s->out.len > 0)
        http_stream_write(s, s->out.data, s->out.len);
    strbuf_cleanup(&s->out);
    if (ended || s->ended)
        http_stream_end(s);
}

const char *http_arg_get(const http_request *req, const char *key)
{
    for (size_t i = 0; i < req->n_args; i++)
        if (strcmp(req->args[i].key, key) == 0)
            return req->args[i].value;
    return NULL;
}

/* Every reply goes through here, and each drops the caching and security headers a reply
 * before it set: whoever sets them does so after its reply call, so that a later error (an
 * output budget's 503) never goes out with the ETag of a file it does not carry. */
static void http_set_body(http_request *req, int status, const char *type, char *data, size_t len)
{
    free(req->resp_body);
    req->resp_cache_control = NULL;
    req->resp_etag = NULL;
    req->resp_headers = NULL;
    req->status = status;
    req->resp_type = type;
    req->resp_body = data;
    req->resp_len = len;
    req->resp_static = NULL;
}

/* The answer when not even the bytes of an answer can be allocated: a static envelope
 * (without the request id in the body; the X-Request-ID header still carries it). */
static void http_reply_no_memory(http_request *req)
{
    static const char oom[] = "{\"error\":{\"code\":\"overloaded\",\"message\":\"out of memory\"},"
                              "\"detail\":\"out of memory\"}";
    static const char oom_ollama[] = "{\"error\":\"out of memory\"}";
    static const char oom_openai[] = "{\"error\":{\"message\":\"out of memory\",\"type\":\"api_error\","
                                     "\"param\":null,\"code\":\"overloaded\"}}";
    const char *body = req->dialect == HTTP_DIALECT_OLLAMA   ? oom_ollama
                       : req->dialect == HTTP_DIALECT_OPENAI ? oom_openai
                                                             : oom;
    http_set_body(req, 503, "application/json; charset=utf-8", NULL, strlen(body));
    req->resp_static = body;
    snprintf(req->retry_after, sizeof req->retry_after, "1");
    log_warn("request %s: 503 overloaded: out of memory for the response", req->request_id);
}

/* Sets a copy of data[0..len) as the response; false when the copy cannot be allocated. */
static bool http_set_copy(http_request *req, int status, const char *type, const char *data, size_t len)
{
    char *copy = malloc(len + 1);
    if (!copy)
        return false;
    memcpy(copy, data, len);
    copy[len] = '\0';
    http_set_body(req, status, type, copy, len);
    return true;
}

void http_reply_owned(http_request *req, int status, const char *type, char *data, size_t len)
{
    http_set_body(req, status, type, data, len);
}

void http_reply_static(http_request *req, int status, const char *type, const char *data, size_t len)
{
    http_set_body(req, status, type, NULL, len);
    req->resp_static = data;
}

void http_reply_raw(http_request *req, int status, const char *type, const char *data, size_t len)
{
    if (!http_set_copy(req, status, type, data, len)) /* a short envelope may still fit */
        http_reply_error(req, 503, "overloaded", "out of memory for the response");
}

/* jansson returns NULL from json_pack, json_object, json_dumps... only when it could not
 * allocate (ragd's texts are valid UTF-8, its pack formats fixed), so a missing body or a
 * failed dump is answered as an allocation failure: 503, never a 500 that blames a bug. */
void http_reply_json(http_request *req, int status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        log_warn("request %s: the %d response could not be written (jansson out of memory)", req->request_id, status);
        http_reply_error(req, 503, "overloaded", "out of memory while writing the response");
        return;
    }
    http_set_body(req, status, "application/json; charset=utf-8", text, strlen(text));
}

/* Appends s unescaped at out + *len; false when it does not fit (out then unchanged). */
static bool http_append(char *out, size_t cap, size_t *len, const char *s)
{
    size_t n = strlen(s);
    if (n >= cap - *len)
        return false;
    memcpy(out + *len, s, n + 1);
    *len += n;
    return true;
}

/* OpenAI's error type for a status (the types its client libraries know). */
static const char *http_openai_error_type(int status)
{
    if (status == 401 || status == 403)
        return "authentication_error";
    if (status == 404)
        return "not_found_error";
    if (status == 429)
        return "rate_limit_error";
    return status >= 500 ? "api_error" : "invalid_request_error";
}

/* The error body of req's dialect into body[cap] (*len its length); false when it did not fit. */
static bool http_error_body(const http_request *req, const char *code, const char *msg, char *body, size_t cap,
                            size_t *len)
{
    *len = 0;
    if (req->dialect == HTTP_DIALECT_OLLAMA)
        return http_append(body, cap, len, "{\"error\":\"") && jsontext_escape(body, cap, len, msg) &&
               http_append(body, cap, len, "\"}");
    if (req->dialect == HTTP_DIALECT_OPENAI)
        return http_append(body, cap, len, "{\"error\":{\"message\":\"") && jsontext_escape(body, cap, len, msg) &&
               http_append(body, cap, len, "\",\"type\":\"") &&
               http_append(body, cap, len, http_openai_error_type(req->status)) &&
               http_append(body, cap, len, "\",\"param\":null,\"code\":\"") && jsontext_escape(body, cap, len, code) &&
               http_append(body, cap, len, "\"}}");
    return http_append(body, cap, len, "{\"error\":{\"code\":\"") && jsontext_escape(body, cap, len, code) &&
           http_append(body, cap, len, "\",\"message\":\"") && jsontext_escape(body, cap, len, msg) &&
           http_append(body, cap, len, "\",\"request_id\":\"") && jsontext_escape(body, cap, len, req->request_id) &&
           http_append(body, cap, len, "\"},\"detail\":\"") && jsontext_escape(body, cap, len, msg) &&
           http_append(body, cap, len, "\"}");
}

/* The envelope is written by hand into a stack buffer, not with jansson: an error reply
 * then needs one allocation (the copy), so that an allocation failure can be reported.
 * The compatible dialects have no 422: a field ragd calls invalid is their 400. */
void http_reply_error(http_request *req, int status, const char *code, const char *fmt, ...)
{
    char msg[1024]; /* the longest: /api/ingest's 415 with its curl commands */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* Messages may quote client input that is not valid UTF-8, or be cut inside a code
     * point: the envelope must stay valid JSON. */
    utf8_sanitize(msg);
    if (req->dialect != HTTP_DIALECT_RAGD && status == 422)
        status = 400;
    req->status = status; /* the OpenAI type is chosen by it */
    /* Escaping makes a byte at most six ("\u001f"). */
    char body[2 * 6 * sizeof msg + 6 * sizeof req->request_id + 128];
    size_t len = 0;
    bool ok = http_error_body(req, code, msg, body, sizeof body, &len);
    if (status == 503 && !req->retry_after[0])
        snprintf(req->retry_after, sizeof req->retry_after, "1"); /* docs/api.md "Errors": every 503 has Retry-After */
    if (strcmp(code, "overloaded") == 0)
        metrics_count_shed();
    if (status == 500)
        log_error("request %s: %d %s: %s", req->request_id, status, code, msg);
    else if (status >= 500)
        log_debug("request %s: %d %s: %s", req->request_id, status, code, msg); /* load shedding is normal */
    if (!ok) /* cannot happen: body holds the longest escaped message */
        log_error("request %s: the error envelope did not fit", req->request_id);
    if (!ok || !http_set_copy(req, status, "application/json; charset=utf-8", body, len))
        http_reply_no_memory(req);
}

/* ---- deferring to workers ---- */

static void http_on_complete(void *arg)
{
    http_request *req = arg;
    http_unwatch_close(req); /* the connection takes the socket back */
    log_debug("request %s: work done, resuming", req->request_id);
    req->deferred = false;
    if (req->conn)
        http_conn_send(req->conn);
    http_request_unref(req);
}

/* Releases one part; the last one hands the request back to the loop. */
void http_complete(http_request *req)
{
    if (atomic_fetch_sub(&req->parts, 1) != 1)
        return;
    loopq_post(req->app->lq, &req->done_item, http_on_complete, req);
}

void http_hold(http_request *req) { atomic_fetch_add(&req->parts, 1); }

static void http_run_deferred(void *arg)
{
    http_request *req = arg;
    http_handler work = req->handler;
    work(req);
    http_complete(req);
}

/* A deferred job dropped at shutdown before any worker took it. */
static void http_cancel_deferred(void *arg)
{
    http_request *req = arg;
    snprintf(req->retry_after, sizeof req->retry_after, "1");
    http_reply_error(req, 503, "not_ready", "server shut down before this request was processed");
    http_complete(req);
}

void http_go_async(http_request *req)
{
    atomic_store(&req->parts, 1);
    http_request_ref(req);
    req->deferred = true;
}

void http_defer(http_request *req, http_handler work) { http_defer_on(req, req->app->pool, work); }

/* The 503 for a pool whose queue is full, in the user's words: what waits, for what, and
 * the settings that make room. */
static void http_reply_pool_full(http_request *req, const workpool *pool)
{
    bool ingest = pool == req->app->ingest_pool;
    snprintf(req->retry_after, sizeof req->retry_after, "1");
    http_reply_error(req, 503, "overloaded",
                     "server busy: %zu %s already waiting for %s (RAGD_WORKER_QUEUE); retry shortly, or raise "
                     "RAGD_WORKER_QUEUE or %s",
                     req->app->cfg.worker_queue, ingest ? "ingest requests are" : "requests are",
                     ingest ? "the ingest threads" : "a worker thread", ingest ? "RAGD_INGEST_WORKERS" : "RAGD_WORKERS");
}

void http_defer_on(http_request *req, workpool *pool, http_handler work)
{
    req->handler = work;
    atomic_store(&req->parts, 1);
    http_request_ref(req);
    req->deferred = true;
    ragd_err rc = workpool_submit(pool, http_run_deferred, http_cancel_deferred, req);
    if (rc != RAGD_OK) {
        req->deferred = false;
        http_request_unref(req);
        if (rc == RAGD_EBUSY) {
            http_reply_pool_full(req, pool);
        } else if (rc == RAGD_ENOMEM) {
            http_reply_error(req, 503, "overloaded", "out of memory");
        } else {
            http_reply_error(req, 503, "not_ready", "server is shutting down");
        }
    }
}

/* ---- JSON bodies ---- */

/* Nesting depth of a JSON text, counting brackets outside strings. Stops counting past
 * the limit. Run before parsing so a deep document never reaches the parser's recursion. */
static int http_json_depth(const char *p, size_t n)
{
    int depth = 0, max = 0;
    bool in_string = false;
    for (size_t i = 0; i < n; i++) {
        char ch = p[i];
        if (in_string) {
            if (ch == '\\')
                i++;
            else if (ch == '"')
                in_string = false;
        } else if (ch == '"') {
            in_string = true;
        } else if (ch == '[' || ch == '{') {
            if (++depth > max)
                max = depth;
            if (max > HTTP_JSON_MAX_DEPTH)
                return max;
        } else if (ch == ']' || ch == '}') {
            depth--;
        }
    }
    return max;
}

bool http_json_too_deep(const char *p, size_t n) { return http_json_depth(p, n) > HTTP_JSON_MAX_DEPTH; }

json_t *http_json_object(http_request *req)
{
    if (req->body.len == 0) {
        http_reply_error(req, 400, "invalid_json", "request body is empty; a JSON object is required");
        return NULL;
    }
    if (http_json_depth(req->body.data, req->body.len) > HTTP_JSON_MAX_DEPTH) {
        http_reply_error(req, 400, "invalid_json", "JSON nested deeper than %d levels", HTTP_JSON_MAX_DEPTH);
        return NULL;
    }
    json_error_t jerr;
    unsigned long failed = jsonmem_failures();
    json_t *root = json_loadb(req->body.data, req->body.len, JSON_DECODE_ANY, &jerr);
    if (jsonmem_failures() != failed) {
        /* jansson ran out of memory: no answer about the body, and a result, if any, may
         * hold altered text (jsonmem.h). */
        json_decref(root);
        http_reply_error(req, 503, "overloaded", "out of memory while reading the JSON body");
        return NULL;
    }
    if (!root) {
        http_reply_error(req, 400, "invalid_json", "body is not valid JSON: %s (line %d, column %d)", jerr.text,
                         jerr.line, jerr.column);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        http_reply_error(req, 422, "validation_error", "body: must be a JSON object");
        return NULL;
    }
    return root;
}
