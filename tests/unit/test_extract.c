/* Unit tests for src/text/extract*.c (the document readers) and rag_format_of_source.
 * Every file is made here: a PDF written by hand (xref offsets counted), zips written with
 * libzip into a temporary file, gzip with zlib. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zip.h>
#include <zlib.h>

#include "rag/ingest.h"
#include "text/extract.h"
#include "util/clock.h"
#include "util/strbuf.h"
#include "util/utf8.h"

#include "test_pdf.h"

/* ---------------------------------------------------------------- helpers */

/* Extracts; checks the result's promises (valid UTF-8, no NUL, NUL-terminated at len). */
static ragd_err run_kind(const void *b, size_t n, extract_kind k, const char *charset, const extract_limits *lim,
                         extract_result *r, char *why, size_t cap)
{
    ragd_err e = extract_document(b, n, k, charset, lim, r, why, cap);
    if (e == RAGD_OK) {
        assert_non_null(r->text);
        assert_int_equal(strlen(r->text), r->len);
        assert_true(utf8_valid(r->text, r->len));
    } else {
        assert_null(r->text);
        assert_true(why[0] != '\0');
    }
    return e;
}

/* The text of an extraction that must succeed (free it). */
static char *text_of(const void *b, size_t n, extract_kind k, const char *charset)
{
    extract_result r;
    char why[400];
    ragd_err e = run_kind(b, n, k, charset, NULL, &r, why, sizeof why);
    if (e)
        fail_msg("extract: %s", why);
    char *t = r.text;
    r.text = NULL;
    extract_result_cleanup(&r);
    return t;
}

/* The extraction's text must be want. */
static void expect_text(const void *b, size_t n, extract_kind k, const char *charset, const char *want)
{
    char *t = text_of(b, n, k, charset);
    assert_string_equal(t, want);
    free(t);
}

/* The message of an extraction that must fail with e. */
static void expect_fail(const void *b, size_t n, extract_kind k, const char *charset, const extract_limits *lim,
                        ragd_err want, const char *msg_part)
{
    extract_result r;
    char why[400];
    ragd_err e = run_kind(b, n, k, charset, lim, &r, why, sizeof why);
    if (e != want || !strstr(why, msg_part))
        fail_msg("want %d containing '%s', got %d: '%s'", want, msg_part, e, why);
}

