/* The extractors' entry point (text/extract.h): gzip unwrapped, the kind sniffed when
 * AUTO, text kinds decoded to UTF-8, then the format's reader (extract_*.c). */
#include "text/extract.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <zlib.h>

#include "text/charset.h"
#include "text/extract_int.h"
#include "text/html.h"
#include "util/clock.h"
#include "util/utf8.h"

#define EXTRACT_SNIFF_BYTES 65536 /* looked at for NUL and control bytes */

void extract_limits_default(extract_limits *lim, size_t input_len)
{
    size_t inflated = EXTRACT_INFLATE_MAX;
    if (input_len < EXTRACT_INFLATE_MAX / EXTRACT_INFLATE_RATIO)
        inflated = input_len * EXTRACT_INFLATE_RATIO;
    if (inflated < EXTRACT_INFLATE_FLOOR)
        inflated = EXTRACT_INFLATE_FLOOR;
    lim->max_inflated = inflated;
    lim->max_text = EXTRACT_TEXT_MAX;
    lim->max_pages = EXTRACT_PAGES_MAX;
    lim->deadline_ms = clock_now_ms() + extract_seconds() * 1000.0;
    lim->pdf_helper = extract_pdf_helper();
}

void extract_result_cleanup(extract_result *r)
{
    if (!r)
        return;
    free(r->text);
    free(r->page_starts);
    memset(r, 0, sizeof *r);
}

const char *extract_kind_name(extract_kind kind)
{
    switch (kind) {
    case EXTRACT_TEXT:
    case EXTRACT_AUTO:
        return "text";
    case EXTRACT_MARKDOWN:
        return "markdown";
    case EXTRACT_HTML:
        return "HTML";
    case EXTRACT_RST:
        return "reStructuredText";
    case EXTRACT_PDF:
        return "PDF";
    case EXTRACT_DOCX:
        return "DOCX";
    case EXTRACT_ODT:
        return "ODT";
    case EXTRACT_EPUB:
        return "EPUB";
    }
    return "text";
}

ragd_err extract_fail(extract_ctx *x, ragd_err e, const char *fmt, ...)
{
    if (x->why && x->why_cap) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(x->why, x->why_cap, fmt, ap);
        va_end(ap);
        utf8_sanitize(x->why);
    }
    return e;
}

ragd_err extract_check_time(extract_ctx *x, const char *what)
{
    if (x->lim->deadline_ms > 0 && clock_now_ms() > x->lim->deadline_ms)
        return extract_fail(x, RAGD_ETOOBIG, "%s could not be read: it took over %d seconds", what, extract_seconds());
    return RAGD_OK;
}

/* ---------------------------------------------------------------- gzip */

static bool extract_is_gzip(const char *b, size_t len)
{
    return len >= 2 && (unsigned char)b[0] == 0x1f && (unsigned char)b[1] == 0x8b;
}

