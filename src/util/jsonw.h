#ifndef RAGD_UTIL_JSONW_H
#define RAGD_UTIL_JSONW_H

/* A JSON writer: text written straight into a capped strbuf, for the responses of the hot
 * path (a query's passages), where building a jansson tree and dumping it cost more than
 * the retrieval (docs/internals/http.md). Not a parser: ragd still reads JSON with jansson.
 *
 * The caller writes a well-formed structure (begin/end pairs, a key before each member);
 * commas are the writer's. Strings are escaped here and must be valid UTF-8 (everything
 * ragd stores is); jsonw_raw copies text that is already JSON (a stored metadata object).
 * A failure — the buffer's cap, or no memory — is sticky: the later calls do nothing and
 * jsonw_status says whether the text is whole. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"
#include "util/strbuf.h"

#define JSONW_MAX_DEPTH 16

typedef struct {
    strbuf *sb;
    ragd_err err;
    int depth;
    bool need_comma[JSONW_MAX_DEPTH + 1];
} jsonw;

void jsonw_init(jsonw *w, strbuf *sb);
ragd_err jsonw_status(const jsonw *w);

void jsonw_object_begin(jsonw *w);
void jsonw_object_end(jsonw *w);
void jsonw_array_begin(jsonw *w);
void jsonw_array_end(jsonw *w);
/* A member's name, inside an object; its value follows. */
void jsonw_key(jsonw *w, const char *key);

void jsonw_string(jsonw *w, const char *s);         /* NULL writes null */
void jsonw_stringn(jsonw *w, const char *s, size_t n);
void jsonw_null(jsonw *w);
void jsonw_bool(jsonw *w, bool b);
void jsonw_int(jsonw *w, int64_t v);
void jsonw_double(jsonw *w, double v); /* as jansson writes it (%.17g, ".0" kept); NaN/inf: null */
void jsonw_raw(jsonw *w, const char *json); /* JSON text as it is (the caller vouches for it) */

/* The bytes jsonw_string(w, s) writes for s (quotes and escapes included; 4 for NULL): for
 * callers that fit a response under a cap before writing it. */
size_t jsonw_string_size(const char *s);

#endif
