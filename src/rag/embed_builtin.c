/* The `builtin` embedder (ragd-hash-v1-512): signed feature hashing of words, word
 * bigrams and character trigrams. The exact recipe is in docs/internals/retrieval.md;
 * every constant below is part of the embedding's identity: changing one changes the
 * vectors, so it must come with a new EMBED_BUILTIN_NAME. */
#include "rag/embed_builtin.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#include "text/tokenize.h"
#include "util/hash.h"

/* FNV-1a seeds, one per feature kind ("WORD", "BIGR", "TRIG" in ASCII). */
#define SEED_WORD 0x574f5244ULL
#define SEED_BIGRAM 0x42494752ULL
#define SEED_TRIGRAM 0x54524947ULL

/* Kinds, in the order features are sorted by after their hash. */
enum { KIND_WORD = 0, KIND_BIGRAM = 1, KIND_TRIGRAM = 2 };
static const double kind_weight[3] = {1.0, 0.5, 0.25};

/* Boundary marks around a word for its trigrams; neither can occur inside a word. */
#define MARK_BEGIN '<'
#define MARK_END '>'

/* A normalised word longer than this is cut (on a code point boundary) before it is
 * hashed. The tokenizer cuts source words to 64 bytes; NFKC may lengthen them. */
#define WORD_MAX 255
/* At most this many features per text; later words are ignored, deterministically.
 * A word gives at most 2 + (its code points) features, so this is ~100k words. */
#define FEATURES_MAX ((size_t)1 << 20)

typedef struct {
    uint64_t h;
    uint32_t kind;
    uint32_t bucket; /* mix64(h) % EMBED_BUILTIN_DIM | BUCKET_NEG, set by embed_accumulate */
} feature;

typedef struct {
    feature *f;
    size_t n;
    size_t alloc;
    bool full;                /* FEATURES_MAX reached: stop tokenising */
    ragd_err err;             /* set by the callback on allocation failure */
    uint64_t prev_h; /* FNV-1a state of the bigram seed after "<previous word> " */
    bool have_prev;
} embed_ctx;

static bool feat_push(embed_ctx *c, uint64_t h, uint32_t kind)
{
    if (c->n == FEATURES_MAX) {
        c->full = true;
        return false;
    }
    if (c->n == c->alloc) {
        size_t na = c->alloc == 0 ? 256 : c->alloc * 2;
        if (na > FEATURES_MAX)
            na = FEATURES_MAX;
        feature *nf = realloc(c->f, na * sizeof *nf);
        if (nf == NULL) {
            c->err = RAGD_ENOMEM;
            return false;
        }
        c->f = nf;
        c->alloc = na;
    }
    c->f[c->n].h = h;
    c->f[c->n].kind = kind;
    c->n++;
    return true;
}

/* Length of w[0..len) cut to at most max bytes on a code point boundary. */
static size_t cut_utf8(const char *w, size_t len, size_t max)
{
    if (len <= max)
        return len;
    size_t k = max;
    while (k > 0 && ((unsigned char)w[k] & 0xC0) == 0x80)
        k--;
    return k;
}

/* Pushes the character trigrams of "<w>" (code points, not bytes); ascii tells that every
 * byte of w is below 0x80. */
static bool push_trigrams(embed_ctx *c, const char *w, size_t len, bool ascii)
{
    char padded[WORD_MAX + 2];
    size_t starts[WORD_MAX + 3]; /* byte offset of each code point of padded */
    size_t ncp = 0;
    padded[0] = MARK_BEGIN;
    memcpy(padded + 1, w, len);
    padded[len + 1] = MARK_END;
    size_t plen = len + 2;
    /* An ASCII word (most words) has len trigrams of 3 bytes each; when they fit in the
     * array (whose size never exceeds FEATURES_MAX) they are written without feat_push's
     * checks, which could not fail. */
    if (ascii && c->alloc - c->n >= len) {
        feature *f = c->f + c->n;
        for (size_t t = 0; t < len; t++) {
            f[t].h = hash_fnv1a64_inline(padded + t, 3, SEED_TRIGRAM);
            f[t].kind = KIND_TRIGRAM;
        }
        c->n += len;
        return true;
    }
    for (size_t i = 0; i < plen; i++) {
        if (((unsigned char)padded[i] & 0xC0) != 0x80)
            starts[ncp++] = i;
    }
    starts[ncp] = plen;
    for (size_t t = 0; t + 3 <= ncp; t++) {
        size_t b = starts[t];
        size_t e = starts[t + 3];
        if (!feat_push(c, hash_fnv1a64_inline(padded + b, e - b, SEED_TRIGRAM), KIND_TRIGRAM))
            return false;
    }
    return true;
}

