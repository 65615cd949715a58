/* multipart/form-data reader (multipart.h): a walk over a buffered body, no allocation. */
#include "http/multipart.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "util/hex.h"
#include "util/utf8.h"

enum { M_START, M_AFTER_DELIM, M_DONE, M_ERROR };

/* ---- character classes ---- */

static bool multipart_is_blank(unsigned char c) { return c == ' ' || c == '\t'; }

static bool multipart_is_tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* RFC 2046 bchars without the space (checked apart: allowed, but not last). */
static bool multipart_is_bchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c != '\0' && strchr("'()+_,-./:=?", c) != NULL;
}

/* Valid UTF-8 without control characters (C0, DEL): what a name or file name may hold. */
static bool multipart_text_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return false;
    return utf8_valid(s, n);
}

/* ---- parameters ---- */

/* Keeps c at out[*o] when out is not NULL and it fits with the NUL after it; when it does
 * not fit, *fits goes false (the value is then RAGD_ETOOBIG). */
static void multipart_keep(char *out, size_t cap, size_t *o, bool *fits, unsigned char c)
{
    if (!out)
        return;
    if (*o + 1 < cap)
        out[(*o)++] = (char)c;
    else
        *fits = false;
}

/* Reads one parameter value at v[*i..n) (quoted-string or a run of non-blank bytes other
 * than ';' and '"'), copying it decoded into out when out is not NULL. */
static ragd_err multipart_param_value(const char *v, size_t n, size_t *i, char *out, size_t cap, size_t *outlen)
{
    size_t o = 0;
    bool fits = true;
    if (*i < n && v[*i] == '"') {
        (*i)++;
        for (;;) {
            if (*i >= n)
                return RAGD_EINVAL; /* unterminated */
            unsigned char c = (unsigned char)v[*i];
            if (c == '"')
                break;
            if (c == '\\') {
                if (++*i >= n)
                    return RAGD_EINVAL;
                c = (unsigned char)v[*i];
            }
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return RAGD_EINVAL;
            multipart_keep(out, cap, &o, &fits, c);
            (*i)++;
        }
        (*i)++; /* the closing quote */
    } else {
        size_t start = *i;
        while (*i < n && v[*i] != ';' && !multipart_is_blank((unsigned char)v[*i])) {
            unsigned char c = (unsigned char)v[*i];
            if (c <= 0x20 || c == 0x7f || c == '"')
                return RAGD_EINVAL;
            multipart_keep(out, cap, &o, &fits, c);
            (*i)++;
        }
        if (*i == start)
            return RAGD_EINVAL; /* "name=" with no value */
    }
    if (out)
        out[o] = '\0';
    *outlen = o;
    return fits ? RAGD_OK : RAGD_ETOOBIG;
}

ragd_err multipart_param(const char *value, size_t n, const char *name, char *out, size_t cap, bool *found)
{
    size_t name_len = strlen(name);
    *found = false;
    if (cap > 0)
        out[0] = '\0';
    const char *semi = value ? memchr(value, ';', n) : NULL;
    if (!semi)
        return RAGD_OK;
    size_t i = (size_t)(semi - value);
    while (i < n) {
        i++; /* the ';' */
        while (i < n && multipart_is_blank((unsigned char)value[i]))
            i++;
        if (i == n)
            break;
        if (value[i] == ';')
            continue; /* an empty parameter */
        size_t ns = i;
        while (i < n && multipart_is_tchar((unsigned char)value[i]))
            i++;
        size_t ne = i;
        while (i < n && multipart_is_blank((unsigned char)value[i]))
            i++;
        if (ne == ns || i == n || value[i] != '=')
            return RAGD_EINVAL;
        i++;
        while (i < n && multipart_is_blank((unsigned char)value[i]))
            i++;
        bool wanted = ne - ns == name_len && strncasecmp(value + ns, name, name_len) == 0;
        if (wanted && *found)
            return RAGD_EINVAL; /* twice: which one counts would be a guess */
        size_t got = 0;
        ragd_err e = multipart_param_value(value, n, &i, wanted ? out : NULL, cap, &got);
        if (e != RAGD_OK)
            return e;
        *found = *found || wanted;
        while (i < n && multipart_is_blank((unsigned char)value[i]))
            i++;
        if (i < n && value[i] != ';')
            return RAGD_EINVAL;
    }
    return RAGD_OK;
}

/* ---- the reader ---- */

