#include "util/url.h"

#include <string.h>

/* Appends n bytes of s at out + *len, never past cap - 1. */
static void url_put(char *out, size_t cap, size_t *len, const char *s, size_t n)
{
    size_t room = cap - 1 - *len;
    n = n < room ? n : room;
    memcpy(out + *len, s, n);
    *len += n;
}

void url_redact(const char *url, char *out, size_t cap)
{
    if (cap == 0)
        return;
    size_t len = 0;
    const char *scheme = strstr(url, "://");
    const char *host = scheme ? scheme + 3 : url;
    size_t authority = strcspn(host, "/?#");
    const char *at = NULL; /* the last '@' of the authority ends the user info */
    for (size_t i = 0; i < authority; i++)
        if (host[i] == '@')
            at = host + i;
    const char *p = url;
    if (at) {
        url_put(out, cap, &len, url, (size_t)(host - url));
        url_put(out, cap, &len, "***", 3);
        p = at;
    }
    const char *query = strchr(host + authority, '?');
    for (; *p; p++) {
        url_put(out, cap, &len, p, 1);
        if (query && p > query && *p == '=') { /* a query value */
            size_t v = strcspn(p + 1, "&#");
            if (v > 0)
                url_put(out, cap, &len, "***", 3);
            p += v;
        }
    }
    out[len] = '\0';
}
