/* L2 features of the prompt-injection screen (docs/internals/guard.md): hashed byte 3-, 4-
 * and 5-grams and word 1- and 2-grams of one window of the normalised text, and the
 * windows themselves. Shared verbatim by the server and the trainer (tools/guard_train). */
#include "guard/guard_int.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>


/* murmur3's finaliser: spreads FNV's low bits before masking. */
static uint32_t feat_mix(uint32_t h)
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h;
}

#define FEAT_FNV_PRIME 16777619u
#define FEAT_FNV_BASIS 2166136261u


/* Sliding window k, or false past the last one. */
static bool feat_slide(const char *text, size_t len, size_t k, size_t *start, size_t *wlen)
{
    if (len <= GUARD_WINDOW) {
        if (k > 0)
            return false;
        *start = 0;
        *wlen = len;
        return true;
    }
    size_t windows = (len - GUARD_WINDOW + GUARD_STRIDE - 1) / GUARD_STRIDE + 1;
    if (k >= windows)
        return false;
    size_t s = k * GUARD_STRIDE;
    if (s > len - GUARD_WINDOW)
        s = len - GUARD_WINDOW; /* the last window ends at the end */
    size_t e = s + GUARD_WINDOW;
    while (s > 0 && ((unsigned char)text[s] & 0xC0) == 0x80)
        s--;
    while (e < len && e > s && ((unsigned char)text[e] & 0xC0) == 0x80)
        e--;
    *start = s;
    *wlen = e - s;
    return true;
}

bool guard_window_next(const char *text, size_t len, guard_window_iter *it, size_t *start, size_t *wlen)
{
    if (!it->lines) {
        if (feat_slide(text, len, it->k, start, wlen)) {
            it->k++;
            return true;
        }
        it->lines = true;
        it->pos = 0;
        if (it->sliding_only || !memchr(text, '\n', len))
            return false; /* one line: the sliding windows cover it */
    }
    while (it->pos < len) {
        size_t s = it->pos;
        const char *nl = memchr(text + s, '\n', len - s);
        size_t e = nl ? (size_t)(nl - text) : len;
        it->pos = e + 1;
        if (e - s < GUARD_MIN_LINE)
            continue;
        if (e - s > GUARD_WINDOW) { /* long lines are covered by the sliding windows */
            continue;
        }
        *start = s;
        *wlen = e - s;
        return true;
    }
    return false;
}

/* The byte n-grams (n = 3..5) starting at position i of " text " (text of len bytes) into
 * out[0..3); returns how many fit (3 unless the n-gram runs past the closing blank). */
static size_t feat_ngrams_at(const unsigned char *s, size_t len, size_t i, uint32_t *out)
{
    uint32_t h = FEAT_FNV_BASIS;
    size_t n = 0;
    for (size_t k = 0; k < 5 && i + k < len + 2; k++) {
        size_t p = i + k;
        unsigned char c = (p == 0 || p == len + 1) ? ' ' : s[p - 1];
        h = (h ^ c) * FEAT_FNV_PRIME;
        if (k >= 2)
            out[n++] = feat_mix(h + (uint32_t)k) & (GUARD_DIM - 1);
    }
    return n;
}

/* The distinct features of one window as they are found: presence, not counts. seen is a
 * bitmap over the hash space, all zero on entry and on return (feat_acc_done clears the
 * words of the features listed). feat_window works on a local copy so that n and sum stay
 * in registers (stores through seen could alias them). */
typedef struct {
    uint64_t *seen;
    uint32_t *idx; /* the distinct features in order of first occurrence */
    size_t n;
    const int16_t *weights;
    int64_t sum; /* their weights' sum: integers, so exact in any order */
} feat_acc;

