#ifndef RAGD_UTIL_UTF8_H
#define RAGD_UTIL_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True when p[0..n) is well-formed UTF-8 (no overlong forms, no surrogates, <= U+10FFFF).
 * An embedded NUL byte counts as invalid: no text ragd stores may contain one. */
bool utf8_valid(const char *p, size_t n);

/* Number of code points in well-formed UTF-8 p[0..n). */
size_t utf8_length(const char *p, size_t n);

/* Makes a NUL-terminated string valid UTF-8 in place: invalid bytes become '?', and a code
 * point cut off at the end (by a fixed-size copy) is dropped. Returns s. */
char *utf8_sanitize(char *s);

#endif
