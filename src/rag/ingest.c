/* Ingest: documents to the store, across a worker, the loop and the store's writer. See
 * ingest.h and docs/internals/ingest.md.
 *
 * A job's steps, and the thread each runs on:
 *   run (worker)        the collection, duplicates skipped, documents read into text
 *                       (text/extract.h), chunks; builtin → write, or
 *   embed (loop)        every chunk by the collection's upstream embedder → write; under
 *                       auto for a new collection a failure →
 *   fallback (worker)   builtin embeddings → write
 *   write (writer)      one transaction; done → on_done, or, when a concurrent first ingest
 *                       created the collection meanwhile → run once more (worker)
 * One thread at a time touches a job (inside a run, workpool_for's helpers take distinct
 * documents while the run waits for them); each hand-over goes through the worker pool,
 * the loop queue or the store's writer, so no step runs inside the call of another. */
#include "rag/ingest.h"

#include <malloc.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "guard/guard.h"
#include "index/kindex.h"
#include "obs/metrics.h"
#include "rag/embed_builtin.h"
#include "rag/fence.h"
#include "text/chunker.h"
#include "text/doccontext.h"
#include "text/extract.h"
#include "upstream/llm.h"
#include "upstream/probe.h"
#include "util/clock.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/loopq.h"
#include "util/utf8.h"
#include "util/workpool.h"

/* One document: what was submitted (kept for a second run), what reading it gave (once:
 * a second run keeps it), then what a run derives. */
typedef struct {
    char *id;
    bool id_given;  /* the client named it (else id is the hash) */
    char *bytes;    /* as submitted, until read into text */
    size_t bytes_len;
    rag_format format;
    char *charset;  /* declared, or NULL */
    char *meta_title; /* the metadata's title, or NULL */
    size_t meta_title_len;
    char *metadata_json;
    char *source;
    char hash[STORE_HASH_HEX + 1];
    /* read from the bytes by the first run (ingest_extract) */
    bool extracted;
    char *text; /* the text that is stored and chunked */
    size_t text_len;
    char *title;
    bool markdown;  /* chunk with markdown structure */
    size_t *page_starts; /* PDF: where each page starts in text; NULL otherwise */
    size_t n_pages;
    /* derived by a run */
    bool repeated;  /* the same id stands earlier in the job */
    bool duplicate; /* known before chunking: same id, same hash */
    char **headings; /* per chunk, markdown only (else NULL) */
    int64_t *starts;
    int64_t *ends;
    int *pages;      /* per chunk, documents with pages only (else NULL) */
    int *page_ends;
    float *vectors;
    size_t n_chunks;
    /* the keyword index's analysis of the chunks (chunk ids 0..n_chunks-1), made by the
     * worker so the store's writer only copies it (store_doc.keyword_terms); NULL: the
     * writer's commit hook analyses the chunks itself */
    kindex_batch *terms;
    /* the injection screen's verdict per chunk */
    float *scores;
    const char **rules;   /* static rule names, or NULL entries */
    bool *quarantined;
    size_t n_quarantined;
    /* what went wrong preparing it (ingest_prepare_doc, on any worker): RAGD_OK, or the
     * chunker's error (chunk_failed) or RAGD_ENOMEM */
    ragd_err prep_err;
    bool chunk_failed;
    bool extract_failed;
    char *extract_why; /* why it could not be read (extract_failed), or NULL */
} ingest_doc;

struct rag_ingest {
    store_write w; /* first: the writer's done callback gets &j->w */
    rag_engine *e;
    const rag_engine_config *cfg;
    char db[STORE_NAME_MAX + 1];
    ingest_doc *docs;
    size_t n, max;
    rag_ingest_done_fn on_done;
    void *ctx;
    /* derived by a run */
    store_doc *sdocs;
    char model[STORE_MODEL_MAX + 1];
    chunk_params cp;     /* the collection's chunking, for ingest_prepare_doc */
    bool embed_builtin;  /* ingest_prepare_doc embeds too (a builtin collection) */
    int expect_dim;      /* an existing upstream collection's dimension, 0 for a new one */
    bool fallback;       /* auto and a new collection: builtin if the upstream embedder fails */
    bool new_collection; /* the collection did not exist when the run looked */
    bool retried;        /* the job runs a second time (a concurrent creation) */
    const char **texts;  /* every chunk's text, in document order, for the upstream embedder */
    size_t *lens;
    size_t n_texts;
    llm_task *task;
    double embed_started_ms; /* when the upstream embedding call began (loop thread) */
    double embed_ms;         /* how long it took; 0 when none was made */
    loopq_item item;
    char warning[RAG_INGEST_WARNING_MAX];
    char message[700];
};

bool rag_ingest_id_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > RAG_INGEST_ID_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)id[i] < 0x20 || id[i] == 0x7f)
            return false;
    return true;
}

/* ---- the job ---- */

rag_ingest *rag_ingest_new(rag_engine *e, const char *db, size_t max_docs)
{
    rag_ingest *j = calloc(1, sizeof *j);
    if (!j)
        return NULL;
    j->docs = calloc(max_docs ? max_docs : 1, sizeof *j->docs);
    if (!j->docs) {
        free(j);
        return NULL;
    }
    j->e = e;
    j->cfg = rag_engine_cfg(e);
    j->max = max_docs;
    snprintf(j->db, sizeof j->db, "%s", db);
    return j;
}

