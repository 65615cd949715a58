/* The store's lifetime: open (pragmas, migrations, read pool, writer thread), close, the
 * read pool, statistics and the write queue. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"
#include "util/clock.h"
#include "util/log.h"

/* ---------------------------------------------------------------- shared helpers */

bool store__valid_name(const char *name)
{
    if (!name || name[0] == '\0' || name[0] == '.')
        return false;
    size_t n = 0;
    for (const char *p = name; *p; p++, n++) {
        char c = *p;
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '.' || c == '-';
        if (!ok || n >= STORE_NAME_MAX)
            return false;
    }
    return true;
}

/* SQLite's unix VFS keeps the errno of a failed write to itself: sqlite3_system_errno is not
 * set on every path (a failing COMMIT leaves it 0). So its write calls are wrapped, and each
 * notes the errno of this thread's last write (0 when it succeeded); store__sql_error reads
 * it right after the failing call, on the same thread. */
static _Thread_local int store_write_errno;
static sqlite3_syscall_ptr real_write, real_pwrite, real_pwrite64, real_ftruncate;

/* Notes the errno of a write call's result r (0 when it succeeded) and returns r. */
static ssize_t note_write_errno(ssize_t r)
{
    store_write_errno = r < 0 ? errno : 0;
    return r;
}

static ssize_t sys_write(int fd, const void *p, size_t n)
{
    return note_write_errno(((ssize_t(*)(int, const void *, size_t))real_write)(fd, p, n));
}

static ssize_t sys_pwrite(int fd, const void *p, size_t n, off_t off)
{
    return note_write_errno(((ssize_t(*)(int, const void *, size_t, off_t))real_pwrite)(fd, p, n, off));
}

static ssize_t sys_pwrite64(int fd, const void *p, size_t n, off64_t off)
{
    return note_write_errno(((ssize_t(*)(int, const void *, size_t, off64_t))real_pwrite64)(fd, p, n, off));
}

static int sys_ftruncate(int fd, off_t len)
{
    return (int)note_write_errno(((int (*)(int, off_t))real_ftruncate)(fd, len));
}

/* Puts mine in place of the default VFS's system call `name`; *real keeps SQLite's. */
static void wrap_syscall(sqlite3_vfs *v, const char *name, sqlite3_syscall_ptr mine, sqlite3_syscall_ptr *real)
{
    sqlite3_syscall_ptr was = v->xGetSystemCall(v, name);
    if (!was)
        return;
    *real = was;
    if (v->xSetSystemCall(v, name, mine) != SQLITE_OK)
        *real = NULL;
}

static void wrap_writes(void)
{
    sqlite3_vfs *v = sqlite3_vfs_find(NULL);
    if (!v || v->iVersion < 3 || !v->xGetSystemCall || !v->xSetSystemCall)
        return;
    wrap_syscall(v, "write", (sqlite3_syscall_ptr)sys_write, &real_write);
    wrap_syscall(v, "pwrite", (sqlite3_syscall_ptr)sys_pwrite, &real_pwrite); /* whichever the build uses */
    wrap_syscall(v, "pwrite64", (sqlite3_syscall_ptr)sys_pwrite64, &real_pwrite64);
    wrap_syscall(v, "ftruncate", (sqlite3_syscall_ptr)sys_ftruncate, &real_ftruncate);
}

static pthread_once_t wrap_writes_once = PTHREAD_ONCE_INIT;

bool store__errno_is_nospace(int e) { return e == ENOSPC || e == EFBIG || e == EDQUOT; }

/* Whether db's last error is a failed write system call's (the wrapped ones above). */
static bool store_error_is_write(sqlite3 *db)
{
    int rc = sqlite3_extended_errcode(db);
    return rc == SQLITE_IOERR_WRITE || rc == SQLITE_IOERR_TRUNCATE || rc == SQLITE_IOERR_SHMSIZE;
}

int store__nospace_errno(sqlite3 *db)
{
    int e = sqlite3_system_errno(db);
    if (store__errno_is_nospace(e))
        return e;
    /* the noted errno is the failing write's only when the error is a write's: after any
     * other I/O error (a read, an fsync) it is that of an earlier write, maybe a failed one */
    if (!store_error_is_write(db))
        return 0;
    return store__errno_is_nospace(store_write_errno) ? store_write_errno : 0;
}