/* Unpacks a gzip stream (concatenated members too) into *out, at most max_inflated bytes. */
static ragd_err extract_gunzip(extract_ctx *x, const char *bytes, size_t len, char **out, size_t *out_len)
{
    strbuf sb;
    strbuf_init(&sb, x->lim->max_inflated - x->inflated);
    z_stream zs = {0};
    ragd_err e = RAGD_OK;
    if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK)
        return extract_fail(x, RAGD_ENOMEM, "out of memory");
    zs.next_in = (Bytef *)bytes;
    size_t left = len;
    char tmp[16384];
    for (;;) {
        if (zs.avail_in == 0 && left > 0) {
            uInt take = left > (1u << 30) ? (1u << 30) : (uInt)left;
            zs.avail_in = take;
            left -= take;
        }
        zs.next_out = (Bytef *)tmp;
        zs.avail_out = sizeof tmp;
        int rc = inflate(&zs, Z_NO_FLUSH);
        size_t got = sizeof tmp - zs.avail_out;
        if (got && (e = strbuf_append(&sb, tmp, got)) != RAGD_OK) {
            if (e == RAGD_ETOOBIG)
                e = extract_fail(x, e, "gzip could not be read: it unpacks to over %zu bytes (at most %dx the submitted size, %zu MiB in all)",
                                 x->lim->max_inflated, EXTRACT_INFLATE_RATIO, EXTRACT_INFLATE_MAX >> 20);
            else
                extract_fail(x, e, "out of memory");
            goto out;
        }
        if (rc == Z_STREAM_END) {
            /* another member may follow (gzip -c a b > ab.gz); trailing zero padding ends it */
            if (zs.avail_in == 0 && left == 0)
                break;
            if (*zs.next_in == 0)
                break;
            if (inflateReset(&zs) != Z_OK) {
                e = extract_fail(x, RAGD_EINVAL, "gzip could not be read: bad member");
                goto out;
            }
            continue;
        }
        if (rc == Z_BUF_ERROR && zs.avail_in == 0 && left == 0) {
            e = extract_fail(x, RAGD_EINVAL, "gzip could not be read: the stream is cut short");
            goto out;
        }
        if (rc != Z_OK && rc != Z_BUF_ERROR) {
            e = rc == Z_MEM_ERROR ? extract_fail(x, RAGD_ENOMEM, "out of memory")
                                  : extract_fail(x, RAGD_EINVAL, "gzip could not be read: %s", zs.msg ? zs.msg : "corrupt data");
            goto out;
        }
    }
    x->inflated += sb.len;
    if (!sb.data && (e = strbuf_append(&sb, "", 0)) != RAGD_OK) {
        extract_fail(x, e, "out of memory");
        goto out;
    }
    *out = strbuf_detach(&sb, out_len);
out:
    inflateEnd(&zs);
    strbuf_cleanup(&sb);
    return e;
}

/* ---------------------------------------------------------------- sniffing */

static bool extract_starts_with_ci(const char *p, size_t n, const char *w)
{
    size_t k = strlen(w);
    return n >= k && strncasecmp(p, w, k) == 0;
}

/* A zip's kind by its entries. */
static extract_kind extract_sniff_zip(const char *bytes, size_t len)
{
    /* The ODF and EPUB rule: a stored "mimetype" entry first, its content at offset 38. */
    static const char odt[] = "mimetypeapplication/vnd.oasis.opendocument.text";
    static const char epub[] = "mimetypeapplication/epub+zip";
    if (len >= 30 + sizeof odt - 1 && memcmp(bytes + 30, odt, sizeof odt - 1) == 0)
        return EXTRACT_ODT;
    if (len >= 30 + sizeof epub - 1 && memcmp(bytes + 30, epub, sizeof epub - 1) == 0)
        return EXTRACT_EPUB;
    /* Otherwise by the central directory's names (memmem on the tail is enough: a false
     * positive only picks the reader that then says what is missing). */
    if (memmem(bytes, len, "word/document.xml", 17))
        return EXTRACT_DOCX;
    if (memmem(bytes, len, "META-INF/container.xml", 22))
        return EXTRACT_EPUB;
    if (memmem(bytes, len, "content.xml", 11) && memmem(bytes, len, "opendocument.text", 17))
        return EXTRACT_ODT;
    return EXTRACT_AUTO;
}

extract_kind extract_sniff(const char *bytes, size_t len)
{
    size_t head = len < 1024 ? len : 1024;
    if (head >= 5 && memmem(bytes, head, "%PDF-", 5))
        return EXTRACT_PDF;
    if (len >= 4 && memcmp(bytes, "PK\x03\x04", 4) == 0)
        return extract_sniff_zip(bytes, len);
    size_t i = 0;
    if (len >= 3 && memcmp(bytes, "\xEF\xBB\xBF", 3) == 0)
        i = 3;
    while (i < len && (bytes[i] == ' ' || bytes[i] == '\t' || bytes[i] == '\r' || bytes[i] == '\n'))
        i++;
    if (extract_starts_with_ci(bytes + i, len - i, "<!doctype html") || extract_starts_with_ci(bytes + i, len - i, "<html"))
        return EXTRACT_HTML;
    return EXTRACT_TEXT;
}

/* ---------------------------------------------------------------- text */

/* Sixteen bytes as one vector (GCC's vector extension: SSE2 on x86-64, NEON on arm64). */
typedef unsigned char extract_v16 __attribute__((vector_size(16)));

/* How many of the 16 bytes at p are control characters other than tab, line feed,
 * vertical tab, form feed, carriage return and escape (NUL counts too), or DEL. */