/* Frees what a run derived and zeroes it: the job can run again from its documents. */
static void ingest_reset(rag_ingest *j)
{
    for (size_t i = 0; i < j->n; i++) {
        ingest_doc *d = &j->docs[i];
        doccontext_paths_free(d->headings, d->n_chunks);
        free(d->starts);
        free(d->ends);
        free(d->pages);
        free(d->page_ends);
        d->pages = d->page_ends = NULL;
        free(d->vectors);
        free(d->scores);
        free(d->rules);
        free(d->quarantined);
        kindex_batch_free(d->terms);
        d->terms = NULL;
        d->scores = NULL;
        d->rules = NULL;
        d->quarantined = NULL;
        d->n_quarantined = 0;
        d->headings = NULL;
        d->starts = d->ends = NULL;
        d->vectors = NULL;
        d->n_chunks = 0;
        d->repeated = d->duplicate = false;
        d->prep_err = RAGD_OK;
        d->chunk_failed = false;
    }
    free(j->sdocs);
    free(j->texts);
    free(j->lens);
    j->sdocs = NULL;
    j->texts = NULL;
    j->lens = NULL;
    j->n_texts = 0;
    j->model[0] = '\0';
    j->expect_dim = 0;
    j->fallback = j->new_collection = false;
    j->warning[0] = '\0';
    j->w = (store_write){0};
}

void rag_ingest_free(rag_ingest *j)
{
    if (!j)
        return;
    ingest_reset(j);
    for (size_t i = 0; i < j->n; i++) {
        ingest_doc *d = &j->docs[i];
        free(d->id);
        free(d->bytes);
        free(d->charset);
        free(d->meta_title);
        free(d->text);
        free(d->metadata_json);
        free(d->source);
        free(d->title);
        free(d->page_starts);
        free(d->extract_why);
    }
    free(j->docs);
    free(j);
}

size_t rag_ingest_docs(const rag_ingest *j) { return j->n; }

const char *rag_ingest_doc_id(const rag_ingest *j, size_t i) { return j->docs[i].id; }

size_t rag_ingest_doc_quarantined(const rag_ingest *j, size_t i) { return j->docs[i].n_quarantined; }

rag_status rag_ingest_add(rag_ingest *j, const rag_document *in, char *why, size_t why_cap)
{
    if (j->n == j->max) {
        snprintf(why, why_cap, "more documents than the job was made for");
        return RAG_E_OVERLOADED;
    }
    ingest_doc *d = &j->docs[j->n++]; /* counted now: rag_ingest_free frees what it holds */
    d->format = in->format;
    d->source = in->source ? strdup(in->source) : NULL;
    d->charset = in->charset ? strdup(in->charset) : NULL;
    d->metadata_json = strdup(in->metadata_json ? in->metadata_json : "{}");
    hash_sha256_hex(in->text, in->len, d->hash);
    d->id_given = in->id != NULL;
    d->id = strdup(in->id ? in->id : d->hash);
    d->bytes = malloc(in->len + 1);
    if (d->bytes) {
        if (in->len)
            memcpy(d->bytes, in->text, in->len);
        d->bytes[in->len] = '\0';
    }
    d->bytes_len = in->len;
    if (in->title) {
        d->meta_title = malloc(in->title_len + 1);
        if (d->meta_title) {
            memcpy(d->meta_title, in->title, in->title_len);
            d->meta_title[in->title_len] = '\0';
        }
        d->meta_title_len = in->title_len;
    }
    if (!d->id || !d->bytes || !d->metadata_json || (in->source && !d->source) || (in->charset && !d->charset) ||
        (in->title && !d->meta_title)) {
        snprintf(why, why_cap, "out of memory");
        return RAG_E_OVERLOADED;
    }
    return RAG_OK;
}

/* ---- the end of a job ---- */

