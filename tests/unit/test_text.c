/* Unit tests for src/text/tokenize.c and src/text/sentence.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text/sentence.h"
#include "text/tokenize.h"
#include "util/utf8.h"

/* ---------------------------------------------------------------- tokenize helpers */

#define MAX_TOKS 64

typedef struct {
    char norm[MAX_TOKS][80];
    size_t start[MAX_TOKS];
    size_t end[MAX_TOKS];
    size_t n;
    size_t stop_after; /* 0 = never stop */
} toks;

static int collect(const token *t, void *arg)
{
    toks *c = arg;
    assert_true(t->norm_len < sizeof c->norm[0]);
    assert_true(t->end > t->start);
    if (c->n < MAX_TOKS) {
        memcpy(c->norm[c->n], t->norm, t->norm_len);
        c->norm[c->n][t->norm_len] = '\0';
        c->start[c->n] = t->start;
        c->end[c->n] = t->end;
    }
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

static toks *tok_run(const char *s, size_t len)
{
    toks *c = calloc(1, sizeof *c);
    assert_non_null(c);
    assert_int_equal(tokenize_words(s, len, collect, c), RAGD_OK);
    return c;
}

static toks *tok_str(const char *s) { return tok_run(s, strlen(s)); }

/* ---------------------------------------------------------------- tokenize tests */

static void test_tok_ascii(void **state)
{
    const char *s = "  Hello, WORLD! foo_bar x-y 42nd";
    toks *c = tok_str(s);
    assert_int_equal(c->n, 7);
    assert_string_equal(c->norm[0], "hello");
    assert_int_equal(c->start[0], 2);
    assert_int_equal(c->end[0], 7);
    assert_string_equal(c->norm[1], "world");
    assert_string_equal(c->norm[2], "foo");
    assert_string_equal(c->norm[3], "bar");
    assert_string_equal(c->norm[4], "x");
    assert_string_equal(c->norm[5], "y");
    assert_string_equal(c->norm[6], "42nd");
    /* the byte range is the source word */
    assert_memory_equal(s + c->start[1], "WORLD", 5);
    assert_int_equal(c->end[6], strlen(s));
    free(c);
}

static void test_tok_joiners(void **state)
{
    toks *c = tok_str("don't don\xE2\x80\x99t 3.14 e.g. end. 'quoted' a..b x'");
    assert_int_equal(c->n, 9);
    assert_string_equal(c->norm[0], "don't");
    assert_string_equal(c->norm[1], "don't"); /* typographic apostrophe folds to ASCII */
    assert_int_equal(c->end[1] - c->start[1], 7);
    assert_string_equal(c->norm[2], "3.14");
    assert_string_equal(c->norm[3], "e.g");
    assert_string_equal(c->norm[4], "end");
    assert_string_equal(c->norm[5], "quoted");
    assert_string_equal(c->norm[6], "a"); /* two periods are not one joiner */
    assert_string_equal(c->norm[7], "b");
    assert_string_equal(c->norm[8], "x");
    free(c);
}

static void test_tok_unicode_fold(void **state)
{
    /* Café (precomposed), Cafe + combining acute, STRASSE, straße, capital sharp s,
     * ﬁ ligature, full-width letters, Greek with final sigma. */
    toks *c = tok_str("Caf\xC3\xA9 Cafe\xCC\x81 STRASSE stra\xC3\x9F" "e \xE1\xBA\x9E \xEF\xAC\x81ne "
                      "\xEF\xBC\xA1\xEF\xBC\xA2\xEF\xBC\xA3 \xCE\x9F\xCE\x94\xCE\x9F\xCE\xA3");
    assert_int_equal(c->n, 8);
    assert_string_equal(c->norm[0], "caf\xC3\xA9");
    assert_string_equal(c->norm[1], "caf\xC3\xA9"); /* NFKC composes the accent */
    assert_int_equal(c->end[1] - c->start[1], 6);
    assert_string_equal(c->norm[2], "strasse");
    assert_string_equal(c->norm[3], "strasse"); /* ß case-folds to ss */
    assert_string_equal(c->norm[4], "ss");      /* so does ẞ */
    assert_string_equal(c->norm[5], "fine");    /* compatibility ligature */
    assert_string_equal(c->norm[6], "abc");     /* full-width → ASCII */
    assert_string_equal(c->norm[7], "\xCE\xBF\xCE\xB4\xCE\xBF\xCF\x83");
    free(c);
}

static void test_tok_cjk_emoji(void **state)
{
    /* CJK ideographs are letters (Lo): a run is one word. Emoji are symbols: separators. */
    /* ❤️ is U+2764 U+FE0F: the variation selector is a mark but starts no word. */
    const char *s = "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E\xE3\x80\x82\xE4\xB8\xAD"
                    " I \xE2\x9D\xA4\xEF\xB8\x8F you\xF0\x9F\x98\x80\xF0\x9F\x98\x80ok";
    toks *c = tok_str(s);
    assert_int_equal(c->n, 5);
    assert_string_equal(c->norm[0], "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E");
    assert_string_equal(c->norm[1], "\xE4\xB8\xAD"); /* 。 separates */
    assert_string_equal(c->norm[2], "i");
    assert_string_equal(c->norm[3], "you");
    assert_string_equal(c->norm[4], "ok");
    assert_memory_equal(s + c->start[4], "ok", 2);
    free(c);
}

static void test_tok_invalid_utf8(void **state)
{
    /* Stray continuation, overlong, surrogate, truncated sequence, 0xFF, NUL. */
    const char s[] = "ab\x80" "cd \xC0\xAF" "ef \xED\xA0\x80gh \xE2\x82 ij\xFFkl\0mn";
    toks *c = tok_run(s, sizeof s - 1);
    const char *want[] = {"ab", "cd", "ef", "gh", "ij", "kl", "mn"};
    assert_int_equal(c->n, 7);
    for (size_t i = 0; i < 7; i++) {
        assert_string_equal(c->norm[i], want[i]);
        assert_true(utf8_valid(c->norm[i], strlen(c->norm[i])));
    }
    /* a truncated sequence at the very end */
    free(c);
    c = tok_run("word\xE2\x82", 6);
    assert_int_equal(c->n, 1);
    assert_string_equal(c->norm[0], "word");
    free(c);
}

static void test_tok_empty(void **state)
{
    toks *c = tok_run("", 0);
    assert_int_equal(c->n, 0);
    free(c);
    c = tok_run(NULL, 0);
    assert_int_equal(c->n, 0);
    free(c);
    c = tok_str("  ... !!! -- \xE2\x9D\xA4 ");
    assert_int_equal(c->n, 0);
    free(c);
    toks dummy = {0};
    assert_int_equal(tokenize_words("x", 1, NULL, &dummy), RAGD_EINVAL);
    assert_int_equal(tokenize_words(NULL, 3, collect, &dummy), RAGD_EINVAL);
}

static void test_tok_giant_word(void **state)
{
    /* 1000 ASCII letters: one word, cut to 64 bytes, the rest skipped. */
    char *big = malloc(1100);
    assert_non_null(big);
    memset(big, 'A', 1000);
    strcpy(big + 1000, " next");
    toks *c = tok_str(big);
    assert_int_equal(c->n, 2);
    assert_int_equal(strlen(c->norm[0]), 64);
    assert_int_equal(c->start[0], 0);
    assert_int_equal(c->end[0], 64);
    assert_int_equal(c->norm[0][0], 'a');
    assert_string_equal(c->norm[1], "next");
    free(c);

    /* 3-byte characters: cut on a code point boundary (63 bytes). */
    size_t k = 0;
    for (int i = 0; i < 100; i++) {
        memcpy(big + k, "\xE4\xB8\xAD", 3);
        k += 3;
    }
    c = tok_run(big, k);
    assert_int_equal(c->n, 1);
    assert_int_equal(c->end[0], 63);
    assert_int_equal(strlen(c->norm[0]), 63);
    assert_true(utf8_valid(c->norm[0], 63));
    free(c);

    /* A word whose normal form grows (ﬃ → ffi, 3 → 3 bytes; ß → ss): norm stays <= 64. */
    k = 0;
    for (int i = 0; i < 40; i++) {
        memcpy(big + k, "\xC3\x9F", 2);
        k += 2;
    }
    c = tok_run(big, k);
    assert_int_equal(c->n, 1);
    assert_int_equal(c->end[0], 64);
    assert_true(strlen(c->norm[0]) <= 64);
    assert_int_equal(strspn(c->norm[0], "s"), strlen(c->norm[0]));
    free(c);

    /* A cut right after a joiner drops the joiner. */
    memset(big, 'b', 63);
    strcpy(big + 63, "'cdef");
    c = tok_str(big);
    assert_int_equal(c->n, 1);
    assert_int_equal(c->end[0], 63);
    free(c);
    free(big);
}

static void test_tok_stop_early(void **state)
{
    toks *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->stop_after = 2;
    assert_int_equal(tokenize_words("one two three four", 18, collect, c), RAGD_OK);
    assert_int_equal(c->n, 2);
    free(c);
}

static void test_tok_stopwords(void **state)
{
    const char *yes[] = {"a", "the", "is", "of", "and", "yours", "with", "it's", "how"};
    const char *no[] = {"cat", "", "thee", "th", "not", "database", "The", "isn't"};
    for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++)
        assert_true(tokenize_is_stopword(yes[i], strlen(yes[i])));
    for (size_t i = 0; i < sizeof no / sizeof no[0]; i++)
        assert_false(tokenize_is_stopword(no[i], strlen(no[i])));
    assert_false(tokenize_is_stopword(NULL, 0));
    /* length matters, not NUL termination */
    assert_true(tokenize_is_stopword("theory", 3));
    /* a normalised word straight from the tokenizer */
    toks *c = tok_str("THE Don\xE2\x80\x99t It\xE2\x80\x99s");
    assert_true(tokenize_is_stopword(c->norm[0], strlen(c->norm[0])));
    assert_true(tokenize_is_stopword(c->norm[2], strlen(c->norm[2])));
    free(c);
}

