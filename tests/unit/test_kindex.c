/* Unit tests for src/index/kindex.c: top-k against a brute-force BM25F on seeded random
 * corpora (identical ids, scores and tie order; with filters; after removals and
 * replacements), the analysis (folding, stop words, stemming), the two-phase change
 * (reserve / apply / release, stacked reservations, apply without memory), the compaction
 * of removed chunks' slots (rounds of replacements, with additions in the same batch, a
 * collection emptied and refilled), the collection set, and readers searching while a
 * writer changes the index (and compacts it). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "index/kindex.h"

/* ---- allocation failure on demand (not under a sanitizer, which owns malloc) ---- */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define CAN_FAIL_ALLOCS 0
static atomic_int fail_allocs;
#else
#define CAN_FAIL_ALLOCS 1
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
static atomic_int fail_allocs;
void *malloc(size_t n) { return atomic_load(&fail_allocs) ? NULL : __libc_malloc(n); }
void *calloc(size_t a, size_t b) { return atomic_load(&fail_allocs) ? NULL : __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { return atomic_load(&fail_allocs) ? NULL : __libc_realloc(p, n); }
#endif

#include "test_rng.h"

/* ---- vocabulary: synthetic words with Zipf frequencies, some English with inflections,
 * some stop words ---- */
#define VOCAB 400
static char vocab[VOCAB][24];
static double zipf_cdf[VOCAB];

static void vocab_init(void)
{
    static const char *const english[] = {"install", "installing", "installed", "installation", "debian", "package",
                                          "packages", "running", "runs", "server", "servers", "the", "of", "and",
                                          "is", "to", "index", "indexes", "indexing", "query", "queries", "Ollama"};
    static const char *const syl[] = {"ka", "lo", "mi", "nu", "pe", "ra", "si", "to", "vu", "xe", "ba", "do"};
    rng r = {0x1234567};
    size_t ne = sizeof english / sizeof english[0];
    for (size_t i = 0; i < VOCAB; i++) {
        if (i < ne) {
            snprintf(vocab[i], sizeof vocab[i], "%s", english[i]);
            continue;
        }
        size_t n = 2 + rng_below(&r, 3);
        vocab[i][0] = '\0';
        for (size_t k = 0; k < n; k++)
            strcat(vocab[i], syl[rng_below(&r, 12)]);
    }
    double sum = 0;
    for (size_t i = 0; i < VOCAB; i++)
        sum += 1.0 / (double)(i + 1);
    double acc = 0;
    for (size_t i = 0; i < VOCAB; i++) {
        acc += 1.0 / (double)(i + 1) / sum;
        zipf_cdf[i] = acc;
    }
}

static const char *zipf_word(rng *r)
{
    double u = (double)(rng_next(r) >> 11) / (double)(1ULL << 53);
    size_t lo = 0, hi = VOCAB - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (zipf_cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return vocab[lo];
}

static void random_text(rng *r, char *out, size_t cap, size_t min_words, size_t max_words)
{
    size_t n = min_words + rng_below(r, max_words - min_words + 1);
    out[0] = '\0';
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        const char *w = zipf_word(r);
        int wrote = snprintf(out + len, cap - len, "%s%s", i ? (rng_below(r, 9) ? " " : ", ") : "", w);
        if (wrote < 0 || (size_t)wrote >= cap - len)
            break;
        len += (size_t)wrote;
    }
}

/* Terms of a text, by the index's own analysis (tested on its own below). */
typedef struct {
    char t[64][25];
    unsigned tf[64];
    size_t n;
    size_t total;
} termcount;

static int count_term(const char *s, size_t n, void *arg)
{
    termcount *tc = arg;
    tc->total++;
    for (size_t i = 0; i < tc->n; i++)
        if (strlen(tc->t[i]) == n && memcmp(tc->t[i], s, n) == 0) {
            tc->tf[i]++;
            return 0;
        }
    if (tc->n < 64 && n < 25) {
        memcpy(tc->t[tc->n], s, n);
        tc->t[tc->n][n] = '\0';
        tc->tf[tc->n++] = 1;
    }
    return 0;
}

static void analyse(const char *text, termcount *tc)
{
    memset(tc, 0, sizeof *tc);
    assert_int_equal(kindex_analyze(text, strlen(text), count_term, tc), RAGD_OK);
}

/* ---- the model: documents with chunks; the brute force works from it ---- */
#define MAX_CHUNKS 4096
#define TEXT_CAP 600

typedef struct {
    int64_t chunk_id;
    int64_t doc;
    bool live;
    char text[TEXT_CAP];
    char title[80];
    char heading[80];
    bool analysed; /* the three below are filled */
    termcount tc[3];
} mchunk;

typedef struct {
    mchunk c[MAX_CHUNKS];
    size_t n;
    int64_t next_chunk_id;
} model;

static unsigned tf_of(const termcount *tc, const char *t)
{
    for (size_t i = 0; i < tc->n; i++)
        if (strcmp(tc->t[i], t) == 0)
            return tc->tf[i];
    return 0;
}

typedef struct {
    uint64_t score;
    int64_t chunk_id;
    int64_t doc;
} bhit;

static int bhit_cmp(const void *a, const void *b)
{
    const bhit *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->chunk_id > y->chunk_id) - (x->chunk_id < y->chunk_id);
}

