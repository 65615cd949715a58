#ifndef RAGD_TEXT_DOCCONTEXT_H
#define RAGD_TEXT_DOCCONTEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

/* A document's context for the keyword index: its title, and each chunk's heading path.
 * A paragraph that answers a question about a tool often never names the tool while the
 * page title does; both are indexed as fields of every chunk (docs/internals/kindex.md).
 * Pure functions: no I/O, any thread. */

#define DOCCONTEXT_TITLE_MAX 200   /* bytes of a title */
#define DOCCONTEXT_HEADING_MAX 300 /* bytes of a heading path */
#define DOCCONTEXT_LINE_MAX 120    /* bytes of a first line used as the title */

typedef struct {
    const char *meta_title; /* the metadata's "title" when it is a string, else NULL */
    size_t meta_title_len;
    const char *html_title; /* an HTML document's <title> text, else NULL */
    size_t html_title_len;
    const char *text;       /* the stored text (markdown as written, HTML already as text) */
    size_t text_len;
    bool markdown;          /* the text is markdown: its first heading is a title */
    const char *source;     /* the document's source, NULL when none */
    const char *id;         /* the id the client gave, NULL when ragd made it (the hash) */
} doccontext_in;

/* The title, from the first of: metadata "title"; the HTML <title>; the first markdown
 * heading; the file name in source, else in the id when it looks like one (has a '/' or
 * an extension), without folders and extension ("docs/install-guide.md" gives
 * "install-guide"); the first non-blank line of the text when it is at most
 * DOCCONTEXT_LINE_MAX bytes (a longer one is a paragraph: no title). White space runs and control characters
 * become one space; the result is trimmed, valid UTF-8 (ill-formed bytes are skipped) and
 * at most DOCCONTEXT_TITLE_MAX bytes, cut on a code point boundary. *out is malloc'd ("" when
 * nothing gives one). RAGD_ENOMEM. */
ragd_err doccontext_title(const doccontext_in *in, char **out);

/* Each chunk's heading path in markdown text[0..len): the headings above the chunk's start
 * (byte offset starts[i]), from the outermost in, joined by " > " ("Install > Debian"); a
 * heading that starts a chunk is part of its path. Headings are found with md4c (a "#" in
 * a code block is none); each is cleaned like a title and cut to 100 bytes, the path to
 * DOCCONTEXT_HEADING_MAX. starts must ascend. *paths gets n malloc'd strings ("" before the
 * first heading); free with doccontext_paths_free. RAGD_ENOMEM, RAGD_ETOOBIG (text over
 * 4 GiB). */
ragd_err doccontext_headings(const char *text, size_t len, const int64_t *starts, size_t n, char ***paths);
void doccontext_paths_free(char **paths, size_t n); /* NULL ok */

#endif
