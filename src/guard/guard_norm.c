/* L0 of the prompt-injection screen (docs/internals/guard.md): guard_normalize.
 *
 * 1. HTML character references are decoded (&lt; &#105; &#x69; and a few named ones).
 * 2. Valid UTF-8 stretches: zero-width, bidi-control and tag characters (U+E0000 block) are
 *    dropped, then NFKC_Casefold (utf8proc) folds fullwidth, mathematical and other
 *    compatibility forms and case, then a small confusables table maps common Cyrillic and
 *    Greek look-alikes to Latin. Invalid bytes are kept as they are (judged as bytes).
 *    Controls become spaces; runs of blanks become one space, runs of newlines one newline.
 * 3. Runs of base64, hex (plain, \xHH, or byte pairs split by blanks) and %xx escapes in
 *    the text of step 1 are decoded; a decoded run that reads as text is folded like step 2
 *    and appended after a newline.
 *
 * Bounds: the output is at most GUARD_NORM_CAP(len) bytes (folding that would exceed it
 * is cut at a code point boundary); decoded runs add at most min(len, GUARD_DECODED_MAX)
 * bytes before folding and at most GUARD_DECODED_RUNS runs. */
#include "guard/guard.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <utf8proc.h>

#include "util/hex.h"
#include "util/utf8.h"

#define GUARD_NORM_CAP(len) (4 * (len) + 64)
#define GUARD_DECODED_MAX (16 * 1024)
#define GUARD_DECODED_RUNS 64
#define GUARD_MIN_BASE64 20 /* characters: 15 bytes of payload */
#define GUARD_MIN_HEX 16    /* digits: 8 bytes */
#define GUARD_MIN_PCT 2     /* %xx escapes in one run */

/* An append-only buffer that refuses to grow past cap (bytes beyond it are dropped). */
typedef struct {
    char *p;
    size_t len;
    size_t cap;
    bool prev_space; /* the last byte written is a blank or a newline (or nothing yet) */
    bool prev_nl;
} norm_buf;

/* ------------------------------------------------------------------ UTF-8 */

/* Length of the valid UTF-8 sequence at s[0..n) (n > 0), or 0 when it is not one: no
 * overlong form, surrogate or code point over U+10FFFF (utf8proc's decoder). */
static size_t norm_utf8_seq(const unsigned char *s, size_t n, uint32_t *cp)
{
    utf8proc_int32_t c;
    utf8proc_ssize_t k = utf8proc_iterate(s, (utf8proc_ssize_t)(n < 4 ? n : 4), &c);
    if (k <= 0)
        return 0;
    *cp = (uint32_t)c;
    return (size_t)k;
}

/* Zero-width, bidi controls, tag characters and other invisible format characters. */
static bool norm_is_invisible(uint32_t cp)
{
    return (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x202A && cp <= 0x202E) ||
           (cp >= 0x2060 && cp <= 0x206F) || cp == 0xFEFF || cp == 0x00AD || cp == 0x034F ||
           cp == 0x061C || cp == 0x180E || (cp >= 0xFE00 && cp <= 0xFE0F) ||
           (cp >= 0xE0000 && cp <= 0xE0FFF);
}