typedef bool (*doc_pred)(int64_t doc, void *arg);

/* The brute force: every live chunk scored by the formula of docs/internals/kindex.md. */
static size_t brute_search(model *m, const char *query, size_t k, doc_pred pred, void *arg, bhit *out)
{
    termcount q;
    analyse(query, &q);
    size_t N = 0;
    double tot[3] = {0, 0, 0};
    for (size_t i = 0; i < m->n; i++) {
        if (!m->c[i].live)
            continue;
        mchunk *c = &m->c[i];
        if (!c->analysed) {
            analyse(c->text, &c->tc[0]);
            analyse(c->title, &c->tc[1]);
            analyse(c->heading, &c->tc[2]);
            c->analysed = true;
        }
        N++;
        tot[0] += (double)c->tc[0].total;
        tot[1] += (double)c->tc[1].total;
        tot[2] += (double)c->tc[2].total;
    }
    if (N == 0 || q.n == 0)
        return 0;
    double avg[3] = {tot[0] / (double)N, tot[1] / (double)N, tot[2] / (double)N};
    double idf[64];
    for (size_t t = 0; t < q.n; t++) {
        size_t df = 0;
        for (size_t i = 0; i < m->n; i++)
            if (m->c[i].live &&
                (tf_of(&m->c[i].tc[0], q.t[t]) || tf_of(&m->c[i].tc[1], q.t[t]) || tf_of(&m->c[i].tc[2], q.t[t])))
                df++;
        idf[t] = log(1.0 + ((double)N - (double)df + 0.5) / ((double)df + 0.5));
    }
    static bhit all[MAX_CHUNKS];
    size_t na = 0;
    const double w[3] = {KINDEX_W_BODY, KINDEX_W_TITLE, KINDEX_W_HEADING};
    for (size_t i = 0; i < m->n; i++) {
        if (!m->c[i].live)
            continue;
        const termcount *tcs = m->c[i].tc;
        unsigned len[3] = {(unsigned)tcs[0].total, (unsigned)tcs[1].total, (unsigned)tcs[2].total};
        double inv[3];
        for (int f = 0; f < 3; f++)
            inv[f] = avg[f] > 0 ? 1.0 / (1.0 - KINDEX_B + KINDEX_B * kindex_code_len(kindex_len_code(len[f])) / avg[f])
                                : 1.0;
        uint64_t s = 0;
        bool matched = false;
        for (size_t t = 0; t < q.n; t++) {
            unsigned tf[3] = {tf_of(&tcs[0], q.t[t]), tf_of(&tcs[1], q.t[t]), tf_of(&tcs[2], q.t[t])};
            if (!tf[0] && !tf[1] && !tf[2])
                continue;
            matched = true;
            if (tf[0] > 255)
                tf[0] = 255;
            for (int f = 1; f < 3; f++)
                if (tf[f] > 15)
                    tf[f] = 15;
            double x = ((w[0] * tf[0]) * inv[0] + (w[1] * tf[1]) * inv[1]) + (w[2] * tf[2]) * inv[2];
            double sat = 1.0 - KINDEX_K1 / (KINDEX_K1 + x);
            s += (uint32_t)(idf[t] * sat * KINDEX_SCORE_SCALE);
        }
        if (!matched || (pred && !pred(m->c[i].doc, arg)))
            continue;
        all[na++] = (bhit){s, m->c[i].chunk_id, m->c[i].doc};
    }
    qsort(all, na, sizeof *all, bhit_cmp);
    size_t n = na < k ? na : k;
    memcpy(out, all, n * sizeof *out);
    return n;
}

static void fields_of(const mchunk *c, kindex_fields *f)
{
    f->text[KINDEX_BODY] = c->text;
    f->len[KINDEX_BODY] = strlen(c->text);
    f->text[KINDEX_TITLE] = c->title;
    f->len[KINDEX_TITLE] = strlen(c->title);
    f->text[KINDEX_HEADING] = c->heading;
    f->len[KINDEX_HEADING] = strlen(c->heading);
}

/* Adds a document of n random chunks to the model and to batch b. */
static void add_doc(model *m, rng *r, kindex_batch *b, int64_t doc, size_t n)
{
    char title[80];
    random_text(r, title, sizeof title, 0, 4);
    for (size_t i = 0; i < n && m->n < MAX_CHUNKS; i++) {
        mchunk *c = &m->c[m->n++];
        c->chunk_id = ++m->next_chunk_id;
        c->doc = doc;
        c->live = true;
        c->analysed = false;
        snprintf(c->title, sizeof c->title, "%s", title);
        random_text(r, c->text, sizeof c->text, 1, 60);
        if (rng_below(r, 3))
            random_text(r, c->heading, sizeof c->heading, 1, 5);
        else
            c->heading[0] = '\0';
        kindex_fields f;
        fields_of(c, &f);
        assert_int_equal(kindex_batch_add(b, c->chunk_id, doc, &f), RAGD_OK);
    }
}

