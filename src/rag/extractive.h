#ifndef RAGD_RAG_EXTRACTIVE_H
#define RAGD_RAG_EXTRACTIVE_H

#include <stddef.h>

#include "util/err.h"

/* The `extractive` generator: an answer built from the best sentences of the retrieved
 * passages, each followed by its citation marker [n] (n = passage index + 1). */
typedef struct {
    const char *text;
    size_t len;
} extract_passage;

typedef struct {
    size_t max_sentences; /* e.g. 3 */
    size_t max_chars;     /* e.g. 800; the first sentence is kept even when longer (cut) */
} extract_params;

/* Scores every sentence of every passage by the query words it contains (normalised
 * words, stop words ignored, weighted by inverse frequency across the candidate
 * sentences) plus a small bonus for better-ranked passages; picks the best, then orders
 * them by passage rank and position. When no sentence shares a word with the query, the
 * first sentence of the best passage is used. With no passages (n == 0) *answer is NULL.
 * Sentences are joined by one space, each ends with " [n]" before the join; the same
 * marker is not repeated for consecutive sentences of one passage (only the last gets it).
 * *answer is malloc'd, valid UTF-8. */
ragd_err extractive_answer(const char *query, size_t query_len, const extract_passage *passages,
                           size_t n, const extract_params *params, char **answer);

#endif
