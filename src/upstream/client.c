#include "upstream/client.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/clock.h"
#include "util/log.h"
#include "util/queue.h"

struct upstream_client {
    struct event_base *base;
    CURLM *multi;
    struct event *timer;
    queue_node calls;  /* running calls, for upstream_client_free */
    queue_node doomed; /* cancelled from inside a curl callback: freed once curl returns */
    int in_curl;       /* inside curl_multi_socket_action (and so maybe inside a callback) */
    upstream_client_stats stats;
};

struct upstream_call {
    upstream_client *client;
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    struct event *stall; /* time-to-first-byte, then idle-gap timer */
    upstream_request req;
    double started_ms;
    double ttfb_ms;
    size_t received;
    bool got_first_byte;
    upstream_transport stop_reason; /* set when we stop the transfer ourselves */
    bool cancelled; /* upstream_cancel ran while curl was busy: no callback, freed soon */
    char error[CURL_ERROR_SIZE];
    queue_node link; /* in calls, or in doomed */
};

/* One watched socket. */
typedef struct {
    struct event *ev;
} upstream_sock;

const char *upstream_transport_name(upstream_transport t)
{
    switch (t) {
    case UPSTREAM_T_OK: return "ok";
    case UPSTREAM_T_CONNECT: return "connect";
    case UPSTREAM_T_TTFB_TIMEOUT: return "ttfb_timeout";
    case UPSTREAM_T_IDLE_TIMEOUT: return "idle_timeout";
    case UPSTREAM_T_TOTAL_TIMEOUT: return "total_timeout";
    case UPSTREAM_T_RESET: return "reset";
    case UPSTREAM_T_TOO_BIG: return "too_big";
    case UPSTREAM_T_ABORTED: return "aborted";
    case UPSTREAM_T_OTHER: break;
    }
    return "other";
}

/* ---- finishing ---- */

/* Frees what a call owns; it is no longer in the multi handle nor in the client's list. */
static void upstream_call_destroy(upstream_call *call)
{
    if (call->easy)
        curl_easy_cleanup(call->easy);
    curl_slist_free_all(call->headers);
    if (call->stall)
        event_free(call->stall);
    free(call->body);
    free(call);
}

static void upstream_call_free(upstream_call *call)
{
    upstream_client *c = call->client;
    queue_remove(&call->link);
    c->stats.running--;
    curl_multi_remove_handle(c->multi, call->easy);
    upstream_call_destroy(call);
}

/* Frees the calls cancelled while curl was running: libcurl forbids removing a handle from
 * inside its own callbacks, so upstream_cancel parks them until curl has returned. */
static void upstream_free_doomed(upstream_client *c)
{
    queue_node *n;
    while ((n = queue_first(&c->doomed)) != NULL)
        upstream_call_free(queue_data(n, upstream_call, link));
}

/* curl_multi_socket_action, then what it finished: the doomed calls first (removing a
 * handle also drops its completion message), then the completed ones. */
static void upstream_socket_action(upstream_client *c, curl_socket_t s, int action)
{
    int running = 0;
    c->in_curl++;
    curl_multi_socket_action(c->multi, s, action, &running);
    c->in_curl--;
    upstream_free_doomed(c);
}

static upstream_transport upstream_classify(upstream_call *call, CURLcode code)
{
    if (call->stop_reason != UPSTREAM_T_OK)
        return call->stop_reason;
    switch (code) {
    case CURLE_OK:
        return UPSTREAM_T_OK;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
        return UPSTREAM_T_CONNECT;
    case CURLE_OPERATION_TIMEDOUT: {
        /* connected: a connect time, a reused connection (no new connect, connect time 0),
         * or bytes already received */
        curl_off_t connected = 0;
        long new_connects = 1;
        curl_easy_getinfo(call->easy, CURLINFO_CONNECT_TIME_T, &connected);
        curl_easy_getinfo(call->easy, CURLINFO_NUM_CONNECTS, &new_connects);
        return connected > 0 || new_connects == 0 || call->got_first_byte ? UPSTREAM_T_TOTAL_TIMEOUT
                                                                          : UPSTREAM_T_CONNECT;
    }
    case CURLE_RECV_ERROR:
    case CURLE_SEND_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_PARTIAL_FILE:
        return UPSTREAM_T_RESET;
    default:
        return UPSTREAM_T_OTHER;
    }
}

