/* English stemming: libstemmer (Snowball "english", Porter2), one stemmer per thread, with a
 * direct-mapped cache of recent words in front (docs/internals/text.md). */
#include "text/stem.h"

#include <libstemmer.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/hash.h"

/* Cache slots per thread (a power of two) and the longest word a slot holds. Stemming costs
 * ~130 ns a word; a hit ~15 ns. 4096 slots of 64 bytes: 256 KiB per thread that stems. */
#define STEM_CACHE_SLOTS 4096
#define STEM_CACHE_WORD 30

typedef struct {
    uint8_t wlen; /* 0: empty */
    uint8_t slen;
    char w[STEM_CACHE_WORD];
    char s[STEM_CACHE_WORD];
} stem_slot;

typedef struct {
    struct sb_stemmer *sb;
    stem_slot *cache;
} stem_thread;

static pthread_key_t stem_key;
static pthread_once_t stem_once = PTHREAD_ONCE_INIT;
static int stem_key_ok;
static __thread stem_thread *stem_tl;

static void stem_thread_free(void *p)
{
    stem_thread *t = p;
    if (!t)
        return;
    sb_stemmer_delete(t->sb);
    free(t->cache);
    free(t);
}

static void stem_init_once(void) { stem_key_ok = pthread_key_create(&stem_key, stem_thread_free) == 0; }

/* The calling thread's stemmer and cache, made on first use; NULL when out of memory. The
 * thread-specific key frees them when the thread exits (the main thread's stay until the
 * process ends, reachable from its thread-local pointer). */
static stem_thread *stem_get(void)
{
    if (stem_tl)
        return stem_tl;
    pthread_once(&stem_once, stem_init_once);
    stem_thread *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->cache = calloc(STEM_CACHE_SLOTS, sizeof *t->cache);
    t->sb = sb_stemmer_new("english", "UTF_8");
    if (!t->cache || !t->sb || !stem_key_ok || pthread_setspecific(stem_key, t) != 0) {
        stem_thread_free(t);
        return NULL;
    }
    stem_tl = t;
    return t;
}

void stem_english_prefetch(uint32_t hash)
{
    if (stem_tl)
        __builtin_prefetch(&stem_tl->cache[hash & (STEM_CACHE_SLOTS - 1)]);
}

ragd_err stem_english(const char *w, size_t n, char out[STEM_MAX], size_t *out_len)
{
    return stem_english_hashed(w, n, (uint32_t)hash_fnv1a64(w, n, 0x5354454d), out, out_len);
}

/* The cache slot is picked by the caller's hash; the slot holds the word itself, so any
 * hash gives the same stems (a poor one only evicts more). */
ragd_err stem_english_hashed(const char *w, size_t n, uint32_t hash, char out[STEM_MAX], size_t *out_len)
{
    *out_len = 0;
    if (n > STEM_MAX) {
        memcpy(out, w, STEM_MAX);
        *out_len = STEM_MAX;
        return RAGD_OK;
    }
    stem_thread *t = stem_get();
    if (!t)
        return RAGD_ENOMEM;
    stem_slot *slot = NULL;
    if (n <= STEM_CACHE_WORD) {
        slot = &t->cache[hash & (STEM_CACHE_SLOTS - 1)];
        if (slot->wlen == n && memcmp(slot->w, w, n) == 0) {
            memcpy(out, slot->s, slot->slen);
            *out_len = slot->slen;
            return RAGD_OK;
        }
    }
    const sb_symbol *s = sb_stemmer_stem(t->sb, (const sb_symbol *)w, (int)n);
    if (!s)
        return RAGD_ENOMEM;
    int len = sb_stemmer_length(t->sb);
    size_t sl = len < 0 ? 0 : (size_t)len > STEM_MAX ? STEM_MAX : (size_t)len;
    memcpy(out, s, sl);
    *out_len = sl;
    if (slot && sl <= STEM_CACHE_WORD && n > 0) {
        memcpy(slot->w, w, n);
        memcpy(slot->s, s, sl);
        slot->wlen = (uint8_t)n;
        slot->slen = (uint8_t)sl;
    }
    return RAGD_OK;
}