static int on_token(const token *tok, void *arg)
{
    embed_ctx *c = arg;
    size_t len = cut_utf8(tok->norm, tok->norm_len, WORD_MAX);
    const char *w = tok->norm;
    if (len == 0)
        return 0;
    /* Three FNV-1a chains over the word in one loop (each multiply waits for the one
     * before it in its chain, so interleaving them hides that wait): the bigram "<previous>
     * <this>" continued from the previous word's state, the next bigram's start ("<this> "),
     * and the word itself. */
    uint64_t h_bigram = c->prev_h, h_next = HASH_FNV_OFFSET ^ SEED_BIGRAM, h_word = HASH_FNV_OFFSET ^ SEED_WORD;
    unsigned high = 0; /* the OR of the word's bytes: bit 7 set when one is not ASCII */
    for (size_t i = 0; i < len; i++) {
        uint64_t byte = (unsigned char)w[i];
        high |= (unsigned)byte;
        h_bigram = (h_bigram ^ byte) * HASH_FNV_PRIME;
        h_next = (h_next ^ byte) * HASH_FNV_PRIME;
        h_word = (h_word ^ byte) * HASH_FNV_PRIME;
    }
    if (c->have_prev && !feat_push(c, h_bigram, KIND_BIGRAM))
        return 1;
    c->prev_h = hash_fnv1a64_more(h_next, " ", 1);
    c->have_prev = true;
    if (tokenize_is_stopword(tok->norm, tok->norm_len))
        return 0;
    if (!feat_push(c, h_word, KIND_WORD))
        return 1;
    if (!push_trigrams(c, w, len, (high & 0x80) == 0))
        return 1;
    return 0;
}

static int feat_cmp(const void *pa, const void *pb)
{
    const feature *a = pa, *b = pb;
    if (a->h != b->h)
        return a->h < b->h ? -1 : 1;
    return (a->kind > b->kind) - (a->kind < b->kind);
}

static bool feat_less(const feature *a, const feature *b)
{
    return a->h < b->h || (a->h == b->h && a->kind < b->kind);
}

/* Insertion sort of f[0..n) by (h, kind), giving up once it has moved more than max_moves
 * features. Returns false when it gave up; f[0..n) then holds the same features in some
 * other order. */
static bool feat_insertion_sort(feature *f, size_t n, size_t max_moves)
{
    size_t moves = 0;
    for (size_t i = 1; i < n; i++) {
        feature x = f[i];
        size_t k = i;
        while (k > 0 && feat_less(&x, &f[k - 1])) {
            f[k] = f[k - 1];
            k--;
        }
        f[k] = x;
        moves += i - k;
        if (moves > max_moves)
            return false;
    }
    return true;
}

/* A bucket of up to this many features is insertion sorted; a bigger one is split on the
 * hash's next SORT_DIGIT_BITS bits (FNV-1a's top bits are poorly mixed for short inputs:
 * trigrams sharing two bytes share them, so sorting on them alone makes big buckets). */
#define SORT_INSERTION_MAX 32
#define SORT_DIGIT_BITS 8
/* A bucket of one hash (only kinds differ) is insertion sorted while it moves at most this
 * many features per feature, then handed to qsort: a hash shared by distinct kinds needs a
 * 64-bit collision, so this is for crafted texts only. */
#define SORT_MOVES_PER_FEATURE 8

/* Sorts a[0..n), whose hashes all agree above bit `shift`, by (h, kind), using
 * scratch[0..n) (its contents are lost); shift 64 sorts any array. Recursion depth is at
 * most 64 / SORT_DIGIT_BITS + 1. */
