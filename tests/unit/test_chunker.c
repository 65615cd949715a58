/* Unit tests for src/text/chunker.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "test_guard_page.h"
#include "text/chunker.h"
#include "util/utf8.h"

/* ---------------------------------------------------------------- helpers */

static int is_space_at(const char *t, size_t i, size_t len, size_t *w)
{
    unsigned char c = (unsigned char)t[i];
    if (c == ' ' || (c >= 0x09 && c <= 0x0D)) {
        *w = 1;
        return 1;
    }
    if (c == 0xC2 && i + 1 < len && (unsigned char)t[i + 1] == 0xA0) {
        *w = 2;
        return 1;
    }
    if (c == 0xE3 && i + 2 < len && (unsigned char)t[i + 1] == 0x80 &&
        (unsigned char)t[i + 2] == 0x80) {
        *w = 3;
        return 1;
    }
    return 0;
}

static int space_before(const char *t, size_t pos, size_t len)
{
    size_t k = pos - 1;
    while (k > 0 && ((unsigned char)t[k] & 0xC0) == 0x80)
        k--;
    size_t w;
    return is_space_at(t, k, len, &w) && k + w == pos;
}

/* Checks every promise of chunker_split's contract on the result. */
static void check_chunks(const char *t, size_t len, const chunk_params *p, const text_span *c,
                         size_t n)
{
    char *covered = calloc(len + 1, 1);
    assert_non_null(covered);
    for (size_t i = 0; i < n; i++) {
        size_t s = c[i].start;
        size_t e = c[i].end;
        assert_true(s < e);
        assert_true(e <= len);
        /* on code point boundaries */
        assert_true(((unsigned char)t[s] & 0xC0) != 0x80);
        assert_true(e == len || ((unsigned char)t[e] & 0xC0) != 0x80);
        assert_true(utf8_valid(t + s, e - s));
        /* trimmed */
        size_t w;
        assert_false(is_space_at(t, s, len, &w));
        assert_false(space_before(t, e, len));
        /* size in characters */
        assert_true(utf8_length(t + s, e - s) <= p->chunk_size);
        if (i > 0) {
            /* document order, always advancing */
            assert_true(s > c[i - 1].start);
            assert_true(e > c[i - 1].end);
            if (s < c[i - 1].end) {
                /* overlap: at most `overlap` characters, starting at a word start or
                 * after a CJK sentence end */
                assert_true(utf8_length(t + s, c[i - 1].end - s) <= p->overlap);
                assert_true(space_before(t, s, len) ||
                            (s >= 3 && memcmp(t + s - 3, "\xE3\x80\x82", 3) == 0));
            }
        }
        memset(covered + s, 1, e - s);
    }
    for (size_t i = 0; i < len;) {
        size_t w;
        if (is_space_at(t, i, len, &w)) {
            i += w;
            continue;
        }
        if (!covered[i])
            fail_msg("byte %zu not covered", i);
        i++;
    }
    free(covered);
}

static text_span *run(const char *t, size_t len, chunk_format f, size_t size, size_t overlap,
                      size_t *n)
{
    chunk_params p = {size, overlap};
    text_span *c = NULL;
    assert_int_equal(chunker_split(t, len, f, &p, &c, n), RAGD_OK);
    check_chunks(t, len, &p, c, *n);
    return c;
}

static int chunk_is(const char *t, const text_span *c, const char *want)
{
    size_t n = c->end - c->start;
    return strlen(want) == n && memcmp(t + c->start, want, n) == 0;
}

/* A deterministic pseudo-random text of words, sentences and paragraphs. */
static char *gen_text(size_t target, unsigned seed, int unicode, size_t *len)
{
    static const char *words[] = {"alpha", "beta", "gamma", "delta", "of", "the", "retrieval",
                                  "augmented", "generation", "server", "x", "chunk"};
    static const char *uwords[] = {"caf\xC3\xA9", "stra\xC3\x9F" "e", "\xE6\x97\xA5\xE6\x9C\xAC",
                                   "\xF0\x9F\x98\x80", "na\xC3\xAF" "ve"};
    char *b = malloc(target + 64);
    assert_non_null(b);
    size_t n = 0;
    while (n < target) {
        seed = seed * 1103515245u + 12345u;
        unsigned r = seed >> 8;
        const char *w = (unicode && r % 7 == 0) ? uwords[(r >> 4) % 5] : words[(r >> 4) % 12];
        size_t wl = strlen(w);
        memcpy(b + n, w, wl);
        n += wl;
        unsigned sep = (r >> 12) % 40;
        const char *s = sep == 0 ? ".\n\n" : sep < 4 ? ". " : sep == 4 ? "\n" : sep == 5 ? "! " : " ";
        memcpy(b + n, s, strlen(s));
        n += strlen(s);
    }
    b[n] = '\0';
    *len = n;
    return b;
}

