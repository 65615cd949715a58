/* libFuzzer target: the NDJSON line splitter (util/lines.c). Byte 0 picks the line cap
 * (1..256 bytes, or 1 MiB); the rest is the stream, fed whole and again in pieces of
 * varying length. Checks: both feeds give the same lines and the same result; each line is
 * NUL-terminated, holds no '\n', does not end in '\r', and is within the cap; the lines
 * are exactly those of a reference split of the whole input. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "util/lines.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_LINES 4096

typedef struct {
    strbuf all; /* every line, each followed by a 0xFF separator */
    size_t n;
    size_t cap;
} fz_lines;

static int fz_on_line(const char *line, size_t len, void *arg)
{
    fz_lines *l = arg;
    if (line[len] != '\0' || memchr(line, '\n', len) || len > l->cap)
        abort();
    if (strbuf_append(&l->all, line, len) != RAGD_OK || strbuf_append(&l->all, "\xff", 1) != RAGD_OK)
        abort();
    return ++l->n >= FZ_MAX_LINES; /* stop: the callback's stop is part of the contract too */
}

static ragd_err fz_run(const char *p, size_t n, size_t cap, uint32_t seed, fz_lines *out)
{
    lines_parser lp;
    strbuf_init(&out->all, (size_t)64 << 20);
    out->n = 0;
    out->cap = cap;
    lines_init(&lp, cap, fz_on_line, out);
    ragd_err e = RAGD_OK;
    size_t off = 0;
    while (off < n && !e) {
        size_t take = seed ? fz_piece(&seed, 64) : n;
        if (take > n - off)
            take = n - off;
        e = lines_feed(&lp, p + off, take);
        off += take;
    }
    if (!e)
        e = lines_finish(&lp);
    else if (lines_feed(&lp, "x\n", 2) != RAGD_ECLOSED) /* a failed parser refuses more */
        abort();
    lines_cleanup(&lp);
    return e;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t cap = data[0] == 0xFF ? (size_t)1 << 20 : 1 + (size_t)data[0];
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    fz_lines whole, pieces;
    ragd_err e1 = fz_run(p, n, cap, 0, &whole);
    ragd_err e2 = fz_run(p, n, cap, fz_seed(data, size) | 1u, &pieces);
    if (e1 != e2 || whole.n != pieces.n || whole.all.len != pieces.all.len ||
        (whole.all.len && memcmp(whole.all.data, pieces.all.data, whole.all.len) != 0))
        abort();
    if (e1 == RAGD_OK) { /* the reference: split at '\n', drop one trailing '\r' per line */
        size_t at = 0, start = 0;
        for (size_t i = 0; i <= n; i++) {
            if (i < n && p[i] != '\n')
                continue;
            if (i == n && i == start)
                break;
            size_t len = i - start;
            if (len && p[start + len - 1] == '\r')
                len--;
            if (at + len + 1 > whole.all.len || memcmp(whole.all.data + at, p + start, len) != 0 ||
                (unsigned char)whole.all.data[at + len] != 0xFF)
                abort();
            at += len + 1;
            start = i + 1;
        }
        if (at != whole.all.len)
            abort();
    }
    strbuf_cleanup(&whole.all);
    strbuf_cleanup(&pieces.all);
    return 0;
}
