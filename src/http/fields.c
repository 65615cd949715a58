#include "http/fields.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "util/names.h"
#include "util/utf8.h"

static json_t *fields_get(json_t *obj, const char *name)
{
    json_t *v = json_object_get(obj, name);
    return json_is_null(v) ? NULL : v;
}

bool fields_string(http_request *req, json_t *obj, const char *name, bool required, size_t max_chars, const char **out)
{
    *out = NULL;
    json_t *v = fields_get(obj, name);
    if (!v) {
        if (required)
            http_reply_error(req, 422, "validation_error", "%s: is required", name);
        return !required;
    }
    if (!json_is_string(v)) {
        http_reply_error(req, 422, "validation_error", "%s: must be a string", name);
        return false;
    }
    const char *s = json_string_value(v);
    size_t len = json_string_length(v);
    size_t start = 0, end = len;
    while (start < end && strchr(" \t\r\n", s[start]))
        start++;
    while (end > start && strchr(" \t\r\n", s[end - 1]))
        end--;
    if (end == start) {
        http_reply_error(req, 422, "validation_error", "%s: must not be empty", name);
        return false;
    }
    if (utf8_length(s + start, end - start) > max_chars) {
        http_reply_error(req, 422, "validation_error", "%s: longer than %zu characters", name, max_chars);
        return false;
    }
    *out = s;
    return true;
}

bool fields_int(http_request *req, json_t *obj, const char *name, long long def, long long min, long long max,
                long long *out)
{
    json_t *v = fields_get(obj, name);
    *out = def;
    if (!v)
        return true;
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max) {
        http_reply_error(req, 422, "validation_error", "%s: must be an integer from %lld to %lld", name, min, max);
        return false;
    }
    *out = json_integer_value(v);
    return true;
}

bool fields_bool(http_request *req, json_t *obj, const char *name, bool def, bool *out)
{
    json_t *v = fields_get(obj, name);
    *out = def;
    if (!v)
        return true;
    if (!json_is_boolean(v)) {
        http_reply_error(req, 422, "validation_error", "%s: must be true or false", name);
        return false;
    }
    *out = json_is_true(v);
    return true;
}

bool fields_object(http_request *req, json_t *obj, const char *name, json_t **out)
{
    json_t *v = fields_get(obj, name);
    *out = NULL;
    if (!v)
        return true;
    if (!json_is_object(v)) {
        http_reply_error(req, 422, "validation_error", "%s: must be an object", name);
        return false;
    }
    *out = v;
    return true;
}

bool fields_llm_options(http_request *req, json_t *obj)
{
    static const char *const numbers[] = {
        "num_keep", "seed", "num_predict", "top_k", "top_p", "min_p", "typical_p", "repeat_last_n",
        "temperature", "repeat_penalty", "presence_penalty", "frequency_penalty", "mirostat", "mirostat_tau",
        "mirostat_eta", "tfs_z", "num_ctx", "num_batch", "num_gpu", "main_gpu", "num_thread", NULL};
    static const char *const bools[] = {"penalize_newline", "numa", "low_vram", "f16_kv", "vocab_only",
                                        "use_mmap", "use_mlock", NULL};
    const char *key;
    json_t *v;
    json_object_foreach(obj, key, v) {
        if (json_is_null(v))
            continue;
        const char *want = NULL;
        for (size_t i = 0; !want && numbers[i]; i++)
            if (strcmp(key, numbers[i]) == 0 && !json_is_number(v))
                want = "a number";
        for (size_t i = 0; !want && bools[i]; i++)
            if (strcmp(key, bools[i]) == 0 && !json_is_boolean(v))
                want = "true or false";
        if (!want && strcmp(key, "stop") == 0) {
            size_t i;
            json_t *s;
            bool strings = json_is_array(v);
            json_array_foreach(v, i, s) strings = strings && json_is_string(s);
            if (!strings)
                want = "a list of strings";
        }
        if (want) {
            http_reply_error(req, 422, "validation_error", "options.%.64s: must be %s", key, want);
            return false;
        }
    }
    return true;
}

bool fields_choice(http_request *req, json_t *obj, const char *name, const char *const *choices, int def, int *out)
{
    json_t *v = fields_get(obj, name);
    *out = def;
    if (!v)
        return true;
    if (json_is_string(v))
        for (int i = 0; choices[i]; i++)
            if (strcmp(json_string_value(v), choices[i]) == 0) {
                *out = i;
                return true;
            }
    char list[256] = "";
    for (int i = 0; choices[i]; i++) {
        strncat(list, i ? ", " : "", sizeof list - strlen(list) - 1);
        strncat(list, choices[i], sizeof list - strlen(list) - 1);
    }
    http_reply_error(req, 422, "validation_error", "%s: must be one of %s", name, list);
    return false;
}

bool fields_db(http_request *req, json_t *obj, const char **out)
{
    json_t *v = fields_get(obj, "db");
    if (!v) {
        *out = req->app->cfg.default_db;
        return true;
    }
    if (!json_is_string(v) || !names_db_valid(json_string_value(v))) {
        http_reply_error(req, 422, "validation_error",
                         "db: must be 1-64 characters of [A-Za-z0-9_.-], not starting with '.'");
        return false;
    }
    *out = json_string_value(v);
    return true;
}

bool fields_arg_int(http_request *req, const char *name, long long def, long long min, long long max, long long *out)
{
    const char *v = http_arg_get(req, name);
    *out = def;
    if (!v)
        return true;
    char *end = NULL;
    errno = 0;
    long long n = strtoll(v, &end, 10);
    if (*v == '\0' || *end || errno) {
        http_reply_error(req, 400, "invalid_json", "bad query string: %s must be a whole number", name);
        return false;
    }
    if (n < min || n > max) {
        http_reply_error(req, 422, "validation_error", "%s: must be from %lld to %lld", name, min, max);
        return false;
    }
    *out = n;
    return true;
}
