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

/* A fused candidate: where it comes from and its two scores. */
typedef struct {
    rag_hit *hit; /* in with or alone */
    double score;
    size_t order; /* first by with's rank, then alone's */
} history_cand;

static int history_cand_cmp(const void *a, const void *b)
{
    const history_cand *x = a, *y = b;
    if (x->score != y->score)
        return x->score > y->score ? -1 : 1;
    return (x->order > y->order) - (x->order < y->order);
}

/* Marks in pick[0..nc) the best k candidates (sorted), at most max_per_doc of one document
 * while others remain, then fills the places left in order. Returns how many. */
static size_t history_pick(const history_cand *c, size_t nc, size_t k, size_t max_per_doc, bool *pick)
{
    size_t picked = 0;
    for (size_t i = 0; i < nc && picked < k; i++) {
        size_t same = 0;
        for (size_t j = 0; max_per_doc && j < i; j++)
            same += pick[j] && c[j].hit->row.doc_rowid == c[i].hit->row.doc_rowid;
        if (!max_per_doc || same < max_per_doc) {
            pick[i] = true;
            picked++;
        }
    }
    for (size_t i = 0; i < nc && picked < k; i++) {
        if (!pick[i]) {
            pick[i] = true;
            picked++;
        }
    }
    return picked;
}

ragd_err rag_history_fuse(rag_result *with, rag_result *alone, size_t k, size_t max_per_doc)
{
    size_t n = with->n + alone->n, nc = 0;
    history_cand *c = calloc(n ? n : 1, sizeof *c);
    bool *taken = calloc(alone->n ? alone->n : 1, sizeof *taken); /* alone's hits that are in with */
    bool *pick = calloc(n ? n : 1, sizeof *pick);
    rag_hit *out = calloc(n ? n : 1, sizeof *out);
    if (!c || !taken || !pick || !out) {
        free(c);
        free(taken);
        free(pick);
        free(out);
        return RAGD_ENOMEM;
    }
    for (size_t i = 0; i < with->n; i++) {
        double other = 0;
        for (size_t j = 0; j < alone->n; j++) {
            if (!taken[j] && alone->hits[j].row.chunk_id == with->hits[i].row.chunk_id) {
                other = alone->hits[j].score;
                taken[j] = true;
                break;
            }
        }
        c[nc++] = (history_cand){.hit = &with->hits[i], .score = (with->hits[i].score + other) / 2, .order = i};
    }
    for (size_t j = 0; j < alone->n; j++)
        if (!taken[j])
            c[nc++] = (history_cand){.hit = &alone->hits[j], .score = alone->hits[j].score / 2, .order = with->n + j};
    qsort(c, nc, sizeof *c, history_cand_cmp);
    size_t keep = history_pick(c, nc, k, max_per_doc, pick);
    /* commit: the picked move to out in score order, everything else is freed */
    size_t w = 0;
    for (size_t i = 0; i < nc; i++) {
        if (pick[i]) {
            out[w] = *c[i].hit;
            out[w].score = c[i].score;
            out[w++].distance = 1 - c[i].score;
        } else {
            store_hit_rows_cleanup(&c[i].hit->row, 1);
        }
        memset(&c[i].hit->row, 0, sizeof c[i].hit->row);
    }
    for (size_t j = 0; j < alone->n; j++)
        if (taken[j]) /* the copy in with was kept or freed above */
            store_hit_rows_cleanup(&alone->hits[j].row, 1);
    free(with->hits);
    with->hits = out;
    with->n = keep;
    with->retrieve_ms += alone->retrieve_ms;
    free(alone->hits);
    alone->hits = NULL;
    alone->n = 0;
    free(c);
    free(taken);
    free(pick);
    return RAGD_OK;
}
