/* Unit tests for src/rag/passages.c (merging and trimming), src/rag/budget.c (the token
 * estimate, context and reserve), the fitting in src/rag/prompt.c and src/rag/citations.c. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rag/budget.h"
#include "rag/citations.h"
#include "rag/passages.h"
#include "rag/prompt.h"
#include "util/strbuf.h"
#include "util/utf8.h"

/* ---- merging ---- */

/* A hit of document doc: the slice doc_text[start, end) as its text (or `text` when given). */
static rag_hit hit(int64_t rowid, const char *doc_text, int ordinal, int64_t start, int64_t end, double score,
                   const char *text)
{
    rag_hit h;
    memset(&h, 0, sizeof h);
    h.row.chunk_id = rowid * 100 + ordinal;
    h.row.doc_rowid = rowid;
    h.row.doc_id = strdup(rowid == 1 ? "one" : "two");
    h.row.ordinal = ordinal;
    h.row.start = start;
    h.row.end = end;
    h.row.text = text ? strdup(text) : strndup(doc_text + start, (size_t)(end - start));
    h.row.metadata_json = strdup("{}");
    h.score = score;
    h.distance = 1 - score;
    return h;
}

static const char doc1[] = "Alpha one is first. Beta two is second. Gamma three is third. Delta four is fourth.";
/*                          0         1         2         3         4         5         6         7         8
 *                          0123456789012345678901234567890123456789012345678901234567890123456789012345678901234 */

static void merge_overlapping_chunks_once(void **state)
{
    (void)state;
    rag_result res = {0};
    res.hits = calloc(3, sizeof *res.hits);
    /* chunks 0 [0,39) and 1 [20,61) overlap by "Beta two is second."; a chunk of another
     * document ranks between them */
    res.hits[0] = hit(1, doc1, 1, 20, 61, 0.9, NULL);
    res.hits[1] = hit(2, NULL, 0, 0, 11, 0.8, "Other text.");
    res.hits[2] = hit(1, doc1, 0, 0, 39, 0.5, NULL);
    res.n = 3;
    assert_int_equal(rag_passages_merge(&res), RAGD_OK);
    assert_int_equal(res.n, 2);
    assert_string_equal(res.hits[0].row.text, "Alpha one is first. Beta two is second. Gamma three is third.");
    assert_int_equal(res.hits[0].row.ordinal, 0);
    assert_int_equal(res.hits[0].n_chunks, 2);
    assert_int_equal(res.hits[0].row.start, 0);
    assert_int_equal(res.hits[0].row.end, 61);
    assert_true(res.hits[0].score == 0.9);
    assert_int_equal(res.hits[0].row.chunk_id, 100); /* the first chunk's row */
    assert_string_equal(res.hits[1].row.text, "Other text.");
    assert_int_equal(res.hits[1].n_chunks, 1);
    rag_result_cleanup(&res);
}

static void merge_adjacent_with_gap_and_not_unplaced(void **state)
{
    (void)state;
    rag_result res = {0};
    res.hits = calloc(3, sizeof *res.hits);
    /* consecutive chunks with a one-space gap: joined by one space */
    res.hits[0] = hit(1, doc1, 0, 0, 19, 0.7, NULL);
    res.hits[1] = hit(1, doc1, 1, 20, 39, 0.6, NULL);
    /* a chunk whose text is not its slice (offsets cannot place it): never merged */
    res.hits[2] = hit(1, doc1, 2, 40, 61, 0.5, "Something else entirely.");
    res.n = 3;
    assert_int_equal(rag_passages_merge(&res), RAGD_OK);
    assert_int_equal(res.n, 2);
    assert_string_equal(res.hits[0].row.text, "Alpha one is first. Beta two is second.");
    assert_int_equal(res.hits[0].n_chunks, 2);
    assert_string_equal(res.hits[1].row.text, "Something else entirely.");
    rag_result_cleanup(&res);
}

static void merge_gap_before_a_block_is_a_line_break(void **state)
{
    (void)state;
    static const char doc[] = "Steps:\n- one\n- two\n\nDone here.";
    rag_result res = {0};
    res.hits = calloc(3, sizeof *res.hits);
    res.hits[0] = hit(1, doc, 0, 0, 12, 0.9, NULL);  /* "Steps:\n- one" */
    res.hits[1] = hit(1, doc, 1, 13, 18, 0.8, NULL); /* "- two" */
    res.hits[2] = hit(1, doc, 2, 20, 30, 0.7, NULL); /* "Done here." */
    res.n = 3;
    assert_int_equal(rag_passages_merge(&res), RAGD_OK);
    assert_int_equal(res.n, 1);
    assert_string_equal(res.hits[0].row.text, "Steps:\n- one\n- two\n\nDone here.");
    assert_int_equal(res.hits[0].n_chunks, 3);
    rag_result_cleanup(&res);
}

