#include "rag/retrieve.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "index/vindex.h"
#include "rag/embed_builtin.h"
#include "rag/fusion.h"
#include "text/tokenize.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/strbuf.h"

struct rag_index {
    vindex_set *set;
    /* Held for reading around a lookup+search, for writing around a collection drop, so
     * a search never sees a vindex freed under it. */
    pthread_rwlock_t drop_lock;
};

rag_index *rag_index_new(void)
{
    rag_index *ri = calloc(1, sizeof *ri);
    if (!ri)
        return NULL;
    ri->set = vindex_set_new();
    if (!ri->set) {
        free(ri);
        return NULL;
    }
    pthread_rwlock_init(&ri->drop_lock, NULL);
    return ri;
}

void rag_index_free(rag_index *ri)
{
    if (!ri)
        return;
    vindex_set_free(ri->set);
    pthread_rwlock_destroy(&ri->drop_lock);
    free(ri);
}

static int rag_load_one(int64_t coll_id, int dim, int64_t chunk_id, int64_t doc_rowid, const float *vec, void *arg)
{
    rag_index *ri = ((void **)arg)[0];
    size_t *count = ((void **)arg)[1];
    vindex *ix = vindex_set_get(ri->set, coll_id, (size_t)dim, true);
    if (!ix || vindex_add(ix, chunk_id, doc_rowid, vec) != RAGD_OK) {
        log_warn("index: cannot load chunk %lld of collection %lld", (long long)chunk_id, (long long)coll_id);
        return 0;
    }
    (*count)++;
    return 0;
}

ragd_err rag_index_load(rag_index *ri, store_reader *r, size_t *count)
{
    *count = 0;
    void *ctx[2] = {ri, count};
    return store_scan_vectors(r, rag_load_one, ctx);
}

/* PREPARE creates the collection's index and reserves a row per added chunk, so that
 * COMMITTED, which runs after the data is on disk, allocates nothing and cannot leave an
 * acknowledged chunk out of the index; ABORTED gives the rows back. */
ragd_err rag_index_on_commit(const store_change *ch, void *arg)
{
    rag_index *ri = arg;
    if (ch->dropped) {
        if (ch->phase == STORE_CHANGE_COMMITTED) {
            pthread_rwlock_wrlock(&ri->drop_lock);
            vindex_set_drop(ri->set, ch->coll_id);
            pthread_rwlock_unlock(&ri->drop_lock);
        }
        return RAGD_OK;
    }
    if (ch->phase != STORE_CHANGE_COMMITTED && ch->n_chunks == 0)
        return RAGD_OK;
    ragd_err rc = RAGD_OK;
    pthread_rwlock_rdlock(&ri->drop_lock);
    vindex *ix = vindex_set_get(ri->set, ch->coll_id, (size_t)ch->dim, ch->phase != STORE_CHANGE_ABORTED);
    if (!ix) {
        if (ch->phase == STORE_CHANGE_PREPARE)
            rc = RAGD_ENOMEM;
        else if (ch->phase == STORE_CHANGE_COMMITTED)
            log_error("index: no index for collection %lld (dim %d)", (long long)ch->coll_id, ch->dim);
    } else if (ch->phase == STORE_CHANGE_PREPARE) {
        rc = vindex_reserve(ix, ch->n_chunks);
    } else if (ch->phase == STORE_CHANGE_ABORTED) {
        vindex_release(ix, ch->n_chunks);
    } else {
        for (size_t i = 0; i < ch->n_removed; i++)
            vindex_remove_doc(ix, ch->removed_docs[i]);
        for (size_t i = 0; i < ch->n_chunks; i++)
            if (vindex_add(ix, ch->chunk_ids[i], ch->chunk_doc_rowids[i], ch->vectors + i * (size_t)ch->dim) != RAGD_OK)
                log_error("index: cannot add chunk %lld", (long long)ch->chunk_ids[i]);
        vindex_release(ix, ch->n_chunks);
    }
    pthread_rwlock_unlock(&ri->drop_lock);
    return rc;
}

const char *rag_method_name(rag_method m)
{
    switch (m) {
    case RAG_VECTOR: return "vector";
    case RAG_KEYWORD: return "keyword";
    case RAG_HYBRID: break;
    }
    return "hybrid";
}

typedef struct {
    const int64_t *rowids;
    size_t n;
} rag_allowed;

static int rag_cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static bool rag_doc_allowed(int64_t doc_rowid, void *arg)
{
    const rag_allowed *al = arg;
    return bsearch(&doc_rowid, al->rowids, al->n, sizeof *al->rowids, rag_cmp_i64) != NULL;
}

