/* libFuzzer target: the Server-Sent Events parser (util/sse.c). Byte 0 picks the cap
 * (1..256 bytes, or 1 MiB); the rest is the stream, fed whole and again in pieces of
 * varying length. Checks: both feeds give the same events (name and data) and the same
 * result — the parser must not depend on where the network cut the bytes (a "\r\n" split
 * in two included); each event's data is NUL-terminated and within the cap; the name is
 * never empty. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "util/sse.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_EVENTS 4096

typedef struct {
    strbuf all; /* name 0xFE data 0xFF, per event */
    size_t n;
    size_t cap;
} fz_events;

static bool fz_on_event(const char *event, const char *d, size_t len, void *ud)
{
    fz_events *ev = ud;
    if (!event || !event[0] || d[len] != '\0' || len > ev->cap)
        abort();
    if (strbuf_appends(&ev->all, event) || strbuf_append(&ev->all, "\xfe", 1) || strbuf_append(&ev->all, d, len) ||
        strbuf_append(&ev->all, "\xff", 1))
        abort();
    return ++ev->n < FZ_MAX_EVENTS;
}

static ragd_err fz_run(const char *p, size_t n, size_t cap, uint32_t seed, fz_events *out)
{
    sse_parser s;
    strbuf_init(&out->all, (size_t)64 << 20);
    out->n = 0;
    out->cap = cap;
    sse_init(&s, cap, fz_on_event, out);
    ragd_err e = RAGD_OK;
    size_t off = 0;
    while (off < n && !e) {
        size_t take = seed ? fz_piece(&seed, 64) : n;
        if (take > n - off)
            take = n - off;
        e = sse_feed(&s, p + off, take);
        off += take;
    }
    if (e && sse_feed(&s, "data: x\n\n", 9) == RAGD_OK) /* a failed parser refuses more */
        abort();
    sse_cleanup(&s);
    return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cap = data[0] == 0xFF ? (size_t)1 << 20 : 1 + (size_t)data[0];
    fz_events whole, pieces;
    ragd_err e1 = fz_run((const char *)data + 1, size - 1, cap, 0, &whole);
    ragd_err e2 = fz_run((const char *)data + 1, size - 1, cap, fz_seed(data, size) | 1u, &pieces);
    if (e1 != e2 || whole.n != pieces.n || whole.all.len != pieces.all.len ||
        (whole.all.len && memcmp(whole.all.data, pieces.all.data, whole.all.len) != 0))
        abort();
    strbuf_cleanup(&whole.all);
    strbuf_cleanup(&pieces.all);
    return 0;
}
