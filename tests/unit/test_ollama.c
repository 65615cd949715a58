/* Unit tests for the Ollama wire format: request bodies, strict embed-reply parsing, and
 * the NDJSON chat stream decoder fed in arbitrary pieces (text in the final chunk, error
 * lines mid-stream, streams cut without done, bad and oversize lines). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "upstream/ollama.h"

static void test_embed_body(void **state)
{
    (void)state;
    const char *texts[] = {"one", "two \"quoted\""};
    size_t lens[] = {3, 12};
    char *b = ollama_embed_body("nomic-embed-text", texts, lens, 2);
    json_t *j = json_loads(b, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "model")), "nomic-embed-text");
    assert_int_equal(json_array_size(json_object_get(j, "input")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "input"), 1)), "two \"quoted\"");
    assert_true(json_is_true(json_object_get(j, "truncate")));
    json_decref(j);
    free(b);
}

static void test_embed_parse(void **state)
{
    (void)state;
    char err[256];
    size_t dim = 0;
    float *v = NULL;
    const char *ok = "{\"model\":\"m\",\"embeddings\":[[0.5,-0.5,0],[1,0,0]],\"total_duration\":5}";
    assert_int_equal(ollama_embed_parse(ok, strlen(ok), 2, &dim, &v, err, sizeof err), RAGD_OK);
    assert_int_equal(dim, 3);
    assert_true(v[0] == 0.5f && v[1] == -0.5f && v[3] == 1.0f);
    free(v);

    const char *bad[][2] = {
        {"{\"embeddings\":[[1,2]]}", "vectors for"},             /* 1 vector for 2 inputs */
        {"{\"embeddings\":[[1,2],[1]]}", "dimension"},             /* ragged */
        {"{\"embeddings\":[[1,2],[1,\"x\"]]}", "finite"},          /* not a number */
        {"{\"embeddings\":[[],[]]}", "dimension"},                 /* empty vectors */
        {"{\"error\":\"model not found\"}", "no \"embeddings\""},
        {"not json", "no \"embeddings\""},
        {"{\"embeddings\":[[1,2],[1,1e39]]}", "finite"},           /* a double, but inf as a float */
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        err[0] = '\0';
        assert_int_equal(ollama_embed_parse(bad[i][0], strlen(bad[i][0]), 2, &dim, &v, err, sizeof err), RAGD_EINVAL);
        assert_null(v);
        assert_non_null(strstr(err, bad[i][1]));
    }
}

static void test_chat_body_and_errors(void **state)
{
    (void)state;
    json_t *opts = json_pack("{s:f}", "temperature", 0.2);
    json_t *messages = json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "system", "content", "You answer from context.",
                                 "role", "user", "content", "What is RAG?");
    json_t *keep = json_string("5m"), *format = json_string("json");
    char *b = ollama_chat_body("llama3.2", messages, opts, format, keep, true);
    json_t *j = json_loads(b, 0, NULL);
    assert_true(json_is_true(json_object_get(j, "stream")));
    json_t *msgs = json_object_get(j, "messages");
    assert_int_equal(json_array_size(msgs), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 0), "role")), "system");
    assert_string_equal(json_string_value(json_object_get(json_array_get(msgs, 1), "content")), "What is RAG?");
    assert_non_null(json_object_get(json_object_get(j, "options"), "temperature"));
    assert_string_equal(json_string_value(json_object_get(j, "format")), "json");
    assert_string_equal(json_string_value(json_object_get(j, "keep_alive")), "5m");
    json_decref(j);
    free(b);
    b = ollama_chat_body("llama3.2", messages, NULL, NULL, NULL, true); /* NULL ones left out */
    j = json_loads(b, 0, NULL);
    assert_null(json_object_get(j, "options"));
    assert_null(json_object_get(j, "format"));
    assert_null(json_object_get(j, "keep_alive"));
    json_decref(j);
    free(b);
    json_decref(opts);
    json_decref(messages);
    json_decref(keep);
    json_decref(format);

    char msg[128];
    const char *busy = "{\"error\":\"server busy, please try again.  maximum pending requests exceeded\"}";
    ollama_error_message(busy, strlen(busy), msg, sizeof msg);
    assert_true(ollama_is_busy(503, msg));
    assert_false(ollama_is_busy(500, msg));
    ollama_error_message("<html>", 6, msg, sizeof msg);
    assert_false(ollama_is_busy(503, msg));
}

typedef struct {
    char text[1024];
    size_t len;
    int stop_after; /* stop after this many pieces; 0 = never */
    int pieces;
} collected;

static int collect(const char *p, size_t n, void *arg)
{
    collected *c = arg;
    memcpy(c->text + c->len, p, n);
    c->len += n;
    c->text[c->len] = '\0';
    return c->stop_after && ++c->pieces >= c->stop_after;
}