/* Common look-alikes of Latin letters (lower case: applied after case folding). */
static uint32_t norm_confusable(uint32_t cp)
{
    static const struct {
        uint16_t from;
        char to;
    } table[] = {
        /* Cyrillic */
        {0x0430, 'a'}, {0x0432, 'b'}, {0x0435, 'e'}, {0x043A, 'k'}, {0x043C, 'm'}, {0x043D, 'h'},
        {0x043E, 'o'}, {0x0440, 'p'}, {0x0441, 'c'}, {0x0442, 't'}, {0x0443, 'y'}, {0x0445, 'x'},
        {0x0451, 'e'}, {0x0455, 's'}, {0x0456, 'i'}, {0x0457, 'i'}, {0x0458, 'j'}, {0x04BB, 'h'},
        {0x04CF, 'l'}, {0x0501, 'd'}, {0x051B, 'q'}, {0x051D, 'w'},
        /* Greek */
        {0x03B1, 'a'}, {0x03B2, 'b'}, {0x03B3, 'y'}, {0x03B5, 'e'}, {0x03B7, 'n'}, {0x03B9, 'i'},
        {0x03BA, 'k'}, {0x03BD, 'v'}, {0x03BF, 'o'}, {0x03C1, 'p'}, {0x03C4, 't'}, {0x03C5, 'u'},
        {0x03C7, 'x'}, {0x03C9, 'w'}, {0x03F2, 'c'}, {0x03F3, 'j'},
        /* Latin variants and others */
        {0x0131, 'i'}, {0x0237, 'j'}, {0x0251, 'a'}, {0x0261, 'g'}, {0x026A, 'i'}, {0x0274, 'n'},
        {0x0280, 'r'}, {0x028F, 'y'}, {0x1D00, 'a'}, {0x1D04, 'c'}, {0x1D05, 'd'}, {0x1D07, 'e'},
        {0x1D0A, 'j'}, {0x1D0B, 'k'}, {0x1D0D, 'm'}, {0x1D0F, 'o'}, {0x1D18, 'p'}, {0x1D1B, 't'},
        {0x1D1C, 'u'}, {0x1D20, 'v'}, {0x1D21, 'w'}, {0x1D22, 'z'}, {0x0585, 'o'}, {0x057D, 'u'},
    };
    if (cp < 0x0131 || cp > 0x1D22)
        return cp;
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].from == cp)
            return (uint32_t)(unsigned char)table[i].to;
    return cp;
}

/* ------------------------------------------------------------------ output */

/* Appends n bytes if they fit under the cap. Returns false (and writes nothing) if not. */
static bool norm_put(norm_buf *b, const char *s, size_t n)
{
    if (b->len + n > b->cap)
        return false;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    return true;
}

/* Appends one folded code point with the whitespace rules. False when the cap is reached. */
static bool norm_put_cp(norm_buf *b, uint32_t cp)
{
    if (cp == '\n' || cp == 0x2028 || cp == 0x2029 || cp == 0x85) {
        if (b->prev_nl)
            return true;
        if (b->len > 0 && b->p[b->len - 1] == ' ')
            b->len--; /* no blank before a newline */
        b->prev_nl = b->prev_space = true;
        return norm_put(b, "\n", 1);
    }
    if (cp < 0x20 || cp == 0x7F || (cp >= 0x80 && cp < 0xA0) || cp == ' ' || cp == 0xA0 ||
        cp == 0x3000 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x202F || cp == 0x205F) {
        if (b->prev_space)
            return true;
        b->prev_space = true;
        return norm_put(b, " ", 1);
    }
    char u[4];
    size_t k = (size_t)utf8proc_encode_char((utf8proc_int32_t)norm_confusable(cp), (utf8proc_uint8_t *)u);
    b->prev_space = b->prev_nl = false;
    return norm_put(b, u, k);
}

/* Whether guard_normalize folds ASCII itself (norm_fold_ascii) instead of through utf8proc.
 * Always on; tests/unit/test_guard_norm.c turns it off to compare both ways. */
static bool norm_ascii_fast = true;

/* Folds s[0..n) through utf8proc (NFKC_Casefold) into b. False when b is full: the caller
 * stops folding its stretch there. */
static bool norm_fold_utf8proc(norm_buf *b, const unsigned char *s, size_t n, ragd_err *rc)
{
    utf8proc_uint8_t *folded = NULL;
    utf8proc_ssize_t flen = utf8proc_map(s, (utf8proc_ssize_t)n, &folded,
                                         UTF8PROC_STABLE | UTF8PROC_COMPAT | UTF8PROC_COMPOSE |
                                             UTF8PROC_CASEFOLD | UTF8PROC_IGNORE);
    bool room = true;
    if (flen == UTF8PROC_ERROR_NOMEM) {
        *rc = RAGD_ENOMEM;
        return false;
    }
    if (flen < 0) { /* cannot happen on valid input; judge the unfolded text then */
        for (size_t i = 0; room && i < n;) {
            uint32_t cp;
            size_t k = norm_utf8_seq(s + i, n - i, &cp);
            if (k == 0)
                break;
            room = norm_put_cp(b, cp);
            i += k;
        }
        return room;
    }
    for (size_t i = 0; room && i < (size_t)flen;) {
        uint32_t cp;
        size_t k = norm_utf8_seq(folded + i, (size_t)flen - i, &cp);
        if (k == 0)
            break;
        /* NFKC_Casefold would also drop these; utf8proc's IGNORE covers most of them. */
        room = norm_is_invisible(cp) || norm_put_cp(b, cp);
        i += k;
    }
    free(folded);
    return room;
}

