/* Zip archives held in memory, for DOCX, ODT and EPUB (text/extract_int.h), with libzip.
 * Every entry read counts against the extraction's max_inflated, whatever the archive
 * claims its size is: a zip bomb stops at the budget, not at the end of its entry. */
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "text/extract_int.h"

struct extract_zip {
    zip_t *z;
};

extract_zip *extract_zip_open(extract_ctx *x, const char *bytes, size_t len, const char *what)
{
    zip_error_t zerr;
    zip_error_init(&zerr);
    extract_zip *ez = calloc(1, sizeof *ez);
    zip_source_t *src = ez ? zip_source_buffer_create(bytes, len, 0, &zerr) : NULL;
    if (!ez || !src) {
        free(ez);
        zip_error_fini(&zerr);
        extract_fail(x, RAGD_ENOMEM, "out of memory");
        return NULL;
    }
    ez->z = zip_open_from_source(src, ZIP_RDONLY, &zerr);
    if (!ez->z) {
        extract_fail(x, RAGD_EINVAL, "%s could not be read: not a readable zip archive (%s)", what,
                     zip_error_strerror(&zerr));
        zip_source_free(src);
        free(ez);
        ez = NULL;
    }
    zip_error_fini(&zerr);
    return ez;
}

void extract_zip_close(extract_zip *z)
{
    if (!z)
        return;
    zip_discard(z->z);
    free(z);
}

bool extract_zip_has(extract_zip *z, const char *name) { return zip_name_locate(z->z, name, 0) >= 0; }

ragd_err extract_zip_read(extract_ctx *x, extract_zip *z, const char *name, const char *what, char **data,
                          size_t *len)
{
    *data = NULL;
    *len = 0;
    zip_int64_t idx = zip_name_locate(z->z, name, 0);
    if (idx < 0)
        return extract_fail(x, RAGD_ENOTFOUND, "%s could not be read: it has no %s", what, name);
    zip_file_t *f = zip_fopen_index(z->z, (zip_uint64_t)idx, 0);
    if (!f)
        return extract_fail(x, RAGD_EINVAL, "%s could not be read: %s: %s", what, name, zip_strerror(z->z));
    strbuf sb;
    strbuf_init(&sb, x->lim->max_inflated - x->inflated);
    char tmp[16384];
    ragd_err e = RAGD_OK;
    for (;;) {
        zip_int64_t n = zip_fread(f, tmp, sizeof tmp);
        if (n < 0) {
            e = extract_fail(x, RAGD_EINVAL, "%s could not be read: %s: %s", what, name, zip_file_strerror(f));
            break;
        }
        if (n == 0)
            break;
        e = strbuf_append(&sb, tmp, (size_t)n);
        if (e == RAGD_ETOOBIG) {
            e = extract_fail(x, e, "%s could not be read: it unpacks to over %zu bytes (at most %dx the submitted size, %zu MiB in all)",
                             what, x->lim->max_inflated, EXTRACT_INFLATE_RATIO, EXTRACT_INFLATE_MAX >> 20);
            break;
        }
        if (e) {
            e = extract_fail(x, e, "out of memory");
            break;
        }
    }
    zip_fclose(f);
    if (!e && !sb.data && (e = strbuf_append(&sb, "", 0)) != RAGD_OK)
        e = extract_fail(x, e, "out of memory");
    if (e) {
        strbuf_cleanup(&sb);
        return e;
    }
    x->inflated += sb.len;
    *data = strbuf_detach(&sb, len);
    return RAGD_OK;
}
