/* JSON text without jansson and without allocating (see jsontext.h). */
#include "util/jsontext.h"

#include <stdio.h>
#include <string.h>

bool jsontext_escape(char *out, size_t cap, size_t *len, const char *s)
{
    size_t o = *len;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[8] = "";
        switch (*p) {
        case '"': memcpy(esc, "\\\"", 3); break;
        case '\\': memcpy(esc, "\\\\", 3); break;
        case '\b': memcpy(esc, "\\b", 3); break;
        case '\f': memcpy(esc, "\\f", 3); break;
        case '\n': memcpy(esc, "\\n", 3); break;
        case '\r': memcpy(esc, "\\r", 3); break;
        case '\t': memcpy(esc, "\\t", 3); break;
        default:
            if (*p < 0x20)
                snprintf(esc, sizeof esc, "\\u%04x", *p);
            break;
        }
        size_t k = esc[0] ? strlen(esc) : 1;
        if (o + k >= cap) {
            if (cap > *len)
                out[*len] = '\0';
            return false;
        }
        if (esc[0])
            memcpy(out + o, esc, k);
        else
            out[o] = (char)*p;
        o += k;
    }
    if (o >= cap)
        return false;
    out[o] = '\0';
    *len = o;
    return true;
}