static void *gzip_of(const void *p, size_t n, size_t *out_len)
{
    z_stream zs = {0};
    assert_int_equal(deflateInit2(&zs, 9, Z_DEFLATED, 16 + MAX_WBITS, 9, Z_DEFAULT_STRATEGY), Z_OK);
    size_t cap = deflateBound(&zs, n) + 64;
    unsigned char *out = malloc(cap);
    zs.next_in = (Bytef *)p;
    zs.avail_in = (uInt)n;
    zs.next_out = out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(deflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = zs.total_out;
    deflateEnd(&zs);
    return out;
}

/* A zip of name/content pairs (NULL-terminated), the first stored when stored_first; the
 * content lengths from sizes (one per pair) or, when NULL, strlen. Written with libzip to a
 * temporary file, read back (free it). */
static char *zip_of_sized(const char *const *entries, const size_t *sizes, bool stored_first, size_t *len)
{
    char path[] = "/tmp/ragd-extract-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    int zerr = 0;
    zip_t *z = zip_open(path, ZIP_CREATE | ZIP_TRUNCATE, &zerr);
    assert_non_null(z);
    for (size_t i = 0; entries[i]; i += 2) {
        size_t size = sizes ? sizes[i / 2] : strlen(entries[i + 1]);
        zip_source_t *s = zip_source_buffer(z, entries[i + 1], size, 0);
        assert_non_null(s);
        zip_int64_t idx = zip_file_add(z, entries[i], s, ZIP_FL_ENC_UTF_8);
        assert_true(idx >= 0);
        if (i == 0 && stored_first)
            assert_int_equal(zip_set_file_compression(z, (zip_uint64_t)idx, ZIP_CM_STORE, 0), 0);
    }
    assert_int_equal(zip_close(z), 0);
    FILE *f = fopen(path, "rb");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *data = malloc((size_t)n);
    assert_int_equal(fread(data, 1, (size_t)n, f), (size_t)n);
    fclose(f);
    unlink(path);
    *len = (size_t)n;
    return data;
}

static char *zip_of(const char *const *entries, bool stored_first, size_t *len)
{
    return zip_of_sized(entries, NULL, stored_first, len);
}

#define W_NS "xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\""

static char *docx_of(const char *body, size_t *len)
{
    char *xml = NULL;
    assert_true(asprintf(&xml, "<?xml version=\"1.0\"?><w:document " W_NS "><w:body>%s</w:body></w:document>", body) >
                0);
    const char *entries[] = {"[Content_Types].xml", "<Types/>", "word/document.xml", xml, NULL};
    char *z = zip_of(entries, false, len);
    free(xml);
    return z;
}

/* ---------------------------------------------------------------- text kinds */

static void test_text_charsets(void **state)
{
    expect_text("plain caf\xc3\xa9", 11, EXTRACT_TEXT, NULL, "plain caf\xc3\xa9");
    /* undeclared, not UTF-8: windows-1252 (covers Latin-1; 0x80 is the euro sign) */
    expect_text("caf\xe9 \x80", 6, EXTRACT_TEXT, NULL, "caf\xc3\xa9 \xe2\x82\xac");
    expect_text("caf\xe9", 4, EXTRACT_TEXT, "ISO-8859-1", "caf\xc3\xa9");
    expect_text("\xc1\xc2", 2, EXTRACT_TEXT, "iso-8859-7", "\xce\x91\xce\x92"); /* Greek */
    /* a UTF-8 BOM goes; a UTF-16 BOM is followed */
    expect_text("\xef\xbb\xbfhi", 5, EXTRACT_TEXT, NULL, "hi");
    expect_text("\xff\xfeh\0i\0", 6, EXTRACT_TEXT, NULL, "hi");
    /* an unknown charset is fine for UTF-8 bytes, refused for others */
    expect_text("ok", 2, EXTRACT_TEXT, "x-no-such-charset", "ok");
    expect_fail("caf\xe9", 4, EXTRACT_TEXT, "x-no-such-charset", NULL, RAGD_EINVAL,
                "not valid UTF-8 and charset x-no-such-charset unknown");
    expect_fail("caf\xe9", 4, EXTRACT_TEXT, "utf-8", NULL, RAGD_EINVAL, "not valid UTF-8");
    /* markdown keeps its kind */
    extract_result r;
    char why[200];
    assert_int_equal(run_kind("# T\n\nx", 6, EXTRACT_MARKDOWN, NULL, NULL, &r, why, sizeof why), RAGD_OK);
    assert_true(r.markdown);
    extract_result_cleanup(&r);
}

static void test_binary_refused(void **state)
{
    unsigned char junk[4096];
    unsigned x = 12345;
    for (size_t i = 0; i < sizeof junk; i++) {
        x = x * 1103515245u + 12345u;
        junk[i] = (unsigned char)(x >> 16);
    }
    expect_fail(junk, sizeof junk, EXTRACT_AUTO, NULL, NULL, RAGD_EINVAL, "not text: binary data");
    expect_fail("a\0b", 3, EXTRACT_TEXT, NULL, NULL, RAGD_EINVAL, "not text: binary data");
    /* a few control characters (a form feed, an escape) are text */
    char *t = text_of("page\fnext \x1b[1mbold", 18, EXTRACT_TEXT, NULL);
    free(t);
    /* a zip that is none of the office formats */
    const char *entries[] = {"a.txt", "hello", NULL};
    size_t n;
    char *z = zip_of(entries, false, &n);
    expect_fail(z, n, EXTRACT_AUTO, NULL, NULL, RAGD_EINVAL, "zip archive that is not DOCX, ODT or EPUB");
    free(z);
}

/* The binary test counts control characters 16 bytes at a time: a NUL at every offset is
 * refused, and the one-in-ten threshold is exact whatever the offsets of the controls. */
static void test_binary_threshold(void **state)
{
    char t[100];
    for (size_t at = 0; at < 40; at++) {
        memset(t, 'a', 40);
        t[at] = '\0';
        expect_fail(t, 40, EXTRACT_TEXT, NULL, NULL, RAGD_EINVAL, "not text: binary data");
    }
    static const char controls[] = {0x01, 0x08, 0x0E, 0x1A, 0x1C, 0x1F, 0x7F};
    for (size_t k = 0; k < sizeof controls; k++) {
        for (size_t shift = 0; shift < 16; shift++) {
            /* ten controls in 100 bytes: text; eleven: binary */
            memset(t, 'a', sizeof t);
            for (size_t i = 0; i < 10; i++)
                t[(shift + i * 9) % sizeof t] = controls[k];
            char *ok = text_of(t, sizeof t, EXTRACT_TEXT, NULL);
            free(ok);
            t[(shift + 95) % sizeof t] = controls[k];
            expect_fail(t, sizeof t, EXTRACT_TEXT, NULL, NULL, RAGD_EINVAL, "not text: binary data");
        }
    }
    /* tab, line feed, vertical tab, form feed, carriage return and escape are text */
    memset(t, 'a', sizeof t);
    for (size_t i = 0; i < 60; i++)
        t[i] = "\t\n\v\f\r\x1b"[i % 6];
    char *ok = text_of(t, sizeof t, EXTRACT_TEXT, NULL);
    free(ok);
}

static void test_sniff(void **state)
{
    assert_int_equal(extract_sniff("%PDF-1.7\n", 9), EXTRACT_PDF);
    assert_int_equal(extract_sniff("  <!DOCTYPE html><p>x", 21), EXTRACT_HTML);
    assert_int_equal(extract_sniff("<HTML><body>", 12), EXTRACT_HTML);
    assert_int_equal(extract_sniff("just words", 10), EXTRACT_TEXT);
    assert_int_equal(extract_sniff("# heading", 9), EXTRACT_TEXT);
    size_t n;
    const char *odt[] = {"mimetype", "application/vnd.oasis.opendocument.text", "content.xml", "<x/>", NULL};
    char *z = zip_of(odt, true, &n);
    assert_int_equal(extract_sniff(z, n), EXTRACT_ODT);
    free(z);
    const char *epub[] = {"mimetype", "application/epub+zip", "META-INF/container.xml", "<x/>", NULL};
    z = zip_of(epub, true, &n);
    assert_int_equal(extract_sniff(z, n), EXTRACT_EPUB);
    free(z);
    z = docx_of("", &n);
    assert_int_equal(extract_sniff(z, n), EXTRACT_DOCX);
    free(z);
}

static void test_rst_headings(void **state)
{
    const char *rst = "=====\nTitle\n=====\n\nIntro text.\n\nSection\n-------\n\nBody.\n\nOther\n=====\n\nShort\n--\n";
    extract_result r;
    char why[200];
    assert_int_equal(run_kind(rst, strlen(rst), EXTRACT_RST, NULL, NULL, &r, why, sizeof why), RAGD_OK);
    assert_true(r.markdown);
    /* levels by first appearance: overlined '=' 1, underlined '-' 2, underlined '=' 3; an
     * underline shorter than its title is no title */
    assert_string_equal(r.text,
                        "# Title\n\nIntro text.\n\n## Section\n\nBody.\n\n### Other\n\nShort\n--\n");
    extract_result_cleanup(&r);
}

static void test_gzip(void **state)
{
    const char *txt = "compressed caf\xe9 text";
    size_t n;
    void *gz = gzip_of(txt, strlen(txt), &n);
    expect_text(gz, n, EXTRACT_TEXT, NULL, "compressed caf\xc3\xa9 text"); /* unwrapped whatever the kind says */
    expect_fail(gz, n - 6, EXTRACT_TEXT, NULL, NULL, RAGD_EINVAL, "gzip could not be read");
    free(gz);
    /* a bomb: 64 MiB of zeros, about 64 KiB packed, stops at the budget */
    size_t big = (size_t)64 << 20;
    char *zeros = calloc(1, big);
    gz = gzip_of(zeros, big, &n);
    free(zeros);
    expect_fail(gz, n, EXTRACT_AUTO, NULL, NULL, RAGD_ETOOBIG, "gzip could not be read: it unpacks to over");
    free(gz);
}

/* ---------------------------------------------------------------- PDF */

static void test_pdf_pages(void **state)
{
    const char *pages[] = {"First page words", "Second page words", "Third page words"};
    size_t n;
    char *pdf = pdf_of(pages, 3, &n);
    extract_result r;
    char why[300];
    assert_int_equal(run_kind(pdf, n, EXTRACT_AUTO, NULL, NULL, &r, why, sizeof why), RAGD_OK);
    assert_int_equal(r.kind, EXTRACT_PDF);
    assert_int_equal(r.n_pages, 3);
    assert_int_equal(r.page_starts[0], 0);
    for (size_t p = 0; p < 3; p++)
        assert_memory_equal(r.text + r.page_starts[p], pages[p], strlen(pages[p]));
    extract_result_cleanup(&r);

    /* bounds: pages, time */
    extract_limits lim;
    extract_limits_default(&lim, n);
    lim.max_pages = 2;
    expect_fail(pdf, n, EXTRACT_PDF, NULL, &lim, RAGD_ETOOBIG, "3 pages, at most 2");
    extract_limits_default(&lim, n);
    lim.deadline_ms = clock_now_ms() - 1;
    expect_fail(pdf, n, EXTRACT_PDF, NULL, &lim, RAGD_ETOOBIG, "took over");
    /* cut short, or not a PDF at all */
    expect_fail(pdf, 200, EXTRACT_PDF, NULL, NULL, RAGD_EINVAL, "PDF could not be read");
    expect_fail("hello", 5, EXTRACT_PDF, NULL, NULL, RAGD_EINVAL, "PDF could not be read");
    free(pdf);
    /* no text at all (a scan) */
    const char *blank[] = {""};
    pdf = pdf_of(blank, 1, &n);
    expect_fail(pdf, n, EXTRACT_PDF, NULL, NULL, RAGD_EINVAL, "no text in its 1 page");
    free(pdf);
}

/* Separate PDFs on separate threads at once (poppler's global set-up is shared). */
static void *pdf_thread(void *arg)
{
    const char *pages[] = {arg, "more"};
    for (int i = 0; i < 20; i++) {
        size_t n;
        char *pdf = pdf_of(pages, 2, &n);
        extract_result r;
        char why[300];
        ragd_err e = extract_document(pdf, n, EXTRACT_PDF, NULL, NULL, &r, why, sizeof why);
        bool ok = e == RAGD_OK && strncmp(r.text, arg, strlen(arg)) == 0;
        extract_result_cleanup(&r);
        free(pdf);
        if (!ok)
            return (void *)1;
    }
    return NULL;
}

static void test_pdf_threads(void **state)
{
    pthread_t t[4];
    const char *words[] = {"alpha", "bravo", "charlie", "delta"};
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, pdf_thread, (void *)words[i]), 0);
    for (int i = 0; i < 4; i++) {
        void *res = NULL;
        pthread_join(t[i], &res);
        assert_null(res);
    }
}

