#include "http/conn.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "app.h"
#include "http/request_int.h"
#include "http/server_int.h"
#include "obs/metrics.h"
#include "util/clock.h"
#include "util/log.h"

/* The phases of a connection. */
enum {
    CONN_HEAD,    /* reading a request's line and headers (or idle between requests) */
    CONN_BODY,    /* reading its body */
    CONN_HANDLER, /* the request is handled (a worker, the engine): nothing read or written */
    CONN_SENDING, /* its response is written; a stream may still be fed */
};

#define CONN_STREAM_CAP ((size_t)16 << 20) /* bytes queued on a connection for a stream */
#define CONN_LINGER_S 2                    /* after a closing reply: read what still comes, this long */
#define CONN_LINGER_MAX ((size_t)1 << 20)  /* ... or this many bytes */
#define CONN_BODY_READ ((size_t)64 << 10)  /* body bytes taken per pass */
/* At most this much of a Content-Length body is reserved before its bytes come; the rest
 * grows with what arrives, so a client that claims a large body and sends nothing holds
 * no more than this (not RAGD_MAX_BODY_BYTES) per connection. */
#define CONN_BODY_RESERVE_MAX ((size_t)1 << 20)
#define CONN_RESERVE_HEAD_S 1u             /* the head deadline on a reserve slot */
#define CONN_RATE_TICK_S 1u                /* the send-rate check, while a reply is written */

static void conn_on_read(struct bufferevent *bev, void *arg);
static void conn_on_write(struct bufferevent *bev, void *arg);
static void conn_on_event(struct bufferevent *bev, short what, void *arg);
static void conn_abort_on_close(const http_conn *c);
static void conn_on_timer(evutil_socket_t fd, short what, void *arg);
static void conn_process(http_conn *c);

static const ragd_config *conn_cfg(const http_conn *c) { return &c->srv->app->cfg; }

static void conn_arm(http_conn *c, unsigned seconds)
{
    struct timeval tv = {.tv_sec = (time_t)seconds, .tv_usec = 0};
    evtimer_add(c->timer, &tv);
}

int http_conn_fd(const http_conn *c) { return c->fd; }

/* Closes on the next loop turn, never inside the call that decided it: the callers up the
 * stack (a handler, conn_process) may still hold c. */
static void conn_close_soon(http_conn *c)
{
    c->closing = true;
    bufferevent_disable(c->bev, EV_READ | EV_WRITE);
    struct timeval now = {0, 0};
    evtimer_add(c->timer, &now);
}

bool http_conn_idle(const http_conn *c)
{
    return c->phase == CONN_HEAD && !c->req && !c->lingering &&
           evbuffer_get_length(bufferevent_get_input(c->bev)) == 0;
}

/* Every change of a connection's output buffer: the server-wide count of bytes queued for
 * clients (RAGD_MAX_OUTPUT_BYTES), and what the client took while it had bytes waiting (the
 * send-rate check, conn_send_too_slow). */
static void conn_on_output(struct evbuffer *out, const struct evbuffer_cb_info *info, void *arg)
{
    (void)out;
    http_conn *c = arg;
    c->srv->out_bytes += info->n_added;
    c->srv->out_bytes -= info->n_deleted;
    c->out_charged += info->n_added;
    c->out_charged -= info->n_deleted;
    c->backlog_taken += info->n_deleted;
    if (c->out_charged == 0)
        c->backlog_since_ms = 0;
    else if (c->backlog_since_ms == 0) {
        c->backlog_since_ms = clock_now_ms();
        c->backlog_taken = 0;
    }
}

