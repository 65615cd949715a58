/* Unit tests for src/text/html.c. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "text/html.h"
#include "util/utf8.h"

/* Converts, checks the output promises (valid UTF-8, no NUL, length right, NUL-terminated)
 * and returns the text (free it). */
static char *conv(const char *html, size_t len)
{
    char *out = NULL;
    size_t out_len = 12345;
    assert_int_equal(html_to_text(html, len, &out, &out_len), RAGD_OK);
    assert_non_null(out);
    assert_int_equal(strlen(out), out_len);
    assert_true(utf8_valid(out, out_len));
    return out;
}

static char *conv_s(const char *html) { return conv(html, strlen(html)); }

static void expect(const char *html, const char *want)
{
    char *out = conv_s(html);
    assert_string_equal(out, want);
    free(out);
}

static void test_structure(void **state)
{
    expect("<!DOCTYPE html><html><head><title>  The   Title </title>"
           "<meta charset=\"utf-8\"><style>p { color: red }</style>"
           "<script>var x = '<p>not text</p>';</script></head>"
           "<body><!-- a comment --><h1>Heading</h1><p>First\n   paragraph,\tcollapsed.</p>"
           "<noscript>enable js</noscript><template><p>tmpl</p></template>"
           "<p>Second <b>bold</b> <i>it</i>alic.</p></body></html>",
           "The Title\n\nHeading\n\nFirst paragraph, collapsed.\n\nSecond bold italic.");
}

static void test_entities(void **state)
{
    expect("<p>Fish &amp; chips &lt;3 &quot;q&quot; &eacute;t&eacute; &#8364;5 &#x1F600; "
           "a&nbsp;b &copy;</p>",
           "Fish & chips <3 \"q\" \xC3\xA9t\xC3\xA9 \xE2\x82\xAC" "5 \xF0\x9F\x98\x80 a b \xC2\xA9");
}

static void test_lists_and_tables(void **state)
{
    expect("<p>Intro</p><ul><li>One<ul><li>One.a</li><li>One.b</li></ul></li><li>Two</li></ul>"
           "<ol><li>First</li></ol><p>After</p>",
           "Intro\n\nOne\nOne.a\nOne.b\nTwo\n\nFirst\n\nAfter");
    expect("<table><caption>Cap</caption><tr><th>Name</th><th>Age</th></tr>"
           "<tr><td>Ann</td><td>31</td></tr><tr><td>Bob</td><td><b>42</b></td></tr></table>",
           "Cap\nName | Age\nAnn | 31\nBob | 42");
}

static void test_breaks_and_pre(void **state)
{
    expect("line one<br>line two<br/><br>after blank<hr>rule", "line one\nline two\n\nafter blank\n\nrule");
    expect("<div>a<div>b</div>c</div><pre>  keep\n    this</pre><p>x</p>",
           "a\nb\nc\n\n  keep\n    this\n\nx");
}

static void test_malformed(void **state)
{
    char *out = conv_s("<html><body><p>unclosed <b>bold <i>both</p><div>stray</span> close"
                       "</div><<p>>weird<//p><table><td>cell without tr<p>para in cell"
                       "<li>orphan item</ul></ul></div></body></html></html>trailing");
    assert_non_null(strstr(out, "unclosed bold both"));
    assert_non_null(strstr(out, "stray close"));
    assert_non_null(strstr(out, "weird"));
    assert_non_null(strstr(out, "cell without tr"));
    assert_non_null(strstr(out, "orphan item"));
    assert_non_null(strstr(out, "trailing"));
    assert_null(strstr(out, "<b>"));
    free(out);
    /* an unterminated script swallows the rest, an unterminated comment too */
    out = conv_s("<p>before</p><script>never closed <p>x</p>");
    assert_string_equal(out, "before");
    free(out);
    out = conv_s("<p>before</p><!-- never closed <p>x</p>");
    assert_null(strstr(out, "x"));
    free(out);
}

static void test_empty(void **state)
{
    expect("", "");
    char *out = NULL;
    size_t n = 9;
    assert_int_equal(html_to_text(NULL, 0, &out, &n), RAGD_OK);
    assert_string_equal(out, "");
    assert_int_equal(n, 0);
    free(out);
    expect("   \n\t ", "");
    expect("<!-- only a comment -->", "");
    expect("<html><head><script>x()</script></head><body>  </body></html>", "");
    expect("plain text, no tags", "plain text, no tags");
}

static void test_bad_args(void **state)
{
    char *out = (char *)1;
    size_t n;
    assert_int_equal(html_to_text(NULL, 4, &out, &n), RAGD_EINVAL);
    assert_int_equal(html_to_text("<p>", 3, NULL, &n), RAGD_EINVAL);
    size_t big = ((size_t)64 << 20) + 1;
    char *huge = malloc(big);
    assert_non_null(huge);
    memset(huge, 'a', big);
    out = NULL;
    assert_int_equal(html_to_text(huge, big, &out, &n), RAGD_ETOOBIG);
    assert_null(out);
    free(huge);
    /* out_len is optional */
    assert_int_equal(html_to_text("<p>x</p>", 8, &out, NULL), RAGD_OK);
    assert_string_equal(out, "x");
    free(out);
}

