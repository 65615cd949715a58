/* The `extractive` generator: the best whole sentences of the retrieved passages, cited.
 * See docs/internals/extractive.md for the rules, the scoring and the reasons behind them. */
#include "rag/extractive.h"

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/prose.h"
#include "text/sentence.h"
#include "text/stem.h"
#include "text/tokenize.h"
#include "util/hash.h"
#include "util/strbuf.h"
#include "util/utf8.h"

#define DEFAULT_MAX_SENTENCES 3
#define DEFAULT_MAX_CHARS 800
/* max_chars above this is taken as this (1 MiB): it bounds every buffer below. */
#define MAX_CHARS_LIMIT ((size_t)1 << 20)
/* Distinct query terms considered (a count per sentence each); later ones are ignored. */
#define QWORDS_MAX 32
/* Candidate sentences considered over all passages; later ones are ignored. */
#define CANDIDATES_MAX 65536
/* BM25 over sentences: term saturation and (mild) length normalisation. */
#define BM25_K1 1.2
#define BM25_B 0.3
/* Passage rank r (0-based) adds RANK_BONUS / (1 + r). */
#define RANK_BONUS 0.3
/* Two different query terms g words apart add PROXIMITY_BONUS / g. */
#define PROXIMITY_BONUS 0.6
/* A sentence with a cue for the question's type ("decided" for "what did we decide"). */
#define CUE_BONUS_STRONG 1.2
#define CUE_BONUS_WEAK 0.5
/* A question answers nothing by itself. */
#define QUESTION_PENALTY 1.5
/* A lower-case start inside a passage: often the rest of a list item or of a sentence
 * broken by a code line, sometimes a lower-case name ("ragd serve …"): a mild penalty. */
#define LOWER_START_PENALTY 0.5
/* The mark put where a sentence was cut (U+2026, 3 bytes). */
#define ELLIPSIS "\xe2\x80\xa6"
#define ELLIPSIS_LEN 3

/* What the question asks for, from its words; selects the cue words below. */
typedef enum { QT_NONE, QT_DECISION, QT_WHEN, QT_COUNT, QT_WHO, QT_WHY, QT_HOW, QT_WHERE, QT_DEFINE } qtype;

typedef struct {
    uint64_t h;
    char stem[STEM_MAX];
    size_t len;
} qword;

typedef struct {
    qword w[QWORDS_MAX];
    size_t n;
    qtype type;
    size_t ntok;  /* tokens seen, stop words included */
    bool first_what, first_how;
} qctx;

typedef struct {
    size_t passage;
    size_t pos; /* sentence index in its passage's prose */
    size_t start, end; /* into the prose buffer */
    uint8_t tf[QWORDS_MAX];
    uint32_t nwords;
    uint32_t min_gap; /* fewest words between two different query terms; UINT32_MAX: none */
    uint32_t cues;
    uint64_t key_hash; /* of the normalised text (letters and digits, lower case) */
    size_t key_off, key_len; /* into the key buffer */
    double score;
    bool matched, dropped, question, colon, lower, edge_first;
} cand;

typedef struct {
    size_t passage;
    size_t pos;
    char *text; /* cleaned, maybe cut; malloc'd */
    size_t len;
} pick;

/* ---------------------------------------------------------------------------------- */
/* Question analysis                                                                    */

/* Stems (Porter2) of words that answer each question type. Sorted for bsearch. */
/* The words of a question that asks for a decision ("what did we decide/agree/choose"). */
static const char *const decision_asked[] = {"agre", "choos", "chose", "chosen", "conclud", "decid", "decis",
                                             "settl"};
static const char *const cue_decision[] = {"adopt", "agre",   "choos",  "chose",  "chosen", "conclud", "decid",
                                           "decis", "go",     "opt",    "pick",   "plan",    "resolv",
                                           "select", "settl", "switch", "will"};
