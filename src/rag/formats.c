/* The one table of document kinds: format, extensions, media types (rag/formats.h). */
#include <string.h>
#include <strings.h>

#include "rag/formats.h"

static const rag_format_kind rag_kinds[] = {
    {RAG_FORMAT_TEXT, "text", true, {".txt", ".text"}, {"text/plain"}},
    {RAG_FORMAT_MARKDOWN, "markdown", true, {".md", ".markdown"}, {"text/markdown", "text/x-markdown"}},
    {RAG_FORMAT_HTML, "html", true, {".html", ".htm", ".xhtml"}, {"text/html"}},
    {RAG_FORMAT_RST, "rst", true, {".rst", ".rest"}, {"text/x-rst"}},
    {RAG_FORMAT_PDF, "pdf", false, {".pdf"}, {"application/pdf"}},
    {RAG_FORMAT_DOCX, "docx", false, {".docx"},
     {"application/vnd.openxmlformats-officedocument.wordprocessingml.document"}},
    {RAG_FORMAT_ODT, "odt", false, {".odt"}, {"application/vnd.oasis.opendocument.text"}},
    {RAG_FORMAT_EPUB, "epub", false, {".epub"}, {"application/epub+zip"}},
    {RAG_FORMAT_AUTO, "gzip", false, {".gz"}, {"application/gzip", "application/x-gzip"}},
    {RAG_FORMAT_AUTO, "auto", true, {NULL}, {"application/octet-stream"}},
};

#define RAG_KINDS_N (sizeof rag_kinds / sizeof rag_kinds[0])

const rag_format_kind *rag_format_kinds(size_t *n)
{
    *n = RAG_KINDS_N;
    return rag_kinds;
}

const rag_format_kind *rag_format_kind_of_ext(const char *ext, size_t len)
{
    for (size_t i = 0; i < RAG_KINDS_N; i++)
        for (size_t k = 0; k < RAG_FORMAT_EXTS_MAX && rag_kinds[i].exts[k]; k++)
            if (strlen(rag_kinds[i].exts[k]) == len && strncasecmp(ext, rag_kinds[i].exts[k], len) == 0)
                return &rag_kinds[i];
    return NULL;
}

const rag_format_kind *rag_format_kind_of_media_type(const char *type)
{
    for (size_t i = 0; i < RAG_KINDS_N; i++)
        for (size_t k = 0; k < RAG_FORMAT_TYPES_MAX && rag_kinds[i].media_types[k]; k++)
            if (strcmp(type, rag_kinds[i].media_types[k]) == 0)
                return &rag_kinds[i];
    return NULL;
}

const char *rag_format_json_name(rag_format f)
{
    if (f > RAG_FORMAT_RST)
        return NULL;
    /* AUTO has two kinds: the text one ("auto") names it */
    for (size_t i = 0; i < RAG_KINDS_N; i++)
        if (rag_kinds[i].format == f && rag_kinds[i].text)
            return rag_kinds[i].name;
    return NULL;
}

rag_format rag_format_of_source(const char *source)
{
    if (!source)
        return RAG_FORMAT_TEXT;
    const char *base = strrchr(source, '/');
    base = base ? base + 1 : source;
    size_t n = strlen(base);
    if (n > 3 && strcasecmp(base + n - 3, ".gz") == 0)
        n -= 3;
    const char *dot = NULL; /* the last '.' within base[0..n), not a leading one (.bashrc) */
    for (size_t i = n; i-- > 1;)
        if (base[i] == '.') {
            dot = base + i;
            break;
        }
    if (!dot)
        return RAG_FORMAT_AUTO;
    const rag_format_kind *k = rag_format_kind_of_ext(dot, (size_t)(base + n - dot));
    return k ? k->format : RAG_FORMAT_AUTO; /* x.gz.gz: the gzip kind, AUTO too */
}

rag_format rag_format_text_only(rag_format f)
{
    return f <= RAG_FORMAT_RST ? f : RAG_FORMAT_TEXT;
}
