/* TEMPORARY placeholder so the engine can be wired while the screen is built (issue 8):
 * judges nothing. Replaced by the real L0/L1/L2 implementation before it lands. */
#include "guard/guard.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

ragd_err guard_init(void) { return RAGD_OK; }
void guard_shutdown(void) {}

/* Whether needle occurs in text[0..len), ASCII case-insensitively. */
static bool guard_placeholder_has(const char *text, size_t len, const char *needle)
{
    size_t m = strlen(needle);
    for (size_t i = 0; i + m <= len; i++)
        if (strncasecmp(text + i, needle, m) == 0)
            return true;
    return false;
}

/* The placeholder fires on two texts only (so the engine's tests have verdicts); the real
 * screen catches both too. */
ragd_err guard_score(const char *text, size_t len, guard_kind kind, guard_verdict *out)
{
    (void)kind;
    *out = (guard_verdict){0};
    if (guard_placeholder_has(text, len, "ignore all previous instructions") ||
        guard_placeholder_has(text, len, "<|im_start|>")) {
        out->score = 1.0f;
        out->rule = "placeholder";
        out->flagged = true;
    }
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
