/* libFuzzer target: extractive_answer (and prose_extract under it). The input is split at
 * 0xFF bytes: the first part is the query, the others are passages (parts that are not
 * valid UTF-8 are skipped). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rag/extractive.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FZ_MAX_PASSAGES 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *query = NULL;
    size_t query_len = 0;
    bool have_query = false;
    extract_passage passages[FZ_MAX_PASSAGES];
    size_t n = 0;

    size_t start = 0;
    for (size_t i = 0; i <= size; i++) {
        if (i < size && data[i] != 0xFF)
            continue;
        const char *part = (const char *)data + start;
        size_t len = i - start;
        start = i + 1;
        if (!have_query) {
            have_query = true;
            if (utf8_valid(part, len)) {
                query = part;
                query_len = len;
            }
            continue;
        }
        if (n < FZ_MAX_PASSAGES && utf8_valid(part, len)) {
            passages[n].text = part;
            passages[n].len = len;
            n++;
        }
    }
    if (!query)
        query = "";

    extract_params params = {.max_sentences = 3, .max_chars = 800};
    if (size > 0) {
        params.max_sentences = 1 + data[0] % 5;
        params.max_chars = 20 + (size_t)data[size - 1] * 8;
    }
    char *answer = NULL;
    ragd_err rc = extractive_answer(query, query_len, passages, n, &params, &answer);
    if (rc == RAGD_ENOMEM)
        return 0;
    if (rc != RAGD_OK)
        abort();
    if (n == 0 && answer)
        abort();
    if (answer && !utf8_valid(answer, strlen(answer)))
        abort();
    /* max_chars >= 20 always holds a code point, the ellipsis and a marker up to " [64]". */
    if (answer && strlen(answer) > params.max_chars)
        abort();
    free(answer);
    return 0;
}
