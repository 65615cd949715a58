#ifndef RAGD_RAG_EMBED_BUILTIN_H
#define RAGD_RAG_EMBED_BUILTIN_H

#include <stddef.h>

#include "util/err.h"

/* The `builtin` embedder: needs no model and no network. Feature hashing of case-folded
 * words (weight 1), word bigrams (0.5) and character trigrams of each word with boundary
 * marks (0.25) into EMBED_BUILTIN_DIM signed buckets, sub-linear term frequency
 * (1 + ln tf), then L2 normalisation. Stop words count only inside bigrams. Deterministic
 * across runs and machines; any change to the features must change the name. */
#define EMBED_BUILTIN_NAME "ragd-hash-v1-512"
#define EMBED_BUILTIN_DIM 512

/* Embeds text[0..len) into out[EMBED_BUILTIN_DIM]. A text with no words gives the zero
 * vector. Returns RAGD_ENOMEM on allocation failure. */
ragd_err embed_builtin(const char *text, size_t len, float *out);

#endif