http_conn *http_conn_new(struct http_server *srv, int fd, const cidr_addr *peer, bool reserve)
{
    http_conn *c = calloc(1, sizeof *c);
    if (!c)
        goto fail;
    c->srv = srv;
    c->fd = fd;
    c->peer = *peer;
    c->client = *peer;
    c->reserve = reserve;
    c->phase = CONN_HEAD;
    c->bev = bufferevent_socket_new(srv->app->base, fd, 0); /* http_conn_close closes fd */
    if (!c->bev)
        goto fail;
    c->timer = evtimer_new(srv->app->base, conn_on_timer, c);
    if (!c->timer)
        goto fail;
    c->out_watch = evbuffer_add_cb(bufferevent_get_output(c->bev), conn_on_output, c);
    if (!c->out_watch)
        goto fail;
    const ragd_config *cfg = &srv->app->cfg;
    /* No read watermark: reading is off whenever the input is not consumed (a request being
     * handled or answered), and a head is refused as soon as its bytes pass the cap, so the
     * input never holds more than the cap plus one read (16 KiB). (libevent 2.1's
     * bufferevent_setwatermark also dereferences NULL when its callback cannot be
     * allocated: the allocation torture found it.) */
    /* The write timeout: a client that takes none of a pending reply for this long is gone. */
    struct timeval wt = {.tv_sec = (time_t)cfg->idle_timeout_s, .tv_usec = 0};
    bufferevent_set_timeouts(c->bev, NULL, &wt);
    bufferevent_setcb(c->bev, conn_on_read, conn_on_write, conn_on_event, c);
    if (bufferevent_enable(c->bev, EV_READ) != 0)
        goto fail;
    http_head_init(&c->head, cfg->max_header_bytes);
    /* The first request's head: from the connection's opening; on a reserve slot within
     * CONN_RESERVE_HEAD_S, so that a client that sends nothing cannot keep it from a probe. */
    conn_arm(c, reserve && cfg->header_timeout_s > CONN_RESERVE_HEAD_S ? CONN_RESERVE_HEAD_S : cfg->header_timeout_s);
    c->deadline_armed = true;
    c->next = srv->conns;
    if (srv->conns)
        srv->conns->prev = c;
    srv->conns = c;
    srv->n_conns++;
    return c;
fail:
    if (c && c->timer)
        event_free(c->timer);
    if (c && c->bev)
        bufferevent_free(c->bev);
    free(c);
    http_server_refuse_later(srv, fd, "out of memory");
    return NULL;
}

/* ---- the end of a request ---- */

/* The access line (docs/operations.md "Logs"): one per request at its end, in the log's
 * format. Text: "METHOD ROUTE STATUS DURATIONms[ (note)] bytes=N[ embed_ms=…][ rerank_ms=…]
 * [ generate_ms=…] id=RID"; JSON: the same as members (method, route, status, duration_ms,
 * bytes, the *_ms present, request_id, note). The route is the table's pattern, never the
 * raw path or its query string (which may carry ids or keys); status is 0 when aborted. */
static void conn_log_access(const http_request *req, int status, double ms, const char *note)
{
    const char *method = req->method_name ? req->method_name : "?";
    char msg[512];
    char st[16];
    snprintf(st, sizeof st, status ? "%d" : "aborted", status);
    snprintf(msg, sizeof msg, "%s %s %s %.1fms%s%s%s", method, req->route_name, st, ms, note ? " (" : "",
             note ? note : "", note ? ")" : "");
    log_field f[10];
    size_t n = 0;
    f[n] = LOG_STR("method", method);
    f[n++].json_only = true;
    f[n] = LOG_STR("route", req->route_name);
    f[n++].json_only = true;
    f[n] = LOG_INT("status", status);
    f[n++].json_only = true;
    f[n] = LOG_NUM("duration_ms", ms);
    f[n++].json_only = true;
    f[n++] = LOG_INT("bytes", req->bytes_out);
    if (req->upstream.embed_ms > 0)
        f[n++] = LOG_NUM("embed_ms", req->upstream.embed_ms);
    if (req->upstream.rerank_ms > 0)
        f[n++] = LOG_NUM("rerank_ms", req->upstream.rerank_ms);
    if (req->upstream.generate_ms > 0)
        f[n++] = LOG_NUM("generate_ms", req->upstream.generate_ms);
    f[n] = LOG_STR("request_id", req->request_id);
    f[n++].text_key = "id";
    if (note) {
        f[n] = LOG_STR("note", note);
        f[n++].json_only = true;
    }
    log_fields(LOG_INFO, msg, f, n);
}

/* The request is over: answered in full (ok) or not. Logs it (the access line), counts it,
 * tells a stream's owner when it was cut short, and lets it go. */
static void conn_end_request(http_conn *c, bool ok, bool at_stop)
{
    http_request *req = c->req;
    if (!req)
        return;
    c->req = NULL;
    http_server *s = c->srv;
    if (req->begun)
        s->in_flight--;
    double ms = clock_now_ms() - req->t_start_ms;
    /* A client that left before its reply was out is counted as 499 ("client closed request",
     * as nginx does), not as the status the server had set: a 5xx alert is for the server. */
    bool left = !ok && !at_stop && (c->client_gone || req->client_gone);
    if (left && req->begun) {
        metrics_http_observe(req->route_name, http_method_label(req->method), 499, ms / 1000.0);
        char note[96];
        if (req->answered)
            snprintf(note, sizeof note, "client closed before the reply was out; it was %d", req->status);
        else
            snprintf(note, sizeof note, "client closed before the reply");
        conn_log_access(req, 499, ms, note);
    } else if (req->answered) {
        metrics_http_observe(req->route_name, http_method_label(req->method), req->status, ms / 1000.0);
        conn_log_access(req, req->status, ms, ok ? NULL : "cut short");
    } else {
        conn_log_access(req, 0, ms, NULL);
    }
    req->conn = NULL;
    /* A request that waits with a close watch hears that its client is gone (not at stop:
     * the modules it would call into are being torn down). The watch's event is on this
     * socket, which is about to close: it goes now either way. */
    void (*gone)(void *) = req->close_fn;
    void *gone_arg = req->close_arg;
    http_unwatch_close(req);
    if (!ok && gone && !at_stop)
        gone(gone_arg);
    if (req->on_close && !ok)
        req->on_close(req->on_close_arg); /* e.g. cancel the upstream call feeding a stream */
    req->on_close = NULL;
    http_request_unref(req);
}