static rag_status ingest_fail(rag_ingest *j, rag_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static rag_status ingest_fail(rag_ingest *j, rag_status st, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(j->message, sizeof j->message, fmt, ap);
    va_end(ap);
    utf8_sanitize(j->message);
    return st;
}

/* Jobs between rag_ingest_run and their end, over every engine of the process. */
static atomic_size_t ingest_running;

/* A job has ended and been freed. The last one running hands the freed memory of every
 * ingest (texts, chunks, vectors: tens of MiB kept in glibc's per-thread arenas) back to
 * the system with malloc_trim(0), on the thread that ended it (a worker, the writer or the
 * loop; a few ms for hundreds of MiB, once per burst of ingests, never while another job
 * still runs and would reallocate it). */
static void ingest_job_ended(void)
{
    if (atomic_fetch_sub(&ingest_running, 1) == 1)
        malloc_trim(0);
}

/* on_done with status st (j->message says why, or the write does), then the job goes.
 * Never called inside rag_ingest_run. */
static void ingest_finish(rag_ingest *j, rag_status st)
{
    const store_write *w = &j->w;
    const char *embed_model = w->coll.embed_model[0] ? w->coll.embed_model : w->embed_model;
    rag_ingest_outcome o = {
        .status = st,
        .message = j->message,
        .write = st == RAG_E_STORE ? w : NULL,
        .db = j->db,
        .documents = j->n,
        .chunks = w->chunks_written,
        .created = w->created,
        .embedder = strcmp(embed_model, EMBED_BUILTIN_NAME) == 0 ? "builtin" : j->cfg->embedder_name,
        .embed_model = embed_model,
        .warning = j->warning,
        .embed_ms = j->embed_ms,
    };
    if (st == RAG_OK) {
        for (size_t i = 0; i < j->n; i++) {
            bool duplicate = j->sdocs[i].result == STORE_DOC_DUPLICATE;
            o.duplicates += duplicate;
            if (duplicate) /* nothing of it was written (a concurrent identical ingest) */
                j->docs[i].n_quarantined = 0;
            o.quarantined += j->docs[i].n_quarantined;
        }
        metrics_count_ingest(j->n - o.duplicates, (size_t)w->chunks_written);
        metrics_count_injection_n("chunk", j->cfg->quarantine_off ? "flagged" : "quarantined", o.quarantined);
    }
    j->on_done(&o, j, j->ctx);
    rag_ingest_free(j);
    ingest_job_ended();
}

/* What a full ingest pool is called in a refusal: the setting to raise is in the words. */
#define INGEST_QUEUE_NAME "queue of the ingest threads (RAGD_WORKER_QUEUE)"

/* The status for a queue (worker pool, store writer) that refused the job's next step. */
static rag_status ingest_refused(rag_ingest *j, ragd_err rc, const char *queue)
{
    if (rc == RAGD_ECLOSED)
        return ingest_fail(j, RAG_E_NOT_READY, "server is shutting down");
    if (rc == RAGD_ENOMEM)
        return ingest_fail(j, RAG_E_OVERLOADED, "out of memory for the %s, retry shortly", queue);
    return ingest_fail(j, RAG_E_OVERLOADED, "server busy: %s full, retry shortly", queue);
}

/* A step dropped by the worker pool at shutdown before it ran. */
static void ingest_dropped(void *arg)
{
    rag_ingest *j = arg;
    ingest_finish(j, ingest_fail(j, RAG_E_NOT_READY, "server shut down before this ingest was processed"));
}

/* ---- the run (worker) ---- */

static int ingest_cmp_id(const void *a, const void *b)
{
    const ingest_doc *x = *(ingest_doc *const *)a, *y = *(ingest_doc *const *)b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x < y ? -1 : x > y);
}

/* Marks every document whose id also stands earlier in the job (sorting pointers by id,
 * then by position). Returns false when out of memory. */
static bool ingest_mark_repeats(rag_ingest *j)
{
    ingest_doc **order = malloc((j->n ? j->n : 1) * sizeof *order);
    if (!order)
        return false;
    for (size_t i = 0; i < j->n; i++)
        order[i] = &j->docs[i];
    qsort(order, j->n, sizeof *order, ingest_cmp_id);
    for (size_t i = 1; i < j->n; i++)
        order[i]->repeated = strcmp(order[i - 1]->id, order[i]->id) == 0;
    free(order);
    return true;
}

/* The injection screen's verdict on each chunk of d (any worker): scored, and quarantined
 * at or above the chunk threshold unless quarantine is off. RAGD_ENOMEM on failure. */
static ragd_err ingest_screen(const rag_ingest *j, ingest_doc *d)
{
    size_t n = d->n_chunks ? d->n_chunks : 1;
    d->scores = calloc(n, sizeof *d->scores);
    d->rules = calloc(n, sizeof *d->rules);
    d->quarantined = calloc(n, sizeof *d->quarantined);
    if (!d->scores || !d->rules || !d->quarantined)
        return RAGD_ENOMEM;
    float threshold = rag_engine_chunk_threshold(j->cfg);
    for (size_t i = 0; i < d->n_chunks; i++) {
        guard_verdict v;
        if (guard_score(d->text + d->starts[i], (size_t)(d->ends[i] - d->starts[i]), GUARD_CHUNK, &v) != RAGD_OK)
            return RAGD_ENOMEM;
        d->scores[i] = v.score;
        d->rules[i] = v.rule;
        d->quarantined[i] = v.score >= threshold && !j->cfg->quarantine_off;
        d->n_quarantined += v.score >= threshold; /* with quarantine off: flagged, counted */
    }
    return RAGD_OK;
}

/* The extractor's kind for a format (text/extract.h keeps the same order, but the two
 * enums belong to different modules). */
static extract_kind ingest_kind(rag_format f)
{
    switch (f) {
    case RAG_FORMAT_TEXT:
        return EXTRACT_TEXT;
    case RAG_FORMAT_MARKDOWN:
        return EXTRACT_MARKDOWN;
    case RAG_FORMAT_HTML:
        return EXTRACT_HTML;
    case RAG_FORMAT_AUTO:
        return EXTRACT_AUTO;
    case RAG_FORMAT_RST:
        return EXTRACT_RST;
    case RAG_FORMAT_PDF:
        return EXTRACT_PDF;
    case RAG_FORMAT_DOCX:
        return EXTRACT_DOCX;
    case RAG_FORMAT_ODT:
        return EXTRACT_ODT;
    case RAG_FORMAT_EPUB:
        return EXTRACT_EPUB;
    }
    return EXTRACT_AUTO;
}

/* Zero-width, bidi-control and tag characters carry text a reader cannot see: they are not
 * stored (docs/internals/ingest.md). Page by page, so that the page starts stay true. */
