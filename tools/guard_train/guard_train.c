/* guard_train: trains and measures the prompt-injection screen's classifier
 * (docs/internals/guard.md, BENCHMARKS.md "Prompt-injection screen").
 *
 *   guard_train train --data DIR --docs FILE --out FILE [--seed N]
 *       two logistic regressions (AdaGrad) on the train split minus a validation part: the
 *       query model on question-like rows, the chunk model on passage-like rows (and, by
 *       default, the questions too); thresholds at 1 % (queries, query model) / 0.5 % and
 *       0.1 % (chunks, chunk model) false positives on the validation part; writes both
 *       models as C source (src/guard/guard_model.c).
 *   guard_train cv --data DIR --docs FILE [--seed N]
 *       leave-one-source-out on the train split only (for choosing design options).
 *   guard_train eval --data DIR --docs FILE [--seed N]
 *       the measurements of BENCHMARKS.md, as Markdown, with the embedded model (and, for the
 *       held-out-source rows, models trained here without that source).
 *
 * Links libragd: the normaliser, windows, features and rules are the server's own. */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "guard/guard.h"
#include "guard/guard_int.h"

/* Defaults, chosen with the cv command (train split only; docs/internals/guard.md);
 * GUARD_EPOCHS, GUARD_LR, GUARD_HN_WEIGHT and GUARD_QUERY_LINES override them for such runs. */
static int tr_epochs = 2;
static double tr_lr = 0.3;
static bool tr_query_lines; /* GUARD_QUERY_LINES: line windows for queries too */
static double tr_hn_weight = 3.0; /* GUARD_HN_WEIGHT */
static double tr_trigger_weight = 1.0; /* GUARD_TRIGGER_WEIGHT: benign doc chunks with a trigger word */
static int tr_avg = 5; /* GUARD_AVG: models averaged (shuffle seeds seed..seed+n-1) */
static double tr_doc_weight = 0.3; /* GUARD_DOC_WEIGHT: every doc chunk (after the per-kind weight) */
/* GUARD_CHUNK_SET: what the chunk model trains on besides the passage rows: "questions" (the
 * default: every question-like row but the ordinary questions), "all" (them too) or
 * "chunk" (nothing else). */
static bool tr_chunk_all = true;
static bool tr_chunk_ordinary;
static double tr_plain_weight = 8.0; /* GUARD_PLAIN_WEIGHT: plain questions, in the query model */
static bool tr_training_query;       /* set while the query model trains */
static int tr_query_epochs = 2;      /* GUARD_QUERY_EPOCHS: epochs of the query model */
static bool tr_lang_groups = true;   /* GUARD_LANG_GROUPS=0: the query model weighs by kind alone, not (kind, English or not) */
#define TRAIN_VAL_PERCENT 20
#define TRAIN_MAX_WINDOWS 256 /* windows of one text the trainer looks at (texts are <= 8,000 chars) */

static const char *const train_files[] = {"bipia.jsonl",          "piguard_notinject.jsonl",  "purplellama.jsonl",
                                          "garak.jsonl",          "jailbreak_llms.jsonl",     "ragd_hard_negatives.jsonl",
                                          "ragd_questions.jsonl", "ragd_bench_questions.jsonl"};

typedef struct {
    char *text;
    char *norm;
    size_t nlen;
    size_t len;
    bool attack;
    bool test; /* split: test, or heldout */
    bool heldout; /* split: heldout (doc chunks of packages not trained on): measurement only */
    bool trigger; /* benign doc chunk using a trigger word ("ignore", "override", ...) */
    bool val;  /* train split, held out for the thresholds */
    bool query; /* a query-level kind */
    bool chunk; /* a chunk-level kind */
    char kind[32];
    char source[64];
    char lang[8]; /* "en", ...; "" when the row does not say */
    double weight;
} row;

typedef struct {
    row *v;
    size_t n;
    size_t cap;
} rows;

typedef struct {
    float *w;
    float bias;
} model;

/* The two models of the screen: q scores query rows, c chunk rows (as guard_score does). */
typedef struct {
    model q;
    model c;
} model_pair;

/* ------------------------------------------------------------------ data */

static uint32_t tr_fnv(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static bool tr_kind_is(const row *r, const char *k) { return strcmp(r->kind, k) == 0; }

/* The hash that puts a train row into the validation part. BIPIA's composites put each of
 * its instructions into 4 e-mails, on a line of its own: they are grouped by their shortest
 * line (the instruction), so that validation never holds an instruction seen in training. */
static uint32_t tr_val_hash(const row *r)
{
    if (strcmp(r->kind, "indirect") != 0 || strcmp(r->source, "microsoft/BIPIA") != 0)
        return tr_fnv(r->text);
    const char *best = r->text;
    size_t best_len = r->len;
    for (const char *p = r->text; *p;) {
        const char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        if (l >= 10 && l < best_len) {
            best = p;
            best_len = l;
        }
        p = nl ? nl + 1 : p + l;
    }
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < best_len; i++)
        h = (h ^ (unsigned char)best[i]) * 16777619u;
    return h;
}

/* Words of injections that documentation uses innocently ("git learned to ignore case",
 * "override this behaviour", "bypass the cache"): benign doc chunks with one of them are
 * the hard negatives of the chunk screen. norm is L0 text (lower case). */
static bool tr_has_trigger(const char *norm)
{
    static const char *const words[] = {"ignor", "overrid", "bypass", "forget", "disregard", "instruction",
                                        "from now on", "pretend", "reveal", "system prompt", "prompt", "you are",
                                        "you must", "new rules", "jailbreak", "previous", "above"};
    for (size_t i = 0; i < sizeof words / sizeof words[0]; i++)
        if (strstr(norm, words[i]))
            return true;
    return false;
}

