#ifndef RAGD_UPSTREAM_OLLAMA_H
#define RAGD_UPSTREAM_OLLAMA_H

/* The Ollama wire format (docs/internals/ollama.md): request bodies for /api/embed and
 * /api/chat, the embed reply, and the streamed NDJSON chat reply — checked strictly,
 * because a backend that lies must not become garbage in the index or the answer.
 * Pure functions and a push parser; no I/O. */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"
#include "util/lines.h"

#define OLLAMA_MAX_LINE ((size_t)1 << 20) /* one NDJSON line */

/* {"model", "input": [texts], "truncate": true}; malloc'd, NULL on no memory. */
char *ollama_embed_body(const char *model, const char *const *texts, const size_t *lens, size_t n);

/* Parses an /api/embed reply: exactly n_expected vectors, all of one dimension (1..8192),
 * finite numbers. *vectors is malloc'd (n_expected * *dim floats). RAGD_EINVAL with a
 * message in err when the reply does not hold that. */
ragd_err ollama_embed_parse(const char *body, size_t len, size_t n_expected, size_t *dim, float **vectors, char *err,
                            size_t errlen);

/* {"model", "messages", "stream", "options"?, "format"?, "keep_alive"?}: messages and the
 * others as given (borrowed; NULL ones left out); malloc'd, NULL on no memory. */
char *ollama_chat_body(const char *model, json_t *messages, json_t *options, json_t *format, json_t *keep_alive,
                       bool stream);

/* GET /api/tags or /api/ps reply {"models": [...]}: the list, checked (every entry an
 * object with a string "name"; "model" filled from it when missing). *out is a new
 * reference. RAGD_EINVAL with a message when the reply is not that shape. */
ragd_err ollama_models_parse(const char *body, size_t len, json_t **out, char *err, size_t errlen);
/* POST /api/show reply: an object whose "details" and "model_info", when present, are
 * objects and "capabilities" an array. *out is a new reference. */
ragd_err ollama_show_parse(const char *body, size_t len, json_t **out, char *err, size_t errlen);
/* GET /api/version reply: {"version": string of 1..OLLAMA_VERSION_MAX characters
 * [0-9A-Za-z.+_-]} (anything else is a lie: RAGD_EINVAL). *out is a new reference. */
#define OLLAMA_VERSION_MAX 64
ragd_err ollama_version_parse(const char *body, size_t len, json_t **out, char *err, size_t errlen);

/* The message of an error reply ({"error": "…"}), or a generic one. */
void ollama_error_message(const char *body, size_t len, char *out, size_t outlen);

/* Ollama's queue-full answer: 503 whose message says "maximum pending requests exceeded". */
bool ollama_is_busy(int status, const char *message);

typedef enum {
    OLLAMA_STREAM_RUNNING = 0,
    OLLAMA_STREAM_DONE,       /* a chunk with "done": true arrived */
    OLLAMA_STREAM_ERROR_LINE, /* a chunk with "error" arrived (status stays 200 mid-stream) */
    OLLAMA_STREAM_NO_DONE,    /* the body ended without "done": true */
    OLLAMA_STREAM_BAD,        /* a line that is not a JSON object, or over OLLAMA_MAX_LINE */
} ollama_stream_state;

/* Decodes a streamed /api/chat reply. on_text gets each piece of the answer (the final
 * done chunk's text included); it returns non-zero to stop. */
typedef struct {
    lines_parser lines;
    int (*on_text)(const char *p, size_t n, void *arg);
    void *arg;
    ollama_stream_state state;
    char error[256];
    /* From the done chunk; -1 when it did not say ("" for done_reason). */
    char done_reason[32];
    int64_t load_duration_ns;
    int64_t prompt_eval_count;
    int64_t prompt_eval_duration_ns;
    int64_t eval_count;
    int64_t eval_duration_ns;
} ollama_stream;

void ollama_stream_init(ollama_stream *s, int (*on_text)(const char *p, size_t n, void *arg), void *arg);
void ollama_stream_cleanup(ollama_stream *s);
/* Feeds body bytes. Returns RAGD_OK while the stream runs; RAGD_ECLOSED once it is over
 * (done, error line, bad line, or on_text stopped): the state says which. */
ragd_err ollama_stream_feed(ollama_stream *s, const char *p, size_t n);
/* The body ended: the final state (NO_DONE when no done chunk came). */
ollama_stream_state ollama_stream_end(ollama_stream *s);

#endif
