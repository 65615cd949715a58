/* Tests of the upstream HTTP client against a real HTTP server on loopback (libmicrohttpd,
 * a thread per connection, in this process): bodies and statuses, keep-alive reuse, the
 * time-to-first-byte and idle-gap timeouts, the size cap, refused connections, aborting
 * from a callback, and cancellation. Timeouts here are real but short (≤ 0.3 s). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <microhttpd.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "upstream/client.h"

static struct MHD_Daemon *server;
static int server_port;

typedef struct {
    int chunks_sent;
    int stall_after; /* chunks before a long stall; -1 = none */
} stream_state;

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream_state *st = cls;
    if (st->chunks_sent == 3)
        return MHD_CONTENT_READER_END_OF_STREAM;
    if (st->chunks_sent == st->stall_after)
        usleep(1500 * 1000);
    else if (st->chunks_sent > 0)
        usleep(20 * 1000);
    st->chunks_sent++;
    return snprintf(buf, max, "{\"n\":%d}\n", st->chunks_sent);
}

static void stream_free(void *cls) { free(cls); }

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls)
{
    (void)cls;
    (void)method;
    (void)version;
    (void)upload;
    if (*con_cls == NULL) {
        *con_cls = (void *)1;
        return MHD_YES;
    }
    if (*upload_size) {
        *upload_size = 0;
        return MHD_YES;
    }
    struct MHD_Response *r = NULL;
    int status = 200;
    if (strcmp(url, "/ok") == 0) {
        r = MHD_create_response_from_buffer(5, (void *)"hello", MHD_RESPMEM_PERSISTENT);
    } else if (strcmp(url, "/missing") == 0) {
        status = 404;
        r = MHD_create_response_from_buffer(9, (void *)"not found", MHD_RESPMEM_PERSISTENT);
    } else if (strcmp(url, "/slow_first") == 0) {
        usleep(1500 * 1000);
        r = MHD_create_response_from_buffer(4, (void *)"late", MHD_RESPMEM_PERSISTENT);
    } else if (strcmp(url, "/stream") == 0 || strcmp(url, "/stall") == 0) {
        stream_state *st = calloc(1, sizeof *st);
        st->stall_after = strcmp(url, "/stall") == 0 ? 1 : -1;
        r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 256, stream_reader, st, stream_free);
    } else if (strcmp(url, "/big") == 0) {
        static char big[100000];
        memset(big, 'x', sizeof big);
        r = MHD_create_response_from_buffer(sizeof big, big, MHD_RESPMEM_PERSISTENT);
    } else {
        status = 404;
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
    }
    enum MHD_Result rc = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return rc;
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    server = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD, 0, NULL, NULL,
                              on_request, NULL, MHD_OPTION_END);
    if (!server)
        return -1;
    server_port = MHD_get_daemon_info(server, MHD_DAEMON_INFO_BIND_PORT)->port;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    MHD_stop_daemon(server);
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