static int tr_load(rows *rs, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f) {
        fprintf(stderr, "guard_train: cannot open %s\n", path);
        return -1;
    }
    char *line = NULL;
    size_t lcap = 0;
    ssize_t got;
    while ((got = getline(&line, &lcap, f)) > 0) {
        json_error_t jerr;
        json_t *o = json_loadb(line, (size_t)got, 0, &jerr);
        if (!o)
            continue;
        const char *text = json_string_value(json_object_get(o, "text"));
        const char *label = json_string_value(json_object_get(o, "label"));
        const char *kind = json_string_value(json_object_get(o, "kind"));
        const char *source = json_string_value(json_object_get(o, "source"));
        const char *split = json_string_value(json_object_get(o, "split"));
        if (text && label && kind && source && split && strcmp(kind, "indirect_payload") != 0) {
            if (rs->n == rs->cap) {
                rs->cap = rs->cap ? 2 * rs->cap : 1024;
                rs->v = realloc(rs->v, rs->cap * sizeof *rs->v);
                if (!rs->v)
                    abort();
            }
            row *r = &rs->v[rs->n++];
            memset(r, 0, sizeof *r);
            r->text = strdup(text);
            r->len = strlen(text);
            r->attack = strcmp(label, "attack") == 0;
            r->heldout = strcmp(split, "heldout") == 0;
            r->test = strcmp(split, "test") == 0 || r->heldout;
            snprintf(r->kind, sizeof r->kind, "%s", kind);
            snprintf(r->source, sizeof r->source, "%s", source);
            const char *lang = json_string_value(json_object_get(o, "lang"));
            snprintf(r->lang, sizeof r->lang, "%s", lang ? lang : "");
            r->val = !r->test && tr_val_hash(r) % 100 < TRAIN_VAL_PERCENT;
            r->chunk = tr_kind_is(r, "indirect") || tr_kind_is(r, "clean_context") || tr_kind_is(r, "doc_chunk");
            r->query = !r->chunk;
            r->norm = guard_normalize(r->text, r->len, &r->nlen);
            if (!r->text || !r->norm)
                abort();
            r->trigger = !r->attack && tr_kind_is(r, "doc_chunk") && tr_has_trigger(r->norm);
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
    return 0;
}

static int tr_load_all(rows *rs, const char *dir, const char *docs)
{
    char path[4096];
    for (size_t i = 0; i < sizeof train_files / sizeof train_files[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, train_files[i]);
        if (tr_load(rs, path) != 0)
            return -1;
    }
    return tr_load(rs, docs);
}

/* ------------------------------------------------------------------ model */

static double tr_margin(const model *m, const uint32_t *idx, size_t n)
{
    if (n == 0)
        return m->bias;
    double s = 0;
    for (size_t i = 0; i < n; i++)
        s += m->w[idx[i]];
    return m->bias + s / sqrt((double)n);
}

/* The model's score of a row: the max over its windows (as guard_score computes it: a
 * window without features scores 0). */
static double tr_model_score(const model *m, const row *r, uint32_t *idx)
{
    double best = -1e300;
    size_t start;
    size_t wlen;
    guard_window_iter it = {.sliding_only = r->query && !tr_query_lines};
    while (guard_window_next(r->norm, r->nlen, &it, &start, &wlen)) {
        size_t n = guard_features(r->norm + start, wlen, idx);
        if (n == 0)
            continue;
        double mg = tr_margin(m, idx, n);
        if (mg > best)
            best = mg;
    }
    return 1.0 / (1.0 + exp(-best));
}

static uint64_t tr_rng_state;
static uint64_t tr_rng(void)
{
    tr_rng_state ^= tr_rng_state << 13;
    tr_rng_state ^= tr_rng_state >> 7;
    tr_rng_state ^= tr_rng_state << 17;
    return tr_rng_state;
}

/* Sets each selected row's weight: rows of a kind weigh 1/sqrt(count of the kind's rows; for
 * the query model, in the same language group: English or not), and both labels weigh the same in total (hard
 * negatives weigh 3x before that). */
static void tr_weights(rows *rs, const bool *sel)
{
    double label_total[2] = {0, 0};
    for (size_t i = 0; i < rs->n; i++) {
        if (!sel[i])
            continue;
        size_t same = 0;
        for (size_t j = 0; j < rs->n; j++)
            if (sel[j] && strcmp(rs->v[j].kind, rs->v[i].kind) == 0 &&
                (!tr_lang_groups || !tr_training_query || (strcmp(rs->v[j].lang, "en") == 0) == (strcmp(rs->v[i].lang, "en") == 0)))
                same++;
        /* Hard negatives (trigger words used innocently) are what the screen gets wrong
         * most: they count three times; so do doc chunks with a trigger word. */
        double hard = strcmp(rs->v[i].kind, "hard_negative") == 0 ? tr_hn_weight
                      : rs->v[i].trigger                          ? tr_trigger_weight
                                                                  : 1.0;
        rs->v[i].weight = hard / sqrt((double)same) * (tr_kind_is(&rs->v[i], "doc_chunk") ? tr_doc_weight : 1.0) *
                          (tr_training_query && tr_kind_is(&rs->v[i], "plain") ? tr_plain_weight : 1.0);
        label_total[rs->v[i].attack] += rs->v[i].weight;
    }
    size_t nsel = 0;
    for (size_t i = 0; i < rs->n; i++)
        nsel += sel[i];
    for (size_t i = 0; i < rs->n; i++)
        if (sel[i] && label_total[rs->v[i].attack] > 0)
            rs->v[i].weight *= 0.5 * (double)nsel / label_total[rs->v[i].attack];
}

/* Logistic regression with AdaGrad on the selected rows. Each step updates on the row's
 * highest-scoring window (the window the score is taken from). */
static void tr_train_one(model *m, rows *rs, const bool *sel, uint64_t seed)
{
    float *g2 = calloc(GUARD_DIM, sizeof *g2);
    size_t *order = malloc(rs->n * sizeof *order);
    uint32_t *win = malloc((size_t)TRAIN_MAX_WINDOWS * GUARD_MAX_FEATURES * sizeof *win);
    size_t wn[TRAIN_MAX_WINDOWS];
    if (!g2 || !order || !win)
        abort();
    memset(m->w, 0, GUARD_DIM * sizeof *m->w);
    m->bias = 0;
    double bias_g2 = 0;
    tr_weights(rs, sel);
    size_t n = 0;
    for (size_t i = 0; i < rs->n; i++)
        if (sel[i])
            order[n++] = i;
    tr_rng_state = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int epoch = 0; epoch < tr_epochs; epoch++) {
        for (size_t i = n; i > 1; i--) {
            size_t j = tr_rng() % i;
            size_t t = order[i - 1];
            order[i - 1] = order[j];
            order[j] = t;
        }
        for (size_t oi = 0; oi < n; oi++) {
            const row *r = &rs->v[order[oi]];
            size_t start;
            size_t wlen;
            size_t best_k = 0;
            double best = -1e300;
            size_t k;
            guard_window_iter it = {.sliding_only = r->query && !tr_query_lines};
            for (k = 0; k < TRAIN_MAX_WINDOWS && guard_window_next(r->norm, r->nlen, &it, &start, &wlen); k++) {
                wn[k] = guard_features(r->norm + start, wlen, win + k * GUARD_MAX_FEATURES);
                double mg = tr_margin(m, win + k * GUARD_MAX_FEATURES, wn[k]);
                if (mg > best) {
                    best = mg;
                    best_k = k;
                }
            }
            if (k == 0)
                continue;
            double p = 1.0 / (1.0 + exp(-best));
            double g = (p - (r->attack ? 1.0 : 0.0)) * r->weight;
            const uint32_t *idx = win + best_k * GUARD_MAX_FEATURES;
            double v = wn[best_k] ? 1.0 / sqrt((double)wn[best_k]) : 0;
            for (size_t f = 0; f < wn[best_k]; f++) {
                double gi = g * v;
                g2[idx[f]] += (float)(gi * gi);
                m->w[idx[f]] -= (float)(tr_lr * gi / sqrt(g2[idx[f]] + 1e-8));
            }
            bias_g2 += g * g;
            m->bias -= (float)(tr_lr * g / sqrt(bias_g2 + 1e-8));
        }
    }
    free(win);
    free(order);
    free(g2);
}