/* ---------------------------------------------------------------- zip formats */

static void test_docx(void **state)
{
    size_t n;
    char *z = docx_of("<w:p><w:pPr><w:pStyle w:val=\"Heading1\"/></w:pPr><w:r><w:t>Intro</w:t></w:r></w:p>"
                      "<w:p><w:r><w:t xml:space=\"preserve\">Hello </w:t></w:r><w:r><w:t>world</w:t><w:tab/>"
                      "<w:t>tabbed</w:t></w:r><w:del><w:r><w:delText>gone</w:delText></w:r></w:del></w:p>"
                      "<w:p><w:pPr><w:outlineLvl w:val=\"1\"/></w:pPr><w:r><w:t>Sub</w:t></w:r></w:p>"
                      "<w:tbl><w:tr><w:tc><w:p><w:r><w:t>a</w:t></w:r></w:p></w:tc>"
                      "<w:tc><w:p><w:r><w:t>b</w:t></w:r></w:p></w:tc></w:tr></w:tbl>",
                      &n);
    extract_result r;
    char why[300];
    assert_int_equal(run_kind(z, n, EXTRACT_DOCX, NULL, NULL, &r, why, sizeof why), RAGD_OK);
    assert_true(r.markdown);
    assert_string_equal(r.text, "# Intro\n\nHello world\ttabbed\n\n## Sub\n\na | b");
    extract_result_cleanup(&r);
    free(z);
    /* no document.xml; not a zip */
    const char *other[] = {"word/other.xml", "<x/>", NULL};
    z = zip_of(other, false, &n);
    expect_fail(z, n, EXTRACT_DOCX, NULL, NULL, RAGD_EINVAL, "DOCX could not be read: it has no word/document.xml");
    free(z);
    expect_fail("PK\x03\x04garbage", 11, EXTRACT_DOCX, NULL, NULL, RAGD_EINVAL, "DOCX could not be read");
}