/* Eight bytes at a time (little-endian words: byte k of the text is bits 8k..8k+7). */
#define NORM_ONES 0x0101010101010101ULL
#define NORM_HIGH 0x8080808080808080ULL

/* The high bit of each byte of w that is zero, exactly (no borrow between bytes). */
static inline uint64_t norm_zero_bytes(uint64_t w)
{
    return ~(((w & ~NORM_HIGH) + ~NORM_HIGH) | w) & NORM_HIGH;
}

/* The high bit of each byte of the ASCII word w that is A-Z. */
static inline uint64_t norm_upper_bits(uint64_t w)
{
    uint64_t ge_a = w + (0x80 - 'A') * NORM_ONES;     /* high bit: >= 'A' */
    uint64_t gt_z = w + (0x80 - 'Z' - 1) * NORM_ONES; /* high bit: > 'Z' */
    return ge_a & ~gt_z & NORM_HIGH;
}

/* Whether norm_fold_ascii would write the 8 ASCII bytes w as they are but for A-Z lowered:
 * all printable or a blank ' ', no two blanks together, and no blank first after one. */
static inline bool norm_plain_block(uint64_t w, bool prev_space)
{
    uint64_t below_space = ~(w + (0x80 - 0x20) * NORM_ONES) & NORM_HIGH; /* controls */
    uint64_t del = norm_zero_bytes(w ^ (0x7F * NORM_ONES));
    uint64_t space = norm_zero_bytes(w ^ (0x20 * NORM_ONES));
    uint64_t first_space = space & 0x80 & -(uint64_t)prev_space;
    return ((w & NORM_HIGH) | below_space | del | (space & (space << 8)) | first_space) == 0;
}

/* Folds ASCII s[0..n) into b as NFKC_Casefold does (it only lowers A-Z there). False when
 * b is full. Byte for byte what norm_put_cp does with each character, flags included
 * (they matter after a full buffer: a newline may still take a blank's place), without
 * its Unicode cases. */
static bool norm_fold_ascii(norm_buf *b, const unsigned char *s, size_t n)
{
    /* Locals, written back: the byte stores could alias b's fields. */
    char *out = b->p;
    size_t len = b->len;
    bool prev_space = b->prev_space, prev_nl = b->prev_nl, room = true;
    for (size_t i = 0; i < n; i++) {
        uint64_t w;
        if (n - i >= 8 && len + 8 <= b->cap && (memcpy(&w, s + i, 8), norm_plain_block(w, prev_space))) {
            w |= norm_upper_bits(w) >> 2; /* A-Z lowered; spaces are single: kept */
            memcpy(out + len, &w, 8);
            len += 8;
            prev_space = (w >> 56) == ' ';
            prev_nl = false;
            i += 7;
            continue;
        }
        unsigned char c = s[i];
        if (c > ' ' && c != 0x7F) { /* printable: itself, A-Z lowered */
            prev_space = prev_nl = false;
            if (len + 1 > b->cap) {
                room = false;
                break;
            }
            out[len++] = (char)(c >= 'A' && c <= 'Z' ? c | 0x20 : c);
        } else if (c != '\n') { /* a control or a blank: one blank per run */
            if (prev_space)
                continue;
            prev_space = true;
            if (len + 1 > b->cap) {
                room = false;
                break;
            }
            out[len++] = ' ';
        } else {
            b->len = len;
            b->prev_space = prev_space;
            b->prev_nl = prev_nl;
            room = norm_put_cp(b, c);
            len = b->len;
            prev_space = b->prev_space;
            prev_nl = b->prev_nl;
            if (!room)
                break;
        }
    }
    b->len = len;
    b->prev_space = prev_space;
    b->prev_nl = prev_nl;
    return room;
}

/* Folds a valid UTF-8 stretch s[0..n) into b. RAGD_ENOMEM on allocation failure; a full
 * buffer is not an error (the rest is dropped). ASCII runs are folded here and the rest
 * by utf8proc: NFKC_Casefold of a text is the concatenation of its pieces' when every cut
 * is before an ASCII character, since no composition has an ASCII second character and
 * ASCII characters are never reordered; the ASCII character just before a non-ASCII run
 * goes with that run (it may be the starter of a combining mark). Same bytes out, a
 * fraction of the cost on mostly-ASCII text (BENCHMARKS.md "Ingest throughput (issue 11)"). */