/* The average of tr_avg models trained with the shuffle seeds seed, seed+1, ...: one linear
 * model (the mean of linear scorers is linear) with less of the shuffle order's variance. */
static void tr_train(model *m, rows *rs, const bool *sel, uint64_t seed)
{
    if (tr_avg <= 1) {
        tr_train_one(m, rs, sel, seed);
        return;
    }
    model one = {calloc(GUARD_DIM, sizeof(float)), 0};
    double *sum = calloc(GUARD_DIM, sizeof *sum);
    if (!one.w || !sum)
        abort();
    double bias = 0;
    for (int k = 0; k < tr_avg; k++) {
        tr_train_one(&one, rs, sel, seed + (uint64_t)k);
        for (size_t i = 0; i < GUARD_DIM; i++)
            sum[i] += one.w[i];
        bias += one.bias;
    }
    for (size_t i = 0; i < GUARD_DIM; i++)
        m->w[i] = (float)(sum[i] / tr_avg);
    m->bias = (float)(bias / tr_avg);
    free(sum);
    free(one.w);
}

/* Which model a row trains: the query model takes the question-like rows, the chunk model
 * the passage-like rows and, unless GUARD_CHUNK_SET=chunk, the questions too. */
static bool tr_trains_query(const row *r) { return r->query; }
static bool tr_is_ordinary_question(const row *r);
static bool tr_trains_chunk(const row *r)
{
    return r->chunk || (tr_chunk_all && (tr_chunk_ordinary || !tr_is_ordinary_question(r)));
}

/* Trains both models of p on the rows of base (each model on its own kinds). */
static void tr_train_pair(model_pair *p, rows *rs, const bool *base, uint64_t seed)
{
    bool *sel = calloc(rs->n, 1);
    if (!sel)
        abort();
    for (size_t i = 0; i < rs->n; i++)
        sel[i] = base[i] && tr_trains_query(&rs->v[i]);
    int chunk_epochs = tr_epochs;
    tr_epochs = tr_query_epochs;
    tr_training_query = true;
    tr_train(&p->q, rs, sel, seed);
    tr_training_query = false;
    tr_epochs = chunk_epochs;
    for (size_t i = 0; i < rs->n; i++)
        sel[i] = base[i] && tr_trains_chunk(&rs->v[i]);
    tr_train(&p->c, rs, sel, seed);
    free(sel);
}

static void tr_pair_alloc(model_pair *p)
{
    p->q = (model){calloc(GUARD_DIM, sizeof(float)), 0};
    p->c = (model){calloc(GUARD_DIM, sizeof(float)), 0};
    if (!p->q.w || !p->c.w)
        abort();
}

static void tr_pair_free(model_pair *p)
{
    free(p->q.w);
    free(p->c.w);
}

/* Rounds the weights to what the int16 model file holds; returns the scale. */
static float tr_quantize(model *m, int16_t *q)
{
    float maxabs = 0;
    for (size_t i = 0; i < GUARD_DIM; i++)
        if (fabsf(m->w[i]) > maxabs)
            maxabs = fabsf(m->w[i]);
    float scale = maxabs > 0 ? maxabs / 32767.0f : 1.0f;
    for (size_t i = 0; i < GUARD_DIM; i++) {
        long v = lrintf(m->w[i] / scale);
        q[i] = (int16_t)(v > 32767 ? 32767 : v < -32767 ? -32767 : v);
        m->w[i] = q[i] * scale;
    }
    return scale;
}

/* ------------------------------------------------------------------ measuring */

static int tr_cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a;
    double y = *(const double *)b;
    return (x < y) - (x > y);
}

/* The lowest threshold t (score >= t flags) that flags at most fpr of the benign scores. */
static double tr_threshold_at(const double *ben, size_t nb, double fpr)
{
    if (nb == 0)
        return 0.5;
    double *s = malloc(nb * sizeof *s);
    if (!s)
        abort();
    memcpy(s, ben, nb * sizeof *s);
    qsort(s, nb, sizeof *s, tr_cmp_desc);
    size_t k = (size_t)floor(fpr * (double)nb);
    /* Flags the scores strictly above s[k]: at most k of them. Above 1.0 when rules alone
     * would exceed the rate: then nothing is flagged. */
    double t = k < nb ? nextafter(s[k], 2.0) : 0.0;
    free(s);
    return t;
}

static double tr_rate(const double *s, size_t n, double t)
{
    size_t hit = 0;
    for (size_t i = 0; i < n; i++)
        hit += s[i] >= t;
    return n ? (double)hit / (double)n : 0;
}

