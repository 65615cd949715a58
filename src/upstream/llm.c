#include "upstream/llm.h"

#include <event2/event.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "obs/metrics.h"
#include "upstream/admission.h"
#include "upstream/codec.h"
#include "upstream/registry.h"
#include "upstream/wire.h"
#include "util/log.h"
#include "util/secret.h"
#include "util/url.h"
#include "util/queue.h"
#include "util/strbuf.h"
#include "util/utf8.h"

#define LLM_ERROR_BODY_CAP ((size_t)64 * 1024)
/* An embed reply holds at most 8192 numbers per text (the parsers' dimension limit), each
 * under 32 bytes as text ("-1.2345678901234567e-308,"), plus the envelope. A backend that
 * sends more is refused there, not after holding 64 MiB per call: four hostile replies at
 * once once took 338 MiB (tests/e2e/test_hostile_backend.py). */
#define LLM_EMBED_BYTES_PER_TEXT ((size_t)8192 * 32)
#define LLM_EMBED_REPLY_SLACK ((size_t)64 * 1024)
#define LLM_PROBE_TIMEOUT_MS 2000.0
/* A chat request body is built from what a client sent (capped by RAGD_MAX_BODY_BYTES) or
 * by the engine (capped by the context budget); past this it is refused, never sent. */
#define LLM_CHAT_BODY_CAP ((size_t)32 << 20)
/* A model list, a show object, a version: far under this from any real backend. */
#define LLM_META_REPLY_CAP ((size_t)4 << 20)
#define LLM_META_TIMEOUT_MS 10000.0
/* Model names are client input on the pass-through routes: a longer one is refused
 * (docs/api.md allows 256 characters), never sent or made into breaker names. */
#define LLM_MODEL_NAME_MAX 256

/* The operation of a call (its breaker's op and its time limit): upstream_op. */
#define LLM_OP_EMBED UPSTREAM_OP_EMBED
#define LLM_OP_CHAT UPSTREAM_OP_CHAT
#define LLM_OP_META UPSTREAM_OP_MODELS

struct llm {
    struct event_base *base;
    upstream_client *client;
    llm_config cfg;
    const upstream_codec *codec; /* the wire format of cfg.kind */
    char **urls;
    char **shown;  /* the same URLs as they may be shown (util/url.h): names, labels, messages */
    size_t n_urls;
    char *api_key;
    breaker_registry *breakers; /* where the breakers live (read by /health, /metrics) */
    admission *admission;   /* the bulkheads, one per (host, model), driven on the loop */
    upstream_registry *registry; /* both, per (host, op, model): built at start, bounded */
    retry_budget *budget;
    upstream_clock clock;
    upstream_rand rnd;
    queue_node tasks;       /* tasks (embed jobs, chats, meta questions) until their final callback */
    size_t n_tasks;
    bool closed;            /* llm_cancel_all ran: new tasks are refused */
    probe *probe;           /* reachability of the hosts, or NULL */
};

/* One HTTP request of a task — an embed batch, the chat, the meta question — and its
 * attempts: host choice, bulkhead slot, breaker permit, the call, retries. It never calls
 * the task's owner: it reports its end to its task (llm_call_end). */
typedef struct {
    llm_task *task;
    upstream_op op;
    const char *path; /* on the host (static) */
    char *body;       /* NULL = GET */
    size_t body_len;
    size_t first, count; /* embed batch: index of its first text, number of texts */
    struct event *step;  /* its next attempt: the first, or a retry after the backoff */
    int attempts;
    int last_host;
    bool prefer_other;
    uint32_t denied; /* hosts whose breaker refused a permit during this attempt */
    /* the attempt in progress */
    int host;
    upstream_model *entry; /* its model's registry entry, held from host choice to the end */
    admission_hold hold; /* its slot (or place in the queue), permit and HTTP call */
    int http_status;
    strbuf reply;        /* embed or meta reply, or an error body */
    size_t reply_cap;    /* bytes of the reply body read at most (the upstream call's cap) */
    void *stream;        /* chat: the codec's decoder of this attempt */
    bool text_sent;
    bool consumer_stopped;
    char message[320];
} llm_call;

typedef enum { LLM_TASK_EMBED, LLM_TASK_CHAT, LLM_TASK_META } llm_task_kind;

/* What a caller holds: one final callback, delivered from `deliver` on a later loop turn.
 * Its calls (an embed job's batches, or the one call of a chat or meta question) do the
 * network work. The part of each kind is in the union. */
struct llm_task {
    llm *l;
    llm_task_kind kind;
    queue_node link; /* in l->tasks */
    char *model;
    double deadline_ms;
    struct event *deliver;
    bool finishing;     /* the final status is decided; deliver runs it */
    bool cancelled;     /* the final callback will say LLM_CANCELLED */
    bool delivering;    /* the final callback is running: cancel is a no-op */
    bool in_text_cb;    /* inside on_text: a cancel there stops the stream from within */
    llm_status final;
    char message[320];
    llm_call **calls;
    size_t n_calls;
    union {
        struct {
            size_t pending; /* batches not yet succeeded */
            size_t started; /* batches started so far: at most a window of them unfinished */
            size_t n_texts;
            size_t dim;
            float *vectors;
            llm_embed_cb cb;
            void *arg;
        } embed;
        struct {
            llm_chat_handlers h;
            llm_chat_stats stats;
            llm_reservation reservation; /* held until the call has a bulkhead place */
        } chat;
        struct {
            llm_meta_kind what;
            llm_meta_cb cb;
            void *arg;
            json_t *reply;
        } meta;
    } u;
};