static const char *const cue_when[] = {
    "afternoon", "am",      "annual",  "april",   "august",   "daili",   "date",      "day",
    "decemb",    "even",    "everi",   "februari", "friday",  "hour",    "januari",   "juli",
    "june",      "march",   "may",     "midnight", "monday",  "month",   "morn",      "night",
    "noon",    "novemb",  "octob",   "pm",       "saturday", "septemb",  "sunday",
    "thursday",  "today",   "tomorrow", "tuesday", "utc",     "wednesday", "week",    "weekend",
    "year",      "yesterday"};
static const char *const cue_count[] = {"dozen",  "eight",   "eleven",  "five",  "four", "half",
                                        "hundr", "million", "nine",    "one",   "percent", "seven",
                                        "six",    "ten",     "thousand", "three", "twelv", "two"};
static const char *const cue_who[] = {"admin", "author", "engin", "lead", "maintain", "manag",
                                      "member", "owner", "respons", "team", "user"};
static const char *const cue_why[] = {"avoid", "becaus", "caus", "due", "order", "prevent",
                                      "reason", "sinc", "so", "therefor", "thus"};
static const char *const cue_how[] = {"add",  "call",  "configur", "creat", "first", "instal", "next",
                                      "open", "run",   "set",      "start", "step",  "then",   "use",
                                      "via"};
static const char *const cue_where[] = {"directori", "file", "folder", "host", "insid", "kept",
                                        "locat", "path", "server", "store", "under"};
static const char *const cue_define[] = {"are", "call", "defin", "is", "mean", "refer"};

static int cue_cmp(const void *k, const void *e)
{
    return strcmp(k, *(const char *const *)e);
}

/* The longest cue stem ("wednesday", "directori"): longer words are no cue. */
#define CUE_MAX_LEN 9

static bool cue_in(const char *const *list, size_t n, const char *stem)
{
    return strlen(stem) <= CUE_MAX_LEN && bsearch(stem, list, n, sizeof *list, cue_cmp) != NULL;
}

#define CUE_IN(list, s) cue_in(list, sizeof list / sizeof list[0], s)

/* True when `stem` answers a question of type t; a number answers "how many" and "when". */
static bool cue_match(qtype t, const char *stem, size_t len)
{
    bool digit = len > 0 && (unsigned)(stem[0] - '0') < 10u;
    switch (t) {
    case QT_DECISION: return CUE_IN(cue_decision, stem);
    case QT_WHEN: return digit || CUE_IN(cue_when, stem);
    case QT_COUNT: return digit || CUE_IN(cue_count, stem);
    case QT_WHO: return CUE_IN(cue_who, stem);
    case QT_WHY: return CUE_IN(cue_why, stem);
    case QT_HOW: return CUE_IN(cue_how, stem);
    case QT_WHERE: return CUE_IN(cue_where, stem);
    case QT_DEFINE: return CUE_IN(cue_define, stem);
    default: return false;
    }
}

static double cue_bonus(qtype t)
{
    return t == QT_DECISION || t == QT_WHEN || t == QT_COUNT || t == QT_WHY ? CUE_BONUS_STRONG
                                                                             : CUE_BONUS_WEAK;
}

/* Stems a normalised word into out (NUL-terminated); a word that cannot be stemmed is
 * used as it is (cut to STEM_MAX - 1). */
static size_t stem_word(const char *w, size_t n, char out[STEM_MAX])
{
    size_t len = 0;
    char tmp[STEM_MAX];
    if (stem_english(w, n, tmp, &len) != RAGD_OK) {
        len = n < STEM_MAX - 1 ? n : STEM_MAX - 1;
        memcpy(out, w, len);
    } else {
        if (len > STEM_MAX - 1)
            len = STEM_MAX - 1;
        memcpy(out, tmp, len);
    }
    out[len] = '\0';
    return len;
}

static bool word_is(const token *tok, const char *w)
{
    return tok->norm_len == strlen(w) && memcmp(tok->norm, w, tok->norm_len) == 0;
}

