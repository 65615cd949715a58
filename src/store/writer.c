/* The writer thread: takes queued writes in groups, commits each group in one transaction
 * (every write in its own savepoint), then runs the commit hook and the done callback of
 * each write. It is the only user of the write connection once it runs. */
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>

#include "store/store_int.h"
#include "util/clock.h"
#include "util/log.h"

/* What one write changed, kept until its group committed (then handed to the hook). */
struct store__wchange {
    bool changed;
    bool prepared; /* the hook saw it in STORE_CHANGE_PREPARE */
    bool dropped;
    bool reembedded; /* a re-embedding swap: every chunk with its new vector */
    int64_t coll_id;
    int dim;
    int64_t *removed;
    size_t n_removed;
    int64_t *chunk_ids;
    int64_t *chunk_docs;
    const float **vectors; /* per chunk: its dim floats, in the write's store_doc (ingest) or
                            * in swap_vectors (a re-embedding swap); not copied */
    float *swap_vectors;
    store_change_text *texts;
    size_t n_chunks;
    void *hook_state; /* the hook's, from PREPARE to COMMITTED/ABORTED */
};
typedef struct store__wchange wchange;

static void wchange_reset(wchange *c)
{
    free(c->removed);
    free(c->chunk_ids);
    free(c->chunk_docs);
    free(c->vectors);
    free(c->swap_vectors);
    free(c->texts);
    memset(c, 0, sizeof *c);
}

/* The hook's view of a change. */
static store_change change_view(wchange *c, store_change_phase phase)
{
    store_change ch = {
        .phase = phase,
        .coll_id = c->coll_id,
        .dim = c->dim,
        .dropped = c->dropped,
        .reembedded = c->reembedded,
        .removed_docs = c->removed,
        .n_removed = c->n_removed,
        .chunk_ids = c->chunk_ids,
        .chunk_doc_rowids = c->chunk_docs,
        .vectors = (const float *const *)c->vectors,
        .texts = c->texts,
        .n_chunks = c->n_chunks,
        .hook_state = &c->hook_state,
    };
    return ch;
}

/* Forgets a change that will not commit: a prepared one is first handed back to the hook
 * (STORE_CHANGE_ABORTED). */
static void change_discard(store *st, wchange *c)
{
    if (c->prepared && st->ghook) {
        store_change ch = change_view(c, STORE_CHANGE_ABORTED);
        st->ghook(&ch, st->ghook_arg);
    }
    wchange_reset(c);
}

/* ---------------------------------------------------------------- statements */

typedef struct {
    sqlite3_stmt **slot;
    const char *sql;
} stmt_def;

static ragd_err prepare_all(store *st, char *err, size_t errlen)
{
    store__wstmts *w = &st->ws;
    const stmt_def defs[] = {
        {&w->coll_by_name, "SELECT " STORE__COLL_COLS " FROM collections WHERE name = ?1"},
        {&w->coll_insert, "INSERT INTO collections(name, embed_model, dim, chunk_size, chunk_overlap, version,"
                          " created_at) VALUES (?1, ?2, ?3, ?4, ?5, 0, ?6)"},
        {&w->coll_bump, "UPDATE collections SET version = version + 1 WHERE id = ?1"},
        {&w->coll_counts_add, "UPDATE collections SET documents = documents + ?2, chunks = chunks + ?3 WHERE id = ?1"},
        {&w->coll_delete, "DELETE FROM collections WHERE id = ?1"},
        {&w->doc_lookup, "SELECT id, content_hash FROM documents WHERE collection_id = ?1 AND doc_id = ?2"},
        {&w->doc_insert, "INSERT INTO documents(collection_id, doc_id, content_hash, metadata, source, text,"
                         " version, created_at, updated_at, title) VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1, ?7, ?7, ?8)"},
        {&w->doc_update, "UPDATE documents SET content_hash = ?2, metadata = ?3, source = ?4, text = ?5,"
                         " version = version + 1, updated_at = ?6, title = ?7 WHERE id = ?1"},
        {&w->doc_delete, "DELETE FROM documents WHERE id = ?1"},
        {&w->chunks_delete, "DELETE FROM chunks WHERE document_id = ?1"},
        {&w->chunk_insert, "INSERT INTO chunks(document_id, collection_id, ordinal, start, \"end\", text,"
                           " embedding, heading, injection_score, injection_rule, quarantined, page, page_end)"
                           " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)"},
        /* json_type, not json_valid: json_valid answers 0 when it runs out of memory,
         * json_type raises an error for malformed JSON and SQLITE_NOMEM for no memory. */
        {&w->json_check, "SELECT json_type(?1)"},
        {&w->page_count, "PRAGMA page_count"},
    };
    for (size_t i = 0; i < sizeof defs / sizeof defs[0]; i++) {
        if (sqlite3_prepare_v3(st->wdb, defs[i].sql, -1, SQLITE_PREPARE_PERSISTENT, defs[i].slot, NULL) !=
            SQLITE_OK) {
            snprintf(err, errlen, "store: preparing a writer statement: %s", sqlite3_errmsg(st->wdb));
            return RAGD_EIO;
        }
    }
    return RAGD_OK;
}

ragd_err store__writer_prepare(store *st, char *err, size_t errlen)
{
    st->wgroup = calloc(st->opt.max_group, sizeof *st->wgroup);
    st->wchanges = calloc(st->opt.max_group, sizeof *st->wchanges);
    if (!st->wgroup || !st->wchanges) {
        snprintf(err, errlen, "store: out of memory");
        return RAGD_ENOMEM;
    }
    return prepare_all(st, err, errlen);
}

void store__writer_finalize(store *st)
{
    /* store__wstmts holds nothing but statement pointers: walk it as an array. */
    sqlite3_stmt **all = (sqlite3_stmt **)&st->ws;
    for (size_t i = 0; i < sizeof st->ws / sizeof(sqlite3_stmt *); i++) {
        sqlite3_finalize(all[i]);
        all[i] = NULL;
    }
    free(st->wgroup);
    st->wgroup = NULL;
    if (st->wchanges)
        for (size_t i = 0; i < st->opt.max_group; i++)
            wchange_reset(&st->wchanges[i]);
    free(st->wchanges);
    st->wchanges = NULL;
}

/* Steps a statement that returns no row, then resets it and clears its bindings (they may
 * point into the caller's memory). Returns SQLITE_DONE or the error code. */
static int step_done(sqlite3_stmt *s)
{
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return rc;
}

static void finish(sqlite3_stmt *s)
{
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
}

/* ---------------------------------------------------------------- helpers */

/* Sets the write's failure status and message (printf-style). Returns e. */
static ragd_err fail(store_write *w, ragd_err e, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static ragd_err fail(store_write *w, ragd_err e, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->message, sizeof w->message, fmt, ap);
    va_end(ap);
    w->status = e;
    return e;
}

int64_t store__page_count(store *st)
{
    sqlite3_stmt *s = st->ws.page_count;
    int64_t n = sqlite3_step(s) == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_reset(s);
    return n;
}

/* Below this much free space on its filesystem, a full store is put down to the disk
 * rather than to the quota: SQLite wanted to write and the filesystem said no. */
#define NEARLY_FULL_BYTES (16ull << 20)

/* The process's file-size limit (RLIMIT_FSIZE) in bytes; 0 when there is none. */
static unsigned long long file_size_limit(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_FSIZE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY)
        return 0;
    return (unsigned long long)rl.rlim_cur;
}