static void ingest_strip_invisible(ingest_doc *d)
{
    if (!d->page_starts) {
        d->text_len = fence_strip_invisible(d->text, d->text_len);
        return;
    }
    size_t w = 0;
    for (size_t p = 0; p < d->n_pages; p++) {
        size_t a = d->page_starts[p];
        size_t b = p + 1 < d->n_pages ? d->page_starts[p + 1] : d->text_len;
        memmove(d->text + w, d->text + a, b - a);
        d->page_starts[p] = w;
        w += fence_strip_invisible(d->text + w, b - a);
    }
    d->text_len = w;
    d->text[w] = '\0';
}

/* Whether text[0..len) holds anything but ASCII whitespace. */
static bool ingest_has_text(const char *text, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!strchr(" \t\r\n\f\v", text[i]) || text[i] == '\0')
            return true;
    return false;
}

/* Reads a document's bytes into text and finds its title (any worker; once per job: a
 * second run keeps the result). The bytes are freed after. A document that cannot be read
 * sets d->extract_failed and d->extract_why (NULL when even that had no memory). */
static ragd_err ingest_extract(ingest_doc *d)
{
    if (d->extracted)
        return RAGD_OK;
    extract_result r;
    char why[400];
    ragd_err rc = extract_document(d->bytes, d->bytes_len, ingest_kind(d->format), d->charset, NULL, &r, why,
                                   sizeof why);
    if (rc) {
        d->extract_failed = rc != RAGD_ENOMEM;
        if (d->extract_failed)
            d->extract_why = strdup(why);
        return rc;
    }
    d->text = r.text;
    d->text_len = r.len;
    d->markdown = r.markdown;
    d->page_starts = r.page_starts;
    d->n_pages = r.n_pages;
    size_t html_title_len = r.title_len;
    free(d->bytes);
    d->bytes = NULL;
    d->extracted = true;
    ingest_strip_invisible(d);
    if (!ingest_has_text(d->text, d->text_len)) { /* every format alike: nothing to chunk or find */
        d->extract_failed = true;
        d->extract_why = strdup("no text");
        return RAGD_EINVAL;
    }
    if (html_title_len > d->text_len)
        html_title_len = 0;
    doccontext_in dc = {
        .meta_title = d->meta_title,
        .meta_title_len = d->meta_title_len,
        .html_title = html_title_len ? d->text : NULL,
        .html_title_len = html_title_len,
        .text = d->text,
        .text_len = d->text_len,
        .markdown = d->markdown,
        .source = d->source,
        .id = d->id_given ? d->id : NULL,
    };
    return doccontext_title(&dc, &d->title) == RAGD_OK ? RAGD_OK : RAGD_ENOMEM;
}

/* The 1-based page holding text[at] (the last page starting at or before it). */
static int ingest_page_of(const ingest_doc *d, int64_t at)
{
    size_t lo = 0, hi = d->n_pages; /* first page starting after at */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if ((int64_t)d->page_starts[mid] <= at)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo == 0 ? 1 : (int)lo;
}

/* Each chunk's first and last page, for a document with pages. false: no memory. */
static bool ingest_pages(ingest_doc *d, size_t n)
{
    if (!d->page_starts || d->n_pages == 0)
        return true;
    d->pages = calloc(n ? n : 1, sizeof *d->pages);
    d->page_ends = calloc(n ? n : 1, sizeof *d->page_ends);
    if (!d->pages || !d->page_ends)
        return false;
    for (size_t i = 0; i < n; i++) {
        d->pages[i] = ingest_page_of(d, d->starts[i]);
        d->page_ends[i] = ingest_page_of(d, d->ends[i] > d->starts[i] ? d->ends[i] - 1 : d->starts[i]);
    }
    return true;
}

/* Chunks one document (offsets, heading paths for markdown, pages); any worker. A chunker
 * error sets d->chunk_failed. */
static ragd_err ingest_chunk(ingest_doc *d, const chunk_params *cp)
{
    chunk_format fmt = d->markdown ? CHUNK_FORMAT_MARKDOWN : CHUNK_FORMAT_PLAIN;
    text_span *spans = NULL;
    size_t n = 0;
    ragd_err rc = chunker_split(d->text, d->text_len, fmt, cp, &spans, &n);
    if (rc) {
        d->chunk_failed = true;
        return rc;
    }
    d->starts = calloc(n ? n : 1, sizeof *d->starts);
    d->ends = calloc(n ? n : 1, sizeof *d->ends);
    bool ok = d->starts && d->ends;
    for (size_t i = 0; ok && i < n; i++) {
        d->starts[i] = (int64_t)spans[i].start;
        d->ends[i] = (int64_t)spans[i].end;
    }
    free(spans);
    if (ok && d->markdown && n > 0)
        ok = doccontext_headings(d->text, d->text_len, d->starts, n, &d->headings) == RAGD_OK;
    if (ok)
        ok = ingest_pages(d, n);
    if (!ok)
        return RAGD_ENOMEM;
    d->n_chunks = n;
    return RAGD_OK;
}

