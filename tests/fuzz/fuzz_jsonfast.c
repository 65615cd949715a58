/* libFuzzer target: jsonfast_loadb against jansson's json_loadb on the same bytes. The fast
 * path may decline anything, but what it returns must be jansson's tree (same dump, key
 * order included), and it must return nothing where jansson reports an error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "util/jsonfast.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *got = jsonfast_loadb((const char *)data, size, 64);
    if (!got)
        return 0;
    json_t *want = json_loadb((const char *)data, size, JSON_DECODE_ANY, NULL);
    if (!want)
        abort(); /* the fast path took what jansson rejects */
    char *a = json_dumps(got, JSON_ENCODE_ANY | JSON_COMPACT);
    char *b = json_dumps(want, JSON_ENCODE_ANY | JSON_COMPACT);
    if (!a || !b || strcmp(a, b) != 0 || !json_equal(got, want))
        abort();
    free(a);
    free(b);
    json_decref(got);
    json_decref(want);
    return 0;
}