void llm_config_default(llm_config *c)
{
    memset(c, 0, sizeof *c);
    c->kind = LLM_KIND_OLLAMA;
    c->embed_batch = 32;
    c->embed_timeout_ms = 30000;
    c->generate_timeout_ms = 60000;
    c->connect_timeout_ms = 2000;
    c->ttfb_timeout_ms = 30000;
    c->idle_timeout_ms = 20000;
    c->max_response_bytes = (size_t)64 << 20;
    breaker_config_default(&c->breaker);
    bulkhead_config_default(&c->bulkhead);
    retry_policy_default(&c->retry);
    retry_budget_config_default(&c->budget);
    c->max_models = 32;
}

const char *llm_status_name(llm_status s)
{
    switch (s) {
    case LLM_OK: return "ok";
    case LLM_UNAVAILABLE: return "unavailable";
    case LLM_OVERLOADED: return "overloaded";
    case LLM_TIMEOUT: return "timeout";
    case LLM_REJECTED: return "rejected";
    case LLM_NOT_FOUND: return "not_found";
    case LLM_BAD_REPLY: return "bad_reply";
    case LLM_CANCELLED: return "cancelled";
    }
    return "unknown";
}

static void llm_try(llm_call *c);
static void llm_call_end(llm_call *c, llm_status st);

/* ---- attempts, freeing, finishing ---- */

/* Ends whatever attempt is in progress, without callbacks: the slot, the permit and the
 * HTTP call are all given back (as NEUTRAL: we stopped it, the backend did nothing wrong),
 * and a pending first attempt or retry is called off. None of these runs any callback. */
static void llm_attempt_abandon(llm_call *c)
{
    admission_hold_abandon(&c->hold);
    if (c->step)
        event_del(c->step);
    if (c->entry)
        upstream_model_release(c->entry);
    c->entry = NULL;
}

static void llm_call_free(llm *l, llm_call *c)
{
    if (!c)
        return;
    llm_attempt_abandon(c);
    l->codec->stream_free(c->stream);
    strbuf_cleanup(&c->reply);
    free(c->body);
    if (c->step)
        event_free(c->step);
    free(c);
}

static void llm_task_free(llm_task *t)
{
    if (!t)
        return;
    for (size_t i = 0; i < t->n_calls; i++)
        llm_call_free(t->l, t->calls[i]);
    free(t->calls);
    if (t->kind == LLM_TASK_EMBED)
        free(t->u.embed.vectors);
    else if (t->kind == LLM_TASK_CHAT)
        llm_unreserve(&t->u.chat.reservation);
    else
        json_decref(t->u.meta.reply);
    if (t->deliver)
        event_free(t->deliver);
    free(t->model);
    free(t);
}

/* Decides a task's final status; its callback runs on a later loop turn. Every attempt of
 * the task (each batch of an embed job) is over from here on. */
static void llm_finish(llm_task *t, llm_status st, const char *message)
{
    if (t->finishing)
        return;
    for (size_t i = 0; i < t->n_calls; i++)
        llm_attempt_abandon(t->calls[i]);
    if (t->kind == LLM_TASK_CHAT)
        llm_unreserve(&t->u.chat.reservation);
    t->finishing = true;
    t->final = st;
    if (message != t->message)
        snprintf(t->message, sizeof t->message, "%s", message ? message : "");
    secret_scrub(t->message, t->l->api_key); /* a backend may quote the key it was sent */
    utf8_sanitize(t->message);               /* backend text cut to fit may end mid-character */
    admission_arm_timer(t->deliver, 0);
}

/* The deliver event of a finishing task: runs its final callback, then frees it. */
static void llm_on_deliver(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    llm_task *t = arg;
    llm *l = t->l;
    queue_remove(&t->link);
    l->n_tasks--;
    llm_status st = t->cancelled ? LLM_CANCELLED : t->final;
    const char *message = st == LLM_CANCELLED && t->final != LLM_CANCELLED ? "cancelled" : t->message;
    bool ok = st == LLM_OK;
    t->delivering = true;
    switch (t->kind) {
    case LLM_TASK_EMBED:
        t->u.embed.cb(st, ok ? t->u.embed.vectors : NULL, ok ? t->u.embed.dim : 0, ok ? "" : message, t->u.embed.arg);
        break;
    case LLM_TASK_CHAT:
        if (t->u.chat.h.on_done)
            t->u.chat.h.on_done(st, message, &t->u.chat.stats, t->u.chat.h.arg);
        break;
    case LLM_TASK_META:
        t->u.meta.cb(st, ok ? t->u.meta.reply : NULL, ok ? "" : message, t->u.meta.arg);
        break;
    }
    llm_task_free(t);
}

/* ---- host choice ---- */

/* The entry whose bulkheads a call uses: its model's, except that meta calls of every
 * model share those of "" (a model list must not wait behind that model's generations). */
static upstream_model *llm_bulkhead_entry(const llm_call *c)
{
    return c->op == LLM_OP_META ? upstream_registry_find(c->task->l->registry, "") : c->entry;
}

