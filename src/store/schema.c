/* Schema and forward migrations. PRAGMA user_version holds the version of the file; each
 * step below moves it one version forward and is never edited once released: a schema
 * change is a new step appended to the array. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/store_int.h"
#include "text/doccontext.h"

typedef struct {
    int version; /* the version the file has after this step */
    const char *sql;
    /* Run after sql, in the same transaction, for what SQL cannot compute; NULL if none. */
    ragd_err (*fill)(sqlite3 *db, char *err, size_t errlen);
} migration;

static ragd_err fill_context(sqlite3 *db, char *err, size_t errlen);

static const migration migrations[] = {
    {1,
     "CREATE TABLE collections("
     " id INTEGER PRIMARY KEY AUTOINCREMENT,"
     " name TEXT NOT NULL UNIQUE,"
     " embed_model TEXT NOT NULL,"
     " dim INTEGER NOT NULL,"
     " chunk_size INTEGER NOT NULL,"
     " chunk_overlap INTEGER NOT NULL,"
     " version INTEGER NOT NULL DEFAULT 0,"
     " created_at TEXT NOT NULL,"
     " documents INTEGER NOT NULL DEFAULT 0," /* maintained by the triggers below */
     " chunks INTEGER NOT NULL DEFAULT 0);"
     "CREATE TABLE documents("
     " id INTEGER PRIMARY KEY AUTOINCREMENT,"
     " collection_id INTEGER NOT NULL REFERENCES collections(id) ON DELETE CASCADE,"
     " doc_id TEXT NOT NULL,"
     " content_hash TEXT NOT NULL,"
     " metadata TEXT NOT NULL DEFAULT '{}',"
     " source TEXT,"
     " text TEXT NOT NULL,"
     " version INTEGER NOT NULL DEFAULT 1,"
     " created_at TEXT NOT NULL,"
     " updated_at TEXT NOT NULL,"
     " UNIQUE(collection_id, doc_id));"
     "CREATE TABLE chunks("
     " id INTEGER PRIMARY KEY AUTOINCREMENT,"
     " document_id INTEGER NOT NULL REFERENCES documents(id) ON DELETE CASCADE,"
     " collection_id INTEGER NOT NULL,"
     " ordinal INTEGER NOT NULL,"
     " start INTEGER NOT NULL,"
     " \"end\" INTEGER NOT NULL,"
     " text TEXT NOT NULL,"
     " embedding BLOB);"
     "CREATE INDEX chunks_by_document ON chunks(document_id, ordinal);"
     "CREATE INDEX chunks_by_collection ON chunks(collection_id);"
     /* External-content FTS5: the text lives once, in chunks; the triggers keep the index in
      * step, also for rows that go through ON DELETE CASCADE (those fire DELETE triggers). */
     "CREATE VIRTUAL TABLE chunks_fts USING fts5("
     " text, content='chunks', content_rowid='id', tokenize='porter unicode61');"
     "CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN"
     " INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);"
     " END;"
     "CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN"
     " INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);"
     " END;"
     "CREATE TRIGGER chunks_au AFTER UPDATE OF text ON chunks BEGIN"
     " INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text);"
     " INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text);"
     " END;"
     /* Counts kept in the collection row so that reading a collection costs O(1), not a
      * scan of its chunks (it is read on every query). */
     "CREATE TRIGGER chunks_count_ai AFTER INSERT ON chunks BEGIN"
     " UPDATE collections SET chunks = chunks + 1 WHERE id = new.collection_id;"
     " END;"
     "CREATE TRIGGER chunks_count_ad AFTER DELETE ON chunks BEGIN"
     " UPDATE collections SET chunks = chunks - 1 WHERE id = old.collection_id;"
     " END;"
     "CREATE TRIGGER documents_count_ai AFTER INSERT ON documents BEGIN"
     " UPDATE collections SET documents = documents + 1 WHERE id = new.collection_id;"
     " END;"
     "CREATE TRIGGER documents_count_ad AFTER DELETE ON documents BEGIN"
     " UPDATE collections SET documents = documents - 1 WHERE id = old.collection_id;"
     " END;",
     NULL},
    /* 2: context for the keyword index (docs/internals/kindex.md): each document's title,
     * each chunk's markdown heading path. Existing rows get them computed by fill_context
     * from what is stored. */
    {2,
     "ALTER TABLE documents ADD COLUMN title TEXT NOT NULL DEFAULT '';"
     "ALTER TABLE chunks ADD COLUMN heading TEXT NOT NULL DEFAULT '';",
     fill_context},
    /* 3: keyword search moved to the in-memory index (src/index/kindex.c), which loads
     * from chunks, documents.title and chunks.heading; the FTS5 index was read by nothing
     * any more and cost every write. Dropping the external-content table drops its shadow
     * tables; their pages go to the free list and are reused by later writes (no VACUUM:
     * that would rewrite the whole file inside start-up). */
    {3,
     "DROP TRIGGER IF EXISTS chunks_ai;"
     "DROP TRIGGER IF EXISTS chunks_ad;"
     "DROP TRIGGER IF EXISTS chunks_au;"
     "DROP TABLE IF EXISTS chunks_fts;",
     NULL},
    /* 4: the prompt-injection screen's verdict on each chunk, taken at ingest
     * (docs/internals/fence.md): its score (0..1) and the rule that fired, and whether it was
     * quarantined (kept, listed, never retrieved for a prompt). Rows from before are
     * unscored: score 0, not quarantined. The partial index serves the quarantine listing. */
    {4,
     "ALTER TABLE chunks ADD COLUMN injection_score REAL NOT NULL DEFAULT 0;"
     "ALTER TABLE chunks ADD COLUMN injection_rule TEXT;"
     "ALTER TABLE chunks ADD COLUMN quarantined INTEGER NOT NULL DEFAULT 0;"
     "CREATE INDEX chunks_quarantined ON chunks(collection_id, document_id, ordinal) WHERE quarantined = 1;",
     NULL},
    /* 5: re-embedding a collection in the background (docs/internals/reembed.md): at most one
     * job per collection, and the new vectors built so far, one row per chunk. A chunk
     * deleted during the job takes its new vector with it (ON DELETE CASCADE); the swap copies
     * the new vectors into chunks.embedding and empties reembed_vectors. */
    {5,
     "CREATE TABLE reembed_jobs("
     " id INTEGER PRIMARY KEY AUTOINCREMENT,"
     " collection_id INTEGER NOT NULL UNIQUE REFERENCES collections(id) ON DELETE CASCADE,"
     " embedder TEXT NOT NULL,"
     " model TEXT NOT NULL,"
     " dim INTEGER NOT NULL DEFAULT 0,"
     " state TEXT NOT NULL,"
     " error TEXT NOT NULL DEFAULT '',"
     " started_at TEXT NOT NULL,"
     " updated_at TEXT NOT NULL);"
     "CREATE TABLE reembed_vectors("
     " chunk_id INTEGER PRIMARY KEY REFERENCES chunks(id) ON DELETE CASCADE,"
     " collection_id INTEGER NOT NULL,"
     " embedding BLOB NOT NULL);"
     "CREATE INDEX reembed_vectors_by_collection ON reembed_vectors(collection_id);",
     NULL},
    /* 6: page numbers (docs/internals/text.md): the 1-based page of a PDF chunk's first
     * byte and of its last; NULL for chunks of documents without pages (every earlier row). */
    {6,
     "ALTER TABLE chunks ADD COLUMN page INTEGER;"
     "ALTER TABLE chunks ADD COLUMN page_end INTEGER;",
     NULL},
    /* 7: the writer adds an ingest's documents and chunks to collections.documents/chunks
     * with one UPDATE per write (writer.c, add_counts) instead of a trigger per inserted row.
     * A statement that fires a trigger needs a statement journal, and inside the write's
     * SAVEPOINT that journal kept a copy of every page each chunk INSERT touched (~5 pages a
     * chunk) until the write's RELEASE: past 64 KiB in a temporary file, ~3/4 of all the
     * bytes an ingest wrote (BENCHMARKS.md, "Writer thread and SQLite"). The DELETE triggers
     * stay: a DELETE of many rows has a statement journal anyway, and they also count the
     * rows ON DELETE CASCADE removes. */
    {7,
     "DROP TRIGGER IF EXISTS chunks_count_ai;"
     "DROP TRIGGER IF EXISTS documents_count_ai;",
     NULL},
};

