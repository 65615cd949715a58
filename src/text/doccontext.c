/* Titles and heading paths of documents (text/doccontext.h). */
#include "text/doccontext.h"

#include <limits.h>
#include <md4c.h>
#include <stdlib.h>
#include <string.h>

#include "text/md_input.h"
#include "util/utf8.h"

#define DOCCONTEXT_ONE_HEADING_MAX 100

/* Appends src[0..n) to dst (which holds *len bytes, room for cap) cleaned: runs of white
 * space and control characters become one space (none at the start), ill-formed UTF-8 is
 * skipped, and it stops before a code point that would not fit. */
static void dc_clean_append(char *dst, size_t *len, size_t cap, const char *src, size_t n)
{
    const unsigned char *p = (const unsigned char *)src;
    size_t i = 0;
    while (i < n) {
        unsigned char c = p[i];
        size_t w = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        if (w == 0 || i + w > n || !utf8_valid(src + i, w)) {
            i++;
            continue;
        }
        bool space = c <= 0x20 || c == 0x7f || (w == 2 && c == 0xc2 && (p[i + 1] == 0xa0 || p[i + 1] < 0xa0));
        if (space) {
            if (*len > 0 && dst[*len - 1] != ' ' && *len < cap)
                dst[(*len)++] = ' ';
        } else {
            if (*len + w > cap)
                return;
            memcpy(dst + *len, src + i, w);
            *len += w;
        }
        i += w;
    }
}

static void dc_trim_end(char *dst, size_t *len)
{
    while (*len > 0 && dst[*len - 1] == ' ')
        (*len)--;
    dst[*len] = '\0';
}

/* A malloc'd cleaned copy of s[0..n), at most max bytes; NULL when out of memory. */
static char *dc_clean_dup(const char *s, size_t n, size_t max)
{
    char *out = malloc(max + 1);
    if (!out)
        return NULL;
    size_t len = 0;
    dc_clean_append(out, &len, max, s, n);
    dc_trim_end(out, &len);
    return out;
}

/* ---------------------------------------------------------------- markdown headings */

typedef struct {
    size_t line;  /* start of the heading's line */
    unsigned level;
    char text[DOCCONTEXT_ONE_HEADING_MAX + 1];
    size_t len;
} dc_heading;

typedef struct {
    const char *base;
    size_t n;
    dc_heading *v;
    size_t count, alloc;
    bool in_heading;
    bool have_line;
    size_t stop_after; /* stop parsing once this many headings are known (0: never) */
    ragd_err err;
} dc_md;

static int dc_enter_block(MD_BLOCKTYPE type, void *detail, void *ud)
{
    dc_md *m = ud;
    if (type != MD_BLOCK_H)
        return 0;
    if (m->count == m->alloc) {
        size_t na = m->alloc ? m->alloc * 2 : 16;
        dc_heading *nv = realloc(m->v, na * sizeof *nv);
        if (!nv) {
            m->err = RAGD_ENOMEM;
            return 1;
        }
        m->v = nv;
        m->alloc = na;
    }
    dc_heading *h = &m->v[m->count++];
    h->level = ((MD_BLOCK_H_DETAIL *)detail)->level;
    h->len = 0;
    h->text[0] = '\0';
    m->in_heading = true;
    m->have_line = false;
    return 0;
}

static int dc_leave_block(MD_BLOCKTYPE type, void *detail, void *ud)
{
    dc_md *m = ud;
    if (type != MD_BLOCK_H)
        return 0;
    m->in_heading = false;
    dc_heading *h = &m->v[m->count - 1];
    dc_trim_end(h->text, &h->len);
    /* a heading without text in the input has no known place: forget it (the chunker
     * does not see it either) */
    if (!m->have_line || h->len == 0)
        m->count--;
    if (m->stop_after && m->count >= m->stop_after)
        return 1;
    return 0;
}

static int dc_span(MD_SPANTYPE type, void *detail, void *ud) { return 0; }

