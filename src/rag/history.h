#ifndef RAGD_RAG_HISTORY_H
#define RAGD_RAG_HISTORY_H

/* A conversation's earlier turns (rag_request.history) as retrieval sees them
 * (docs/internals/engine.md "History"): a follow-up question such as "and when does it
 * run?" names nothing, so retrieval searches with the question prefixed by the latest user
 * turns too, and fuses that with the question's own retrieval. The prompt carries the
 * turns as well (rag/prompt.h). Pure functions: any thread. */
#include <stdbool.h>
#include <stddef.h>

#include "rag/engine.h"
#include "rag/retrieve.h"

/* The retrieval prefix's bounds: at most this many user turns, of at most this many bytes
 * together (the question itself is not counted). */
#define RAG_HISTORY_RETRIEVAL_TURNS 3
#define RAG_HISTORY_RETRIEVAL_BYTES 400

/* Whether a turn is kept at all: role "user" or "assistant", a non-empty text. Other
 * roles (a client's "system", "tool") are skipped everywhere. */
bool rag_history_turn_kept(const rag_turn *t);
bool rag_history_turn_is_user(const rag_turn *t);

/* The latest kept user turn, or NULL. */
const rag_turn *rag_history_last_user(const rag_turn *h, size_t n);

/* The retrieval text (retrieval searches with it and with the question alone, then
 * rag_history_fuse): the latest user turns, newest first chosen, up to
 * RAG_HISTORY_RETRIEVAL_TURNS of them within RAG_HISTORY_RETRIEVAL_BYTES (a turn that does
 * not fit whole keeps its start, cut at a word end — at a character boundary when it has
 * no space — and is the last one taken), written oldest first one per line, then the
 * question on the last line. Assistant turns are not used (their text is mostly quoted
 * passages, which would pull retrieval towards what was already found). *turns_used: how
 * many user turns went in (0: the text is the question alone). malloc'd, NUL-terminated,
 * *out_len bytes; NULL when out of memory. Work is bounded by the turns it looks at:
 * it stops at the RAG_HISTORY_RETRIEVAL_TURNS-th user turn or when the bytes are spent. */
char *rag_history_retrieval_text(const char *question, size_t len, const rag_turn *h, size_t n, size_t *out_len,
                                 size_t *turns_used);

/* How many candidates each of the two retrievals takes before rag_history_fuse (at least k). */
#define RAG_HISTORY_FUSE_DEPTH 20

/* Fuses, into *with, the retrieval of the retrieval text (*with) and of the question alone
 * (*alone, emptied): a chunk's score becomes the mean of its two scores (0 in a list that
 * lacks it), its distance 1 - score; best first (ties: the order of *with, then of *alone),
 * at most k, of which at most max_per_doc (0: no cap) of one document while chunks of other
 * documents remain (then the places left are filled in score order, as retrieval does).
 * So a follow-up that names nothing is carried by the conversation, and a question that
 * names a new subject is not pulled back to the old one by it (docs/internals/engine.md
 * "History"). RAGD_ENOMEM: *with is left as it was. */
ragd_err rag_history_fuse(rag_result *with, rag_result *alone, size_t k, size_t max_per_doc);

#endif