static ragd_err multipart_fail(multipart_reader *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static ragd_err multipart_fail(multipart_reader *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof r->message, fmt, ap);
    va_end(ap);
    utf8_sanitize(r->message);
    r->state = M_ERROR;
    return RAGD_EINVAL;
}

ragd_err multipart_reader_init(multipart_reader *r, const char *body, size_t len, const char *boundary,
                               size_t max_parts)
{
    memset(r, 0, sizeof *r);
    r->body = body ? body : ""; /* an empty request body has no buffer: memmem must not see NULL */
    r->len = body ? len : 0;
    r->max_parts = max_parts;
    r->state = M_START;
    size_t bn = strlen(boundary);
    if (bn == 0 || bn > MULTIPART_BOUNDARY_MAX)
        return multipart_fail(r, "the boundary must be 1-%d characters", MULTIPART_BOUNDARY_MAX);
    for (size_t i = 0; i < bn; i++) {
        unsigned char c = (unsigned char)boundary[i];
        if (!multipart_is_bchar(c) && !(c == ' ' && i + 1 < bn))
            return multipart_fail(r, "the boundary holds a character RFC 2046 does not allow");
    }
    memcpy(r->delim, "\r\n--", 4);
    memcpy(r->delim + 4, boundary, bn + 1);
    r->delim_len = 4 + bn;
    return RAGD_OK;
}

/* The file name of filename*=charset'language'%-encoded (RFC 5987 / 8187) into out. */
static ragd_err multipart_ext_filename(multipart_reader *r, const multipart_part *p, const char *v, char *out,
                                       size_t cap)
{
    const char *q1 = strchr(v, '\'');
    const char *q2 = q1 ? strchr(q1 + 1, '\'') : NULL;
    if (!q2)
        return multipart_fail(r, "part %zu: filename* is not charset'language'value", p->number);
    if (!((q1 - v == 5 && strncasecmp(v, "utf-8", 5) == 0) || (q1 - v == 4 && strncasecmp(v, "utf8", 4) == 0)))
        return multipart_fail(r, "part %zu: filename* must be in UTF-8", p->number);
    size_t o = 0;
    for (const char *s = q2 + 1; *s; s++) {
        int c = (unsigned char)*s;
        if (c == '%') {
            int hi = hex_digit_value((unsigned char)s[1]);
            int lo = hi < 0 ? -1 : hex_digit_value((unsigned char)s[2]);
            if (lo < 0)
                return multipart_fail(r, "part %zu: filename* has a bad %%-escape", p->number);
            c = hi * 16 + lo;
            s += 2;
            if (c == 0) /* a control byte like any other, and it would end the C string */
                return multipart_fail(r, "part %zu: the file name is not valid UTF-8 text", p->number);
        }
        if (o + 1 >= cap)
            return multipart_fail(r, "part %zu: the file name is over %d bytes", p->number, MULTIPART_FILENAME_MAX);
        out[o++] = (char)c;
    }
    out[o] = '\0';
    return RAGD_OK;
}

/* Content-Disposition: form-data; name="..."[; filename="..."][; filename*=...]. */
static ragd_err multipart_disposition(multipart_reader *r, multipart_part *p, const char *v, size_t n)
{
    size_t tn = 0;
    while (tn < n && v[tn] != ';' && !multipart_is_blank((unsigned char)v[tn]))
        tn++;
    if (tn != 9 || strncasecmp(v, "form-data", 9) != 0)
        return multipart_fail(r, "part %zu: Content-Disposition must be form-data", p->number);
    bool found = false;
    ragd_err e = multipart_param(v, n, "name", p->name, sizeof p->name, &found);
    if (e == RAGD_ETOOBIG)
        return multipart_fail(r, "part %zu: the field name is over %d bytes", p->number, MULTIPART_NAME_MAX);
    if (e != RAGD_OK)
        return multipart_fail(r, "part %zu: malformed Content-Disposition parameters", p->number);
    if (!found)
        return multipart_fail(r, "part %zu: Content-Disposition has no name", p->number);
    if (!multipart_text_ok(p->name, strlen(p->name)))
        return multipart_fail(r, "part %zu: the field name is not valid UTF-8 text", p->number);
    bool plain = false, ext = false;
    e = multipart_param(v, n, "filename", p->filename, sizeof p->filename, &plain);
    if (e == RAGD_ETOOBIG)
        return multipart_fail(r, "part %zu: the file name is over %d bytes", p->number, MULTIPART_FILENAME_MAX);
    if (e != RAGD_OK)
        return multipart_fail(r, "part %zu: malformed Content-Disposition parameters", p->number);
    char raw[3 * MULTIPART_FILENAME_MAX + 64]; /* %-encoded: up to 3 bytes per byte */
    e = multipart_param(v, n, "filename*", raw, sizeof raw, &ext);
    if (e == RAGD_ETOOBIG)
        return multipart_fail(r, "part %zu: the file name is over %d bytes", p->number, MULTIPART_FILENAME_MAX);
    if (e != RAGD_OK)
        return multipart_fail(r, "part %zu: malformed Content-Disposition parameters", p->number);
    if (ext && multipart_ext_filename(r, p, raw, p->filename, sizeof p->filename) != RAGD_OK)
        return RAGD_EINVAL;
    p->has_filename = plain || ext; /* filename* wins (RFC 6266 4.3) */
    if (!multipart_text_ok(p->filename, strlen(p->filename)))
        return multipart_fail(r, "part %zu: the file name is not valid UTF-8 text", p->number);
    return RAGD_OK;
}

