#ifndef RAGD_RAG_FORMATS_H
#define RAGD_RAG_FORMATS_H

/* The document formats ingest reads, and the one table that says which file-name
 * extensions and media types mean which format (docs/internals/ingest.md, "Formats").
 * The HTTP layer (h_ingest.c, the 415 text) and the command line (cli_walk.c) read this
 * table instead of keeping their own lists. Everything here is static and read-only:
 * safe from any thread. */
#include <stdbool.h>
#include <stddef.h>

/* What submitted bytes are. AUTO: the bytes decide (text/extract.h, extract_sniff). The
 * text formats (JSON "format" values) come first, up to RST. */
typedef enum {
    RAG_FORMAT_TEXT = 0,
    RAG_FORMAT_MARKDOWN,
    RAG_FORMAT_HTML,
    RAG_FORMAT_AUTO,
    RAG_FORMAT_RST,
    RAG_FORMAT_PDF,
    RAG_FORMAT_DOCX,
    RAG_FORMAT_ODT,
    RAG_FORMAT_EPUB,
} rag_format;

#define RAG_FORMAT_EXTS_MAX 4  /* extensions of one kind, NULL-terminated */
#define RAG_FORMAT_TYPES_MAX 3 /* media types of one kind, NULL-terminated */

/* One kind of file ingest takes. Two kinds are AUTO: "gzip" (.gz: the name inside, else the
 * bytes, decide) and "auto" (application/octet-stream, no extension: the bytes decide). */
typedef struct {
    rag_format format;
    const char *name;                              /* "text", "pdf", "gzip", ...: unique */
    bool text;                                     /* text (UTF-8 or a legacy charset): may
                                                    * come as a JSON string, "format": name */
    const char *exts[RAG_FORMAT_EXTS_MAX];         /* ".txt": with the dot, lower case */
    const char *media_types[RAG_FORMAT_TYPES_MAX]; /* the first is the one to send */
} rag_format_kind;

/* The table: *n rows, the text kinds first, then the binary ones, "auto" last. */
const rag_format_kind *rag_format_kinds(size_t *n);
/* The kind whose extension is ext[0..len) (".PDF": case-insensitive), or NULL. ".gz" is
 * the gzip kind: callers that look inside strip it first (rag_format_of_source). */
const rag_format_kind *rag_format_kind_of_ext(const char *ext, size_t len);
/* The kind of a media type (lower case, without parameters: "text/html"), or NULL when
 * ingest does not take it as a document (application/json and multipart are requests). */
const rag_format_kind *rag_format_kind_of_media_type(const char *type);
/* A text format's JSON "format" value ("text", "markdown", "html", "auto", "rst"); NULL
 * for the binary formats, which come as raw bodies or uploads. */
const char *rag_format_json_name(rag_format f);

/* By the file name's extension, after stripping a ".gz": .txt/.text → text, .md/.markdown
 * → markdown, .html/.htm/.xhtml → HTML, .rst/.rest → RST, .pdf, .docx, .odt, .epub; no
 * extension (README, copyright) or an unknown one → AUTO. NULL: text. */
rag_format rag_format_of_source(const char *source);
/* The format for a document submitted as a JSON string (already UTF-8 text): f itself for
 * the text kinds, TEXT for the binary ones (a client that extracted a PDF's text keeps
 * "paper.pdf" as its source). */
rag_format rag_format_text_only(rag_format f);

#endif
