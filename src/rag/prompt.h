#ifndef RAGD_RAG_PROMPT_H
#define RAGD_RAG_PROMPT_H

/* The prompt stage: what the LLM is asked (docs/internals/engine.md, docs/internals/fence.md). */
#include <stdbool.h>
#include <stddef.h>

#include "rag/engine.h"
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

/* What fitting the prompt to the model's context did (docs/api.md "prompt"). */
typedef struct rag_prompt_fit_s {
    size_t context;          /* the model's context, tokens (rag/budget.h) */
    size_t reserved;         /* kept for the answer */
    size_t budget;           /* context - reserved: for the system and user messages */
    size_t tokens_estimate;  /* the estimate of the prompt as sent (rag_budget_tokens) */
    size_t passages;         /* passages given to the model: the first ones of the result */
    size_t passages_dropped; /* the rest */
    bool truncated;          /* the last passage given was cut (at a sentence, else a word) */
    size_t history_turns;    /* earlier turns of the conversation given to the model: the newest ones */
    size_t history_dropped;  /* the older ones left out (turns of other roles are not counted) */
    bool history_truncated;  /* the oldest turn given was cut (its start kept) */
} rag_prompt_fit;

/* The user message fitted to fit->budget (set by the caller, with context and reserved)
 * with a system message of system_tokens. Priorities: the question and the instructions
 * always whole; then passages in rank order while they fit, the first that does not cut at
 * the last sentence (else word) boundary that fits — dropped when not even 16 tokens of it
 * fit — and the rest dropped; then, with the room the passages left, the conversation's
 * earlier turns (history[0..n_history), oldest first; turns rag_history_turn_kept refuses
 * are skipped) newest first while they fit, the first that does not cut the same way
 * (its start kept, marked " …") and the older ones dropped. The turns are written after
 * the instructions' reminder and before the question, as "User: " / "Assistant: " lines,
 * their role tokens neutralised like the question's and every line break of a turn
 * followed by two spaces, so that no turn can start a line of its own that looks like
 * another turn. Work is bounded by the turns given (plus one), whatever n_history is.
 * Fills the rest of fit. RAGD_ETOOBIG: the question and the instructions alone exceed the
 * budget (*out NULL); RAGD_ENOMEM. *out is malloc'd. */
ragd_err rag_prompt_user_fit(const rag_result *res, const char *question, size_t question_len,
                             const rag_turn *history, size_t n_history, const fence_keys *k, size_t system_tokens,
                             rag_prompt_fit *fit, char **out);

#endif
