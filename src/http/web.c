/* The web page's embedded files (web.h): lookup, and If-None-Match against their ETags.
 * No I/O, no allocation, no state: the table is generated at build time. */
#include "http/web.h"

#include <string.h>

const web_asset *web_asset_find(const char *name)
{
    for (size_t i = 0; i < web_assets_count; i++)
        if (strcmp(web_assets[i].name, name) == 0)
            return &web_assets[i];
    return NULL;
}

static bool web_ows(char c) { return c == ' ' || c == '\t'; }

/* etagc of RFC 9110 8.8.3: %x21 / %x23-7E / obs-text (any byte but controls, space, '"', DEL). */
static bool web_etagc(unsigned char c) { return c == 0x21 || (c >= 0x23 && c != 0x7f); }

bool web_etag_match(const char *value, size_t n, const char *etag)
{
    size_t elen = strlen(etag);
    if (elen < 2 || etag[0] != '"' || etag[elen - 1] != '"')
        return false;
    const char *opaque = etag + 1;
    size_t olen = elen - 2;

    size_t lo = 0, hi = n; /* "*" is the whole field value, OWS aside */
    while (lo < hi && web_ows(value[lo]))
        lo++;
    while (hi > lo && web_ows(value[hi - 1]))
        hi--;
    if (hi - lo == 1 && value[lo] == '*')
        return true;

    size_t i = 0;
    for (;;) {
        while (i < n && (web_ows(value[i]) || value[i] == ',')) /* empty list elements are allowed */
            i++;
        if (i == n)
            return false;
        if (n - i >= 2 && value[i] == 'W' && value[i + 1] == '/') /* weak comparison: the flag is ignored */
            i += 2;
        if (i == n || value[i] != '"')
            return false;
        size_t start = ++i;
        while (i < n && web_etagc((unsigned char)value[i]))
            i++;
        if (i == n || value[i] != '"')
            return false;
        if (i - start == olen && memcmp(value + start, opaque, olen) == 0)
            return true;
        i++;
        while (i < n && web_ows(value[i]))
            i++;
        if (i < n && value[i] != ',')
            return false;
    }
}
