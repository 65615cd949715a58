/* Randomized differential tests of the word-at-a-time scans over untrusted bytes
 * (utf8_valid, utf8_length, jsonw's string escape, fence_strip_invisible) against plain
 * byte-by-byte references written here: seeded texts of many lengths built from ASCII,
 * valid and invalid UTF-8 (overlongs, surrogates, > U+10FFFF, cut sequences), controls,
 * quotes and invisible characters, each checked from unaligned starts and cut at every
 * length near its end, in exact-size copies so that a sanitizer build sees an over-read. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rag/fence.h"
#include "test_rng.h"
#include "util/jsontext.h"
#include "util/jsonw.h"
#include "util/strbuf.h"
#include "util/utf8.h"

#define SW_ITERS 20000
#define SW_MAX_LEN 300

static const char *const sw_pieces[] = {
    "a", "Hello", " ", "\n", ".", "\"", "\\", "\t", "\x01", "\x1f", "\x7f", "\x00",
    "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80", "\xf4\x8f\xbf\xbf", "\xed\x9f\xbf", "\xee\x80\x80", "\xdf\xbf",
    "\xc2\xad", "\xe2\x80\x8b", "\xe2\x80\xae", "\xe2\x81\xa0", "\xe2\x81\xa9", "\xef\xbb\xbf", "\xe1\xa0\x8e",
    "\xf3\xa0\x80\x81", "\xf3\xa0\x81\xbf", "\xe3\x80\x82",
    /* invalid: overlongs, surrogates, past U+10FFFF, bad leads, lone continuations, cuts */
    "\xc0\x80", "\xc1\xbf", "\xe0\x80\x80", "\xe0\x9f\xbf", "\xf0\x80\x80\x80", "\xf0\x8f\xbf\xbf", "\xed\xa0\x80",
    "\xed\xbf\xbf", "\xf4\x90\x80\x80", "\xf5\x80\x80\x80", "\xff", "\xfe", "\x80", "\xbf", "\xc2", "\xe2\x80",
    "\xf0\x9f\x98",
};

enum { SW_ANY, SW_VALID, SW_VALID_AND_NUL };

/* A text of up to max bytes: of any piece (SW_ANY), of the valid pieces (the first 29)
 * without NUL (SW_VALID) or with (SW_VALID_AND_NUL). */
static size_t sw_text(rng *r, unsigned char *out, size_t max, int kind)
{
    bool valid_only = kind != SW_ANY;
    size_t n_pieces = sizeof sw_pieces / sizeof sw_pieces[0];
    size_t target = rng_below(r, max + 1), n = 0;
    while (n < target) {
        if (rng_below(r, 3) == 0) { /* long plain runs cross the 8- and 16-byte blocks */
            out[n++] = (unsigned char)('a' + rng_below(r, 26));
            continue;
        }
        const char *p = sw_pieces[rng_below(r, valid_only ? 29 : n_pieces)];
        size_t len = p[0] ? strlen(p) : 1; /* "\x00" is one NUL byte */
        if (kind == SW_VALID && p[0] == '\0')
            continue;
        if (n + len > target)
            break;
        memcpy(out + n, p, len);
        n += len;
    }
    return n;
}

/* The code point of the well-formed sequence at p (n bytes left) and its length, or 0. */
static size_t ref_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
    size_t len = p[0] < 0x80 ? 1 : (p[0] >> 5) == 0x6 ? 2 : (p[0] >> 4) == 0xe ? 3 : (p[0] >> 3) == 0x1e ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    uint32_t v = len == 1 ? p[0] : (uint32_t)(p[0] & (0x7f >> len));
    for (size_t k = 1; k < len; k++) {
        if ((p[k] >> 6) != 0x2)
            return 0;
        v = (v << 6) | (p[k] & 0x3f);
    }
    static const uint32_t least[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (v < least[len] || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return len;
}

static bool ref_utf8_valid(const unsigned char *p, size_t n)
{
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t len = ref_decode(p + i, n - i, &cp);
        if (len == 0 || cp == 0)
            return false;
        i += len;
    }
    return true;
}

static size_t ref_utf8_length(const unsigned char *p, size_t n)
{
    size_t count = 0;
    for (size_t i = 0; i < n; i++)
        count += (p[i] & 0xc0) != 0x80;
    return count;
}

