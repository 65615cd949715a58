#ifndef RAGD_RAG_EMBED_BUILTIN_H
#define RAGD_RAG_EMBED_BUILTIN_H

#include <stddef.h>

#include "text/tokenize.h"
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

/* The same embedding fed with tokens someone else produced (issue 11: the ingest workers
 * tokenise each chunk once for both the embedder and the keyword analysis). Feeding
 * embed_builtin_stream_token every token tokenize_words gives for a text, between
 * embed_builtin_stream_begin(s, len) and embed_builtin_stream_end, yields exactly
 * embed_builtin(text, len)'s vector. Once the token function returns non-zero, later
 * tokens must not be fed (end then reports the error, if any). A stream is reusable, one
 * text at a time, and belongs to one thread. */
typedef struct embed_builtin_stream embed_builtin_stream;
embed_builtin_stream *embed_builtin_stream_new(void);  /* NULL when out of memory */
void embed_builtin_stream_free(embed_builtin_stream *s); /* NULL ok */
/* Starts a text of len bytes (a size hint only). RAGD_ENOMEM. */
ragd_err embed_builtin_stream_begin(embed_builtin_stream *s, size_t len);
/* A token_fn; arg is the stream. */
int embed_builtin_stream_token(const token *tok, void *arg);
/* Writes the text's vector to out[EMBED_BUILTIN_DIM] (zeros and RAGD_ENOMEM when a
 * token could not be recorded). */
ragd_err embed_builtin_stream_end(embed_builtin_stream *s, float *out);

#endif
