/* eval_kindex: how well the keyword index finds a known chunk, for tuning the field
 * weights of BM25F. Not a test; a measurement (docs/internals/kindex.md, "Weights").
 *
 * The corpus: the markdown files named on the command line, chunked like an ingest
 * (chunk_size 1000, overlap 100), each with its title and heading paths derived as ingest
 * does (text/doccontext.h). Two kinds of known-item queries, seeded:
 *   context   one word of the chunk's title or heading path that its text does not contain
 *             (a question about a tool whose page names it only in the title), plus two
 *             words of the chunk's text;
 *   content   three words of the chunk's text.
 * Words are drawn among the chunk's distinct non-stop words of four bytes or more. The
 * score is the mean reciprocal rank of the chunk in the top 10 (MRR@10) and the share found
 * in the top 5.
 *
 * It includes kindex.c itself so that a build with -DKINDEX_W_TITLE=... -DKINDEX_W_HEADING=...
 * measures other weights: bench/eval_weights.sh builds and runs a grid. */
#include "index/kindex.c"

#include <stdio.h>

#include "text/chunker.h"
#include "text/doccontext.h"

#define EV_MAX_CHUNKS 20000

typedef struct {
    char *text; /* the chunk's own copy */
    size_t len;
    char *title;
    char *heading;
} ev_chunk;

static ev_chunk ev[EV_MAX_CHUNKS];
static size_t ev_n;
static uint64_t ev_rs = 0x9e3779b97f4a7c15ULL;

static uint64_t ev_rnd(void)
{
    ev_rs ^= ev_rs << 13;
    ev_rs ^= ev_rs >> 7;
    ev_rs ^= ev_rs << 17;
    return ev_rs;
}

typedef struct {
    char w[64][65];
    size_t n;
} ev_words;

static int ev_collect(const token *tok, void *arg)
{
    ev_words *ws = arg;
    if (tok->norm_len < 4 || tokenize_is_stopword(tok->norm, tok->norm_len) || ws->n >= 64)
        return 0;
    for (size_t i = 0; i < ws->n; i++)
        if (strlen(ws->w[i]) == tok->norm_len && memcmp(ws->w[i], tok->norm, tok->norm_len) == 0)
            return 0;
    memcpy(ws->w[ws->n], tok->norm, tok->norm_len);
    ws->w[ws->n][tok->norm_len] = '\0';
    ws->n++;
    return 0;
}

typedef struct {
    const char *stem;
    size_t len;
    bool found;
} ev_has;

static int ev_has_term(const char *s, size_t n, void *arg)
{
    ev_has *h = arg;
    if (n == h->len && memcmp(s, h->stem, n) == 0)
        h->found = true;
    return 0;
}

/* True when the text of chunk c holds the word's stem. */
static bool ev_text_has(const ev_chunk *c, const char *word)
{
    char stem[STEM_MAX];
    size_t sl = 0;
    if (stem_english(word, strlen(word), stem, &sl) != RAGD_OK)
        return true;
    ev_has h = {stem, sl, false};
    kindex_analyze(c->text, c->len, ev_has_term, &h);
    return h.found;
}

static char *ev_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    if (p) {
        p[n] = '\0';
        *len = (size_t)n;
    }
    return p;
}

