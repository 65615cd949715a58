/* Tests of the upstream HTTP client against a real HTTP server on loopback (a minimal
 * HTTP/1.1 server written here, a thread per connection, in this process): bodies and
 * statuses, keep-alive reuse, the time-to-first-byte and idle-gap timeouts, the size cap,
 * refused connections, aborting from a callback, and cancellation. Timeouts here are real
 * but short (<= 0.3 s). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include "upstream/client.h"

static int server_fd = -1;
static int server_port;
static pthread_t server_thread;

static bool send_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return false;
        p += w;
        n -= (size_t)w;
    }
    return true;
}

static bool send_reply(int fd, int status, const char *body, size_t len)
{
    char head[256];
    int n = snprintf(head, sizeof head, "HTTP/1.1 %d X\r\nContent-Length: %zu\r\n\r\n", status, len);
    return send_all(fd, head, (size_t)n) && send_all(fd, body, len);
}

/* /stream and /stall: three NDJSON pieces as chunks, 20 ms apart; /stall waits 1.5 s after
 * the first. */
static bool send_stream(int fd, bool stall)
{
    static const char head[] = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    if (!send_all(fd, head, sizeof head - 1))
        return false;
    for (int i = 1; i <= 3; i++) {
        if (i > 1)
            usleep(stall && i == 2 ? 1500 * 1000 : 20 * 1000);
        char piece[64];
        int n = snprintf(piece, sizeof piece, "{\"n\":%d}\n", i);
        char chunk[96];
        int cn = snprintf(chunk, sizeof chunk, "%x\r\n%s\r\n", n, piece);
        if (!send_all(fd, chunk, (size_t)cn))
            return false;
    }
    return send_all(fd, "0\r\n\r\n", 5);
}

/* One connection: requests (a head, then Content-Length bytes dropped) until the client
 * closes. */
static void *serve_conn(void *arg)
{
    int fd = (int)(intptr_t)arg;
    char buf[16384];
    size_t have = 0;
    for (;;) {
        char *end = NULL;
        while (!(end = memmem(buf, have, "\r\n\r\n", 4))) {
            ssize_t r = have < sizeof buf ? recv(fd, buf + have, sizeof buf - have, 0) : -1;
            if (r <= 0)
                goto out;
            have += (size_t)r;
        }
        size_t head_len = (size_t)(end - buf) + 4;
        char url[256] = "";
        sscanf(buf, "%*s %255s", url);
        size_t body = 0;
        for (char *p = buf; p < end; p++)
            if ((p == buf || p[-1] == '\n') && strncasecmp(p, "Content-Length:", 15) == 0)
                body = strtoul(p + 15, NULL, 10);
        while (have < head_len + body) { /* the body, dropped (the tests send small ones) */
            ssize_t r = recv(fd, buf + have, sizeof buf - have, 0);
            if (r <= 0)
                goto out;
            have += (size_t)r;
        }
        memmove(buf, buf + head_len + body, have - head_len - body);
        have -= head_len + body;
        bool ok = true;
        if (strcmp(url, "/ok") == 0) {
            ok = send_reply(fd, 200, "hello", 5);
        } else if (strcmp(url, "/missing") == 0) {
            ok = send_reply(fd, 404, "not found", 9);
        } else if (strcmp(url, "/slow_first") == 0) {
            usleep(1500 * 1000);
            ok = send_reply(fd, 200, "late", 4);
        } else if (strcmp(url, "/stream") == 0 || strcmp(url, "/stall") == 0) {
            ok = send_stream(fd, strcmp(url, "/stall") == 0);
        } else if (strcmp(url, "/big") == 0) {
            static char big[100000];
            memset(big, 'x', sizeof big);
            ok = send_reply(fd, 200, big, sizeof big);
        } else {
            ok = send_reply(fd, 404, "", 0);
        }
        if (!ok)
            break;
    }
out:
    close(fd);
    return NULL;
}