void http_conn_close(http_conn *c, bool at_stop)
{
    if (!c)
        return;
    conn_end_request(c, false, at_stop);
    http_server_conn_gone(c->srv, c);
    event_free(c->timer);
    evbuffer_remove_cb_entry(bufferevent_get_output(c->bev), c->out_watch);
    c->srv->out_bytes -= c->out_charged; /* what is still queued goes with the buffer */
    bufferevent_free(c->bev);
    if (c->refused && !at_stop)
        http_server_close_refused(c->srv, c->fd); /* answered by the fixed 503: closed gently */
    else
        close(c->fd);
    free(c);
}

/* After a reply that ends the connection: the write side is shut (the client reads the
 * reply, then end of stream) and what the client still sends is read and dropped for a
 * moment, so that the kernel does not answer it with a reset that could destroy the reply
 * in flight. */
static void conn_linger(http_conn *c)
{
    c->lingering = true;
    conn_end_request(c, true, false);
    shutdown(c->fd, SHUT_WR);
    bufferevent_disable(c->bev, EV_WRITE);
    evbuffer_drain(bufferevent_get_input(c->bev), evbuffer_get_length(bufferevent_get_input(c->bev)));
    if (bufferevent_enable(c->bev, EV_READ) != 0) {
        conn_close_soon(c);
        return;
    }
    conn_arm(c, CONN_LINGER_S);
}

/* The response went out in full: the next request, or the end. */
static void conn_response_sent(http_conn *c)
{
    if (c->close_after || !c->keep_alive || atomic_load(&c->srv->app->draining) || c->srv->listen_fd < 0) {
        conn_linger(c);
        return;
    }
    conn_end_request(c, true, false);
    c->phase = CONN_HEAD;
    c->stream_live = false;
    c->response_done = false;
    c->head_only = false;
    c->deadline_armed = false;
    http_head_init(&c->head, conn_cfg(c)->max_header_bytes);
    conn_arm(c, conn_cfg(c)->idle_timeout_s);
    if (bufferevent_enable(c->bev, EV_READ) != 0) {
        conn_close_soon(c);
        return;
    }
    conn_process(c); /* a pipelined request may wait in the input already */
}

/* ---- writing ---- */

static const char *conn_reason(int status)
{
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    default: return "Status";
    }
}

/* The output buffer is done with a body: extra is the allocation (data may point into it). */
static void conn_free_body(const void *data, size_t len, void *extra)
{
    (void)data;
    (void)len;
    free(extra);
}

/* The status line and headers of req's response; false when they do not fit. */
static bool conn_format_head(http_conn *c, const http_request *req, char *out, size_t cap, size_t *len)
{
    char date[64] = "";
    time_t now = time(NULL);
    struct tm tm;
    if (gmtime_r(&now, &tm))
        strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    char framing[64];
    if (req->status == 304)
        framing[0] = '\0'; /* no body, and a Content-Length would have to be the 200's (RFC 9110 8.6) */
    else if (req->stream && c->stream_chunked)
        snprintf(framing, sizeof framing, "Transfer-Encoding: chunked\r\nX-Accel-Buffering: no\r\n");
    else if (req->stream)
        snprintf(framing, sizeof framing, "X-Accel-Buffering: no\r\n");
    else
        snprintf(framing, sizeof framing, "Content-Length: %zu\r\n", req->resp_len);
    char rate[128] = "";
    if (req->rate.limit > 0)
        snprintf(rate, sizeof rate, "X-RateLimit-Limit: %u\r\nX-RateLimit-Remaining: %u\r\nX-RateLimit-Reset: %u\r\n",
                 req->rate.limit, req->rate.remaining, req->rate.reset_s);
    const char *connection = c->close_after ? "Connection: close\r\n"
                             : c->head.minor == 0 ? "Connection: keep-alive\r\n"
                                                  : "";
    char etag[96] = "";
    if (req->resp_etag)
        snprintf(etag, sizeof etag, "ETag: %s\r\n", req->resp_etag);
    int n = snprintf(out, cap,
                     "HTTP/1.1 %d %s\r\nDate: %s\r\nContent-Type: %s\r\n%sX-Request-ID: %s\r\n"
                     "Cache-Control: %s\r\n%s%s%s%s%s%s%s%s%s%s\r\n",
                     req->status, conn_reason(req->status), date,
                     req->stream ? req->stream->content_type : req->resp_type, framing, req->request_id,
                     req->resp_cache_control ? req->resp_cache_control : "no-store", etag,
                     req->resp_headers ? req->resp_headers : "",
                     req->allow[0] ? "Allow: " : "", req->allow, req->allow[0] ? "\r\n" : "",
                     req->retry_after[0] ? "Retry-After: " : "", req->retry_after, req->retry_after[0] ? "\r\n" : "",
                     rate, req->www_authenticate ? "WWW-Authenticate: Bearer realm=\"ragd\"\r\n" : "");
    if (n < 0 || (size_t)n >= cap)
        return false;
    if (connection[0]) { /* before the final CRLF */
        size_t cl = strlen(connection);
        if ((size_t)n + cl >= cap)
            return false;
        memmove(out + n - 2 + cl, out + n - 2, 3);
        memcpy(out + n - 2, connection, cl);
        n += (int)cl;
    }
    *len = (size_t)n;
    return true;
}