static int count_cb(const token *t, void *arg)
{
    (*(size_t *)arg)++;
    return 0;
}

static void test_tok_speed(void **state)
{
    /* ~2 MB of mixed text must tokenise quickly even under sanitizers. */
    const char *piece = "The quick brown fox jumps over the lazy dog; caf\xC3\xA9 na\xC3\xAFve "
                        "\xE6\x97\xA5\xE6\x9C\xAC 3.14 don't. ";
    size_t plen = strlen(piece);
    size_t reps = (2u << 20) / plen;
    char *buf = malloc(reps * plen);
    assert_non_null(buf);
    for (size_t i = 0; i < reps; i++)
        memcpy(buf + i * plen, piece, plen);
    size_t n = 0;
    clock_t t0 = clock();
    assert_int_equal(tokenize_words(buf, reps * plen, count_cb, &n), RAGD_OK);
    double secs = (double)(clock() - t0) / CLOCKS_PER_SEC;
    assert_int_equal(n, reps * 14);
    assert_true(secs < 2.0);
    free(buf);
}

/* ---------------------------------------------------------------- sentence helpers */

typedef struct {
    text_span *v;
    size_t n;
} sents;

static sents split(const char *s)
{
    sents r = {0};
    assert_int_equal(sentence_split(s, strlen(s), &r.v, &r.n), RAGD_OK);
    return r;
}

