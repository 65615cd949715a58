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

/* The passages are read as prose (text/prose.h: markup lines, headings, code, tables and
 * link lists left out, inline markup reduced to its text) and split into sentences; what is
 * not a whole sentence is never quoted (no closing punctuation, a lead-in ending in ':',
 * cut inside brackets, a chunk's cut-off start) and no sentence comes twice (compared on
 * letters and digits, case folded; a passage's first sentence that is the end of another
 * is a cut-off copy). The sentences holding a query term (stemmed, stop words left out) are
 * scored — BM25 over the candidate sentences, a bonus when the sentence has what the
 * question asks for (a decision, a time, a number, a reason, a name or role, steps, a
 * place), when two query terms stand close, and for better-ranked passages, a prior
 * against very short and very long sentences and penalties for questions and lower-case
 * starts
 * (docs/internals/extractive.md) — and the best are picked, then ordered by passage rank
 * and position. When no sentence holds a query term, the best sentence of the best passage
 * that has one is used. With no passages (n == 0) *answer is NULL. Passages may be longer
 * than a chunk (adjacent chunks merged): any length works.
 * Sentences are joined by one space, each ends with " [n]" before the join; the same
 * marker is not repeated for consecutive sentences of one passage (only the last gets it).
 * *answer is malloc'd, valid UTF-8. */
ragd_err extractive_answer(const char *query, size_t query_len, const extract_passage *passages,
                           size_t n, const extract_params *params, char **answer);

#endif