static ragd_err norm_fold_valid(norm_buf *b, const unsigned char *s, size_t n)
{
    /* Strip invisibles (and NUL, which utf8proc would read as the end) first. */
    unsigned char *vis = malloc(n + 1);
    if (!vis)
        return RAGD_ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] != 0 && s[i] < 0x80) { /* ASCII: visible */
            vis[m++] = s[i++];
            continue;
        }
        uint32_t cp;
        size_t k = norm_utf8_seq(s + i, n - i, &cp);
        if (k == 0) { /* the caller passes valid UTF-8 only */
            k = 1;
            cp = 0xFFFD;
        }
        if (cp == 0)
            vis[m++] = ' ';
        else if (!norm_is_invisible(cp)) {
            memcpy(vis + m, s + i, k);
            m += k;
        }
        i += k;
    }
    ragd_err rc = RAGD_OK;
    if (!norm_ascii_fast) {
        if (m > 0)
            (void)norm_fold_utf8proc(b, vis, m, &rc);
        free(vis);
        return rc;
    }
    bool room = true;
    for (size_t i = 0; room && i < m;) {
        size_t j = i;
        while (j < m && vis[j] < 0x80)
            j++;
        if (j < m && j > i)
            j--; /* the starter of what follows */
        if (j > i) {
            room = norm_fold_ascii(b, vis + i, j - i);
            i = j;
            continue;
        }
        /* a non-ASCII run, with the ASCII character before it: up to the next ASCII */
        j = i + 1;
        while (j < m && (vis[j] >= 0x80 || vis[j - 1] < 0x80))
            j++;
        room = norm_fold_utf8proc(b, vis + i, j - i, &rc);
        i = j;
    }
    free(vis);
    return rc;
}

/* Steps 2 on any bytes: valid stretches folded, invalid bytes kept (controls as blanks). */
static ragd_err norm_fold(norm_buf *b, const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        bool plain = true; /* ASCII without NUL: nothing to strip or hand to utf8proc */
        while (j < n) {
            size_t ascii = utf8_ascii_prefix((const char *)s + j, n - j); /* valid UTF-8 */
            if (ascii) {
                plain = plain && !memchr(s + j, 0, ascii);
                j += ascii;
                continue;
            }
            uint32_t cp;
            size_t k = norm_utf8_seq(s + j, n - j, &cp);
            if (k == 0)
                break;
            plain = false;
            j += k;
        }
        if (j > i && plain && norm_ascii_fast) {
            (void)norm_fold_ascii(b, s + i, j - i); /* what norm_fold_valid does with it */
        } else if (j > i) {
            ragd_err rc = norm_fold_valid(b, s + i, j - i);
            if (rc != RAGD_OK)
                return rc;
        }
        if (j < n) { /* one invalid byte, judged as itself */
            char c = (char)s[j];
            if (!norm_put(b, &c, 1))
                return RAGD_OK;
            b->prev_space = b->prev_nl = false;
            j++;
        }
        i = j;
    }
    return RAGD_OK;
}

/* ------------------------------------------------------------------ step 1: entities */

/* The code point of the character reference at s[0..n) (s[0] == '&'), its length in *used;
 * 0 when it is not one. */
