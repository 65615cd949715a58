#include "rag/retrieve.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <stdio.h>

#include "index/kindex.h"
#include "index/vindex.h"
#include "rag/embed_builtin.h"
#include "rag/fusion.h"
#include "rag/index_private.h"
#include "util/clock.h"
#include "util/log.h"


rag_index *rag_index_new(void)
{
    rag_index *ri = calloc(1, sizeof *ri);
    if (!ri)
        return NULL;
    ri->set = vindex_set_new();
    ri->kset = kindex_set_new();
    if (!ri->set || !ri->kset) {
        vindex_set_free(ri->set);
        kindex_set_free(ri->kset);
        free(ri);
        return NULL;
    }
    /* Writers first: a drop or a re-embedding swap runs on the store's writer thread, which a
     * steady stream of searches must not starve (every write would wait behind it). Nobody
     * takes the read side twice. */
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&ri->drop_lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    return ri;
}

void rag_index_free(rag_index *ri)
{
    if (!ri)
        return;
    vindex_set_free(ri->set);
    kindex_set_free(ri->kset);
    pthread_rwlock_destroy(&ri->drop_lock);
    free(ri);
}

/* What PREPARE made for COMMITTED / ABORTED (the change's hook_state). */
typedef struct {
    kindex *kx;
    kindex_batch *b;
} rag_prepared;

/* The number of chunks from i on that a prepared analysis covers: those of one document,
 * all carrying its doc_terms, as many as the analysis has chunks. 0 when chunk i has none or
 * the run does not match it (the chunk is then analysed here, from its texts). */
static size_t rag_keyword_run(const store_change *ch, size_t i)
{
    const void *terms = ch->texts[i].doc_terms;
    if (!terms || (i > 0 && ch->texts[i - 1].doc_terms == terms)) /* must start at its first chunk */
        return 0;
    size_t want = kindex_batch_chunks(terms), run = 0;
    while (i + run < ch->n_chunks && run < want && ch->texts[i + run].doc_terms == terms &&
           ch->chunk_doc_rowids[i + run] == ch->chunk_doc_rowids[i])
        run++;
    return run == want ? run : 0;
}

/* The keyword side of a change: a batch of the removed documents and the added chunks,
 * reserved in the collection's keyword index. NULL state when the change touches no chunk. */
static ragd_err rag_keyword_prepare(rag_index *ri, const store_change *ch)
{
    if (ch->n_chunks == 0 && ch->n_removed == 0)
        return RAGD_OK;
    rag_prepared *p = calloc(1, sizeof *p);
    ragd_err e = p ? RAGD_OK : RAGD_ENOMEM;
    if (!e) {
        p->kx = kindex_set_get(ri->kset, ch->coll_id, true);
        p->b = kindex_batch_new();
        e = p->kx && p->b ? RAGD_OK : RAGD_ENOMEM;
    }
    for (size_t i = 0; !e && i < ch->n_removed; i++)
        e = kindex_batch_remove_doc(p->b, ch->removed_docs[i]);
    for (size_t i = 0; !e && i < ch->n_chunks;) {
        const store_change_text *t = &ch->texts[i];
        size_t run = rag_keyword_run(ch, i);
        if (run) { /* the document was analysed by the ingest worker */
            e = kindex_batch_add_analysed(p->b, t->doc_terms, ch->chunk_ids + i, ch->chunk_doc_rowids[i]);
            i += run;
            continue;
        }
        kindex_fields f = {.text = {t->text, t->title, t->heading},
                           .len = {t->len, strlen(t->title), strlen(t->heading)}};
        e = kindex_batch_add(p->b, ch->chunk_ids[i], ch->chunk_doc_rowids[i], &f);
        i++;
    }
    if (!e)
        e = kindex_reserve(p->kx, p->b);
    if (e) {
        if (p) {
            kindex_batch_free(p->b);
            kindex_set_put(ri->kset, p->kx);
        }
        free(p);
        return e == RAGD_ETOOBIG ? e : RAGD_ENOMEM;
    }
    *ch->hook_state = p;
    return RAGD_OK;
}