void http_conn_send(http_conn *c)
{
    http_request *req = c->req;
    if (!req || req->answered || c->closing)
        return;
    if (req->status == 0)
        http_reply_error(req, 500, "internal", "handler produced no response");
    if (req->early || atomic_load(&c->srv->app->draining) || c->reserve)
        c->close_after = true;
    size_t budget = conn_cfg(c)->max_output_bytes;
    if (!req->stream && !c->head_only && req->resp_len > 0 && strncmp(req->route_name, "/health", 7) != 0 &&
        req->resp_len > (budget > c->srv->out_bytes ? budget - c->srv->out_bytes : 0)) {
        /* Queued for slow clients, it could pass the budget: refused before it is queued. The
         * health routes' few bytes always go: a supervisor must not read this as a failure. */
        log_warn("request %s: a %zu-byte %d reply would take the bytes queued for clients over "
                 "RAGD_MAX_OUTPUT_BYTES (%zu of %zu queued); answered 503", req->request_id, req->resp_len, req->status,
                 c->srv->out_bytes, budget);
        free(req->resp_body);
        req->resp_body = NULL;
        req->resp_static = NULL;
        req->resp_len = 0;
        snprintf(req->retry_after, sizeof req->retry_after, "1");
        http_reply_error(req, 503, "overloaded",
                         "the server holds too many replies for slow clients (RAGD_MAX_OUTPUT_BYTES); retry shortly");
    }
    c->stream_chunked = req->stream && c->head.minor == 1;
    if (req->stream && !c->stream_chunked)
        c->close_after = true; /* HTTP/1.0: the body ends with the connection */
    if (!c->keep_alive)
        c->close_after = true;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    char head[2048];
    size_t hn = 0;
    bool ok = conn_format_head(c, req, head, sizeof head, &hn);
    req->answered = true; /* for the log and the metrics: the status is req->status */
    c->phase = CONN_SENDING;
    evtimer_del(c->timer);
    bufferevent_disable(c->bev, EV_READ);
    const char *body = req->resp_static ? req->resp_static : req->resp_body;
    size_t body_len = c->head_only || req->stream || req->status == 304 ? 0 : req->resp_len;
    req->bytes_out += body_len;
    /* The reply is written straight to the socket when nothing else is queued: most replies
     * go out whole in one call, and then nothing is allocated to send them, so a reply the
     * handler could set is never lost for want of memory here. What the socket does not take
     * is queued in the output buffer (the body by reference). */
    size_t sent = 0;
    if (ok && evbuffer_get_length(out) == 0) {
        struct iovec iov[2] = {{.iov_base = head, .iov_len = hn}, {.iov_base = (void *)body, .iov_len = body_len}};
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = body_len > 0 ? 2 : 1};
        ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            log_debug("request %s: the client is gone (%s)", req->request_id, strerror(errno));
            c->client_gone = true;
            conn_close_soon(c);
            return;
        }
        sent = w > 0 ? (size_t)w : 0;
    }
    size_t head_sent = sent < hn ? sent : hn, body_sent = sent - head_sent;
    ok = ok && (head_sent == hn || evbuffer_add(out, head + head_sent, hn - head_sent) == 0);
    if (ok && body_sent < body_len) {
        if (req->resp_static) {
            ok = evbuffer_add_reference(out, body + body_sent, body_len - body_sent, NULL, NULL) == 0;
        } else {
            ok = evbuffer_add_reference(out, body + body_sent, body_len - body_sent, conn_free_body,
                                        req->resp_body) == 0;
            if (ok)
                req->resp_body = NULL; /* the output buffer frees it once written */
        }
    }
    ok = ok && bufferevent_enable(c->bev, EV_WRITE) == 0;
    if (!ok) {
        /* Part of the reply may have gone already: the connection closes (the client sees a
         * reply cut short, never a wrong one). With nothing sent, the fixed 503 goes. */
        log_warn("request %s: no memory to queue the %d response; connection closed", req->request_id, req->status);
        if (sent == 0 && evbuffer_get_length(out) == 0) {
            http_server_refuse_fd(c->fd, "out of memory for the response", req->request_id, false);
            c->refused = true;
        }
        conn_close_soon(c);
        return;
    }
    if (req->stream) {
        c->stream_live = true;
        conn_arm(c, CONN_RATE_TICK_S); /* the send-rate check */
        http_stream_flush(req->stream); /* what was written before the head, then the end if it came */
        return;
    }
    c->response_done = true;
    if (evbuffer_get_length(out) == 0) { /* all written: conn_on_timer moves on, next turn */
        struct timeval now = {0, 0};
        evtimer_add(c->timer, &now);
    } else { /* conn_on_write, once the output has drained; meanwhile the send-rate check */
        conn_arm(c, CONN_RATE_TICK_S);
    }
}

