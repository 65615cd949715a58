#ifndef RAGD_RAG_FENCE_H
#define RAGD_RAG_FENCE_H

/* Prompt-injection defences around the LLM call (docs/internals/fence.md):
 * - spotlighting: every passage goes into the prompt between per-request random boundaries
 *   («DATA <id>» … «END <id>», 64 random bits), optionally datamarked (a marker character
 *   between its words); role and chat-template tokens in passages and in the question are
 *   neutralised ("<|im_start|>" → "(im_start)");
 * - the output guard: a random canary in each request's system prompt; an answer that
 *   carries it (verbatim or in a simple encoding) or quotes the system prompt (any 8-word
 *   shingle) is a leak.
 * Also the invisible-character filter that ingest applies to every stored text.
 *
 * Pure functions and per-request values: any thread, no shared state. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"
#include "util/strbuf.h"

#define FENCE_ID_HEX 16     /* the boundary id: 64 random bits as hex */
#define FENCE_CANARY_HEX 16 /* the canary: 64 random bits as hex */
#define FENCE_SHINGLE_WORDS 8
/* The streamed answer is released this many bytes behind what the LLM sent: longer than the
 * common encodings the guard looks for (the canary verbatim, reversed, in base64, its 32 hex
 * digits with separators of up to two characters: 94 bytes) and than most 8-word shingles of
 * the system prompt (its first is 65 bytes). A leak spread wider is still caught, but its
 * beginning may have gone out: the stream then ends with an error event (docs/api.md). A
 * wider window delays every answer's first token: 192 bytes cost ~40-50 tokens of waiting,
 * 96 about 20-25. */
#define FENCE_HOLDBACK_BYTES 96

typedef enum { FENCE_MODE_FENCE = 0, FENCE_MODE_DATAMARK } fence_mode;
const char *fence_mode_name(fence_mode m);

/* One request's secrets. */
typedef struct {
    fence_mode mode;
    char id[FENCE_ID_HEX + 1];
    char canary[FENCE_CANARY_HEX + 1];
} fence_keys;

/* Fresh random keys (hash_random_bytes). RAGD_EIO when the system has no randomness. */
ragd_err fence_keys_init(fence_keys *k, fence_mode mode);

/* The marker datamarking puts between the words of a passage: U+02C6 MODIFIER LETTER
 * CIRCUMFLEX ACCENT. */
#define FENCE_DATAMARK "\xcb\x86"

/* Appends text[0..len) to sb with every role or template token neutralised (<|name|>,
 * [INST], [/INST], <<SYS>>, <</SYS>>, <s>, </s>, "### System:" and its kin; case-insensitive)
 * and every invisible character (fence_strip_invisible) dropped. For the question. */
ragd_err fence_append_neutral(strbuf *sb, const char *text, size_t len);

/* Appends one passage as data: invisible characters dropped, tokens neutralised, the
 * characters boundaries are made of (« » ‹ ›) replaced by '"', so that no boundary-like
 * string can remain, datamarked under FENCE_MODE_DATAMARK (runs of spaces and tabs become
 * FENCE_DATAMARK; a marker already in the text becomes '^'); then framed:
 * "«DATA <id>»\n[n] <data>\n«END <id>»\n". */
ragd_err fence_append_passage(strbuf *sb, const fence_keys *k, size_t n, const char *text, size_t len);

/* The system prompt of a request: the rules, the boundaries and the datamark explained,
 * the canary. malloc'd; NULL when out of memory. */
char *fence_system_prompt(const fence_keys *k);

/* The instructions repeated after the data, before the question (static text). */
extern const char fence_reminder[];

/* Removes, in place, zero-width and bidirectional-control characters (U+200B–U+200F,
 * U+202A–U+202E, U+2060–U+2064, U+2066–U+2069, U+FEFF, U+180E, U+00AD) and the Unicode tag
 * block (U+E0000–U+E007F) from s[0..len) (meant for valid UTF-8; a byte sequence that is
 * not one of those characters whole, invalid or cut short, is kept as it is). Returns the new
 * length; s is NUL-terminated at it when it was longer. */
size_t fence_strip_invisible(char *s, size_t len);

/* ---- the output guard ---- */

typedef enum { FENCE_LEAK_NONE = 0, FENCE_LEAK_CANARY, FENCE_LEAK_SYSTEM_PROMPT } fence_leak;
const char *fence_leak_name(fence_leak l); /* "canary", "system_prompt" or NULL */

/* What the guard looks for in one request's answer: the canary's forms and the system
 * prompt's shingle hashes. */
typedef struct {
    char forms[8][64];   /* lower-case alphanumeric forms: canary, reversed, hex, hex reversed, … */
    size_t n_forms;
    char b64[6][32];     /* stable base64 cores of the canary (3 alignments × 2 cases) */
    size_t n_b64;
    uint64_t *shingles;  /* sorted hashes of the system prompt's 8-word shingles */
    size_t n_shingles;
} fence_guard;

/* Prepares the guard for a canary and a system prompt. RAGD_ENOMEM when out of memory. */
ragd_err fence_guard_init(fence_guard *g, const char *canary, const char *system_prompt);
void fence_guard_cleanup(fence_guard *g);

/* Whether text[0..len) leaks: the canary verbatim, reversed, as hex, or in base64 (any
 * alignment), case-insensitively and with any non-alphanumeric characters between its
 * characters; or any 8-word shingle of the system prompt (words lower-cased, punctuation
 * dropped). */
fence_leak fence_guard_check(const fence_guard *g, const char *text, size_t len);

#endif
