/* PDFs read in a child process (text/extract.h, docs/internals/text.md "PDF in a child").
 *
 * Why: poppler cannot interrupt a page (a form XObject drawn ten times per level, six levels
 * deep, costs minutes on one page) and is not fuzzed here (a crash on a hostile file would
 * take the whole server down). So the server runs `ragd __extract-pdf SECONDS` — its own
 * binary — per PDF: the child sets hard limits on itself, reads the PDF from stdin to EOF,
 * runs the in-process reader (extract_pdf.c) and writes one frame to stdout. The parent
 * writes the bytes and reads the frame with poll() against the document's deadline; past it
 * the child is SIGKILLed. Every child is waited for before extract_document returns.
 *
 * Frame (host byte order: parent and child are the same binary on the same machine):
 *   "RPDF" | u32 err | u64 a | u64 b | payload
 *   err == RAGD_OK: a = text bytes, b = pages; payload = text, then b u64 page starts.
 *   else:           a = message bytes (< EXTRACT_JAIL_WHY_MAX), b = 0; payload = message.
 * The parent trusts nothing in it: sizes past the limits, page starts out of order or past
 * the text, text that is not UTF-8 or holds a NUL are "the reader answered nonsense". */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "text/extract_int.h"
#include "util/clock.h"
#include "util/utf8.h"

extern char **environ;

#define EXTRACT_JAIL_MAGIC "RPDF"
#define EXTRACT_JAIL_WHY_MAX 1024                /* bytes of a child's error message */
#define EXTRACT_JAIL_INPUT_MAX ((size_t)1 << 30) /* bytes the child reads (RAGD_MAX_BODY_BYTES' top) */
#define EXTRACT_JAIL_NOFILE 32                   /* descriptors the child may hold */

/* The child's address-space bound for an input of len bytes: 1 GiB plus 8 bytes per input
 * byte, at most 4 GiB. Not set under AddressSanitizer (its shadow memory needs terabytes of
 * address space). */
static size_t extract_jail_mem_bytes(size_t len)
{
    size_t extra = len > ((size_t)3 << 30) / 8 ? ((size_t)3 << 30) : len * 8;
    return ((size_t)1 << 30) + extra;
}

/* ASan and TSan reserve terabytes of shadow address space: under them the child's
 * RLIMIT_AS is not set (their runtime cannot start within it). */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define EXTRACT_JAIL_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define EXTRACT_JAIL_SANITIZED 1
#endif
#endif
#ifndef EXTRACT_JAIL_SANITIZED
#define EXTRACT_JAIL_SANITIZED 0
#endif

typedef struct {
    char magic[4];
    uint32_t err;
    uint64_t a;
    uint64_t b;
} extract_jail_header;

/* ---------------------------------------------------------------- process-wide set-up */

static char jail_helper[PATH_MAX];
static const char *jail_helper_path; /* NULL: in-process */
static int jail_seconds = EXTRACT_SECONDS;

ragd_err extract_configure(const char *helper, int seconds)
{
    if (seconds < 1 || seconds > 3600)
        return RAGD_EINVAL;
    jail_seconds = seconds;
    if (!helper) {
        jail_helper_path = NULL;
        return RAGD_OK;
    }
    if (strlen(helper) >= sizeof jail_helper)
        return RAGD_EINVAL;
    strcpy(jail_helper, helper);
    jail_helper_path = jail_helper;
    return RAGD_OK;
}

const char *extract_pdf_helper(void)
{
    return jail_helper_path;
}

int extract_seconds(void)
{
    return jail_seconds;
}

/* ---------------------------------------------------------------- live children */

/* Every running reader, so that a stopping server kills them instead of waiting for their
 * deadline. A node lives on its reader's stack; it leaves the list before its child is
 * waited for, so a pid killed here is never one the kernel has recycled. */
typedef struct extract_jail_live {
    pid_t pid;
    bool stopped; /* killed by extract_stop_children */
    struct extract_jail_live *next;
} extract_jail_live;

static pthread_mutex_t jail_live_lock = PTHREAD_MUTEX_INITIALIZER;
static extract_jail_live *jail_live;
static bool jail_stopping;

/* Adds node (pid set); a child spawned after extract_stop_children is killed at once. */
static void extract_jail_track(extract_jail_live *node)
{
    pthread_mutex_lock(&jail_live_lock);
    node->next = jail_live;
    jail_live = node;
    if (jail_stopping) {
        node->stopped = true;
        kill(node->pid, SIGKILL);
    }
    pthread_mutex_unlock(&jail_live_lock);
}