ragd_err store__sql_error(sqlite3 *db)
{
    int rc = sqlite3_extended_errcode(db);
    if (rc == SQLITE_NOMEM || rc == SQLITE_IOERR_NOMEM)
        return RAGD_ENOMEM;
    /* the filesystem is full, or the database would pass max_page_count (RAGD_MAX_DB_BYTES):
     * SQLite does not tell which */
    if ((rc & 0xff) == SQLITE_FULL)
        return RAGD_ENOSPC;
    /* SQLite's unix VFS says SQLITE_FULL only for ENOSPC: a write past the file-size limit
     * (EFBIG) or a disk quota (EDQUOT) comes as an I/O error */
    if ((rc & 0xff) == SQLITE_IOERR && store__nospace_errno(db) != 0)
        return RAGD_ENOSPC;
    return RAGD_EIO;
}

void store__copy_col(sqlite3_stmt *s, int col, char *dst, size_t dstlen)
{
    const unsigned char *t = sqlite3_column_text(s, col);
    snprintf(dst, dstlen, "%s", t ? (const char *)t : "");
}

void store__collection_from_row(sqlite3_stmt *s, store_collection *out)
{
    memset(out, 0, sizeof *out);
    out->id = sqlite3_column_int64(s, 0);
    store__copy_col(s, 1, out->name, sizeof out->name);
    store__copy_col(s, 2, out->embed_model, sizeof out->embed_model);
    out->dim = sqlite3_column_int(s, 3);
    out->chunk_size = sqlite3_column_int(s, 4);
    out->chunk_overlap = sqlite3_column_int(s, 5);
    out->version = sqlite3_column_int64(s, 6);
    store__copy_col(s, 7, out->created_at, sizeof out->created_at);
    out->documents = sqlite3_column_int64(s, 8);
    out->chunks = sqlite3_column_int64(s, 9);
}

/* ---------------------------------------------------------------- open / close */

static sqlite3 *open_conn(const char *path, int flags, char *err, size_t errlen)
{
    sqlite3 *db = NULL;
    /* NOMUTEX: a connection is used by one thread at a time (the writer, or a reader's
     * borrower), which the pool and the writer thread guarantee. */
    int rc = sqlite3_open_v2(path, &db, flags | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", path, db ? sqlite3_errmsg(db) : sqlite3_errstr(rc));
        sqlite3_close(db);
        return NULL;
    }
    sqlite3_extended_result_codes(db, 1);
    sqlite3_busy_timeout(db, STORE__BUSY_TIMEOUT_MS);
    return db;
}

static ragd_err exec_const(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *emsg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &emsg) != SQLITE_OK) {
        snprintf(err, errlen, "%s: %s", sql, emsg ? emsg : sqlite3_errmsg(db));
        sqlite3_free(emsg);
        return RAGD_EIO;
    }
    return RAGD_OK;
}

/* Switches db to WAL and checks that it took (it does not for :memory: or some VFSes). */
static ragd_err set_wal(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *s = NULL;
    ragd_err e = RAGD_EIO;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &s, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "journal_mode: %s", sqlite3_errmsg(db));
        goto out;
    }
    if (sqlite3_step(s) != SQLITE_ROW) {
        snprintf(err, errlen, "journal_mode: %s", sqlite3_errmsg(db));
        goto out;
    }
    const unsigned char *mode = sqlite3_column_text(s, 0);
    if (!mode || strcmp((const char *)mode, "wal") != 0) {
        snprintf(err, errlen, "cannot switch the database to WAL mode (got %s)", mode ? (const char *)mode : "?");
        goto out;
    }
    e = RAGD_OK;
out:
    sqlite3_finalize(s);
    return e;
}

/* Closes the write connection, which must be the last one open on the database: SQLite
 * checkpoints the WAL and deletes it only when the last connection closes and can write (a
 * read-only connection cannot checkpoint, and a close that cannot take the exclusive lock
 * — another process has the file open — leaves the WAL as it is). The TRUNCATE checkpoint
 * before the close empties the WAL even in that second case, and reports why when it
 * cannot (full disk: the WAL then stays, and the next open recovers it). */
