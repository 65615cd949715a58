/* JSON text without jansson and without allocating (see jsontext.h). */
#include "util/jsontext.h"

#include <stdio.h>
#include <string.h>

size_t jsontext_escape_byte(unsigned char c, char esc[7])
{
    static const char named[] = {['"'] = '"', ['\\'] = '\\', ['\b'] = 'b', ['\f'] = 'f',
                                 ['\n'] = 'n',  ['\r'] = 'r',   ['\t'] = 't'};
    if (c < sizeof named && named[c]) {
        esc[0] = '\\';
        esc[1] = named[c];
        return 2;
    }
    if (c >= 0x20)
        return 0;
    snprintf(esc, 7, "\\u%04x", c);
    return 6;
}

bool jsontext_escape(char *out, size_t cap, size_t *len, const char *s)
{
    size_t o = *len;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[7];
        size_t k = jsontext_escape_byte(*p, esc);
        if (o + (k ? k : 1) >= cap) {
            if (cap > *len)
                out[*len] = '\0';
            return false;
        }
        if (k)
            memcpy(out + o, esc, k);
        else
            out[o] = (char)*p;
        o += k ? k : 1;
    }
    if (o >= cap)
        return false;
    out[o] = '\0';
    *len = o;
    return true;
}
