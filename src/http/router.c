#include "http/router.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/hex.h"

bool http_percent_valid(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%')
            continue;
        if (i + 2 >= n)
            return false;
        int a = hex_digit_value(s[i + 1]);
        int b = hex_digit_value(s[i + 2]);
        if (a < 0 || b < 0 || (a == 0 && b == 0))
            return false;
        i += 2;
    }
    return true;
}

char *http_percent_decode(const char *s, size_t n)
{
    char *out = malloc(n + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] != '%') {
            out[o++] = s[i];
            continue;
        }
        if (i + 2 >= n) {
            free(out);
            return NULL;
        }
        int a = hex_digit_value(s[i + 1]);
        int b = hex_digit_value(s[i + 2]);
        if (a < 0 || b < 0 || (a == 0 && b == 0)) {
            free(out);
            return NULL;
        }
        out[o++] = (char)(a * 16 + b);
        i += 2;
    }
    out[o] = '\0';
    return out;
}

/* Compares one pattern against the path; on a match stores decoded params in req. */
static http_route_result http_match_one(const char *pattern, const char *path, http_request *req)
{
    const char *p = pattern;
    const char *s = path;
    size_t n_params = 0;
    char *params[HTTP_MAX_PARAMS] = {0};
    http_route_result rc = HTTP_ROUTE_NOT_FOUND;

    while (*p && *s) {
        if (*p != '/' || *s != '/')
            goto out;
        p++;
        s++;
        const char *pend = strchr(p, '/');
        size_t plen = pend ? (size_t)(pend - p) : strlen(p);
        bool rest = plen > 2 && p[0] == '{' && p[1] == '*';
        const char *send = rest ? s + strlen(s) : strchr(s, '/');
        size_t slen = send ? (size_t)(send - s) : strlen(s);
        if (plen > 1 && p[0] == '{') {
            if (slen == 0 || n_params == HTTP_MAX_PARAMS)
                goto out;
            params[n_params] = http_percent_decode(s, slen);
            if (!params[n_params]) {
                rc = http_percent_valid(s, slen) ? HTTP_ROUTE_NO_MEMORY : HTTP_ROUTE_BAD_ENCODING;
                goto out;
            }
            n_params++;
        } else if (plen != slen || strncmp(p, s, plen) != 0) {
            goto out;
        }
        p += plen;
        s += slen;
    }
    if (*p || *s)
        goto out;
    for (size_t i = 0; i < n_params; i++) {
        req->params[i] = params[i];
        params[i] = NULL;
    }
    req->n_params = n_params;
    rc = HTTP_ROUTE_FOUND;
out:
    for (size_t i = 0; i < n_params; i++)
        free(params[i]);
    return rc;
}

static void http_allow_list(const http_route *r, char *out, size_t outlen)
{
    snprintf(out, outlen, "%s%s%s", r->get ? "GET, HEAD" : "", r->post ? (r->get ? ", POST" : "POST") : "",
             r->del ? ((r->get || r->post) ? ", DELETE" : "DELETE") : "");
}

http_route_result http_route_match(const http_route *routes, size_t n, http_request *req, const http_route **route)
{
    for (size_t i = 0; i < n; i++) {
        http_route_result rc = http_match_one(routes[i].pattern, req->path, req);
        if (rc == HTTP_ROUTE_NOT_FOUND)
            continue;
        req->route_name = routes[i].pattern;
        req->dialect = routes[i].dialect;
        if (rc == HTTP_ROUTE_BAD_ENCODING || rc == HTTP_ROUTE_NO_MEMORY)
            return rc;
        http_handler h = NULL;
        if (req->method == HTTP_GET || req->method == HTTP_HEAD)
            h = routes[i].get;
        else if (req->method == HTTP_POST)
            h = routes[i].post;
        else if (req->method == HTTP_DELETE)
            h = routes[i].del;
        *route = &routes[i];
        if (!h) {
            http_allow_list(&routes[i], req->allow, sizeof req->allow);
            return HTTP_ROUTE_BAD_METHOD;
        }
        req->handler = h;
        return HTTP_ROUTE_FOUND;
    }
    return HTTP_ROUTE_NOT_FOUND;
}
