/* The prompt's token budget. See budget.h. */
#include "rag/budget.h"

#include <stdbool.h>
#include <string.h>

static bool budget_letter(unsigned char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
static bool budget_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static bool budget_space(unsigned char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; }

size_t rag_budget_tokens(const char *text, size_t len)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t tokens = 0, i = 0;
    while (i < len) {
        unsigned char c = s[i];
        if (budget_letter(c)) {
            size_t run = 0;
            while (i < len && budget_letter(s[i])) {
                run++;
                i++;
            }
            tokens += (run + 2) / 3;
        } else if (budget_digit(c)) {
            tokens++;
            i++;
        } else if (c == ' ' && i + 1 < len && (budget_letter(s[i + 1]) || budget_digit(s[i + 1]))) {
            i++; /* the space of " word" is in the word's token */
        } else if (budget_space(c)) {
            size_t breaks = 0;
            while (i < len && budget_space(s[i]) &&
                   !(s[i] == ' ' && i + 1 < len && (budget_letter(s[i + 1]) || budget_digit(s[i + 1])))) {
                breaks += s[i] == '\n';
                i++;
            }
            tokens += breaks ? breaks : 1;
        } else if (c < 0x80) {
            tokens++;
            i++;
        } else {
            /* a UTF-8 sequence: its length from the lead byte (a stray continuation byte
             * counts one, as one byte-fallback token) */
            size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 1;
            if (n > len - i)
                n = len - i;
            tokens += n > 1 ? n - 1 : 1;
            i += n;
        }
    }
    return tokens;
}

/* The context of OpenAI models by name prefix (their documented context windows); the
 * first match wins, so longer prefixes come first. */
static const struct {
    const char *prefix;
    size_t tokens;
} budget_openai_models[] = {
    {"gpt-4.1", 1047576}, {"gpt-4o", 128000},       {"gpt-4-turbo", 128000}, {"gpt-4-32k", 32768},
    {"gpt-4", 8192},      {"gpt-3.5-turbo", 16385}, {"gpt-5", 400000},       {"o1", 200000},
    {"o3", 200000},       {"o4", 200000},
};

/* options[key] as a positive integer, or 0. */
static size_t budget_option(const json_t *options, const char *key)
{
    const json_t *v = json_is_object(options) ? json_object_get(options, key) : NULL;
    if (json_is_integer(v) && json_integer_value(v) > 0)
        return (size_t)json_integer_value(v);
    if (json_is_real(v) && json_real_value(v) >= 1 && json_real_value(v) < 1e12)
        return (size_t)json_real_value(v);
    return 0;
}

size_t rag_budget_context(const char *generator, const char *model, const json_t *options, size_t configured)
{
    bool ollama = !generator || strcmp(generator, "openai") != 0;
    if (ollama) {
        size_t num_ctx = budget_option(options, "num_ctx");
        return num_ctx ? num_ctx : configured ? configured : RAG_BUDGET_OLLAMA_DEFAULT;
    }
    if (configured)
        return configured;
    for (size_t i = 0; model && i < sizeof budget_openai_models / sizeof *budget_openai_models; i++) {
        size_t n = strlen(budget_openai_models[i].prefix);
        if (strncmp(model, budget_openai_models[i].prefix, n) == 0)
            return budget_openai_models[i].tokens;
    }
    return RAG_BUDGET_OPENAI_DEFAULT;
}

size_t rag_budget_reserve(const char *generator, const json_t *options, size_t context)
{
    bool openai = generator && strcmp(generator, "openai") == 0;
    size_t asked = budget_option(options, openai ? "max_tokens" : "num_predict");
    size_t reserve = asked ? asked : context / 4;
    if (!asked && reserve < 256)
        reserve = 256;
    if (!asked && reserve > 2048)
        reserve = 2048;
    return reserve > context / 2 ? context / 2 : reserve;
}
