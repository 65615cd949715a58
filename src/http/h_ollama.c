/* Ollama's API on ragd's port (docs/api.md "Ollama-compatible API"): GET /, /api/tags,
 * /api/show, /api/version, /api/ps, /api/chat, /api/generate, /api/embed, /api/embeddings.
 * Parsing and rendering only: the chats run in compat.c, the other steps in compat_work.c.
 * Errors on these routes are Ollama's {"error":"..."} (the route table's dialect). */
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "cli/cli.h"
#include "http/compat.h"
#include "http/fields.h"
#include "http/handlers.h"
#include "util/clock.h"
#include "util/jsonw.h"

/* ---- rendering ---- */

/* The members every chunk starts with: model, created_at. */
static void ollama_head(jsonw *w, const compat_call *c)
{
    char now[48];
    compat_now_rfc3339(now, sizeof now);
    jsonw_key(w, "model");
    jsonw_string(w, c->model);
    jsonw_key(w, "created_at");
    jsonw_string(w, now);
}

/* The text of a chunk: chat's message or generate's response. */
static void ollama_text(jsonw *w, const compat_call *c, const char *p, size_t n)
{
    if (c->shape == COMPAT_OLLAMA_GENERATE) {
        jsonw_key(w, "response");
        jsonw_stringn(w, p, n);
        return;
    }
    jsonw_key(w, "message");
    jsonw_object_begin(w);
    jsonw_key(w, "role");
    jsonw_string(w, "assistant");
    jsonw_key(w, "content");
    jsonw_stringn(w, p, n);
    jsonw_object_end(w);
}

static bool ollama_piece(const compat_call *c, strbuf *sb, const char *p, size_t n)
{
    jsonw w;
    jsonw_init(&w, sb);
    jsonw_object_begin(&w);
    ollama_head(&w, c);
    ollama_text(&w, c, p, n);
    jsonw_key(&w, "done");
    jsonw_bool(&w, false);
    jsonw_object_end(&w);
    return jsonw_status(&w) == RAGD_OK && strbuf_append(sb, "\n", 1) == RAGD_OK;
}

static long long ollama_count(long long v) { return v > 0 ? v : 0; }

/* The done:true object with its counters (integers, durations in ns); text: the whole
 * answer (non-stream) or "" (a stream's last line). */
static bool ollama_done(const compat_call *c, strbuf *sb, const compat_final *f, const char *text, size_t len,
                        bool line)
{
    jsonw w;
    jsonw_init(&w, sb);
    jsonw_object_begin(&w);
    ollama_head(&w, c);
    ollama_text(&w, c, text, len);
    jsonw_key(&w, "done");
    jsonw_bool(&w, true);
    jsonw_key(&w, "done_reason");
    jsonw_string(&w, f->done_reason);
    const char *names[] = {"total_duration", "load_duration", "prompt_eval_count", "prompt_eval_duration",
                           "eval_count", "eval_duration"};
    long long values[] = {f->total_ns, f->load_ns, f->prompt_tokens, f->prompt_eval_ns, f->completion_tokens,
                          f->eval_ns};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        jsonw_key(&w, names[i]);
        jsonw_int(&w, ollama_count(values[i]));
    }
    if (f->rag)
        compat_write_rag_extras(&w, f->rag);
    jsonw_object_end(&w);
    return jsonw_status(&w) == RAGD_OK && (!line || strbuf_append(sb, "\n", 1) == RAGD_OK);
}

static bool ollama_final(const compat_call *c, strbuf *sb, const compat_final *f)
{
    return ollama_done(c, sb, f, "", 0, true);
}

static bool ollama_whole(const compat_call *c, strbuf *sb, const compat_final *f)
{
    return ollama_done(c, sb, f, f->text, f->len, false);
}

/* A failure after lines went out: a last {"error"} line and no done:true (as Ollama). */
static bool ollama_fail(const compat_call *c, strbuf *sb, const char *code, const char *message)
{
    (void)c;
    (void)code;
    jsonw w;
    jsonw_init(&w, sb);
    jsonw_object_begin(&w);
    jsonw_key(&w, "error");
    jsonw_string(&w, message ? message : "the LLM failed");
    jsonw_object_end(&w);
    return jsonw_status(&w) == RAGD_OK && strbuf_append(sb, "\n", 1) == RAGD_OK;
}

