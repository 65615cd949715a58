#include "upstream/llm.h"

#include <event2/event.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/admission.h"
#include "upstream/ollama.h"
#include "upstream/openai.h"
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
#define LLM_RESERVE_MODELS 64 /* models with reservations (requests name configured models only) */
#define LLM_PROBE_TIMEOUT_MS 2000.0
/* A chat request body is built from what a client sent (capped by RAGD_MAX_BODY_BYTES) or
 * by the engine (capped by the context budget); past this it is refused, never sent. */
#define LLM_CHAT_BODY_CAP ((size_t)32 << 20)
/* A model list, a show object, a version: far under this from any real backend. */
#define LLM_META_REPLY_CAP ((size_t)4 << 20)
#define LLM_META_TIMEOUT_MS 10000.0

typedef enum { LLM_OP_EMBED, LLM_OP_CHAT, LLM_OP_META } llm_op;
static const char *const llm_op_names[] = {"embed", "chat", "models"};
typedef enum { TASK_EMBED_JOB, TASK_CALL } llm_task_kind;

struct llm {
    struct event_base *base;
    upstream_client *client;
    llm_config cfg;
    char **urls;
    char **shown;  /* the same URLs as they may be shown (util/url.h): names, labels, messages */
    size_t n_urls;
    char *api_key;
    breaker_registry *breakers;
    admission *admission;   /* the bulkheads, one per (host, model), driven on the loop */
    retry_budget *budget;
    upstream_clock clock;
    upstream_rand rnd;
    queue_node tasks;       /* top-level tasks (embed jobs, chats) until their final callback */
    size_t n_tasks;
    bool closed;            /* llm_cancel_all ran: new tasks are refused */
    probe *probe;           /* reachability of the hosts, or NULL */
    struct {
        char model[128];
        long count;
    } reserved[LLM_RESERVE_MODELS];
};

struct llm_task {
    llm *l;
    llm_task_kind kind;
    queue_node link; /* in l->tasks (top-level tasks only) */
    double deadline_ms;
    /* The task's next step on a later loop turn: its first attempt, a retry after the
     * backoff, or (top-level tasks) the delivery of its final callback. */
    struct event *step;
    bool finishing;     /* the final status is decided; step delivers it */
    bool cancelled;     /* the final callback will say LLM_CANCELLED */
    bool delivering;    /* the final callback is running: cancel is a no-op */
    bool in_text_cb;    /* inside on_text: a cancel there stops the stream from within */
    llm_status final;
    llm_reservation reservation; /* chat: held until the task has a bulkhead place */

    /* TASK_EMBED_JOB: the batches and the result */
    llm_task **children;
    size_t n_children;
    size_t pending;
    size_t started; /* batches started so far: at most a window of them unfinished */
    size_t n_texts;
    size_t dim;
    float *vectors;
    llm_embed_cb embed_cb;
    void *embed_arg;

    /* TASK_CALL: one request to some backend, retried */
    llm_task *parent; /* the embed job, or NULL for chat */
    size_t first;     /* embed batch: index of its first text */
    size_t count;
    llm_op op;
    char *model;
    char *body;
    size_t body_len;
    int attempts;
    int last_host;
    bool prefer_other;
    uint32_t denied; /* hosts whose breaker refused a permit during this attempt */
    /* the attempt in progress */
    int host;
    admission_hold hold; /* its slot (or place in the queue), permit and HTTP call */
    int http_status;
    strbuf reply; /* embed reply, or an error body */
    size_t reply_cap; /* bytes of the reply body read at most (the upstream call's cap) */
    ollama_stream ost;
    openai_stream oast;
    bool stream_on;
    bool text_sent;
    bool consumer_stopped;
    llm_chat_handlers chat;
    llm_chat_stats stats;