static void close_writer(store *st)
{
    int wal_frames = -1, done_frames = -1;
    int rc = sqlite3_wal_checkpoint_v2(st->wdb, NULL, SQLITE_CHECKPOINT_TRUNCATE, &wal_frames, &done_frames);
    if (rc != SQLITE_OK)
        log_warn("store: checkpoint at close failed: %s; the WAL stays and is recovered at the next open",
                 sqlite3_errmsg(st->wdb));
    if (sqlite3_close(st->wdb) != SQLITE_OK) {
        log_error("store: closing the write connection: %s", sqlite3_errmsg(st->wdb));
        return;
    }
    char wal[1300];
    struct stat sb;
    snprintf(wal, sizeof wal, "%s-wal", st->path);
    if (rc == SQLITE_OK && stat(wal, &sb) == 0 && sb.st_size > 0)
        log_warn("store: %s is still %lld bytes after the close (another process has the database open?)", wal,
                 (long long)sb.st_size);
}

static void close_all(store *st)
{
    store__writer_finalize(st);
    for (size_t i = 0; i < st->n_readers; i++) {
        for (size_t j = 0; j < st->readers[i].n_stmts; j++) /* kept statements (read.c) */
            sqlite3_finalize(st->readers[i].stmts[j].s);
        if (st->readers[i].db && sqlite3_close(st->readers[i].db) != SQLITE_OK)
            log_error("store: closing a read connection: %s", sqlite3_errmsg(st->readers[i].db));
    }
    if (st->wdb)
        close_writer(st);
    free(st->readers);
    free(st->free_);
    pthread_cond_destroy(&st->rcond);
    pthread_cond_destroy(&st->wcond);
    pthread_mutex_destroy(&st->mu);
    free(st->path);
    free(st);
}

/* store_int.h */
int64_t store__query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *s = NULL;
    int64_t v = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &s, NULL) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW)
        v = sqlite3_column_int64(s, 0);
    sqlite3_finalize(s);
    return v;
}

/* Page size, and the quota as PRAGMA max_page_count on the write connection (per
 * connection, so readers are not limited; it never goes below the current size). */
static ragd_err set_quota(store *st, char *err, size_t errlen)
{
    int64_t page_size = store__query_int(st->wdb, "PRAGMA page_size");
    if (page_size < 512) {
        snprintf(err, errlen, "store: cannot read the page size: %s", sqlite3_errmsg(st->wdb));
        return RAGD_EIO;
    }
    st->page_size = (int)page_size;
    if (st->opt.max_db_bytes == 0)
        return RAGD_OK;
    uint64_t want = st->opt.max_db_bytes / (uint64_t)page_size;
    if (want < 1)
        want = 1;
    if (want > INT32_MAX)
        want = INT32_MAX; /* SQLite's own ceiling on pages */
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA max_page_count = %llu", (unsigned long long)want);
    int64_t got = store__query_int(st->wdb, sql);
    if (got < 1) {
        snprintf(err, errlen, "store: cannot set max_page_count: %s", sqlite3_errmsg(st->wdb));
        return RAGD_EIO;
    }
    st->quota_pages = got;
    if ((uint64_t)got > want)
        log_warn("store: the database (%lld bytes) is already larger than the quota of %llu bytes; writes that need "
                 "more room will fail until data is deleted",
                 (long long)(got * page_size), (unsigned long long)st->opt.max_db_bytes);
    return RAGD_OK;
}

void store_configure_process(void)
{
    /* SQLITE_MISUSE when SQLite is initialised already (a test's allocator hooks): then the
     * statistics stay on, which costs speed only */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    pthread_once(&wrap_writes_once, wrap_writes);
}