/* ---------------------------------------------------------------- tests */

static void test_params(void **state)
{
    text_span *c = (text_span *)1;
    size_t n = 7;
    chunk_params ok = {100, 20};
    chunk_params small = {49, 0};
    chunk_params big_overlap = {100, 50};
    assert_int_equal(chunker_split("x", 1, CHUNK_FORMAT_PLAIN, &small, &c, &n), RAGD_EINVAL);
    assert_int_equal(chunker_split("x", 1, CHUNK_FORMAT_PLAIN, &big_overlap, &c, &n), RAGD_EINVAL);
    assert_int_equal(chunker_split("x", 1, CHUNK_FORMAT_PLAIN, NULL, &c, &n), RAGD_EINVAL);
    assert_int_equal(chunker_split(NULL, 1, CHUNK_FORMAT_PLAIN, &ok, &c, &n), RAGD_EINVAL);
    assert_int_equal(chunker_split("x", 1, (chunk_format)7, &ok, &c, &n), RAGD_EINVAL);
    assert_int_equal(chunker_split("x", 1, CHUNK_FORMAT_PLAIN, &ok, NULL, &n), RAGD_EINVAL);
    assert_null(c);
    assert_int_equal(n, 0);
    chunk_params edge = {50, 24};
    assert_int_equal(chunker_split("x", 1, CHUNK_FORMAT_PLAIN, &edge, &c, &n), RAGD_OK);
    assert_int_equal(n, 1);
    free(c);
    edge.overlap = 25;
    assert_int_equal(chunker_split("x", 1, CHUNK_FORMAT_PLAIN, &edge, &c, &n), RAGD_EINVAL);
}

static void test_empty_and_whitespace(void **state)
{
    size_t n = 9;
    text_span *c = run("", 0, CHUNK_FORMAT_PLAIN, 100, 10, &n);
    assert_int_equal(n, 0);
    assert_null(c);
    c = run(NULL, 0, CHUNK_FORMAT_MARKDOWN, 100, 10, &n);
    assert_int_equal(n, 0);
    const char *ws = " \n\n\t  \xC2\xA0 \xE3\x80\x80\r\n";
    c = run(ws, strlen(ws), CHUNK_FORMAT_PLAIN, 100, 10, &n);
    assert_int_equal(n, 0);
    free(c);
    c = run(ws, strlen(ws), CHUNK_FORMAT_MARKDOWN, 100, 10, &n);
    assert_int_equal(n, 0);
    free(c);
}

static void test_small_text_one_chunk(void **state)
{
    const char *t = "\n\n   Just one short sentence.  \n";
    size_t n;
    text_span *c = run(t, strlen(t), CHUNK_FORMAT_PLAIN, 100, 20, &n);
    assert_int_equal(n, 1);
    assert_true(chunk_is(t, &c[0], "Just one short sentence."));
    assert_int_equal(c[0].start, 5);
    free(c);
}

static void test_invalid_utf8(void **state)
{
    chunk_params p = {100, 10};
    text_span *c = (text_span *)1;
    size_t n = 5;
    const char bad[] = "valid text \xFF\xFE more";
    assert_int_equal(chunker_split(bad, sizeof bad - 1, CHUNK_FORMAT_PLAIN, &p, &c, &n),
                     RAGD_EINVAL);
    assert_null(c);
    assert_int_equal(n, 0);
    const char nul[] = "with\0nul";
    assert_int_equal(chunker_split(nul, sizeof nul - 1, CHUNK_FORMAT_MARKDOWN, &p, &c, &n),
                     RAGD_EINVAL);
    const char trunc[] = "cut \xE2\x82";
    assert_int_equal(chunker_split(trunc, sizeof trunc - 1, CHUNK_FORMAT_PLAIN, &p, &c, &n),
                     RAGD_EINVAL);
}

