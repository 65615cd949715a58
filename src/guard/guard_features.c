/* L2 features of the prompt-injection screen (docs/internals/guard.md): hashed byte 3-, 4-
 * and 5-grams and word 1- and 2-grams of one window of the normalised text, and the
 * windows themselves. Shared verbatim by the server and the trainer (tools/guard_train). */
#include "guard/guard_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>


/* murmur3's finaliser: spreads FNV's low bits before masking. */
static uint32_t feat_mix(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

#define FEAT_FNV_PRIME 16777619u
#define FEAT_FNV_BASIS 2166136261u

static bool feat_is_word(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c >= 0x80 ||
           (c >= 'A' && c <= 'Z');
}

/* Sliding window k, or false past the last one. */
static bool feat_slide(const char *text, size_t len, size_t k, size_t *start, size_t *wlen)
{
    if (len <= GUARD_WINDOW) {
        if (k > 0)
            return false;
        *start = 0;
        *wlen = len;
        return true;
    }
    size_t windows = (len - GUARD_WINDOW + GUARD_STRIDE - 1) / GUARD_STRIDE + 1;
    if (k >= windows)
        return false;
    size_t s = k * GUARD_STRIDE;
    if (s > len - GUARD_WINDOW)
        s = len - GUARD_WINDOW; /* the last window ends at the end */
    size_t e = s + GUARD_WINDOW;
    while (s > 0 && ((unsigned char)text[s] & 0xC0) == 0x80)
        s--;
    while (e < len && e > s && ((unsigned char)text[e] & 0xC0) == 0x80)
        e--;
    *start = s;
    *wlen = e - s;
    return true;
}

bool guard_window_next(const char *text, size_t len, guard_window_iter *it, size_t *start, size_t *wlen)
{
    if (!it->lines) {
        if (feat_slide(text, len, it->k, start, wlen)) {
            it->k++;
            return true;
        }
        it->lines = true;
        it->pos = 0;
        if (it->sliding_only || !memchr(text, '\n', len))
            return false; /* one line: the sliding windows cover it */
    }
    while (it->pos < len) {
        size_t s = it->pos;
        const char *nl = memchr(text + s, '\n', len - s);
        size_t e = nl ? (size_t)(nl - text) : len;
        it->pos = e + 1;
        if (e - s < GUARD_MIN_LINE)
            continue;
        if (e - s > GUARD_WINDOW) { /* long lines are covered by the sliding windows */
            continue;
        }
        *start = s;
        *wlen = e - s;
        return true;
    }
    return false;
}

/* The byte n-grams (n = 3..5) starting at position i of " text " (text of len bytes) into
 * idx[n...]; returns the new count. */
static size_t feat_ngrams_at(const unsigned char *s, size_t len, size_t i, uint32_t *idx, size_t n)
{
    uint32_t h = FEAT_FNV_BASIS;
    for (size_t k = 0; k < 5 && i + k < len + 2; k++) {
        size_t p = i + k;
        unsigned char c = (p == 0 || p == len + 1) ? ' ' : s[p - 1];
        h = (h ^ c) * FEAT_FNV_PRIME;
        if (k >= 2)
            idx[n++] = feat_mix(h + (uint32_t)k) & (GUARD_DIM - 1);
    }
    return n;
}

/* Words and word pairs of s[0..len) into idx[n...]; returns the new count. */
static size_t feat_words(const unsigned char *s, size_t len, uint32_t *idx, size_t n)
{
    uint32_t prev = 0;
    bool have_prev = false;
    for (size_t i = 0; i < len;) {
        if (!feat_is_word(s[i])) {
            i++;
            continue;
        }
        uint32_t h = FEAT_FNV_BASIS ^ 0x5bd1e995u;
        while (i < len && feat_is_word(s[i]))
            h = (h ^ s[i++]) * FEAT_FNV_PRIME;
        idx[n++] = feat_mix(h ^ 0x9E3779B9u) & (GUARD_DIM - 1);
        if (have_prev)
            idx[n++] = feat_mix(prev * 0x01000193u + h + 0x7F4A7C15u) & (GUARD_DIM - 1);
        prev = h;
        have_prev = true;
    }
    return n;
}

/* Presence, not counts: keeps the first occurrence of each feature of idx[0..n) (a bitmap
 * over the hash space, cleared again bit by bit so the cost stays linear in the window).
 * Returns the distinct count. */
static size_t feat_distinct(uint32_t *idx, size_t n)
{
    uint64_t seen[GUARD_DIM / 64];
    static_assert(GUARD_DIM % 64 == 0, "bitmap words");
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t f = idx[i];
        seen[f >> 6] = 0;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t f = idx[i];
        uint64_t bit = 1ull << (f & 63);
        if (seen[f >> 6] & bit)
            continue;
        seen[f >> 6] |= bit;
        idx[m++] = f;
    }
    return m;
}

size_t guard_features(const char *text, size_t len, uint32_t *idx)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t n = 0;
    if (len > GUARD_WINDOW)
        len = GUARD_WINDOW; /* callers pass windows; the cap keeps idx in bounds regardless */
    /* Byte n-grams, n = 3..5, over " text ". */
    for (size_t i = 0; i + 1 < len + 2; i++)
        n = feat_ngrams_at(s, len, i, idx, n);
    n = feat_words(s, len, idx, n);
    return feat_distinct(idx, n);
}

uint32_t *guard_ngrams_new(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    uint32_t *g = malloc((len ? len : 1) * 3 * sizeof *g);
    if (!g)
        return NULL;
    for (size_t p = 0; p < len; p++) {
        uint32_t h = FEAT_FNV_BASIS;
        for (size_t k = 0; k < 5; k++) {
            h = (h ^ (p + k < len ? s[p + k] : 0)) * FEAT_FNV_PRIME;
            if (k >= 2)
                g[3 * p + k - 2] = feat_mix(h + (uint32_t)k) & (GUARD_DIM - 1);
        }
    }
    return g;
}

size_t guard_features_ngrams(const char *text, size_t len, const uint32_t *grams, uint32_t *idx)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t n = 0;
    if (len > GUARD_WINDOW)
        len = GUARD_WINDOW;
    for (size_t i = 0; i + 1 < len + 2; i++) {
        if (i >= 1 && i + 4 <= len) { /* inside the text: the same three as at text position i - 1 */
            memcpy(idx + n, grams + 3 * (i - 1), 3 * sizeof *idx);
            n += 3;
        } else { /* touching a boundary blank */
            n = feat_ngrams_at(s, len, i, idx, n);
        }
    }
    n = feat_words(s, len, idx, n);
    return feat_distinct(idx, n);
}