static uint32_t norm_entity(const unsigned char *s, size_t n, size_t *used)
{
    static const struct {
        const char *name;
        uint32_t cp;
    } named[] = {
        {"lt;", '<'},      {"gt;", '>'},      {"amp;", '&'},     {"quot;", '"'},   {"apos;", '\''},
        {"nbsp;", 0xA0},   {"lbrace;", '{'},  {"rbrace;", '}'},  {"lsqb;", '['},   {"rsqb;", ']'},
        {"lpar;", '('},    {"rpar;", ')'},    {"vert;", '|'},    {"verbar;", '|'}, {"excl;", '!'},
        {"num;", '#'},     {"colon;", ':'},   {"sol;", '/'},     {"equals;", '='}, {"quest;", '?'},
        {"zwj;", 0x200D},  {"zwnj;", 0x200C}, {"shy;", 0xAD},    {"lowbar;", '_'}, {"ast;", '*'},
    };
    *used = 0;
    if (n >= 4 && s[1] == '#') {
        size_t i = 2;
        bool hex = false;
        if (s[i] == 'x' || s[i] == 'X') {
            hex = true;
            i++;
        }
        uint32_t v = 0;
        size_t digits = 0;
        while (i < n && digits < 8) {
            int d = hex ? hex_digit_value(s[i]) : (s[i] >= '0' && s[i] <= '9' ? s[i] - '0' : -1);
            if (d < 0)
                break;
            v = v * (hex ? 16 : 10) + (uint32_t)d;
            digits++;
            i++;
        }
        if (digits == 0 || v == 0 || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
            return 0;
        if (i < n && s[i] == ';')
            i++;
        *used = i;
        return v;
    }
    for (size_t k = 0; k < sizeof named / sizeof named[0]; k++) {
        size_t l = strlen(named[k].name);
        if (n >= l + 1 && strncasecmp((const char *)s + 1, named[k].name, l) == 0) {
            *used = l + 1;
            return named[k].cp;
        }
    }
    return 0;
}

/* Decodes character references of s[0..n) into out (capacity >= n: a reference is never
 * shorter than its UTF-8). Returns the length written. */
static size_t norm_decode_entities(const unsigned char *s, size_t n, char *out)
{
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        if (s[i] == '&') {
            size_t used;
            uint32_t cp = norm_entity(s + i, n - i, &used);
            if (used > 0) {
                char u[4];
                size_t k = (size_t)utf8proc_encode_char((utf8proc_int32_t)cp, (utf8proc_uint8_t *)u);
                memcpy(out + o, u, k);
                o += k;
                i += used;
                continue;
            }
        }
        out[o++] = (char)s[i++];
    }
    return o;
}

/* ------------------------------------------------------------------ step 3: encoded runs */

/* True when d[0..n) reads as text: valid UTF-8, no controls but \t \n \r, and at least
 * half of it letters, digits or blanks. */
static bool norm_reads_as_text(const unsigned char *d, size_t n)
{
    size_t alnum = 0;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        size_t k = norm_utf8_seq(d + i, n - i, &cp);
        if (k == 0)
            return false;
        if (cp < 0x20 && cp != '\t' && cp != '\n' && cp != '\r')
            return false;
        if (cp == 0x7F)
            return false;
        if (cp >= 0x80 || (cp >= '0' && cp <= '9') || ((cp | 0x20) >= 'a' && (cp | 0x20) <= 'z') ||
            cp == ' ')
            alnum += k;
        i += k;
    }
    return n > 0 && alnum * 10 >= n * 7;
}

/* 1 + the base64 value of each byte (standard and URL-safe alphabets), 0 for the others:
 * a table, as step 3 asks it several times of every byte. */
static const unsigned char norm_b64_table[256] = {
    ['A'] = 1, ['B'] = 2, ['C'] = 3, ['D'] = 4, ['E'] = 5, ['F'] = 6, ['G'] = 7, ['H'] = 8,
    ['I'] = 9, ['J'] = 10, ['K'] = 11, ['L'] = 12, ['M'] = 13, ['N'] = 14, ['O'] = 15, ['P'] = 16,
    ['Q'] = 17, ['R'] = 18, ['S'] = 19, ['T'] = 20, ['U'] = 21, ['V'] = 22, ['W'] = 23, ['X'] = 24,
    ['Y'] = 25, ['Z'] = 26, ['a'] = 27, ['b'] = 28, ['c'] = 29, ['d'] = 30, ['e'] = 31, ['f'] = 32,
    ['g'] = 33, ['h'] = 34, ['i'] = 35, ['j'] = 36, ['k'] = 37, ['l'] = 38, ['m'] = 39, ['n'] = 40,
    ['o'] = 41, ['p'] = 42, ['q'] = 43, ['r'] = 44, ['s'] = 45, ['t'] = 46, ['u'] = 47, ['v'] = 48,
    ['w'] = 49, ['x'] = 50, ['y'] = 51, ['z'] = 52, ['0'] = 53, ['1'] = 54, ['2'] = 55, ['3'] = 56,
    ['4'] = 57, ['5'] = 58, ['6'] = 59, ['7'] = 60, ['8'] = 61, ['9'] = 62, ['+'] = 63, ['-'] = 63,
    ['/'] = 64, ['_'] = 64,
};