/* The usable host with the fewest calls in flight, avoiding the last one on a retry when
 * another is usable. -1 when every host's breaker refuses: fails without any network. */
static int llm_pick_host(llm_call *c)
{
    llm *l = c->task->l;
    upstream_model *bhe = llm_bulkhead_entry(c);
    int best = -1, best_load = INT_MAX;
    for (int pass = 0; pass < 2 && best < 0; pass++) {
        for (size_t i = 0; i < l->n_urls; i++) {
            if (c->denied & (1u << i))
                continue;
            if (pass == 0 && c->prefer_other && l->n_urls > 1 && (int)i == c->last_host)
                continue;
            breaker *br = NULL;
            if (upstream_model_breaker(l->registry, c->entry, i, c->op, &br) != RAGD_OK)
                continue;
            breaker_snapshot s;
            breaker_snapshot_get(br, &s);
            if (s.state == BREAKER_FORCED_OPEN || (s.state == BREAKER_OPEN && s.remaining_open_ms > 0))
                continue;
            bulkhead *bh = NULL;
            int load = upstream_model_bulkhead(l->registry, bhe, i, &bh) == RAGD_OK
                           ? bulkhead_get_stats(bh).in_flight + bulkhead_get_stats(bh).queued
                           : INT_MAX - 1;
            if (load < best_load) {
                best = (int)i;
                best_load = load;
            }
        }
    }
    return best;
}

/* ---- the HTTP attempt ---- */

static int llm_on_text_piece(const char *p, size_t n, void *arg)
{
    llm_call *c = arg;
    llm_task *t = c->task;
    if (t->cancelled)
        return 1;
    c->text_sent = true;
    t->in_text_cb = true;
    int stop = t->u.chat.h.on_text ? t->u.chat.h.on_text(p, n, t->u.chat.h.arg) : 0;
    t->in_text_cb = false;
    if (t->cancelled) /* cancelled from inside on_text: the call ends from the loop */
        return 1;
    if (stop != 0) {
        c->consumer_stopped = true;
        return 1;
    }
    return 0;
}

static int llm_on_headers(int status, const char *content_type, void *arg)
{
    (void)content_type;
    llm_call *c = arg;
    c->http_status = status;
    return 0;
}

static int llm_on_data(const char *p, size_t n, void *arg)
{
    llm_call *c = arg;
    if (c->op == LLM_OP_CHAT && c->http_status == 200) /* false: the stream is over (done, error, bad data, stop) */
        return !c->task->l->codec->stream_feed(c->stream, p, n);
    if (c->http_status != 200) { /* an error body: its first 64 KiB are enough */
        size_t room = c->reply.len < LLM_ERROR_BODY_CAP ? LLM_ERROR_BODY_CAP - c->reply.len : 0;
        return strbuf_append(&c->reply, p, n < room ? n : room) != RAGD_OK;
    }
    return strbuf_append(&c->reply, p, n) != RAGD_OK; /* capped at reply_cap */
}

static void llm_on_step(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    llm_call *c = arg;
    c->denied = 0; /* a new attempt: every host may be asked again */
    llm_try(c);
}

/* Embed reply of a 200: parse strictly, into the job's result. */
static bool llm_embed_store(llm_call *c)
{
    llm_task *job = c->task;
    char err[200];
    size_t dim = 0;
    float *v = NULL;
    ragd_err e = job->l->codec->embed_parse(c->reply.data ? c->reply.data : "", c->reply.len, c->count, &dim, &v, err,
                                            sizeof err);
    if (e == RAGD_OK && job->u.embed.dim && dim != job->u.embed.dim) {
        snprintf(err, sizeof err, "embed reply dimension %zu differs from another batch's %zu", dim, job->u.embed.dim);
        e = RAGD_EINVAL;
    }
    if (e == RAGD_OK && !job->u.embed.vectors) {
        job->u.embed.dim = dim;
        job->u.embed.vectors = calloc(job->u.embed.n_texts * dim, sizeof *job->u.embed.vectors);
        if (!job->u.embed.vectors)
            e = RAGD_ENOMEM;
    }
    if (e == RAGD_OK)
        memcpy(job->u.embed.vectors + c->first * dim, v, c->count * dim * sizeof *v);
    else
        snprintf(c->message, sizeof c->message, "%s", e == RAGD_ENOMEM ? "out of memory" : err);
    free(v);
    return e == RAGD_OK;
}

/* Meta reply of a 200: parsed strictly by the codec into the task's reply. */
static llm_status llm_meta_store(llm_call *c)
{
    llm_task *t = c->task;
    json_t *out = NULL;
    llm_status st = t->l->codec->meta_parse(t->u.meta.what, t->model, c->reply.data ? c->reply.data : "", c->reply.len,
                                            &out, c->message, sizeof c->message);
    if (st == LLM_OK) {
        json_decref(t->u.meta.reply);
        t->u.meta.reply = out;
    }
    return st;
}

