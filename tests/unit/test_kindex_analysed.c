/* Unit tests for kindex_batch_add_analysed (src/index/kindex.c): a document analysed ahead
 * of time into its own batch (what an ingest worker does) and then copied into the write's
 * batch must leave that batch exactly as kindex_batch_add of each chunk would — the same
 * terms in the same order, the same items, lengths, counts and documents — and so the same
 * index: statistics and search results (ids and scores) compared over many random
 * documents, in rounds with replacements, with both paths mixed in one batch. And the
 * batch's own analysis, memoised by word, against kindex_analyze chunk by chunk. The file
 * includes kindex.c to compare the batches' internals. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>

#include "../../src/index/kindex.c"

#include "test_rng.h"

static const char *const words[] = {
    "install",  "installing", "installed", "installation", "Debian",   "package", "packages", "running",
    "runs",     "server",     "the",       "of",           "and",      "is",      "to",       "index",
    "indexes",  "Indexing",   "query",     "queries",      "Ollama",   "naïve",   "café",     "Straße",
    "ﬁle",      "files",      "2026",      "v1.2",         "x86_64",   "über",    "ÜBER",     "résumé",
    "kalomi",   "nupera",     "sitovu",    "xebado",       "kakaka",   "lolo",    "mimi",     "numinu",
    "pesi",     "rato",       "vuxe",      "badoka",       "doloresi", "tovuba",  "écrire",   "日本語",
};
#define N_WORDS (sizeof words / sizeof words[0])

/* n random words joined by spaces or punctuation into out (capacity cap). */
static void random_words(rng *r, char *out, size_t cap, size_t n)
{
    size_t len = 0;
    out[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        const char *sep = i == 0 ? "" : (rng_below(r, 7) ? " " : (rng_below(r, 2) ? ", " : ".\n"));
        int w = snprintf(out + len, cap - len, "%s%s", sep, words[rng_below(r, N_WORDS)]);
        if (w < 0 || (size_t)w >= cap - len)
            break;
        len += (size_t)w;
    }
}

#define MAX_DOC_CHUNKS 9
typedef struct {
    int64_t rowid;
    char title[200];
    char text[MAX_DOC_CHUNKS][900];
    char heading[MAX_DOC_CHUNKS][120];
    int64_t chunk_ids[MAX_DOC_CHUNKS];
    size_t n;
} tdoc;

static void random_doc(rng *r, tdoc *d, int64_t rowid, int64_t *next_chunk)
{
    d->rowid = rowid;
    random_words(r, d->title, sizeof d->title, rng_below(r, 4) == 0 ? 0 : 1 + rng_below(r, 8));
    d->n = 1 + rng_below(r, MAX_DOC_CHUNKS);
    for (size_t i = 0; i < d->n; i++) {
        random_words(r, d->text[i], sizeof d->text[i], rng_below(r, 120));
        random_words(r, d->heading[i], sizeof d->heading[i], rng_below(r, 3) ? 0 : 1 + rng_below(r, 5));
        d->chunk_ids[i] = (*next_chunk)++;
    }
}

static kindex_fields doc_fields(const tdoc *d, size_t i)
{
    kindex_fields f = {.text = {d->text[i], d->title, d->heading[i]},
                       .len = {strlen(d->text[i]), strlen(d->title), strlen(d->heading[i])}};
    return f;
}

/* The write-time path: every chunk analysed into b. */
static void add_direct(kindex_batch *b, const tdoc *d)
{
    for (size_t i = 0; i < d->n; i++) {
        kindex_fields f = doc_fields(d, i);
        assert_int_equal(kindex_batch_add(b, d->chunk_ids[i], d->rowid, &f), RAGD_OK);
    }
}

/* Records the words a tokenisation gave ("w1 w2 ..."), stopping (returning 1) after
 * stop_after words when that is not 0. */
typedef struct {
    char words[8192];
    size_t len, n, stop_after;
} word_log;

static int log_word(const token *tok, void *arg)
{
    word_log *l = arg;
    assert_true(l->len + tok->norm_len + 1 < sizeof l->words);
    memcpy(l->words + l->len, tok->norm, tok->norm_len);
    l->len += tok->norm_len;
    l->words[l->len++] = ' ';
    l->n++;
    return l->stop_after && l->n == l->stop_after;
}

