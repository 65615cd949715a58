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

/* ---- issue 9: whole sentences, no markup, no repeats, answering sentences ---------- */

static void test_readme_example_answers_with_the_decision(void **state)
{
    const extract_passage ps[] = {
        P("# Backups\n\nWe decided to back up the database nightly, to the NAS in the office.\n"),
    };
    expect("what did we decide about backups?", ps, 1, 3, 800,
           "We decided to back up the database nightly, to the NAS in the office. [1]");
}

static void test_markup_lines_are_never_sentences(void **state)
{
    /* Every markup line holds the query word "backup"; only the prose may answer. */
    const extract_passage ps[] = {
        P("Backup\n======\n\n## Backup plan\n\n<a name=\"backup\" />\n<div class=\"backup\"></div>\n"
          "```sh\nbackup --all /srv # Backup now.\n```\n\n    backup_run(); // Backup.\n\n"
          "| backup | nightly |\n|---|---|\n"
          "- [Backup guide](https://x.example/backup)\n"
          "1.2 Backup settings ........ 12\n"
          "int backup = run_backup(&cfg, \"/srv\");\n"
          "---\n\nThe backup runs at night."),
    };
    expect("backup", ps, 1, 5, 800, "The backup runs at night. [1]");
    /* Inline markup is reduced to its text. */
    const extract_passage inl[] = {
        P("See the [backup guide](https://x.example/g) and **always** run `backup` <b>first</b>."),
    };
    expect("backup guide", inl, 1, 1, 800, "See the backup guide and always run backup first. [1]");
}

static void test_headings_and_labels_are_not_sentences(void **state)
{
    /* Without closing punctuation a line is a heading, a label or a cut-off end. */
    const extract_passage ps[] = {
        P("Backup Retention Policy\n\nOld copies are deleted after 30 days.\n\nBackup retention is"),
    };
    expect("backup retention", ps, 1, 3, 800, "Old copies are deleted after 30 days. [1]");
    /* A lead-in ending in ':' introduces what the answer leaves out. */
    const extract_passage lead[] = {P("Run the backup like this:\n\nThe backup takes an hour.")};
    expect("run the backup", lead, 1, 3, 800, "The backup takes an hour. [1]");
}

static void test_no_sentence_twice(void **state)
{
    /* Near-duplicates (case, white space, punctuation) from overlapping chunks: once. */
    const extract_passage ps[] = {
        P("Solar panels convert light into power. Batteries store it."),
        P("solar PANELS   convert light\ninto power! Inverters follow."),
        P("Solar panels convert light into power."),
    };
    expect("solar panels power", ps, 3, 3, 800, "Solar panels convert light into power. [1]");
}

static void test_cut_chunk_starts_are_not_sentences(void **state)
{
    /* A chunk that starts mid-sentence: a lower-case start, or the end of a sentence that
     * another passage holds whole. */
    const extract_passage ps[] = {
        P("We back up the database nightly to the NAS. Restores are tested monthly."),
        P("the database nightly to the NAS. Copies are encrypted."),
        P("Database nightly to the NAS. Keys are rotated."),
    };
    expect("database nightly NAS", ps, 3, 3, 800, "We back up the database nightly to the NAS. [1]");
    /* A lower-case start with nothing whole to compare with is still a cut-off piece. */
    const extract_passage lc[] = {P("runs nightly at two in the morning. Backups are encrypted.")};
    expect("nightly backups", lc, 1, 3, 800, "Backups are encrypted. [1]");
    /* A list item is not cut, whatever its case. */
    const extract_passage item[] = {P("- nightly runs are kept for a week.\n- Backups are encrypted.")};
    expect("nightly", item, 1, 3, 800, "nightly runs are kept for a week. [1]");
    /* Cut inside brackets: either half is half a sentence. */
    const extract_passage br[] = {P("Backups (see the \"why nightly?\" note) matter. Backups run nightly.")};
    expect("backups nightly", br, 1, 3, 800, "Backups run nightly. [1]");
    const extract_passage tail[] = {
        P("&permit, &call) reports the nightly backup. The backup runs nightly. The permit, call) "
          "reports the backup."),
    };
    expect("backup nightly", tail, 1, 3, 800, "The backup runs nightly. [1]");
}

static void test_question_type_cues(void **state)
{
    /* Same query words in both; the sentence with the cue answers the question. The
     * better-ranked passage would win without it. */
    const extract_passage when[] = {
        P("Restores are tested by the operations team."), P("Restores are tested every Monday."),
    };
    expect("when are restores tested?", when, 2, 1, 800, "Restores are tested every Monday. [2]");
    const extract_passage why[] = {
        P("Offsite copies are kept for a full year."), P("Offsite copies are kept because the auditors ask."),
    };
    expect("why are offsite copies kept?", why, 2, 1, 800, "Offsite copies are kept because the auditors ask. [2]");
    const extract_passage who[] = {
        P("The alert rules are reviewed every quarter."), P("The alert rules are owned by Jonas Berg."),
    };
    expect("who handles the alert rules?", who, 2, 1, 800, "The alert rules are owned by Jonas Berg. [2]");
    const extract_passage count[] = {P("The team has many people."), P("The team has 23 people.")};
    expect("how many people are on the team?", count, 2, 1, 800, "The team has 23 people. [2]");
    const extract_passage decide[] = {
        P("Backups were discussed at length in the meeting."), P("We decided to run backups nightly."),
    };
    expect("what did we decide about backups?", decide, 2, 1, 800, "We decided to run backups nightly. [2]");
}