static void test_prefers_paragraphs_then_sentences(void **state)
{
    /* Two paragraphs that fit together in neither chunk: the cut is at the paragraph. */
    const char *t = "First paragraph has a few words in it. And a second sentence.\n\n"
                    "Second paragraph is here. It also has two sentences.";
    size_t n;
    text_span *c = run(t, strlen(t), CHUNK_FORMAT_PLAIN, 80, 0, &n);
    assert_int_equal(n, 2);
    assert_true(chunk_is(t, &c[0], "First paragraph has a few words in it. And a second sentence."));
    assert_true(chunk_is(t, &c[1], "Second paragraph is here. It also has two sentences."));
    free(c);

    /* One paragraph: the cut is at a sentence end, not mid-sentence. */
    const char *u = "Sentence number one is here. Sentence number two is here. "
                    "Sentence number three is here.";
    c = run(u, strlen(u), CHUNK_FORMAT_PLAIN, 60, 0, &n);
    assert_int_equal(n, 2);
    assert_true(chunk_is(u, &c[0], "Sentence number one is here. Sentence number two is here."));
    free(c);

    /* No sentence end in reach: the cut is between words. */
    const char *v = "words without any punctuation at all just keep going and going and going "
                    "until the end";
    c = run(v, strlen(v), CHUNK_FORMAT_PLAIN, 50, 0, &n);
    assert_true(n >= 2);
    for (size_t i = 0; i < n; i++) {
        assert_true(c[i].end == strlen(v) || v[c[i].end] == ' ');
        assert_true(c[i].start == 0 || v[c[i].start - 1] == ' ');
    }
    free(c);
}

/* Two-byte characters are never read as three-byte spaces: "À@" (C3 80 40) once decoded as
 * U+3000, the ideographic space, so a text starting with it lost its first two characters. */
static void test_two_byte_char_is_not_space(void **state)
{
    (void)state;
    static const char t[] = "\xC3\x80@ hello \xD3\x80@ world";
    size_t n;
    text_span *c = run(t, sizeof t - 1, CHUNK_FORMAT_PLAIN, 1000, 0, &n);
    assert_int_equal(n, 1);
    assert_int_equal(c[0].start, 0);
    assert_int_equal(c[0].end, sizeof t - 1);
    free(c);
}

static void test_giant_word(void **state)
{
    /* One 1000-character word between short ones: only it is cut, on code point
     * boundaries, and the short words stay whole. */
    size_t len = 0;
    char *t = malloc(4000);
    assert_non_null(t);
    memcpy(t, "start ", 6);
    len = 6;
    for (int i = 0; i < 1000; i++) {
        memcpy(t + len, "\xC3\xA9", 2); /* é */
        len += 2;
    }
    memcpy(t + len, " end words", 10);
    len += 10;
    size_t n;
    text_span *c = run(t, len, CHUNK_FORMAT_PLAIN, 100, 30, &n);
    assert_true(n >= 11);
    assert_true(chunk_is(t, &c[0], "start"));
    size_t cut = 0;
    for (size_t i = 0; i < n; i++)
        if (utf8_length(t + c[i].start, c[i].end - c[i].start) == 100)
            cut++;
    assert_true(cut >= 9);
    assert_int_equal(c[n - 1].end, len);
    free(c);

    /* A text that is one giant word and nothing else. */
    memset(t, 'z', 3000);
    c = run(t, 3000, CHUNK_FORMAT_MARKDOWN, 64, 16, &n);
    assert_int_equal(n, (3000 + 63) / 64);
    for (size_t i = 0; i + 1 < n; i++)
        assert_int_equal(c[i].end, c[i + 1].start); /* no overlap inside a cut word */
    free(c);
    free(t);
}

static void test_word_not_cut_by_overlap(void **state)
{
    /* A 45-character word fits a 50-character chunk; with an overlap in front of it, it
     * would not: the overlap is given up rather than the word cut. */
    const char *t = "aa bb cc dd ee ff gg hh ii jj kk ll mm "
                    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs tail";
    size_t n;
    text_span *c = run(t, strlen(t), CHUNK_FORMAT_PLAIN, 50, 20, &n);
    int whole = 0;
    for (size_t i = 0; i < n; i++) {
        const char *w = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrs";
        size_t wl = strlen(w);
        size_t s = c[i].start;
        size_t e = c[i].end;
        const char *hit = memmem(t + s, e - s, "ABC", 3);
        if (hit) {
            assert_true((size_t)(hit - t) + wl <= e);
            whole = 1;
        }
    }
    assert_true(whole);
    free(c);
}

