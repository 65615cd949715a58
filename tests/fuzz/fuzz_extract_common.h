/* Shared by the fuzz_extract_* targets: runs extract_document with small bounds and checks
 * what it promises, whatever the input: RAGD_OK with text that is valid UTF-8 without NUL,
 * NUL-terminated at its length, page starts ascending within it and a title inside it; or
 * an error with a message and no text. */
#ifndef RAGD_FUZZ_EXTRACT_COMMON_H
#define RAGD_FUZZ_EXTRACT_COMMON_H

#include <stdlib.h>
#include <string.h>

#include "text/extract.h"
#include "util/clock.h"
#include "util/utf8.h"

static void fuzz_extract_check(const char *b, size_t n, extract_kind kind, const char *charset)
{
    extract_limits lim;
    extract_limits_default(&lim, n);
    lim.max_text = (size_t)1 << 20;
    lim.max_pages = 50;
    lim.deadline_ms = clock_now_ms() + 5000;
    extract_result r;
    char why[400];
    ragd_err e = extract_document(b, n, kind, charset, &lim, &r, why, sizeof why);
    if (e != RAGD_OK) {
        if (r.text || !why[0] || !utf8_valid(why, strlen(why)))
            abort();
        return;
    }
    if (!r.text || r.text[r.len] != '\0' || !utf8_valid(r.text, r.len) || r.len > lim.max_text)
        abort();
    if (r.title_len > r.len)
        abort();
    for (size_t p = 0; p < r.n_pages; p++)
        if (r.page_starts[p] > r.len || (p > 0 && r.page_starts[p] < r.page_starts[p - 1]))
            abort();
    extract_result_cleanup(&r);
}

#endif