static int dc_text(MD_TEXTTYPE type, const MD_CHAR *text, MD_SIZE size, void *ud)
{
    dc_md *m = ud;
    if (!m->in_heading)
        return 0;
    dc_heading *h = &m->v[m->count - 1];
    uintptr_t t = (uintptr_t)text, base = (uintptr_t)m->base;
    if (!m->have_line && t >= base && t < base + m->n) {
        size_t line = t - base;
        while (line > 0 && m->base[line - 1] != '\n' && m->base[line - 1] != '\r') /* a lone CR ends a line too */
            line--;
        h->line = line;
        m->have_line = true;
    }
    if (type == MD_TEXT_SOFTBR || type == MD_TEXT_BR)
        dc_clean_append(h->text, &h->len, DOCCONTEXT_ONE_HEADING_MAX, " ", 1);
    else if (type != MD_TEXT_NULLCHAR)
        dc_clean_append(h->text, &h->len, DOCCONTEXT_ONE_HEADING_MAX, text, size);
    h->text[h->len] = '\0';
    return 0;
}

/* Parses text for headings (at most stop_after when not 0) into m->v. */
static ragd_err dc_parse(const char *text, size_t len, size_t stop_after, dc_md *m)
{
    memset(m, 0, sizeof *m);
    m->base = text;
    m->n = len;
    m->stop_after = stop_after;
    if (len > UINT_MAX)
        return RAGD_ETOOBIG;
    MD_PARSER parser = {
        .abi_version = 0,
        .flags = MD_DIALECT_GITHUB,
        .enter_block = dc_enter_block,
        .leave_block = dc_leave_block,
        .enter_span = dc_span,
        .leave_span = dc_span,
        .text = dc_text,
    };
    char *copy = md_input_copy(text, len); /* NUL-terminated for md4c (md_input.h) */
    if (!copy)
        return RAGD_ENOMEM;
    m->base = copy; /* the callbacks' offsets are the text's */
    int rc = md_parse(copy, (MD_SIZE)len, &parser, m);
    m->base = text;
    free(copy);
    if (m->err)
        return m->err;
    if (rc != 0 && !(stop_after && m->count >= stop_after))
        return RAGD_ENOMEM; /* md4c fails only when an allocation does */
    return RAGD_OK;
}

void doccontext_paths_free(char **paths, size_t n)
{
    if (!paths)
        return;
    for (size_t i = 0; i < n; i++)
        free(paths[i]);
    free(paths);
}

ragd_err doccontext_headings(const char *text, size_t len, const int64_t *starts, size_t n, char ***paths)
{
    *paths = NULL;
    dc_md m;
    ragd_err e = dc_parse(text, len, 0, &m);
    char **out = NULL;
    if (e)
        goto out;
    out = calloc(n ? n : 1, sizeof *out);
    if (!out) {
        e = RAGD_ENOMEM;
        goto out;
    }
    size_t stack[6], depth = 0, next = 0;
    for (size_t i = 0; i < n; i++) {
        while (next < m.count && (int64_t)m.v[next].line <= starts[i]) {
            while (depth > 0 && m.v[stack[depth - 1]].level >= m.v[next].level)
                depth--;
            if (depth < 6)
                stack[depth++] = next;
            next++;
        }
        char *p = malloc(DOCCONTEXT_HEADING_MAX + 1);
        if (!p) {
            e = RAGD_ENOMEM;
            goto out;
        }
        size_t pl = 0;
        for (size_t d = 0; d < depth; d++) {
            const dc_heading *h = &m.v[stack[d]];
            if (d > 0)
                dc_clean_append(p, &pl, DOCCONTEXT_HEADING_MAX, " > ", 3);
            dc_clean_append(p, &pl, DOCCONTEXT_HEADING_MAX, h->text, h->len);
        }
        dc_trim_end(p, &pl);
        out[i] = p;
    }
    *paths = out;
    out = NULL;
out:
    doccontext_paths_free(out, n);
    free(m.v);
    return e;
}

/* ---------------------------------------------------------------- titles */

static bool dc_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'); }