static size_t extract_controls16(const unsigned char *p)
{
    extract_v16 v;
    memcpy(&v, p, sizeof v);
    extract_v16 ctl = (extract_v16)(((v < 0x20) & ~((v >= 0x09) & (v <= 0x0D)) & (v != 0x1B)) | (v == 0x7F));
    uint64_t a, b;
    memcpy(&a, &ctl, 8);
    memcpy(&b, (const unsigned char *)&ctl + 8, 8);
    return (size_t)(__builtin_popcountll(a) + __builtin_popcountll(b)) / 8;
}

/* Binary: a NUL byte, or more than one in ten bytes a control character other than
 * tab, line feed, vertical tab, form feed, carriage return and escape, in the first 64 KiB. */
static bool extract_looks_binary(const unsigned char *p, size_t n)
{
    size_t look = n < EXTRACT_SNIFF_BYTES ? n : EXTRACT_SNIFF_BYTES;
    if (memchr(p, 0, look))
        return true;
    size_t ctl = 0;
    size_t i = 0;
    for (; look - i >= 16; i += 16)
        ctl += extract_controls16(p + i);
    for (; i < look; i++) {
        unsigned c = p[i];
        if ((c < 0x20 && !(c >= 0x09 && c <= 0x0D) && c != 0x1B) || c == 0x7F)
            ctl++;
    }
    return ctl * 10 > look;
}

/* Text of any charset into out as UTF-8 (the rules in extract.h). what names the kind. */
static ragd_err extract_decode(extract_ctx *x, const char *bytes, size_t len, const char *charset, const char *what,
                               strbuf *out)
{
    const unsigned char *p = (const unsigned char *)bytes;
    const char *enc = NULL;
    ragd_err e = RAGD_OK;
    if (len >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0) { /* a UTF-8 BOM: dropped */
        p += 3;
        len -= 3;
        enc = "UTF-8";
    } else if (len >= 2 && ((p[0] == 0xFF && p[1] == 0xFE) || (p[0] == 0xFE && p[1] == 0xFF))) {
        enc = "UTF-16"; /* iconv reads and drops the BOM */
    } else if (charset && *charset) {
        enc = charset_canonical(charset);
        if (strcmp(enc, "UTF-8") != 0 && !charset_known(enc)) {
            if (utf8_valid((const char *)p, len))
                enc = "UTF-8";
            else
                return extract_fail(x, RAGD_EINVAL, "not valid UTF-8 and charset %s unknown", charset);
        }
    }
    bool utf8 = enc ? strcmp(enc, "UTF-8") == 0 : false;
    if (!enc || utf8) {
        if (extract_looks_binary(p, len))
            return extract_fail(x, RAGD_EINVAL, "not text: binary data");
        if (utf8_valid((const char *)p, len)) {
            e = strbuf_append(out, p, len);
        } else if (utf8) {
            return extract_fail(x, RAGD_EINVAL, "not valid UTF-8 %s (the declared charset is %s)", what,
                                charset ? charset : "utf-8");
        } else { /* undeclared and not UTF-8: the usual legacy charset */
            e = charset_convert(out, p, len, charset_canonical("windows-1252"));
        }
    } else {
        e = charset_convert(out, p, len, enc);
        if (!e && extract_looks_binary((const unsigned char *)out->data, out->len))
            return extract_fail(x, RAGD_EINVAL, "not text: binary data");
    }
    if (e == RAGD_ETOOBIG)
        return extract_fail(x, e, "%s is over %zu bytes as UTF-8 text", what, x->lim->max_text);
    if (e)
        return extract_fail(x, e, "out of memory");
    return RAGD_OK;
}

/* HTML through the HTML reader (which repairs any bytes), binary data refused first. The
 * title's length comes with the text. */