/* The worker's path: the document alone, placeholder ids, then copied into b. Odd chunks
 * go through kindex_batch_add_tee (as the builtin-embedder ingest does), whose tee must
 * see exactly the body's tokens (or their first stop_after) and leave the analysis as is. */
static void add_analysed(kindex_batch *b, const tdoc *d)
{
    kindex_batch *src = kindex_batch_new();
    assert_non_null(src);
    for (size_t i = 0; i < d->n; i++) {
        kindex_fields f = doc_fields(d, i);
        if (i % 2 == 0) {
            assert_int_equal(kindex_batch_add(src, (int64_t)i, 1, &f), RAGD_OK);
            continue;
        }
        static word_log teed, want;
        teed.len = teed.n = want.len = want.n = want.stop_after = 0;
        teed.stop_after = i % 4 == 3 ? 5 : 0;
        assert_int_equal(kindex_batch_add_tee(src, (int64_t)i, 1, &f, log_word, &teed), RAGD_OK);
        assert_int_equal(tokenize_words(f.text[KINDEX_BODY], f.len[KINDEX_BODY], log_word, &want), RAGD_OK);
        size_t want_n = teed.stop_after && want.n > teed.stop_after ? teed.stop_after : want.n;
        assert_int_equal(teed.n, want_n);
        if (want_n == want.n)
            assert_int_equal(teed.len, want.len);
        assert_memory_equal(teed.words, want.words, teed.len);
    }
    assert_int_equal(kindex_batch_chunks(src), d->n);
    assert_int_equal(kindex_batch_add_analysed(b, src, d->chunk_ids, d->rowid), RAGD_OK);
    kindex_batch_free(src);
}

/* Everything reserve and apply read from a batch is equal. */
static void assert_batches_equal(const kindex_batch *a, const kindex_batch *b)
{
    assert_int_equal(a->n_local, b->n_local);
    assert_int_equal(a->strs_len, b->strs_len);
    assert_memory_equal(a->strs, b->strs, a->strs_len);
    for (size_t id = 0; id < a->n_local; id++) {
        assert_int_equal(a->str_off[id], b->str_off[id]);
        assert_int_equal(a->str_len[id], b->str_len[id]);
        assert_int_equal(a->hash[id], b->hash[id]);
        assert_int_equal(a->count[id], b->count[id]);
    }
    assert_int_equal(a->n_chunks, b->n_chunks);
    assert_int_equal(a->n_docs, b->n_docs);
    for (size_t i = 0; i < a->n_chunks; i++) {
        const kx_bchunk *x = &a->chunks[i], *y = &b->chunks[i];
        assert_int_equal(x->chunk_id, y->chunk_id);
        assert_int_equal(x->doc, y->doc);
        assert_int_equal(x->item0, y->item0);
        assert_int_equal(x->n_items, y->n_items);
        for (int f = 0; f < KINDEX_FIELDS; f++)
            assert_int_equal(x->len[f], y->len[f]);
    }
    assert_int_equal(a->n_items, b->n_items);
    for (size_t i = 0; i < a->n_items; i++) {
        assert_int_equal(a->items[i].local, b->items[i].local);
        for (int f = 0; f < KINDEX_FIELDS; f++)
            assert_int_equal(a->items[i].tf[f], b->items[i].tf[f]);
    }
    assert_int_equal(a->n_removed, b->n_removed);
    for (size_t i = 0; i < a->n_removed; i++)
        assert_int_equal(a->removed[i], b->removed[i]);
}

static void assert_indexes_equal(kindex *a, kindex *b)
{
    kindex_stats sa, sb;
    kindex_stats_get(a, &sa);
    kindex_stats_get(b, &sb);
    assert_int_equal(sa.chunks, sb.chunks);
    assert_int_equal(sa.slots, sb.slots);
    assert_int_equal(sa.terms, sb.terms);
    assert_int_equal(sa.postings, sb.postings);
    assert_int_equal(sa.dead_postings, sb.dead_postings);
    assert_int_equal(sa.bytes, sb.bytes);
    for (int f = 0; f < KINDEX_FIELDS; f++)
        assert_int_equal(sa.field_len[f], sb.field_len[f]);
    rng r = {77};
    kindex_hit ha[20], hb[20];
    for (size_t q = 0; q < N_WORDS + 60; q++) {
        char query[200];
        if (q < N_WORDS)
            snprintf(query, sizeof query, "%s", words[q]);
        else
            random_words(&r, query, sizeof query, 2 + rng_below(&r, 4));
        size_t na = 0, nb = 0;
        assert_int_equal(kindex_search(a, query, strlen(query), 20, NULL, NULL, ha, &na), RAGD_OK);
        assert_int_equal(kindex_search(b, query, strlen(query), 20, NULL, NULL, hb, &nb), RAGD_OK);
        assert_int_equal(na, nb);
        for (size_t i = 0; i < na; i++) {
            assert_int_equal(ha[i].chunk_id, hb[i].chunk_id);
            assert_int_equal(ha[i].doc_rowid, hb[i].doc_rowid);
            assert_true(ha[i].score == hb[i].score);
        }
    }
}

