#ifndef RAGD_UTIL_DIRLOCK_H
#define RAGD_UTIL_DIRLOCK_H

/* One process per directory: an exclusive flock(2) on DIR/ragd.lock.
 *
 * flock, not a pid file: the kernel drops the lock with the last descriptor of its open
 * file, so a holder that dies in any way (kill -9 included) leaves no stale lock; the file
 * itself stays, and its content (the holder's pid) is informative only. Locks taken on two
 * separate opens conflict even within one process. On Linux NFS, flock is emulated with
 * byte-range locks, so it holds across clients too. */

#include <stddef.h>
#include <sys/types.h>

#include "util/err.h"

#define DIRLOCK_FILE "ragd.lock"

/* Opens (creating, mode 0644) DIR/ragd.lock close-on-exec — so no child process can
 * inherit the lock and outlive us holding it — and takes the lock without waiting.
 * RAGD_OK: *fd holds the lock until dirlock_release(*fd) or the end of the process, and
 * the file now holds our pid. RAGD_EBUSY: another open file holds it; *holder is the pid
 * written in the file, 0 when unknown (the holder may not have written it yet). RAGD_EIO:
 * the file cannot be opened or locked; err says why. */
ragd_err dirlock_acquire(const char *dir, int *fd, pid_t *holder, char *err, size_t errlen);

/* Releases the lock (closes fd). A negative fd is ignored. */
void dirlock_release(int fd);

#endif
