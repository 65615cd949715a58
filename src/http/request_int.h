#ifndef RAGD_HTTP_REQUEST_INT_H
#define RAGD_HTTP_REQUEST_INT_H

/* Lifecycle of http_request, for the HTTP server module only. Loop thread only. */
#include "http/request.h"

http_request *http_request_new(struct app *owner, struct MHD_Connection *conn, size_t body_cap);
void http_request_ref(http_request *req);
void http_request_unref(http_request *req);
/* Queues the response that is set on the connection (MHD_queue_response). */
int http_request_send(http_request *req);

#endif