/* Rounds of writes of several documents each (some replacing earlier ones), the same
 * writes into two indexes: one by kindex_batch_add, one with some or all documents
 * analysed ahead (mode 0: all, 1: every other one, so both paths meet in one batch). */
static void run_rounds(int mode, uint64_t seed)
{
    rng r = {seed};
    kindex *ia = kindex_new(), *ib = kindex_new();
    assert_non_null(ia);
    assert_non_null(ib);
    static tdoc docs[12];
    int64_t next_chunk = 1, next_row = 1, live_rows[400];
    size_t n_live = 0;
    for (int round = 0; round < 25; round++) {
        kindex_batch *a = kindex_batch_new(), *b = kindex_batch_new();
        assert_non_null(a);
        assert_non_null(b);
        size_t nd = 1 + rng_below(&r, 12);
        for (size_t k = 0; k < nd; k++) {
            int64_t rowid = next_row++;
            if (n_live > 0 && rng_below(&r, 4) == 0) { /* a replacement: same row id */
                size_t at = rng_below(&r, n_live);
                rowid = live_rows[at];
                live_rows[at] = live_rows[--n_live];
                next_row--;
                bool seen = false;
                for (size_t p = 0; p < k; p++)
                    seen |= docs[p].rowid == rowid;
                if (seen) /* never the same document twice in one batch */
                    rowid = next_row++;
                else {
                    assert_int_equal(kindex_batch_remove_doc(a, rowid), RAGD_OK);
                    assert_int_equal(kindex_batch_remove_doc(b, rowid), RAGD_OK);
                }
            }
            random_doc(&r, &docs[k], rowid, &next_chunk);
            add_direct(a, &docs[k]);
            if (mode == 0 || k % 2 == 0)
                add_analysed(b, &docs[k]);
            else
                add_direct(b, &docs[k]);
            if (n_live < sizeof live_rows / sizeof live_rows[0])
                live_rows[n_live++] = rowid;
        }
        assert_batches_equal(a, b);
        assert_int_equal(kindex_reserve(ia, a), RAGD_OK);
        assert_int_equal(kindex_reserve(ib, b), RAGD_OK);
        kindex_apply(ia, a);
        kindex_apply(ib, b);
        kindex_batch_free(a);
        kindex_batch_free(b);
        assert_indexes_equal(ia, ib);
    }
    kindex_free(ia);
    kindex_free(ib);
}

static void test_analysed_all(void **state)
{
    (void)state;
    run_rounds(0, 0x5eed0001);
    run_rounds(0, 0x5eed0002);
}

static void test_analysed_mixed(void **state)
{
    (void)state;
    run_rounds(1, 0x5eed0003);
    run_rounds(1, 0x5eed0004);
}

/* Term counts of one text by kindex_analyze (the query's analysis, without the batch's
 * memo): up to 512 distinct terms. */
typedef struct {
    char t[512][STEM_MAX + 1];
    unsigned tf[512];
    size_t n, total;
} tcount;

static int tcount_term(const char *s, size_t n, void *arg)
{
    tcount *tc = arg;
    tc->total++;
    for (size_t i = 0; i < tc->n; i++)
        if (strlen(tc->t[i]) == n && memcmp(tc->t[i], s, n) == 0) {
            tc->tf[i]++;
            return 0;
        }
    assert_true(tc->n < 512);
    memcpy(tc->t[tc->n], s, n);
    tc->t[tc->n][n] = '\0';
    tc->tf[tc->n++] = 1;
    return 0;
}

