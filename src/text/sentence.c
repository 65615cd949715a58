#include "text/sentence.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- code points */

/* Decodes the code point at p[i..n) (no overlong forms or surrogates). Returns its length
 * and stores it in *cp, or stores -1 and returns 1 for a byte that starts nothing valid:
 * the splitter works on any bytes, it just never treats those as punctuation or space. */
static size_t sent_decode(const unsigned char *p, size_t i, size_t n, int32_t *cp)
{
    unsigned c = p[i];
    if (c < 0x80) {
        *cp = (int32_t)c;
        return 1;
    }
    size_t need;
    int32_t v;
    int32_t min;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        v = c & 0x1F;
        min = 0x80;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        v = c & 0x0F;
        min = 0x800;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        v = c & 0x07;
        min = 0x10000;
    } else {
        *cp = -1;
        return 1;
    }
    if (n - i <= need) {
        *cp = -1;
        return 1;
    }
    for (size_t k = 1; k <= need; k++) {
        unsigned cc = p[i + k];
        if ((cc & 0xC0) != 0x80) {
            *cp = -1;
            return 1;
        }
        v = (v << 6) | (int32_t)(cc & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = -1;
        return 1;
    }
    *cp = v;
    return need + 1;
}

/* Unicode White_Space. */
static int sent_is_space_cp(int32_t cp)
{
    return cp == ' ' || (cp >= 0x09 && cp <= 0x0D) || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

/* Byte length of the whitespace character at p[i], or 0 when there is none. */
static size_t sent_space_at(const unsigned char *p, size_t i, size_t n)
{
    int32_t cp;
    size_t w = sent_decode(p, i, n, &cp);
    return sent_is_space_cp(cp) ? w : 0;
}

/* Start of the code point that ends just before byte `end` (never below `lo`). */
static size_t sent_prev(const unsigned char *p, size_t lo, size_t end)
{
    size_t k = end - 1;
    size_t steps = 0;
    while (k > lo && (p[k] & 0xC0) == 0x80 && steps < 3) {
        k--;
        steps++;
    }
    int32_t cp;
    if (sent_decode(p, k, end, &cp) != end - k)
        return end - 1; /* a stray continuation byte: one byte back */
    return k;
}

/* Narrows [*s, *e) to exclude whitespace at either end. */
static void sent_trim(const unsigned char *p, size_t *s, size_t *e)
{
    while (*s < *e) {
        size_t w = sent_space_at(p, *s, *e);
        if (!w)
            break;
        *s += w;
    }
    while (*e > *s) {
        size_t k = sent_prev(p, *s, *e);
        if (sent_space_at(p, k, *e) != *e - k)
            break;
        *e = k;
    }
}

/* ---------------------------------------------------------------- punctuation */

static int sent_is_ascii_term(int32_t cp) { return cp == '.' || cp == '!' || cp == '?'; }

/* Full-width and CJK sentence ends: they need no following space (CJK text has none). */
static int sent_is_wide_term(int32_t cp)
{
    return cp == 0x3002 || cp == 0xFF01 || cp == 0xFF1F || cp == 0xFF0E || cp == 0xFF61 ||
           cp == 0x203C || cp == 0x2047 || cp == 0x2048 || cp == 0x2049;
}

/* Closing quotes and brackets that may follow a sentence end: ") ] } " ' ” ’ » › 」 』 ） ］ 】 〉 》 〕". */
static int sent_is_closer(int32_t cp)
{
    switch (cp) {
    case ')': case ']': case '}': case '"': case '\'':
    case 0x2019: case 0x201D: case 0x00BB: case 0x203A: case 0x300D: case 0x300F:
    case 0xFF09: case 0xFF3D: case 0x3011: case 0x3009: case 0x300B: case 0x3015:
        return 1;
    default:
        return 0;
    }
}

/* Opening quotes and brackets that may precede a word. */
static int sent_is_opener(int32_t cp)
{
    return cp == '(' || cp == '[' || cp == '{' || cp == '"' || cp == '\'' || cp == 0x2018 ||
           cp == 0x201C || cp == 0x00AB;
}

/* Lower-case words that are followed by a period without ending a sentence. */
static const char *const sent_abbrevs[] = {
    "al",   "approx", "apr",  "aug",  "ave",   "blvd", "ca",  "capt", "cf",  "ch",  "co",
    "col",  "corp",   "dec",  "dept", "dr",    "eq",   "eqs", "esp",  "feb", "fig", "figs",
    "gen",  "gov",    "hon",  "inc",  "jan",   "jr",   "jul", "jun",  "lt",  "ltd", "messrs",
    "mr",   "mrs",    "ms",   "mt",   "nov",   "oct",  "pp",  "prof", "rep", "rev", "sen",
    "sep",  "sept",   "sgt",  "sr",   "st",    "vol",  "vols", "vs",
};

/* True when the word ending at the period p[dot] is an abbreviation: one of sent_abbrevs,
 * a single capital initial ("J."), or single letters joined by periods ("e.g.", "U.S."). */
static int sent_is_abbrev(const unsigned char *p, size_t lo, size_t dot)
{
    size_t ws = dot;
    size_t steps = 0;
    while (ws > lo && steps++ < 10) { /* longer words are no abbreviation: stop early */
        size_t k = sent_prev(p, lo, ws);
        int32_t cp;
        sent_decode(p, k, ws, &cp);
        if (sent_is_space_cp(cp) || sent_is_opener(cp))
            break;
        ws = k;
    }
    size_t n = dot - ws;
    if (n == 0 || n > 8)
        return 0;
    const unsigned char *w = p + ws;
    if (n == 1 && w[0] >= 'A' && w[0] <= 'Z')
        return 1;
    /* "e.g", "i.e", "U.S", "a.m": letter (. letter)+ */
    if (n >= 3 && (n % 2) == 1) {
        int dotted = 1;
        for (size_t k = 0; k < n && dotted; k++) {
            int is_alpha = (w[k] | 0x20) >= 'a' && (w[k] | 0x20) <= 'z';
            dotted = (k % 2 == 0) ? is_alpha : w[k] == '.';
        }
        if (dotted)
            return 1;
    }
    char low[9];
    for (size_t k = 0; k < n; k++) {
        if (w[k] >= 0x80)
            return 0;
        low[k] = (char)((w[k] >= 'A' && w[k] <= 'Z') ? w[k] + 32 : w[k]);
    }
    low[n] = '\0';
    /* the first letter before strcmp: this runs at every sentence end */
    for (size_t k = 0; k < sizeof sent_abbrevs / sizeof sent_abbrevs[0]; k++)
        if (sent_abbrevs[k][0] == low[0] && strcmp(low, sent_abbrevs[k]) == 0)
            return 1;
    return 0;
}

/* ---------------------------------------------------------------- splitting */

typedef struct {
    text_span *v;
    size_t n;
    size_t alloc;
} sent_list;

static ragd_err sent_push(sent_list *l, const unsigned char *p, size_t s, size_t e)
{
    sent_trim(p, &s, &e);
    if (s >= e)
        return RAGD_OK;
    if (l->n == l->alloc) {
        size_t na = l->alloc ? l->alloc * 2 : 16;
        text_span *nv = realloc(l->v, na * sizeof *nv);
        if (!nv)
            return RAGD_ENOMEM;
        l->v = nv;
        l->alloc = na;
    }
    l->v[l->n].start = s;
    l->v[l->n].end = e;
    l->n++;
    return RAGD_OK;
}

/* If p[i] starts a blank line run ("\n", blanks, "\n"), returns the index just after the
 * second newline; otherwise 0. */
static size_t sent_blank_line(const unsigned char *p, size_t i, size_t n)
{
    if (p[i] != '\n')
        return 0;
    size_t j = i + 1;
    while (j < n && (p[j] == ' ' || p[j] == '\t' || p[j] == '\r' || p[j] == '\f' || p[j] == '\v'))
        j++;
    return (j < n && p[j] == '\n') ? j + 1 : 0;
}

/* Sixteen bytes as one vector (GCC's vector extension: SSE2 on x86-64, NEON on arm64). */
typedef unsigned char sent_v16 __attribute__((vector_size(16)));

/* How many of the 16 bytes at p come before the first '\n', '.', '!', '?' or byte >= 0x80
 * (16 when there is none): bytes that can neither end a sentence nor start a blank line,
 * so the splitter steps over them. */
static inline size_t sent_plain_run16(const unsigned char *p)
{
    sent_v16 v;
    memcpy(&v, p, sizeof v);
    sent_v16 hit = (sent_v16)((v >= 0x80) | (v == '\n') | (v == '.') | (v == '!') | (v == '?'));
    uint64_t a, b;
    memcpy(&a, &hit, 8);
    memcpy(&b, (const unsigned char *)&hit + 8, 8);
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ /* the block's first byte is a's low byte */
    if (a)
        return (size_t)__builtin_ctzll(a) / 8;
    return b ? 8 + (size_t)__builtin_ctzll(b) / 8 : 16;
#else
    if (a)
        return (size_t)__builtin_clzll(a) / 8;
    return b ? 8 + (size_t)__builtin_clzll(b) / 8 : 16;
#endif
}

/* One pass over the text; a sentence ends at a terminator run (plus closers) followed by
 * whitespace or the end, at a CJK terminator run, or at a blank line. The spans count is
 * bounded by len, so the list needs no cap of its own. */
ragd_err sentence_split(const char *text, size_t len, text_span **out, size_t *count)
{
    const unsigned char *p = (const unsigned char *)text;
    sent_list l = {0};
    ragd_err err = RAGD_OK;
    size_t s = 0;
    size_t i = 0;

    if (!out || !count || (!text && len > 0))
        return RAGD_EINVAL;
    *out = NULL;
    *count = 0;
    while (i < len) {
        /* Most bytes are plain ASCII that can neither end a sentence nor start a blank
         * line: step over them without decoding, 16 at a time where possible. */
        if (len - i >= 16) {
            size_t run = sent_plain_run16(p + i);
            i += run;
            if (run == 16)
                continue;
        }
        unsigned char c = p[i];
        if (c < 0x80 && c != '\n' && !sent_is_ascii_term(c)) {
            i++;
            continue;
        }
        size_t para = sent_blank_line(p, i, len);
        if (para) {
            err = sent_push(&l, p, s, i);
            if (err)
                goto out;
            s = para;
            i = para;
            continue;
        }
        int32_t cp;
        size_t w = sent_decode(p, i, len, &cp);
        int ascii = sent_is_ascii_term(cp);
        int wide = sent_is_wide_term(cp);
        if (!ascii && !wide) {
            i += w;
            continue;
        }
        /* The terminator run: "?!", "...", "。」" */
        size_t k = i + w;
        size_t nterm = 1;
        while (k < len) {
            int32_t c2;
            size_t w2 = sent_decode(p, k, len, &c2);
            if (sent_is_ascii_term(c2) || sent_is_wide_term(c2)) {
                wide |= sent_is_wide_term(c2);
                nterm++;
            } else if (!sent_is_closer(c2)) {
                break;
            }
            k += w2;
        }
        int ends = wide || k == len || sent_space_at(p, k, len) > 0;
        if (ends && !wide && nterm == 1 && cp == '.' && sent_is_abbrev(p, s, i))
            ends = 0;
        if (ends) {
            err = sent_push(&l, p, s, k);
            if (err)
                goto out;
            s = k;
        }
        i = k;
    }
    err = sent_push(&l, p, s, len);
    if (err)
        goto out;
    *out = l.v;
    *count = l.n;
    l.v = NULL;
out:
    free(l.v);
    return err;
}
