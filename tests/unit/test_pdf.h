/* A PDF for unit tests (test_extract.c, test_engine.c): one page per string, Helvetica,
 * the xref offsets counted. Not for parentheses or backslashes in the text. */
#ifndef RAGD_TEST_PDF_H
#define RAGD_TEST_PDF_H

#include <stdio.h>
#include <string.h>

#include "util/strbuf.h"

/* free the result */
static inline char *pdf_of(const char *const *pages, size_t n_pages, size_t *len)
{
    strbuf sb;
    strbuf_init(&sb, 1 << 20);
    size_t off[64];
    size_t n_obj = 3 + 2 * n_pages;
    assert_true(n_obj < 64);
    assert_int_equal(strbuf_appends(&sb, "%PDF-1.4\n"), RAGD_OK);
    for (size_t o = 1; o <= n_obj; o++) {
        off[o] = sb.len;
        strbuf_appendf(&sb, "%zu 0 obj\n", o);
        if (o == 1) {
            strbuf_appends(&sb, "<< /Type /Catalog /Pages 2 0 R >>");
        } else if (o == 2) {
            strbuf_appends(&sb, "<< /Type /Pages /Kids [");
            for (size_t p = 0; p < n_pages; p++)
                strbuf_appendf(&sb, "%zu 0 R ", 4 + 2 * p);
            strbuf_appendf(&sb, "] /Count %zu >>", n_pages);
        } else if (o == 3) {
            strbuf_appends(&sb, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>");
        } else if (o % 2 == 0) {
            strbuf_appendf(&sb, "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R "
                                ">> >> /Contents %zu 0 R >>", o + 1);
        } else {
            /* lines of at most 80 bytes, cut at spaces, that fit the page's width */
            strbuf content;
            strbuf_init(&content, 1 << 16);
            strbuf_appends(&content, "BT /F1 10 Tf 12 TL 36 760 Td\n");
            const char *t = pages[(o - 5) / 2];
            while (*t) {
                size_t rest = strlen(t), cut = rest;
                if (rest > 80) {
                    cut = 80;
                    while (cut > 0 && t[cut] != ' ')
                        cut--;
                    if (cut == 0)
                        cut = 80;
                }
                strbuf_appendf(&content, "(%.*s) Tj T*\n", (int)cut, t);
                t += cut;
                while (*t == ' ')
                    t++;
            }
            strbuf_appends(&content, "ET\n");
            strbuf_appendf(&sb, "<< /Length %zu >>\nstream\n%sendstream", content.len, content.data);
            strbuf_cleanup(&content);
        }
        strbuf_appends(&sb, "\nendobj\n");
    }
    size_t xref = sb.len;
    strbuf_appendf(&sb, "xref\n0 %zu\n0000000000 65535 f \n", n_obj + 1);
    for (size_t o = 1; o <= n_obj; o++)
        strbuf_appendf(&sb, "%010zu 00000 n \n", off[o]);
    strbuf_appendf(&sb, "trailer\n<< /Size %zu /Root 1 0 R >>\nstartxref\n%zu\n%%%%EOF\n", n_obj + 1, xref);
    return strbuf_detach(&sb, len);
}

#endif
