/* The web page (docs/api.md "Web page", docs/internals/web.md): GET / for browsers and the
 * two files it loads, /assets/app.js and /assets/app.css, from the copies compiled into the
 * binary (web.h). Loop thread, answered at once: no store, no worker, no allocation. */
#include <string.h>

#include "http/handlers.h"
#include "http/web.h"

/* The page's policy: its own script and style files only (no inline code: a script
 * injected into the page by a passage or an answer would not run), requests to this
 * server only, no framing. */
#define WEB_CSP                                                                                        \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " \
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
#define WEB_COMMON_HEADERS "X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n"

static const char web_page_headers[] = WEB_COMMON_HEADERS "Content-Security-Policy: " WEB_CSP "\r\nVary: Accept\r\n";
static const char web_asset_headers[] = WEB_COMMON_HEADERS;

/* Replies with the file, or 304 Not Modified when If-None-Match names its ETag; either way
 * with its ETag, Cache-Control: no-cache (a browser asks again each time and gets a
 * 304 while the binary is the same) and the given header lines. */
static void web_reply(http_request *req, const web_asset *a, const char *headers)
{
    if (!req->if_none_match_too_long && req->if_none_match[0] &&
        web_etag_match(req->if_none_match, strlen(req->if_none_match), a->etag))
        http_reply_static(req, 304, a->content_type, NULL, 0);
    else
        http_reply_static(req, 200, a->content_type, a->data, a->len);
    req->resp_cache_control = "no-cache";
    req->resp_etag = a->etag;
    req->resp_headers = headers;
}

/* GET /: the page for a browser (an Accept that names text/html), else Ollama's
 * "Ollama is running", which Ollama's clients probe for. Both vary by Accept. */
void handlers_web_root(http_request *req)
{
    const web_asset *page = req->accept_html ? web_asset_find("index.html") : NULL;
    if (!page) {
        handlers_ollama_root(req);
        req->resp_headers = "Vary: Accept\r\n";
        return;
    }
    web_reply(req, page, web_page_headers);
}

/* GET /assets/<name>: the route's own name says which file (routes.c lists each one, so an
 * unknown name never gets here: it is the router's 404). */
void handlers_web_asset(http_request *req)
{
    static const char prefix[] = "/assets/";
    const web_asset *a = strncmp(req->route_name, prefix, sizeof prefix - 1) == 0
                             ? web_asset_find(req->route_name + sizeof prefix - 1)
                             : NULL;
    if (!a) { /* a route whose file the Makefile does not embed (WEB_FILES) */
        http_reply_error(req, 404, "not_found", "no embedded file for %s", req->route_name);
        return;
    }
    web_reply(req, a, web_asset_headers);
}