typedef struct {
    double *v;
    size_t n;
} scores;

static void sc_push(scores *s, double x)
{
    if ((s->n & (s->n - 1)) == 0) {
        s->v = realloc(s->v, (s->n ? 2 * s->n : 1) * sizeof *s->v);
        if (!s->v)
            abort();
    }
    s->v[s->n++] = x;
}

/* "TPR at the threshold that gives <= fpr on these benign scores", with that threshold's FPR. */
static void tr_tpr_at(const scores *att, const scores *ben, double fpr, double *tpr, double *real_fpr)
{
    double t = tr_threshold_at(ben->v, ben->n, fpr);
    *tpr = tr_rate(att->v, att->n, t);
    *real_fpr = tr_rate(ben->v, ben->n, t);
}

/* Combined score with a given pair of models (rules first, then the model of the row's
 * kind, as guard_score). */
static double tr_combined(const model_pair *p, const row *r, uint32_t *idx, bool *rule_hit, double *model_only)
{
    const char *rule = NULL;
    (void)guard_rules_first(r->norm, r->nlen, &rule);
    double ms = tr_model_score(r->query ? &p->q : &p->c, r, idx);
    if (rule_hit)
        *rule_hit = rule != NULL;
    if (model_only)
        *model_only = ms;
    return rule ? 1.0 : ms;
}

/* ------------------------------------------------------------------ train command */

static void tr_write_weights(FILE *f, const char *name, const int16_t *q)
{
    fprintf(f, "static const int16_t %s[GUARD_DIM] = {\n", name);
    int col = 0;
    for (size_t i = 0; i < GUARD_DIM; i++) {
        col += fprintf(f, "%d,", q[i]);
        if (col > 100) {
            fputc('\n', f);
            col = 0;
        }
    }
    fprintf(f, "\n};\n\n");
}

/* Writes both models (quantized weights qq / qc with their scales and p's biases) and the
 * thresholds as C source. */
static int tr_write_model(const char *out, const int16_t *qq, float sq, const int16_t *qc, float sc,
                          const model_pair *p, double tq, double tc, double tquar, uint64_t seed, const char *data,
                          const char *docs)
{
    FILE *f = fopen(out, "w");
    if (!f)
        return -1;
    time_t now = time(NULL);
    char date[32];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    fprintf(f,
            "/* GENERATED by make guard-train: do not edit.\n"
            " * command: guard_train train --data %s --docs %s --seed %llu\n"
            " * data:    the train split of the data/injection files (indirect_payload left out) and\n"
            " *          the train part of the doc chunks (pydoc, man pages and /usr/share/doc of\n"
            " *          tools/guard_train/doc_chunks.py's packages, ragd docs; weight x%.2f), minus a\n"
            " *          %d %% validation part (the heldout doc chunks are never read for training)\n"
            " * models:  query: the question-like rows (direct, jailbreak, extraction attacks; plain,\n"
            " *          benign_security, hard_negative questions); chunk: %s\n"
            " * date:    %s\n"
            " * model:   logistic regression, AdaGrad, %d epochs, lr %.2f, 2^%d hashed features each;\n"
            " *          thresholds at 1 %% (query model, validation questions) / 0.5 %% and 0.1 %%\n"
            " *          (chunk model, validation passages; quarantine) false positives; %d models\n"
            " *          averaged per model. */\n"
            "#include \"guard/guard_int.h\"\n\n"
            "const float guard_model_threshold_query = %.9g;\n"
            "const float guard_model_threshold_chunk = %.9g;\n"
            "const float guard_model_threshold_quarantine = %.9g;\n\n",
            data, docs, (unsigned long long)seed, tr_doc_weight, TRAIN_VAL_PERCENT,
            !tr_chunk_all        ? "the passage-like rows (indirect, clean_context, doc_chunk)"
            : tr_chunk_ordinary ? "every row (passages and questions)"
                                : "every row but the ordinary questions",
            date, tr_epochs, tr_lr, GUARD_HASH_BITS, tr_avg, tq, tc, tquar);
    tr_write_weights(f, "query_weights", qq);
    tr_write_weights(f, "chunk_weights", qc);
    fprintf(f,
            "const guard_model guard_model_query = {query_weights, %.9gf, %.9gf};\n"
            "const guard_model guard_model_chunk = {chunk_weights, %.9gf, %.9gf};\n",
            sq, p->q.bias, sc, p->c.bias);
    return fclose(f) == 0 ? 0 : -1;
}

/* Ordinary questions: the rows of ragd_questions.jsonl and ragd_bench_questions.jsonl. */
static bool tr_is_ordinary_question(const row *r)
{
    return !r->attack && (strcmp(r->source, "ragd-questions") == 0 || strcmp(r->source, "ragd-bench-questions") == 0 ||
                          strcmp(r->source, "ragd-readme") == 0);
}

/* Validation thresholds of the pair m: query benign (query model) at 1 %, chunk benign
 * (chunk model) at 0.5 % and 0.1 %. */
