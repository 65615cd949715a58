/* `ragd ingest --watch`: sync, then watch the arguments with inotify and sync again after
 * each burst of changes. Every round re-walks and re-lists (cli_ingest_pass), so what a
 * round sends never depends on which events arrived: an event only says "look again". */
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli_int.h"

#define WATCH_DEBOUNCE_MS 500
#define WATCH_MASK                                                                                 \
    (IN_CREATE | IN_DELETE | IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | \
     IN_DELETE_SELF | IN_MOVE_SELF | IN_EXCL_UNLINK)

typedef struct {
    int ifd;
    size_t watches;
    bool warned_limit; /* the inotify watch limit was reported once */
} watcher;

/* Watches dir and, the walker's way (no dot entries, no links to folders), every folder
 * below it. A folder that cannot be watched is reported and left out. */
static void watch_tree(watcher *wt, const char *dir, int depth)
{
    if (depth > CLI_MAX_DEPTH)
        return;
    if (inotify_add_watch(wt->ifd, dir, WATCH_MASK | IN_ONLYDIR) < 0) {
        if (errno == ENOSPC && !wt->warned_limit) {
            fprintf(stderr, "ragd: warning: inotify watch limit reached at %s: raise "
                            "/proc/sys/fs/inotify/max_user_watches to watch every folder\n", dir);
            wt->warned_limit = true;
        } else if (errno != ENOSPC) {
            fprintf(stderr, "ragd: warning: cannot watch %s: %s\n", dir, strerror(errno));
        }
        return;
    }
    wt->watches++;
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue; /* also . and .. */
        size_t len = strlen(dir) + strlen(de->d_name) + 2;
        char *path = malloc(len);
        if (!path)
            break;
        snprintf(path, len, "%s%s%s", dir, dir[strlen(dir) - 1] == '/' ? "" : "/", de->d_name);
        struct stat st;
        if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
            watch_tree(wt, path, depth + 1);
        free(path);
    }
    closedir(d);
}

/* A fresh inotify descriptor watching every argument: a folder's whole tree, a file's
 * folder (a file is replaced by rename more often than it is written in place). */
static bool watch_start(watcher *wt, const cli_opts *o)
{
    wt->ifd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
    wt->watches = 0;
    if (wt->ifd < 0) {
        fprintf(stderr, "ragd: cannot watch files: inotify: %s\n", strerror(errno));
        return false;
    }
    for (size_t i = 0; i < o->nargs; i++) {
        struct stat st;
        if (stat(o->args[i], &st) == 0 && S_ISDIR(st.st_mode)) {
            watch_tree(wt, o->args[i], 0);
        } else {
            char *copy = strdup(o->args[i]);
            if (copy)
                watch_tree(wt, dirname(copy), CLI_MAX_DEPTH); /* that folder only */
            free(copy);
        }
    }
    return true;
}

static void watch_stop(watcher *wt)
{
    if (wt->ifd >= 0)
        close(wt->ifd);
    wt->ifd = -1;
}

/* Reads and drops every queued event: which ones came does not matter (see the top). */
static void watch_drain(int ifd)
{
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    while (read(ifd, buf, sizeof buf) > 0) {
    }
}

/* Waits for a change and then for WATCH_DEBOUNCE_MS without one. False when a signal
 * (SIGINT, SIGTERM) came instead. */
static bool watch_wait(int ifd, int sfd)
{
    struct pollfd fds[2] = {{.fd = ifd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
    int timeout = -1; /* until the first event; then the quiet period */
    bool changed = false;
    for (;;) {
        int n = poll(fds, 2, timeout);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        if (n > 0 && (fds[1].revents & POLLIN)) {
            /* taken, so that unblocking the signals at the end does not deliver it */
            struct signalfd_siginfo si;
            while (read(sfd, &si, sizeof si) == (ssize_t)sizeof si) {
            }
            return false;
        }
        if (n == 0 && changed)
            return true; /* quiet for the whole period */
        if (n > 0 && (fds[0].revents & POLLIN)) {
            watch_drain(ifd);
            changed = true;
            timeout = WATCH_DEBOUNCE_MS;
        }
    }
}

int cli_watch(const cli_opts *o, const cli_server *srv)
{
    int status = CLI_EXIT_OK;
    sigset_t stop, old;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    /* Blocked, then read from a signalfd: a signal ends the watch between two files or
     * while waiting, never in the middle of a request. */
    if (sigprocmask(SIG_BLOCK, &stop, &old) != 0) {
        fprintf(stderr, "ragd: cannot block signals: %s\n", strerror(errno));
        return CLI_EXIT_FAIL;
    }
    int sfd = signalfd(-1, &stop, SFD_NONBLOCK | SFD_CLOEXEC);
    watcher wt = {.ifd = -1};
    cli_stat_cache cache = {0};
    if (sfd < 0) {
        fprintf(stderr, "ragd: cannot watch for signals: %s\n", strerror(errno));
        status = CLI_EXIT_FAIL;
        goto out;
    }
    for (bool first = true;; first = false) {
        /* Watches first, then the pass: a change made while the pass runs wakes the next. */
        if (!watch_start(&wt, o)) {
            status = CLI_EXIT_FAIL;
            goto out;
        }
        cli_pass pass;
        cli_ingest_pass(o, srv, true, first, &cache, &pass); /* failures are printed; watching goes on */
        if (first)
            fprintf(stderr, "ragd: watching %zu folders for changes (Ctrl-C to stop)\n", wt.watches);
        fflush(stdout);
        if (!watch_wait(wt.ifd, sfd))
            break;
        watch_stop(&wt);
    }
    fprintf(stderr, "ragd: stopped watching\n");
out:
    watch_stop(&wt);
    cli_stat_cache_cleanup(&cache);
    if (sfd >= 0)
        close(sfd);
    sigprocmask(SIG_SETMASK, &old, NULL);
    return status;
}
