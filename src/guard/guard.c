/* TEMPORARY placeholder so the engine can be wired while the screen is built (issue 8):
 * judges nothing. Replaced by the real L0/L1/L2 implementation before it lands. */
#include "guard/guard.h"

#include <stdlib.h>
#include <string.h>

ragd_err guard_init(void) { return RAGD_OK; }
void guard_shutdown(void) {}

ragd_err guard_score(const char *text, size_t len, guard_kind kind, guard_verdict *out)
{
    (void)text;
    (void)len;
    (void)kind;
    *out = (guard_verdict){0};
    return RAGD_OK;
}

float guard_threshold(guard_kind kind) { return kind == GUARD_QUERY ? 0.5f : 0.5f; }

char *guard_normalize(const char *text, size_t len, size_t *out_len)
{
    char *s = malloc(len + 1);
    if (!s)
        return NULL;
    memcpy(s, text, len);
    s[len] = '\0';
    *out_len = len;
    return s;
}
