/* Unit tests for the web page's embedded files (src/http/web.c, the table tools/web_embed
 * generates): lookup, types, ETags, and If-None-Match's weak comparison (RFC 9110 13.1.2). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/web.h"
#include "util/hash.h"

#define TAG "\"0123456789abcdef0123456789abcdef\""

static bool match(const char *value) { return web_etag_match(value, strlen(value), TAG); }

static void test_etag_match_forms(void **state)
{
    (void)state;
    assert_true(match(TAG));
    assert_true(match("W/" TAG));                 /* weak comparison: W/ is ignored */
    assert_true(match("*"));
    assert_true(match("  *\t"));
    assert_true(match("\"x\", " TAG));            /* a list */
    assert_true(match("W/\"x\",W/" TAG ", \"y\""));
    assert_true(match(" ,, " TAG " ,"));          /* empty list elements are allowed */
    assert_true(match("\"x\"\t,\t" TAG));
    assert_false(match(""));
    assert_false(match("   "));
    assert_false(match("\"x\""));
    assert_false(match("\"0123456789abcdef0123456789abcde\""));   /* one digit short */
    assert_false(match("\"0123456789abcdef0123456789abcdef0\""));  /* one digit more */
    assert_false(match("0123456789abcdef0123456789abcdef"));      /* unquoted */
    assert_false(match("w/" TAG));                /* the weak flag is case-sensitive */
    assert_false(match("\"0123456789ABCDEF0123456789ABCDEF\""));   /* opaque tags compare exactly */
    assert_false(match("*, " TAG));               /* "*" with more is not the "*" form ... */
    assert_false(match("\"x\" junk, " TAG));      /* ... and garbage stops the list */
    assert_false(match("\"x, " TAG));             /* an unterminated tag: no match */
    assert_false(match("W/"));
    assert_false(match("\""));
    /* not NUL-terminated: only n bytes count */
    assert_false(web_etag_match(TAG, strlen(TAG) - 1, TAG));
    assert_true(web_etag_match(TAG "garbage", strlen(TAG), TAG));
    /* a malformed own tag matches nothing */
    assert_false(web_etag_match("\"\"", 2, "unquoted"));
}

static void test_etag_match_etagc(void **state)
{
    (void)state;
    /* etagc excludes controls, space, '"' and DEL: a tag containing them breaks the list */
    assert_false(web_etag_match("\"a b\", " TAG, strlen("\"a b\", " TAG), TAG));
    assert_false(web_etag_match("\"a\x7f\", " TAG, strlen("\"a\x7f\", " TAG), TAG));
    assert_true(web_etag_match("\"a\x80!#~\", " TAG, strlen("\"a\x80!#~\", " TAG), TAG)); /* obs-text, ! # ~ */
}

/* Every embedded file: found by name, typed by its extension, and its ETag is the quoted
 * first 32 hex digits of the SHA-256 of its bytes (so changed bytes change the tag). */
static void test_assets(void **state)
{
    (void)state;
    const char *names[] = {"index.html", "app.css", "app.js"};
    const char *types[] = {"text/html; charset=utf-8", "text/css; charset=utf-8", "text/javascript; charset=utf-8"};
    assert_int_equal(web_assets_count, 3);
    for (size_t i = 0; i < 3; i++) {
        const web_asset *a = web_asset_find(names[i]);
        assert_non_null(a);
        assert_string_equal(a->name, names[i]);
        assert_string_equal(a->content_type, types[i]);
        assert_int_equal(a->data[a->len], '\0');
        char hex[SHA256_HEX_LEN + 1], want[40];
        hash_sha256_hex(a->data, a->len, hex);
        snprintf(want, sizeof want, "\"%.32s\"", hex);
        assert_string_equal(a->etag, want);
        assert_true(web_etag_match(a->etag, strlen(a->etag), a->etag));
    }
    assert_null(web_asset_find("README.md"));
    assert_null(web_asset_find(""));
    assert_null(web_asset_find("app.js/"));
}

/* The embedded bytes are the files in web/ (the unit tests run from the repository root). */
static void test_assets_match_files(void **state)
{
    (void)state;
    for (size_t i = 0; i < web_assets_count; i++) {
        char path[256];
        snprintf(path, sizeof path, "web/%s", web_assets[i].name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        char *buf = malloc(web_assets[i].len + 2);
        assert_non_null(buf);
        size_t n = fread(buf, 1, web_assets[i].len + 1, f);
        fclose(f);
        assert_int_equal(n, web_assets[i].len);
        assert_memory_equal(buf, web_assets[i].data, n);
        free(buf);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_etag_match_forms),
        cmocka_unit_test(test_etag_match_etagc),
        cmocka_unit_test(test_assets),
        cmocka_unit_test(test_assets_match_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