static void test_docx_bombs(void **state)
{
    /* entities: refused before any expansion */
    const char *lol = "<?xml version=\"1.0\"?><!DOCTYPE d [<!ENTITY a \"aaaaaaaaaa\"><!ENTITY b \"&a;&a;&a;&a;&a;\">]>"
                      "<w:document " W_NS "><w:body><w:p><w:r><w:t>&b;</w:t></w:r></w:p></w:body></w:document>";
    const char *entries[] = {"word/document.xml", lol, NULL};
    size_t n;
    char *z = zip_of(entries, false, &n);
    expect_fail(z, n, EXTRACT_DOCX, NULL, NULL, RAGD_EINVAL, "declares a DTD or entities");
    free(z);
    /* the same refusal when the part is UTF-16 (no ASCII "<!DOCTYPE" in its bytes): an
     * external entity to a local file */
    const char *xxe = "<?xml version=\"1.0\" encoding=\"UTF-16\"?><!DOCTYPE d [<!ENTITY x SYSTEM \"file:///etc/hostname\">]>"
                      "<w:document " W_NS "><w:body><w:p><w:r><w:t>x &x; y</w:t></w:r></w:p></w:body></w:document>";
    size_t xn = strlen(xxe);
    char *utf16 = malloc(2 + 2 * xn);
    utf16[0] = (char)0xFF; /* UTF-16LE byte order mark */
    utf16[1] = (char)0xFE;
    for (size_t i = 0; i < xn; i++) {
        utf16[2 + 2 * i] = xxe[i];
        utf16[3 + 2 * i] = '\0';
    }
    const char *xxe_entries[] = {"word/document.xml", utf16, NULL};
    size_t xxe_sizes[] = {2 + 2 * xn};
    z = zip_of_sized(xxe_entries, xxe_sizes, false, &n);
    free(utf16);
    expect_fail(z, n, EXTRACT_DOCX, NULL, NULL, RAGD_EINVAL, "declares a DTD or entities");
    free(z);
    /* dense markup: over EXTRACT_XML_NODES_MAX empty paragraphs (6 bytes each, a tree node
     * of ~120 bytes each: parsed whole it cost ~20x the part) is refused while parsing */
    strbuf dense;
    strbuf_init(&dense, 64 << 20);
    for (int i = 0; i <= EXTRACT_XML_NODES_MAX; i++)
        strbuf_append(&dense, "<w:p/>", 6);
    z = docx_of(dense.data, &n);
    strbuf_cleanup(&dense);
    extract_limits roomy;
    extract_limits_default(&roomy, n);
    roomy.max_inflated = (size_t)64 << 20; /* the budget of a padded upload */
    expect_fail(z, n, EXTRACT_DOCX, NULL, &roomy, RAGD_EINVAL, "over 2000000 elements, attributes and texts");
    free(z);
    /* a zip bomb: 8 MiB of spaces, far over 20x its packed size */
    size_t big = (size_t)8 << 20;
    char *pad = malloc(big + 1);
    memset(pad, ' ', big);
    pad[big] = '\0';
    z = docx_of(pad, &n);
    free(pad);
    assert_true(n * EXTRACT_INFLATE_RATIO < big);
    expect_fail(z, n, EXTRACT_DOCX, NULL, NULL, RAGD_ETOOBIG, "unpacks to over");
    free(z);
    /* deeper than libxml2's limit (256) */
    strbuf sb;
    strbuf_init(&sb, 1 << 20);
    for (int i = 0; i < 300; i++)
        strbuf_appends(&sb, "<w:r>");
    for (int i = 0; i < 300; i++)
        strbuf_appends(&sb, "</w:r>");
    z = docx_of(sb.data, &n);
    strbuf_cleanup(&sb);
    expect_fail(z, n, EXTRACT_DOCX, NULL, NULL, RAGD_EINVAL, "bad XML");
    free(z);
}