static void feat_sort_bucket(feature *a, size_t n, feature *scratch, unsigned shift)
{
    if (n <= SORT_INSERTION_MAX) {
        feat_insertion_sort(a, n, SIZE_MAX);
        return;
    }
    bool one_hash = true;
    for (size_t i = 1; i < n && one_hash; i++)
        one_hash = a[i].h == a[0].h;
    if (one_hash || shift == 0) {
        if (!feat_insertion_sort(a, n, SORT_MOVES_PER_FEATURE * n))
            qsort(a, n, sizeof *a, feat_cmp);
        return;
    }
    unsigned low = shift > SORT_DIGIT_BITS ? shift - SORT_DIGIT_BITS : 0;
    uint64_t mask = ((uint64_t)1 << (shift - low)) - 1;
    uint32_t start[((size_t)1 << SORT_DIGIT_BITS) + 1] = {0};
    uint32_t at[(size_t)1 << SORT_DIGIT_BITS];
    size_t nd = (size_t)mask + 1;
    for (size_t i = 0; i < n; i++)
        start[((a[i].h >> low) & mask) + 1]++;
    for (size_t d = 0; d < nd; d++)
        start[d + 1] += start[d];
    memcpy(at, start, nd * sizeof *at);
    for (size_t i = 0; i < n; i++)
        scratch[at[(a[i].h >> low) & mask]++] = a[i];
    memcpy(a, scratch, n * sizeof *a);
    for (size_t d = 0; d < nd; d++) {
        size_t m = start[d + 1] - start[d];
        if (m > 1)
            feat_sort_bucket(a + start[d], m, scratch + start[d], low);
    }
}

/* MurmurHash3's 64-bit finaliser: spreads FNV-1a's weak low bits over the whole word
 * before the bucket (low 9 bits) and the sign (top bit) are taken from it. */
static uint64_t mix64(uint64_t x)
{
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdULL;
    x ^= x >> 33;
    x *= 0xc4ceb9fe1a85ec53ULL;
    x ^= x >> 33;
    return x;
}

/* A feature's weight for its kind and count: kind_weight[kind] * (1 + ln tf). */
static double feat_weight(uint32_t kind, size_t tf) { return kind_weight[kind] * (1.0 + log((double)tf)); }

/* feat_weight for counts below WEIGHT_TABLE_TF, computed once by the same expression (so
 * bit-identical): log() was 6 % of the embedder's time. */
#define WEIGHT_TABLE_TF 64
static double weight_table[3][WEIGHT_TABLE_TF];
static pthread_once_t weight_table_once = PTHREAD_ONCE_INIT;

static void weight_table_build(void)
{
    for (uint32_t k = 0; k < 3; k++)
        for (size_t tf = 1; tf < WEIGHT_TABLE_TF; tf++)
            weight_table[k][tf] = feat_weight(k, tf);
}

/* Features past the end of embed_accumulate's destination array, zeroed, so that the first
 * two of any group can be read. */
#define EMBED_GROUP_PAD 2

/* Where embed_accumulate keeps a feature's sign: bit 31 of its bucket field, set when
 * mix64(h)'s top bit is (the bucket itself, < EMBED_BUILTIN_DIM, is in the low bits). */
#define BUCKET_NEG ((uint32_t)1 << 31)

/* The signed contribution of a run of tf >= 1 equal features f: its kind's weight times
 * 1 + ln tf, negated when f's bucket field has BUCKET_NEG. */
static inline double feat_signed_weight(const feature *f, size_t tf)
{
    /* tf 1 (most features): 1 + ln 1 is exactly 1, without the call */
    double v = tf == 1 ? kind_weight[f->kind]
               : tf < WEIGHT_TABLE_TF ? weight_table[f->kind][tf]
                                      : feat_weight(f->kind, tf);
    /* -v when the sign bit is set, by flipping v's sign bit: exactly what negation does,
     * without a branch (the sign is a coin toss, so the branch was mispredicted half
     * the time) */
    uint64_t vbits;
    memcpy(&vbits, &v, sizeof v);
    vbits ^= (uint64_t)(f->bucket & BUCKET_NEG) << 32;
    memcpy(&v, &vbits, sizeof v);
    return v;
}

static inline bool feat_same(const feature *a, const feature *b) { return a->h == b->h && a->kind == b->kind; }