/* The file name in path p (after the last '/' or '\\', before a URL's '?' or '#'), without
 * its extension (a last '.' followed by 1..10 letters or digits). Sets *start, *len. */
static void dc_file_name(const char *p, size_t *start, size_t *len, bool *has_ext, bool *has_dir)
{
    size_t n = strcspn(p, "?#");
    while (n > 0 && (p[n - 1] == '/' || p[n - 1] == '\\'))
        n--;
    size_t s = n;
    while (s > 0 && p[s - 1] != '/' && p[s - 1] != '\\')
        s--;
    *has_dir = s > 0;
    *has_ext = false;
    for (size_t k = n; k > s + 1; k--) {
        if (p[k - 1] == '.') {
            size_t ext = n - k;
            bool ok = ext >= 1 && ext <= 10;
            for (size_t j = k; ok && j < n; j++)
                ok = dc_alnum(p[j]);
            if (ok) {
                *has_ext = true;
                n = k - 1;
            }
            break;
        }
    }
    *start = s;
    *len = n - s;
}

static bool dc_is_hex64(const char *s)
{
    size_t i = 0;
    for (; s[i]; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')) || i >= 64)
            return false;
    return i == 64;
}

/* A title cleaned from s: 1 when *t holds a non-empty one, 0 when it came out empty (*t
 * stays NULL), -1 when out of memory. */
static int dc_title_from(const char *s, size_t n, char **t)
{
    *t = dc_clean_dup(s, n, DOCCONTEXT_TITLE_MAX);
    if (!*t)
        return -1;
    if ((*t)[0])
        return 1;
    free(*t);
    *t = NULL;
    return 0;
}

ragd_err doccontext_title(const doccontext_in *in, char **out)
{
    *out = NULL;
    char *t = NULL;
    int found;
    /* 1, 2: metadata, HTML */
    if (in->meta_title && in->meta_title_len && (found = dc_title_from(in->meta_title, in->meta_title_len, &t)))
        goto found;
    if (in->html_title && in->html_title_len && (found = dc_title_from(in->html_title, in->html_title_len, &t)))
        goto found;
    /* 3: the first markdown heading */
    if (in->markdown && in->text_len) {
        dc_md m;
        ragd_err e = dc_parse(in->text, in->text_len, 1, &m);
        if (e) {
            free(m.v);
            return e;
        }
        found = m.count > 0 ? dc_title_from(m.v[0].text, m.v[0].len, &t) : 0;
        free(m.v);
        if (found)
            goto found;
    }
    /* 4: a file name */
    const char *paths[2] = {in->source, in->id && !dc_is_hex64(in->id) ? in->id : NULL};
    for (int i = 0; i < 2; i++) {
        if (!paths[i])
            continue;
        size_t s, n;
        bool ext, dir;
        dc_file_name(paths[i], &s, &n, &ext, &dir);
        if (i == 1 && !ext && !dir)
            continue; /* an id like "doc17" names no file */
        if ((found = dc_title_from(paths[i] + s, n, &t)))
            goto found;
    }
    /* 5: the first non-blank line, when it is short enough to be a title: a longer one
     * is a paragraph, and a cut prefix of prose in the title field only adds noise (it
     * cost a fifth of the right documents on bench_http.py's one-line documents) */
    {
        const char *p = in->text ? in->text : "";
        size_t n = in->text_len, i = 0;
        for (;;) {
            while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n'))
                i++;
            size_t e = i;
            while (e < n && p[e] != '\n')
                e++;
            t = dc_clean_dup(p + i, e - i, DOCCONTEXT_LINE_MAX + 1);
            if (!t)
                return RAGD_ENOMEM;
            if (t[0] || e >= n)
                break;
            free(t);
            i = e;
        }
        if (strlen(t) > DOCCONTEXT_LINE_MAX)
            t[0] = '\0';
    }
    *out = t;
    return RAGD_OK;
found:
    if (found < 0)
        return RAGD_ENOMEM;
    *out = t;
    return RAGD_OK;
}
