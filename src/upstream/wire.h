#ifndef RAGD_UPSTREAM_WIRE_H
#define RAGD_UPSTREAM_WIRE_H

/* JSON pieces shared by the Ollama and OpenAI wire formats (ollama.c, openai.c). */
#include <jansson.h>
#include <stddef.h>

#include "util/err.h"

/* A JSON array of the texts; NULL on no memory. */
json_t *wire_text_array(const char *const *texts, const size_t *lens, size_t n);
/* [{"role":"system",...}?, {"role":"user",...}]. */
json_t *wire_messages(const char *system, const char *user);
/* Frees body and returns NULL: a body that could not be built (no memory). */
json_t *wire_drop(json_t *body);
/* A count or duration a backend reported: the integer when it is one >= 0, else -1. */
long long wire_count(const json_t *v);
/* An error body that is not the format's JSON (e.g. "404 page not found" as text): its
 * first line, at most 200 bytes, or a generic text when it has none. */
void wire_plain_message(const char *body, size_t len, char *out, size_t outlen);
/* Compact text of body (malloc'd), consuming the reference; NULL when body is NULL. */
char *wire_dump(json_t *body);
/* Checks that vec is an array of exactly d finite numbers and copies them to out.
 * RAGD_EINVAL otherwise (out may be partly written). */
ragd_err wire_vector(const json_t *vec, size_t d, float *out);

#endif
