/* Allocation fault injection for the torture build (build/torture/ragd), never linked into
 * the production binary. docs/testing.md ("Allocation torture") describes the whole pass.
 *
 * What is hooked, by domain (a letter each, as the control commands name them):
 *   r  ragd's own code: every call of malloc, calloc, realloc, reallocarray, strdup,
 *      strndup, asprintf and vasprintf in src/ is redirected here by the linker
 *      (-Wl,--wrap=SYMBOL); the libraries' own calls are not affected by --wrap.
 *   j  jansson (json_set_alloc_funcs)
 *   s  SQLite (sqlite3_config(SQLITE_CONFIG_MALLOC), wrapping SQLite's default allocator)
 *   e  libevent (event_set_mem_functions)
 *   o  OpenSSL's libcrypto (CRYPTO_set_mem_functions; SHA-256 of ingested text)
 * The HTTP layer (ragd's own, on libevent bufferevents) is covered by the first and the
 * libevent hooks: its request objects, head buffers and output chains.
 * Not hooked: glibc's internal allocations (qsort, getaddrinfo, stdio), libcurl and
 * libxml2 (not on the extractive ingest/query paths; curl_global_init_mem and xmlMemSetup
 * are the hooks for a later pass).
 *
 * The library hooks are installed from a constructor, before main: sqlite3_config must run
 * before sqlite3_initialize, libevent's and OpenSSL's before their first allocation.
 *
 * Control: when RAGD_TORTURE_CTL names a path, a thread listens on a Unix stream socket
 * there (signals blocked, so SIGTERM still reaches the server's loop thread) and answers
 * one line per command:
 *   arm N [DOMAINS] [persist]  count allocations of DOMAINS (default "rjseo") from now and
 *                              fail the Nth (with persist: the Nth and every later one)
 *   count [DOMAINS]            count only
 *   disarm                     stop; reply "seen=S fired=F dom=D seq=Q size=Z r=.. j=.. ..."
 *   stack                      the stack of the first injected failure, symbolized, one
 *                              frame a line, then "end"
 *   sites                      ragd's distinct allocation call sites in the last window
 *                              (domain r only), symbolized, then "end"
 *   leaks                      LeakSanitizer check now (report on stderr); "leaks=0|1"
 *   ping                       "pong"
 * Without RAGD_TORTURE_CTL nothing is armed and every hook passes straight through.
 *
 * Counting is process-wide (every thread): the driver keeps the server otherwise idle
 * while a window is open. The hot path is a relaxed atomic load when disarmed. */
#include <errno.h>
#include <execinfo.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <pthread.h>
#include <sanitizer/common_interface_defs.h>
#include <sanitizer/lsan_interface.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/event.h>

enum { FAULT_RAGD, FAULT_JANSSON, FAULT_SQLITE, FAULT_EVENT, FAULT_CRYPTO, FAULT_NDOM };

static const char fault_letters[FAULT_NDOM + 1] = "rjseo";

#define FAULT_MAX_FRAMES 24
#define FAULT_MAX_SITES 4096 /* a power of two */

/* The window: open while active; counts allocations of the domains in mask. */
static atomic_bool fault_active;
static atomic_uint fault_mask;
static atomic_uint_fast64_t fault_seen;
static atomic_uint_fast64_t fault_target; /* 0: count only */
static atomic_bool fault_persist;
static atomic_uint_fast64_t fault_per_dom[FAULT_NDOM];
static atomic_uint_fast64_t fault_fired;

/* The first injected failure of the window: written once, by the thread that failed, then
 * published by fault_first_ready (release); the control thread reads it after an acquire. */
static atomic_bool fault_first_ready;
static int fault_first_dom = -1;
static uint64_t fault_first_seq;
static size_t fault_first_size;
static void *fault_first_pcs[FAULT_MAX_FRAMES];
static int fault_first_npcs;

/* ragd's call sites seen in the window: return addresses, open addressing, no removal. */
static _Atomic(uintptr_t) fault_sites[FAULT_MAX_SITES];

static void fault_site_add(uintptr_t pc)
{
    size_t h = (size_t)((pc * 0x9e3779b97f4a7c15ULL) >> 32) & (FAULT_MAX_SITES - 1);
    for (size_t i = 0; i < FAULT_MAX_SITES; i++, h = (h + 1) & (FAULT_MAX_SITES - 1)) {
        uintptr_t cur = atomic_load_explicit(&fault_sites[h], memory_order_relaxed);
        if (cur == pc)
            return;
        if (cur == 0) {
            uintptr_t expected = 0;
            if (atomic_compare_exchange_strong(&fault_sites[h], &expected, pc) || expected == pc)
                return;
        }
    }
}

