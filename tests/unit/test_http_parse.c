/* Unit tests for the strict HTTP/1.1 request parser (http/parse.h): every rule, each request
 * fed whole, byte by byte and in seeded random splits (the result must not depend on how the
 * bytes arrive); the chunked body decoder the same way; and the CIDR matching and
 * X-Forwarded-For walk of util/cidr.h. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http/parse.h"
#include "test_rng.h"
#include "util/cidr.h"

#define CAP 4096

/* Feeds text in pieces: split 0 = whole, 1 = byte by byte, else random pieces from the seed.
 * Returns the status and fills *h. */
static http_parse_status feed_head(const char *text, size_t len, int split, uint64_t seed, http_head *h)
{
    http_head_init(h, CAP);
    rng r = {.s = seed | 1};
    size_t have = 0;
    http_parse_status st = HTTP_PARSE_MORE;
    while (st == HTTP_PARSE_MORE && have < len) {
        size_t step = split == 0 ? len : split == 1 ? 1 : 1 + rng_below(&r, 17);
        have = have + step > len ? len : have + step;
        st = http_head_parse(h, text, have);
    }
    return st;
}

/* The status for text, checked to be the same whole, byte by byte and in 20 random splits;
 * 0 for DONE, -1 for MORE. */
static int head_status(const char *text, size_t len)
{
    http_head h;
    int want = 0;
    for (int mode = 0; mode < 22; mode++) {
        http_parse_status st = feed_head(text, len, mode < 2 ? mode : 2, (uint64_t)mode * 7919, &h);
        int got = st == HTTP_PARSE_DONE ? 0 : st == HTTP_PARSE_MORE ? -1 : h.status;
        if (mode == 0)
            want = got;
        else
            assert_int_equal(got, want);
    }
    return want;
}

#define S(lit) lit, sizeof(lit) - 1