static void assert_sent(const char *text, sents r, size_t i, const char *want)
{
    assert_true(i < r.n);
    size_t n = r.v[i].end - r.v[i].start;
    char *got = strndup(text + r.v[i].start, n);
    assert_non_null(got);
    assert_string_equal(got, want);
    free(got);
}

/* ---------------------------------------------------------------- sentence tests */

static void test_sent_basic(void **state)
{
    const char *t = "  Hello there. How are you?  I am fine!\tGood.  ";
    sents r = split(t);
    assert_int_equal(r.n, 4);
    assert_sent(t, r, 0, "Hello there.");
    assert_int_equal(r.v[0].start, 2);
    assert_sent(t, r, 1, "How are you?");
    assert_sent(t, r, 2, "I am fine!");
    assert_sent(t, r, 3, "Good.");
    free(r.v);
}

static void test_sent_abbrev_decimal(void **state)
{
    const char *t = "Dr. Smith paid $3.50 for it, e.g. at the U.S. border. J. K. Rowling "
                    "wrote it vs. the rest. Mrs. Jones agreed. Then i.e. nothing.";
    sents r = split(t);
    assert_int_equal(r.n, 4);
    assert_sent(t, r, 0, "Dr. Smith paid $3.50 for it, e.g. at the U.S. border.");
    assert_sent(t, r, 1, "J. K. Rowling wrote it vs. the rest.");
    assert_sent(t, r, 2, "Mrs. Jones agreed.");
    assert_sent(t, r, 3, "Then i.e. nothing.");
    free(r.v);
}