bool http_conn_stream_write(http_conn *c, const char *p, size_t n)
{
    if (c->response_done || c->head_only || c->closing || n == 0)
        return true;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (evbuffer_get_length(out) + n > CONN_STREAM_CAP || c->srv->out_bytes + n + 32 > conn_cfg(c)->max_output_bytes)
        return false; /* a client that does not read cannot grow our memory */
    char size[24];
    int sn = snprintf(size, sizeof size, "%zx\r\n", n);
    bool ok = !c->stream_chunked || evbuffer_add(out, size, (size_t)sn) == 0;
    ok = ok && evbuffer_add(out, p, n) == 0;
    ok = ok && (!c->stream_chunked || evbuffer_add(out, "\r\n", 2) == 0);
    if (!ok) { /* no memory for a piece: the framing may be broken, so the stream ends the connection */
        c->close_after = true;
        return false;
    }
    return true;
}

void http_conn_stream_end(http_conn *c)
{
    if (c->response_done || c->closing)
        return;
    c->response_done = true;
    struct evbuffer *out = bufferevent_get_output(c->bev);
    if (c->stream_chunked && !c->head_only && evbuffer_add(out, "0\r\n\r\n", 5) != 0)
        c->close_after = true;
    if (evbuffer_get_length(out) == 0) { /* conn_on_timer finishes it on the next turn */
        struct timeval now = {0, 0};
        evtimer_add(c->timer, &now);
    }
}

static void conn_on_write(struct bufferevent *bev, void *arg)
{
    (void)bev;
    http_conn *c = arg;
    if (c->lingering || c->closing)
        return;
    if (c->phase == CONN_SENDING && c->response_done)
        conn_response_sent(c);
}

/* ---- refusals before a handler ---- */

/* Answers status in the envelope and closes: for what is refused before a request exists
 * (a malformed head, a deadline) — a request object is made to carry the envelope. */
static void conn_refuse(http_conn *c, int status, const char *code, const char *message)
{
    if (!c->req) {
        c->req = http_request_new(c->srv->app, c, 0);
        if (!c->req) { /* no memory for even that: the fixed envelope, written at once */
            http_server_refuse_fd(c->fd, "out of memory", NULL, true);
            c->refused = true;
            conn_close_soon(c);
            return;
        }
        c->req->t_start_ms = clock_now_ms();
        http_request_id(c->req->request_id, NULL, 0);
    }
    http_reply_error(c->req, status, code, "%s", message);
    c->req->early = true;
    c->close_after = true;
    http_conn_send(c);
}

/* ---- reading ---- */

/* Runs the handler of a request read in full (or sends the reply set already). */
static void conn_dispatch(http_conn *c)
{
    http_request *req = c->req;
    c->phase = CONN_HANDLER;
    evtimer_del(c->timer);
    bufferevent_disable(c->bev, EV_READ); /* pipelined requests wait, unread, in order */
    if (req->status == 0 && atomic_load(&c->srv->app->stopping) && strncmp(req->route_name, "/health", 7) != 0) {
        /* the body finished after the grace period: workers and store are gone */
        snprintf(req->retry_after, sizeof req->retry_after, "1");
        http_reply_error(req, 503, "not_ready", "server is shutting down");
    }
    if (req->status == 0) {
        req->handler(req);
        if (req->deferred)
            return; /* http_complete sends it (request.c) */
    }
    http_conn_send(c);
}