static void test_invalid_utf8_and_nul(void **state)
{
    const char bad[] = "<p>caf\xC3\xA9 \xFF\xFE bad \xE2\x82 trunc \xED\xA0\x80 surrogate</p>"
                       "<p>after \xC3\xA9</p>";
    char *out = conv(bad, sizeof bad - 1);
    /* valid text around bad bytes survives unchanged (no switch to Latin-1) */
    assert_non_null(strstr(out, "caf\xC3\xA9 "));
    assert_non_null(strstr(out, "after \xC3\xA9"));
    assert_non_null(strstr(out, "\xEF\xBF\xBD"));
    free(out);

    const char nul[] = "<p>before\0after</p><p>more</p>";
    out = conv(nul, sizeof nul - 1);
    assert_non_null(strstr(out, "before"));
    assert_non_null(strstr(out, "after"));
    assert_non_null(strstr(out, "more"));
    free(out);

    out = conv_s("<p>zero &#0; surrogate &#xD800; big &#x110000; ok</p>");
    assert_non_null(strstr(out, "ok"));
    free(out);
}

static void test_charsets(void **state)
{
    /* ISO-8859-1 declared in http-equiv: é is 0xE9; Latin-1 labels mean windows-1252, so
     * 0x93/0x94 are curly quotes. */
    expect("<html><head><meta http-equiv=\"Content-Type\" content=\"text/html; "
           "charset=ISO-8859-1\"></head><body><p>caf\xE9 \x93ok\x94 na\xEFve</p></body></html>",
           "caf\xC3\xA9 \xE2\x80\x9Cok\xE2\x80\x9D na\xC3\xAFve");
    expect("<meta charset='latin1'><p>Stra\xDF" "e</p>", "Stra\xC3\x9F" "e");
    /* A charset iconv knows: KOI8-R "привет". */
    expect("<meta charset=\"KOI8-R\"><p>\xD0\xD2\xC9\xD7\xC5\xD4</p>",
           "\xD0\xBF\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82");
    /* An XML declaration. */
    expect("<?xml version=\"1.0\" encoding=\"iso-8859-1\"?><html><body><p>\xE9</p></body></html>",
           "\xC3\xA9");
    /* Declared UTF-8, unknown labels and UTF-16 labels all mean UTF-8. */
    expect("<meta charset=\"utf-8\"><p>\xC3\xA9</p>", "\xC3\xA9");
    expect("<meta charset=\"no-such-charset\"><p>\xC3\xA9</p>", "\xC3\xA9");
    expect("<meta charset=\"utf-16\"><p>\xC3\xA9</p>", "\xC3\xA9");
    /* No declaration: UTF-8. */
    expect("<p>\xE6\x97\xA5\xE6\x9C\xAC \xC3\xA9</p>", "\xE6\x97\xA5\xE6\x9C\xAC \xC3\xA9");
    /* BOMs. */
    expect("\xEF\xBB\xBF<p>bom \xC3\xA9</p>", "bom \xC3\xA9");
    const char u16[] = "\xFF\xFE<\0p\0>\0\xE9\0!\0<\0/\0p\0>\0";
    char *out = conv(u16, sizeof u16 - 1);
    assert_string_equal(out, "\xC3\xA9!");
    free(out);
    /* Bytes that are invalid in the declared charset become U+FFFD; the rest survives. */
    out = conv_s("<meta charset=\"shift_jis\"><p>ok \x82\xA0 \xFF\xFF\x80 end</p><p>after</p>");
    assert_non_null(strstr(out, "ok \xE3\x81\x82 \xEF\xBF\xBD"));
    assert_non_null(strstr(out, "end\n\nafter"));
    free(out);
    /* UTF-16 with a NUL character and an odd trailing byte */
    const char u16b[] = "\xFE\xFF\0<\0p\0>\0a\0\0\0b\0<";
    out = conv(u16b, sizeof u16b - 1);
    assert_non_null(strstr(out, "a\xEF\xBF\xBD" "b"));
    free(out);
}

static void test_deep_nesting(void **state)
{
    size_t depth = 20000;
    char *d = malloc(depth * 5 + 16);
    assert_non_null(d);
    size_t k = 0;
    for (size_t i = 0; i < depth; i++) {
        memcpy(d + k, "<div>", 5);
        k += 5;
    }
    memcpy(d + k, "deep", 4);
    k += 4;
    char *out = conv(d, k);
    assert_string_equal(out, "deep");
    free(out);
    free(d);
}

