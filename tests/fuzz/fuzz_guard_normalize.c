/* libFuzzer target: guard_normalize and guard_score on arbitrary bytes. The normalised text
 * must be NUL-terminated at the reported length and within 4x the input + 64 bytes; the
 * score must be in [0, 1], equal to 1 when a rule fired, and flagged exactly when it reaches
 * the kind's threshold; both kinds fire the same rule, and the chunk score (the query's windows
 * plus line windows) is never below the query score. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        if (guard_init() != RAGD_OK)
            abort();
        ready = 1;
    }
    size_t n = 0;
    char *s = guard_normalize((const char *)data, size, &n);
    if (!s)
        return 0; /* out of memory */
    if (s[n] != '\0' || n > 4 * size + 64)
        abort();
    free(s);

    guard_verdict q;
    guard_verdict c;
    if (guard_score((const char *)data, size, GUARD_QUERY, &q) != RAGD_OK ||
        guard_score((const char *)data, size, GUARD_CHUNK, &c) != RAGD_OK)
        return 0;
    if (!(q.score >= 0.0f && q.score <= 1.0f) || !(q.model_score >= 0.0f && q.model_score <= 1.0f))
        abort();
    if (q.rule && q.score != 1.0f)
        abort();
    if (q.flagged != (q.score >= guard_threshold(GUARD_QUERY)) ||
        c.flagged != (c.score >= guard_threshold(GUARD_CHUNK)))
        abort();
    /* The rules judge both kinds alike; the two kinds have models of their own (no order
     * between their scores), and the score is never below the model's. */
    if (q.rule != c.rule || q.score < q.model_score || c.score < c.model_score)
        abort();
    return 0;
}
