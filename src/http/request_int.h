#ifndef RAGD_HTTP_REQUEST_INT_H
#define RAGD_HTTP_REQUEST_INT_H

/* Lifecycle of http_request, for the HTTP server module only. Loop thread only. */
#include "http/request.h"
#include "util/strbuf.h"

struct http_stream {
    http_request *req;
    char *content_type;
    strbuf out;  /* written before the response's head went out (capped at 16 MiB) */
    bool live;   /* the head went out: writes go straight to the connection */
    bool ended;
};

/* A new request on conn (NULL for tests) whose body may take body_cap bytes; NULL when out
 * of memory. One reference, the connection's. */
http_request *http_request_new(struct app *owner, struct http_conn *conn, size_t body_cap);
void http_request_ref(http_request *req);
void http_request_unref(http_request *req);
/* Frees the request's body and gives its bytes back to the server's budget
 * (RAGD_MAX_BODY_BYTES_TOTAL): every way a body ends goes through here. */
void http_request_drop_body(http_request *req);
/* The stream's head went out: hands over what was written before it, and the end if it came. */
void http_stream_flush(http_stream *s);

#endif