/* The question's type from its words: "when", "who", "why", "where", "how many/much/
 * long" (a number), "how often" (a time), "how", "what is", and decision verbs anywhere
 * ("what did we decide", "agreed"). True for the word after "how" that only asks for a
 * number or a time: it is not a query term. */
static bool query_type_word(qctx *q, const token *tok, const char *stem)
{
    qtype t = QT_NONE;
    if (word_is(tok, "when"))
        t = QT_WHEN;
    else if (word_is(tok, "who") || word_is(tok, "whom") || word_is(tok, "whose"))
        t = QT_WHO;
    else if (word_is(tok, "why"))
        t = QT_WHY;
    else if (word_is(tok, "where"))
        t = QT_WHERE;
    else if (q->first_how && (word_is(tok, "many") || word_is(tok, "much") || word_is(tok, "often") ||
                              word_is(tok, "long")))
        t = word_is(tok, "often") ? QT_WHEN : QT_COUNT;
    else if (CUE_IN(decision_asked, stem))
        t = QT_DECISION;
    else if (q->first_what && q->ntok == 1 && (word_is(tok, "is") || word_is(tok, "are") || word_is(tok, "does")))
        t = QT_DEFINE;
    bool question_word = q->first_how && (t == QT_COUNT || t == QT_WHEN);
    q->first_how = word_is(tok, "how");
    q->first_what = q->ntok == 0 && word_is(tok, "what");
    if (q->first_how && q->type == QT_NONE)
        q->type = QT_HOW;
    /* A specific type wins over "how" and "what is"; the first specific one wins. */
    if (t != QT_NONE && (q->type == QT_NONE || q->type == QT_HOW || q->type == QT_DEFINE ||
                         (t == QT_COUNT && q->type == QT_WHEN)))
        q->type = t;
    return question_word;
}

static int on_query_token(const token *tok, void *arg)
{
    qctx *q = arg;
    char stem[STEM_MAX];
    size_t len = stem_word(tok->norm, tok->norm_len, stem);
    bool question_word = query_type_word(q, tok, stem);
    q->ntok++;
    if (question_word || tokenize_is_stopword(tok->norm, tok->norm_len))
        return 0; /* "many" in "how many" asks for a number; it is not a topic */
    uint64_t h = hash_fnv1a64(stem, len, 0);
    for (size_t i = 0; i < q->n; i++)
        if (q->w[i].h == h && q->w[i].len == len && memcmp(q->w[i].stem, stem, len) == 0)
            return 0;
    if (q->n == QWORDS_MAX)
        return 0; /* enough terms; the rest still decide the type */
    q->w[q->n].h = h;
    q->w[q->n].len = len;
    memcpy(q->w[q->n].stem, stem, len + 1);
    q->n++;
    return 0;
}

/* ---------------------------------------------------------------------------------- */
/* Sentence analysis                                                                    */

typedef struct {
    const qctx *q;
    cand *c;
    const char *text; /* the sentence being tokenised */
    uint32_t last_pos[QWORDS_MAX]; /* word index + 1 of each term's last occurrence; 0: none */
} sctx;

