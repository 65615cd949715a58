/* OpenAI's API on ragd's port (docs/api.md "OpenAI-compatible API"): GET /v1/models,
 * POST /v1/chat/completions (JSON, or SSE ending in "data: [DONE]"), POST /v1/embeddings.
 * Parsing and rendering only (compat.c runs the chats). Errors on these routes are OpenAI's
 * {"error":{"message","type","param","code"}} (the route table's dialect). */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "http/compat.h"
#include "http/fields.h"
#include "http/handlers.h"
#include "util/jsonw.h"

/* ---- rendering ---- */

/* The members a completion and a chunk start with. */
static void openai_head(jsonw *w, const compat_call *c, const char *object)
{
    jsonw_key(w, "id");
    jsonw_string(w, c->id);
    jsonw_key(w, "object");
    jsonw_string(w, object);
    jsonw_key(w, "created");
    jsonw_int(w, c->created);
    jsonw_key(w, "model");
    jsonw_string(w, c->model);
    jsonw_key(w, "system_fingerprint");
    jsonw_string(w, "ragd");
}

/* "choices":[{"index":0,"<member>": — the member's value comes next, then openai_choice_end. */
static void openai_choice_begin(jsonw *w, const char *member)
{
    jsonw_key(w, "choices");
    jsonw_array_begin(w);
    jsonw_object_begin(w);
    jsonw_key(w, "index");
    jsonw_int(w, 0);
    jsonw_key(w, member);
}

/* ,"finish_reason":<reason, null when NULL>}] */
static void openai_choice_end(jsonw *w, const char *finish_reason)
{
    jsonw_key(w, "finish_reason");
    if (finish_reason)
        jsonw_string(w, finish_reason);
    else
        jsonw_null(w);
    jsonw_object_end(w);
    jsonw_array_end(w);
}

/* {"role":"assistant","content":<text>}: a chunk's delta or a completion's message. */
static void openai_message(jsonw *w, const char *text, size_t len)
{
    jsonw_object_begin(w);
    jsonw_key(w, "role");
    jsonw_string(w, "assistant");
    jsonw_key(w, "content");
    jsonw_stringn(w, text, len);
    jsonw_object_end(w);
}

static bool openai_frame_open(strbuf *sb, jsonw *w)
{
    jsonw_init(w, sb);
    return strbuf_append(sb, "data: ", 6) == RAGD_OK;
}

static bool openai_frame_close(strbuf *sb, const jsonw *w)
{
    return jsonw_status(w) == RAGD_OK && strbuf_append(sb, "\n\n", 2) == RAGD_OK;
}

static bool openai_piece(const compat_call *c, strbuf *sb, const char *p, size_t n)
{
    jsonw w;
    if (!openai_frame_open(sb, &w))
        return false;
    jsonw_object_begin(&w);
    openai_head(&w, c, "chat.completion.chunk");
    openai_choice_begin(&w, "delta");
    openai_message(&w, p, n);
    openai_choice_end(&w, NULL);
    jsonw_object_end(&w);
    return openai_frame_close(sb, &w);
}

static const char *openai_finish_reason(const compat_final *f)
{
    return f->done_reason && strcmp(f->done_reason, "length") == 0 ? "length" : "stop";
}

static void openai_usage(jsonw *w, const compat_final *f)
{
    long long p = f->prompt_tokens > 0 ? f->prompt_tokens : 0;
    long long c = f->completion_tokens > 0 ? f->completion_tokens : 0;
    jsonw_key(w, "usage");
    jsonw_object_begin(w);
    jsonw_key(w, "prompt_tokens");
    jsonw_int(w, p);
    jsonw_key(w, "completion_tokens");
    jsonw_int(w, c);
    jsonw_key(w, "total_tokens");
    jsonw_int(w, p > LLONG_MAX - c ? LLONG_MAX : p + c); /* a backend's counts may be anything up to LLONG_MAX */
    jsonw_object_end(w);
}

