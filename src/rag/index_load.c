/* Start-up: both in-memory indexes filled from the store (rag_index_load, retrieve.h).
 *
 * One read of every chunk (store_scan_chunks, documents in row id order). The scan and the
 * vector index run on the calling thread; the keyword analysis (tokenising, stemming, the
 * batch dictionary: ~40 % of a start-up) runs on a thread of its own, fed with copies of
 * the rows RAG_LOAD_BATCH at a time through two buffers, so the two halves overlap on two
 * cores. The analysis keeps the scan's order, which the keyword index needs (a document's
 * chunks may span batches applied one after the other). Without the thread (it cannot be
 * made) the rows are analysed on the scan's thread, as before. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "index/kindex.h"
#include "index/vindex.h"
#include "rag/index_private.h"
#include "util/clock.h"
#include "util/log.h"

/* Chunks are analysed into one keyword batch per collection, committed every
 * RAG_LOAD_BATCH chunks (the scan gives documents in row id order, so collections may
 * interleave). */
#define RAG_LOAD_BATCH 4096
#define RAG_LOAD_OPEN 16

typedef struct {
    int64_t coll_id;
    kindex *ix;
    kindex_batch *b;
} load_open;

/* The keyword side's state: the analysis thread's alone while it runs. */
typedef struct {
    rag_index *ri;
    size_t chunks;
    load_open open[RAG_LOAD_OPEN];
    size_t n_open;
} load_keywords;

/* A copied row: its strings at `at` in the buffer's arena, text then title then heading. */
typedef struct {
    int64_t coll_id, chunk_id, doc_rowid;
    size_t at, text_len, title_len, heading_len;
} load_row;

typedef struct {
    load_row *rows;
    size_t n, cap;
    char *arena;
    size_t used, arena_cap;
    bool full; /* handed to the analysis thread; the scan waits for it to come back */
} load_buf;

typedef struct {
    load_keywords kw;
    size_t vectors;
    bool threaded;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    load_buf buf[2];
    int fill; /* the buffer the scan fills */
    bool done; /* the scan has handed over its last buffer */
    ragd_err err; /* the first failure, either side (under mu when threaded) */
} load;

/* Commits an open batch and closes it. */
static ragd_err keywords_flush(load_keywords *kw, size_t i)
{
    load_open *o = &kw->open[i];
    ragd_err e = kindex_reserve(o->ix, o->b);
    if (!e)
        kindex_apply(o->ix, o->b);
    kindex_batch_free(o->b);
    kindex_set_put(kw->ri->kset, o->ix);
    kw->open[i] = kw->open[--kw->n_open];
    return e;
}

/* Analyses one chunk into its collection's open batch. */
static ragd_err keywords_add(load_keywords *kw, int64_t coll_id, int64_t chunk_id, int64_t doc_rowid,
                             const kindex_fields *f)
{
    size_t i = 0;
    while (i < kw->n_open && kw->open[i].coll_id != coll_id)
        i++;
    if (i == kw->n_open) {
        ragd_err e = kw->n_open == RAG_LOAD_OPEN ? keywords_flush(kw, 0) : RAGD_OK;
        if (e)
            return e;
        load_open *o = &kw->open[kw->n_open];
        o->coll_id = coll_id;
        o->ix = kindex_set_get(kw->ri->kset, coll_id, true);
        o->b = kindex_batch_new();
        if (!o->ix || !o->b) {
            kindex_set_put(kw->ri->kset, o->ix);
            kindex_batch_free(o->b);
            return RAGD_ENOMEM;
        }
        i = kw->n_open++;
    }
    ragd_err e = kindex_batch_add(kw->open[i].b, chunk_id, doc_rowid, f);
    if (e)
        return e;
    kw->chunks++;
    return kindex_batch_chunks(kw->open[i].b) >= RAG_LOAD_BATCH ? keywords_flush(kw, i) : RAGD_OK;
}

/* Commits every open batch, or, after a failure, gives them back unapplied. */
static ragd_err keywords_finish(load_keywords *kw, ragd_err e)
{
    while (kw->n_open > 0) {
        if (e) {
            kindex_batch_free(kw->open[kw->n_open - 1].b);
            kindex_set_put(kw->ri->kset, kw->open[kw->n_open - 1].ix);
            kw->n_open--;
        } else {
            e = keywords_flush(kw, kw->n_open - 1);
        }
    }
    return e;
}

static ragd_err keywords_add_buf(load_keywords *kw, const load_buf *b)
{
    for (size_t i = 0; i < b->n; i++) {
        const load_row *r = &b->rows[i];
        const char *p = b->arena + r->at;
        kindex_fields f = {.text = {p, p + r->text_len, p + r->text_len + r->title_len},
                           .len = {r->text_len, r->title_len, r->heading_len}};
        ragd_err e = keywords_add(kw, r->coll_id, r->chunk_id, r->doc_rowid, &f);
        if (e)
            return e;
    }
    return RAGD_OK;
}

/* ---- the analysis thread ---- */

static void *analysis_main(void *arg)
{
    load *ld = arg;
    for (int at = 0;; at ^= 1) {
        pthread_mutex_lock(&ld->mu);
        while (!ld->buf[at].full && !ld->done)
            pthread_cond_wait(&ld->cv, &ld->mu);
        bool have = ld->buf[at].full;
        bool failed = ld->err != RAGD_OK;
        pthread_mutex_unlock(&ld->mu);
        if (!have)
            return NULL; /* done, and nothing left */
        ragd_err e = failed ? RAGD_OK : keywords_add_buf(&ld->kw, &ld->buf[at]);
        pthread_mutex_lock(&ld->mu);
        if (e && !ld->err)
            ld->err = e;
        ld->buf[at].full = false;
        pthread_cond_broadcast(&ld->cv);
        pthread_mutex_unlock(&ld->mu);
    }
}

