/* The prompt stage. See prompt.h. */
#include "rag/prompt.h"

#include <string.h>

#include "util/strbuf.h"

#define RAG_PROMPT_CAP ((size_t)16 << 20)

char *rag_prompt_system(const fence_keys *k) { return fence_system_prompt(k); }

char *rag_prompt_user(const rag_result *res, const char *question, size_t question_len, const fence_keys *k)
{
    strbuf sb;
    strbuf_init(&sb, RAG_PROMPT_CAP);
    ragd_err e = strbuf_appends(&sb, "Context passages:\n\n");
    for (size_t i = 0; !e && i < res->n; i++) {
        const char *t = res->hits[i].row.text;
        e = fence_append_passage(&sb, k, i + 1, t, strlen(t));
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