/* Feeds the stream in pieces of `step` bytes; returns the end state. */
static ollama_stream_state run_stream(const char *stream, size_t step, collected *c, ollama_stream *s)
{
    ollama_stream_init(s, collect, c);
    size_t n = strlen(stream);
    for (size_t i = 0; i < n; i += step) {
        size_t m = n - i < step ? n - i : step;
        if (ollama_stream_feed(s, stream + i, m) != RAGD_OK)
            break;
    }
    return ollama_stream_end(s);
}

#define CHUNK(t) "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\"" t "\"},\"done\":false}\n"

static void test_chat_stream(void **state)
{
    (void)state;
    const char *good = CHUNK("The") CHUNK(" sky") "{\"model\":\"m\",\"message\":{\"role\":\"assistant\",\"content\":\" is blue.\"},"
                                                    "\"done\":true,\"done_reason\":\"stop\",\"load_duration\":6338219291,"
                                                    "\"prompt_eval_count\":26,\"eval_count\":259}\n";
    for (size_t step = 1; step <= strlen(good); step += 7) {
        collected c = {0};
        ollama_stream s;
        assert_int_equal(run_stream(good, step, &c, &s), OLLAMA_STREAM_DONE);
        assert_string_equal(c.text, "The sky is blue."); /* the done chunk's text is kept */
        assert_string_equal(s.done_reason, "stop");
        assert_int_equal(s.load_duration_ns, 6338219291LL);
        assert_int_equal(s.eval_count, 259);
        ollama_stream_cleanup(&s);
    }

    collected c = {0};
    ollama_stream s;
    const char *err_line = CHUNK("Par") "{\"error\":\"an error was encountered while running the model\"}\n";
    assert_int_equal(run_stream(err_line, 5, &c, &s), OLLAMA_STREAM_ERROR_LINE);
    assert_non_null(strstr(s.error, "error was encountered"));
    ollama_stream_cleanup(&s);

    memset(&c, 0, sizeof c);
    assert_int_equal(run_stream(CHUNK("cut") CHUNK(" off"), 3, &c, &s), OLLAMA_STREAM_NO_DONE);
    assert_string_equal(c.text, "cut off");
    ollama_stream_cleanup(&s);

    memset(&c, 0, sizeof c);
    assert_int_equal(run_stream(CHUNK("a") "<html>oops</html>\n", 4, &c, &s), OLLAMA_STREAM_BAD);
    ollama_stream_cleanup(&s);

    memset(&c, 0, sizeof c); /* a last line without '\n' still counts */
    assert_int_equal(run_stream("{\"response\":\"x\",\"done\":true}", 2, &c, &s), OLLAMA_STREAM_DONE);
    assert_string_equal(c.text, "x");
    ollama_stream_cleanup(&s);

    memset(&c, 0, sizeof c);
    c.stop_after = 1; /* the consumer stops: no further text */
    run_stream(CHUNK("one") CHUNK("two"), 100, &c, &s);
    assert_string_equal(c.text, "one");
    ollama_stream_cleanup(&s);
}

static void test_oversize_line(void **state)
{
    (void)state;
    size_t n = OLLAMA_MAX_LINE + 10;
    char *big = malloc(n + 1);
    memset(big, 'a', n);
    big[n] = '\0';
    collected c = {0};
    ollama_stream s;
    ollama_stream_init(&s, collect, &c);
    assert_int_equal(ollama_stream_feed(&s, big, n), RAGD_ECLOSED);
    assert_int_equal(ollama_stream_end(&s), OLLAMA_STREAM_BAD);
    ollama_stream_cleanup(&s);
    free(big);
}

/* The version is shown to clients (/api/version): only a plausible one is taken. */
static void test_version_parse(void **state)
{
    (void)state;
    static const char *const good[] = {"{\"version\":\"0.12.0\"}", "{\"version\":\"0.5.7-rc1+local_2\"}"};
    static const char *const bad[] = {"{\"version\":\"\"}", "{\"version\":\"0.1\\n<script>\"}",
                                      "{\"version\":\"0 12\"}", "{\"version\":12}", "{}", "<html>"};
    char err[160];
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        json_t *out = NULL;
        assert_int_equal(ollama_version_parse(good[i], strlen(good[i]), &out, err, sizeof err), RAGD_OK);
        assert_non_null(json_string_value(json_object_get(out, "version")));
        json_decref(out);
    }
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        json_t *out = NULL;
        assert_int_equal(ollama_version_parse(bad[i], strlen(bad[i]), &out, err, sizeof err), RAGD_EINVAL);
        assert_null(out);
    }
    char huge[200];
    int n = snprintf(huge, sizeof huge, "{\"version\":\"%0*d\"}", OLLAMA_VERSION_MAX + 1, 0);
    json_t *out = NULL;
    assert_int_equal(ollama_version_parse(huge, (size_t)n, &out, err, sizeof err), RAGD_EINVAL);
    assert_null(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_embed_body),  cmocka_unit_test(test_embed_parse),   cmocka_unit_test(test_chat_body_and_errors),
        cmocka_unit_test(test_chat_stream), cmocka_unit_test(test_oversize_line), cmocka_unit_test(test_version_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
