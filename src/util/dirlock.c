/* The data-directory lock: flock(2) on DIR/ragd.lock (contract in dirlock.h). */
#include "util/dirlock.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* The pid written in the lock file, 0 when it holds none (empty, or being rewritten). */
static pid_t dirlock_read_pid(int fd)
{
    char buf[32];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    if (n <= 0)
        return 0;
    buf[n] = '\0';
    char *end = NULL;
    long pid = strtol(buf, &end, 10);
    return (end != buf && pid > 0 && (*end == '\n' || *end == '\0')) ? (pid_t)pid : 0;
}

ragd_err dirlock_acquire(const char *dir, int *fd, pid_t *holder, char *err, size_t errlen)
{
    char path[4096];
    *fd = -1;
    *holder = 0;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, DIRLOCK_FILE) >= sizeof path) {
        ragd_errorf(err, errlen, "%s: path too long", dir);
        return RAGD_EIO;
    }
    int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (f < 0) {
        ragd_errorf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return RAGD_EIO;
    }
    int rc;
    do
        rc = flock(f, LOCK_EX | LOCK_NB);
    while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        int e = errno;
        if (e == EWOULDBLOCK)
            *holder = dirlock_read_pid(f);
        else
            ragd_errorf(err, errlen, "cannot lock %s: %s", path, strerror(e));
        close(f);
        return e == EWOULDBLOCK ? RAGD_EBUSY : RAGD_EIO;
    }
    /* Ours: record who holds it, for the message of the next one to try. */
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%ld\n", (long)getpid());
    if (ftruncate(f, 0) != 0 || pwrite(f, pid, (size_t)len, 0) != len) {
        /* The lock holds all the same; only the next one's message lacks our pid. */
    }
    *fd = f;
    return RAGD_OK;
}

void dirlock_release(int fd)
{
    if (fd >= 0)
        close(fd); /* drops the flock with it */
}
