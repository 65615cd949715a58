#ifndef RAGD_HTTP_REQUEST_H
#define RAGD_HTTP_REQUEST_H

/* One HTTP request as handlers see it, and the replies they can give.
 *
 * Threads: a request is touched by one thread at a time. Handlers are called on the loop
 * thread; they either reply at once (http_reply_*) or hand the work to a worker with
 * http_defer(). A deferred job replies on its worker and returns; or, when it hands the
 * request on again (to the store's writer), it calls http_hold() first and whoever finishes
 * calls http_complete() from any thread. The response is sent on the loop thread. */
#include <jansson.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct workpool workpool;

#include "util/loopq.h"
#include "util/ratelimit.h"
#include "util/strbuf.h"

struct http_conn;
struct app;

#define HTTP_MAX_ARGS 32
#define HTTP_MAX_PARAMS 4
#define HTTP_REQUEST_ID_SIZE 129

typedef enum { HTTP_GET = 1, HTTP_POST = 2, HTTP_DELETE = 4, HTTP_HEAD = 8, HTTP_OTHER = 16 } http_method;

typedef struct {
    char *key;
    char *value;
} http_arg;

/* Whose API a route speaks (recorded in the route table): the shape of every error on it,
 * those made before its handler runs included (docs/api.md "Error shapes").
 * RAGD: {"error":{"code","message","request_id"},"detail"}; OLLAMA: {"error":"message"};
 * OPENAI: {"error":{"message","type","param":null,"code"}}. The compatible dialects answer
 * 400 where ragd says 422 (a field of the wrong type or out of range). */
typedef enum { HTTP_DIALECT_RAGD = 0, HTTP_DIALECT_OLLAMA, HTTP_DIALECT_OPENAI } http_dialect;

typedef struct http_request http_request;
typedef void (*http_handler)(http_request *req);

/* Time a request spent in the steps that call a model — embedding the question, reranking,
 * generating (or the whole backend call on the compatible routes) — in milliseconds, for
 * the access line; 0 = the request had no such step. Handlers fill it on the loop thread
 * before the response goes. */
typedef struct {
    double embed_ms, rerank_ms, generate_ms;
} http_upstream_time;
typedef struct http_stream http_stream;

struct http_request {
    struct app *app;
    struct http_conn *conn; /* NULL once the connection is gone */
    http_method method;
    char *method_name;
    char *path;                       /* raw, not percent-decoded */
    const char *route_name;           /* bounded label for logs/metrics, e.g. "/api/dbs/{name}" */
    http_dialect dialect;             /* the shape of its errors: the route's, or by path when unmatched */
    http_handler handler;
    char *params[HTTP_MAX_PARAMS];    /* decoded path parameters, in pattern order */
    size_t n_params;
    http_arg args[HTTP_MAX_ARGS];     /* decoded query-string arguments */
    size_t n_args;
    bool bad_query;                   /* a malformed %-escape, or more than HTTP_MAX_ARGS */
    char request_id[HTTP_REQUEST_ID_SIZE];
    char content_type[128];           /* media type, lower-case, without parameters; "" if none */
    char content_params[512];         /* the Content-Type's parameters as sent, from the first ';' ("" if
                                       * none): read with multipart_param (boundary, charset) */
    bool content_params_too_long;     /* they did not fit: refused by the handlers that read them */
    char credential[512];             /* Bearer token or X-API-Key value, "" if none; never logged */
    bool credential_too_long;         /* it did not fit: matches nothing (never a cut prefix) */
    bool accept_sse;
    bool accept_html;                 /* an Accept header names text/html: a browser (GET / gives the page) */
    char if_none_match[256];          /* If-None-Match fields, joined with ", " ("" if none) */
    bool if_none_match_too_long;      /* they did not fit: the condition is not evaluated (a full 200) */
    strbuf body;                      /* capped at RAGD_MAX_BODY_BYTES */
    size_t body_charged;              /* body's bytes in app->body_budget; given back when it is freed */
    bool begun;                       /* the access handler has seen the headers */
    bool args_no_memory;              /* query-string arguments could not be stored */
    double t_start_ms;
    http_upstream_time upstream; /* see http_upstream_time */

    /* the response */
    int status;
    char *resp_body;
    const char *resp_static; /* instead of resp_body: a static body (the out-of-memory reply) */
    size_t resp_len;
    size_t bytes_out; /* body bytes queued for the client (a stream's pieces added up) */
    const char *resp_type;
    /* set after the reply call (each http_reply_* resets these three to NULL) */
    const char *resp_cache_control; /* Cache-Control's value; NULL: "no-store" (every API answer) */
    const char *resp_etag;          /* ETag's value (quoted), or NULL: none */
    const char *resp_headers;       /* more header lines, each "Name: value\r\n", or NULL; static text only,
                                     * never anything a client sent (the web page's security headers) */
    char allow[64];
    char retry_after[16];
    bool www_authenticate; /* a 401: say how to authenticate (WWW-Authenticate: Bearer) */
    ratelimit_verdict rate; /* X-RateLimit-* when rate.limit > 0 (a limited route) */

