/* Unit tests for the OpenAI-compatible wire format: bodies, strict /v1/embeddings parsing
 * (placed by index), and the SSE chat stream fed in arbitrary pieces. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "upstream/openai.h"

static void test_bodies(void **state)
{
    (void)state;
    const char *texts[] = {"a", "b"};
    size_t lens[] = {1, 1};
    char *b = openai_embed_body("text-embedding", texts, lens, 2);
    json_t *j = json_loads(b, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(j, "encoding_format")), "float");
    assert_int_equal(json_array_size(json_object_get(j, "input")), 2);
    json_decref(j);
    free(b);
    json_t *opts = json_pack("{s:f, s:i, s:s, s:i}", "temperature", 0.1, "max_tokens", 64, "num_ctx", "ignored",
                             "num_predict", 32);
    json_t *messages = json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "system", "content", "sys", "role", "user",
                                 "content", "hi");
    json_t *format = json_string("json");
    b = openai_chat_body("llama", messages, opts, format, true);
    j = json_loads(b, 0, NULL);
    assert_true(json_is_true(json_object_get(j, "stream")));
    assert_true(json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage")));
    assert_non_null(json_object_get(j, "temperature"));
    assert_int_equal(json_integer_value(json_object_get(j, "max_tokens")), 32); /* num_predict wins */
    assert_null(json_object_get(j, "num_ctx")); /* only known keys pass */
    assert_null(json_object_get(j, "num_predict"));
    assert_int_equal(json_array_size(json_object_get(j, "messages")), 2);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "response_format"), "type")), "json_object");
    json_decref(j);
    free(b);
    json_t *schema = json_pack("{s:s, s:{s:{s:s}}}", "type", "object", "properties", "answer", "type", "string");
    b = openai_chat_body("llama", messages, NULL, schema, false);
    j = json_loads(b, 0, NULL);
    json_t *rf = json_object_get(j, "response_format");
    assert_string_equal(json_string_value(json_object_get(rf, "type")), "json_schema");
    assert_true(json_equal(json_object_get(json_object_get(rf, "json_schema"), "schema"), schema));
    assert_non_null(json_string_value(json_object_get(json_object_get(rf, "json_schema"), "name")));
    assert_null(json_object_get(j, "stream_options")); /* only a stream asks for usage */
    json_decref(j);
    free(b);
    json_decref(schema);
    json_decref(format);
    json_decref(messages);
    json_decref(opts);
    char msg[128];
    const char *err = "{\"error\":{\"message\":\"model not found\",\"type\":\"not_found_error\"}}";
    openai_error_message(err, strlen(err), msg, sizeof msg);
    assert_string_equal(msg, "model not found");
}

static void test_embed_parse(void **state)
{
    (void)state;
    char err[256];
    size_t dim;
    float *v = NULL;
    const char *ok = "{\"object\":\"list\",\"data\":[{\"embedding\":[3,4],\"index\":1},{\"embedding\":[1,2],\"index\":0}]}";
    assert_int_equal(openai_embed_parse(ok, strlen(ok), 2, &dim, &v, err, sizeof err), RAGD_OK);
    assert_int_equal(dim, 2);
    assert_true(v[0] == 1 && v[1] == 2 && v[2] == 3 && v[3] == 4); /* placed by index */
    free(v);
    const char *bad[] = {
        "{\"data\":[{\"embedding\":[1,2],\"index\":0}]}",                                      /* too few */
        "{\"data\":[{\"embedding\":[1,2],\"index\":0},{\"embedding\":[1,2],\"index\":0}]}",  /* index twice */
        "{\"data\":[{\"embedding\":[1,2],\"index\":0},{\"embedding\":[1],\"index\":1}]}",    /* ragged */
        "{\"data\":[{\"embedding\":[1,2],\"index\":0},{\"embedding\":[1,2],\"index\":7}]}",  /* index out of range */
        "{\"error\":{\"message\":\"x\"}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        assert_int_equal(openai_embed_parse(bad[i], strlen(bad[i]), 2, &dim, &v, err, sizeof err), RAGD_EINVAL);
        assert_null(v);
    }
}

typedef struct {
    char text[512];
    size_t len;
} collected;

static int collect(const char *p, size_t n, void *arg)
{
    collected *c = arg;
    memcpy(c->text + c->len, p, n);
    c->len += n;
    c->text[c->len] = '\0';
    return 0;
}

static openai_stream_state run(const char *stream, size_t step, collected *c, openai_stream *s)
{
    openai_stream_init(s, collect, c);
    size_t n = strlen(stream);
    for (size_t i = 0; i < n; i += step)
        if (openai_stream_feed(s, stream + i, n - i < step ? n - i : step) != RAGD_OK)
            break;
    return openai_stream_end(s);
}

#define DELTA(t) "data: {\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" t "\"}}]}\n\n"

static void test_stream(void **state)
{
    (void)state;
    const char *good = DELTA("Hel") DELTA("lo") "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
                                                "data: [DONE]\n\n";
    for (size_t step = 1; step < strlen(good); step += 5) {
        collected c = {0};
        openai_stream s;
        assert_int_equal(run(good, step, &c, &s), OPENAI_STREAM_DONE);
        assert_string_equal(c.text, "Hello");
        assert_string_equal(s.finish_reason, "stop");
        openai_stream_cleanup(&s);
    }
    collected c = {0};
    openai_stream s;
    assert_int_equal(run(DELTA("a"), 3, &c, &s), OPENAI_STREAM_NO_DONE);
    openai_stream_cleanup(&s);
    memset(&c, 0, sizeof c);
    assert_int_equal(run(DELTA("a") "data: {\"error\":{\"message\":\"overloaded\"}}\n\n", 4, &c, &s), OPENAI_STREAM_ERROR);
    assert_string_equal(s.error, "overloaded");
    openai_stream_cleanup(&s);
    memset(&c, 0, sizeof c);
    assert_int_equal(run("data: not json\n\n", 2, &c, &s), OPENAI_STREAM_BAD);
    openai_stream_cleanup(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_bodies), cmocka_unit_test(test_embed_parse),
                                       cmocka_unit_test(test_stream)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
