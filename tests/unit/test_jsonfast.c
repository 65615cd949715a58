/* jsonfast_loadb (src/util/jsonfast.c) against jansson's json_loadb: whenever the fast path
 * gives a tree it is jansson's tree (same values, same key order, same string bytes), and
 * it gives none for every input jansson rejects: hand-picked cases, then a thousands of
 * random mutations of JSON texts. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/jsonfast.h"
#include "test_rng.h"

/* Counts, so the tests can tell they exercised both outcomes. */
static size_t fast_taken, fast_declined;

/* Compares jsonfast with jansson on p[0..n); returns whether the fast path took it. */
static bool check_same(const char *p, size_t n)
{
    json_error_t jerr;
    json_t *want = json_loadb(p, n, JSON_DECODE_ANY, &jerr);
    json_t *got = jsonfast_loadb(p, n, 64);
    if (!got) {
        fast_declined++;
        json_decref(want);
        return false;
    }
    fast_taken++;
    if (!want)
        fail_msg("jsonfast accepted what jansson rejects (%s): %.*s", jerr.text, (int)(n < 200 ? n : 200), p);
    char *a = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
    char *b = json_dumps(want, JSON_ENCODE_ANY | JSON_COMPACT);
    assert_non_null(a);
    assert_non_null(b);
    if (strcmp(a, b) != 0 || !json_equal(got, want))
        fail_msg("trees differ for %.*s:\n fast    %s\n jansson %s", (int)(n < 200 ? n : 200), p, a, b);
    free(a);
    free(b);
    json_decref(got);
    json_decref(want);
    return true;
}

static bool check_str(const char *s) { return check_same(s, strlen(s)); }

static const char *const valid[] = {
    "{}", "[]", " { } ", "\t\r\n{\"a\":1}\n", "{\"a\":[1,2,3],\"b\":{\"c\":null,\"d\":true,\"e\":false}}",
    "{\"db\":\"q\",\"documents\":[{\"id\":\"r1_a.txt\",\"text\":\"Hello world.\\nSecond line\\t\\\"quoted\\\"\","
    "\"source\":\"/tmp/x.txt\"}]}",
    "{\"text\":\"caf\xc3\xa9 \xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x98\x80\"}",
    "{\"text\":\"\\u00e9\\u6771\\u0041\\u001b\\u007f\\uFFFF\\/\\b\\f\\r\"}",
    "{\"a\":1,\"a\":2}", "{\"b\":1,\"a\":2,\"b\":3}",
    "{\"\":\"\"}", "{\"k\\\"ey\":\"v\",\"k\\u00e9\":1}",
    "{\"n\":-12,\"m\":0,\"big\":123456789012345678,\"neg\":-123456789012345678}",
    "[\"x\",[\"y\",[\"z\",{}]]]", "\"just a string\"", "42", "true", "null",
    "{\"long_key_that_is_longer_than_sixty_four_bytes_\\u0041_so_it_goes_to_the_heap_copy____\":[\"\\n\"]}",
};

static const char *const invalid_or_declined[] = {
    "", " ", "{", "}", "{\"a\"}", "{\"a\":}", "{\"a\":1,}", "[1,]", "[1 2]", "{a:1}", "{'a':1}",
    "{\"a\":01}", "{\"a\":-0}", "{\"a\":1.5}", "{\"a\":1e5}", "{\"a\":-}", "{\"a\":1234567890123456789}",
    "{\"a\":tru}", "{\"a\":truex}", "{\"a\":nul}", "{} x", "{}{}", "[\"\\u0000\"]", "[\"\\ud83d\\ude00\"]",
    "[\"\\ud83d\"]", "[\"\\ude00\"]", "[\"\\x\"]", "[\"\\u12\"]", "[\"\\u12g4\"]", "[\"a\x01\"]",
    "[\"\xff\"]", "[\"\xc0\xaf\"]", "[\"\xed\xa0\x80\"]", "[\"\xf4\x90\x80\x80\"]", "[\"\xe0\x80\xaf\"]",
    "[\"\xc3\"]", "[\"abc", "[\"abc\\", "\xef\xbb\xbf{}", "{\"a\":NaN}", "{\"a\":Infinity}",
};

