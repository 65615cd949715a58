/* The prompt stage. See prompt.h. */
#include "rag/prompt.h"

#include <stdlib.h>
#include <string.h>

#include "rag/budget.h"
#include "text/sentence.h"
#include "util/strbuf.h"

#define RAG_PROMPT_CAP ((size_t)16 << 20)
#define RAG_PROMPT_MIN_CUT_TOKENS 16 /* a cut passage shorter than this is dropped instead */

char *rag_prompt_system(const fence_keys *k) { return fence_system_prompt(k); }

/* The user message with the first n passages, passage i cut to lens[i] bytes (lens NULL:
 * whole). */
static char *rag_prompt_render(const rag_result *res, size_t n, const size_t *lens, const char *question,
                               size_t question_len, const fence_keys *k)
{
    strbuf sb;
    strbuf_init(&sb, RAG_PROMPT_CAP);
    ragd_err e = strbuf_appends(&sb, "Context passages:\n\n");
    for (size_t i = 0; !e && i < n; i++) {
        const char *t = res->hits[i].row.text;
        e = fence_append_passage(&sb, k, i + 1, t, lens ? lens[i] : strlen(t));
    }
    if (!e)
        e = strbuf_appends(&sb, fence_reminder);
    if (!e)
        e = strbuf_appends(&sb, "\n\nQuestion: ");
    if (!e)
        e = fence_append_neutral(&sb, question, question_len);
    if (!e)
        e = strbuf_appends(&sb, "\n");
    if (e) {
        strbuf_cleanup(&sb);
        return NULL;
    }
    return strbuf_detach(&sb, NULL);
}

char *rag_prompt_user(const rag_result *res, const char *question, size_t question_len, const fence_keys *k)
{
    return rag_prompt_render(res, res->n, NULL, question, question_len, k);
}

/* The estimated tokens of passage n (1-based) fenced, its first len bytes. SIZE_MAX when
 * out of memory. */
static size_t rag_prompt_passage_tokens(const fence_keys *k, size_t n, const char *text, size_t len)
{
    strbuf sb;
    strbuf_init(&sb, RAG_PROMPT_CAP);
    size_t tokens = fence_append_passage(&sb, k, n, text, len) == RAGD_OK ? rag_budget_tokens(sb.data, sb.len) : SIZE_MAX;
    strbuf_cleanup(&sb);
    return tokens;
}

/* The longest cut of text[0..len) that costs at most room tokens fenced: at a sentence
 * end, else at a word end. 0 when none (or out of memory). */
static size_t rag_prompt_cut(const fence_keys *k, size_t n, const char *text, size_t len, size_t room)
{
    text_span *sp = NULL;
    size_t ns = 0, best = 0;
    if (sentence_split(text, len, &sp, &ns) == RAGD_OK) {
        size_t lo = 0, hi = ns; /* the most sentences, sp[0..m), that fit: binary search on m */
        while (lo < hi) {
            size_t m = (lo + hi + 1) / 2;
            size_t t = rag_prompt_passage_tokens(k, n, text, sp[m - 1].end);
            if (t <= room)
                lo = m;
            else
                hi = m - 1;
        }
        best = lo ? sp[lo - 1].end : 0;
    }
    free(sp);
    if (best)
        return best;
    /* not one whole sentence fits: the most words that do */
    size_t *ends = malloc((len + 1) * sizeof *ends), ne = 0;
    if (!ends)
        return 0;
    for (size_t i = 1; i <= len; i++) {
        bool space_next = i == len || text[i] == ' ' || text[i] == '\n' || text[i] == '\t';
        if (space_next && text[i - 1] != ' ' && text[i - 1] != '\n' && text[i - 1] != '\t')
            ends[ne++] = i;
    }
    size_t lo = 0, hi = ne;
    while (lo < hi) {
        size_t m = (lo + hi + 1) / 2;
        if (rag_prompt_passage_tokens(k, n, text, ends[m - 1]) <= room)
            lo = m;
        else
            hi = m - 1;
    }
    best = lo ? ends[lo - 1] : 0;
    free(ends);
    return best;
}

ragd_err rag_prompt_user_fit(const rag_result *res, const char *question, size_t question_len, const fence_keys *k,
                             size_t system_tokens, rag_prompt_fit *fit, char **out)
{
    *out = NULL;
    fit->passages = fit->passages_dropped = 0;
    fit->truncated = false;
    ragd_err rc = RAGD_ENOMEM;
    size_t *lens = calloc(res->n ? res->n : 1, sizeof *lens);
    char *base = rag_prompt_render(res, 0, NULL, question, question_len, k);
    if (!lens || !base)
        goto out;
    size_t fixed = RAG_BUDGET_TEMPLATE_TOKENS + system_tokens + rag_budget_tokens(base, strlen(base));
    fit->tokens_estimate = fixed;
    if (fixed > fit->budget) {
        fit->passages_dropped = res->n;
        rc = RAGD_ETOOBIG;
        goto out;
    }
    size_t room = fit->budget - fixed, n = 0;
    for (; n < res->n; n++) {
        const char *t = res->hits[n].row.text;
        size_t len = strlen(t);
        size_t cost = rag_prompt_passage_tokens(k, n + 1, t, len);
        if (cost == SIZE_MAX)
            goto out;
        if (cost <= room) {
            lens[n] = len;
            room -= cost;
            continue;
        }
        if (room >= RAG_PROMPT_MIN_CUT_TOKENS) {
            size_t cut = rag_prompt_cut(k, n + 1, t, len, room);
            if (cut > 0) {
                lens[n++] = cut;
                fit->truncated = true;
            }
        }
        break;
    }
    fit->passages = n;
    fit->passages_dropped = res->n - n;
    *out = rag_prompt_render(res, n, lens, question, question_len, k);
    if (!*out)
        goto out;
    fit->tokens_estimate = RAG_BUDGET_TEMPLATE_TOKENS + system_tokens + rag_budget_tokens(*out, strlen(*out));
    rc = RAGD_OK;
out:
    free(base);
    free(lens);
    return rc;
}