/* Branch-free: whether f is new is a coin toss to the branch predictor. */
static inline void feat_acc_add(feat_acc *a, uint32_t f)
{
    uint64_t *word = &a->seen[f >> 6];
    uint64_t old = *word;
    uint64_t fresh = ((~old) >> (f & 63)) & 1;
    *word = old | (1ull << (f & 63));
    a->idx[a->n] = f;
    a->n += fresh;
    a->sum += a->weights[f] & -(int64_t)fresh;
}

static void feat_acc_done(feat_acc *a)
{
    if (a->n > GUARD_DIM / 64 / 4) { /* a sliding window: one sequential clear is cheaper */
        memset(a->seen, 0, GUARD_DIM / 8);
        return;
    }
    for (size_t i = 0; i < a->n; i++)
        a->seen[a->idx[i] >> 6] = 0;
}

/* feat_is_word as a table: words are scanned byte by byte in every window. */
static const bool feat_word_table[256] = {
#define FEAT_W4(c) [c] = true, [c + 1] = true, [c + 2] = true, [c + 3] = true
#define FEAT_W16(c) FEAT_W4(c), FEAT_W4(c + 4), FEAT_W4(c + 8), FEAT_W4(c + 12)
    FEAT_W4('0'), FEAT_W4('4'), ['8'] = true, ['9'] = true, ['_'] = true,
    FEAT_W16('A'), FEAT_W4('Q'), FEAT_W4('U'), ['Y'] = true, ['Z'] = true,
    FEAT_W16('a'), FEAT_W4('q'), FEAT_W4('u'), ['y'] = true, ['z'] = true,
    FEAT_W16(0x80), FEAT_W16(0x90), FEAT_W16(0xA0), FEAT_W16(0xB0),
    FEAT_W16(0xC0), FEAT_W16(0xD0), FEAT_W16(0xE0), FEAT_W16(0xF0),
#undef FEAT_W16
#undef FEAT_W4
};

/* Words and word pairs of s[0..len) into a. */
static inline void feat_words(const unsigned char *s, size_t len, feat_acc *a)
{
    uint32_t prev = 0;
    bool have_prev = false;
    for (size_t i = 0; i < len;) {
        if (!feat_word_table[s[i]]) {
            i++;
            continue;
        }
        uint32_t h = FEAT_FNV_BASIS ^ 0x5bd1e995u;
        while (i < len && feat_word_table[s[i]])
            h = (h ^ s[i++]) * FEAT_FNV_PRIME;
        feat_acc_add(a, feat_mix(h ^ 0x9E3779B9u) & (GUARD_DIM - 1));
        if (have_prev)
            feat_acc_add(a, feat_mix(prev * 0x01000193u + h + 0x7F4A7C15u) & (GUARD_DIM - 1));
        prev = h;
        have_prev = true;
    }
}

/* The byte n-grams of the window s[0..len) (len <= GUARD_WINDOW) over " text " into a:
 * from grams (the text's feat_text_grams array at the window's start) where they lie
 * inside the text, computed here where they touch a boundary blank (all of them when
 * grams is NULL). */
static feat_acc feat_ngrams(const uint32_t *grams, const unsigned char *s, size_t len, feat_acc acc)
{
    feat_acc *a = &acc; /* a local: n and sum stay in registers */
    /* positions 0 .. len of " text ": inside the text (1 .. len - 4) from grams */
    size_t body_end = grams && len >= 4 ? len - 3 : 1;
    for (size_t i = 0; i + 1 < len + 2; i++) {
        if (i == 1 && body_end > 1) {
            const uint32_t *g = grams;
            const uint32_t *end = grams + 3 * (body_end - 1);
            for (; g < end; g += 3) { /* the three at text position i - 1 */
                feat_acc_add(a, g[0]);
                feat_acc_add(a, g[1]);
                feat_acc_add(a, g[2]);
            }
            i = body_end; /* <= len: the tail below */
        }
        uint32_t g[3]; /* touching a boundary blank, or no grams */
        size_t k = feat_ngrams_at(s, len, i, g);
        for (size_t j = 0; j < k; j++)
            feat_acc_add(a, g[j]);
    }
    return acc;
}

