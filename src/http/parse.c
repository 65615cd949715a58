#include "http/parse.h"

#include <string.h>
#include <strings.h>

#include "util/hex.h"

/* ---- character classes (RFC 9110 5.6.2, 5.5) ---- */

static bool http_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* A field-value byte other than SP/HTAB: VCHAR or obs-text. */
static bool http_is_vbyte(unsigned char c) { return (c > 0x20 && c < 0x7f) || c >= 0x80; }

static bool http_is_blank(unsigned char c) { return c == ' ' || c == '\t'; }

/* ---- the head ---- */

enum {
    H_LEAD,       /* before the request line: empty lines may come */
    H_LEAD_LF,
    H_METHOD,
    H_TARGET0,
    H_TARGET,
    H_VERSION0,
    H_VERSION,
    H_RL_LF,
    H_LINE,       /* the start of a header line, or of the empty line */
    H_NAME,
    H_VALUE_OWS,
    H_VALUE,
    H_LINE_LF,
    H_END_LF,
    H_DONE,
    H_ERROR
};

void http_head_init(http_head *h, size_t max_bytes)
{
    memset(h, 0, sizeof *h);
    h->max_bytes = max_bytes;
    h->state = H_LEAD;
}

bool http_head_started(const http_head *h) { return h->state != H_LEAD && h->state != H_LEAD_LF; }

static http_parse_status http_head_fail(http_head *h, int status, const char *message)
{
    h->state = H_ERROR;
    h->status = status;
    h->message = message;
    return HTTP_PARSE_ERROR;
}

static bool http_span_is(const char *buf, http_span s, const char *lit)
{
    size_t n = strlen(lit);
    return s.len == n && strncasecmp(buf + s.off, lit, n) == 0;
}

/* Content-Length: 1*DIGIT, below 2^63. False when not. */
static bool http_parse_length(const char *p, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    if (n == 0)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        if (v > (UINT64_C(0x7fffffffffffffff) - (uint64_t)(p[i] - '0')) / 10)
            return false;
        v = v * 10 + (uint64_t)(p[i] - '0');
    }
    *out = v;
    return true;
}

/* Connection: a comma-separated list of tokens; close and keep-alive are the ones read. */
static void http_read_connection(http_head *h, const char *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (p[i] == ',' || http_is_blank((unsigned char)p[i])))
            i++;
        size_t s = i;
        while (i < n && p[i] != ',' && !http_is_blank((unsigned char)p[i]))
            i++;
        if (i - s == 5 && strncasecmp(p + s, "close", 5) == 0)
            h->conn_close = true;
        else if (i - s == 10 && strncasecmp(p + s, "keep-alive", 10) == 0)
            h->conn_keep = true;
    }
}

/* One header line is complete: store it and read the headers the framing depends on. */
static http_parse_status http_head_field(http_head *h, const char *buf, http_span name, http_span value)
{
    if (h->n_headers == HTTP_PARSE_MAX_HEADERS)
        return http_head_fail(h, 431, "more than 100 header lines");
    h->headers[h->n_headers].name = name;
    h->headers[h->n_headers].value = value;
    h->n_headers++;
    const char *v = buf + value.off;
    if (http_span_is(buf, name, "content-length")) {
        uint64_t n = 0;
        if (!http_parse_length(v, value.len, &n))
            return http_head_fail(h, 400, "invalid Content-Length: digits only, below 2^63");
        if (h->has_length && n != h->content_length)
            return http_head_fail(h, 400, "two Content-Length headers with different values");
        h->has_length = true;
        h->content_length = n;
    } else if (http_span_is(buf, name, "transfer-encoding")) {
        if (h->te_seen || !http_span_is(buf, value, "chunked"))
            h->te_bad = true;
        h->te_seen = true;
        h->has_te = true;
    } else if (http_span_is(buf, name, "connection")) {
        http_read_connection(h, v, value.len);
    } else if (http_span_is(buf, name, "expect")) {
        if (http_span_is(buf, value, "100-continue"))
            h->expect_continue = true;
    }
    return HTTP_PARSE_MORE;
}

/* The empty line ended the head: the checks that need every header. */
static http_parse_status http_head_finish(http_head *h)
{
    if (h->has_te && h->has_length)
        return http_head_fail(h, 400, "Content-Length together with Transfer-Encoding");
    if (h->has_te && h->minor == 0)
        return http_head_fail(h, 400, "Transfer-Encoding in an HTTP/1.0 request");
    if (h->te_bad)
        return http_head_fail(h, 501, "Transfer-Encoding other than \"chunked\" is not implemented");
    h->chunked = h->has_te;
    h->keep_alive = h->minor == 1 ? !h->conn_close : h->conn_keep && !h->conn_close;
    h->state = H_DONE;
    return HTTP_PARSE_DONE;
}