static void llm_on_call_done(const upstream_result *r, void *arg)
{
    llm_call *c = arg;
    llm_task *t = c->task;
    llm *l = t->l;
    c->hold.call = NULL; /* the client frees it after this callback */
    metrics_upstream_observe(l->shown[c->host], upstream_op_name(c->op), r->total_ms / 1000.0);
    if (c->op == LLM_OP_EMBED && r->status == 200) /* the batch a backend took (retries elsewhere count once) */
        metrics_embed_batch_observe(l->shown[c->host], c->count);
    if (t->kind == LLM_TASK_CHAT) {
        t->u.chat.stats.attempts = c->attempts;
        t->u.chat.stats.ttfb_ms = r->ttfb_ms;
        t->u.chat.stats.total_ms = r->total_ms;
    }
    if (l->probe && r->status > 0)
        probe_note(l->probe, (size_t)c->host, true, NULL);
    else if (l->probe && r->transport == UPSTREAM_T_CONNECT)
        probe_note(l->probe, (size_t)c->host, false, r->message);
    if (t->cancelled) { /* stopped from inside on_text: slot and permit go back as NEUTRAL */
        llm_call_end(c, LLM_CANCELLED);
        return;
    }

    breaker_call bc = {.transport = admission_breaker_transport(r->transport), .http_status = r->status};
    bool ok_reply = true;
    if (r->transport == UPSTREAM_T_ABORTED && c->op == LLM_OP_CHAT)
        bc.transport = BREAKER_XPORT_NONE; /* we stopped reading: the stream state says how it went */
    if (c->op == LLM_OP_CHAT && r->status == 200 && bc.transport == BREAKER_XPORT_NONE) {
        bc.stream = l->codec->stream_end(c->stream, &t->u.chat.stats, &bc.model_loading, c->message, sizeof c->message);
        t->u.chat.stats.model_loaded = bc.model_loading;
        if (c->consumer_stopped)
            bc.stream = BREAKER_STREAM_DONE; /* our choice, not the backend's fault */
        if (bc.stream == BREAKER_STREAM_NO_DONE && !c->message[0]) /* said, not a bare "unavailable" */
            snprintf(c->message, sizeof c->message, "%s: the chat stream broke off (no final chunk, or a chunk "
                     "that is not understood)", l->shown[c->host]);
    }
    llm_status meta_st = LLM_OK;
    if (c->op == LLM_OP_META && r->status == 200 && bc.transport == BREAKER_XPORT_NONE) {
        meta_st = llm_meta_store(c);
        if (meta_st == LLM_BAD_REPLY) {
            ok_reply = false;
            bc.transport = BREAKER_XPORT_OTHER; /* a backend that lies counts as failing */
        }
    }
    if (r->status >= 400) {
        l->codec->error_message(c->reply.data, c->reply.len, c->message, sizeof c->message);
        bc.busy = l->codec->is_busy(r->status, c->reply.data, c->reply.len);
    }
    if (c->op == LLM_OP_EMBED && r->status == 200 && bc.transport == BREAKER_XPORT_NONE && !llm_embed_store(c)) {
        ok_reply = false;
        bc.transport = BREAKER_XPORT_OTHER; /* a backend that lies counts as failing */
    }
    if (bc.transport != BREAKER_XPORT_NONE && !c->message[0])
        snprintf(c->message, sizeof c->message, "%s: %s", l->shown[c->host], r->message ? r->message : "transport error");

    upstream_outcome outcome = admission_hold_report(&c->hold, &bc);

    if (outcome == UPSTREAM_SUCCESS) {
        llm_call_end(c, meta_st);
        return;
    }
    double left = t->deadline_ms - l->clock.now_ms(l->clock.arg);
    retry_decision d = {0};
    if (c->op != LLM_OP_META) /* a meta question is one call to one host */
        d = retry_decide(&l->cfg.retry, outcome, c->attempts, left, &l->rnd, l->budget);
    if (d.retry && !c->text_sent) {
        c->prefer_other = d.prefer_other_host;
        c->last_host = c->host;
        upstream_model_release(c->entry); /* nothing held while waiting: the entry may go */
        c->entry = NULL;
        log_debug("llm: %s attempt %d failed (%s), retrying in %.0f ms", upstream_op_name(c->op), c->attempts,
                  upstream_transport_name(r->transport), d.delay_ms);
        admission_arm_timer(c->step, d.delay_ms);
        return;
    }
    llm_status st = LLM_UNAVAILABLE;
    if (outcome == UPSTREAM_OVERLOAD)
        st = LLM_OVERLOADED;
    else if (outcome == UPSTREAM_NEUTRAL) /* a 4xx: 404 is an unknown model (or path) */
        st = r->status == 404 ? LLM_NOT_FOUND : LLM_REJECTED;
    else if (!ok_reply)
        st = LLM_BAD_REPLY;
    else if (r->transport == UPSTREAM_T_TOTAL_TIMEOUT ||
             ((d.reason == RETRY_NO_DEADLINE || c->op == LLM_OP_META) && left <= 0))
        st = LLM_TIMEOUT;
    llm_call_end(c, st);
}