    /* lifecycle (loop thread only) */
    int refs;
    bool deferred;  /* a worker owns it until http_complete */
    atomic_int parts; /* parties that must finish before the response goes (worker, holder) */
    loopq_item done_item; /* posts the hand-back to the loop; never needs memory */
    bool answered;  /* a response was queued */
    bool client_gone; /* the client closed before the reply was out: logged and counted as 499 */
    bool early;     /* response decided before the body was read */
    http_stream *stream; /* a streamed response body, when one was begun */
    void (*cleanup)(void *arg); /* see http_set_cleanup */
    void *cleanup_arg;
    struct event *close_watch; /* see http_watch_close */
    void (*close_fn)(void *arg);
    void *close_arg;
    void (*on_close)(void *arg); /* see http_on_close */
    void *on_close_arg;
};

/* Query-string argument by name, or NULL. */
const char *http_arg_get(const http_request *req, const char *key);

/* Sets a JSON response (steals the reference to body). A NULL body, or one that cannot be
 * dumped, is taken for an allocation failure: 503 overloaded. */
void http_reply_json(http_request *req, int status, json_t *body);
/* Sets a response of any type; copies the bytes (when that copy cannot be allocated, the
 * reply is a static 503 overloaded). */
void http_reply_raw(http_request *req, int status, const char *type, const char *data, size_t len);
/* Sets a response whose bytes data[0..len) (malloc'd, NUL-terminated) the request takes
 * over: for answers written into memory allocated beforehand, which cannot fail. */
void http_reply_owned(http_request *req, int status, const char *type, char *data, size_t len);
/* Sets a response whose bytes data[0..len) are static (they outlive every request, e.g. the
 * web page compiled into the binary): nothing is copied, so it cannot fail. */
void http_reply_static(http_request *req, int status, const char *type, const char *data, size_t len);
/* Sets the error envelope: {"error":{"code","message","request_id"},"detail"}; a 503 gets
 * Retry-After (1 s unless the caller set one). Uses no jansson, one allocation. */
void http_reply_error(http_request *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Runs work(req) on a worker thread (see the thread contract above). If the pool's queue
 * is full, replies 503 overloaded at once instead, saying how many requests wait for which
 * threads and naming the settings to raise (RAGD_WORKER_QUEUE, the pool's threads). */
void http_defer(http_request *req, http_handler work);
/* http_defer on the given pool (the ingest pool, app.h) instead of the worker pool. */
void http_defer_on(http_request *req, workpool *pool, http_handler work);
/* The handler goes on asynchronously from the loop, with no worker (e.g. the query engine):
 * the connection waits (reads nothing) when the handler returns, and the response set goes once
 * http_complete is called. Loop thread, from the handler. */
void http_go_async(http_request *req);
/* Called by deferred work before it passes the request on (e.g. to the store's writer):
 * the response is then sent only once the work has returned AND the new holder has
 * called http_complete(). */
void http_hold(http_request *req);
/* The holder's side of http_hold: the response that is set may go. Any thread; after
 * this call the caller must not touch req again. */
void http_complete(http_request *req);

/* ---- streamed responses (loop thread only) ----
 * http_stream_begin turns the response into a chunked stream of the given type; it is sent
 * when the request completes (http_complete) and then fed with http_stream_write until
 * http_stream_end. Bytes written are buffered (capped at 16 MiB: past it the stream ends)
 * and the connection is woken to send them. The stream belongs to the request. */
http_stream *http_stream_begin(http_request *req, const char *content_type);
void http_stream_write(http_stream *s, const char *p, size_t n);
void http_stream_end(http_stream *s);
/* Whether the stream has ended: by http_stream_end, or capped because the client does not
 * read. A producer stops then (e.g. the LLM call behind it): nothing more will reach the
 * client. */
bool http_stream_ended(const http_stream *s);

/* Gives the request one owned object, freed in one place: fn(arg) runs on the loop thread
 * when the request itself is freed, whatever path it took (answered, refused, client gone,
 * shutdown). Handlers keep their per-request state there, so every asynchronous step can
 * rely on it living as long as the request. Loop thread only; set once. */
void http_set_cleanup(http_request *req, void (*fn)(void *arg), void *arg);

/* Keeps the request alive beyond its completion (e.g. while a stream is fed); pair with
 * http_release. Loop thread only. */
void http_retain(http_request *req);
void http_release(http_request *req);

/* fn(arg) runs on the loop thread if the connection ends before the response was fully
 * sent (a client that disconnects mid-stream); clear it with fn = NULL. */
void http_on_close(http_request *req, void (*fn)(void *arg), void *arg);

/* While the request waits (its connection reads nothing meanwhile, so it does not watch
 * it), watches the socket for the client hanging up (EPOLLRDHUP) and then calls fn(arg)
 * once, on the loop thread. A client that half-closes after sending counts as gone.
 * No-op where the event backend cannot tell. http_unwatch_close stops it; both loop only. */
void http_watch_close(http_request *req, void (*fn)(void *arg), void *arg);
void http_unwatch_close(http_request *req);

/* Parses the body as a JSON object (depth <= 64, valid UTF-8). On failure replies 400
 * invalid_json (unparseable, empty), 422 validation_error (not an object) or 503
 * overloaded (jansson ran out of memory: see util/jsonmem.h) and returns NULL. */
json_t *http_json_object(http_request *req);
/* The nesting http_json_object accepts: deeper bodies get 400 invalid_json. */
#define HTTP_JSON_MAX_DEPTH 64
/* Whether the JSON text p[0..n) nests deeper than http_json_object allows (64): checked
 * before parsing any JSON a client sends (a form's metadata field too). */
bool http_json_too_deep(const char *p, size_t n);

#endif
