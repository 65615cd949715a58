#ifndef RAGD_STORE_STORE_H
#define RAGD_STORE_STORE_H

/* The store: the only module that knows SQLite (later PostgreSQL). Collections, documents,
 * chunks with byte offsets, float32 embeddings, titles and heading paths. Keyword search is
 * not here: the in-memory index (src/index/kindex.h) loads from the store.
 *
 * Threads: one writer thread owns the single write connection; every change goes through
 * store_submit() and is committed in groups (one transaction per batch of queued writes,
 * each write in its own savepoint so one failing write does not sink the others), and
 * acknowledged (its done callback runs) only after COMMIT returned. Readers borrow one of
 * a fixed pool of read-only connections (WAL mode) with store_reader_acquire(). */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "util/err.h"
#include "util/queue.h"

#define STORE_NAME_MAX 64
#define STORE_MODEL_MAX 127
#define STORE_HASH_HEX 64

typedef struct store store;
typedef struct store_reader store_reader;

typedef struct {
    const char *path;      /* the SQLite file; its folder must exist */
    size_t read_conns;     /* size of the read pool, >= 1 */
    bool synchronous_full; /* PRAGMA synchronous=FULL instead of NORMAL */
    size_t max_queue;      /* queued writes before store_submit says RAGD_EBUSY (e.g. 1024) */
    size_t max_group;      /* writes committed in one transaction at most (e.g. 64) */
    /* Quota on the database file, in bytes (0 = none): PRAGMA max_page_count on the write
     * connection, rounded down to whole pages. A write that would grow the database past
     * it fails with RAGD_ENOSPC, as on a full filesystem. It counts the database's pages
     * only: the WAL (bounded by checkpoints, ~4 MB plus the largest transaction) and the
     * 32 KB -shm file come on top. A database already larger than the quota keeps its
     * size as the limit (SQLite never lowers max_page_count below the current size). */
    uint64_t max_db_bytes;
} store_options;

typedef struct {
    int64_t id;
    char name[STORE_NAME_MAX + 1];
    char embed_model[STORE_MODEL_MAX + 1];
    int dim;
    int chunk_size;
    int chunk_overlap;
    int64_t documents;
    int64_t chunks;
    int64_t version; /* bumped by every committed change to the collection */
    char created_at[32];
} store_collection;

/* Process-wide SQLite settings for a server: memory statistics off (SQLite otherwise takes
 * one global mutex around every allocation of every connection, which serialised the
 * readers; the cost is that sqlite3_*_heap_limit is not enforced). Call once, before the
 * first store_open. */
void store_configure_process(void);

/* Opens (creating if needed) the database, applies WAL + synchronous settings and
 * foreign keys, runs every pending forward migration (schema version in
 * PRAGMA user_version; a file from a newer ragd is refused), opens the read pool and
 * starts the writer thread. On failure returns an error and writes a message to err. */
ragd_err store_open(const store_options *opt, store **out, char *err, size_t errlen);

/* Refuses new writes, commits every queued one (their callbacks run), joins the writer,
 * closes every connection, the write connection last: it checkpoints the WAL into the
 * database file and removes it (a WAL that cannot be checkpointed — the disk is full,
 * another process has the database open — stays, is logged, and is recovered by the next
 * open). Readers must all be released first. NULL is accepted. */
void store_close(store *st);

/* Schema version this build writes (for /health and tests). */
int store_schema_version(void);

/* ---- read pool ---- */

/* Borrows a read connection, waiting when all are in use. NULL once the store is closing. */
store_reader *store_reader_acquire(store *st);
void store_reader_release(store_reader *r); /* NULL ok */

typedef struct {
    size_t pool_size;
    size_t available;
    size_t in_use;
    uint64_t acquires;     /* total borrows */
    uint64_t waits;        /* borrows that had to wait */
    double wait_ms_total;  /* time spent waiting, all borrows */
    size_t write_queue;    /* writes queued for the writer right now */
    uint64_t write_groups; /* transactions committed by the writer */
    uint64_t writes;       /* writes acknowledged */
    bool initialized;
} store_pool_stats;
void store_pool_stats_get(store *st, store_pool_stats *out);