static void remove_doc_model(model *m, int64_t doc)
{
    for (size_t i = 0; i < m->n; i++)
        if (m->c[i].doc == doc)
            m->c[i].live = false;
}

/* Removes document doc from the model and in batch b, and adds it back with n new chunks. */
static void replace_doc(model *m, rng *r, kindex_batch *b, int64_t doc, size_t n)
{
    assert_int_equal(kindex_batch_remove_doc(b, doc), RAGD_OK);
    remove_doc_model(m, doc);
    add_doc(m, r, b, doc, n);
}

/* Drops the model's removed chunks (order kept), so that many rounds of replacements fit. */
static void model_forget_dead(model *m)
{
    size_t w = 0;
    for (size_t i = 0; i < m->n; i++) {
        if (!m->c[i].live)
            continue;
        if (w != i)
            m->c[w] = m->c[i];
        w++;
    }
    m->n = w;
}

static void commit(kindex *ix, kindex_batch *b)
{
    assert_int_equal(kindex_reserve(ix, b), RAGD_OK);
    kindex_apply(ix, b);
    kindex_batch_free(b);
}

static bool pred_odd(int64_t doc, void *arg)
{
    (void)arg;
    return (doc % 3) != 0;
}

static void query_text(rng *r, char *q, size_t cap)
{
    random_text(r, q, cap, 1, 6);
}

/* Compares kindex_search with the brute force on `queries` random queries. */
static void check_against_brute(kindex *ix, model *m, rng *r, size_t queries, bool filtered)
{
    static const size_t ks[] = {1, 3, 10, 50, 500};
    kindex_hit got[500];
    bhit want[500];
    for (size_t qi = 0; qi < queries; qi++) {
        char q[200];
        query_text(r, q, sizeof q);
        size_t k = ks[rng_below(r, 5)];
        size_t n = 0;
        assert_int_equal(kindex_search(ix, q, strlen(q), k, filtered ? pred_odd : NULL, NULL, got, &n), RAGD_OK);
        size_t nb = brute_search(m, q, k, filtered ? pred_odd : NULL, NULL, want);
        if (n != nb)
            fprintf(stderr, "query '%s' k=%zu: %zu hits, brute force %zu\n", q, k, n, nb);
        assert_int_equal(n, nb);
        for (size_t i = 0; i < n; i++) {
            if (got[i].chunk_id != want[i].chunk_id)
                fprintf(stderr, "query '%s' k=%zu rank %zu: chunk %lld (%.9f) vs brute %lld (%.9f)\n", q, k, i,
                        (long long)got[i].chunk_id, got[i].score, (long long)want[i].chunk_id,
                        (double)want[i].score / KINDEX_SCORE_SCALE);
            assert_int_equal(got[i].chunk_id, want[i].chunk_id);
            assert_int_equal(got[i].doc_rowid, want[i].doc);
            assert_true(got[i].score == (double)want[i].score / KINDEX_SCORE_SCALE);
        }
    }
}

static model *model_new(void)
{
    model *m = calloc(1, sizeof *m);
    assert_non_null(m);
    return m;
}

/* ---- tests ---- */

static void test_brute_force(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 4; seed++) {
        rng r = {seed * 7919};
        model *m = model_new();
        kindex *ix = kindex_new();
        assert_non_null(ix);
        int64_t doc = 0;
        while (m->n < 1500) {
            kindex_batch *b = kindex_batch_new();
            size_t docs = 1 + rng_below(&r, 20);
            for (size_t d = 0; d < docs; d++)
                add_doc(m, &r, b, ++doc, 1 + rng_below(&r, 8));
            commit(ix, b);
        }
        check_against_brute(ix, m, &r, 150, false);
        check_against_brute(ix, m, &r, 80, true);
        kindex_stats st;
        kindex_stats_get(ix, &st);
        assert_int_equal(st.chunks, m->n);
        kindex_free(ix);
        free(m);
    }
}