/* True when this allocation is to fail. caller: ragd's call site (domain r), else 0. */
static bool fault_hit(int dom, size_t size, void *caller)
{
    if (!atomic_load_explicit(&fault_active, memory_order_relaxed))
        return false;
    if (!(atomic_load_explicit(&fault_mask, memory_order_relaxed) & (1u << dom)))
        return false;
    uint64_t n = atomic_fetch_add(&fault_seen, 1) + 1;
    atomic_fetch_add_explicit(&fault_per_dom[dom], 1, memory_order_relaxed);
    if (caller)
        fault_site_add((uintptr_t)caller);
    uint64_t t = atomic_load(&fault_target);
    if (t == 0 || n < t || (n > t && !atomic_load(&fault_persist)))
        return false;
    if (atomic_fetch_add(&fault_fired, 1) == 0) {
        fault_first_dom = dom;
        fault_first_seq = n;
        fault_first_size = size;
        fault_first_npcs = backtrace(fault_first_pcs, FAULT_MAX_FRAMES);
        atomic_store_explicit(&fault_first_ready, true, memory_order_release);
    }
    return true;
}

/* ---- ragd's own calls (-Wl,--wrap) ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t n);
void *__real_reallocarray(void *p, size_t n, size_t size);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);
int __real_vasprintf(char **out, const char *fmt, va_list ap);

void *__wrap_malloc(size_t n);
void *__wrap_calloc(size_t n, size_t size);
void *__wrap_realloc(void *p, size_t n);
void *__wrap_reallocarray(void *p, size_t n, size_t size);
char *__wrap_strdup(const char *s);
char *__wrap_strndup(const char *s, size_t n);
int __wrap_vasprintf(char **out, const char *fmt, va_list ap);
int __wrap_asprintf(char **out, const char *fmt, ...);

#define FAULT_CALLER __builtin_extract_return_addr(__builtin_return_address(0))

void *__wrap_malloc(size_t n)
{
    if (fault_hit(FAULT_RAGD, n, FAULT_CALLER)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_malloc(n);
}

void *__wrap_calloc(size_t n, size_t size)
{
    if (fault_hit(FAULT_RAGD, n * size, FAULT_CALLER)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t n)
{
    if (fault_hit(FAULT_RAGD, n, FAULT_CALLER)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_realloc(p, n);
}

void *__wrap_reallocarray(void *p, size_t n, size_t size)
{
    if (fault_hit(FAULT_RAGD, n * size, FAULT_CALLER)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_reallocarray(p, n, size);
}

char *__wrap_strdup(const char *s)
{
    if (fault_hit(FAULT_RAGD, strlen(s) + 1, FAULT_CALLER)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    if (fault_hit(FAULT_RAGD, strnlen(s, n) + 1, FAULT_CALLER)) {
        errno = ENOMEM;
        return NULL;
    }
    return __real_strndup(s, n);
}

int __wrap_vasprintf(char **out, const char *fmt, va_list ap)
{
    if (fault_hit(FAULT_RAGD, 0, FAULT_CALLER)) {
        errno = ENOMEM;
        return -1;
    }
    return __real_vasprintf(out, fmt, ap);
}

int __wrap_asprintf(char **out, const char *fmt, ...)
{
    if (fault_hit(FAULT_RAGD, 0, FAULT_CALLER)) {
        errno = ENOMEM;
        return -1;
    }
    va_list ap;
    va_start(ap, fmt);
    int rc = __real_vasprintf(out, fmt, ap);
    va_end(ap);
    return rc;
}

/* ---- the libraries' allocators ---- */

static void *fault_jansson_malloc(size_t n) { return fault_hit(FAULT_JANSSON, n, NULL) ? NULL : __real_malloc(n); }
static void fault_jansson_free(void *p) { free(p); }

static void *fault_event_malloc(size_t n) { return fault_hit(FAULT_EVENT, n, NULL) ? NULL : __real_malloc(n); }
static void *fault_event_realloc(void *p, size_t n)
{
    return fault_hit(FAULT_EVENT, n, NULL) ? NULL : __real_realloc(p, n);
}
static void fault_event_free(void *p) { free(p); }

static void *fault_crypto_malloc(size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return fault_hit(FAULT_CRYPTO, n, NULL) ? NULL : __real_malloc(n);
}
static void *fault_crypto_realloc(void *p, size_t n, const char *file, int line)
{
    (void)file;
    (void)line;
    return fault_hit(FAULT_CRYPTO, n, NULL) ? NULL : __real_realloc(p, n);
}
static void fault_crypto_free(void *p, const char *file, int line)
{
    (void)file;
    (void)line;
    free(p);
}

/* SQLite: its default allocator, with failures in front of xMalloc and xRealloc. */
static sqlite3_mem_methods fault_sqlite_default;