static const compat_renderer ollama_renderer = {.stream_type = "application/x-ndjson",
                                                .piece = ollama_piece,
                                                .final = ollama_final,
                                                .whole = ollama_whole,
                                                .fail = ollama_fail};

/* ---- parsing ---- */

/* The model field: required, of a sane form; copied into out. Replies 400 when not. */
static bool ollama_model(http_request *req, json_t *body, char out[COMPAT_MODEL_MAX + 1])
{
    json_t *m = json_object_get(body, "model");
    const char *model = json_string_value(m);
    if (!m || json_is_null(m) || (model && !model[0])) {
        http_reply_error(req, 400, "invalid_request", "model is required");
        return false;
    }
    return compat_model_copy(req, model, out);
}

/* An optional string field, "" allowed; replies 400 when it is another type. */
static bool ollama_text_field(http_request *req, json_t *body, const char *name, const char **out)
{
    json_t *v = json_object_get(body, name);
    *out = json_string_value(v);
    if (!v || json_is_null(v) || *out)
        return true;
    http_reply_error(req, 400, "invalid_request", "%s: must be a string", name);
    return false;
}

/* The fields chat and generate share: model, stream (default true), options, format,
 * keep_alive. body is kept by c. */
static bool ollama_chat_common(compat_call *c, json_t *body)
{
    http_request *req = c->req;
    if (json_object_set(c->hold, "body", body) != 0) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return false;
    }
    if (!ollama_model(req, body, c->model) || !fields_bool(req, body, "stream", true, &c->stream) ||
        !fields_object(req, body, "options", &c->options) || !fields_llm_options(req, c->options) ||
        !compat_no_tools(c, body))
        return false;
    json_t *format = json_object_get(body, "format");
    if (format && !json_is_null(format) && !json_is_string(format) && !json_is_object(format)) {
        http_reply_error(req, 400, "invalid_request", "format: \"json\" or a JSON schema object");
        return false;
    }
    json_t *keep = json_object_get(body, "keep_alive");
    if (keep && !json_is_null(keep) && !json_is_number(keep) && !json_is_string(keep)) {
        http_reply_error(req, 400, "invalid_request", "keep_alive: a number of seconds or a duration such as \"5m\"");
        return false;
    }
    bool no_format = !format || json_is_null(format) || (json_is_string(format) && json_string_length(format) == 0);
    c->format = no_format ? NULL : format; /* some clients send "" for none */
    c->keep_alive = keep && !json_is_null(keep) ? keep : NULL;
    return true;
}

static void ollama_chat_arrive(http_request *req, compat_shape shape)
{
    json_t *body = http_json_object(req);
    if (!body)
        return;
    compat_call *c = compat_call_new(req, &ollama_renderer, shape);
    bool ok = c && ollama_chat_common(c, body);
    json_t *msgs_in = json_object_get(body, "messages");
    if (ok && shape == COMPAT_OLLAMA_CHAT && (!msgs_in || (json_is_array(msgs_in) && json_array_size(msgs_in) == 0))) {
        /* Ollama: no messages only loads (or, with keep_alive 0, unloads) the model; nothing
         * to load here */
        ok = false;
        bool unload = c->keep_alive && json_is_number(c->keep_alive) && json_number_value(c->keep_alive) == 0;
        char now[48];
        compat_now_rfc3339(now, sizeof now);
        http_reply_json(req, 200, json_pack("{s:s,s:s,s:{s:s,s:s},s:b,s:s}", "model", c->model, "created_at", now,
                                            "message", "role", "assistant", "content", "", "done", 1, "done_reason",
                                            unload ? "unload" : "load"));
    } else if (ok && shape == COMPAT_OLLAMA_CHAT) {
        ok = compat_messages(c, msgs_in);
    } else if (ok) {
        /* generate: system and prompt as a conversation of one question */
        const char *system = NULL, *prompt = NULL;
        ok = ollama_text_field(req, body, "system", &system) && ollama_text_field(req, body, "prompt", &prompt);
        json_t *images = json_object_get(body, "images"); /* the upstream API carries none: not dropped silently */
        if (ok && images && !json_is_null(images) && !(json_is_array(images) && json_array_size(images) == 0)) {
            http_reply_error(req, 400, "invalid_request", "images: images are not supported");
            ok = false;
        }
        /* generate is answered as a chat: a raw prompt (already templated, e.g. an editor's
         * fill-in-the-middle tokens), a suffix or a template would be answered wrongly */
        json_t *suffix = json_object_get(body, "suffix"), *tmpl = json_object_get(body, "template");
        if (ok && (json_is_true(json_object_get(body, "raw")) || (json_is_string(suffix) && json_string_length(suffix) > 0) ||
                   (json_is_string(tmpl) && json_string_length(tmpl) > 0))) {
            http_reply_error(req, 400, "invalid_request",
                             "raw, suffix and template are not supported: ragd answers /api/generate as a chat "
                             "(for completion and fill-in-the-middle, point the client at Ollama itself)");
            ok = false;
        }
        json_t *msgs = ok ? json_array() : NULL;
        if (ok && system)
            json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "system", "content", system));
        if (ok)
            json_array_append_new(msgs, json_pack("{s:s,s:s}", "role", "user", "content", prompt ? prompt : ""));
        if (ok && (!msgs || json_array_size(msgs) != (system ? 2u : 1u))) {
            http_reply_error(req, 503, "overloaded", "out of memory");
            ok = false;
        }
        if (ok && (!prompt || !prompt[0])) { /* Ollama: an empty prompt only loads the model */
            ok = false;
            json_decref(msgs);
            msgs = NULL;
            char now[48];
            compat_now_rfc3339(now, sizeof now);
            http_reply_json(req, 200, json_pack("{s:s,s:s,s:s,s:b,s:s}", "model", c->model, "created_at", now,
                                                "response", "", "done", 1, "done_reason", "load"));
        }
        ok = ok && compat_messages(c, msgs);
        json_decref(msgs);
    }
    json_decref(body);
    if (ok)
        compat_chat_run(c);
}