#define N_MIGRATIONS (sizeof migrations / sizeof migrations[0])

/* Schema version this build writes: the last migration's. */
int store_schema_version(void) { return migrations[N_MIGRATIONS - 1].version; }

static int read_user_version(sqlite3 *db, int *out)
{
    sqlite3_stmt *s = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &s, NULL);
    if (rc == SQLITE_OK) {
        rc = sqlite3_step(s);
        if (rc == SQLITE_ROW) {
            *out = sqlite3_column_int(s, 0);
            rc = SQLITE_OK;
        }
    }
    sqlite3_finalize(s);
    return rc;
}

ragd_err store__migrate(sqlite3 *db, char *err, size_t errlen)
{
    ragd_err e = RAGD_EIO;
    bool in_tx = false;
    int current = 0;
    char *emsg = NULL;

    /* IMMEDIATE: two processes starting on one file must not both migrate it. */
    if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot begin migration: %s", sqlite3_errmsg(db));
        goto out;
    }
    in_tx = true;
    if (read_user_version(db, &current) != SQLITE_OK) {
        snprintf(err, errlen, "cannot read schema version: %s", sqlite3_errmsg(db));
        goto out;
    }
    if (current > store_schema_version()) {
        snprintf(err, errlen,
                 "database schema version %d is newer than this build supports (%d); "
                 "use a newer ragd or another data file",
                 current, store_schema_version());
        e = RAGD_ECONFLICT;
        goto out;
    }
    if (current < 0) {
        snprintf(err, errlen, "database schema version %d is not valid", current);
        e = RAGD_EINVAL;
        goto out;
    }
    for (size_t i = 0; i < N_MIGRATIONS; i++) {
        if (migrations[i].version <= current)
            continue;
        if (sqlite3_exec(db, migrations[i].sql, NULL, NULL, &emsg) != SQLITE_OK) {
            snprintf(err, errlen, "migration to schema version %d failed: %s", migrations[i].version,
                     emsg ? emsg : sqlite3_errmsg(db));
            goto out;
        }
        if (migrations[i].fill) {
            e = migrations[i].fill(db, err, errlen);
            if (e)
                goto out;
            e = RAGD_EIO;
        }
        /* PRAGMA takes no bound parameter; the number is our own constant. */
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", migrations[i].version);
        if (sqlite3_exec(db, sql, NULL, NULL, &emsg) != SQLITE_OK) {
            snprintf(err, errlen, "cannot set schema version: %s", emsg ? emsg : sqlite3_errmsg(db));
            goto out;
        }
    }
    if (sqlite3_exec(db, "COMMIT", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot commit migration: %s", sqlite3_errmsg(db));
        goto out;
    }
    in_tx = false;
    e = RAGD_OK;
out:
    sqlite3_free(emsg);
    if (in_tx)
        sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return e;
}

