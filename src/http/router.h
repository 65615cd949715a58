#ifndef RAGD_HTTP_ROUTER_H
#define RAGD_HTTP_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "http/request.h"

/* What a route accepts as a request body (checked before the body is read). */
typedef enum {
    HTTP_BODY_NONE,   /* a body, if any, is ignored */
    HTTP_BODY_JSON,   /* application/json or no Content-Type */
    HTTP_BODY_INGEST, /* JSON, or raw text/plain, text/markdown, text/html */
} http_body_kind;

/* A route: a pattern of '/'-separated segments where "{name}" matches one segment and a
 * final "{*name}" matches the rest of the path (slashes included). One handler per method;
 * NULL means the method is not allowed. HEAD uses the GET handler. */
typedef struct {
    const char *pattern;
    http_handler get;
    http_handler post;
    http_handler del;
    http_body_kind post_body;
    http_dialect dialect; /* whose API the route speaks: the shape of its errors (RAGD when left out) */
} http_route;

typedef enum {
    HTTP_ROUTE_FOUND,
    HTTP_ROUTE_NOT_FOUND,
    HTTP_ROUTE_BAD_METHOD,
    HTTP_ROUTE_BAD_ENCODING,
    HTTP_ROUTE_NO_MEMORY,
} http_route_result;

/* Matches req->path and req->method against the table. FOUND: fills req->handler,
 * req->route_name, req->params (percent-decoded, owned by req) and *route. BAD_METHOD:
 * fills req->allow, req->route_name and req->dialect (FOUND too). BAD_ENCODING: a malformed %-escape or %00.
 * NO_MEMORY: a path parameter could not be allocated. */
http_route_result http_route_match(const http_route *routes, size_t n, http_request *req, const http_route **route);

/* Decodes %XX escapes of s[0..n) into a new NUL-terminated string. Returns NULL on a
 * malformed escape, an escaped NUL, or no memory. */
char *http_percent_decode(const char *s, size_t n);

/* True when s[0..n) has no malformed escape and no escaped NUL, so that a NULL from
 * http_percent_decode for it means no memory. Allocates nothing. */
bool http_percent_valid(const char *s, size_t n);

#endif