/* A slot is held: take a breaker permit and send the request. */
static void llm_send(llm_call *c)
{
    llm_task *t = c->task;
    llm *l = t->l;
    if (!admission_hold_permit(&c->hold)) {
        /* e.g. HALF_OPEN with its trial permits taken: another host, or fail at once */
        c->denied |= 1u << c->host;
        llm_try(c);
        return;
    }
    c->attempts++;
    c->http_status = 0;
    c->text_sent = false;
    strbuf_reset(&c->reply);
    if (c->op == LLM_OP_CHAT) { /* a fresh decoder for each attempt */
        l->codec->stream_free(c->stream);
        c->stream = l->codec->stream_new(llm_on_text_piece, c);
        if (!c->stream) {
            snprintf(c->message, sizeof c->message, "out of memory");
            admission_hold_abandon(&c->hold);
            llm_call_end(c, LLM_OVERLOADED);
            return;
        }
    }
    double left = t->deadline_ms - l->clock.now_ms(l->clock.arg);
    double op_limit = c->op == LLM_OP_EMBED  ? l->cfg.embed_timeout_ms
                      : c->op == LLM_OP_CHAT ? l->cfg.generate_timeout_ms
                                             : LLM_META_TIMEOUT_MS;
    double total = left < op_limit ? left : op_limit;
    char url[1200];
    snprintf(url, sizeof url, "%s%s", l->urls[c->host], c->path);
    char auth[600] = "";
    if (l->api_key)
        snprintf(auth, sizeof auth, "Bearer %s", l->api_key);
    upstream_request req = {.url = url,
                            .body = c->body,
                            .body_len = c->body_len,
                            .content_type = "application/json",
                            .authorization = l->api_key ? auth : NULL,
                            .connect_timeout_ms = (long)l->cfg.connect_timeout_ms,
                            .ttfb_timeout_ms = (long)(l->cfg.ttfb_timeout_ms < total ? l->cfg.ttfb_timeout_ms : total),
                            .idle_timeout_ms = (long)l->cfg.idle_timeout_ms,
                            .total_timeout_ms = (long)(total > 1 ? total : 1),
                            .max_response_bytes = c->reply_cap,
                            .on_headers = llm_on_headers,
                            .on_data = llm_on_data,
                            .on_done = llm_on_call_done,
                            .arg = c};
    c->hold.call = upstream_start(l->client, &req);
    if (!c->hold.call) {
        snprintf(c->message, sizeof c->message, "cannot start an HTTP call (out of memory)");
        admission_hold_abandon(&c->hold); /* the permit and the slot, as NEUTRAL */
        llm_call_end(c, LLM_OVERLOADED);
    }
}

static void llm_on_admission(bulkhead_waiter *w, bulkhead_status status, void *arg)
{
    (void)w;
    llm_call *c = arg;
    if (admission_hold_admitted(&c->hold, status)) {
        llm_send(c);
        return;
    }
    snprintf(c->message, sizeof c->message, "%s: %s waiting for a slot", c->task->l->shown[c->host],
             bulkhead_status_name(status));
    llm_call_end(c, status == BULKHEAD_TIMED_OUT ? LLM_TIMEOUT : LLM_OVERLOADED);
}

/* One attempt: choose a host, get a bulkhead slot (or queue for one), then send. */
static void llm_try(llm_call *c)
{
    llm_task *t = c->task;
    llm *l = t->l;
    c->message[0] = '\0';
    if (c->entry) /* a permit refused on one host: choose again */
        upstream_model_release(c->entry);
    c->entry = NULL;
    ragd_err e = upstream_registry_get(l->registry, t->model, &c->entry);
    if (e != RAGD_OK) {
        snprintf(c->message, sizeof c->message,
                 e == RAGD_EBUSY ? "too many models in use at once (%zu besides the configured ones, RAGD_MAX_MODELS): "
                                   "try again later"
                                 : "out of memory (%zu models)",
                 l->cfg.max_models);
        c->entry = NULL;
        llm_call_end(c, LLM_OVERLOADED);
        return;
    }
    upstream_model_hold(c->entry);
    c->host = llm_pick_host(c);
    if (c->host < 0 || upstream_model_breaker(l->registry, c->entry, (size_t)c->host, c->op, &c->hold.br) != RAGD_OK ||
        upstream_model_bulkhead(l->registry, llm_bulkhead_entry(c), (size_t)c->host, &c->hold.bh) != RAGD_OK) {
        snprintf(c->message, sizeof c->message, "no backend available: every circuit breaker is open");
        llm_call_end(c, LLM_UNAVAILABLE);
        return;
    }
    bulkhead_status st = admission_hold_acquire(l->admission, &c->hold, t->deadline_ms, llm_on_admission, c);
    if ((st == BULKHEAD_ADMITTED || st == BULKHEAD_QUEUED) && t->kind == LLM_TASK_CHAT)
        llm_unreserve(&t->u.chat.reservation); /* the task has its own place now */
    switch (st) {
    case BULKHEAD_ADMITTED:
        llm_send(c);
        return;
    case BULKHEAD_QUEUED:
        return;
    default:
        snprintf(c->message, sizeof c->message, "%s: %s", l->shown[c->host], bulkhead_status_name(st));
        llm_call_end(c, st == BULKHEAD_TIMED_OUT ? LLM_TIMEOUT : LLM_OVERLOADED);
        return;
    }
}

/* ---- the end of one call ---- */

/* A call is over (its attempt abandoned): a chat or meta task finishes with its status; an
 * embed batch either fails its job (which ends the other batches) or counts towards it. */
static void llm_call_end(llm_call *c, llm_status st)
{
    llm_attempt_abandon(c);
    llm_task *t = c->task;
    if (t->finishing)
        return;
    if (t->kind != LLM_TASK_EMBED || st != LLM_OK)
        llm_finish(t, st, c->message);
    else if (--t->u.embed.pending == 0)
        llm_finish(t, LLM_OK, "");
    else if (t->u.embed.started < t->n_calls) /* the window moves on by one batch */
        admission_arm_timer(t->calls[t->u.embed.started++]->step, 0);
}

