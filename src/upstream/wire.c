#include "upstream/wire.h"

#include <float.h>
#include <math.h>
#include <stdio.h>

json_t *wire_text_array(const char *const *texts, const size_t *lens, size_t n)
{
    json_t *arr = json_array();
    for (size_t i = 0; arr && i < n; i++)
        if (json_array_append_new(arr, json_stringn(texts[i], lens[i])) != 0) {
            json_decref(arr);
            arr = NULL;
        }
    return arr;
}

json_t *wire_messages(const char *system, const char *user)
{
    json_t *messages = json_array();
    if (messages && system)
        json_array_append_new(messages, json_pack("{s:s, s:s}", "role", "system", "content", system));
    if (messages)
        json_array_append_new(messages, json_pack("{s:s, s:s}", "role", "user", "content", user));
    return messages;
}

json_t *wire_drop(json_t *body)
{
    json_decref(body);
    return NULL;
}

long long wire_count(const json_t *v)
{
    return json_is_integer(v) && json_integer_value(v) >= 0 ? (long long)json_integer_value(v) : -1;
}

void wire_plain_message(const char *body, size_t len, char *out, size_t outlen)
{
    size_t n = 0;
    while (body && n < len && n < 200 && body[n] != '\n' && body[n] != '\r' && body[n] != '\0')
        n++;
    if (n == 0 || body[0] == '{' || body[0] == '[' || body[0] == '<') /* JSON of another shape, or HTML */
        snprintf(out, outlen, "backend error without a message");
    else
        snprintf(out, outlen, "%.*s", (int)n, body);
}

char *wire_dump(json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    return text;
}

ragd_err wire_vector(const json_t *vec, size_t d, float *out)
{
    if (!json_is_array(vec) || json_array_size(vec) != d)
        return RAGD_EINVAL;
    for (size_t j = 0; j < d; j++) {
        json_t *x = json_array_get(vec, j);
        double v = json_number_value(x);
        /* finite as a float too: 1e39 is a finite double but becomes inf in the index
         * (found by fuzz_ollama_stream) */
        if (!json_is_number(x) || !isfinite(v) || fabs(v) > FLT_MAX)
            return RAGD_EINVAL;
        out[j] = (float)v;
    }
    return RAGD_OK;
}