/* Room to store more, for /health. `full` is set by a write that failed for lack of space
 * (RAGD_ENOSPC: the filesystem is full, or the database reached max_db_bytes) and cleared
 * by the next write that commits a change; with no writes it keeps the last outcome. */
typedef struct {
    bool full;
    char message[256];    /* "disk full: <why>" while full, else "" */
    uint64_t quota_bytes; /* the effective quota (whole pages), 0 = none */
    uint64_t used_bytes;  /* the database's size in pages * page size, as of the last commit */
} store_space;
void store_space_get(store *st, store_space *out); /* NULL st: all zero */

/* ---- reads (on a borrowed reader; every returned string is malloc'd) ---- */

ragd_err store_collection_get(store_reader *r, const char *name, store_collection *out);
/* All collections ordered by name; *out malloc'd (free it). */
ragd_err store_collection_list(store_reader *r, store_collection **out, size_t *n);

typedef struct {
    int64_t rowid;
    char *doc_id;
    char content_hash[STORE_HASH_HEX + 1];
    char *metadata_json; /* a JSON object's text, "{}" when none */
    char *source;        /* NULL when none */
    char *title;         /* as ingest derived it (metadata, <title>, heading, file name); NULL when none */
    int64_t version;     /* 1 at first ingest, +1 per replacement */
    int64_t chunks;
    int64_t text_bytes;
    char created_at[32];
    char updated_at[32];
} store_document;
void store_document_cleanup(store_document *d); /* frees the strings; NULL ok */

/* Documents of a collection ordered by doc_id, with paging; *total is the count of all. */
ragd_err store_document_list(store_reader *r, int64_t coll_id, size_t limit, size_t offset,
                             store_document **out, size_t *n, int64_t *total);
void store_document_list_free(store_document *docs, size_t n);

typedef struct {
    int64_t chunk_id;
    int ordinal; /* 0-based position in the document */
    int64_t start; /* byte offsets into the document's stored text */
    int64_t end;
    char *text;
} store_chunk;
void store_chunks_free(store_chunk *chunks, size_t n);

/* One document with its chunks in order. RAGD_ENOTFOUND when absent. */
ragd_err store_document_get(store_reader *r, int64_t coll_id, const char *doc_id, store_document *doc,
                            store_chunk **chunks, size_t *n);

/* The content hash of a document, RAGD_ENOTFOUND when absent (a cheap duplicate pre-check
 * before chunking and embedding; the writer checks again). */
ragd_err store_document_hash(store_reader *r, int64_t coll_id, const char *doc_id,
                             char hash[STORE_HASH_HEX + 1]);

/* A retrieved chunk with what a response needs about its document. */
typedef struct {
    int64_t chunk_id;
    int64_t doc_rowid;
    char *doc_id;
    int ordinal;
    int64_t start;
    int64_t end;
    char *text;
    char *metadata_json;
    char *source;
    char *title;           /* its document's, as ingest derived it (metadata, <title>, heading,
                              file name); NULL when none */
    bool quarantined;      /* the injection screen quarantined it at ingest */
    float injection_score; /* its score at ingest (0: unscored, or stored before scoring) */
    int page;              /* the 1-based page it starts on (PDF), 0: the document has none */
    int page_end;          /* the page it ends on (>= page), 0 with page */
} store_hit_row;
void store_hit_rows_cleanup(store_hit_row *rows, size_t n);

/* Fetches chunks by id, all in one read transaction (one snapshot). out[i] answers ids[i];
 * found[i] is false (and out[i] zeroed) for an id that no longer exists. */
ragd_err store_chunks_fetch(store_reader *r, const int64_t *ids, size_t n, store_hit_row *out, bool *found);

/* Metadata filters: equality on top-level keys of a document's metadata. A term matches
 * when the key's value equals any of its values; a filter is the AND of its terms.
 * Caps: terms, and values over all terms (each value costs up to three bound SQL
 * parameters); past either, the calls that take a filter fail with RAGD_ETOOBIG. Code that
 * checks a client's filter earlier uses these same numbers, so the two cannot disagree. */
