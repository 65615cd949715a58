#include "upstream/ollama.h"

#include "upstream/codec.h"
#include "upstream/wire.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *ollama_embed_body(const char *model, const char *const *texts, const size_t *lens, size_t n)
{
    json_t *input = wire_text_array(texts, lens, n);
    return wire_dump(input ? json_pack("{s:s, s:o, s:b}", "model", model, "input", input, "truncate", 1) : NULL);
}

ragd_err ollama_embed_parse(const char *body, size_t len, size_t n_expected, size_t *dim, float **vectors, char *err,
                            size_t errlen)
{
    *vectors = NULL;
    *dim = 0;
    json_error_t jerr;
    json_t *root = json_loadb(body, len, 0, &jerr);
    json_t *embeddings = json_object_get(root, "embeddings");
    float *out = NULL;
    ragd_err e = RAGD_EINVAL;
    if (!json_is_array(embeddings)) {
        snprintf(err, errlen, "embed reply has no \"embeddings\" array");
        goto out;
    }
    if (json_array_size(embeddings) != n_expected) {
        snprintf(err, errlen, "embed reply has %zu vectors for %zu inputs", json_array_size(embeddings), n_expected);
        goto out;
    }
    size_t d = n_expected ? json_array_size(json_array_get(embeddings, 0)) : 0;
    if (n_expected && (d == 0 || d > 8192)) {
        snprintf(err, errlen, "embed reply vector dimension %zu is not 1..8192", d);
        goto out;
    }
    size_t total = n_expected * d;
    out = malloc((total > 0 ? total : 1) * sizeof *out);
    if (!out) {
        e = RAGD_ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < n_expected; i++) {
        json_t *vec = json_array_get(embeddings, i);
        if (!json_is_array(vec) || json_array_size(vec) != d) {
            snprintf(err, errlen, "embed reply vector %zu has another dimension than %zu", i, d);
            goto out;
        }
        if (wire_vector(vec, d, out + i * d) != RAGD_OK) {
            snprintf(err, errlen, "embed reply vector %zu holds a value that is not a finite number", i);
            goto out;
        }
    }
    *vectors = out;
    *dim = d;
    out = NULL;
    e = RAGD_OK;
out:
    free(out);
    json_decref(root);
    return e;
}

char *ollama_chat_body(const char *model, json_t *messages, json_t *options, json_t *format, json_t *keep_alive,
                       bool stream)
{
    json_t *body = json_pack("{s:s, s:O, s:b}", "model", model, "messages", messages, "stream", stream);
    if (body && options && json_object_set(body, "options", options) != 0)
        body = wire_drop(body);
    if (body && format && json_object_set(body, "format", format) != 0)
        body = wire_drop(body);
    if (body && keep_alive && json_object_set(body, "keep_alive", keep_alive) != 0)
        body = wire_drop(body);
    return wire_dump(body);
}

/* ---- model metadata (/api/tags, /api/ps, /api/show, /api/version) ---- */

ragd_err ollama_models_parse(const char *body, size_t len, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *models = json_object_get(root, "models");
    ragd_err e = RAGD_EINVAL;
    if (!json_is_array(models)) {
        snprintf(err, errlen, "models reply has no \"models\" array");
        goto out;
    }
    size_t i;
    json_t *m;
    json_array_foreach(models, i, m) {
        json_t *name = json_object_get(m, "name");
        json_t *id = json_object_get(m, "model");
        if (!json_is_string(name) || (id && !json_is_string(id))) {
            snprintf(err, errlen, "models reply entry %zu has no string \"name\"", i);
            goto out;
        }
        if (!id && json_object_set(m, "model", name) != 0) {
            e = RAGD_ENOMEM;
            goto out;
        }
    }
    *out = json_incref(models);
    e = RAGD_OK;
out:
    json_decref(root);
    return e;
}

ragd_err ollama_show_parse(const char *body, size_t len, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *details = json_object_get(root, "details");
    json_t *info = json_object_get(root, "model_info");
    json_t *caps = json_object_get(root, "capabilities");
    if (!json_is_object(root) || (details && !json_is_object(details)) || (info && !json_is_object(info)) ||
        (caps && !json_is_array(caps))) {
        snprintf(err, errlen, "show reply is not an object with details, model_info and capabilities");
        json_decref(root);
        return RAGD_EINVAL;
    }
    *out = root;
    return RAGD_OK;
}

