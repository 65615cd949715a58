#include "text/tokenize.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <utf8proc.h>

/* Source words (and their normalised forms) are cut to this many bytes. */
#define TOKEN_MAX 64

/* NFKC + full Unicode case folding. */
#define TOKEN_NORM_OPTS (UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT | UTF8PROC_CASEFOLD)

/* Code points held on the stack while normalising one word. A 64-byte word decomposes to
 * at most a few hundred code points (the worst single expansion, U+FDFA, gives 18); longer
 * expansions fall back to the heap. One slot more than announced is kept free because
 * utf8proc_reencode writes a NUL after the UTF-8 it produces in place. */
#define TOKEN_STACK_CPS 256

/* Decodes one code point at p[i..n). Returns its byte length (>= 1) and stores the code
 * point in *cp, or -1 for a byte that does not start a well-formed sequence (length 1). */
static size_t tok_decode(const unsigned char *p, size_t i, size_t n, int32_t *cp)
{
    if (p[i] < 0x80) {
        *cp = p[i];
        return 1;
    }
    utf8proc_int32_t c = -1;
    utf8proc_ssize_t r = utf8proc_iterate(p + i, (utf8proc_ssize_t)(n - i), &c);
    if (r <= 0 || c < 0) {
        *cp = -1;
        return 1;
    }
    *cp = c;
    return (size_t)r;
}

/* Letters, marks and digits: Unicode general categories L*, M*, N*. */
static int tok_is_word_cp(int32_t cp)
{
    if (cp < 0)
        return 0;
    if (cp < 0x80)
        return (cp >= 'a' && cp <= 'z') || (cp >= 'A' && cp <= 'Z') || (cp >= '0' && cp <= '9');
    utf8proc_category_t cat = utf8proc_category(cp);
    return cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_NO;
}

/* A word starts with a letter or digit; marks only continue one (a lone variation selector
 * after an emoji is no word). */
static int tok_is_word_start_cp(int32_t cp)
{
    if (cp < 0)
        return 0;
    if (cp < 0x80)
        return tok_is_word_cp(cp);
    utf8proc_category_t cat = utf8proc_category(cp);
    return (cat >= UTF8PROC_CATEGORY_LU && cat <= UTF8PROC_CATEGORY_LO) ||
           (cat >= UTF8PROC_CATEGORY_ND && cat <= UTF8PROC_CATEGORY_NO);
}

/* Characters kept inside a word when a word character follows: apostrophes (ASCII and
 * U+2019, the typographic one) and the period ("3.14", "e.g"). */
static int tok_is_joiner(int32_t cp) { return cp == '\'' || cp == '.' || cp == 0x2019; }

/* tok_is_word_cp for an ASCII byte, inline: the scan's fast path. */
static inline int tok_ascii_is_word(unsigned char c)
{
    return (unsigned char)((c | 0x20) - 'a') < 26 || (unsigned char)(c - '0') < 10;
}

/* The typographic apostrophe folds to the ASCII one, so "don’t" and "don't" are one word. */
static utf8proc_int32_t tok_fold_apostrophe(utf8proc_int32_t cp, void *data)
{
    return cp == 0x2019 ? '\'' : cp;
}

/* Cuts src[0..*n) back to at most TOKEN_MAX bytes, on a code point boundary. */
static void tok_cut(const unsigned char *src, size_t *n)
{
    if (*n <= TOKEN_MAX)
        return;
    size_t k = TOKEN_MAX;
    while (k > 0 && (src[k] & 0xC0) == 0x80)
        k--;
    *n = k;
}

/* Normalises the word src[0..n) and hands it to fn. maybe_non_ascii is 0 only when the
 * caller knows every byte is below 0x80. Returns the callback's verdict in *stop;
 * RAGD_ENOMEM only when a very long expansion needs the heap and none is left. */