static void test_overlap(void **state)
{
    const char *t = "The quick brown fox jumps over the lazy dog. Pack my box with five dozen "
                    "liquor jugs. How vexingly quick daft zebras jump! Sphinx of black quartz, "
                    "judge my vow. The five boxing wizards jump quickly.";
    size_t n;
    text_span *c = run(t, strlen(t), CHUNK_FORMAT_PLAIN, 80, 30, &n);
    assert_true(n >= 3);
    size_t overlapping = 0;
    for (size_t i = 1; i < n; i++) {
        if (c[i].start < c[i - 1].end) {
            overlapping++;
            /* "about" the overlap: at least a third of it here */
            assert_true(utf8_length(t + c[i].start, c[i - 1].end - c[i].start) >= 10);
        }
    }
    assert_int_equal(overlapping, n - 1);
    free(c);

    /* overlap 0: chunks do not share bytes */
    c = run(t, strlen(t), CHUNK_FORMAT_PLAIN, 80, 0, &n);
    for (size_t i = 1; i < n; i++)
        assert_true(c[i].start >= c[i - 1].end);
    free(c);
}

/* A heading on a line after a lone CR starts its chunk there (the line start was looked
 * for after a '\n' only; found by fuzz_markdown). */
static void test_markdown_headings_cr_lines(void **state)
{
    (void)state;
    const char *t = "# One\rShort text of the first part.\r\r# Two\rText of the second part.";
    size_t n;
    text_span *c = run(t, strlen(t), CHUNK_FORMAT_MARKDOWN, 200, 20, &n);
    size_t two = (size_t)(strstr(t, "# Two") - t);
    bool starts_two = false;
    for (size_t i = 0; i < n; i++)
        starts_two = starts_two || c[i].start == two;
    assert_true(starts_two);
    free(c);
}

/* Only text[0..len) is read: md4c 0.4.8 reads the byte after its input looking for the ')'
 * of an unclosed link destination ("[a](b" at the end; fuzz_markdown found it), which
 * crashed here with unreadable memory right after the text. */
static void test_markdown_ignores_bytes_after_the_text(void **state)
{
    (void)state;
    const char *t = "# One\n\nA first paragraph that is long enough to need a chunk of its own.\n\n"
                    "# Two\n\nA second one, as long, that ends in an unclosed link: [a](b";
    size_t len = strlen(t);
    guard_page g;
    char *buf = guard_page_copy(&g, t, len, 0, 0); /* unreadable memory right after the text */
    assert_non_null(buf);
    size_t n;
    text_span *c = run(buf, len, CHUNK_FORMAT_MARKDOWN, 60, 10, &n);
    assert_true(n >= 2);
    assert_true(c[n - 1].end <= len);
    free(c);
    guard_page_free(&g);
}

static void test_markdown_headings(void **state)
{
    const char *t = "Preamble text.\n"
                    "# One\n"
                    "Short.\n"
                    "## Two\n\n"
                    "Text of two, a bit longer so that it needs more than one chunk when "
                    "the chunk size is small. Another sentence follows here.\n\n"
                    "```\n# not a heading, inside code\n```\n\n"
                    "Setext heading\n"
                    "==============\n"
                    "- item\n"
                    "  ### Nested heading in a list\n"
                    "> ## Quoted heading\n";
    const char *heads[] = {"# One", "## Two", "Setext heading", "### Nested",
                           "> ## Quoted heading"};
    size_t n;
    text_span *c = run(t, strlen(t), CHUNK_FORMAT_MARKDOWN, 60, 20, &n);
    assert_true(chunk_is(t, &c[0], "Preamble text."));
    size_t found = 0;
    for (size_t h = 0; h < sizeof heads / sizeof heads[0]; h++) {
        const char *at = strstr(t, heads[h]);
        assert_non_null(at);
        size_t pos = (size_t)(at - t);
        for (size_t i = 0; i < n; i++) {
            if (c[i].start == pos) {
                found++;
                /* nothing before a heading shares its chunk */
                if (i > 0)
                    assert_true(c[i - 1].end <= pos);
            }
        }
    }
    /* "### Nested" lives in a list item: its chunk starts at its own line. */
    assert_int_equal(found, sizeof heads / sizeof heads[0]);
    const char *code = strstr(t, "# not a heading");
    for (size_t i = 0; i < n; i++)
        assert_true(c[i].start != (size_t)(code - t));
    free(c);

    /* The same text as plain: no heading forces a cut, so fewer chunks. */
    size_t np;
    c = run(t, strlen(t), CHUNK_FORMAT_PLAIN, 60, 20, &np);
    free(c);
    assert_true(np <= n);
}

