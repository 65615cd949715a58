/* The JSON writer. See jsonw.h. */
#include "util/jsonw.h"

#include "util/jsontext.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

void jsonw_init(jsonw *w, strbuf *sb)
{
    memset(w, 0, sizeof *w);
    w->sb = sb;
}

ragd_err jsonw_status(const jsonw *w) { return w->err; }

static void jsonw_put(jsonw *w, const char *p, size_t n)
{
    if (!w->err)
        w->err = strbuf_append(w->sb, p, n);
}

/* Before a value (or a key): a comma when the container already holds something. */
static void jsonw_sep(jsonw *w)
{
    if (w->need_comma[w->depth])
        jsonw_put(w, ",", 1);
    w->need_comma[w->depth] = true;
}

static void jsonw_open(jsonw *w, char c)
{
    jsonw_sep(w);
    jsonw_put(w, &c, 1);
    if (w->depth >= JSONW_MAX_DEPTH) {
        w->err = w->err ? w->err : RAGD_ETOOBIG;
        return;
    }
    w->need_comma[++w->depth] = false;
}

static void jsonw_close(jsonw *w, char c)
{
    jsonw_put(w, &c, 1);
    if (w->depth > 0)
        w->depth--;
}

void jsonw_object_begin(jsonw *w) { jsonw_open(w, '{'); }
void jsonw_object_end(jsonw *w) { jsonw_close(w, '}'); }
void jsonw_array_begin(jsonw *w) { jsonw_open(w, '['); }
void jsonw_array_end(jsonw *w) { jsonw_close(w, ']'); }

/* Whether any byte of the 8 in x needs an escape: a control byte (< 0x20), '"' or '\\'.
 * The usual zero-byte test on x, x ^ '"' and x ^ '\\'; a byte at or above 0x80 never
 * tests true, and a borrow can only make a true answer for a word that has such a byte. */
static bool jsonw_word_needs_escape(uint64_t x)
{
    const uint64_t ones = 0x0101010101010101ull, highs = 0x8080808080808080ull;
    uint64_t quote = x ^ (ones * '"'), backslash = x ^ (ones * '\\');
    uint64_t control = (x - ones * 0x20) & ~x;
    uint64_t hit = control | ((quote - ones) & ~quote) | ((backslash - ones) & ~backslash);
    return (hit & highs) != 0;
}

/* The escaped body of a string: runs of bytes that need no escape are copied whole, found
 * eight bytes at a time (a document's text is mostly such runs: this writes `ragd ingest`'s
 * request bodies). */
static void jsonw_escaped(jsonw *w, const char *s, size_t n)
{
    size_t run = 0;
    size_t i = 0;
    while (i < n) {
        uint64_t x;
        while (i + 8 <= n && (memcpy(&x, s + i, 8), !jsonw_word_needs_escape(x)))
            i += 8;
        size_t end = i + 8 < n ? i + 8 : n;
        for (; i < end; i++) {
            unsigned char c = (unsigned char)s[i];
            if (c >= 0x20 && c != '"' && c != '\\') /* the common case, without a call */
                continue;
            char esc[7];
            size_t k = jsontext_escape_byte(c, esc);
            jsonw_put(w, s + run, i - run);
            jsonw_put(w, esc, k);
            run = i + 1;
        }
    }
    jsonw_put(w, s + run, n - run);
}

void jsonw_key(jsonw *w, const char *key)
{
    jsonw_sep(w);
    jsonw_put(w, "\"", 1);
    jsonw_escaped(w, key, strlen(key));
    jsonw_put(w, "\":", 2);
    w->need_comma[w->depth] = false; /* the value follows the colon; it sets the comma again */
}

void jsonw_stringn(jsonw *w, const char *s, size_t n)
{
    jsonw_sep(w);
    jsonw_put(w, "\"", 1);
    jsonw_escaped(w, s, n);
    jsonw_put(w, "\"", 1);
}

void jsonw_string(jsonw *w, const char *s)
{
    if (!s)
        jsonw_null(w);
    else
        jsonw_stringn(w, s, strlen(s));
}

void jsonw_null(jsonw *w)
{
    jsonw_sep(w);
    jsonw_put(w, "null", 4);
}

void jsonw_bool(jsonw *w, bool b)
{
    jsonw_sep(w);
    jsonw_put(w, b ? "true" : "false", b ? 4 : 5);
}

void jsonw_int(jsonw *w, int64_t v)
{
    char buf[32];
    int n = snprintf(buf, sizeof buf, "%lld", (long long)v);
    jsonw_sep(w);
    jsonw_put(w, buf, (size_t)n);
}

void jsonw_double(jsonw *w, double v)
{
    if (!isfinite(v)) {
        jsonw_null(w);
        return;
    }
    char buf[40];
    int n = snprintf(buf, sizeof buf, "%.17g", v);
    if (!strpbrk(buf, ".eE") && n + 2 < (int)sizeof buf) { /* "1.0", not "1": stays a real */
        buf[n++] = '.';
        buf[n++] = '0';
    }
    jsonw_sep(w);
    jsonw_put(w, buf, (size_t)n);
}

void jsonw_raw(jsonw *w, const char *json)
{
    jsonw_sep(w);
    jsonw_put(w, json, strlen(json));
}

size_t jsonw_string_size(const char *s)
{
    if (!s)
        return 4;
    size_t n = 2;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        char esc[7];
        size_t k = *p >= 0x20 && *p != '"' && *p != '\\' ? 0 : jsontext_escape_byte(*p, esc);
        n += k ? k : 1;
    }
    return n;
}
