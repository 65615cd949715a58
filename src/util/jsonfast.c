/* jsonfast: see jsonfast.h. A recursive-descent parser that bails out (NULL) on anything
 * unusual, so that only jansson ever reports an error. Strings are scanned a byte at a
 * time in one tight loop and, when they hold no escape, handed to jansson straight from
 * the input (one copy, jansson's own); jansson's lexer makes three passes with a call per
 * byte (BENCHMARKS.md "Ingest throughput (issue 11)", area "embed"). */
#include "util/jsonfast.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const unsigned char *p;
    size_t n;
    size_t i;
    int depth;
    int max_depth;
    char *buf; /* unescaped string, grown as needed (at most the input's size) */
    size_t cap;
} jf_parser;

/* Bytes that end the plain run of a string: '"', '\\', control characters, non-ASCII. */
static bool jf_is_special(unsigned char c) { return c == '"' || c == '\\' || c < 0x20 || c >= 0x80; }

static void jf_skip_ws(jf_parser *f)
{
    while (f->i < f->n) {
        unsigned char c = f->p[f->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r')
            break;
        f->i++;
    }
}

/* Length of the well-formed UTF-8 sequence at p[i..n) (Unicode's Table 3-7: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0. jansson rejects the same. */
static size_t jf_utf8_len(const unsigned char *p, size_t i, size_t n)
{
    unsigned c = p[i];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF; /* range of the second byte */
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n - i <= need)
        return 0;
    if (p[i + 1] < lo || p[i + 1] > hi)
        return 0;
    for (size_t k = 2; k <= need; k++)
        if ((p[i + k] & 0xC0) != 0x80)
            return 0;
    return need + 1;
}

/* Room for `more` bytes after `len` in f->buf. */
static bool jf_reserve(jf_parser *f, size_t len, size_t more)
{
    if (len + more <= f->cap)
        return true;
    size_t nc = f->cap ? f->cap * 2 : 256;
    while (nc < len + more)
        nc *= 2;
    char *nb = realloc(f->buf, nc);
    if (!nb)
        return false;
    f->buf = nb;
    f->cap = nc;
    return true;
}

/* Four hex digits at p[i..i+4) into *v. */
static bool jf_hex4(const jf_parser *f, size_t i, unsigned *v)
{
    if (f->n - i < 4)
        return false;
    unsigned x = 0;
    for (size_t k = 0; k < 4; k++) {
        unsigned char c = f->p[i + k];
        unsigned d;
        if (c >= '0' && c <= '9')
            d = c - '0';
        else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
            d = (c | 0x20) - 'a' + 10;
        else
            return false;
        x = x << 4 | d;
    }
    *v = x;
    return true;
}

/* The string at f->i (its opening quote): its bytes in *s, *len (pointing into the input
 * when it has no escape, else into f->buf). False when it is not a string jsonfast takes. */
static bool jf_string(jf_parser *f, const char **s, size_t *len)
{
    const unsigned char *p = f->p;
    size_t i = f->i + 1;
    size_t start = i;
    size_t out = 0;   /* bytes in f->buf */
    bool esc = false; /* an escape was seen: the string is built in f->buf */
    for (;;) {
        size_t run = i;
        while (i < f->n && !jf_is_special(p[i]))
            i++;
        if (i >= f->n)
            return false;
        if (esc) {
            if (!jf_reserve(f, out, i - run))
                return false;
            memcpy(f->buf + out, p + run, i - run);
            out += i - run;
        }
        unsigned char c = p[i];
        if (c == '"')
            break;
        if (c < 0x20)
            return false; /* jansson: control character in a string */
        if (c >= 0x80) {
            size_t w = jf_utf8_len(p, i, f->n);
            if (w == 0)
                return false;
            if (esc) {
                if (!jf_reserve(f, out, w))
                    return false;
                memcpy(f->buf + out, p + i, w);
                out += w;
            }
            i += w;
            continue;
        }
        /* a backslash */
        if (!esc) {
            esc = true;
            if (!jf_reserve(f, 0, i - start + 16))
                return false;
            memcpy(f->buf, p + start, i - start);
            out = i - start;
        }
        if (i + 1 >= f->n)
            return false;
        unsigned char e = p[i + 1];
        char one = 0;
        switch (e) {
        case '"': one = '"'; break;
        case '\\': one = '\\'; break;
        case '/': one = '/'; break;
        case 'b': one = '\b'; break;
        case 'f': one = '\f'; break;
        case 'n': one = '\n'; break;
        case 'r': one = '\r'; break;
        case 't': one = '\t'; break;
        case 'u': break;
        default: return false;
        }
        if (!jf_reserve(f, out, 4))
            return false;
        if (e != 'u') {
            f->buf[out++] = one;
            i += 2;
            continue;
        }
        unsigned cp;
        if (!jf_hex4(f, i + 2, &cp) || cp == 0 || (cp >= 0xD800 && cp <= 0xDFFF))
            return false; /* NUL and surrogate pairs are left to jansson */
        char *b = f->buf + out;
        if (cp < 0x80) {
            b[0] = (char)cp;
            out += 1;
        } else if (cp < 0x800) {
            b[0] = (char)(0xC0 | cp >> 6);
            b[1] = (char)(0x80 | (cp & 0x3F));
            out += 2;
        } else {
            b[0] = (char)(0xE0 | cp >> 12);
            b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
            b[2] = (char)(0x80 | (cp & 0x3F));
            out += 3;
        }
        i += 6;
    }
    f->i = i + 1;
    if (esc) {
        *s = f->buf;
        *len = out;
    } else {
        *s = (const char *)p + start;
        *len = i - start;
    }
    return true;
}