/* The body is over the cap, over what the server-wide budget has left (RAGD_EBUSY), or its
 * bytes found no memory: answer now and close, rather than read on to an end that may never
 * come. The body's bytes go back to the budget at once. */
static void conn_body_refused(http_conn *c, ragd_err e)
{
    http_request *req = c->req;
    http_request_drop_body(req);
    if (e == RAGD_ETOOBIG)
        http_reply_error(req, 413, "payload_too_large",
                         "body is over RAGD_MAX_BODY_BYTES (%zu bytes): send less per request, or raise "
                         "RAGD_MAX_BODY_BYTES on the server",
                         conn_cfg(c)->max_body_bytes);
    else if (e == RAGD_EBUSY)
        http_reply_error(req, 503, "overloaded",
                         "server busy: request bodies in memory already hold %zu of the %zu bytes allowed "
                         "at once (RAGD_MAX_BODY_BYTES_TOTAL); retry shortly",
                         body_budget_used(&c->srv->app->body_budget), config_body_bytes_total(conn_cfg(c)));
    else
        http_reply_error(req, 503, "overloaded", "out of memory for the request body");
    req->early = true;
    http_conn_send(c);
}

/* Makes room in the body's buffer for extra more bytes, charging its growth to the server's
 * budget of body bytes first: RAGD_OK; RAGD_EBUSY (nothing allocated) when the budget has
 * not that much left; RAGD_ETOOBIG past the body's cap; RAGD_ENOMEM. */
static ragd_err conn_body_reserve(http_conn *c, size_t extra)
{
    http_request *req = c->req;
    size_t alloc = strbuf_alloc_after(&req->body, extra);
    if (alloc == 0)
        return RAGD_ETOOBIG;
    if (!body_budget_cover(&c->srv->app->body_budget, config_body_bytes_total(conn_cfg(c)), &req->body_charged,
                           alloc - 1)) /* the room for body bytes; the NUL is not counted */
        return RAGD_EBUSY;
    return strbuf_reserve(&req->body, extra);
}

/* Appends body bytes within the budget (conn_body_reserve). */
static ragd_err conn_body_append(http_conn *c, const char *p, size_t n)
{
    ragd_err e = conn_body_reserve(c, n);
    return e != RAGD_OK ? e : strbuf_append(&c->req->body, p, n);
}

/* The head is read (buf[0..head_len)): the request begins. */
static void conn_begin(http_conn *c, const char *buf)
{
    http_server *s = c->srv;
    c->req = http_request_new(s->app, c, conn_cfg(c)->max_body_bytes);
    if (!c->req) { /* the head is read already: its X-Request-ID names the refusal */
        size_t n = 0;
        const char *given = http_head_get(&c->head, buf, "x-request-id", &n);
        char rid[HTTP_REQUEST_ID_SIZE];
        http_request_id(rid, given, n);
        log_warn("%.*s %.*s 503 (out of memory for the request) id=%s", (int)c->head.method.len,
                 buf + c->head.method.off, (int)http_target_loggable(buf + c->head.target.off, c->head.target.len),
                 buf + c->head.target.off, rid);
        http_server_refuse_fd(c->fd, "out of memory", rid, false);
        c->refused = true;
        conn_close_soon(c);
        return;
    }
    c->keep_alive = c->head.keep_alive;
    c->close_after = false;
    c->head_only = c->head.method.len == 4 && memcmp(buf + c->head.method.off, "HEAD", 4) == 0;
    c->req->begun = true;
    s->in_flight++; /* counted from the headers on: one still sending them does not delay a drain */
    if (http_server_begin(s, c, buf)) {
        c->req->early = true;
        http_conn_send(c);
        return;
    }
    c->body_left = c->head.has_length ? c->head.content_length : 0;
    c->body_chunked = c->head.chunked;
    if (c->body_left == 0 && !c->body_chunked) {
        conn_dispatch(c);
        return;
    }
    if (c->body_chunked)
        http_chunked_init(&c->chunked, conn_cfg(c)->max_header_bytes, conn_cfg(c)->max_body_bytes);
    /* A body of known length (at most RAGD_MAX_BODY_BYTES: http_server_begin refused a
     * longer one) gets its room at once, up to CONN_BODY_RESERVE_MAX, instead of doubling
     * through ~log2(n / 64) reallocations, each a copy of what came so far. Its cap is its
     * length, so its buffer (and its charge to the budget) never passes it; a length over
     * what the budget has left is refused before a byte of it is read. */
    if (!c->body_chunked) {
        c->req->body.cap = (size_t)c->body_left;
        /* the buffer holds a NUL after the body: CONN_BODY_RESERVE_MAX - 1 bytes of room
         * allocate exactly CONN_BODY_RESERVE_MAX (strbuf doubles from 64 bytes) */
        size_t first = c->body_left <= CONN_BODY_RESERVE_MAX ? (size_t)c->body_left : CONN_BODY_RESERVE_MAX - 1;
        ragd_err e = c->body_left > body_budget_left(&s->app->body_budget, config_body_bytes_total(conn_cfg(c)))
                         ? RAGD_EBUSY
                         : conn_body_reserve(c, first);
        if (e != RAGD_OK) {
            conn_body_refused(c, e);
            return;
        }
    }
    if (c->head.expect_continue && c->head.minor == 1 &&
        evbuffer_add(bufferevent_get_output(c->bev), "HTTP/1.1 100 Continue\r\n\r\n", 25) != 0) {
        http_reply_error(c->req, 503, "overloaded", "out of memory");
        c->req->early = true;
        http_conn_send(c);
        return;
    }
    c->phase = CONN_BODY;
    conn_arm(c, conn_cfg(c)->body_timeout_s);
}

