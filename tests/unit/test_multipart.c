/* Unit tests for the multipart/form-data reader (http/multipart.h): the shapes curl and
 * browsers send, preamble and epilogue, quoted and RFC 5987 parameters, and every refusal
 * with its message. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/multipart.h"

#define S(lit) lit, sizeof(lit) - 1

/* Reads every part of body into parts (at most max_out); returns the status of the walk,
 * *n the parts read. */
static ragd_err read_all(const char *body, size_t len, const char *boundary, size_t max_parts, multipart_part *parts,
                         size_t max_out, size_t *n, multipart_reader *r)
{
    *n = 0;
    ragd_err e = multipart_reader_init(r, body, len, boundary, max_parts);
    while (e == RAGD_OK) {
        bool end = false;
        multipart_part p;
        e = multipart_next(r, &p, &end);
        if (e != RAGD_OK || end)
            break;
        if (*n < max_out)
            parts[*n] = p;
        (*n)++;
    }
    return e;
}

/* The refusal message of body, asserting it is refused. */
static const char *refusal(const char *body, size_t len, const char *boundary)
{
    static multipart_reader r;
    multipart_part parts[4];
    size_t n = 0;
    assert_int_equal(read_all(body, len, boundary, 100, parts, 4, &n, &r), RAGD_EINVAL);
    assert_true(r.message[0] != '\0');
    return r.message;
}

static void test_curl_shape(void **state)
{
    (void)state;
    /* what curl -F file=@a.txt -F file=@b.pdf -F db=docs sends */
    static const char body[] =
        "--------------------------d74496d66958873e\r\n"
        "Content-Disposition: form-data; name=\"file\"; filename=\"a.txt\"\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "hello\r\nworld\r\n"
        "--------------------------d74496d66958873e\r\n"
        "Content-Disposition: form-data; name=\"file\"; filename=\"b.pdf\"\r\n"
        "Content-Type: application/pdf\r\n"
        "\r\n"
        "%PDF-1.4\x00\xff--------------------------d74496d66958873e\r\n" /* not a delimiter: no CRLF before */
        "--------------------------d74496d66958873e\r\n"
        "Content-Disposition: form-data; name=\"db\"\r\n"
        "\r\n"
        "docs\r\n"
        "--------------------------d74496d66958873e--\r\n";
    multipart_reader r;
    multipart_part p[4];
    size_t n = 0;
    assert_int_equal(read_all(S(body), "------------------------d74496d66958873e", 100, p, 4, &n, &r), RAGD_OK);
    assert_int_equal(n, 3);
    assert_string_equal(p[0].name, "file");
    assert_true(p[0].has_filename);
    assert_string_equal(p[0].filename, "a.txt");
    assert_string_equal(p[0].media_type, "text/plain");
    assert_int_equal(p[0].len, 12);
    assert_memory_equal(p[0].data, "hello\r\nworld", 12);
    assert_string_equal(p[1].media_type, "application/pdf");
    assert_int_equal(p[1].len, 10 + 42);
    assert_memory_equal(p[1].data, "%PDF-1.4\x00\xff", 10);
    assert_false(p[2].has_filename);
    assert_string_equal(p[2].name, "db");
    assert_int_equal(p[2].len, 4);
    assert_int_equal(p[2].number, 3);
    /* the end is said again */
    bool end = false;
    multipart_part q;
    assert_int_equal(multipart_next(&r, &q, &end), RAGD_OK);
    assert_true(end);
}

static void test_preamble_epilogue_params(void **state)
{
    (void)state;
    static const char body[] =
        "This is the preamble.\r\n--b1 \t\r\n"
        "content-disposition: FORM-DATA ; name=\"x\\\"y\" ;filename*=UTF-8''na%C3%AFve%20doc.md; filename=\"fallback\"\r\n"
        "X-Other: ignored\r\n"
        "Content-Type: Text/Markdown; Charset=\"ISO-8859-1\"\r\n"
        "Content-Transfer-Encoding: binary\r\n"
        "\r\n"
        "\r\n--b1--epilogue, ignored\r\n--b1\r\nnot read";
    multipart_reader r;
    multipart_part p[2];
    size_t n = 0;
    assert_int_equal(read_all(S(body), "b1", 100, p, 2, &n, &r), RAGD_OK);
    assert_int_equal(n, 1);
    assert_string_equal(p[0].name, "x\"y");
    assert_string_equal(p[0].filename, "na\xc3\xafve doc.md"); /* filename* wins */
    assert_string_equal(p[0].media_type, "text/markdown");
    assert_string_equal(p[0].charset, "iso-8859-1");
    assert_int_equal(p[0].len, 0);
}