/* The finish chunk (with the rag extras), the usage chunk when asked, then [DONE]. */
static bool openai_final(const compat_call *c, strbuf *sb, const compat_final *f)
{
    jsonw w;
    if (!openai_frame_open(sb, &w))
        return false;
    jsonw_object_begin(&w);
    openai_head(&w, c, "chat.completion.chunk");
    openai_choice_begin(&w, "delta");
    jsonw_object_begin(&w);
    jsonw_object_end(&w);
    openai_choice_end(&w, openai_finish_reason(f));
    if (f->rag)
        compat_write_rag_extras(&w, f->rag);
    jsonw_object_end(&w);
    if (!openai_frame_close(sb, &w))
        return false;
    if (c->include_usage) {
        if (!openai_frame_open(sb, &w))
            return false;
        jsonw_object_begin(&w);
        openai_head(&w, c, "chat.completion.chunk");
        jsonw_key(&w, "choices");
        jsonw_array_begin(&w);
        jsonw_array_end(&w);
        openai_usage(&w, f);
        jsonw_object_end(&w);
        if (!openai_frame_close(sb, &w))
            return false;
    }
    return strbuf_appends(sb, "data: [DONE]\n\n") == RAGD_OK;
}

static bool openai_whole(const compat_call *c, strbuf *sb, const compat_final *f)
{
    jsonw w;
    jsonw_init(&w, sb);
    jsonw_object_begin(&w);
    openai_head(&w, c, "chat.completion");
    openai_choice_begin(&w, "message");
    openai_message(&w, f->text, f->len);
    openai_choice_end(&w, openai_finish_reason(f));
    openai_usage(&w, f);
    if (f->rag)
        compat_write_rag_extras(&w, f->rag);
    jsonw_object_end(&w);
    return jsonw_status(&w) == RAGD_OK;
}

/* A failure after chunks went out: one frame carrying OpenAI's error object, then the end
 * without [DONE] (the client libraries raise it as an API error). */
static bool openai_fail(const compat_call *c, strbuf *sb, const char *code, const char *message)
{
    (void)c;
    jsonw w;
    if (!openai_frame_open(sb, &w))
        return false;
    jsonw_object_begin(&w);
    jsonw_key(&w, "error");
    jsonw_object_begin(&w);
    jsonw_key(&w, "message");
    jsonw_string(&w, message ? message : "the LLM failed");
    jsonw_key(&w, "type");
    jsonw_string(&w, "api_error");
    jsonw_key(&w, "param");
    jsonw_null(&w);
    jsonw_key(&w, "code");
    jsonw_string(&w, code);
    jsonw_object_end(&w);
    jsonw_object_end(&w);
    return openai_frame_close(sb, &w);
}

static const compat_renderer openai_renderer = {.stream_type = "text/event-stream; charset=utf-8",
                                                .piece = openai_piece,
                                                .final = openai_final,
                                                .whole = openai_whole,
                                                .fail = openai_fail};

/* ---- parsing ---- */

static bool openai_model(http_request *req, json_t *body, char out[COMPAT_MODEL_MAX + 1])
{
    json_t *m = json_object_get(body, "model");
    const char *model = json_string_value(m);
    if (!model || !model[0]) {
        http_reply_error(req, 400, "invalid_request", "you must provide a model parameter");
        return false;
    }
    return compat_model_copy(req, model, out);
}

/* OpenAI's sampling fields as Ollama's options (the upstream layer maps them back for an
 * OpenAI backend), merged over an "options" object the request may carry (ragd's extension:
 * options.model picks a rag/ chat's LLM). */
static bool openai_options(compat_call *c, json_t *body)
{
    http_request *req = c->req;
    json_t *given = NULL;
    if (!fields_object(req, body, "options", &given))
        return false;
    json_t *opts = given ? json_copy(given) : json_object();
    if (!opts || json_object_set_new(c->hold, "options", opts) != 0) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return false;
    }
    static const char *const from[] = {"temperature", "top_p", "seed", "max_tokens", "max_completion_tokens",
                                       "frequency_penalty", "presence_penalty"};
    static const char *const to[] = {"temperature", "top_p", "seed", "num_predict", "num_predict",
                                     "frequency_penalty", "presence_penalty"};
    for (size_t i = 0; i < sizeof from / sizeof *from; i++) {
        json_t *v = json_object_get(body, from[i]);
        if (!v || json_is_null(v))
            continue;
        if (!json_is_number(v)) {
            http_reply_error(req, 400, "invalid_request", "%s: must be a number", from[i]);
            return false;
        }
        json_object_set(opts, to[i], v);
    }
    json_t *stop = json_object_get(body, "stop");
    if (json_is_string(stop)) {
        json_object_set_new(opts, "stop", json_pack("[O]", stop));
    } else if (json_is_array(stop)) {
        json_object_set(opts, "stop", stop);
    } else if (stop && !json_is_null(stop)) {
        http_reply_error(req, 400, "invalid_request", "stop: a string or a list of strings");
        return false;
    }
    if (!fields_llm_options(req, opts))
        return false;
    c->options = json_object_size(opts) > 0 ? opts : NULL;
    return true;
}

