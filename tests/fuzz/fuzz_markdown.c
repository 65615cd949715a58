/* libFuzzer target: markdown extraction as ingest runs it — chunker_split in markdown mode
 * (md4c finds the block structure), then doccontext_headings on the chunks' starts (md4c
 * finds the headings). Byte 0 picks chunk_size (50..305) with overlap a fifth of it; the
 * rest, when valid UTF-8, is the text. Checks: chunks are non-empty, in bounds, on code
 * point boundaries and in order; every chunk gets a path, valid UTF-8 and bounded; a
 * chunk that begins with an ATX heading line ("# x") at the start of the text has that
 * heading in its path. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/chunker.h"
#include "text/doccontext.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || !utf8_valid((const char *)data + 1, size - 1))
        return 0;
    const char *text = (const char *)data + 1;
    size_t len = size - 1;
    chunk_params params = {.chunk_size = 50 + data[0], .overlap = (50 + data[0]) / 5};
    text_span *spans = NULL;
    size_t count = 0;
    ragd_err rc = chunker_split(text, len, CHUNK_FORMAT_MARKDOWN, &params, &spans, &count);
    if (rc == RAGD_ENOMEM)
        return 0;
    if (rc != RAGD_OK)
        abort();
    int64_t *starts = calloc(count ? count : 1, sizeof *starts);
    if (!starts)
        abort();
    for (size_t i = 0; i < count; i++) {
        const text_span *s = &spans[i];
        if (s->start >= s->end || s->end > len || (i && s->start < spans[i - 1].start))
            abort();
        if ((s->start < len && ((unsigned char)text[s->start] & 0xC0) == 0x80) ||
            (s->end < len && ((unsigned char)text[s->end] & 0xC0) == 0x80))
            abort();
        starts[i] = (int64_t)s->start;
    }
    char **paths = NULL;
    rc = doccontext_headings(text, len, starts, count, &paths);
    if (rc == RAGD_OK) {
        for (size_t i = 0; i < count; i++) {
            size_t n = strlen(paths[i]);
            if (n > DOCCONTEXT_HEADING_MAX || !utf8_valid(paths[i], n))
                abort();
        }
        /* "# Word\n..." at the very start: the first chunk's path is that heading */
        if (count && len > 2 && text[0] == '#' && text[1] == ' ' && ((text[2] >= 'A' && text[2] <= 'Z') ||
                                                                      (text[2] >= 'a' && text[2] <= 'z'))) {
            if (!paths[0][0] || paths[0][0] != text[2])
                abort();
        }
        doccontext_paths_free(paths, count);
    } else if (rc != RAGD_ENOMEM) {
        abort();
    }
    free(starts);
    free(spans);
    return 0;
}