static void merge_far_chunks_stay_apart(void **state)
{
    (void)state;
    rag_result res = {0};
    res.hits = calloc(2, sizeof *res.hits);
    res.hits[0] = hit(1, doc1, 3, 62, 84, 0.9, NULL);
    res.hits[1] = hit(1, doc1, 0, 0, 19, 0.8, NULL);
    res.n = 2;
    assert_int_equal(rag_passages_merge(&res), RAGD_OK);
    assert_int_equal(res.n, 2);
    assert_int_equal(res.hits[0].row.ordinal, 3); /* rank order kept */
    assert_int_equal(res.hits[1].row.ordinal, 0);
    rag_result_cleanup(&res);
}

/* ---- trimming ---- */

static void expect_trim(const char *text, bool doc_start, const char *want)
{
    size_t from, to;
    assert_int_equal(rag_passage_trim(text, strlen(text), doc_start, &from, &to), RAGD_OK);
    char got[512];
    snprintf(got, sizeof got, "%.*s", (int)(to - from), text + from);
    assert_string_equal(got, want);
}

static void trim_fragments(void **state)
{
    (void)state;
    const char *mid = "of the week. The backups run nightly at two. They are kept for thirty days. Old ones are";
    expect_trim(mid, false, "The backups run nightly at two. They are kept for thirty days.");
    /* at the document's start nothing is cut at the head */
    expect_trim("of the week. The backups run nightly at two. They are kept for thirty days.", true,
                "of the week. The backups run nightly at two. They are kept for thirty days.");
    /* an upper-case start is a sentence start */
    expect_trim("Backups run nightly. They are kept.", false, "Backups run nightly. They are kept.");
    /* a head fragment up to half the passage goes (the chunker's overlap), a longer one stays */
    expect_trim("of the week and more. The backups run nightly.", false, "The backups run nightly.");
    expect_trim("and so on and so forth for a long while. Short one.", false,
                "and so on and so forth for a long while. Short one.");
    /* a tail fragment over a quarter stays */
    expect_trim("Backups run nightly. They are kept for thirty", false, "Backups run nightly. They are kept for thirty");
    /* a last line of its own (a list item, a heading) is not a fragment */
    expect_trim("Backups run nightly at two o'clock sharp. They are kept for thirty days.\n- item", false,
                "Backups run nightly at two o'clock sharp. They are kept for thirty days.\n- item");
    /* one sentence: nothing to cut */
    expect_trim("backups run nightly", false, "backups run nightly");
    /* UTF-8 and CJK stops */
    expect_trim("Die Sicherung läuft nachts. Sie wird dreißig Tage lang aufbewahrt. Ältere werden gel", false,
                "Die Sicherung läuft nachts. Sie wird dreißig Tage lang aufbewahrt.");
}

/* ---- the token estimate ---- */

/* What a word-level tokenizer counts (the fake Ollama's count: \w+ runs and single
 * symbols); a BPE tokenizer never counts fewer tokens than words. */
static size_t words_and_symbols(const char *s)
{
    size_t n = 0;
    for (size_t i = 0; s[i];) {
        unsigned char c = (unsigned char)s[i];
        if (c == ' ' || c == '\n' || c == '\t') {
            i++;
        } else if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c >= 0x80) {
            while (s[i] && (((unsigned char)s[i] >= 'a' && (unsigned char)s[i] <= 'z') ||
                            ((unsigned char)s[i] >= 'A' && (unsigned char)s[i] <= 'Z') ||
                            (s[i] >= '0' && s[i] <= '9') || s[i] == '_' || (unsigned char)s[i] >= 0x80))
                i++;
            n++;
        } else {
            i++;
            n++;
        }
    }
    return n;
}

static const char *const samples[] = {
    "We decided to back up the database nightly, at 02:00 UTC.",
    "int main(void) {\n    return rag_op_extractive(q) == NULL ? 1 : 0;\n}\n",
    "Krakatoa erupted in 1883 with one of the loudest sounds ever recorded.",
    "Die Sicherung läuft nachts; 数据每晚备份。 Привет, мир! 🙂",
    "   \n\n\t  spaces   and\n\nbreaks  ",
};

