#ifndef RAGD_TEXT_STEM_H
#define RAGD_TEXT_STEM_H

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* Longest stem stem_english writes (bytes, without a NUL). Normalised words are at most 64
 * bytes (tokenize.h); a longer input is copied unstemmed, cut to this length. */
#define STEM_MAX 64

/* English stemming with Snowball's "english" algorithm (Porter2) from libstemmer, for the
 * keyword index: "installing", "installation" and "installed" all give "instal".
 * `w` is a normalised word (tokenize_words: NFKC + case folded, UTF-8). Writes the stem to
 * out (STEM_MAX bytes) and its length to *out_len. A word the algorithm does not change
 * (numbers, most non-English words) comes back as it is.
 *
 * Thread-safety: any thread may call it at any time. A Snowball stemmer is not safe to
 * share, so each thread gets its own on first use, with a small cache of recent words in
 * front of it (most words of a text are frequent ones); both are freed when the thread
 * exits. RAGD_ENOMEM when the first use on a thread cannot allocate them, or libstemmer
 * runs out of memory. */
ragd_err stem_english(const char *w, size_t n, char out[STEM_MAX], size_t *out_len);

/* stem_english with the caller's hash of w[0..n) (any well-mixed 32-bit hash; its low bits
 * pick the slot of the thread's cache): the same stem, one hash less for a caller that
 * has one. */
ragd_err stem_english_hashed(const char *w, size_t n, uint32_t hash, char out[STEM_MAX], size_t *out_len);

/* Asks the CPU to bring the calling thread's cache slot for `hash` (as given to
 * stem_english_hashed) closer, so that a stem_english_hashed a little later does not wait
 * for memory. Only a hint: does nothing before the thread's first stem. */
void stem_english_prefetch(uint32_t hash);

#endif
