#ifndef RAGD_UTIL_STRBUF_H
#define RAGD_UTIL_STRBUF_H

#include <stddef.h>

#include "util/err.h"

/* A growable byte buffer with a hard cap (curl's dynbuf idea). The content is always
 * NUL-terminated. Appends that would pass `cap` fail with RAGD_ETOOBIG and leave the
 * buffer as it was. Storage is caller-provided: strbuf_init / strbuf_cleanup. */
typedef struct {
    char *data;
    size_t len;
    size_t alloc;
    size_t cap;
} strbuf;

void strbuf_init(strbuf *sb, size_t cap);
void strbuf_cleanup(strbuf *sb);
ragd_err strbuf_append(strbuf *sb, const void *p, size_t n);
ragd_err strbuf_appends(strbuf *sb, const char *s);
ragd_err strbuf_appendf(strbuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Makes room for `extra` more bytes (and the NUL) without changing the content, so that
 * appends up to that much do not reallocate (and copy) on the way. RAGD_ETOOBIG past the
 * cap, RAGD_ENOMEM; the buffer is unchanged on failure. */
ragd_err strbuf_reserve(strbuf *sb, size_t extra);
/* The allocation (room and NUL) the buffer would have after strbuf_reserve(sb, extra):
 * sb->alloc when it needs no growth, 0 when extra would pass the cap. Nothing changes. */
size_t strbuf_alloc_after(const strbuf *sb, size_t extra);
/* Empties the buffer, keeping its storage. */
void strbuf_reset(strbuf *sb);
/* Cuts the content back to its first len bytes (len <= sb->len; no-op otherwise). */
void strbuf_truncate(strbuf *sb, size_t len);
/* Hands the (NUL-terminated, possibly NULL when empty) storage to the caller and
 * re-initialises the buffer. The caller frees the result. */
char *strbuf_detach(strbuf *sb, size_t *len);

#endif
