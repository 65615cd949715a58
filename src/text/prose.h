#ifndef RAGD_TEXT_PROSE_H
#define RAGD_TEXT_PROSE_H

#include <stdbool.h>
#include <stddef.h>

#include "util/err.h"
#include "util/strbuf.h"

/* What prose_extract saw at the edges of the passage: a chunk can start or end in the
 * middle of a sentence, so the first and last sentences there are suspect. */
typedef struct {
    bool starts_at_top;  /* the first non-blank line of the passage is prose (not a list item) */
    bool ends_at_bottom; /* the last non-blank line of the passage is prose */
} prose_info;

/* Appends the running text of text[0..len) (a passage of markdown, plain text, or text
 * that html_to_text made) to out: the lines that are not prose are left out — markdown
 * headings (ATX and setext), code fences and what they hold, indented code, table rows,
 * horizontal rules, lines of HTML tags (anchors like <a name="x" />), lines that are mostly
 * links or URLs (link lists, tables of contents), table-of-contents lines with dotted
 * leaders ("2.1 Install ....... 12") and code-like lines (mostly symbols, or ending in
 * '{', '}' or ';'). List and quote markers are removed; inline markup is reduced to its
 * text ([text](url) → text, tags, `, ** and __ removed, backslash escapes resolved).
 * Paragraphs (blank-line separated, a list item, or a short unpunctuated line followed by
 * a capitalised one — a heading in HTML-made text) are separated by "\n\n"; the lines of
 * one paragraph are joined by one space. *info (may be NULL) reports the edges.
 * Returns RAGD_ENOMEM or RAGD_ETOOBIG from out's cap (out holds at most len + 2 bytes
 * more than before per paragraph), RAGD_EINVAL for NULL out or text with len > 0. */
ragd_err prose_extract(const char *text, size_t len, strbuf *out, prose_info *info);

#endif