#define STORE_FILTER_MAX_TERMS 32
#define STORE_FILTER_MAX_VALUES 1024
typedef enum { STORE_VAL_STRING, STORE_VAL_INT, STORE_VAL_REAL, STORE_VAL_BOOL, STORE_VAL_NULL } store_val_type;
typedef struct {
    store_val_type type;
    const char *s; /* STRING */
    int64_t i;     /* INT, BOOL (0/1) */
    double d;      /* REAL */
} store_value;
typedef struct {
    const char *key; /* 1..64 of [A-Za-z0-9_.-]; others are rejected with RAGD_EINVAL */
    const store_value *values;
    size_t n_values;
} store_filter_term;
typedef struct {
    const store_filter_term *terms;
    size_t n_terms;
} store_filter;

/* A quarantined chunk (docs/internals/fence.md). */
typedef struct {
    char *doc_id;
    int ordinal;
    float score;
    char *rule;    /* NULL when no rule fired */
    char *preview; /* the chunk's first STORE_PREVIEW_CHARS characters */
} store_quarantined;
#define STORE_PREVIEW_CHARS 160
void store_quarantined_free(store_quarantined *q, size_t n); /* NULL ok */

/* The collection's quarantined chunks by document and ordinal, with paging; *total counts
 * them all. */
ragd_err store_quarantine_list(store_reader *r, int64_t coll_id, size_t limit, size_t offset, store_quarantined **out,
                               size_t *n, int64_t *total);

/* Row ids of the collection's documents that match f, sorted ascending, *rowids malloc'd. */
ragd_err store_filter_docs(store_reader *r, int64_t coll_id, const store_filter *f, int64_t **rowids, size_t *n);


/* One chunk of store_scan_chunks; every pointer is valid during the callback only. */
typedef struct {
    int64_t coll_id;
    int dim;
    int64_t chunk_id;
    int64_t doc_rowid;
    const float *vec; /* dim floats; NULL when the stored embedding has the wrong size */
    const char *text;
    size_t text_len;
    const char *heading;
    size_t heading_len;
    const char *title; /* its document's */
    size_t title_len;
} store_chunk_row;
typedef int (*store_chunk_fn)(const store_chunk_row *row, void *arg);
/* Calls fn for every chunk with what both in-memory indexes need (start-up), in one read
 * transaction, document by document and each document's chunks in order (the keyword
 * index wants them so). fn returns non-zero to stop. */
ragd_err store_scan_chunks(store_reader *r, store_chunk_fn fn, void *arg);

/* ---- writes (through the writer thread) ---- */

typedef enum { STORE_DOC_INSERTED, STORE_DOC_REPLACED, STORE_DOC_DUPLICATE } store_doc_result;

typedef struct {
    char *doc_id;                            /* required */
    char content_hash[STORE_HASH_HEX + 1];  /* hex SHA-256 of text */
    char *text;                              /* the document's text (offsets point into it) */
    size_t text_len;
    char *metadata_json;                     /* JSON object text; NULL means "{}" */
    char *source;                            /* NULL ok */
    const char *title;                       /* NULL means "" (text/doccontext.h) */
    size_t n_chunks;
    const int64_t *chunk_starts;             /* n_chunks byte offsets into text */
    const int64_t *chunk_ends;
    const float *vectors;                    /* n_chunks * dim floats */
    const char *const *chunk_headings;       /* n_chunks heading paths; NULL (or a NULL
                                              * entry) means "" */
    /* The injection screen's verdict per chunk (docs/internals/fence.md); NULL: unscored. */
    const float *chunk_scores;               /* n_chunks scores 0..1, or NULL */
    const char *const *chunk_rules;          /* n_chunks rule names (NULL entries: none), or NULL */
    const bool *chunk_quarantined;           /* n_chunks flags, or NULL: none */
    /* Pages (PDF): the 1-based page of each chunk's first and last byte; NULL: no pages. */
    const int *chunk_pages;
    const int *chunk_page_ends;
    /* The caller saw this id stored with this hash and so skipped chunking (n_chunks 0).
     * Should the stored hash differ by the time the writer runs (a concurrent replace),
     * the whole write fails with RAGD_EBUSY instead of storing the text without chunks. */
    bool expect_duplicate;
    /* Opaque to the store: what the commit hook prepared from this document's chunks ahead
     * of the write (rag: their keyword analysis, a kindex_batch), handed to the hook in
     * store_change_text.doc_terms. NULL: none, the hook analyses the texts itself. */
    const void *keyword_terms;
    store_doc_result result;                 /* out */
} store_doc;

