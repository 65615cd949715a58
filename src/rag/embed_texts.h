#ifndef RAGD_RAG_EMBED_TEXTS_H
#define RAGD_RAG_EMBED_TEXTS_H

/* Texts embedded the way a collection embeds its chunks — the builtin embedder, or the
 * collection's upstream model on the engine's embedder — for the embeddings routes of the
 * compatible APIs (a `rag/<collection>` model). Kept apart from engine.c, which it only
 * reads the configuration of. */
#include <stddef.h>

#include "rag/engine.h"
#include "store/store.h"
#include "upstream/llm.h"

typedef enum {
    RAG_TEXTS_BUILTIN,    /* ragd's builtin embedder: rag_embed_texts_builtin, any thread */
    RAG_TEXTS_UPSTREAM,   /* the collection's model upstream: rag_embed_texts_upstream, loop */
    RAG_TEXTS_UNAVAILABLE /* an upstream collection and no upstream embedder here */
} rag_texts_embedder;

/* Which embedder embeds texts as collection c's chunks were, here (any thread). */
rag_texts_embedder rag_embed_texts_kind(const rag_engine *e, const store_collection *c);

/* Embeds n texts into out[n * EMBED_BUILTIN_DIM] (L2-normalised; a text with no words gives
 * the zero vector). RAGD_ENOMEM on allocation failure. */
ragd_err rag_embed_texts_builtin(const char *const *texts, const size_t *lens, size_t n, float *out);

/* llm_embed of n >= 1 texts with collection c's model on the engine's embedder, within the
 * embed timeout; the same contract (cb on a later loop turn, NULL: no callback). Loop. */
llm_task *rag_embed_texts_upstream(rag_engine *e, const store_collection *c, const char *const *texts,
                                   const size_t *lens, size_t n, llm_embed_cb cb, void *arg);

#endif