static void tr_val_thresholds(const model_pair *m, rows *rs, double *tq, double *tc, double *tquar)
{
    uint32_t *idx = malloc(GUARD_MAX_FEATURES * sizeof *idx);
    scores qb = {0}, cb = {0}, qa = {0}, ca = {0};
    for (size_t i = 0; i < rs->n; i++) {
        const row *r = &rs->v[i];
        if (!r->val)
            continue;
        double s = tr_combined(m, r, idx, NULL, NULL);
        sc_push(r->attack ? (r->query ? &qa : &ca) : (r->query ? &qb : &cb), s);
    }
    *tq = tr_threshold_at(qb.v, qb.n, 0.01);
    *tc = tr_threshold_at(cb.v, cb.n, 0.005);
    *tquar = tr_threshold_at(cb.v, cb.n, 0.001);
    fprintf(stderr, "validation: chunks at 0.1 %% FPR (quarantine): threshold %.4f, TPR %.3f, FPR %.4f\n", *tquar,
            tr_rate(ca.v, ca.n, *tquar), tr_rate(cb.v, cb.n, *tquar));
    static const char *const chunk_sources[] = {"microsoft/BIPIA", "pydoc", "debian-man", "debian-doc", "ragd-docs"};
    for (size_t k = 0; k < sizeof chunk_sources / sizeof chunk_sources[0]; k++) {
        size_t n = 0, hit = 0;
        for (size_t i = 0; i < rs->n; i++) {
            const row *r = &rs->v[i];
            if (r->val && r->chunk && !r->attack && strcmp(r->source, chunk_sources[k]) == 0) {
                n++;
                hit += tr_combined(m, r, idx, NULL, NULL) >= *tc;
            }
        }
        fprintf(stderr, "            benign chunks %-16s %4zu, flagged at %.4f: %zu\n", chunk_sources[k], n, *tc, hit);
    }
    size_t ord_n = 0, ord_hit = 0;
    for (size_t i = 0; i < rs->n; i++) {
        const row *r = &rs->v[i];
        if (r->val && tr_is_ordinary_question(r)) {
            ord_n++;
            double sc = tr_combined(m, r, idx, NULL, NULL);
            ord_hit += sc >= *tq;
            if (sc >= *tq && getenv("GUARD_VERBOSE"))
                fprintf(stderr, "validation ordinary question flagged %.4f: %.120s\n", sc, r->text);
        }
    }
    fprintf(stderr, "validation: ordinary questions %zu, flagged at %.4f: %zu\n", ord_n, *tq, ord_hit);
    fprintf(stderr,
            "validation: queries %zu attack / %zu benign: threshold %.4f, TPR %.3f, FPR %.4f\n"
            "            chunks  %zu attack / %zu benign: threshold %.4f, TPR %.3f, FPR %.4f\n",
            qa.n, qb.n, *tq, tr_rate(qa.v, qa.n, *tq), tr_rate(qb.v, qb.n, *tq), ca.n, cb.n, *tc,
            tr_rate(ca.v, ca.n, *tc), tr_rate(cb.v, cb.n, *tc));
    free(qb.v);
    free(cb.v);
    free(qa.v);
    free(ca.v);
    free(idx);
}

static int tr_cmd_train(rows *rs, const char *out, uint64_t seed, const char *data, const char *docs)
{
    bool *sel = calloc(rs->n, 1);
    model_pair m;
    tr_pair_alloc(&m);
    int16_t *qq = malloc(GUARD_DIM * sizeof *qq);
    int16_t *qc = malloc(GUARD_DIM * sizeof *qc);
    if (!sel || !qq || !qc)
        abort();
    size_t n = 0;
    for (size_t i = 0; i < rs->n; i++) {
        sel[i] = !rs->v[i].test && !rs->v[i].val;
        n += sel[i];
    }
    fprintf(stderr, "training on %zu rows\n", n);
    tr_train_pair(&m, rs, sel, seed);
    float sq = tr_quantize(&m.q, qq);
    float sc = tr_quantize(&m.c, qc);
    double tq;
    double tc;
    double tquar;
    tr_val_thresholds(&m, rs, &tq, &tc, &tquar);
    int rc = tr_write_model(out, qq, sq, qc, sc, &m, tq, tc, tquar, seed, data, docs);
    if (rc != 0)
        fprintf(stderr, "guard_train: cannot write %s\n", out);
    free(qq);
    free(qc);
    tr_pair_free(&m);
    free(sel);
    return rc;
}

/* ------------------------------------------------------------------ eval command */

static double tr_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static double tr_guard(const row *r, guard_kind kind, bool *rule_hit, double *model_only)
{
    guard_verdict v;
    if (guard_score(r->text, r->len, kind, &v) != RAGD_OK)
        abort();
    if (rule_hit)
        *rule_hit = v.rule != NULL;
    if (model_only)
        *model_only = v.model_score;
    return v.score;
}

static void tr_eval_random(rows *rs)
{
    scores att = {0}, ben = {0};
    for (size_t i = 0; i < rs->n; i++) {
        const row *r = &rs->v[i];
        if (r->test && r->query)
            sc_push(r->attack ? &att : &ben, tr_guard(r, GUARD_QUERY, NULL, NULL));
    }
    double tpr1, f1, tpr01, f01;
    tr_tpr_at(&att, &ben, 0.01, &tpr1, &f1);
    tr_tpr_at(&att, &ben, 0.001, &tpr01, &f01);
    double t = guard_threshold(GUARD_QUERY);
    printf("### (a) Queries, random held-out split (split: test)\n\n"
           "%zu attacks (direct, jailbreak, extraction) vs %zu benign queries (benign_security, hard_negative, "
           "plain, ragd hard negatives, ordinary questions).\n\n"
           "| measure | TPR | FPR |\n|---|---:|---:|\n"
           "| at 1 %% FPR (threshold set on these benign rows) | %.1f %% | %.2f %% |\n"
           "| at 0.1 %% FPR (threshold set on these benign rows) | %.1f %% | %.2f %% |\n"
           "| at the shipped query threshold %.4f (chosen on validation) | %.1f %% | %.2f %% |\n\n",
           att.n, ben.n, 100 * tpr1, 100 * f1, 100 * tpr01, 100 * f01, t, 100 * tr_rate(att.v, att.n, t),
           100 * tr_rate(ben.v, ben.n, t));
    free(att.v);
    free(ben.v);
}