static void *serve(void *arg)
{
    (void)arg;
    for (;;) {
        int fd = accept(server_fd, NULL, NULL);
        if (fd < 0)
            return NULL; /* the listening socket was shut down */
        pthread_t t;
        if (pthread_create(&t, NULL, serve_conn, (void *)(intptr_t)fd) != 0) {
            close(fd);
            continue;
        }
        pthread_detach(t);
    }
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    server_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t sl = sizeof sa;
    if (server_fd < 0 || bind(server_fd, (struct sockaddr *)&sa, sizeof sa) != 0 || listen(server_fd, 64) != 0 ||
        getsockname(server_fd, (struct sockaddr *)&sa, &sl) != 0)
        return -1;
    server_port = ntohs(sa.sin_port);
    return pthread_create(&server_thread, NULL, serve, NULL) == 0 ? 0 : -1;
}

static int group_teardown(void **state)
{
    (void)state;
    shutdown(server_fd, SHUT_RDWR);
    pthread_join(server_thread, NULL);
    close(server_fd);
    curl_global_cleanup();
    return 0;
}

/* ---- a tiny loop harness ---- */

typedef struct {
    struct event_base *base;
    int done;
    int expected;
    upstream_result last;
    int status_seen;
    char body[4096];
    size_t body_len;
    int abort_after_bytes; /* 0 = never */
} ctx;

static int on_headers(int status, const char *ctype, void *arg)
{
    (void)ctype;
    ((ctx *)arg)->status_seen = status;
    return 0;
}

static int on_data(const char *p, size_t n, void *arg)
{
    ctx *x = arg;
    size_t room = sizeof x->body - 1 - x->body_len;
    size_t take = n < room ? n : room;
    memcpy(x->body + x->body_len, p, take);
    x->body_len += take;
    x->body[x->body_len] = '\0';
    return x->abort_after_bytes && x->body_len >= (size_t)x->abort_after_bytes;
}

static void on_done(const upstream_result *r, void *arg)
{
    ctx *x = arg;
    x->last = *r;
    x->last.message = NULL;
    if (++x->done == x->expected)
        event_base_loopbreak(x->base);
}

static upstream_request make_req(ctx *x, const char *path, char *url, size_t urllen)
{
    snprintf(url, urllen, "http://127.0.0.1:%d%s", server_port, path);
    upstream_request r = {.url = url,
                          .connect_timeout_ms = 1000,
                          .ttfb_timeout_ms = 1000,
                          .idle_timeout_ms = 1000,
                          .total_timeout_ms = 5000,
                          .max_response_bytes = 1 << 20,
                          .on_headers = on_headers,
                          .on_data = on_data,
                          .on_done = on_done,
                          .arg = x};
    return r;
}

static ctx run_one(upstream_client *c, struct event_base *base, const char *path, void (*tweak)(upstream_request *),
                   int abort_after)
{
    ctx x = {.base = base, .expected = 1, .abort_after_bytes = abort_after};
    char url[128];
    upstream_request r = make_req(&x, path, url, sizeof url);
    if (tweak)
        tweak(&r);
    assert_non_null(upstream_start(c, &r));
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    assert_int_equal(x.done, 1);
    return x;
}

static void test_ok_and_reuse(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    upstream_client_options o = {.max_host_connections = 4, .max_total_connections = 8};
    upstream_client *c = upstream_client_new(base, &o);
    for (int i = 0; i < 10; i++) {
        ctx x = run_one(c, base, "/ok", NULL, 0);
        assert_int_equal(x.last.transport, UPSTREAM_T_OK);
        assert_int_equal(x.last.status, 200);
        assert_int_equal(x.status_seen, 200);
        assert_string_equal(x.body, "hello");
        assert_int_equal(x.last.reused, i > 0);
    }
    upstream_client_stats st;
    upstream_client_stats_get(c, &st);
    assert_int_equal(st.calls_started, 10);
    assert_int_equal(st.connections_opened, 1); /* keep-alive: one connection for all ten */
    assert_int_equal(st.running, 0);
    ctx x = run_one(c, base, "/missing", NULL, 0);
    assert_int_equal(x.last.transport, UPSTREAM_T_OK); /* a 404 is a complete response */
    assert_int_equal(x.last.status, 404);
    upstream_client_free(c);
    event_base_free(base);
}