static void test_hand_picked(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof valid / sizeof valid[0]; i++)
        if (!check_str(valid[i]))
            fail_msg("the fast path declined valid input %s", valid[i]);
    for (size_t i = 0; i < sizeof invalid_or_declined / sizeof invalid_or_declined[0]; i++)
        if (check_str(invalid_or_declined[i]))
            fail_msg("the fast path took %s", invalid_or_declined[i]);
    /* embedded NUL bytes, outside and inside strings */
    assert_false(check_same("{\"a\":1}\0", 8));
    assert_false(check_same("[\"a\0b\"]", 7));
}

/* Depth: 64 levels are taken, 65 declined (http_json_object answers those). */
static void test_depth(void **state)
{
    (void)state;
    char buf[300];
    for (int depth = 63; depth <= 65; depth++) {
        size_t n = 0;
        for (int i = 0; i < depth; i++)
            buf[n++] = '[';
        for (int i = 0; i < depth; i++)
            buf[n++] = ']';
        json_t *v = jsonfast_loadb(buf, n, 64);
        assert_int_equal(v != NULL, depth <= 64);
        json_decref(v);
    }
}

/* Random mutations (inserted, deleted or replaced bytes from a set that matters to JSON
 * and UTF-8) of the valid texts: the fast path never disagrees with jansson. */
static void test_mutations(void **state)
{
    (void)state;
    static const char bytes[] = "{}[]\",:\\/u0123456789abcdefABCDEF-+.eE tnrfl\x01\x1f\x7f\x80\xbf\xc2\xc3\xe0\xe6"
                                "\xed\xef\xf0\xf4\xff";
    rng r = {0x15011};
    fast_taken = fast_declined = 0;
    char buf[512];
    for (int t = 0; t < 60000; t++) {
        const char *src = valid[rng_below(&r, sizeof valid / sizeof valid[0])];
        size_t n = strlen(src);
        memcpy(buf, src, n);
        int edits = 1 + (int)rng_below(&r, 3);
        for (int e = 0; e < edits; e++) {
            size_t at = n ? rng_below(&r, n + 1) : 0;
            char c = bytes[rng_below(&r, sizeof bytes - 1)];
            int op = (int)rng_below(&r, 3);
            if (op == 0 && n + 1 < sizeof buf) { /* insert */
                memmove(buf + at + 1, buf + at, n - at);
                buf[at] = c;
                n++;
            } else if (op == 1 && at < n) { /* delete */
                memmove(buf + at, buf + at + 1, n - at - 1);
                n--;
            } else if (at < n) {
                buf[at] = c;
            }
        }
        check_same(buf, n);
    }
    printf("# mutations: fast path took %zu, declined %zu\n", fast_taken, fast_declined);
    assert_true(fast_taken > 1000);
    assert_true(fast_declined > 1000);
}

/* A batch like `ragd ingest` sends: long texts with every escape jansson writes. */
static void test_big_body(void **state)
{
    (void)state;
    rng r = {7};
    size_t cap = 1 << 20, n = 0;
    char *b = malloc(cap);
    assert_non_null(b);
    n += (size_t)snprintf(b + n, cap - n, "{\"db\":\"q\",\"documents\":[");
    for (int d = 0; d < 20; d++) {
        n += (size_t)snprintf(b + n, cap - n, "%s{\"id\":\"doc%d\",\"text\":\"", d ? "," : "", d);
        static const char *const pieces[] = {"word ", "\\n", "\\t", "\\\"", "\\\\", "\\u001b", "\xc3\xa9",
                                             "\xe2\x80\x99", "\xf0\x9f\x98\x80", ". ", "\\/"};
        for (int k = 0; k < 3000; k++)
            n += (size_t)snprintf(b + n, cap - n, "%s", pieces[rng_below(&r, sizeof pieces / sizeof pieces[0])]);
        n += (size_t)snprintf(b + n, cap - n, "\",\"source\":\"d%d.txt\",\"metadata\":{\"n\":%d}}", d, d);
    }
    n += (size_t)snprintf(b + n, cap - n, "]}");
    assert_true(n < cap - 1);
    assert_true(check_same(b, n));
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_picked),
        cmocka_unit_test(test_depth),
        cmocka_unit_test(test_mutations),
        cmocka_unit_test(test_big_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