static int on_sentence_token(const token *tok, void *arg)
{
    sctx *s = arg;
    cand *c = s->c;
    uint32_t pos = ++c->nwords;
    if (s->q->n == 0 && s->q->type == QT_NONE)
        return 0;
    bool stop = tokenize_is_stopword(tok->norm, tok->norm_len);
    if (stop && s->q->type == QT_NONE)
        return 0; /* no term and no cue to find in it */
    char stem[STEM_MAX];
    size_t len = stem_word(tok->norm, tok->norm_len, stem);
    if (s->q->type != QT_NONE && cue_match(s->q->type, stem, len))
        c->cues++;
    /* "who": a capitalised word inside the sentence is likely a name. */
    if (s->q->type == QT_WHO && pos > 1 && (unsigned)(s->text[tok->start] - 'A') < 26u)
        c->cues++;
    if (stop)
        return 0;
    uint64_t h = hash_fnv1a64(stem, len, 0);
    for (size_t i = 0; i < s->q->n; i++) {
        const qword *w = &s->q->w[i];
        if (w->h != h || w->len != len || memcmp(w->stem, stem, len) != 0)
            continue;
        if (c->tf[i] < UINT8_MAX)
            c->tf[i]++;
        c->matched = true;
        for (size_t j = 0; j < s->q->n; j++) {
            if (j != i && s->last_pos[j] > 0 && pos - s->last_pos[j] < c->min_gap)
                c->min_gap = pos - s->last_pos[j];
        }
        s->last_pos[i] = pos;
        break;
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
/* Candidates                                                                           */

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

/* Whether the sentence s[0..n) ends with closing punctuation (after closing quotes and
 * brackets); *last gets that character ('.', '!', '?', ':', or 0 for a CJK full stop). */
static bool sentence_closed(const char *s, size_t n, char *last)
{
    while (n > 0 && strchr(")]\"'", s[n - 1]) != NULL && s[n - 1] != '\0')
        n--;
    while (n >= 3 && (unsigned char)s[n - 3] == 0xE2 && (unsigned char)s[n - 2] == 0x80 &&
           ((unsigned char)s[n - 1] == 0x9D || (unsigned char)s[n - 1] == 0x99))
        n -= 3; /* ” ’ */
    if (n == 0)
        return false;
    char c = s[n - 1];
    if (c == '.' || c == '!' || c == '?' || c == ':') {
        *last = c;
        return true;
    }
    /* 。！？ (U+3002, U+FF01, U+FF1F) */
    const unsigned char *u = (const unsigned char *)s + n - (n >= 3 ? 3 : n);
    if (n >= 3 && ((u[0] == 0xE3 && u[1] == 0x80 && u[2] == 0x82) ||
                   (u[0] == 0xEF && u[1] == 0xBC && (u[2] == 0x81 || u[2] == 0x9F)))) {
        *last = 0;
        return true;
    }
    return false;
}

/* A sentence whose first character shows it continues one cut off before it: a lower-case
 * ASCII letter or punctuation that cannot start a sentence. */
static bool starts_mid_sentence(const char *s, size_t n)
{
    return n > 0 && ((unsigned)(s[0] - 'a') < 26u || (s[0] != '\0' && strchr(",;:)]}-&.!?%=+|~>", s[0]) != NULL));
}

static bool starts_lower(const char *s, size_t n)
{
    return n > 0 && (unsigned)(s[0] - 'a') < 26u;
}

/* True when s[0..n) leaves a ( or [ open, or closes one it did not open: the splitter or
 * a chunk boundary cut inside brackets ("(see the \"what did we decide?\" example)"), so it
 * is half a sentence. *Cost:* "a) … b) …" enumerations count as unbalanced too. */
static bool brackets_unbalanced(const char *s, size_t n)
{
    int depth = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '(' || s[i] == '[')
            depth++;
        else if (s[i] == ')' || s[i] == ']')
            depth--;
        if (depth < 0)
            return true;
    }
    return depth > 0;
}

/* Appends the comparison key of s[0..n) to keys: ASCII letters lower-cased, digits and
 * non-ASCII bytes kept, everything else (spaces, punctuation) dropped. */
static ragd_err append_key(const char *s, size_t n, strbuf *keys)
{
    char buf[256];
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if ((unsigned)(c - 'A') < 26u)
            c = (unsigned char)(c + 32);
        else if (!((unsigned)(c - 'a') < 26u || (unsigned)(c - '0') < 10u || c >= 0x80))
            continue;
        buf[k++] = (char)c;
        if (k == sizeof buf) {
            ragd_err rc = strbuf_append(keys, buf, k);
            if (rc != RAGD_OK)
                return rc;
            k = 0;
        }
    }
    return k > 0 ? strbuf_append(keys, buf, k) : RAGD_OK;
}