/* response_format as Ollama's format: json_object → "json", json_schema → its schema;
 * text → none. */
static bool openai_format(compat_call *c, json_t *body)
{
    json_t *rf = json_object_get(body, "response_format");
    if (!rf || json_is_null(rf))
        return true;
    const char *type = json_string_value(json_object_get(rf, "type"));
    if (type && strcmp(type, "text") == 0)
        return true;
    json_t *format = NULL;
    if (type && strcmp(type, "json_object") == 0)
        format = json_string("json");
    else if (type && strcmp(type, "json_schema") == 0 && json_is_object(json_object_get(json_object_get(rf, "json_schema"), "schema")))
        format = json_incref(json_object_get(json_object_get(rf, "json_schema"), "schema"));
    else {
        http_reply_error(c->req, 400, "invalid_request",
                         "response_format: {\"type\":\"text\"}, {\"type\":\"json_object\"} or "
                         "{\"type\":\"json_schema\",\"json_schema\":{\"schema\":{...}}}");
        return false;
    }
    if (!format || json_object_set_new(c->hold, "format", format) != 0) {
        http_reply_error(c->req, 503, "overloaded", "out of memory");
        return false;
    }
    c->format = format;
    return true;
}

static bool openai_chat_parse(compat_call *c, json_t *body)
{
    http_request *req = c->req;
    if (json_object_set(c->hold, "body", body) != 0) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return false;
    }
    json_t *so = NULL;
    if (!openai_model(req, body, c->model) || !fields_bool(req, body, "stream", false, &c->stream) ||
        !fields_object(req, body, "stream_options", &so) ||
        (so && !fields_bool(req, so, "include_usage", false, &c->include_usage)) || !compat_no_tools(c, body) ||
        !openai_options(c, body) || !openai_format(c, body))
        return false;
    json_t *keep = json_object_get(body, "keep_alive"); /* ragd's extension, passed to an Ollama backend */
    if (keep && (json_is_number(keep) || json_is_string(keep)))
        c->keep_alive = keep;
    return compat_messages(c, json_object_get(body, "messages"));
}

void handlers_openai_chat(http_request *req)
{
    json_t *body = http_json_object(req);
    if (!body)
        return;
    compat_call *c = compat_call_new(req, &openai_renderer, COMPAT_OPENAI_CHAT);
    bool ok = c && openai_chat_parse(c, body);
    json_decref(body);
    if (ok)
        compat_chat_run(c);
}

/* ---- models ---- */

/* {"id","object":"model","created","owned_by"}: an entry of GET /v1/models, or GET /v1/models/{model}. */
static json_t *openai_model_object(const char *id, const char *owner, long long created)
{
    return json_pack("{s:s,s:s,s:I,s:s}", "id", id, "object", "model", "created", (json_int_t)created, "owned_by",
                     owner);
}