static void test_sent_quotes_runs(void **state)
{
    const char *t = "He said \"Stop!\" Then (quietly.) he left... What?! Really?\xE2\x80\x9D Yes";
    sents r = split(t);
    assert_int_equal(r.n, 6);
    assert_sent(t, r, 0, "He said \"Stop!\"");
    assert_sent(t, r, 1, "Then (quietly.)");
    assert_sent(t, r, 2, "he left...");
    assert_sent(t, r, 3, "What?!");
    assert_sent(t, r, 4, "Really?\xE2\x80\x9D");
    assert_sent(t, r, 5, "Yes");
    free(r.v);
}

static void test_sent_cjk(void **state)
{
    /* 。！？ end sentences with no space after them; full-width closing bracket kept. */
    const char *t = "\xE8\xBF\x99\xE6\x98\xAF\xE3\x80\x82\xE5\xA5\xBD\xEF\xBC\x81"
                    "\xE3\x80\x8C\xE5\x90\x97\xEF\xBC\x9F\xE3\x80\x8D\xE6\x98\xAF";
    sents r = split(t);
    assert_int_equal(r.n, 4);
    assert_sent(t, r, 0, "\xE8\xBF\x99\xE6\x98\xAF\xE3\x80\x82");
    assert_sent(t, r, 1, "\xE5\xA5\xBD\xEF\xBC\x81");
    assert_sent(t, r, 2, "\xE3\x80\x8C\xE5\x90\x97\xEF\xBC\x9F\xE3\x80\x8D");
    assert_sent(t, r, 3, "\xE6\x98\xAF");
    free(r.v);
}

static void test_sent_paragraphs(void **state)
{
    const char *t = "Title without dot\n\nFirst line\nsame sentence\n \t\nLast";
    sents r = split(t);
    assert_int_equal(r.n, 3);
    assert_sent(t, r, 0, "Title without dot");
    assert_sent(t, r, 1, "First line\nsame sentence");
    assert_sent(t, r, 2, "Last");
    free(r.v);
}

static void test_sent_empty_and_space(void **state)
{
    sents r = {(text_span *)1, 99};
    assert_int_equal(sentence_split("", 0, &r.v, &r.n), RAGD_OK);
    assert_int_equal(r.n, 0);
    assert_null(r.v);
    assert_int_equal(sentence_split(NULL, 0, &r.v, &r.n), RAGD_OK);
    assert_int_equal(r.n, 0);
    r = split(" \n\n\t \xE3\x80\x80 \n");
    assert_int_equal(r.n, 0);
    free(r.v);
    r = split(". ! ?");
    assert_int_equal(r.n, 3);
    free(r.v);
    assert_int_equal(sentence_split(NULL, 5, &r.v, &r.n), RAGD_EINVAL);
    assert_int_equal(sentence_split("x", 1, NULL, &r.n), RAGD_EINVAL);
}

static void test_sent_invalid_bytes(void **state)
{
    /* Invalid bytes are plain characters: no crash, spans still trimmed and in order. */
    const char t[] = "Bad \xFF\xFE bytes. More\x80 here.\xC3 End\0x.";
    sents r = {0};
    assert_int_equal(sentence_split(t, sizeof t - 1, &r.v, &r.n), RAGD_OK);
    /* "here.\xC3": no space after the period, so no sentence end there */
    assert_int_equal(r.n, 2);
    assert_sent(t, r, 0, "Bad \xFF\xFE bytes.");
    assert_int_equal(r.v[1].start, 14);
    assert_int_equal(r.v[1].end, sizeof t - 1);
    free(r.v);
}