static void tr_eval_sources(rows *rs, uint64_t seed)
{
    static const char *const sources[] = {"meta-llama/PurpleLlama", "verazuo/jailbreak_llms", "NVIDIA/garak",
                                          "microsoft/BIPIA"};
    printf("### (b) Held-out sources (trained without the source; its attacks vs held-out benign)\n\n"
           "| held-out source | attacks | benign | TPR at 1 %% FPR | TPR at 0.1 %% FPR | TPR at 0.5 %% FPR (chunks) |\n"
           "|---|---:|---:|---:|---:|---:|\n");
    bool *sel = calloc(rs->n, 1);
    model_pair m;
    tr_pair_alloc(&m);
    uint32_t *idx = malloc(GUARD_MAX_FEATURES * sizeof *idx);
    for (size_t s = 0; s < sizeof sources / sizeof sources[0]; s++) {
        for (size_t i = 0; i < rs->n; i++)
            sel[i] = !rs->v[i].test && !rs->v[i].val && strcmp(rs->v[i].source, sources[s]) != 0;
        tr_train_pair(&m, rs, sel, seed);
        scores att = {0}, ben = {0}, cben = {0}, catt = {0};
        for (size_t i = 0; i < rs->n; i++) {
            const row *r = &rs->v[i];
            bool held = strcmp(r->source, sources[s]) == 0;
            if (r->attack && held) {
                double sc = tr_combined(&m, r, idx, NULL, NULL);
                sc_push(r->query ? &att : &catt, sc);
            } else if (!r->attack && r->test && !r->heldout) {
                sc_push(r->query ? &ben : &cben, tr_combined(&m, r, idx, NULL, NULL));
            }
        }
        double t1 = 0, t01 = 0, tc = 0, f;
        if (att.n) {
            tr_tpr_at(&att, &ben, 0.01, &t1, &f);
            tr_tpr_at(&att, &ben, 0.001, &t01, &f);
        }
        if (catt.n)
            tr_tpr_at(&catt, &cben, 0.005, &tc, &f);
        char q1[32] = "-", q01[32] = "-", c05[32] = "-";
        if (att.n) {
            snprintf(q1, sizeof q1, "%.1f %%", 100 * t1);
            snprintf(q01, sizeof q01, "%.1f %%", 100 * t01);
        }
        if (catt.n)
            snprintf(c05, sizeof c05, "%.1f %%", 100 * tc);
        printf("| %s | %zu query + %zu chunk | %zu query + %zu chunk | %s | %s | %s |\n", sources[s], att.n, catt.n,
               ben.n, cben.n, q1, q01, c05);
        free(att.v);
        free(ben.v);
        free(cben.v);
        free(catt.v);
    }
    printf("\n");
    free(idx);
    tr_pair_free(&m);
    free(sel);
}

static void tr_eval_hard_negatives(rows *rs)
{
    double t = guard_threshold(GUARD_QUERY);
    size_t n_ni = 0, fp_ni = 0, n_rg = 0, fp_rg = 0, rule_fp = 0;
    for (size_t i = 0; i < rs->n; i++) {
        const row *r = &rs->v[i];
        if (!r->test || r->attack || !tr_kind_is(r, "hard_negative"))
            continue;
        bool rule;
        bool flagged = tr_guard(r, GUARD_QUERY, &rule, NULL) >= t;
        bool ragd = strcmp(r->source, "ragd") == 0;
        n_ni += !ragd;
        n_rg += ragd;
        fp_ni += !ragd && flagged;
        fp_rg += ragd && flagged;
        rule_fp += rule;
        if (flagged)
            fprintf(stderr, "hard negative flagged: %.100s\n", r->text);
    }
    printf("### (c) False positives on hard negatives at the shipped query threshold %.4f\n\n"
           "| set | rows | flagged | FPR |\n|---|---:|---:|---:|\n"
           "| NotInject (test rows) | %zu | %zu | %.1f %% |\n"
           "| ragd hard negatives (held-out part) | %zu | %zu | %.1f %% |\n"
           "| both | %zu | %zu | %.1f %% |\n\n(%zu of them by a rule.)\n\n",
           t, n_ni, fp_ni, n_ni ? 100.0 * fp_ni / n_ni : 0, n_rg, fp_rg, n_rg ? 100.0 * fp_rg / n_rg : 0,
           n_ni + n_rg, fp_ni + fp_rg, n_ni + n_rg ? 100.0 * (fp_ni + fp_rg) / (n_ni + n_rg) : 0, rule_fp);
}

static void tr_eval_chunks(rows *rs)
{
    scores att = {0}, ben = {0}, matt = {0}, mben = {0};
    size_t rule_att = 0, rule_ben = 0;
    for (size_t i = 0; i < rs->n; i++) {
        const row *r = &rs->v[i];
        if (!r->test || r->heldout || !r->chunk)
            continue;
        bool rule;
        double mo;
        double s = tr_guard(r, GUARD_CHUNK, &rule, &mo);
        sc_push(r->attack ? &att : &ben, s);
        sc_push(r->attack ? &matt : &mben, mo);
        if (r->attack)
            rule_att += rule;
        else
            rule_ben += rule;
    }
    double tm, fm, tcmb, fcmb;
    tr_tpr_at(&matt, &mben, 0.005, &tm, &fm);
    tr_tpr_at(&att, &ben, 0.005, &tcmb, &fcmb);
    double t = guard_threshold(GUARD_CHUNK);
    double tq = guard_quarantine_threshold();
    printf("### (d) Chunks: indirect injections vs benign passages (test rows)\n\n"
           "%zu attacks (BIPIA `indirect` e-mails, PurpleLlama `indirect`) vs %zu benign chunks (BIPIA "
           "`clean_context`; pydoc, man pages and /usr/share/doc of the train packages, ragd docs).\n\n"
           "| screen | TPR | FPR |\n|---|---:|---:|\n"
           "| rules only | %.1f %% | %.2f %% |\n"
           "| model only, at 0.5 %% FPR (threshold set on these benign rows) | %.1f %% | %.2f %% |\n"
           "| combined, at 0.5 %% FPR (threshold set on these benign rows) | %.1f %% | %.2f %% |\n"
           "| combined, at the shipped chunk threshold %.4f (chosen on validation) | %.1f %% | %.2f %% |\n"
           "| combined, at the proposed quarantine threshold %.4f (0.1 %% on validation) | %.1f %% | %.2f %% |\n\n",
           att.n, ben.n, att.n ? 100.0 * rule_att / att.n : 0, ben.n ? 100.0 * rule_ben / ben.n : 0, 100 * tm,
           100 * fm, 100 * tcmb, 100 * fcmb, t, 100 * tr_rate(att.v, att.n, t), 100 * tr_rate(ben.v, ben.n, t),
           tq, 100 * tr_rate(att.v, att.n, tq), 100 * tr_rate(ben.v, ben.n, tq));
    free(att.v);
    free(ben.v);
    free(matt.v);
    free(mben.v);
}

/* Held-out documentation (split heldout: /usr/share/doc of packages not trained on) at the
 * shipped chunk threshold; the flagged chunks go to stderr. */