typedef struct {
    cand *v;
    size_t n, alloc;
} cand_list;

static cand *cand_push(cand_list *l)
{
    if (l->n == l->alloc) {
        size_t na = l->alloc == 0 ? 64 : l->alloc * 2;
        cand *nv = realloc(l->v, na * sizeof *nv);
        if (nv == NULL)
            return NULL;
        l->v = nv;
        l->alloc = na;
    }
    cand *c = &l->v[l->n++];
    memset(c, 0, sizeof *c);
    c->min_gap = UINT32_MAX;
    return c;
}

/* Turns every passage into prose (markup lines out), splits it into sentences, and
 * analyses each: words, query terms, cues, the rules that drop a non-sentence. */
static ragd_err collect_candidates(const extract_passage *passages, size_t n, const qctx *q,
                                   strbuf *prose, strbuf *keys, cand_list *cl)
{
    text_span *spans = NULL;
    ragd_err rc = RAGD_OK;
    for (size_t p = 0; p < n && cl->n < CANDIDATES_MAX; p++) {
        size_t ns = 0;
        prose_info info;
        if (passages[p].text == NULL || passages[p].len == 0)
            continue;
        size_t begin = prose->len;
        rc = prose_extract(passages[p].text, passages[p].len, prose, &info);
        if (rc == RAGD_OK)
            rc = strbuf_append(prose, "\n\n", 2);
        if (rc != RAGD_OK)
            goto out;
        free(spans);
        spans = NULL;
        rc = sentence_split(prose->data + begin, prose->len - begin, &spans, &ns);
        if (rc != RAGD_OK)
            goto out;
        for (size_t s = 0; s < ns && cl->n < CANDIDATES_MAX; s++) {
            cand *cd = cand_push(cl);
            if (cd == NULL) {
                rc = RAGD_ENOMEM;
                goto out;
            }
            cd->passage = p;
            cd->pos = s;
            cd->start = begin + spans[s].start;
            cd->end = begin + spans[s].end;
            cd->edge_first = s == 0 && info.starts_at_top;
            const char *t = prose->data + cd->start;
            size_t tl = cd->end - cd->start;
            char last = 0;
            bool closed = sentence_closed(t, tl, &last);
            cd->question = closed && last == '?';
            cd->colon = closed && last == ':';
            cd->lower = starts_lower(t, tl);
            /* Not a sentence: no closing punctuation (a heading, a label, a list item of a
             * few words, a line of code, the cut-off end of a chunk); a lead-in ending in
             * ':' (what it introduces is not in the answer); a piece cut inside brackets;
             * the cut-off start of a chunk; no words. A dropped one needs no analysis. */
            cd->dropped = !closed || cd->colon || brackets_unbalanced(t, tl) ||
                          (cd->edge_first && starts_mid_sentence(t, tl));
            if (cd->dropped)
                continue;
            sctx sc = {.q = q, .c = cd, .text = t};
            rc = tokenize_words(t, tl, on_sentence_token, &sc);
            if (rc != RAGD_OK)
                goto out;
            cd->dropped = cd->nwords == 0;
            cd->key_off = keys->len;
            rc = append_key(t, tl, keys);
            if (rc != RAGD_OK)
                goto out;
            cd->key_len = keys->len - cd->key_off;
            cd->key_hash = cd->key_len > 0 ? hash_fnv1a64(keys->data + cd->key_off, cd->key_len, 0) : 0;
        }
    }
out:
    free(spans);
    return rc;
}

/* Drops repeats: a sentence whose key equals an earlier one's (the earlier one is from a
 * better passage or earlier in it), and a passage's first sentence (where a chunk may
 * start mid-sentence) whose key is the end of a longer candidate's key. A cut last
 * sentence needs no such test: it has no closing punctuation and is dropped as such. */