/* Every feature of the window s[0..len) (len <= GUARD_WINDOW) into *acc, in the order
 * guard_features defines: byte n-grams over " text ", then words and word pairs. */
static void feat_window(const unsigned char *s, size_t len, feat_acc *acc)
{
    feat_acc a = feat_ngrams(NULL, s, len, *acc);
    feat_words(s, len, &a);
    *acc = a;
}

size_t guard_features(const char *text, size_t len, uint32_t *idx)
{
    static_assert(GUARD_DIM % 64 == 0, "bitmap words");
    uint64_t seen[GUARD_DIM / 64];
    memset(seen, 0, sizeof seen);
    if (len > GUARD_WINDOW)
        len = GUARD_WINDOW; /* callers pass windows; the cap keeps idx in bounds regardless */
    /* the sum is not needed: any model's weights do */
    feat_acc a = {.seen = seen, .idx = idx, .weights = guard_model_chunk.weights};
    feat_window((const unsigned char *)text, len, &a);
    return a.n;
}

/* feat_mix on four values at once (GCC/Clang vector extension; SSE2 on x86-64): the
 * n-grams of a whole text are mixed in one pass over their raw hashes. */
typedef uint32_t feat_v4 __attribute__((vector_size(16)));

static void feat_mix_all(uint32_t *g, size_t n)
{
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        feat_v4 h;
        memcpy(&h, g + i, sizeof h);
        h ^= h >> 16;
        h *= 0x85EBCA6Bu;
        h ^= h >> 13;
        h *= 0xC2B2AE35u;
        h ^= h >> 16;
        h &= GUARD_DIM - 1;
        memcpy(g + i, &h, sizeof h);
    }
    for (; i < n; i++)
        g[i] = feat_mix(g[i]) & (GUARD_DIM - 1);
}

/* The n-grams of a whole text: 3 per byte, those of the 3-, 4- and 5-gram starting there
 * (meaningful only where the n-gram fits in the text). */
static void feat_text_grams_scalar(const unsigned char *s, size_t len, uint32_t *g)
{
    size_t p = 0;
    for (; p + 5 <= len; p++) { /* the 5-gram fits: no bounds to check */
        uint32_t h = FEAT_FNV_BASIS;
        h = (h ^ s[p]) * FEAT_FNV_PRIME;
        h = (h ^ s[p + 1]) * FEAT_FNV_PRIME;
        h = (h ^ s[p + 2]) * FEAT_FNV_PRIME;
        g[3 * p] = h + 2u;
        h = (h ^ s[p + 3]) * FEAT_FNV_PRIME;
        g[3 * p + 1] = h + 3u;
        h = (h ^ s[p + 4]) * FEAT_FNV_PRIME;
        g[3 * p + 2] = h + 4u;
    }
    for (; p < len; p++) { /* the last bytes: past the end reads as 0 (never used) */
        uint32_t h = FEAT_FNV_BASIS;
        for (size_t k = 0; k < 5; k++) {
            h = (h ^ (p + k < len ? s[p + k] : 0)) * FEAT_FNV_PRIME;
            if (k >= 2)
                g[3 * p + k - 2] = h + (uint32_t)k;
        }
    }
    feat_mix_all(g, 3 * len);
}

/* feat_text_grams_scalar eight positions at a time with AVX2 (lane k is position p + k:
 * its FNV chain over bytes p + k .. p + k + 4, as one position alone), the rest by it. */
typedef uint32_t feat_v8 __attribute__((vector_size(32)));
typedef uint8_t feat_b8 __attribute__((vector_size(8)));

__attribute__((target("avx2"))) static inline feat_v8 feat_lanes8(const unsigned char *s)
{
    feat_b8 b;
    memcpy(&b, s, sizeof b);
    return __builtin_convertvector(b, feat_v8);
}

