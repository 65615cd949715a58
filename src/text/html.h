#ifndef RAGD_TEXT_HTML_H
#define RAGD_TEXT_HTML_H

#include <stddef.h>

#include "util/err.h"

/* Turns an HTML document into plain UTF-8 text with libxml2's HTML parser (never regular
 * expressions). Drops <script>, <style>, <noscript>, <template>, <head> except <title>,
 * comments; block elements (p, div, h1-h6, li, tr, br, section, article, pre, ...) become
 * line or paragraph breaks; runs of inline whitespace collapse to one space; entities are
 * decoded; the title, when present, comes first as its own paragraph. Bytes that are not
 * valid UTF-8 in the input are replaced, so the output is always valid UTF-8 without NUL.
 * *out is malloc'd and NUL-terminated (free it). Input over 64 MiB → RAGD_ETOOBIG. */
ragd_err html_to_text(const char *html, size_t len, char **out, size_t *out_len);
/* The same, and the length of the title at the start of *out in *title_len (0 when the
 * page has no title, or its text had to be repaired after the parse). */
ragd_err html_to_text_title(const char *html, size_t len, char **out, size_t *out_len, size_t *title_len);
/* The same, decoding from charset (an iconv name or label, e.g. a Content-Type's charset
 * parameter) when not NULL and known: it beats a <meta charset>, a byte order mark beats it. */
ragd_err html_to_text_as(const char *html, size_t len, const char *charset, char **out, size_t *out_len,
                         size_t *title_len);

#endif
