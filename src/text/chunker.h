#ifndef RAGD_TEXT_CHUNKER_H
#define RAGD_TEXT_CHUNKER_H

#include <stddef.h>

#include "text/span.h"
#include "util/err.h"

typedef enum {
    CHUNK_FORMAT_PLAIN = 0,
    CHUNK_FORMAT_MARKDOWN, /* headings start a new chunk; structure found with md4c */
} chunk_format;

typedef struct {
    size_t chunk_size; /* target maximum, in characters (code points); >= 50 */
    size_t overlap;    /* characters repeated from the end of the previous chunk; < chunk_size / 2 */
} chunk_params;

/* Splits text[0..len) (valid UTF-8) into chunks of at most params->chunk_size characters.
 * Boundaries prefer, in order: a markdown heading (markdown only: a heading always starts
 * a chunk), a paragraph break, a sentence end, whitespace; only a single "word" longer
 * than chunk_size is cut mid-word (on a code point boundary). Consecutive chunks overlap by
 * about params->overlap characters, the overlap starting at a sentence or word boundary.
 * Each chunk is the exact slice text[start..end), trimmed of leading/trailing whitespace,
 * never empty; chunks are in document order and cover every non-whitespace byte.
 * Text of only whitespace gives 0 chunks. *out is malloc'd (free it). */
ragd_err chunker_split(const char *text, size_t len, chunk_format fmt, const chunk_params *params,
                       text_span **out, size_t *count);

#endif