void handlers_ollama_chat(http_request *req) { ollama_chat_arrive(req, COMPAT_OLLAMA_CHAT); }
void handlers_ollama_generate(http_request *req) { ollama_chat_arrive(req, COMPAT_OLLAMA_GENERATE); }

void handlers_ollama_root(http_request *req)
{
    static const char text[] = "Ollama is running";
    http_reply_raw(req, 200, "text/plain; charset=utf-8", text, sizeof text - 1);
}

/* ---- models ---- */

/* A stable 64-hex-digit digest of a collection's name and version (not a content hash:
 * it changes when the collection does). */
static void ollama_digest(const store_collection *c, char out[65])
{
    unsigned long long h = 1469598103934665603ULL;
    for (int round = 0; round < 4; round++) {
        for (const char *p = c->name; *p; p++)
            h = (h ^ (unsigned char)*p) * 1099511628211ULL;
        h = (h ^ (unsigned long long)c->version ^ (unsigned long long)round) * 1099511628211ULL;
        snprintf(out + 16 * round, 17, "%016llx", h);
    }
}

static json_t *ollama_details(const store_collection *c)
{
    char size[32];
    snprintf(size, sizeof size, "%lld docs", (long long)c->documents);
    return json_pack("{s:s,s:s,s:s,s:[s],s:s,s:s}", "parent_model", "", "format", "ragd", "family", "rag", "families",
                     "rag", "parameter_size", size, "quantization_level", "");
}

static json_t *ollama_tag(const store_collection *c)
{
    char name[STORE_NAME_MAX + 16], digest[65];
    snprintf(name, sizeof name, "rag/%s:latest", c->name);
    ollama_digest(c, digest);
    return json_pack("{s:s,s:s,s:s,s:I,s:s,s:o}", "name", name, "model", name, "modified_at", c->created_at, "size",
                     (json_int_t)c->chunks, "digest", digest, "details", ollama_details(c));
}

static void ollama_tags_render(http_request *req, const store_collection *cs, size_t n, json_t *backend)
{
    json_t *models = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(models, ollama_tag(&cs[i]));
    size_t i;
    json_t *m;
    json_array_foreach(backend, i, m) {
        const char *name = json_string_value(json_object_get(m, "name"));
        if (name && strncmp(name, "rag/", 4) != 0) /* a collection's name is ragd's */
            json_array_append(models, m);
    }
    handlers_reply_json_capped(req, 200, json_pack("{s:o}", "models", models));
}

void handlers_ollama_tags(http_request *req) { compat_list_models(req, ollama_tags_render); }