/* ---- public ---- */

/* A task of kind for model with room for n_calls calls (not yet made). NULL on no memory. */
static llm_task *llm_task_new(llm *l, llm_task_kind kind, const char *model, double deadline_ms, size_t n_calls)
{
    llm_task *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->l = l;
    t->kind = kind;
    t->deadline_ms = deadline_ms;
    queue_node_init(&t->link);
    t->model = strdup(model);
    t->deliver = evtimer_new(l->base, llm_on_deliver, t);
    t->calls = calloc(n_calls ? n_calls : 1, sizeof *t->calls);
    if (!t->model || !t->deliver || !t->calls) {
        llm_task_free(t);
        return NULL;
    }
    return t;
}

/* Adds a call of t to path (static) with body (taken over; NULL = a GET); reply_cap bounds
 * its reply body (and the reply buffer). NULL on no memory (body freed). */
static llm_call *llm_call_add(llm_task *t, upstream_op op, const char *path, char *body, size_t reply_cap)
{
    llm *l = t->l;
    llm_call *c = calloc(1, sizeof *c);
    if (c)
        c->step = evtimer_new(l->base, llm_on_step, c);
    if (!c || !c->step) {
        free(c);
        free(body);
        return NULL;
    }
    c->task = t;
    c->op = op;
    c->path = path;
    c->body = body;
    c->body_len = body ? strlen(body) : 0;
    c->last_host = -1;
    c->host = -1;
    c->reply_cap = reply_cap < l->cfg.max_response_bytes ? reply_cap : l->cfg.max_response_bytes;
    strbuf_init(&c->reply, c->reply_cap);
    t->calls[t->n_calls++] = c;
    return c;
}

static void llm_link(llm_task *t)
{
    queue_insert_tail(&t->l->tasks, &t->link);
    t->l->n_tasks++;
}

/* A task refused before any call (its callback fields set): LLM_REJECTED on a later turn. */
static llm_task *llm_refuse(llm_task *t, const char *message)
{
    llm_link(t);
    llm_finish(t, LLM_REJECTED, message);
    return t;
}

static bool llm_model_ok(const char *model) { return strlen(model) <= LLM_MODEL_NAME_MAX; }
#define LLM_MODEL_TOO_LONG "the model name is longer than 256 bytes"

llm_task *llm_embed(llm *l, const char *model, const char *const *texts, const size_t *lens, size_t n,
                    double deadline_ms, llm_embed_cb cb, void *arg)
{
    size_t batch = l->cfg.embed_batch ? l->cfg.embed_batch : 32;
    if (n == 0 || l->closed)
        return NULL;
    bool model_ok = llm_model_ok(model);
    size_t n_batches = model_ok ? (n + batch - 1) / batch : 0;
    llm_task *job = llm_task_new(l, LLM_TASK_EMBED, model, deadline_ms, n_batches);
    if (!job)
        return NULL;
    job->u.embed.n_texts = n;
    job->u.embed.cb = cb;
    job->u.embed.arg = arg;
    if (!model_ok)
        return llm_refuse(job, LLM_MODEL_TOO_LONG);
    for (size_t i = 0; i < n_batches; i++) {
        size_t first = i * batch, count = n - first < batch ? n - first : batch;
        char *body = l->codec->embed_body(model, texts + first, lens + first, count);
        llm_call *c = body ? llm_call_add(job, LLM_OP_EMBED, l->codec->embed_path, body,
                                          count * LLM_EMBED_BYTES_PER_TEXT + LLM_EMBED_REPLY_SLACK)
                           : NULL;
        if (!c) {
            llm_task_free(job);
            return NULL;
        }
        c->first = first;
        c->count = count;
    }
    for (size_t i = 0; i < n_batches; i++)
        retry_budget_note_request(l->budget);
    job->u.embed.pending = n_batches;
    llm_link(job);
    /* A window of batches starts on the next loop turn (so no callback runs inside this
     * call); each one that succeeds starts the next. The window is every host's slots: a
     * document of any size keeps the bulkheads busy without ever filling their queues by
     * itself, so its own batches are never shed. */
    size_t window = l->n_urls * (size_t)l->cfg.bulkhead.max_concurrent;
    for (job->u.embed.started = 0; job->u.embed.started < n_batches && job->u.embed.started < window;
         job->u.embed.started++)
        admission_arm_timer(job->calls[job->u.embed.started]->step, 0);
    return job;
}

