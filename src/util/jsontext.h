#ifndef RAGD_UTIL_JSONTEXT_H
#define RAGD_UTIL_JSONTEXT_H

/* JSON text written without jansson and without allocating, so that the error path of a
 * request still works when memory is short (docs/internals/http.md, "Out of memory"). */
#include <stdbool.h>
#include <stddef.h>

/* Appends s as the inside of a JSON string (no quotes) at out + *len, escaping '"', '\\'
 * and control characters as jansson does (\b \f \n \r \t, else \u00XX); other bytes are
 * copied as they are, so s must be valid UTF-8. Keeps out NUL-terminated. Returns false,
 * with out unchanged, when the result would not fit in cap bytes. */
bool jsontext_escape(char *out, size_t cap, size_t *len, const char *s);

/* One byte's escape as jansson writes it, into esc (not NUL-terminated): its length, or 0
 * when the byte goes into a JSON string as it is. */
size_t jsontext_escape_byte(unsigned char c, char esc[7]);

#endif
