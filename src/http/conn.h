#ifndef RAGD_HTTP_CONN_H
#define RAGD_HTTP_CONN_H

/* One client connection: ragd's HTTP/1.1 connection layer on a libevent bufferevent
 * (docs/internals/http.md). Internal to the HTTP server; loop thread only.
 *
 * A connection reads one request at a time: the head through the strict parser
 * (http/parse.h) within RAGD_HEADER_TIMEOUT_S, the body within RAGD_BODY_TIMEOUT_S, then stops
 * reading while the request is handled and its response written (pipelined requests wait in
 * the input buffer, in order). A response is written with backpressure: a client that reads
 * nothing for RAGD_IDLE_TIMEOUT_S, or reads bytes that wait in its output slower than
 * RAGD_MIN_SEND_RATE once they have waited RAGD_IDLE_TIMEOUT_S, is closed with a reset (its
 * request logged and counted as 499). A reply that would take the bytes queued for all
 * clients over RAGD_MAX_OUTPUT_BYTES is answered 503 instead. On a reserve slot the head
 * must arrive within 1 s. Between requests the connection may stay open RAGD_IDLE_TIMEOUT_S. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "http/parse.h"
#include "http/request.h"
#include "util/cidr.h"

struct http_server;
struct bufferevent;
struct event;
struct evbuffer_cb_entry;

typedef struct http_conn http_conn;

struct http_conn {
    struct http_server *srv;
    struct bufferevent *bev;
    struct event *timer;  /* the deadline of the current phase */
    int fd;
    int phase;            /* see conn.c */
    cidr_addr peer;
    cidr_addr client;     /* the request's client: peer, or by X-Forwarded-For from a trusted proxy */
    bool reserve;         /* holds a reserve slot: only /health* requests are served */
    bool deadline_armed;  /* the header deadline runs for the request being read */
    bool close_after;     /* close once the response is written */
    bool keep_alive;      /* the request allows another after it */
    bool head_only;       /* HEAD: no response body */
    bool stream_live;     /* a chunked stream's head went out */
    bool stream_chunked;  /* the stream is chunk-encoded (HTTP/1.1); else close-delimited */
    bool response_done;   /* every byte of the response is queued */
    bool closing;         /* closes on the next loop turn (conn_close_soon) */
    bool refused;         /* answered by the fixed 503 (http_server_refuse_fd): closed gently */
    bool client_gone;     /* the client closed, reset, or stopped taking the reply: its request ends as 499 */
    bool lingering;       /* write side shut: reading what the client still sends, then close */
    size_t linger_bytes;
    size_t out_charged;   /* this connection's bytes in the server's out_bytes (its output buffer) */
    double backlog_since_ms; /* the output has held bytes since then; 0: it is empty */
    uint64_t backlog_taken;  /* bytes the client took since backlog_since_ms */
    struct evbuffer_cb_entry *out_watch;
    uint64_t body_left;   /* Content-Length bytes still to read */
    bool body_chunked;
    http_head head;
    http_chunked chunked;
    http_request *req;    /* the request being read, handled or answered */
    http_conn *prev, *next; /* the server's list */
};

/* Starts serving fd (non-blocking, accepted) from peer; reserve: see above. NULL when out of
 * memory (fd then gets the fixed 503 and is closed: http_server_refuse_later). The connection adds itself to the server's list. */
http_conn *http_conn_new(struct http_server *srv, int fd, const cidr_addr *peer, bool reserve);
/* Closes the connection at once; its request, if any, ends as aborted (at_stop: the server
 * is stopping, so close watches are dropped without calling them). */
void http_conn_close(http_conn *c, bool at_stop);
/* True when the connection waits for a request and has no byte of one. */
bool http_conn_idle(const http_conn *c);
/* Sends the response set on c->req (the handler replied, or its deferred work completed). */
void http_conn_send(http_conn *c);
/* For http_stream_*: queues one piece of a live stream; false when the connection's output
 * would pass the 16 MiB stream cap or the server's RAGD_MAX_OUTPUT_BYTES (the stream must then
 * end). */
bool http_conn_stream_write(http_conn *c, const char *p, size_t n);
/* Ends a live stream (the last chunk). */
void http_conn_stream_end(http_conn *c);
/* The socket, for the close watch. */
int http_conn_fd(const http_conn *c);

#endif
