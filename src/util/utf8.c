#include "util/utf8.h"

#include <stdint.h>
#include <string.h>

/* True when none of the 8 bytes of w is 0 or >= 0x80 (plain ASCII, no NUL). The zero-byte
 * test (w - 0x01..) & ~w & 0x80.. is exact as a yes/no answer. */
static inline bool utf8_word_plain(uint64_t w)
{
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    return ((w | ((w - ones) & ~w)) & highs) == 0;
}

/* Plain ASCII is checked 16 bytes at a time; from a block that is not plain on, the bytes
 * are taken one sequence at a time up to the block's end, then blocks again. */
bool utf8_valid(const char *s, size_t n)
{
    const unsigned char *p = (const unsigned char *)s;
    size_t i = 0;
    size_t bytewise_until = 0;
    while (i < n) {
        if (i >= bytewise_until && n - i >= 16) {
            uint64_t w0, w1;
            memcpy(&w0, p + i, 8);
            memcpy(&w1, p + i + 8, 8);
            if (utf8_word_plain(w0) && utf8_word_plain(w1)) {
                i += 16;
                continue;
            }
            bytewise_until = i + 16;
        }
        unsigned c = p[i];
        if (c == 0)
            return false;
        if (c < 0x80) {
            i++;
            continue;
        }
        size_t need;
        uint32_t cp;
        if (c >= 0xC2 && c <= 0xDF) {
            need = 1;
            cp = c & 0x1F;
        } else if (c >= 0xE0 && c <= 0xEF) {
            need = 2;
            cp = c & 0x0F;
        } else if (c >= 0xF0 && c <= 0xF4) {
            need = 3;
            cp = c & 0x07;
        } else {
            return false;
        }
        if (n - i <= need)
            return false;
        for (size_t k = 1; k <= need; k++) {
            unsigned cc = p[i + k];
            if ((cc & 0xC0) != 0x80)
                return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((need == 2 && cp < 0x800) || (need == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        i += need + 1;
    }
    return true;
}

/* Eight bytes at a time: a continuation byte (10xxxxxx) has bit 7 set and bit 6 clear. */
size_t utf8_length(const char *s, size_t n)
{
    const uint64_t highs = 0x8080808080808080ULL;
    size_t count = 0;
    size_t i = 0;
    for (; n - i >= 8; i += 8) {
        uint64_t w;
        memcpy(&w, s + i, sizeof w);
        count += 8 - (size_t)__builtin_popcountll(w & ~(w << 1) & highs);
    }
    for (; i < n; i++)
        if (((unsigned char)s[i] & 0xC0) != 0x80)
            count++;
    return count;
}

/* Length of the well-formed sequence at p (with n bytes left), 0 when it is not one. */
static size_t utf8_seq_len(const unsigned char *p, size_t n)
{
    for (size_t len = 1; len <= 4 && len <= n; len++)
        if (utf8_valid((const char *)p, len))
            return len;
    return 0;
}

char *utf8_sanitize(char *s)
{
    size_t n = strlen(s);
    size_t i = 0;
    while (i < n) {
        size_t len = utf8_seq_len((const unsigned char *)s + i, n - i);
        if (len > 0) {
            i += len;
            continue;
        }
        /* a lead byte followed by too few continuation bytes at the very end is a cut: drop
         * it; anything else is replaced */
        unsigned char lead = (unsigned char)s[i];
        size_t need = lead >= 0xC2 && lead <= 0xDF ? 2 : lead >= 0xE0 && lead <= 0xEF ? 3 : lead >= 0xF0 && lead <= 0xF4 ? 4 : 0;
        size_t rest = n - i;
        bool cut = need > 0 && rest < need;
        for (size_t k = 1; cut && k < rest; k++)
            cut = ((unsigned char)s[i + k] & 0xC0) == 0x80;
        if (cut) {
            s[i] = '\0';
            break;
        }
        s[i++] = '?';
    }
    return s;
}