/* Embeds every chunk of d with the builtin embedder (any worker). */
static ragd_err ingest_embed_doc(ingest_doc *d)
{
    free(d->vectors);
    d->vectors = calloc((d->n_chunks ? d->n_chunks : 1) * EMBED_BUILTIN_DIM, sizeof *d->vectors);
    if (!d->vectors)
        return RAGD_ENOMEM;
    for (size_t i = 0; i < d->n_chunks; i++)
        if (embed_builtin(d->text + d->starts[i], (size_t)(d->ends[i] - d->starts[i]),
                          d->vectors + i * EMBED_BUILTIN_DIM) != RAGD_OK)
            return RAGD_ENOMEM;
    return RAGD_OK;
}

/* The keyword analysis of the document's chunks (d->terms), what the commit hook would
 * otherwise do on the store's writer thread. Best effort: on failure d->terms stays NULL
 * and the hook analyses the texts (the same result). */
/* The keyword index's fields of chunk i of d: its body, the document's title, its heading. */
static kindex_fields ingest_chunk_fields(const ingest_doc *d, size_t i)
{
    const char *title = d->title ? d->title : "";
    const char *heading = d->headings && d->headings[i] ? d->headings[i] : "";
    return (kindex_fields){.text = {d->text + d->starts[i], title, heading},
                           .len = {(size_t)(d->ends[i] - d->starts[i]), strlen(title), strlen(heading)}};
}

static void ingest_analyse_doc(ingest_doc *d)
{
    if (d->n_chunks == 0)
        return;
    kindex_batch *b = kindex_batch_new();
    ragd_err e = b ? RAGD_OK : RAGD_ENOMEM;
    for (size_t i = 0; !e && i < d->n_chunks; i++) {
        kindex_fields f = ingest_chunk_fields(d, i);
        e = kindex_batch_add(b, (int64_t)i, 1, &f); /* placeholder ids: kindex_batch_add_analysed */
    }
    if (e) {
        kindex_batch_free(b);
        b = NULL;
    }
    d->terms = b;
}

/* ingest_embed_doc and ingest_analyse_doc in one tokenisation of each chunk's body
 * (kindex_batch_add_tee feeding the builtin embedder's stream): the same vectors and
 * terms. Should the shared pass fail, both are redone apart (the result stays the same). */
static ragd_err ingest_embed_analyse_doc(ingest_doc *d)
{
    if (d->n_chunks == 0)
        return ingest_embed_doc(d);
    free(d->vectors);
    d->vectors = calloc(d->n_chunks * EMBED_BUILTIN_DIM, sizeof *d->vectors);
    kindex_batch *b = kindex_batch_new();
    embed_builtin_stream *es = embed_builtin_stream_new();
    ragd_err e = d->vectors && b && es ? RAGD_OK : RAGD_ENOMEM;
    for (size_t i = 0; !e && i < d->n_chunks; i++) {
        kindex_fields f = ingest_chunk_fields(d, i);
        e = embed_builtin_stream_begin(es, f.len[KINDEX_BODY]);
        if (!e) /* placeholder ids: kindex_batch_add_analysed */
            e = kindex_batch_add_tee(b, (int64_t)i, 1, &f, embed_builtin_stream_token, es);
        if (!e)
            e = embed_builtin_stream_end(es, d->vectors + i * EMBED_BUILTIN_DIM);
    }
    embed_builtin_stream_free(es);
    if (e) {
        kindex_batch_free(b);
        e = ingest_embed_doc(d);
        if (!e)
            ingest_analyse_doc(d);
        return e;
    }
    d->terms = b;
    return RAGD_OK;
}

/* One document's share of a run, as a workpool_for item: chunk, screen and, for a builtin
 * collection, embed. Documents are independent, so the job's workers split them. */
static void ingest_prepare_doc(void *arg, size_t i)
{
    rag_ingest *j = arg;
    ingest_doc *d = &j->docs[i];
    if (d->duplicate)
        return;
    d->prep_err = ingest_extract(d);
    if (d->prep_err == RAGD_OK)
        d->prep_err = ingest_chunk(d, &j->cp);
    if (d->prep_err == RAGD_OK)
        d->prep_err = ingest_screen(j, d);
    if (d->prep_err == RAGD_OK && j->embed_builtin)
        d->prep_err = ingest_embed_analyse_doc(d);
    else if (d->prep_err == RAGD_OK)
        ingest_analyse_doc(d);
}

/* Builtin embedding of one document not embedded yet, as a workpool_for item. */
static void ingest_embed_item(void *arg, size_t i)
{
    ingest_doc *d = &((rag_ingest *)arg)->docs[i];
    if (!d->vectors)
        d->prep_err = ingest_embed_doc(d);
}

/* The status of the first document (in job order) whose preparation failed, RAG_OK when
 * none did. */
static rag_status ingest_prepared(rag_ingest *j)
{
    for (size_t i = 0; i < j->n; i++) {
        ingest_doc *d = &j->docs[i];
        if (d->prep_err == RAGD_OK)
            continue;
        if (d->extract_failed)
            return ingest_fail(j, RAG_E_INVALID, "document '%s': %s", d->id_given || !d->source ? d->id : d->source,
                               d->extract_why ? d->extract_why : "cannot be read");
        if (d->chunk_failed)
            return ingest_fail(j, d->prep_err == RAGD_ENOMEM ? RAG_E_OVERLOADED : RAG_E_INVALID,
                               "document '%s': cannot be chunked (%s)", d->id, ragd_strerror(d->prep_err));
        return ingest_fail(j, RAG_E_OVERLOADED, "out of memory");
    }
    return RAG_OK;
}