/* Content-Type: type/subtype[; charset=...]. */
static ragd_err multipart_content_type(multipart_reader *r, multipart_part *p, const char *v, size_t n)
{
    size_t o = 0;
    for (size_t i = 0; i < n && v[i] != ';'; i++) {
        unsigned char c = (unsigned char)v[i];
        if (multipart_is_blank(c))
            continue;
        if (!multipart_is_tchar(c) && c != '/')
            return multipart_fail(r, "part %zu: malformed Content-Type", p->number);
        if (o + 1 >= sizeof p->media_type)
            return multipart_fail(r, "part %zu: the Content-Type is over %d bytes", p->number, MULTIPART_TYPE_MAX);
        p->media_type[o++] = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    }
    p->media_type[o] = '\0';
    bool found = false;
    ragd_err e = multipart_param(v, n, "charset", p->charset, sizeof p->charset, &found);
    if (e == RAGD_ETOOBIG)
        return multipart_fail(r, "part %zu: the charset is over %d bytes", p->number, MULTIPART_CHARSET_MAX);
    if (e != RAGD_OK)
        return multipart_fail(r, "part %zu: malformed Content-Type parameters", p->number);
    for (char *s = p->charset; *s; s++)
        if (*s >= 'A' && *s <= 'Z')
            *s = (char)(*s + 32);
    return RAGD_OK;
}

static ragd_err multipart_transfer_encoding(multipart_reader *r, const multipart_part *p, const char *v, size_t n)
{
    static const char *const identity[] = {"7bit", "8bit", "binary"};
    for (size_t k = 0; k < sizeof identity / sizeof *identity; k++)
        if (n == strlen(identity[k]) && strncasecmp(v, identity[k], n) == 0)
            return RAGD_OK;
    return multipart_fail(r, "part %zu: Content-Transfer-Encoding %.*s is not supported: send the bytes as they are",
                          p->number, (int)(n > 40 ? 40 : n), v);
}

/* One header line line[0..n) (no CRLF) of part p. *disposition counts Content-Disposition. */
static ragd_err multipart_header(multipart_reader *r, multipart_part *p, const char *line, size_t n, int *disposition)
{
    if (multipart_is_blank((unsigned char)line[0]))
        return multipart_fail(r, "part %zu: a folded header line", p->number);
    size_t colon = 0;
    while (colon < n && multipart_is_tchar((unsigned char)line[colon]))
        colon++;
    if (colon == 0 || colon == n || line[colon] != ':')
        return multipart_fail(r, "part %zu: a malformed header line", p->number);
    size_t vs = colon + 1, ve = n;
    while (vs < ve && multipart_is_blank((unsigned char)line[vs]))
        vs++;
    while (ve > vs && multipart_is_blank((unsigned char)line[ve - 1]))
        ve--;
    for (size_t i = vs; i < ve; i++) {
        unsigned char c = (unsigned char)line[i];
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return multipart_fail(r, "part %zu: a control byte in a header", p->number);
    }
    const char *v = line + vs;
    size_t vn = ve - vs;
    if (colon == 19 && strncasecmp(line, "content-disposition", 19) == 0) {
        if (++*disposition > 1)
            return multipart_fail(r, "part %zu: two Content-Disposition headers", p->number);
        return multipart_disposition(r, p, v, vn);
    }
    if (colon == 12 && strncasecmp(line, "content-type", 12) == 0)
        return multipart_content_type(r, p, v, vn);
    if (colon == 25 && strncasecmp(line, "content-transfer-encoding", 25) == 0)
        return multipart_transfer_encoding(r, p, v, vn);
    return RAGD_OK; /* other headers are not read */
}