/* The version at buf[s]: HTTP/1.1 and HTTP/1.0 are served, any other HTTP/d.d is 505. */
static http_parse_status http_head_version(http_head *h, const char *buf, http_span s)
{
    const char *v = buf + s.off;
    bool shaped = s.len == 8 && memcmp(v, "HTTP/", 5) == 0 && v[5] >= '0' && v[5] <= '9' && v[6] == '.' &&
                  v[7] >= '0' && v[7] <= '9';
    if (!shaped)
        return http_head_fail(h, 400, "bad HTTP version in the request line");
    if (v[5] != '1' || (v[7] != '0' && v[7] != '1'))
        return http_head_fail(h, 505, "HTTP version not supported: use HTTP/1.1 or HTTP/1.0");
    h->minor = v[7] - '0';
    return HTTP_PARSE_MORE;
}

static http_span http_span_of(size_t from, size_t to)
{
    http_span s = {.off = (uint32_t)from, .len = (uint32_t)(to - from)};
    return s;
}

/* One byte in the request line's or a header's place that no rule allows. */
static http_parse_status http_head_bad_byte(http_head *h, unsigned char c, bool request_line)
{
    if (c == '\0')
        return http_head_fail(h, 400, request_line ? "a NUL byte in the request line" : "a NUL byte in a header");
    if (c == '\r' || c == '\n')
        return http_head_fail(h, 400, request_line ? "a bare CR or LF in the request line"
                                                   : "a bare CR or LF in a header");
    return http_head_fail(h, 400, request_line ? "malformed request line" : "malformed header line");
}

http_parse_status http_head_parse(http_head *h, const char *buf, size_t len)
{
    if (h->state == H_DONE)
        return HTTP_PARSE_DONE;
    if (h->state == H_ERROR)
        return HTTP_PARSE_ERROR;
    http_parse_status st = HTTP_PARSE_MORE;
    for (size_t i = h->pos; i < len && st == HTTP_PARSE_MORE; i++) {
        unsigned char c = (unsigned char)buf[i];
        h->pos = i + 1;
        if (i >= h->max_bytes)
            return http_head_fail(h, 431, "the request line and headers are over the header cap");
        switch (h->state) {
        case H_LEAD:
            if (c == '\n')
                break; /* an empty line ended by a bare LF */
            if (c == '\r') {
                h->state = H_LEAD_LF;
            } else if (http_is_tchar(c)) {
                h->start = h->mark = i;
                h->state = H_METHOD;
            } else {
                st = http_head_bad_byte(h, c, true);
            }
            break;
        case H_LEAD_LF:
            if (c == '\n')
                h->state = H_LEAD;
            else
                st = http_head_bad_byte(h, c, true);
            break;
        case H_METHOD:
            if (c == ' ') {
                h->method = http_span_of(h->mark, i);
                h->state = H_TARGET0;
            } else if (!http_is_tchar(c)) {
                st = http_head_bad_byte(h, c, true);
            } else if (i - h->mark >= HTTP_PARSE_MAX_METHOD) {
                st = http_head_fail(h, 400, "method name too long");
            }
            break;
        case H_TARGET0:
            if (c == ' ')
                break; /* more spaces between method and target (RFC 9112 3) */
            h->mark = i;
            h->state = H_TARGET;
            /* fall through */
        case H_TARGET:
            if (c == ' ') {
                h->target = http_span_of(h->mark, i);
                h->state = H_VERSION0;
            } else if (c <= 0x20 || c >= 0x7f) {
                st = http_head_bad_byte(h, c, true);
            } else if (i - h->mark >= HTTP_PARSE_MAX_TARGET) {
                st = http_head_fail(h, 414, "request target over 8192 bytes");
            }
            break;
        case H_VERSION0:
            if (c == ' ')
                break;
            h->mark = i;
            h->state = H_VERSION;
            /* fall through */
        case H_VERSION:
            if (c == '\r' || c == '\n') {
                st = http_head_version(h, buf, http_span_of(h->mark, i));
                if (st == HTTP_PARSE_MORE)
                    h->state = c == '\r' ? H_RL_LF : H_LINE;
            } else if (c <= 0x20 || c >= 0x7f) {
                st = http_head_bad_byte(h, c, true);
            } else if (i - h->mark >= 8) {
                st = http_head_fail(h, 400, "bad HTTP version in the request line");
            }
            break;
        case H_RL_LF:
            if (c == '\n')
                h->state = H_LINE;
            else
                st = http_head_bad_byte(h, c, true);
            break;
        case H_LINE:
            if (c == '\r') {
                h->state = H_END_LF;
            } else if (c == '\n') { /* the empty line, ended by a bare LF */
                h->head_len = i + 1;
                st = http_head_finish(h);
            } else if (http_is_tchar(c)) {
                h->mark = i;
                h->state = H_NAME;
            } else if (http_is_blank(c)) {
                st = http_head_fail(h, 400, "obsolete line folding (a header line starting with a space or tab)");
            } else {
                st = http_head_bad_byte(h, c, false);
            }
            break;
        case H_NAME:
            if (c == ':') {
                h->name = http_span_of(h->mark, i);
                h->state = H_VALUE_OWS;
            } else if (http_is_blank(c)) {
                st = http_head_fail(h, 400, "whitespace between a header name and its colon");
            } else if (!http_is_tchar(c)) {
                st = http_head_bad_byte(h, c, false);
            }
            break;
        case H_VALUE_OWS:
            if (http_is_blank(c))
                break;
            h->mark = h->value_end = i;
            h->state = H_VALUE;
            /* fall through */
        case H_VALUE:
            if (c == '\r' || c == '\n') {
                st = http_head_field(h, buf, h->name, http_span_of(h->mark, h->value_end));
                if (st == HTTP_PARSE_MORE)
                    h->state = c == '\r' ? H_LINE_LF : H_LINE;
            } else if (http_is_vbyte(c)) {
                h->value_end = i + 1;
            } else if (!http_is_blank(c)) {
                st = http_head_bad_byte(h, c, false);
            }
            break;
        case H_LINE_LF:
            if (c == '\n')
                h->state = H_LINE;
            else
                st = http_head_bad_byte(h, c, false);
            break;
        case H_END_LF:
            if (c == '\n') {
                h->head_len = i + 1;
                st = http_head_finish(h);
            } else {
                st = http_head_bad_byte(h, c, false);
            }
            break;
        default:
            st = http_head_fail(h, 400, "malformed request");
            break;
        }
    }
    return st;
}

