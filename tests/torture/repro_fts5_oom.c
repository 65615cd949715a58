/* A reproducer, with SQLite alone, of what the torture pass found in the store's writer:
 * when an allocation fails inside an FTS5 insert (external-content table, kept in step by
 * triggers) and the write is rolled back to its savepoint, the next write on the same
 * connection fails with SQLITE_CORRUPT_VTAB ("database disk image is malformed"), though
 * the file is intact: FTS5's integrity-check passes and the write after it succeeds.
 * Seen with SQLite 3.40.1 (Debian 12). src/store/writer.c retries such a write once.
 *
 *   cc -O1 -g -o /tmp/repro_fts5_oom tests/torture/repro_fts5_oom.c -lsqlite3 && /tmp/repro_fts5_oom
 *
 * Not built by make: it is evidence for a report upstream, not a test of ragd. */
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DB "/tmp/repro_fts5_oom.db"

static sqlite3_mem_methods def;
static long countdown = -1; /* fail when it reaches 0 */
static void *xm(int n) { if (countdown >= 0 && countdown-- == 0) return NULL; return def.xMalloc(n); }
static void *xr(void *p, int n) { if (countdown >= 0 && countdown-- == 0) return NULL; return def.xRealloc(p, n); }
static void xf(void *p) { def.xFree(p); }
static int xs(void *p) { return def.xSize(p); }
static int xru(int n) { return def.xRoundup(n); }
static int xi(void *a) { return def.xInit(a); }
static void xsd(void *a) { def.xShutdown(a); }

static const char *schema =
    "CREATE TABLE docs(id INTEGER PRIMARY KEY, doc_id TEXT UNIQUE, text TEXT);"
    "CREATE TABLE chunks(id INTEGER PRIMARY KEY AUTOINCREMENT, document_id INTEGER REFERENCES docs(id) ON DELETE CASCADE, text TEXT);"
    "CREATE VIRTUAL TABLE chunks_fts USING fts5(text, content='chunks', content_rowid='id', tokenize='porter unicode61');"
    "CREATE TRIGGER chunks_ai AFTER INSERT ON chunks BEGIN INSERT INTO chunks_fts(rowid, text) VALUES (new.id, new.text); END;"
    "CREATE TRIGGER chunks_ad AFTER DELETE ON chunks BEGIN INSERT INTO chunks_fts(chunks_fts, rowid, text) VALUES ('delete', old.id, old.text); END;";

/* One "replace" of doc 1 inside BEGIN IMMEDIATE / SAVEPOINT w: delete its chunks, insert 4 new ones. */
static int replace(sqlite3 *db, int v, int fail_at)
{
    char sql[4096];
    int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", 0, 0, 0);
    if (rc) return -1;
    sqlite3_exec(db, "SAVEPOINT w", 0, 0, 0);
    countdown = fail_at;
    rc = sqlite3_exec(db, "DELETE FROM chunks WHERE document_id = 1", 0, 0, 0);
    for (int i = 0; rc == SQLITE_OK && i < 4; i++) {
        snprintf(sql, sizeof sql, "INSERT INTO chunks(document_id, text) VALUES (1, 'version %d chunk %d amber birch cobalt dune ember fjord glacier harbour marker x%dx%d')", v, i, v, i);
        rc = sqlite3_exec(db, sql, 0, 0, 0);
    }
    countdown = -1;
    int xrc = sqlite3_extended_errcode(db);
    if (rc == SQLITE_OK) {
        sqlite3_exec(db, "RELEASE w", 0, 0, 0);
    } else {
        if (sqlite3_exec(db, "ROLLBACK TO w", 0, 0, 0) == SQLITE_OK) sqlite3_exec(db, "RELEASE w", 0, 0, 0);
    }
    sqlite3_exec(db, "COMMIT", 0, 0, 0);
    return rc == SQLITE_OK ? 0 : xrc;
}

int main(void)
{
    sqlite3_config(SQLITE_CONFIG_GETMALLOC, &def);
    static sqlite3_mem_methods m;
    m = (sqlite3_mem_methods){xm, xf, xr, xs, xru, xi, xsd, 0};
    sqlite3_config(SQLITE_CONFIG_MALLOC, &m);
    printf("sqlite %s\n", sqlite3_libversion());
    int found = 0;
    for (int k = 0; k < 3000 && found < 3; k++) {
        remove(DB); remove(DB "-wal"); remove(DB "-shm");
        sqlite3 *db;
        sqlite3_open(DB, &db);
        sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;", 0, 0, 0);
        sqlite3_exec(db, schema, 0, 0, 0);
        sqlite3_exec(db, "INSERT INTO docs VALUES (1, 'd', 't')", 0, 0, 0);
        replace(db, 0, -1);            /* version 0, no failure */
        int r1 = replace(db, 1, k);    /* version 1, allocation k fails */
        int r2 = replace(db, 2, -1);   /* version 2, no failure */
        if (r1 == 0 && r2 == 0 && k > 2000) break;
        if (r2 != 0) {
            printf("allocation %d failed: that write %s; the next write fails with %d (%s)\n", k,
                   r1 ? "failed" : "succeeded", r2, sqlite3_errstr(r2));
            int r3 = replace(db, 3, -1);
            char *msg = 0;
            int ic = sqlite3_exec(db, "INSERT INTO chunks_fts(chunks_fts, rank) VALUES('integrity-check', 1)", 0, 0, &msg);
            printf("  the write after that: %s; FTS5 integrity-check: %s\n", r3 ? sqlite3_errstr(r3) : "ok",
                   ic ? msg : "ok");
            sqlite3_free(msg);
            found++;
        }
        sqlite3_close(db);
    }
    if (!found) printf("no stale-state corruption found\n");
    return 0;
}
