/* The in-memory keyword index: BM25F over body, title and heading, MaxScore top-k.
 * docs/internals/kindex.md describes the layout, the scoring and the reasons. */
#include "index/kindex.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "text/stem.h"
#include "text/tokenize.h"
#include "util/hash.h"

/* Hard caps: slots (chunks, removed ones included until compacted) and terms of one
 * index. 2^26 keeps every size computation far from overflow, as in vindex. */
#define KX_MAX_SLOTS ((size_t)1 << 26)
#define KX_MAX_TERMS ((size_t)1 << 26)
/* Apply renumbers the slots (slots_compact) once dead ones outnumber live ones and are at
 * least this many: below it the pass over every posting list would cost more than the few
 * kilobytes it gives back. */
#define KX_COMPACT_MIN_DEAD 1024u
#define KX_EMPTY UINT32_MAX
/* A term's tf per field is kept in 16 bits: body 8 bits, title 4, heading 4 (saturating;
 * a title or heading path holding one word 15 times is not a real one). */
#define KX_TF_BODY_MAX 255u
#define KX_TF_SMALL_MAX 15u
/* The posting of a term found once in the body and nowhere else: most postings. */
#define KX_TF_SIMPLE 1u

/* ---------------------------------------------------------------------------------- */
/* Analysis                                                                            */

typedef struct {
    kindex_term_fn fn;
    void *arg;
    ragd_err err;
} kx_an;

/* Stop words are not indexed (docs/internals/kindex.md, "Stop words", has the measurement;
 * bench/eval_kindex.c can be built with -DKINDEX_INDEX_STOPWORDS=1 to compare). */
#ifndef KINDEX_INDEX_STOPWORDS
#define KINDEX_INDEX_STOPWORDS 0
#endif

static int kx_an_token(const token *tok, void *p)
{
    kx_an *a = p;
    if (!KINDEX_INDEX_STOPWORDS && tokenize_is_stopword(tok->norm, tok->norm_len))
        return 0;
    char st[STEM_MAX];
    size_t sl = 0;
    ragd_err e = stem_english(tok->norm, tok->norm_len, st, &sl);
    if (e) {
        a->err = e;
        return 1;
    }
    if (sl == 0)
        return 0;
    return a->fn(st, sl, a->arg);
}

/* kindex_analyze: tokenize_words, stop words dropped, each word stemmed. */
ragd_err kindex_analyze(const char *text, size_t len, kindex_term_fn fn, void *arg)
{
    kx_an a = {.fn = fn, .arg = arg};
    if (len == 0)
        return RAGD_OK;
    ragd_err e = tokenize_words(text, len, kx_an_token, &a);
    return e ? e : a.err;
}

/* ---------------------------------------------------------------------------------- */
/* Length codes and scoring                                                            */

unsigned kindex_len_code(unsigned len)
{
    if (len < 32)
        return len;
    unsigned e = 31u - (unsigned)__builtin_clz(len); /* >= 5 */
    unsigned m = (len >> (e - 4)) & 15u;
    unsigned code = 32u + (e - 5u) * 16u + m;
    return code > 255u ? 255u : code;
}

double kindex_code_len(unsigned code)
{
    if (code < 32)
        return (double)code;
    unsigned e = (code - 32u) / 16u + 5u;
    unsigned m = (code - 32u) % 16u;
    return (double)((16u + m) << (e - 4u));
}

static const double kx_weight[KINDEX_FIELDS] = {KINDEX_W_BODY, KINDEX_W_TITLE, KINDEX_W_HEADING};

/* One term's contribution to one chunk, in fixed point. x is the weighted, length-normalised
 * term frequency of BM25F; 1 - k1/(k1 + x) is x/(k1 + x) written so that every step is
 * monotone in floating point too: a bound computed from larger tfs and smaller lengths is
 * never below the score of any posting it bounds. */
static uint32_t kx_contrib(double idf, const unsigned tf[KINDEX_FIELDS], const double inv[KINDEX_FIELDS])
{
    double x = ((kx_weight[0] * tf[0]) * inv[0] + (kx_weight[1] * tf[1]) * inv[1]) + (kx_weight[2] * tf[2]) * inv[2];
    double sat = 1.0 - KINDEX_K1 / (KINDEX_K1 + x);
    return (uint32_t)(idf * sat * KINDEX_SCORE_SCALE);
}

static double kx_idf(uint32_t n_live, uint32_t df)
{
    return log(1.0 + ((double)n_live - (double)df + 0.5) / ((double)df + 0.5));
}

static unsigned tf_body(uint16_t p) { return p & 0xffu; }
static unsigned tf_title(uint16_t p) { return (p >> 8) & 0xfu; }
static unsigned tf_heading(uint16_t p) { return p >> 12; }

/* ---------------------------------------------------------------------------------- */
/* Structures                                                                          */

typedef struct {
    /* One block: cap slot numbers (ascending) then cap packed tfs. */
    uint8_t *mem;
    uint32_t n;        /* postings, dead ones included */
    uint32_t cap;
    uint32_t reserved; /* postings promised to reserved batches: n + reserved <= cap */
    uint32_t df;       /* live postings */
    uint32_t hash;
    uint32_t str_off;  /* the term's bytes in ix->strs */
    uint8_t str_len;
    uint8_t max_tf[KINDEX_FIELDS];   /* upper bounds over the postings (not lowered by */
    uint8_t min_code[KINDEX_FIELDS]; /* removals; recomputed by compaction) */
} kx_term;

static uint32_t *term_slots(const kx_term *t) { return (uint32_t *)(void *)t->mem; }
static uint16_t *term_tfs(const kx_term *t) { return (uint16_t *)(void *)(t->mem + (size_t)t->cap * 4); }

typedef struct {
    int64_t doc;    /* 0: empty bucket (row ids start at 1) */
    uint32_t first; /* the document's slots lie in [first, last] */
    uint32_t last;
} kx_docent;

struct kindex {
    pthread_rwlock_t lock;
    /* Dictionary: terms[id], strings in strs, open addressing over ids in tab. */
    kx_term *terms;
    uint32_t n_terms, cap_terms;
    char *strs;
    size_t strs_len, strs_cap;
    uint32_t *tab;
    size_t tab_size; /* power of two, >= 2 * cap_terms */
    /* Slots: one per chunk ever added (removed ones stay, dead, until compaction). */
    int64_t *chunk;
    int64_t *doc;
    uint16_t *len;    /* KINDEX_FIELDS per slot */
    uint32_t *fwd_off; /* start of the slot's term list in fwd */
    uint64_t *live;   /* bit per slot */
    uint32_t *rank;   /* per word of live: live slots in the words before it (compaction's
                         scratch, sized with live so that apply never allocates) */
    uint32_t n_slots, cap_slots, reserved_slots;
    uint32_t n_live;
    uint64_t field_len[KINDEX_FIELDS];
    /* Forward lists: per slot, its distinct term ids, delta-coded varints (for removal). */
    uint8_t *fwd;
    size_t fwd_len, fwd_cap, fwd_reserved;
    /* Documents: row id -> slot range, open addressing (backward-shift deletion). */
    kx_docent *docs;
    size_t docs_size; /* power of two; n_docs + reserved_docs <= docs_size / 2 */
    size_t n_docs, reserved_docs;
    size_t dead_postings;
    /* The set's bookkeeping. */
    atomic_int refs;
    int64_t collection_id;
};

/* ---------------------------------------------------------------------------------- */
/* Small helpers                                                                       */