/* ---------------------------------------------------------------- version 2's fill */

static bool has_suffix(const char *s, const char *suffix)
{
    size_t n = s ? strlen(s) : 0, m = strlen(suffix);
    return n >= m && strcasecmp(s + n - m, suffix) == 0;
}

/* Headings of one markdown document's chunks, written to chunks.heading. */
static ragd_err fill_headings(sqlite3 *db, sqlite3_stmt *sel, sqlite3_stmt *upd, int64_t doc, const char *text,
                              size_t len)
{
    int64_t *ids = NULL, *starts = NULL;
    size_t n = 0, cap = 0;
    char **paths = NULL;
    ragd_err e = RAGD_OK;
    sqlite3_bind_int64(sel, 1, doc);
    int rc;
    while ((rc = sqlite3_step(sel)) == SQLITE_ROW) {
        if (n == cap) {
            cap = cap ? cap * 2 : 64;
            int64_t *a = realloc(ids, cap * sizeof *a);
            if (a)
                ids = a;
            int64_t *b = a ? realloc(starts, cap * sizeof *b) : NULL;
            if (!b) {
                e = RAGD_ENOMEM;
                goto out;
            }
            starts = b;
        }
        ids[n] = sqlite3_column_int64(sel, 0);
        starts[n++] = sqlite3_column_int64(sel, 1);
    }
    if (rc != SQLITE_DONE) {
        e = store__sql_error(db);
        goto out;
    }
    e = doccontext_headings(text, len, starts, n, &paths);
    for (size_t i = 0; !e && i < n; i++) {
        if (!paths[i][0])
            continue;
        sqlite3_bind_text(upd, 1, paths[i], -1, SQLITE_STATIC);
        sqlite3_bind_int64(upd, 2, ids[i]);
        rc = sqlite3_step(upd);
        sqlite3_reset(upd);
        if (rc != SQLITE_DONE)
            e = store__sql_error(db);
    }
out:
    sqlite3_reset(sel);
    doccontext_paths_free(paths, n);
    free(ids);
    free(starts);
    return e;
}