__attribute__((target("avx2"))) static inline feat_v8 feat_mix8(feat_v8 h)
{
    h ^= h >> 16;
    h *= 0x85EBCA6Bu;
    h ^= h >> 13;
    h *= 0xC2B2AE35u;
    h ^= h >> 16;
    return h & (GUARD_DIM - 1);
}

__attribute__((target("avx2"))) static void feat_text_grams_avx2(const unsigned char *s, size_t len, uint32_t *g)
{
    size_t p = 0;
    for (; p + 12 <= len; p += 8) { /* positions p .. p + 7 read up to byte p + 11 */
        feat_v8 h = (feat_v8){0} + FEAT_FNV_BASIS;
        h = (h ^ feat_lanes8(s + p)) * FEAT_FNV_PRIME;
        h = (h ^ feat_lanes8(s + p + 1)) * FEAT_FNV_PRIME;
        h = (h ^ feat_lanes8(s + p + 2)) * FEAT_FNV_PRIME;
        feat_v8 g3 = feat_mix8(h + 2u);
        h = (h ^ feat_lanes8(s + p + 3)) * FEAT_FNV_PRIME;
        feat_v8 g4 = feat_mix8(h + 3u);
        h = (h ^ feat_lanes8(s + p + 4)) * FEAT_FNV_PRIME;
        feat_v8 g5 = feat_mix8(h + 4u);
        uint32_t *o = g + 3 * p;
        for (int k = 0; k < 8; k++) {
            o[3 * k] = g3[k];
            o[3 * k + 1] = g4[k];
            o[3 * k + 2] = g5[k];
        }
    }
    feat_text_grams_scalar(s + p, len - p, g + 3 * p);
}

/* Whether feat_text_grams may take the AVX2 way (tests turn it off to compare both). */
static bool feat_grams_avx2 = true;

static void feat_text_grams(const unsigned char *s, size_t len, uint32_t *g)
{
    if (feat_grams_avx2 && __builtin_cpu_supports("avx2"))
        feat_text_grams_avx2(s, len, g);
    else
        feat_text_grams_scalar(s, len, g);
}

/* The words of a whole text with their features (feat_words' hashes). */
static size_t feat_text_words(const unsigned char *s, size_t len, guard_word *w)
{
    size_t n = 0;
    for (size_t i = 0; i < len;) {
        if (!feat_word_table[s[i]]) {
            i++;
            continue;
        }
        size_t start = i;
        uint32_t h = FEAT_FNV_BASIS ^ 0x5bd1e995u;
        while (i < len && feat_word_table[s[i]])
            h = (h ^ s[i++]) * FEAT_FNV_PRIME;
        w[n] = (guard_word){.start = start, .end = i, .h = h, .uni = feat_mix(h ^ 0x9E3779B9u) & (GUARD_DIM - 1)};
        if (n > 0)
            w[n].bi = feat_mix(w[n - 1].h * 0x01000193u + h + 0x7F4A7C15u) & (GUARD_DIM - 1);
        n++;
    }
    return n;
}

ragd_err guard_text_init(guard_text *t, const char *text, size_t len)
{
    *t = (guard_text){.text = text, .len = len};
    size_t n_words = 0; /* counted first (without branches): the list is exact, 32 bytes a word */
    bool in_word = false;
    for (size_t i = 0; i < len; i++) {
        bool w = feat_word_table[(unsigned char)text[i]];
        n_words += w & !in_word;
        in_word = w;
    }
    t->grams = malloc((len ? len : 1) * 3 * sizeof *t->grams);
    t->words = malloc((n_words ? n_words : 1) * sizeof *t->words);
    if (!t->grams || !t->words) {
        guard_text_free(t);
        return RAGD_ENOMEM;
    }
    feat_text_grams((const unsigned char *)text, len, t->grams);
    t->n_words = feat_text_words((const unsigned char *)text, len, t->words);
    return RAGD_OK;
}

