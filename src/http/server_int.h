#ifndef RAGD_HTTP_SERVER_INT_H
#define RAGD_HTTP_SERVER_INT_H

/* The HTTP server's state, shared by http_server.c (listener, requests) and conn.c
 * (connections). Loop thread only. */
#include <stdbool.h>
#include <stddef.h>

#include "http/conn.h"
#include "http/http_server.h"

struct event;

#define HTTP_REFUSED_MAX 64 /* refused sockets read and dropped for a moment before the close */

struct http_server {
    struct app *app;
    const http_route *routes;
    size_t n_routes;
    struct event *accept_ev;
    struct event *accept_pause; /* re-arms accepting after EMFILE */
    int listen_fd;
    int port;
    size_t in_flight;
    size_t out_bytes;    /* bytes queued for clients, every connection (RAGD_MAX_OUTPUT_BYTES) */
    http_conn *conns;    /* every open connection */
    size_t n_conns;
    size_t max_conns;    /* effective RAGD_MAX_CONNECTIONS: lowered to fit RLIMIT_NOFILE */
    size_t reserve;      /* the last slots, for /health* only; one per address, 1 s head deadline */
    int spare_fd;        /* kept open to be closed on EMFILE: accept-and-close instead of spinning */
    double emfile_warned_ms; /* the last "cannot accept" warning (once a minute) */
    size_t per_ip;       /* effective RAGD_MAX_CONNECTIONS_PER_IP */
    /* Sockets answered by http_server_refuse_fd: fixed storage, so that closing them
     * gently needs no memory (they were refused for the lack of it). */
    struct {
        int fd;
        double until_ms;
        const char *message; /* not yet answered: the 503 to send once the head is in */
    } refused[HTTP_REFUSED_MAX];
    size_t n_refused;
    struct event *reaper; /* reads and closes them; made at start */
};

/* Everything decided from the request line and headers (c->head over buf), before any body
 * byte is read: fills c->req from them. Returns true when a response is already set (an early
 * reply: the connection closes after it). */
bool http_server_begin(http_server *s, http_conn *c, const char *buf);
/* Answers a connection that cannot be served the usual way (over the per-address cap; out
 * of memory for its objects, its request or its reply's queue) with a fixed 503 `overloaded`
 * envelope naming message (JSON-safe text), written straight to fd without waiting and
 * without allocating, after reading what the client sent so far; then shuts the write side.
 * The request id is rid_known, else the client's X-Request-ID when its head can be read
 * from those bytes, else a new one. loud: a warning in the access log's form (ending
 * "id=ID"). The caller closes fd. */
void http_server_refuse_fd(int fd, const char *message, const char *rid_known, bool loud);
/* How much of a request target a log line may show: the path without its query string
 * (which may carry keys or ids), at most 200 bytes. */
size_t http_target_loggable(const char *target, size_t len);
/* Takes fd (answered by http_server_refuse_fd) and closes it within a second, after reading
 * and dropping what the client still sends (so the close is not a reset that destroys the
 * reply); closes it at once when the fixed table is full. Allocates nothing. */
void http_server_close_refused(http_server *s, int fd);
/* For a connection refused before any of its bytes could be read (no memory for its
 * objects at accept): waits up to a second, without allocating, for its head to arrive so
 * that the fixed 503 names the client's X-Request-ID (and the log line too), then answers
 * and closes it as http_server_close_refused does. Answers at once when the table is full. */
void http_server_refuse_later(http_server *s, int fd, const char *message);
/* Called by conn.c when a connection is gone: unlinks it. */
void http_server_conn_gone(http_server *s, http_conn *c);

/* The method as a metrics label: never NULL, bounded. */
const char *http_method_label(http_method m);
/* The request id: the client's X-Request-ID when of a safe form (given[0..n)), else 32
 * random hex digits. out has HTTP_REQUEST_ID_SIZE bytes. given may be NULL. */
void http_request_id(char *out, const char *given, size_t n);

#endif