static void test_stream_pieces(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    upstream_client *c = upstream_client_new(base, NULL);
    ctx x = run_one(c, base, "/stream", NULL, 0);
    assert_int_equal(x.last.transport, UPSTREAM_T_OK);
    assert_string_equal(x.body, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n");
    upstream_client_free(c);
    event_base_free(base);
}

static void short_ttfb(upstream_request *r) { r->ttfb_timeout_ms = 200; }
static void short_idle(upstream_request *r) { r->idle_timeout_ms = 200; }
static void small_cap(upstream_request *r) { r->max_response_bytes = 1000; }
static void short_total(upstream_request *r) { r->total_timeout_ms = 300; r->ttfb_timeout_ms = 0; }

static void test_timeouts_and_caps(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    upstream_client *c = upstream_client_new(base, NULL);

    ctx x = run_one(c, base, "/slow_first", short_ttfb, 0);
    assert_int_equal(x.last.transport, UPSTREAM_T_TTFB_TIMEOUT);
    assert_true(x.last.total_ms < 1000);

    x = run_one(c, base, "/stall", short_idle, 0);
    assert_int_equal(x.last.transport, UPSTREAM_T_IDLE_TIMEOUT);
    assert_string_equal(x.body, "{\"n\":1}\n"); /* the first piece arrived, then the stall */

    x = run_one(c, base, "/slow_first", short_total, 0);
    assert_int_equal(x.last.transport, UPSTREAM_T_TOTAL_TIMEOUT);

    x = run_one(c, base, "/big", small_cap, 0);
    assert_int_equal(x.last.transport, UPSTREAM_T_TOO_BIG);

    x = run_one(c, base, "/stream", NULL, 8);
    assert_int_equal(x.last.transport, UPSTREAM_T_ABORTED);
    upstream_client_free(c);
    event_base_free(base);
}

static void test_refused(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    upstream_client *c = upstream_client_new(base, NULL);
    ctx x = {.base = base, .expected = 1};
    upstream_request r = make_req(&x, "/ok", (char[64]){0}, 64);
    r.url = "http://127.0.0.1:1/ok"; /* nothing listens on port 1 */
    assert_non_null(upstream_start(c, &r));
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    assert_int_equal(x.last.transport, UPSTREAM_T_CONNECT);
    assert_int_equal(x.last.status, 0);
    upstream_client_free(c);
    event_base_free(base);
}

static void stop_loop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void test_cancel(void **state)
{
    (void)state;
    struct event_base *base = event_base_new();
    upstream_client *c = upstream_client_new(base, NULL);
    ctx x = {.base = base, .expected = 1};
    char url[128];
    upstream_request r = make_req(&x, "/slow_first", url, sizeof url);
    upstream_call *call = upstream_start(c, &r);
    assert_non_null(call);
    struct timeval tv = {0, 100 * 1000};
    event_base_once(base, -1, EV_TIMEOUT, stop_loop, base, &tv);
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    upstream_cancel(call);
    upstream_client_stats st;
    upstream_client_stats_get(c, &st);
    assert_int_equal(st.running, 0);
    assert_int_equal(x.done, 0); /* on_done never runs for a cancelled call */
    upstream_client_free(c);
    event_base_free(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ok_and_reuse),     cmocka_unit_test(test_stream_pieces),
        cmocka_unit_test(test_timeouts_and_caps), cmocka_unit_test(test_refused),
        cmocka_unit_test(test_cancel),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
