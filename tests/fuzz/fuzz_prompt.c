/* libFuzzer target: the prompt stage's pure parts on arbitrary bytes (docs/internals/passages.md).
 * Input: byte 0 = the number of sources (mod 16), bytes 1-2 = two stream cut points, the
 * rest the text. Checks: the citation filter of the pieces cut at rag_citations_safe_end
 * (as the engine streams) joined equals the filter of the whole; valid UTF-8 stays valid;
 * rag_citations_list is sorted, distinct, in 1..n; rag_budget_tokens never decreases as
 * the text grows; rag_passage_trim keeps a non-empty range inside the text. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rag/budget.h"
#include "rag/citations.h"
#include "rag/passages.h"
#include "util/strbuf.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 3)
        return 0;
    size_t n_sources = data[0] % 16;
    const char *text = (const char *)data + 3;
    size_t len = size - 3;
    size_t cuts[2] = {len ? data[1] % (len + 1) : 0, len ? data[2] % (len + 1) : 0};
    if (cuts[0] > cuts[1]) {
        size_t t = cuts[0];
        cuts[0] = cuts[1];
        cuts[1] = t;
    }
    strbuf whole, streamed;
    strbuf_init(&whole, 1 << 20);
    strbuf_init(&streamed, 1 << 20);
    if (rag_citations_filter(text, len, n_sources, &whole) != RAGD_OK)
        goto out;
    size_t released = 0;
    for (size_t c = 0; c <= 2; c++) {
        size_t upto = c < 2 ? rag_citations_safe_end(text, released, cuts[c] > released ? cuts[c] : released) : len;
        if (upto < released || upto > len)
            abort();
        if (upto > released && rag_citations_filter(text + released, upto - released, n_sources, &streamed) != RAGD_OK)
            goto out;
        released = upto;
    }
    if (whole.len != streamed.len || (whole.len && memcmp(whole.data, streamed.data, whole.len) != 0))
        abort();
    if (utf8_valid(text, len) && whole.len && !utf8_valid(whole.data, whole.len))
        abort();
    int cited[16];
    size_t nc = rag_citations_list(text, len, n_sources, cited, 16);
    for (size_t i = 0; i < nc; i++)
        if (cited[i] < 1 || (size_t)cited[i] > n_sources || (i && cited[i] <= cited[i - 1]))
            abort();
    size_t prev = 0;
    for (size_t i = 0; i <= len; i += 1 + len / 16) {
        size_t t = rag_budget_tokens(text, i);
        if (t < prev)
            abort();
        prev = t;
    }
    if (rag_budget_tokens(text, len) < prev)
        abort();
    size_t from = 0, to = 0;
    if (len && rag_passage_trim(text, len, data[0] & 0x10, &from, &to) == RAGD_OK && (from >= to || to > len))
        abort();
out:
    strbuf_cleanup(&whole);
    strbuf_cleanup(&streamed);
    return 0;
}