/* The part's header block from r->pos, up to and including its empty line. */
static ragd_err multipart_headers(multipart_reader *r, multipart_part *p)
{
    size_t start = r->pos;
    size_t limit = r->len - start > MULTIPART_HEAD_MAX ? start + MULTIPART_HEAD_MAX : r->len;
    int lines = 0, disposition = 0;
    for (;;) {
        const char *nl = memchr(r->body + r->pos, '\n', limit - r->pos);
        if (!nl && limit == r->len)
            return multipart_fail(r, "the body ends inside the headers of part %zu", p->number);
        if (!nl)
            return multipart_fail(r, "part %zu: headers over %d bytes", p->number, MULTIPART_HEAD_MAX);
        size_t end = (size_t)(nl - r->body);
        if (end == r->pos || r->body[end - 1] != '\r')
            return multipart_fail(r, "part %zu: a header line not ended by CRLF", p->number);
        const char *line = r->body + r->pos;
        size_t n = end - 1 - r->pos;
        r->pos = end + 1;
        if (n == 0)
            break; /* the empty line */
        if (++lines > MULTIPART_HEAD_LINES)
            return multipart_fail(r, "part %zu: more than %d header lines", p->number, MULTIPART_HEAD_LINES);
        if (multipart_header(r, p, line, n, &disposition) != RAGD_OK)
            return RAGD_EINVAL;
    }
    if (disposition == 0)
        return multipart_fail(r, "part %zu: no Content-Disposition header", p->number);
    return RAGD_OK;
}

/* r->pos is right after a boundary: "--" closes the body, else blanks and CRLF open a part. */
static ragd_err multipart_after_boundary(multipart_reader *r, bool *end)
{
    const char *b = r->body;
    if (r->len - r->pos >= 2 && b[r->pos] == '-' && b[r->pos + 1] == '-') {
        r->state = M_DONE;
        *end = true;
        return RAGD_OK;
    }
    size_t i = r->pos;
    while (i < r->len && multipart_is_blank((unsigned char)b[i]))
        i++;
    if (i == r->len)
        return multipart_fail(r, "the body ends after boundary line %zu without the closing boundary \"--%s--\"",
                              r->parts + 1, r->delim + 4);
    if (r->len - i < 2 || b[i] != '\r' || b[i + 1] != '\n')
        return multipart_fail(r, "boundary line %zu is followed by other text (not CRLF or \"--\")", r->parts + 1);
    r->pos = i + 2;
    return RAGD_OK;
}

ragd_err multipart_next(multipart_reader *r, multipart_part *p, bool *end)
{
    *end = false;
    if (r->state == M_ERROR)
        return RAGD_EINVAL;
    if (r->state == M_DONE) {
        *end = true;
        return RAGD_OK;
    }
    if (r->state == M_START) {
        size_t open = r->delim_len - 2; /* "--" boundary, at the very start */
        if (r->len >= open && memcmp(r->body, r->delim + 2, open) == 0) {
            r->pos = open;
        } else {
            const char *d = memmem(r->body, r->len, r->delim, r->delim_len);
            if (!d)
                return multipart_fail(r, "no boundary line \"--%s\" in the body", r->delim + 4);
            r->pos = (size_t)(d - r->body) + r->delim_len;
        }
        r->state = M_AFTER_DELIM;
    }
    if (multipart_after_boundary(r, end) != RAGD_OK)
        return RAGD_EINVAL;
    if (*end)
        return RAGD_OK;
    if (r->parts == r->max_parts)
        return multipart_fail(r, "more than %zu parts", r->max_parts);
    r->parts++;
    p->number = r->parts;
    p->name[0] = p->filename[0] = p->media_type[0] = p->charset[0] = '\0';
    p->has_filename = false;
    p->data = NULL;
    p->len = 0;
    if (multipart_headers(r, p) != RAGD_OK)
        return RAGD_EINVAL;
    const char *d = memmem(r->body + r->pos, r->len - r->pos, r->delim, r->delim_len);
    if (!d)
        return multipart_fail(r, "the body ends inside part %zu: no boundary line after it (the last one is \"--%s--\")",
                              p->number, r->delim + 4);
    p->data = r->body + r->pos;
    p->len = (size_t)(d - p->data);
    r->pos = (size_t)(d - r->body) + r->delim_len;
    return RAGD_OK;
}
