#ifndef RAGD_HTTP_SERVER_H
#define RAGD_HTTP_SERVER_H

/* The HTTP server: ragd's own HTTP/1.1 connection layer (http/conn.h, http/parse.h) on the
 * libevent loop, no thread of its own (docs/internals/http.md). Connection limits (total,
 * per address, a reserve for /health*), deadlines for the head and the body, an idle timeout
 * and the body cap from the configuration; every reply, the early ones
 * (400/404/405/408/413/415/431...) included, in ragd's JSON envelope. */
#include <stddef.h>

#include "http/router.h"

struct app;
typedef struct http_server http_server;

/* Binds cfg's listen address and starts serving `routes` on a->base. NULL + err on failure. */
http_server *http_server_start(struct app *a, const http_route *routes, size_t n_routes, char *err, size_t errlen);
/* The bound port (useful with port 0). */
int http_server_port(const http_server *s);
/* Stops accepting: the listening socket is closed, so new connections are refused.
 * Connections already open are served (each reply then says Connection: close). */
void http_server_quiesce(http_server *s);
/* Requests received and not yet finished. */
size_t http_server_in_flight(const http_server *s);
/* Closes every connection and frees the server. NULL ok. */
void http_server_stop(http_server *s);

#endif