llm_task *llm_chat_messages(llm *l, const char *model, const llm_chat_request *rq, double deadline_ms,
                            const llm_chat_handlers *h, llm_reservation *reserved)
{
    if (l->closed)
        return NULL;
    llm_task *t = llm_task_new(l, LLM_TASK_CHAT, model, deadline_ms, 1);
    if (!t)
        return NULL;
    t->u.chat.h = *h;
    llm_chat_stats *st = &t->u.chat.stats;
    st->prompt_tokens = st->completion_tokens = -1;
    st->load_ns = st->prompt_eval_ns = st->eval_ns = -1;
    char *body = llm_model_ok(model) ? l->codec->chat_body(model, rq) : NULL;
    llm_call *c = body ? llm_call_add(t, LLM_OP_CHAT, l->codec->chat_path, body, SIZE_MAX) : NULL;
    if (!c && llm_model_ok(model)) { /* no memory: NULL, and *reserved stays the caller's */
        llm_task_free(t);
        return NULL;
    }
    if (reserved && reserved->held) { /* taken over: the task gives it back */
        t->u.chat.reservation = *reserved;
        reserved->held = false;
    }
    if (!c)
        return llm_refuse(t, LLM_MODEL_TOO_LONG);
    llm_link(t);
    if (c->body_len > LLM_CHAT_BODY_CAP) { /* refused here, delivered on a later turn */
        llm_finish(t, LLM_REJECTED, "the chat request is larger than 32 MiB");
        return t;
    }
    retry_budget_note_request(l->budget);
    admission_arm_timer(c->step, 0);
    return t;
}

llm_task *llm_chat(llm *l, const char *model, const char *system, const char *user, json_t *options,
                   double deadline_ms, const llm_chat_handlers *h, llm_reservation *reserved)
{
    json_t *messages = wire_messages(system, user);
    llm_chat_request rq = {.messages = messages, .options = options};
    llm_task *t = messages ? llm_chat_messages(l, model, &rq, deadline_ms, h, reserved) : NULL;
    json_decref(messages);
    return t;
}

llm_task *llm_meta(llm *l, llm_meta_kind what, const char *model, double deadline_ms, llm_meta_cb cb, void *arg)
{
    if (l->closed)
        return NULL;
    const char *name = what == LLM_META_SHOW && model ? model : "";
    llm_task *t = llm_task_new(l, LLM_TASK_META, name, deadline_ms, 1);
    codec_meta_request mr = {0};
    if (!t || l->codec->meta_request(what, name, &mr) != RAGD_OK) {
        free(mr.body);
        json_decref(mr.local_reply);
        llm_task_free(t);
        return NULL;
    }
    t->u.meta.what = what;
    t->u.meta.cb = cb;
    t->u.meta.arg = arg;
    if (!llm_model_ok(name)) {
        free(mr.body);
        json_decref(mr.local_reply);
        return llm_refuse(t, LLM_MODEL_TOO_LONG);
    }
    if (mr.local) { /* what this kind of backend cannot be asked is answered here, on a later turn */
        t->u.meta.reply = mr.local_reply;
        llm_link(t);
        llm_finish(t, mr.local_status, mr.local_message);
        return t;
    }
    llm_call *c = llm_call_add(t, LLM_OP_META, mr.path, mr.body, LLM_META_REPLY_CAP);
    if (!c) {
        llm_task_free(t);
        return NULL;
    }
    llm_link(t);
    admission_arm_timer(c->step, 0);
    return t;
}

void llm_task_cancel(llm_task *t)
{
    if (!t || t->cancelled || t->delivering)
        return;
    t->cancelled = true;
    if (t->in_text_cb)
        return; /* on_text's caller stops the stream; the call ends from the loop */
    llm_finish(t, LLM_CANCELLED, "cancelled");
}

void llm_cancel_all(llm *l)
{
    l->closed = true;
    queue_node *n;
    queue_foreach(n, &l->tasks) /* cancelling unlinks nothing: delivery does, later */
        llm_task_cancel(queue_data(n, llm_task, link));
}

size_t llm_task_count(const llm *l) { return l->n_tasks; }

/* ---- reservations ---- */

llm_status llm_reserve(llm *l, const char *model, llm_reservation *r)
{
    memset(r, 0, sizeof *r);
    if (strlen(model) >= sizeof r->model)
        return LLM_OK; /* not a model any request may name: nothing to count */
    long capacity = (long)l->n_urls * (long)(l->cfg.bulkhead.max_concurrent + l->cfg.bulkhead.max_queue);
    upstream_model *m = NULL;
    if (upstream_registry_get(l->registry, model, &m) != RAGD_OK)
        return LLM_OVERLOADED; /* max_models others in use, none idle */
    long used = upstream_model_reserved(m);
    for (size_t i = 0; i < l->n_urls; i++) {
        bulkhead *b = upstream_model_bulkhead_if(m, i);
        if (b) {
            bulkhead_stats st = bulkhead_get_stats(b);
            used += st.in_flight + st.queued;
        }
    }
    if (used >= capacity)
        return LLM_OVERLOADED;
    upstream_model_reserve(m, 1);
    r->l = l;
    snprintf(r->model, sizeof r->model, "%s", model);
    r->held = true;
    return LLM_OK;
}

void llm_unreserve(llm_reservation *r)
{
    if (!r || !r->held)
        return;
    upstream_model *m = upstream_registry_find(r->l->registry, r->model); /* a reservation keeps it */
    if (m)
        upstream_model_reserve(m, -1);
    r->held = false;
}