/* Says why SQLite found no room, into st->nospace: the file-size limit or a disk quota when
 * the write's errno says so (EFBIG, EDQUOT); else the quota when one is set and the
 * filesystem still has room, else the filesystem (with its free bytes). */
static void note_nospace(store *st)
{
    int sys = store__nospace_errno(st->wdb);
    if (sys == EFBIG) {
        snprintf(st->nospace, sizeof st->nospace,
                 "the database file reached the process's file-size limit (ulimit -f, RLIMIT_FSIZE: %llu bytes)",
                 file_size_limit());
        return;
    }
    char dir[1100];
    snprintf(dir, sizeof dir, "%s", st->path);
    char *slash = strrchr(dir, '/');
    if (slash == dir)
        dir[1] = '\0';
    else if (slash)
        *slash = '\0';
    else
        snprintf(dir, sizeof dir, ".");
    struct statvfs sv;
    bool have_fs = statvfs(dir, &sv) == 0;
    unsigned long long avail = have_fs ? (unsigned long long)sv.f_bavail * sv.f_frsize : 0;
    int64_t pages = store__page_count(st);
    long long used = pages > 0 ? (long long)(pages * st->page_size) : -1;
    if (sys == EDQUOT)
        snprintf(st->nospace, sizeof st->nospace, "disk quota exceeded on the filesystem of %.100s (%llu bytes free)",
                 dir, avail);
    else if (st->quota_pages > 0 && (!have_fs || avail >= NEARLY_FULL_BYTES))
        snprintf(st->nospace, sizeof st->nospace,
                 "the store quota (RAGD_MAX_DB_BYTES) is reached: limit %lld bytes, database %lld bytes",
                 (long long)(st->quota_pages * st->page_size), used);
    else if (have_fs)
        snprintf(st->nospace, sizeof st->nospace, "no space left on the filesystem of %.100s (%llu bytes free)", dir,
                 avail);
    else
        snprintf(st->nospace, sizeof st->nospace, "database or disk is full (%.100s)", dir);
}

/* Describes the write connection's last error, doing `what`, into why; returns its status
 * (store__sql_error: RAGD_ENOSPC, RAGD_ENOMEM or RAGD_EIO). A full store is "disk full:
 * <why>". */
static ragd_err sql_failure(store *st, const char *what, char *why, size_t len)
{
    ragd_err e = store__sql_error(st->wdb);
    if (e == RAGD_ENOSPC) {
        note_nospace(st);
        snprintf(why, len, "disk full: %s; nothing of this write was kept (while %s)", st->nospace, what);
    } else {
        snprintf(why, len, "store: %s: %s", what, sqlite3_errmsg(st->wdb));
    }
    return e;
}

/* Fails the write with the write connection's last error (sql_failure). */
static ragd_err fail_sql(store *st, store_write *w, const char *what)
{
    char why[sizeof w->message];
    ragd_err e = sql_failure(st, what, why, sizeof why);
    return fail(w, e, "%s", why);
}

/* Looks the collection up by name: RAGD_OK (row in *c), RAGD_ENOTFOUND, RAGD_EIO. */
static ragd_err find_collection(store *st, const char *name, store_collection *c)
{
    sqlite3_stmt *s = st->ws.coll_by_name;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    ragd_err e = RAGD_EIO;
    if (rc == SQLITE_ROW) {
        store__collection_from_row(s, c);
        e = RAGD_OK;
    } else if (rc == SQLITE_DONE) {
        e = RAGD_ENOTFOUND;
    }
    finish(s);
    return e;
}

/* The write's collection, which must exist: RAGD_OK (row in *c), or the write failed with
 * RAGD_ENOTFOUND ("collection '...' does not exist") or as fail_sql. */
static ragd_err existing_collection(store *st, store_write *w, store_collection *c)
{
    ragd_err e = find_collection(st, w->collection, c);
    if (e == RAGD_ENOTFOUND)
        return fail(w, RAGD_ENOTFOUND, "collection '%.64s' does not exist", w->collection);
    if (e)
        return fail_sql(st, w, "looking the collection up");
    return RAGD_OK;
}

/* Re-reads the collection (version, counts) into w->coll after the write's changes. */
static ragd_err refresh_coll(store *st, store_write *w)
{
    ragd_err e = find_collection(st, w->collection, &w->coll);
    if (e)
        return fail_sql(st, w, "reading the collection back");
    return RAGD_OK;
}

static ragd_err bump_version(store *st, store_write *w, int64_t coll_id)
{
    sqlite3_bind_int64(st->ws.coll_bump, 1, coll_id);
    if (step_done(st->ws.coll_bump) != SQLITE_DONE)
        return fail_sql(st, w, "bumping the collection version");
    return RAGD_OK;
}

/* Adds an ingest's inserted documents and chunks to the collection's counts (schema 7: no
 * per-row INSERT trigger does it any more; the DELETE triggers still count removals). */
static ragd_err add_counts(store *st, store_write *w, int64_t coll_id, int64_t docs, int64_t chunks)
{
    if (docs == 0 && chunks == 0)
        return RAGD_OK;
    sqlite3_stmt *s = st->ws.coll_counts_add;
    sqlite3_bind_int64(s, 1, coll_id);
    sqlite3_bind_int64(s, 2, docs);
    sqlite3_bind_int64(s, 3, chunks);
    if (step_done(s) != SQLITE_DONE)
        return fail_sql(st, w, "counting the collection's documents and chunks");
    return RAGD_OK;
}

static ragd_err validate_settings(store_write *w)
{
    if (strlen(w->embed_model) > STORE_MODEL_MAX || w->embed_model[0] == '\0')
        return fail(w, RAGD_EINVAL, "embed_model must be 1..%d bytes", STORE_MODEL_MAX);
    if (w->dim < 1 || w->dim > 65536)
        return fail(w, RAGD_EINVAL, "dim must be 1..65536, not %d", w->dim);
    if (w->chunk_size < 0 || w->chunk_overlap < 0)
        return fail(w, RAGD_EINVAL, "chunk_size and chunk_overlap must not be negative");
    return RAGD_OK;
}

static ragd_err insert_collection(store *st, store_write *w, store_collection *c)
{
    char now[32];
    clock_utc_rfc3339(now, sizeof now);
    sqlite3_stmt *s = st->ws.coll_insert;
    sqlite3_bind_text(s, 1, w->collection, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, w->embed_model, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, w->dim);
    sqlite3_bind_int(s, 4, w->chunk_size);
    sqlite3_bind_int(s, 5, w->chunk_overlap);
    sqlite3_bind_text(s, 6, now, -1, SQLITE_STATIC);
    if (step_done(s) != SQLITE_DONE)
        return fail_sql(st, w, "creating the collection");
    memset(c, 0, sizeof *c);
    c->id = sqlite3_last_insert_rowid(st->wdb);
    c->dim = w->dim;
    w->created = true;
    return RAGD_OK;
}

static bool is_hex64(const char *h)
{
    size_t i = 0;
    for (; h[i]; i++) {
        char c = h[i];
        bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
        if (!hex || i >= STORE_HASH_HEX)
            return false;
    }
    return i == STORE_HASH_HEX;
}

