#include "text/chunker.h"

#include <limits.h>
#include <md4c.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/md_input.h"
#include "text/sentence.h"
#include "util/utf8.h"

/*
 * How a chunk is cut (see docs/internals/text.md):
 *   sections   markdown headings split the text into sections chunked independently, so
 *              every heading starts a chunk and no overlap crosses one;
 *   end        from the chunk start, the window is chunk_size code points; the chunk ends
 *              at the last paragraph end in the second half of the window, else the last
 *              sentence end there, else the last word end anywhere in the window, else
 *              (one word longer than the window) at the window's end;
 *   next start about `overlap` code points before the previous end, at a sentence start
 *              (when it keeps at least half the overlap) or else a word start; without
 *              such a boundary, or when the overlap would force a word to be cut, the
 *              next chunk starts right after the previous one.
 * Every chunk ends after the previous one's end, so the loop always advances.
 */

typedef struct {
    size_t *v;
    size_t n;
    size_t alloc;
} chk_pos_list;

typedef struct {
    const unsigned char *p;
    size_t len;
    size_t chunk_size;
    size_t overlap;
    chk_pos_list para;     /* ends of paragraphs (positions just after non-whitespace) */
    chk_pos_list headings; /* markdown: starts of heading lines */
    text_span *sent;       /* sentences of the current section, absolute offsets */
    size_t nsent;
    text_span *out;
    size_t nout;
    size_t aout;
} chk_ctx;

/* ---------------------------------------------------------------- helpers */

static ragd_err chk_pos_push(chk_pos_list *l, size_t pos)
{
    if (l->n > 0 && l->v[l->n - 1] == pos)
        return RAGD_OK;
    if (l->n == l->alloc) {
        size_t na = l->alloc ? l->alloc * 2 : 64;
        size_t *nv = realloc(l->v, na * sizeof *nv);
        if (!nv)
            return RAGD_ENOMEM;
        l->v = nv;
        l->alloc = na;
    }
    l->v[l->n++] = pos;
    return RAGD_OK;
}

static int chk_pos_cmp(const void *a, const void *b)
{
    size_t x = *(const size_t *)a;
    size_t y = *(const size_t *)b;
    return (x > y) - (x < y);
}

/* Sorts and removes duplicates. */
static void chk_pos_normalise(chk_pos_list *l)
{
    if (l->n < 2)
        return;
    qsort(l->v, l->n, sizeof *l->v, chk_pos_cmp);
    size_t w = 1;
    for (size_t r = 1; r < l->n; r++)
        if (l->v[r] != l->v[w - 1])
            l->v[w++] = l->v[r];
    l->n = w;
}

