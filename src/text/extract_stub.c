/* TEMPORARY: the binary readers land in the next commits. */
#include "text/extract_int.h"
ragd_err extract_pdf(extract_ctx *x, const char *bytes, size_t len, strbuf *out, size_t **page_starts, size_t *n_pages)
{
    return extract_fail(x, RAGD_EINVAL, "PDF could not be read: not supported yet");
}
ragd_err extract_docx(extract_ctx *x, const char *bytes, size_t len, strbuf *out)
{
    return extract_fail(x, RAGD_EINVAL, "DOCX could not be read: not supported yet");
}
ragd_err extract_odt(extract_ctx *x, const char *bytes, size_t len, strbuf *out)
{
    return extract_fail(x, RAGD_EINVAL, "ODT could not be read: not supported yet");
}
ragd_err extract_epub(extract_ctx *x, const char *bytes, size_t len, strbuf *out, size_t *title_len)
{
    return extract_fail(x, RAGD_EINVAL, "EPUB could not be read: not supported yet");
}
