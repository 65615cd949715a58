/* The `extractive` generator: the best sentences of the retrieved passages, cited.
 * See docs/internals/retrieval.md for the scoring and the reasons behind it. */
#include "rag/extractive.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/sentence.h"
#include "text/tokenize.h"
#include "util/hash.h"
#include "util/strbuf.h"
#include "util/utf8.h"

#define DEFAULT_MAX_SENTENCES 3
#define DEFAULT_MAX_CHARS 800
/* max_chars above this is taken as this (1 MiB): it bounds every buffer below. */
#define MAX_CHARS_LIMIT ((size_t)1 << 20)
/* Distinct query words considered (a bitset per sentence); later ones are ignored. */
#define QWORDS_MAX 256
#define QWORD_BITS (QWORDS_MAX / 64)
/* Candidate sentences considered over all passages; later ones are ignored. */
#define CANDIDATES_MAX 65536
/* Bonus for passage rank r (0-based): RANK_BONUS / (1 + r). Smaller than any word's
 * weight (ln 2 at least), so it only orders sentences of equal word scores. */
#define RANK_BONUS 0.1
/* The mark put where a sentence was cut (U+2026, 3 bytes). */
#define ELLIPSIS "\xe2\x80\xa6"
#define ELLIPSIS_LEN 3

typedef struct {
    uint64_t h;
    size_t off; /* into qctx.pool */
    size_t len;
} qword;

typedef struct {
    qword *w;
    size_t n;
    strbuf pool;
    ragd_err err;
} qctx;

typedef struct {
    size_t passage;
    size_t pos; /* sentence index in its passage */
    size_t start, end;
    uint64_t bits[QWORD_BITS]; /* query words it contains */
    double score;
    bool matched;
} cand;

typedef struct {
    size_t passage;
    size_t pos;
    char *text; /* cleaned, maybe cut; malloc'd */
    size_t len;
} pick;

/* ---------------------------------------------------------------------------------- */
/* Query words                                                                          */

static size_t qword_find(const qctx *q, const char *w, size_t len, uint64_t h)
{
    for (size_t i = 0; i < q->n; i++) {
        if (q->w[i].h == h && q->w[i].len == len && memcmp(q->pool.data + q->w[i].off, w, len) == 0)
            return i;
    }
    return SIZE_MAX;
}

static int on_query_token(const token *tok, void *arg)
{
    qctx *q = arg;
    if (tokenize_is_stopword(tok->norm, tok->norm_len))
        return 0;
    uint64_t h = hash_fnv1a64(tok->norm, tok->norm_len, 0);
    if (qword_find(q, tok->norm, tok->norm_len, h) != SIZE_MAX)
        return 0;
    if (q->n == QWORDS_MAX)
        return 1; /* enough words; the rest of the query is ignored */
    size_t off = q->pool.len;
    ragd_err rc = strbuf_append(&q->pool, tok->norm, tok->norm_len);
    if (rc != RAGD_OK) {
        q->err = rc;
        return 1;
    }
    q->w[q->n].h = h;
    q->w[q->n].off = off;
    q->w[q->n].len = tok->norm_len;
    q->n++;
    return 0;
}

typedef struct {
    const qctx *q;
    cand *c;
} sctx;

