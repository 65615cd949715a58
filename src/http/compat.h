#ifndef RAGD_HTTP_COMPAT_H
#define RAGD_HTTP_COMPAT_H

/* The core the Ollama- and OpenAI-compatible routes share (docs/internals/compat.md):
 * model names (`rag/<collection>[:latest]`), a client's conversation turned into a
 * rag_request, a chat run — the query engine for a rag/ model, llm_chat_messages for any
 * other — and the neutral events both renderers (h_ollama.c, h_openai.c) draw: a piece of
 * text, the end with its counters, a failure. This layer parses and renders; the engine and
 * the upstream layer decide.
 *
 * Threads: loop thread only (the handlers that list collections go to a worker first). */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "http/request.h"
#include "rag/engine.h"
#include "store/store.h"
#include "upstream/llm.h"
#include "util/loopq.h"
#include "util/jsonw.h"
#include "util/strbuf.h"

struct app;

#define COMPAT_MODEL_MAX 127          /* a model name's bytes (the upstream layer keeps 128) */
#define COMPAT_MAX_MESSAGES 10000     /* turns in one conversation (chat clients send it whole) */
#define COMPAT_MAX_HISTORY 64         /* the latest earlier turns handed to the engine */
#define COMPAT_QUESTION_MAX 8192      /* the question of a rag/ chat, as /api/query's */
#define COMPAT_MAX_INPUTS 2048        /* texts in one embeddings request */
#define COMPAT_OLLAMA_VERSION "0.12.0" /* /api/version when no Ollama backend says its own */

/* The collection of a rag/ model name: "rag/<name>" or "rag/<name>:latest" with a valid
 * collection name (util/names.h) copied into db. False for any other model. */
bool compat_rag_db(const char *model, char db[STORE_NAME_MAX + 1]);
/* A model name a client may send: 1..COMPAT_MODEL_MAX bytes of [A-Za-z0-9._:/@+-]. */
bool compat_model_name_ok(const char *model);
/* A request's model field past the dialect's own "missing" check: copies model (NULL when
 * not a string) into out, or replies 400 invalid_request naming the accepted form. */
bool compat_model_copy(http_request *req, const char *model, char out[COMPAT_MODEL_MAX + 1]);

/* Replies with a JSON body built in sb: 200 with its text when ok, else 500
 * response_too_large naming what ("the <what> would exceed RAGD_MAX_RESPONSE_BYTES").
 * Cleans sb up either way. */
void compat_reply_built(http_request *req, strbuf *sb, bool ok, const char *what);

/* The answer of one rag/ chat that ends, in what every dialect shows. */
typedef struct {
    const char *done_reason;            /* "stop" or "length" */
    long long prompt_tokens, completion_tokens; /* -1: not known */
    long long total_ns, load_ns, prompt_eval_ns, eval_ns;
    const rag_outcome *rag;             /* a rag/ model's outcome, NULL for a pass-through */
    const char *text;                   /* non-stream: the whole answer */
    size_t len;
} compat_final;

typedef enum { COMPAT_OLLAMA_CHAT, COMPAT_OLLAMA_GENERATE, COMPAT_OPENAI_CHAT } compat_shape;

typedef struct compat_call compat_call;

/* A dialect's rendering of the neutral events into sb (false: out of memory or the cap). */
typedef struct {
    const char *stream_type; /* Content-Type of a stream */
    bool (*piece)(const compat_call *c, strbuf *sb, const char *p, size_t n);  /* one stream chunk */
    bool (*final)(const compat_call *c, strbuf *sb, const compat_final *f);     /* a stream's end */
    bool (*whole)(const compat_call *c, strbuf *sb, const compat_final *f);     /* a non-stream body */
    bool (*fail)(const compat_call *c, strbuf *sb, const char *code, const char *message); /* mid-stream */
} compat_renderer;

/* One chat call, owned by its request (freed with it, http_set_cleanup). The dialect's
 * handler fills the first part (up to keep_alive), then calls compat_chat_run. */
struct compat_call {
    http_request *req;
    struct app *a;
    const compat_renderer *r;
    compat_shape shape;
    bool stream;        /* stream the answer (Ollama's default: true; OpenAI's: false) */
    bool include_usage; /* OpenAI stream_options.include_usage */
    char model[COMPAT_MODEL_MAX + 1]; /* as the client named it, echoed in every chunk */
    char id[48];        /* OpenAI's "chatcmpl-..." */
    long long created;  /* Unix seconds */
    /* inputs, borrowed from `hold` */
    json_t *hold;       /* the body and what was derived from it */
    json_t *messages;   /* normalised [{"role","content"}] with string contents */
    json_t *options;    /* to the LLM (Ollama's names), or NULL */
    json_t *format;
    json_t *keep_alive;
    /* private to compat.c */
    bool is_rag;
    rag_request rr;
    rag_query_op *op;
    llm_task *task;
    strbuf text;        /* a pass-through's answer so far, for a non-stream reply */
    bool text_capped;   /* text reached its cap and the backend was stopped there */
    http_stream *out;   /* the live stream, once the first piece went */
    bool gone;
};