static void estimate_monotone_and_conservative(void **state)
{
    (void)state;
    for (size_t s = 0; s < sizeof samples / sizeof *samples; s++) {
        const char *t = samples[s];
        size_t len = strlen(t), prev = 0;
        for (size_t i = 0; i <= len; i++) {
            size_t e = rag_budget_tokens(t, i);
            assert_true(e >= prev); /* appending never lowers it */
            prev = e;
        }
        assert_true(prev >= words_and_symbols(t));
        /* not absurd: at most one token per byte */
        assert_true(prev <= len);
    }
    /* English prose: between bytes/4 (the usual BPE rate) and bytes/2 */
    const char *prose = samples[0];
    size_t e = rag_budget_tokens(prose, strlen(prose));
    assert_true(e * 4 >= strlen(prose));
    assert_true(e * 2 <= strlen(prose));
    /* CJK: two tokens a character (three bytes) */
    assert_int_equal(rag_budget_tokens("数据", 6), 4);
    assert_int_equal(rag_budget_tokens("12345", 5), 5);
}

static void context_and_reserve(void **state)
{
    (void)state;
    json_t *o = json_pack("{s:i, s:i}", "num_ctx", 8192, "num_predict", 300);
    assert_int_equal(rag_budget_context("ollama", "llama3.2", o, 0), 8192);
    assert_int_equal(rag_budget_context("ollama", "llama3.2", o, 4096), 8192); /* the request's num_ctx wins */
    assert_int_equal(rag_budget_context("ollama", "llama3.2", NULL, 4096), 4096);
    assert_int_equal(rag_budget_context("ollama", "llama3.1:70b", NULL, 0), RAG_BUDGET_OLLAMA_DEFAULT);
    assert_int_equal(rag_budget_context("openai", "gpt-4o-mini", NULL, 0), 128000);
    assert_int_equal(rag_budget_context("openai", "gpt-4", NULL, 0), 8192);
    assert_int_equal(rag_budget_context("openai", "my-local-model", NULL, 0), RAG_BUDGET_OPENAI_DEFAULT);
    assert_int_equal(rag_budget_context("openai", "gpt-4o", NULL, 16000), 16000);
    assert_int_equal(rag_budget_reserve("ollama", o, 8192), 300);
    assert_int_equal(rag_budget_reserve("ollama", NULL, 2048), 512);
    assert_int_equal(rag_budget_reserve("ollama", NULL, 128000), 2048);
    assert_int_equal(rag_budget_reserve("ollama", NULL, 600), 256);
    json_t *big = json_pack("{s:i}", "max_tokens", 100000);
    assert_int_equal(rag_budget_reserve("openai", big, 4096), 2048); /* at most half */
    json_decref(big);
    json_decref(o);
}

/* ---- fitting the prompt ---- */

static rag_result three_passages(void)
{
    static const char *const texts[] = {
        "First passage sentence one is here. First passage sentence two is here.",
        "Second passage sentence one is here. Second passage sentence two is here. Second passage three.",
        "Third passage sentence one is here. Third passage sentence two is here.",
    };
    rag_result res = {0};
    res.hits = calloc(3, sizeof *res.hits);
    for (size_t i = 0; i < 3; i++)
        res.hits[i] = hit(1, NULL, (int)i * 5, (int64_t)i * 1000, (int64_t)i * 1000 + (int64_t)strlen(texts[i]),
                          1.0 - 0.1 * (double)i, texts[i]);
    res.n = 3;
    return res;
}

/* Under datamarking every budget holds too: the estimate of what is sent never passes it. */
static void fit_datamark_stays_under_every_budget(void **state)
{
    (void)state;
    fence_keys k;
    assert_int_equal(fence_keys_init(&k, FENCE_MODE_DATAMARK), RAGD_OK);
    rag_result res = three_passages();
    const char *q = "What is in the passages?";
    size_t last_given = 0;
    for (size_t budget = 1000; budget >= 100; budget -= 7) {
        rag_prompt_fit fit = {.budget = budget};
        char *user = NULL;
        ragd_err rc = rag_prompt_user_fit(&res, q, strlen(q), NULL, 0, &k, 50, &fit, &user);
        if (rc == RAGD_ETOOBIG) {
            assert_null(user);
            break;
        }
        assert_int_equal(rc, RAGD_OK);
        assert_true(fit.tokens_estimate <= budget);
        assert_int_equal(fit.tokens_estimate, RAG_BUDGET_TEMPLATE_TOKENS + 50 + rag_budget_tokens(user, strlen(user)));
        assert_non_null(strstr(user, "What\xcb\x86is\xcb\x86in") ? user : strstr(user, "What is in the passages?"));
        if (last_given)
            assert_true(fit.passages <= last_given); /* a smaller budget never gives more */
        last_given = fit.passages ? fit.passages : 1;
        free(user);
    }
    rag_result_cleanup(&res);
}