static void test_markdown_only_headings(void **state)
{
    const char *t = "# A\n# B\n## C\n\n#\n### D";
    size_t n;
    text_span *c = run(t, strlen(t), CHUNK_FORMAT_MARKDOWN, 50, 10, &n);
    assert_int_equal(n, 4);
    assert_true(chunk_is(t, &c[0], "# A"));
    assert_true(chunk_is(t, &c[1], "# B"));
    /* an empty heading gives md4c no text, hence no offset: it stays with the one before */
    assert_true(chunk_is(t, &c[2], "## C\n\n#"));
    assert_true(chunk_is(t, &c[3], "### D"));
    free(c);
}

static void test_cjk_and_emoji(void **state)
{
    /* Sizes are characters, not bytes: 300 CJK characters (900 bytes) with 。 ends. */
    char t[2048];
    size_t len = 0;
    for (int i = 0; i < 300; i++) {
        const char *ch = (i % 20 == 19) ? "\xE3\x80\x82" : (i % 7 == 0) ? "\xF0\x9F\x98\x80" : "\xE4\xB8\xAD";
        memcpy(t + len, ch, strlen(ch));
        len += strlen(ch);
    }
    size_t n;
    text_span *c = run(t, len, CHUNK_FORMAT_PLAIN, 100, 20, &n);
    assert_true(n >= 3 && n <= 6);
    /* with no spaces at all, cuts fall after a 。 */
    for (size_t i = 0; i + 1 < n; i++)
        assert_memory_equal(t + c[i].end - 3, "\xE3\x80\x82", 3);
    free(c);
}

/* The chunker steps over 16-byte blocks of non-space ASCII when it looks for paragraph
 * ends, and over 8 ASCII bytes at a time when it counts code points: a paragraph end at
 * each offset is still found, and a window still holds chunk_size code points wherever
 * two-byte characters sit in it. */
static void test_ascii_blocks(void **state)
{
    char t[512];
    for (size_t a = 40; a <= 76; a++) {
        /* "xxx…x" (a bytes), a blank line, then short sentences: the paragraph end at a is in
         * the window's second half, so the first chunk ends there, not at a later sentence end */
        memset(t, 'x', a);
        size_t len = a;
        memcpy(t + len, "\n\n", 2);
        len += 2;
        for (int k = 0; k < 40; k++) {
            memcpy(t + len, "y. ", 3);
            len += 3;
        }
        size_t n;
        text_span *c = run(t, len, CHUNK_FORMAT_PLAIN, 80, 0, &n);
        assert_true(n >= 2);
        if (c[0].start != 0 || c[0].end != a)
            fail_msg("paragraph end at %zu: first chunk [%zu, %zu)", a, c[0].start, c[0].end);
        free(c);
    }
    for (size_t j = 0; j < 60; j++) {
        /* one word longer than the window, with ten "é" from byte j on: cut at 50 code points */
        size_t len = 0;
        for (size_t k = 0; k < j; k++)
            t[len++] = 'a';
        for (int k = 0; k < 10; k++) {
            memcpy(t + len, "\xC3\xA9", 2);
            len += 2;
        }
        while (len < 120)
            t[len++] = 'b';
        size_t n;
        text_span *c = run(t, len, CHUNK_FORMAT_PLAIN, 50, 0, &n);
        if (utf8_length(t + c[0].start, c[0].end - c[0].start) != 50)
            fail_msg("two-byte characters from %zu: first chunk of %zu code points", j,
                     utf8_length(t + c[0].start, c[0].end - c[0].start));
        free(c);
    }
}

