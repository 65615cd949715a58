/* The builtin embedder's feature sort (src/rag/embed_builtin.c, feat_sort_bucket) against
 * the glibc qsort it replaced: the same order on synthetic feature arrays (random, sharing
 * their top bits, repeated), and bit-identical vectors on real and random texts, where
 * the reference vector is computed the old way (one qsort of all features, then every run
 * added in that order) while embed_builtin groups the features by output bucket first.
 * Includes the .c to reach its static functions (STYLE 13). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>

#include "../../src/rag/embed_builtin.c"
#include "util/hash.h"
#include "test_docs.h"
#include "test_rng.h"

#define PINNED_RANDOM_VECTORS 0xec3617c00c40bd14ULL

/* The first version's accumulation: each run of equal (h, kind) in sorted[0..n) (sorted by
 * (h, kind)) added to acc in that order, as kind weight times 1 + ln(count), in the bucket
 * and with the sign mix64(h) picks (the embedder now adds each bucket's runs on its own,
 * in a register). Pinned on its own by test_random_vectors_pinned. */
static void reference_add_runs(const feature *sorted, size_t n, double *acc)
{
    for (size_t i = 0; i < n;) {
        size_t j = i + 1;
        while (j < n && sorted[j].h == sorted[i].h && sorted[j].kind == sorted[i].kind)
            j++;
        double v = feat_weight(sorted[i].kind, j - i);
        uint64_t m = mix64(sorted[i].h);
        acc[m % EMBED_BUILTIN_DIM] += (m >> 63) ? -v : v;
        i = j;
    }
}

/* The vector the embedder gave before feat_sort: qsort of the features, then
 * reference_add_runs. */
static void reference_embed(const char *text, size_t len, float *out)
{
    embed_ctx c = {0};
    if (len > 0)
        assert_int_equal(tokenize_words(text, len, on_token, &c), RAGD_OK);
    assert_int_equal(c.err, RAGD_OK);
    if (c.n > 0)
        qsort(c.f, c.n, sizeof *c.f, feat_cmp);
    /* every run added in the global (h, kind) order, as the first version did */
    double acc[EMBED_BUILTIN_DIM] = {0};
    pthread_once(&weight_table_once, weight_table_build);
    reference_add_runs(c.f, c.n, acc);
    embed_normalise(acc, out);
    free(c.f);
}

/* Number of texts compared, so the test can say it compared something. */
static size_t compared;

static void assert_same_vector(const char *text, size_t len)
{
    float got[EMBED_BUILTIN_DIM], want[EMBED_BUILTIN_DIM];
    assert_int_equal(embed_builtin(text, len, got), RAGD_OK);
    reference_embed(text, len, want);
    /* the stream API (one reused stream, fed by tokenize_words) gives the same vector */
    static embed_builtin_stream *stream;
    float streamed[EMBED_BUILTIN_DIM];
    if (!stream)
        assert_non_null(stream = embed_builtin_stream_new());
    assert_int_equal(embed_builtin_stream_begin(stream, len), RAGD_OK);
    if (len > 0)
        assert_int_equal(tokenize_words(text, len, embed_builtin_stream_token, stream), RAGD_OK);
    assert_int_equal(embed_builtin_stream_end(stream, streamed), RAGD_OK);
    if (memcmp(streamed, got, sizeof got) != 0)
        fail_msg("streamed vector differs for a text of %zu bytes: %.60s", len, text);
    if (memcmp(got, want, sizeof got) != 0) {
        for (size_t i = 0; i < EMBED_BUILTIN_DIM; i++)
            if (memcmp(&got[i], &want[i], sizeof got[i]) != 0)
                fail_msg("vectors differ at %zu (%.9g vs %.9g) for a text of %zu bytes: %.60s", i, got[i],
                         want[i], len, text);
    }
    compared++;
}

static void assert_sorts_like_qsort(const feature *f, size_t n)
{
    feature *got = malloc((n ? n : 1) * sizeof *got);
    feature *want = malloc((n ? n : 1) * sizeof *want);
    assert_non_null(got);
    assert_non_null(want);
    feature *scratch = malloc((n ? n : 1) * sizeof *scratch);
    assert_non_null(scratch);
    memcpy(want, f, n * sizeof *f);
    qsort(want, n, sizeof *want, feat_cmp);
    memcpy(got, f, n * sizeof *f);
    feat_sort_bucket(got, n, scratch, 64); /* the whole array as one bucket */
    for (size_t i = 0; i < n; i++) {
        assert_int_equal(got[i].h, want[i].h);
        assert_int_equal(got[i].kind, want[i].kind);
    }
    free(got);
    free(want);
    free(scratch);
}

/* Random arrays of many sizes: random hashes, hashes sharing their top 20 bits (one
 * bucket: the qsort fallback), few distinct hashes (long runs of equal keys), and sizes
 * around the bucket counts' powers of two. */
static void test_sort_matches_qsort(void **state)
{
    (void)state;
    rng r = {0x5eed1234};
    static const size_t sizes[] = {0, 1, 2, 3, 31, 32, 33, 64, 65, 200, 1000, 1500, 4095, 4096, 4097, 20000, 70000};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        size_t n = sizes[s];
        feature *f = malloc((n ? n : 1) * sizeof *f);
        assert_non_null(f);
        for (int shape = 0; shape < 4; shape++) {
            for (size_t i = 0; i < n; i++) {
                uint64_t h = rng_next(&r);
                if (shape == 1)
                    h = (0xABCDEULL << 44) | (h >> 20);
                else if (shape == 2)
                    h = rng_below(&r, 7) * 0x9E3779B97F4A7C15ULL;
                else if (shape == 3)
                    h = (h & 0xFFFF000000000000ULL) | rng_below(&r, 50);
                f[i].h = h;
                f[i].kind = (uint32_t)rng_below(&r, 3);
            }
            assert_sorts_like_qsort(f, n);
        }
        free(f);
    }
}