static void test_param(void **state)
{
    (void)state;
    char out[16];
    bool found = false;
    assert_int_equal(multipart_param(S("multipart/form-data; boundary=abc"), "boundary", out, sizeof out, &found),
                     RAGD_OK);
    assert_true(found);
    assert_string_equal(out, "abc");
    /* unquoted values may hold '=' and '/' (JavaMail's boundaries do) */
    assert_int_equal(multipart_param(S("m/f;charset=x; BOUNDARY=----=_Part_1/2"), "boundary", out, sizeof out, &found),
                     RAGD_OK);
    assert_string_equal(out, "----=_Part_1/2");
    assert_int_equal(multipart_param(S("m/f; a=\"x;y\"; b=2"), "b", out, sizeof out, &found), RAGD_OK);
    assert_string_equal(out, "2");
    assert_int_equal(multipart_param(S("m/f"), "b", out, sizeof out, &found), RAGD_OK);
    assert_false(found);
    assert_int_equal(multipart_param(S("m/f;;; b=1;"), "b", out, sizeof out, &found), RAGD_OK);
    assert_true(found);
    assert_int_equal(multipart_param(S("m/f; b=1; b=2"), "b", out, sizeof out, &found), RAGD_EINVAL);
    assert_int_equal(multipart_param(S("m/f; b=\"open"), "b", out, sizeof out, &found), RAGD_EINVAL);
    assert_int_equal(multipart_param(S("m/f; b="), "b", out, sizeof out, &found), RAGD_EINVAL);
    assert_int_equal(multipart_param(S("m/f; b"), "b", out, sizeof out, &found), RAGD_EINVAL);
    assert_int_equal(multipart_param(S("m/f; b=1 2"), "b", out, sizeof out, &found), RAGD_EINVAL);
    assert_int_equal(multipart_param(S("m/f; b=\"a\x01\""), "b", out, sizeof out, &found), RAGD_EINVAL);
    assert_int_equal(multipart_param(S("m/f; b=0123456789abcdef"), "b", out, sizeof out, &found), RAGD_ETOOBIG);
    /* a malformed parameter elsewhere in the list refuses the list */
    assert_int_equal(multipart_param(S("m/f; b=1; =2"), "b", out, sizeof out, &found), RAGD_EINVAL);
}

static void test_boundary_rules(void **state)
{
    (void)state;
    multipart_reader r;
    assert_int_equal(multipart_reader_init(&r, "", 0, "", 10), RAGD_EINVAL);
    char long_b[80];
    memset(long_b, 'a', 71);
    long_b[71] = '\0';
    assert_int_equal(multipart_reader_init(&r, "", 0, long_b, 10), RAGD_EINVAL);
    long_b[70] = '\0';
    assert_int_equal(multipart_reader_init(&r, "", 0, long_b, 10), RAGD_OK);
    assert_int_equal(multipart_reader_init(&r, "", 0, "a b", 10), RAGD_OK);
    assert_int_equal(multipart_reader_init(&r, "", 0, "ab ", 10), RAGD_EINVAL);
    assert_int_equal(multipart_reader_init(&r, "", 0, "a\"b", 10), RAGD_EINVAL);
    assert_int_equal(multipart_reader_init(&r, "", 0, "a\r\nb", 10), RAGD_EINVAL);
}

#define CD "Content-Disposition: form-data; name=\"f\"; filename=\"a.txt\"\r\n"

static void test_refusals(void **state)
{
    (void)state;
    assert_non_null(strstr(refusal(S("hello"), "B"), "no boundary line \"--B\""));
    assert_non_null(strstr(refusal(S("--B\r\n" CD "\r\nhello"), "B"), "ends inside part 1"));
    assert_non_null(strstr(refusal(S("--B\r\n" CD "\r\nhello\r\n--B"), "B"), "without the closing boundary"));
    assert_non_null(strstr(refusal(S("--B\r\n" CD "\r\nhello\r\n--Bx\r\n"), "B"), "followed by other text"));
    assert_non_null(strstr(refusal(S("--B\r\n\r\nhello\r\n--B--"), "B"), "part 1: no Content-Disposition"));
    assert_non_null(strstr(refusal(S("--B\r\n" CD CD "\r\nx\r\n--B--"), "B"), "two Content-Disposition"));
    assert_non_null(strstr(refusal(S("--B\r\nContent-Disposition: attachment; name=\"f\"\r\n\r\nx\r\n--B--"), "B"),
                           "must be form-data"));
    assert_non_null(strstr(refusal(S("--B\r\nContent-Disposition: form-data; filename=\"a\"\r\n\r\nx\r\n--B--"), "B"),
                           "has no name"));
    assert_non_null(strstr(refusal(S("--B\r\n" CD "Content-Transfer-Encoding: base64\r\n\r\nx\r\n--B--"), "B"),
                           "base64 is not supported"));
    assert_non_null(strstr(refusal(S("--B\r\nContent-Disposition: form-data; name=\"f\"\n\r\nx\r\n--B--"), "B"),
                           "not ended by CRLF"));
    assert_non_null(strstr(refusal(S("--B\r\n" CD " folded\r\n\r\nx\r\n--B--"), "B"), "folded"));
    assert_non_null(strstr(refusal(S("--B\r\nno colon here\r\n\r\nx\r\n--B--"), "B"), "malformed header"));
    assert_non_null(strstr(refusal(S("--B\r\nContent-Disposition: form-data; name=\"f\"; filename*=latin1''x\r\n\r\nx"
                                     "\r\n--B--"),
                                   "B"),
                           "UTF-8"));
    assert_non_null(strstr(refusal(S("--B\r\nContent-Disposition: form-data; name=\"f\"; filename*=utf-8''%zz\r\n\r\nx"
                                     "\r\n--B--"),
                                   "B"),
                           "%-escape"));
    assert_non_null(strstr(refusal(S("--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"a\xff\"\r\n\r\nx"
                                     "\r\n--B--"),
                                   "B"),
                           "not valid UTF-8"));
    assert_non_null(strstr(refusal(S("--B\r\nContent-Disposition: form-data; name=\"f\"; filename*=utf-8''a%0Ab\r\n\r\n"
                                     "x\r\n--B--"),
                                   "B"),
                           "not valid UTF-8"));
    /* %00 is a control byte too (it once cut the name short: "a%00b.txt" became "a") */
    assert_non_null(strstr(refusal(S("--B\r\nContent-Disposition: form-data; name=\"f\"; filename*=utf-8''a%00b.txt\r\n\r\n"
                                     "x\r\n--B--"),
                                   "B"),
                           "not valid UTF-8"));
    assert_non_null(strstr(refusal(S("--B\r\n" CD "Content-Type: text/plain; charset=\"a\r\n\r\nx\r\n--B--"), "B"),
                           "Content-Type parameters"));
    assert_non_null(strstr(refusal(S("--B\r\n" CD "X: a\x01\r\n\r\nx\r\n--B--"), "B"), "control byte"));
    assert_non_null(strstr(refusal(S("--B\r\nContent-Disposition: form-data; name=\"f\""), "B"), "ends inside the headers"));
    /* an error is sticky */
    multipart_reader r;
    multipart_part p;
    bool end = true;
    assert_int_equal(multipart_reader_init(&r, S("nothing"), "B", 10), RAGD_OK);
    assert_int_equal(multipart_next(&r, &p, &end), RAGD_EINVAL);
    assert_int_equal(multipart_next(&r, &p, &end), RAGD_EINVAL);
    assert_false(end);
}