static void test_odt(void **state)
{
    const char *content =
        "<?xml version=\"1.0\"?><office:document-content "
        "xmlns:office=\"urn:oasis:names:tc:opendocument:xmlns:office:1.0\" "
        "xmlns:text=\"urn:oasis:names:tc:opendocument:xmlns:text:1.0\"><office:automatic-styles>"
        "<x>style text</x></office:automatic-styles><office:body><office:text>"
        "<text:h text:outline-level=\"2\">Part</text:h><text:p>Two<text:s text:c=\"2\"/>spaces,\n  collapsed"
        "<text:line-break/>broken</text:p></office:text></office:body></office:document-content>";
    const char *entries[] = {"mimetype", "application/vnd.oasis.opendocument.text", "content.xml", content, NULL};
    size_t n;
    char *z = zip_of(entries, true, &n);
    expect_text(z, n, EXTRACT_AUTO, NULL, "## Part\n\nTwo  spaces, collapsed\nbroken");
    free(z);
}

static void test_epub(void **state)
{
    const char *container = "<container><rootfiles><rootfile full-path=\"OPS/book.opf\"/></rootfiles></container>";
    const char *opf = "<package xmlns:dc=\"http://purl.org/dc/elements/1.1/\"><metadata><dc:title>Book Title</dc:title>"
                      "</metadata><manifest><item id=\"b\" href=\"../OPS/b%20x.xhtml\"/><item id=\"a\" href=\"a.xhtml\"/>"
                      "<item id=\"gone\" href=\"missing.xhtml\"/></manifest>"
                      "<spine><itemref idref=\"a\"/><itemref idref=\"gone\"/><itemref idref=\"b\"/></spine></package>";
    const char *entries[] = {"mimetype", "application/epub+zip", "META-INF/container.xml", container,
                             "OPS/book.opf", opf, "OPS/a.xhtml", "<html><body><p>First chapter.</p></body></html>",
                             "OPS/b x.xhtml", "<html><body><p>Second chapter.</p></body></html>", NULL};
    size_t n;
    char *z = zip_of(entries, true, &n);
    extract_result r;
    char why[300];
    assert_int_equal(run_kind(z, n, EXTRACT_AUTO, NULL, NULL, &r, why, sizeof why), RAGD_OK);
    assert_int_equal(r.kind, EXTRACT_EPUB);
    assert_string_equal(r.text, "Book Title\n\nFirst chapter.\n\nSecond chapter.");
    assert_int_equal(r.title_len, strlen("Book Title"));
    extract_result_cleanup(&r);
    free(z);
    const char *broken[] = {"mimetype", "application/epub+zip", "META-INF/container.xml", "<container/>", NULL};
    z = zip_of(broken, true, &n);
    expect_fail(z, n, EXTRACT_EPUB, NULL, NULL, RAGD_EINVAL, "names no package file");
    free(z);
}

