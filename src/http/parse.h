#ifndef RAGD_HTTP_PARSE_H
#define RAGD_HTTP_PARSE_H

/* The strict HTTP/1.1 request parser (RFC 9112), with no I/O and no allocation: the caller
 * keeps the bytes, the parser keeps offsets into them. docs/internals/http.md.
 *
 * Head: http_head_init, then http_head_parse(h, buf, len) each time more bytes arrived, buf
 * always starting at the request's first byte (the caller keeps them contiguous); only the
 * bytes not seen before are read, so feeding byte by byte costs the same as all at once.
 * Every byte is checked as it arrives: a refusal comes as soon as the byte that breaks a rule
 * is seen (a NUL, an over-long target, "PRI * HTTP/2.0"), not at the end of the block.
 *
 * Refused (h->status, h->message):
 *   400 NUL, CR or LF out of place (a CR not followed by LF, a line break inside a request
 *       line element or a header name), a method or header
 *       name that is not a token, whitespace before a colon, obs-fold (a line starting with
 *       SP/HTAB), a bad request target or version syntax, Content-Length that is not
 *       1*DIGIT or overflows 2^63, two Content-Length values that differ, Content-Length
 *       together with Transfer-Encoding;
 *   414 a request target over HTTP_PARSE_MAX_TARGET bytes;
 *   431 a head over max_bytes, or more than HTTP_PARSE_MAX_HEADERS header lines;
 *   501 Transfer-Encoding other than exactly "chunked" (one header, case-insensitive);
 *   505 a version other than HTTP/1.0 and HTTP/1.1 (the HTTP/2 preface included).
 * Accepted leniencies, all allowed by RFC 9112: a bare LF as a line end (2.2), empty lines
 * before the request line (2.2), several spaces between the request line's elements (3),
 * obs-text (bytes 0x80-0xFF) in header values. Host is not required. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_PARSE_MAX_HEADERS 100
#define HTTP_PARSE_MAX_TARGET 8192
#define HTTP_PARSE_MAX_METHOD 32

typedef enum { HTTP_PARSE_MORE = 0, HTTP_PARSE_DONE, HTTP_PARSE_ERROR } http_parse_status;

typedef struct {
    uint32_t off, len; /* a span of the caller's buffer */
} http_span;

typedef struct {
    http_span name, value; /* value without leading/trailing SP/HTAB */
} http_header_span;

typedef struct {
    /* set by http_head_init */
    size_t max_bytes;
    /* results (valid once DONE; status/message once ERROR) */
    http_span method, target;
    int minor;                   /* 0 or 1: HTTP/1.0 or HTTP/1.1 */
    http_header_span headers[HTTP_PARSE_MAX_HEADERS];
    size_t n_headers;
    size_t head_len;             /* bytes of the head, the final CRLF included */
    bool has_length;             /* Content-Length given */
    uint64_t content_length;
    bool chunked;                /* Transfer-Encoding: chunked */
    bool keep_alive;             /* by version and Connection (close / keep-alive) */
    bool expect_continue;        /* Expect: 100-continue */
    int status;                  /* on ERROR: 400, 414, 431, 501 or 505 */
    const char *message;         /* on ERROR: static text for the client */
    /* state */
    size_t pos;                  /* bytes of the buffer already read */
    size_t start;                /* offset of the request line (after leading CRLFs) */
    int state;
    size_t mark;                 /* start of the token being read */
    http_span name;              /* the header name being read */
    size_t value_end;            /* one past the last non-blank byte of the current value */
    bool has_te, te_bad, te_seen;
    bool conn_close, conn_keep;
} http_head;

/* Ready to parse a new request whose head may take at most max_bytes. */
void http_head_init(http_head *h, size_t max_bytes);
/* Reads buf[h->pos..len) (buf[0] is the request's first byte). MORE: need more bytes; DONE:
 * the head is buf[0..h->head_len) and the fields are set; ERROR: see h->status. After DONE or
 * ERROR it returns the same again. */
http_parse_status http_head_parse(http_head *h, const char *buf, size_t len);
/* True when buf[0..len) is no request yet but leading empty lines (the bytes before any
 * request line): used to tell an idle keep-alive connection from one mid-request. */
bool http_head_started(const http_head *h);
/* The value of the first header named name (case-insensitive), or NULL; *len its length. */
const char *http_head_get(const http_head *h, const char *buf, const char *name, size_t *len);
/* The value of the last header named name, or NULL; *len its length. */
const char *http_head_last(const http_head *h, const char *buf, const char *name, size_t *len);
/* The values of every header named name, in order, joined with sep into out[0..cap),
 * NUL-terminated, *len their length (0 and "" when there is none). False, with out "", when
 * they do not fit (RFC 9110 5.3: several fields are one list). */
bool http_head_join(const http_head *h, const char *buf, const char *name, const char *sep, char *out, size_t cap,
                    size_t *len);
/* Whether any header named name holds needle, letters compared without case. */
bool http_head_any_contains(const http_head *h, const char *buf, const char *name, const char *needle);

/* ---- chunked request bodies (RFC 9112 7.1) ----
 * Chunk sizes are 1..15 hex digits; extensions (";...") are skipped; trailer fields are read
 * and dropped. Every extension and trailer byte of the body counts against one allowance of
 * max_trailer bytes. On ERROR, status says the answer: 400 (a bad size, a missing CRLF after
 * the data, a control byte in an extension or trailer), 431 (extensions and trailers over
 * max_trailer), 413 (a chunk size that takes the body's declared total over max_body: refused
 * as soon as its size line is read, before any of its data). */
typedef struct {
    size_t max_trailer;
    uint64_t max_body;
    uint64_t total;     /* data bytes declared by the chunk sizes so far */
    uint64_t remaining; /* data bytes left in the current chunk */
    size_t trailer_bytes; /* extension and trailer bytes of the whole body */
    int status;           /* on ERROR: 400, 413 or 431 */
    int digits;
    int state;
    const char *message; /* on ERROR */
} http_chunked;

void http_chunked_init(http_chunked *c, size_t max_trailer, uint64_t max_body);
/* Reads in[0..len) up to the next piece of data or the end. Returns MORE (all of in read,
 * *used = len, no data), DONE (the body ended: *used bytes, the final CRLF included, belong to
 * it), ERROR, or — as HTTP_PARSE_MORE with *data_len > 0 — data: in[*data_off..+*data_len) is
 * body, and *used bytes were read (call again with the rest). */
http_parse_status http_chunked_feed(http_chunked *c, const char *in, size_t len, size_t *used, size_t *data_off,
                                    size_t *data_len);

#endif
