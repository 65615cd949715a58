#include "upstream/openai.h"

#include "upstream/codec.h"
#include "upstream/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

char *openai_embed_body(const char *model, const char *const *texts, const size_t *lens, size_t n)
{
    json_t *input = wire_text_array(texts, lens, n);
    return wire_dump(input ? json_pack("{s:s, s:o, s:s}", "model", model, "input", input, "encoding_format", "float")
                           : NULL);
}

ragd_err openai_embed_parse(const char *body, size_t len, size_t n_expected, size_t *dim, float **vectors, char *err,
                            size_t errlen)
{
    *vectors = NULL;
    *dim = 0;
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *data = json_object_get(root, "data");
    float *out = NULL;
    bool *seen = NULL;
    ragd_err e = RAGD_EINVAL;
    if (!json_is_array(data) || json_array_size(data) != n_expected) {
        snprintf(err, errlen, "embeddings reply has %zu items for %zu inputs", json_is_array(data) ? json_array_size(data) : 0,
                 n_expected);
        goto out;
    }
    size_t d = n_expected ? json_array_size(json_object_get(json_array_get(data, 0), "embedding")) : 0;
    if (n_expected && (d == 0 || d > 8192)) {
        snprintf(err, errlen, "embeddings reply vector dimension %zu is not 1..8192", d);
        goto out;
    }
    size_t total = n_expected * d;
    out = malloc((total > 0 ? total : 1) * sizeof *out);
    seen = calloc(n_expected ? n_expected : 1, sizeof *seen);
    if (!out || !seen) {
        e = RAGD_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n_expected; i++) {
        json_t *item = json_array_get(data, i);
        json_t *vec = json_object_get(item, "embedding");
        json_t *index = json_object_get(item, "index");
        size_t at = json_is_integer(index) ? (size_t)json_integer_value(index) : i;
        if (at >= n_expected || seen[at] || wire_vector(vec, d, out + at * d) != RAGD_OK) {
            snprintf(err, errlen, "embeddings reply item %zu has a bad vector or index", i);
            goto out;
        }
        seen[at] = true;
    }
    *vectors = out;
    *dim = d;
    out = NULL;
    e = RAGD_OK;
out:
    free(out);
    free(seen);
    json_decref(root);
    return e;
}

/* format ("json" or a schema object) as response_format; NULL for anything else. */
static json_t *openai_response_format(json_t *format)
{
    if (json_is_string(format) && strcmp(json_string_value(format), "json") == 0)
        return json_pack("{s:s}", "type", "json_object");
    if (json_is_object(format))
        return json_pack("{s:s, s:{s:s, s:O}}", "type", "json_schema", "json_schema", "name", "answer", "schema", format);
    return NULL;
}

char *openai_chat_body(const char *model, json_t *messages, json_t *options, json_t *format, bool stream)
{
    json_t *body = json_pack("{s:s, s:O, s:b}", "model", model, "messages", messages, "stream", stream);
    if (body && stream && json_object_set_new(body, "stream_options", json_pack("{s:b}", "include_usage", 1)) != 0)
        body = wire_drop(body);
    /* Ollama's option names mapped to OpenAI's; the order makes num_predict win over max_tokens. */
    static const char *const from[] = {"temperature", "top_p", "seed", "stop", "max_tokens", "num_predict"};
    static const char *const to[] = {"temperature", "top_p", "seed", "stop", "max_tokens", "max_tokens"};
    for (size_t i = 0; body && json_is_object(options) && i < sizeof from / sizeof *from; i++) {
        json_t *v = json_object_get(options, from[i]);
        if (v && json_object_set(body, to[i], v) != 0)
            body = wire_drop(body);
    }
    if (body && format) {
        json_t *rf = openai_response_format(format);
        if (rf && json_object_set_new(body, "response_format", rf) != 0)
            body = wire_drop(body);
    }
    return wire_dump(body);
}

/* ---- model metadata (/v1/models) ---- */

static json_t *openai_tags_entry(const char *id, json_t *created)
{
    char when[32] = "";
    if (json_is_integer(created) && json_integer_value(created) >= 0) {
        time_t t = (time_t)json_integer_value(created);
        struct tm tm;
        if (gmtime_r(&t, &tm))
            strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
    }
    return json_pack("{s:s, s:s, s:s, s:i, s:s, s:{s:s, s:s, s:s, s:s}}", "name", id, "model", id, "modified_at", when,
                     "size", 0, "digest", "", "details", "format", "", "family", "", "parameter_size", "",
                     "quantization_level", "");
}