static void ollama_show_collection(http_request *req, const store_collection *c, const char *model)
{
    if (!c) {
        http_reply_error(req, 404, "model_not_found", "model '%s' not found", model);
        return;
    }
    app *a = req->app;
    char modelfile[512];
    snprintf(modelfile, sizeof modelfile,
             "# ragd collection %s: retrieval-augmented answers from its %lld documents\nFROM %s\n", c->name,
             (long long)c->documents, a->cfg.llm_model[0] ? a->cfg.llm_model : "extractive");
    json_t *info = json_pack("{s:s,s:s,s:I,s:I,s:i,s:s,s:s,s:s,s:i,s:i}", "general.architecture", "rag",
                             "general.basename", c->name, "rag.documents", (json_int_t)c->documents, "rag.chunks",
                             (json_int_t)c->chunks, "rag.embedding_length", c->dim, "rag.embed_model", c->embed_model,
                             "rag.llm", a->cfg.llm_model, "rag.generator", a->generator_name ? a->generator_name : "",
                             "rag.chunk_size", c->chunk_size, "rag.chunk_overlap", c->chunk_overlap);
    json_t *body = json_pack("{s:s,s:s,s:s,s:o,s:o,s:[s,s],s:s}", "modelfile", modelfile, "parameters", "", "template",
                             "{{ .Prompt }}", "details", ollama_details(c), "model_info", info, "capabilities",
                             "completion", "embedding", "modified_at", c->created_at);
    http_reply_json(req, 200, body);
}

static void ollama_show_backend(http_request *req, llm_status st, json_t *reply, const char *message,
                                const char *model)
{
    if (st == LLM_OK && json_is_object(reply))
        http_reply_json(req, 200, json_incref(reply));
    else if (st == LLM_NOT_FOUND || !req->app->generator)
        http_reply_error(req, 404, "model_not_found", "model '%s' not found", model);
    else
        compat_reply_llm_status(req, st, message, model);
}

void handlers_ollama_show(http_request *req)
{
    json_t *body = http_json_object(req);
    if (!body)
        return;
    char model[COMPAT_MODEL_MAX + 1], db[STORE_NAME_MAX + 1];
    /* older clients send "name" */
    if (!json_object_get(body, "model") && json_is_string(json_object_get(body, "name")))
        json_object_set(body, "model", json_object_get(body, "name"));
    if (ollama_model(req, body, model)) {
        if (compat_rag_db(model, db))
            compat_show_collection(req, db, model, ollama_show_collection);
        else
            compat_meta(req, LLM_META_SHOW, model, ollama_show_backend);
    }
    json_decref(body);
}

static void ollama_version_render(http_request *req, llm_status st, json_t *reply, const char *message,
                                  const char *model)
{
    (void)message;
    (void)model;
    const char *v = st == LLM_OK ? json_string_value(json_object_get(reply, "version")) : NULL;
    http_reply_json(req, 200, json_pack("{s:s,s:s}", "version", v ? v : COMPAT_OLLAMA_VERSION, "ragd_version",
                                        RAGD_VERSION));
}

void handlers_ollama_version(http_request *req) { compat_meta(req, LLM_META_VERSION, NULL, ollama_version_render); }

static void ollama_ps_render(http_request *req, llm_status st, json_t *reply, const char *message, const char *model)
{
    (void)message;
    (void)model;
    json_t *models = st == LLM_OK && json_is_array(reply) ? json_incref(reply) : json_array();
    handlers_reply_json_capped(req, 200, json_pack("{s:o}", "models", models));
}

void handlers_ollama_ps(http_request *req) { compat_meta(req, LLM_META_RUNNING, NULL, ollama_ps_render); }

/* ---- embeddings ---- */

static void ollama_embed_render(http_request *req, const char *model, const float *v, size_t n, size_t dim,
                                size_t tokens)
{
    strbuf sb;
    strbuf_init(&sb, req->app->cfg.max_response_bytes);
    jsonw w;
    jsonw_init(&w, &sb);
    jsonw_object_begin(&w);
    jsonw_key(&w, "model");
    jsonw_string(&w, model);
    jsonw_key(&w, "embeddings");
    jsonw_array_begin(&w);
    jsonw_array_end(&w);
    bool ok = jsonw_status(&w) == RAGD_OK;
    if (ok && n > 0) { /* the vectors go inside the brackets just written */
        strbuf_truncate(&sb, sb.len - 1);
        for (size_t i = 0; ok && i < n; i++)
            ok = (i == 0 || strbuf_append(&sb, ",", 1) == RAGD_OK) && compat_write_vector(&sb, v + i * dim, dim);
        ok = ok && strbuf_append(&sb, "]", 1) == RAGD_OK;
    }
    ok = ok && strbuf_appendf(&sb, ",\"total_duration\":%lld,\"load_duration\":0,\"prompt_eval_count\":%zu}",
                              (long long)((clock_now_ms() - req->t_start_ms) * 1e6), tokens) == RAGD_OK;
    compat_reply_built(req, &sb, ok, "embeddings");
}

