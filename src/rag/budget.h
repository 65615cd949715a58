#ifndef RAGD_RAG_BUDGET_H
#define RAGD_RAG_BUDGET_H

/* The prompt's token budget (docs/internals/passages.md): how many tokens the model's
 * context holds, how many of them the answer needs, and a tokenizer-free estimate of a
 * text's tokens that errs on the safe side (never fewer than a BPE tokenizer of the
 * llama / GPT families counts, by construction rather than by measurement: see
 * rag_budget_tokens). Pure functions: any thread. */
#include <jansson.h>
#include <stddef.h>

#define RAG_BUDGET_OLLAMA_DEFAULT 2048 /* Ollama's num_ctx in many versions when the request sets none */
#define RAG_BUDGET_OPENAI_DEFAULT 4096 /* an OpenAI-compatible model not in the table (llama.cpp's n_ctx) */
#define RAG_BUDGET_TEMPLATE_TOKENS 48  /* the chat template's role headers and separators, two messages */

/* The estimated tokens of text[0..len): a run of ASCII letters costs one token per 3
 * letters (rounded up: BPE vocabularies hold most English words whole, rare words and
 * names in pieces of 2-4 letters), every digit one (llama 2 splits numbers into digits),
 * every other ASCII symbol one, a space before a word nothing (it is part of the word's
 * token), any other run of whitespace one per line break and one for the rest; a non-ASCII
 * character one token per byte after its first (2-byte scripts 1, CJK 2, emoji 3: the
 * byte-fallback end of what tokenizers do). Monotone: text appended never lowers it. */
size_t rag_budget_tokens(const char *text, size_t len);

/* The model's context in tokens for a request to generator ("ollama", "openai") with
 * model and the request's options (may be NULL): Ollama runs at options.num_ctx when the
 * request gives it, else at `configured` (RAGD_CONTEXT_TOKENS) when set (> 0), else
 * RAG_BUDGET_OLLAMA_DEFAULT; an OpenAI-compatible model at `configured` when set, else a
 * table of known model names, else RAG_BUDGET_OPENAI_DEFAULT. */
size_t rag_budget_context(const char *generator, const char *model, const json_t *options, size_t configured);

/* The tokens kept for the answer out of a context of `context`: options.num_predict
 * (Ollama) or options.max_tokens (OpenAI) when given and positive, else a quarter of the
 * context within 256..2048; never more than half the context. */
size_t rag_budget_reserve(const char *generator, const json_t *options, size_t context);

#endif
