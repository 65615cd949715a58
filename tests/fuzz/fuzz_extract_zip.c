/* libFuzzer target: the zip formats (DOCX, ODT, EPUB, and AUTO's sniffing of them): libzip,
 * the XML parts through libxml2, EPUB chapters through the HTML reader, the inflate budget.
 * Byte 0 picks the kind; the rest is the archive. Checks: fuzz_extract_common.h. */
#include <stdint.h>

#include "fuzz_extract_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const extract_kind kinds[] = {EXTRACT_DOCX, EXTRACT_ODT, EXTRACT_EPUB, EXTRACT_AUTO};
    if (size < 1)
        return 0;
    fuzz_extract_check((const char *)data + 1, size - 1, kinds[data[0] & 3], NULL);
    return 0;
}