/* Vector candidates: ids best first, their documents' row ids and cosine similarities. */
static ragd_err rag_vector_top(rag_index *ri, const store_collection *coll, const float *qvec, size_t depth,
                               const rag_allowed *allowed, int64_t *ids, int64_t *docs, double *sims, size_t *n)
{
    *n = 0;
    vindex_hit *hits = calloc(depth, sizeof *hits);
    if (!hits)
        return RAGD_ENOMEM;
    pthread_rwlock_rdlock(&ri->drop_lock);
    vindex *ix = vindex_set_get(ri->set, coll->id, (size_t)coll->dim, false);
    size_t got = ix ? vindex_search(ix, qvec, depth, allowed ? rag_doc_allowed : NULL, (void *)allowed, hits) : 0;
    pthread_rwlock_unlock(&ri->drop_lock);
    for (size_t i = 0; i < got; i++) {
        ids[i] = hits[i].chunk_id;
        docs[i] = hits[i].doc_rowid;
        sims[i] = hits[i].score;
    }
    *n = got;
    free(hits);
    return RAGD_OK;
}

typedef struct {
    strbuf sb;
    bool no_memory;
} rag_words;

static int rag_keep_content_word(const token *tok, void *arg)
{
    rag_words *w = arg;
    if (tokenize_is_stopword(tok->norm, tok->norm_len))
        return 0;
    ragd_err e = w->sb.len ? strbuf_append(&w->sb, " ", 1) : RAGD_OK;
    if (!e)
        e = strbuf_append(&w->sb, tok->norm, tok->norm_len);
    w->no_memory = e == RAGD_ENOMEM;
    return e ? 1 : 0; /* past the cap the words so far are enough; without memory, fail */
}

/* The query's content words (stop words dropped), for the keyword side: BM25 gains almost
 * nothing from "what", "is", "the", which match nearly every chunk and so make FTS5 score
 * nearly every chunk. Falls back to the whole text when only stop words remain. The result
 * is malloc'd; NULL when out of memory (never a silently shortened query). */
static char *rag_keyword_text(const char *text, size_t len)
{
    rag_words w = {.no_memory = false};
    strbuf_init(&w.sb, len + 1);
    ragd_err e = tokenize_words(text, len, rag_keep_content_word, &w);
    if (e || w.no_memory) {
        strbuf_cleanup(&w.sb);
        return NULL;
    }
    if (w.sb.len == 0) {
        strbuf_cleanup(&w.sb);
        return strndup(text, len);
    }
    return strbuf_detach(&w.sb, NULL);
}

/* ---------------------------------------------------------------- fusion and selection */

typedef struct {
    int64_t id;
    int64_t doc;
} rag_chunk_doc;

static int rag_chunk_doc_cmp(const void *a, const void *b)
{
    return rag_cmp_i64(&((const rag_chunk_doc *)a)->id, &((const rag_chunk_doc *)b)->id);
}

/* The ranked candidates of a query, before the choice of the final k. */
typedef struct {
    int64_t *ids;
    int64_t *docs;
    double *scores;
    double *dists;
    size_t n;
} rag_ranked;

/* Hybrid: fuses the vector list (list 0) and the keyword list (list 1) into r, best first,
 * with each candidate's document, score and distance (docs/api.md: weighted, the fused
 * score itself; rrf, divided by the best possible). r has room for n_vec + n_kw. */
static ragd_err rag_fuse(const fusion_params *fp, const int64_t *vec_ids, const int64_t *vec_docs,
                         const double *vec_sims, size_t n_vec, const store_keyword_hit *kw, size_t n_kw,
                         rag_ranked *r)
{
    ragd_err rc = RAGD_ENOMEM;
    size_t total = n_vec + n_kw;
    int64_t *kw_ids = calloc(n_kw + 1, sizeof *kw_ids);
    double *kw_scores = calloc(n_kw + 1, sizeof *kw_scores);
    fusion_item *fused = calloc(total + 1, sizeof *fused);
    rag_chunk_doc *map = calloc(total + 1, sizeof *map);
    r->n = 0;
    if (!kw_ids || !kw_scores || !fused || !map)
        goto out;
    for (size_t i = 0; i < n_kw; i++) {
        kw_ids[i] = kw[i].chunk_id;
        kw_scores[i] = kw[i].score;
    }
    const int64_t *lists[2] = {vec_ids, kw_ids};
    const double *scores[2] = {vec_sims, kw_scores};
    const size_t lens[2] = {n_vec, n_kw};
    const double weights[2] = {fp->w_vector, fp->w_keyword};
    size_t nf = fp->method == FUSION_RRF ? fusion_rrf_weighted(lists, lens, weights, 2, FUSION_RRF_K, fused, total)
                                         : fusion_weighted(lists, scores, lens, weights, 2, fused, total);
    if (nf == 0 && total > 0) /* non-empty lists always fuse to something */
        goto out;
    double best = fp->method == FUSION_RRF ? fusion_rrf_best_weighted(weights, 2, FUSION_RRF_K) : 1.0;

    /* Each fused id's document, from whichever list had it. */
    for (size_t i = 0; i < n_vec; i++)
        map[i] = (rag_chunk_doc){vec_ids[i], vec_docs[i]};
    for (size_t i = 0; i < n_kw; i++)
        map[n_vec + i] = (rag_chunk_doc){kw[i].chunk_id, kw[i].doc_rowid};
    qsort(map, total, sizeof *map, rag_chunk_doc_cmp);
    for (size_t i = 0; i < nf; i++) {
        rag_chunk_doc key = {fused[i].id, 0};
        const rag_chunk_doc *hit = bsearch(&key, map, total, sizeof *map, rag_chunk_doc_cmp);
        r->ids[i] = fused[i].id;
        r->docs[i] = hit ? hit->doc : fused[i].id; /* always found: fused ids come from the lists */
        r->scores[i] = fused[i].score / best;
        r->dists[i] = 1.0 - fused[i].score / best;
    }
    r->n = nf;
    rc = RAGD_OK;
out:
    free(kw_ids);
    free(kw_scores);
    free(fused);
    free(map);
    return rc;
}