static void openai_models_render(http_request *req, const store_collection *cs, size_t n, json_t *backend)
{
    json_t *data = json_array();
    long long now = (long long)time(NULL);
    for (size_t i = 0; i < n; i++) {
        char id[STORE_NAME_MAX + 16];
        snprintf(id, sizeof id, "rag/%s:latest", cs[i].name);
        json_array_append_new(data, openai_model_object(id, "ragd", now));
    }
    size_t i;
    json_t *m;
    json_array_foreach(backend, i, m) {
        const char *name = json_string_value(json_object_get(m, "name"));
        if (name && strncmp(name, "rag/", 4) != 0)
            json_array_append_new(data, openai_model_object(name, "library", now));
    }
    handlers_reply_json_capped(req, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

void handlers_openai_models(http_request *req) { compat_list_models(req, openai_models_render); }

static void openai_model_collection(http_request *req, const store_collection *c, const char *model)
{
    if (c)
        http_reply_json(req, 200, openai_model_object(model, "ragd", (long long)time(NULL)));
    else
        compat_reply_model_not_found(req, model);
}

static void openai_model_backend(http_request *req, llm_status st, json_t *reply, const char *message,
                                 const char *model)
{
    (void)reply;
    if (st == LLM_OK)
        http_reply_json(req, 200, openai_model_object(model, "library", (long long)time(NULL)));
    else if (st == LLM_NOT_FOUND || !req->app->generator)
        compat_reply_model_not_found(req, model);
    else
        compat_reply_llm_status(req, st, message, model);
}

/* GET /v1/models/{model}: one model (a collection's, or the backend's through llm_meta SHOW). */
void handlers_openai_model(http_request *req)
{
    const char *model = req->params[0];
    char db[STORE_NAME_MAX + 1];
    if (!compat_model_name_ok(model)) {
        compat_reply_model_not_found(req, "(invalid name)");
        return;
    }
    if (compat_rag_db(model, db))
        compat_show_collection(req, db, model, openai_model_collection);
    else
        compat_meta(req, LLM_META_SHOW, model, openai_model_backend);
}

/* ---- embeddings ---- */

static const char openai_b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* A vector as base64 of its little-endian float32 bytes (encoding_format "base64"). */
static bool openai_write_base64(strbuf *sb, const float *v, size_t dim)
{
    const unsigned char *p = (const unsigned char *)v; /* x86-64 and arm64: little-endian */
    size_t n = dim * sizeof *v;
    if (strbuf_append(sb, "\"", 1) != RAGD_OK)
        return false;
    for (size_t i = 0; i < n; i += 3) {
        unsigned a = p[i], b = i + 1 < n ? p[i + 1] : 0, c = i + 2 < n ? p[i + 2] : 0;
        char q[4] = {openai_b64[a >> 2], openai_b64[((a & 3) << 4) | (b >> 4)],
                     i + 1 < n ? openai_b64[((b & 15) << 2) | (c >> 6)] : '=', i + 2 < n ? openai_b64[c & 63] : '='};
        if (strbuf_append(sb, q, 4) != RAGD_OK)
            return false;
    }
    return strbuf_append(sb, "\"", 1) == RAGD_OK;
}

static void openai_embed_write(http_request *req, const char *model, const float *v, size_t n, size_t dim,
                               size_t tokens, bool base64)
{
    strbuf sb;
    strbuf_init(&sb, req->app->cfg.max_response_bytes);
    bool ok = strbuf_appends(&sb, "{\"object\":\"list\",\"data\":[") == RAGD_OK;
    for (size_t i = 0; ok && i < n; i++) {
        ok = strbuf_appendf(&sb, "%s{\"object\":\"embedding\",\"index\":%zu,\"embedding\":", i ? "," : "", i) == RAGD_OK &&
             (base64 ? openai_write_base64(&sb, v + i * dim, dim) : compat_write_vector(&sb, v + i * dim, dim)) &&
             strbuf_append(&sb, "}", 1) == RAGD_OK;
    }
    jsonw w;
    ok = ok && strbuf_appends(&sb, "],\"model\":") == RAGD_OK;
    if (ok) {
        jsonw_init(&w, &sb);
        jsonw_string(&w, model);
        ok = jsonw_status(&w) == RAGD_OK &&
             strbuf_appendf(&sb, ",\"usage\":{\"prompt_tokens\":%zu,\"total_tokens\":%zu}}", tokens, tokens) == RAGD_OK;
    }
    compat_reply_built(req, &sb, ok, "embeddings");
}

static void openai_embed_float(http_request *req, const char *model, const float *v, size_t n, size_t dim,
                               size_t tokens)
{
    openai_embed_write(req, model, v, n, dim, tokens, false);
}

static void openai_embed_base64(http_request *req, const char *model, const float *v, size_t n, size_t dim,
                                size_t tokens)
{
    openai_embed_write(req, model, v, n, dim, tokens, true);
}

void handlers_openai_embeddings(http_request *req)
{
    json_t *body = http_json_object(req);
    if (!body)
        return;
    char model[COMPAT_MODEL_MAX + 1];
    static const char *const encodings[] = {"float", "base64", NULL};
    int encoding = 0;
    const char **texts = NULL;
    size_t *lens = NULL, n = 0;
    json_t *input = json_object_get(body, "input");
    bool ok = openai_model(req, body, model) && fields_choice(req, body, "encoding_format", encodings, 0, &encoding);
    if (ok && (!input || (json_is_array(input) && json_array_size(input) == 0))) {
        http_reply_error(req, 400, "invalid_request", "input: a string or a non-empty list of strings is required");
        ok = false;
    }
    if (ok && handlers_compat_inputs(req, input, false, &texts, &lens, &n)) {
        compat_embed_run(req, model, body, texts, lens, n, encoding == 1 ? openai_embed_base64 : openai_embed_float);
        return;
    }
    json_decref(body);
}
