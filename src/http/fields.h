#ifndef RAGD_HTTP_FIELDS_H
#define RAGD_HTTP_FIELDS_H

/* Typed access to the fields of a JSON request object. Each getter returns true with the
 * value (or the default when the field is absent or null), or false after replying
 * 422 validation_error with a message that names the field and what it accepts. */
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "http/request.h"

/* A string of 1..max_chars characters (after trimming when trim is true). *out points
 * into obj (valid while obj lives); NULL when absent and not required. */
bool fields_string(http_request *req, json_t *obj, const char *name, bool required, size_t max_chars, const char **out);
/* A JSON integer (not 1.5, not "5") within [min, max]. */
bool fields_int(http_request *req, json_t *obj, const char *name, long long def, long long min, long long max,
                long long *out);
bool fields_bool(http_request *req, json_t *obj, const char *name, bool def, bool *out);
/* A JSON object or absent/null (then *out = NULL). */
bool fields_object(http_request *req, json_t *obj, const char *name, json_t **out);
/* An LLM's `options` object (obj may be NULL): each option Ollama knows has its type —
 * numbers, booleans, `stop` a list of strings; null and unknown names pass (Ollama ignores
 * them). A wrong type is 422 naming the option: Ollama answers it with a 500, which would
 * count against the backend's breaker, so one client could open it for everyone. */
bool fields_llm_options(http_request *req, json_t *obj);
/* One of the given choices (NULL-terminated list); returns its index in *out. */
bool fields_choice(http_request *req, json_t *obj, const char *name, const char *const *choices, int def, int *out);
/* The collection name of field "db" (default when absent); replies 422 for a bad name. */
bool fields_db(http_request *req, json_t *obj, const char **out);

/* Query-string integer argument within [min, max]; 400 for a non-number, 422 out of range. */
bool fields_arg_int(http_request *req, const char *name, long long def, long long min, long long max, long long *out);

#endif