const char *http_head_get(const http_head *h, const char *buf, const char *name, size_t *len)
{
    for (size_t i = 0; i < h->n_headers; i++)
        if (http_span_is(buf, h->headers[i].name, name)) {
            *len = h->headers[i].value.len;
            return buf + h->headers[i].value.off;
        }
    *len = 0;
    return NULL;
}

const char *http_head_last(const http_head *h, const char *buf, const char *name, size_t *len)
{
    for (size_t i = h->n_headers; i-- > 0;)
        if (http_span_is(buf, h->headers[i].name, name)) {
            *len = h->headers[i].value.len;
            return buf + h->headers[i].value.off;
        }
    *len = 0;
    return NULL;
}

bool http_head_join(const http_head *h, const char *buf, const char *name, const char *sep, char *out, size_t cap,
                    size_t *len)
{
    size_t o = 0, sep_len = strlen(sep);
    for (size_t i = 0; i < h->n_headers; i++) {
        const http_header_span *f = &h->headers[i];
        if (!http_span_is(buf, f->name, name))
            continue;
        if (o + (o > 0 ? sep_len : 0) + f->value.len >= cap) {
            out[0] = '\0';
            *len = 0;
            return false;
        }
        if (o > 0) {
            memcpy(out + o, sep, sep_len);
            o += sep_len;
        }
        memcpy(out + o, buf + f->value.off, f->value.len);
        o += f->value.len;
    }
    out[o] = '\0';
    *len = o;
    return true;
}

bool http_head_any_contains(const http_head *h, const char *buf, const char *name, const char *needle)
{
    size_t needle_len = strlen(needle);
    for (size_t i = 0; i < h->n_headers; i++) {
        const http_header_span *f = &h->headers[i];
        if (!http_span_is(buf, f->name, name))
            continue;
        for (size_t j = 0; j + needle_len <= f->value.len; j++)
            if (strncasecmp(buf + f->value.off + j, needle, needle_len) == 0)
                return true;
    }
    return false;
}

/* ---- chunked bodies ---- */

enum {
    C_SIZE0,
    C_SIZE,
    C_SIZE_WS,
    C_EXT,
    C_SIZE_LF,
    C_DATA,
    C_DATA_CR,
    C_DATA_LF,
    C_TRAILER0,
    C_TRAILER,
    C_TRAILER_LF,
    C_END_LF,
    C_DONE,
    C_ERROR
};

#define HTTP_CHUNK_MAX_DIGITS 15 /* 2^60 bytes: no overflow, far above any cap */

void http_chunked_init(http_chunked *c, size_t max_trailer, uint64_t max_body)
{
    memset(c, 0, sizeof *c);
    c->max_trailer = max_trailer;
    c->max_body = max_body;
    c->state = C_SIZE0;
}

static http_parse_status http_chunked_fail_as(http_chunked *c, int status, const char *message)
{
    c->state = C_ERROR;
    c->status = status;
    c->message = message;
    return HTTP_PARSE_ERROR;
}

