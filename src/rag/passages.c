/* Passages: neighbouring chunks merged, fragments trimmed. See passages.h and
 * docs/internals/passages.md. */
#include "rag/passages.h"

#include <stdlib.h>
#include <string.h>

#include "text/sentence.h"
#include "util/strbuf.h"

#define PASSAGE_CAP ((size_t)16 << 20) /* a merged passage: k chunks of at most 8000 characters */

/* ---- trimming ---- */

static bool passage_has_newline(const char *s, size_t from, size_t to)
{
    return from < to && memchr(s + from, '\n', to - from) != NULL;
}

/* Whether a sentence span ends like a sentence: '.', '!', '?', '…' or the CJK stops,
 * optionally followed by closing quotes or brackets. */
static bool passage_ends_sentence(const char *s, size_t start, size_t end)
{
    static const char *const closers[] = {"\"", "'", ")", "]", "\xe2\x80\x9d", "\xe2\x80\x99", "\xc2\xbb"};
    static const char *const stops[] = {".", "!", "?", "\xe2\x80\xa6", "\xe3\x80\x82", "\xef\xbc\x81", "\xef\xbc\x9f"};
    bool again = true;
    while (again && end > start) {
        again = false;
        for (size_t i = 0; i < sizeof closers / sizeof *closers; i++) {
            size_t n = strlen(closers[i]);
            if (end - start > n && memcmp(s + end - n, closers[i], n) == 0) {
                end -= n;
                again = true;
                break;
            }
        }
    }
    for (size_t i = 0; i < sizeof stops / sizeof *stops; i++) {
        size_t n = strlen(stops[i]);
        if (end - start >= n && memcmp(s + end - n, stops[i], n) == 0)
            return true;
    }
    return false;
}

/* A passage that starts mid-sentence: a lower-case ASCII letter or punctuation that only
 * continues a sentence. */
static bool passage_starts_midway(char c)
{
    return (c >= 'a' && c <= 'z') || c == ',' || c == ';' || c == ':' || c == ')';
}

static bool passage_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

ragd_err rag_passage_trim(const char *text, size_t len, bool doc_start, size_t *from, size_t *to)
{
    *from = 0;
    *to = len;
    text_span *sp = NULL;
    size_t n = 0;
    ragd_err rc = sentence_split(text, len, &sp, &n);
    if (rc != RAGD_OK)
        return rc;
    size_t quarter = len / 4, half = len / 2;
    /* head: the fragment is sentence 0; the next sentence starts on its line. Up to half the
     * passage: a head fragment is the chunker's overlap (less than half a chunk), whose
     * text the chunk before holds whole */
    if (n >= 2 && !doc_start && passage_starts_midway(text[sp[0].start]) && sp[1].start <= half &&
        !passage_has_newline(text, sp[0].end, sp[1].start))
        *from = sp[1].start;
    /* tail: the last sentence has no end and shares its line with the whole one before */
    if (n >= 2 && !passage_ends_sentence(text, sp[n - 1].start, sp[n - 1].end) && len - sp[n - 2].end <= quarter &&
        !passage_has_newline(text, sp[n - 2].end, sp[n - 1].start) && sp[n - 2].end > *from)
        *to = sp[n - 2].end;
    while (*to > *from && passage_space(text[*to - 1]))
        (*to)--;
    while (*from < *to && passage_space(text[*from]))
        (*from)++;
    if (*from >= *to) { /* cannot happen with n >= 2 sentences, kept as the contract */
        *from = 0;
        *to = len;
    }
    free(sp);
    return RAGD_OK;
}

/* ---- merging ---- */

typedef struct {
    size_t first, n;   /* members: order[first .. first + n) */
    size_t best_rank;  /* the smallest hit index among them */
    char *text;        /* the merged (or trimmed) text, malloc'd; NULL: the first row's text as is */
    int64_t start, end;
    int n_chunks;
    double score, distance;
} passage_group;