static void test_head_accepts(void **state)
{
    (void)state;
    static const char req[] = "POST /api/x?a=1 HTTP/1.1\r\nHost: h\r\nX-Empty:\r\nX-Sp: \t a b \t\r\n"
                              "Content-Length: 12\r\nContent-Length: 12\r\nConnection: keep-alive, Close\r\n"
                              "Expect: 100-continue\r\n\r\nbody";
    http_head h;
    assert_int_equal(feed_head(S(req), 1, 0, &h), HTTP_PARSE_DONE);
    assert_int_equal(h.head_len, sizeof req - 1 - 4);
    assert_int_equal(h.method.len, 4);
    assert_memory_equal(req + h.target.off, "/api/x?a=1", h.target.len);
    assert_int_equal(h.minor, 1);
    assert_int_equal(h.n_headers, 7);
    assert_true(h.has_length);
    assert_int_equal(h.content_length, 12);
    assert_false(h.keep_alive); /* close wins */
    assert_true(h.expect_continue);
    size_t n = 0;
    const char *v = http_head_get(&h, req, "x-sp", &n);
    assert_non_null(v);
    assert_int_equal(n, 3);
    assert_memory_equal(v, "a b", 3);
    v = http_head_get(&h, req, "X-EMPTY", &n);
    assert_non_null(v);
    assert_int_equal(n, 0);
    assert_null(http_head_get(&h, req, "missing", &n));

    assert_int_equal(head_status(S("GET / HTTP/1.1\r\n\r\n")), 0);
    assert_int_equal(head_status(S("\r\n\r\nGET / HTTP/1.1\r\n\r\n")), 0);  /* leading empty lines */
    assert_int_equal(head_status(S("GET / HTTP/1.1\nHost: x\n\n")), 0);      /* bare LF line ends */
    assert_int_equal(head_status(S("GET  /  HTTP/1.1\r\n\r\n")), 0);         /* extra spaces */
    assert_int_equal(head_status(S("GET / HTTP/1.1\r\nX: \x80\xff\r\n\r\n")), 0); /* obs-text */
    assert_int_equal(head_status(S("GET / HTTP/1.1\r\nHost: x\r\n")), -1);   /* not yet ended */

    assert_int_equal(feed_head(S("GET / HTTP/1.0\r\n\r\n"), 0, 0, &h), HTTP_PARSE_DONE);
    assert_int_equal(h.minor, 0);
    assert_false(h.keep_alive);
    assert_int_equal(feed_head(S("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0, 0, &h), HTTP_PARSE_DONE);
    assert_true(h.keep_alive);
    assert_int_equal(feed_head(S("GET / HTTP/1.1\r\n\r\n"), 0, 0, &h), HTTP_PARSE_DONE);
    assert_true(h.keep_alive);
    assert_int_equal(feed_head(S("POST / HTTP/1.1\r\nTransfer-Encoding: ChunKed\r\n\r\n"), 0, 0, &h), HTTP_PARSE_DONE);
    assert_true(h.chunked);
    assert_false(h.has_length);
}

/* Headers named more than once: the last, all joined (RFC 9110 5.3), any holding a word. */
static void test_head_repeated(void **state)
{
    (void)state;
    static const char req[] = "GET / HTTP/1.1\r\nAccept: application/json\r\nX-L: a\r\nx-l: bb\r\n"
                              "Accept: TEXT/Html;q=0.9\r\nX-L:\r\nX-L: c\r\n\r\n";
    http_head h;
    assert_int_equal(feed_head(S(req), 0, 0, &h), HTTP_PARSE_DONE);
    size_t n = 0;
    const char *v = http_head_last(&h, req, "x-l", &n);
    assert_non_null(v);
    assert_int_equal(n, 1);
    assert_memory_equal(v, "c", 1);
    assert_null(http_head_last(&h, req, "missing", &n));
    char out[16];
    assert_true(http_head_join(&h, req, "x-l", ", ", out, sizeof out, &n));
    assert_string_equal(out, "a, bb, , c");
    assert_int_equal(n, 10);
    assert_true(http_head_join(&h, req, "x-l", ", ", out, 11, &n)); /* 10 bytes and the NUL */
    assert_false(http_head_join(&h, req, "x-l", ", ", out, 10, &n));
    assert_string_equal(out, "");
    assert_int_equal(n, 0);
    assert_true(http_head_join(&h, req, "missing", ",", out, sizeof out, &n));
    assert_string_equal(out, "");
    assert_true(http_head_any_contains(&h, req, "accept", "text/html")); /* the second field, any case */
    assert_false(http_head_any_contains(&h, req, "accept", "text/plain"));
    assert_false(http_head_any_contains(&h, req, "x-l", "text/html"));
}

static void test_head_refuses(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        size_t len;
        int status;
    } cases[] = {
        {S("GE\0T / HTTP/1.1\r\n\r\n"), 400},                 /* NUL in the method */
        {S("GET /a\0b HTTP/1.1\r\n\r\n"), 400},               /* NUL in the target */
        {S("GET / HTTP/1.1\r\nX: a\0b\r\n\r\n"), 400},        /* NUL in a value */
        {S("GET / HTTP/1.1\r\n\0X: b\r\n\r\n"), 400},         /* a line starting with NUL */
        {S("GET / HTTP/1.1\r\nX\0: b\r\n\r\n"), 400},         /* NUL in a name */
        {S("GET / HTTP/1.1\rX: b\r\n\r\n"), 400},             /* CR without LF */
        {S("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n"), 400},
        {S("GET / HTTP/1.1\r\nX: a\r\n b\r\n\r\n"), 400},     /* obs-fold */
        {S("GET / HTTP/1.1\r\nX: a\r\n\tb\r\n\r\n"), 400},
        {S("GET / HTTP/1.1\r\nX : a\r\n\r\n"), 400},          /* whitespace before the colon */
        {S("GET / HTTP/1.1\r\nX\t: a\r\n\r\n"), 400},
        {S("GET / HTTP/1.1\r\n: a\r\n\r\n"), 400},            /* empty name */
        {S("GET / HTTP/1.1\r\nX(: a\r\n\r\n"), 400},          /* not a token */
        {S("GET / HTTP/1.1\r\nX: a\x7f\r\n\r\n"), 400},       /* DEL in a value */
        {S("G(T / HTTP/1.1\r\n\r\n"), 400},
        {S("GET /\x01 HTTP/1.1\r\n\r\n"), 400},
        {S("GET / HTTX/1.1\r\n\r\n"), 400},
        {S("GET / HTTP/1.1x\r\n\r\n"), 400},
        {S("GET / HTTP/11\r\n\r\n"), 400},
        {S("GET /\r\n\r\n"), 400},                            /* HTTP/0.9 */
        {S("GET / HTTP/2.0\r\n\r\n"), 505},
        {S("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 505},         /* the HTTP/2 preface */
        {S("GET / HTTP/1.2\r\n\r\n"), 505},
        {S("GET / HTTP/0.9\r\n\r\n"), 505},
        {S("POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400},
        {S("POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n"), 400},
        {S("POST / HTTP/1.1\r\nContent-Length: +1\r\n\r\n"), 400},
        {S("POST / HTTP/1.1\r\nContent-Length: 1x\r\n\r\n"), 400},
        {S("POST / HTTP/1.1\r\nContent-Length: 1 2\r\n\r\n"), 400},
        {S("POST / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\n"), 400},
        {S("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n"), 400},
        {S("POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\n"), 400},
        {S("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"), 400},
        {S("POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"), 400},
        {S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"), 400},
        {S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), 400},
        {S("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"), 501},
        {S("POST / HTTP/1.1\r\nTransfer-Encoding: identity\r\n\r\n"), 501},
        {S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"), 501},
        {S("POST / HTTP/1.1\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"), 501},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        int got = head_status(cases[i].text, cases[i].len);
        if (got != cases[i].status)
            fail_msg("case %zu: got %d, want %d", i, got, cases[i].status);
    }
    /* Content-Length 2^63 - 1 is the largest accepted */
    http_head h;
    assert_int_equal(feed_head(S("POST / HTTP/1.1\r\nContent-Length: 9223372036854775807\r\n\r\n"), 0, 0, &h),
                     HTTP_PARSE_DONE);
    assert_int_equal(h.content_length, UINT64_C(9223372036854775807));
}

static void test_head_caps(void **state)
{
    (void)state;
    char *buf = malloc(CAP * 4);
    assert_non_null(buf);
    /* 100 headers are accepted, 101 are not */
    for (int n = 100; n <= 101; n++) {
        size_t len = (size_t)snprintf(buf, CAP * 4, "GET / HTTP/1.1\r\n");
        for (int i = 0; i < n; i++)
            len += (size_t)snprintf(buf + len, CAP * 4 - len, "X%d: v\r\n", i);
        len += (size_t)snprintf(buf + len, CAP * 4 - len, "\r\n");
        assert_int_equal(head_status(buf, len), n == 100 ? 0 : 431);
    }
    /* the head cap: refused once a byte past it arrives, however it is split */
    size_t len = (size_t)snprintf(buf, CAP * 4, "GET / HTTP/1.1\r\nX: ");
    memset(buf + len, 'a', CAP);
    len += CAP;
    assert_int_equal(head_status(buf, len), 431);
    http_head h;
    assert_int_equal(feed_head(buf, CAP, 0, 0, &h), HTTP_PARSE_MORE); /* exactly at the cap: not yet */
    /* a head of exactly CAP bytes is accepted */
    len = (size_t)snprintf(buf, CAP * 4, "GET / HTTP/1.1\r\nX: ");
    memset(buf + len, 'a', CAP - len - 4);
    memcpy(buf + CAP - 4, "\r\n\r\n", 4);
    assert_int_equal(head_status(buf, CAP), 0);
    free(buf);

    /* the target cap: 8192 bytes accepted, one more is 414 — before the line ends */
    char *big = malloc(HTTP_PARSE_MAX_TARGET + 64);
    assert_non_null(big);
    for (int extra = 0; extra <= 1; extra++) {
        size_t n = (size_t)snprintf(big, 8, "GET /");
        memset(big + n, 'a', HTTP_PARSE_MAX_TARGET - 1 + (size_t)extra);
        n += HTTP_PARSE_MAX_TARGET - 1 + (size_t)extra;
        http_head_init(&h, 64 << 10);
        http_parse_status st = http_head_parse(&h, big, n);
        if (extra) {
            assert_int_equal(st, HTTP_PARSE_ERROR);
            assert_int_equal(h.status, 414);
        } else {
            assert_int_equal(st, HTTP_PARSE_MORE);
            memcpy(big + n, " HTTP/1.1\r\n\r\n", 13);
            assert_int_equal(http_head_parse(&h, big, n + 13), HTTP_PARSE_DONE);
            assert_int_equal(h.target.len, HTTP_PARSE_MAX_TARGET);
        }
    }
    free(big);
}

/* A refusal comes at the byte that breaks the rule, not at the end of the block. */
static void test_head_refuses_early(void **state)
{
    (void)state;
    http_head h;
    http_head_init(&h, CAP);
    assert_int_equal(http_head_parse(&h, S("GET /a\0")), HTTP_PARSE_ERROR);
    assert_int_equal(h.status, 400);
    assert_non_null(strstr(h.message, "NUL"));
    http_head_init(&h, CAP);
    assert_int_equal(http_head_parse(&h, S("PRI * HTTP/2.0\r")), HTTP_PARSE_ERROR);
    assert_int_equal(h.status, 505);
    /* and it stays so */
    assert_int_equal(http_head_parse(&h, S("PRI * HTTP/2.0\r\n")), HTTP_PARSE_ERROR);
    http_head_init(&h, CAP);
    assert_false(http_head_started(&h));
    assert_int_equal(http_head_parse(&h, S("\r\n")), HTTP_PARSE_MORE);
    assert_false(http_head_started(&h));
    assert_int_equal(http_head_parse(&h, S("\r\nG")), HTTP_PARSE_MORE);
    assert_true(http_head_started(&h));
}

/* ---- chunked bodies ---- */

static int last_chunked_status; /* c.status of the last feed_chunked */

/* Decodes body fed in pieces (as feed_head); returns the status, the data in out. */
static http_parse_status feed_chunked(const char *body, size_t len, int split, uint64_t seed, char *out,
                                      size_t *out_len, size_t *consumed)
{
    http_chunked c;
    http_chunked_init(&c, 64, 1000);
    rng r = {.s = seed | 1};
    size_t pos = 0, have = 0;
    *out_len = 0;
    http_parse_status st = HTTP_PARSE_MORE;
    while (st == HTTP_PARSE_MORE && have < len) {
        size_t step = split == 0 ? len : split == 1 ? 1 : 1 + rng_below(&r, 9);
        have = have + step > len ? len : have + step;
        while (st == HTTP_PARSE_MORE && pos < have) {
            size_t used = 0, off = 0, n = 0;
            st = http_chunked_feed(&c, body + pos, have - pos, &used, &off, &n);
            memcpy(out + *out_len, body + pos + off, n);
            *out_len += n;
            pos += used;
        }
    }
    *consumed = pos;
    last_chunked_status = c.status;
    return st;
}

static int chunked_status(const char *body, size_t len, const char *want_data)
{
    char out[2048];
    int want = 0;
    for (int mode = 0; mode < 22; mode++) {
        size_t n = 0, used = 0;
        http_parse_status st = feed_chunked(body, len, mode < 2 ? mode : 2, (uint64_t)mode * 104729, out, &n, &used);
        int got = st == HTTP_PARSE_DONE ? 0 : st == HTTP_PARSE_MORE ? -1 : last_chunked_status;
        if (got == 0 && want_data) {
            assert_int_equal(n, strlen(want_data));
            assert_memory_equal(out, want_data, n);
        }
        if (mode == 0)
            want = got;
        else
            assert_int_equal(got, want);
    }
    return want;
}

static void test_chunked(void **state)
{
    (void)state;
    assert_int_equal(chunked_status(S("5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"), "hello world"), 0);
    assert_int_equal(chunked_status(S("A\r\n0123456789\r\n0\r\n\r\n"), "0123456789"), 0);
    assert_int_equal(chunked_status(S("5;ext=1;x\r\nhello\r\n0;last\r\n\r\n"), "hello"), 0); /* extensions */
    assert_int_equal(chunked_status(S("5 ;ext\r\nhello\r\n0\r\n\r\n"), "hello"), 0);
    assert_int_equal(chunked_status(S("5\r\nhello\r\n0\r\nX-T: 1\r\nY: 2\r\n\r\n"), "hello"), 0); /* trailers */
    assert_int_equal(chunked_status(S("0\r\n\r\n"), ""), 0);
    assert_int_equal(chunked_status(S("5\r\nhel"), NULL), -1);
    /* the bytes after the body are not taken */
    char out[64];
    size_t n = 0, used = 0;
    assert_int_equal(feed_chunked(S("1\r\na\r\n0\r\n\r\nGET"), 0, 0, out, &n, &used), HTTP_PARSE_DONE);
    assert_int_equal(used, 11);

    static const struct {
        const char *text;
        size_t len;
    } bad[] = {
        {S("z\r\nhello\r\n0\r\n\r\n")},            /* not hex */
        {S("\r\n")},                               /* no size */
        {S("-5\r\nhello\r\n0\r\n\r\n")},
        {S("0x5\r\nhello\r\n0\r\n\r\n")},
        {S("1000000000000000\r\n")},               /* 16 digits */
        {S("5\r\nhello!\r\n0\r\n\r\n")},           /* data longer than its size */
        {S("5\r\nhell\r\n0\r\n\r\n")},
        {S("5\nhello\r\n0\r\n\r\n")},              /* bare LF after the size */
        {S("5\r\nhello\r\r0\r\n\r\n")},
        {S("5;a\0b\r\nhello\r\n0\r\n\r\n")},       /* NUL in an extension */
        {S("5 x\r\nhello\r\n0\r\n\r\n")},
        {S("0\r\nX: a\0\r\n\r\n")},                /* NUL in a trailer */
        {S("0\r\n X: a\r\n\r\n")},                 /* folded trailer */
        {S("0\r\n\rx")},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        int got = chunked_status(bad[i].text, bad[i].len, NULL);
        if (got != 400)
            fail_msg("chunked case %zu: got %d, want 400", i, got);
    }
    /* extensions and trailers share one allowance (64 here): 431 past it */
    static const struct {
        const char *text;
        size_t len;
    } too_long[] = {
        {S("0\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n")}, /* over 64 */
        {S("1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\na\r\n1;bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\nb\r\n0\r\n\r\n")},
        {S("1;aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\na\r\n0\r\nX: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n\r\n")},
        {S("0\r\nX: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\nY: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\r\n\r\n")},
    };
    for (size_t i = 0; i < sizeof too_long / sizeof *too_long; i++) {
        int got = chunked_status(too_long[i].text, too_long[i].len, NULL);
        if (got != 431)
            fail_msg("chunked over-cap case %zu: got %d, want 431", i, got);
    }
    /* within the allowance in total: accepted */
    assert_int_equal(chunked_status(S("1;aaaaaaaaaaaaaaaaaaaa\r\na\r\n0\r\nX: bbbbbbbbbbbbbbbbbbbb\r\n\r\n"), "a"), 0);
    /* a chunk size over the body cap (1000 here): 413 on its size line, before any data */
    assert_int_equal(chunked_status(S("fffffffffffffff\r\n"), NULL), 413);
    assert_int_equal(chunked_status(S("3e9\r\n"), NULL), 413);
    assert_int_equal(chunked_status(S("1f4\r\n"), NULL), -1);     /* 500: fits */
    assert_int_equal(chunked_status(S("1f4;x\r\n"), NULL), -1);
    char big[1200];
    size_t bl = (size_t)snprintf(big, sizeof big, "1f4\r\n%0500d\r\n1f5\r\n", 0); /* 500 + 501: over in total */
    assert_int_equal(chunked_status(big, bl, NULL), 413);
    /* 15 hex digits are accepted as a size when the cap allows */
    http_chunked c;
    http_chunked_init(&c, 64, UINT64_MAX);
    size_t off = 0;
    assert_int_equal(http_chunked_feed(&c, S("fffffffffffffff\r\n"), &used, &off, &n), HTTP_PARSE_MORE);
    assert_int_equal(c.remaining, UINT64_C(0xfffffffffffffff));
}

/* ---- CIDR matching and X-Forwarded-For ---- */

static cidr_addr addr(const char *s)
{
    cidr_addr a;
    assert_true(cidr_addr_parse(s, strlen(s), &a));
    return a;
}

static void test_cidr(void **state)
{
    (void)state;
    cidr_list l;
    char err[256];
    assert_int_equal(cidr_list_parse(&l, "10.0.0.0/8, 192.168.1.7 ,fd00::/8,::1, 172.16.0.0/12", err, sizeof err), 0);
    assert_int_equal(l.n, 5);
    cidr_addr a;
    a = addr("10.255.1.2");
    assert_true(cidr_list_contains(&l, &a));
    a = addr("11.0.0.1");
    assert_false(cidr_list_contains(&l, &a));
    a = addr("192.168.1.7");
    assert_true(cidr_list_contains(&l, &a));
    a = addr("192.168.1.8");
    assert_false(cidr_list_contains(&l, &a));
    a = addr("172.31.255.255");
    assert_true(cidr_list_contains(&l, &a));
    a = addr("172.32.0.0");
    assert_false(cidr_list_contains(&l, &a));
    a = addr("fd12::1");
    assert_true(cidr_list_contains(&l, &a));
    a = addr("fe80::1");
    assert_false(cidr_list_contains(&l, &a));
    a = addr("::1");
    assert_true(cidr_list_contains(&l, &a));
    a = addr("::ffff:10.1.1.1"); /* a v4-mapped v6 address is the v4 address */
    assert_true(cidr_list_contains(&l, &a));
    char text[64];
    cidr_addr_format(&a, text, sizeof text);
    assert_string_equal(text, "10.1.1.1");

    assert_int_equal(cidr_list_parse(&l, "0.0.0.0/0", err, sizeof err), 0);
    a = addr("8.8.8.8");
    assert_true(cidr_list_contains(&l, &a));
    a = addr("2001:db8::1"); /* /0 of v4 covers v4 only */
    assert_false(cidr_list_contains(&l, &a));
    assert_int_equal(cidr_list_parse(&l, "", err, sizeof err), 0);
    assert_int_equal(l.n, 0);
    assert_false(cidr_list_contains(&l, &a));

    static const char *const bad[] = {"10.0.0.0/33", "::/129", "10.0.0.1/", "10.0.0/8", "host.example", "1.2.3.4/8x",
                                      "1.2.3.4/-1"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        if (cidr_list_parse(&l, bad[i], err, sizeof err) != -1)
            fail_msg("accepted '%s'", bad[i]);
        assert_non_null(strstr(err, "RAGD_TRUSTED_PROXIES"));
    }
}

static void client_is(const cidr_list *l, const char *peer, const char *xff, const char *want)
{
    cidr_addr p = addr(peer);
    cidr_addr got = cidr_client_of(l, &p, xff, xff ? strlen(xff) : 0);
    char text[64];
    cidr_addr_format(&got, text, sizeof text);
    if (strcmp(text, want) != 0)
        fail_msg("peer %s, XFF '%s': got %s, want %s", peer, xff ? xff : "(none)", text, want);
}

static void test_xff_walk(void **state)
{
    (void)state;
    cidr_list none, l;
    char err[256];
    assert_int_equal(cidr_list_parse(&none, "", err, sizeof err), 0);
    assert_int_equal(cidr_list_parse(&l, "127.0.0.1, 10.0.0.0/8", err, sizeof err), 0);
    client_is(&none, "127.0.0.1", "1.1.1.1", "127.0.0.1");         /* no trusted proxies: the peer */
    client_is(&l, "192.0.2.9", "1.1.1.1", "192.0.2.9");            /* an untrusted peer's XFF is ignored */
    client_is(&l, "127.0.0.1", NULL, "127.0.0.1");                 /* no XFF */
    client_is(&l, "127.0.0.1", "1.1.1.1", "1.1.1.1");
    client_is(&l, "127.0.0.1", "6.6.6.6, 1.1.1.1", "1.1.1.1");     /* the left part is the client's to forge */
    client_is(&l, "127.0.0.1", "1.1.1.1, 10.0.0.5", "1.1.1.1");    /* trusted hops skipped */
    client_is(&l, "127.0.0.1", " 1.1.1.1 ,10.2.3.4,10.0.0.1 ", "1.1.1.1");
    client_is(&l, "127.0.0.1", "10.0.0.7, 10.0.0.5", "10.0.0.7");  /* all trusted: the left-most */
    client_is(&l, "127.0.0.1", "garbage, 10.0.0.5", "10.0.0.5");   /* stops at a non-address */
    client_is(&l, "127.0.0.1", "1.1.1.1, garbage", "127.0.0.1");
    client_is(&l, "127.0.0.1", "2001:db8::7", "2001:db8::7");
    client_is(&l, "127.0.0.1", ",,", "127.0.0.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_head_accepts),
        cmocka_unit_test(test_head_repeated),
        cmocka_unit_test(test_head_refuses),
        cmocka_unit_test(test_head_caps),
        cmocka_unit_test(test_head_refuses_early),
        cmocka_unit_test(test_chunked),
        cmocka_unit_test(test_cidr),
        cmocka_unit_test(test_xff_walk),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