static unsigned tcount_of(const tcount *tc, const char *s, size_t n)
{
    for (size_t i = 0; i < tc->n; i++)
        if (strlen(tc->t[i]) == n && memcmp(tc->t[i], s, n) == 0)
            return tc->tf[i];
    return 0;
}

/* The batch's analysis (memoised by word across all the chunks of a batch) gives every
 * chunk exactly kindex_analyze's terms, frequencies and field lengths. */
static void test_memo_matches_analyze(void **state)
{
    (void)state;
    rng r = {0x3e3e};
    static tdoc docs[40];
    static tcount tc[KINDEX_FIELDS];
    kindex_batch *b = kindex_batch_new();
    assert_non_null(b);
    int64_t next_chunk = 1;
    for (size_t k = 0; k < 40; k++) {
        random_doc(&r, &docs[k], (int64_t)k + 1, &next_chunk);
        add_direct(b, &docs[k]);
    }
    size_t ci = 0;
    for (size_t k = 0; k < 40; k++)
        for (size_t i = 0; i < docs[k].n; i++, ci++) {
            kindex_fields f = doc_fields(&docs[k], i);
            for (int fld = 0; fld < KINDEX_FIELDS; fld++) {
                memset(&tc[fld], 0, sizeof tc[fld]);
                assert_int_equal(kindex_analyze(f.text[fld], f.len[fld], tcount_term, &tc[fld]), RAGD_OK);
            }
            const kx_bchunk *c = &b->chunks[ci];
            assert_int_equal(c->chunk_id, docs[k].chunk_ids[i]);
            size_t distinct = 0;
            for (size_t t = 0; t < tc[0].n + tc[1].n + tc[2].n; t++) { /* distinct over the fields */
                int fld = t < tc[0].n ? 0 : t < tc[0].n + tc[1].n ? 1 : 2;
                size_t at = fld == 0 ? t : fld == 1 ? t - tc[0].n : t - tc[0].n - tc[1].n;
                const char *term = tc[fld].t[at];
                bool earlier = false;
                for (int g = 0; g < fld; g++)
                    earlier |= tcount_of(&tc[g], term, strlen(term)) > 0;
                distinct += !earlier;
            }
            assert_int_equal(c->n_items, distinct);
            for (int fld = 0; fld < KINDEX_FIELDS; fld++)
                assert_int_equal(c->len[fld], tc[fld].total);
            for (uint32_t m = 0; m < c->n_items; m++) {
                const kx_item *it = &b->items[c->item0 + m];
                const char *term = b->strs + b->str_off[it->local];
                size_t n = b->str_len[it->local];
                for (int fld = 0; fld < KINDEX_FIELDS; fld++)
                    assert_int_equal(it->tf[fld], tcount_of(&tc[fld], term, n));
            }
        }
    assert_true(b->n_words > 0); /* the memo was used */
    kindex_batch_free(b);
}

/* Two words of one length whose kx_hash collide ("figifo", "gazujo": 0x9a0437d4, found by
 * search) stay two terms in the batch's memo: it compares the bytes, not only the hash and
 * the length. */
static void test_memo_hash_collision(void **state)
{
    (void)state;
    assert_int_equal(kx_hash("figifo", 6), kx_hash("gazujo", 6));
    static const char body[] = "figifo gazujo figifo gazujo gazujo";
    kindex_fields f = {.text = {body}, .len = {sizeof body - 1}};
    kindex_batch *b = kindex_batch_new();
    assert_non_null(b);
    assert_int_equal(kindex_batch_add(b, 1, 1, &f), RAGD_OK);
    const kx_bchunk *c = &b->chunks[0];
    assert_int_equal(c->n_items, 2);
    assert_int_equal(c->len[KINDEX_BODY], 5);
    for (uint32_t m = 0; m < c->n_items; m++) {
        const kx_item *it = &b->items[c->item0 + m];
        const char *term = b->strs + b->str_off[it->local];
        assert_int_equal(b->str_len[it->local], 6);
        assert_int_equal(it->tf[KINDEX_BODY], memcmp(term, "figifo", 6) == 0 ? 2 : 3);
    }
    /* and two terms in the index's dictionary: one chunk holding only gazujo is found by
     * gazujo, not by figifo */
    kindex *ix = kindex_new();
    assert_non_null(ix);
    assert_int_equal(kindex_reserve(ix, b), RAGD_OK);
    kindex_apply(ix, b);
    kindex_batch_free(b);
    static const char only[] = "gazujo";
    kindex_fields g = {.text = {only}, .len = {sizeof only - 1}};
    b = kindex_batch_new();
    assert_non_null(b);
    assert_int_equal(kindex_batch_add(b, 2, 2, &g), RAGD_OK);
    assert_int_equal(kindex_reserve(ix, b), RAGD_OK);
    kindex_apply(ix, b);
    kindex_batch_free(b);
    kindex_stats st;
    kindex_stats_get(ix, &st);
    assert_int_equal(st.terms, 2);
    kindex_hit hits[4] = {{0}};
    size_t n = 0;
    assert_int_equal(kindex_search(ix, "figifo", 6, 4, NULL, NULL, hits, &n), RAGD_OK);
    assert_int_equal(n, 1);
    assert_true(hits[0].chunk_id == 1);
    kindex_free(ix);
}