static ragd_err tok_emit(const unsigned char *src, size_t n, size_t start, int maybe_non_ascii,
                         token_fn fn, void *arg, int *stop)
{
    char ascii[TOKEN_MAX];
    utf8proc_int32_t stack[TOKEN_STACK_CPS + 1];
    utf8proc_int32_t *heap = NULL;
    ragd_err err = RAGD_OK;
    token tok = {.start = start, .end = start + n};

    int all_ascii = 1;
    for (size_t i = 0; maybe_non_ascii && i < n; i++) {
        if (src[i] >= 0x80) {
            all_ascii = 0;
            break;
        }
    }
    if (all_ascii) {
        /* The fast path: ASCII case folding is plain lower-casing and NFKC changes nothing. */
        for (size_t i = 0; i < n; i++) {
            unsigned char c = src[i];
            ascii[i] = (char)((c >= 'A' && c <= 'Z') ? c + 32 : c);
        }
        tok.norm = ascii;
        tok.norm_len = n;
        *stop = fn(&tok, arg);
        goto out;
    }

    utf8proc_int32_t *buf = stack;
    utf8proc_ssize_t ncp = utf8proc_decompose_custom(src, (utf8proc_ssize_t)n, stack, TOKEN_STACK_CPS,
                                                     TOKEN_NORM_OPTS, tok_fold_apostrophe, NULL);
    if (ncp < 0) {
        /* Cannot happen for the well-formed input we pass; treat as no word. */
        goto out;
    }
    if (ncp > TOKEN_STACK_CPS) {
        heap = malloc(((size_t)ncp + 1) * sizeof *heap);
        if (!heap) {
            err = RAGD_ENOMEM;
            goto out;
        }
        buf = heap;
        ncp = utf8proc_decompose_custom(src, (utf8proc_ssize_t)n, heap, ncp, TOKEN_NORM_OPTS,
                                        tok_fold_apostrophe, NULL);
        if (ncp < 0)
            goto out;
    }
    utf8proc_ssize_t blen = utf8proc_reencode(buf, ncp, TOKEN_NORM_OPTS);
    if (blen < 0)
        goto out;
    size_t norm_len = (size_t)blen;
    tok_cut((const unsigned char *)buf, &norm_len);
    tok.norm = (const char *)buf;
    tok.norm_len = norm_len;
    *stop = fn(&tok, arg);
out:
    free(heap);
    return err;
}

/* A word is a maximal run of word characters with single inner joiners; invalid bytes end
 * it like any separator. The source range reported is the (possibly cut) word itself; the
 * part of a word beyond TOKEN_MAX bytes is skipped, not reported as another word.
 * ASCII bytes take a fast path (the same classes, without decoding); anything else goes
 * through tok_decode and utf8proc's categories. */
ragd_err tokenize_words(const char *text, size_t len, token_fn fn, void *arg)
{
    const unsigned char *p = (const unsigned char *)text;
    ragd_err err = RAGD_OK;
    size_t i = 0;

    if (!fn || (!text && len > 0))
        return RAGD_EINVAL;
    while (i < len) {
        int32_t cp;
        size_t w;
        if (p[i] < 0x80) {
            if (!tok_ascii_is_word(p[i])) {
                i++;
                continue;
            }
            w = 1;
        } else {
            w = tok_decode(p, i, len, &cp);
            if (!tok_is_word_start_cp(cp)) {
                i += w;
                continue;
            }
        }
        size_t start = i;
        size_t end = i + w;
        int non_ascii = p[i] >= 0x80; /* some byte of the word is >= 0x80 */
        while (end < len) {
            if (p[end] < 0x80) {
                if (tok_ascii_is_word(p[end])) {
                    end++;
                    continue;
                }
                if (!tok_is_joiner(p[end]) || end + 1 >= len)
                    break;
                if (p[end + 1] < 0x80) {
                    if (!tok_ascii_is_word(p[end + 1]))
                        break;
                    end += 2;
                    continue;
                }
            }
            size_t w2 = tok_decode(p, end, len, &cp);
            if (tok_is_word_cp(cp)) {
                end += w2;
                non_ascii = 1;
                continue;
            }
            if (tok_is_joiner(cp) && end + w2 < len) {
                int32_t next;
                size_t w3 = tok_decode(p, end + w2, len, &next);
                if (tok_is_word_cp(next)) {
                    end += w2 + w3;
                    non_ascii = 1;
                    continue;
                }
            }
            break;
        }
        size_t n = end - start;
        /* An uncut word ends with a word character; a cut can leave a joiner dangling at
         * the end: drop it. */
        if (n > TOKEN_MAX) {
            tok_cut(p + start, &n);
            while (n > 0) {
                size_t k = n - 1;
                while (k > 0 && (p[start + k] & 0xC0) == 0x80)
                    k--;
                int32_t last;
                tok_decode(p, start + k, start + n, &last);
                if (!tok_is_joiner(last))
                    break;
                n = k;
            }
        }
        int stop = 0;
        err = tok_emit(p + start, n, start, non_ascii, fn, arg, &stop);
        if (err || stop)
            goto out;
        i = end;
    }
out:
    return err;
}

