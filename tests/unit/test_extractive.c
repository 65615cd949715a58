/* Unit tests for src/rag/extractive.c (the extractive generator). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "rag/extractive.h"
#include "util/utf8.h"

#define P(s) {s, sizeof(s) - 1}

static const extract_passage cities[] = {
    P("Paris is the capital of France. It has the Eiffel Tower."),
    P("Berlin is the capital of Germany. The Brandenburg Gate is there."),
    P("Rome is in Italy."),
};

/* Runs extractive_answer and returns the answer (caller frees); checks UTF-8. */
static char *answer(const char *query, const extract_passage *ps, size_t n, size_t max_sent,
                    size_t max_chars)
{
    extract_params prm = {max_sent, max_chars};
    char *a = (char *)1;
    assert_int_equal(extractive_answer(query, strlen(query), ps, n, &prm, &a), RAGD_OK);
    assert_non_null(a);
    assert_true(utf8_valid(a, strlen(a)));
    return a;
}

static void expect(const char *query, const extract_passage *ps, size_t n, size_t max_sent,
                   size_t max_chars, const char *want)
{
    char *a = answer(query, ps, n, max_sent, max_chars);
    assert_string_equal(a, want);
    free(a);
}

static void test_citations(void **state)
{
    expect("What is the capital of Germany?", cities, 3, 1, 800,
           "Berlin is the capital of Germany. [2]");
    /* Two sentences match; they come in passage order, each with its own marker. */
    expect("What is the capital of Germany?", cities, 3, 3, 800,
           "Paris is the capital of France. [1] Berlin is the capital of Germany. [2]");
    expect("Where is Rome?", cities, 3, 3, 800, "Rome is in Italy. [3]");
}

static void test_query_words_drive_choice(void **state)
{
    expect("eiffel tower", cities, 3, 1, 800, "It has the Eiffel Tower. [1]");
    /* "capital" is in two sentences, "brandenburg" in one: the rarer word weighs more. */
    expect("capital Brandenburg", cities, 3, 1, 800, "The Brandenburg Gate is there. [2]");
    /* Case and Unicode folding: the query words are normalised like the text. */
    expect("GERMANY", cities, 3, 1, 800, "Berlin is the capital of Germany. [2]");
    /* Stop words do not count: "the" is in every sentence but selects nothing. */
    expect("the Italy", cities, 3, 3, 800, "Rome is in Italy. [3]");
}

static void test_marker_once_per_run(void **state)
{
    /* Consecutive picks from one passage share the marker of the last one. */
    expect("Eiffel Paris", cities, 3, 3, 800,
           "Paris is the capital of France. It has the Eiffel Tower. [1]");
    expect("Eiffel Paris Rome", cities, 3, 3, 800,
           "Paris is the capital of France. It has the Eiffel Tower. [1] Rome is in Italy. [3]");
}

static void test_rank_bonus(void **state)
{
    const extract_passage ps[] = {
        P("Nothing here."), P("Cats sleep a lot."), P("Cats purr loudly."),
    };
    /* Equal word scores: the better-ranked passage wins. */
    expect("cats", ps, 3, 1, 800, "Cats sleep a lot. [2]");
    expect("cats", ps, 3, 5, 800, "Cats sleep a lot. [2] Cats purr loudly. [3]");
}

static void test_fallbacks(void **state)
{
    const char *want = "Paris is the capital of France. [1]";
    expect("zebra", cities, 3, 3, 800, want);
    expect("", cities, 3, 3, 800, want);
    expect("the of is", cities, 3, 3, 800, want); /* only stop words */
    expect("?!", cities, 3, 3, 800, want);
    /* The best passage without sentences: the first one that has some. */
    const extract_passage ps[] = {P(""), P("   \n\n  "), P("Only this. And that.")};
    expect("zebra", ps, 3, 3, 800, "Only this. [3]");
    /* No sentence anywhere: an empty answer, not NULL. */
    expect("zebra", ps, 2, 3, 800, "");
    /* Defaults when params is NULL or zero. */
    char *a = NULL;
    assert_int_equal(extractive_answer("capital", 7, cities, 3, NULL, &a), RAGD_OK);
    assert_string_equal(a, "Paris is the capital of France. [1] Berlin is the capital of Germany. [2]");
    free(a);
}

static void test_no_passages_and_bad_args(void **state)
{
    char *a = (char *)1;
    extract_params prm = {3, 800};
    assert_int_equal(extractive_answer("q", 1, NULL, 0, &prm, &a), RAGD_OK);
    assert_null(a);
    assert_int_equal(extractive_answer("q", 1, cities, 3, &prm, NULL), RAGD_EINVAL);
    assert_int_equal(extractive_answer("q", 1, NULL, 2, &prm, &a), RAGD_EINVAL);
    assert_null(a);
    assert_int_equal(extractive_answer(NULL, 3, cities, 3, &prm, &a), RAGD_EINVAL);
    assert_null(a);
    assert_int_equal(extractive_answer(NULL, 0, cities, 3, &prm, &a), RAGD_OK);
    assert_string_equal(a, "Paris is the capital of France. [1]");
    free(a);
}