static int norm_b64val(unsigned char c) { return (int)norm_b64_table[c] - 1; }

/* Base64 (standard or URL-safe) s[0..n) into out; returns the length written. */
static size_t norm_b64_decode(const unsigned char *s, size_t n, unsigned char *out)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        int v = norm_b64val(s[i]);
        if (v < 0)
            break;
        acc = (acc << 6) | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return o;
}

typedef struct {
    unsigned char *buf; /* decoded bytes of all runs, each followed by '\n' */
    size_t len;
    size_t cap;
    size_t runs;
} norm_decoded;

/* Keeps a decoded run if it reads as text and fits. */
static void norm_keep(norm_decoded *d, const unsigned char *run, size_t n)
{
    if (n == 0 || d->runs >= GUARD_DECODED_RUNS || d->len + n + 1 > d->cap)
        return;
    if (!norm_reads_as_text(run, n))
        return;
    memcpy(d->buf + d->len, run, n);
    d->len += n;
    d->buf[d->len++] = '\n';
    d->runs++;
}

static bool norm_is_b64char(unsigned char c) { return norm_b64val(c) >= 0; }

/* hex_digit_value(c) >= 0, without branches. */
static bool norm_is_hex(unsigned char c)
{
    return ((unsigned)(c - '0') < 10) | ((unsigned)((c | 0x20) - 'a') < 6);
}

/* Finds and decodes the encoded runs of s[0..n); tmp has room for n bytes. */
static void norm_find_runs(const unsigned char *s, size_t n, unsigned char *tmp, norm_decoded *d)
{
    /* %xx: a blank-delimited run with at least GUARD_MIN_PCT escapes (none without a '%'). */
    bool pct = memchr(s, '%', n) != NULL;
    for (size_t i = 0; pct && i < n;) {
        while (i < n && (s[i] == ' ' || s[i] == '\n' || s[i] == '\t' || s[i] == '\r'))
            i++;
        size_t j = i;
        size_t esc = 0;
        while (j < n && !(s[j] == ' ' || s[j] == '\n' || s[j] == '\t' || s[j] == '\r')) {
            if (s[j] == '%' && j + 2 < n && hex_digit_value(s[j + 1]) >= 0 && hex_digit_value(s[j + 2]) >= 0)
                esc++;
            j++;
        }
        if (esc >= GUARD_MIN_PCT) {
            size_t o = 0;
            for (size_t k = i; k < j; k++) {
                if (s[k] == '%' && k + 2 < j && hex_digit_value(s[k + 1]) >= 0 && hex_digit_value(s[k + 2]) >= 0) {
                    tmp[o++] = (unsigned char)(hex_digit_value(s[k + 1]) * 16 + hex_digit_value(s[k + 2]));
                    k += 2;
                } else {
                    tmp[o++] = s[k];
                }
            }
            norm_keep(d, tmp, o);
        }
        i = j;
    }
    /* \xHH sequences (each starts at a backslash: skip to the next one). */
    for (size_t i = 0; i + 3 < n; i++) {
        if (s[i] != '\\') {
            const unsigned char *bs = memchr(s + i, '\\', n - i);
            if (!bs)
                break;
            i = (size_t)(bs - s);
            if (i + 3 >= n)
                break;
        }
        size_t j = i;
        size_t o = 0;
        while (j + 3 < n + 0 && s[j] == '\\' && s[j + 1] == 'x' && hex_digit_value(s[j + 2]) >= 0 &&
               hex_digit_value(s[j + 3]) >= 0) {
            tmp[o++] = (unsigned char)(hex_digit_value(s[j + 2]) * 16 + hex_digit_value(s[j + 3]));
            j += 4;
        }
        if (o >= GUARD_MIN_HEX / 2) {
            norm_keep(d, tmp, o);
            i = j - 1;
        }
    }
    /* Hex bytes separated by one blank, colon or comma ("69 67 6e ..."). A run starts only
     * at a word (a maximal run of the base64 alphabet) of exactly two hex digits, so the
     * scan steps from word to word. */
    for (size_t i = 0; i + 1 < n;) {
        if (norm_b64_table[s[i]] == 0) {
            i++;
            continue;
        }
        size_t w = i + 1; /* i starts a word: the end of it */
        while (w < n && norm_b64_table[s[w]] != 0)
            w++;
        if (w - i != 2 || !norm_is_hex(s[i]) || !norm_is_hex(s[i + 1])) {
            i = w;
            continue;
        }
        size_t j = i;
        size_t o = 0;
        while (j + 1 < n && hex_digit_value(s[j]) >= 0 && hex_digit_value(s[j + 1]) >= 0 &&
               (j + 2 == n || norm_b64val(s[j + 2]) < 0)) {
            tmp[o++] = (unsigned char)(hex_digit_value(s[j]) * 16 + hex_digit_value(s[j + 1]));
            j += 2;
            if (j + 2 < n && (s[j] == ' ' || s[j] == ':' || s[j] == ','))
                j++;
            else
                break;
        }
        if (o < GUARD_MIN_HEX / 2) {
            i = w;
            continue;
        }
        norm_keep(d, tmp, o);
        i = j + 1; /* the next word after the run's last byte */
        if (j < n && norm_b64_table[s[j]] != 0)
            while (i < n && norm_b64_table[s[i]] != 0)
                i++;
    }
    /* Plain hex and base64: maximal runs of the base64 alphabet (hex digits are a subset). */
    for (size_t i = 0; i < n;) {
        if (!norm_is_b64char(s[i])) {
            i++;
            continue;
        }
        size_t j = i;
        bool all_hex = true;
        while (j < n && norm_is_b64char(s[j])) {
            if (hex_digit_value(s[j]) < 0)
                all_hex = false;
            j++;
        }
        size_t rl = j - i;
        if (all_hex && rl >= GUARD_MIN_HEX && rl % 2 == 0) {
            size_t o = 0;
            for (size_t k = i; k + 1 < j; k += 2)
                tmp[o++] = (unsigned char)(hex_digit_value(s[k]) * 16 + hex_digit_value(s[k + 1]));
            norm_keep(d, tmp, o);
        } else if (rl >= GUARD_MIN_BASE64) {
            norm_keep(d, tmp, norm_b64_decode(s + i, rl, tmp));
        }
        i = j;
    }
}