/* An integer of 1 to 18 digits, without a leading zero (jansson rejects those), "-0",
 * fraction or exponent (left to jansson). */
static json_t *jf_integer(jf_parser *f)
{
    const unsigned char *p = f->p;
    size_t i = f->i;
    bool neg = p[i] == '-';
    if (neg)
        i++;
    size_t d0 = i;
    long long v = 0;
    while (i < f->n && p[i] >= '0' && p[i] <= '9') {
        if (i - d0 == 18)
            return NULL; /* a 19th digit: may not fit in long long */
        v = v * 10 + (p[i] - '0');
        i++;
    }
    size_t nd = i - d0;
    if (nd == 0 || (p[d0] == '0' && (nd > 1 || neg)))
        return NULL;
    if (i < f->n && (p[i] == '.' || p[i] == 'e' || p[i] == 'E'))
        return NULL;
    f->i = i;
    return json_integer(neg ? -v : v);
}

static json_t *jf_value(jf_parser *f);

static json_t *jf_object(jf_parser *f)
{
    json_t *obj = json_object();
    if (!obj)
        return NULL;
    f->i++;
    jf_skip_ws(f);
    if (f->i < f->n && f->p[f->i] == '}') {
        f->i++;
        return obj;
    }
    for (;;) {
        const char *key;
        size_t klen;
        if (f->i >= f->n || f->p[f->i] != '"' || !jf_string(f, &key, &klen))
            goto fail;
        /* the key may sit in f->buf, which the value's strings reuse: set it aside */
        char kshort[64];
        char *kheap = NULL;
        const char *k = key;
        if (key == f->buf) {
            if (klen < sizeof kshort) {
                memcpy(kshort, key, klen);
                k = kshort;
            } else {
                kheap = malloc(klen);
                if (!kheap)
                    goto fail;
                memcpy(kheap, key, klen);
                k = kheap;
            }
        }
        jf_skip_ws(f);
        json_t *v = NULL;
        if (f->i < f->n && f->p[f->i] == ':') {
            f->i++;
            jf_skip_ws(f);
            v = jf_value(f);
        }
        /* the last of duplicate keys wins, as in jansson without JSON_REJECT_DUPLICATES */
        int rc = v ? json_object_setn_new_nocheck(obj, k, klen, v) : -1;
        free(kheap);
        if (rc != 0)
            goto fail;
        jf_skip_ws(f);
        if (f->i >= f->n)
            goto fail;
        if (f->p[f->i] == '}') {
            f->i++;
            return obj;
        }
        if (f->p[f->i] != ',')
            goto fail;
        f->i++;
        jf_skip_ws(f);
    }
fail:
    json_decref(obj);
    return NULL;
}

static json_t *jf_array(jf_parser *f)
{
    json_t *arr = json_array();
    if (!arr)
        return NULL;
    f->i++;
    jf_skip_ws(f);
    if (f->i < f->n && f->p[f->i] == ']') {
        f->i++;
        return arr;
    }
    for (;;) {
        json_t *v = jf_value(f);
        if (!v || json_array_append_new(arr, v) != 0)
            goto fail;
        jf_skip_ws(f);
        if (f->i >= f->n)
            goto fail;
        if (f->p[f->i] == ']') {
            f->i++;
            return arr;
        }
        if (f->p[f->i] != ',')
            goto fail;
        f->i++;
        jf_skip_ws(f);
    }
fail:
    json_decref(arr);
    return NULL;
}

/* The literal word at f->i when it is exactly w. */
static bool jf_word(jf_parser *f, const char *w)
{
    size_t len = strlen(w);
    if (f->n - f->i < len || memcmp(f->p + f->i, w, len) != 0)
        return false;
    f->i += len;
    return true;
}

static json_t *jf_value(jf_parser *f)
{
    if (f->i >= f->n)
        return NULL;
    unsigned char c = f->p[f->i];
    json_t *v = NULL;
    if (c == '{' || c == '[') {
        if (++f->depth > f->max_depth)
            return NULL;
        v = c == '{' ? jf_object(f) : jf_array(f);
        f->depth--;
    } else if (c == '"') {
        const char *s;
        size_t len;
        if (jf_string(f, &s, &len))
            v = json_stringn_nocheck(s, len);
    } else if (c == '-' || (c >= '0' && c <= '9')) {
        v = jf_integer(f);
    } else if (c == 't') {
        v = jf_word(f, "true") ? json_true() : NULL;
    } else if (c == 'f') {
        v = jf_word(f, "false") ? json_false() : NULL;
    } else if (c == 'n') {
        v = jf_word(f, "null") ? json_null() : NULL;
    }
    return v;
}

json_t *jsonfast_loadb(const char *p, size_t n, int max_depth)
{
    jf_parser f = {.p = (const unsigned char *)p, .n = n, .max_depth = max_depth};
    json_t *v = NULL;
    if (!p || n == 0)
        return NULL;
    jf_skip_ws(&f);
    v = jf_value(&f);
    jf_skip_ws(&f);
    if (v && f.i != f.n) { /* trailing bytes: jansson's error */
        json_decref(v);
        v = NULL;
    }
    free(f.buf);
    return v;
}