static void test_removals_and_replacements(void **state)
{
    (void)state;
    rng r = {424242};
    model *m = model_new();
    kindex *ix = kindex_new();
    int64_t doc = 0;
    for (int i = 0; i < 60; i++) {
        kindex_batch *b = kindex_batch_new();
        for (int d = 0; d < 5; d++)
            add_doc(m, &r, b, ++doc, 1 + rng_below(&r, 6));
        commit(ix, b);
    }
    check_against_brute(ix, m, &r, 40, false);
    /* remove a third of the documents, replace another third (same row id, new chunks) */
    for (int round = 0; round < 6; round++) {
        kindex_batch *b = kindex_batch_new();
        for (int j = 0; j < 25; j++) {
            int64_t victim = 1 + (int64_t)rng_below(&r, (size_t)doc);
            assert_int_equal(kindex_batch_remove_doc(b, victim), RAGD_OK);
            remove_doc_model(m, victim);
        }
        commit(ix, b);
        b = kindex_batch_new();
        for (int j = 0; j < 10 && m->n < MAX_CHUNKS - 10; j++) {
            int64_t victim = 1 + (int64_t)rng_below(&r, (size_t)doc);
            assert_int_equal(kindex_batch_remove_doc(b, victim), RAGD_OK);
            remove_doc_model(m, victim);
            /* the same document comes back with new text in the same batch */
            add_doc(m, &r, b, victim, 1 + rng_below(&r, 5));
        }
        commit(ix, b);
        check_against_brute(ix, m, &r, 40, round % 2 == 1);
    }
    /* a document removed twice, and one never there: nothing happens */
    kindex_batch *b = kindex_batch_new();
    assert_int_equal(kindex_batch_remove_doc(b, 999999), RAGD_OK);
    commit(ix, b);
    size_t live = 0;
    for (size_t i = 0; i < m->n; i++)
        live += m->c[i].live;
    kindex_stats st;
    kindex_stats_get(ix, &st);
    assert_int_equal(st.chunks, live);
    /* compaction kept the dead postings below a quarter of every list, so below a quarter
     * of all postings */
    assert_true(st.dead_postings * 4 < st.postings);
    /* remove everything: no hit for any query, then the index fills again */
    b = kindex_batch_new();
    for (int64_t d = 1; d <= doc; d++)
        assert_int_equal(kindex_batch_remove_doc(b, d), RAGD_OK);
    commit(ix, b);
    for (size_t i = 0; i < m->n; i++)
        m->c[i].live = false;
    kindex_stats_get(ix, &st);
    assert_int_equal(st.chunks, 0);
    assert_int_equal(st.dead_postings, 0);
    kindex_hit hits[10];
    size_t n = 5;
    assert_int_equal(kindex_search(ix, "install debian", 14, 10, NULL, NULL, hits, &n), RAGD_OK);
    assert_int_equal(n, 0);
    m->n = 0;
    b = kindex_batch_new();
    for (int d = 0; d < 30; d++)
        add_doc(m, &r, b, ++doc, 2);
    commit(ix, b);
    check_against_brute(ix, m, &r, 30, false);
    kindex_free(ix);
    free(m);
}

static void test_ties(void **state)
{
    (void)state;
    /* identical chunks score identically: ties go to the lower chunk id, also with k
     * smaller than the tie group and chunks added in descending id order */
    kindex *ix = kindex_new();
    kindex_batch *b = kindex_batch_new();
    for (int64_t id = 40; id >= 1; id--) {
        kindex_fields f = {.text = {"alpha beta gamma", NULL, NULL}, .len = {16, 0, 0}};
        assert_int_equal(kindex_batch_add(b, id, id, &f), RAGD_OK);
    }
    commit(ix, b);
    kindex_hit hits[7];
    size_t n = 0;
    assert_int_equal(kindex_search(ix, "beta", 4, 7, NULL, NULL, hits, &n), RAGD_OK);
    assert_int_equal(n, 7);
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(hits[i].chunk_id, (int64_t)i + 1);
        assert_true(hits[i].score == hits[0].score);
        assert_true(hits[i].score > 0);
    }
    kindex_free(ix);
}