/* Whether the row's text is its document's slice [start, end): the offsets can place it. */
static bool passage_placed(const store_hit_row *r)
{
    return r->text && r->start >= 0 && r->end >= r->start && strlen(r->text) == (size_t)(r->end - r->start);
}

/* Document, then position in it. */
static int passage_cmp(const rag_hit *x, const rag_hit *y)
{
    if (x->row.doc_rowid != y->row.doc_rowid)
        return x->row.doc_rowid < y->row.doc_rowid ? -1 : 1;
    if (x->row.start != y->row.start)
        return x->row.start < y->row.start ? -1 : 1;
    return (x->row.ordinal > y->row.ordinal) - (x->row.ordinal < y->row.ordinal);
}

/* order[0..n): the hit indexes by document and position (an insertion sort: n <= 100, and
 * qsort has no context argument). */
static void passage_order(const rag_hit *hits, size_t *order, size_t n)
{
    for (size_t i = 0; i < n; i++)
        order[i] = i;
    for (size_t i = 1; i < n; i++) {
        size_t v = order[i], j = i;
        for (; j > 0 && passage_cmp(&hits[order[j - 1]], &hits[v]) > 0; j--)
            order[j] = order[j - 1];
        order[j] = v;
    }
}

/* Whether hit b (after a in document order) continues the passage ending at a. */
static bool passage_continues(const rag_hit *a, int64_t passage_end, const rag_hit *b)
{
    if (a->row.doc_rowid != b->row.doc_rowid || !passage_placed(&a->row) || !passage_placed(&b->row))
        return false;
    return b->row.ordinal == a->row.ordinal + 1 || b->row.start <= passage_end;
}

/* Whether a chunk starts a markdown block that needs its own line: a heading, a list item,
 * a table row, a quote, a code fence. */
static bool passage_starts_block(const char *t)
{
    if (strchr("#-*+|>`", t[0]) != NULL && t[0] != '\0')
        return true;
    size_t i = 0;
    while (t[i] >= '0' && t[i] <= '9')
        i++;
    return i > 0 && (t[i] == '.' || t[i] == ')');
}

/* The merged text of a group's members (placed chunks in document order): each chunk from
 * where the text so far ends; a gap of whitespace between two chunks becomes one space
 * (one byte of gap; a line break before a markdown block) or a blank line (more). */
static ragd_err passage_join(const rag_hit *hits, const size_t *members, size_t n, passage_group *g)
{
    strbuf sb;
    strbuf_init(&sb, PASSAGE_CAP);
    const store_hit_row *r0 = &hits[members[0]].row;
    ragd_err rc = strbuf_appends(&sb, r0->text);
    int64_t end = r0->end;
    int last = r0->ordinal;
    for (size_t i = 1; rc == RAGD_OK && i < n; i++) {
        const store_hit_row *r = &hits[members[i]].row;
        if (r->ordinal > last)
            last = r->ordinal;
        if (r->end <= end)
            continue; /* inside what is there already */
        if (r->start < end) {
            rc = strbuf_appends(&sb, r->text + (end - r->start));
        } else {
            rc = strbuf_appends(&sb, r->start - end > 1 ? "\n\n" : passage_starts_block(r->text) ? "\n" : " ");
            if (rc == RAGD_OK)
                rc = strbuf_appends(&sb, r->text);
        }
        end = r->end;
    }
    if (rc != RAGD_OK) {
        strbuf_cleanup(&sb);
        return rc;
    }
    g->start = r0->start;
    g->end = end;
    g->n_chunks = last - r0->ordinal + 1;
    g->text = strbuf_detach(&sb, NULL);
    return g->text ? RAGD_OK : RAGD_ENOMEM;
}

/* Trims g's text (its merged text, or the first member's own) to sentence boundaries;
 * moves start/end with it. */