static void test_no_stderr(void **state)
{
    /* libxml2 must not print anything, whatever it is given. */
    fflush(stderr);
    char path[] = "/tmp/ragd_test_html_XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    int saved = dup(2);
    assert_true(saved >= 0);
    assert_true(dup2(fd, 2) >= 0);
    const char *docs[] = {"<p>unclosed <b><i></p></div></span><<>>&bogus; &#xFFFFFFFF;",
                          "<meta charset=\"shift_jis\"><p>\xFF\xFF\x80\x80</p>",
                          "<meta charset=\"koi8-r\">\xFF\xFE\xFD",
                          "\xFF\xFE<\0p\0",
                          "<?xml version=\"1.0\" encoding=\"bogus\"?><x:y z:q=1>",
                          "<!DOCTYPE html PUBLIC \"garbage><p>x"};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        char *out = NULL;
        ragd_err e = html_to_text(docs[i], strlen(docs[i]) + (i == 3 ? 3 : 0), &out, NULL);
        free(out);
        assert_int_equal(e, RAGD_OK);
    }
    fflush(stderr);
    assert_true(dup2(saved, 2) >= 0);
    close(saved);
    off_t size = lseek(fd, 0, SEEK_END);
    close(fd);
    unlink(path);
    assert_int_equal(size, 0);
}

#define THREADS 6
#define ROUNDS 40

static const char thread_doc[] = "<html><head><title>T</title></head><body><p>caf\xC3\xA9 "
                                 "&amp; <b>bold</b></p><ul><li>a</li><li>b\xFF</li></ul></body>"
                                 "</html>";

static void *thread_main(void *arg)
{
    const char *want = arg;
    for (int i = 0; i < ROUNDS; i++) {
        char *out = NULL;
        if (html_to_text(thread_doc, sizeof thread_doc - 1, &out, NULL) != RAGD_OK)
            return (void *)1;
        int same = strcmp(out, want) == 0;
        free(out);
        if (!same)
            return (void *)1;
        out = NULL;
        const char l1[] = "<meta charset=\"iso-8859-1\"><p>\xE9</p>";
        if (html_to_text(l1, sizeof l1 - 1, &out, NULL) != RAGD_OK)
            return (void *)1;
        same = strcmp(out, "\xC3\xA9") == 0;
        free(out);
        if (!same)
            return (void *)1;
    }
    return NULL;
}

static void test_threads(void **state)
{
    char *want = conv(thread_doc, sizeof thread_doc - 1);
    assert_string_equal(want, "T\n\ncaf\xC3\xA9 & bold\n\na\nb\xEF\xBF\xBD");
    pthread_t th[THREADS];
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_create(&th[i], NULL, thread_main, want), 0);
    for (int i = 0; i < THREADS; i++) {
        void *res = (void *)1;
        assert_int_equal(pthread_join(th[i], &res), 0);
        assert_null(res);
    }
    free(want);
}

/* Hidden carriers of injected instructions are not text: comments, <template>, <noscript>,
 * the hidden attribute, aria-hidden="true", inline styles that hide. Visible text stays. */
static void test_hidden_carriers(void **state)
{
    (void)state;
    char *t = conv_s("<p>Visible one.</p><!-- SECRET comment -->"
                     "<div hidden>SECRET hidden attribute</div>"
                     "<span aria-hidden=\"TRUE\">SECRET aria</span>"
                     "<p style=\"color: red; DISPLAY : none\">SECRET display</p>"
                     "<p style=\"visibility:hidden\">SECRET visibility</p>"
                     "<p style=\"font-size:0px\">SECRET font size</p>"
                     "<p style=\"opacity: 0.0;\">SECRET opacity</p>"
                     "<template><p>SECRET template</p></template>"
                     "<noscript>SECRET noscript</noscript>"
                     "<div style=\"display:none\"><p>SECRET <b>nested</b></p></div>"
                     "<p style=\"opacity:0.5; font-size: 12px\">Visible two.</p>"
                     "<span aria-hidden=\"false\">Visible three.</span>"
                     "<p style=\"font-size:0.9em\">Visible four.</p>");
    assert_null(strstr(t, "SECRET"));
    assert_non_null(strstr(t, "Visible one."));
    assert_non_null(strstr(t, "Visible two."));
    assert_non_null(strstr(t, "Visible three."));
    assert_non_null(strstr(t, "Visible four."));
    free(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_entities),
        cmocka_unit_test(test_lists_and_tables),
        cmocka_unit_test(test_breaks_and_pre),
        cmocka_unit_test(test_malformed),
        cmocka_unit_test(test_empty),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_invalid_utf8_and_nul),
        cmocka_unit_test(test_charsets),
        cmocka_unit_test(test_deep_nesting),
        cmocka_unit_test(test_no_stderr),
        cmocka_unit_test(test_threads),
        cmocka_unit_test(test_hidden_carriers),
    };
    return cmocka_run_group_tests_name("html", tests, NULL, NULL);
}