static http_parse_status http_chunked_fail(http_chunked *c, const char *message)
{
    return http_chunked_fail_as(c, 400, message);
}

/* The size line of a chunk is read: over the body cap, it is refused before its data. */
static http_parse_status http_chunked_sized(http_chunked *c, int next_state)
{
    if (c->remaining > c->max_body - c->total)
        return http_chunked_fail_as(c, 413, "a chunk size takes the body over RAGD_MAX_BODY_BYTES");
    c->total += c->remaining;
    c->state = next_state;
    return HTTP_PARSE_MORE;
}

/* A byte of a chunk extension or a trailer line: HTAB, SP, VCHAR, obs-text. */
static bool http_is_line_byte(unsigned char b) { return b == '\t' || b >= 0x20 ? b != 0x7f : false; }

http_parse_status http_chunked_feed(http_chunked *c, const char *in, size_t len, size_t *used, size_t *data_off,
                                    size_t *data_len)
{
    *data_len = 0;
    *data_off = 0;
    *used = 0;
    if (c->state == C_DONE)
        return HTTP_PARSE_DONE;
    if (c->state == C_ERROR)
        return HTTP_PARSE_ERROR;
    for (size_t i = 0; i < len; i++) {
        unsigned char b = (unsigned char)in[i];
        *used = i + 1;
        int hex = hex_digit_value(b);
        switch (c->state) {
        case C_SIZE0:
            if (hex < 0)
                return http_chunked_fail(c, "bad chunk size");
            c->remaining = (uint64_t)hex;
            c->digits = 1;
            c->state = C_SIZE;
            break;
        case C_SIZE:
            if (hex >= 0) {
                if (++c->digits > HTTP_CHUNK_MAX_DIGITS)
                    return http_chunked_fail(c, "bad chunk size: too many digits");
                c->remaining = c->remaining * 16 + (uint64_t)hex;
            } else if (b == ';' || http_is_blank(b) || b == '\r') {
                if (http_chunked_sized(c, b == ';' ? C_EXT : b == '\r' ? C_SIZE_LF : C_SIZE_WS) != HTTP_PARSE_MORE)
                    return HTTP_PARSE_ERROR;
            } else {
                return http_chunked_fail(c, "bad chunk size");
            }
            break;
        case C_SIZE_WS:
            if (b == ';')
                c->state = C_EXT;
            else if (!http_is_blank(b))
                return http_chunked_fail(c, "bad chunk size");
            break;
        case C_EXT:
            if (b == '\r')
                c->state = C_SIZE_LF;
            else if (!http_is_line_byte(b))
                return http_chunked_fail(c, "a control byte in a chunk extension");
            else if (++c->trailer_bytes > c->max_trailer)
                return http_chunked_fail_as(c, 431, "chunk extensions and trailers over the header cap");
            break;
        case C_SIZE_LF:
            if (b != '\n')
                return http_chunked_fail(c, "chunk size line not ended by CRLF");
            c->state = c->remaining == 0 ? C_TRAILER0 : C_DATA;
            break;
        case C_DATA: {
            size_t avail = len - i;
            size_t n = c->remaining < avail ? (size_t)c->remaining : avail;
            c->remaining -= n;
            if (c->remaining == 0)
                c->state = C_DATA_CR;
            *data_off = i;
            *data_len = n;
            *used = i + n;
            return HTTP_PARSE_MORE;
        }
        case C_DATA_CR:
            if (b != '\r')
                return http_chunked_fail(c, "chunk data longer than its size");
            c->state = C_DATA_LF;
            break;
        case C_DATA_LF:
            if (b != '\n')
                return http_chunked_fail(c, "chunk data not ended by CRLF");
            c->state = C_SIZE0;
            break;
        case C_TRAILER0:
            if (b == '\r') {
                c->state = C_END_LF;
                break;
            }
            if (!http_is_tchar(b))
                return http_chunked_fail(c, "malformed trailer field");
            c->state = C_TRAILER;
            /* fall through */
        case C_TRAILER:
            if (++c->trailer_bytes > c->max_trailer)
                return http_chunked_fail_as(c, 431, "chunk extensions and trailers over the header cap");
            if (b == '\r')
                c->state = C_TRAILER_LF;
            else if (!http_is_line_byte(b))
                return http_chunked_fail(c, "a control byte in a trailer field");
            break;
        case C_TRAILER_LF:
            if (b != '\n')
                return http_chunked_fail(c, "trailer line not ended by CRLF");
            c->state = C_TRAILER0;
            break;
        case C_END_LF:
            if (b != '\n')
                return http_chunked_fail(c, "chunked body not ended by CRLF");
            c->state = C_DONE;
            return HTTP_PARSE_DONE;
        default:
            return http_chunked_fail(c, "malformed chunked body");
        }
    }
    return HTTP_PARSE_MORE;
}
