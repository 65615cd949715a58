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
/* {"model", "messages", "stream", "stream_options"?, "temperature"?, "max_tokens"?,
 * "response_format"?}: messages as given; of options (Ollama's names) temperature, top_p,
 * seed, stop and max_tokens pass, num_predict becomes max_tokens, the rest is dropped;
 * format "json" becomes {"type": "json_object"}, a schema (an object) {"type":
 * "json_schema", "json_schema": {"name": "answer", "schema": …}}. A stream asks for the
 * usage chunk (stream_options.include_usage). All borrowed, NULL ones left out; malloc'd,
 * NULL on no memory. */
char *openai_chat_body(const char *model, json_t *messages, json_t *options, json_t *format, bool stream);

/* GET /v1/models reply {"data": [{"id", "created"?, "owned_by"?}]} as /api/tags entries
 * {name, model, modified_at, size, digest, details}. *out is a new reference. RAGD_EINVAL
 * with a message when the reply is not that shape. */
ragd_err openai_models_parse(const char *body, size_t len, json_t **out, char *err, size_t errlen);
/* The /api/show object of model, built from such entries (the name as given, or with
 * ":latest" added or removed); NULL when the list does not hold it. New reference. */
json_t *openai_show_from_models(const json_t *entries, const char *model);
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
    /* From a "usage" object (the chunk stream_options.include_usage asks for); -1 when
     * none came. */
    long long prompt_tokens, completion_tokens;
} openai_stream;

void openai_stream_init(openai_stream *s, int (*on_text)(const char *p, size_t n, void *arg), void *arg);
void openai_stream_cleanup(openai_stream *s);
ragd_err openai_stream_feed(openai_stream *s, const char *p, size_t n);
openai_stream_state openai_stream_end(openai_stream *s);

#endif