/* A version string as Ollama writes them ("0.12.0", "0.5.7-rc1+local"). */
static bool ollama_version_ok(const char *v)
{
    size_t n = strlen(v);
    if (n == 0 || n > OLLAMA_VERSION_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!isalnum((unsigned char)v[i]) && !strchr(".+_-", v[i]))
            return false;
    return true;
}

ragd_err ollama_version_parse(const char *body, size_t len, json_t **out, char *err, size_t errlen)
{
    *out = NULL;
    json_t *root = json_loadb(body, len, 0, NULL);
    const char *v = json_string_value(json_object_get(root, "version"));
    if (v && !ollama_version_ok(v))
        v = NULL; /* it is shown to clients: a backend that lies gets no say */
    *out = v ? json_pack("{s:s}", "version", v) : NULL;
    json_decref(root);
    if (!v) {
        snprintf(err, errlen, "version reply has no \"version\" of 1-%d characters [0-9A-Za-z.+_-]",
                 OLLAMA_VERSION_MAX);
        return RAGD_EINVAL;
    }
    return *out ? RAGD_OK : RAGD_ENOMEM;
}

void ollama_error_message(const char *body, size_t len, char *out, size_t outlen)
{
    json_t *root = body ? json_loadb(body, len, 0, NULL) : NULL;
    const char *msg = json_string_value(json_object_get(root, "error"));
    if (msg)
        snprintf(out, outlen, "%s", msg);
    else
        wire_plain_message(body, len, out, outlen);
    json_decref(root);
}

bool ollama_is_busy(int status, const char *message)
{
    return status == 503 && message && strstr(message, "maximum pending requests exceeded");
}

/* ---- the NDJSON chat stream ---- */

static int ollama_stream_line(const char *line, size_t len, void *arg)
{
    ollama_stream *s = arg;
    if (len == 0)
        return 0;
    json_t *chunk = json_loadb(line, len, 0, NULL);
    int stop = 1;
    if (!json_is_object(chunk)) {
        s->state = OLLAMA_STREAM_BAD;
        goto out;
    }
    json_t *error = json_object_get(chunk, "error");
    if (error) {
        s->state = OLLAMA_STREAM_ERROR_LINE;
        snprintf(s->error, sizeof s->error, "%s", json_is_string(error) ? json_string_value(error) : "error");
        goto out;
    }
    /* /api/chat puts the text in message.content, /api/generate in response. */
    json_t *text = json_object_get(json_object_get(chunk, "message"), "content");
    if (!text)
        text = json_object_get(chunk, "response");
    if (json_is_string(text) && json_string_length(text) > 0 &&
        s->on_text(json_string_value(text), json_string_length(text), s->arg) != 0)
        goto out; /* the consumer stopped; state stays RUNNING */
    if (json_is_true(json_object_get(chunk, "done"))) {
        s->state = OLLAMA_STREAM_DONE;
        const char *reason = json_string_value(json_object_get(chunk, "done_reason"));
        snprintf(s->done_reason, sizeof s->done_reason, "%s", reason ? reason : "");
        s->load_duration_ns = wire_count(json_object_get(chunk, "load_duration"));
        s->prompt_eval_count = wire_count(json_object_get(chunk, "prompt_eval_count"));
        s->prompt_eval_duration_ns = wire_count(json_object_get(chunk, "prompt_eval_duration"));
        s->eval_count = wire_count(json_object_get(chunk, "eval_count"));
        s->eval_duration_ns = wire_count(json_object_get(chunk, "eval_duration"));
        goto out;
    }
    stop = 0;
out:
    json_decref(chunk);
    return stop;
}

void ollama_stream_init(ollama_stream *s, int (*on_text)(const char *p, size_t n, void *arg), void *arg)
{
    memset(s, 0, sizeof *s);
    s->on_text = on_text;
    s->arg = arg;
    s->load_duration_ns = s->prompt_eval_count = s->prompt_eval_duration_ns = -1;
    s->eval_count = s->eval_duration_ns = -1;
    lines_init(&s->lines, OLLAMA_MAX_LINE, ollama_stream_line, s);
}

void ollama_stream_cleanup(ollama_stream *s) { lines_cleanup(&s->lines); }

ragd_err ollama_stream_feed(ollama_stream *s, const char *p, size_t n)
{
    if (s->state != OLLAMA_STREAM_RUNNING)
        return RAGD_ECLOSED;
    ragd_err e = lines_feed(&s->lines, p, n);
    if (e == RAGD_ETOOBIG)
        s->state = OLLAMA_STREAM_BAD;
    return e ? RAGD_ECLOSED : RAGD_OK;
}