static void test_caps(void **state)
{
    (void)state;
    /* header block over MULTIPART_HEAD_MAX */
    size_t cap = MULTIPART_HEAD_MAX + 200;
    char *body = malloc(cap + 100);
    assert_non_null(body);
    size_t n = (size_t)sprintf(body, "--B\r\n" CD "X-Pad: ");
    memset(body + n, 'p', cap - n);
    n = cap;
    n += (size_t)sprintf(body + n, "\r\n\r\nx\r\n--B--");
    assert_non_null(strstr(refusal(body, n, "B"), "headers over 8192 bytes"));
    free(body);
    /* too many header lines */
    char lines[4096];
    n = (size_t)sprintf(lines, "--B\r\n" CD);
    for (int i = 0; i < MULTIPART_HEAD_LINES; i++)
        n += (size_t)sprintf(lines + n, "X: %d\r\n", i);
    n += (size_t)sprintf(lines + n, "\r\nx\r\n--B--");
    assert_non_null(strstr(refusal(lines, n, "B"), "more than 32 header lines"));
    /* a name and a file name at and over their caps */
    char big[4096];
    char name[MULTIPART_FILENAME_MAX + 2];
    memset(name, 'n', sizeof name - 1);
    name[MULTIPART_NAME_MAX + 1] = '\0';
    n = (size_t)snprintf(big, sizeof big, "--B\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\nx\r\n--B--", name);
    assert_non_null(strstr(refusal(big, n, "B"), "field name is over 255"));
    memset(name, 'n', sizeof name - 1);
    name[MULTIPART_FILENAME_MAX + 1] = '\0';
    n = (size_t)snprintf(big, sizeof big, "--B\r\nContent-Disposition: form-data; name=f; filename=\"%s\"\r\n\r\nx\r\n--B--",
                         name);
    assert_non_null(strstr(refusal(big, n, "B"), "file name is over 1024"));
    name[MULTIPART_FILENAME_MAX] = '\0';
    n = (size_t)snprintf(big, sizeof big, "--B\r\nContent-Disposition: form-data; name=f; filename=\"%s\"\r\n\r\nx\r\n--B--",
                         name);
    multipart_reader r;
    multipart_part p[1];
    size_t got = 0;
    assert_int_equal(read_all(big, n, "B", 10, p, 1, &got, &r), RAGD_OK);
    assert_int_equal(strlen(p[0].filename), MULTIPART_FILENAME_MAX);
    /* the part count */
    static const char three[] = "--B\r\n" CD "\r\n\r\n--B\r\n" CD "\r\n\r\n--B\r\n" CD "\r\n\r\n--B--";
    assert_int_equal(read_all(S(three), "B", 3, p, 1, &got, &r), RAGD_OK);
    assert_int_equal(got, 3);
    assert_int_equal(read_all(S(three), "B", 2, p, 1, &got, &r), RAGD_EINVAL);
    assert_int_equal(got, 2);
    assert_string_equal(r.message, "more than 2 parts");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_curl_shape),
        cmocka_unit_test(test_preamble_epilogue_params),
        cmocka_unit_test(test_param),
        cmocka_unit_test(test_boundary_rules),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_caps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
