#include "util/strbuf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void strbuf_init(strbuf *sb, size_t cap)
{
    sb->data = NULL;
    sb->len = 0;
    sb->alloc = 0;
    sb->cap = cap;
}

void strbuf_cleanup(strbuf *sb)
{
    free(sb->data);
    strbuf_init(sb, sb->cap);
}

size_t strbuf_alloc_after(const strbuf *sb, size_t extra)
{
    if (extra > sb->cap || sb->len > sb->cap - extra)
        return 0;
    size_t need = sb->len + extra + 1;
    if (need <= sb->alloc)
        return sb->alloc;
    size_t grow = sb->alloc ? sb->alloc : 64;
    while (grow < need)
        grow *= 2;
    if (grow > sb->cap + 1)
        grow = sb->cap + 1;
    return grow;
}

ragd_err strbuf_reserve(strbuf *sb, size_t extra)
{
    size_t grow = strbuf_alloc_after(sb, extra);
    if (grow == 0)
        return RAGD_ETOOBIG;
    if (grow == sb->alloc)
        return RAGD_OK;
    char *p = realloc(sb->data, grow);
    if (!p)
        return RAGD_ENOMEM;
    sb->data = p;
    sb->alloc = grow;
    return RAGD_OK;
}

ragd_err strbuf_append(strbuf *sb, const void *p, size_t n)
{
    ragd_err e = strbuf_reserve(sb, n);
    if (e)
        return e;
    if (n)
        memcpy(sb->data + sb->len, p, n);
    sb->len += n;
    sb->data[sb->len] = '\0';
    return RAGD_OK;
}

ragd_err strbuf_appends(strbuf *sb, const char *s) { return strbuf_append(sb, s, strlen(s)); }

ragd_err strbuf_appendf(strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0)
        return RAGD_EINVAL;
    ragd_err e = strbuf_reserve(sb, (size_t)n);
    if (e)
        return e;
    va_start(ap, fmt);
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
    return RAGD_OK;
}

void strbuf_reset(strbuf *sb)
{
    sb->len = 0;
    if (sb->data)
        sb->data[0] = '\0';
}

void strbuf_truncate(strbuf *sb, size_t len)
{
    if (len >= sb->len)
        return;
    sb->len = len;
    sb->data[len] = '\0';
}

char *strbuf_detach(strbuf *sb, size_t *len)
{
    char *p = sb->data;
    if (len)
        *len = sb->len;
    strbuf_init(sb, sb->cap);
    return p;
}
