#ifndef RAGD_HTTP_REQUEST_INT_H
#define RAGD_HTTP_REQUEST_INT_H

/* Lifecycle of http_request, for the HTTP server module only. Loop thread only. */
#include "http/request.h"

http_request *http_request_new(struct app *owner, struct MHD_Connection *conn, size_t body_cap);
void http_request_ref(http_request *req);
void http_request_unref(http_request *req);
/* Queues the response that is set on the connection (MHD_queue_response). */
int http_request_send(http_request *req);
/* For a reply MHD cannot queue, in the middle of a request body: writes the response set on
 * req straight to the socket with Connection: close and returns MHD_NO, so that MHD closes
 * the connection without reading the rest of the body. See request.c for why it is safe. */
int http_request_send_and_close(http_request *req);

#endif