/* A package of 100,000 manifest items whose spine lists them in reverse order: each spine
 * entry is looked up by id. A linear scan per entry (5e9 comparisons, each allocating the
 * id) ran past the 30 s deadline and the book was refused; found by an index it is read.
 * One chapter exists, the other items name missing files (skipped). */
static void test_epub_large_manifest(void **state)
{
    enum { ITEMS = 100000 };
    strbuf sb;
    strbuf_init(&sb, 64 << 20);
    strbuf_appends(&sb, "<package><manifest><item id=\"i0\" href=\"c.xhtml\"/>");
    char tmp[96];
    for (int i = 1; i < ITEMS; i++) {
        snprintf(tmp, sizeof tmp, "<item id=\"i%d\" href=\"missing%d.xhtml\"/>", i, i);
        strbuf_appends(&sb, tmp);
    }
    strbuf_appends(&sb, "</manifest><spine>");
    for (int i = ITEMS - 1; i >= 0; i--) {
        snprintf(tmp, sizeof tmp, "<itemref idref=\"i%d\"/>", i);
        strbuf_appends(&sb, tmp);
    }
    strbuf_appends(&sb, "</spine></package>");
    const char *entries[] = {"mimetype", "application/epub+zip", "META-INF/container.xml",
                             "<container><rootfiles><rootfile full-path=\"book.opf\"/></rootfiles></container>",
                             "book.opf", sb.data, "c.xhtml", "<html><body><p>The only chapter.</p></body></html>",
                             NULL};
    size_t n;
    char *z = zip_of(entries, true, &n);
    strbuf_cleanup(&sb);
    extract_result r;
    char why[300];
    assert_int_equal(run_kind(z, n, EXTRACT_EPUB, NULL, NULL, &r, why, sizeof why), RAGD_OK);
    assert_string_equal(r.text, "The only chapter.");
    extract_result_cleanup(&r);
    free(z);
}