ragd_err openai_models_parse(const char *body, size_t len, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *data = json_object_get(root, "data");
    json_t *list = json_array();
    ragd_err e = RAGD_EINVAL;
    if (!list) {
        e = RAGD_ENOMEM;
        goto out;
    }
    if (!json_is_array(data)) {
        snprintf(err, errlen, "models reply has no \"data\" array");
        goto out;
    }
    size_t i;
    json_t *m;
    json_array_foreach(data, i, m) {
        const char *id = json_string_value(json_object_get(m, "id"));
        if (!id) {
            snprintf(err, errlen, "models reply item %zu has no string \"id\"", i);
            goto out;
        }
        if (json_array_append_new(list, openai_tags_entry(id, json_object_get(m, "created"))) != 0) {
            e = RAGD_ENOMEM;
            goto out;
        }
    }
    *out = list;
    list = NULL;
    e = RAGD_OK;
out:
    json_decref(list);
    json_decref(root);
    return e;
}

/* a and b name one model: equal, or equal once ":latest" is taken off either. */
static bool openai_same_model(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b), tag = strlen(":latest");
    if (la >= tag && strcmp(a + la - tag, ":latest") == 0)
        la -= tag;
    if (lb >= tag && strcmp(b + lb - tag, ":latest") == 0)
        lb -= tag;
    return la == lb && strncmp(a, b, la) == 0;
}

json_t *openai_show_from_models(const json_t *entries, const char *model)
{
    size_t i;
    json_t *m;
    json_array_foreach(entries, i, m) {
        const char *name = json_string_value(json_object_get(m, "name"));
        if (name && openai_same_model(name, model))
            return json_pack("{s:s, s:s, s:s, s:O, s:{}, s:[s], s:O}", "modelfile", "", "parameters", "", "template", "",
                             "details", json_object_get(m, "details"), "model_info", "capabilities", "completion",
                             "modified_at", json_object_get(m, "modified_at"));
    }
    return NULL;
}

void openai_error_message(const char *body, size_t len, char *out, size_t outlen)
{
    json_t *root = body ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *err = json_object_get(root, "error");
    const char *msg = json_is_string(err) ? json_string_value(err) : json_string_value(json_object_get(err, "message"));
    if (msg)
        snprintf(out, outlen, "%s", msg);
    else
        wire_plain_message(body, len, out, outlen);
    json_decref(root);
}

/* ---- the SSE chat stream ---- */

static bool openai_stream_event(const char *event, const char *data, size_t len, void *arg)
{
    (void)event;
    openai_stream *s = arg;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        s->state = OPENAI_STREAM_DONE;
        return false;
    }
    json_t *chunk = json_loadb(data, len, 0, NULL);
    bool go_on = false;
    if (!json_is_object(chunk)) {
        s->state = OPENAI_STREAM_BAD;
        goto out;
    }
    json_t *error = json_object_get(chunk, "error");
    if (error) {
        s->state = OPENAI_STREAM_ERROR;
        const char *msg = json_is_string(error) ? json_string_value(error) : json_string_value(json_object_get(error, "message"));
        snprintf(s->error, sizeof s->error, "%s", msg ? msg : "error");
        goto out;
    }
    json_t *choice = json_array_get(json_object_get(chunk, "choices"), 0);
    json_t *text = json_object_get(json_object_get(choice, "delta"), "content");
    json_t *usage = json_object_get(chunk, "usage");
    if (json_is_object(usage)) {
        s->prompt_tokens = wire_count(json_object_get(usage, "prompt_tokens"));
        s->completion_tokens = wire_count(json_object_get(usage, "completion_tokens"));
    }
    const char *reason = json_string_value(json_object_get(choice, "finish_reason"));
    if (reason)
        snprintf(s->finish_reason, sizeof s->finish_reason, "%s", reason);
    if (json_is_string(text) && json_string_length(text) > 0 &&
        s->on_text(json_string_value(text), json_string_length(text), s->arg) != 0)
        goto out;
    go_on = true;
out:
    json_decref(chunk);
    return go_on;
}

void openai_stream_init(openai_stream *s, int (*on_text)(const char *p, size_t n, void *arg), void *arg)
{
    memset(s, 0, sizeof *s);
    s->on_text = on_text;
    s->arg = arg;
    s->prompt_tokens = s->completion_tokens = -1;
    sse_init(&s->sse, OPENAI_MAX_EVENT, openai_stream_event, s);
}

void openai_stream_cleanup(openai_stream *s) { sse_cleanup(&s->sse); }

