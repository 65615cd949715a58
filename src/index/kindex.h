#ifndef RAGD_INDEX_KINDEX_H
#define RAGD_INDEX_KINDEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "text/tokenize.h"
#include "util/err.h"

/* The in-memory keyword index of one collection: an inverted index over its chunks, each
 * with three fields — the chunk's text (body), its document's title, its heading path —
 * scored with BM25F (docs/internals/kindex.md has the formula, the layout and why), top-k
 * by MaxScore dynamic pruning. No I/O: the store fills it at start-up and the writer's
 * commit hook keeps it in step.
 *
 * Words are analysed as the builtin embedder's (tokenize_words: NFKC + case folding), stop
 * words dropped, then stemmed (Snowball English, text/stem.h); index and query share the
 * analysis.
 *
 * Thread-safety: every function may be called from any thread; searches share a read
 * lock, changes (kindex_reserve, kindex_apply, kindex_release) take the write lock for as
 * long as it takes to copy a prepared batch in. */
typedef struct kindex kindex;

enum { KINDEX_BODY = 0, KINDEX_TITLE = 1, KINDEX_HEADING = 2, KINDEX_FIELDS = 3 };

/* What one chunk is indexed by. Any text may be NULL with length 0. */
typedef struct {
    const char *text[KINDEX_FIELDS];
    size_t len[KINDEX_FIELDS];
} kindex_fields;

typedef struct {
    int64_t chunk_id;
    int64_t doc_rowid;
    double score; /* BM25F, higher is better (> 0 for a hit) */
} kindex_hit;

/* Returns true when a document's chunks may be returned. */
typedef bool (*kindex_filter_fn)(int64_t doc_rowid, void *arg);

kindex *kindex_new(void); /* NULL when out of memory */
void kindex_free(kindex *ix); /* NULL ok */

/* ---- changes: built outside the lock, reserved, then applied or released ----
 *
 * A batch gathers additions (chunks, analysed when added to the batch) and removals
 * (documents by row id). kindex_reserve makes room for all of it in the index (the
 * dictionary learns the new words, every posting list, the slot arrays and the document
 * map grow) and may fail with RAGD_ENOMEM (nothing counted then); kindex_apply then makes
 * the batch visible, allocating nothing and unable to fail; kindex_release gives a
 * reservation back instead. Exactly one of apply or release follows a successful reserve.
 * Reservations of several batches stack (a write group prepares all of its writes before
 * any is applied). In apply, removals come before additions, so one batch can replace a
 * document. A batch belongs to one index and is freed with kindex_batch_free after apply
 * or release (or without either when never reserved). */
typedef struct kindex_batch kindex_batch;
kindex_batch *kindex_batch_new(void); /* NULL when out of memory */
void kindex_batch_free(kindex_batch *b); /* NULL ok */
/* Adds a chunk, analysed now. The chunks of one document must come one after another; they
 * may span batches only when those are applied one right after the other (the start-up
 * load), and a document is never added again without being removed first (the store's
 * writes guarantee this). RAGD_ENOMEM, RAGD_ETOOBIG past 2^26 chunks in a batch. */
ragd_err kindex_batch_add(kindex_batch *b, int64_t chunk_id, int64_t doc_rowid, const kindex_fields *f);
/* kindex_batch_add that also hands every token of the body field (f->text[KINDEX_BODY]),
 * in order, to body_fn(tok, body_arg): one tokenisation feeds the keyword analysis and,
 * e.g., the builtin embedder. Once body_fn returns non-zero it is not called again for
 * this chunk; the analysis goes on. On failure body_fn may have seen only part of the
 * body. body_fn NULL: exactly kindex_batch_add. */
ragd_err kindex_batch_add_tee(kindex_batch *b, int64_t chunk_id, int64_t doc_rowid, const kindex_fields *f,
                              token_fn body_fn, void *body_arg);
/* Analysis ahead of the write (issue 11: tokenising and stemming moved off the store's
 * writer thread onto the ingest workers). `src` is a batch of ONE document's chunks, made
 * with kindex_batch_add on any thread with placeholder ids (chunk ids 0..n-1, any doc row
 * id but 0) and never reserved; this adds its chunks to b under their real ids
 * (chunk_ids[0 .. kindex_batch_chunks(src))) and doc_rowid, with the same result, down to
 * the order of b's terms and items, as kindex_batch_add of each chunk's fields into b. src
 * is only read (several threads may read it; nobody may change it meanwhile). RAGD_EINVAL
 * (src reserved or with removals), RAGD_ETOOBIG, RAGD_ENOMEM: then b may hold some of src's
 * terms but none of its chunks (reserve and apply stay correct; the caller may also just
 * free b). */