/* Index of the first element >= x (n when none). */
static size_t chk_lower_bound(const size_t *v, size_t n, size_t x)
{
    size_t lo = 0;
    size_t hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (v[mid] < x)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The last element of v in [lo, hi], or 0 when none (0 is never a valid chunk end). */
static size_t chk_last_in(const size_t *v, size_t n, size_t lo, size_t hi)
{
    if (lo > hi)
        return 0;
    size_t k = chk_lower_bound(v, n, hi + 1);
    if (k == 0 || v[k - 1] < lo)
        return 0;
    return v[k - 1];
}

/* chk_space_at for a lead byte c = p[i] >= 0x80. */
static size_t chk_space_at_wide(const unsigned char *p, size_t i, size_t n)
{
    unsigned c = p[i];
    if (c < 0xC2 || c > 0xE3)
        return 0;
    if (c == 0xC2)
        return (i + 1 < n && (p[i + 1] == 0x85 || p[i + 1] == 0xA0)) ? 2 : 0;
    /* The three-byte spaces lead with E1 (U+1680), E2 (U+2000..) or E3 (U+3000); any other
     * lead byte up to E3 starts a two-byte character or another three-byte one. */
    if (c < 0xE1 || i + 2 >= n || (p[i + 1] & 0xC0) != 0x80 || (p[i + 2] & 0xC0) != 0x80)
        return 0;
    uint32_t cp = ((c & 0x0Fu) << 12) | ((p[i + 1] & 0x3Fu) << 6) | (p[i + 2] & 0x3Fu);
    if (cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
        cp == 0x202F || cp == 0x205F || cp == 0x3000)
        return 3;
    return 0;
}

/* Byte length of the whitespace character (Unicode White_Space) at p[i], or 0. The text
 * is known to be valid UTF-8 here. ASCII inline, the rest in chk_space_at_wide. */
static inline size_t chk_space_at(const unsigned char *p, size_t i, size_t n)
{
    unsigned c = p[i];
    if (c < 0x80)
        return c == ' ' || (c >= 0x09 && c <= 0x0D);
    return chk_space_at_wide(p, i, n);
}

/* Start of the code point before byte `pos` (pos > 0). */
static size_t chk_prev(const unsigned char *p, size_t pos)
{
    size_t k = pos - 1;
    while (k > 0 && (p[k] & 0xC0) == 0x80)
        k--;
    return k;
}

static int chk_is_space_before(const unsigned char *p, size_t pos, size_t n)
{
    size_t k = chk_prev(p, pos);
    return chk_space_at(p, k, n) == pos - k;
}

/* First non-whitespace position in [pos, end), or end. */
static size_t chk_skip_space(const chk_ctx *c, size_t pos, size_t end)
{
    while (pos < end) {
        size_t w = chk_space_at(c->p, pos, c->len);
        if (!w)
            break;
        pos += w;
    }
    return pos;
}

/* Position just after the last non-whitespace character in [lo, pos), or lo. */
static size_t chk_trim_back(const chk_ctx *c, size_t lo, size_t pos)
{
    while (pos > lo && chk_is_space_before(c->p, pos, c->len))
        pos = chk_prev(c->p, pos);
    return pos;
}

/* Moves k code points forward from pos, stopping at limit. */
static size_t chk_advance(const unsigned char *p, size_t pos, size_t k, size_t limit)
{
    while (k > 0 && pos < limit) {
        /* a run of ASCII bytes is as many code points (valid UTF-8) */
        size_t run = utf8_ascii_prefix((const char *)p + pos, limit - pos < k ? limit - pos : k);
        pos += run;
        k -= run;
        if (k == 0 || pos >= limit)
            break;
        pos++;
        while (pos < limit && (p[pos] & 0xC0) == 0x80)
            pos++;
        k--;
    }
    return pos;
}

/* Moves k code points back from pos, stopping at floor. */
static size_t chk_retreat(const unsigned char *p, size_t pos, size_t k, size_t floor)
{
    while (k > 0 && pos > floor) {
        pos = chk_prev(p, pos);
        k--;
    }
    return pos < floor ? floor : pos;
}

/* ---------------------------------------------------------------- structure */

/* Paragraph ends of plain text: the last non-whitespace before each blank line. Line by
 * line (memchr for each '\n'): the last non-whitespace of a line is found from its end
 * backwards, so each byte is looked at about once; a line of only whitespace keeps the
 * previous line's. */
static ragd_err chk_find_paragraphs(chk_ctx *c)
{
    const unsigned char *p = c->p;
    size_t last_end = 0; /* just after the last non-whitespace before the current line's end */
    size_t line = 0;     /* start of the current line */
    while (line < c->len) {
        const unsigned char *nl = memchr(p + line, '\n', c->len - line);
        if (!nl)
            break;
        size_t i = (size_t)(nl - p);
        size_t e = chk_trim_back(c, line, i);
        if (e > line)
            last_end = e;
        if (last_end > 0) {
            size_t j = i + 1;
            while (j < c->len && (p[j] == ' ' || p[j] == '\t' || p[j] == '\r' || p[j] == '\f' ||
                                  p[j] == '\v'))
                j++;
            if (j < c->len && p[j] == '\n') {
                ragd_err err = chk_pos_push(&c->para, last_end);
                if (err)
                    return err;
            }
        }
        line = i + 1;
    }
    return RAGD_OK;
}

typedef struct {
    chk_ctx *c;
    int want;    /* 0 none, 1 heading, 2 list item / table row: waiting for their first text */
    ragd_err err;
} chk_md_state;

static int chk_md_enter_block(MD_BLOCKTYPE type, void *detail, void *userdata)
{
    chk_md_state *st = userdata;
    if (type == MD_BLOCK_H)
        st->want = 1;
    else if (type == MD_BLOCK_LI || type == MD_BLOCK_TR)
        st->want = 2;
    return 0;
}

/* A heading, item or row without any text must not hand its "want" to the next block. */
static int chk_md_leave_block(MD_BLOCKTYPE type, void *detail, void *userdata)
{
    chk_md_state *st = userdata;
    if (type == MD_BLOCK_H || type == MD_BLOCK_LI || type == MD_BLOCK_TR)
        st->want = 0;
    return 0;
}

static int chk_md_noop_span(MD_SPANTYPE type, void *detail, void *userdata) { return 0; }

/* md4c reports no offsets for blocks, but text callbacks point into the input: the start
 * of the line holding a block's first text is where the block (with its "##" or "- "
 * marker) begins. Pointers outside the input (md4c's own strings) are ignored. */
static int chk_md_text(MD_TEXTTYPE type, const MD_CHAR *text, MD_SIZE size, void *userdata)
{
    chk_md_state *st = userdata;
    chk_ctx *c = st->c;
    if (!st->want)
        return 0;
    uintptr_t t = (uintptr_t)text;
    uintptr_t base = (uintptr_t)c->p;
    if (t < base || t >= base + c->len)
        return 0;
    size_t line = t - base;
    while (line > 0 && c->p[line - 1] != '\n' && c->p[line - 1] != '\r') /* a lone CR ends a line too */
        line--;
    ragd_err err;
    if (st->want == 1)
        err = chk_pos_push(&c->headings, line);
    else
        err = chk_pos_push(&c->para, chk_trim_back(c, 0, line));
    st->want = 0;
    if (err) {
        st->err = err;
        return 1;
    }
    return 0;
}

static ragd_err chk_find_markdown(chk_ctx *c)
{
    chk_md_state st = {.c = c};
    MD_PARSER parser = {
        .abi_version = 0,
        .flags = MD_DIALECT_GITHUB,
        .enter_block = chk_md_enter_block,
        .leave_block = chk_md_leave_block,
        .enter_span = chk_md_noop_span,
        .leave_span = chk_md_noop_span,
        .text = chk_md_text,
    };
    if (c->len > UINT_MAX)
        return RAGD_ETOOBIG;
    /* md4c parses a NUL-terminated copy (md_input.h); the callbacks read it as c->p, whose
     * bytes and offsets are the text's */
    const unsigned char *text = c->p;
    char *copy = md_input_copy((const char *)text, c->len);
    if (!copy)
        return RAGD_ENOMEM;
    c->p = (const unsigned char *)copy;
    int rc = md_parse(copy, (MD_SIZE)c->len, &parser, &st);
    c->p = text;
    free(copy);
    if (st.err)
        return st.err;
    if (rc != 0)
        return RAGD_ENOMEM; /* md4c fails only when an allocation does */
    chk_pos_normalise(&c->headings);
    return RAGD_OK;
}

/* ---------------------------------------------------------------- chunking */

static ragd_err chk_emit(chk_ctx *c, size_t s, size_t e)
{
    if (c->nout == c->aout) {
        size_t na = c->aout ? c->aout * 2 : 16;
        text_span *nv = realloc(c->out, na * sizeof *nv);
        if (!nv)
            return RAGD_ENOMEM;
        c->out = nv;
        c->aout = na;
    }
    c->out[c->nout].start = s;
    c->out[c->nout].end = e;
    c->nout++;
    return RAGD_OK;
}

/* Index of the first sentence starting at or after pos. */
static size_t chk_sent_from(const chk_ctx *c, size_t pos)
{
    size_t lo = 0;
    size_t hi = c->nsent;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (c->sent[mid].start < pos)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* The last sentence end in [lo, hi], or 0. */
static size_t chk_last_sentence_end(const chk_ctx *c, size_t lo, size_t hi)
{
    if (lo > hi)
        return 0;
    /* Sentence ends are increasing like their starts: find the last end <= hi. */
    size_t a = 0;
    size_t b = c->nsent;
    while (a < b) {
        size_t mid = a + (b - a) / 2;
        if (c->sent[mid].end <= hi)
            a = mid + 1;
        else
            b = mid;
    }
    if (a == 0 || c->sent[a - 1].end < lo)
        return 0;
    return c->sent[a - 1].end;
}

/* Where a chunk starting at ns ends; `first` is the first byte the chunk must cover beyond
 * the previous chunk (first == ns without overlap), `stop` the end of the section's text.
 * *hard tells that a word had to be cut. */
static size_t chk_pick_end(const chk_ctx *c, size_t ns, size_t first, size_t stop, int *hard)
{
    const unsigned char *p = c->p;
    *hard = 0;
    size_t w = chk_advance(p, ns, c->chunk_size, stop);
    if (w >= stop)
        return stop;
    size_t lo = chk_advance(p, ns, c->chunk_size / 2, w);
    if (lo <= first)
        lo = first + 1;
    size_t e = chk_last_in(c->para.v, c->para.n, lo, w);
    if (e)
        return e;
    e = chk_last_sentence_end(c, lo, w);
    if (e)
        return e;
    /* The last word end in (first, w]: whitespace at e, something else before it. */
    for (size_t k = w; k > first; k = chk_prev(p, k)) {
        if (chk_space_at(p, k, c->len) && !chk_is_space_before(p, k, c->len))
            return k;
    }
    *hard = 1;
    return w;
}

/* Where the chunk after [prev_s, prev_e) starts so that it repeats about `overlap` code
 * points; `next` (the first non-whitespace after prev_e) when no boundary fits. */
static size_t chk_overlap_start(const chk_ctx *c, size_t prev_s, size_t prev_e, size_t next)
{
    const unsigned char *p = c->p;
    size_t floor = chk_advance(p, prev_s, 1, prev_e);
    size_t t = chk_retreat(p, prev_e, c->overlap, floor);
    size_t half = chk_retreat(p, prev_e, c->overlap / 2, floor);

    size_t k = chk_sent_from(c, t);
    if (k < c->nsent && c->sent[k].start < prev_e && c->sent[k].start <= half)
        return c->sent[k].start;
    for (size_t x = t; x < prev_e; x++) {
        if ((p[x] & 0xC0) == 0x80 || chk_space_at(p, x, c->len))
            continue;
        if (x > 0 && chk_is_space_before(p, x, c->len))
            return x;
    }
    return next;
}

static ragd_err chk_section(chk_ctx *c, size_t a, size_t b)
{
    text_span *rel = NULL;
    size_t nrel = 0;
    ragd_err err = RAGD_OK;

    size_t first = chk_skip_space(c, a, b);
    if (first >= b)
        goto out;
    size_t stop = chk_trim_back(c, first, b);

    err = sentence_split((const char *)c->p + a, b - a, &rel, &nrel);
    if (err)
        goto out;
    for (size_t k = 0; k < nrel; k++) {
        rel[k].start += a;
        rel[k].end += a;
    }
    c->sent = rel;
    c->nsent = nrel;

    int have_prev = 0;
    size_t prev_s = 0;
    size_t prev_e = 0;
    while (first < stop) {
        size_t ns = first;
        if (have_prev && c->overlap > 0)
            ns = chk_overlap_start(c, prev_s, prev_e, first);
        int hard;
        size_t e = chk_pick_end(c, ns, first, stop, &hard);
        if (hard && ns < first) {
            /* The overlap would make us cut a word: give it up for this chunk. */
            ns = first;
            e = chk_pick_end(c, ns, first, stop, &hard);
        }
        err = chk_emit(c, ns, e);
        if (err)
            goto out;
        have_prev = 1;
        prev_s = ns;
        prev_e = e;
        first = chk_skip_space(c, e, stop);
    }
out:
    c->sent = NULL;
    c->nsent = 0;
    free(rel);
    return err;
}

/* Validates, finds the structure (paragraphs, markdown headings), then chunks each
 * section. Invalid UTF-8 (or NUL) is refused with RAGD_EINVAL rather than guessed at. */
ragd_err chunker_split(const char *text, size_t len, chunk_format fmt, const chunk_params *params,
                       text_span **out, size_t *count)
{
    chk_ctx c = {0};
    ragd_err err = RAGD_OK;

    if (!out || !count)
        return RAGD_EINVAL;
    *out = NULL;
    *count = 0;
    if (!params || (!text && len > 0) || params->chunk_size < 50 ||
        params->overlap >= params->chunk_size / 2)
        return RAGD_EINVAL;
    if (fmt != CHUNK_FORMAT_PLAIN && fmt != CHUNK_FORMAT_MARKDOWN)
        return RAGD_EINVAL;
    if (len == 0)
        return RAGD_OK;
    if (!utf8_valid(text, len))
        return RAGD_EINVAL;

    c.p = (const unsigned char *)text;
    c.len = len;
    c.chunk_size = params->chunk_size;
    c.overlap = params->overlap;

    err = chk_find_paragraphs(&c);
    if (err)
        goto out;
    if (fmt == CHUNK_FORMAT_MARKDOWN) {
        err = chk_find_markdown(&c);
        if (err)
            goto out;
        chk_pos_normalise(&c.para);
    }

    size_t a = 0;
    for (size_t h = 0; h <= c.headings.n; h++) {
        size_t b = h < c.headings.n ? c.headings.v[h] : len;
        if (b > a) {
            err = chk_section(&c, a, b);
            if (err)
                goto out;
        }
        a = b;
    }
    *out = c.out;
    *count = c.nout;
    c.out = NULL;
out:
    free(c.out);
    free(c.para.v);
    free(c.headings.v);
    return err;
}
