/* bench_kindex: build time, memory and query latency of the in-memory keyword index on a
 * synthetic corpus shaped like bench_http.py's: a 5,000-word vocabulary of pseudo-words
 * with Zipf frequencies, documents of two chunks of ~75 words, one of them holding the
 * document's unique code word; a three-word title per document, a two-word heading on half
 * the chunks.
 *
 * Usage: build/bench_kindex [CHUNKS] [QUERIES] [K] [replace]   (defaults 10000 2000 10)
 * Prints: build time (analysis + reserve + apply, batches of 1,000 documents, one thread),
 * index bytes per chunk, RSS growth, and the median / p90 / p99 latency of two query
 * shapes: "which document mentions zqNx" + four Zipf words (one rare word and common
 * ones, bench_http's), and four Zipf words alone (only common words: the hard case for
 * pruning). With "replace": every document is then replaced once (batches of 1,000
 * documents, removal and new chunks in one batch, as a re-ingest), and the next batch's
 * apply renumbers the slots to give the dead ones back: its time (the write lock is held
 * that long) and the memory before and after are printed, then the queries run again.
 * Not a test: it measures. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "index/kindex.h"

#define VOCAB 5000

static char words[VOCAB][16];
static double cdf[VOCAB];
static uint64_t rs = 88172645463325252ULL;

static uint64_t rnd(void)
{
    rs ^= rs << 13;
    rs ^= rs >> 7;
    rs ^= rs << 17;
    return rs;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static const char *zipf(void)
{
    double u = (double)(rnd() >> 11) / (double)(1ULL << 53);
    size_t lo = 0, hi = VOCAB - 1;
    while (lo < hi) {
        size_t mid = (lo + hi) / 2;
        if (cdf[mid] < u)
            lo = mid + 1;
        else
            hi = mid;
    }
    return words[lo];
}

static void vocab(void)
{
    static const char *syl[] = {"ka", "lo", "mi", "nu", "pe", "ra", "si", "to",
                                "vu", "xe", "ba", "do", "fi", "gu", "ha", "je"};
    for (size_t i = 0; i < VOCAB; i++) {
        /* distinct: the index i written in base 16 with syllables as digits */
        size_t x = i + 16, n = 0;
        char tmp[16] = "";
        while (x) {
            strcat(tmp, syl[x % 16]);
            x /= 16;
            n++;
        }
        snprintf(words[i], sizeof words[i], "%s", tmp);
    }
    double sum = 0, acc = 0;
    for (size_t i = 0; i < VOCAB; i++)
        sum += 1.0 / (double)(i + 1);
    for (size_t i = 0; i < VOCAB; i++) {
        acc += 1.0 / (double)(i + 1) / sum;
        cdf[i] = acc;
    }
}

static size_t add_words(char *o, size_t n)
{
    size_t len = 0;
    for (size_t i = 0; i < n; i++)
        len += (size_t)sprintf(o + len, "%s%s", i ? " " : "", zipf());
    return len;
}