static void ollama_embedding_render(http_request *req, const char *model, const float *v, size_t n, size_t dim,
                                    size_t tokens)
{
    (void)model;
    (void)tokens;
    strbuf sb;
    strbuf_init(&sb, req->app->cfg.max_response_bytes);
    bool ok = strbuf_appends(&sb, "{\"embedding\":") == RAGD_OK &&
              (n > 0 ? compat_write_vector(&sb, v, dim) : strbuf_appends(&sb, "[]") == RAGD_OK) &&
              strbuf_append(&sb, "}", 1) == RAGD_OK;
    compat_reply_built(req, &sb, ok, "embedding");
}

/* The texts of an input: a string (one text, none when "") or a list of strings. Replies
 * 400 and returns false otherwise; *texts and *lens are malloc'd (the caller's). */
bool handlers_compat_inputs(http_request *req, json_t *input, bool empty_string_is_none, const char ***texts,
                            size_t **lens, size_t *n)
{
    *texts = NULL;
    *lens = NULL;
    *n = 0;
    if (!input || json_is_null(input) || (json_is_string(input) && json_string_length(input) == 0 && empty_string_is_none))
        return true;
    size_t count = json_is_array(input) ? json_array_size(input) : 1;
    if (!json_is_array(input) && !json_is_string(input)) {
        http_reply_error(req, 400, "invalid_request", "invalid input type");
        return false;
    }
    if (count > COMPAT_MAX_INPUTS) {
        http_reply_error(req, 400, "invalid_request", "input: at most %d texts, not %zu", COMPAT_MAX_INPUTS, count);
        return false;
    }
    if (count == 0)
        return true;
    *texts = calloc(count, sizeof **texts);
    *lens = calloc(count, sizeof **lens);
    if (!*texts || !*lens) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        goto fail;
    }
    for (size_t i = 0; i < count; i++) {
        json_t *t = json_is_array(input) ? json_array_get(input, i) : input;
        if (!json_is_string(t)) {
            http_reply_error(req, 400, "invalid_request", "invalid input type");
            goto fail;
        }
        (*texts)[i] = json_string_value(t);
        (*lens)[i] = json_string_length(t);
    }
    *n = count;
    return true;
fail:
    free(*texts);
    free(*lens);
    *texts = NULL;
    *lens = NULL;
    return false;
}

void handlers_ollama_embed(http_request *req)
{
    json_t *body = http_json_object(req);
    if (!body)
        return;
    char model[COMPAT_MODEL_MAX + 1];
    const char **texts = NULL;
    size_t *lens = NULL, n = 0;
    if (ollama_model(req, body, model) &&
        handlers_compat_inputs(req, json_object_get(body, "input"), true, &texts, &lens, &n)) {
        compat_embed_run(req, model, body, texts, lens, n, ollama_embed_render);
        return;
    }
    json_decref(body);
}

void handlers_ollama_embeddings(http_request *req)
{
    json_t *body = http_json_object(req);
    if (!body)
        return;
    char model[COMPAT_MODEL_MAX + 1];
    json_t *prompt = json_object_get(body, "prompt");
    const char **texts = NULL;
    size_t *lens = NULL, n = 0;
    if (!ollama_model(req, body, model)) {
        json_decref(body);
        return;
    }
    if (prompt && !json_is_null(prompt) && !json_is_string(prompt)) {
        http_reply_error(req, 400, "invalid_request",
                         "json: cannot unmarshal %s into Go struct field EmbeddingRequest.prompt of type string",
                         json_is_array(prompt) ? "array" : json_is_object(prompt) ? "object" : json_is_boolean(prompt) ? "bool" : "number");
        json_decref(body);
        return;
    }
    if (handlers_compat_inputs(req, prompt, true, &texts, &lens, &n)) {
        compat_embed_run(req, model, body, texts, lens, n, ollama_embedding_render);
        return;
    }
    json_decref(body);
}