static ragd_err drop_repeats(cand *c, size_t nc, const char *keys)
{
    size_t slots = 16;
    while (slots < nc * 2)
        slots *= 2;
    size_t *table = malloc(slots * sizeof *table);
    if (table == NULL)
        return RAGD_ENOMEM;
    for (size_t i = 0; i < slots; i++)
        table[i] = SIZE_MAX;
    for (size_t i = 0; i < nc; i++) {
        if (c[i].dropped || c[i].key_len == 0)
            continue;
        size_t h = (size_t)c[i].key_hash & (slots - 1);
        for (;; h = (h + 1) & (slots - 1)) {
            size_t j = table[h];
            if (j == SIZE_MAX) {
                table[h] = i;
                break;
            }
            if (c[j].key_hash == c[i].key_hash && c[j].key_len == c[i].key_len &&
                memcmp(keys + c[j].key_off, keys + c[i].key_off, c[i].key_len) == 0) {
                c[i].dropped = true;
                break;
            }
        }
    }
    free(table);
    for (size_t i = 0; i < nc; i++) {
        if (c[i].dropped || !c[i].edge_first || c[i].key_len == 0)
            continue;
        const char *ki = keys + c[i].key_off;
        for (size_t j = 0; j < nc && !c[i].dropped; j++) {
            if (j == i || c[j].dropped || c[j].key_len <= c[i].key_len)
                continue;
            const char *kj = keys + c[j].key_off;
            if (memcmp(kj + c[j].key_len - c[i].key_len, ki, c[i].key_len) == 0)
                c[i].dropped = true;
        }
    }
    return RAGD_OK;
}

/* The score of every kept candidate: BM25 of the query terms over the candidate sentences,
 * plus, for a sentence with a query term, the question-type cue and the proximity of two
 * different terms; plus for all the passage-rank bonus, the length prior and the penalties
 * for questions. */
static void score_candidates(cand *c, size_t nc, const qctx *q)
{
    size_t df[QWORDS_MAX] = {0};
    size_t kept = 0;
    double total_words = 0.0;
    for (size_t i = 0; i < nc; i++) {
        if (c[i].dropped)
            continue;
        kept++;
        total_words += c[i].nwords;
        for (size_t w = 0; w < q->n; w++)
            df[w] += c[i].tf[w] > 0;
    }
    double avg = kept > 0 ? total_words / (double)kept : 1.0;
    for (size_t i = 0; i < nc; i++) {
        cand *cd = &c[i];
        if (cd->dropped)
            continue;
        double s = 0.0;
        double norm = BM25_K1 * (1.0 - BM25_B + BM25_B * (double)cd->nwords / avg);
        for (size_t w = 0; w < q->n; w++) {
            if (cd->tf[w] == 0)
                continue;
            double idf = log(1.0 + ((double)kept - (double)df[w] + 0.5) / ((double)df[w] + 0.5));
            s += idf * (double)cd->tf[w] * (BM25_K1 + 1.0) / ((double)cd->tf[w] + norm);
        }
        if (cd->matched) {
            if (cd->cues > 0)
                s += cue_bonus(q->type);
            if (cd->min_gap != UINT32_MAX)
                s += PROXIMITY_BONUS / (double)cd->min_gap;
        }
        s += RANK_BONUS / (1.0 + (double)cd->passage);
        if (cd->nwords < 3)
            s -= 1.0;
        else if (cd->nwords < 5)
            s -= 0.3;
        else if (cd->nwords > 40)
            s -= fmin(1.0, 0.02 * (double)(cd->nwords - 40));
        if (cd->question)
            s -= QUESTION_PENALTY;
        if (cd->lower)
            s -= LOWER_START_PENALTY;
        cd->score = s;
    }
}