/* A random text of up to 3,000 bytes into text (4,096 bytes): words with repeats, Unicode,
 * ligatures, numbers, apostrophes and long words of random letters. Returns its length. */
static size_t random_text(rng *r, char *text)
{
    static const char *words[] = {"the", "ingest", "Straße", "naïve", "東京", "x", "3.14", "don't",
                                  "retrieval", "ΣΊΣΥΦΟΣ", "a", "vector", "ﬁle", "of", "and", "embedding"};
    size_t len = 0, target = 1 + rng_below(r, 3000);
    while (len + 80 < target) {
        const char *w = words[rng_below(r, sizeof words / sizeof words[0])];
        if (rng_below(r, 10) == 0) { /* a long word of random letters */
            size_t wl = 1 + rng_below(r, 70);
            for (size_t i = 0; i < wl; i++)
                text[len++] = (char)('a' + rng_below(r, 26));
        } else {
            len += (size_t)snprintf(text + len, 4096 - len, "%s", w);
        }
        text[len++] = rng_below(r, 8) == 0 ? '\n' : ' ';
    }
    return len;
}

/* Every 1,000-byte piece (at two alignments) of one documentation file, and the whole file
 * (many features a bucket). */
static void doc_vectors_bit_identical(const char *text, size_t len, void *ud)
{
    for (size_t at = 0; at < len; at += 500)
        assert_same_vector(text + at, len - at < 1000 ? len - at : 1000);
    assert_same_vector(text, len);
}

/* Every 1,000-byte piece (at two alignments) of the repository's docs, and random word
 * salads with repeats, Unicode and long words: the same vector bit for bit. */
static void test_vectors_bit_identical(void **state)
{
    (void)state;
    compared = 0;
    assert_true(test_each_doc(doc_vectors_bit_identical, NULL) > 10);
    rng r = {42};
    char text[4096];
    for (int t = 0; t < 2000; t++) {
        size_t len = random_text(&r, text);
        assert_same_vector(text, len);
    }
    assert_true(compared > 2500);
}

/* The vectors of 2,000 random texts, hashed together, pinned at the value the embedder gave
 * before issue 11's speed work (feature collection included, which the comparison above
 * shares with its reference). If this fails, the embedding changed. */
static void test_random_vectors_pinned(void **state)
{
    (void)state;
    rng r = {42};
    char text[4096];
    uint64_t h = 0;
    for (int t = 0; t < 2000; t++) {
        size_t len = random_text(&r, text);
        float v[EMBED_BUILTIN_DIM];
        assert_int_equal(embed_builtin(text, len, v), RAGD_OK);
        h = hash_fnv1a64(v, sizeof v, h);
    }
    printf("# random vectors hash: 0x%016llx\n", (unsigned long long)h);
    assert_true(h == PINNED_RANDOM_VECTORS);
}

/* tokenize_is_stopword, whose comparison was rewritten for speed: every listed word, and
 * no word one letter longer or shorter unless that one is listed too. */
static void test_stopwords_exact(void **state)
{
    (void)state;
    static const char *const list[] = {
        "a", "about", "after", "all", "also", "am", "an", "and", "any", "are", "as", "at", "be", "been",
        "being", "but", "by", "can", "could", "did", "do", "does", "doing", "for", "from", "had", "has",
        "have", "having", "he", "her", "here", "hers", "him", "his", "how", "i", "if", "in", "into", "is",
        "it", "it's", "its", "just", "me", "my", "of", "on", "or", "our", "ours", "she", "should", "so",
        "some", "such", "than", "that", "the", "their", "theirs", "them", "then", "there", "these", "they",
        "this", "those", "to", "too", "us", "very", "was", "we", "were", "what", "when", "where", "which",
        "while", "who", "whom", "why", "will", "with", "would", "you", "your", "yours"};
    size_t n = sizeof list / sizeof list[0];
    for (size_t i = 0; i < n; i++) {
        char w[16];
        size_t len = strlen(list[i]);
        assert_true(tokenize_is_stopword(list[i], len));
        for (int c = 'a'; c <= 'z'; c++) { /* one letter more */
            snprintf(w, sizeof w, "%s%c", list[i], c);
            bool listed = false;
            for (size_t k = 0; k < n; k++)
                listed = listed || strcmp(list[k], w) == 0;
            if (tokenize_is_stopword(w, len + 1) != listed)
                fail_msg("'%s': stop word %d, listed %d", w, !listed, listed);
        }
        bool shorter_listed = false;
        for (size_t k = 0; k < n; k++)
            shorter_listed = shorter_listed || (strlen(list[k]) == len - 1 && memcmp(list[k], list[i], len - 1) == 0);
        assert_int_equal(tokenize_is_stopword(list[i], len - 1), shorter_listed);
    }
    assert_false(tokenize_is_stopword("", 0));
    assert_false(tokenize_is_stopword("zzz", 3));
    assert_false(tokenize_is_stopword("aaaaaaaaa", 9));
    /* the hash set's keys carry the length: a trailing NUL is not the shorter word */
    assert_false(tokenize_is_stopword("a\0", 2));
    assert_false(tokenize_is_stopword("the\0\0\0\0", 7));
    assert_false(tokenize_is_stopword("theirsx", 7));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stopwords_exact),
        cmocka_unit_test(test_sort_matches_qsort),
        cmocka_unit_test(test_vectors_bit_identical),
        cmocka_unit_test(test_random_vectors_pinned),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