static ragd_err extract_html(extract_ctx *x, const char *b, size_t len, const char *charset, extract_result *r)
{
    const unsigned char *p = (const unsigned char *)b;
    bool utf16_bom = len >= 2 && ((p[0] == 0xFF && p[1] == 0xFE) || (p[0] == 0xFE && p[1] == 0xFF));
    if (!utf16_bom && extract_looks_binary(p, len)) /* UTF-16 has NUL bytes by design */
        return extract_fail(x, RAGD_EINVAL, "not text: binary data");
    char *t = NULL;
    size_t tl = 0, title = 0;
    ragd_err e = html_to_text_as(b, len, charset, &t, &tl, &title);
    if (e == RAGD_OK && tl > x->lim->max_text)
        e = RAGD_ETOOBIG;
    if (e) {
        free(t);
        if (e == RAGD_ENOMEM)
            return extract_fail(x, e, "out of memory");
        return extract_fail(x, e, "HTML could not be read (%s)", ragd_strerror(e));
    }
    r->text = t;
    r->len = tl;
    r->title_len = title;
    return RAGD_OK;
}

/* ---------------------------------------------------------------- entry point */

/* The reader for an unpacked document of kind k into r. */
static ragd_err extract_run(extract_ctx *x, const char *b, size_t len, extract_kind k, const char *charset,
                            extract_result *r)
{
    strbuf out, dec;
    strbuf_init(&out, x->lim->max_text);
    strbuf_init(&dec, x->lim->max_text);
    ragd_err e = RAGD_OK;
    r->kind = k;
    switch (k) {
    case EXTRACT_AUTO: /* sniffed already: a zip of no kind we read */
        e = extract_fail(x, RAGD_EINVAL, "not a document ragd reads: a zip archive that is not DOCX, ODT or EPUB");
        break;
    case EXTRACT_TEXT:
    case EXTRACT_MARKDOWN:
        e = extract_decode(x, b, len, charset, extract_kind_name(k), &out);
        r->markdown = k == EXTRACT_MARKDOWN;
        break;
    case EXTRACT_RST:
        e = extract_decode(x, b, len, charset, "reStructuredText", &dec);
        if (!e)
            e = extract_rst(x, dec.data ? dec.data : "", dec.len, &out);
        r->markdown = true;
        break;
    case EXTRACT_HTML:
        e = extract_html(x, b, len, charset, r);
        goto out;
    case EXTRACT_PDF:
        if (x->lim->pdf_helper)
            e = extract_pdf_jailed(x, b, len, &out, &r->page_starts, &r->n_pages);
        else
            e = extract_pdf(x, b, len, &out, &r->page_starts, &r->n_pages);
        break;
    case EXTRACT_DOCX:
        e = extract_docx(x, b, len, &out);
        r->markdown = true;
        break;
    case EXTRACT_ODT:
        e = extract_odt(x, b, len, &out);
        r->markdown = true;
        break;
    case EXTRACT_EPUB:
        e = extract_epub(x, b, len, &out, &r->title_len);
        break;
    }
    if (!e && !out.data && (e = strbuf_append(&out, "", 0)) != RAGD_OK)
        extract_fail(x, e, "out of memory");
    if (!e)
        r->text = strbuf_detach(&out, &r->len);
out:
    strbuf_cleanup(&out);
    strbuf_cleanup(&dec);
    return e;
}

ragd_err extract_document(const char *bytes, size_t len, extract_kind kind, const char *charset,
                          const extract_limits *lim, extract_result *out, char *why, size_t why_cap)
{
    extract_limits defaults;
    if (!lim) {
        extract_limits_default(&defaults, len);
        lim = &defaults;
    }
    extract_ctx x = {.lim = lim, .why = why, .why_cap = why_cap};
    memset(out, 0, sizeof *out);
    if (why && why_cap)
        why[0] = '\0';
    char *unpacked = NULL;
    size_t unpacked_len = 0;
    if (!bytes)
        bytes = "";
    if (extract_is_gzip(bytes, len)) {
        ragd_err e = extract_gunzip(&x, bytes, len, &unpacked, &unpacked_len);
        if (e)
            return e;
        bytes = unpacked;
        len = unpacked_len;
    }
    if (kind == EXTRACT_AUTO)
        kind = extract_sniff(bytes, len);
    ragd_err e = extract_run(&x, bytes, len, kind, charset, out);
    free(unpacked);
    if (e) {
        if (why && why_cap && !why[0])
            snprintf(why, why_cap, "%s could not be read (%s)", extract_kind_name(kind), ragd_strerror(e));
        extract_result_cleanup(out);
    }
    return e;
}