static void test_limits(void **state)
{
    const extract_passage ps[] = {
        P("Alpha beta gamma delta. Alpha beta gamma. Alpha beta. Alpha."),
    };
    /* max_sentences */
    expect("alpha beta gamma delta", ps, 1, 1, 800, "Alpha beta gamma delta. [1]");
    expect("alpha beta gamma delta", ps, 1, 2, 800,
           "Alpha beta gamma delta. Alpha beta gamma. [1]");
    /* max_chars: the second-best sentence (17 bytes + marker + space) does not fit in
     * 40, but a shorter lower-ranked one does: 23 + 1 + 6 + 4 = 34. */
    expect("alpha beta gamma delta", ps, 1, 3, 40, "Alpha beta gamma delta. Alpha. [1]");
    /* The answer never exceeds max_chars (for sane values). */
    for (size_t mc = 30; mc < 90; mc++) {
        char *a = answer("alpha beta gamma delta", ps, 1, 4, mc);
        assert_true(strlen(a) <= mc);
        free(a);
    }
}

static void test_cut_first_sentence(void **state)
{
    char *text = malloc(4000);
    assert_non_null(text);
    size_t len = 0;
    for (int i = 0; i < 500; i++) {
        memcpy(text + len, "word ", 5);
        len += 5;
    }
    memcpy(text + len - 1, ".", 2);
    text[0] = 'W'; /* a lower-case start would be a chunk's cut-off start, not a sentence */
    extract_passage ps[] = {{text, len}};
    char *a = answer("word", ps, 1, 3, 100);
    assert_true(strlen(a) <= 100);
    size_t al = strlen(a);
    assert_true(al > 80); /* cut near the budget, not at the start */
    /* Cut at a word boundary, marked with an ellipsis, then the citation. */
    assert_string_equal(a + al - strlen("word\xe2\x80\xa6 [1]"), "word\xe2\x80\xa6 [1]");
    assert_memory_equal(a, "Word word", 9);
    free(a);
    free(text);
}

static void test_utf8_safe_cuts(void **state)
{
    /* No spaces: the cut must fall on code point boundaries. 2-, 3- and 4-byte forms. */
    const char *units[] = {"\xc3\xa9", "\xe6\x97\xa5", "\xf0\xa0\x80\x80", "A\xc3\xa9"}; /* U+20000: a letter */
    for (size_t u = 0; u < sizeof units / sizeof units[0]; u++) {
        char text[2048];
        size_t len = 0, ul = strlen(units[u]);
        while (len + ul < 1500) {
            memcpy(text + len, units[u], ul);
            len += ul;
        }
        text[len++] = '.'; /* a sentence: without closing punctuation one word is a label */
        text[len] = '\0';
        extract_passage ps[] = {{text, len}};
        for (size_t mc = 1; mc < 64; mc++) {
            char *a = answer("x", ps, 1, 3, mc); /* fallback sentence, cut */
            size_t al = strlen(a);
            if (mc >= 4 + 3 + 4) /* room for a code point, the ellipsis and " [1]" */
                assert_true(al <= mc);
            assert_true(al > 4);
            assert_string_equal(a + al - 4, " [1]");
            free(a);
        }
    }
}

static void test_whitespace_and_bad_utf8(void **state)
{
    const extract_passage ps[] = {
        P("Line one\n  continues\there. Next."),
        P("Bad \xff bytes\x01 here."),
    };
    expect("continues", ps, 2, 1, 800, "Line one continues here. [1]");
    expect("bytes", ps, 2, 1, 800, "Bad \xef\xbf\xbd bytes here. [2]");
}

static void test_duplicate_sentences(void **state)
{
    /* Overlapping chunks repeat a sentence: it is picked once, from the better passage. */
    const extract_passage ps[] = {
        P("Intro text. Solar panels convert light."),
        P("Solar panels convert light. Batteries store it."),
    };
    expect("solar panels", ps, 2, 3, 800, "Solar panels convert light. [1]");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_citations),
        cmocka_unit_test(test_query_words_drive_choice),
        cmocka_unit_test(test_marker_once_per_run),
        cmocka_unit_test(test_rank_bonus),
        cmocka_unit_test(test_fallbacks),
        cmocka_unit_test(test_no_passages_and_bad_args),
        cmocka_unit_test(test_limits),
        cmocka_unit_test(test_cut_first_sentence),
        cmocka_unit_test(test_utf8_safe_cuts),
        cmocka_unit_test(test_whitespace_and_bad_utf8),
        cmocka_unit_test(test_duplicate_sentences),
    };
    return cmocka_run_group_tests_name("extractive", tests, NULL, NULL);
}
