#ifndef RAGD_TEXT_STEM_H
#define RAGD_TEXT_STEM_H

#include <stddef.h>

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

#endif
