/* `ragd backup`'s copy: SQLite's online backup API (store/backup.h). */
#include "store/backup.h"

#include <errno.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "store/store_int.h"

/* PRAGMA integrity_check of the copy: true when it says "ok"; else its first line in err. */
static bool backup_check(sqlite3 *db, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    bool ok = false;
    if (sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot check the copy: %s", sqlite3_errmsg(db));
        return false;
    }
    if (sqlite3_step(st) == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        ok = v && strcmp(v, "ok") == 0;
        if (!ok)
            snprintf(err, errlen, "the copy fails PRAGMA integrity_check: %.200s", v ? v : "(no answer)");
    } else {
        snprintf(err, errlen, "cannot check the copy: %s", sqlite3_errmsg(db));
    }
    sqlite3_finalize(st);
    return ok;
}

/* fsync of a file by name. */
static bool backup_sync(const char *path)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool ok = fsync(fd) == 0;
    close(fd);
    return ok;
}

ragd_err store_backup(const char *src_path, const char *dst_path, int pages_per_step, int sleep_ms,
                      store_backup_result *res, char *err, size_t errlen)
{
    ragd_err e = RAGD_EIO;
    sqlite3 *src = NULL, *dst = NULL;
    sqlite3_backup *b = NULL;
    bool in_txn = false, created = false;
    struct stat st;
    memset(res, 0, sizeof *res);
    err[0] = '\0';
    if (stat(src_path, &st) != 0) {
        snprintf(err, errlen, "cannot read the database %s: %s", src_path, strerror(errno));
        return errno == ENOENT ? RAGD_ENOTFOUND : RAGD_EIO;
    }
    /* Read-only: the copy never writes to the server's files (a WAL database's reader
     * still maps its -shm, as every reader does). */
    if (sqlite3_open_v2(src_path, &src, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot open %s: %s", src_path, src ? sqlite3_errmsg(src) : "out of memory");
        goto out;
    }
    sqlite3_busy_timeout(src, 5000);
    /* One read transaction for the whole copy: every step reads the same snapshot, so the
     * server's commits in between neither restart the copy nor mix into it. */
    if (sqlite3_exec(src, "BEGIN", NULL, NULL, NULL) != SQLITE_OK ||
        store__query_int(src, "SELECT count(*) FROM sqlite_master") < 0) {
        snprintf(err, errlen, "cannot read %s: %s", src_path, sqlite3_errmsg(src));
        goto out;
    }
    in_txn = true;
    if (sqlite3_open_v2(dst_path, &dst, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE |
                                             SQLITE_OPEN_NOMUTEX,
                        NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot create %s: %s", dst_path, dst ? sqlite3_errmsg(dst) : "out of memory");
        goto out;
    }
    created = true;
    b = sqlite3_backup_init(dst, "main", src, "main");
    if (!b) {
        snprintf(err, errlen, "cannot start the backup: %s", sqlite3_errmsg(dst));
        goto out;
    }
    for (;;) {
        int rc = sqlite3_backup_step(b, pages_per_step > 0 ? pages_per_step : -1);
        res->steps++;
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_OK && rc != SQLITE_BUSY && rc != SQLITE_LOCKED) {
            snprintf(err, errlen, "backup step failed: %s", sqlite3_errstr(rc));
            goto out;
        }
        if (sleep_ms > 0)
            sqlite3_sleep(sleep_ms);
    }
    res->pages = sqlite3_backup_pagecount(b);
    int rc = sqlite3_backup_finish(b);
    b = NULL;
    if (rc != SQLITE_OK) {
        snprintf(err, errlen, "backup failed: %s", sqlite3_errstr(rc));
        goto out;
    }
    sqlite3_exec(src, "COMMIT", NULL, NULL, NULL);
    in_txn = false;
    /* A self-contained file: no -wal beside it to lose when it is copied elsewhere. */
    if (sqlite3_exec(dst, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "cannot finish the copy: %s", sqlite3_errmsg(dst));
        goto out;
    }
    if (!backup_check(dst, err, errlen))
        goto out;
    res->page_size = store__query_int(dst, "PRAGMA page_size");
    res->collections = store__query_int(dst, "SELECT count(*) FROM collections");
    res->documents = store__query_int(dst, "SELECT count(*) FROM documents");
    res->chunks = store__query_int(dst, "SELECT count(*) FROM chunks");
    if (sqlite3_close(dst) != SQLITE_OK) {
        snprintf(err, errlen, "cannot close the copy: %s", sqlite3_errmsg(dst));
        goto out;
    }
    dst = NULL;
    if (!backup_sync(dst_path)) {
        snprintf(err, errlen, "cannot sync %s: %s", dst_path, strerror(errno));
        goto out;
    }
    e = RAGD_OK;
out:
    if (b)
        sqlite3_backup_finish(b);
    if (in_txn)
        sqlite3_exec(src, "ROLLBACK", NULL, NULL, NULL);
    sqlite3_close(src);
    if (dst)
        sqlite3_close(dst);
    if (e && created) {
        unlink(dst_path);
        char side[4200];
        snprintf(side, sizeof side, "%s-journal", dst_path);
        unlink(side);
    }
    return e;
}
