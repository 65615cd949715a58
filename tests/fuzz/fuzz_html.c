/* libFuzzer target: html_to_text on arbitrary bytes; the output must be valid UTF-8 without
 * NUL, NUL-terminated, of the length reported. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/html.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *out = NULL;
    size_t out_len = 0;
    ragd_err rc = html_to_text((const char *)data, size, &out, &out_len);
    if (rc == RAGD_ENOMEM)
        return 0;
    if (rc != RAGD_OK || !out)
        abort();
    if (out[out_len] != '\0' || !utf8_valid(out, out_len)) /* utf8_valid rejects NUL too */
        abort();
    free(out);
    return 0;
}