ragd_err kindex_batch_add_analysed(kindex_batch *b, const kindex_batch *src, const int64_t *chunk_ids,
                                   int64_t doc_rowid);
/* Removes every chunk of a document when applied (nothing when absent). */
ragd_err kindex_batch_remove_doc(kindex_batch *b, int64_t doc_rowid);
size_t kindex_batch_chunks(const kindex_batch *b);

ragd_err kindex_reserve(kindex *ix, kindex_batch *b);
void kindex_apply(kindex *ix, kindex_batch *b);
void kindex_release(kindex *ix, kindex_batch *b);

/* ---- search ---- */

/* Top-k chunks for the free-text query, best first, ties by lower chunk id; at most
 * KINDEX_QUERY_TERMS distinct terms of the query are used (the first ones). Only
 * documents for which filter returns true count (NULL = all); the filter runs under the
 * read lock and must not change this index; consecutive chunks of one document reuse its
 * verdict. Writes at most k hits to out, their number to *n. A query without an indexed
 * word gives 0 hits. RAGD_ENOMEM when the query's scratch memory cannot be had. */
#define KINDEX_QUERY_TERMS 64
ragd_err kindex_search(kindex *ix, const char *query, size_t len, size_t k, kindex_filter_fn filter, void *arg,
                       kindex_hit *out, size_t *n);

/* ---- introspection (tests, benchmarks, /metrics later) ---- */
typedef struct {
    size_t chunks;       /* live chunks */
    size_t slots;        /* slots in use, removed chunks' included until compacted */
    size_t terms;        /* dictionary entries */
    size_t postings;     /* postings stored, dead ones included */
    size_t dead_postings;
    size_t bytes;        /* heap bytes held (capacities, not malloc overhead) */
    uint64_t field_len[KINDEX_FIELDS]; /* total length of each field over live chunks, in terms */
} kindex_stats;
void kindex_stats_get(kindex *ix, kindex_stats *out);

/* Scoring constants (BM25F): k1, b per field, and field weights; see kindex.md for how
 * the weights were measured. Exposed so tests can recompute scores independently. */
#define KINDEX_K1 1.2
#define KINDEX_B 0.75
#define KINDEX_W_BODY 1.0
#ifndef KINDEX_W_TITLE /* bench/eval_weights.sh builds bench/eval_kindex.c with others */
#define KINDEX_W_TITLE 2.0
#endif
#ifndef KINDEX_W_HEADING
#define KINDEX_W_HEADING 2.0
#endif
/* Scores are summed in fixed point: each term's contribution is truncated to a multiple
 * of 2^-24, so the sum does not depend on the order terms are added in (MaxScore visits
 * them in another order than a plain loop) and ties are exact. */
#define KINDEX_SCORE_SCALE 16777216.0
/* Lengths are kept per chunk and field (in terms, at most 65535) and quantised to a byte
 * for the length normalisation, as Lucene does with its norms: exact below 32, then four
 * significant bits. */
unsigned kindex_len_code(unsigned len);
double kindex_code_len(unsigned code);
/* The analysis of the index and the query: calls fn with every term of text[0..len) in
 * order (stop words dropped, stems). RAGD_ENOMEM. */
typedef int (*kindex_term_fn)(const char *term, size_t len, void *arg);
ragd_err kindex_analyze(const char *text, size_t len, kindex_term_fn fn, void *arg);

/* ---- the set of indexes, one per collection ----
 * Lookups share a read lock, so searches of different collections never wait for each
 * other; an index is reference-counted, so a drop frees it only once the last search that
 * holds it has released it. */
typedef struct kindex_set kindex_set;
kindex_set *kindex_set_new(void); /* NULL when out of memory */
void kindex_set_free(kindex_set *set); /* NULL ok; no index may still be held */
/* The collection's index with a reference the caller gives back with kindex_set_put;
 * created when absent and create is true (NULL: absent, or out of memory, or past 65,536
 * collections). */
kindex *kindex_set_get(kindex_set *set, int64_t collection_id, bool create);
void kindex_set_put(kindex_set *set, kindex *ix); /* NULL ok */
/* Removes the collection's index; it is freed when its last reference goes. */
void kindex_set_drop(kindex_set *set, int64_t collection_id);

#endif