/* Checks one document of an INGEST before anything is written. */
static ragd_err validate_doc(store *st, store_write *w, const store_doc *d, int dim)
{
    if (!d->doc_id || !d->doc_id[0])
        return fail(w, RAGD_EINVAL, "a document has no id");
    if (!is_hex64(d->content_hash))
        return fail(w, RAGD_EINVAL, "document '%.100s': content_hash is not 64 hex digits", d->doc_id);
    if (!d->text && d->text_len > 0)
        return fail(w, RAGD_EINVAL, "document '%.100s': no text", d->doc_id);
    if (d->n_chunks > 0 && (!d->chunk_starts || !d->chunk_ends || !d->vectors))
        return fail(w, RAGD_EINVAL, "document '%.100s': chunk offsets or vectors missing", d->doc_id);
    if (d->n_chunks > SIZE_MAX / sizeof(float) / (size_t)dim)
        return fail(w, RAGD_ETOOBIG, "document '%.100s': too many chunks", d->doc_id);
    for (size_t i = 0; i < d->n_chunks; i++) {
        int64_t a = d->chunk_starts[i], b = d->chunk_ends[i];
        if (a < 0 || a >= b || (uint64_t)b > (uint64_t)d->text_len)
            return fail(w, RAGD_EINVAL, "document '%.100s': chunk %zu has bad offsets [%lld, %lld) for %zu bytes",
                        d->doc_id, i, (long long)a, (long long)b, d->text_len);
    }
    size_t nf = d->n_chunks * (size_t)dim;
    for (size_t i = 0; i < nf; i++)
        if (!isfinite(d->vectors[i]))
            return fail(w, RAGD_EINVAL, "document '%.100s': embedding has a non-finite value", d->doc_id);
    if (d->metadata_json) {
        sqlite3_stmt *s = st->ws.json_check;
        sqlite3_bind_text(s, 1, d->metadata_json, -1, SQLITE_STATIC);
        int rc = sqlite3_step(s);
        bool object = rc == SQLITE_ROW && sqlite3_column_type(s, 0) == SQLITE_TEXT &&
                      strcmp((const char *)sqlite3_column_text(s, 0), "object") == 0;
        finish(s);
        if (rc != SQLITE_ROW && rc != SQLITE_ERROR) /* SQLITE_ERROR: malformed JSON */
            return fail_sql(st, w, "checking metadata");
        if (!object)
            return fail(w, RAGD_EINVAL, "document '%.100s': metadata is not a JSON object", d->doc_id);
    }
    return RAGD_OK;
}

/* Drops the change's pending chunks of doc row `rowid` (added earlier in the same write and
 * now replaced again) and records the row in removed (once). */
static void change_remove_doc(wchange *c, int64_t rowid)
{
    size_t k = 0;
    for (size_t i = 0; i < c->n_chunks; i++) {
        if (c->chunk_docs[i] == rowid)
            continue;
        if (k != i) {
            c->chunk_ids[k] = c->chunk_ids[i];
            c->chunk_docs[k] = c->chunk_docs[i];
            c->texts[k] = c->texts[i];
            c->vectors[k] = c->vectors[i];
        }
        k++;
    }
    c->n_chunks = k;
    for (size_t i = 0; i < c->n_removed; i++)
        if (c->removed[i] == rowid)
            return;
    c->removed[c->n_removed++] = rowid;
}

/* Binds embedding floats as a little-endian float32 BLOB. On a little-endian host the
 * caller's array is the BLOB already; elsewhere it is converted into scratch (dim floats). */
static void bind_vector(sqlite3_stmt *s, int col, const float *v, int dim, uint32_t *scratch)
{
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
    (void)scratch;
    sqlite3_bind_blob(s, col, v, dim * (int)sizeof(float), SQLITE_STATIC);
#else
    for (int i = 0; i < dim; i++) {
        uint32_t u;
        memcpy(&u, &v[i], 4);
        scratch[i] = __builtin_bswap32(u);
    }
    sqlite3_bind_blob(s, col, scratch, dim * (int)sizeof(float), SQLITE_STATIC);
#endif
}

/* Binds the six document columns doc_insert and doc_update both set, in their order:
 * content_hash, metadata, source (NULL when absent), text, the time and the title, to the
 * parameters first .. first + 5. */
static void bind_doc_fields(sqlite3_stmt *s, int first, const store_doc *d, const char *meta, const char *text,
                            const char *now)
{
    sqlite3_bind_text(s, first, d->content_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, first + 1, meta, -1, SQLITE_STATIC);
    if (d->source)
        sqlite3_bind_text(s, first + 2, d->source, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, first + 2);
    sqlite3_bind_text64(s, first + 3, text, d->text_len, SQLITE_STATIC, SQLITE_UTF8);
    sqlite3_bind_text(s, first + 4, now, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, first + 5, d->title ? d->title : "", -1, SQLITE_STATIC);
}

