#ifndef RAGD_RAG_ANSWER_CACHE_H
#define RAGD_RAG_ANSWER_CACHE_H

/* The engine's cache stage (docs/internals/engine.md): what a query's answer is cached
 * under, and how an answer is written into the cache (rag/cache.h) and read back. Engine
 * internal. */
#include <stdbool.h>
#include <stddef.h>

#include "rag/engine.h"

/* The canonical "params" of the cache key: everything besides the collection, its version
 * and the question that changes the answer — generate or retrieve, whether an LLM was in use
 * (an extractive answer given while none was is not reused once one answers), method, k,
 * the filter (canonical JSON: sorted keys, compact), provider, model, the LLM options, format.
 * malloc'd, NUL terminated; NULL when out of memory. */
char *rag_cache_params(const rag_request *r, const char *model, bool llm_in_use, size_t *len);

/* A finished answer as cache bytes (compact JSON of the passages, the answer, who gave it,
 * the method). malloc'd; NULL when out of memory. */
char *rag_cache_encode(const rag_result *res, rag_method method, const char *answer, const char *provider,
                       const char *model, size_t *len);

/* Reads cache bytes back: the passages into *res (to rag_result_cleanup), the strings
 * malloc'd (NULL where the answer had none). false when out of memory or the bytes are not
 * an encoded answer. */
bool rag_cache_decode(const char *data, size_t len, rag_result *res, rag_method *method, char **answer,
                      char **provider, char **model);

#endif