ragd_err rag_retrieve(rag_index *ri, store_reader *r, const store_collection *coll, const rag_query *q,
                      rag_result *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    ragd_err rc = RAGD_OK;
    fusion_params defaults;
    fusion_params_default(&defaults);
    const fusion_params *fp = q->fusion ? q->fusion : &defaults;
    /* Candidates per list: the fusion depth, independent of k (but at least k), for every
     * method, so that the per-document cap has others to choose from. */
    size_t depth = fp->depth > q->k ? fp->depth : q->k;

    int64_t *allowed_ids = NULL;
    size_t n_allowed = 0;
    int64_t *vec_ids = calloc(depth, sizeof *vec_ids);
    int64_t *vec_docs = calloc(depth, sizeof *vec_docs);
    double *vec_sims = calloc(depth, sizeof *vec_sims);
    store_keyword_hit *kw = calloc(depth, sizeof *kw);
    float *qvec = calloc(EMBED_BUILTIN_DIM, sizeof *qvec);
    rag_ranked cand = {0};
    size_t *picked = NULL;
    int64_t *final_ids = NULL;
    double *final_scores = NULL, *final_dist = NULL;
    bool *found = NULL;
    size_t n_vec = 0, n_kw = 0, n_final = 0;
    if (!vec_ids || !vec_docs || !vec_sims || !kw || !qvec) {
        rc = RAGD_ENOMEM;
        goto out;
    }

    double t0 = clock_now_ms();
    const float *qv = qvec;
    if (q->method != RAG_KEYWORD && q->vector) {
        qv = q->vector; /* embedded upstream by the caller */
    } else if (q->method != RAG_KEYWORD) {
        if (coll->dim != EMBED_BUILTIN_DIM || strcmp(coll->embed_model, EMBED_BUILTIN_NAME) != 0) {
            snprintf(err, errlen, "collection '%s' was embedded with '%s' (dim %d); this server embeds with '%s'",
                     coll->name, coll->embed_model, coll->dim, EMBED_BUILTIN_NAME);
            rc = RAGD_ECONFLICT;
            goto out;
        }
        rc = embed_builtin(q->text, q->len, qvec);
        if (rc)
            goto out;
    }
    double t1 = clock_now_ms();
    out->embed_ms = t1 - t0;

    rag_allowed allowed = {0};
    if (q->filter && q->filter->n_terms > 0) {
        rc = store_filter_docs(r, coll->id, q->filter, &allowed_ids, &n_allowed);
        if (rc) {
            snprintf(err, errlen, "filter: %s", rc == RAGD_EINVAL ? "invalid key" : ragd_strerror(rc));
            goto out;
        }
        allowed.rowids = allowed_ids;
        allowed.n = n_allowed;
    }
    bool filtered = q->filter && q->filter->n_terms > 0;
    if (q->method != RAG_KEYWORD && (!filtered || n_allowed > 0)) {
        rc = rag_vector_top(ri, coll, qv, depth, filtered ? &allowed : NULL, vec_ids, vec_docs, vec_sims, &n_vec);
        if (rc)
            goto out;
    }
    if (q->method != RAG_VECTOR && (!filtered || n_allowed > 0)) {
        char *kw_text = rag_keyword_text(q->text, q->len);
        if (!kw_text) {
            rc = RAGD_ENOMEM;
            goto out;
        }
        rc = store_keyword_search(r, coll->id, kw_text, q->filter, depth, kw, &n_kw);
        free(kw_text);
        if (rc) {
            snprintf(err, errlen, "keyword search failed: %s", ragd_strerror(rc));
            goto out;
        }
    }

    /* Rank, score and distance per method (docs/api.md explains each transform), then the
     * relevance floor, then the final k with at most fp->max_per_doc chunks per document. */
    size_t cap = q->k, ncand_max = n_vec + n_kw;
    cand.ids = calloc(ncand_max + 1, sizeof *cand.ids);
    cand.docs = calloc(ncand_max + 1, sizeof *cand.docs);
    cand.scores = calloc(ncand_max + 1, sizeof *cand.scores);
    cand.dists = calloc(ncand_max + 1, sizeof *cand.dists);
    picked = calloc(cap, sizeof *picked);
    final_ids = calloc(cap, sizeof *final_ids);
    final_scores = calloc(cap, sizeof *final_scores);
    final_dist = calloc(cap, sizeof *final_dist);
    if (!cand.ids || !cand.docs || !cand.scores || !cand.dists || !picked || !final_ids || !final_scores ||
        !final_dist) {
        rc = RAGD_ENOMEM;
        goto out;
    }
    if (q->method == RAG_VECTOR) {
        for (size_t i = 0; i < n_vec; i++, cand.n++) {
            cand.ids[cand.n] = vec_ids[i];
            cand.docs[cand.n] = vec_docs[i];
            cand.scores[cand.n] = vec_sims[i];
            cand.dists[cand.n] = 1.0 - vec_sims[i];
        }
    } else if (q->method == RAG_KEYWORD) {
        for (size_t i = 0; i < n_kw; i++, cand.n++) {
            cand.ids[cand.n] = kw[i].chunk_id;
            cand.docs[cand.n] = kw[i].doc_rowid;
            cand.dists[cand.n] = 1.0 / (1.0 + (kw[i].score > 0 ? kw[i].score : 0));
            cand.scores[cand.n] = 1.0 - cand.dists[cand.n];
        }
    } else {
        rc = rag_fuse(fp, vec_ids, vec_docs, vec_sims, n_vec, kw, n_kw, &cand);
        if (rc)
            goto out;
        /* The floor is calibrated for the builtin embedder (docs/internals/retrieval.md):
         * collections embedded by a model have none. (Not q->vector: the caller may pass
         * the builtin embedding too.) */
        bool builtin = strcmp(coll->embed_model, EMBED_BUILTIN_NAME) == 0;
        if (builtin && fusion_nothing_relevant(n_kw, n_vec, n_vec ? vec_sims[0] : 0.0, fp->floor))
            cand.n = 0;
    }
    n_final = fusion_diversify(cand.docs, cand.n, fp->max_per_doc, cap, picked);
    for (size_t i = 0; i < n_final; i++) {
        final_ids[i] = cand.ids[picked[i]];
        final_scores[i] = cand.scores[picked[i]];
        final_dist[i] = cand.dists[picked[i]];
    }

    if (n_final > 0) {
        out->hits = calloc(n_final, sizeof *out->hits);
        store_hit_row *rows = calloc(n_final, sizeof *rows);
        found = calloc(n_final, sizeof *found);
        if (!out->hits || !rows || !found) {
            free(rows);
            rc = RAGD_ENOMEM;
            goto out;
        }
        rc = store_chunks_fetch(r, final_ids, n_final, rows, found);
        if (rc) {
            free(rows);
            snprintf(err, errlen, "fetching chunks failed: %s", ragd_strerror(rc));
            goto out;
        }
        for (size_t i = 0; i < n_final; i++) {
            if (!found[i])
                continue;
            rag_hit *h = &out->hits[out->n++];
            h->row = rows[i];
            h->score = final_scores[i];
            h->distance = final_dist[i];
        }
        free(rows);
    }
    out->retrieve_ms = clock_now_ms() - t1;

out:
    if (rc)
        rag_result_cleanup(out);
    free(allowed_ids);
    free(vec_ids);
    free(vec_docs);
    free(vec_sims);
    free(kw);
    free(qvec);
    free(cand.ids);
    free(cand.docs);
    free(cand.scores);
    free(cand.dists);
    free(picked);
    free(final_ids);
    free(final_scores);
    free(final_dist);
    free(found);
    return rc;
}

void rag_result_cleanup(rag_result *res)
{
    if (!res)
        return;
    for (size_t i = 0; i < res->n; i++)
        store_hit_rows_cleanup(&res->hits[i].row, 1);
    free(res->hits);
    res->hits = NULL;
    res->n = 0;
}