/* English function words that carry no topic, all of at most STOP_KEY_MAX bytes (below). */
static const char *const tok_stopwords[] = {
    "a",     "about", "after", "all",   "also",  "am",    "an",    "and",   "any",   "are",
    "as",    "at",    "be",    "been",  "being", "but",   "by",    "can",   "could", "did",
    "do",    "does",  "doing", "for",   "from",  "had",   "has",   "have",  "having", "he",
    "her",   "here",  "hers",  "him",   "his",   "how",   "i",     "if",    "in",    "into",
    "is",    "it",    "it's",  "its",   "just",  "me",    "my",    "of",    "on",    "or",
    "our",   "ours",  "she",   "should", "so",   "some",  "such",  "than",  "that",  "the",
    "their", "theirs", "them", "then",  "there", "these", "they",  "this",  "those", "to",
    "too",   "us",    "very",  "was",   "we",    "were",  "what",  "when",  "where", "which",
    "while", "who",   "whom",  "why",   "will",  "with",  "would", "you",   "your",  "yours",
};

/* The stop words as a hash set: a word of up to STOP_KEY_MAX bytes packed into a 64-bit key
 * (its bytes, little end first, and its length in the top byte, so "a" and "a\0" differ),
 * open addressing with linear probing in STOP_SLOTS slots (0 is an empty slot: no key is 0).
 * Built once, on the first call from any thread (pthread_once, which ThreadSanitizer
 * sees; C11 call_once it does not); read-only afterwards. A lookup is one multiply and
 * usually one compare: the binary search it replaced was 3 % of an ingest's CPU
 * (BENCHMARKS.md "Ingest throughput (issue 11)", area "embed"). */
#define STOP_KEY_MAX 7
#define STOP_SLOTS 256 /* a power of two, over twice the list's length */

static uint64_t tok_stop_set[STOP_SLOTS];
static pthread_once_t tok_stop_once = PTHREAD_ONCE_INIT;

/* The key of w[0..len), len <= STOP_KEY_MAX. */
static uint64_t tok_stop_key(const char *w, size_t len)
{
    uint64_t k = (uint64_t)len << 56;
    for (size_t i = 0; i < len; i++)
        k |= (uint64_t)(unsigned char)w[i] << (8 * i);
    return k;
}

static size_t tok_stop_slot(uint64_t key) { return (size_t)((key * 0x9E3779B97F4A7C15ULL) >> 56) & (STOP_SLOTS - 1); }

static void tok_stop_build(void)
{
    for (size_t i = 0; i < sizeof tok_stopwords / sizeof tok_stopwords[0]; i++) {
        uint64_t key = tok_stop_key(tok_stopwords[i], strlen(tok_stopwords[i]));
        size_t s = tok_stop_slot(key);
        while (tok_stop_set[s] != 0)
            s = (s + 1) & (STOP_SLOTS - 1);
        tok_stop_set[s] = key;
    }
}

/* True when norm[0..len) is one of tok_stopwords. */
bool tokenize_is_stopword(const char *norm, size_t len)
{
    if (!norm || len == 0 || len > STOP_KEY_MAX)
        return false;
    pthread_once(&tok_stop_once, tok_stop_build);
    uint64_t key = tok_stop_key(norm, len);
    for (size_t s = tok_stop_slot(key); tok_stop_set[s] != 0; s = (s + 1) & (STOP_SLOTS - 1)) {
        if (tok_stop_set[s] == key)
            return true;
    }
    return false;
}
