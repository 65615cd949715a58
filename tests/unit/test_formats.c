/* Unit tests for src/rag/formats.c (the one table of document kinds) and the readers of it:
 * the 415 list of /api/ingest (handlers_ingest_raw_types) and the CLI's kinds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli_int.h"
#include "http/handlers.h"
#include "rag/formats.h"

/* Every extension of every kind maps back to the kind's format through the file name
 * (upper case too, under a folder, and wrapped in .gz), and to the kind itself. */
static void test_extensions_map_back(void **state)
{
    size_t n;
    const rag_format_kind *kinds = rag_format_kinds(&n);
    assert_true(n >= 10);
    for (size_t i = 0; i < n; i++) {
        const rag_format_kind *k = &kinds[i];
        for (size_t e = 0; e < RAG_FORMAT_EXTS_MAX && k->exts[e]; e++) {
            const char *ext = k->exts[e];
            char name[64], upper[64], gz[64];
            snprintf(name, sizeof name, "dir.d/doc%s", ext);
            snprintf(gz, sizeof gz, "doc%s.gz", ext);
            size_t j = 0;
            for (; ext[j] && j + 1 < sizeof upper; j++)
                upper[j] = (char)toupper((unsigned char)ext[j]);
            upper[j] = '\0';
            assert_ptr_equal(rag_format_kind_of_ext(ext, strlen(ext)), k);
            assert_ptr_equal(rag_format_kind_of_ext(upper, strlen(upper)), k);
            assert_int_equal(rag_format_of_source(name), k->format);
            assert_int_equal(rag_format_of_source(gz), k->format);
            /* the CLI sends what the table says */
            cli_file f;
            cli_kind_of(name, &f);
            assert_string_equal(f.content_type, k->media_types[0]);
            assert_int_equal(f.text_kind, k->text);
            if (k->text)
                assert_string_equal(f.format, k->name);
            else
                assert_null(f.format);
        }
    }
    assert_null(rag_format_kind_of_ext(".c", 2));
    assert_int_equal(rag_format_of_source("README"), RAG_FORMAT_AUTO);
    assert_int_equal(rag_format_of_source("main.c"), RAG_FORMAT_AUTO);
    assert_int_equal(rag_format_of_source(NULL), RAG_FORMAT_TEXT);
}

/* Every media type parses back to its kind, and every kind is a format /api/ingest takes. */
static void test_media_types_map_back(void **state)
{
    size_t n;
    const rag_format_kind *kinds = rag_format_kinds(&n);
    for (size_t i = 0; i < n; i++) {
        const rag_format_kind *k = &kinds[i];
        assert_non_null(k->media_types[0]);
        for (size_t t = 0; t < RAG_FORMAT_TYPES_MAX && k->media_types[t]; t++) {
            assert_ptr_equal(rag_format_kind_of_media_type(k->media_types[t]), k);
            assert_true(handlers_ingest_accepts(k->media_types[t]));
        }
        for (size_t j = 0; j < i; j++)
            assert_string_not_equal(kinds[j].name, k->name);
    }
    assert_null(rag_format_kind_of_media_type("application/json"));
    assert_null(rag_format_kind_of_media_type("image/png"));
    assert_false(handlers_ingest_accepts("image/png"));
}

/* The JSON "format" names are the text kinds' names, in rag_format's order. */
static void test_json_names(void **state)
{
    static const char *const want[] = {"text", "markdown", "html", "auto", "rst"};
    for (int f = 0; f <= RAG_FORMAT_RST; f++) {
        assert_string_equal(rag_format_json_name((rag_format)f), want[f]);
        assert_int_equal(rag_format_text_only((rag_format)f), f);
    }
    assert_null(rag_format_json_name(RAG_FORMAT_PDF));
    assert_null(rag_format_json_name(RAG_FORMAT_EPUB));
    assert_int_equal(rag_format_text_only(RAG_FORMAT_PDF), RAG_FORMAT_TEXT);
}

/* The 415's list, built from the table, is the text the hand-written list had; a short
 * buffer is cut and terminated, and the length needed is returned. */
static void test_raw_types_text(void **state)
{
    static const char want[] =
        "text/plain, text/markdown, text/html, text/x-rst (each with an optional charset=), application/pdf, "
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document, "
        "application/vnd.oasis.opendocument.text, application/epub+zip, application/gzip, "
        "application/octet-stream (the bytes decide)";
    char buf[HANDLERS_INGEST_RAW_TYPES_MAX];
    assert_int_equal(handlers_ingest_raw_types(buf, sizeof buf), strlen(want));
    assert_string_equal(buf, want);
    char small[12];
    assert_int_equal(handlers_ingest_raw_types(small, sizeof small), strlen(want));
    assert_string_equal(small, "text/plain,");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_extensions_map_back),
        cmocka_unit_test(test_media_types_map_back),
        cmocka_unit_test(test_json_names),
        cmocka_unit_test(test_raw_types_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
