#ifndef RAGD_UTIL_UTF8_H
#define RAGD_UTIL_UTF8_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* True when p[0..n) is well-formed UTF-8 (no overlong forms, no surrogates, <= U+10FFFF).
 * An embedded NUL byte counts as invalid: no text ragd stores may contain one. */
bool utf8_valid(const char *p, size_t n);

/* Number of code points in well-formed UTF-8 p[0..n). */
size_t utf8_length(const char *p, size_t n);

/* How many bytes of p[0..n) come before the first byte >= 0x80 (n when there is none),
 * eight at a time. In valid UTF-8 each of them is a code point of its own. Inline: loops
 * that step over ASCII call it once per non-ASCII character. */
static inline size_t utf8_ascii_prefix(const char *p, size_t n)
{
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, p + i, sizeof w);
        if (w & 0x8080808080808080ULL)
            break;
    }
    while (i < n && (unsigned char)p[i] < 0x80)
        i++;
    return i;
}

/* Makes a NUL-terminated string valid UTF-8 in place: invalid bytes become '?', and a code
 * point cut off at the end (by a fixed-size copy) is dropped. Returns s. */
char *utf8_sanitize(char *s);

#endif