static int on_sentence_token(const token *tok, void *arg)
{
    sctx *s = arg;
    uint64_t h = hash_fnv1a64(tok->norm, tok->norm_len, 0);
    size_t i = qword_find(s->q, tok->norm, tok->norm_len, h);
    if (i != SIZE_MAX) {
        s->c->bits[i / 64] |= (uint64_t)1 << (i % 64);
        s->c->matched = true;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Text clean-up and cutting                                                            */

/* Length of the well-formed UTF-8 sequence at p[i..n), or 0 when none starts there. */
static size_t utf8_seq_len(const char *p, size_t i, size_t n)
{
    unsigned char c = (unsigned char)p[i];
    size_t len;
    if (c < 0x80)
        len = 1;
    else if (c >= 0xC2 && c <= 0xDF)
        len = 2;
    else if (c >= 0xE0 && c <= 0xEF)
        len = 3;
    else if (c >= 0xF0 && c <= 0xF4)
        len = 4;
    else
        return 0;
    if (len > n - i || !utf8_valid(p + i, len))
        return 0;
    return len;
}

/* Appends s[0..len) to out with runs of ASCII white space and control characters folded
 * to one space (none at either end) and ill-formed bytes replaced by U+FFFD, so the
 * result is valid UTF-8 on one line. Stops once out holds `limit` bytes or more (at most
 * limit + 4): the caller only needs to know the text is longer than that. */
static ragd_err clean_text(const char *s, size_t len, size_t limit, strbuf *out)
{
    bool pending_space = false;
    size_t i = 0;
    while (i < len && out->len < limit) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == ' ') {
            pending_space = out->len > 0;
            i++;
            continue;
        }
        if (pending_space) {
            ragd_err rc = strbuf_append(out, " ", 1);
            if (rc != RAGD_OK)
                return rc;
            pending_space = false;
        }
        size_t n = utf8_seq_len(s, i, len);
        ragd_err rc = n > 0 ? strbuf_append(out, s + i, n) : strbuf_append(out, "\xef\xbf\xbd", 3);
        if (rc != RAGD_OK)
            return rc;
        i += n > 0 ? n : 1;
    }
    return RAGD_OK;
}

/* Cuts the valid UTF-8 text buf[0..*len) (with room for ELLIPSIS_LEN more bytes) to at
 * most `limit` bytes including an ellipsis: at the last space past half the budget when
 * there is one, else on a code point boundary. At least one code point is kept, so a
 * tiny limit can be exceeded by that code point and the ellipsis. */
static void cut_text(char *buf, size_t *len, size_t limit)
{
    if (*len <= limit)
        return;
    size_t k = limit > ELLIPSIS_LEN ? limit - ELLIPSIS_LEN : 0;
    while (k > 0 && ((unsigned char)buf[k] & 0xC0) == 0x80)
        k--;
    if (k == 0) { /* keep the first code point whole */
        k = 1;
        while (k < *len && ((unsigned char)buf[k] & 0xC0) == 0x80)
            k++;
    }
    for (size_t j = k; j > k / 2 && j > 0; j--) {
        if (buf[j - 1] == ' ') {
            k = j - 1;
            break;
        }
    }
    while (k > 0 && buf[k - 1] == ' ')
        k--;
    memcpy(buf + k, ELLIPSIS, ELLIPSIS_LEN);
    *len = k + ELLIPSIS_LEN;
    buf[*len] = '\0';
}

static size_t marker_len(size_t passage)
{
    char tmp[32];
    int n = snprintf(tmp, sizeof tmp, " [%zu]", passage + 1);
    return n > 0 ? (size_t)n : 0;
}

/* ---------------------------------------------------------------------------------- */
/* Ranking                                                                              */