static void test_sent_offsets_property(void **state)
{
    /* On a long generated text: spans are ordered, disjoint, trimmed, non-empty, and
     * together cover every non-space byte. */
    const char *parts[] = {"Alpha beta.", " ", "Dr. Who?", "\n\n", "3.14 is pi!", "  ",
                           "e.g. this", "\xE3\x80\x82", "\xE4\xB8\xAD", "\"Quote.\"", "\n"};
    char buf[8192];
    size_t len = 0;
    unsigned seed = 12345;
    while (len < sizeof buf - 32) {
        seed = seed * 1103515245u + 12345u;
        const char *p = parts[(seed >> 16) % (sizeof parts / sizeof parts[0])];
        memcpy(buf + len, p, strlen(p));
        len += strlen(p);
    }
    sents r = {0};
    assert_int_equal(sentence_split(buf, len, &r.v, &r.n), RAGD_OK);
    assert_true(r.n > 100);
    size_t prev_end = 0;
    for (size_t i = 0; i < r.n; i++) {
        assert_true(r.v[i].start >= prev_end);
        assert_true(r.v[i].end > r.v[i].start);
        assert_false(buf[r.v[i].start] == ' ' || buf[r.v[i].start] == '\n');
        assert_false(buf[r.v[i].end - 1] == ' ' || buf[r.v[i].end - 1] == '\n');
        assert_true(utf8_valid(buf + r.v[i].start, r.v[i].end - r.v[i].start));
        for (size_t k = prev_end; k < r.v[i].start; k++)
            assert_true(buf[k] == ' ' || buf[k] == '\n');
        prev_end = r.v[i].end;
    }
    for (size_t k = prev_end; k < len; k++)
        assert_true(buf[k] == ' ' || buf[k] == '\n');
    free(r.v);
}

/* The splitter steps over 16-byte blocks with nothing that can end a sentence: a
 * terminator, a blank line or a CJK full stop at every offset of the first blocks still
 * splits the text there. */
static void test_sent_every_offset(void **state)
{
    static const struct {
        const char *end;  /* what ends the first sentence */
        size_t gap;       /* bytes between the first sentence's end and the second's start */
    } cases[] = {{".", 1}, {"!", 1}, {"?", 1}, {"\n\n", 2}, {"\xE3\x80\x82", 1}, {"\xE2\x80\xA9", 1}};
    char buf[128];
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        size_t el = strlen(cases[c].end);
        for (size_t at = 1; at < 48; at++) {
            /* "xxx…x" END " yyy…y": END at byte `at` */
            memset(buf, 'x', at);
            memcpy(buf + at, cases[c].end, el);
            size_t len = at + el;
            buf[len++] = ' ';
            memset(buf + len, 'y', 40);
            len += 40;
            sents r = {0};
            assert_int_equal(sentence_split(buf, len, &r.v, &r.n), RAGD_OK);
            bool para = cases[c].end[0] == '\n', space = cases[c].end[0] == '\xE2';
            size_t first_end = para || space ? at : at + el;
            if (space) { /* U+2029 is a space, not a sentence end: one sentence */
                assert_int_equal(r.n, 1);
            } else {
                if (r.n != 2 || r.v[0].end != first_end || r.v[1].start != at + el + 1)
                    fail_msg("case %zu at %zu: %zu sentences, first ends at %zu", c, at, r.n,
                             r.n ? r.v[0].end : 0);
            }
            free(r.v);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tok_ascii),
        cmocka_unit_test(test_tok_joiners),
        cmocka_unit_test(test_tok_unicode_fold),
        cmocka_unit_test(test_tok_cjk_emoji),
        cmocka_unit_test(test_tok_invalid_utf8),
        cmocka_unit_test(test_tok_empty),
        cmocka_unit_test(test_tok_giant_word),
        cmocka_unit_test(test_tok_stop_early),
        cmocka_unit_test(test_tok_stopwords),
        cmocka_unit_test(test_tok_speed),
        cmocka_unit_test(test_sent_basic),
        cmocka_unit_test(test_sent_abbrev_decimal),
        cmocka_unit_test(test_sent_quotes_runs),
        cmocka_unit_test(test_sent_cjk),
        cmocka_unit_test(test_sent_paragraphs),
        cmocka_unit_test(test_sent_empty_and_space),
        cmocka_unit_test(test_sent_invalid_bytes),
        cmocka_unit_test(test_sent_offsets_property),
        cmocka_unit_test(test_sent_every_offset),
    };
    return cmocka_run_group_tests_name("text", tests, NULL, NULL);
}
