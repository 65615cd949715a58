/* iconv to UTF-8 with replacement, and UTF-8 repair (text/charset.h). Shared by the HTML
 * reader and the plain-text decoder of the extractors (text/extract.c). */
#include "text/charset.h"

#include <errno.h>
#include <iconv.h>
#include <strings.h>

#include "util/utf8.h"

static const char charset_repl[] = "\xEF\xBF\xBD"; /* U+FFFD */

/* Byte length of the well-formed, non-NUL UTF-8 sequence at p[i..n), or 0. */
static size_t charset_utf8_seq(const unsigned char *p, size_t i, size_t n)
{
    unsigned c = p[i];
    if (c == 0)
        return 0;
    if (c < 0x80)
        return 1;
    size_t need;
    if (c >= 0xC2 && c <= 0xDF)
        need = 1;
    else if (c >= 0xE0 && c <= 0xEF)
        need = 2;
    else if (c >= 0xF0 && c <= 0xF4)
        need = 3;
    else
        return 0;
    if (n - i <= need)
        return 0;
    return utf8_valid((const char *)p + i, need + 1) ? need + 1 : 0;
}

ragd_err charset_append_repaired(strbuf *sb, const unsigned char *p, size_t n)
{
    size_t run = 0;
    size_t i = 0;
    while (i < n) {
        size_t w = charset_utf8_seq(p, i, n);
        if (w) {
            i += w;
            continue;
        }
        ragd_err err = strbuf_append(sb, p + run, i - run);
        if (!err)
            err = strbuf_append(sb, charset_repl, 3);
        if (err)
            return err;
        i++;
        run = i;
    }
    return strbuf_append(sb, p + run, n - run);
}

ragd_err charset_convert(strbuf *sb, const unsigned char *p, size_t n, const char *enc)
{
    char tmp[4096];
    ragd_err err = RAGD_OK;
    iconv_t cd = iconv_open("UTF-8", enc);
    if (cd == (iconv_t)-1)
        return charset_append_repaired(sb, p, n);
    char *ip = (char *)p;
    size_t il = n;
    while (il > 0 && !err) {
        char *op = tmp;
        size_t ol = sizeof tmp;
        size_t r = iconv(cd, &ip, &il, &op, &ol);
        int e = errno;
        err = charset_append_repaired(sb, (const unsigned char *)tmp, (size_t)(op - tmp));
        if (err || r != (size_t)-1 || e == E2BIG)
            continue;
        /* EILSEQ, or EINVAL for a sequence cut short by the end of the input */
        err = strbuf_append(sb, charset_repl, 3);
        ip++;
        il--;
        iconv(cd, NULL, NULL, NULL, NULL);
    }
    if (!err) {
        char *op = tmp;
        size_t ol = sizeof tmp;
        iconv(cd, NULL, NULL, &op, &ol);
        err = charset_append_repaired(sb, (const unsigned char *)tmp, (size_t)(op - tmp));
    }
    iconv_close(cd);
    return err;
}

bool charset_known(const char *enc)
{
    iconv_t cd = iconv_open("UTF-8", enc);
    if (cd == (iconv_t)-1)
        return false;
    iconv_close(cd);
    return true;
}

static bool charset_label_in(const char *label, const char *const *names)
{
    for (size_t k = 0; names[k]; k++)
        if (strcasecmp(label, names[k]) == 0)
            return true;
    return false;
}

const char *charset_canonical(const char *label)
{
    static const char *const utf8[] = {"utf-8", "utf8", "unicode-1-1-utf-8", NULL};
    static const char *const latin1[] = {"iso-8859-1", "iso8859-1", "iso_8859-1", "latin1", "l1", "us-ascii",
                                         "ascii", "windows-1252", "cp1252", "x-cp1252", "iso-ir-100",
                                         "cp819", "ibm819", NULL};
    if (charset_label_in(label, utf8))
        return "UTF-8";
    if (charset_label_in(label, latin1))
        return charset_known("windows-1252") ? "windows-1252" : "ISO-8859-1";
    return label;
}