static void test_fields_and_analysis(void **state)
{
    (void)state;
    kindex *ix = kindex_new();
    kindex_batch *b = kindex_batch_new();
    /* doc 1: the title names the tool, the paragraph does not */
    kindex_fields f1 = {.text = {"Run the installer and answer its questions.", "Ollama", "Install > Debian"}};
    kindex_fields f2 = {.text = {"Ollama mentioned in passing among many other words here and there.", "Other", ""}};
    kindex_fields f3 = {.text = {"ＩＮＳＴＡＬＬＩＮＧ café packages is what THE installation does.", "", ""}};
    kindex_fields *fs[] = {&f1, &f2, &f3};
    for (int i = 0; i < 3; i++) {
        for (int k = 0; k < 3; k++)
            fs[i]->len[k] = fs[i]->text[k] ? strlen(fs[i]->text[k]) : 0;
        assert_int_equal(kindex_batch_add(b, i + 1, i + 1, fs[i]), RAGD_OK);
    }
    commit(ix, b);
    kindex_hit h[5];
    size_t n = 0;
    /* the title finds chunk 1, and its field weight puts it first */
    assert_int_equal(kindex_search(ix, "ollama installer", 16, 5, NULL, NULL, h, &n), RAGD_OK);
    assert_int_equal(n, 3); /* "installer" and "installation" share the stem "instal" */
    assert_int_equal(h[0].chunk_id, 1);
    /* the heading path is searched */
    assert_int_equal(kindex_search(ix, "debian", 6, 5, NULL, NULL, h, &n), RAGD_OK);
    assert_int_equal(n, 1);
    assert_int_equal(h[0].chunk_id, 1);
    /* stemming: "install" finds "INSTALLING" (full width) and "installation", and the
     * heading's "Install" */
    assert_int_equal(kindex_search(ix, "installs", 8, 5, NULL, NULL, h, &n), RAGD_OK);
    assert_int_equal(n, 2);
    assert_true((h[0].chunk_id == 1 && h[1].chunk_id == 3) || (h[0].chunk_id == 3 && h[1].chunk_id == 1));
    /* accents are kept, case is folded */
    assert_int_equal(kindex_search(ix, "CAFÉ", strlen("CAFÉ"), 5, NULL, NULL, h, &n), RAGD_OK);
    assert_int_equal(n, 1);
    assert_int_equal(kindex_search(ix, "cafe", 4, 5, NULL, NULL, h, &n), RAGD_OK);
    assert_int_equal(n, 0);
    /* stop words alone find nothing; no words at all neither */
    assert_int_equal(kindex_search(ix, "the is what", 11, 5, NULL, NULL, h, &n), RAGD_OK);
    assert_int_equal(n, 0);
    assert_int_equal(kindex_search(ix, "", 0, 5, NULL, NULL, h, &n), RAGD_OK);
    assert_int_equal(n, 0);
    assert_int_equal(kindex_search(ix, "?!", 2, 5, NULL, NULL, h, &n), RAGD_OK);
    assert_int_equal(n, 0);
    assert_int_equal(kindex_search(ix, "ollama", 6, 0, NULL, NULL, h, &n), RAGD_OK);
    assert_int_equal(n, 0);
    assert_int_equal(kindex_search(NULL, "ollama", 6, 5, NULL, NULL, h, &n), RAGD_EINVAL);
    kindex_free(ix);
}

static void test_len_code(void **state)
{
    (void)state;
    unsigned prev = 0;
    for (unsigned len = 0; len <= 65535; len++) {
        unsigned c = kindex_len_code(len);
        assert_true(c <= 255);
        assert_true(c >= prev);
        prev = c;
        double back = kindex_code_len(c);
        if (len < 32)
            assert_true(back == (double)len);
        else
            assert_true(back <= (double)len && back > (double)len * 0.93);
    }
}

static void test_two_phase(void **state)
{
    (void)state;
    rng r = {77};
    model *m = model_new();
    kindex *ix = kindex_new();
    kindex_batch *b = kindex_batch_new();
    for (int d = 1; d <= 40; d++)
        add_doc(m, &r, b, d, 3);
    commit(ix, b);
    kindex_stats before;
    kindex_stats_get(ix, &before);

    /* reserve then release: nothing changes, and the words it introduced find nothing */
    b = kindex_batch_new();
    kindex_fields f = {.text = {"zzyzx quux", NULL, NULL}, .len = {10, 0, 0}};
    assert_int_equal(kindex_batch_add(b, 100000, 1000, &f), RAGD_OK);
    assert_int_equal(kindex_batch_remove_doc(b, 1), RAGD_OK);
    assert_int_equal(kindex_reserve(ix, b), RAGD_OK);
    kindex_hit h[10];
    size_t n = 9;
    assert_int_equal(kindex_search(ix, "zzyzx", 5, 10, NULL, NULL, h, &n), RAGD_OK);
    assert_int_equal(n, 0); /* reserved is not visible */
    kindex_release(ix, b);
    kindex_batch_free(b);
    kindex_stats after;
    kindex_stats_get(ix, &after);
    assert_int_equal(after.chunks, before.chunks);
    assert_int_equal(after.postings, before.postings);
    check_against_brute(ix, m, &r, 20, false);

    /* stacked reservations of a group, applied in order; the first removes what the
     * second replaces */
    kindex_batch *b1 = kindex_batch_new(), *b2 = kindex_batch_new(), *b3 = kindex_batch_new();
    assert_int_equal(kindex_batch_remove_doc(b1, 2), RAGD_OK);
    remove_doc_model(m, 2);
    add_doc(m, &r, b1, 41, 5);
    assert_int_equal(kindex_batch_remove_doc(b2, 41), RAGD_OK);
    assert_int_equal(kindex_reserve(ix, b1), RAGD_OK);
    assert_int_equal(kindex_reserve(ix, b2), RAGD_OK);
    add_doc(m, &r, b3, 42, 200); /* grows many lists past their capacity */
    assert_int_equal(kindex_reserve(ix, b3), RAGD_OK);
    /* applying needs no memory at all */
    atomic_store(&fail_allocs, 1);
    kindex_apply(ix, b1);
    kindex_apply(ix, b2);
    kindex_apply(ix, b3);
    atomic_store(&fail_allocs, 0);
    remove_doc_model(m, 41);
    kindex_batch_free(b1);
    kindex_batch_free(b2);
    kindex_batch_free(b3);
    check_against_brute(ix, m, &r, 40, false);

    /* a reserve that cannot have memory fails and leaves nothing behind */
    if (CAN_FAIL_ALLOCS) {
        b = kindex_batch_new();
        add_doc(m, &r, b, 43, 300);
        kindex_stats_get(ix, &before);
        atomic_store(&fail_allocs, 1);
        ragd_err e = kindex_reserve(ix, b);
        atomic_store(&fail_allocs, 0);
        assert_int_equal(e, RAGD_ENOMEM);
        kindex_batch_free(b);
        remove_doc_model(m, 43);
        for (size_t i = 0; i < m->n; i++)
            if (m->c[i].doc == 43)
                m->n = i; /* doc 43's chunks are the last ones */
        kindex_stats_get(ix, &after);
        assert_int_equal(after.chunks, before.chunks);
        check_against_brute(ix, m, &r, 20, false);
        /* and a failing analysis leaves the batch usable */
        b = kindex_batch_new();
        add_doc(m, &r, b, 44, 2);
        /* 600 new words: the batch's dictionary must grow */
        char *novel = malloc(600 * 12);
        assert_non_null(novel);
        size_t nl = 0;
        for (int i = 0; i < 600; i++)
            nl += (size_t)sprintf(novel + nl, "%snovel%04d", i ? " " : "", i);
        kindex_fields g = {.text = {novel, "fresh title", ""}, .len = {nl, 11, 0}};
        atomic_store(&fail_allocs, 1);
        e = kindex_batch_add(b, 999999, 45, &g);
        atomic_store(&fail_allocs, 0);
        free(novel);
        assert_int_equal(e, RAGD_ENOMEM);
        add_doc(m, &r, b, 45, 2);
        commit(ix, b);
        check_against_brute(ix, m, &r, 20, false);
    }
    kindex_free(ix);
    free(m);
}

