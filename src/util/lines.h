#ifndef RAGD_UTIL_LINES_H
#define RAGD_UTIL_LINES_H

/* Splits a byte stream that arrives in arbitrary pieces into '\n'-terminated lines (a
 * trailing '\r' is dropped), with a cap on one line: the NDJSON framing of Ollama's streams. */
#include <stdbool.h>
#include <stddef.h>

#include "util/strbuf.h"

/* Called per line (without its terminator, NUL-terminated); return non-zero to stop. */
typedef int (*lines_fn)(const char *line, size_t len, void *arg);

typedef struct {
    strbuf line;
    lines_fn fn;
    void *arg;
    bool failed;
} lines_parser;

void lines_init(lines_parser *lp, size_t cap, lines_fn fn, void *arg);
void lines_cleanup(lines_parser *lp);
/* RAGD_ETOOBIG when a line passes the cap, RAGD_ECLOSED when the callback stopped (or an
 * earlier feed failed), else RAGD_OK. */
ragd_err lines_feed(lines_parser *lp, const char *p, size_t n);
/* End of stream: hands over a last line that had no '\n'. */
ragd_err lines_finish(lines_parser *lp);

#endif