ollama_stream_state ollama_stream_end(ollama_stream *s)
{
    if (s->state == OLLAMA_STREAM_RUNNING && lines_finish(&s->lines) == RAGD_ETOOBIG)
        s->state = OLLAMA_STREAM_BAD;
    if (s->state == OLLAMA_STREAM_RUNNING)
        s->state = OLLAMA_STREAM_NO_DONE;
    return s->state;
}

/* ---- the codec (codec.h) ---- */

static char *ollama_codec_chat_body(const char *model, const llm_chat_request *rq)
{
    return ollama_chat_body(model, rq->messages, rq->options, rq->format, rq->keep_alive, true);
}

static void *ollama_codec_stream_new(codec_text_fn on_text, void *arg)
{
    ollama_stream *s = malloc(sizeof *s);
    if (s)
        ollama_stream_init(s, on_text, arg);
    return s;
}

static void ollama_codec_stream_free(void *s)
{
    if (!s)
        return;
    ollama_stream_cleanup(s);
    free(s);
}

static bool ollama_codec_stream_feed(void *s, const char *p, size_t n) { return ollama_stream_feed(s, p, n) == RAGD_OK; }

static breaker_stream ollama_codec_stream_end(void *stream, llm_chat_stats *st, bool *model_loaded, char *message,
                                              size_t mlen)
{
    ollama_stream *s = stream;
    ollama_stream_state end = ollama_stream_end(s);
    *model_loaded = s->load_duration_ns > 0;
    st->prompt_tokens = s->prompt_eval_count;
    st->completion_tokens = s->eval_count;
    st->load_ns = s->load_duration_ns;
    st->prompt_eval_ns = s->prompt_eval_duration_ns;
    st->eval_ns = s->eval_duration_ns;
    snprintf(st->done_reason, sizeof st->done_reason, "%.15s", s->done_reason);
    if (end == OLLAMA_STREAM_ERROR_LINE)
        snprintf(message, mlen, "backend error mid-stream: %s", s->error);
    return end == OLLAMA_STREAM_DONE         ? BREAKER_STREAM_DONE
           : end == OLLAMA_STREAM_ERROR_LINE ? BREAKER_STREAM_ERROR_LINE
                                             : BREAKER_STREAM_NO_DONE;
}

static bool ollama_codec_is_busy(int status, const char *body, size_t len)
{
    (void)status; /* the breaker counts it only on a 503 */
    return breaker_body_is_busy(body ? body : "", len);
}

static ragd_err ollama_codec_meta_request(llm_meta_kind what, const char *model, codec_meta_request *out)
{
    static const char *const paths[] = {"/api/tags", "/api/show", "/api/ps", "/api/version"};
    memset(out, 0, sizeof *out);
    out->path = paths[what];
    if (what == LLM_META_SHOW) {
        out->body = wire_dump(json_pack("{s:s}", "model", model));
        if (!out->body)
            return RAGD_ENOMEM;
    }
    return RAGD_OK;
}

static llm_status ollama_codec_meta_parse(llm_meta_kind what, const char *model, const char *body, size_t len,
                                          json_t **out, char *message, size_t mlen)
{
    (void)model;
    ragd_err e = what == LLM_META_SHOW      ? ollama_show_parse(body, len, out, message, mlen)
                 : what == LLM_META_VERSION ? ollama_version_parse(body, len, out, message, mlen)
                                            : ollama_models_parse(body, len, out, message, mlen);
    if (e == RAGD_ENOMEM)
        snprintf(message, mlen, "out of memory");
    return e == RAGD_OK ? LLM_OK : LLM_BAD_REPLY;
}

const upstream_codec ollama_codec = {
    .name = "ollama",
    .embed_path = "/api/embed",
    .chat_path = "/api/chat",
    .probe_path = "/api/version",
    .embed_body = ollama_embed_body,
    .embed_parse = ollama_embed_parse,
    .chat_body = ollama_codec_chat_body,
    .stream_new = ollama_codec_stream_new,
    .stream_free = ollama_codec_stream_free,
    .stream_feed = ollama_codec_stream_feed,
    .stream_end = ollama_codec_stream_end,
    .error_message = ollama_error_message,
    .is_busy = ollama_codec_is_busy,
    .meta_request = ollama_codec_meta_request,
    .meta_parse = ollama_codec_meta_parse,
};