/* Titles and heading paths for the documents of a file from before version 2, derived the
 * way ingest derives them (text/doccontext.h) from what was stored: the metadata's "title";
 * for a source ending in .html/.htm the text's first paragraph, which is where ingest put
 * the page's <title>; for .md/.markdown the first heading, and the chunks' heading paths;
 * the file name of the source, or of the id when the client chose it (an id equal to the
 * content hash was made by ragd); the first line. A markdown document ingested without a
 * source (a raw text/markdown body) cannot be told from plain text and gets no headings. */
static ragd_err fill_context(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *docs = NULL, *set_title = NULL, *chunks = NULL, *set_heading = NULL;
    ragd_err e = RAGD_EIO;
    int rc = sqlite3_prepare_v2(db,
                                "SELECT id, doc_id, content_hash, source, text,"
                                " CASE WHEN json_type(metadata, '$.title') = 'text'"
                                " THEN json_extract(metadata, '$.title') END FROM documents",
                                -1, &docs, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "UPDATE documents SET title = ?1 WHERE id = ?2", -1, &set_title, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "SELECT id, start FROM chunks WHERE document_id = ?1 ORDER BY ordinal", -1,
                                &chunks, NULL);
    if (rc == SQLITE_OK)
        rc = sqlite3_prepare_v2(db, "UPDATE chunks SET heading = ?1 WHERE id = ?2", -1, &set_heading, NULL);
    if (rc != SQLITE_OK) {
        e = store__sql_error(db);
        snprintf(err, errlen, "migration to schema version 2: %s", sqlite3_errmsg(db));
        goto out;
    }
    while ((rc = sqlite3_step(docs)) == SQLITE_ROW) {
        int64_t id = sqlite3_column_int64(docs, 0);
        const char *doc_id = (const char *)sqlite3_column_text(docs, 1);
        const char *hash = (const char *)sqlite3_column_text(docs, 2);
        const char *source = (const char *)sqlite3_column_text(docs, 3);
        const char *text = (const char *)sqlite3_column_text(docs, 4);
        size_t text_len = (size_t)sqlite3_column_bytes(docs, 4);
        const char *meta_title = (const char *)sqlite3_column_text(docs, 5);
        doccontext_in in = {
            .meta_title = meta_title,
            .meta_title_len = meta_title ? strlen(meta_title) : 0,
            .text = text ? text : "",
            .text_len = text ? text_len : 0,
            .markdown = has_suffix(source, ".md") || has_suffix(source, ".markdown"),
            .source = source,
            .id = doc_id && hash && strcmp(doc_id, hash) != 0 ? doc_id : NULL,
        };
        if (has_suffix(source, ".html") || has_suffix(source, ".htm")) {
            const char *para = text ? strstr(text, "\n\n") : NULL;
            in.html_title = in.text;
            in.html_title_len = para ? (size_t)(para - text) : in.text_len;
        }
        char *title = NULL;
        e = doccontext_title(&in, &title);
        if (e) {
            snprintf(err, errlen, "migration to schema version 2: %s", ragd_strerror(e));
            goto out;
        }
        sqlite3_bind_text(set_title, 1, title, -1, free);
        sqlite3_bind_int64(set_title, 2, id);
        rc = sqlite3_step(set_title);
        sqlite3_reset(set_title);
        if (rc == SQLITE_DONE && in.markdown)
            e = fill_headings(db, chunks, set_heading, id, in.text, in.text_len);
        else if (rc != SQLITE_DONE)
            e = store__sql_error(db);
        if (e) {
            snprintf(err, errlen, "migration to schema version 2: %s (%s)", ragd_strerror(e), sqlite3_errmsg(db));
            goto out;
        }
    }
    if (rc != SQLITE_DONE) {
        e = store__sql_error(db);
        snprintf(err, errlen, "migration to schema version 2: %s", sqlite3_errmsg(db));
        goto out;
    }
    e = RAGD_OK;
out:
    sqlite3_finalize(docs);
    sqlite3_finalize(set_title);
    sqlite3_finalize(chunks);
    sqlite3_finalize(set_heading);
    return e;
}
