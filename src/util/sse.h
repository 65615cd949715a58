#ifndef RAGD_UTIL_SSE_H
#define RAGD_UTIL_SSE_H

/* Server-Sent Events parsing (the WHATWG event-stream format) with capped buffers. */
#include <stdbool.h>
#include <stddef.h>

#include "util/strbuf.h"

/* Called per complete event; `data` is the joined data lines (NUL-terminated); returns false
 * to stop. */
typedef bool (*sse_fn)(const char *event, const char *data, size_t len, void *ud);

typedef struct {
    strbuf line;  /* the line being read, capped at the cap given to sse_init */
    strbuf data;  /* data of the event being read, capped at the cap given to sse_init */
    char event[64];
    bool has_data; /* a data line was seen for the event being read */
    bool after_cr; /* the previous byte was '\r' (so a '\n' right after it ends nothing) */
    bool failed;   /* a cap was passed or the callback stopped: feed refuses more */
    sse_fn fn;
    void *ud;
} sse_parser;

/* cap bounds one line and one event's data, in bytes. */
void sse_init(sse_parser *s, size_t cap, sse_fn fn, void *ud);
void sse_cleanup(sse_parser *s);
/* Parses the next n bytes (lines end in \n, \r\n or \r). Returns RAGD_ETOOBIG when a line or an
 * event's data passes the cap, RAGD_ECLOSED when the callback stopped, RAGD_OK otherwise. */
ragd_err sse_feed(sse_parser *s, const char *p, size_t n);

#endif
