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
/* Compact text of body (malloc'd), consuming the reference; NULL when body is NULL. */
char *wire_dump(json_t *body);
/* Checks that vec is an array of exactly d finite numbers and copies them to out.
 * RAGD_EINVAL otherwise (out may be partly written). */
ragd_err wire_vector(const json_t *vec, size_t d, float *out);

#endif