ragd_err openai_stream_feed(openai_stream *s, const char *p, size_t n)
{
    if (s->state != OPENAI_STREAM_RUNNING)
        return RAGD_ECLOSED;
    ragd_err e = sse_feed(&s->sse, p, n);
    if (e == RAGD_ETOOBIG)
        s->state = OPENAI_STREAM_BAD;
    return e ? RAGD_ECLOSED : RAGD_OK;
}

openai_stream_state openai_stream_end(openai_stream *s)
{
    if (s->state == OPENAI_STREAM_RUNNING)
        s->state = OPENAI_STREAM_NO_DONE;
    return s->state;
}

/* ---- the codec (codec.h) ---- */

static char *openai_codec_chat_body(const char *model, const llm_chat_request *rq)
{
    return openai_chat_body(model, rq->messages, rq->options, rq->format, true); /* keep_alive: Ollama only */
}

static void *openai_codec_stream_new(codec_text_fn on_text, void *arg)
{
    openai_stream *s = malloc(sizeof *s);
    if (s)
        openai_stream_init(s, on_text, arg);
    return s;
}

static void openai_codec_stream_free(void *s)
{
    if (!s)
        return;
    openai_stream_cleanup(s);
    free(s);
}

static bool openai_codec_stream_feed(void *s, const char *p, size_t n) { return openai_stream_feed(s, p, n) == RAGD_OK; }

static breaker_stream openai_codec_stream_end(void *stream, llm_chat_stats *st, bool *model_loaded, char *message,
                                              size_t mlen)
{
    openai_stream *s = stream;
    openai_stream_state end = openai_stream_end(s);
    *model_loaded = false; /* the format does not say */
    st->prompt_tokens = s->prompt_tokens;
    st->completion_tokens = s->completion_tokens;
    snprintf(st->done_reason, sizeof st->done_reason, "%.15s", s->finish_reason);
    if (end == OPENAI_STREAM_ERROR)
        snprintf(message, mlen, "backend error mid-stream: %s", s->error);
    return end == OPENAI_STREAM_DONE    ? BREAKER_STREAM_DONE
           : end == OPENAI_STREAM_ERROR ? BREAKER_STREAM_ERROR_LINE
                                        : BREAKER_STREAM_NO_DONE;
}

static bool openai_codec_is_busy(int status, const char *body, size_t len)
{
    (void)status; /* the breaker counts it only on a 503; a 429 is OVERLOAD by itself */
    return breaker_body_is_busy(body ? body : "", len);
}

static ragd_err openai_codec_meta_request(llm_meta_kind what, const char *model, codec_meta_request *out)
{
    (void)model;
    memset(out, 0, sizeof *out);
    out->path = "/v1/models"; /* the list answers MODELS and SHOW */
    if (what == LLM_META_RUNNING) { /* no such endpoint: nothing is known to be loaded */
        out->local = true;
        out->local_reply = json_array();
        out->local_status = LLM_OK;
        if (!out->local_reply)
            return RAGD_ENOMEM;
    } else if (what == LLM_META_VERSION) {
        out->local = true;
        out->local_status = LLM_REJECTED;
        out->local_message = "an OpenAI-compatible backend has no version endpoint";
    }
    return RAGD_OK;
}

static llm_status openai_codec_meta_parse(llm_meta_kind what, const char *model, const char *body, size_t len,
                                          json_t **out, char *message, size_t mlen)
{
    ragd_err e = openai_models_parse(body, len, out, message, mlen);
    if (e != RAGD_OK) {
        if (e == RAGD_ENOMEM)
            snprintf(message, mlen, "out of memory");
        return LLM_BAD_REPLY;
    }
    if (what != LLM_META_SHOW)
        return LLM_OK;
    json_t *list = *out;
    *out = openai_show_from_models(list, model);
    json_decref(list);
    if (!*out) {
        snprintf(message, mlen, "model '%s' not found", model);
        return LLM_NOT_FOUND;
    }
    return LLM_OK;
}

const upstream_codec openai_codec = {
    .name = "openai",
    .embed_path = "/v1/embeddings",
    .chat_path = "/v1/chat/completions",
    .probe_path = "/v1/models",
    .embed_body = openai_embed_body,
    .embed_parse = openai_embed_parse,
    .chat_body = openai_codec_chat_body,
    .stream_new = openai_codec_stream_new,
    .stream_free = openai_codec_stream_free,
    .stream_feed = openai_codec_stream_feed,
    .stream_end = openai_codec_stream_end,
    .error_message = openai_error_message,
    .is_busy = openai_codec_is_busy,
    .meta_request = openai_codec_meta_request,
    .meta_parse = openai_codec_meta_parse,
};
