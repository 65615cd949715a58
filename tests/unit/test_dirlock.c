/* Unit tests of src/util/dirlock.c: the one-server-per-data-directory lock. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/dirlock.h"

static char g_dir[256];

static int setup(void **state)
{
    snprintf(g_dir, sizeof g_dir, "/tmp/ragd_dirlock_XXXXXX");
    return mkdtemp(g_dir) ? 0 : -1;
}

static int teardown(void **state)
{
    char p[320];
    snprintf(p, sizeof p, "%s/%s", g_dir, DIRLOCK_FILE);
    unlink(p);
    rmdir(g_dir);
    return 0;
}

static long pid_in_file(void)
{
    char p[320], buf[32] = "";
    snprintf(p, sizeof p, "%s/%s", g_dir, DIRLOCK_FILE);
    FILE *f = fopen(p, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strtol(buf, NULL, 10);
}

/* Taken once; a second take (a separate open, as another process makes) is refused and
 * names the holder; released, it can be taken again. */
static void test_exclusive_and_release(void **state)
{
    int fd = -1, fd2 = -1;
    pid_t holder = -1;
    char err[256] = "";
    assert_int_equal(dirlock_acquire(g_dir, &fd, &holder, err, sizeof err), RAGD_OK);
    assert_true(fd >= 0);
    assert_int_equal(fcntl(fd, F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
    assert_int_equal(pid_in_file(), (long)getpid());

    assert_int_equal(dirlock_acquire(g_dir, &fd2, &holder, err, sizeof err), RAGD_EBUSY);
    assert_int_equal(fd2, -1);
    assert_int_equal(holder, getpid());

    dirlock_release(fd);
    assert_int_equal(dirlock_acquire(g_dir, &fd2, &holder, err, sizeof err), RAGD_OK);
    dirlock_release(fd2);
    dirlock_release(-1);
}

/* Another process holds it: refused with that process's pid. Killed with SIGKILL, it
 * leaves no stale lock behind (the kernel drops a flock with its holder). */
static void test_other_process_and_kill9(void **state)
{
    int ready[2];
    assert_int_equal(pipe(ready), 0);
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        int fd = -1;
        pid_t h = 0;
        char e[256];
        char ok = dirlock_acquire(g_dir, &fd, &h, e, sizeof e) == RAGD_OK ? 'y' : 'n';
        if (write(ready[1], &ok, 1) != 1)
            _exit(3);
        for (;;)
            pause();
    }
    close(ready[1]);
    char ok = 0;
    assert_int_equal(read(ready[0], &ok, 1), 1);
    close(ready[0]);
    assert_int_equal(ok, 'y');

    int fd = -1;
    pid_t holder = 0;
    char err[256] = "";
    assert_int_equal(dirlock_acquire(g_dir, &fd, &holder, err, sizeof err), RAGD_EBUSY);
    assert_int_equal(holder, child);

    assert_int_equal(kill(child, SIGKILL), 0);
    int status = 0;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFSIGNALED(status));
    assert_int_equal(dirlock_acquire(g_dir, &fd, &holder, err, sizeof err), RAGD_OK);
    assert_int_equal(pid_in_file(), (long)getpid());
    dirlock_release(fd);
}

static void test_missing_dir(void **state)
{
    int fd = 7;
    pid_t holder = 7;
    char err[256] = "";
    assert_int_equal(dirlock_acquire("/nonexistent-ragd-dir/x", &fd, &holder, err, sizeof err), RAGD_EIO);
    assert_int_equal(fd, -1);
    assert_int_equal(holder, 0);
    assert_non_null(strstr(err, "/nonexistent-ragd-dir/x/" DIRLOCK_FILE));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_exclusive_and_release, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_process_and_kill9, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_dir, setup, teardown),
    };
    return cmocka_run_group_tests_name("dirlock", tests, NULL, NULL);
}
