/* libFuzzer target: a document's context for the keyword index (text/doccontext.c): the
 * title from metadata, HTML <title>, markdown heading, source or id, or first line; and the
 * heading path of each chunk (md4c). The input is split at 0xFF bytes: byte 0 of the first
 * part holds flags (which fields are present, markdown or not), then come the metadata
 * title, the HTML title, the text, the source and the id. Chunk starts for the heading
 * paths are drawn, ascending, from the input's hash. Any bytes (titles come from clients).
 * Checks: a title is valid UTF-8 without control characters or NUL, trimmed, at most
 * DOCCONTEXT_TITLE_MAX bytes; each path the same with DOCCONTEXT_HEADING_MAX; a text with
 * no '#', '=' or '-' has no headings. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "text/doccontext.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_PARTS 5
#define FZ_MAX_STARTS 64

static void fz_check_clean(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n > max || !utf8_valid(s, n))
        abort();
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7F)
            abort();
    if (n && (s[0] == ' ' || s[n - 1] == ' '))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    uint8_t flags = data[0];
    const char *part[FZ_PARTS] = {0};
    size_t len[FZ_PARTS] = {0};
    size_t k = 0, start = 1;
    for (size_t i = 1; i <= size && k < FZ_PARTS; i++) {
        if (i < size && data[i] != 0xFF)
            continue;
        part[k] = (const char *)data + start;
        len[k++] = i - start;
        start = i + 1;
    }
    /* the strings the contract says are NUL-terminated (source, id) */
    char *source = part[3] && (flags & 8) ? strndup(part[3], len[3]) : NULL;
    char *id = part[4] && (flags & 16) ? strndup(part[4], len[4]) : NULL;
    doccontext_in in = {
        .meta_title = flags & 1 ? part[0] : NULL,
        .meta_title_len = flags & 1 ? len[0] : 0,
        .html_title = flags & 2 ? part[1] : NULL,
        .html_title_len = flags & 2 ? len[1] : 0,
        .text = part[2] ? part[2] : "",
        .text_len = part[2] ? len[2] : 0,
        .markdown = flags & 4,
        .source = source,
        .id = id,
    };
    char *title = NULL;
    if (doccontext_title(&in, &title) == RAGD_OK) {
        if (!title)
            abort();
        fz_check_clean(title, DOCCONTEXT_TITLE_MAX);
        free(title);
    }

    int64_t starts[FZ_MAX_STARTS];
    size_t n = 0;
    uint32_t seed = fz_seed(data, size) | 1u;
    size_t at = 0;
    while (n < FZ_MAX_STARTS && at <= in.text_len && n < (flags >> 5) * 8 + 1) {
        starts[n++] = (int64_t)at;
        at += fz_piece(&seed, 200) - 1;
    }
    char **paths = NULL;
    if (doccontext_headings(in.text, in.text_len, starts, n, &paths) == RAGD_OK) {
        bool may_have = memchr(in.text, '#', in.text_len) || memchr(in.text, '=', in.text_len) ||
                        memchr(in.text, '-', in.text_len);
        for (size_t i = 0; i < n; i++) {
            if (!paths[i])
                abort();
            fz_check_clean(paths[i], DOCCONTEXT_HEADING_MAX);
            if (!may_have && paths[i][0])
                abort();
        }
        doccontext_paths_free(paths, n);
    }
    free(source);
    free(id);
    return 0;
}
