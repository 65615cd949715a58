/* PDF through poppler-glib (text/extract_int.h). Each page's text (poppler_page_get_text,
 * reading order) in turn, a blank line between pages; where each page starts is kept for
 * the chunks' page numbers. Bounds: the page count (max_pages) and the deadline, checked
 * before each page — one page is not interrupted, so a hostile page's cost is poppler's
 * (its own limits on nesting and stream sizes apply); the text produced (max_text).
 *
 * Threads: poppler 22.12 sets its global parameters up through a reference-counted,
 * mutex-guarded GlobalParamsIniter inside each poppler_document_new_*, and separate
 * documents share nothing else, so workers read separate PDFs at once. Its diagnostics
 * ("Syntax Error: ...") go through GLib's log under the "Poppler" domain: silenced here
 * once, a hostile file must not fill the server's log. */
#include <poppler.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "text/extract_int.h"
#include "util/utf8.h"

static pthread_once_t pdf_once = PTHREAD_ONCE_INIT;

static void pdf_quiet(const gchar *domain, GLogLevelFlags level, const gchar *message, gpointer data) {}

static void pdf_init_once(void)
{
    g_log_set_handler("Poppler", G_LOG_LEVEL_MASK & ~(G_LOG_LEVEL_ERROR), pdf_quiet, NULL);
}

/* Appends a page's text: valid UTF-8 without NUL (poppler's is UTF-8, but a font's
 * ToUnicode map can yield anything), trailing white space dropped. */
static ragd_err pdf_append_page(strbuf *out, const char *t)
{
    size_t n = strlen(t);
    while (n > 0 && (t[n - 1] == '\n' || t[n - 1] == ' ' || t[n - 1] == '\r' || t[n - 1] == '\t' || t[n - 1] == '\f'))
        n--;
    if (utf8_valid(t, n))
        return strbuf_append(out, t, n);
    for (size_t i = 0; i < n; i++) { /* rare: keep the ASCII, drop the rest */
        unsigned char c = (unsigned char)t[i];
        if (c < 0x80 && c != 0) {
            ragd_err e = strbuf_append(out, &t[i], 1);
            if (e)
                return e;
        }
    }
    return RAGD_OK;
}

ragd_err extract_pdf(extract_ctx *x, const char *bytes, size_t len, strbuf *out, size_t **page_starts,
                     size_t *n_pages)
{
    pthread_once(&pdf_once, pdf_init_once);
    *page_starts = NULL;
    *n_pages = 0;
    GBytes *gb = g_bytes_new_static(bytes, len); /* not copied: bytes outlive the document */
    GError *gerr = NULL;
    PopplerDocument *doc = poppler_document_new_from_bytes(gb, NULL, &gerr);
    size_t *starts = NULL;
    ragd_err e = RAGD_OK;
    if (!doc) {
        e = extract_fail(x, RAGD_EINVAL, "PDF could not be read: %s",
                         gerr && gerr->message ? gerr->message : "not a PDF file");
        goto out;
    }
    int pages = poppler_document_get_n_pages(doc);
    if (pages < 0)
        pages = 0;
    if ((size_t)pages > x->lim->max_pages) {
        e = extract_fail(x, RAGD_ETOOBIG, "PDF could not be read: %d pages, at most %zu are read", pages,
                         x->lim->max_pages);
        goto out;
    }
    starts = calloc(pages ? (size_t)pages : 1, sizeof *starts);
    if (!starts) {
        e = extract_fail(x, RAGD_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < pages; i++) {
        if ((e = extract_check_time(x, "PDF")) != RAGD_OK)
            goto out;
        if (i > 0 && out->len > 0 && (e = strbuf_append(out, "\n\n", 2)) != RAGD_OK)
            break;
        starts[i] = out->len;
        PopplerPage *page = poppler_document_get_page(doc, i);
        if (!page)
            continue; /* a page poppler cannot load: no text, numbering kept */
        char *t = poppler_page_get_text(page);
        g_object_unref(page);
        if (t) {
            e = pdf_append_page(out, t);
            g_free(t);
            if (e)
                break;
        }
    }
    if (e == RAGD_ETOOBIG) {
        e = extract_fail(x, e, "PDF could not be read: its text is over %zu bytes", x->lim->max_text);
        goto out;
    }
    if (e) {
        e = extract_fail(x, e, "out of memory");
        goto out;
    }
    size_t visible = 0;
    for (size_t i = 0; i < out->len && !visible; i++)
        visible = out->data[i] != ' ' && out->data[i] != '\n' && out->data[i] != '\t' && out->data[i] != '\r';
    if (!visible) {
        e = extract_fail(x, RAGD_EINVAL, "PDF could not be read: no text in its %d page%s (a scan? ragd does no OCR)",
                         pages, pages == 1 ? "" : "s");
        goto out;
    }
    *page_starts = starts;
    *n_pages = (size_t)pages;
    starts = NULL;
out:
    free(starts);
    if (gerr)
        g_error_free(gerr);
    if (doc)
        g_object_unref(doc);
    g_bytes_unref(gb);
    return e;
}
