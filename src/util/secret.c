#include "util/secret.h"

#include <string.h>

enum { SECRET_MIN = 6 };

static const char secret_mask[] = "***";

void secret_scrub(char *text, const char *secret)
{
    size_t sn = secret ? strlen(secret) : 0;
    if (!text || sn < SECRET_MIN)
        return;
    /* Whole occurrences: the text only shrinks (sn >= 6 > 3), so the copy stays in place. */
    char *w = text;
    const char *r = text;
    while (*r) {
        if (strncmp(r, secret, sn) == 0) {
            memcpy(w, secret_mask, sizeof secret_mask - 1);
            w += sizeof secret_mask - 1;
            r += sn;
        } else {
            *w++ = *r++;
        }
    }
    *w = '\0';
    /* A cut occurrence at the very end: the longest tail that is a prefix of the secret. */
    size_t n = (size_t)(w - text);
    for (size_t k = sn - 1 < n ? sn - 1 : n; k >= SECRET_MIN; k--) {
        if (memcmp(text + n - k, secret, k) == 0) {
            memcpy(text + n - k, secret_mask, sizeof secret_mask);
            return;
        }
    }
}
