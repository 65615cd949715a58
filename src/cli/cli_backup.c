/* `ragd backup PATH`: an online copy of the server's database (store/backup.h), written to
 * PATH.tmp, checked, then renamed to PATH. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_int.h"
#include "store/backup.h"

#define BACKUP_PAGES_PER_STEP 256 /* 1 MiB of 4 KiB pages: a step holds the file briefly */
#define BACKUP_SLEEP_MS 5

/* Removes the side files SQLite keeps beside PATH.tmp (a crashed run may have left them). */
static void backup_remove_sides(const char *tmp)
{
    static const char *const sides[] = {"-journal", "-wal", "-shm"};
    char p[4200];
    for (size_t i = 0; i < sizeof sides / sizeof sides[0]; i++) {
        snprintf(p, sizeof p, "%s%s", tmp, sides[i]);
        unlink(p);
    }
}

/* Removes PATH.tmp and its side files. */
static void backup_remove_tmp(const char *tmp)
{
    unlink(tmp);
    backup_remove_sides(tmp);
}

/* fsync of the folder holding path, so that the rename is on disk. */
static void backup_sync_dir(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(copy);
}

int cli_cmd_backup(const cli_opts *o)
{
    const char *dest = o->args[0];
    const char *env = getenv("RAGD_DATA_DIR");
    const char *dir = o->data_dir ? o->data_dir : (env && *env) ? env : "./data";
    char src[4200], tmp[4200], err[512];
    struct stat st;
    if (snprintf(src, sizeof src, "%s/ragd.db", dir) >= (int)sizeof src ||
        snprintf(tmp, sizeof tmp, "%s.tmp", dest) >= (int)sizeof tmp) {
        fprintf(stderr, "ragd backup: path too long\n");
        return CLI_EXIT_USAGE;
    }
    if (!dest[0]) {
        fprintf(stderr, "ragd backup: PATH is empty\n");
        return CLI_EXIT_USAGE;
    }
    if (stat(dest, &st) == 0 && !o->force) {
        fprintf(stderr, "ragd: %s exists: add --force to replace it\n", dest);
        return CLI_EXIT_FAIL;
    }
    if (stat(dest, &st) == 0 && S_ISDIR(st.st_mode)) {
        fprintf(stderr, "ragd: %s is a folder: give the backup's file name\n", dest);
        return CLI_EXIT_FAIL;
    }
    if (stat(dest, &st) == 0 && !S_ISREG(st.st_mode)) {
        /* --force replaces an earlier backup, never a device, FIFO or socket (the rename
         * would put a file in place of /dev/full or a named pipe) */
        fprintf(stderr, "ragd: %s is not a regular file: give the backup's file name\n", dest);
        return CLI_EXIT_FAIL;
    }
    /* PATH.tmp is claimed, never taken: it may be a file of the user's, or the copy of
     * another backup to the same PATH still running (removing it would let that one
     * rename our half-written copy into place). A crashed run's leftover needs --force. */
    int claim = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (claim < 0 && errno == EEXIST && o->force) {
        backup_remove_tmp(tmp);
        claim = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    }
    if (claim < 0) {
        if (errno == EEXIST)
            fprintf(stderr, "ragd: %s exists (another backup running, or one that stopped "
                            "half-way): add --force to replace it\n", tmp);
        else
            fprintf(stderr, "ragd: cannot create %s: %s\n", tmp, strerror(errno));
        return CLI_EXIT_FAIL;
    }
    close(claim);
    backup_remove_sides(tmp); /* a crashed run's journal must not roll back into the copy */
    store_backup_result res;
    ragd_err e = store_backup(src, tmp, BACKUP_PAGES_PER_STEP, BACKUP_SLEEP_MS, &res, err, sizeof err);
    if (e == RAGD_ENOTFOUND) {
        fprintf(stderr, "ragd: %s (is the data directory %s? give it with --data DIR or RAGD_DATA_DIR)\n",
                err, dir);
        backup_remove_tmp(tmp);
        return CLI_EXIT_FAIL;
    }
    if (e) {
        fprintf(stderr, "ragd: %s\n", err);
        backup_remove_tmp(tmp);
        return CLI_EXIT_FAIL;
    }
    if (rename(tmp, dest) != 0) {
        fprintf(stderr, "ragd: cannot rename %s to %s: %s\n", tmp, dest, strerror(errno));
        backup_remove_tmp(tmp);
        return CLI_EXIT_FAIL;
    }
    backup_sync_dir(dest);
    printf("backed up %s to %s: %lld pages (%.1f MiB), %lld collections, %lld documents, %lld chunks; "
           "integrity_check ok\n",
           src, dest, (long long)res.pages, (double)res.pages * (double)res.page_size / (1024.0 * 1024.0),
           (long long)res.collections, (long long)res.documents, (long long)res.chunks);
    return CLI_EXIT_OK;
}
