/* libFuzzer target: route matching against the real route table, and percent-decoding.
 * Byte 0 picks the method; the rest (NUL-terminated) is the request path. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "http/handlers.h"
#include "http/request_int.h"
#include "http/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static app fz_app;

static void fz_route(http_method method, const char *path, size_t len)
{
    http_request *req = http_request_new(&fz_app, NULL, 0);
    if (!req)
        return;
    req->method = method;
    req->path = malloc(len + 1);
    if (!req->path)
        goto out;
    memcpy(req->path, path, len);
    req->path[len] = '\0';

    const http_route *route = NULL;
    http_route_result rc = http_route_match(handlers_routes, handlers_routes_count, req, &route);
    switch (rc) {
    case HTTP_ROUTE_FOUND:
        if (!route || !req->handler || req->route_name != route->pattern || req->n_params > HTTP_MAX_PARAMS)
            abort();
        for (size_t i = 0; i < req->n_params; i++)
            if (!req->params[i] || !req->params[i][0])
                abort();
        break;
    case HTTP_ROUTE_BAD_METHOD:
        if (!route || !req->route_name || !req->allow[0] || req->handler)
            abort();
        break;
    case HTTP_ROUTE_BAD_ENCODING:
        if (!req->route_name || req->n_params != 0)
            abort();
        break;
    case HTTP_ROUTE_NOT_FOUND:
        /* the label stays the bounded "unmatched" that http_request_new sets (23d73e9) */
        if (!req->route_name || strcmp(req->route_name, "unmatched") != 0 || req->handler || req->n_params != 0)
            abort();
        break;
    default:
        abort();
    }
out:
    http_request_unref(req);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const http_method methods[] = {HTTP_GET, HTTP_POST, HTTP_DELETE, HTTP_HEAD, HTTP_OTHER};
    http_method method = size > 0 ? methods[data[0] % 5] : HTTP_GET;
    const char *path = size > 0 ? (const char *)data + 1 : "";
    size_t len = size > 0 ? size - 1 : 0;
    fz_route(method, path, len);

    /* The whole input, raw (it may hold NUL bytes). */
    char *dec = http_percent_decode((const char *)data, size);
    if ((dec != NULL) != http_percent_valid((const char *)data, size))
        abort(); /* the server tells a bad escape from no memory by this agreement */
    if (dec && !memchr(data, '\0', size)) {
        size_t n = strlen(dec);
        if (n > size || (memchr(dec, '%', n) && !memchr(data, '%', size)))
            abort();
        if (!memchr(data, '%', size) && (n != size || memcmp(dec, data, size) != 0))
            abort();
    }
    free(dec);
    return 0;
}