/* ---------------------------------------------------------------- formats by name */

static void test_format_of_source(void **state)
{
    assert_int_equal(rag_format_of_source(NULL), RAG_FORMAT_TEXT);
    assert_int_equal(rag_format_of_source("a/b/notes.txt"), RAG_FORMAT_TEXT);
    assert_int_equal(rag_format_of_source("README.md"), RAG_FORMAT_MARKDOWN);
    assert_int_equal(rag_format_of_source("x.HTM"), RAG_FORMAT_HTML);
    assert_int_equal(rag_format_of_source("guide.rst"), RAG_FORMAT_RST);
    assert_int_equal(rag_format_of_source("paper.pdf"), RAG_FORMAT_PDF);
    assert_int_equal(rag_format_of_source("paper.pdf.gz"), RAG_FORMAT_PDF);
    assert_int_equal(rag_format_of_source("changelog.Debian.gz"), RAG_FORMAT_AUTO);
    assert_int_equal(rag_format_of_source("w.docx"), RAG_FORMAT_DOCX);
    assert_int_equal(rag_format_of_source("o.odt"), RAG_FORMAT_ODT);
    assert_int_equal(rag_format_of_source("b.epub"), RAG_FORMAT_EPUB);
    assert_int_equal(rag_format_of_source("/usr/share/doc/x/copyright"), RAG_FORMAT_AUTO);
    assert_int_equal(rag_format_of_source("README"), RAG_FORMAT_AUTO);
    assert_int_equal(rag_format_of_source(".bashrc"), RAG_FORMAT_AUTO);
    assert_int_equal(rag_format_of_source("v1.2/README"), RAG_FORMAT_AUTO);
    assert_int_equal(rag_format_text_only(RAG_FORMAT_PDF), RAG_FORMAT_TEXT);
    assert_int_equal(rag_format_text_only(RAG_FORMAT_RST), RAG_FORMAT_RST);
}

/* ---------------------------------------------------------------- the PDF child's answers */