/* Hands the buffer being filled to the analysis thread and waits for the other one to be
 * free. Returns the first failure so far. */
static ragd_err load_hand_over(load *ld)
{
    pthread_mutex_lock(&ld->mu);
    ld->buf[ld->fill].full = true;
    pthread_cond_broadcast(&ld->cv);
    ld->fill ^= 1;
    while (ld->buf[ld->fill].full)
        pthread_cond_wait(&ld->cv, &ld->mu);
    ragd_err e = ld->err;
    pthread_mutex_unlock(&ld->mu);
    load_buf *b = &ld->buf[ld->fill];
    b->n = 0;
    b->used = 0;
    return e;
}

/* Copies a row into the buffer being filled. */
static ragd_err load_copy(load_buf *b, const store_chunk_row *row)
{
    size_t need = row->text_len + row->title_len + row->heading_len;
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : RAG_LOAD_BATCH;
        load_row *rows = realloc(b->rows, cap * sizeof *rows);
        if (!rows)
            return RAGD_ENOMEM;
        b->rows = rows;
        b->cap = cap;
    }
    if (need > b->arena_cap - b->used) {
        size_t cap = b->arena_cap ? b->arena_cap : (size_t)1 << 20;
        while (need > cap - b->used)
            cap *= 2;
        char *arena = realloc(b->arena, cap);
        if (!arena)
            return RAGD_ENOMEM;
        b->arena = arena;
        b->arena_cap = cap;
    }
    load_row *r = &b->rows[b->n++];
    *r = (load_row){.coll_id = row->coll_id, .chunk_id = row->chunk_id, .doc_rowid = row->doc_rowid,
                    .at = b->used, .text_len = row->text_len, .title_len = row->title_len,
                    .heading_len = row->heading_len};
    memcpy(b->arena + b->used, row->text, row->text_len);
    memcpy(b->arena + b->used + row->text_len, row->title, row->title_len);
    memcpy(b->arena + b->used + row->text_len + row->title_len, row->heading, row->heading_len);
    b->used += need;
    return RAGD_OK;
}

/* ---- the scan (the calling thread) ---- */

static int load_one(const store_chunk_row *row, void *arg)
{
    load *ld = arg;
    rag_index *ri = ld->kw.ri;
    if (row->vec) {
        vindex *ix = vindex_set_get(ri->set, row->coll_id, (size_t)row->dim, true);
        if (!ix || vindex_add(ix, row->chunk_id, row->doc_rowid, row->vec) != RAGD_OK)
            log_warn("index: cannot load the vector of chunk %lld of collection %lld", (long long)row->chunk_id,
                     (long long)row->coll_id);
        else
            ld->vectors++;
    }
    ragd_err e;
    if (ld->threaded) {
        load_buf *b = &ld->buf[ld->fill];
        e = load_copy(b, row);
        if (!e && b->n == RAG_LOAD_BATCH)
            e = load_hand_over(ld);
    } else {
        kindex_fields f = {.text = {row->text, row->title, row->heading},
                           .len = {row->text_len, row->title_len, row->heading_len}};
        e = keywords_add(&ld->kw, row->coll_id, row->chunk_id, row->doc_rowid, &f);
    }
    if (e) {
        if (ld->threaded)
            pthread_mutex_lock(&ld->mu);
        if (!ld->err)
            ld->err = e;
        if (ld->threaded)
            pthread_mutex_unlock(&ld->mu);
        return 1;
    }
    return 0;
}

/* Fills both indexes from the store. The keyword index must hold every chunk (a missing
 * one would be wrong for good: nothing adds it later), so running out of memory here fails
 * the start-up; a vector that cannot be loaded is logged, as before. */
ragd_err rag_index_load(rag_index *ri, store_reader *r, size_t *count)
{
    load ld = {.kw = {.ri = ri}};
    double t0 = clock_now_ms();
    pthread_mutex_init(&ld.mu, NULL);
    pthread_cond_init(&ld.cv, NULL);
    ld.threaded = pthread_create(&ld.thread, NULL, analysis_main, &ld) == 0;
    if (ld.threaded)
        (void)pthread_setname_np(ld.thread, "ragd-idx-load");
    ragd_err e = store_scan_chunks(r, load_one, &ld);
    if (ld.threaded) {
        pthread_mutex_lock(&ld.mu);
        if (ld.buf[ld.fill].n > 0 && !ld.err)
            ld.buf[ld.fill].full = true;
        ld.done = true;
        pthread_cond_broadcast(&ld.cv);
        pthread_mutex_unlock(&ld.mu);
        pthread_join(ld.thread, NULL);
    }
    if (!e)
        e = ld.err;
    e = keywords_finish(&ld.kw, e);
    for (int i = 0; i < 2; i++) {
        free(ld.buf[i].rows);
        free(ld.buf[i].arena);
    }
    pthread_cond_destroy(&ld.cv);
    pthread_mutex_destroy(&ld.mu);
    *count = ld.vectors;
    if (!e)
        log_info("index: %zu chunks in the keyword index in %.1f ms", ld.kw.chunks, clock_now_ms() - t0);
    return e;
}