/* Reads body bytes from the input; true when the connection moved on (body complete,
 * refused) or waits for more. */
static void conn_read_body(http_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    http_request *req = c->req;
    while (c->phase == CONN_BODY) {
        size_t avail = evbuffer_get_length(in);
        if (avail == 0)
            return;
        size_t take = avail < CONN_BODY_READ ? avail : CONN_BODY_READ;
        if (!c->body_chunked) {
            if ((uint64_t)take > c->body_left)
                take = (size_t)c->body_left;
            const char *p = (const char *)evbuffer_pullup(in, (ssize_t)take);
            ragd_err e = p ? conn_body_append(c, p, take) : RAGD_ENOMEM;
            if (e != RAGD_OK) {
                conn_body_refused(c, e);
                return;
            }
            evbuffer_drain(in, take);
            c->body_left -= take;
            if (c->body_left == 0)
                conn_dispatch(c);
            continue;
        }
        const char *p = (const char *)evbuffer_pullup(in, (ssize_t)take);
        if (!p) {
            conn_body_refused(c, RAGD_ENOMEM);
            return;
        }
        size_t pos = 0;
        http_parse_status st = HTTP_PARSE_MORE;
        while (pos < take && st == HTTP_PARSE_MORE) {
            size_t used = 0, off = 0, n = 0;
            st = http_chunked_feed(&c->chunked, p + pos, take - pos, &used, &off, &n);
            if (n > 0) {
                ragd_err e = conn_body_append(c, p + pos + off, n);
                if (e != RAGD_OK) {
                    conn_body_refused(c, e);
                    return;
                }
            }
            pos += used;
        }
        evbuffer_drain(in, pos);
        if (st == HTTP_PARSE_ERROR && c->chunked.status == 413) {
            conn_body_refused(c, RAGD_ETOOBIG);
            return;
        }
        if (st == HTTP_PARSE_ERROR) {
            int status = c->chunked.status == 431 ? 431 : 400;
            http_reply_error(req, status, status == 431 ? "header_too_large" : "invalid_json", "bad chunked body: %s",
                             c->chunked.message);
            req->early = true;
            http_conn_send(c);
            return;
        }
        if (st == HTTP_PARSE_DONE)
            conn_dispatch(c);
    }
}

static void conn_process(http_conn *c)
{
    struct evbuffer *in = bufferevent_get_input(c->bev);
    if (c->phase == CONN_HEAD && !c->req) {
        size_t len = evbuffer_get_length(in);
        if (len == 0)
            return;
        if (!c->deadline_armed) { /* the first byte of a request after an idle keep-alive wait */
            conn_arm(c, conn_cfg(c)->header_timeout_s);
            c->deadline_armed = true;
        }
        size_t cap = conn_cfg(c)->max_header_bytes + 1;
        size_t n = len < cap ? len : cap;
        const char *buf = (const char *)evbuffer_pullup(in, (ssize_t)n);
        if (!buf) {
            conn_refuse(c, 503, "overloaded", "out of memory");
            return;
        }
        http_parse_status st = http_head_parse(&c->head, buf, n);
        if (st == HTTP_PARSE_MORE)
            return;
        if (st == HTTP_PARSE_ERROR) {
            static const char *const codes[] = {"invalid_json", "uri_too_long", "header_too_large", "not_implemented",
                                                "http_version_not_supported"};
            int s = c->head.status;
            const char *code = s == 414 ? codes[1] : s == 431 ? codes[2] : s == 501 ? codes[3] : s == 505 ? codes[4] : codes[0];
            conn_refuse(c, s, code, c->head.message);
            return;
        }
        conn_begin(c, buf);
        evbuffer_drain(in, c->head.head_len);
    }
    if (c->phase == CONN_BODY)
        conn_read_body(c);
}

