/* libFuzzer target: PDF through poppler (extract_document, EXTRACT_PDF), at most 50 pages
 * and 1 MiB of text. Checks: fuzz_extract_common.h (page starts included). */
#include <stdint.h>

#include "fuzz_extract_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_extract_check((const char *)data, size, EXTRACT_PDF, NULL);
    return 0;
}