static void tr_eval_heldout(rows *rs)
{
    double t = guard_threshold(GUARD_CHUNK);
    double tq = guard_quarantine_threshold();
    size_t n = 0, flagged = 0, by_rule = 0, over_q = 0, over[4] = {0};
    static const double cut[4] = {0.9, 0.95, 0.98, 0.99};
    for (size_t i = 0; i < rs->n; i++) {
        const row *r = &rs->v[i];
        if (!r->heldout)
            continue;
        bool rule;
        double s = tr_guard(r, GUARD_CHUNK, &rule, NULL);
        n++;
        over_q += s >= tq;
        for (size_t k = 0; k < 4; k++)
            over[k] += s >= cut[k];
        if (s >= t) {
            flagged++;
            by_rule += rule;
            fprintf(stderr, "held-out doc flagged %.4f%s: %.160s\n", s, rule ? " (rule)" : "", r->text);
        }
    }
    printf("### (e) False quarantine on held-out documentation (never trained on)\n\n"
           "The README*, *.txt and NEWS* files of 2-200 KB in /usr/share/doc of the packages not in\n"
           "doc_chunks.py's TRAIN_PACKAGES, cut like the train chunks (machine-dependent).\n\n"
           "| threshold | chunks | flagged | rate |\n|---|---:|---:|---:|\n"
           "| shipped chunk threshold %.4f | %zu | %zu | %.2f %% |\n"
           "| proposed quarantine threshold %.4f | %zu | %zu | %.2f %% |\n",
           t, n, flagged, n ? 100.0 * flagged / n : 0, tq, n, over_q, n ? 100.0 * over_q / n : 0);
    for (size_t k = 0; k < 4; k++)
        printf("| %.2f | %zu | %zu | %.2f %% |\n", cut[k], n, over[k], n ? 100.0 * over[k] / n : 0);
    printf("\n(%zu of the flagged by a rule.)\n\n", by_rule);
}

/* Ordinary questions (the test rows of ragd_questions.jsonl and ragd_bench_questions.jsonl,
 * the README's example among them) at the shipped query threshold; the flagged ones go to
 * stderr. */
static void tr_eval_ordinary(rows *rs)
{
    double t = guard_threshold(GUARD_QUERY);
    size_t n[2] = {0, 0}, hit[2] = {0, 0};
    for (size_t i = 0; i < rs->n; i++) {
        const row *r = &rs->v[i];
        if (!r->test || !tr_is_ordinary_question(r))
            continue;
        size_t k = strcmp(r->source, "ragd-questions") == 0 ? 0 : 1;
        double s = tr_guard(r, GUARD_QUERY, NULL, NULL);
        n[k]++;
        if (s >= t) {
            hit[k]++;
            fprintf(stderr, "ordinary question flagged %.4f: %.160s\n", s, r->text);
        }
    }
    size_t nt = n[0] + n[1], ht = hit[0] + hit[1];
    printf("### (f) False positives on ordinary questions at the shipped query threshold %.4f\n\n"
           "| set | rows | flagged | FPR |\n|---|---:|---:|---:|\n"
           "| ragd_questions.jsonl (test rows) | %zu | %zu | %.2f %% |\n"
           "| bench/eval/questions.jsonl (test rows) and the README's example | %zu | %zu | %.2f %% |\n"
           "| both | %zu | %zu | %.2f %% |\n\n",
           t, n[0], hit[0], n[0] ? 100.0 * hit[0] / n[0] : 0, n[1], hit[1], n[1] ? 100.0 * hit[1] / n[1] : 0, nt, ht,
           nt ? 100.0 * ht / nt : 0);
}

static void tr_eval_rules(rows *rs)
{
    printf("### Rules: hits on attack rows and on every benign row (all splits)\n\n"
           "| rule | attack rows hit | benign rows hit |\n|---|---:|---:|\n");
    size_t nben = 0, natt = 0;
    for (size_t i = 0; i < rs->n; i++) {
        nben += !rs->v[i].attack;
        natt += rs->v[i].attack;
    }
    for (size_t k = 0; k < guard_rules_count(); k++) {
        size_t a = 0, b = 0;
        for (size_t i = 0; i < rs->n; i++) {
            const row *r = &rs->v[i];
            if (!guard_rules_match_one(k, r->norm, r->nlen))
                continue;
            if (r->attack) {
                a++;
            } else {
                b++;
                fprintf(stderr, "rule %s on benign (%s/%s): %.120s\n", guard_rules_name(k), r->source, r->kind,
                        r->norm);
            }
        }
        printf("| `%s` | %zu | %zu |\n", guard_rules_name(k), a, b);
    }
    printf("\n(%zu attack rows, %zu benign rows.)\n\n", natt, nben);
}

static void tr_eval_speed(rows *rs)
{
    size_t nq = 0, nc = 0, bytes_q = 0, bytes_c = 0;
    double tq = 0, tc = 0;
    for (int rep = 0; rep < 3; rep++) {
        for (size_t i = 0; i < rs->n; i++) {
            const row *r = &rs->v[i];
            bool q = r->query && r->len <= 300;
            bool c = strcmp(r->source, "pydoc") == 0;
            if (!q && !c)
                continue;
            double t0 = tr_now();
            (void)tr_guard(r, q ? GUARD_QUERY : GUARD_CHUNK, NULL, NULL);
            double dt = tr_now() - t0;
            if (q) {
                tq += dt;
                nq++;
                bytes_q += r->len;
            } else {
                tc += dt;
                nc++;
                bytes_c += r->len;
            }
        }
    }
    printf("### Speed (one thread, guard_score end to end: normalise, rules, windows, model)\n\n"
           "| input | calls | mean size | per call | throughput |\n|---|---:|---:|---:|---:|\n"
           "| queries (rows <= 300 bytes) | %zu | %.0f B | %.1f µs | %.1f MB/s |\n"
           "| pydoc chunks | %zu | %.0f B | %.1f µs | %.1f MB/s |\n\n",
           nq, nq ? (double)bytes_q / nq : 0, nq ? 1e6 * tq / nq : 0, tq > 0 ? bytes_q / tq / 1e6 : 0, nc,
           nc ? (double)bytes_c / nc : 0, nc ? 1e6 * tc / nc : 0, tc > 0 ? bytes_c / tc / 1e6 : 0);
}

