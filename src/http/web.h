#ifndef RAGD_HTTP_WEB_H
#define RAGD_HTTP_WEB_H

/* The web page's files, compiled into the binary (docs/internals/web.md), and the pieces of
 * their serving that need no request: finding a file, matching If-None-Match. The handlers
 * are h_web.c's (handlers.h). */
#include <stdbool.h>
#include <stddef.h>

/* One embedded file. Everything is static and immutable for the life of the process. */
typedef struct {
    const char *name;         /* base name in web/: "index.html", "app.js", "app.css" */
    const char *content_type; /* e.g. "text/javascript; charset=utf-8" */
    const char *etag;         /* strong, quoted: "\"<32 hex digits of the SHA-256 of data>\"" */
    const char *data;         /* len bytes, then a NUL */
    size_t len;
} web_asset;

/* The table, written at build time by tools/web_embed from the files of web/ into $(BUILD)/gen/web_assets.c. */
extern const web_asset web_assets[];
extern const size_t web_assets_count;

/* The embedded file of that base name, or NULL. */
const web_asset *web_asset_find(const char *name);

/* Whether an If-None-Match field value (several fields joined with commas) names etag, by
 * RFC 9110's weak comparison (13.1.2: W/"x" matches "x"), or is "*". value[0..n) need not be
 * NUL-terminated; etag is a quoted strong tag. A value that is not a well-formed list (an
 * unquoted tag, garbage between tags) matches nothing from the point where it breaks the
 * rule on: the full response is always a correct answer to a conditional request. */
bool web_etag_match(const char *value, size_t n, const char *etag);

#endif