static void upstream_finish(upstream_call *call, CURLcode code)
{
    upstream_result r = {0};
    r.transport = upstream_classify(call, code);
    long status = 0, reused = 0;
    curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_getinfo(call->easy, CURLINFO_NUM_CONNECTS, &reused);
    call->client->stats.connections_opened += (unsigned long)reused;
    r.reused = reused == 0;
    r.status = (int)status;
    r.ttfb_ms = call->got_first_byte ? call->ttfb_ms : -1;
    r.total_ms = clock_now_ms() - call->started_ms;
    r.message = call->error[0] ? call->error : (code != CURLE_OK ? curl_easy_strerror(code) : "");
    if (call->stop_reason == UPSTREAM_T_TTFB_TIMEOUT || call->stop_reason == UPSTREAM_T_IDLE_TIMEOUT ||
        call->stop_reason == UPSTREAM_T_TOO_BIG) /* rather than curl's "failed writing received data" */
        r.message = upstream_transport_name(call->stop_reason);
    if (call->req.on_done)
        call->req.on_done(&r, call->req.arg);
    upstream_call_free(call);
}

static void upstream_check_done(upstream_client *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        upstream_call *call = NULL;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&call);
        upstream_finish(call, msg->data.result);
    }
}

/* ---- the loop glue (hiperfifo) ---- */

static void upstream_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    upstream_client *c = arg;
    upstream_socket_action(c, CURL_SOCKET_TIMEOUT, 0);
    upstream_check_done(c);
}

static int upstream_timer_cb(CURLM *multi, long timeout_ms, void *arg)
{
    (void)multi;
    upstream_client *c = arg;
    if (timeout_ms < 0) {
        evtimer_del(c->timer);
        return 0;
    }
    struct timeval tv = {.tv_sec = timeout_ms / 1000, .tv_usec = (timeout_ms % 1000) * 1000};
    evtimer_add(c->timer, &tv);
    return 0;
}

static void upstream_on_socket(evutil_socket_t fd, short what, void *arg)
{
    upstream_client *c = arg;
    int action = ((what & EV_READ) ? CURL_CSELECT_IN : 0) | ((what & EV_WRITE) ? CURL_CSELECT_OUT : 0);
    upstream_socket_action(c, fd, action);
    upstream_check_done(c);
}

static int upstream_socket_cb(CURL *easy, curl_socket_t s, int what, void *arg, void *sockp)
{
    (void)easy;
    upstream_client *c = arg;
    upstream_sock *us = sockp;
    if (what == CURL_POLL_REMOVE) {
        if (us) {
            event_free(us->ev);
            free(us);
            curl_multi_assign(c->multi, s, NULL);
        }
        return 0;
    }
    if (!us) {
        us = calloc(1, sizeof *us);
        if (!us)
            return -1;
        curl_multi_assign(c->multi, s, us);
    } else {
        event_free(us->ev);
    }
    short kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) | ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
    us->ev = event_new(c->base, s, kind, upstream_on_socket, c);
    if (!us->ev)
        return -1;
    event_add(us->ev, NULL);
    return 0;
}

/* ---- per-call callbacks ---- */

static void upstream_arm_stall(upstream_call *call, long ms)
{
    if (ms <= 0)
        return;
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    evtimer_add(call->stall, &tv);
}

static void upstream_on_stall(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    upstream_call *call = arg;
    call->stop_reason = call->got_first_byte ? UPSTREAM_T_IDLE_TIMEOUT : UPSTREAM_T_TTFB_TIMEOUT;
    upstream_finish(call, CURLE_OPERATION_TIMEDOUT);
}

static size_t upstream_write_cb(char *p, size_t size, size_t nmemb, void *arg)
{
    upstream_call *call = arg;
    size_t n = size * nmemb;
    if (call->cancelled)
        return 0; /* stop the transfer: it is freed once curl returns */
    if (!call->got_first_byte) {
        call->got_first_byte = true;
        call->ttfb_ms = clock_now_ms() - call->started_ms;
        long status = 0;
        char *ctype = NULL;
        curl_easy_getinfo(call->easy, CURLINFO_RESPONSE_CODE, &status);
        curl_easy_getinfo(call->easy, CURLINFO_CONTENT_TYPE, &ctype);
        if (call->req.on_headers && call->req.on_headers((int)status, ctype ? ctype : "", call->req.arg) != 0) {
            call->stop_reason = UPSTREAM_T_ABORTED;
            return 0;
        }
    }
    call->received += n;
    if (call->req.max_response_bytes && call->received > call->req.max_response_bytes) {
        call->stop_reason = UPSTREAM_T_TOO_BIG;
        return 0;
    }
    if (n && call->req.on_data && call->req.on_data(p, n, call->req.arg) != 0) {
        call->stop_reason = UPSTREAM_T_ABORTED;
        return 0;
    }
    upstream_arm_stall(call, call->req.idle_timeout_ms);
    return n;
}