static void fit_drops_and_cuts_keeps_question(void **state)
{
    (void)state;
    fence_keys k;
    assert_int_equal(fence_keys_init(&k, FENCE_MODE_FENCE), RAGD_OK);
    rag_result res = three_passages();
    const char *q = "What is in the passages?";
    rag_prompt_fit fit = {.budget = 100000};
    char *user = NULL;
    assert_int_equal(rag_prompt_user_fit(&res, q, strlen(q), NULL, 0, &k, 100, &fit, &user), RAGD_OK);
    assert_int_equal(fit.passages, 3);
    assert_false(fit.truncated);
    size_t whole = fit.tokens_estimate;
    free(user);
    /* room for the first passage and a sentence of the second */
    size_t one = rag_budget_tokens(res.hits[0].row.text, strlen(res.hits[0].row.text));
    size_t two = rag_budget_tokens(res.hits[1].row.text, strlen(res.hits[1].row.text));
    res.n = 2; /* the prompt with the first two passages whole */
    assert_int_equal(rag_prompt_user_fit(&res, q, strlen(q), NULL, 0, &k, 100, &fit, &user), RAGD_OK);
    free(user);
    res.n = 3;
    assert_true(fit.tokens_estimate < whole);
    fit.budget = fit.tokens_estimate - 3; /* passage 2 loses its last sentence, passage 3 goes */
    assert_int_equal(rag_prompt_user_fit(&res, q, strlen(q), NULL, 0, &k, 100, &fit, &user), RAGD_OK);
    assert_int_equal(fit.passages, 2);
    assert_int_equal(fit.passages_dropped, 1);
    assert_true(fit.truncated);
    assert_true(fit.tokens_estimate <= fit.budget);
    assert_non_null(strstr(user, "Question: What is in the passages?\n"));
    /* passage 2 cut after a whole sentence, before its last one */
    assert_non_null(strstr(user, "[2] Second passage sentence one is here."));
    assert_true(strstr(user, "is here.\n\xc2\xab" "END") != NULL);
    assert_null(strstr(user, "Second passage three."));
    assert_null(strstr(user, "Third passage"));
    free(user);
    (void)one;
    (void)two;
    /* the question and the instructions alone over the budget */
    fit.budget = 120;
    assert_int_equal(rag_prompt_user_fit(&res, q, strlen(q), NULL, 0, &k, 100, &fit, &user), RAGD_ETOOBIG);
    assert_null(user);
    assert_int_equal(fit.passages, 0);
    assert_true(fit.tokens_estimate > fit.budget);
    rag_result_cleanup(&res);
}

/* ---- citations ---- */

static char *filtered(const char *text, size_t n_sources)
{
    strbuf sb;
    strbuf_init(&sb, 1 << 20);
    assert_int_equal(rag_citations_filter(text, strlen(text), n_sources, &sb), RAGD_OK);
    assert_int_equal(strbuf_append(&sb, "", 0), RAGD_OK);
    char *s = strbuf_detach(&sb, NULL);
    return s ? s : strdup("");
}

static void expect_filter(const char *text, size_t n, const char *want)
{
    char *got = filtered(text, n);
    assert_string_equal(got, want);
    free(got);
}

static void citations_filter_forms(void **state)
{
    (void)state;
    expect_filter("Nightly [1].", 3, "Nightly [1].");
    expect_filter("Nightly [7].", 3, "Nightly.");
    expect_filter("Nightly [1][7] and [0].", 3, "Nightly [1] and.");
    expect_filter("Nightly [1, 7].", 3, "Nightly [1].");
    expect_filter("Nightly [1; 2 ,9].", 3, "Nightly [1, 2].");
    expect_filter("Nightly [2-9].", 3, "Nightly [2-3].");
    expect_filter("Nightly [2\xe2\x80\x93" "9].", 3, "Nightly [2-3].");
    expect_filter("Nightly [5-9].", 3, "Nightly.");
    expect_filter("Nightly [3-3].", 3, "Nightly [3-3].");
    /* not markers: left alone */
    expect_filter("a [link](x) [note] [12345] [9-2] [", 3, "a [link](x) [note] [12345] [9-2] [");
    expect_filter("no sources [1]", 0, "no sources");
    expect_filter("é[9]é", 1, "éé");
}