/* What the function refuses, leaving the target batch usable. */
static void test_analysed_refusals(void **state)
{
    (void)state;
    kindex_batch *b = kindex_batch_new(), *src = kindex_batch_new();
    assert_non_null(b);
    assert_non_null(src);
    int64_t ids[1] = {42};
    assert_int_equal(kindex_batch_add_analysed(b, src, ids, 7), RAGD_OK); /* empty: nothing */
    assert_int_equal(kindex_batch_chunks(b), 0);
    kindex_fields f = {.text = {"installing servers", "", ""}, .len = {18, 0, 0}};
    assert_int_equal(kindex_batch_add(src, 0, 1, &f), RAGD_OK);
    assert_int_equal(kindex_batch_add_analysed(b, src, ids, 0), RAGD_EINVAL);    /* no doc row id */
    assert_int_equal(kindex_batch_add_analysed(b, src, NULL, 7), RAGD_EINVAL);   /* no chunk ids */
    assert_int_equal(kindex_batch_remove_doc(src, 3), RAGD_OK);
    assert_int_equal(kindex_batch_add_analysed(b, src, ids, 7), RAGD_EINVAL);    /* removals */
    assert_int_equal(kindex_batch_chunks(b), 0);
    kindex_batch_free(src);
    kindex_batch_free(b);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

/* kx_sort_u32 (the forward lists' sort, under the write lock) sorts as qsort does: arrays
 * of every length around the insertion-sort cut-off and past one radix digit, values of
 * 8 to 32 bits (one to four passes, an odd count ending in the scratch), repeats, sorted
 * and reversed input. */
static void test_sort_u32(void **state)
{
    (void)state;
    rng r = {2024};
    enum { MAX_N = 5000 };
    uint32_t *v = malloc(MAX_N * sizeof *v), *want = malloc(MAX_N * sizeof *want),
             *tmp = malloc(MAX_N * sizeof *tmp);
    assert_non_null(v);
    assert_non_null(want);
    assert_non_null(tmp);
    const unsigned bits[] = {8, 12, 18, 24, 31, 32};
    for (int round = 0; round < 600; round++) {
        size_t n = round < 80 ? (size_t)round : rng_below(&r, round % 10 == 0 ? MAX_N : 400);
        unsigned b = bits[round % 6];
        for (size_t i = 0; i < n; i++) {
            uint64_t x = ((uint64_t)rng_below(&r, 1u << 16) << 16) | rng_below(&r, 1u << 16);
            v[i] = b == 32 ? (uint32_t)x : (uint32_t)(x & ((1u << b) - 1));
        }
        if (round % 7 == 3 && n > 1)
            v[n - 1] = v[0]; /* a repeat */
        memcpy(want, v, n * sizeof *v);
        qsort(want, n, sizeof *want, cmp_u32);
        if (round % 11 == 5) /* already sorted, or reversed */
            for (size_t i = 0; i < n; i++)
                v[i] = round % 2 ? want[i] : want[n - 1 - i];
        kx_sort_u32(v, tmp, n);
        if (n)
            assert_memory_equal(v, want, n * sizeof *v);
    }
    free(v);
    free(want);
    free(tmp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_analysed_all),
        cmocka_unit_test(test_analysed_mixed),
        cmocka_unit_test(test_analysed_refusals),
        cmocka_unit_test(test_memo_matches_analyze),
        cmocka_unit_test(test_memo_hash_collision),
        cmocka_unit_test(test_sort_u32),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
