#ifndef RAGD_TEXT_TOKENIZE_H
#define RAGD_TEXT_TOKENIZE_H

#include <stdbool.h>
#include <stddef.h>

#include "util/err.h"

/* One word of a text: its normalised form (NFKC + Unicode case folding, via utf8proc)
 * and the byte range it came from. `norm` is valid only during the callback. */
typedef struct {
    const char *norm;
    size_t norm_len;
    size_t start;
    size_t end;
} token;

/* Return non-zero from the callback to stop early (tokenize_words then returns RAGD_OK). */
typedef int (*token_fn)(const token *tok, void *arg);

/* Calls fn for each word of text[0..len) in order. A word is a maximal run of letters,
 * marks and digits (Unicode categories L*, M*, N*), with an inner apostrophe or period
 * between two letters/digits kept ("don't", "3.14"). Bytes that are not valid UTF-8 act
 * as separators. Words longer than 64 bytes are cut to 64 bytes (on a code point
 * boundary). Returns RAGD_ENOMEM on allocation failure. */
ragd_err tokenize_words(const char *text, size_t len, token_fn fn, void *arg);

/* True for a small built-in list of English function words ("the", "is", "of", ...);
 * `norm` is an already normalised word. */
bool tokenize_is_stopword(const char *norm, size_t len);

#endif