typedef enum {
    STORE_W_INGEST,
    STORE_W_CREATE_COLLECTION,
    STORE_W_DROP_COLLECTION,
    STORE_W_DELETE_DOCUMENT,
    /* Re-embedding (docs/internals/reembed.md); the fields they use are under "REEMBED". */
    STORE_W_REEMBED_START,   /* a job: embedder, embed_model; RAGD_ECONFLICT while one runs */
    STORE_W_REEMBED_VECTORS, /* new vectors of job_id: chunk_ids, vectors, n_vectors, dim */
    STORE_W_REEMBED_FAIL,    /* job_id stops: state "failed", error */
    STORE_W_REEMBED_CANCEL,  /* the collection's job and its new vectors go */
    STORE_W_REEMBED_SWAP,    /* job_id's vectors replace the old ones, in one transaction */
} store_write_kind;

typedef struct store_write store_write;
struct store_write {
    store_write_kind kind;
    char collection[STORE_NAME_MAX + 1];
    /* Settings for CREATE, and for INGEST when the collection does not exist yet. */
    char embed_model[STORE_MODEL_MAX + 1];
    int dim;
    int chunk_size;
    int chunk_overlap;
    /* INGEST: the documents were chunked with chunk_size/chunk_overlap for a collection
     * that did not exist yet; should it exist by now with other chunk settings (a concurrent
     * creation), the write fails with RAGD_ECONFLICT rather than store chunks of the wrong
     * size. */
    bool chunked_for_new;
    store_doc *docs; /* INGEST */
    size_t n_docs;
    const char *doc_id; /* DELETE_DOCUMENT */
    /* REEMBED: the job (VECTORS, FAIL, SWAP; START sets it). A write for a job that is no
     * longer the collection's current running one fails with RAGD_ENOTFOUND and changes
     * nothing (the job was cancelled, or replaced). */
    int64_t job_id;
    char embedder[16];          /* START: "builtin", "ollama", "openai" (embed_model: the model) */
    const int64_t *chunk_ids;   /* VECTORS: n_vectors chunk ids (chunks gone meanwhile are skipped) */
    const float *vectors;       /* VECTORS: n_vectors * dim floats (dim: the new dimension) */
    size_t n_vectors;
    const char *error;          /* FAIL: why (copied, truncated to 255 bytes) */
    /* SWAP, in: dim is the new dimension when no batch of vectors was stored (a collection
     * without chunks; 0: the collection keeps its dim). SWAP, out: chunks still without a new vector; the swap then fails with RAGD_EBUSY
     * (ingested during the job: embed them and swap again). */
    int64_t missing;

    /* Results, valid when done runs:
     * status RAGD_OK, or RAGD_ENOTFOUND (collection/document), RAGD_ECONFLICT (CREATE with
     * other settings than the existing collection's; INGEST whose embed_model/dim differ from
     * the collection's, or its chunk settings with chunked_for_new: message says which), RAGD_EBUSY (an expect_duplicate document
     * changed meanwhile: retry), RAGD_ENOSPC (no room: the filesystem is full or the
     * quota is reached; message starts "disk full: "), RAGD_ENOMEM (SQLite ran out of
     * memory), RAGD_EIO (SQLite failed otherwise). On any failure nothing of this write is
     * kept. A write whose transaction SQLite rolled back because of a later write of the
     * same group gets that write's status (docs/internals/store.md). created: the
     * collection was created by this write. coll: the collection's state after the write
     * (not for DROP). */
    ragd_err status;
    char message[256];
    bool created;
    store_collection coll;
    int64_t chunks_written;

    /* Called once on the writer thread after the write's transaction committed (or
     * failed). Must not block; typically it hands the result to the event loop. */
    void (*done)(store_write *w, void *arg);
    void *arg;

    queue_node link_; /* the store's queue link */
};