/* Leave-one-source-out on the train split only: trained on train minus validation minus
 * source S, scored on S's train-split attacks against the validation benign rows. For
 * choosing design options without the test split. */
static int tr_cmd_cv(rows *rs, uint64_t seed)
{
    static const char *const sources[] = {"meta-llama/PurpleLlama", "verazuo/jailbreak_llms", "NVIDIA/garak",
                                          "microsoft/BIPIA"};
    bool *sel = calloc(rs->n, 1);
    model_pair m;
    tr_pair_alloc(&m);
    uint32_t *idx = malloc(GUARD_MAX_FEATURES * sizeof *idx);
    double sum = 0;
    for (size_t s = 0; s < sizeof sources / sizeof sources[0]; s++) {
        for (size_t i = 0; i < rs->n; i++)
            sel[i] = !rs->v[i].test && !rs->v[i].val && strcmp(rs->v[i].source, sources[s]) != 0;
        tr_train_pair(&m, rs, sel, seed);
        scores qa = {0}, qb = {0}, ca = {0}, cb = {0};
        for (size_t i = 0; i < rs->n; i++) {
            const row *r = &rs->v[i];
            if (r->test)
                continue;
            if (r->attack && strcmp(r->source, sources[s]) == 0)
                sc_push(r->query ? &qa : &ca, tr_combined(&m, r, idx, NULL, NULL));
            else if (!r->attack && r->val && strcmp(r->source, sources[s]) != 0)
                sc_push(r->query ? &qb : &cb, tr_combined(&m, r, idx, NULL, NULL));
        }
        double tq = 0, tc = 0, f;
        if (qa.n)
            tr_tpr_at(&qa, &qb, 0.01, &tq, &f);
        if (ca.n)
            tr_tpr_at(&ca, &cb, 0.005, &tc, &f);
        fprintf(stderr, "cv %-24s queries %4zu TPR@1%% %.3f   chunks %4zu TPR@0.5%% %.3f\n", sources[s], qa.n, tq,
                ca.n, tc);
        sum += qa.n ? tq : tc;
        free(qa.v);
        free(qb.v);
        free(ca.v);
        free(cb.v);
    }
    fprintf(stderr, "cv mean %.3f\n", sum / 4);
    free(idx);
    tr_pair_free(&m);
    free(sel);
    return 0;
}

static int tr_cmd_eval(rows *rs, uint64_t seed)
{
    tr_eval_random(rs);
    tr_eval_sources(rs, seed);
    tr_eval_hard_negatives(rs);
    tr_eval_chunks(rs);
    tr_eval_heldout(rs);
    tr_eval_ordinary(rs);
    tr_eval_rules(rs);
    tr_eval_speed(rs);
    return 0;
}

int main(int argc, char **argv)
{
    const char *data = "data/injection";
    const char *docs = NULL;
    const char *out = NULL;
    uint64_t seed = 1;
    if (argc < 2 || (strcmp(argv[1], "train") != 0 && strcmp(argv[1], "eval") != 0 && strcmp(argv[1], "cv") != 0)) {
        fprintf(stderr, "usage: guard_train train|cv|eval --data DIR --docs FILE [--out FILE] [--seed N]\n");
        return 2;
    }
    for (int i = 2; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--data") == 0)
            data = argv[i + 1];
        else if (strcmp(argv[i], "--docs") == 0)
            docs = argv[i + 1];
        else if (strcmp(argv[i], "--out") == 0)
            out = argv[i + 1];
        else if (strcmp(argv[i], "--seed") == 0)
            seed = strtoull(argv[i + 1], NULL, 10);
    }
    if (!docs || (strcmp(argv[1], "train") == 0 && !out)) {
        fprintf(stderr, "guard_train: --docs (and for train --out) are required\n");
        return 2;
    }
    if (getenv("GUARD_EPOCHS"))
        tr_epochs = atoi(getenv("GUARD_EPOCHS"));
    tr_query_lines = getenv("GUARD_QUERY_LINES") != NULL;
    if (getenv("GUARD_HN_WEIGHT"))
        tr_hn_weight = atof(getenv("GUARD_HN_WEIGHT"));
    if (getenv("GUARD_AVG"))
        tr_avg = atoi(getenv("GUARD_AVG"));
    if (getenv("GUARD_DOC_WEIGHT"))
        tr_doc_weight = atof(getenv("GUARD_DOC_WEIGHT"));
    if (getenv("GUARD_TRIGGER_WEIGHT"))
        tr_trigger_weight = atof(getenv("GUARD_TRIGGER_WEIGHT"));
    if (getenv("GUARD_LANG_GROUPS"))
        tr_lang_groups = strcmp(getenv("GUARD_LANG_GROUPS"), "0") != 0;
    if (getenv("GUARD_PLAIN_WEIGHT"))
        tr_plain_weight = atof(getenv("GUARD_PLAIN_WEIGHT"));
    if (getenv("GUARD_QUERY_EPOCHS"))
        tr_query_epochs = atoi(getenv("GUARD_QUERY_EPOCHS"));
    if (getenv("GUARD_CHUNK_SET"))
    {
        tr_chunk_all = strcmp(getenv("GUARD_CHUNK_SET"), "chunk") != 0;
        tr_chunk_ordinary = strcmp(getenv("GUARD_CHUNK_SET"), "all") == 0;
    }
    if (getenv("GUARD_LR"))
        tr_lr = atof(getenv("GUARD_LR"));
    if (guard_init() != RAGD_OK) {
        fprintf(stderr, "guard_train: guard_init failed\n");
        return 1;
    }
    rows rs = {0};
    if (tr_load_all(&rs, data, docs) != 0)
        return 1;
    int rc = strcmp(argv[1], "train") == 0  ? tr_cmd_train(&rs, out, seed, data, docs)
             : strcmp(argv[1], "cv") == 0 ? tr_cmd_cv(&rs, seed)
                                          : tr_cmd_eval(&rs, seed);
    for (size_t i = 0; i < rs.n; i++) {
        free(rs.v[i].text);
        free(rs.v[i].norm);
    }
    free(rs.v);
    guard_shutdown();
    return rc;
}
