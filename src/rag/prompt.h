#ifndef RAGD_RAG_PROMPT_H
#define RAGD_RAG_PROMPT_H

/* The prompt stage: what the LLM is asked (docs/internals/engine.md, docs/internals/fence.md). */
#include "rag/fence.h"
#include "rag/retrieve.h"

/* The system message of a request: answer only from the numbered passages, cite them as
 * [n], the passages' boundaries (and datamark) explained, the canary never to reveal.
 * malloc'd; NULL when out of memory. */
char *rag_prompt_system(const fence_keys *k);

/* The user message: each passage fenced (rag/fence.h) and numbered as its source is, the
 * instructions repeated after the data, then the question last, its role tokens
 * neutralised. Quarantined passages are left out (the caller removed them). malloc'd; NULL
 * when out of memory (or past a 16 MiB cap). */
char *rag_prompt_user(const rag_result *res, const char *question, size_t question_len, const fence_keys *k);

#endif