static void conn_on_read(struct bufferevent *bev, void *arg)
{
    http_conn *c = arg;
    if (c->closing)
        return;
    if (c->lingering) {
        struct evbuffer *in = bufferevent_get_input(bev);
        c->linger_bytes += evbuffer_get_length(in);
        evbuffer_drain(in, evbuffer_get_length(in));
        if (c->linger_bytes > CONN_LINGER_MAX)
            http_conn_close(c, false);
        return;
    }
    conn_process(c);
}

static void conn_on_event(struct bufferevent *bev, short what, void *arg)
{
    (void)bev;
    http_conn *c = arg;
    if (c->closing)
        return;
    if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING) && !c->lingering && c->phase == CONN_SENDING) {
        /* the client half-closed after a complete request: its reply still goes */
        return;
    }
    /* End of stream while reading a request (a half-close before it was complete: closed at
     * once), an error, the write timeout (a client that reads nothing), or the end of a
     * lingering close. */
    if (what & (BEV_EVENT_EOF | BEV_EVENT_ERROR | BEV_EVENT_TIMEOUT))
        c->client_gone = true;
    if (what & BEV_EVENT_TIMEOUT) {
        log_debug("connection closed: the client read nothing for %u s", conn_cfg(c)->idle_timeout_s);
        conn_abort_on_close(c);
    }
    http_conn_close(c, false);
}

/* For a client that does not take its reply: the close will be a reset, so that the kernel
 * drops what it still holds for it (up to its send buffer, megabytes) rather than trickling
 * it out after the close, and the client learns at once that the reply was cut. */
static void conn_abort_on_close(const http_conn *c)
{
    struct linger abort_close = {.l_onoff = 1, .l_linger = 0};
    setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close);
}

/* Whether the client takes a waiting reply too slowly: once bytes have waited in its output
 * for RAGD_IDLE_TIMEOUT_S, it must have taken them at RAGD_MIN_SEND_RATE on average since they
 * began to wait (0: no check). A stream fed slower than that has an empty output meanwhile. */
static bool conn_send_too_slow(const http_conn *c)
{
    const ragd_config *cfg = conn_cfg(c);
    if (cfg->min_send_rate == 0 || c->backlog_since_ms == 0)
        return false;
    double waited_s = (clock_now_ms() - c->backlog_since_ms) / 1000.0;
    return waited_s >= (double)cfg->idle_timeout_s && (double)c->backlog_taken < (double)cfg->min_send_rate * waited_s;
}

static void conn_on_timer(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    http_conn *c = arg;
    if (c->closing) {
        http_conn_close(c, false);
        return;
    }
    if (c->phase == CONN_SENDING) {
        if (c->response_done && evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
            conn_response_sent(c);
            return;
        }
        if (conn_send_too_slow(c)) {
            log_info("request %s: closed: the client took %llu bytes in %.0f s of a waiting reply, below "
                     "RAGD_MIN_SEND_RATE (%zu bytes/s)", c->req ? c->req->request_id : "-",
                     (unsigned long long)c->backlog_taken, (clock_now_ms() - c->backlog_since_ms) / 1000.0,
                     conn_cfg(c)->min_send_rate);
            conn_abort_on_close(c);
            c->client_gone = true;
            http_conn_close(c, false);
            return;
        }
        conn_arm(c, CONN_RATE_TICK_S);
        return;
    }
    if (c->lingering || (c->phase == CONN_HEAD && !http_head_started(&c->head) &&
                         evbuffer_get_length(bufferevent_get_input(c->bev)) == 0)) {
        http_conn_close(c, false); /* idle, or nothing sent: a plain close */
        return;
    }
    if (c->phase == CONN_HEAD && !c->req) {
        char msg[128];
        if (c->reserve)
            snprintf(msg, sizeof msg, "the request line and headers did not arrive within %u s (a reserve slot)",
                     CONN_RESERVE_HEAD_S);
        else
            snprintf(msg, sizeof msg, "the request line and headers did not arrive within %u s (RAGD_HEADER_TIMEOUT_S)",
                     conn_cfg(c)->header_timeout_s);
        conn_refuse(c, 408, "request_timeout", msg);
        return;
    }
    if (c->phase == CONN_BODY) {
        http_reply_error(c->req, 408, "request_timeout", "the body did not arrive within %u s (RAGD_BODY_TIMEOUT_S)",
                         conn_cfg(c)->body_timeout_s);
        c->req->early = true;
        http_conn_send(c);
    }
}