ragd_err store_open(const store_options *opt, store **out, char *err, size_t errlen)
{
    ragd_err e = RAGD_EINVAL;
    store *st = NULL;
    *out = NULL;
    if (errlen)
        err[0] = '\0';
    pthread_once(&wrap_writes_once, wrap_writes); /* before the first connection */

    if (!opt || !opt->path || !opt->path[0]) {
        snprintf(err, errlen, "store: no database path");
        goto out;
    }
    if (opt->read_conns < 1 || opt->read_conns > 1024 || opt->max_queue < 1 || opt->max_group < 1) {
        snprintf(err, errlen, "store: read_conns must be 1..1024, max_queue and max_group >= 1");
        goto out;
    }
    if (!sqlite3_threadsafe()) {
        snprintf(err, errlen, "store: this SQLite library is built without thread support");
        goto out;
    }
    e = RAGD_ENOMEM;
    st = calloc(1, sizeof *st);
    if (!st)
        goto out;
    st->opt = *opt;
    st->path = strdup(opt->path);
    st->readers = calloc(opt->read_conns, sizeof *st->readers);
    st->free_ = calloc(opt->read_conns, sizeof *st->free_);
    if (!st->path || !st->readers || !st->free_) {
        free(st->path);
        free(st->readers);
        free(st->free_);
        free(st);
        st = NULL;
        goto out;
    }
    st->opt.path = st->path;
    pthread_mutex_init(&st->mu, NULL);
    queue_init(&st->queue);
    pthread_cond_init(&st->wcond, NULL);
    pthread_cond_init(&st->rcond, NULL);

    e = RAGD_EIO;
    st->wdb = open_conn(st->path, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, err, errlen);
    if (!st->wdb)
        goto out;
    /* 16 KiB pages for a new file (a no-op on an existing one, which keeps its own): a chunk
     * row (~0.8 KB of text + a 2 KB float32 vector at 512 dimensions) alone on a 4 KiB page
     * left a quarter of it empty. Ingesting 18.5 MB of text: the file 125 -> 115 MiB, the
     * bytes written 250 -> 234 MiB (BENCHMARKS.md, "Writer thread and SQLite"). */
    if (exec_const(st->wdb, "PRAGMA page_size=" STORE_NEW_PAGE_SIZE, err, errlen))
        goto out;
    if (set_wal(st->wdb, err, errlen))
        goto out;
    if (exec_const(st->wdb, st->opt.synchronous_full ? "PRAGMA synchronous=FULL" : "PRAGMA synchronous=NORMAL",
                   err, errlen))
        goto out;
    if (exec_const(st->wdb, "PRAGMA foreign_keys=ON", err, errlen))
        goto out;
    /* A page cache for a whole ingest group (the default 2 MiB spilled dirty pages to the
     * WAL mid-transaction), and the WAL checkpointed by the writer between groups instead
     * of inside a COMMIT (writer.c, writer_checkpoint). */
    if (exec_const(st->wdb, "PRAGMA cache_size=-" STORE_WRITER_CACHE_KIB, err, errlen))
        goto out;
    sqlite3_wal_hook(st->wdb, store__wal_hook, st);
    e = store__migrate(st->wdb, err, errlen);
    if (e)
        goto out;
    e = set_quota(st, err, errlen); /* after the migrations: the schema always fits */
    if (e)
        goto out;
    e = store__writer_prepare(st, err, errlen);
    if (e)
        goto out;
    st->used_pages = store__page_count(st);

    e = RAGD_EIO;
    for (size_t i = 0; i < opt->read_conns; i++) {
        st->readers[i].st = st;
        st->readers[i].db = open_conn(st->path, SQLITE_OPEN_READONLY, err, errlen);
        st->n_readers = i + 1;
        if (!st->readers[i].db)
            goto out;
        st->free_[st->n_free++] = &st->readers[i];
    }

    if (pthread_create(&st->writer, NULL, store__writer_main, st) != 0) {
        snprintf(err, errlen, "store: cannot start the writer thread");
        goto out;
    }
    st->writer_started = true;
    (void)pthread_setname_np(st->writer, "ragd-writer"); /* for top -H, ps -L, perf */
    char quota[64] = "no quota";
    if (st->quota_pages)
        snprintf(quota, sizeof quota, "quota %lld bytes", (long long)(st->quota_pages * st->page_size));
    log_info("store: opened %s (schema v%d, %zu read connections, synchronous=%s, %lld bytes, %s)", st->path,
             store_schema_version(), st->n_readers, st->opt.synchronous_full ? "FULL" : "NORMAL",
             (long long)(st->used_pages * st->page_size), quota);
    *out = st;
    st = NULL;
    e = RAGD_OK;
out:
    if (st)
        close_all(st);
    return e;
}