static void test_set(void **state)
{
    (void)state;
    kindex_set *set = kindex_set_new();
    assert_non_null(set);
    assert_null(kindex_set_get(set, 5, false));
    kindex *a = kindex_set_get(set, 5, true);
    kindex *c = kindex_set_get(set, 3, true);
    kindex *d = kindex_set_get(set, 9, true);
    assert_non_null(a);
    assert_true(a != c && c != d);
    kindex *a2 = kindex_set_get(set, 5, false);
    assert_ptr_equal(a, a2);
    kindex_set_put(set, a2);
    kindex_batch *b = kindex_batch_new();
    kindex_fields f = {.text = {"hello world", NULL, NULL}, .len = {11, 0, 0}};
    assert_int_equal(kindex_batch_add(b, 1, 1, &f), RAGD_OK);
    commit(a, b);
    /* dropped while held: still usable until put */
    kindex_set_drop(set, 5);
    assert_null(kindex_set_get(set, 5, false));
    kindex_hit h[2];
    size_t n = 0;
    assert_int_equal(kindex_search(a, "hello", 5, 2, NULL, NULL, h, &n), RAGD_OK);
    assert_int_equal(n, 1);
    kindex_set_put(set, a);
    kindex_set_put(set, c);
    kindex_set_put(set, d);
    kindex_set_drop(set, 3);
    kindex_set_drop(set, 77); /* absent */
    kindex_set_put(set, NULL);
    kindex_set_free(set);
}

/* ---- slot compaction: removed chunks' slots given back ---- */

static kindex_stats stats_of(kindex *ix)
{
    kindex_stats st;
    kindex_stats_get(ix, &st);
    return st;
}

/* Every document of a corpus replaced, round after round (all in one batch, or one batch
 * per document as the server's writes do): the hits stay the brute force's and the memory
 * held stays bounded. Without compaction the slots and forward lists grew by the corpus
 * every round (this test failed: 3x the first round's memory by round 17). */
static void test_compact_replace_rounds(void **state)
{
    (void)state;
    rng r = {31337};
    model *m = model_new();
    kindex *ix = kindex_new();
    const int64_t docs = 300;
    kindex_batch *b = kindex_batch_new();
    for (int64_t d = 1; d <= docs; d++)
        add_doc(m, &r, b, d, 1 + rng_below(&r, 9));
    commit(ix, b);
    size_t first_bytes = 0;
    for (int round = 0; round < 30; round++) {
        bool per_doc = round % 2 == 1;
        b = kindex_batch_new();
        for (int64_t d = 1; d <= docs; d++) {
            replace_doc(m, &r, b, d, 1 + rng_below(&r, 9));
            if (per_doc) {
                commit(ix, b);
                b = kindex_batch_new();
            }
        }
        commit(ix, b);
        model_forget_dead(m);
        check_against_brute(ix, m, &r, 10, round % 4 == 1);
        kindex_stats st = stats_of(ix);
        assert_int_equal(st.chunks, m->n);
        if (round == 0)
            first_bytes = st.bytes;
        if (st.bytes >= 3 * first_bytes)
            fprintf(stderr, "round %d: %zu bytes held, %zu after the first round; %zu slots for %zu chunks\n", round,
                    st.bytes, first_bytes, st.slots, st.chunks);
        assert_true(st.bytes < 3 * first_bytes);
        /* compaction runs once dead slots outnumber live ones: a document's worth past that */
        assert_true(st.slots <= 2 * st.chunks + 10);
    }
    kindex_free(ix);
    free(m);
}

