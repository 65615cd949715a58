/* libFuzzer target: chunker_split on valid UTF-8, both formats, checking the contract.
 * Bytes 0-1 choose the parameters; the rest is the text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/chunker.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decodes the (valid UTF-8) code point at p[i]; returns its byte length. */
static size_t fz_decode(const unsigned char *p, size_t i, uint32_t *cp)
{
    unsigned c = p[i];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c < 0xE0) {
        *cp = ((c & 0x1Fu) << 6) | (p[i + 1] & 0x3Fu);
        return 2;
    }
    if (c < 0xF0) {
        *cp = ((c & 0x0Fu) << 12) | ((p[i + 1] & 0x3Fu) << 6) | (p[i + 2] & 0x3Fu);
        return 3;
    }
    *cp = ((c & 0x07u) << 18) | ((p[i + 1] & 0x3Fu) << 12) | ((p[i + 2] & 0x3Fu) << 6) | (p[i + 3] & 0x3Fu);
    return 4;
}

/* Unicode White_Space. */
static int fz_is_space(uint32_t cp)
{
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

static int fz_is_boundary(const unsigned char *p, size_t len, size_t pos)
{
    return pos == len || (p[pos] & 0xC0) != 0x80;
}

static void fz_check(const unsigned char *p, size_t len, chunk_format fmt, const chunk_params *params)
{
    text_span *spans = NULL;
    size_t count = 0;
    ragd_err rc = chunker_split((const char *)p, len, fmt, params, &spans, &count);
    if (rc == RAGD_ENOMEM)
        return;
    if (rc != RAGD_OK)
        abort(); /* valid parameters and valid UTF-8: nothing else may fail */

    /* Marks the bytes covered by some chunk. */
    unsigned char *covered = calloc(len + 1, 1);
    if (!covered)
        abort();
    for (size_t i = 0; i < count; i++) {
        const text_span *s = &spans[i];
        if (s->start >= s->end || s->end > len) /* non-empty, within bounds */
            abort();
        if (!fz_is_boundary(p, len, s->start) || !fz_is_boundary(p, len, s->end))
            abort();
        if (i > 0 && (s->start <= spans[i - 1].start || s->end <= spans[i - 1].end)) /* in order */
            abort();
        uint32_t cp;
        fz_decode(p, s->start, &cp);
        if (fz_is_space(cp)) /* trimmed at the front */
            abort();
        size_t k = s->end - 1;
        while (k > s->start && (p[k] & 0xC0) == 0x80)
            k--;
        fz_decode(p, k, &cp);
        if (fz_is_space(cp)) /* trimmed at the back */
            abort();
        if (utf8_length((const char *)p + s->start, s->end - s->start) > params->chunk_size)
            abort(); /* at most chunk_size characters */
        memset(covered + s->start, 1, s->end - s->start);
    }
    /* Every non-whitespace character is in some chunk (so whitespace-only text gives none). */
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t w = fz_decode(p, i, &cp);
        if (!fz_is_space(cp) && !covered[i])
            abort();
        i += w;
    }
    free(covered);
    free(spans);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    chunk_params params;
    params.chunk_size = 50 + (size_t)data[0] * 1951 / 255; /* 50..2000 */
    /* overlap < chunk_size / 2 in C integer division, as chunker_split checks it (note:
     * config_check accepts overlap * 2 < chunk_size, e.g. 200 with 401: see docs/fuzzing.md). */
    size_t max_overlap = params.chunk_size / 2 - 1;
    params.overlap = (size_t)data[1] * max_overlap / 255;
    const unsigned char *text = data + 2;
    size_t len = size - 2;
    if (!utf8_valid((const char *)text, len))
        return 0;
    fz_check(text, len, CHUNK_FORMAT_PLAIN, &params);
    fz_check(text, len, CHUNK_FORMAT_MARKDOWN, &params);
    return 0;
}
