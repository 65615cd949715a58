/* The prompt stage. See prompt.h. */
#include "rag/prompt.h"

#include <stdlib.h>
#include <string.h>

#include "rag/budget.h"
#include "rag/history.h"
#include "text/sentence.h"
#include "util/strbuf.h"

#define RAG_PROMPT_CAP ((size_t)16 << 20)
#define RAG_PROMPT_MIN_CUT_TOKENS 16 /* a cut passage shorter than this is dropped instead */

char *rag_prompt_system(const fence_keys *k) { return fence_system_prompt(k); }

/* A turn of the conversation as it goes into the prompt: its first len bytes, cut or whole. */
typedef struct {
    const rag_turn *t;
    size_t len;
    bool cut;
} rag_prompt_turn;

static const char rag_prompt_history_head[] =
    "\n\nThe conversation so far (earlier turns, oldest first; the question below continues it):\n";
#define RAG_PROMPT_CUT_MARK " \xe2\x80\xa6" /* " …": the end of a turn cut to fit */

/* Appends one turn: "User: " or "Assistant: ", its first len bytes neutralised (as the
 * question is), every line break (CR, LF, CRLF) written as LF and two spaces, the cut mark
 * when cut, a line break. */
static ragd_err rag_prompt_append_turn(strbuf *sb, const rag_turn *t, size_t len, bool cut)
{
    strbuf clean;
    strbuf_init(&clean, RAG_PROMPT_CAP);
    ragd_err e = strbuf_appends(sb, strcmp(t->role, "user") == 0 ? "User: " : "Assistant: ");
    if (!e)
        e = fence_append_neutral(&clean, t->text, len);
    size_t run = 0; /* start of the bytes not yet copied */
    for (size_t i = 0; !e && i < clean.len; i++) {
        char c = clean.data[i];
        if (c != '\n' && c != '\r')
            continue;
        e = strbuf_append(sb, clean.data + run, i - run);
        if (!e)
            e = strbuf_appends(sb, "\n  ");
        if (c == '\r' && i + 1 < clean.len && clean.data[i + 1] == '\n')
            i++;
        run = i + 1;
    }
    if (!e && clean.len > run)
        e = strbuf_append(sb, clean.data + run, clean.len - run);
    if (!e && cut)
        e = strbuf_appends(sb, RAG_PROMPT_CUT_MARK);
    if (!e)
        e = strbuf_appends(sb, "\n");
    strbuf_cleanup(&clean);
    return e;
}

/* The user message with the first n passages, passage i cut to lens[i] bytes (lens NULL:
 * whole), and the turns turns[0..nt) (oldest first). */
static char *rag_prompt_render(const rag_result *res, size_t n, const size_t *lens, const rag_prompt_turn *turns,
                               size_t nt, const char *question, size_t question_len, const fence_keys *k)
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
    if (!e && nt)
        e = strbuf_appends(&sb, rag_prompt_history_head);
    for (size_t i = 0; !e && i < nt; i++)
        e = rag_prompt_append_turn(&sb, turns[i].t, turns[i].len, turns[i].cut);
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
    return rag_prompt_render(res, res->n, NULL, NULL, 0, question, question_len, k);
}

/* What a piece of text costs in the prompt, its first len bytes: SIZE_MAX when out of memory. */
typedef size_t (*rag_prompt_cost_fn)(const void *ctx, const char *text, size_t len);

typedef struct {
    const fence_keys *k;
    size_t n; /* the passage's number, 1-based */
} rag_prompt_passage_ctx;

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

static size_t rag_prompt_passage_cost(const void *ctx, const char *text, size_t len)
{
    const rag_prompt_passage_ctx *p = ctx;
    return rag_prompt_passage_tokens(p->k, p->n, text, len);
}

/* The estimated tokens of turn t written with its first len bytes (and the cut mark when
 * cut). SIZE_MAX when out of memory. */
static size_t rag_prompt_turn_cost(const rag_turn *t, size_t len, bool cut)
{
    strbuf sb;
    strbuf_init(&sb, RAG_PROMPT_CAP);
    size_t tokens = rag_prompt_append_turn(&sb, t, len, cut) == RAGD_OK ? rag_budget_tokens(sb.data, sb.len) : SIZE_MAX;
    strbuf_cleanup(&sb);
    return tokens;
}

/* rag_prompt_turn_cost of a cut turn, as rag_prompt_cut asks (ctx: the rag_turn; text is its text). */
static size_t rag_prompt_cut_turn_cost(const void *ctx, const char *text, size_t len)
{
    (void)text;
    return rag_prompt_turn_cost(ctx, len, true);
}

/* The longest cut of text[0..len) that costs at most room tokens (cost(ctx, text, cut)): at
 * a sentence end, else at a word end. 0 when none (or out of memory). */