/* Queues a write. RAGD_OK: done will be called exactly once. RAGD_EBUSY (queue full) or
 * RAGD_ECLOSED (closing): done will never be called. */
ragd_err store_submit(store *st, store_write *w);

/* ---- re-embedding: reads (docs/internals/reembed.md) ---- */

typedef struct {
    int64_t job_id;
    int64_t coll_id;
    char collection[STORE_NAME_MAX + 1];
    char state[16];    /* "running", "failed" or "done" (a cancelled job has no row) */
    char embedder[16];
    char model[STORE_MODEL_MAX + 1];
    int dim;           /* of the new vectors; 0 until the first batch is stored */
    int64_t done;      /* chunks with a new vector */
    int64_t total;     /* the collection's chunks now */
    char error[256];
    char started_at[32];
    char updated_at[32];
} store_reembed_job;

/* The collection's job (the last one, whatever its state). RAGD_ENOTFOUND when none. */
ragd_err store_reembed_get(store_reader *r, int64_t coll_id, store_reembed_job *out);
/* Every running job (start-up resumes them); *out malloc'd (free it), counts not filled. */
ragd_err store_reembed_running(store_reader *r, store_reembed_job **out, size_t *n);
/* Up to limit chunks of the collection with id > after and no new vector yet, by id
 * (chunk_id and text filled; store_chunks_free). */
ragd_err store_reembed_pending(store_reader *r, int64_t coll_id, int64_t after, size_t limit, store_chunk **out,
                               size_t *n);

/* When the hook sees a change (see store_commit_hook). */
typedef enum {
    STORE_CHANGE_PREPARE,   /* inside the write's transaction, before COMMIT */
    STORE_CHANGE_COMMITTED, /* after COMMIT, before the write's done callback */
    STORE_CHANGE_ABORTED,   /* a prepared change whose transaction did not commit after all */
} store_change_phase;

/* An added chunk's text, heading path and document title, for the keyword index. The
 * pointers lead into the write's own store_docs (nothing is copied): valid while the hook
 * runs, since a write's documents live until its done callback. */
typedef struct {
    const char *text;
    size_t len;
    const char *heading; /* "" when none */
    const char *title;   /* "" when none */
    const void *doc_terms; /* its store_doc's keyword_terms (every chunk of the document
                            * has the same), NULL when none */
} store_change_text;

/* What one write changed, for keeping the in-memory indexes in step. */
typedef struct {
    store_change_phase phase;
    int64_t coll_id;
    int dim;
    bool dropped;                 /* the whole collection went */
    /* A re-embedding swap: chunk_ids/chunk_doc_rowids/vectors hold every chunk of the
     * collection with its new vector (dim is the new dimension), replacing the collection's
     * whole vector index; texts is NULL and the keyword index is unchanged. */
    bool reembedded;
    const int64_t *removed_docs;  /* doc row ids whose chunks went (replaced or deleted) */
    size_t n_removed;
    const int64_t *chunk_ids;     /* chunks added */
    const int64_t *chunk_doc_rowids;
    const float *const *vectors;  /* n_chunks rows of dim floats, one pointer each (the write's
                                   * own store_doc vectors, not copied: valid until the done
                                   * callback, as texts) */
    const store_change_text *texts; /* n_chunks */
    size_t n_chunks;
    /* A slot the hook may fill at PREPARE (what it prepared) and finds again at COMMITTED
     * or ABORTED, of the same write; NULL at first. The store never touches what it points
     * to: the hook frees it at COMMITTED or ABORTED. */
    void **hook_state;
} store_change;

/* Called on the writer thread for each write that changed something, in two steps so that
 * the index can never fall behind a committed write:
 * - PREPARE, inside the write's transaction: the hook takes what applying the change will
 *   need (memory); an error refuses the write, which is rolled back and fails with it.
 * - then COMMITTED after COMMIT (the return value is ignored: it must not fail), or
 *   ABORTED when the transaction did not commit after all (the hook gives back what
 *   PREPARE took).
 * Set it before the first store_submit. */
typedef ragd_err (*store_commit_hook)(const store_change *change, void *arg);
void store_set_commit_hook(store *st, store_commit_hook hook, void *arg);

#endif