/* A new call for req, owned by it. NULL after replying 503 when out of memory. */
compat_call *compat_call_new(http_request *req, const compat_renderer *r, compat_shape shape);

/* Turns a client's messages into c->messages: an array of 1..COMPAT_MAX_MESSAGES objects
 * with a role (system, user, assistant, tool) and a content that is a string or (OpenAI) a
 * list of {"type":"text","text"} parts, joined; images and other parts are refused. Replies
 * 400 and returns false for anything else. */
bool compat_messages(compat_call *c, json_t *messages);

/* Refuses a request that carries tools (a non-empty "tools" list): 400 naming the model.
 * True when there are none. */
bool compat_no_tools(compat_call *c, json_t *body);

/* Runs the chat: a rag/ model through the engine (the last user message is the question,
 * the turns before it the history; options.model may pick another allowed LLM), any other
 * through llm_chat_messages on the generator. Replies and renders as the events come; the
 * request goes async. Loop thread, from the handler. */
void compat_chat_run(compat_call *c);

/* The upstream layer's failure as the dialect's error reply (404 model not found, 503
 * overloaded + Retry-After, 503 unavailable, 504 timeout, 400 rejected, 502 bad reply). */
void compat_reply_llm_status(http_request *req, llm_status st, const char *message, const char *model);
/* The 404 of a model that is neither a collection nor known upstream, in the dialect's words. */
void compat_reply_model_not_found(http_request *req, const char *model);

/* "2026-01-01T00:00:00.123456789Z": Ollama's created_at, now. */
void compat_now_rfc3339(char *out, size_t outlen);

/* The answer's "Sources:" block ("\n\nSources:\n[1] title (doc id)\n..."), of the cited
 * sources (all the passages when none is cited), appended to sb. The n of each is the [n]
 * of the answer. True when there was nothing to add or it fit. */
bool compat_sources_text(strbuf *sb, const rag_outcome *o);
/* The first line of an answer given extractively in place of the LLM's (the LLM failed or
 * there is none, and passages were found), or "": "No relevant passages…" needs no LLM. */
const char *compat_extractive_note(const rag_outcome *o);

/* Writes the structured extras of a rag/ answer as members of the open object w is in:
 * "sources": [{"n","id","doc_id","title","source","score","text"}] and "rag": {"collection",
 * "provider","model","degraded","degraded_reason","cached","reranked","cited"}. Clients
 * ignore members they do not know. */
void compat_write_rag_extras(jsonw *w, const rag_outcome *o);

/* A float vector as a JSON array of %.9g numbers (float32 precision). */
bool compat_write_vector(strbuf *sb, const float *v, size_t dim);

/* ---- model lists, backend questions, embeddings (compat_work.c) ---- */

/* Renders a model list: the collections (cs[0..n)) and the backend's /api/tags entries
 * (normalised by llm_meta; NULL when there is no backend or it did not answer — never an
 * error). Replies. */
typedef void (*compat_models_render)(http_request *req, const store_collection *cs, size_t n, json_t *backend);
/* Lists the collections on a worker, then asks the generator for its models (5 s at most)
 * and calls render on the loop. */
void compat_list_models(http_request *req, compat_models_render render);

/* Renders a backend's answer to a question about its models (llm_meta); reply is borrowed.
 * With no backend, st is LLM_UNAVAILABLE and reply NULL. Replies. */
typedef void (*compat_meta_render)(http_request *req, llm_status st, json_t *reply, const char *message,
                                   const char *model);
/* Asks the generator (llm_meta) and renders its answer on the loop. model is copied. */
void compat_meta(http_request *req, llm_meta_kind what, const char *model, compat_meta_render render);

/* Renders collection c (NULL: there is none of that name) for the model `model`. Replies.
 * Runs on a worker. */
typedef void (*compat_collection_render)(http_request *req, const store_collection *c, const char *model);
/* Looks collection db up on a worker and renders it. */
void compat_show_collection(http_request *req, const char *db, const char *model, compat_collection_render render);

/* Renders n vectors of dim floats (v[i*dim..]) for model; tokens: the inputs' estimated
 * tokens. Replies. Runs on a worker or the loop. */
typedef void (*compat_embed_render)(http_request *req, const char *model, const float *v, size_t n, size_t dim,
                                    size_t tokens);
/* Embeds texts[0..n) (pointing into hold, which is taken) with model: a rag/ model with its
 * collection's embedder (builtin or upstream), any other on the embedder backend (else the
 * generator). n == 0 renders no vector. Errors in the dialect (404 model not found, 503...). */
void compat_embed_run(http_request *req, const char *model, json_t *hold, const char **texts, size_t *lens, size_t n,
                      compat_embed_render render);
#endif