static ragd_err passage_trim_group(const rag_hit *hits, const size_t *members, passage_group *g)
{
    const store_hit_row *r0 = &hits[members[0]].row;
    const char *t = g->text ? g->text : r0->text;
    if (!t)
        return RAGD_OK;
    size_t len = strlen(t), from = 0, to = len;
    ragd_err rc = rag_passage_trim(t, len, r0->start == 0, &from, &to);
    if (rc != RAGD_OK || (from == 0 && to == len))
        return rc;
    char *cut = malloc(to - from + 1);
    if (!cut)
        return RAGD_ENOMEM;
    memcpy(cut, t + from, to - from);
    cut[to - from] = '\0';
    free(g->text);
    g->text = cut;
    g->start += (int64_t)from;
    g->end -= (int64_t)(len - to);
    return RAGD_OK;
}

ragd_err rag_passages_merge(rag_result *res)
{
    size_t n = res->n;
    if (n == 0)
        return RAGD_OK;
    ragd_err rc = RAGD_ENOMEM;
    size_t *order = malloc(n * sizeof *order);
    passage_group *groups = calloc(n, sizeof *groups);
    rag_hit *out = calloc(n, sizeof *out);
    size_t ng = 0;
    if (!order || !groups || !out)
        goto out;
    passage_order(res->hits, order, n);
    for (size_t i = 0; i < n;) {
        passage_group *g = &groups[ng++];
        const rag_hit *h0 = &res->hits[order[i]];
        g->first = i;
        g->n = 1;
        g->best_rank = order[i];
        g->score = h0->score;
        g->distance = h0->distance;
        g->start = h0->row.start;
        g->end = h0->row.end;
        g->n_chunks = 1;
        int64_t end = h0->row.end;
        const rag_hit *prev = h0;
        while (i + g->n < n && passage_continues(prev, end, &res->hits[order[i + g->n]])) {
            const rag_hit *h = &res->hits[order[i + g->n]];
            if (h->row.end > end)
                end = h->row.end;
            if (order[i + g->n] < g->best_rank)
                g->best_rank = order[i + g->n];
            if (h->score > g->score)
                g->score = h->score;
            if (h->distance < g->distance)
                g->distance = h->distance;
            prev = h;
            g->n++;
        }
        if (g->n > 1 && (rc = passage_join(res->hits, &order[i], g->n, g)) != RAGD_OK)
            goto out;
        if ((rc = passage_trim_group(res->hits, &order[i], g)) != RAGD_OK)
            goto out;
        i += g->n;
    }
    /* the passages by the rank of their best chunk */
    for (size_t i = 1; i < ng; i++) {
        passage_group v = groups[i];
        size_t j = i;
        for (; j > 0 && groups[j - 1].best_rank > v.best_rank; j--)
            groups[j] = groups[j - 1];
        groups[j] = v;
    }
    /* commit: nothing fails from here on */
    for (size_t p = 0; p < ng; p++) {
        passage_group *g = &groups[p];
        rag_hit *dst = &out[p];
        const rag_hit *best = &res->hits[g->best_rank]; /* its rank, so its reranker score */
        bool has_rerank_score = best->has_rerank_score;
        float rerank_score = best->rerank_score;
        for (size_t m = 0; m < g->n; m++) {
            rag_hit *src = &res->hits[order[g->first + m]];
            if (m == 0) {
                *dst = *src;
                memset(&src->row, 0, sizeof src->row);
            } else {
                if (src->row.page_end > dst->row.page_end) /* the passage spans its members' pages */
                    dst->row.page_end = src->row.page_end;
                store_hit_rows_cleanup(&src->row, 1);
            }
        }
        if (g->text) {
            free(dst->row.text);
            dst->row.text = g->text;
            g->text = NULL;
        }
        dst->row.start = g->start;
        dst->row.end = g->end;
        dst->n_chunks = g->n_chunks;
        dst->score = g->score;
        dst->distance = g->distance;
        dst->has_rerank_score = has_rerank_score;
        dst->rerank_score = rerank_score;
    }
    free(res->hits);
    res->hits = out;
    res->n = ng;
    out = NULL;
    rc = RAGD_OK;
out:
    for (size_t p = 0; groups && p < ng; p++)
        free(groups[p].text);
    free(groups);
    free(order);
    free(out);
    return rc;
}