static int cand_rank_cmp(const void *pa, const void *pb, void *arg)
{
    const cand *c = arg;
    const cand *a = &c[*(const size_t *)pa], *b = &c[*(const size_t *)pb];
    if (a->score != b->score)
        return a->score > b->score ? -1 : 1;
    if (a->passage != b->passage)
        return a->passage < b->passage ? -1 : 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

static int pick_cmp(const void *pa, const void *pb)
{
    const pick *a = pa, *b = pb;
    if (a->passage != b->passage)
        return a->passage < b->passage ? -1 : 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

/* Splits every passage into candidate sentences and marks the query words in each. */
static ragd_err collect_candidates(const extract_passage *passages, size_t n, const qctx *q,
                                   cand **out, size_t *count)
{
    cand *c = NULL;
    size_t nc = 0, alloc = 0;
    text_span *spans = NULL;
    ragd_err rc = RAGD_OK;
    for (size_t p = 0; p < n && nc < CANDIDATES_MAX; p++) {
        size_t ns = 0;
        free(spans);
        spans = NULL;
        if (passages[p].text == NULL || passages[p].len == 0)
            continue;
        rc = sentence_split(passages[p].text, passages[p].len, &spans, &ns);
        if (rc != RAGD_OK)
            goto out;
        for (size_t s = 0; s < ns && nc < CANDIDATES_MAX; s++) {
            if (spans[s].end <= spans[s].start || spans[s].end > passages[p].len)
                continue;
            if (nc == alloc) {
                size_t na = alloc == 0 ? 64 : alloc * 2;
                cand *nc2 = realloc(c, na * sizeof *nc2);
                if (nc2 == NULL) {
                    rc = RAGD_ENOMEM;
                    goto out;
                }
                c = nc2;
                alloc = na;
            }
            cand *cd = &c[nc];
            memset(cd, 0, sizeof *cd);
            cd->passage = p;
            cd->pos = s;
            cd->start = spans[s].start;
            cd->end = spans[s].end;
            if (q->n > 0) {
                sctx sc = {q, cd};
                rc = tokenize_words(passages[p].text + cd->start, cd->end - cd->start,
                                    on_sentence_token, &sc);
                if (rc != RAGD_OK)
                    goto out;
            }
            nc++;
        }
    }
out:
    free(spans);
    if (rc != RAGD_OK) {
        free(c);
        c = NULL;
        nc = 0;
    }
    *out = c;
    *count = nc;
    return rc;
}

/* Scores matched candidates: sum of ln(1 + N / df) over the query words present (N
 * candidates, df of them containing the word) plus the passage-rank bonus. */
static void score_candidates(cand *c, size_t nc, size_t nq)
{
    size_t df[QWORDS_MAX] = {0};
    for (size_t i = 0; i < nc; i++)
        for (size_t w = 0; w < nq; w++)
            if (c[i].bits[w / 64] & ((uint64_t)1 << (w % 64)))
                df[w]++;
    for (size_t i = 0; i < nc; i++) {
        if (!c[i].matched)
            continue;
        double s = 0.0;
        for (size_t w = 0; w < nq; w++)
            if (c[i].bits[w / 64] & ((uint64_t)1 << (w % 64)))
                s += log(1.0 + (double)nc / (double)df[w]);
        c[i].score = s + RANK_BONUS / (1.0 + (double)c[i].passage);
    }
}

/* ---------------------------------------------------------------------------------- */

/* extractive_answer: see the header. Interpretations: params NULL, or a field of 0,
 * means the default (3 sentences, 800); max_chars counts bytes of the whole answer,
 * markers and spaces included; white space inside a sentence is folded to single spaces
 * and ill-formed UTF-8 becomes U+FFFD; a sentence whose text equals one already picked
 * (overlapping chunks) is skipped; when the passages hold no sentence at all the answer
 * is "" (not NULL). RAGD_EINVAL for NULL answer, passages (with n > 0) or query (with
 * query_len > 0); RAGD_ENOMEM on allocation failure (*answer then NULL). */
ragd_err extractive_answer(const char *query, size_t query_len, const extract_passage *passages,
                           size_t n, const extract_params *params, char **answer)
{
    ragd_err rc = RAGD_OK;
    qctx q = {0};
    cand *c = NULL;
    size_t nc = 0;
    size_t *order = NULL;
    pick *picks = NULL;
    size_t npicks = 0;
    strbuf tmp, out;
    strbuf_init(&q.pool, (size_t)QWORDS_MAX * 1024);
    size_t max_sent = params != NULL && params->max_sentences > 0 ? params->max_sentences
                                                                  : DEFAULT_MAX_SENTENCES;
    size_t max_chars = params != NULL && params->max_chars > 0 ? params->max_chars
                                                               : DEFAULT_MAX_CHARS;
    if (max_chars > MAX_CHARS_LIMIT)
        max_chars = MAX_CHARS_LIMIT;
    /* A cleaned sentence stops after max_chars + 1 bytes (+4: a space and the last code
     * point), then may get an ellipsis (+3). The answer passes max_chars only when
     * max_chars cannot hold one code point, the ellipsis and the first marker. */
    const size_t tmp_cap = max_chars + 16;
    strbuf_init(&tmp, tmp_cap);
    strbuf_init(&out, max_chars + 64);
    if (answer == NULL)
        return RAGD_EINVAL;
    *answer = NULL;
    if ((passages == NULL && n > 0) || (query == NULL && query_len > 0)) {
        rc = RAGD_EINVAL;
        goto out;
    }
    if (n == 0)
        goto out;
    q.w = malloc(QWORDS_MAX * sizeof *q.w);
    if (q.w == NULL) {
        rc = RAGD_ENOMEM;
        goto out;
    }
    if (query_len > 0) {
        rc = tokenize_words(query, query_len, on_query_token, &q);
        if (rc == RAGD_OK)
            rc = q.err;
        if (rc != RAGD_OK)
            goto out;
    }
    rc = collect_candidates(passages, n, &q, &c, &nc);
    if (rc != RAGD_OK)
        goto out;
    score_candidates(c, nc, q.n);

    /* The ranking: matched candidates best first; else the fallback sentence. */
    order = malloc((nc > 0 ? nc : 1) * sizeof *order);
    picks = calloc(max_sent < nc ? max_sent : (nc > 0 ? nc : 1), sizeof *picks);
    if (order == NULL || picks == NULL) {
        rc = RAGD_ENOMEM;
        goto out;
    }
    size_t nord = 0;
    for (size_t i = 0; i < nc; i++)
        if (c[i].matched)
            order[nord++] = i;
    if (nord > 0) {
        qsort_r(order, nord, sizeof *order, cand_rank_cmp, c);
    } else if (nc > 0) {
        order[nord++] = 0; /* candidates come in passage order: the best passage's first */
    }

    /* Each pick is charged its text, its own marker and one joining space: the joined
     * answer (where some markers merge) can only be shorter. */
    size_t used = 0;
    size_t cap_picks = max_sent < nc ? max_sent : nc;
    for (size_t oi = 0; oi < nord && npicks < cap_picks; oi++) {
        const cand *cd = &c[order[oi]];
        const char *ptext = passages[cd->passage].text;
        strbuf_reset(&tmp);
        rc = clean_text(ptext + cd->start, cd->end - cd->start, max_chars + 1, &tmp);
        if (rc != RAGD_OK)
            goto out;
        if (tmp.len == 0)
            continue;
        bool dup = false;
        for (size_t j = 0; j < npicks && !dup; j++)
            dup = picks[j].len == tmp.len && memcmp(picks[j].text, tmp.data, tmp.len) == 0;
        if (dup)
            continue;
        size_t mlen = marker_len(cd->passage);
        size_t len = tmp.len;
        if (npicks == 0) {
            /* The first pick is always kept: cut it to what is left after its marker. */
            rc = strbuf_append(&tmp, "\0\0\0", ELLIPSIS_LEN); /* room for the ellipsis */
            if (rc != RAGD_OK)
                goto out;
            cut_text(tmp.data, &len, max_chars > mlen ? max_chars - mlen : 0);
            tmp.len = len;
        } else if (used + 1 + len + mlen > max_chars) {
            continue; /* a shorter, lower-ranked sentence may still fit */
        }
        used += (npicks > 0 ? 1 : 0) + len + mlen;
        picks[npicks].passage = cd->passage;
        picks[npicks].pos = cd->pos;
        picks[npicks].len = len;
        picks[npicks].text = strbuf_detach(&tmp, NULL);
        npicks++;
        strbuf_init(&tmp, tmp_cap);
    }

    qsort(picks, npicks, sizeof *picks, pick_cmp);
    for (size_t i = 0; i < npicks; i++) {
        rc = strbuf_append(&out, picks[i].text, picks[i].len);
        if (rc == RAGD_OK && (i + 1 == npicks || picks[i + 1].passage != picks[i].passage))
            rc = strbuf_appendf(&out, " [%zu]", picks[i].passage + 1);
        if (rc == RAGD_OK && i + 1 < npicks)
            rc = strbuf_append(&out, " ", 1);
        if (rc != RAGD_OK)
            goto out;
    }
    if (out.data == NULL) {
        *answer = calloc(1, 1); /* passages without any sentence: "" */
        if (*answer == NULL)
            rc = RAGD_ENOMEM;
    } else {
        *answer = strbuf_detach(&out, NULL);
    }
out:
    for (size_t i = 0; i < npicks; i++)
        free(picks[i].text);
    free(picks);
    free(order);
    free(c);
    free(q.w);
    strbuf_cleanup(&q.pool);
    strbuf_cleanup(&tmp);
    strbuf_cleanup(&out);
    return rc;
}