static long rss_kib(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = 0;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            v = atol(line + 6);
    if (f)
        fclose(f);
    return v;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void run_queries(kindex *ix, size_t docs, size_t queries, size_t k, int shape)
{
    double *lat = malloc(queries * sizeof *lat);
    kindex_hit *hits = malloc(k * sizeof *hits);
    size_t found = 0;
    for (size_t q = 0; q < queries; q++) {
        char text[512];
        size_t len = 0, doc = (size_t)(rnd() % docs);
        if (shape == 0)
            len = (size_t)sprintf(text, "which document mentions zq%zux ", doc);
        len += add_words(text + len, 4);
        size_t n = 0;
        double t0 = now_ms();
        if (kindex_search(ix, text, len, k, NULL, NULL, hits, &n) != RAGD_OK) {
            fprintf(stderr, "search failed\n");
            exit(1);
        }
        lat[q] = now_ms() - t0;
        bool right = false; /* two chunks of the document may both be hits: counted once */
        for (size_t i = 0; shape == 0 && i < n; i++)
            right = right || hits[i].doc_rowid == (int64_t)doc + 1;
        found += right;
    }
    qsort(lat, queries, sizeof *lat, cmp_d);
    printf("  %-44s k=%zu: median %.3f ms, p90 %.3f ms, p99 %.3f ms", shape == 0 ? "'which document mentions zqNx' + 4 words" : "4 Zipf words",
           k, lat[queries / 2], lat[queries * 9 / 10], lat[queries * 99 / 100]);
    if (shape == 0)
        printf("; right doc found %.1f%%", 100.0 * (double)found / (double)queries);
    printf("\n");
    free(lat);
    free(hits);
}

/* The texts of one batch: generated first, untimed, so that the times are the index's own. */
typedef struct {
    char title[128], body[1024], head[64];
    size_t len, hl;
} gen;

typedef struct {
    double gen_ms, analyse_ms, reserve_ms, apply_ms;
    double apply_max_ms; /* the longest apply of one batch */
    size_t bytes_text;
    int64_t chunk_id; /* the last chunk id given */
} build_times;

/* Adds documents [d0, d1) (0-based; row id d + 1) as one batch, each of two new chunks,
 * removing each document first when `replace`. */
static void commit_docs(kindex *ix, gen *g, size_t d0, size_t d1, bool replace, build_times *bt)
{
    double tg = now_ms();
    size_t ng = 0;
    for (size_t d = d0; d < d1; d++) {
        char title[128];
        add_words(title, 3);
        size_t code_in = (size_t)(rnd() % 2);
        for (size_t c = 0; c < 2; c++, ng++) {
            gen *x = &g[ng];
            snprintf(x->title, sizeof x->title, "%s", title);
            x->len = add_words(x->body, 60 + rnd() % 30);
            if (c == code_in)
                x->len += (size_t)sprintf(x->body + x->len, " document %zu mentions the code word zq%zux.", d, d);
            x->hl = rnd() % 2 ? add_words(x->head, 2) : 0;
            bt->bytes_text += x->len;
        }
    }
    bt->gen_ms += now_ms() - tg;
    double ta = now_ms();
    kindex_batch *b = kindex_batch_new();
    for (size_t d = d0; replace && d < d1; d++)
        if (kindex_batch_remove_doc(b, (int64_t)d + 1) != RAGD_OK) {
            fprintf(stderr, "batch_remove_doc failed\n");
            exit(1);
        }
    for (size_t i = 0; i < ng; i++) {
        gen *x = &g[i];
        kindex_fields f = {.text = {x->body, x->title, x->head}, .len = {x->len, strlen(x->title), x->hl}};
        if (kindex_batch_add(b, ++bt->chunk_id, (int64_t)(d0 + i / 2) + 1, &f) != RAGD_OK) {
            fprintf(stderr, "batch_add failed\n");
            exit(1);
        }
    }
    double tb = now_ms();
    bt->analyse_ms += tb - ta;
    if (kindex_reserve(ix, b) != RAGD_OK) {
        fprintf(stderr, "reserve failed\n");
        exit(1);
    }
    double tc = now_ms();
    bt->reserve_ms += tc - tb;
    kindex_apply(ix, b);
    double td = now_ms();
    bt->apply_ms += td - tc;
    if (td - tc > bt->apply_max_ms)
        bt->apply_max_ms = td - tc;
    kindex_batch_free(b);
}

/* Every document replaced, in batches of 1,000 documents (a re-ingest), until a batch's
 * apply renumbers the slots to give the dead ones back (the index's compaction: once dead
 * slots outnumber live ones). Prints that apply's time (the write lock is held that long)
 * against the other batches', the memory before and after, then the queries again. */
static void replace_all(kindex *ix, gen *g, size_t docs, size_t queries, size_t k, build_times *bt)
{
    kindex_stats st;
    kindex_stats_get(ix, &st);
    double other_ms = 0;
    size_t others = 0, d0 = 0;
    for (;;) {
        size_t d1 = d0 + 1000 < docs ? d0 + 1000 : docs;
        build_times t = {.chunk_id = bt->chunk_id};
        commit_docs(ix, g, d0, d1, true, &t);
        bt->chunk_id = t.chunk_id;
        kindex_stats after;
        kindex_stats_get(ix, &after);
        if (after.slots < st.slots + 2 * (d1 - d0)) {
            printf("replace every document, batches of 1,000: after %zu batches (%.2f ms an apply on average), "
                   "%zu slots for %zu chunks, %.1f MB held\n",
                   others, others ? other_ms / (double)others : 0.0, st.slots, st.chunks, (double)st.bytes / 1e6);
            printf("  the next batch's apply compacts: %.1f ms (reserve %.1f ms before it); then %zu slots, "
                   "%.1f MB held\n",
                   t.apply_ms, t.reserve_ms, after.slots, (double)after.bytes / 1e6);
            break;
        }
        other_ms += t.apply_ms;
        others++;
        st = after;
        if (others > 1000 * ((docs + 999) / 1000)) {
            printf("replace every document: no compaction after 1,000 rounds\n");
            break;
        }
        d0 = d1 == docs ? 0 : d1;
    }
    run_queries(ix, docs, queries, k, 0);
    run_queries(ix, docs, queries, k, 1);
}

int main(int argc, char **argv)
{
    size_t chunks = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
    size_t queries = argc > 2 ? strtoul(argv[2], NULL, 10) : 2000;
    size_t k = argc > 3 ? strtoul(argv[3], NULL, 10) : 10;
    bool replace = argc > 4 && strcmp(argv[4], "replace") == 0;
    vocab();
    kindex *ix = kindex_new();
    long rss0 = rss_kib();
    size_t docs = (chunks + 1) / 2;
    build_times bt = {0};
    gen *g = malloc(2000 * sizeof *g);
    for (size_t d0 = 0; d0 < docs; d0 += 1000)
        commit_docs(ix, g, d0, d0 + 1000 < docs ? d0 + 1000 : docs, false, &bt);
    double build = bt.analyse_ms + bt.reserve_ms + bt.apply_ms;
    kindex_stats st;
    kindex_stats_get(ix, &st);
    long rss1 = rss_kib();
    printf("kindex: %zu chunks (%.1f MB of text), %zu terms, %zu postings (%.1f per chunk)\n", st.chunks,
           (double)bt.bytes_text / 1e6, st.terms, st.postings, (double)st.postings / (double)st.chunks);
    printf("  build %.0f ms (%.2f us/chunk: analysis %.0f ms, reserve+apply %.0f ms; generating the text took "
           "another %.0f ms)\n",
           build, build * 1000 / (double)st.chunks, bt.analyse_ms, bt.reserve_ms + bt.apply_ms, bt.gen_ms);
    printf("  memory: %.1f MB held = %.0f bytes/chunk; RSS grew %.1f MB\n", (double)st.bytes / 1e6,
           (double)st.bytes / (double)st.chunks, (double)(rss1 - rss0) / 1024.0);
    run_queries(ix, docs, queries, k, 0);
    run_queries(ix, docs, queries, k, 1);
    if (replace)
        replace_all(ix, g, docs, queries, k, &bt);
    free(g);
    kindex_free(ix);
    return 0;
}