/* ------------------------------------------------------------------ guard_normalize */

char *guard_normalize(const char *text, size_t len, size_t *out_len)
{
    char *ents = NULL;
    unsigned char *tmp = NULL;
    norm_decoded dec = {0};
    norm_buf b = {0};
    bool ok = false;

    if (len > (SIZE_MAX - 64) / 4 - 1)
        return NULL;
    b.cap = GUARD_NORM_CAP(len);
    b.p = malloc(b.cap + 1);
    ents = malloc(len + 1);
    tmp = malloc(len + 1);
    dec.cap = len < GUARD_DECODED_MAX ? len : GUARD_DECODED_MAX;
    dec.buf = malloc(dec.cap + 1);
    if (!b.p || !ents || !tmp || !dec.buf)
        goto out;
    b.prev_space = b.prev_nl = true; /* no leading blanks */

    /* Step 1; without an '&' the text is its own decoding. */
    const unsigned char *plain = (const unsigned char *)text;
    size_t elen = len;
    if (memchr(text, '&', len)) {
        elen = norm_decode_entities((const unsigned char *)text, len, ents);
        plain = (const unsigned char *)ents;
    }
    if (norm_fold(&b, plain, elen) != RAGD_OK)
        goto out;
    norm_find_runs(plain, elen, tmp, &dec);
    if (dec.len > 0) {
        /* Decoded runs may carry entities of their own: decode those too (no deeper). */
        size_t dl = norm_decode_entities(dec.buf, dec.len, (char *)tmp);
        if (b.len > 0 && !b.prev_nl && norm_put(&b, "\n", 1))
            b.prev_nl = b.prev_space = true;
        if (norm_fold(&b, tmp, dl) != RAGD_OK)
            goto out;
    }
    while (b.len > 0 && (b.p[b.len - 1] == ' ' || b.p[b.len - 1] == '\n'))
        b.len--;
    b.p[b.len] = '\0';
    *out_len = b.len;
    ok = true;
out:
    free(ents);
    free(tmp);
    free(dec.buf);
    if (!ok) {
        free(b.p);
        return NULL;
    }
    return b.p;
}