static uint64_t kx_mix(uint64_t x)
{
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

static uint32_t kx_hash(const char *s, size_t n) { return (uint32_t)kx_mix(hash_fnv1a64_inline(s, n, 0x4b494458)); }

/* a[0..n) == b[0..n), inline: the memo compares every token of a text with its entry, and
 * the dictionaries every new word's stem (~5 bytes), where a call to memcmp cost more than
 * the comparison. */
static inline bool kx_same_bytes(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (a[i] != b[i])
            return false;
    return true;
}

/* Grows *p (elements of size elem, capacity *cap) so that `need` fit: doubling, from 16.
 * The capacity is counted only once the realloc succeeded. */
static ragd_err kx_grow(void **p, size_t *cap, size_t need, size_t elem)
{
    if (need <= *cap)
        return RAGD_OK;
    size_t nc = *cap ? *cap : 16;
    while (nc < need)
        nc *= 2;
    void *q = realloc(*p, nc * elem);
    if (!q)
        return RAGD_ENOMEM;
    *p = q;
    *cap = nc;
    return RAGD_OK;
}

static size_t kx_varint_put(uint8_t *o, uint32_t v)
{
    size_t i = 0;
    while (v >= 0x80) {
        o[i++] = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    o[i++] = (uint8_t)v;
    return i;
}

static uint32_t kx_varint_get(const uint8_t **p)
{
    uint32_t v = 0;
    unsigned shift = 0;
    const uint8_t *q = *p;
    for (;;) {
        uint8_t b = *q++;
        v |= (uint32_t)(b & 0x7f) << shift;
        if (!(b & 0x80))
            break;
        shift += 7;
    }
    *p = q;
    return v;
}

static bool kx_live(const kindex *ix, uint32_t s) { return (ix->live[s >> 6] >> (s & 63)) & 1u; }

/* ---------------------------------------------------------------------------------- */
/* Dictionary                                                                          */

/* The term id of s[0..n), or KX_EMPTY; *bucket gets the bucket where it is or would go. */
static uint32_t dict_find(const kindex *ix, const char *s, size_t n, uint32_t h, size_t *bucket)
{
    if (ix->tab_size == 0) {
        *bucket = 0;
        return KX_EMPTY;
    }
    size_t mask = ix->tab_size - 1;
    size_t b = h & mask;
    for (;;) {
        uint32_t id = ix->tab[b];
        if (id == KX_EMPTY)
            break;
        const kx_term *t = &ix->terms[id];
        if (t->hash == h && t->str_len == n && kx_same_bytes(ix->strs + t->str_off, s, n)) {
            *bucket = b;
            return id;
        }
        b = (b + 1) & mask;
    }
    *bucket = b;
    return KX_EMPTY;
}

static ragd_err dict_rehash(kindex *ix, size_t size)
{
    uint32_t *tab = malloc(size * sizeof *tab);
    if (!tab)
        return RAGD_ENOMEM;
    for (size_t i = 0; i < size; i++)
        tab[i] = KX_EMPTY;
    for (uint32_t id = 0; id < ix->n_terms; id++) {
        size_t b = ix->terms[id].hash & (size - 1);
        while (tab[b] != KX_EMPTY)
            b = (b + 1) & (size - 1);
        tab[b] = id;
    }
    free(ix->tab);
    ix->tab = tab;
    ix->tab_size = size;
    return RAGD_OK;
}

/* The id of term s[0..n), inserted (with no postings) when new. */
static ragd_err dict_intern(kindex *ix, const char *s, size_t n, uint32_t h, uint32_t *id)
{
    size_t b;
    *id = dict_find(ix, s, n, h, &b);
    if (*id != KX_EMPTY)
        return RAGD_OK;
    if (ix->n_terms >= KX_MAX_TERMS)
        return RAGD_ETOOBIG;
    if (ix->strs_len + n > UINT32_MAX)
        return RAGD_ETOOBIG;
    size_t cap = ix->cap_terms;
    ragd_err e = kx_grow((void **)&ix->terms, &cap, (size_t)ix->n_terms + 1, sizeof *ix->terms);
    if (e)
        return e;
    ix->cap_terms = (uint32_t)cap;
    if ((size_t)ix->n_terms + 1 > ix->tab_size / 2) {
        size_t size = ix->tab_size ? ix->tab_size * 2 : 64;
        e = dict_rehash(ix, size);
        if (e)
            return e;
    }
    e = kx_grow((void **)&ix->strs, &ix->strs_cap, ix->strs_len + n, 1);
    if (e)
        return e;
    dict_find(ix, s, n, h, &b); /* the table may have been rebuilt */
    kx_term *t = &ix->terms[ix->n_terms];
    memset(t, 0, sizeof *t);
    t->hash = h;
    t->str_off = (uint32_t)ix->strs_len;
    t->str_len = (uint8_t)n;
    for (int f = 0; f < KINDEX_FIELDS; f++)
        t->min_code[f] = 255;
    memcpy(ix->strs + ix->strs_len, s, n);
    ix->strs_len += n;
    ix->tab[b] = ix->n_terms;
    *id = ix->n_terms++;
    return RAGD_OK;
}

/* Makes room for `more` postings on top of those present and reserved. */
static ragd_err term_room(kx_term *t, uint32_t more)
{
    size_t need = (size_t)t->n + t->reserved + more;
    if (need <= t->cap)
        return RAGD_OK;
    if (need > KX_MAX_SLOTS)
        return RAGD_ETOOBIG;
    size_t nc = t->cap ? t->cap : 1;
    while (nc < need)
        nc *= 2;
    uint8_t *m = realloc(t->mem, nc * 6);
    if (!m)
        return RAGD_ENOMEM;
    /* the tfs move from behind the old capacity's slots to behind the new one's */
    memmove(m + nc * 4, m + (size_t)t->cap * 4, (size_t)t->n * 2);
    t->mem = m;
    t->cap = (uint32_t)nc;
    return RAGD_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Documents map                                                                       */

static size_t docs_bucket(int64_t doc, size_t size) { return (size_t)kx_mix((uint64_t)doc) & (size - 1); }

static kx_docent *docs_find(kindex *ix, int64_t doc)
{
    if (ix->docs_size == 0)
        return NULL;
    size_t mask = ix->docs_size - 1;
    size_t b = docs_bucket(doc, ix->docs_size);
    while (ix->docs[b].doc != 0) {
        if (ix->docs[b].doc == doc)
            return &ix->docs[b];
        b = (b + 1) & mask;
    }
    return NULL;
}

/* Inserts doc (absent; room reserved). */
static kx_docent *docs_insert(kindex *ix, int64_t doc)
{
    size_t mask = ix->docs_size - 1;
    size_t b = docs_bucket(doc, ix->docs_size);
    while (ix->docs[b].doc != 0)
        b = (b + 1) & mask;
    ix->docs[b].doc = doc;
    ix->n_docs++;
    return &ix->docs[b];
}

static void docs_erase(kindex *ix, kx_docent *e)
{
    size_t mask = ix->docs_size - 1;
    size_t hole = (size_t)(e - ix->docs);
    size_t j = hole;
    ix->docs[hole].doc = 0;
    for (;;) {
        j = (j + 1) & mask;
        if (ix->docs[j].doc == 0)
            break;
        size_t home = docs_bucket(ix->docs[j].doc, ix->docs_size);
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            ix->docs[hole] = ix->docs[j];
            ix->docs[j].doc = 0;
            hole = j;
        }
    }
    ix->n_docs--;
}

static ragd_err docs_room(kindex *ix, size_t more)
{
    size_t need = ix->n_docs + ix->reserved_docs + more;
    if (need <= ix->docs_size / 2)
        return RAGD_OK;
    size_t size = ix->docs_size ? ix->docs_size : 64;
    while (need > size / 2)
        size *= 2;
    kx_docent *nd = calloc(size, sizeof *nd);
    if (!nd)
        return RAGD_ENOMEM;
    kx_docent *old = ix->docs;
    size_t old_size = ix->docs_size;
    ix->docs = nd;
    ix->docs_size = size;
    for (size_t i = 0; i < old_size; i++) {
        if (old[i].doc == 0)
            continue;
        size_t b = docs_bucket(old[i].doc, size);
        while (nd[b].doc != 0)
            b = (b + 1) & (size - 1);
        nd[b] = old[i];
    }
    free(old);
    return RAGD_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Life cycle                                                                          */

kindex *kindex_new(void)
{
    kindex *ix = calloc(1, sizeof *ix);
    if (!ix)
        return NULL;
    if (pthread_rwlock_init(&ix->lock, NULL) != 0) {
        free(ix);
        return NULL;
    }
    atomic_init(&ix->refs, 0);
    return ix;
}

void kindex_free(kindex *ix)
{
    if (!ix)
        return;
    for (uint32_t i = 0; i < ix->n_terms; i++)
        free(ix->terms[i].mem);
    free(ix->terms);
    free(ix->strs);
    free(ix->tab);
    free(ix->chunk);
    free(ix->doc);
    free(ix->len);
    free(ix->fwd_off);
    free(ix->live);
    free(ix->rank);
    free(ix->fwd);
    free(ix->docs);
    pthread_rwlock_destroy(&ix->lock);
    free(ix);
}

/* ---------------------------------------------------------------------------------- */
/* Batches                                                                             */

/* One distinct term of one added chunk. */
typedef struct {
    uint32_t local; /* the batch's own id of the term */
    uint16_t tf[KINDEX_FIELDS];
} kx_item;

/* A normalised word the batch has analysed: its bytes wstrs[off .. off + len), its kx_hash,
 * and what it gave (a local term id, or KX_SKIP). */
typedef struct {
    uint32_t off;
    uint32_t hash;
    uint32_t local;
    uint8_t len;
} kx_word;
#define KX_SKIP (UINT32_MAX - 1)
/* Words memoised per batch at most (then the rest are analysed every time). A document's
 * batch rarely holds more; at 2^18 the start-up load's large batches left ~4 MiB more RSS
 * after a restart (freed, but kept by malloc). */
#define KX_MAX_WORDS ((size_t)1 << 13)

typedef struct {
    int64_t chunk_id;
    int64_t doc;
    uint16_t len[KINDEX_FIELDS];
    size_t item0; /* its items: items[item0 .. item0 + n_items) */
    uint32_t n_items;
    size_t fwd0; /* its forward list: fwd[fwd0 .. fwd0 + fwd_n), encoded at reserve */
    uint32_t fwd_n;
} kx_bchunk;

struct kindex_batch {
    /* kindex_batch_add_tee: the body's tokens go to this function too (NULL: nowhere) */
    token_fn tee_fn;
    void *tee_arg;
    /* the batch's dictionary: local id -> string, hash, postings in this batch */
    char *strs;
    size_t strs_len, strs_cap;
    uint32_t *str_off;
    uint8_t *str_len;
    uint32_t *hash;
    uint32_t *count;  /* postings of the term in this batch */
    uint32_t *gid;    /* the index's term id (reserve) */
    uint32_t *mark;   /* the last chunk (index + 1) the term was seen in, while adding */
    uint32_t *item_of; /* its item in that chunk */
    size_t n_local, cap_local;
    uint32_t *tab;
    size_t tab_size;
    kx_item *items;
    size_t n_items, cap_items;
    kx_bchunk *chunks;
    size_t n_chunks, cap_chunks;
    int64_t *removed;
    size_t n_removed, cap_removed;
    size_t n_docs; /* distinct documents among the added chunks */
    uint8_t *fwd;
    size_t fwd_len, fwd_cap;
    /* reserve's progress, for giving it back */
    bool reserved;
    size_t terms_reserved; /* locals 0 .. terms_reserved-1 hold a reservation */
    /* the chunk being added */
    int field;
    ragd_err err;
    /* the title of the last document added, analysed once per document: its terms as
     * (local, tf) in titles[], its length */
    int64_t title_doc; /* 0: none */
    uint16_t title_len;
    size_t title_n;
    kx_item *titles;
    size_t cap_titles;
    /* the analysis's memo: normalised word -> its term's local id, or KX_SKIP for a stop
     * word or an empty stem; open addressing over words[], their bytes in wstrs (see
     * batch_on_token) */
    kx_word *words;
    size_t n_words, cap_words;
    uint32_t *wtab;
    size_t wtab_size;
    char *wstrs;
    size_t wstrs_len, wstrs_cap;
};

kindex_batch *kindex_batch_new(void) { return calloc(1, sizeof(kindex_batch)); }

void kindex_batch_free(kindex_batch *b)
{
    if (!b)
        return;
    free(b->strs);
    free(b->str_off);
    free(b->str_len);
    free(b->hash);
    free(b->count);
    free(b->gid);
    free(b->mark);
    free(b->item_of);
    free(b->tab);
    free(b->items);
    free(b->chunks);
    free(b->removed);
    free(b->fwd);
    free(b->titles);
    free(b->words);
    free(b->wtab);
    free(b->wstrs);
    free(b);
}

size_t kindex_batch_chunks(const kindex_batch *b) { return b ? b->n_chunks : 0; }

static ragd_err batch_rehash(kindex_batch *b, size_t size)
{
    uint32_t *tab = malloc(size * sizeof *tab);
    if (!tab)
        return RAGD_ENOMEM;
    for (size_t i = 0; i < size; i++)
        tab[i] = KX_EMPTY;
    for (size_t id = 0; id < b->n_local; id++) {
        size_t k = b->hash[id] & (size - 1);
        while (tab[k] != KX_EMPTY)
            k = (k + 1) & (size - 1);
        tab[k] = (uint32_t)id;
    }
    free(b->tab);
    b->tab = tab;
    b->tab_size = size;
    return RAGD_OK;
}

/* The batch's id of term s[0..n) whose kx_hash is h, added when new. */
static ragd_err batch_intern_hashed(kindex_batch *b, const char *s, size_t n, uint32_t h, uint32_t *out)
{
    if (b->tab_size) {
        size_t mask = b->tab_size - 1;
        for (size_t k = h & mask; b->tab[k] != KX_EMPTY; k = (k + 1) & mask) {
            uint32_t id = b->tab[k];
            if (b->hash[id] == h && b->str_len[id] == n && kx_same_bytes(b->strs + b->str_off[id], s, n)) {
                *out = id;
                return RAGD_OK;
            }
        }
    }
    if (b->n_local >= KX_MAX_TERMS || b->strs_len + n > UINT32_MAX)
        return RAGD_ETOOBIG;
    if (b->n_local == b->cap_local) {
        size_t nc = b->cap_local ? b->cap_local * 2 : 256;
        uint32_t **u32s[] = {&b->str_off, &b->hash, &b->count, &b->gid, &b->mark, &b->item_of};
        for (size_t i = 0; i < sizeof u32s / sizeof u32s[0]; i++) {
            uint32_t *p = realloc(*u32s[i], nc * sizeof *p);
            if (!p)
                return RAGD_ENOMEM;
            *u32s[i] = p;
        }
        uint8_t *l = realloc(b->str_len, nc);
        if (!l)
            return RAGD_ENOMEM;
        b->str_len = l;
        b->cap_local = nc;
    }
    if ((b->n_local + 1) * 2 > b->tab_size) {
        ragd_err e = batch_rehash(b, b->tab_size ? b->tab_size * 2 : 512);
        if (e)
            return e;
    }
    ragd_err e = kx_grow((void **)&b->strs, &b->strs_cap, b->strs_len + n, 1);
    if (e)
        return e;
    size_t id = b->n_local++;
    memcpy(b->strs + b->strs_len, s, n);
    b->str_off[id] = (uint32_t)b->strs_len;
    b->str_len[id] = (uint8_t)n;
    b->strs_len += n;
    b->hash[id] = h;
    b->count[id] = 0;
    b->gid[id] = KX_EMPTY;
    b->mark[id] = 0;
    size_t k = h & (b->tab_size - 1);
    while (b->tab[k] != KX_EMPTY)
        k = (k + 1) & (b->tab_size - 1);
    b->tab[k] = (uint32_t)id;
    *out = (uint32_t)id;
    return RAGD_OK;
}

/* The batch's id of term s[0..n), added when new. */
static ragd_err batch_intern(kindex_batch *b, const char *s, size_t n, uint32_t *out)
{
    return batch_intern_hashed(b, s, n, kx_hash(s, n), out);
}

static int batch_count(kindex_batch *b, uint32_t id);
static ragd_err batch_add_chunk(kindex_batch *b, int64_t chunk_id, int64_t doc_rowid, const kindex_fields *f);

/* Remembers that the normalised word w[0..n) (hash h) gives `local`. Best effort: a word
 * past KX_MAX_WORDS, or one that finds no memory, is simply analysed again next time. */
static void batch_memo_put(kindex_batch *b, const char *w, size_t n, uint32_t h, uint32_t local)
{
    if (b->n_words >= KX_MAX_WORDS || b->wstrs_len + n > UINT32_MAX)
        return;
    if ((b->n_words + 1) * 2 > b->wtab_size) {
        size_t size = b->wtab_size ? b->wtab_size * 2 : 1024;
        uint32_t *tab = malloc(size * sizeof *tab);
        if (!tab)
            return;
        for (size_t i = 0; i < size; i++)
            tab[i] = KX_EMPTY;
        for (size_t i = 0; i < b->n_words; i++) {
            size_t k = b->words[i].hash & (size - 1);
            while (tab[k] != KX_EMPTY)
                k = (k + 1) & (size - 1);
            tab[k] = (uint32_t)i;
        }
        free(b->wtab);
        b->wtab = tab;
        b->wtab_size = size;
    }
    if (kx_grow((void **)&b->words, &b->cap_words, b->n_words + 1, sizeof *b->words) ||
        kx_grow((void **)&b->wstrs, &b->wstrs_cap, b->wstrs_len + n, 1))
        return;
    memcpy(b->wstrs + b->wstrs_len, w, n);
    b->words[b->n_words] = (kx_word){.off = (uint32_t)b->wstrs_len, .hash = h, .local = local, .len = (uint8_t)n};
    b->wstrs_len += n;
    size_t k = h & (b->wtab_size - 1);
    while (b->wtab[k] != KX_EMPTY)
        k = (k + 1) & (b->wtab_size - 1);
    b->wtab[k] = (uint32_t)b->n_words++;
}

/* The memo entry of the normalised word w[0..n) whose kx_hash is h, NULL when the batch
 * has not analysed it yet. */
static const kx_word *batch_memo_find(const kindex_batch *b, const char *w, size_t n, uint32_t h)
{
    if (!b->wtab_size)
        return NULL;
    for (size_t k = h & (b->wtab_size - 1); b->wtab[k] != KX_EMPTY; k = (k + 1) & (b->wtab_size - 1)) {
        const kx_word *e = &b->words[b->wtab[k]];
        if (e->hash == h && e->len == n && kx_same_bytes(b->wstrs + e->off, w, n))
            return e;
    }
    return NULL;
}

/* A word the memo did not have (h: its kx_hash, when memo): stop word dropped, stem
 * interned, memoised, counted. */
static int batch_analyse_word(kindex_batch *b, const char *w, size_t n, bool memo, uint32_t h)
{
    uint32_t local = KX_SKIP;
    if (KINDEX_INDEX_STOPWORDS || !tokenize_is_stopword(w, n)) {
        char st[STEM_MAX];
        size_t sl = 0;
        ragd_err e = memo ? stem_english_hashed(w, n, h, st, &sl) : stem_english(w, n, st, &sl);
        if (!e && sl > 0)
            e = batch_intern(b, st, sl, &local);
        if (e) {
            b->err = e;
            return 1;
        }
    }
    if (memo)
        batch_memo_put(b, w, n, h, local);
    return local == KX_SKIP ? 0 : batch_count(b, local);
}

/* One word of the field being analysed: what kx_an_token then batch_count do (stop word
 * dropped, stem interned and counted), memoised per batch by the normalised word, so a
 * word met again costs one hash lookup instead of the stop-word search, the stemmer and
 * the interning. The same terms in the same order as kindex_analyze gives. */
/* The memo's entry for tok's word, or NULL; *memo says whether the word can be memoised (its
 * hash in *h) at all. */
static const kx_word *batch_memo_of(kindex_batch *b, const token *tok, bool *memo, uint32_t *h)
{
    size_t n = tok->norm_len;
    *memo = n > 0 && n <= UINT8_MAX;
    *h = *memo ? kx_hash(tok->norm, n) : 0;
    return *memo ? batch_memo_find(b, tok->norm, n, *h) : NULL;
}

static int batch_on_token(const token *tok, void *arg)
{
    kindex_batch *b = arg;
    bool memo;
    uint32_t h;
    const kx_word *e = batch_memo_of(b, tok, &memo, &h);
    if (e)
        return e->local == KX_SKIP ? 0 : batch_count(b, e->local);
    return batch_analyse_word(b, tok->norm, tok->norm_len, memo, h);
}

/* batch_on_token, after handing the token to b->tee_fn; once that returns non-zero it
 * gets no more tokens (of this text) and the analysis goes on alone. The memo is looked
 * up first: for a word it lacks, the stemmer's cache slot is fetched from memory while
 * the tee works. */
static int batch_on_token_tee(const token *tok, void *arg)
{
    kindex_batch *b = arg;
    bool memo;
    uint32_t h;
    const kx_word *e = batch_memo_of(b, tok, &memo, &h);
    if (!e && memo)
        stem_english_prefetch(h);
    if (b->tee_fn && b->tee_fn(tok, b->tee_arg) != 0)
        b->tee_fn = NULL;
    if (e)
        return e->local == KX_SKIP ? 0 : batch_count(b, e->local);
    return batch_analyse_word(b, tok->norm, tok->norm_len, memo, h);
}

/* Analyses text[0..len) into the field b->field of the last chunk (kindex_analyze's
 * analysis, through the batch's memo). */
static ragd_err batch_analyze(kindex_batch *b, const char *text, size_t len)
{
    if (len == 0)
        return RAGD_OK;
    ragd_err e = tokenize_words(text, len, b->field == KINDEX_BODY && b->tee_fn ? batch_on_token_tee
                                                                             : batch_on_token, b);
    return e ? e : b->err;
}

/* Counts one occurrence of local term id in the field being analysed of the last chunk. */
static int batch_count(kindex_batch *b, uint32_t id)
{
    ragd_err e;
    kx_bchunk *c = &b->chunks[b->n_chunks - 1];
    uint32_t mark = (uint32_t)b->n_chunks;
    if (b->field == KINDEX_TITLE) {
        /* titles are gathered once per document in b->titles (see kindex_batch_add) */
        for (size_t i = 0; i < b->title_n; i++) {
            kx_item *it = &b->titles[i];
            if (it->local == id) {
                if (it->tf[KINDEX_TITLE] < UINT16_MAX)
                    it->tf[KINDEX_TITLE]++;
                goto counted;
            }
        }
        e = kx_grow((void **)&b->titles, &b->cap_titles, b->title_n + 1, sizeof *b->titles);
        if (e) {
            b->err = e;
            return 1;
        }
        b->titles[b->title_n++] = (kx_item){.local = id, .tf = {0, 1, 0}};
    counted:
        if (c->len[KINDEX_TITLE] < UINT16_MAX)
            c->len[KINDEX_TITLE]++;
        return 0;
    }
    if (b->mark[id] != mark) {
        e = kx_grow((void **)&b->items, &b->cap_items, b->n_items + 1, sizeof *b->items);
        if (e) {
            b->err = e;
            return 1;
        }
        b->mark[id] = mark;
        b->item_of[id] = (uint32_t)(b->n_items - c->item0);
        b->items[b->n_items++] = (kx_item){.local = id};
        c->n_items++;
    }
    kx_item *it = &b->items[c->item0 + b->item_of[id]];
    if (it->tf[b->field] < UINT16_MAX)
        it->tf[b->field]++;
    if (c->len[b->field] < UINT16_MAX)
        c->len[b->field]++;
    return 0;
}

/* Merges the document's title terms (b->titles) into the last chunk's items. */
static ragd_err batch_merge_title(kindex_batch *b, uint16_t title_len)
{
    kx_bchunk *c = &b->chunks[b->n_chunks - 1];
    uint32_t mark = (uint32_t)b->n_chunks;
    c->len[KINDEX_TITLE] = title_len;
    for (size_t i = 0; i < b->title_n; i++) {
        uint32_t id = b->titles[i].local;
        if (b->mark[id] != mark) {
            ragd_err e = kx_grow((void **)&b->items, &b->cap_items, b->n_items + 1, sizeof *b->items);
            if (e)
                return e;
            b->mark[id] = mark;
            b->item_of[id] = (uint32_t)(b->n_items - c->item0);
            b->items[b->n_items++] = (kx_item){.local = id};
            c->n_items++;
        }
        b->items[c->item0 + b->item_of[id]].tf[KINDEX_TITLE] = b->titles[i].tf[KINDEX_TITLE];
    }
    return RAGD_OK;
}

/* Forgets the last chunk of the batch after its analysis failed: its items, the marks
 * they set, and the terms it introduced (always the last ones of the batch). */
static void batch_drop_last(kindex_batch *b, size_t locals_before)
{
    kx_bchunk *c = &b->chunks[b->n_chunks - 1];
    for (size_t i = c->item0; i < b->n_items; i++)
        b->mark[b->items[i].local] = 0;
    b->n_items = c->item0;
    b->n_chunks--;
    size_t mask = b->tab_size - 1;
    for (size_t id = b->n_local; id-- > locals_before;) {
        size_t k = b->hash[id] & mask;
        while (b->tab[k] != id)
            k = (k + 1) & mask;
        size_t hole = k, j = k; /* backward-shift deletion */
        b->tab[hole] = KX_EMPTY;
        for (;;) {
            j = (j + 1) & mask;
            if (b->tab[j] == KX_EMPTY)
                break;
            size_t home = b->hash[b->tab[j]] & mask;
            bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
            if (!stays) {
                b->tab[hole] = b->tab[j];
                b->tab[j] = KX_EMPTY;
                hole = j;
            }
        }
    }
    if (b->n_local > locals_before)
        b->strs_len = b->str_off[locals_before];
    b->n_local = locals_before;
    b->title_doc = 0; /* the cached title may name terms just forgotten */
    b->n_words = 0;   /* and so may the memo: empty it */
    b->wstrs_len = 0;
    for (size_t i = 0; i < b->wtab_size; i++)
        b->wtab[i] = KX_EMPTY;
}

/* kindex_batch_add: analyses the chunk's body and heading, and its document's title once
 * per run of chunks of that document (every chunk of the run gets the title's terms). On
 * failure the chunk is not in the batch and the batch is still usable. */
ragd_err kindex_batch_add(kindex_batch *b, int64_t chunk_id, int64_t doc_rowid, const kindex_fields *f)
{
    return kindex_batch_add_tee(b, chunk_id, doc_rowid, f, NULL, NULL);
}

/* kindex_batch_add_tee: kindex_batch_add with the body's tokens also given to body_fn. */
ragd_err kindex_batch_add_tee(kindex_batch *b, int64_t chunk_id, int64_t doc_rowid, const kindex_fields *f,
                              token_fn body_fn, void *body_arg)
{
    if (!b || !f || b->reserved || doc_rowid == 0)
        return RAGD_EINVAL;
    b->tee_fn = body_fn;
    b->tee_arg = body_arg;
    ragd_err e = batch_add_chunk(b, chunk_id, doc_rowid, f);
    b->tee_fn = NULL;
    b->tee_arg = NULL;
    return e;
}

/* kindex_batch_add's work, arguments checked. */
static ragd_err batch_add_chunk(kindex_batch *b, int64_t chunk_id, int64_t doc_rowid, const kindex_fields *f)
{
    if (b->n_chunks >= KX_MAX_SLOTS)
        return RAGD_ETOOBIG;
    ragd_err e = kx_grow((void **)&b->chunks, &b->cap_chunks, b->n_chunks + 1, sizeof *b->chunks);
    if (e)
        return e;
    bool new_doc = b->n_chunks == 0 || b->chunks[b->n_chunks - 1].doc != doc_rowid;
    size_t locals_before = b->n_local;
    kx_bchunk *c = &b->chunks[b->n_chunks++];
    *c = (kx_bchunk){.chunk_id = chunk_id, .doc = doc_rowid, .item0 = b->n_items};
    b->err = RAGD_OK;
    if (b->title_doc != doc_rowid) {
        b->title_n = 0;
        b->field = KINDEX_TITLE;
        e = batch_analyze(b, f->text[KINDEX_TITLE], f->len[KINDEX_TITLE]);
        b->title_len = c->len[KINDEX_TITLE];
        b->title_doc = e ? 0 : doc_rowid;
    }
    for (int fld = KINDEX_BODY; !e && fld < KINDEX_FIELDS; fld++) {
        if (fld == KINDEX_TITLE)
            continue;
        b->field = fld;
        e = batch_analyze(b, f->text[fld], f->len[fld]);
    }
    if (!e)
        e = batch_merge_title(b, b->title_len);
    if (e) {
        batch_drop_last(b, locals_before);
        return e;
    }
    for (size_t i = 0; i < c->n_items; i++)
        b->count[b->items[c->item0 + i].local]++;
    if (new_doc)
        b->n_docs++;
    return RAGD_OK;
}

/* kindex_batch_add_analysed: src's terms are interned into b in src's own order (the order
 * in which kindex_batch_add met them while analysing the document), then its chunks are
 * copied with their items renumbered: b ends exactly as if each chunk had been analysed
 * into it, without tokenising or stemming again. */
ragd_err kindex_batch_add_analysed(kindex_batch *b, const kindex_batch *src, const int64_t *chunk_ids,
                                   int64_t doc_rowid)
{
    if (!b || !src || b->reserved || src->reserved || src->n_removed || doc_rowid == 0 ||
        (src->n_chunks && !chunk_ids))
        return RAGD_EINVAL;
    if (src->n_chunks == 0)
        return RAGD_OK;
    if (src->n_chunks > KX_MAX_SLOTS - b->n_chunks)
        return RAGD_ETOOBIG;
    uint32_t *map = malloc(src->n_local * sizeof *map);
    ragd_err e = map ? RAGD_OK : RAGD_ENOMEM;
    for (size_t id = 0; !e && id < src->n_local; id++)
        e = batch_intern_hashed(b, src->strs + src->str_off[id], src->str_len[id], src->hash[id], &map[id]);
    if (!e)
        e = kx_grow((void **)&b->chunks, &b->cap_chunks, b->n_chunks + src->n_chunks, sizeof *b->chunks);
    if (!e)
        e = kx_grow((void **)&b->items, &b->cap_items, b->n_items + src->n_items, sizeof *b->items);
    if (e)
        goto out;
    if (b->n_chunks == 0 || b->chunks[b->n_chunks - 1].doc != doc_rowid)
        b->n_docs++;
    for (size_t i = 0; i < src->n_chunks; i++) {
        const kx_bchunk *sc = &src->chunks[i];
        kx_bchunk *c = &b->chunks[b->n_chunks++];
        *c = (kx_bchunk){.chunk_id = chunk_ids[i], .doc = doc_rowid, .item0 = b->n_items, .n_items = sc->n_items};
        memcpy(c->len, sc->len, sizeof c->len);
        for (uint32_t k = 0; k < sc->n_items; k++) {
            kx_item it = src->items[sc->item0 + k];
            it.local = map[it.local];
            b->items[b->n_items++] = it;
            b->count[it.local]++;
        }
    }
    b->title_doc = 0; /* b->titles is of the last document analysed into b, not this one */
out:
    free(map);
    return e;
}

ragd_err kindex_batch_remove_doc(kindex_batch *b, int64_t doc_rowid)
{
    if (!b || b->reserved)
        return RAGD_EINVAL;
    ragd_err e = kx_grow((void **)&b->removed, &b->cap_removed, b->n_removed + 1, sizeof *b->removed);
    if (e)
        return e;
    b->removed[b->n_removed++] = doc_rowid;
    return RAGD_OK;
}

/* ---------------------------------------------------------------------------------- */
/* Reserve, apply, release                                                             */

/* Sorts v[0..n) ascending in place, with tmp (n values) as scratch: insertion sort for a
 * few values, else an LSD radix sort on bytes, as many passes as the largest value needs
 * (term ids of a few hundred thousand: three). It allocates nothing (glibc's qsort may
 * merge-sort through a heap buffer, and this runs under the write lock), has no input
 * that makes it quadratic, and for the ~75 distinct ids of a chunk took a third of the
 * time of the Shell sort it replaces (2.5 -> 0.8 us; BENCHMARKS.md, issue 11 third round). */
#define KX_SORT_SMALL 24
static void kx_sort_u32(uint32_t *v, uint32_t *tmp, size_t n)
{
    if (n <= KX_SORT_SMALL) {
        for (size_t i = 1; i < n; i++) {
            uint32_t x = v[i];
            size_t j = i;
            while (j > 0 && v[j - 1] > x) {
                v[j] = v[j - 1];
                j--;
            }
            v[j] = x;
        }
        return;
    }
    uint32_t all = 0;
    for (size_t i = 0; i < n; i++)
        all |= v[i];
    uint32_t *from = v, *to = tmp;
    for (unsigned shift = 0; shift < 32 && (all >> shift) != 0; shift += 8) {
        size_t start[257] = {0};
        for (size_t i = 0; i < n; i++)
            start[((from[i] >> shift) & 0xff) + 1]++;
        for (size_t d = 0; d < 256; d++)
            start[d + 1] += start[d];
        for (size_t i = 0; i < n; i++)
            to[start[(from[i] >> shift) & 0xff]++] = from[i];
        uint32_t *t = from;
        from = to;
        to = t;
    }
    if (from != v)
        memcpy(v, from, n * sizeof *v);
}

/* Gives back what a reserve took (terms 0 .. terms_reserved-1, and the rest when the
 * whole reserve had succeeded). Under the write lock. */
static void batch_unreserve(kindex *ix, kindex_batch *b, bool whole)
{
    for (size_t id = 0; id < b->terms_reserved; id++)
        if (b->count[id])
            ix->terms[b->gid[id]].reserved -= b->count[id];
    b->terms_reserved = 0;
    if (whole) {
        ix->reserved_slots -= (uint32_t)b->n_chunks;
        ix->reserved_docs -= b->n_docs;
        ix->fwd_reserved -= b->fwd_len;
    }
}

/* Encodes each chunk's forward list (its sorted distinct term ids, delta varints) into
 * b->fwd, once the ids are known. */
static ragd_err batch_encode_fwd(kindex_batch *b)
{
    uint32_t ids[4096], scratch[4096];
    uint32_t *heap = NULL; /* ids and scratch of a chunk with more distinct terms */
    size_t heap_cap = 0;
    b->fwd_len = 0;
    ragd_err e = RAGD_OK;
    for (size_t i = 0; i < b->n_chunks; i++) {
        kx_bchunk *c = &b->chunks[i];
        uint32_t *v = ids, *tmp = scratch;
        if (c->n_items > sizeof ids / sizeof ids[0]) {
            e = kx_grow((void **)&heap, &heap_cap, 2 * (size_t)c->n_items, sizeof *heap);
            if (e)
                goto out;
            v = heap;
            tmp = heap + c->n_items;
        }
        for (uint32_t k = 0; k < c->n_items; k++)
            v[k] = b->gid[b->items[c->item0 + k].local];
        kx_sort_u32(v, tmp, c->n_items);
        e = kx_grow((void **)&b->fwd, &b->fwd_cap, b->fwd_len + 5 + (size_t)c->n_items * 5, 1);
        if (e)
            goto out;
        c->fwd0 = b->fwd_len;
        uint8_t *o = b->fwd + b->fwd_len;
        size_t w = kx_varint_put(o, c->n_items);
        uint32_t prev = 0;
        for (uint32_t k = 0; k < c->n_items; k++) {
            w += kx_varint_put(o + w, v[k] - prev);
            prev = v[k];
        }
        c->fwd_n = (uint32_t)w;
        b->fwd_len += w;
    }
out:
    free(heap);
    return e;
}

/* Slot arrays with room for `need` slots. */
static ragd_err slots_room(kindex *ix, size_t need)
{
    if (need <= ix->cap_slots)
        return RAGD_OK;
    if (need > KX_MAX_SLOTS)
        return RAGD_ETOOBIG;
    size_t nc = ix->cap_slots ? ix->cap_slots : 64;
    while (nc < need)
        nc *= 2;
    if (nc > KX_MAX_SLOTS)
        nc = KX_MAX_SLOTS;
    int64_t *chunk = realloc(ix->chunk, nc * sizeof *chunk);
    if (!chunk)
        return RAGD_ENOMEM;
    ix->chunk = chunk;
    int64_t *doc = realloc(ix->doc, nc * sizeof *doc);
    if (!doc)
        return RAGD_ENOMEM;
    ix->doc = doc;
    uint16_t *len = realloc(ix->len, nc * KINDEX_FIELDS * sizeof *len);
    if (!len)
        return RAGD_ENOMEM;
    ix->len = len;
    uint32_t *fo = realloc(ix->fwd_off, nc * sizeof *fo);
    if (!fo)
        return RAGD_ENOMEM;
    ix->fwd_off = fo;
    size_t words = (nc + 63) / 64, old_words = (ix->cap_slots + 63) / 64;
    uint64_t *live = realloc(ix->live, words * sizeof *live);
    if (!live)
        return RAGD_ENOMEM;
    memset(live + old_words, 0, (words - old_words) * sizeof *live);
    ix->live = live;
    uint32_t *rank = realloc(ix->rank, words * sizeof *rank);
    if (!rank)
        return RAGD_ENOMEM;
    ix->rank = rank;
    ix->cap_slots = (uint32_t)nc;
    return RAGD_OK;
}

/* kindex_reserve: see the header. Under the write lock: the dictionary and the arrays
 * that searches read may move. */
ragd_err kindex_reserve(kindex *ix, kindex_batch *b)
{
    if (!ix || !b || b->reserved)
        return RAGD_EINVAL;
    ragd_err e = RAGD_OK;
    pthread_rwlock_wrlock(&ix->lock);
    b->terms_reserved = 0;
    for (size_t id = 0; id < b->n_local && !e; id++) {
        if (b->count[id] == 0)
            continue;
        e = dict_intern(ix, b->strs + b->str_off[id], b->str_len[id], b->hash[id], &b->gid[id]);
    }
    for (size_t id = 0; id < b->n_local && !e; id++) {
        if (b->count[id]) {
            e = term_room(&ix->terms[b->gid[id]], b->count[id]);
            if (e)
                break;
            ix->terms[b->gid[id]].reserved += b->count[id];
        }
        b->terms_reserved = id + 1;
    }
    if (!e)
        e = batch_encode_fwd(b);
    if (!e && ix->fwd_len + ix->fwd_reserved + b->fwd_len > UINT32_MAX)
        e = RAGD_ETOOBIG;
    if (!e)
        e = kx_grow((void **)&ix->fwd, &ix->fwd_cap, ix->fwd_len + ix->fwd_reserved + b->fwd_len, 1);
    if (!e && (size_t)ix->n_slots + ix->reserved_slots + b->n_chunks > KX_MAX_SLOTS)
        e = RAGD_ETOOBIG;
    if (!e)
        e = slots_room(ix, (size_t)ix->n_slots + ix->reserved_slots + b->n_chunks);
    if (!e)
        e = docs_room(ix, b->n_docs);
    if (e) {
        batch_unreserve(ix, b, false);
    } else {
        ix->reserved_slots += (uint32_t)b->n_chunks;
        ix->reserved_docs += b->n_docs;
        ix->fwd_reserved += b->fwd_len;
        b->reserved = true;
    }
    pthread_rwlock_unlock(&ix->lock);
    return e;
}

/* kindex_release: gives a reservation back (the batch is not applied). */
void kindex_release(kindex *ix, kindex_batch *b)
{
    if (!ix || !b || !b->reserved)
        return;
    pthread_rwlock_wrlock(&ix->lock);
    batch_unreserve(ix, b, true);
    b->reserved = false;
    pthread_rwlock_unlock(&ix->lock);
}

/* Recomputes a term's bounds from its live postings and drops the dead ones, in place. */
static void term_compact(kindex *ix, kx_term *t)
{
    uint32_t *sl = term_slots(t);
    uint16_t *tf = term_tfs(t);
    uint32_t w = 0;
    for (int f = 0; f < KINDEX_FIELDS; f++) {
        t->max_tf[f] = 0;
        t->min_code[f] = 255;
    }
    for (uint32_t r = 0; r < t->n; r++) {
        uint32_t s = sl[r];
        if (!kx_live(ix, s))
            continue;
        sl[w] = s;
        tf[w] = tf[r];
        w++;
        unsigned tfs[KINDEX_FIELDS] = {tf_body(tf[r]), tf_title(tf[r]), tf_heading(tf[r])};
        for (int f = 0; f < KINDEX_FIELDS; f++) {
            if (tfs[f] > t->max_tf[f])
                t->max_tf[f] = (uint8_t)tfs[f];
            unsigned code = kindex_len_code(ix->len[(size_t)s * KINDEX_FIELDS + f]);
            if (code < t->min_code[f])
                t->min_code[f] = (uint8_t)code;
        }
    }
    ix->dead_postings -= t->n - w;
    t->n = w;
}

/* Kills one slot: statistics and the df of each of its terms go down; a posting list that
 * is a quarter dead or more is compacted. */
static void slot_kill(kindex *ix, uint32_t s)
{
    ix->live[s >> 6] &= ~((uint64_t)1 << (s & 63));
    ix->n_live--;
    for (int f = 0; f < KINDEX_FIELDS; f++)
        ix->field_len[f] -= ix->len[(size_t)s * KINDEX_FIELDS + f];
    const uint8_t *p = ix->fwd + ix->fwd_off[s];
    uint32_t n = kx_varint_get(&p);
    uint32_t id = 0;
    for (uint32_t k = 0; k < n; k++) {
        id += kx_varint_get(&p);
        kx_term *t = &ix->terms[id];
        t->df--;
        ix->dead_postings++;
        if ((t->n - t->df) * 4 >= t->n)
            term_compact(ix, t);
    }
}

/* ---------------------------------------------------------------------------------- */
/* Slot compaction: removed chunks' slots given back by renumbering in place             */

static bool slots_should_compact(const kindex *ix)
{
    uint32_t dead = ix->n_slots - ix->n_live;
    return dead >= KX_COMPACT_MIN_DEAD && dead > ix->n_live;
}

/* Fills ix->rank for the slots in use: rank[w] = live slots in words 0 .. w-1. */
static void slots_count_ranks(kindex *ix)
{
    uint32_t acc = 0;
    for (size_t w = 0; w < ((size_t)ix->n_slots + 63) / 64; w++) {
        ix->rank[w] = acc;
        acc += (uint32_t)__builtin_popcountll(ix->live[w]);
    }
}

/* The new number of live slot s: the live slots before it. */
static uint32_t slot_rank(const kindex *ix, uint32_t s)
{
    uint64_t below = ix->live[s >> 6] & (((uint64_t)1 << (s & 63)) - 1);
    return ix->rank[s >> 6] + (uint32_t)__builtin_popcountll(below);
}

/* Renumbers a term's postings in one sequential pass: dead ones dropped, each live slot
 * replaced by its rank, which keeps the list ascending. The bounds of a list left with
 * postings stay as they are: taken over a superset, they still bound every one
 * (recomputing them, as term_compact does, reads each posting's lengths at random). A list
 * left empty gets empty bounds, and gives its block back when nothing is reserved in it
 * (free only: nothing allocated). */
static void term_renumber(kindex *ix, kx_term *t)
{
    uint32_t *sl = term_slots(t);
    uint16_t *tf = term_tfs(t);
    uint32_t w = 0;
    for (uint32_t r = 0; r < t->n; r++) {
        uint32_t s = sl[r];
        if (!kx_live(ix, s))
            continue;
        sl[w] = slot_rank(ix, s);
        tf[w] = tf[r];
        w++;
    }
    ix->dead_postings -= t->n - w;
    t->n = w;
    if (w > 0)
        return;
    for (int f = 0; f < KINDEX_FIELDS; f++) {
        t->max_tf[f] = 0;
        t->min_code[f] = 255;
    }
    if (t->reserved == 0) {
        free(t->mem);
        t->mem = NULL;
        t->cap = 0;
    }
}

/* Moves the documents' slot ranges to the new numbers. A document's range holds its
 * chunks only, all live (removal takes them all and erases the entry), so its ends are
 * live slots. */
static void docs_renumber(kindex *ix)
{
    for (size_t i = 0; i < ix->docs_size; i++) {
        kx_docent *d = &ix->docs[i];
        if (d->doc == 0)
            continue;
        assert(kx_live(ix, d->first) && kx_live(ix, d->last));
        d->first = slot_rank(ix, d->first);
        d->last = slot_rank(ix, d->last);
    }
}

/* Moves every live slot's chunk id, document, lengths and forward list down to its rank.
 * Forward lists lie in the arena in slot order (apply appends them so), so each moves
 * down or stays; a list's size is the distance to the next slot's. */
static void slots_move_down(kindex *ix)
{
    uint32_t w = 0;
    size_t fw = 0;
    for (uint32_t s = 0; s < ix->n_slots; s++) {
        size_t end = s + 1 < ix->n_slots ? ix->fwd_off[s + 1] : ix->fwd_len;
        if (!kx_live(ix, s))
            continue;
        size_t from = ix->fwd_off[s];
        memmove(ix->fwd + fw, ix->fwd + from, end - from);
        ix->fwd_off[w] = (uint32_t)fw;
        fw += end - from;
        ix->chunk[w] = ix->chunk[s];
        ix->doc[w] = ix->doc[s];
        memmove(&ix->len[(size_t)w * KINDEX_FIELDS], &ix->len[(size_t)s * KINDEX_FIELDS],
                KINDEX_FIELDS * sizeof *ix->len);
        w++;
    }
    ix->fwd_len = fw;
}

/* The live bitmap of slots 0 .. n_live-1, every other bit of the old range cleared. */
static void slots_mark_prefix_live(kindex *ix, uint32_t old_slots)
{
    size_t words = ((size_t)old_slots + 63) / 64, full = ix->n_live / 64;
    for (size_t i = 0; i < words; i++)
        ix->live[i] = i < full ? UINT64_MAX : 0;
    if (ix->n_live % 64)
        ix->live[full] = ((uint64_t)1 << (ix->n_live % 64)) - 1;
}

/* Gives back the dead slots: the live ones are renumbered by rank (new slot = live slots
 * before it), in place. Ranks keep the order, so every posting list stays ascending, each
 * document's range stays contiguous, and a search gives the same hits, scores and ties
 * (ties go by chunk id, not by slot). N, the field totals and each df count live chunks
 * only and do not change. The reserved room (slots, postings, forward bytes) is counted on
 * top of what is in use, so it stays reserved. Allocates nothing: ranks live in ix->rank,
 * sized with the bitmap at reserve. Under the write lock. */
static void slots_compact(kindex *ix)
{
    slots_count_ranks(ix);
    for (uint32_t i = 0; i < ix->n_terms; i++)
        term_renumber(ix, &ix->terms[i]);
    docs_renumber(ix);
    slots_move_down(ix);
    slots_mark_prefix_live(ix, ix->n_slots);
    ix->n_slots = ix->n_live;
}

/* kindex_apply: removals first, then the added chunks get new slots at the end and their
 * postings go at the end of each list (slots only grow, so every list stays sorted).
 * Between the two, once removed chunks' slots outnumber live ones, the slots are
 * renumbered without them (slots_compact). Everything was reserved: nothing here
 * allocates. */
void kindex_apply(kindex *ix, kindex_batch *b)
{
    if (!ix || !b || !b->reserved)
        return;
    pthread_rwlock_wrlock(&ix->lock);
    for (size_t i = 0; i < b->n_removed; i++) {
        kx_docent *d = docs_find(ix, b->removed[i]);
        if (!d)
            continue;
        for (uint32_t s = d->first; s <= d->last; s++)
            if (ix->doc[s] == b->removed[i] && kx_live(ix, s))
                slot_kill(ix, s);
        docs_erase(ix, d);
    }
    if (slots_should_compact(ix))
        slots_compact(ix);
    for (size_t i = 0; i < b->n_chunks; i++) {
        const kx_bchunk *c = &b->chunks[i];
        uint32_t s = ix->n_slots++;
        ix->chunk[s] = c->chunk_id;
        ix->doc[s] = c->doc;
        memcpy(&ix->len[(size_t)s * KINDEX_FIELDS], c->len, sizeof c->len);
        ix->fwd_off[s] = (uint32_t)ix->fwd_len;
        memcpy(ix->fwd + ix->fwd_len, b->fwd + c->fwd0, c->fwd_n);
        ix->fwd_len += c->fwd_n;
        ix->live[s >> 6] |= (uint64_t)1 << (s & 63);
        ix->n_live++;
        for (int f = 0; f < KINDEX_FIELDS; f++)
            ix->field_len[f] += c->len[f];
        unsigned codes[KINDEX_FIELDS];
        for (int f = 0; f < KINDEX_FIELDS; f++)
            codes[f] = kindex_len_code(c->len[f]);
        for (uint32_t k = 0; k < c->n_items; k++) {
            const kx_item *it = &b->items[c->item0 + k];
            kx_term *t = &ix->terms[b->gid[it->local]];
            unsigned tfb = it->tf[0] > KX_TF_BODY_MAX ? KX_TF_BODY_MAX : it->tf[0];
            unsigned tft = it->tf[1] > KX_TF_SMALL_MAX ? KX_TF_SMALL_MAX : it->tf[1];
            unsigned tfh = it->tf[2] > KX_TF_SMALL_MAX ? KX_TF_SMALL_MAX : it->tf[2];
            term_slots(t)[t->n] = s;
            term_tfs(t)[t->n] = (uint16_t)(tfb | tft << 8 | tfh << 12);
            t->n++;
            t->reserved--;
            t->df++;
            unsigned tfs[KINDEX_FIELDS] = {tfb, tft, tfh};
            for (int f = 0; f < KINDEX_FIELDS; f++) {
                if (tfs[f] > t->max_tf[f])
                    t->max_tf[f] = (uint8_t)tfs[f];
                if (codes[f] < t->min_code[f])
                    t->min_code[f] = (uint8_t)codes[f];
            }
        }
        kx_docent *d = docs_find(ix, c->doc);
        if (!d) {
            d = docs_insert(ix, c->doc);
            d->first = s;
        }
        d->last = s;
    }
    ix->reserved_slots -= (uint32_t)b->n_chunks;
    ix->reserved_docs -= b->n_docs;
    ix->fwd_reserved -= b->fwd_len;
    b->reserved = false;
    b->terms_reserved = 0;
    pthread_rwlock_unlock(&ix->lock);
}

/* ---------------------------------------------------------------------------------- */
/* Search                                                                              */

typedef struct {
    uint32_t id;
    double idf;
    uint64_t ub;    /* upper bound of the contribution, fixed point */
    uint32_t pos;   /* cursor into the posting list */
    uint32_t n;
    const uint32_t *slots;
    const uint16_t *tfs;
    uint32_t simple[256]; /* contribution of a tf-1 body-only posting, by body length code */
} kx_qterm;

typedef struct {
    kindex *ix;
    kx_qterm *qt;
    size_t n;
    ragd_err err;
    char seen[KINDEX_QUERY_TERMS][STEM_MAX];
    uint8_t seen_len[KINDEX_QUERY_TERMS];
} kx_query;

static int kx_query_term(const char *s, size_t n, void *arg)
{
    kx_query *q = arg;
    for (size_t i = 0; i < q->n; i++)
        if (q->seen_len[i] == n && memcmp(q->seen[i], s, n) == 0)
            return 0;
    if (q->n == KINDEX_QUERY_TERMS)
        return 1;
    memcpy(q->seen[q->n], s, n);
    q->seen_len[q->n] = (uint8_t)n;
    q->n++;
    return 0;
}

typedef struct {
    uint64_t score;
    int64_t chunk_id;
    int64_t doc;
} kx_cand;

static bool cand_worse(const kx_cand *a, const kx_cand *b)
{
    if (a->score != b->score)
        return a->score < b->score;
    return a->chunk_id > b->chunk_id;
}

static void heap_down(kx_cand *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < n && cand_worse(&h[l], &h[m]))
            m = l;
        if (r < n && cand_worse(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        kx_cand t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void heap_up(kx_cand *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!cand_worse(&h[i], &h[p]))
            return;
        kx_cand t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

/* Orders the query terms by upper bound, then term id (insertion sort: at most 64). */
static void kx_order_terms(kx_qterm **t, size_t m)
{
    for (size_t i = 1; i < m; i++) {
        kx_qterm *x = t[i];
        size_t j = i;
        while (j > 0 && (t[j - 1]->ub > x->ub || (t[j - 1]->ub == x->ub && t[j - 1]->id > x->id))) {
            t[j] = t[j - 1];
            j--;
        }
        t[j] = x;
    }
}

/* The contribution of posting p of term t (slot s). */
static uint32_t kx_score_posting(const kindex *ix, const kx_qterm *t, uint32_t s, uint16_t tfp,
                                 double inv[KINDEX_FIELDS][256])
{
    const uint16_t *len = &ix->len[(size_t)s * KINDEX_FIELDS];
    if (tfp == KX_TF_SIMPLE)
        return t->simple[kindex_len_code(len[0])];
    unsigned tf[KINDEX_FIELDS] = {tf_body(tfp), tf_title(tfp), tf_heading(tfp)};
    double iv[KINDEX_FIELDS] = {inv[0][kindex_len_code(len[0])], inv[1][kindex_len_code(len[1])],
                                inv[2][kindex_len_code(len[2])]};
    return kx_contrib(t->idf, tf, iv);
}

/* First position >= from in slots[0..n) whose slot is >= target (galloping). */
static uint32_t kx_seek(const uint32_t *slots, uint32_t from, uint32_t n, uint32_t target)
{
    if (from >= n || slots[from] >= target)
        return from;
    uint32_t step = 1, lo = from, hi = from + 1;
    while (hi < n && slots[hi] < target) {
        lo = hi;
        step *= 2;
        hi = n - lo > step ? lo + step : n;
    }
    /* slots[lo] < target; answer in (lo, hi] (hi may be n) */
    uint32_t a = lo + 1, z = hi;
    while (a < z) {
        uint32_t mid = a + (z - a) / 2;
        if (slots[mid] < target)
            a = mid + 1;
        else
            z = mid;
    }
    return a;
}

/* kindex_search: MaxScore (Turtle & Flood 1995, as in Lucene and PISA) over fixed-point
 * BM25F contributions. Terms are ordered by their upper bound; once k hits are held, the
 * longest prefix of terms whose bounds sum below the k-th score cannot make a hit on their
 * own ("non-essential"): candidates come only from the other lists, and the non-essential
 * ones are only probed (galloping) for candidates that can still make it. */
ragd_err kindex_search(kindex *ix, const char *query, size_t len, size_t k, kindex_filter_fn filter, void *arg,
                       kindex_hit *out, size_t *n_out)
{
    *n_out = 0;
    if (!ix || !out || (!query && len > 0))
        return RAGD_EINVAL;
    if (k == 0)
        return RAGD_OK;
    kx_query *q = calloc(1, sizeof *q);
    kx_cand *heap = NULL;
    double (*inv)[256] = NULL;
    ragd_err e = q ? RAGD_OK : RAGD_ENOMEM;
    if (!e)
        e = kindex_analyze(query, len, kx_query_term, q);
    if (e || q->n == 0)
        goto out_free;
    q->qt = malloc(q->n * sizeof *q->qt);
    inv = malloc(KINDEX_FIELDS * sizeof *inv);
    heap = malloc(k * sizeof *heap);
    if (!q->qt || !inv || !heap) {
        e = RAGD_ENOMEM;
        goto out_free;
    }

    pthread_rwlock_rdlock(&ix->lock);
    size_t m = 0;
    for (size_t i = 0; i < q->n; i++) {
        size_t b;
        uint32_t id = dict_find(ix, q->seen[i], q->seen_len[i], kx_hash(q->seen[i], q->seen_len[i]), &b);
        if (id == KX_EMPTY || ix->terms[id].df == 0)
            continue;
        q->qt[m++].id = id;
    }
    size_t got = 0;
    if (m == 0 || ix->n_live == 0)
        goto out_unlock;
    for (int f = 0; f < KINDEX_FIELDS; f++) {
        double avg = (double)ix->field_len[f] / (double)ix->n_live;
        for (unsigned c = 0; c < 256; c++)
            inv[f][c] = avg > 0 ? 1.0 / (1.0 - KINDEX_B + KINDEX_B * kindex_code_len(c) / avg) : 1.0;
    }
    for (size_t i = 0; i < m; i++) {
        kx_qterm *t = &q->qt[i];
        const kx_term *tm = &ix->terms[t->id];
        t->idf = kx_idf(ix->n_live, tm->df);
        unsigned tf[KINDEX_FIELDS] = {tm->max_tf[0], tm->max_tf[1], tm->max_tf[2]};
        double iv[KINDEX_FIELDS] = {inv[0][tm->min_code[0]], inv[1][tm->min_code[1]], inv[2][tm->min_code[2]]};
        t->ub = kx_contrib(t->idf, tf, iv);
        unsigned one[KINDEX_FIELDS] = {1, 0, 0};
        for (unsigned c = 0; c < 256; c++) {
            double ivc[KINDEX_FIELDS] = {inv[0][c], inv[1][0], inv[2][0]};
            t->simple[c] = kx_contrib(t->idf, one, ivc);
        }
        t->pos = 0;
        t->n = tm->n;
        t->slots = term_slots(tm);
        t->tfs = term_tfs(tm);
    }
    /* The simple table must equal the general formula for tf (1,0,0): the title and
     * heading inverses it uses are multiplied by a zero tf either way. */
    kx_qterm *qt[KINDEX_QUERY_TERMS];
    for (size_t i = 0; i < m; i++)
        qt[i] = &q->qt[i];
    kx_order_terms(qt, m);
    uint64_t cum[KINDEX_QUERY_TERMS];
    for (size_t i = 0; i < m; i++)
        cum[i] = (i ? cum[i - 1] : 0) + qt[i]->ub;

    size_t ess = 0; /* terms [0, ess) are non-essential */
    bool have_last = false, last_ok = false;
    int64_t last_doc = 0;
    for (;;) {
        uint32_t cand = UINT32_MAX;
        for (size_t i = ess; i < m; i++)
            if (qt[i]->pos < qt[i]->n && qt[i]->slots[qt[i]->pos] < cand)
                cand = qt[i]->slots[qt[i]->pos];
        if (cand == UINT32_MAX)
            break;
        uint64_t s = 0;
        bool live = kx_live(ix, cand);
        for (size_t i = ess; i < m; i++) {
            kx_qterm *t = qt[i];
            if (t->pos < t->n && t->slots[t->pos] == cand) {
                if (live)
                    s += kx_score_posting(ix, t, cand, t->tfs[t->pos], inv);
                t->pos++;
            }
        }
        if (!live)
            continue;
        bool full = got == k;
        bool pruned = false;
        for (size_t i = ess; i-- > 0;) {
            if (full && s + cum[i] < heap[0].score) {
                pruned = true;
                break;
            }
            kx_qterm *t = qt[i];
            t->pos = kx_seek(t->slots, t->pos, t->n, cand);
            if (t->pos < t->n && t->slots[t->pos] == cand)
                s += kx_score_posting(ix, t, cand, t->tfs[t->pos], inv);
        }
        if (pruned)
            continue;
        kx_cand c = {.score = s, .chunk_id = ix->chunk[cand], .doc = ix->doc[cand]};
        if (full && !cand_worse(&heap[0], &c))
            continue;
        if (filter) {
            if (!have_last || c.doc != last_doc) {
                last_doc = c.doc;
                last_ok = filter(c.doc, arg);
                have_last = true;
            }
            if (!last_ok)
                continue;
        }
        if (!full) {
            heap[got] = c;
            heap_up(heap, got);
            got++;
        } else {
            heap[0] = c;
            heap_down(heap, got, 0);
        }
        if (got == k)
            while (ess < m && cum[ess] < heap[0].score)
                ess++;
    }
out_unlock:
    pthread_rwlock_unlock(&ix->lock);
    for (size_t end = got; end > 1; end--) {
        kx_cand t = heap[0];
        heap[0] = heap[end - 1];
        heap[end - 1] = t;
        heap_down(heap, end - 1, 0);
    }
    for (size_t i = 0; i < got; i++) {
        out[i].chunk_id = heap[i].chunk_id;
        out[i].doc_rowid = heap[i].doc;
        out[i].score = (double)heap[i].score / KINDEX_SCORE_SCALE;
    }
    *n_out = got;
out_free:
    if (q)
        free(q->qt);
    free(q);
    free(inv);
    free(heap);
    return e;
}

/* ---------------------------------------------------------------------------------- */
/* Introspection                                                                       */

void kindex_stats_get(kindex *ix, kindex_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!ix)
        return;
    pthread_rwlock_rdlock(&ix->lock);
    out->chunks = ix->n_live;
    out->slots = ix->n_slots;
    out->terms = ix->n_terms;
    out->dead_postings = ix->dead_postings;
    size_t bytes = sizeof *ix + (size_t)ix->cap_terms * sizeof *ix->terms + ix->strs_cap +
                   ix->tab_size * sizeof *ix->tab + ix->fwd_cap + ix->docs_size * sizeof *ix->docs;
    bytes += (size_t)ix->cap_slots * (2 * sizeof(int64_t) + KINDEX_FIELDS * sizeof(uint16_t) + sizeof(uint32_t)) +
             (ix->cap_slots + 63) / 64 * (sizeof *ix->live + sizeof *ix->rank);
    for (uint32_t i = 0; i < ix->n_terms; i++) {
        out->postings += ix->terms[i].n;
        bytes += (size_t)ix->terms[i].cap * 6;
    }
    out->bytes = bytes;
    for (int f = 0; f < KINDEX_FIELDS; f++)
        out->field_len[f] = ix->field_len[f];
    pthread_rwlock_unlock(&ix->lock);
}

/* ---------------------------------------------------------------------------------- */
/* The set of indexes                                                                  */

#define KX_SET_MAX 65536

struct kindex_set {
    pthread_rwlock_t lock;
    kindex **v; /* sorted by collection id */
    size_t n, cap;
};

kindex_set *kindex_set_new(void)
{
    kindex_set *set = calloc(1, sizeof *set);
    if (!set)
        return NULL;
    if (pthread_rwlock_init(&set->lock, NULL) != 0) {
        free(set);
        return NULL;
    }
    return set;
}

void kindex_set_free(kindex_set *set)
{
    if (!set)
        return;
    for (size_t i = 0; i < set->n; i++)
        kindex_free(set->v[i]);
    free(set->v);
    pthread_rwlock_destroy(&set->lock);
    free(set);
}

/* Index of the first entry whose collection id is >= id. */
static size_t set_lower(const kindex_set *set, int64_t id)
{
    size_t lo = 0, hi = set->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (set->v[mid]->collection_id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

kindex *kindex_set_get(kindex_set *set, int64_t collection_id, bool create)
{
    if (!set)
        return NULL;
    kindex *ix = NULL;
    pthread_rwlock_rdlock(&set->lock);
    size_t i = set_lower(set, collection_id);
    if (i < set->n && set->v[i]->collection_id == collection_id) {
        ix = set->v[i];
        atomic_fetch_add(&ix->refs, 1);
    }
    pthread_rwlock_unlock(&set->lock);
    if (ix || !create)
        return ix;
    pthread_rwlock_wrlock(&set->lock);
    i = set_lower(set, collection_id);
    if (i < set->n && set->v[i]->collection_id == collection_id) {
        ix = set->v[i];
        atomic_fetch_add(&ix->refs, 1);
        goto out;
    }
    if (set->n >= KX_SET_MAX)
        goto out;
    if (kx_grow((void **)&set->v, &set->cap, set->n + 1, sizeof *set->v) != RAGD_OK)
        goto out;
    ix = kindex_new();
    if (!ix)
        goto out;
    ix->collection_id = collection_id;
    atomic_store(&ix->refs, 2); /* the set's and the caller's */
    memmove(&set->v[i + 1], &set->v[i], (set->n - i) * sizeof *set->v);
    set->v[i] = ix;
    set->n++;
out:
    pthread_rwlock_unlock(&set->lock);
    return ix;
}

void kindex_set_put(kindex_set *set, kindex *ix)
{
    (void)set;
    if (ix && atomic_fetch_sub(&ix->refs, 1) == 1)
        kindex_free(ix);
}

void kindex_set_drop(kindex_set *set, int64_t collection_id)
{
    if (!set)
        return;
    kindex *victim = NULL;
    pthread_rwlock_wrlock(&set->lock);
    size_t i = set_lower(set, collection_id);
    if (i < set->n && set->v[i]->collection_id == collection_id) {
        victim = set->v[i];
        memmove(&set->v[i], &set->v[i + 1], (set->n - i - 1) * sizeof *set->v);
        set->n--;
    }
    pthread_rwlock_unlock(&set->lock);
    kindex_set_put(set, victim);
}