/* Writes one document's row and chunks (after the duplicate check). */
static ragd_err write_doc(store *st, store_write *w, wchange *c, store_doc *d, const char *now, uint32_t *scratch)
{
    store__wstmts *ws = &st->ws;
    const char *meta = d->metadata_json ? d->metadata_json : "{}";
    const char *text = d->text ? d->text : "";
    int64_t rowid = 0;
    bool exists = false;
    char old_hash[STORE_HASH_HEX + 1] = "";

    sqlite3_bind_int64(ws->doc_lookup, 1, c->coll_id);
    sqlite3_bind_text(ws->doc_lookup, 2, d->doc_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(ws->doc_lookup);
    if (rc == SQLITE_ROW) {
        exists = true;
        rowid = sqlite3_column_int64(ws->doc_lookup, 0);
        store__copy_col(ws->doc_lookup, 1, old_hash, sizeof old_hash);
    }
    finish(ws->doc_lookup);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return fail_sql(st, w, "looking a document up");

    if (exists && strcmp(old_hash, d->content_hash) == 0) {
        d->result = STORE_DOC_DUPLICATE;
        return RAGD_OK;
    }
    if (d->expect_duplicate)
        return fail(w, RAGD_EBUSY, "document '%s' changed while this request was prepared; retry", d->doc_id);
    if (exists) {
        sqlite3_bind_int64(ws->chunks_delete, 1, rowid);
        if (step_done(ws->chunks_delete) != SQLITE_DONE)
            return fail_sql(st, w, "deleting old chunks");
        sqlite3_stmt *s = ws->doc_update;
        sqlite3_bind_int64(s, 1, rowid);
        bind_doc_fields(s, 2, d, meta, text, now);
        if (step_done(s) != SQLITE_DONE)
            return fail_sql(st, w, "updating a document");
        change_remove_doc(c, rowid);
        d->result = STORE_DOC_REPLACED;
    } else {
        sqlite3_stmt *s = ws->doc_insert;
        sqlite3_bind_int64(s, 1, c->coll_id);
        sqlite3_bind_text(s, 2, d->doc_id, -1, SQLITE_STATIC);
        bind_doc_fields(s, 3, d, meta, text, now);
        if (step_done(s) != SQLITE_DONE)
            return fail_sql(st, w, "inserting a document");
        rowid = sqlite3_last_insert_rowid(st->wdb);
        d->result = STORE_DOC_INSERTED;
    }
    c->changed = true;

    size_t dim = (size_t)c->dim;
    for (size_t i = 0; i < d->n_chunks; i++) {
        sqlite3_stmt *s = ws->chunk_insert;
        int64_t a = d->chunk_starts[i], b = d->chunk_ends[i];
        sqlite3_bind_int64(s, 1, rowid);
        sqlite3_bind_int64(s, 2, c->coll_id);
        sqlite3_bind_int64(s, 3, (int64_t)i);
        sqlite3_bind_int64(s, 4, a);
        sqlite3_bind_int64(s, 5, b);
        sqlite3_bind_text64(s, 6, text + a, (sqlite3_uint64)(b - a), SQLITE_STATIC, SQLITE_UTF8);
        bind_vector(s, 7, d->vectors + i * dim, c->dim, scratch);
        const char *heading = d->chunk_headings && d->chunk_headings[i] ? d->chunk_headings[i] : "";
        sqlite3_bind_text(s, 8, heading, -1, SQLITE_STATIC);
        sqlite3_bind_double(s, 9, d->chunk_scores ? (double)d->chunk_scores[i] : 0.0);
        if (d->chunk_rules && d->chunk_rules[i])
            sqlite3_bind_text(s, 10, d->chunk_rules[i], -1, SQLITE_STATIC);
        else
            sqlite3_bind_null(s, 10);
        sqlite3_bind_int(s, 11, d->chunk_quarantined && d->chunk_quarantined[i]);
        if (d->chunk_pages && d->chunk_pages[i] > 0) {
            sqlite3_bind_int(s, 12, d->chunk_pages[i]);
            sqlite3_bind_int(s, 13, d->chunk_page_ends[i]);
        } else {
            sqlite3_bind_null(s, 12);
            sqlite3_bind_null(s, 13);
        }
        if (step_done(s) != SQLITE_DONE)
            return fail_sql(st, w, "inserting a chunk");
        size_t k = c->n_chunks++;
        c->chunk_ids[k] = sqlite3_last_insert_rowid(st->wdb);
        c->chunk_docs[k] = rowid;
        c->texts[k] = (store_change_text){
            .text = text + a, .len = (size_t)(b - a), .heading = heading, .title = d->title ? d->title : "", .doc_terms = d->keyword_terms};
        c->vectors[k] = d->vectors + i * dim; /* valid until the done callback, as the texts */
        w->chunks_written++;
    }
    return RAGD_OK;
}

/* Sizes the change buffers for an ingest of n_docs documents with total chunks. */
static ragd_err change_alloc(store_write *w, wchange *c, size_t n_docs, size_t total)
{
    size_t dim = (size_t)c->dim;
    if (total > 0 && dim > SIZE_MAX / sizeof(float) / total)
        return fail(w, RAGD_ETOOBIG, "too many chunks in one write");
    c->removed = malloc((n_docs ? n_docs : 1) * sizeof *c->removed);
    c->chunk_ids = malloc((total ? total : 1) * sizeof *c->chunk_ids);
    c->chunk_docs = malloc((total ? total : 1) * sizeof *c->chunk_docs);
    c->vectors = malloc((total ? total : 1) * sizeof *c->vectors);
    c->texts = malloc((total ? total : 1) * sizeof *c->texts);
    if (!c->removed || !c->chunk_ids || !c->chunk_docs || !c->vectors || !c->texts)
        return fail(w, RAGD_ENOMEM, "out of memory");
    return RAGD_OK;
}

/* ---------------------------------------------------------------- the four writes */

static ragd_err do_ingest(store *st, store_write *w, wchange *c)
{
    store_collection coll;
    uint32_t *scratch = NULL;
    ragd_err e = find_collection(st, w->collection, &coll);
    bool exists = e == RAGD_OK;
    if (e == RAGD_EIO)
        return fail_sql(st, w, "looking the collection up");
    if (e == RAGD_OK && (strcmp(coll.embed_model, w->embed_model) != 0 || coll.dim != w->dim))
        return fail(w, RAGD_ECONFLICT, "collection '%.64s' uses embed model '%.80s' (dim %d), not '%.80s' (dim %d)",
                    w->collection, coll.embed_model, coll.dim, w->embed_model, w->dim);
    if (e == RAGD_OK && w->chunked_for_new &&
        (coll.chunk_size != w->chunk_size || coll.chunk_overlap != w->chunk_overlap))
        return fail(w, RAGD_ECONFLICT,
                    "collection '%.64s' has chunk_size %d, chunk_overlap %d; this ingest was chunked with %d, %d",
                    w->collection, coll.chunk_size, coll.chunk_overlap, w->chunk_size, w->chunk_overlap);
    if (e == RAGD_ENOTFOUND) {
        e = validate_settings(w);
        if (e)
            return e;
    }
    if (w->n_docs > 0 && !w->docs)
        return fail(w, RAGD_EINVAL, "no documents");
    size_t total = 0;
    for (size_t i = 0; i < w->n_docs; i++) {
        e = validate_doc(st, w, &w->docs[i], w->dim);
        if (e)
            return e;
        if (w->docs[i].n_chunks > SIZE_MAX / 4 - total)
            return fail(w, RAGD_ETOOBIG, "too many chunks in one write");
        total += w->docs[i].n_chunks;
    }
    if (!exists) {
        e = insert_collection(st, w, &coll);
        if (e)
            return e;
        c->changed = true;
    }
    c->coll_id = coll.id;
    c->dim = coll.dim;
    e = change_alloc(w, c, w->n_docs, total);
    if (e)
        goto out;
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    scratch = malloc((size_t)c->dim * sizeof *scratch);
    if (!scratch) {
        e = fail(w, RAGD_ENOMEM, "out of memory");
        goto out;
    }
#endif
    char now[32];
    clock_utc_rfc3339(now, sizeof now);
    int64_t chunks_before = w->chunks_written, docs_inserted = 0;
    for (size_t i = 0; i < w->n_docs; i++) {
        e = write_doc(st, w, c, &w->docs[i], now, scratch);
        if (e)
            goto out;
        docs_inserted += w->docs[i].result == STORE_DOC_INSERTED;
    }
    e = add_counts(st, w, c->coll_id, docs_inserted, w->chunks_written - chunks_before);
    if (e)
        goto out;
    if (c->changed) {
        e = bump_version(st, w, c->coll_id);
        if (e)
            goto out;
    }
    e = refresh_coll(st, w);
out:
    free(scratch);
    return e;
}

static ragd_err do_create(store *st, store_write *w, wchange *c)
{
    store_collection coll;
    ragd_err e = find_collection(st, w->collection, &coll);
    if (e == RAGD_EIO)
        return fail_sql(st, w, "looking the collection up");
    if (e == RAGD_OK) {
        if (strcmp(coll.embed_model, w->embed_model) != 0 || coll.dim != w->dim ||
            coll.chunk_size != w->chunk_size || coll.chunk_overlap != w->chunk_overlap)
            return fail(w, RAGD_ECONFLICT,
                        "collection '%.64s' exists with other settings (embed model '%.80s', dim %d, "
                        "chunk_size %d, chunk_overlap %d)",
                        w->collection, coll.embed_model, coll.dim, coll.chunk_size, coll.chunk_overlap);
        return refresh_coll(st, w);
    }
    e = validate_settings(w);
    if (e)
        return e;
    e = insert_collection(st, w, &coll);
    if (e)
        return e;
    c->changed = true;
    c->coll_id = coll.id;
    c->dim = coll.dim;
    e = bump_version(st, w, coll.id);
    if (e)
        return e;
    return refresh_coll(st, w);
}

static ragd_err do_drop(store *st, store_write *w, wchange *c)
{
    ragd_err e = existing_collection(st, w, &w->coll);
    if (e)
        return e;
    sqlite3_bind_int64(st->ws.coll_delete, 1, w->coll.id);
    if (step_done(st->ws.coll_delete) != SQLITE_DONE)
        return fail_sql(st, w, "dropping the collection");
    c->changed = true;
    c->dropped = true;
    c->coll_id = w->coll.id;
    c->dim = w->coll.dim;
    return RAGD_OK;
}

static ragd_err do_delete_doc(store *st, store_write *w, wchange *c)
{
    store_collection coll;
    if (!w->doc_id || !w->doc_id[0])
        return fail(w, RAGD_EINVAL, "no document id");
    ragd_err e = existing_collection(st, w, &coll);
    if (e)
        return e;

    sqlite3_stmt *s = st->ws.doc_lookup;
    sqlite3_bind_int64(s, 1, coll.id);
    sqlite3_bind_text(s, 2, w->doc_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    int64_t rowid = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    finish(s);
    if (rc == SQLITE_DONE)
        return fail(w, RAGD_ENOTFOUND, "document '%.100s' does not exist in '%.64s'", w->doc_id, w->collection);
    if (rc != SQLITE_ROW)
        return fail_sql(st, w, "looking a document up");

    sqlite3_bind_int64(st->ws.doc_delete, 1, rowid);
    if (step_done(st->ws.doc_delete) != SQLITE_DONE)
        return fail_sql(st, w, "deleting a document");
    c->coll_id = coll.id;
    c->dim = coll.dim;
    c->removed = malloc(sizeof *c->removed);
    if (!c->removed)
        return fail(w, RAGD_ENOMEM, "out of memory");
    c->removed[0] = rowid;
    c->n_removed = 1;
    c->changed = true;
    e = bump_version(st, w, coll.id);
    if (e)
        return e;
    return refresh_coll(st, w);
}

/* ---------------------------------------------------------------- re-embedding */

/* The re-embedding writes (docs/internals/reembed.md). They run rarely (one per batch of
 * vectors), so their statements are prepared per use rather than kept. */

/* Prepares sql on the write connection; on failure fails the write. */
static ragd_err rx_prepare(store *st, store_write *w, const char *sql, sqlite3_stmt **s)
{
    if (sqlite3_prepare_v2(st->wdb, sql, -1, s, NULL) != SQLITE_OK) {
        *s = NULL;
        return fail_sql(st, w, "preparing a re-embedding statement");
    }
    return RAGD_OK;
}

/* Runs a statement that returns no row with one or two int64 parameters (and finalizes it). */
static ragd_err rx_exec(store *st, store_write *w, const char *sql, int64_t a, int64_t b, const char *what)
{
    sqlite3_stmt *s = NULL;
    ragd_err e = rx_prepare(st, w, sql, &s);
    if (e)
        return e;
    sqlite3_bind_int64(s, 1, a);
    if (sqlite3_bind_parameter_count(s) >= 2)
        sqlite3_bind_int64(s, 2, b);
    if (sqlite3_step(s) != SQLITE_DONE)
        e = fail_sql(st, w, what);
    sqlite3_finalize(s);
    return e;
}

typedef struct {
    int64_t id;
    int64_t coll_id;
    int dim;
    char state[16];
    char model[STORE_MODEL_MAX + 1];
} rx_job;

/* The collection's job: RAGD_OK, RAGD_ENOTFOUND (none; nothing written to w), or a failure
 * (w failed). */
static ragd_err rx_job_of(store *st, store_write *w, int64_t coll_id, rx_job *out)
{
    sqlite3_stmt *s = NULL;
    ragd_err e = rx_prepare(st, w, "SELECT id, collection_id, dim, state, model FROM reembed_jobs"
                                   " WHERE collection_id = ?1", &s);
    if (e)
        return e;
    sqlite3_bind_int64(s, 1, coll_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        out->id = sqlite3_column_int64(s, 0);
        out->coll_id = sqlite3_column_int64(s, 1);
        out->dim = sqlite3_column_int(s, 2);
        store__copy_col(s, 3, out->state, sizeof out->state);
        store__copy_col(s, 4, out->model, sizeof out->model);
        e = RAGD_OK;
    } else if (rc == SQLITE_DONE) {
        e = RAGD_ENOTFOUND;
    } else {
        e = fail_sql(st, w, "reading the re-embedding job");
    }
    sqlite3_finalize(s);
    return e;
}

/* The collection of w and its running job w->job_id; RAGD_ENOTFOUND (w failed) when either
 * is gone or the job is not the one running. */
static ragd_err rx_running_job(store *st, store_write *w, store_collection *coll, rx_job *job)
{
    ragd_err e = existing_collection(st, w, coll);
    if (e)
        return e;
    e = rx_job_of(st, w, coll->id, job);
    if (e == RAGD_ENOTFOUND || (e == RAGD_OK && (job->id != w->job_id || strcmp(job->state, "running") != 0)))
        return fail(w, RAGD_ENOTFOUND, "re-embedding job %lld of '%.64s' is not running any more",
                    (long long)w->job_id, w->collection);
    return e;
}

static ragd_err do_reembed_start(store *st, store_write *w)
{
    store_collection coll;
    rx_job job;
    ragd_err e = existing_collection(st, w, &coll);
    if (e)
        return e;
    if (!w->embed_model[0] || strlen(w->embed_model) > STORE_MODEL_MAX || !w->embedder[0])
        return fail(w, RAGD_EINVAL, "embedder and model must be given (model 1..%d bytes)", STORE_MODEL_MAX);
    e = rx_job_of(st, w, coll.id, &job);
    if (e != RAGD_OK && e != RAGD_ENOTFOUND)
        return e;
    bool exists = e == RAGD_OK;
    if (exists && strcmp(job.state, "running") == 0)
        return fail(w, RAGD_ECONFLICT,
                    "collection '%.64s' is being re-embedded to '%.100s' already; cancel that job first",
                    w->collection, job.model);
    if (strcmp(coll.embed_model, w->embed_model) == 0)
        return fail(w, RAGD_EINVAL, "collection '%.64s' is already embedded with '%.100s'", w->collection,
                    w->embed_model);
    char now[32];
    clock_utc_rfc3339(now, sizeof now);
    sqlite3_stmt *s = NULL;
    if (exists && strcmp(job.state, "failed") == 0 && strcmp(job.model, w->embed_model) == 0) {
        /* the failed job again: the vectors it stored are kept, it goes on from there */
        e = rx_prepare(st, w, "UPDATE reembed_jobs SET state = 'running', error = '', embedder = ?2,"
                              " updated_at = ?3 WHERE id = ?1", &s);
        if (e)
            return e;
        sqlite3_bind_int64(s, 1, job.id);
        sqlite3_bind_text(s, 2, w->embedder, -1, SQLITE_STATIC);
        sqlite3_bind_text(s, 3, now, -1, SQLITE_STATIC);
        if (sqlite3_step(s) != SQLITE_DONE)
            e = fail_sql(st, w, "restarting the re-embedding job");
        sqlite3_finalize(s);
        w->job_id = job.id;
        return e ? e : refresh_coll(st, w);
    }
    e = rx_exec(st, w, "DELETE FROM reembed_vectors WHERE collection_id = ?1", coll.id, 0, "dropping old new vectors");
    if (!e)
        e = rx_exec(st, w, "DELETE FROM reembed_jobs WHERE collection_id = ?1", coll.id, 0, "dropping the old job");
    if (e)
        return e;
    e = rx_prepare(st, w, "INSERT INTO reembed_jobs(collection_id, embedder, model, dim, state, started_at,"
                          " updated_at) VALUES (?1, ?2, ?3, 0, 'running', ?4, ?4)", &s);
    if (e)
        return e;
    sqlite3_bind_int64(s, 1, coll.id);
    sqlite3_bind_text(s, 2, w->embedder, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, w->embed_model, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, now, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE)
        e = fail_sql(st, w, "creating the re-embedding job");
    sqlite3_finalize(s);
    if (e)
        return e;
    w->job_id = sqlite3_last_insert_rowid(st->wdb);
    return refresh_coll(st, w);
}

static ragd_err do_reembed_vectors(store *st, store_write *w)
{
    store_collection coll;
    rx_job job;
    ragd_err e = rx_running_job(st, w, &coll, &job);
    if (e)
        return e;
    if (w->dim < 1 || w->dim > 65536)
        return fail(w, RAGD_EINVAL, "dim must be 1..65536, not %d", w->dim);
    if (job.dim != 0 && job.dim != w->dim)
        return fail(w, RAGD_ECONFLICT, "the embedder gave vectors of dimension %d, earlier batches %d", w->dim,
                    job.dim);
    if (w->n_vectors > 0 && (!w->chunk_ids || !w->vectors))
        return fail(w, RAGD_EINVAL, "chunk ids or vectors missing");
    size_t dim = (size_t)w->dim;
    if (w->n_vectors > SIZE_MAX / sizeof(float) / dim)
        return fail(w, RAGD_ETOOBIG, "too many vectors in one write");
    for (size_t i = 0; i < w->n_vectors * dim; i++)
        if (!isfinite(w->vectors[i]))
            return fail(w, RAGD_EINVAL, "a new vector has a non-finite value");
    uint32_t *scratch = NULL;
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
    scratch = malloc(dim * sizeof *scratch);
    if (!scratch)
        return fail(w, RAGD_ENOMEM, "out of memory");
#endif
    sqlite3_stmt *s = NULL;
    /* only chunks that still exist: one deleted meanwhile is skipped, not an error */
    e = rx_prepare(st, w, "INSERT OR REPLACE INTO reembed_vectors(chunk_id, collection_id, embedding)"
                          " SELECT id, collection_id, ?2 FROM chunks WHERE id = ?1 AND collection_id = ?3", &s);
    for (size_t i = 0; !e && i < w->n_vectors; i++) {
        sqlite3_bind_int64(s, 1, w->chunk_ids[i]);
        bind_vector(s, 2, w->vectors + i * dim, w->dim, scratch);
        sqlite3_bind_int64(s, 3, coll.id);
        if (step_done(s) != SQLITE_DONE)
            e = fail_sql(st, w, "storing a new vector");
        else
            w->chunks_written += sqlite3_changes(st->wdb) > 0;
    }
    sqlite3_finalize(s);
    free(scratch);
    if (!e) /* same format as clock_utc_rfc3339 */
        e = rx_exec(st, w, "UPDATE reembed_jobs SET dim = ?2, updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now')"
                           " WHERE id = ?1", job.id, w->dim, "noting the progress");
    return e ? e : refresh_coll(st, w);
}

static ragd_err do_reembed_fail(store *st, store_write *w)
{
    store_collection coll;
    rx_job job;
    ragd_err e = rx_running_job(st, w, &coll, &job);
    if (e)
        return e;
    char now[32];
    clock_utc_rfc3339(now, sizeof now);
    sqlite3_stmt *s = NULL;
    e = rx_prepare(st, w, "UPDATE reembed_jobs SET state = 'failed', error = substr(?2, 1, 255), updated_at = ?3"
                          " WHERE id = ?1", &s);
    if (e)
        return e;
    sqlite3_bind_int64(s, 1, job.id);
    sqlite3_bind_text(s, 2, w->error ? w->error : "failed", -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, now, -1, SQLITE_STATIC);
    if (sqlite3_step(s) != SQLITE_DONE)
        e = fail_sql(st, w, "marking the re-embedding job failed");
    sqlite3_finalize(s);
    return e ? e : refresh_coll(st, w);
}

static ragd_err do_reembed_cancel(store *st, store_write *w)
{
    store_collection coll;
    rx_job job;
    ragd_err e = existing_collection(st, w, &coll);
    if (e)
        return e;
    e = rx_job_of(st, w, coll.id, &job);
    if (e == RAGD_ENOTFOUND)
        return fail(w, RAGD_ENOTFOUND, "collection '%.64s' has no re-embedding job", w->collection);
    if (e)
        return e;
    w->job_id = job.id;
    snprintf(w->embed_model, sizeof w->embed_model, "%s", job.model);
    e = rx_exec(st, w, "DELETE FROM reembed_vectors WHERE collection_id = ?1", coll.id, 0, "dropping the new vectors");
    if (!e)
        e = rx_exec(st, w, "DELETE FROM reembed_jobs WHERE id = ?1", job.id, 0, "dropping the job");
    return e ? e : refresh_coll(st, w);
}

/* Reads every chunk of the collection with its new vector into the change (for the hook). */
static ragd_err rx_collect(store *st, store_write *w, wchange *c, int64_t coll_id, int64_t n, int dim)
{
    size_t cap = n > 0 ? (size_t)n : 1;
    if (cap > SIZE_MAX / sizeof(float) / (size_t)dim)
        return fail(w, RAGD_ETOOBIG, "too many chunks to swap");
    c->chunk_ids = malloc(cap * sizeof *c->chunk_ids);
    c->chunk_docs = malloc(cap * sizeof *c->chunk_docs);
    c->vectors = malloc(cap * sizeof *c->vectors);
    c->swap_vectors = malloc(cap * (size_t)dim * sizeof *c->swap_vectors);
    if (!c->chunk_ids || !c->chunk_docs || !c->vectors || !c->swap_vectors)
        return fail(w, RAGD_ENOMEM, "out of memory for the swap (%lld chunks of dimension %d)", (long long)n, dim);
    sqlite3_stmt *s = NULL;
    ragd_err e = rx_prepare(st, w, "SELECT c.id, c.document_id, r.embedding FROM chunks c"
                                   " JOIN reembed_vectors r ON r.chunk_id = c.id WHERE c.collection_id = ?1", &s);
    if (e)
        return e;
    sqlite3_bind_int64(s, 1, coll_id);
    int rc;
    size_t bytes = (size_t)dim * sizeof(float);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        const void *blob = sqlite3_column_blob(s, 2);
        if (c->n_chunks == cap || !blob || (size_t)sqlite3_column_bytes(s, 2) != bytes) {
            e = fail(w, RAGD_EIO, "store: a new vector has the wrong size, or the chunk count changed");
            break;
        }
        size_t k = c->n_chunks++;
        c->chunk_ids[k] = sqlite3_column_int64(s, 0);
        c->chunk_docs[k] = sqlite3_column_int64(s, 1);
        float *row = c->swap_vectors + k * (size_t)dim;
        memcpy(row, blob, bytes);
        c->vectors[k] = row;
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
        uint32_t *u = (uint32_t *)row;
        for (int i = 0; i < dim; i++)
            u[i] = __builtin_bswap32(u[i]);
#endif
    }
    if (!e && rc != SQLITE_DONE)
        e = fail_sql(st, w, "reading the new vectors");
    sqlite3_finalize(s);
    return e;
}

static ragd_err do_reembed_swap(store *st, store_write *w, wchange *c)
{
    store_collection coll;
    rx_job job;
    ragd_err e = rx_running_job(st, w, &coll, &job);
    if (e)
        return e;
    sqlite3_stmt *s = NULL;
    e = rx_prepare(st, w, "SELECT count(*) FROM chunks c WHERE c.collection_id = ?1 AND NOT EXISTS"
                          " (SELECT 1 FROM reembed_vectors r WHERE r.chunk_id = c.id)", &s);
    if (e)
        return e;
    sqlite3_bind_int64(s, 1, coll.id);
    if (sqlite3_step(s) == SQLITE_ROW)
        w->missing = sqlite3_column_int64(s, 0);
    else
        e = fail_sql(st, w, "counting chunks without a new vector");
    sqlite3_finalize(s);
    if (e)
        return e;
    if (w->missing > 0)
        return fail(w, RAGD_EBUSY, "%lld chunks of '%.64s' have no new vector yet", (long long)w->missing,
                    w->collection);
    /* the dim of the stored batches; else (no chunk was embedded) the runner's, else the old */
    int dim = job.dim > 0 ? job.dim : w->dim > 0 && w->dim <= 65536 ? w->dim : coll.dim;
    c->coll_id = coll.id;
    c->dim = dim;
    e = rx_collect(st, w, c, coll.id, coll.chunks, dim);
    if (!e)
        e = rx_exec(st, w, "UPDATE chunks SET embedding = (SELECT r.embedding FROM reembed_vectors r"
                           " WHERE r.chunk_id = chunks.id) WHERE collection_id = ?1", coll.id, 0,
                    "replacing the vectors");
    if (e)
        return e;
    e = rx_prepare(st, w, "UPDATE collections SET embed_model = ?2, dim = ?3 WHERE id = ?1", &s);
    if (e)
        return e;
    sqlite3_bind_int64(s, 1, coll.id);
    sqlite3_bind_text(s, 2, job.model, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, dim);
    if (sqlite3_step(s) != SQLITE_DONE)
        e = fail_sql(st, w, "switching the collection's model");
    sqlite3_finalize(s);
    if (!e)
        e = rx_exec(st, w, "DELETE FROM reembed_vectors WHERE collection_id = ?1", coll.id, 0,
                    "dropping the swapped vectors");
    if (!e)
        e = rx_exec(st, w, "UPDATE reembed_jobs SET state = 'done', dim = ?2,"
                           " updated_at = strftime('%Y-%m-%dT%H:%M:%SZ', 'now') WHERE id = ?1", job.id, dim,
                    "finishing the job");
    if (e)
        return e;
    c->changed = true;
    c->reembedded = true;
    e = bump_version(st, w, coll.id);
    return e ? e : refresh_coll(st, w);
}

/* ---------------------------------------------------------------- groups */

static void reset_result(store_write *w)
{
    w->status = RAGD_OK;
    w->message[0] = '\0';
    w->created = false;
    memset(&w->coll, 0, sizeof w->coll);
    w->chunks_written = 0;
    w->missing = 0;
}

static ragd_err apply_kind(store *st, store_write *w, wchange *c)
{
    switch (w->kind) {
    case STORE_W_INGEST: return do_ingest(st, w, c);
    case STORE_W_CREATE_COLLECTION: return do_create(st, w, c);
    case STORE_W_DROP_COLLECTION: return do_drop(st, w, c);
    case STORE_W_DELETE_DOCUMENT: return do_delete_doc(st, w, c);
    case STORE_W_REEMBED_START: return do_reembed_start(st, w);
    case STORE_W_REEMBED_VECTORS: return do_reembed_vectors(st, w);
    case STORE_W_REEMBED_FAIL: return do_reembed_fail(st, w);
    case STORE_W_REEMBED_CANCEL: return do_reembed_cancel(st, w);
    case STORE_W_REEMBED_SWAP: return do_reembed_swap(st, w, c);
    }
    return fail(w, RAGD_EINVAL, "unknown write kind %d", (int)w->kind);
}

/* Undoes a failed write. One inside a savepoint is rolled back to it; when even that fails,
 * or the write ran without a savepoint (the first of its transaction, apply_one), the whole
 * transaction is rolled back, so that a half-applied write can never be committed with the
 * group (the group loop sees the transaction gone, fails the writes before this one too —
 * none, for a first write — and begins a new one for the rest). Returns true when even
 * the ROLLBACK failed (it needs memory too) and the open transaction may still hold the
 * write's changes: nothing more may be applied or committed in it. */
static bool undo_one(store *st, store_write *w, wchange *c, bool savepoint)
{
    bool stuck = false;
    if (savepoint && sqlite3_exec(st->wdb, "ROLLBACK TO w", NULL, NULL, NULL) == SQLITE_OK) {
        sqlite3_exec(st->wdb, "RELEASE w", NULL, NULL, NULL);
    } else if (!sqlite3_get_autocommit(st->wdb)) {
        if (savepoint)
            log_error("store: cannot roll a failed write back (%s): rolling back its group", sqlite3_errmsg(st->wdb));
        sqlite3_exec(st->wdb, "ROLLBACK", NULL, NULL, NULL);
        stuck = !sqlite3_get_autocommit(st->wdb);
    }
    memset(&w->coll, 0, sizeof w->coll);
    w->chunks_written = 0;
    w->created = false;
    change_discard(st, c);
    return stuck;
}

/* Shows a change to the hook before it commits (STORE_CHANGE_PREPARE). */
static ragd_err prepare_change(store *st, store_write *w, wchange *c)
{
    if (!c->changed || !st->ghook)
        return RAGD_OK;
    store_change ch = change_view(c, STORE_CHANGE_PREPARE);
    ragd_err e = st->ghook(&ch, st->ghook_arg);
    if (e)
        return fail(w, e, "store: the vector index cannot take this change: %s", ragd_strerror(e));
    c->prepared = true;
    return RAGD_OK;
}

/* Runs one write; on failure its effects are rolled back and its change discarded. A write
 * that is not the first of its transaction runs inside a savepoint, so that its failure
 * does not sink the writes before it. The first runs without one (first == true): rolling
 * the whole transaction back undoes it alone, and a savepoint would cost a copy of every
 * page the write changes that existed before it (the sub-journal; past 64 KiB SQLite puts
 * it in a temporary file: 16 MiB of extra writes for the 18.5 MB ingest of BENCHMARKS.md,
 * where most groups hold one write). Returns true when the failed write could not be
 * rolled back (undo_one). */
static bool apply_one(store *st, store_write *w, wchange *c, bool first)
{
    reset_result(w);
    if (!store__valid_name(w->collection)) {
        fail(w, RAGD_EINVAL, "collection name must be 1..%d of [A-Za-z0-9_.-], not starting with '.'",
             STORE_NAME_MAX);
        return false;
    }
    if (!first && sqlite3_exec(st->wdb, "SAVEPOINT w", NULL, NULL, NULL) != SQLITE_OK) {
        fail_sql(st, w, "savepoint");
        return false;
    }
    ragd_err e = apply_kind(st, w, c);
    if (e == RAGD_OK)
        e = prepare_change(st, w, c);
    if (e == RAGD_OK) {
        if (first || sqlite3_exec(st->wdb, "RELEASE w", NULL, NULL, NULL) == SQLITE_OK)
            return false;
        fail_sql(st, w, "release");
    }
    return undo_one(st, w, c, !first);
}

/* Marks writes [0, n) that had succeeded as failed (e, why): their transaction is gone.
 * Returns how many it marked. */
static size_t fail_succeeded(store *st, store_write **group, wchange *changes, size_t n, ragd_err e, const char *why)
{
    size_t failed = 0;
    for (size_t i = 0; i < n; i++) {
        if (group[i]->status != RAGD_OK)
            continue;
        failed++;
        fail(group[i], e, "%s", why);
        group[i]->chunks_written = 0;
        group[i]->created = false;
        change_discard(st, &changes[i]);
    }
    return failed;
}

/* BEGIN IMMEDIATE; on failure sets why and *e (sql_failure).
 *
 * A transaction still open here is one whose ROLLBACK failed (rolling back needs memory
 * too): its writes were all reported failed, so it is rolled back now. Without this the
 * connection stayed inside it and every later write failed with "cannot start a
 * transaction within a transaction" until a restart (found by the torture pass in
 * persistent mode, docs/testing.md). */
static bool begin_group(store *st, char *why, size_t whylen, ragd_err *e)
{
    if (!sqlite3_get_autocommit(st->wdb)) {
        log_warn("store: a failed group's transaction is still open; rolling it back");
        sqlite3_exec(st->wdb, "ROLLBACK", NULL, NULL, NULL);
    }
    if (sqlite3_exec(st->wdb, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK)
        return true;
    *e = sql_failure(st, "beginning a transaction", why, whylen);
    return false;
}

/* Applies and commits a group. Returns true when a transaction committed. A write that
 * fails for want of memory fails with RAGD_ENOMEM (the client may retry), for want of
 * space with RAGD_ENOSPC, any other failure of the transaction with RAGD_EIO. */
static bool run_group(store *st, store_write **group, wchange *changes, size_t n)
{
    char why[sizeof group[0]->message];
    ragd_err why_e = RAGD_EIO;
    bool in_tx = begin_group(st, why, sizeof why, &why_e);
    size_t tx_first = 0; /* the first write of the current transaction */
    for (size_t i = 0; i < n; i++) {
        if (!in_tx) {
            reset_result(group[i]);
            fail(group[i], why_e, "%s", why);
            continue;
        }
        if (apply_one(st, group[i], &changes[i], i == tx_first)) {
            /* The failed write is still in the open transaction: fail every write of it
             * and apply no more; the next group's begin_group rolls it back. */
            snprintf(why, sizeof why, "store: a failing write of the same transaction could not be rolled back: %.160s",
                     group[i]->message);
            why_e = group[i]->status;
            fail_succeeded(st, group, changes, i + 1, why_e, why);
            in_tx = false;
            continue;
        }
        if (sqlite3_get_autocommit(st->wdb)) {
            /* SQLite rolled the whole transaction back (it does on SQLITE_FULL, NOMEM and
             * I/O errors): the writes before this one are lost too. Tell them, with this
             * write's cause, and go on with the rest in a new transaction. */
            ragd_err cause = group[i]->status != RAGD_OK ? group[i]->status : store__sql_error(st->wdb);
            snprintf(why, sizeof why, "store: rolled back with a failing write of the same transaction: %.180s",
                     group[i]->message[0] ? group[i]->message : sqlite3_errmsg(st->wdb));
            size_t lost = fail_succeeded(st, group, changes, i + 1, cause, why);
            if (lost)
                log_error("store: %zu earlier write(s) of the group %s", lost, why);
            in_tx = begin_group(st, why, sizeof why, &why_e);
            tx_first = i + 1;
        }
    }
    if (!in_tx)
        return false;
    if (sqlite3_exec(st->wdb, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        why_e = sql_failure(st, "committing", why, sizeof why);
        log_error("%s", why);
        if (!sqlite3_get_autocommit(st->wdb))
            sqlite3_exec(st->wdb, "ROLLBACK", NULL, NULL, NULL);
        fail_succeeded(st, group, changes, n, why_e, why);
        return false;
    }
    return true;
}

/* After a group: a write refused for lack of space marks the store full (for /health);
 * one that committed a change clears that. The database size is refreshed. */
static void note_space(store *st, store_write **group, wchange *changes, size_t n, bool committed)
{
    bool nospace = false, wrote = false;
    for (size_t i = 0; i < n; i++) {
        if (group[i]->status == RAGD_ENOSPC)
            nospace = true;
        else if (committed && group[i]->status == RAGD_OK && changes[i].changed)
            wrote = true;
    }
    int64_t pages = store__page_count(st);
    pthread_mutex_lock(&st->mu);
    if (pages > 0)
        st->used_pages = pages;
    if (nospace) {
        if (!st->full)
            log_warn("store: disk full: %s", st->nospace);
        st->full = true;
        snprintf(st->full_message, sizeof st->full_message, "disk full: %s", st->nospace);
    } else if (wrote && st->full) {
        st->full = false;
        log_info("store: writes succeed again; no longer full");
    }
    pthread_mutex_unlock(&st->mu);
}

/* The writer checkpoints the WAL between groups once it holds this many bytes of pages
 * (SQLite's own automatic checkpoint did it inside the COMMIT that passed 1000 frames, 4 MB
 * of 4 KiB pages), when no write is waiting; past STORE_CKPT_FORCE_BYTES it checkpoints
 * even with writes waiting, so a steady stream of them cannot grow the WAL without bound.
 * In bytes, not frames, since files differ in page size (4 KiB before schema 7's builds,
 * 16 KiB since). */
#define STORE_CKPT_BYTES (1000 * 4096)
#define STORE_CKPT_FORCE_BYTES (8000 * 4096)

int store__wal_hook(void *arg, sqlite3 *db, const char *name, int frames)
{
    ((store *)arg)->wal_frames = frames;
    return SQLITE_OK;
}

/* A PASSIVE checkpoint after a group's callbacks, off the acknowledgement's path: the client
 * already has its answer and the workers prepare the next writes meanwhile. Like SQLite's
 * automatic one it waits for no reader; a failure (busy, disk full) leaves the WAL as it is
 * for the next try. */
static void writer_checkpoint(store *st)
{
    int64_t wal_bytes = (int64_t)st->wal_frames * st->page_size;
    if (wal_bytes < STORE_CKPT_BYTES)
        return;
    pthread_mutex_lock(&st->mu);
    bool waiting = !queue_empty(&st->queue);
    pthread_mutex_unlock(&st->mu);
    if (waiting && wal_bytes < STORE_CKPT_FORCE_BYTES)
        return;
    int rc = sqlite3_wal_checkpoint_v2(st->wdb, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY)
        log_warn("store: checkpoint failed: %s", sqlite3_errmsg(st->wdb));
    st->wal_frames = 0; /* the next commit says how large the WAL is now */
}

void *store__writer_main(void *arg)
{
    store *st = arg;
    for (;;) {
        pthread_mutex_lock(&st->mu);
        while (queue_empty(&st->queue) && !st->closing)
            pthread_cond_wait(&st->wcond, &st->mu);
        if (queue_empty(&st->queue)) {
            pthread_mutex_unlock(&st->mu);
            break; /* closing and drained */
        }
        size_t n = 0;
        queue_node *q;
        while (n < st->opt.max_group && (q = queue_pop(&st->queue)) != NULL)
            st->wgroup[n++] = queue_data(q, store_write, link_);
        st->qlen -= n;
        st->ghook = st->hook;
        st->ghook_arg = st->hook_arg;
        pthread_mutex_unlock(&st->mu);

        bool committed = run_group(st, st->wgroup, st->wchanges, n);
        note_space(st, st->wgroup, st->wchanges, n, committed);

        pthread_mutex_lock(&st->mu);
        if (committed)
            st->write_groups++;
        st->writes += n;
        pthread_mutex_unlock(&st->mu);

        for (size_t i = 0; i < n; i++) {
            store_write *w = st->wgroup[i];
            wchange *c = &st->wchanges[i];
            if (w->status == RAGD_OK && c->changed && st->ghook) {
                store_change ch = change_view(c, STORE_CHANGE_COMMITTED);
                (void)st->ghook(&ch, st->ghook_arg); /* PREPARE took what it needs */
                wchange_reset(c);
            } else {
                change_discard(st, c);
            }
            st->wgroup[i] = NULL;
            w->done(w, w->arg); /* may free w: not touched after this */
        }
        writer_checkpoint(st);
    }
    return NULL;
}
