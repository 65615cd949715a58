#ifndef RAGD_RAG_PASSAGES_H
#define RAGD_RAG_PASSAGES_H

/* Passages (docs/internals/passages.md): the retrieved chunks of /api/query turned into
 * what the prompt and the extractive answer quote. Neighbouring chunks of one document
 * become one passage, their overlap written once, and every passage is trimmed of a
 * sentence fragment at either end when that loses little. Pure functions: any thread. */
#include <stdbool.h>
#include <stddef.h>

#include "rag/retrieve.h"
#include "util/err.h"

/* Merges, in place, the hits of res that are neighbouring chunks of one document
 * (consecutive ordinals, or byte ranges that overlap or touch) into one passage each, then
 * trims every passage (rag_passage_trim). A passage keeps the row of its first chunk (id,
 * ordinal, metadata, source) with n_chunks set, start/end spanning its text, the best
 * score and distance of its chunks, and the place of its best-ranked chunk: res stays
 * best first. Chunks whose text is not the slice [start, end) of their document are
 * never merged (the offsets cannot place them). RAGD_ENOMEM: res is unchanged. */
ragd_err rag_passages_merge(rag_result *res);

/* The part of a passage text[0..len) to keep, [*from, *to): a leading fragment (a sentence
 * cut at its start: the text begins with a lower-case letter or continuing punctuation,
 * and doc_start is false) and a trailing one (no sentence end) are dropped when each is
 * prose on the line of a whole sentence and at most half (leading) or a quarter (trailing)
 * of the passage. Whitespace
 * at the new ends is trimmed too. Never empties a passage. RAGD_ENOMEM when out of memory
 * (then [0, len)). */
ragd_err rag_passage_trim(const char *text, size_t len, bool doc_start, size_t *from, size_t *to);

#endif
