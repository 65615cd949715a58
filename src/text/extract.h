#ifndef RAGD_TEXT_EXTRACT_H
#define RAGD_TEXT_EXTRACT_H

/* Submitted bytes → text (docs/internals/text.md, "Extractors"): plain text in any charset,
 * markdown, HTML, reStructuredText, PDF (poppler), DOCX, ODT and EPUB (libzip + libxml2),
 * each possibly gzip-compressed. One entry point, extract_document; each format has its
 * own module (extract_*.c) behind extract_int.h. Any thread: nothing is shared between
 * calls (poppler's one-time global set-up is serialised, extract_pdf.c).
 *
 * Bounded: the input (the caller's cap, RAGD_MAX_BODY_BYTES over HTTP), the bytes unpacked
 * from gzip and zip (max_inflated, over all entries), the text produced (max_text), the
 * PDF pages read (max_pages), XML (no network, no DTD, libxml2's depth limit of 256) and
 * time (a deadline checked between pages, zip entries and EPUB chapters — one zip entry is
 * not interrupted; a PDF read through the helper child is killed at the deadline, one read
 * in-process is not interrupted within a page). Past a bound: RAGD_ETOOBIG with a message. */
#include <stdbool.h>
#include <stddef.h>

#include "util/err.h"

/* What the bytes are said to be. AUTO: the bytes decide (extract_sniff). */
typedef enum {
    EXTRACT_TEXT = 0,
    EXTRACT_MARKDOWN,
    EXTRACT_HTML,
    EXTRACT_AUTO,
    EXTRACT_RST,
    EXTRACT_PDF,
    EXTRACT_DOCX,
    EXTRACT_ODT,
    EXTRACT_EPUB,
} extract_kind;

#define EXTRACT_INFLATE_RATIO 20                 /* unpacked bytes per submitted byte */
#define EXTRACT_INFLATE_FLOOR ((size_t)1 << 20)  /* ... but at least this much */
#define EXTRACT_INFLATE_MAX ((size_t)256 << 20)  /* ... and never more */
#define EXTRACT_TEXT_MAX ((size_t)64 << 20)      /* bytes of text from one document */
#define EXTRACT_PAGES_MAX 5000                   /* PDF pages */
#define EXTRACT_XML_NODES_MAX 2000000            /* elements, attributes, texts of one XML part */
#define EXTRACT_SECONDS 30                       /* per document (default of extract_configure) */

typedef struct {
    size_t max_inflated; /* bytes unpacked from gzip and zip in all */
    size_t max_text;     /* bytes of text produced */
    size_t max_pages;    /* PDF pages read */
    double deadline_ms;  /* a clock_now_ms() instant; 0: none */
    const char *pdf_helper; /* the ragd binary that reads PDFs in a child; NULL: in this process */
} extract_limits;

/* Process-wide set-up, once at start before any thread reads a document (main.c, `ragd
 * serve`): helper is the ragd binary's own path (/proc/self/exe), run as `helper
 * __extract-pdf SECONDS` to read each PDF in a child process (extract_jail.c); NULL: PDFs
 * are read in the calling process (the default; unit tests, the CLI). seconds: the
 * per-document deadline (1-3600). RAGD_EINVAL for a bad value. */
ragd_err extract_configure(const char *helper, int seconds);
/* What extract_configure set: the helper (NULL: in-process) and the deadline in seconds. */
const char *extract_pdf_helper(void);
int extract_seconds(void);

/* Kills every PDF reader child running now and any started later (their documents fail
 * "the server is stopping"): a stopping server does not wait for their deadline. Any
 * thread; async-signal-unsafe (a mutex). */
void extract_stop_children(void);

/* The hidden subcommand `ragd __extract-pdf SECONDS` (main.c): limits itself, reads a PDF
 * from stdin to EOF, writes the framed result to stdout. Returns the exit status. */
int extract_pdf_child_main(int argc, char **argv);

/* The defaults above for a document of input_len bytes, the deadline extract_seconds()
 * from now, the PDF helper extract_pdf_helper(). */
void extract_limits_default(extract_limits *lim, size_t input_len);

typedef struct {
    char *text;          /* valid UTF-8 without NUL, NUL-terminated, malloc'd ("" at least) */
    size_t len;
    bool markdown;       /* headings are markdown '#' lines (markdown, DOCX, ODT, RST) */
    size_t title_len;    /* a title (HTML <title>, EPUB dc:title) at the start of text, 0: none */
    size_t *page_starts; /* PDF: page i+1 starts at text[page_starts[i]]; NULL otherwise */
    size_t n_pages;
    extract_kind kind;   /* what was read (AUTO resolved) */
} extract_result;

void extract_result_cleanup(extract_result *r); /* NULL ok; zeroes it */

/* The text of a document of bytes[0..len) said to be `kind`, decoding text kinds from
 * charset (NULL: undeclared — valid UTF-8 is taken as is, a UTF-16 byte order mark is
 * followed, anything else is read as windows-1252, which covers Latin-1). A gzip stream
 * (1f 8b) is unpacked first whatever the kind. RAGD_OK: *out filled (clean it up).
 * RAGD_EINVAL (cannot be read) or RAGD_ETOOBIG (a bound): why says what, starting with
 * what the document was taken for ("PDF could not be read: ...", "not text: binary data").
 * RAGD_ENOMEM. */
ragd_err extract_document(const char *bytes, size_t len, extract_kind kind, const char *charset,
                          const extract_limits *lim, extract_result *out, char *why, size_t why_cap);

/* What AUTO bytes (already unpacked) are: PDF (%PDF- in the first KiB), DOCX/ODT/EPUB (a
 * zip with word/document.xml or the ODF/EPUB mimetype), HTML (starts with a doctype or an
 * <html> tag), else TEXT. A zip of another kind gives AUTO (refused by the caller). */
extract_kind extract_sniff(const char *bytes, size_t len);

/* The name of a kind for messages: "PDF", "DOCX", "text", ... */
const char *extract_kind_name(extract_kind kind);

#endif