/* Embeds every chunk not embedded yet with the builtin embedder (worker; the pool's free
 * workers help). */
static rag_status ingest_embed_builtin(rag_ingest *j)
{
    if (workpool_for(j->cfg->ingest_pool, j->n, ingest_embed_item, j) != RAGD_OK)
        return ingest_fail(j, RAG_E_OVERLOADED, "out of memory");
    rag_status st = ingest_prepared(j);
    if (st != RAG_OK)
        return st;
    snprintf(j->w.embed_model, sizeof j->w.embed_model, "%s", EMBED_BUILTIN_NAME);
    j->w.dim = EMBED_BUILTIN_DIM;
    return RAG_OK;
}

static void ingest_written(store_write *w, void *arg);

/* Hands the job to the store's writer, whose done callback ends it. After RAG_OK the job
 * belongs to the writer: the caller must not touch it. */
static rag_status ingest_write(rag_ingest *j)
{
    store_write *w = &j->w;
    j->sdocs = calloc(j->n ? j->n : 1, sizeof *j->sdocs);
    if (!j->sdocs)
        return ingest_fail(j, RAG_E_OVERLOADED, "out of memory");
    for (size_t i = 0; i < j->n; i++) {
        ingest_doc *d = &j->docs[i];
        store_doc *sd = &j->sdocs[i];
        sd->doc_id = d->id;
        memcpy(sd->content_hash, d->hash, sizeof sd->content_hash);
        sd->text = d->text;
        sd->text_len = d->text_len;
        sd->metadata_json = d->metadata_json;
        sd->source = d->source;
        sd->n_chunks = d->n_chunks;
        sd->chunk_starts = d->starts;
        sd->chunk_ends = d->ends;
        sd->vectors = d->vectors;
        sd->title = d->title;
        sd->chunk_headings = (const char *const *)d->headings;
        sd->chunk_scores = d->scores;
        sd->chunk_rules = d->rules;
        sd->chunk_quarantined = d->quarantined;
        sd->chunk_pages = d->pages;
        sd->chunk_page_ends = d->page_ends;
        sd->expect_duplicate = d->duplicate;
        sd->keyword_terms = d->terms;
    }
    w->docs = j->sdocs;
    w->n_docs = j->n;
    w->done = ingest_written;
    w->arg = j;
    ragd_err rc = store_submit(j->cfg->st, w);
    return rc == RAGD_OK ? RAG_OK : ingest_refused(j, rc, "store write queue");
}

static void ingest_embed_start(void *arg);

/* Every chunk's text for the upstream embedder, then to the loop: 1 when posted, 0 when
 * there is nothing to embed in an existing collection (all duplicates: its dimension is
 * known), -1 when out of memory. A new collection with no chunk at all (documents without
 * text) still asks the embedder once, for its dimension: the collection must record the
 * configured embedder, not the builtin one (and under auto, fall back with the warning). */
static int ingest_post_upstream(rag_ingest *j)
{
    size_t total = 0;
    for (size_t k = 0; k < j->n; k++)
        total += j->docs[k].n_chunks;
    if (total == 0 && j->expect_dim > 0)
        return 0;
    j->texts = calloc(total ? total : 1, sizeof *j->texts);
    j->lens = calloc(total ? total : 1, sizeof *j->lens);
    if (!j->texts || !j->lens)
        return -1;
    if (total == 0) { /* the probe: the collection's name, a non-empty text */
        j->texts[0] = j->db;
        j->lens[j->n_texts++] = strlen(j->db);
    }
    for (size_t k = 0; k < j->n; k++) {
        ingest_doc *d = &j->docs[k];
        for (size_t i = 0; i < d->n_chunks; i++) {
            j->texts[j->n_texts] = d->text + d->starts[i];
            j->lens[j->n_texts++] = (size_t)(d->ends[i] - d->starts[i]);
        }
    }
    loopq_post(j->cfg->lq, &j->item, ingest_embed_start, j);
    return 1;
}

/* The run up to its first hand-over. RAG_OK: the job went to the loop or the writer and
 * must not be touched; else nothing was handed over and j->message says why. */