static void *fault_sqlite_malloc(int n)
{
    return fault_hit(FAULT_SQLITE, (size_t)n, NULL) ? NULL : fault_sqlite_default.xMalloc(n);
}
static void *fault_sqlite_realloc(void *p, int n)
{
    return fault_hit(FAULT_SQLITE, (size_t)n, NULL) ? NULL : fault_sqlite_default.xRealloc(p, n);
}
static void fault_sqlite_free(void *p) { fault_sqlite_default.xFree(p); }
static int fault_sqlite_size(void *p) { return fault_sqlite_default.xSize(p); }
static int fault_sqlite_roundup(int n) { return fault_sqlite_default.xRoundup(n); }
static int fault_sqlite_init(void *arg) { return fault_sqlite_default.xInit(arg); }
static void fault_sqlite_shutdown(void *arg) { fault_sqlite_default.xShutdown(arg); }

/* ---- the control thread ---- */

static unsigned fault_parse_domains(const char *s)
{
    unsigned m = 0;
    for (; s && *s; s++) {
        const char *p = strchr(fault_letters, *s); /* *s is never NUL here */
        if (p)
            m |= 1u << (p - fault_letters);
    }
    return m;
}

static void fault_reply(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fault_reply(int fd, const char *fmt, ...)
{
    char line[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    size_t len = (size_t)n < sizeof line ? (size_t)n : sizeof line - 1;
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, line + off, len - off);
        if (w <= 0)
            return;
        off += (size_t)w;
    }
}

static void fault_open_window(uint64_t target, unsigned mask, bool persist)
{
    atomic_store(&fault_active, false);
    atomic_store(&fault_first_ready, false);
    atomic_store(&fault_seen, 0);
    for (int i = 0; i < FAULT_NDOM; i++)
        atomic_store(&fault_per_dom[i], 0);
    atomic_store(&fault_fired, 0);
    for (size_t i = 0; i < FAULT_MAX_SITES; i++)
        atomic_store_explicit(&fault_sites[i], 0, memory_order_relaxed);
    fault_first_dom = -1;
    fault_first_seq = 0;
    fault_first_size = 0;
    fault_first_npcs = 0;
    atomic_store(&fault_target, target);
    atomic_store(&fault_persist, persist);
    atomic_store(&fault_mask, mask);
    atomic_store(&fault_active, true);
}

/* One symbolized frame per line: "  #i function file:line" (inlined frames included). */
static void fault_reply_frame(int fd, int i, void *pc)
{
    char buf[2048];
    /* backtrace() gives return addresses: look the call instruction up, one byte earlier. */
    __sanitizer_symbolize_pc((char *)pc - 1, "%f %L", buf, sizeof buf);
    /* Inlined frames come NUL-separated, the list ending in an empty string. */
    for (const char *p = buf; *p && p < buf + sizeof buf; p += strlen(p) + 1)
        fault_reply(fd, "#%d %s\n", i, p);
}

