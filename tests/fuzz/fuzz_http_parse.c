/* libFuzzer target: the strict HTTP/1.1 request parser (http/parse.h). Byte 0 picks how the
 * rest is split into pieces (the parser must give the same answer however the bytes arrive);
 * the rest is the request. A head that parses is checked (every span inside it, a refusal
 * status from the documented set) and the bytes after it go through the chunked decoder when
 * the head says chunked. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/parse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_CAP 4096

static http_parse_status fz_head(const char *buf, size_t len, unsigned step, http_head *h)
{
    http_head_init(h, FZ_CAP);
    http_parse_status st = HTTP_PARSE_MORE;
    size_t have = 0;
    while (st == HTTP_PARSE_MORE && have < len) {
        have = step == 0 || have + step > len ? len : have + step;
        st = http_head_parse(h, buf, have);
    }
    return st;
}

static void fz_span(http_span s, size_t len)
{
    if ((size_t)s.off + s.len > len)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned step = data[0] % 8; /* 0 = all at once */
    const char *buf = (const char *)data + 1;
    size_t len = size - 1;
    http_head whole, split;
    http_parse_status a = fz_head(buf, len, 0, &whole);
    http_parse_status b = fz_head(buf, len, step, &split);
    if (a != b || (a == HTTP_PARSE_ERROR && whole.status != split.status))
        abort();
    if (a == HTTP_PARSE_ERROR) {
        int s = whole.status;
        if ((s != 400 && s != 414 && s != 431 && s != 501 && s != 505) || !whole.message)
            abort();
        return 0;
    }
    if (a != HTTP_PARSE_DONE)
        return 0;
    if (whole.head_len > len || whole.head_len > FZ_CAP || whole.n_headers > HTTP_PARSE_MAX_HEADERS ||
        whole.head_len != split.head_len || whole.minor < 0 || whole.minor > 1 || (whole.chunked && whole.has_length))
        abort();
    fz_span(whole.method, whole.head_len);
    fz_span(whole.target, whole.head_len);
    if (whole.target.len == 0 || whole.target.len > HTTP_PARSE_MAX_TARGET)
        abort();
    for (size_t i = 0; i < whole.n_headers; i++) {
        fz_span(whole.headers[i].name, whole.head_len);
        fz_span(whole.headers[i].value, whole.head_len);
        if (memchr(buf + whole.headers[i].value.off, '\0', whole.headers[i].value.len))
            abort();
    }
    if (!whole.chunked)
        return 0;
    http_chunked c;
    http_chunked_init(&c, 256, UINT64_MAX);
    const char *body = buf + whole.head_len;
    size_t blen = len - whole.head_len, pos = 0, data_total = 0;
    http_parse_status st = HTTP_PARSE_MORE;
    while (st == HTTP_PARSE_MORE && pos < blen) {
        size_t piece = step == 0 ? blen - pos : (blen - pos < step ? blen - pos : step);
        size_t used = 0, off = 0, n = 0;
        st = http_chunked_feed(&c, body + pos, piece, &used, &off, &n);
        if (used > piece || off + n > used || (st == HTTP_PARSE_MORE && used == 0 && piece > 0))
            abort();
        data_total += n;
        pos += used;
    }
    if (data_total > blen || (st == HTTP_PARSE_ERROR && !c.message))
        abort();
    return 0;
}