/* The characters fence_strip_invisible drops (fence.h). */
static bool ref_invisible(uint32_t cp)
{
    return cp == 0xad || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x202a && cp <= 0x202e) ||
           (cp >= 0x2060 && cp <= 0x2064) || (cp >= 0x2066 && cp <= 0x2069) || cp == 0xfeff || cp == 0x180e ||
           (cp >= 0xe0000 && cp <= 0xe007f);
}

/* Valid UTF-8 in, the text without its invisible characters out; returns its length. */
static size_t ref_strip(const unsigned char *p, size_t n, unsigned char *out)
{
    size_t w = 0;
    uint32_t cp;
    for (size_t i = 0; i < n;) {
        size_t len = ref_decode(p + i, n - i, &cp);
        assert_true(len > 0);
        if (!ref_invisible(cp)) {
            memcpy(out + w, p + i, len);
            w += len;
        }
        i += len;
    }
    return w;
}

/* An exact-size heap copy of p[0..n) starting `off` bytes past malloc's alignment. */
static unsigned char *sw_copy(const unsigned char *p, size_t n, size_t off, void **block)
{
    unsigned char *b = malloc(off + n ? off + n : 1);
    assert_non_null(b);
    *block = b;
    memcpy(b + off, p, n);
    return b + off;
}

static void test_utf8_random(void **state)
{
    (void)state;
    rng r = {0x5eed0001u};
    unsigned char text[SW_MAX_LEN];
    for (int it = 0; it < SW_ITERS; it++) {
        size_t n = sw_text(&r, text, SW_MAX_LEN, (int)rng_below(&r, 3));
        void *block;
        const unsigned char *p = sw_copy(text, n, rng_below(&r, 16), &block);
        for (size_t cut = 0; cut <= n && cut < 24; cut++) {
            size_t m = n - cut;
            if (utf8_valid((const char *)p, m) != ref_utf8_valid(p, m))
                fail_msg("utf8_valid differs: iteration %d, %zu bytes", it, m);
            if (utf8_length((const char *)p, m) != ref_utf8_length(p, m))
                fail_msg("utf8_length differs: iteration %d, %zu bytes", it, m);
        }
        free(block);
    }
}

static void test_jsonw_escape_random(void **state)
{
    (void)state;
    rng r = {0x5eed0002u};
    unsigned char text[SW_MAX_LEN];
    char want[SW_MAX_LEN * 6 + 3];
    for (int it = 0; it < SW_ITERS; it++) {
        size_t n = sw_text(&r, text, SW_MAX_LEN, SW_ANY);
        void *block;
        const unsigned char *p = sw_copy(text, n, rng_below(&r, 16), &block);
        size_t w = 0;
        want[w++] = '"';
        for (size_t i = 0; i < n; i++) {
            char esc[7];
            size_t k = jsontext_escape_byte(p[i], esc);
            if (k) {
                memcpy(want + w, esc, k);
                w += k;
            } else {
                want[w++] = (char)p[i];
            }
        }
        want[w++] = '"';
        strbuf sb;
        strbuf_init(&sb, sizeof want);
        jsonw jw;
        jsonw_init(&jw, &sb);
        jsonw_stringn(&jw, (const char *)p, n);
        assert_int_equal(jsonw_status(&jw), RAGD_OK);
        if (sb.len != w || memcmp(sb.data, want, w) != 0)
            fail_msg("jsonw escape differs: iteration %d, %zu bytes", it, n);
        strbuf_cleanup(&sb);
        free(block);
    }
}

static void test_strip_invisible_random(void **state)
{
    (void)state;
    rng r = {0x5eed0003u};
    unsigned char text[SW_MAX_LEN], want[SW_MAX_LEN];
    for (int it = 0; it < SW_ITERS; it++) {
        size_t n = sw_text(&r, text, SW_MAX_LEN, SW_VALID);
        size_t want_len = ref_strip(text, n, want);
        void *block;
        unsigned char *p = sw_copy(text, n, rng_below(&r, 16), &block);
        size_t got = fence_strip_invisible((char *)p, n);
        if (got != want_len || memcmp(p, want, got) != 0)
            fail_msg("fence_strip_invisible differs: iteration %d, %zu bytes", it, n);
        free(block);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_random),
        cmocka_unit_test(test_jsonw_escape_random),
        cmocka_unit_test(test_strip_invisible_random),
    };
    return cmocka_run_group_tests_name("swar_random", tests, NULL, NULL);
}