static int pick_cmp(const void *pa, const void *pb)
{
    const pick *a = pa, *b = pb;
    if (a->passage != b->passage)
        return a->passage < b->passage ? -1 : 1;
    return (a->pos > b->pos) - (a->pos < b->pos);
}

/* ---------------------------------------------------------------------------------- */

/* extractive_answer: see the header. Interpretations: params NULL, or a field of 0,
 * means the default (3 sentences, 800); max_chars counts bytes of the whole answer,
 * markers and spaces included; white space inside a sentence is folded to single spaces
 * and ill-formed UTF-8 becomes U+FFFD; when the passages hold no sentence at all (only
 * markup, headings, fragments) the answer is "" (not NULL). RAGD_EINVAL for NULL answer,
 * passages (with n > 0) or query (with query_len > 0); RAGD_ENOMEM on allocation failure
 * (*answer then NULL). */
ragd_err extractive_answer(const char *query, size_t query_len, const extract_passage *passages,
                           size_t n, const extract_params *params, char **answer)
{
    ragd_err rc = RAGD_OK;
    qctx q = {0};
    cand_list cl = {0};
    size_t *order = NULL;
    pick *picks = NULL;
    size_t npicks = 0;
    strbuf tmp, out, prose, keys;
    size_t total = 0;
    for (size_t p = 0; passages != NULL && p < n; p++)
        total += passages[p].len;
    /* prose_extract writes at most the input plus 2 bytes per paragraph break (one per
     * input line at most), then "\n\n" per passage: 3x the input bounds it. */
    strbuf_init(&prose, 3 * total + 2 * n + 16);
    strbuf_init(&keys, total + 16);
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
    if (query_len > 0) {
        rc = tokenize_words(query, query_len, on_query_token, &q);
        if (rc != RAGD_OK)
            goto out;
    }
    rc = collect_candidates(passages, n, &q, &prose, &keys, &cl);
    if (rc == RAGD_OK)
        rc = drop_repeats(cl.v, cl.n, keys.data);
    if (rc != RAGD_OK)
        goto out;
    cand *c = cl.v;
    size_t nc = cl.n;
    score_candidates(c, nc, &q);

    /* The ranking: kept candidates with a query term, best first; else the best kept
     * sentence of the best passage that has one. */
    order = malloc((nc > 0 ? nc : 1) * sizeof *order);
    picks = calloc(max_sent < nc ? max_sent : (nc > 0 ? nc : 1), sizeof *picks);
    if (order == NULL || picks == NULL) {
        rc = RAGD_ENOMEM;
        goto out;
    }
    size_t nord = 0;
    for (size_t i = 0; i < nc; i++)
        if (c[i].matched && !c[i].dropped)
            order[nord++] = i;
    if (nord > 0) {
        qsort_r(order, nord, sizeof *order, cand_rank_cmp, c);
    } else {
        size_t best = SIZE_MAX;
        for (size_t i = 0; i < nc; i++) {
            if (c[i].dropped)
                continue;
            if (best != SIZE_MAX && c[i].passage != c[best].passage)
                break;
            if (best == SIZE_MAX || c[i].score > c[best].score)
                best = i;
        }
        if (best != SIZE_MAX)
            order[nord++] = best;
    }

    /* Each pick is charged its text, its own marker and one joining space: the joined
     * answer (where some markers merge) can only be shorter. */
    size_t used = 0;
    size_t cap_picks = max_sent < nc ? max_sent : nc;
    for (size_t oi = 0; oi < nord && npicks < cap_picks; oi++) {
        const cand *cd = &c[order[oi]];
        strbuf_reset(&tmp);
        rc = clean_text(prose.data + cd->start, cd->end - cd->start, max_chars + 1, &tmp);
        if (rc != RAGD_OK)
            goto out;
        if (tmp.len == 0)
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
    free(cl.v);
    strbuf_cleanup(&prose);
    strbuf_cleanup(&keys);
    strbuf_cleanup(&tmp);
    strbuf_cleanup(&out);
    return rc;
}