static void fault_command(int fd, char *line)
{
    char *save = NULL;
    char *cmd = strtok_r(line, " \t\r\n", &save);
    if (!cmd)
        return;
    if (strcmp(cmd, "ping") == 0) {
        fault_reply(fd, "pong\n");
    } else if (strcmp(cmd, "arm") == 0 || strcmp(cmd, "count") == 0) {
        bool arm = cmd[0] == 'a';
        char *num = arm ? strtok_r(NULL, " \t\r\n", &save) : NULL;
        char *doms = strtok_r(NULL, " \t\r\n", &save);
        char *flag = strtok_r(NULL, " \t\r\n", &save);
        uint64_t target = num ? strtoull(num, NULL, 10) : 0;
        unsigned mask = doms ? fault_parse_domains(doms) : (1u << FAULT_NDOM) - 1;
        if ((arm && target == 0) || mask == 0) {
            fault_reply(fd, "error: usage: arm N [rjseo] [persist] | count [rjseo]\n");
            return;
        }
        fault_open_window(target, mask, flag && strcmp(flag, "persist") == 0);
        fault_reply(fd, "ok\n");
    } else if (strcmp(cmd, "disarm") == 0) {
        atomic_store(&fault_active, false);
        uint64_t fired = atomic_load(&fault_fired);
        bool ready = atomic_load_explicit(&fault_first_ready, memory_order_acquire);
        char dom = ready && fault_first_dom >= 0 ? fault_letters[fault_first_dom] : '-';
        fault_reply(fd, "seen=%llu fired=%llu dom=%c seq=%llu size=%zu r=%llu j=%llu s=%llu e=%llu o=%llu\n",
                    (unsigned long long)atomic_load(&fault_seen), (unsigned long long)fired, dom,
                    (unsigned long long)fault_first_seq, fault_first_size,
                    (unsigned long long)atomic_load(&fault_per_dom[FAULT_RAGD]),
                    (unsigned long long)atomic_load(&fault_per_dom[FAULT_JANSSON]),
                    (unsigned long long)atomic_load(&fault_per_dom[FAULT_SQLITE]),
                    (unsigned long long)atomic_load(&fault_per_dom[FAULT_EVENT]),
                    (unsigned long long)atomic_load(&fault_per_dom[FAULT_CRYPTO]));
    } else if (strcmp(cmd, "stack") == 0) {
        /* The first frames are this module's (and ASan's backtrace interceptor): start
         * after the last of them, at the code whose allocation failed. */
        int first = 0;
        int npcs = atomic_load_explicit(&fault_first_ready, memory_order_acquire) ? fault_first_npcs : 0;
        for (int i = 0; i < npcs; i++) {
            char fn[256];
            __sanitizer_symbolize_pc((char *)fault_first_pcs[i] - 1, "%f", fn, sizeof fn);
            if (strncmp(fn, "fault_", 6) == 0 || strncmp(fn, "__wrap_", 7) == 0 || strstr(fn, "backtrace"))
                first = i + 1;
        }
        for (int i = first; i < npcs; i++)
            fault_reply_frame(fd, i - first, fault_first_pcs[i]);
        fault_reply(fd, "end\n");
    } else if (strcmp(cmd, "sites") == 0) {
        for (size_t i = 0; i < FAULT_MAX_SITES; i++) {
            uintptr_t pc = atomic_load_explicit(&fault_sites[i], memory_order_relaxed);
            if (pc)
                fault_reply_frame(fd, 0, (void *)pc);
        }
        fault_reply(fd, "end\n");
    } else if (strcmp(cmd, "leaks") == 0) {
        fault_reply(fd, "leaks=%d\n", __lsan_do_recoverable_leak_check() ? 1 : 0);
    } else {
        fault_reply(fd, "error: unknown command '%s'\n", cmd);
    }
}

static void *fault_control_main(void *arg)
{
    int lfd = (int)(intptr_t)arg;
    for (;;) {
        int fd = accept(lfd, NULL, NULL);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            return NULL;
        }
        char buf[512];
        size_t len = 0;
        for (;;) {
            ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
            if (r <= 0)
                break;
            len += (size_t)r;
            buf[len] = '\0';
            char *nl;
            while ((nl = strchr(buf, '\n')) != NULL) {
                *nl = '\0';
                fault_command(fd, buf);
                len -= (size_t)(nl + 1 - buf);
                memmove(buf, nl + 1, len + 1);
            }
            if (len == sizeof buf - 1)
                len = 0; /* an overlong line: dropped */
        }
        close(fd);
    }
}

static void fault_control_start(const char *path)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof sa.sun_path) {
        fprintf(stderr, "torture: RAGD_TORTURE_CTL is too long\n");
        _exit(2);
    }
    strcpy(sa.sun_path, path);
    unlink(path);
    int lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(lfd, 4) != 0) {
        perror("torture: control socket");
        _exit(2);
    }
    /* Every signal blocked in the control thread: SIGTERM must reach the server's loop. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    pthread_t t;
    int rc = pthread_create(&t, NULL, fault_control_main, (void *)(intptr_t)lfd);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        fprintf(stderr, "torture: cannot start the control thread\n");
        _exit(2);
    }
    pthread_detach(t);
}

__attribute__((constructor)) static void fault_init(void)
{
    void *warm[2];
    backtrace(warm, 2); /* loads the unwinder now, not inside a failing allocation */
    json_set_alloc_funcs(fault_jansson_malloc, fault_jansson_free);
    event_set_mem_functions(fault_event_malloc, fault_event_realloc, fault_event_free);
    if (!CRYPTO_set_mem_functions(fault_crypto_malloc, fault_crypto_realloc, fault_crypto_free))
        fprintf(stderr, "torture: OpenSSL allocated before the hooks; domain o is not hooked\n");
    if (sqlite3_config(SQLITE_CONFIG_GETMALLOC, &fault_sqlite_default) != SQLITE_OK) {
        fprintf(stderr, "torture: cannot read SQLite's allocator\n");
        _exit(2);
    }
    static const sqlite3_mem_methods hooked = {fault_sqlite_malloc, fault_sqlite_free, fault_sqlite_realloc,
                                               fault_sqlite_size, fault_sqlite_roundup, fault_sqlite_init,
                                               fault_sqlite_shutdown, NULL};
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &hooked) != SQLITE_OK) {
        fprintf(stderr, "torture: cannot hook SQLite's allocator\n");
        _exit(2);
    }
    const char *ctl = getenv("RAGD_TORTURE_CTL");
    if (ctl && *ctl)
        fault_control_start(ctl);
}
