#include "upstream/openai.h"

#include "upstream/wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

char *openai_chat_body(const char *model, const char *system, const char *user, json_t *options, bool stream)
{
    json_t *body = json_pack("{s:s, s:o, s:b}", "model", model, "messages", wire_messages(system, user), "stream", stream);
    static const char *const passed[] = {"temperature", "top_p", "seed", "stop", "max_tokens"};
    for (size_t i = 0; body && options && i < sizeof passed / sizeof *passed; i++) {
        json_t *v = json_object_get(options, passed[i]);
        if (v)
            json_object_set(body, passed[i], v);
    }
    return wire_dump(body);
}

void openai_error_message(const char *body, size_t len, char *out, size_t outlen)
{
    json_t *root = body ? json_loadb(body, len, 0, NULL) : NULL;
    json_t *err = json_object_get(root, "error");
    const char *msg = json_is_string(err) ? json_string_value(err) : json_string_value(json_object_get(err, "message"));
    snprintf(out, outlen, "%s", msg ? msg : "backend error without a message");
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