void store_close(store *st)
{
    if (!st)
        return;
    pthread_mutex_lock(&st->mu);
    st->closing = true;
    pthread_cond_broadcast(&st->wcond);
    pthread_cond_broadcast(&st->rcond);
    size_t in_use = st->n_readers - st->n_free;
    pthread_mutex_unlock(&st->mu);
    if (st->writer_started)
        pthread_join(st->writer, NULL);
    if (in_use)
        log_error("store: closing with %zu read connections still borrowed", in_use);
    close_all(st);
}

/* ---------------------------------------------------------------- read pool */

store_reader *store_reader_acquire(store *st)
{
    store_reader *r = NULL;
    pthread_mutex_lock(&st->mu);
    if (st->closing)
        goto out;
    st->acquires++;
    if (st->n_free == 0) {
        st->waits++;
        double t0 = clock_now_ms();
        while (st->n_free == 0 && !st->closing)
            pthread_cond_wait(&st->rcond, &st->mu);
        st->wait_ms_total += clock_now_ms() - t0;
        if (st->closing)
            goto out;
    }
    r = st->free_[--st->n_free];
out:
    pthread_mutex_unlock(&st->mu);
    return r;
}

void store_reader_release(store_reader *r)
{
    if (!r)
        return;
    store *st = r->st;
    /* A borrower that left a read transaction open would pin the WAL; end it. */
    if (!sqlite3_get_autocommit(r->db))
        sqlite3_exec(r->db, "ROLLBACK", NULL, NULL, NULL);
    pthread_mutex_lock(&st->mu);
    st->free_[st->n_free++] = r;
    pthread_cond_signal(&st->rcond);
    pthread_mutex_unlock(&st->mu);
}

void store_pool_stats_get(store *st, store_pool_stats *out)
{
    memset(out, 0, sizeof *out);
    if (!st)
        return;
    pthread_mutex_lock(&st->mu);
    out->pool_size = st->n_readers;
    out->available = st->n_free;
    out->in_use = st->n_readers - st->n_free;
    out->acquires = st->acquires;
    out->waits = st->waits;
    out->wait_ms_total = st->wait_ms_total;
    out->write_queue = st->qlen;
    out->write_groups = st->write_groups;
    out->writes = st->writes;
    out->initialized = true;
    pthread_mutex_unlock(&st->mu);
}

void store_space_get(store *st, store_space *out)
{
    memset(out, 0, sizeof *out);
    if (!st)
        return;
    pthread_mutex_lock(&st->mu);
    out->full = st->full;
    snprintf(out->message, sizeof out->message, "%s", st->full ? st->full_message : "");
    out->quota_bytes = (uint64_t)st->quota_pages * (uint64_t)st->page_size;
    out->used_bytes = st->used_pages > 0 ? (uint64_t)st->used_pages * (uint64_t)st->page_size : 0;
    pthread_mutex_unlock(&st->mu);
}

/* ---------------------------------------------------------------- write queue */

ragd_err store_submit(store *st, store_write *w)
{
    if (!st || !w || !w->done)
        return RAGD_EINVAL;
    ragd_err e = RAGD_OK;
    pthread_mutex_lock(&st->mu);
    if (st->closing) {
        e = RAGD_ECLOSED;
        goto out;
    }
    if (st->qlen >= st->opt.max_queue) {
        e = RAGD_EBUSY;
        goto out;
    }
    queue_insert_tail(&st->queue, &w->link_);
    st->qlen++;
    pthread_cond_signal(&st->wcond);
out:
    pthread_mutex_unlock(&st->mu);
    return e;
}

void store_set_commit_hook(store *st, store_commit_hook hook, void *arg)
{
    pthread_mutex_lock(&st->mu);
    st->hook = hook;
    st->hook_arg = arg;
    pthread_mutex_unlock(&st->mu);
}