/* One bucket's value: 0.0 plus each run of equal (h, kind) of its group g[0..k) (k >= 3),
 * added in (h, kind) order, summed in a register. g is sorted in place with scratch[0..k).
 * (Groups of one or two features need no sort: embed_accumulate sums them itself.) Call
 * weight_table_build (once) first. */
static double feat_group_sum(feature *g, size_t k, feature *scratch)
{
    feat_sort_bucket(g, k, scratch, 64);
    double sum = 0.0;
    for (size_t i = 0; i < k;) {
        size_t j = i + 1;
        while (j < k && feat_same(&g[j], &g[i]))
            j++;
        sum += feat_signed_weight(&g[i], j - i);
        i = j;
    }
    return sum;
}

/* acc scaled to unit length into out (all zeros when acc is). */
static void embed_normalise(const double *acc, float *out)
{
    double ss = 0.0;
    for (size_t i = 0; i < EMBED_BUILTIN_DIM; i++)
        ss += acc[i] * acc[i];
    double inv = ss > 0.0 ? 1.0 / sqrt(ss) : 0.0;
    for (size_t i = 0; i < EMBED_BUILTIN_DIM; i++)
        out[i] = (float)(acc[i] * inv);
}

/* The vector of the features src[0..n): what adding every run of equal features in (h, kind)
 * order gives (test_embed_sort.c keeps that first version), normalised. Only the order of the
 * additions into each bucket matters, so the features are grouped by their bucket
 * (mix64(h) % EMBED_BUILTIN_DIM, well spread, a few features each) and each group sorted
 * on its own: the same sums bit for bit as one global sort, without sorting on FNV-1a's
 * clustered top bits. A stable pass by the top 8 bits of h first leaves each group nearly
 * in order, so its insertion sort moves little. dst[0..n + EMBED_GROUP_PAD) receives the
 * groups (and zeros after them); src is scratch afterwards. */
static void embed_accumulate(feature *src, size_t n, feature *dst, float *out)
{
    double acc[EMBED_BUILTIN_DIM];
    uint32_t start[EMBED_BUILTIN_DIM + 1] = {0};
    uint32_t at[EMBED_BUILTIN_DIM];
    uint32_t top_start[257] = {0};
    pthread_once(&weight_table_once, weight_table_build);
    for (size_t i = 0; i < n; i++) {
        uint64_t m = mix64(src[i].h);
        uint32_t bucket = (uint32_t)(m % EMBED_BUILTIN_DIM);
        src[i].bucket = bucket | (uint32_t)(m >> 63) << 31;
        start[bucket + 1]++;
        top_start[(src[i].h >> 56) + 1]++;
    }
    for (size_t b = 0; b < EMBED_BUILTIN_DIM; b++)
        start[b + 1] += start[b];
    for (size_t t = 0; t < 256; t++)
        top_start[t + 1] += top_start[t];
    for (size_t i = 0; i < n; i++)
        dst[top_start[src[i].h >> 56]++] = src[i];
    if (n > 0) /* src is NULL for a text without words */
        memcpy(src, dst, n * sizeof *src);
    memcpy(at, start, sizeof at);
    for (size_t i = 0; i < n; i++)
        dst[at[src[i].bucket & ~BUCKET_NEG]++] = src[i];
    memset(dst + n, 0, EMBED_GROUP_PAD * sizeof *dst);
    for (size_t b = 0; b < EMBED_BUILTIN_DIM; b++) {
        size_t k = start[b + 1] - start[b];
        const feature *g = dst + start[b];
        if (k > 2) {
            acc[b] = feat_group_sum(dst + start[b], k, src + start[b]);
            continue;
        }
        /* Groups of 0, 1 or 2 features (most of them) need no sort — 0 + a is a (a is never
         * zero) and a + b is b + a exactly (IEEE addition commutes); order matters from
         * three on — and are summed without a branch on k: g[0] and g[1] are readable (the
         * padding) whatever k is, and the value is picked by masks. */
        double one = feat_signed_weight(&g[0], 1);
        double two_same = feat_signed_weight(&g[0], 2);
        double two_apart = one + feat_signed_weight(&g[1], 1);
        uint64_t b_one, b_same, b_apart;
        memcpy(&b_one, &one, sizeof one);
        memcpy(&b_same, &two_same, sizeof two_same);
        memcpy(&b_apart, &two_apart, sizeof two_apart);
        uint64_t m_same = -(uint64_t)feat_same(&g[0], &g[1]);
        uint64_t b_two = (b_same & m_same) | (b_apart & ~m_same);
        uint64_t bits = (b_one & -(uint64_t)(k == 1)) | (b_two & -(uint64_t)(k == 2)); /* k 0: +0.0 */
        memcpy(&acc[b], &bits, sizeof bits);
    }
    embed_normalise(acc, out);
}

