#ifndef RAGD_TEXT_SENTENCE_H
#define RAGD_TEXT_SENTENCE_H

#include <stddef.h>

#include "text/span.h"
#include "util/err.h"

/* Splits text[0..len) into sentences. A sentence ends after '.', '!', '?' (and their
 * full-width / CJK forms), optionally followed by closing quotes or brackets, when
 * whitespace or the end follows; a blank line (paragraph break) also ends one. Common
 * abbreviations ("e.g.", "Dr.", "U.S.", single capital initials) and decimals do not end
 * a sentence. Spans are trimmed of surrounding whitespace; empty ones are dropped.
 * *out is malloc'd (free it); *count may be 0 (then *out may be NULL). */
ragd_err sentence_split(const char *text, size_t len, text_span **out, size_t *count);

#endif