void guard_text_free(guard_text *t)
{
    free(t->grams);
    free(t->words);
    *t = (guard_text){0};
}

/* The hash of the word s[0..n) as feat_words computes it. */
static uint32_t feat_word_hash(const unsigned char *s, size_t n)
{
    uint32_t h = FEAT_FNV_BASIS ^ 0x5bd1e995u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ s[i]) * FEAT_FNV_PRIME;
    return h;
}

/* feat_words of the window [start, end) of t, from t's words: those inside it as they
 * are, a word cut by a window edge hashed here (its cut part is the window's word). */
static feat_acc feat_text_window_words(const guard_text *t, size_t start, size_t end, feat_acc acc)
{
    feat_acc *a = &acc;
    const unsigned char *s = (const unsigned char *)t->text;
    const guard_word *w = t->words;
    size_t lo = 0, hi = t->n_words; /* the first word ending after start */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (w[mid].end <= start)
            lo = mid + 1;
        else
            hi = mid;
    }
    size_t k = lo;
    uint32_t prev = 0;
    bool have_prev = false, prev_cut = false; /* prev_cut: prev is not k - 1's hash */
    if (k < t->n_words && w[k].start < start) { /* cut by the window's start */
        size_t e = w[k].end < end ? w[k].end : end;
        prev = feat_word_hash(s + start, e - start);
        feat_acc_add(a, feat_mix(prev ^ 0x9E3779B9u) & (GUARD_DIM - 1));
        have_prev = prev_cut = true;
        if (w[k].end >= end)
            return acc;
        k++;
    }
    for (; k < t->n_words && w[k].end <= end; k++) {
        feat_acc_add(a, w[k].uni);
        if (prev_cut)
            feat_acc_add(a, feat_mix(prev * 0x01000193u + w[k].h + 0x7F4A7C15u) & (GUARD_DIM - 1));
        else if (have_prev)
            feat_acc_add(a, w[k].bi);
        prev = w[k].h;
        have_prev = true;
        prev_cut = false;
    }
    if (k < t->n_words && w[k].start < end) { /* cut by the window's end */
        uint32_t h = feat_word_hash(s + w[k].start, end - w[k].start);
        feat_acc_add(a, feat_mix(h ^ 0x9E3779B9u) & (GUARD_DIM - 1));
        if (have_prev)
            feat_acc_add(a, feat_mix(prev * 0x01000193u + h + 0x7F4A7C15u) & (GUARD_DIM - 1));
    }
    return acc;
}

/* feat_window of the window [start, start + len) of t (len <= GUARD_WINDOW). */
static void feat_text_window(const guard_text *t, size_t start, size_t len, feat_acc *acc)
{
    *acc = feat_text_window_words(t, start, start + len,
                                  feat_ngrams(t->grams + 3 * start, (const unsigned char *)t->text + start, len, *acc));
}

size_t guard_text_features(const guard_text *t, size_t start, size_t len, uint32_t *idx)
{
    uint64_t seen[GUARD_DIM / 64];
    memset(seen, 0, sizeof seen);
    if (len > GUARD_WINDOW)
        len = GUARD_WINDOW;
    feat_acc a = {.seen = seen, .idx = idx, .weights = guard_model_chunk.weights}; /* sum not needed */
    feat_text_window(t, start, len, &a);
    return a.n;
}

float guard_text_window_prob(const guard_model *m, const guard_text *t, size_t start, size_t len, uint64_t *seen,
                             uint32_t *idx)
{
    if (len > GUARD_WINDOW)
        len = GUARD_WINDOW;
    feat_acc a = {.seen = seen, .idx = idx, .weights = m->weights};
    feat_text_window(t, start, len, &a);
    feat_acc_done(&a);
    return guard_model_prob_sum(m, a.sum, a.n);
}