/* ---- public ---- */

upstream_client *upstream_client_new(struct event_base *base, const upstream_client_options *opt)
{
    upstream_client *c = calloc(1, sizeof *c);
    if (!c)
        return NULL;
    c->base = base;
    queue_init(&c->calls);
    queue_init(&c->doomed);
    c->multi = curl_multi_init();
    c->timer = evtimer_new(base, upstream_on_timer, c);
    if (!c->multi || !c->timer) {
        upstream_client_free(c);
        return NULL;
    }
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, upstream_socket_cb);
    curl_multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, upstream_timer_cb);
    curl_multi_setopt(c->multi, CURLMOPT_TIMERDATA, c);
    curl_multi_setopt(c->multi, CURLMOPT_MAX_HOST_CONNECTIONS, opt ? opt->max_host_connections : 16L);
    curl_multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, opt ? opt->max_total_connections : 64L);
    return c;
}

void upstream_client_free(upstream_client *c)
{
    if (!c)
        return;
    queue_move(&c->doomed, &c->calls);
    queue_node *n;
    while ((n = queue_first(&c->calls)) != NULL)
        upstream_call_free(queue_data(n, upstream_call, link));
    if (c->multi)
        curl_multi_cleanup(c->multi);
    if (c->timer)
        event_free(c->timer);
    free(c);
}

upstream_call *upstream_start(upstream_client *c, const upstream_request *req)
{
    upstream_call *call = calloc(1, sizeof *call);
    if (!call)
        return NULL;
    call->client = c;
    call->req = *req;
    call->req.url = NULL; /* not kept: curl copies it */
    call->easy = curl_easy_init();
    call->stall = evtimer_new(c->base, upstream_on_stall, call);
    if (!call->easy || !call->stall)
        goto fail;
    CURL *e = call->easy;
    curl_easy_setopt(e, CURLOPT_URL, req->url);
    curl_easy_setopt(e, CURLOPT_PRIVATE, call);
    curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, upstream_write_cb);
    curl_easy_setopt(e, CURLOPT_WRITEDATA, call);
    curl_easy_setopt(e, CURLOPT_ERRORBUFFER, call->error);
    curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, req->connect_timeout_ms > 0 ? req->connect_timeout_ms : 10000L);
    if (req->total_timeout_ms > 0)
        curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, req->total_timeout_ms);
    curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
    if (req->content_type) {
        char h[160];
        snprintf(h, sizeof h, "Content-Type: %s", req->content_type);
        call->headers = curl_slist_append(call->headers, h);
    }
    if (req->authorization) {
        char h[1024];
        snprintf(h, sizeof h, "Authorization: %s", req->authorization);
        call->headers = curl_slist_append(call->headers, h);
    }
    call->headers = curl_slist_append(call->headers, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(e, CURLOPT_HTTPHEADER, call->headers);
    if (req->body) {
        call->body = malloc(req->body_len ? req->body_len : 1);
        if (!call->body)
            goto fail;
        memcpy(call->body, req->body, req->body_len);
        curl_easy_setopt(e, CURLOPT_POSTFIELDS, call->body);
        curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
    }
    call->started_ms = clock_now_ms();
    call->ttfb_ms = -1;
    if (curl_multi_add_handle(c->multi, e) != CURLM_OK)
        goto fail;
    upstream_arm_stall(call, req->ttfb_timeout_ms);
    queue_insert_tail(&c->calls, &call->link);
    c->stats.calls_started++;
    c->stats.running++;
    return call;
fail:
    upstream_call_destroy(call);
    return NULL;
}

void upstream_cancel(upstream_call *call)
{
    if (!call)
        return;
    upstream_client *c = call->client;
    if (c->in_curl == 0) {
        upstream_call_free(call);
        return;
    }
    call->cancelled = true; /* called from a curl callback (another call's on_data) */
    call->req.on_done = NULL;
    evtimer_del(call->stall);
    queue_remove(&call->link);
    queue_insert_tail(&c->doomed, &call->link);
}

void upstream_client_stats_get(const upstream_client *c, upstream_client_stats *out) { *out = c->stats; }