static rag_status ingest_pipeline(rag_ingest *j)
{
    const rag_engine_config *cfg = j->cfg;
    store_write *w = &j->w;
    w->kind = STORE_W_INGEST;
    snprintf(w->collection, sizeof w->collection, "%s", j->db);
    snprintf(w->embed_model, sizeof w->embed_model, "%s", EMBED_BUILTIN_NAME);
    w->dim = EMBED_BUILTIN_DIM;
    w->chunk_size = (int)cfg->chunk_size;
    w->chunk_overlap = (int)cfg->chunk_overlap;

    store_reader *r = store_reader_acquire(cfg->st);
    if (!r)
        return ingest_fail(j, RAG_E_NOT_READY, "store is closing");
    rag_status st = RAG_OK;
    store_collection coll;
    ragd_err rc = store_collection_get(r, j->db, &coll);
    bool upstream = false;
    if (rc == RAGD_OK) {
        upstream = strcmp(coll.embed_model, EMBED_BUILTIN_NAME) != 0;
        if (upstream && !cfg->embedder) {
            st = ingest_fail(j, RAG_E_MISMATCH,
                             "collection '%s' was embedded with '%s' (dim %d); no upstream embedder is configured",
                             j->db, coll.embed_model, coll.dim);
            goto out;
        }
        if (upstream) {
            snprintf(j->model, sizeof j->model, "%s", coll.embed_model);
            j->expect_dim = coll.dim;
        }
        w->chunk_size = coll.chunk_size;
        w->chunk_overlap = coll.chunk_overlap;
    } else if (rc == RAGD_ENOTFOUND) {
        /* a new collection takes the configured embedder */
        j->new_collection = true;
        w->chunked_for_new = true; /* created meanwhile with other chunk settings: run again */
        upstream = cfg->embed_choice != RAG_EMBED_BUILTIN && cfg->embedder;
        j->fallback = cfg->embed_choice == RAG_EMBED_AUTO;
        snprintf(j->model, sizeof j->model, "%s", cfg->embed_model ? cfg->embed_model : "");
    } else {
        st = rc == RAGD_ENOMEM ? ingest_fail(j, RAG_E_OVERLOADED, "reading collection '%s': out of memory", j->db)
                               : ingest_fail(j, RAG_E_INTERNAL, "reading collection failed: %s", ragd_strerror(rc));
        goto out;
    }
    if (!ingest_mark_repeats(j)) {
        st = ingest_fail(j, RAG_E_OVERLOADED, "out of memory");
        goto out;
    }
    j->cp = (chunk_params){.chunk_size = (size_t)w->chunk_size, .overlap = (size_t)w->chunk_overlap};
    for (size_t i = 0; rc == RAGD_OK && i < j->n; i++) {
        ingest_doc *d = &j->docs[i];
        char known[STORE_HASH_HEX + 1];
        /* Skip chunking a document the store already holds unchanged, unless its id comes
         * earlier in this job too (that one would change it first). */
        d->duplicate = !d->repeated && store_document_hash(r, coll.id, d->id, known) == RAGD_OK &&
                       strcmp(known, d->hash) == 0;
    }
    store_reader_release(r);
    r = NULL;
    /* Chunk, screen and (builtin) embed the documents, split across the free workers. */
    j->embed_builtin = !upstream;
    if (workpool_for(cfg->ingest_pool, j->n, ingest_prepare_doc, j) != RAGD_OK)
        return ingest_fail(j, RAG_E_OVERLOADED, "out of memory");
    if ((st = ingest_prepared(j)) != RAG_OK)
        return st;
    int posted = upstream ? ingest_post_upstream(j) : 0;
    if (posted > 0)
        return RAG_OK; /* the job goes on from the loop */
    if (posted < 0)
        return ingest_fail(j, RAG_E_OVERLOADED, "out of memory");
    if (upstream && j->expect_dim > 0) { /* nothing new to embed in an upstream collection */
        snprintf(w->embed_model, sizeof w->embed_model, "%s", j->model);
        w->dim = j->expect_dim;
    } else if ((st = ingest_embed_builtin(j)) != RAG_OK) {
        return st;
    }
    return ingest_write(j);
out:
    store_reader_release(r);
    return st;
}

rag_status rag_ingest_run(rag_ingest *j, rag_ingest_done_fn on_done, void *ctx, char *why, size_t why_cap)
{
    j->on_done = on_done;
    j->ctx = ctx;
    atomic_fetch_add(&ingest_running, 1);
    rag_status st = ingest_pipeline(j);
    if (st == RAG_OK)
        return RAG_OK;
    snprintf(why, why_cap, "%s", j->message);
    rag_ingest_free(j);
    ingest_job_ended();
    return st;
}

/* The whole run again, on a worker, after a concurrent ingest created the collection. */
static void ingest_rerun(void *arg)
{
    rag_ingest *j = arg;
    rag_status st = ingest_pipeline(j);
    if (st != RAG_OK)
        ingest_finish(j, st);
}

/* The writer's answer (writer thread). */
static void ingest_written(store_write *w, void *arg)
{
    rag_ingest *j = arg;
    if (w->status == RAGD_ECONFLICT && !j->retried) {
        /* The collection changed between the run's look and its write: two first ingests
         * raced to create it (under auto one may have been embedded by the backend, the
         * other by builtin), or a re-embedding job swapped its model. This one runs once more
         * against the collection as it now is, as if it had come a moment later. */
        log_info("ingest into '%s': the collection changed meanwhile (%s); ingesting again", w->collection,
                 w->message);
        ingest_reset(j);
        j->retried = true;
        ragd_err rc = workpool_submit(j->cfg->ingest_pool, ingest_rerun, ingest_dropped, j);
        if (rc != RAGD_OK)
            ingest_finish(j, ingest_refused(j, rc, INGEST_QUEUE_NAME));
        return;
    }
    if (w->status == RAGD_OK) {
        ingest_finish(j, RAG_OK);
        return;
    }
    snprintf(j->message, sizeof j->message, "%s", w->message);
    ingest_finish(j, RAG_E_STORE);
}

/* ---- embedding by the upstream embedder (loop thread) ---- */

/* Builtin embeddings after all, for a new collection under auto whose backend did not
 * answer (worker). */
