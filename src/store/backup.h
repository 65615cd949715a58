#ifndef RAGD_STORE_BACKUP_H
#define RAGD_STORE_BACKUP_H

/* An online copy of a ragd database (`ragd backup`): SQLite's backup API, from a read-only
 * connection that holds one read transaction for the whole copy, so the copy is the
 * database as of one commit while the server goes on writing (WAL mode lets a reader and
 * the writer work at once). No lock of the server's is taken. See docs/internals/cli.md. */

#include <stddef.h>
#include <stdint.h>

#include "util/err.h"

typedef struct {
    int64_t pages;        /* pages copied */
    int64_t page_size;
    int steps;            /* sqlite3_backup_step calls */
    int64_t collections, documents, chunks; /* counted in the copy */
} store_backup_result;

/* Copies the database at src_path into a new file dst_path (which must not exist; the
 * caller writes to a temporary name and renames), pages_per_step pages at a time with
 * sleep_ms between steps, so the server's writer is never held up for long. The copy is
 * switched to a rollback journal (one self-contained file; ragd turns WAL back on when it
 * opens it), checked with PRAGMA integrity_check and synced to disk. Returns RAGD_OK;
 * RAGD_ENOTFOUND when src_path does not exist; RAGD_EIO with a message in err otherwise
 * (dst_path is then removed). */
ragd_err store_backup(const char *src_path, const char *dst_path, int pages_per_step, int sleep_ms,
                      store_backup_result *res, char *err, size_t errlen);

#endif
