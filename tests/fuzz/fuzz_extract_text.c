/* libFuzzer target: the text kinds of extract_document (text, markdown, HTML, AUTO
 * sniffing, reStructuredText) with or without a declared charset, gzip included (a seed is
 * gzip'd). Byte 0 picks the kind (low 3 bits) and the charset (next 3 bits); the rest is
 * the document. Checks: fuzz_extract_common.h. */
#include <stdint.h>

#include "fuzz_extract_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const extract_kind kinds[] = {EXTRACT_TEXT, EXTRACT_MARKDOWN, EXTRACT_HTML, EXTRACT_AUTO, EXTRACT_RST};
    static const char *const charsets[] = {NULL, "utf-8", "iso-8859-1", "windows-1252", "UTF-16", "x-unknown",
                                           "shift_jis", NULL};
    if (size < 1)
        return 0;
    extract_kind kind = kinds[(data[0] & 7) % 5];
    const char *charset = charsets[(data[0] >> 3) & 7];
    fuzz_extract_check((const char *)data + 1, size - 1, kind, charset);
    return 0;
}