static void extract_jail_untrack(extract_jail_live *node)
{
    pthread_mutex_lock(&jail_live_lock);
    for (extract_jail_live **p = &jail_live; *p; p = &(*p)->next) {
        if (*p == node) {
            *p = node->next;
            break;
        }
    }
    pthread_mutex_unlock(&jail_live_lock);
}

void extract_stop_children(void)
{
    pthread_mutex_lock(&jail_live_lock);
    jail_stopping = true;
    for (extract_jail_live *n = jail_live; n; n = n->next) {
        n->stopped = true;
        kill(n->pid, SIGKILL);
    }
    pthread_mutex_unlock(&jail_live_lock);
}

/* ---------------------------------------------------------------- I/O helpers */

static bool extract_jail_write_all(int fd, const void *p, size_t n)
{
    const char *c = p;
    while (n > 0) {
        ssize_t w = write(fd, c, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        c += w;
        n -= (size_t)w;
    }
    return true;
}

/* ---------------------------------------------------------------- the child */

/* Sets one limit (soft and hard); false if the kernel refuses. */
static bool extract_jail_limit(int resource, rlim_t v)
{
    struct rlimit rl = {.rlim_cur = v, .rlim_max = v};
    return setrlimit(resource, &rl) == 0;
}

/* Writes an error frame. */
static int extract_jail_child_fail(ragd_err e, const char *why)
{
    size_t n = strnlen(why, EXTRACT_JAIL_WHY_MAX - 1);
    extract_jail_header h = {.err = (uint32_t)e, .a = n, .b = 0};
    memcpy(h.magic, EXTRACT_JAIL_MAGIC, 4);
    if (!extract_jail_write_all(1, &h, sizeof h) || !extract_jail_write_all(1, why, n))
        return 1;
    return 0;
}

int extract_pdf_child_main(int argc, char **argv)
{
    /* No other work here: the limits first, then stdin, the reader, stdout. */
    close_range(3, ~0U, 0);
    prctl(PR_SET_PDEATHSIG, SIGKILL); /* the spawning server thread gone: stop */
    int seconds = argc >= 2 ? atoi(argv[1]) : EXTRACT_SECONDS;
    if (seconds < 1 || seconds > 3600)
        seconds = EXTRACT_SECONDS;
    extract_configure(NULL, seconds); /* this process is the reader; messages name the bound */
    if (!extract_jail_limit(RLIMIT_CPU, (rlim_t)seconds + 1) || !extract_jail_limit(RLIMIT_FSIZE, 0) ||
        !extract_jail_limit(RLIMIT_CORE, 0) || !extract_jail_limit(RLIMIT_NOFILE, EXTRACT_JAIL_NOFILE))
        return 3;
    char *buf = NULL;
    size_t len = 0, cap = 0;
    for (;;) {
        if (len == cap) {
            if (cap >= EXTRACT_JAIL_INPUT_MAX)
                return extract_jail_child_fail(RAGD_ETOOBIG, "PDF could not be read: over 1 GiB");
            size_t ncap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, ncap);
            if (!nb)
                return extract_jail_child_fail(RAGD_ENOMEM, "out of memory");
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(0, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return 4;
        if (r == 0)
            break;
        len += (size_t)r;
    }
    /* The address-space bound comes after the input is in: it is sized from it. */
    if (!EXTRACT_JAIL_SANITIZED && !extract_jail_limit(RLIMIT_AS, (rlim_t)extract_jail_mem_bytes(len)))
        return 3;
    /* The reader itself, on the bytes as the parent had them (already unpacked). */
    extract_limits lim;
    extract_limits_default(&lim, len);
    lim.deadline_ms = clock_now_ms() + seconds * 1000.0;
    lim.pdf_helper = NULL; /* this is the reader */
    char why[EXTRACT_JAIL_WHY_MAX] = "";
    extract_ctx x = {.lim = &lim, .why = why, .why_cap = sizeof why};
    strbuf out;
    strbuf_init(&out, lim.max_text);
    size_t *starts = NULL, pages = 0;
    ragd_err e = extract_pdf(&x, buf, len, &out, &starts, &pages);
    free(buf);
    if (e) {
        strbuf_cleanup(&out);
        return extract_jail_child_fail(e, why[0] ? why : "PDF could not be read");
    }
    extract_jail_header h = {.err = RAGD_OK, .a = out.len, .b = pages};
    memcpy(h.magic, EXTRACT_JAIL_MAGIC, 4);
    int rc = 0;
    if (!extract_jail_write_all(1, &h, sizeof h) || (out.len && !extract_jail_write_all(1, out.data, out.len)))
        rc = 1;
    for (size_t i = 0; rc == 0 && i < pages; i++) {
        uint64_t s = starts[i];
        if (!extract_jail_write_all(1, &s, sizeof s))
            rc = 1;
    }
    free(starts);
    strbuf_cleanup(&out);
    return rc;
}

/* ---------------------------------------------------------------- the parent */

#define EXTRACT_JAIL_ENV_MAX 16

/* The child's environment: only the sanitizers' options and the library path from ours —
 * not API keys or tokens: the child parses hostile bytes and needs none of them. */
static void extract_jail_env(char **envp)
{
    static const char *const keep[] = {"ASAN_OPTIONS=", "UBSAN_OPTIONS=", "LSAN_OPTIONS=", "TSAN_OPTIONS=",
                                       "LD_LIBRARY_PATH="};
    size_t n = 0;
    for (char **e = environ; e && *e && n < EXTRACT_JAIL_ENV_MAX; e++) {
        for (size_t k = 0; k < sizeof keep / sizeof keep[0]; k++) {
            if (strncmp(*e, keep[k], strlen(keep[k])) == 0) {
                envp[n++] = *e;
                break;
            }
        }
    }
    envp[n] = NULL;
}

/* The frame as it arrives: the header, then a payload whose size the header sets (checked
 * against the limits before anything is allocated). */
typedef struct {
    extract_jail_header h;
    size_t got_header;
    char *payload;
    size_t payload_len; /* expected */
    size_t got;
    bool nonsense;      /* the header asked for more than the limits allow */
    bool nomem;         /* the payload could not be allocated */
} extract_jail_frame;

/* Payload size for a header; false: nonsense. */
static bool extract_jail_payload_size(const extract_ctx *x, const extract_jail_header *h, size_t *n)
{
    if (memcmp(h->magic, EXTRACT_JAIL_MAGIC, 4) != 0)
        return false;
    if (h->err != RAGD_OK) {
        if (h->a >= EXTRACT_JAIL_WHY_MAX || h->b != 0)
            return false;
        *n = (size_t)h->a;
        return true;
    }
    if (h->a > x->lim->max_text || h->b > x->lim->max_pages)
        return false;
    *n = (size_t)h->a + (size_t)h->b * sizeof(uint64_t);
    return true;
}

/* Consumes what is readable on fd. Returns 1 at EOF, 0 for more, -1 on a read error or a
 * nonsense frame (also: bytes past the frame's end). */
static int extract_jail_read(const extract_ctx *x, int fd, extract_jail_frame *f)
{
    char scratch[4096];
    for (;;) {
        char *dst;
        size_t room;
        if (f->got_header < sizeof f->h) {
            dst = (char *)&f->h + f->got_header;
            room = sizeof f->h - f->got_header;
        } else if (f->got < f->payload_len) {
            dst = f->payload + f->got;
            room = f->payload_len - f->got;
        } else {
            dst = scratch; /* anything more is a protocol error */
            room = sizeof scratch;
        }
        ssize_t r = read(fd, dst, room);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errno == EAGAIN ? 0 : -1;
        if (r == 0)
            return 1;
        if (dst == scratch) {
            f->nonsense = true;
            return -1;
        }
        if (f->got_header < sizeof f->h) {
            f->got_header += (size_t)r;
            if (f->got_header == sizeof f->h) {
                if (!extract_jail_payload_size(x, &f->h, &f->payload_len)) {
                    f->nonsense = true;
                    return -1;
                }
                f->payload = malloc(f->payload_len ? f->payload_len : 1);
                if (!f->payload) {
                    f->nomem = true;
                    return -1;
                }
            }
        } else {
            f->got += (size_t)r;
        }
    }
}

/* The child's outcome from its exit status (rusage unused), when no whole frame came. */
static ragd_err extract_jail_died(extract_ctx *x, int status, bool timed_out, size_t mem)
{
    if (timed_out || (WIFSIGNALED(status) && WTERMSIG(status) == SIGXCPU))
        return extract_fail(x, RAGD_ETOOBIG, "PDF could not be read: it took over %d seconds", jail_seconds);
    if (WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT && mem)
        return extract_fail(x, RAGD_EINVAL,
                            "PDF could not be read: the reader crashed (signal 6; it may have used more than %zu MiB)",
                            mem >> 20);
    if (WIFSIGNALED(status))
        return extract_fail(x, RAGD_EINVAL, "PDF could not be read: the reader crashed (signal %d)", WTERMSIG(status));
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0)
        return extract_fail(x, RAGD_EINVAL, "PDF could not be read: the reader failed (exit status %d)",
                            WEXITSTATUS(status));
    return extract_fail(x, RAGD_EINVAL, "PDF could not be read: the reader answered nonsense");
}

/* Turns a whole, well-formed frame into the result; checks what the child claims. */
static ragd_err extract_jail_accept(extract_ctx *x, extract_jail_frame *f, strbuf *out, size_t **page_starts,
                                    size_t *n_pages)
{
    if (f->h.err != RAGD_OK) {
        char why[EXTRACT_JAIL_WHY_MAX];
        memcpy(why, f->payload, f->payload_len);
        why[f->payload_len] = '\0';
        ragd_err e = (ragd_err)f->h.err;
        if (e != RAGD_EINVAL && e != RAGD_ETOOBIG && e != RAGD_ENOMEM)
            e = RAGD_EINVAL;
        return extract_fail(x, e, "%s", why);
    }
    size_t tlen = (size_t)f->h.a, pages = (size_t)f->h.b;
    if (memchr(f->payload, '\0', tlen) || !utf8_valid(f->payload, tlen))
        return extract_fail(x, RAGD_EINVAL, "PDF could not be read: the reader answered nonsense");
    size_t *starts = calloc(pages ? pages : 1, sizeof *starts);
    if (!starts)
        return extract_fail(x, RAGD_ENOMEM, "out of memory");
    for (size_t i = 0; i < pages; i++) {
        uint64_t s;
        memcpy(&s, f->payload + tlen + i * sizeof s, sizeof s);
        if (s > tlen || (i > 0 && s < starts[i - 1])) {
            free(starts);
            return extract_fail(x, RAGD_EINVAL, "PDF could not be read: the reader answered nonsense");
        }
        starts[i] = (size_t)s;
    }
    ragd_err e = strbuf_append(out, f->payload, tlen);
    if (e) {
        free(starts);
        return extract_fail(x, e, e == RAGD_ETOOBIG ? "PDF could not be read: its text is too long" : "out of memory");
    }
    *page_starts = starts;
    *n_pages = pages;
    return RAGD_OK;
}

/* Waits for pid; SIGKILLs it first when kill_it. Never leaves a zombie. */
static int extract_jail_reap(pid_t pid, bool kill_it)
{
    if (kill_it)
        kill(pid, SIGKILL);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    return status;
}

ragd_err extract_pdf_jailed(extract_ctx *x, const char *bytes, size_t len, strbuf *out, size_t **page_starts,
                            size_t *n_pages)
{
    *page_starts = NULL;
    *n_pages = 0;
    int in[2] = {-1, -1}, outp[2] = {-1, -1};
    extract_jail_frame f = {0};
    pid_t pid = -1;
    extract_jail_live live = {0};
    bool have_attr = false, have_fa = false;
    posix_spawnattr_t attr;
    posix_spawn_file_actions_t fa;
    ragd_err e = RAGD_OK;
    if (pipe2(in, O_CLOEXEC) != 0 || pipe2(outp, O_CLOEXEC) != 0) {
        e = extract_fail(x, RAGD_EIO, "PDF could not be read: no pipe for its reader (%s)", strerror(errno));
        goto out;
    }
    have_attr = posix_spawnattr_init(&attr) == 0;
    have_fa = posix_spawn_file_actions_init(&fa) == 0;
    if (!have_attr || !have_fa) {
        e = extract_fail(x, RAGD_ENOMEM, "out of memory");
        goto out;
    }
    /* Default signal dispositions and an empty mask in the child, whatever the thread had. */
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    int defaulted[] = {SIGPIPE, SIGXCPU, SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2, SIGSEGV, SIGABRT, SIGBUS};
    for (size_t i = 0; i < sizeof defaulted / sizeof defaulted[0]; i++)
        sigaddset(&defaults, defaulted[i]);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    posix_spawn_file_actions_adddup2(&fa, in[0], 0);
    posix_spawn_file_actions_adddup2(&fa, outp[1], 1);
    char secs[16];
    snprintf(secs, sizeof secs, "%d", jail_seconds);
    char *argv[] = {"ragd", "__extract-pdf", secs, NULL};
    char *envp[EXTRACT_JAIL_ENV_MAX + 1];
    extract_jail_env(envp);
    int rc = posix_spawn(&pid, x->lim->pdf_helper, &fa, &attr, argv, envp);
    if (rc != 0) {
        pid = -1;
        e = extract_fail(x, RAGD_EIO, "PDF could not be read: its reader did not start (%s)", strerror(rc));
        goto out;
    }
    live.pid = pid;
    extract_jail_track(&live);
    close(in[0]);
    close(outp[1]);
    in[0] = outp[1] = -1;
    fcntl(in[1], F_SETFL, O_NONBLOCK);
    fcntl(outp[0], F_SETFL, O_NONBLOCK);

    /* A child that stops reading makes our write raise SIGPIPE: blocked in this thread while
     * writing, and one left pending is taken before the mask is restored (the server ignores
     * it anyway; other callers need not). */
    sigset_t pipe_set, old_mask;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_mask);
    size_t sent = 0;
    bool eof = false, timed_out = false, broken = false;
    if (len == 0) {
        close(in[1]);
        in[1] = -1;
    }
    while (!eof && !broken) {
        double left = x->lim->deadline_ms > 0 ? x->lim->deadline_ms - clock_now_ms() : 60000.0;
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd p[2] = {{.fd = outp[0], .events = POLLIN}, {.fd = in[1], .events = POLLOUT}};
        int np = in[1] >= 0 ? 2 : 1;
        int pr = poll(p, (nfds_t)np, left > 1000.0 ? 1000 : (int)left + 1);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr < 0) {
            broken = true;
            break;
        }
        if (np == 2 && (p[1].revents & (POLLOUT | POLLERR | POLLHUP))) {
            ssize_t w = write(in[1], bytes + sent, len - sent);
            if (w > 0)
                sent += (size_t)w;
            if ((w < 0 && errno != EAGAIN && errno != EINTR) || sent == len) {
                close(in[1]); /* EOF for the child (or it stopped reading: its status says why) */
                in[1] = -1;
            }
        }
        if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
            int r = extract_jail_read(x, outp[0], &f);
            if (r == 1)
                eof = true;
            else if (r < 0)
                broken = true;
        }
    }
    struct timespec zero = {0, 0};
    while (sigtimedwait(&pipe_set, NULL, &zero) > 0) {
    }
    pthread_sigmask(SIG_SETMASK, &old_mask, NULL);
    /* The child closed stdout (or misbehaved, or ran out of time): it ends now or is killed
     * at the deadline — a child that closes stdout and keeps running does not hold us. */
    bool kill_it = timed_out || broken;
    int status = 0;
    if (!kill_it) {
        for (;;) {
            /* WNOWAIT: the child stays unreaped (its pid cannot be recycled) until it has
             * left the live list below. */
            siginfo_t info = {0};
            int w = waitid(P_PID, (id_t)pid, &info, WEXITED | WNOHANG | WNOWAIT);
            if (w == 0 && info.si_pid == pid)
                break;
            if (w < 0 && errno != EINTR) {
                kill_it = true;
                break;
            }
            if (x->lim->deadline_ms > 0 && clock_now_ms() > x->lim->deadline_ms) {
                timed_out = kill_it = true;
                break;
            }
            struct timespec ts = {0, 2 * 1000 * 1000};
            nanosleep(&ts, NULL);
        }
    }
    extract_jail_untrack(&live);
    status = extract_jail_reap(pid, kill_it);
    pid = -1;
    bool whole = f.got_header == sizeof f.h && f.payload && f.got == f.payload_len && !f.nonsense;
    pthread_mutex_lock(&jail_live_lock);
    bool stopped = live.stopped;
    pthread_mutex_unlock(&jail_live_lock);
    if (stopped)
        e = extract_fail(x, RAGD_EINVAL, "PDF could not be read: the server is stopping");
    else if (!timed_out && whole && WIFEXITED(status) && WEXITSTATUS(status) == 0)
        e = extract_jail_accept(x, &f, out, page_starts, n_pages);
    else if (f.nomem && !timed_out)
        e = extract_fail(x, RAGD_ENOMEM, "out of memory");
    else if ((f.nonsense || broken) && !timed_out)
        e = extract_fail(x, RAGD_EINVAL, "PDF could not be read: the reader answered nonsense");
    else
        e = extract_jail_died(x, status, timed_out, EXTRACT_JAIL_SANITIZED ? 0 : extract_jail_mem_bytes(len));
out:
    if (pid > 0) {
        extract_jail_untrack(&live);
        extract_jail_reap(pid, true);
    }
    if (have_attr)
        posix_spawnattr_destroy(&attr);
    if (have_fa)
        posix_spawn_file_actions_destroy(&fa);
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (outp[i] >= 0)
            close(outp[i]);
    }
    free(f.payload);
    return e;
}
