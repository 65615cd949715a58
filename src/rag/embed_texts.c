#include "rag/embed_texts.h"

#include <string.h>

#include "rag/embed_builtin.h"
#include "util/clock.h"

rag_texts_embedder rag_embed_texts_kind(const rag_engine *e, const store_collection *c)
{
    if (c->dim == EMBED_BUILTIN_DIM && strcmp(c->embed_model, EMBED_BUILTIN_NAME) == 0)
        return RAG_TEXTS_BUILTIN;
    return rag_engine_cfg(e)->embedder ? RAG_TEXTS_UPSTREAM : RAG_TEXTS_UNAVAILABLE;
}

ragd_err rag_embed_texts_builtin(const char *const *texts, const size_t *lens, size_t n, float *out)
{
    for (size_t i = 0; i < n; i++) {
        ragd_err rc = embed_builtin(texts[i], lens[i], out + i * EMBED_BUILTIN_DIM);
        if (rc != RAGD_OK)
            return rc;
    }
    return RAGD_OK;
}

llm_task *rag_embed_texts_upstream(rag_engine *e, const store_collection *c, const char *const *texts,
                                   const size_t *lens, size_t n, llm_embed_cb cb, void *arg)
{
    const rag_engine_config *cfg = rag_engine_cfg(e);
    if (!cfg->embedder || n == 0)
        return NULL;
    return llm_embed(cfg->embedder, c->embed_model, texts, lens, n, clock_now_ms() + cfg->embed_timeout_ms, cb, arg);
}
