/* libFuzzer target: the multipart/form-data reader (http/multipart.h). Byte 0 picks the
 * boundary (one of a few, so that the fuzzer finds the structure) and the part cap; the rest
 * is the body. Every part must lie inside the body and hold no delimiter, its strings must be
 * NUL-terminated in their buffers and valid (names: UTF-8 without control characters; types
 * and charsets lower-case), the count must stay under the cap, an end or a refusal must be
 * said again by later calls, and a refusal must carry a message. The body is also read as a
 * header value by multipart_param. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http/multipart.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fz_boundaries[] = {"B", "XyZ", "----WebKitFormBoundary7MA4YWxkTrZu0gW",
                                            "------------------------d74496d66958873e", "a b'()+_,-./:=?"};

/* s is NUL-terminated within cap bytes. */
static void fz_terminated(const char *s, size_t cap)
{
    if (!memchr(s, '\0', cap))
        abort();
}

static void fz_text(const char *s, size_t cap)
{
    fz_terminated(s, cap);
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            abort();
    if (!utf8_valid(s, n))
        abort();
}

/* Lower-case; a media type also has no blank or control byte. */
static void fz_lower(const char *s, size_t cap, bool type)
{
    fz_terminated(s, cap);
    for (; *s; s++)
        if ((*s >= 'A' && *s <= 'Z') || (type && ((unsigned char)*s <= 0x20 || *s == 0x7f)))
            abort();
}

static void fz_params(const char *v, size_t n)
{
    static const char *const names[] = {"boundary", "charset", "name", "filename", "filename*"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        char out[24];
        bool found = true;
        ragd_err e = multipart_param(v, n, names[k], out, sizeof out, &found);
        if (e != RAGD_OK && e != RAGD_EINVAL && e != RAGD_ETOOBIG)
            abort();
        fz_terminated(out, sizeof out);
        if (e == RAGD_OK && !found && out[0] != '\0')
            abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *boundary = fz_boundaries[data[0] % (sizeof fz_boundaries / sizeof *fz_boundaries)];
    size_t max_parts = 1 + (data[0] >> 3); /* 1..32 */
    const char *body = (const char *)data + 1;
    size_t len = size - 1;
    fz_params(body, len);

    char delim[4 + MULTIPART_BOUNDARY_MAX + 1] = "\r\n--";
    strcat(delim, boundary);
    size_t delim_len = strlen(delim);

    multipart_reader r;
    if (multipart_reader_init(&r, body, len, boundary, max_parts) != RAGD_OK)
        abort(); /* every boundary above is valid */
    size_t parts = 0;
    ragd_err e = RAGD_OK;
    bool end = false;
    for (;;) {
        multipart_part p;
        e = multipart_next(&r, &p, &end);
        if (e != RAGD_OK || end)
            break;
        parts++;
        if (parts > max_parts || p.number != parts)
            abort();
        if (p.data < body || p.len > len || (size_t)(p.data - body) > len - p.len)
            abort();
        if (memmem(p.data, p.len, delim, delim_len))
            abort();
        fz_text(p.name, sizeof p.name);
        fz_text(p.filename, sizeof p.filename);
        if (!p.has_filename && p.filename[0])
            abort();
        fz_lower(p.media_type, sizeof p.media_type, true);
        fz_lower(p.charset, sizeof p.charset, false);
    }
    multipart_part again;
    bool end2 = false;
    ragd_err e2 = multipart_next(&r, &again, &end2);
    if (e2 != e || end2 != end)
        abort();
    if (e != RAGD_OK) {
        if (e != RAGD_EINVAL || !r.message[0] || !utf8_valid(r.message, strlen(r.message)))
            abort();
    }
    return 0;
}
