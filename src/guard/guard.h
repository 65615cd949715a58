#ifndef RAGD_GUARD_GUARD_H
#define RAGD_GUARD_GUARD_H

/* The prompt-injection screen (docs/internals/guard.md): L0 normalises the text (Unicode
 * compatibility folding and confusables, invisible characters stripped, entities and
 * base64/hex/%-encoded runs decoded and judged too), L1 matches rules (PCRE2), L2 scores it
 * with a linear classifier on hashed character and word n-grams, trained offline (make
 * guard-train) and embedded in the binary: one model for questions (GUARD_QUERY), one for
 * passages (GUARD_CHUNK). Long texts are scored over sliding windows.
 *
 * Pure functions of their input: any thread, no state after guard_init, no callbacks. */
#include <stdbool.h>
#include <stddef.h>

#include "util/err.h"

typedef enum {
    GUARD_QUERY, /* a user's question: judged at the query threshold */
    GUARD_CHUNK, /* a passage of a stored document: judged at the chunk threshold */
} guard_kind;

typedef struct {
    float score;       /* 0..1: the higher of the classifier's score and 1.0 when a rule fired */
    float model_score; /* the classifier alone, max over windows */
    const char *rule;  /* name of the first L1 rule that fired (static string), or NULL */
    bool flagged;      /* score >= the default threshold of its kind */
} guard_verdict;

/* Compiles the rules once. Call before the first guard_score (from main, before threads);
 * RAGD_EINVAL if a rule does not compile (a bug). Idempotent. */
ragd_err guard_init(void);
void guard_shutdown(void);

/* Judges text[0..len) (any bytes; invalid UTF-8 is judged as its bytes). RAGD_ENOMEM when
 * out of memory (out is then a verdict of 0). */
ragd_err guard_score(const char *text, size_t len, guard_kind kind, guard_verdict *out);

/* The default threshold of a kind: chosen on held-out data at 1 % false positives for
 * queries (query model, validation questions) and 0.5 % for chunks (chunk model,
 * validation passages) (BENCHMARKS.md "Prompt-injection screen"). */
float guard_threshold(guard_kind kind);

/* A stricter chunk threshold, chosen like guard_threshold(GUARD_CHUNK) but at 0.1 % false
 * positives on the validation passages: the default for quarantining at ingest, where a
 * false positive silently takes a passage out of every answer (BENCHMARKS.md (e)). */
float guard_quarantine_threshold(void);

/* L0 alone (for tests, the trainer and fuzzing): the normalised text, malloc'd and
 * NUL-terminated, its length in *out_len; NULL when out of memory. */
char *guard_normalize(const char *text, size_t len, size_t *out_len);

#endif