/* COMMITTED (apply) or ABORTED (release) of what rag_keyword_prepare reserved. */
static void rag_keyword_finish(rag_index *ri, const store_change *ch)
{
    rag_prepared *p = *ch->hook_state;
    if (!p)
        return;
    if (ch->phase == STORE_CHANGE_COMMITTED)
        kindex_apply(p->kx, p->b);
    else
        kindex_release(p->kx, p->b);
    kindex_batch_free(p->b);
    kindex_set_put(ri->kset, p->kx);
    free(p);
    *ch->hook_state = NULL;
}

/* PREPARE creates the collection's index and reserves a row per added chunk, so that
 * COMMITTED, which runs after the data is on disk, allocates nothing and cannot leave an
 * acknowledged chunk out of the index; ABORTED gives the rows back. */
/* A re-embedding swap (docs/internals/reembed.md). PREPARE builds the collection's whole new
 * vector index and puts it in place of the old one already, under the drop lock, keeping the
 * old one aside: so the new index serves before anyone can read the committed swap (a client
 * that saw the new model in GET /api/dbs/{name} never meets the old index). COMMITTED frees
 * the old index; ABORTED puts it back. A query that read the collection before the swap and
 * searches in between finds an index of another dimension, hence no vector candidates, once.
 * The keyword index does not change: the texts did not. */
typedef struct {
    vindex *old; /* the index replaced at PREPARE; NULL when there was none */
} rag_swap_state;

static ragd_err rag_index_on_swap(rag_index *ri, const store_change *ch)
{
    rag_swap_state **slot = (rag_swap_state **)ch->hook_state;
    if (ch->phase == STORE_CHANGE_PREPARE) {
        rag_swap_state *sw = calloc(1, sizeof *sw);
        vindex *ix = sw ? vindex_new((size_t)ch->dim) : NULL;
        ragd_err rc = ix ? vindex_reserve(ix, ch->n_chunks) : RAGD_ENOMEM;
        if (!rc)
            rc = vindex_add_rows(ix, ch->n_chunks, ch->chunk_ids, ch->chunk_doc_rowids, ch->vectors, NULL);
        if (!rc) {
            vindex_release(ix, ch->n_chunks);
            pthread_rwlock_wrlock(&ri->drop_lock);
            sw->old = vindex_set_replace(ri->set, ch->coll_id, ix);
            pthread_rwlock_unlock(&ri->drop_lock);
            if (sw->old == ix) /* no room for it in the set: nothing changed */
                rc = RAGD_ENOMEM;
        }
        if (rc) {
            vindex_free(ix);
            free(sw);
            return rc;
        }
        *slot = sw;
        return RAGD_OK;
    }
    rag_swap_state *sw = *slot;
    *slot = NULL;
    if (!sw)
        return RAGD_OK;
    if (ch->phase == STORE_CHANGE_ABORTED) {
        pthread_rwlock_wrlock(&ri->drop_lock);
        if (sw->old)
            vindex_free(vindex_set_replace(ri->set, ch->coll_id, sw->old)); /* in place: cannot fail */
        else
            vindex_set_drop(ri->set, ch->coll_id);
        pthread_rwlock_unlock(&ri->drop_lock);
    } else {
        vindex_free(sw->old); /* nobody holds it: searches hold the drop lock around theirs */
    }
    free(sw);
    return RAGD_OK;
}