/* A batch whose removals trigger the compaction also adds and replaces documents, and a
 * second batch reserved before it (stacked) is applied after it: both apply without memory,
 * the reserved room survives the renumbering, and the renumbered documents can still be
 * removed (their slot ranges moved with them). */
static void test_compact_with_additions(void **state)
{
    (void)state;
    rng r = {2718};
    model *m = model_new();
    kindex *ix = kindex_new();
    kindex_batch *b = kindex_batch_new();
    for (int64_t d = 1; d <= 240; d++)
        add_doc(m, &r, b, d, 5);
    commit(ix, b);
    check_against_brute(ix, m, &r, 10, false);

    kindex_batch *b1 = kindex_batch_new(), *b2 = kindex_batch_new();
    for (int64_t d = 1; d <= 230; d++) { /* 1,150 dead for 50 live: compacted */
        assert_int_equal(kindex_batch_remove_doc(b1, d), RAGD_OK);
        remove_doc_model(m, d);
    }
    replace_doc(m, &r, b1, 235, 7);
    for (int64_t d = 241; d <= 280; d++)
        add_doc(m, &r, b1, d, 1 + rng_below(&r, 6));
    size_t live = 0; /* after b1 */
    for (size_t i = 0; i < m->n; i++)
        live += m->c[i].live;
    replace_doc(m, &r, b2, 238, 3);
    for (int64_t d = 281; d <= 300; d++)
        add_doc(m, &r, b2, d, 100); /* grows many lists past their capacity */
    assert_int_equal(kindex_reserve(ix, b1), RAGD_OK);
    assert_int_equal(kindex_reserve(ix, b2), RAGD_OK);
    atomic_store(&fail_allocs, 1);
    kindex_apply(ix, b1);
    atomic_store(&fail_allocs, 0);
    kindex_stats st = stats_of(ix);
    assert_int_equal(st.chunks, live);
    assert_int_equal(st.slots, live); /* renumbered before the additions took the next slots */
    assert_int_equal(st.dead_postings, 0);
    atomic_store(&fail_allocs, 1);
    kindex_apply(ix, b2);
    atomic_store(&fail_allocs, 0);
    kindex_batch_free(b1);
    kindex_batch_free(b2);
    model_forget_dead(m);
    check_against_brute(ix, m, &r, 40, false);
    check_against_brute(ix, m, &r, 20, true);

    /* documents from before, between and after the renumbering, removed */
    b = kindex_batch_new();
    int64_t gone[] = {231, 235, 240, 250, 290};
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++) {
        assert_int_equal(kindex_batch_remove_doc(b, gone[i]), RAGD_OK);
        remove_doc_model(m, gone[i]);
    }
    commit(ix, b);
    model_forget_dead(m);
    assert_int_equal(stats_of(ix).chunks, m->n);
    check_against_brute(ix, m, &r, 40, false);
    kindex_free(ix);
    free(m);
}

/* A collection emptied completely, then refilled: by a batch of removals then one of
 * additions, then by a single batch replacing everything. */
static void test_compact_empty_refill(void **state)
{
    (void)state;
    rng r = {1618};
    model *m = model_new();
    kindex *ix = kindex_new();
    kindex_batch *b = kindex_batch_new();
    for (int64_t d = 1; d <= 300; d++)
        add_doc(m, &r, b, d, 5);
    commit(ix, b);
    kindex_stats full = stats_of(ix);

    b = kindex_batch_new();
    for (int64_t d = 1; d <= 300; d++)
        assert_int_equal(kindex_batch_remove_doc(b, d), RAGD_OK);
    commit(ix, b);
    m->n = 0;
    kindex_stats st = stats_of(ix);
    assert_int_equal(st.chunks, 0);
    assert_int_equal(st.slots, 0);
    assert_int_equal(st.postings, 0);
    assert_int_equal(st.dead_postings, 0);
    for (int f = 0; f < KINDEX_FIELDS; f++)
        assert_int_equal(st.field_len[f], 0);
    assert_true(st.bytes < full.bytes / 2); /* the empty posting lists were given back */
    kindex_hit h[10];
    size_t n = 5;
    assert_int_equal(kindex_search(ix, "install debian", 14, 10, NULL, NULL, h, &n), RAGD_OK);
    assert_int_equal(n, 0);

    b = kindex_batch_new(); /* old row ids and new ones */
    for (int64_t d = 150; d <= 450; d++)
        add_doc(m, &r, b, d, 5);
    commit(ix, b);
    st = stats_of(ix);
    assert_int_equal(st.chunks, m->n);
    assert_int_equal(st.slots, m->n);
    check_against_brute(ix, m, &r, 30, false);

    b = kindex_batch_new();
    for (int64_t d = 150; d <= 450; d++)
        replace_doc(m, &r, b, d, 4);
    commit(ix, b);
    model_forget_dead(m);
    st = stats_of(ix);
    assert_int_equal(st.chunks, m->n);
    assert_int_equal(st.slots, m->n);
    check_against_brute(ix, m, &r, 30, true);
    kindex_free(ix);
    free(m);
}

