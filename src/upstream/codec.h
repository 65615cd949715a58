#ifndef RAGD_UPSTREAM_CODEC_H
#define RAGD_UPSTREAM_CODEC_H

/* One interface per backend kind (docs/internals/codec.md): everything llm.c needs to know
 * about a wire format — request paths and bodies, the embed reply, the streamed chat
 * decoder with its end state and counters, error bodies and the busy answer, model
 * metadata, the probe path — so that llm.c itself never asks which kind it talks to.
 * Implemented by ollama.c (ollama_codec) and openai.c (openai_codec). Pure functions and
 * push decoders; no I/O, no callbacks other than the decoder's on_text. */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "upstream/breaker.h"
#include "upstream/llm.h"
#include "util/err.h"

/* A piece of the answer; return non-zero to stop the stream. */
typedef int (*codec_text_fn)(const char *p, size_t n, void *arg);

/* What llm_meta sends for one question: a path (static) and a body (malloc'd; NULL = GET),
 * or — when this kind of backend cannot be asked — the answer itself (local). */
typedef struct {
    const char *path;
    char *body;
    bool local;
    llm_status local_status;   /* local: the answer's status */
    json_t *local_reply;       /* local and LLM_OK: a new reference */
    const char *local_message; /* local and not LLM_OK: why (static) */
} codec_meta_request;

typedef struct upstream_codec {
    const char *name; /* "ollama", "openai" */
    const char *embed_path, *chat_path;
    const char *probe_path; /* answered by a live backend without a model (probe.h) */

    /* The body of one embed batch (malloc'd, NULL on no memory), and its reply parsed
     * strictly: exactly n_expected vectors of one dimension 1..8192, finite; *vectors
     * malloc'd. RAGD_EINVAL with a message in err for a reply that is not that. */
    char *(*embed_body)(const char *model, const char *const *texts, const size_t *lens, size_t n);
    ragd_err (*embed_parse)(const char *body, size_t len, size_t n_expected, size_t *dim, float **vectors, char *err,
                            size_t errlen);

    /* The body of a streamed chat of rq (llm.h says what passes for each kind); malloc'd,
     * NULL on no memory. */
    char *(*chat_body)(const char *model, const llm_chat_request *rq);

    /* The chat stream decoder of one attempt: new (NULL on no memory), fed with body pieces
     * (false once the stream is over: done, error, bad data, or on_text stopped), ended
     * when the body ended — the end state as the breaker sees it, the backend's counters
     * written into stats (fields it did not report left alone), model_loaded when the
     * backend loaded the model during the call, and for an error event its message. */
    void *(*stream_new)(codec_text_fn on_text, void *arg);
    void (*stream_free)(void *s);
    bool (*stream_feed)(void *s, const char *p, size_t n);
    breaker_stream (*stream_end)(void *s, llm_chat_stats *stats, bool *model_loaded, char *message, size_t mlen);

    /* The message of an error reply (its JSON shape, else its first line), and whether a
     * reply is the backend's "busy, try later" (backpressure, not a failure). */
    void (*error_message)(const char *body, size_t len, char *out, size_t outlen);
    bool (*is_busy)(int status, const char *body, size_t len);

    /* Model metadata (llm_meta): the request for `what` about model ("" for lists), and
     * its 200 reply parsed strictly into Ollama's shapes: LLM_OK and *out (a new
     * reference), LLM_NOT_FOUND (the model is not in the backend's list), LLM_BAD_REPLY
     * (message set) for a reply that is not the shape. RAGD_ENOMEM from meta_request. */
    ragd_err (*meta_request)(llm_meta_kind what, const char *model, codec_meta_request *out);
    llm_status (*meta_parse)(llm_meta_kind what, const char *model, const char *body, size_t len, json_t **out,
                             char *message, size_t mlen);
} upstream_codec;

extern const upstream_codec ollama_codec;
extern const upstream_codec openai_codec;

/* The codec of a backend kind (the one place that maps a kind to its format). */
const upstream_codec *upstream_codec_for(llm_kind kind);

#endif
