/* Citation markers: checked against the sources given. See citations.h. */
#include "rag/citations.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define CITATION_ITEMS 16 /* numbers or ranges in one marker */

typedef struct {
    int lo, hi; /* a number: lo == hi */
} citation_item;

typedef struct {
    citation_item items[CITATION_ITEMS];
    size_t n;
    size_t len; /* bytes of the marker, '[' to ']' */
} citation_marker;

static size_t citation_skip_spaces(const char *s, size_t i, size_t end)
{
    while (i < end && (s[i] == ' ' || s[i] == '\t'))
        i++;
    return i;
}

/* 1 to 4 digits at s[*i]: the number, *i past it; -1 when none. */
static int citation_number(const char *s, size_t *i, size_t end)
{
    int v = 0;
    size_t d = 0;
    while (*i < end && s[*i] >= '0' && s[*i] <= '9' && d < 5) {
        v = v * 10 + (s[*i] - '0');
        (*i)++;
        d++;
    }
    return d >= 1 && d <= 4 ? v : -1;
}

/* A dash of a range at s[*i] ('-' or U+2013): *i past it. */
static bool citation_dash(const char *s, size_t *i, size_t end)
{
    if (*i < end && s[*i] == '-') {
        (*i)++;
        return true;
    }
    if (end - *i >= 3 && memcmp(s + *i, "\xe2\x80\x93", 3) == 0) {
        *i += 3;
        return true;
    }
    return false;
}

/* Whether s[at..len) starts with a marker ('[' at s[at]); fills m. */
static bool citation_parse(const char *s, size_t at, size_t len, citation_marker *m)
{
    size_t end = len - at > RAG_CITATION_MAX ? at + RAG_CITATION_MAX : len;
    size_t i = at + 1;
    m->n = 0;
    for (;;) {
        i = citation_skip_spaces(s, i, end);
        int lo = citation_number(s, &i, end);
        if (lo < 0 || m->n == CITATION_ITEMS)
            return false;
        int hi = lo;
        size_t j = citation_skip_spaces(s, i, end);
        if (citation_dash(s, &j, end)) {
            j = citation_skip_spaces(s, j, end);
            hi = citation_number(s, &j, end);
            if (hi < lo)
                return false;
            i = j;
        }
        m->items[m->n++] = (citation_item){lo, hi};
        i = citation_skip_spaces(s, i, end);
        if (i < end && s[i] == ']') {
            m->len = i + 1 - at;
            return true;
        }
        if (i >= end || (s[i] != ',' && s[i] != ';'))
            return false;
        i++;
    }
}

/* The items of m narrowed to 1..n_sources, in place; returns whether any changed. */
static bool citation_narrow(citation_marker *m, size_t n_sources)
{
    bool changed = false;
    size_t kept = 0;
    for (size_t i = 0; i < m->n; i++) {
        citation_item it = m->items[i];
        if (it.lo < 1)
            it.lo = 1;
        if ((size_t)it.hi > n_sources)
            it.hi = (int)n_sources;
        if (it.lo != m->items[i].lo || it.hi != m->items[i].hi)
            changed = true;
        if (it.lo <= it.hi)
            m->items[kept++] = it;
    }
    m->n = kept;
    return changed;
}

ragd_err rag_citations_filter(const char *text, size_t len, size_t n_sources, strbuf *out)
{
    size_t base = out->len; /* spaces before a removed marker are taken back only down to here */
    size_t i = 0;
    ragd_err rc = RAGD_OK;
    while (rc == RAGD_OK && i < len) {
        const char *open = memchr(text + i, '[', len - i);
        size_t at = open ? (size_t)(open - text) : len;
        rc = strbuf_append(out, text + i, at - i);
        if (rc != RAGD_OK || at == len)
            break;
        citation_marker m;
        if (!citation_parse(text, at, len, &m)) {
            rc = strbuf_append(out, "[", 1);
            i = at + 1;
            continue;
        }
        i = at + m.len;
        if (!citation_narrow(&m, n_sources)) {
            rc = strbuf_append(out, text + at, m.len);
            continue;
        }
        if (m.n == 0) {
            size_t keep = out->len;
            while (keep > base && (out->data[keep - 1] == ' ' || out->data[keep - 1] == '\t'))
                keep--;
            strbuf_truncate(out, keep);
            continue;
        }
        rc = strbuf_append(out, "[", 1);
        for (size_t k = 0; rc == RAGD_OK && k < m.n; k++) {
            if (m.items[k].lo == m.items[k].hi)
                rc = strbuf_appendf(out, "%s%d", k ? ", " : "", m.items[k].lo);
            else
                rc = strbuf_appendf(out, "%s%d-%d", k ? ", " : "", m.items[k].lo, m.items[k].hi);
        }
        if (rc == RAGD_OK)
            rc = strbuf_append(out, "]", 1);
    }
    return rc;
}

size_t rag_citations_safe_end(const char *text, size_t from, size_t upto)
{
    size_t low = upto - from > RAG_CITATION_MAX ? upto - RAG_CITATION_MAX : from;
    for (size_t i = upto; i > low; i--) {
        if (text[i - 1] == ']')
            break;
        if (text[i - 1] == '[') {
            upto = i - 1;
            break;
        }
    }
    while (upto > from && (text[upto - 1] == ' ' || text[upto - 1] == '\t'))
        upto--;
    return upto;
}

size_t rag_citations_list(const char *text, size_t len, size_t n_sources, int *out, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; text && i < len; i++) {
        citation_marker m;
        if (text[i] != '[' || !citation_parse(text, i, len, &m))
            continue;
        citation_narrow(&m, n_sources);
        for (size_t k = 0; k < m.n; k++) {
            for (int v = m.items[k].lo; v <= m.items[k].hi; v++) {
                size_t j = 0;
                while (j < n && out[j] < v)
                    j++;
                if ((j < n && out[j] == v) || n == cap)
                    continue;
                memmove(out + j + 1, out + j, (n - j) * sizeof *out);
                out[j] = v;
                n++;
            }
        }
        i += m.len - 1;
    }
    return n;
}