static void ingest_fallback_work(void *arg)
{
    rag_ingest *j = arg;
    log_info("ingest into new collection '%s': %s", j->db, j->warning);
    rag_status st = ingest_embed_builtin(j);
    if (st == RAG_OK)
        st = ingest_write(j);
    if (st != RAG_OK)
        ingest_finish(j, st);
}

/* Falls back to the builtin embedder, saying why in the outcome's warning. */
static void ingest_use_builtin(rag_ingest *j, const char *why)
{
    snprintf(j->warning, sizeof j->warning,
             "collection '%s' was created with the builtin embedder %s (RAGD_EMBEDDER=auto): %s; new collections "
             "will use the %s backend's %s once it answers",
             j->db, EMBED_BUILTIN_NAME, why, j->cfg->embedder_name, j->model);
    utf8_sanitize(j->warning);
    ragd_err rc = workpool_submit(j->cfg->ingest_pool, ingest_fallback_work, ingest_dropped, j);
    if (rc != RAGD_OK)
        ingest_finish(j, ingest_refused(j, rc, INGEST_QUEUE_NAME));
}

/* The upstream embedding failed (st, message): the builtin fallback for a new collection
 * under auto, else the job ends and nothing is stored. */
static void ingest_embed_failed(rag_ingest *j, llm_status st, const char *message, size_t dim)
{
    const char *name = j->cfg->embedder_name;
    char detail[400];
    snprintf(detail, sizeof detail, "%s", message && *message ? message : "no detail");
    utf8_sanitize(detail);
    if (j->fallback && st != LLM_OK && st != LLM_CANCELLED) {
        char why[520];
        snprintf(why, sizeof why, "the embedder %s did not answer (%s: %s)", name, llm_status_name(st), detail);
        ingest_use_builtin(j, why);
        return;
    }
    rag_status rs;
    if (st == LLM_CANCELLED)
        rs = ingest_fail(j, RAG_E_NOT_READY, "server is shutting down");
    else if (st == LLM_OVERLOADED)
        rs = ingest_fail(j, RAG_E_OVERLOADED, "embedder %s is overloaded: %s", name, detail);
    else if (st == LLM_OK)
        rs = ingest_fail(j, RAG_E_UPSTREAM, "embedder %s returned vectors of dimension %zu, the collection has %d",
                         name, dim, j->expect_dim);
    else
        rs = ingest_fail(j, RAG_E_UPSTREAM, "embedder %s %s: %s", name, llm_status_name(st), detail);
    ingest_finish(j, rs);
}

static void ingest_on_embedded(llm_status st, const float *v, size_t dim, const char *message, void *arg)
{
    rag_ingest *j = arg;
    j->task = NULL;
    j->embed_ms = clock_now_ms() - j->embed_started_ms;
    if (!(st == LLM_OK && v && dim > 0 && (j->expect_dim == 0 || dim == (size_t)j->expect_dim))) {
        ingest_embed_failed(j, st, message, dim);
        return;
    }
    bool ok = true;
    size_t at = 0;
    for (size_t k = 0; ok && k < j->n; k++) {
        ingest_doc *d = &j->docs[k];
        free(d->vectors);
        d->vectors = malloc((d->n_chunks ? d->n_chunks : 1) * dim * sizeof *d->vectors);
        ok = d->vectors != NULL;
        if (ok && d->n_chunks)
            memcpy(d->vectors, v + at * dim, d->n_chunks * dim * sizeof *v);
        at += d->n_chunks;
    }
    snprintf(j->w.embed_model, sizeof j->w.embed_model, "%s", j->model);
    j->w.dim = (int)dim;
    rag_status rs = ok ? ingest_write(j) : ingest_fail(j, RAG_E_OVERLOADED, "out of memory");
    if (rs != RAG_OK)
        ingest_finish(j, rs);
}

/* Whether a new collection under auto should try the backend: when something answered
 * there lately, or — until anything is known — when the user asked for it. */
static bool ingest_try_backend(const rag_engine_config *cfg)
{
    probe_host_info h;
    bool unknown = true;
    for (size_t i = 0; i < llm_host_count(cfg->embedder); i++) {
        llm_host_reach(cfg->embedder, i, &h);
        if (h.state == PROBE_UP)
            return true;
        unknown = unknown && h.state == PROBE_UNKNOWN;
    }
    return unknown && cfg->llm_requested;
}

static void ingest_embed_start(void *arg)
{
    rag_ingest *j = arg;
    const rag_engine_config *cfg = j->cfg;
    if (j->fallback && !ingest_try_backend(cfg)) {
        probe_host_info h;
        llm_host_reach(cfg->embedder, 0, &h);
        char why[400];
        snprintf(why, sizeof why, "nothing answers at %s%s%s%s", llm_host_url(cfg->embedder, 0),
                 h.error[0] ? " (" : "", h.error, h.error[0] ? ")" : "");
        ingest_use_builtin(j, why);
        return;
    }
    j->embed_started_ms = clock_now_ms();
    j->task = llm_embed(cfg->embedder, j->model, j->texts, j->lens, j->n_texts,
                        clock_now_ms() + cfg->embed_timeout_ms, ingest_on_embedded, j);
    if (!j->task) { /* no callback will come */
        bool stopping = cfg->stopping && atomic_load(cfg->stopping);
        ingest_embed_failed(j, stopping ? LLM_CANCELLED : LLM_UNAVAILABLE, "the call could not start", 0);
    }
}
