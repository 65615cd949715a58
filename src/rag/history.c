/* A conversation's earlier turns, for retrieval. See history.h. */
#include "rag/history.h"

#include <stdlib.h>
#include <string.h>

bool rag_history_turn_kept(const rag_turn *t)
{
    return t->role && t->text && t->len > 0 && (strcmp(t->role, "user") == 0 || strcmp(t->role, "assistant") == 0);
}

bool rag_history_turn_is_user(const rag_turn *t) { return rag_history_turn_kept(t) && strcmp(t->role, "user") == 0; }

const rag_turn *rag_history_last_user(const rag_turn *h, size_t n)
{
    for (size_t i = n; i > 0; i--)
        if (rag_history_turn_is_user(&h[i - 1]))
            return &h[i - 1];
    return NULL;
}

static bool history_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }

/* How many bytes of text[0..len) to keep within room: all when they fit, else up to the
 * last word end within room, else (one long word) the last character boundary within it. */
static size_t history_cut(const char *text, size_t len, size_t room)
{
    if (len <= room)
        return len;
    size_t cut = room;
    while (cut > 0 && !history_space(text[cut])) /* text[cut] exists: cut < len */
        cut--;
    while (cut > 0 && history_space(text[cut - 1]))
        cut--;
    if (cut > 0)
        return cut;
    cut = room;
    while (cut > 0 && ((unsigned char)text[cut] & 0xc0) == 0x80)
        cut--;
    return cut;
}

char *rag_history_retrieval_text(const char *question, size_t len, const rag_turn *h, size_t n, size_t *out_len,
                                 size_t *turns_used)
{
    const char *starts[RAG_HISTORY_RETRIEVAL_TURNS];
    size_t lens[RAG_HISTORY_RETRIEVAL_TURNS], np = 0, room = RAG_HISTORY_RETRIEVAL_BYTES;
    for (size_t i = n; i > 0 && np < RAG_HISTORY_RETRIEVAL_TURNS && room > 0; i--) {
        const rag_turn *t = &h[i - 1];
        if (!rag_history_turn_is_user(t))
            continue;
        /* leading and trailing blanks cost nothing */
        const char *s = t->text;
        size_t l = t->len;
        while (l > 0 && history_space(*s)) {
            s++;
            l--;
        }
        while (l > 0 && history_space(s[l - 1]))
            l--;
        if (l == 0)
            continue; /* nothing but blanks */
        size_t keep = history_cut(s, l, room);
        if (keep == 0)
            break;
        starts[np] = s;
        lens[np++] = keep;
        room -= keep;
        if (keep < l)
            break; /* cut: the room is spent */
    }
    size_t total = len + 1;
    for (size_t j = 0; j < np; j++)
        total += lens[j] + 1;
    char *out = malloc(total);
    if (!out)
        return NULL;
    size_t w = 0;
    for (size_t j = np; j > 0; j--) { /* oldest first */
        memcpy(out + w, starts[j - 1], lens[j - 1]);
        w += lens[j - 1];
        out[w++] = '\n';
    }
    memcpy(out + w, question, len);
    w += len;
    out[w] = '\0';
    *out_len = w;
    *turns_used = np;
    return out;
}