ragd_err llm_new(struct event_base *base, upstream_client *client, const llm_config *cfg, upstream_clock clock,
                 upstream_rand rnd, llm **out, char *err, size_t errlen)
{
    *out = NULL;
    if (cfg->n_urls == 0 || cfg->n_urls > 32) {
        snprintf(err, errlen, "1 to 32 backend URLs are needed");
        return RAGD_EINVAL;
    }
    /* Every entry (configured, "" for meta calls, on demand) may hold a breaker per host and
     * op and a bulkhead per host: all must fit the breaker registry. */
    size_t entries = cfg->n_models + 1 + cfg->max_models;
    if (cfg->max_models < 1 || cfg->max_models > 1024 || entries * cfg->n_urls * UPSTREAM_NOPS > BREAKER_REGISTRY_MAX) {
        snprintf(err, errlen, "max models %zu must be 1..1024, and (configured models %zu + 1 + it) x %zu hosts x %d "
                 "ops at most %d breakers", cfg->max_models, cfg->n_models, cfg->n_urls, UPSTREAM_NOPS,
                 BREAKER_REGISTRY_MAX);
        return RAGD_EINVAL;
    }
    ragd_err e = breaker_config_validate(&cfg->breaker, err, errlen);
    if (!e)
        e = bulkhead_config_validate(&cfg->bulkhead, err, errlen);
    if (!e)
        e = retry_policy_validate(&cfg->retry, err, errlen);
    if (e)
        return e;
    llm *l = calloc(1, sizeof *l);
    if (!l)
        return RAGD_ENOMEM;
    l->base = base;
    l->client = client;
    l->cfg = *cfg;
    l->codec = upstream_codec_for(cfg->kind);
    l->clock = clock;
    l->rnd = rnd;
    l->urls = calloc(cfg->n_urls, sizeof *l->urls);
    l->shown = calloc(cfg->n_urls, sizeof *l->shown);
    l->api_key = cfg->api_key ? strdup(cfg->api_key) : NULL;
    l->cfg.urls = NULL;
    l->cfg.api_key = NULL;
    l->cfg.models = NULL;
    queue_init(&l->tasks);
    l->breakers = breaker_registry_new(clock, rnd);
    e = l->urls && l->shown && l->breakers && (!cfg->api_key || l->api_key) ? RAGD_OK : RAGD_ENOMEM;
    for (size_t i = 0; !e && i < cfg->n_urls; i++) {
        size_t len = strlen(cfg->urls[i]);
        while (len && cfg->urls[i][len - 1] == '/')
            len--;
        l->urls[i] = strndup(cfg->urls[i], len);
        l->shown[i] = malloc(3 * len + 4); /* "***" stands for one byte or more */
        l->n_urls++;
        if (!l->urls[i] || !l->shown[i])
            e = RAGD_ENOMEM;
        else
            url_redact(l->urls[i], l->shown[i], 3 * len + 4);
    }
    if (!e)
        e = admission_new(base, &cfg->bulkhead, entries * cfg->n_urls, clock, rnd, &l->admission, err, errlen);
    if (!e) {
        upstream_registry_config rc = {.breakers = l->breakers,
                                       .bulkheads = admission_bulkheads(l->admission),
                                       .hosts = (const char *const *)l->shown,
                                       .n_hosts = l->n_urls,
                                       .breaker = &cfg->breaker,
                                       .pinned = cfg->models,
                                       .n_pinned = cfg->n_models,
                                       .max_models = cfg->max_models};
        e = upstream_registry_new(&rc, &l->registry);
    }
    if (!e)
        e = retry_budget_new(&cfg->budget, clock, &l->budget, err, errlen);
    if (!e && cfg->probe_interval_ms > 0) {
        char auth[600] = "";
        if (l->api_key)
            snprintf(auth, sizeof auth, "Bearer %s", l->api_key);
        l->probe = probe_new(base, client, (const char *const *)l->urls, l->n_urls,
                             l->codec->probe_path, l->api_key ? auth : NULL,
                             cfg->probe_interval_ms, LLM_PROBE_TIMEOUT_MS);
        if (!l->probe)
            e = RAGD_ENOMEM;
    }
    if (e) {
        if (e == RAGD_ENOMEM)
            snprintf(err, errlen, "out of memory");
        llm_free(l);
        return e;
    }
    *out = l;
    return RAGD_OK;
}

void llm_free(llm *l)
{
    if (!l)
        return;
    queue_node *n;
    while ((n = queue_pop(&l->tasks)) != NULL) /* dropped without a callback (see llm.h) */
        llm_task_free(queue_data(n, llm_task, link));
    probe_free(l->probe);
    upstream_registry_free(l->registry);
    admission_free(l->admission);
    breaker_registry_free(l->breakers);
    retry_budget_free(l->budget);
    for (size_t i = 0; i < l->n_urls; i++) {
        free(l->urls[i]);
        free(l->shown[i]);
    }
    free(l->urls);
    free(l->shown);
    free(l->api_key);
    free(l);
}

breaker_registry *llm_breakers(llm *l) { return l->breakers; }
bulkhead_set *llm_bulkheads(llm *l) { return admission_bulkheads(l->admission); }
size_t llm_host_count(const llm *l) { return l->n_urls; }
const char *llm_host_url(const llm *l, size_t i) { return i < l->n_urls ? l->shown[i] : NULL; }

void llm_probe_start(llm *l)
{
    if (l->probe)
        probe_start(l->probe);
}

void llm_host_reach(const llm *l, size_t i, probe_host_info *out)
{
    if (l->probe) {
        probe_host_get(l->probe, i, out);
        return;
    }
    memset(out, 0, sizeof *out);
    out->age_ms = -1;
}

bool llm_ever_reached(const llm *l) { return l->probe && probe_ever_reached(l->probe); }
bool llm_reachable(const llm *l) { return l->probe && probe_any_up(l->probe); }