/* embed_builtin: see the header; the recipe is documented in docs/internals/retrieval.md.
 * out is written in full on success (zeros for a text without words); on failure it is
 * zeroed too. A NULL text with len 0 is an empty text. */
ragd_err embed_builtin(const char *text, size_t len, float *out)
{
    embed_ctx c = {0};
    feature *sorted = NULL;
    ragd_err rc = RAGD_OK;
    if (out == NULL || (text == NULL && len > 0)) {
        rc = RAGD_EINVAL;
        goto out;
    }
    if (len > 0) {
        /* Room for a typical text's features at once (a word of k code points and its
         * separator give at most k + 2), so the array seldom grows. */
        c.alloc = len + len / 2 + 16 < FEATURES_MAX ? len + len / 2 + 16 : FEATURES_MAX;
        c.f = malloc(c.alloc * sizeof *c.f);
        if (c.f == NULL) {
            rc = RAGD_ENOMEM;
            goto out;
        }
        rc = tokenize_words(text, len, on_token, &c);
        if (rc == RAGD_OK)
            rc = c.err;
        if (rc != RAGD_OK)
            goto out;
    }
    sorted = malloc((c.n + EMBED_GROUP_PAD) * sizeof *sorted);
    if (sorted == NULL) {
        rc = RAGD_ENOMEM;
        goto out;
    }
    embed_accumulate(c.f, c.n, sorted, out);
out:
    if (rc != RAGD_OK && out != NULL)
        memset(out, 0, EMBED_BUILTIN_DIM * sizeof *out);
    free(sorted);
    free(c.f);
    return rc;
}

struct embed_builtin_stream {
    embed_ctx c;       /* c.f is kept across texts */
    feature *sorted;   /* embed_accumulate's destination, kept across texts */
    size_t sorted_alloc;
};

embed_builtin_stream *embed_builtin_stream_new(void)
{
    return calloc(1, sizeof(embed_builtin_stream));
}

void embed_builtin_stream_free(embed_builtin_stream *s)
{
    if (s == NULL)
        return;
    free(s->c.f);
    free(s->sorted);
    free(s);
}

/* Resets the features and reserves what embed_builtin would for a text of len bytes. */
ragd_err embed_builtin_stream_begin(embed_builtin_stream *s, size_t len)
{
    feature *f = s->c.f;
    size_t alloc = s->c.alloc;
    s->c = (embed_ctx){.f = f, .alloc = alloc};
    size_t want = len + len / 2 + 16 < FEATURES_MAX ? len + len / 2 + 16 : FEATURES_MAX;
    if (len > 0 && alloc < want) {
        feature *nf = realloc(f, want * sizeof *nf);
        if (nf == NULL)
            return RAGD_ENOMEM;
        s->c.f = nf;
        s->c.alloc = want;
    }
    return RAGD_OK;
}

int embed_builtin_stream_token(const token *tok, void *arg)
{
    embed_builtin_stream *s = arg;
    return on_token(tok, &s->c);
}

ragd_err embed_builtin_stream_end(embed_builtin_stream *s, float *out)
{
    ragd_err rc = s->c.err;
    if (rc == RAGD_OK && s->c.n + EMBED_GROUP_PAD > s->sorted_alloc) {
        feature *ns = realloc(s->sorted, (s->c.n + EMBED_GROUP_PAD) * sizeof *ns);
        if (ns == NULL)
            rc = RAGD_ENOMEM;
        else {
            s->sorted = ns;
            s->sorted_alloc = s->c.n + EMBED_GROUP_PAD;
        }
    }
    if (rc != RAGD_OK) {
        memset(out, 0, EMBED_BUILTIN_DIM * sizeof *out);
        return rc;
    }
    embed_accumulate(s->c.f, s->c.n, s->sorted, out);
    return RAGD_OK;
}
