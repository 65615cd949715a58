/* bench_kindex: build time, memory and query latency of the in-memory keyword index on a
 * synthetic corpus shaped like bench_http.py's: a 5,000-word vocabulary of pseudo-words
 * with Zipf frequencies, documents of two chunks of ~75 words, one of them holding the
 * document's unique code word; a three-word title per document, a two-word heading on half
 * the chunks.
 *
 * Usage: build/bench_kindex [CHUNKS] [QUERIES] [K]   (defaults 10000 2000 10)
 * Prints: build time (analysis + reserve + apply, batches of 1,000 documents, one thread),
 * index bytes per chunk, RSS growth, and the median / p90 / p99 latency of two query
 * shapes: "which document mentions zqNx" + four Zipf words (one rare word and common
 * ones, bench_http's), and four Zipf words alone (only common words: the hard case for
 * pruning). Not a test: it measures. */
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

int main(int argc, char **argv)
{
    size_t chunks = argc > 1 ? strtoul(argv[1], NULL, 10) : 10000;
    size_t queries = argc > 2 ? strtoul(argv[2], NULL, 10) : 2000;
    size_t k = argc > 3 ? strtoul(argv[3], NULL, 10) : 10;
    vocab();
    kindex *ix = kindex_new();
    long rss0 = rss_kib();
    size_t docs = (chunks + 1) / 2;
    double t0 = now_ms(), analyse_ms = 0, commit_ms = 0;
    size_t bytes_text = 0;
    int64_t chunk_id = 0;
    /* texts of a batch are generated first, untimed: the build time is the index's own */
    typedef struct {
        char title[128], body[1024], head[64];
        size_t len, hl;
    } gen;
    gen *g = malloc(2000 * sizeof *g);
    double gen_ms = 0;
    for (size_t d0 = 0; d0 < docs; d0 += 1000) {
        double tg = now_ms();
        size_t ng = 0;
        for (size_t d = d0; d < docs && d < d0 + 1000; d++) {
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
                bytes_text += x->len;
            }
        }
        gen_ms += now_ms() - tg;
        double ta = now_ms();
        kindex_batch *b = kindex_batch_new();
        for (size_t i = 0; i < ng; i++) {
            gen *x = &g[i];
            kindex_fields f = {.text = {x->body, x->title, x->head}, .len = {x->len, strlen(x->title), x->hl}};
            if (kindex_batch_add(b, ++chunk_id, (int64_t)(d0 + i / 2) + 1, &f) != RAGD_OK) {
                fprintf(stderr, "batch_add failed\n");
                return 1;
            }
        }
        double tb = now_ms();
        analyse_ms += tb - ta;
        if (kindex_reserve(ix, b) != RAGD_OK) {
            fprintf(stderr, "reserve failed\n");
            return 1;
        }
        kindex_apply(ix, b);
        kindex_batch_free(b);
        commit_ms += now_ms() - tb;
    }
    free(g);
    double build = analyse_ms + commit_ms;
    (void)t0;
    kindex_stats st;
    kindex_stats_get(ix, &st);
    long rss1 = rss_kib();
    printf("kindex: %zu chunks (%.1f MB of text), %zu terms, %zu postings (%.1f per chunk)\n", st.chunks,
           (double)bytes_text / 1e6, st.terms, st.postings, (double)st.postings / (double)st.chunks);
    printf("  build %.0f ms (%.2f us/chunk: analysis %.0f ms, reserve+apply %.0f ms; generating the text took "
           "another %.0f ms)\n",
           build, build * 1000 / (double)st.chunks, analyse_ms, commit_ms, gen_ms);
    printf("  memory: %.1f MB held = %.0f bytes/chunk; RSS grew %.1f MB\n", (double)st.bytes / 1e6,
           (double)st.bytes / (double)st.chunks, (double)(rss1 - rss0) / 1024.0);
    run_queries(ix, docs, queries, k, 0);
    run_queries(ix, docs, queries, k, 1);
    kindex_free(ix);
    return 0;
}