    /* LLM_OP_META: one call, no retries; the parsed reply until delivery */
    const char *path;       /* the request path on the host (a static string) */
    llm_meta_kind meta_kind;
    llm_meta_cb meta_cb;
    void *meta_arg;
    json_t *meta_reply;
    char message[320];
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

static void llm_try(llm_task *t);
static void llm_call_end(llm_task *t, llm_status st);

/* ---- attempts, freeing, finishing ---- */

/* Ends whatever attempt is in progress, without callbacks: the slot, the permit and the
 * HTTP call are all given back (as NEUTRAL: we stopped it, the backend did nothing wrong),
 * and a pending first attempt or retry is called off. None of these runs any callback. */
static void llm_attempt_abandon(llm_task *t)
{
    admission_hold_abandon(&t->hold);
    if (t->step)
        event_del(t->step);
    llm_unreserve(&t->reservation);
}

static void llm_task_free(llm_task *t)
{
    if (!t)
        return;
    if (t->kind == TASK_EMBED_JOB) {
        for (size_t i = 0; i < t->n_children; i++)
            llm_task_free(t->children[i]);
        free(t->children);
        free(t->vectors);
    } else {
        llm_attempt_abandon(t);
        if (t->stream_on) {
            ollama_stream_cleanup(&t->ost);
            openai_stream_cleanup(&t->oast);
        }
        strbuf_cleanup(&t->reply);
        json_decref(t->meta_reply);
        free(t->model);
        free(t->body);
    }
    if (t->step)
        event_free(t->step);
    free(t);
}

/* Decides a top-level task's final status; its callback runs on a later loop turn. Every
 * attempt of the task (its batches, for an embed job) is over from here on. */
static void llm_finish(llm_task *t, llm_status st, const char *message)
{
    if (t->finishing)
        return;
    if (t->kind == TASK_EMBED_JOB) {
        for (size_t i = 0; i < t->n_children; i++)
            llm_attempt_abandon(t->children[i]);
    } else {
        llm_attempt_abandon(t);
    }
    t->finishing = true;
    t->final = st;
    if (message != t->message)
        snprintf(t->message, sizeof t->message, "%s", message ? message : "");
    secret_scrub(t->message, t->l->api_key); /* a backend may quote the key it was sent */
    utf8_sanitize(t->message);               /* backend text cut to fit may end mid-character */
    admission_arm_timer(t->step, 0);
}

/* The step event of a finishing top-level task: runs its final callback, then frees it. */
static void llm_deliver(llm_task *t)
{
    llm *l = t->l;
    queue_remove(&t->link);
    l->n_tasks--;
    llm_status st = t->cancelled ? LLM_CANCELLED : t->final;
    const char *message = st == LLM_CANCELLED && t->final != LLM_CANCELLED ? "cancelled" : t->message;
    t->delivering = true;
    if (t->kind == TASK_EMBED_JOB) {
        bool ok = st == LLM_OK;
        t->embed_cb(st, ok ? t->vectors : NULL, ok ? t->dim : 0, ok ? "" : message, t->embed_arg);
    } else if (t->op == LLM_OP_META) {
        bool ok = st == LLM_OK;
        t->meta_cb(st, ok ? t->meta_reply : NULL, ok ? "" : message, t->meta_arg);
    } else if (t->chat.on_done) {
        t->chat.on_done(st, message, &t->stats, t->chat.arg);
    }
    llm_task_free(t);
}

/* ---- host choice ---- */

static ragd_err llm_breaker_for(llm *l, int host, llm_op op, const char *model, breaker **out)
{
    char err[128];
    ragd_err e = breaker_registry_add(l->breakers, l->shown[host], llm_op_names[op], model, &l->cfg.breaker, out, err,
                                      sizeof err);
    return e == RAGD_ECONFLICT ? RAGD_OK : e; /* it existed: *out is that one */
}

/* The bulkhead of a call is (host, model); meta calls of every model share (host, ""). */
static const char *llm_bulkhead_model(const llm_task *t) { return t->op == LLM_OP_META ? "" : t->model; }

/* The usable host with the fewest calls in flight, avoiding the last one on a retry when
 * another is usable. -1 when every host's breaker refuses: fails without any network. */
static int llm_pick_host(llm_task *t)
{
    llm *l = t->l;
    int best = -1, best_load = INT_MAX;
    for (int pass = 0; pass < 2 && best < 0; pass++) {
        for (size_t i = 0; i < l->n_urls; i++) {
            if (t->denied & (1u << i))
                continue;
            if (pass == 0 && t->prefer_other && l->n_urls > 1 && (int)i == t->last_host)
                continue;
            breaker *br = NULL;
            if (llm_breaker_for(l, (int)i, t->op, t->model, &br) != RAGD_OK)
                continue;
            breaker_snapshot s;
            breaker_snapshot_get(br, &s);
            if (s.state == BREAKER_FORCED_OPEN || (s.state == BREAKER_OPEN && s.remaining_open_ms > 0))
                continue;
            bulkhead *bh = NULL;
            int load = bulkhead_set_get(admission_bulkheads(l->admission), l->shown[i], llm_bulkhead_model(t), &bh) == RAGD_OK
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
    llm_task *t = arg;
    if (t->cancelled)
        return 1;
    t->text_sent = true;
    t->in_text_cb = true;
    int stop = t->chat.on_text ? t->chat.on_text(p, n, t->chat.arg) : 0;
    t->in_text_cb = false;
    if (t->cancelled) /* cancelled from inside on_text: the call ends from the loop */
        return 1;
    if (stop != 0) {
        t->consumer_stopped = true;
        return 1;
    }
    return 0;
}

static int llm_on_headers(int status, const char *content_type, void *arg)
{
    (void)content_type;
    llm_task *t = arg;
    t->http_status = status;
    return 0;
}

static int llm_on_data(const char *p, size_t n, void *arg)
{
    llm_task *t = arg;
    if (t->op == LLM_OP_CHAT && t->http_status == 200) {
        ragd_err e = t->l->cfg.kind == LLM_KIND_OLLAMA ? ollama_stream_feed(&t->ost, p, n) : openai_stream_feed(&t->oast, p, n);
        return e != RAGD_OK; /* the stream is over (done, error line, bad line, consumer stop) */
    }
    if (t->http_status != 200) { /* an error body: its first 64 KiB are enough */
        size_t room = t->reply.len < LLM_ERROR_BODY_CAP ? LLM_ERROR_BODY_CAP - t->reply.len : 0;
        return strbuf_append(&t->reply, p, n < room ? n : room) != RAGD_OK;
    }
    return strbuf_append(&t->reply, p, n) != RAGD_OK; /* capped at max_response_bytes */
}

/* The stream's end as the breaker sees it; ABORTED by our own stop is fine when the
 * stream itself had ended or the consumer stopped. */
static breaker_stream llm_stream_state(llm_task *t, bool *loaded)
{
    *loaded = false;
    llm_chat_stats *st = &t->stats;
    if (t->l->cfg.kind == LLM_KIND_OLLAMA) {
        ollama_stream_state s = ollama_stream_end(&t->ost);
        *loaded = t->ost.load_duration_ns > 0;
        st->prompt_tokens = t->ost.prompt_eval_count;
        st->completion_tokens = t->ost.eval_count;
        st->load_ns = t->ost.load_duration_ns;
        st->prompt_eval_ns = t->ost.prompt_eval_duration_ns;
        st->eval_ns = t->ost.eval_duration_ns;
        snprintf(st->done_reason, sizeof st->done_reason, "%.15s", t->ost.done_reason);
        if (s == OLLAMA_STREAM_ERROR_LINE)
            snprintf(t->message, sizeof t->message, "backend error mid-stream: %s", t->ost.error);
        return s == OLLAMA_STREAM_DONE ? BREAKER_STREAM_DONE
               : s == OLLAMA_STREAM_ERROR_LINE ? BREAKER_STREAM_ERROR_LINE
                                               : BREAKER_STREAM_NO_DONE;
    }
    openai_stream_state s = openai_stream_end(&t->oast);
    st->prompt_tokens = t->oast.prompt_tokens;
    st->completion_tokens = t->oast.completion_tokens;
    snprintf(st->done_reason, sizeof st->done_reason, "%.15s", t->oast.finish_reason);
    if (s == OPENAI_STREAM_ERROR)
        snprintf(t->message, sizeof t->message, "backend error mid-stream: %s", t->oast.error);
    return s == OPENAI_STREAM_DONE ? BREAKER_STREAM_DONE
           : s == OPENAI_STREAM_ERROR ? BREAKER_STREAM_ERROR_LINE
                                      : BREAKER_STREAM_NO_DONE;
}

static void llm_on_step(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    llm_task *t = arg;
    if (t->finishing) {
        llm_deliver(t);
        return;
    }
    t->denied = 0; /* a new attempt: every host may be asked again */
    llm_try(t);
}

/* Embed reply of a 200: parse strictly, into the job's result. */
static bool llm_embed_store(llm_task *t)
{
    llm_task *job = t->parent;
    char err[200];
    size_t dim = 0;
    float *v = NULL;
    ragd_err e = t->l->cfg.kind == LLM_KIND_OLLAMA
                     ? ollama_embed_parse(t->reply.data ? t->reply.data : "", t->reply.len, t->count, &dim, &v, err, sizeof err)
                     : openai_embed_parse(t->reply.data ? t->reply.data : "", t->reply.len, t->count, &dim, &v, err, sizeof err);
    if (e == RAGD_OK && job->dim && dim != job->dim) {
        snprintf(err, sizeof err, "embed reply dimension %zu differs from another batch's %zu", dim, job->dim);
        e = RAGD_EINVAL;
    }
    if (e == RAGD_OK && !job->vectors) {
        job->dim = dim;
        job->vectors = calloc(job->n_texts * dim, sizeof *job->vectors);
        if (!job->vectors)
            e = RAGD_ENOMEM;
    }
    if (e == RAGD_OK)
        memcpy(job->vectors + t->first * dim, v, t->count * dim * sizeof *v);
    else
        snprintf(t->message, sizeof t->message, "%s", e == RAGD_ENOMEM ? "out of memory" : err);
    free(v);
    return e == RAGD_OK;
}

/* A meta reply of a 200: parsed strictly into t->meta_reply. LLM_NOT_FOUND when an
 * OpenAI-compatible list does not hold the model asked about; LLM_BAD_REPLY (message set)
 * when the reply is not the shape. */
static llm_status llm_meta_store(llm_task *t)
{
    const char *body = t->reply.data ? t->reply.data : "";
    size_t len = t->reply.len;
    char err[200] = "";
    ragd_err e = RAGD_OK;
    json_t *out = NULL;
    if (t->l->cfg.kind == LLM_KIND_OLLAMA) {
        if (t->meta_kind == LLM_META_SHOW)
            e = ollama_show_parse(body, len, &out, err, sizeof err);
        else if (t->meta_kind == LLM_META_VERSION)
            e = ollama_version_parse(body, len, &out, err, sizeof err);
        else
            e = ollama_models_parse(body, len, &out, err, sizeof err);
    } else {
        e = openai_models_parse(body, len, &out, err, sizeof err);
        if (e == RAGD_OK && t->meta_kind == LLM_META_SHOW) {
            json_t *list = out;
            out = openai_show_from_models(list, t->model);
            json_decref(list);
            if (!out) {
                snprintf(t->message, sizeof t->message, "model '%s' not found", t->model);
                return LLM_NOT_FOUND;
            }
        }
    }
    if (e != RAGD_OK) {
        snprintf(t->message, sizeof t->message, "%s", e == RAGD_ENOMEM ? "out of memory" : err);
        return LLM_BAD_REPLY;
    }
    json_decref(t->meta_reply);
    t->meta_reply = out;
    return LLM_OK;
}

static void llm_on_call_done(const upstream_result *r, void *arg)
{
    llm_task *t = arg;
    llm *l = t->l;
    t->hold.call = NULL; /* the client frees it after this callback */
    t->stats.attempts = t->attempts;
    t->stats.ttfb_ms = r->ttfb_ms;
    t->stats.total_ms = r->total_ms;
    if (l->probe && r->status > 0)
        probe_note(l->probe, (size_t)t->host, true, NULL);
    else if (l->probe && r->transport == UPSTREAM_T_CONNECT)
        probe_note(l->probe, (size_t)t->host, false, r->message);
    if (t->cancelled) { /* stopped from inside on_text: slot and permit go back as NEUTRAL */
        llm_call_end(t, LLM_CANCELLED);
        return;
    }

    breaker_call bc = {.transport = admission_breaker_transport(r->transport), .http_status = r->status};
    bool ok_reply = true;
    if (r->transport == UPSTREAM_T_ABORTED && t->op == LLM_OP_CHAT)
        bc.transport = BREAKER_XPORT_NONE; /* we stopped reading: the stream state says how it went */
    if (t->op == LLM_OP_CHAT && r->status == 200 && bc.transport == BREAKER_XPORT_NONE) {
        bc.stream = llm_stream_state(t, &bc.model_loading);
        t->stats.model_loaded = bc.model_loading;
        if (t->consumer_stopped)
            bc.stream = BREAKER_STREAM_DONE; /* our choice, not the backend's fault */
    }
    llm_status meta_st = LLM_OK;
    if (t->op == LLM_OP_META && r->status == 200 && bc.transport == BREAKER_XPORT_NONE) {
        meta_st = llm_meta_store(t);
        if (meta_st == LLM_BAD_REPLY) {
            ok_reply = false;
            bc.transport = BREAKER_XPORT_OTHER; /* a backend that lies counts as failing */
        }
    }
    if (r->status >= 400) {
        if (l->cfg.kind == LLM_KIND_OLLAMA) /* OpenAI's is {"error":{"message"}}: it was read as Ollama's and lost */
            ollama_error_message(t->reply.data, t->reply.len, t->message, sizeof t->message);
        else
            openai_error_message(t->reply.data, t->reply.len, t->message, sizeof t->message);
        bc.busy = breaker_body_is_busy(t->reply.data ? t->reply.data : "", t->reply.len);
    }
    if (t->op == LLM_OP_EMBED && r->status == 200 && bc.transport == BREAKER_XPORT_NONE && !llm_embed_store(t)) {
        ok_reply = false;
        bc.transport = BREAKER_XPORT_OTHER; /* a backend that lies counts as failing */
    }
    if (bc.transport != BREAKER_XPORT_NONE && !t->message[0])
        snprintf(t->message, sizeof t->message, "%s: %s", l->shown[t->host], r->message ? r->message : "transport error");

    upstream_outcome outcome = admission_hold_report(&t->hold, &bc);

    if (outcome == UPSTREAM_SUCCESS) {
        llm_call_end(t, meta_st);
        return;
    }
    double left = t->deadline_ms - l->clock.now_ms(l->clock.arg);
    retry_decision d = {0};
    if (t->op != LLM_OP_META) /* a meta call is one call to one host */
        d = retry_decide(&l->cfg.retry, outcome, t->attempts, left, &l->rnd, l->budget);
    if (d.retry && !t->text_sent) {
        t->prefer_other = d.prefer_other_host;
        t->last_host = t->host;
        log_debug("llm: %s attempt %d failed (%s), retrying in %.0f ms", llm_op_names[t->op], t->attempts,
                  upstream_transport_name(r->transport), d.delay_ms);
        admission_arm_timer(t->step, d.delay_ms);
        return;
    }
    llm_status st = LLM_UNAVAILABLE;
    if (outcome == UPSTREAM_OVERLOAD)
        st = LLM_OVERLOADED;
    else if (outcome == UPSTREAM_NEUTRAL) /* a 4xx: 404 is an unknown model (or path) */
        st = r->status == 404 ? LLM_NOT_FOUND : LLM_REJECTED;
    else if (!ok_reply)
        st = LLM_BAD_REPLY;
    else if (r->transport == UPSTREAM_T_TOTAL_TIMEOUT || ((d.reason == RETRY_NO_DEADLINE || t->op == LLM_OP_META) && left <= 0))
        st = LLM_TIMEOUT;
    llm_call_end(t, st);
}

/* A slot is held: take a breaker permit and send the request. */
static void llm_send(llm_task *t)
{
    llm *l = t->l;
    if (!admission_hold_permit(&t->hold)) {
        /* e.g. HALF_OPEN with its trial permits taken: another host, or fail at once */
        t->denied |= 1u << t->host;
        llm_try(t);
        return;
    }
    t->attempts++;
    t->http_status = 0;
    t->text_sent = false;
    strbuf_reset(&t->reply);
    if (t->op == LLM_OP_CHAT) {
        if (t->stream_on) {
            ollama_stream_cleanup(&t->ost);
            openai_stream_cleanup(&t->oast);
        }
        ollama_stream_init(&t->ost, llm_on_text_piece, t);
        openai_stream_init(&t->oast, llm_on_text_piece, t);
        t->stream_on = true;
    }
    double left = t->deadline_ms - l->clock.now_ms(l->clock.arg);
    double op_limit = t->op == LLM_OP_EMBED  ? l->cfg.embed_timeout_ms
                      : t->op == LLM_OP_CHAT ? l->cfg.generate_timeout_ms
                                             : LLM_META_TIMEOUT_MS;
    double total = left < op_limit ? left : op_limit;
    char url[1200];
    snprintf(url, sizeof url, "%s%s", l->urls[t->host], t->path);
    char auth[600] = "";
    if (l->api_key)
        snprintf(auth, sizeof auth, "Bearer %s", l->api_key);
    upstream_request req = {.url = url,
                            .body = t->body,
                            .body_len = t->body_len,
                            .content_type = "application/json",
                            .authorization = l->api_key ? auth : NULL,
                            .connect_timeout_ms = (long)l->cfg.connect_timeout_ms,
                            .ttfb_timeout_ms = (long)(l->cfg.ttfb_timeout_ms < total ? l->cfg.ttfb_timeout_ms : total),
                            .idle_timeout_ms = (long)l->cfg.idle_timeout_ms,
                            .total_timeout_ms = (long)(total > 1 ? total : 1),
                            .max_response_bytes = t->reply_cap,
                            .on_headers = llm_on_headers,
                            .on_data = llm_on_data,
                            .on_done = llm_on_call_done,
                            .arg = t};
    t->hold.call = upstream_start(l->client, &req);
    if (!t->hold.call) {
        snprintf(t->message, sizeof t->message, "cannot start an HTTP call (out of memory)");
        admission_hold_abandon(&t->hold); /* the permit and the slot, as NEUTRAL */
        llm_call_end(t, LLM_OVERLOADED);
    }
}

static void llm_on_admission(bulkhead_waiter *w, bulkhead_status status, void *arg)
{
    (void)w;
    llm_task *t = arg;
    if (admission_hold_admitted(&t->hold, status)) {
        llm_send(t);
        return;
    }
    snprintf(t->message, sizeof t->message, "%s: %s waiting for a slot", t->l->shown[t->host], bulkhead_status_name(status));
    llm_call_end(t, status == BULKHEAD_TIMED_OUT ? LLM_TIMEOUT : LLM_OVERLOADED);
}

/* One attempt: choose a host, get a bulkhead slot (or queue for one), then send. */
static void llm_try(llm_task *t)
{
    llm *l = t->l;
    t->message[0] = '\0';
    t->host = llm_pick_host(t);
    if (t->host < 0 || llm_breaker_for(l, t->host, t->op, t->model, &t->hold.br) != RAGD_OK ||
        bulkhead_set_get(admission_bulkheads(l->admission), l->shown[t->host], llm_bulkhead_model(t), &t->hold.bh) !=
            RAGD_OK) {
        snprintf(t->message, sizeof t->message, "no backend available: every circuit breaker is open");
        llm_call_end(t, LLM_UNAVAILABLE);
        return;
    }
    bulkhead_status st = admission_hold_acquire(l->admission, &t->hold, t->deadline_ms, llm_on_admission, t);
    if (st == BULKHEAD_ADMITTED || st == BULKHEAD_QUEUED)
        llm_unreserve(&t->reservation); /* the task has its own place now */
    switch (st) {
    case BULKHEAD_ADMITTED:
        llm_send(t);
        return;
    case BULKHEAD_QUEUED:
        return;
    default:
        snprintf(t->message, sizeof t->message, "%s: %s", l->shown[t->host], bulkhead_status_name(st));
        llm_call_end(t, st == BULKHEAD_TIMED_OUT ? LLM_TIMEOUT : LLM_OVERLOADED);
        return;
    }
}

/* ---- the end of one call ---- */

/* A call is over (its attempt abandoned): a chat task finishes with its status; an embed
 * batch either fails its job (which ends the other batches) or counts towards it. */
static void llm_call_end(llm_task *t, llm_status st)
{
    llm_attempt_abandon(t);
    llm_task *job = t->parent;
    if (!job) {
        llm_finish(t, st, t->message);
        return;
    }
    if (job->finishing)
        return;
    if (st != LLM_OK)
        llm_finish(job, st, t->message);
    else if (--job->pending == 0)
        llm_finish(job, LLM_OK, "");
    else if (job->started < job->n_children) /* the window moves on by one batch */
        admission_arm_timer(job->children[job->started++]->step, 0);
}

/* ---- public ---- */

static llm_task *llm_task_new(llm *l, llm_task_kind kind, double deadline_ms)
{
    llm_task *t = calloc(1, sizeof *t);
    if (!t)
        return NULL;
    t->l = l;
    t->kind = kind;
    t->deadline_ms = deadline_ms;
    t->last_host = -1;
    t->host = -1;
    queue_node_init(&t->link);
    t->step = evtimer_new(l->base, llm_on_step, t);
    if (!t->step) {
        free(t);
        return NULL;
    }
    return t;
}

/* A call task to path (static) with body (taken over; NULL = a GET); reply_cap bounds its
 * reply body (and the reply buffer). NULL on no memory. */
static llm_task *llm_call_new(llm *l, llm_op op, const char *model, const char *path, char *body, double deadline_ms,
                              size_t reply_cap)
{
    llm_task *t = llm_task_new(l, TASK_CALL, deadline_ms);
    if (!t) {
        free(body);
        return NULL;
    }
    t->op = op;
    t->path = path;
    t->model = strdup(model);
    t->body = body;
    t->body_len = body ? strlen(body) : 0;
    t->stats.prompt_tokens = t->stats.completion_tokens = -1;
    t->stats.load_ns = t->stats.prompt_eval_ns = t->stats.eval_ns = -1;
    t->reply_cap = reply_cap < l->cfg.max_response_bytes ? reply_cap : l->cfg.max_response_bytes;
    strbuf_init(&t->reply, t->reply_cap);
    if (!t->model) {
        llm_task_free(t);
        return NULL;
    }
    return t;
}

static void llm_link(llm_task *t)
{
    queue_insert_tail(&t->l->tasks, &t->link);
    t->l->n_tasks++;
}

llm_task *llm_embed(llm *l, const char *model, const char *const *texts, const size_t *lens, size_t n,
                    double deadline_ms, llm_embed_cb cb, void *arg)
{
    size_t batch = l->cfg.embed_batch ? l->cfg.embed_batch : 32;
    if (n == 0 || l->closed)
        return NULL;
    llm_task *job = llm_task_new(l, TASK_EMBED_JOB, deadline_ms);
    if (!job)
        return NULL;
    job->n_texts = n;
    job->embed_cb = cb;
    job->embed_arg = arg;
    job->n_children = (n + batch - 1) / batch;
    job->children = calloc(job->n_children ? job->n_children : 1, sizeof *job->children);
    if (!job->children) {
        llm_task_free(job);
        return NULL;
    }
    for (size_t i = 0; i < job->n_children; i++) {
        size_t first = i * batch, count = n - first < batch ? n - first : batch;
        char *body = l->cfg.kind == LLM_KIND_OLLAMA ? ollama_embed_body(model, texts + first, lens + first, count)
                                                     : openai_embed_body(model, texts + first, lens + first, count);
        llm_task *t = body ? llm_call_new(l, LLM_OP_EMBED, model,
                                          l->cfg.kind == LLM_KIND_OLLAMA ? "/api/embed" : "/v1/embeddings", body,
                                          deadline_ms, count * LLM_EMBED_BYTES_PER_TEXT + LLM_EMBED_REPLY_SLACK)
                           : NULL;
        if (!t) {
            llm_task_free(job);
            return NULL;
        }
        t->parent = job;
        t->first = first;
        t->count = count;
        job->children[i] = t;
    }
    for (size_t i = 0; i < job->n_children; i++)
        retry_budget_note_request(l->budget);
    job->pending = job->n_children;
    llm_link(job);
    /* A window of batches starts on the next loop turn (so no callback runs inside this
     * call); each one that succeeds starts the next. The window is every host's slots: a
     * document of any size keeps the bulkheads busy without ever filling their queues by
     * itself, so its own batches are never shed. */
    size_t window = l->n_urls * (size_t)l->cfg.bulkhead.max_concurrent;
    for (job->started = 0; job->started < job->n_children && job->started < window; job->started++)
        admission_arm_timer(job->children[job->started]->step, 0);
    return job;
}

llm_task *llm_chat_messages(llm *l, const char *model, const llm_chat_request *rq, double deadline_ms,
                            const llm_chat_handlers *h, llm_reservation *reserved)
{
    if (l->closed)
        return NULL;
    bool ollama = l->cfg.kind == LLM_KIND_OLLAMA;
    char *body = ollama ? ollama_chat_body(model, rq->messages, rq->options, rq->format, rq->keep_alive, true)
                        : openai_chat_body(model, rq->messages, rq->options, rq->format, true);
    llm_task *t = body ? llm_call_new(l, LLM_OP_CHAT, model, ollama ? "/api/chat" : "/v1/chat/completions", body,
                                      deadline_ms, SIZE_MAX)
                       : NULL;
    if (!t)
        return NULL;
    t->chat = *h;
    if (reserved && reserved->held) { /* taken over: the task gives it back */
        t->reservation = *reserved;
        reserved->held = false;
    }
    llm_link(t);
    if (t->body_len > LLM_CHAT_BODY_CAP) { /* refused here, delivered on a later turn */
        llm_finish(t, LLM_REJECTED, "the chat request is larger than 32 MiB");
        return t;
    }
    retry_budget_note_request(l->budget);
    admission_arm_timer(t->step, 0);
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

/* ---- model metadata ---- */

llm_task *llm_meta(llm *l, llm_meta_kind what, const char *model, double deadline_ms, llm_meta_cb cb, void *arg)
{
    if (l->closed)
        return NULL;
    bool ollama = l->cfg.kind == LLM_KIND_OLLAMA;
    static const char *const ollama_paths[] = {"/api/tags", "/api/show", "/api/ps", "/api/version"};
    const char *name = what == LLM_META_SHOW && model ? model : "";
    char *body = NULL;
    if (ollama && what == LLM_META_SHOW) {
        body = wire_dump(json_pack("{s:s}", "model", name));
        if (!body)
            return NULL;
    }
    llm_task *t = llm_call_new(l, LLM_OP_META, name, ollama ? ollama_paths[what] : "/v1/models", body, deadline_ms,
                               LLM_META_REPLY_CAP);
    if (!t)
        return NULL;
    t->meta_kind = what;
    t->meta_cb = cb;
    t->meta_arg = arg;
    llm_link(t);
    /* What an OpenAI-compatible backend cannot be asked is answered here (on a later turn). */
    if (!ollama && what == LLM_META_RUNNING) {
        t->meta_reply = json_array();
        llm_finish(t, t->meta_reply ? LLM_OK : LLM_OVERLOADED, t->meta_reply ? "" : "out of memory");
    } else if (!ollama && what == LLM_META_VERSION) {
        llm_finish(t, LLM_REJECTED, "an OpenAI-compatible backend has no version endpoint");
    } else {
        admission_arm_timer(t->step, 0);
    }
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

static long *llm_reserved_slot(llm *l, const char *model, bool create)
{
    for (size_t i = 0; i < LLM_RESERVE_MODELS; i++)
        if (l->reserved[i].model[0] && strcmp(l->reserved[i].model, model) == 0)
            return &l->reserved[i].count;
    for (size_t i = 0; create && i < LLM_RESERVE_MODELS; i++) {
        if (!l->reserved[i].model[0]) {
            snprintf(l->reserved[i].model, sizeof l->reserved[i].model, "%s", model);
            return &l->reserved[i].count;
        }
    }
    return NULL;
}

llm_status llm_reserve(llm *l, const char *model, llm_reservation *r)
{
    memset(r, 0, sizeof *r);
    if (strlen(model) >= sizeof r->model)
        return LLM_OK; /* not a model any request may name: nothing to count */
    long capacity = (long)l->n_urls * (long)(l->cfg.bulkhead.max_concurrent + l->cfg.bulkhead.max_queue);
    long *slot = llm_reserved_slot(l, model, true);
    long used = slot ? *slot : 0;
    for (size_t i = 0; i < bulkhead_set_count(admission_bulkheads(l->admission)); i++) {
        bulkhead *b = bulkhead_set_at(admission_bulkheads(l->admission), i);
        if (strcmp(bulkhead_model(b), model) == 0) {
            bulkhead_stats st = bulkhead_get_stats(b);
            used += st.in_flight + st.queued;
        }
    }
    if (used >= capacity)
        return LLM_OVERLOADED;
    if (slot) {
        (*slot)++;
        r->l = l;
        snprintf(r->model, sizeof r->model, "%s", model);
        r->held = true;
    }
    return LLM_OK;
}

void llm_unreserve(llm_reservation *r)
{
    if (!r || !r->held)
        return;
    long *slot = llm_reserved_slot(r->l, r->model, false);
    if (slot && *slot > 0)
        (*slot)--;
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
    l->clock = clock;
    l->rnd = rnd;
    l->urls = calloc(cfg->n_urls, sizeof *l->urls);
    l->shown = calloc(cfg->n_urls, sizeof *l->shown);
    l->api_key = cfg->api_key ? strdup(cfg->api_key) : NULL;
    l->cfg.urls = NULL;
    l->cfg.api_key = NULL;
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
        e = admission_new(base, &cfg->bulkhead, 1024, clock, rnd, &l->admission, err, errlen);
    if (!e)
        e = retry_budget_new(&cfg->budget, clock, &l->budget, err, errlen);
    if (!e && cfg->probe_interval_ms > 0) {
        char auth[600] = "";
        if (l->api_key)
            snprintf(auth, sizeof auth, "Bearer %s", l->api_key);
        l->probe = probe_new(base, client, (const char *const *)l->urls, l->n_urls,
                             cfg->kind == LLM_KIND_OLLAMA ? "/api/version" : "/v1/models", l->api_key ? auth : NULL,
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
