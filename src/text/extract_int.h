#ifndef RAGD_TEXT_EXTRACT_INT_H
#define RAGD_TEXT_EXTRACT_INT_H

/* Internal to the extractors (src/text/extract*.c): each format's reader. Every one
 * appends UTF-8 to a strbuf whose cap is the limit's max_text (RAGD_ETOOBIG past it),
 * writes why on failure, and checks the deadline between its units of work. */
#include <stddef.h>

#include "text/extract.h"
#include "util/strbuf.h"

/* The state of one extraction. */
typedef struct {
    const extract_limits *lim;
    size_t inflated;     /* bytes unpacked so far (gzip, zip entries) */
    char *why;
    size_t why_cap;
} extract_ctx;

/* Writes why (printf) and returns e. */
ragd_err extract_fail(extract_ctx *x, ragd_err e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* RAGD_ETOOBIG with a message when the deadline has passed; what names the format. */
ragd_err extract_check_time(extract_ctx *x, const char *what);

/* PDF with poppler-glib: the text of each page, pages separated by a blank line, starts
 * in *page_starts (malloc'd, *n_pages entries). */
ragd_err extract_pdf(extract_ctx *x, const char *bytes, size_t len, strbuf *out, size_t **page_starts,
                     size_t *n_pages);
/* The same, read by the helper child x->lim->pdf_helper (extract_jail.c): killed at the
 * deadline; a crash, a bad exit or a nonsense answer is a RAGD_EINVAL with a message. */
ragd_err extract_pdf_jailed(extract_ctx *x, const char *bytes, size_t len, strbuf *out, size_t **page_starts,
                            size_t *n_pages);
/* DOCX (word/document.xml), ODT (content.xml): paragraphs, headings as '#' lines. */
ragd_err extract_docx(extract_ctx *x, const char *bytes, size_t len, strbuf *out);
ragd_err extract_odt(extract_ctx *x, const char *bytes, size_t len, strbuf *out);
/* EPUB: the spine's XHTML through the HTML reader, in reading order; the dc:title first
 * (its length in *title_len). */
ragd_err extract_epub(extract_ctx *x, const char *bytes, size_t len, strbuf *out, size_t *title_len);
/* reStructuredText: section titles (underlined, optionally overlined) become '#' lines,
 * by the order their adornment styles first appear. text is valid UTF-8. */
ragd_err extract_rst(extract_ctx *x, const char *text, size_t len, strbuf *out);

/* ---- zip archives (extract_zip.c) ---- */
typedef struct extract_zip extract_zip;
/* Opens an archive held in memory (not copied: keep bytes alive). NULL with why written. */
extract_zip *extract_zip_open(extract_ctx *x, const char *bytes, size_t len, const char *what);
void extract_zip_close(extract_zip *z); /* NULL ok */
/* Whether the archive has an entry of that name. */
bool extract_zip_has(extract_zip *z, const char *name);
/* The whole entry, NUL-terminated, malloc'd; counted against max_inflated. RAGD_ENOTFOUND
 * (no such entry), RAGD_ETOOBIG, RAGD_EINVAL (corrupt), RAGD_ENOMEM; why written. */
ragd_err extract_zip_read(extract_ctx *x, extract_zip *z, const char *name, const char *what, char **data,
                          size_t *len);

/* ---- XML parts (extract_xml.c) ---- */
struct _xmlDoc;
/* Parses an XML part with libxml2: no network, no DTD (a part that declares one is
 * refused: no office or EPUB package part needs it, and entity expansion is where XML
 * bombs live), errors silenced. NULL with why written. */
struct _xmlDoc *extract_xml_parse(extract_ctx *x, const char *data, size_t len, const char *what);

#endif