ragd_err rag_index_on_commit(const store_change *ch, void *arg)
{
    rag_index *ri = arg;
    if (ch->reembedded)
        return rag_index_on_swap(ri, ch);
    if (ch->dropped) {
        if (ch->phase == STORE_CHANGE_COMMITTED) {
            pthread_rwlock_wrlock(&ri->drop_lock);
            vindex_set_drop(ri->set, ch->coll_id);
            pthread_rwlock_unlock(&ri->drop_lock);
            kindex_set_drop(ri->kset, ch->coll_id);
        }
        return RAGD_OK;
    }
    if (ch->phase != STORE_CHANGE_PREPARE)
        rag_keyword_finish(ri, ch);
    if (ch->phase != STORE_CHANGE_COMMITTED && ch->n_chunks == 0) {
        if (ch->phase == STORE_CHANGE_PREPARE)
            return rag_keyword_prepare(ri, ch);
        return RAGD_OK;
    }
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
        if (!rc) {
            rc = rag_keyword_prepare(ri, ch);
            if (rc)
                vindex_release(ix, ch->n_chunks);
        }
    } else if (ch->phase == STORE_CHANGE_ABORTED) {
        vindex_release(ix, ch->n_chunks);
    } else {
        for (size_t i = 0; i < ch->n_removed; i++)
            vindex_remove_doc(ix, ch->removed_docs[i]);
        size_t failed = 0;
        if (vindex_add_rows(ix, ch->n_chunks, ch->chunk_ids, ch->chunk_doc_rowids, ch->vectors, &failed) != RAGD_OK)
            log_error("index: cannot add %zu of %zu chunks of collection %lld", failed, ch->n_chunks,
                      (long long)ch->coll_id);
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

/* Keyword candidates: ids best first and their BM25F scores, from the collection's
 * in-memory keyword index (an index not made yet — a collection without chunks — has
 * none). The query is analysed like the chunks (stop words dropped, stems). */
static ragd_err rag_keyword_top(rag_index *ri, const store_collection *coll, const char *text, size_t len,
                                size_t depth, const rag_allowed *allowed, kindex_hit *hits, size_t *n)
{
    *n = 0;
    kindex *kx = kindex_set_get(ri->kset, coll->id, false);
    if (!kx)
        return RAGD_OK;
    ragd_err e = kindex_search(kx, text, len, depth, allowed ? rag_doc_allowed : NULL, (void *)allowed, hits, n);
    kindex_set_put(ri->kset, kx);
    return e;
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
                         const double *vec_sims, size_t n_vec, const kindex_hit *kw, size_t n_kw,
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

/* Rounds of picking again after quarantined chunks were met (see rag_retrieve). */
#define RAG_QUARANTINE_ROUNDS 4

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
    kindex_hit *kw = calloc(depth, sizeof *kw);
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
        rc = rag_keyword_top(ri, coll, q->text, q->len, depth, filtered ? &allowed : NULL, kw, &n_kw);
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
    /* Quarantined chunks (docs/internals/fence.md) are left out unless asked for, and give
     * their places to the next candidates: they are taken out of the candidates and the
     * pick is made again — at most RAG_QUARANTINE_ROUNDS times, and only by a query that met
     * one, so every other query's result is exactly what it was. */
    for (int round = 0;; round++) {
        n_final = fusion_diversify(cand.docs, cand.n, fp->max_per_doc, cap, picked);
        for (size_t i = 0; i < n_final; i++) {
            final_ids[i] = cand.ids[picked[i]];
            final_scores[i] = cand.scores[picked[i]];
            final_dist[i] = cand.dists[picked[i]];
        }
        if (n_final == 0)
            break;
        store_hit_row *rows = calloc(n_final, sizeof *rows);
        free(found);
        found = calloc(n_final, sizeof *found);
        if (!out->hits)
            out->hits = calloc(cap, sizeof *out->hits);
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
        size_t dropped = 0;
        for (size_t i = 0; i < n_final && !q->include_quarantined; i++)
            dropped += found[i] && rows[i].quarantined;
        if (dropped > 0 && round + 1 < RAG_QUARANTINE_ROUNDS) {
            /* take them out of the candidates (order kept) and pick again */
            size_t w = 0;
            for (size_t c = 0; c < cand.n; c++) {
                bool out_now = false;
                for (size_t i = 0; i < n_final && !out_now; i++)
                    out_now = found[i] && rows[i].quarantined && cand.ids[c] == final_ids[i];
                if (out_now)
                    continue;
                cand.ids[w] = cand.ids[c];
                cand.docs[w] = cand.docs[c];
                cand.scores[w] = cand.scores[c];
                cand.dists[w] = cand.dists[c];
                w++;
            }
            cand.n = w;
            store_hit_rows_cleanup(rows, n_final);
            free(rows);
            continue;
        }
        for (size_t i = 0; i < n_final; i++) {
            if (!found[i])
                continue;
            if (rows[i].quarantined && !q->include_quarantined) {
                store_hit_rows_cleanup(&rows[i], 1);
                continue;
            }
            rag_hit *h = &out->hits[out->n++];
            h->row = rows[i];
            h->score = final_scores[i];
            h->distance = final_dist[i];
        }
        free(rows);
        break;
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
