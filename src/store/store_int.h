#ifndef RAGD_STORE_STORE_INT_H
#define RAGD_STORE_STORE_INT_H

/* Internals shared by the files of src/store/ (store.c: open/close/pool/stats/submit,
 * schema.c: migrations, writer.c: the writer thread, read.c: queries, backup.c: the online
 * copy). Nothing outside src/store/ includes this header. */

#include <pthread.h>
#include <sqlite3.h>

#include "store/store.h"

/* How long a connection waits on a lock held by another connection before SQLITE_BUSY. */
#define STORE__BUSY_TIMEOUT_MS 5000
/* The write connection's page cache, KiB (PRAGMA cache_size=-N): room for one ingest
 * group's pages, so a transaction does not spill to the WAL before its COMMIT. */
#define STORE_WRITER_CACHE_KIB "8192"
#define STORE_NEW_PAGE_SIZE "16384" /* bytes, for files created by this build */

#define STORE__READER_STMTS 24

struct store_reader {
    store *st;
    sqlite3 *db;
    struct {
        const char *sql; /* a literal's address: the statement's name */
        sqlite3_stmt *s;
    } stmts[STORE__READER_STMTS]; /* kept between uses (read.c: stmt_get / stmt_done) */
    size_t n_stmts;
};

/* The writer's prepared statements (prepared once at open, used only on the writer thread). */
typedef struct {
    sqlite3_stmt *coll_by_name;
    sqlite3_stmt *coll_insert;
    sqlite3_stmt *coll_bump;
    sqlite3_stmt *coll_counts_add;
    sqlite3_stmt *coll_delete;
    sqlite3_stmt *doc_lookup;
    sqlite3_stmt *doc_insert;
    sqlite3_stmt *doc_update;
    sqlite3_stmt *doc_delete;
    sqlite3_stmt *chunks_delete;
    sqlite3_stmt *chunk_insert;
    sqlite3_stmt *json_check;
    sqlite3_stmt *page_count;
} store__wstmts;

struct store {
    store_options opt;
    char *path;

    sqlite3 *wdb;     /* the write connection, owned by the writer thread once it runs */
    store__wstmts ws;
    store_write **wgroup;              /* max_group slots: the group being committed */
    struct store__wchange *wchanges;   /* max_group slots: what each write of it changed */

    pthread_mutex_t mu;
    pthread_cond_t wcond; /* the writer waits here for work or closing */
    pthread_cond_t rcond; /* readers wait here for a free connection */

    /* Write queue (FIFO), guarded by mu. */
    queue_node queue; /* writes waiting for the writer, FIFO, guarded by mu */
    size_t qlen;
    bool closing;
    pthread_t writer;
    bool writer_started;

    /* Read pool, guarded by mu: readers[] owns the connections, free_[] stacks the idle ones. */
    store_reader *readers;
    store_reader **free_;
    size_t n_readers;
    size_t n_free;

    /* Statistics, guarded by mu. */
    uint64_t acquires;
    uint64_t waits;
    double wait_ms_total;
    uint64_t write_groups;
    uint64_t writes;

    store_commit_hook hook; /* guarded by mu; read by the writer per group */
    void *hook_arg;

    /* Space. page_size and quota_pages are set at open and read-only after. */
    int page_size;
    int64_t quota_pages;   /* effective PRAGMA max_page_count, 0 = no quota */
    char nospace[200];     /* writer thread only: why the last RAGD_ENOSPC of a group */
    bool full;             /* guarded by mu: see store_space */
    char full_message[256];
    int64_t used_pages;    /* guarded by mu: page_count after the last commit */

    store_commit_hook ghook; /* the group's copy of hook (writer thread only) */
    void *ghook_arg;

    int wal_frames; /* writer thread only: frames in the WAL after the last commit */
};

/* schema.c: applies every pending migration on db (the write connection) in one
 * transaction. Refuses a file whose user_version is newer than this build's. */
ragd_err store__migrate(sqlite3 *db, char *err, size_t errlen);

/* writer.c: prepares the writer's statements on st->wdb and its group buffers /
 * releases them (safe on a half-prepared store). */
ragd_err store__writer_prepare(store *st, char *err, size_t errlen);
void store__writer_finalize(store *st);
/* writer.c: the database's size in pages, read on the write connection; -1 on failure. */
int64_t store__page_count(store *st);
/* writer.c: the write connection's WAL hook (arg is the store). It notes the WAL's size
 * for the writer's checkpoints between groups; installing it turns SQLite's automatic
 * checkpoint inside COMMIT off. */
int store__wal_hook(void *arg, sqlite3 *db, const char *name, int frames);
/* writer.c: the writer thread's body (arg is the store). */
void *store__writer_main(void *arg);

/* Whether an errno means "no room to store": ENOSPC (the filesystem is full), EFBIG (the file
 * reached the process's RLIMIT_FSIZE, `ulimit -f`) or EDQUOT (a disk quota). */
bool store__errno_is_nospace(int e);
/* The errno that says db's last I/O error was for want of room (ENOSPC, EFBIG, EDQUOT: from
 * sqlite3_system_errno, else, when the error is a write's, from this thread's last file
 * write), or 0. */
int store__nospace_errno(sqlite3 *db);
/* The ragd_err for the last error on db: RAGD_ENOMEM when SQLite ran out of memory (the
 * caller answers 503, the request may be retried), RAGD_ENOSPC when the disk or the quota is
 * full, the file-size limit or a disk quota reached (an I/O error whose errno
 * store__errno_is_nospace) (507), else RAGD_EIO. */
ragd_err store__sql_error(sqlite3 *db);

/* One integer from a statement that returns one row (a PRAGMA, a count); -1 when it
 * fails. Used by store.c at open and by backup.c on the copy. */
int64_t store__query_int(sqlite3 *db, const char *sql);

/* read.c / writer.c: collection name rule of the API (1..64 of [A-Za-z0-9_.-], no leading '.'). */
bool store__valid_name(const char *name);
/* Copies a column's text into a fixed buffer (truncating, always NUL-terminated). */
void store__copy_col(sqlite3_stmt *s, int col, char *dst, size_t dstlen);
/* Fills a store_collection from a row of STORE__COLL_COLS starting at column 0. */
void store__collection_from_row(sqlite3_stmt *s, store_collection *out);

/* The column list that store__collection_from_row expects. */
#define STORE__COLL_COLS                                                                           \
    "id, name, embed_model, dim, chunk_size, chunk_overlap, version, created_at, documents, chunks"

#endif
