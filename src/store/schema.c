/* Schema and forward migrations. PRAGMA user_version holds the version of the file; each
 * step below moves it one version forward and is never edited once released: a schema
 * change is a new step appended to the array. */
#include <stdio.h>

#include "store/store_int.h"

typedef struct {
    int version; /* the version the file has after this step */
    const char *sql;
} migration;

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
     " END;"},
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