static size_t rag_prompt_cut(rag_prompt_cost_fn cost, const void *ctx, const char *text, size_t len, size_t room)
{
    text_span *sp = NULL;
    size_t ns = 0, best = 0;
    if (sentence_split(text, len, &sp, &ns) == RAGD_OK) {
        size_t lo = 0, hi = ns; /* the most sentences, sp[0..m), that fit: binary search on m */
        while (lo < hi) {
            size_t m = (lo + hi + 1) / 2;
            size_t t = cost(ctx, text, sp[m - 1].end);
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
        if (cost(ctx, text, ends[m - 1]) <= room)
            lo = m;
        else
            hi = m - 1;
    }
    best = lo ? ends[lo - 1] : 0;
    free(ends);
    return best;
}

/* At most this many bytes of a turn are looked at when it is cut to fit room tokens: far
 * more than room tokens' worth (the estimate gives at most 4 bytes a token outside runs of
 * blanks), so that a 1 MB turn costs no more than the room it may fill. */
static size_t rag_prompt_turn_scan(const rag_turn *t, size_t room)
{
    size_t scan = room < (SIZE_MAX - 64) / 16 ? 16 * room + 64 : t->len;
    if (scan >= t->len)
        return t->len;
    while (scan > 0 && ((unsigned char)t->text[scan] & 0xc0) == 0x80)
        scan--; /* a character boundary */
    return scan;
}

/* Picks the turns that fit room tokens (the history's head included), newest first:
 * written into turns[cap - nt .. cap) oldest first; returns nt, or SIZE_MAX when out of
 * memory. */
static size_t rag_prompt_pick_turns(const rag_turn *history, size_t n_history, size_t room, rag_prompt_turn *turns,
                                    size_t cap)
{
    size_t head = rag_budget_tokens(rag_prompt_history_head, strlen(rag_prompt_history_head)), nt = 0;
    if (room <= head)
        return 0;
    room -= head;
    for (size_t i = n_history; i > 0 && nt < cap; i--) {
        const rag_turn *t = &history[i - 1];
        if (!rag_history_turn_kept(t))
            continue;
        /* a turn longer than the bytes a cut looks at is cut without costing it whole (so
         * the work stays in proportion to the room, not to the turn) */
        bool too_long = rag_prompt_turn_scan(t, room) < t->len;
        size_t cost = too_long ? SIZE_MAX - 1 : rag_prompt_turn_cost(t, t->len, false);
        if (cost == SIZE_MAX)
            return SIZE_MAX;
        rag_prompt_turn *slot = &turns[cap - 1 - nt];
        if (cost <= room) {
            *slot = (rag_prompt_turn){.t = t, .len = t->len, .cut = false};
            nt++;
            room -= cost;
            continue;
        }
        if (room >= RAG_PROMPT_MIN_CUT_TOKENS) {
            size_t cut = rag_prompt_cut(rag_prompt_cut_turn_cost, t, t->text, rag_prompt_turn_scan(t, room), room);
            if (cut > 0) {
                *slot = (rag_prompt_turn){.t = t, .len = cut, .cut = true};
                nt++;
            }
        }
        break; /* the older turns are dropped */
    }
    return nt;
}

ragd_err rag_prompt_user_fit(const rag_result *res, const char *question, size_t question_len,
                             const rag_turn *history, size_t n_history, const fence_keys *k, size_t system_tokens,
                             rag_prompt_fit *fit, char **out)
{
    *out = NULL;
    fit->passages = fit->passages_dropped = 0;
    fit->truncated = false;
    fit->history_turns = fit->history_dropped = 0;
    fit->history_truncated = false;
    size_t kept = 0;
    for (size_t i = 0; i < n_history; i++)
        kept += rag_history_turn_kept(&history[i]);
    /* every turn given costs at least a token, so no more than the budget can be given */
    size_t cap = kept < fit->budget ? kept : fit->budget;
    ragd_err rc = RAGD_ENOMEM;
    rag_prompt_turn *turns = calloc(cap ? cap : 1, sizeof *turns);
    size_t *lens = calloc(res->n ? res->n : 1, sizeof *lens);
    char *base = rag_prompt_render(res, 0, NULL, NULL, 0, question, question_len, k);
    if (!turns || !lens || !base)
        goto out;
    size_t fixed = RAG_BUDGET_TEMPLATE_TOKENS + system_tokens + rag_budget_tokens(base, strlen(base));
    fit->tokens_estimate = fixed;
    fit->history_dropped = kept;
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
            rag_prompt_passage_ctx pc = {.k = k, .n = n + 1};
            size_t cut = rag_prompt_cut(rag_prompt_passage_cost, &pc, t, len, room);
            if (cut > 0) {
                lens[n++] = cut;
                fit->truncated = true;
            }
        }
        break;
    }
    fit->passages = n;
    fit->passages_dropped = res->n - n;
    /* the history, with the room the passages left */
    size_t nt = kept ? rag_prompt_pick_turns(history, n_history, room, turns, cap) : 0;
    if (nt == SIZE_MAX)
        goto out;
    const rag_prompt_turn *given = turns + cap - nt;
    for (;;) {
        *out = rag_prompt_render(res, n, lens, given, nt, question, question_len, k);
        if (!*out)
            goto out;
        fit->tokens_estimate = RAG_BUDGET_TEMPLATE_TOKENS + system_tokens + rag_budget_tokens(*out, strlen(*out));
        if (fit->tokens_estimate <= fit->budget || nt == 0)
            break;
        /* the pieces were costed apart; should their joins cost more, the oldest turn goes */
        free(*out);
        *out = NULL;
        given++;
        nt--;
    }
    fit->history_turns = nt;
    fit->history_dropped = kept - nt;
    fit->history_truncated = nt > 0 && given[0].cut;
    rc = RAGD_OK;
out:
    free(base);
    free(lens);
    free(turns);
    return rc;
}