static void test_stemming_proximity_and_questions(void **state)
{
    /* Stems: "installing" finds "installation". */
    const extract_passage st[] = {P("Nothing here matters."), P("The installation takes five minutes.")};
    expect("installing", st, 2, 1, 800, "The installation takes five minutes. [2]");
    /* Query words close together beat the same words far apart. */
    const extract_passage prox[] = {
        P("Cats are fond of sunny windows, while in the garden the neighbours' dogs bark."),
        P("Cats and dogs share the sofa."),
    };
    expect("cats dogs", prox, 2, 1, 800, "Cats and dogs share the sofa. [2]");
    /* A lower-case start inside a passage (the rest of a broken sentence) ranks lower. */
    const extract_passage low[] = {P("Intro here. and cats sleep all day."), P("Cats sleep all day long.")};
    expect("cats sleep", low, 2, 1, 800, "Cats sleep all day long. [2]");
    /* A question answers nothing by itself. */
    const extract_passage q[] = {P("Do cats sleep a lot?"), P("Cats sleep sixteen hours a day.")};
    expect("cats sleep", q, 2, 1, 800, "Cats sleep sixteen hours a day. [2]");
}

static void test_cjk_sentences_are_whole(void **state)
{
    /* A CJK full stop closes a sentence; no space follows it. */
    const extract_passage ps[] = {P("\xe6\x9d\xb1\xe4\xba\xac\xe3\x80\x82\xe5\xa4\xa7\xe9\x98\xaa")};
    expect("x", ps, 1, 3, 800, "\xe6\x9d\xb1\xe4\xba\xac\xe3\x80\x82 [1]"); /* 東京。 (大阪 is unclosed) */
}

static void test_only_markup_gives_empty_answer(void **state)
{
    const extract_passage ps[] = {P("# Backups\n\n```\nbackup --now\n```\n| a | b |")};
    expect("backups", ps, 1, 3, 800, "");
}

static void test_random_markup_invariants(void **state)
{
    /* Random passages from prose and markup lines (markup pieces start a line, as they must
     * to be markup) and bad bytes: the answer is valid UTF-8 within max_chars, and never
     * carries a markup piece. */
    static const char *const pieces[] = {
        "The backup runs nightly. ", "Restores are tested monthly! ", "Why is it slow? ",
        "\n# Backup heading\n", "\n\nSetext title\n=====\n", "\n```sh\nbackup --all\n```\n", "\n| a | b |\n",
        "\n<a name=\"x\" />\n", "\n- [Link](https://x.example)\n", "\n1.2 Backup ....... 12\n", "\n\n",
        "\n\n    indented_code();\n", "\nx = f(y) { z; }\n", "(cut inside. ", "lower start here. ",
        "**Bold** backup with `code` and [a link](u). ", "\xff\xfe", "caf\xc3\xa9 backup. ", "\n",
    };
    const size_t np = sizeof pieces / sizeof pieces[0];
    unsigned seed = 12345;
    for (int round = 0; round < 2000; round++) {
        char buf[4][600];
        extract_passage ps[4];
        size_t n = 1 + (size_t)(round % 4);
        for (size_t p = 0; p < n; p++) {
            size_t len = 0;
            for (int k = 0; k < 12; k++) {
                seed = seed * 1103515245u + 12345u;
                const char *piece = pieces[(seed >> 16) % np];
                size_t pl = strlen(piece);
                if (len + pl >= sizeof buf[p])
                    break;
                memcpy(buf[p] + len, piece, pl);
                len += pl;
            }
            ps[p].text = buf[p];
            ps[p].len = len;
        }
        size_t mc = 40 + (size_t)(round % 300);
        char *a = answer("backup nightly monthly", ps, n, 1 + (size_t)(round % 4), mc);
        assert_true(strlen(a) <= mc);
        assert_null(strstr(a, "```"));
        assert_null(strstr(a, "| a"));
        assert_null(strstr(a, "<a "));
        assert_null(strstr(a, "]("));
        assert_null(strstr(a, "...."));
        assert_null(strstr(a, "# Backup"));
        assert_null(strstr(a, "=="));
        assert_null(strstr(a, "indented_code"));
        assert_null(strstr(a, "(cut"));
        assert_null(strstr(a, "Setext"));
        free(a);
    }
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
        cmocka_unit_test(test_readme_example_answers_with_the_decision),
        cmocka_unit_test(test_markup_lines_are_never_sentences),
        cmocka_unit_test(test_headings_and_labels_are_not_sentences),
        cmocka_unit_test(test_no_sentence_twice),
        cmocka_unit_test(test_cut_chunk_starts_are_not_sentences),
        cmocka_unit_test(test_question_type_cues),
        cmocka_unit_test(test_stemming_proximity_and_questions),
        cmocka_unit_test(test_cjk_sentences_are_whole),
        cmocka_unit_test(test_only_markup_gives_empty_answer),
        cmocka_unit_test(test_random_markup_invariants),
    };
    return cmocka_run_group_tests_name("extractive", tests, NULL, NULL);
}
