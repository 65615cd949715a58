/* A Server-Sent Events parser (the WHATWG event-stream format), used by `ragd query
 * --stream` and by the OpenAI-compatible backend. Bytes arrive in arbitrary pieces; lines and
 * each event's data are held in capped buffers. */
#include "util/sse.h"

#include <string.h>

void sse_init(sse_parser *s, size_t cap, sse_fn fn, void *ud)
{
    memset(s, 0, sizeof *s);
    strbuf_init(&s->line, cap);
    strbuf_init(&s->data, cap);
    s->fn = fn;
    s->ud = ud;
}

void sse_cleanup(sse_parser *s)
{
    strbuf_cleanup(&s->line);
    strbuf_cleanup(&s->data);
}

/* An empty line: hand over the event when it had data, then start a new one. */
static ragd_err sse_dispatch(sse_parser *s)
{
    ragd_err e = RAGD_OK;
    if (s->has_data) {
        const char *name = s->event[0] ? s->event : "message";
        const char *data = s->data.data ? s->data.data : "";
        if (!s->fn(name, data, s->data.len, s->ud))
            e = RAGD_ECLOSED;
    }
    s->event[0] = '\0';
    s->has_data = false;
    strbuf_reset(&s->data);
    return e;
}

static ragd_err sse_line(sse_parser *s)
{
    const char *line = s->line.data ? s->line.data : "";
    size_t n = s->line.len;
    if (n == 0)
        return sse_dispatch(s);
    if (line[0] == ':')
        return RAGD_OK; /* a comment, e.g. a keep-alive */
    const char *colon = memchr(line, ':', n);
    size_t flen = colon ? (size_t)(colon - line) : n;
    const char *val = colon ? colon + 1 : line + n;
    size_t vlen = n - (size_t)(val - line);
    if (vlen > 0 && val[0] == ' ') {
        val++;
        vlen--;
    }
    if (flen == 5 && memcmp(line, "event", 5) == 0) {
        size_t c = vlen < sizeof s->event - 1 ? vlen : sizeof s->event - 1;
        memcpy(s->event, val, c);
        s->event[c] = '\0';
    } else if (flen == 4 && memcmp(line, "data", 4) == 0) {
        ragd_err e = RAGD_OK;
        if (s->has_data)
            e = strbuf_append(&s->data, "\n", 1);
        if (!e)
            e = strbuf_append(&s->data, val, vlen);
        if (e)
            return e;
        s->has_data = true;
    }
    /* "id", "retry" and unknown fields are ignored. */
    return RAGD_OK;
}

ragd_err sse_feed(sse_parser *s, const char *p, size_t n)
{
    if (s->failed)
        return RAGD_ECLOSED;
    size_t i = 0;
    ragd_err e = RAGD_OK;
    while (i < n && !e) {
        if (s->after_cr && p[i] == '\n') {
            s->after_cr = false; /* the second half of a \r\n */
            i++;
            continue;
        }
        s->after_cr = false;
        size_t j = i;
        while (j < n && p[j] != '\n' && p[j] != '\r')
            j++;
        e = strbuf_append(&s->line, p + i, j - i);
        if (e || j == n)
            break;
        s->after_cr = p[j] == '\r';
        e = sse_line(s);
        strbuf_reset(&s->line);
        i = j + 1;
    }
    if (e)
        s->failed = true;
    return e;
}