/* A helper "binary" that is a shell script doing body; its path in path (PATH_MAX). */
static void write_helper(const char *dir, const char *name, const char *body, char *path, size_t cap)
{
    snprintf(path, cap, "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fprintf(f, "#!/bin/sh\n%s\n", body);
    fclose(f);
    assert_int_equal(chmod(path, 0700), 0);
}

/* Extracts pdf through the helper at path, with a deadline ms from now. */
static ragd_err run_helper(const char *path, double ms, extract_result *r, char *why, size_t cap)
{
    extract_limits lim;
    extract_limits_default(&lim, 10);
    lim.pdf_helper = path;
    lim.deadline_ms = clock_now_ms() + ms;
    return run_kind("%PDF-1.4\n", 9, EXTRACT_PDF, NULL, &lim, r, why, cap);
}

/* The parent believes nothing the child says: sizes past the limits, a NUL in the text,
 * bytes past the frame, page starts out of order; a crash, a bad exit and a child that
 * hangs are clear messages, and every child is waited for (no zombie: waitpid(-1) finds
 * none afterwards). */
static void test_pdf_child_answers(void **state)
{
    setenv("RAGD_TEST_SECRET", "sk-not-for-children", 1);
    char dir[] = "/tmp/ragd-pdfchild-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct {
        const char *name, *body, *want;
        ragd_err e;
        double ms;
    } cases[] = {
        {"huge", "cat >/dev/null; printf 'RPDF\\000\\000\\000\\000\\377\\377\\377\\377\\377\\377\\377\\177\\001\\000\\000\\000\\000\\000\\000\\000'",
         "answered nonsense", RAGD_EINVAL, 5000},
        {"nul", "cat >/dev/null; printf 'RPDF\\000\\000\\000\\000\\003\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000a\\000b'",
         "answered nonsense", RAGD_EINVAL, 5000},
        {"extra", "cat >/dev/null; printf 'RPDF\\000\\000\\000\\000\\001\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000\\000aMORE'",
         "answered nonsense", RAGD_EINVAL, 5000},
        {"order", "cat >/dev/null; printf 'RPDF\\000\\000\\000\\000\\002\\000\\000\\000\\000\\000\\000\\000\\002\\000\\000\\000\\000\\000\\000\\000ab\\002\\000\\000\\000\\000\\000\\000\\000\\001\\000\\000\\000\\000\\000\\000\\000'",
         "answered nonsense", RAGD_EINVAL, 5000},
        {"segv", "cat >/dev/null; kill -SEGV $$", "the reader crashed (signal 11)", RAGD_EINVAL, 5000},
        {"exit", "exit 3", "the reader failed (exit status 3)", RAGD_EINVAL, 5000},
        /* the child gets none of our environment but sanitizer options (no API keys) */
        {"env", "cat >/dev/null; [ -n \"$RAGD_TEST_SECRET\" ] && exit 7; exit 5", "exit status 5", RAGD_EINVAL, 5000},
        {"empty", "cat >/dev/null", "answered nonsense", RAGD_EINVAL, 5000},
        {"hang", "exec sleep 30", "took over", RAGD_ETOOBIG, 300},
        {"hang_closed", "exec >&-; exec sleep 30", "took over", RAGD_ETOOBIG, 300},
    };
    char path[4096];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        write_helper(dir, cases[i].name, cases[i].body, path, sizeof path);
        extract_result r;
        char why[400];
        ragd_err e = run_helper(path, cases[i].ms, &r, why, sizeof why);
        if (e != cases[i].e || !strstr(why, cases[i].want))
            fail_msg("%s: want %d '%s', got %d '%s'", cases[i].name, cases[i].e, cases[i].want, e, why);
        assert_int_equal(waitpid(-1, NULL, WNOHANG), -1); /* no child left, reaped or running */
        unlink(path);
    }
    /* a child that reads nothing of a large input: our write fails (EPIPE, no SIGPIPE death) */
    write_helper(dir, "deaf", "exit 3", path, sizeof path);
    {
        size_t big = (size_t)4 << 20;
        char *pdf = calloc(1, big);
        assert_non_null(pdf);
        memcpy(pdf, "%PDF-1.4\n", 9);
        extract_limits lim;
        extract_limits_default(&lim, big);
        lim.pdf_helper = path;
        expect_fail(pdf, big, EXTRACT_PDF, NULL, &lim, RAGD_EINVAL, "exit status 3");
        free(pdf);
        unlink(path);
    }
    /* a well-formed answer: "hi" on one page */
    write_helper(dir, "good",
                 "cat >/dev/null; printf 'RPDF\\000\\000\\000\\000\\002\\000\\000\\000\\000\\000\\000\\000\\001\\000\\000\\000\\000\\000\\000\\000hi\\000\\000\\000\\000\\000\\000\\000\\000'",
                 path, sizeof path);
    extract_result r;
    char why[400];
    assert_int_equal(run_helper(path, 5000, &r, why, sizeof why), RAGD_OK);
    assert_string_equal(r.text, "hi");
    assert_int_equal(r.n_pages, 1);
    extract_result_cleanup(&r);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_charsets), cmocka_unit_test(test_binary_refused),
        cmocka_unit_test(test_binary_threshold), cmocka_unit_test(test_sniff),
        cmocka_unit_test(test_rst_headings),  cmocka_unit_test(test_gzip),           cmocka_unit_test(test_pdf_pages),
        cmocka_unit_test(test_pdf_threads),   cmocka_unit_test(test_docx),           cmocka_unit_test(test_docx_bombs),
        cmocka_unit_test(test_odt),           cmocka_unit_test(test_epub),           cmocka_unit_test(test_epub_large_manifest),
        cmocka_unit_test(test_format_of_source), cmocka_unit_test(test_pdf_child_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