static void citations_list(void **state)
{
    (void)state;
    int out[8];
    const char *a = "x [3] y [1, 2] z [3][9] w [2-4]";
    size_t n = rag_citations_list(a, strlen(a), 3, out, 8);
    assert_int_equal(n, 3);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 2);
    assert_int_equal(out[2], 3);
    assert_int_equal(rag_citations_list("none", 4, 3, out, 8), 0);
}

/* The engine's release loop (rag_on_text, rag_op_release): pieces arrive; after each, what
 * lies `holdback` bytes behind the end is released up to a character boundary and
 * rag_citations_safe_end, filtered; at the end the rest. */
static char *streamed(const char *text, const size_t *cuts, size_t ncuts, size_t holdback, size_t n_sources)
{
    strbuf out;
    strbuf_init(&out, 1 << 20);
    size_t len = strlen(text), released = 0;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t have = c < ncuts ? cuts[c] : len;
        size_t upto = have;
        if (c < ncuts) {
            if (have <= holdback)
                continue;
            upto = have - holdback;
            while (upto > released && ((unsigned char)text[upto] & 0xc0) == 0x80)
                upto--;
            upto = rag_citations_safe_end(text, released, upto);
        }
        if (upto <= released)
            continue;
        assert_int_equal(rag_citations_filter(text + released, upto - released, n_sources, &out), RAGD_OK);
        /* every piece given out is valid UTF-8 on its own */
        released = upto;
    }
    assert_int_equal(strbuf_append(&out, "", 0), RAGD_OK);
    char *s = strbuf_detach(&out, NULL);
    return s ? s : strdup("");
}

static void citations_stream_equals_whole(void **state)
{
    (void)state;
    static const char *const texts[] = {
        "Backups run nightly [1]. See also [7] and [1, 9]. Kept [2-8] days.",
        "Ünïcödé [9]é [1]\xe2\x80\x94[12] done",
        "Markers [1][2][3][4][5][6] everywhere   [8]   end [",
        "[7] at the start, and a long bracket [this is not a marker at all, no] [1",
    };
    for (size_t t = 0; t < sizeof texts / sizeof *texts; t++) {
        const char *text = texts[t];
        size_t len = strlen(text);
        char *whole = filtered(text, 3);
        for (size_t hold = 0; hold < 6; hold++) {
            for (size_t a = 1; a < len; a++) {
                for (size_t b = a; b < len; b += 3) {
                    size_t cuts[2] = {a, b};
                    char *s = streamed(text, cuts, 2, hold, 3);
                    if (strcmp(s, whole) != 0)
                        fail_msg("text %zu hold %zu cuts %zu %zu: '%s' != '%s'", t, hold, a, b, s, whole);
                    free(s);
                }
            }
        }
        assert_true(utf8_valid(whole, strlen(whole)));
        free(whole);
    }
    expect_filter("Ünïcödé [9]é [1]\xe2\x80\x94[12] done", 3, "Ünïcödéé [1]\xe2\x80\x94 done");
}

/* A marker split over two pieces, UTF-8 right before it: the first piece ends before it. */
static void citations_safe_end_cases(void **state)
{
    (void)state;
    const char *t = "caf\xc3\xa9 [12";
    assert_int_equal(rag_citations_safe_end(t, 0, strlen(t)), 5); /* before the space */
    const char *u = "caf\xc3\xa9 [12] ok";
    assert_int_equal(rag_citations_safe_end(u, 0, strlen(u)), strlen(u));
    assert_int_equal(rag_citations_safe_end(u, 0, 10), 10); /* after "]" */
    assert_int_equal(rag_citations_safe_end("ab  ", 0, 4), 2);
    assert_int_equal(rag_citations_safe_end("[1", 0, 2), 0);
    assert_int_equal(rag_citations_safe_end("x [1", 3, 4), 4); /* never before from */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(merge_overlapping_chunks_once),
        cmocka_unit_test(merge_adjacent_with_gap_and_not_unplaced),
        cmocka_unit_test(merge_gap_before_a_block_is_a_line_break),
        cmocka_unit_test(merge_far_chunks_stay_apart),
        cmocka_unit_test(trim_fragments),
        cmocka_unit_test(estimate_monotone_and_conservative),
        cmocka_unit_test(context_and_reserve),
        cmocka_unit_test(fit_drops_and_cuts_keeps_question),
        cmocka_unit_test(fit_datamark_stays_under_every_budget),
        cmocka_unit_test(citations_filter_forms),
        cmocka_unit_test(citations_list),
        cmocka_unit_test(citations_stream_equals_whole),
        cmocka_unit_test(citations_safe_end_cases),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