static void test_property_random(void **state)
{
    size_t sizes[] = {50, 64, 100, 257, 1000};
    for (unsigned seed = 1; seed <= 12; seed++) {
        size_t len;
        char *t = gen_text(3000 + seed * 500, seed, seed % 2, &len);
        for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
            size_t cs = sizes[k];
            size_t ovs[] = {0, cs / 5, cs / 2 - 1};
            for (size_t o = 0; o < 3; o++) {
                size_t n;
                text_span *c = run(t, len, seed % 3 ? CHUNK_FORMAT_PLAIN : CHUNK_FORMAT_MARKDOWN,
                                   cs, ovs[o], &n);
                assert_true(n > 0);
                free(c);
            }
        }
        free(t);
    }
}

static void test_property_markdown_soup(void **state)
{
    /* Random markdown-ish fragments: headings, lists, fences, tables, odd spaces. */
    static const char *frags[] = {"# ", "## ", "\n", "\n\n", "- ", "1. ", "```\n", "| a | b |\n",
                                  "|---|---|\n", "> ", "word ", "longerwordhere", ". ", "! ",
                                  "\xC2\xA0", "\xE3\x80\x80", "\xE3\x80\x82", "e.g. ", "===\n",
                                  "*em* ", "`code` ", "&amp; ", "<b>x</b>", "    indented\n",
                                  "\xF0\x9F\x98\x80"};
    char *t = malloc(20000);
    assert_non_null(t);
    unsigned seed = 99;
    for (int round = 0; round < 40; round++) {
        size_t len = 0;
        size_t target = 200 + (size_t)round * 450;
        while (len < target) {
            seed = seed * 1103515245u + 12345u;
            const char *f = frags[(seed >> 16) % (sizeof frags / sizeof frags[0])];
            memcpy(t + len, f, strlen(f));
            len += strlen(f);
        }
        size_t n;
        size_t cs = 50 + (seed >> 20) % 300;
        text_span *c = run(t, len, CHUNK_FORMAT_MARKDOWN, cs, (seed >> 8) % (cs / 2), &n);
        free(c);
        c = run(t, len, CHUNK_FORMAT_PLAIN, cs, 0, &n);
        free(c);
    }
    free(t);
}

static void test_one_megabyte(void **state)
{
    size_t len;
    char *t = gen_text(1u << 20, 42, 1, &len);
    size_t n;
    clock_t t0 = clock();
    chunk_params p = {1000, 150};
    text_span *c = NULL;
    assert_int_equal(chunker_split(t, len, CHUNK_FORMAT_MARKDOWN, &p, &c, &n), RAGD_OK);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    assert_true(secs < 2.0);
    assert_true(n > len / 1000);
    check_chunks(t, len, &p, c, n);
    free(c);

    /* 1 MB of whitespace-free text, and 1 MB of mostly whitespace */
    memset(t, 'q', len);
    t0 = clock();
    assert_int_equal(chunker_split(t, len, CHUNK_FORMAT_PLAIN, &p, &c, &n), RAGD_OK);
    assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 2.0);
    assert_int_equal(n, (len + 999) / 1000);
    free(c);
    for (size_t i = 0; i < len; i++)
        t[i] = (i % 5000 == 0) ? 'w' : (i % 3 ? ' ' : '\n');
    t0 = clock();
    assert_int_equal(chunker_split(t, len, CHUNK_FORMAT_MARKDOWN, &p, &c, &n), RAGD_OK);
    assert_true((double)(clock() - t0) / CLOCKS_PER_SEC < 2.0);
    check_chunks(t, len, &p, c, n);
    free(c);
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_params),
        cmocka_unit_test(test_empty_and_whitespace),
        cmocka_unit_test(test_small_text_one_chunk),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_prefers_paragraphs_then_sentences),
        cmocka_unit_test(test_two_byte_char_is_not_space),
        cmocka_unit_test(test_giant_word),
        cmocka_unit_test(test_word_not_cut_by_overlap),
        cmocka_unit_test(test_overlap),
        cmocka_unit_test(test_markdown_headings),
        cmocka_unit_test(test_markdown_headings_cr_lines),
        cmocka_unit_test(test_markdown_ignores_bytes_after_the_text),
        cmocka_unit_test(test_markdown_only_headings),
        cmocka_unit_test(test_cjk_and_emoji),
        cmocka_unit_test(test_property_random),
        cmocka_unit_test(test_property_markdown_soup),
        cmocka_unit_test(test_one_megabyte),
        cmocka_unit_test(test_ascii_blocks),
    };
    return cmocka_run_group_tests_name("chunker", tests, NULL, NULL);
}