/* ---- readers while a writer changes the index ---- */
typedef struct {
    kindex *ix;
    atomic_bool stop;
    atomic_long searches;
} conc;

static void *reader_main(void *arg)
{
    conc *cs = arg;
    rng r = {(uint64_t)(uintptr_t)arg ^ 99};
    kindex_hit h[20];
    while (!atomic_load(&cs->stop)) {
        char q[200];
        query_text(&r, q, sizeof q);
        size_t n = 0;
        assert_int_equal(kindex_search(cs->ix, q, strlen(q), 20, rng_below(&r, 2) ? pred_odd : NULL, NULL, h, &n),
                         RAGD_OK);
        for (size_t i = 1; i < n; i++)
            assert_true(h[i - 1].score > h[i].score ||
                        (h[i - 1].score == h[i].score && h[i - 1].chunk_id < h[i].chunk_id));
        atomic_fetch_add(&cs->searches, 1);
    }
    return NULL;
}

static void test_concurrent(void **state)
{
    (void)state;
    rng r = {5150};
    model *m = model_new();
    conc cs = {.ix = kindex_new()};
    pthread_t readers[3];
    for (int i = 0; i < 3; i++)
        assert_int_equal(pthread_create(&readers[i], NULL, reader_main, &cs), 0);
    int64_t doc = 0;
    for (int round = 0; round < 120; round++) {
        kindex_batch *b = kindex_batch_new();
        if (doc > 10 && rng_below(&r, 2)) {
            int64_t victim = 1 + (int64_t)rng_below(&r, (size_t)doc);
            assert_int_equal(kindex_batch_remove_doc(b, victim), RAGD_OK);
            remove_doc_model(m, victim);
        }
        if (m->n < MAX_CHUNKS - 10)
            add_doc(m, &r, b, ++doc, 1 + rng_below(&r, 6));
        assert_int_equal(kindex_reserve(cs.ix, b), RAGD_OK);
        kindex_apply(cs.ix, b);
        kindex_batch_free(b);
        if (rng_below(&r, 4) == 0) { /* an aborted write: reserved, then given back */
            b = kindex_batch_new();
            kindex_fields f = {.text = {"aborted words never seen", "gone", ""}, .len = {24, 4, 0}};
            assert_int_equal(kindex_batch_add(b, 1000000 + round, 1000000 + round, &f), RAGD_OK);
            assert_int_equal(kindex_batch_remove_doc(b, 1), RAGD_OK);
            assert_int_equal(kindex_reserve(cs.ix, b), RAGD_OK);
            kindex_release(cs.ix, b);
            kindex_batch_free(b);
        }
    }
    /* every document replaced, round after round, until the slots are compacted under
     * the readers' feet */
    kindex_stats st = stats_of(cs.ix);
    size_t compactions = 0;
    for (int round = 0; round < 12; round++) {
        kindex_batch *b = kindex_batch_new();
        for (int64_t d = 1; d <= doc; d++)
            replace_doc(m, &r, b, d, 1 + rng_below(&r, 3));
        commit(cs.ix, b);
        model_forget_dead(m);
        kindex_stats after = stats_of(cs.ix);
        compactions += after.slots < st.slots;
        st = after;
    }
    assert_true(compactions > 0);
    atomic_store(&cs.stop, true);
    for (int i = 0; i < 3; i++)
        pthread_join(readers[i], NULL);
    assert_true(atomic_load(&cs.searches) > 0);
    check_against_brute(cs.ix, m, &r, 30, false);
    kindex_free(cs.ix);
    free(m);
}

int main(void)
{
    vocab_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_len_code),
        cmocka_unit_test(test_fields_and_analysis),
        cmocka_unit_test(test_ties),
        cmocka_unit_test(test_brute_force),
        cmocka_unit_test(test_removals_and_replacements),
        cmocka_unit_test(test_two_phase),
        cmocka_unit_test(test_compact_replace_rounds),
        cmocka_unit_test(test_compact_with_additions),
        cmocka_unit_test(test_compact_empty_refill),
        cmocka_unit_test(test_set),
        cmocka_unit_test(test_concurrent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
