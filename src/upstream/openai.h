#ifndef RAGD_UPSTREAM_OPENAI_H
#define RAGD_UPSTREAM_OPENAI_H

/* The OpenAI-compatible wire format (llama.cpp, vLLM, Ollama's /v1, …): /v1/embeddings and
 * /v1/chat/completions bodies, the embeddings reply, and the SSE chat stream. Checked as
 * strictly as the Ollama format. Pure functions and a push parser; no I/O. */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "util/err.h"
#include "util/sse.h"

#define OPENAI_MAX_EVENT ((size_t)1 << 20)

/* {"model", "input": [texts], "encoding_format": "float"}; malloc'd. */
char *openai_embed_body(const char *model, const char *const *texts, const size_t *lens, size_t n);
/* Parses {"data": [{"embedding": [...], "index": i}, ...]}: exactly n_expected vectors, each
 * index once, one dimension, finite values; placed by "index". *vectors malloc'd. */
ragd_err openai_embed_parse(const char *body, size_t len, size_t n_expected, size_t *dim, float **vectors, char *err,
                            size_t errlen);
/* {"model", "messages", "stream", "temperature"?, "max_tokens"?...} — options' known keys
 * are passed through; malloc'd. */
char *openai_chat_body(const char *model, const char *system, const char *user, json_t *options, bool stream);
/* error.message of an OpenAI error body, or a generic text. */
void openai_error_message(const char *body, size_t len, char *out, size_t outlen);

typedef enum {
    OPENAI_STREAM_RUNNING = 0,
    OPENAI_STREAM_DONE,   /* "data: [DONE]" arrived */
    OPENAI_STREAM_ERROR,  /* an event carried an "error" object */
    OPENAI_STREAM_NO_DONE, /* the body ended before [DONE] */
    OPENAI_STREAM_BAD,    /* an event that is not JSON, or over the cap */
} openai_stream_state;

typedef struct {
    sse_parser sse;
    int (*on_text)(const char *p, size_t n, void *arg);
    void *arg;
    openai_stream_state state;
    char error[256];
    char finish_reason[32];
} openai_stream;

void openai_stream_init(openai_stream *s, int (*on_text)(const char *p, size_t n, void *arg), void *arg);
void openai_stream_cleanup(openai_stream *s);
ragd_err openai_stream_feed(openai_stream *s, const char *p, size_t n);
openai_stream_state openai_stream_end(openai_stream *s);

#endif
