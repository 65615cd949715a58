#include "util/lines.h"

#include <string.h>

void lines_init(lines_parser *lp, size_t cap, lines_fn fn, void *arg)
{
    strbuf_init(&lp->line, cap);
    lp->fn = fn;
    lp->arg = arg;
    lp->failed = false;
}

void lines_cleanup(lines_parser *lp) { strbuf_cleanup(&lp->line); }

static ragd_err lines_emit(lines_parser *lp)
{
    size_t n = lp->line.len;
    if (n && lp->line.data[n - 1] == '\r')
        lp->line.data[--n] = '\0';
    int stop = lp->fn(lp->line.data ? lp->line.data : "", n, lp->arg);
    strbuf_reset(&lp->line);
    return stop ? RAGD_ECLOSED : RAGD_OK;
}

ragd_err lines_feed(lines_parser *lp, const char *p, size_t n)
{
    if (lp->failed)
        return RAGD_ECLOSED;
    ragd_err e = RAGD_OK;
    while (n > 0 && !e) {
        const char *nl = memchr(p, '\n', n);
        size_t take = nl ? (size_t)(nl - p) : n;
        e = strbuf_append(&lp->line, p, take);
        if (!e && nl)
            e = lines_emit(lp);
        take += nl ? 1 : 0;
        p += take;
        n -= take;
    }
    if (e)
        lp->failed = true;
    return e;
}

ragd_err lines_finish(lines_parser *lp)
{
    if (lp->failed)
        return RAGD_ECLOSED;
    return lp->line.len ? lines_emit(lp) : RAGD_OK;
}
