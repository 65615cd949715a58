#ifndef RAGD_UPSTREAM_CLIENT_H
#define RAGD_UPSTREAM_CLIENT_H

/* The upstream HTTP client: libcurl's multi-socket API driven by ragd's own libevent loop
 * (curl's docs/examples/hiperfifo.c pattern), with keep-alive connection reuse under a
 * per-host limit, layered timeouts (connect, time to first byte, idle gap between body
 * pieces, total), a response-size cap, and cancellation.
 *
 * Threads: everything here runs on the loop thread, callbacks included.
 * Lifetimes: upstream_start copies what it needs from the request. on_done is called
 * exactly once for a started call, unless the call is cancelled first, and never inside
 * upstream_start or upstream_cancel (it comes from the loop: a socket or timer event);
 * after on_done returns (or upstream_cancel returns) the call is freed: do not touch it
 * again. */
#include <stddef.h>

struct event_base;

typedef struct upstream_client upstream_client;
typedef struct upstream_call upstream_call;

typedef struct {
    long max_host_connections; /* open connections per host (keep-alive pool), e.g. 16 */
    long max_total_connections; /* connection cache size, e.g. 64 */
} upstream_client_options;

/* How a call ended, as far as the transport is concerned (the HTTP status is separate). */
typedef enum {
    UPSTREAM_T_OK = 0,         /* a complete HTTP response (any status) */
    UPSTREAM_T_CONNECT,        /* refused, unreachable, DNS, or connect timeout */
    UPSTREAM_T_TTFB_TIMEOUT,   /* connected, but no response byte within ttfb_timeout_ms */
    UPSTREAM_T_IDLE_TIMEOUT,   /* the response stalled for idle_timeout_ms */
    UPSTREAM_T_TOTAL_TIMEOUT,  /* total_timeout_ms passed */
    UPSTREAM_T_RESET,          /* the connection broke or closed mid-response */
    UPSTREAM_T_TOO_BIG,        /* the response passed max_response_bytes */
    UPSTREAM_T_ABORTED,        /* on_headers/on_data asked to stop */
    UPSTREAM_T_OTHER,
} upstream_transport;

const char *upstream_transport_name(upstream_transport t);

typedef struct {
    upstream_transport transport;
    int status;          /* HTTP status, 0 when none was received */
    double ttfb_ms;      /* from start to the first response byte, -1 when none */
    double total_ms;
    int reused;          /* 1 when the call ran on a kept-alive connection */
    const char *message; /* curl's error text or ours; valid during on_done only */
} upstream_result;

typedef struct {
    const char *url;
    const char *body;        /* POST body (copied); NULL = GET */
    size_t body_len;
    const char *content_type; /* e.g. "application/json" */
    const char *authorization; /* full header value, e.g. "Bearer …"; never logged */
    long connect_timeout_ms;
    long ttfb_timeout_ms;     /* covers a model's cold start: make it generous */
    long idle_timeout_ms;     /* between body pieces once the response started */
    long total_timeout_ms;
    size_t max_response_bytes;
    /* Called once when the first response byte arrives; return non-zero to abort. */
    int (*on_headers)(int status, const char *content_type, void *arg);
    /* Called for each piece of the body; return non-zero to abort. */
    int (*on_data)(const char *p, size_t n, void *arg);
    void (*on_done)(const upstream_result *r, void *arg);
    void *arg;
} upstream_request;

upstream_client *upstream_client_new(struct event_base *base, const upstream_client_options *opt);
/* Cancels every call still running (their on_done is not called) and frees. NULL ok. */
void upstream_client_free(upstream_client *c);

/* Starts a call. NULL when it could not be started (on_done will never be called). */
upstream_call *upstream_start(upstream_client *c, const upstream_request *req);
/* Stops a call that has not finished; its on_done will not be called (a cancel of this
 * low-level primitive is synchronous: its one owner, llm.c, learns the outcome from the
 * return, as with bulkhead_cancel). Safe from another call's on_headers/on_data: libcurl
 * forbids removing a handle inside its callbacks, so the call is then parked and freed
 * once curl returns. From the call's own on_headers/on_data return non-zero instead. */
void upstream_cancel(upstream_call *call);

typedef struct {
    unsigned long calls_started;
    unsigned long connections_opened; /* new TCP connections; the rest were reused */
    unsigned long running;
} upstream_client_stats;
void upstream_client_stats_get(const upstream_client *c, upstream_client_stats *out);

#endif
