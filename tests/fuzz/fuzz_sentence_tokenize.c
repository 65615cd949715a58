/* libFuzzer target: sentence_split and tokenize_words on arbitrary bytes (neither contract
 * requires valid UTF-8; tokenize_words treats invalid bytes as separators). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/sentence.h"
#include "text/tokenize.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    size_t len;
    size_t last_end;
    size_t n;
} fz_tok_state;

static int fz_on_token(const token *tok, void *arg)
{
    fz_tok_state *st = arg;
    if (tok->start >= tok->end || tok->end > st->len || tok->start < st->last_end)
        abort(); /* non-empty, in bounds, in order, not overlapping */
    if (!tok->norm || tok->norm_len == 0 || !utf8_valid(tok->norm, tok->norm_len))
        abort();
    tokenize_is_stopword(tok->norm, tok->norm_len);
    st->last_end = tok->end;
    st->n++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    text_span *spans = NULL;
    size_t count = 0;
    ragd_err rc = sentence_split(text, size, &spans, &count);
    if (rc == RAGD_OK) {
        for (size_t i = 0; i < count; i++) {
            if (spans[i].start >= spans[i].end || spans[i].end > size)
                abort();
            if (i > 0 && spans[i].start < spans[i - 1].end)
                abort();
        }
    } else if (rc != RAGD_ENOMEM) {
        abort();
    }
    free(spans);

    fz_tok_state st = {.len = size};
    rc = tokenize_words(text, size, fz_on_token, &st);
    if (rc != RAGD_OK && rc != RAGD_ENOMEM)
        abort();
    return 0;
}