int main(int argc, char **argv)
{
    kindex *ix = kindex_new();
    kindex_batch *b = kindex_batch_new();
    chunk_params cp = {.chunk_size = 1000, .overlap = 100};
    for (int a = 1; a < argc; a++) {
        size_t len = 0;
        char *text = ev_read(argv[a], &len);
        text_span *sp = NULL;
        size_t n = 0;
        if (!text || chunker_split(text, len, CHUNK_FORMAT_MARKDOWN, &cp, &sp, &n) != RAGD_OK) {
            fprintf(stderr, "eval_kindex: cannot read or chunk %s\n", argv[a]);
            free(text);
            continue;
        }
        doccontext_in in = {.text = text, .text_len = len, .markdown = true, .source = argv[a]};
        char *title = NULL;
        int64_t *starts = malloc((n ? n : 1) * sizeof *starts);
        char **paths = NULL;
        for (size_t i = 0; i < n; i++)
            starts[i] = (int64_t)sp[i].start;
        if (doccontext_title(&in, &title) || doccontext_headings(text, len, starts, n, &paths))
            return 1;
        for (size_t i = 0; i < n && ev_n < EV_MAX_CHUNKS; i++) {
            ev_chunk *c = &ev[ev_n++];
            c->len = sp[i].end - sp[i].start;
            c->text = strndup(text + sp[i].start, c->len);
            c->title = strdup(title);
            c->heading = strdup(paths[i]);
            kindex_fields f = {.text = {c->text, c->title, c->heading},
                               .len = {c->len, strlen(c->title), strlen(c->heading)}};
            if (kindex_batch_add(b, (int64_t)ev_n, a, &f) != RAGD_OK)
                return 1;
        }
        doccontext_paths_free(paths, n);
        free(title);
        free(starts);
        free(sp);
        free(text);
    }
    if (kindex_reserve(ix, b) != RAGD_OK)
        return 1;
    kindex_apply(ix, b);
    kindex_batch_free(b);

    double mrr[2] = {0, 0};
    size_t top5[2] = {0, 0}, nq[2] = {0, 0};
    for (int round = 0; round < 4000 && ev_n > 0; round++) {
        size_t ci = (size_t)(ev_rnd() % ev_n);
        ev_chunk *c = &ev[ci];
        ev_words body = {.n = 0}, ctx = {.n = 0};
        tokenize_words(c->text, c->len, ev_collect, &body);
        if (body.n < 3)
            continue;
        int kind = round % 2;
        char q[512];
        if (kind == 0) {
            tokenize_words(c->title, strlen(c->title), ev_collect, &ctx);
            tokenize_words(c->heading, strlen(c->heading), ev_collect, &ctx);
            const char *pick = NULL;
            for (size_t tries = 0; tries < 8 && ctx.n > 0 && !pick; tries++) {
                const char *w = ctx.w[ev_rnd() % ctx.n];
                if (!ev_text_has(c, w))
                    pick = w;
            }
            if (!pick)
                continue;
            snprintf(q, sizeof q, "%s %s %s", pick, body.w[ev_rnd() % body.n], body.w[ev_rnd() % body.n]);
        } else {
            snprintf(q, sizeof q, "%s %s %s", body.w[ev_rnd() % body.n], body.w[ev_rnd() % body.n],
                     body.w[ev_rnd() % body.n]);
        }
        kindex_hit hits[10];
        size_t n = 0;
        if (kindex_search(ix, q, strlen(q), 10, NULL, NULL, hits, &n) != RAGD_OK)
            return 1;
        nq[kind]++;
        for (size_t i = 0; i < n; i++) {
            if (hits[i].chunk_id == (int64_t)ci + 1) {
                mrr[kind] += 1.0 / (double)(i + 1);
                top5[kind] += i < 5;
                break;
            }
        }
    }
    printf("w_title %.2f w_heading %.2f: %zu chunks; context queries MRR@10 %.3f top5 %.1f%% (%zu); "
           "content queries MRR@10 %.3f top5 %.1f%% (%zu); mean MRR %.3f\n",
           (double)KINDEX_W_TITLE, (double)KINDEX_W_HEADING, ev_n, mrr[0] / (double)nq[0], 100.0 * (double)top5[0] / (double)nq[0],
           nq[0], mrr[1] / (double)nq[1], 100.0 * (double)top5[1] / (double)nq[1], nq[1],
           (mrr[0] / (double)nq[0] + mrr[1] / (double)nq[1]) / 2);
    kindex_stats st;
    kindex_stats_get(ix, &st);
    printf("  index: %zu terms, %zu postings (%.1f per chunk), body length %llu terms in all, %.0f bytes/chunk\n",
           st.terms, st.postings, (double)st.postings / (double)ev_n, (unsigned long long)st.field_len[0],
           (double)st.bytes / (double)ev_n);
    for (size_t i = 0; i < ev_n; i++) {
        free(ev[i].text);
        free(ev[i].title);
        free(ev[i].heading);
    }
    kindex_free(ix);
    return 0;
}
