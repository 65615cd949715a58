/* The query engine: the pipeline of a query across the loop and the workers. See engine.h
 * and docs/internals/engine.md.
 *
 * A query's steps, and the thread each runs on:
 *   start (loop)        generator place reserved (or shed at once), then →
 *   lookup (worker)     the collection; an upstream-embedded one → embed, else → retrieve
 *   embed (loop)        the query's embedding by the collection's backend → retrieve
 *   retrieve (worker)   builtin embedding, retrieval and fusion → rerank when asked, else
 *                       compose (on the same worker), or done (/api/retrieve)
 *   rerank (loop)       the reranker's scores reorder the candidates → compose, or done
 *   compose (worker)    the extractive answer, the prompt → generate, or done
 *   generate (loop)     the LLM's answer, token by token → done
 *   done (loop)         on_done, then the query is freed
 * Every hand-over goes through the worker pool or the loop queue, so one thread at a time
 * touches a query, and no step runs inside the call of another module. */
#include "rag/engine.h"

#include <math.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"
#include "obs/metrics.h"
#include "rag/answer_cache.h"
#include "rag/budget.h"
#include "rag/cache.h"
#include "rag/citations.h"
#include "rag/embed_builtin.h"
#include "rag/extractive.h"
#include "rag/fence.h"
#include "rag/history.h"
#include "rag/passages.h"
#include "rag/prompt.h"
#include "rag/rerank.h"
#include "upstream/llm.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/loopq.h"
#include "util/strbuf.h"
#include "util/utf8.h"
#include "util/workpool.h"

#define RAG_ANSWER_CAP ((size_t)256 * 1024) /* the LLM's answer: past it the stream stops */
/* The latest user turn is screened with the question, its first this many bytes (the
 * question's own cap on /api/query). */
#define RAG_SCREEN_TURN_BYTES ((size_t)8192)

struct rag_engine {
    rag_engine_config cfg;
};

struct rag_query_op {
    rag_engine *e;
    rag_request req;
    rag_sink sink;
    void *ctx;
    loopq_item item; /* one hand-over to the loop at a time */
    double t_start;
    atomic_bool cancelled; /* rag_query_cancel: set on the loop, read by worker steps */
    bool delivering;       /* on_done is running */

    store_collection coll;
    bool have_coll;
    rag_method method;
    /* What retrieval, the reranker and the extractive answer search with: the question,
     * or (history) the question prefixed by the latest user turns (rag/history.h) */
    const char *rtext;
    size_t rtext_len;
    char *rtext_owned;
    llm_reservation reservation;
    bool llm_in_use; /* the generator was in use when the query arrived (loop state) */

    /* the cache stage */
    bool cache_on;       /* this query may be answered from, and stored in, the cache */
    uint64_t ticket;     /* taken before the collection is read (cache_store refuses stale ones) */
    char *params;        /* the key's canonical parameters */
    size_t params_len;
    bool cached;         /* answered from the cache */
    char *cached_answer; /* the cached strings, owned */
    char *cached_provider;

    llm_task *embed_task;
    float *vector;           /* the query's embedding (builtin or upstream) — of rtext — or NULL */
    float *qvector;          /* with history: the question alone's embedding, or NULL */
    char embed_failure[460]; /* the upstream embedder failed: keyword only, degraded */

    rag_result res;
    bool have_res;

    /* the rerank stage */
    rerank_task *rerank_task;
    bool reranked;
    char rerank_skipped[400]; /* asked for and not done: why */
    bool rerank_failed;       /* the reranker was asked and failed (not cached) */

    char *fallback; /* the extractive answer */
    char *user;     /* the prompt */
    char *system;   /* the request's system prompt (with its canary) */
    fence_keys keys;
    fence_guard guard;   /* the output guard of this request's canary and system prompt */
    bool have_guard;
    size_t released;     /* bytes of text given to on_token (the rest is held back) */
    fence_leak leak;     /* the answer leaked: it is withheld */
    rag_injection inj;
    const char *stream_error_code;
    char model[128];
    const char *unavailable; /* the provider asked for is not configured */

    llm_task *gen_task;
    strbuf text; /* the LLM's answer so far */
    bool tokens_sent;

    /* the prompt's budget and the answer's citations (docs/internals/passages.md) */
    rag_prompt_fit fit;
    bool have_fit;
    char *checked;   /* the LLM's answer with its citations checked (rag_op_checked) */
    json_t *options; /* the request's options with num_ctx added (rag_op_options), or NULL: the request's */
    int cited[128];  /* the sources the answer cites */
    size_t n_cited;

    /* the outcome */
    rag_status status;
    char message[512];
    const char *provider;
    const char *answer;
    char degraded[1100];
    char stream_error[600];
    rag_timings t;
};

/* ---- the engine ---- */

rag_engine *rag_engine_new(const rag_engine_config *cfg)
{
    rag_engine *e = calloc(1, sizeof *e);
    if (e) {
        e->cfg = *cfg;
        if (!e->cfg.ingest_pool) /* one pool for everything (tests, tools) */
            e->cfg.ingest_pool = e->cfg.pool;
    }
    return e;
}

void rag_engine_free(rag_engine *e) { free(e); }

const rag_engine_config *rag_engine_cfg(const rag_engine *e) { return &e->cfg; }

bool rag_engine_llm_in_use(const rag_engine *e, const llm *l)
{
    return l != NULL && (e->cfg.llm_requested || llm_ever_reached(l));
}

float rag_engine_chunk_threshold(const rag_engine_config *cfg)
{
    return cfg->chunk_threshold > 0 ? (float)cfg->chunk_threshold : guard_quarantine_threshold();
}

const char *rag_status_name(rag_status s)
{
    switch (s) {
    case RAG_OK: return "ok";
    case RAG_E_NOT_FOUND: return "not_found";
    case RAG_E_MISMATCH: return "mismatch";
    case RAG_E_INVALID: return "invalid";
    case RAG_E_OVERLOADED: return "overloaded";
    case RAG_E_NOT_READY: return "not_ready";
    case RAG_E_CANCELLED: return "cancelled";
    case RAG_E_UPSTREAM: return "upstream_unavailable";
    case RAG_E_STORE: return "store";
    case RAG_E_INJECTION: return "prompt_injection";
    case RAG_E_INTERNAL: break;
    }
    return "internal";
}

void rag_request_cleanup(rag_request *r)
{
    if (!r)
        return;
    free(r->values);
    free(r->history);
    json_decref(r->hold);
    memset(r, 0, sizeof *r);
}

/* ---- the end of a query ---- */

static void rag_op_free(rag_query_op *q)
{
    free(q->params);
    free(q->rtext_owned);
    free(q->cached_answer);
    free(q->cached_provider);
    llm_unreserve(&q->reservation);
    rag_request_cleanup(&q->req);
    free(q->vector);
    free(q->qvector);
    if (q->have_res)
        rag_result_cleanup(&q->res);
    free(q->fallback);
    free(q->user);
    free(q->system);
    free(q->checked);
    json_decref(q->options);
    if (q->have_guard)
        fence_guard_cleanup(&q->guard);
    strbuf_cleanup(&q->text);
    free(q);
}

static void rag_op_finish(rag_query_op *q, rag_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool rag_op_rerank_wanted(rag_query_op *q);

/* The cache key of the query (its collection must be known). */
static cache_key rag_op_key(const rag_query_op *q)
{
    return (cache_key){.coll_id = q->coll.id, .version = q->coll.version, .params = q->params,
                       .params_len = q->params_len};
}

/* Stores a finished, whole, not degraded answer (or passage list) in the cache. A failure
 * only means it is not cached. */
static void rag_op_cache_store(rag_query_op *q)
{
    if (!q->cache_on || q->cached || q->status != RAG_OK || !q->have_res || q->degraded[0] || q->stream_error[0] ||
        q->rerank_failed || /* a reranker that failed once must not fix the fused order for the TTL */
        (q->req.generate && !q->answer) || q->inj.output_withheld)
        return;
    size_t len = 0;
    char *data = rag_cache_encode(&q->res, q->method, q->answer, q->provider,
                                  q->provider && strcmp(q->provider, "extractive") != 0 ? q->model : NULL, &len);
    if (!data)
        return;
    cache_key key = rag_op_key(q);
    cache_query cq = {.text = q->req.text, .text_len = q->req.len, .embedding = q->vector,
                      .dim = q->vector ? (size_t)q->coll.dim : 0};
    cache_store(q->e->cfg.cache, q->ticket, &key, &cq, data, len, NULL, 0);
    free(data);
}

/* The cache stage: answers the query from the cache when an answer of the same question
 * (exactly, or by its embedding: with_vector) was stored under the same key. Returns true
 * when it did (the query is finished). count_miss: a miss counts in the statistics (the
 * exact lookup before the embedding does not, the one after it does). */
static bool rag_op_from_cache(rag_query_op *q, bool with_vector, bool count_miss)
{
    if (!q->cache_on)
        return false;
    cache_key key = rag_op_key(q);
    cache_query cq = {.text = q->req.text, .text_len = q->req.len, .embedding = with_vector ? q->vector : NULL,
                      .dim = with_vector && q->vector ? (size_t)q->coll.dim : 0};
    cache_hit hit;
    if (cache_lookup(q->e->cfg.cache, &key, &cq, count_miss ? 0 : CACHE_LOOKUP_NO_MISS_COUNT, &hit) != RAGD_OK)
        return false;
    size_t len = 0;
    const char *data = cache_value_data(hit.value, &len);
    char *model = NULL;
    rag_method method = q->method;
    bool ok = rag_cache_decode(data, len, &q->res, &method, &q->cached_answer, &q->cached_provider, &model);
    cache_value_release(hit.value);
    if (!ok) /* out of memory reading it back: compute the answer instead */
        return false;
    q->have_res = true;
    q->cached = true;
    for (size_t i = 0; i < q->res.n; i++) /* reranked passages come back with their scores */
        q->reranked = q->reranked || q->res.hits[i].has_rerank_score;
    if (q->req.rerank && !q->reranked)
        (void)rag_op_rerank_wanted(q); /* why not, as when it was computed (a failure is never cached) */
    q->method = method;
    q->answer = q->cached_answer;
    q->provider = q->cached_provider;
    if (model)
        snprintf(q->model, sizeof q->model, "%s", model);
    free(model);
    rag_op_finish(q, RAG_OK, NULL);
    return true;
}

/* The generator label of ragd_queries_total for an answered query: "cache", "none" (a
 * retrieval: no answer), "llm" or "extractive". */
static const char *rag_op_generator_label(const rag_query_op *q)
{
    if (q->cached)
        return "cache";
    if (!q->answer)
        return "none";
    if (q->provider && strcmp(q->provider, "extractive") != 0)
        return "llm";
    return "extractive";
}

/* The done step (loop): on_done, then the query goes. */
static void rag_op_deliver(void *arg)
{
    rag_query_op *q = arg;
    rag_op_cache_store(q);
    q->delivering = true;
    if (q->answer && q->have_res)
        q->n_cited = rag_citations_list(q->answer, strlen(q->answer), q->res.n, q->cited,
                                        sizeof q->cited / sizeof *q->cited);
    q->t.total = clock_now_ms() - q->t_start;
    if (q->status == RAG_OK)
        metrics_count_query(rag_method_name(q->method), rag_op_generator_label(q));
    rag_outcome o = {
        .status = q->status,
        .message = q->message,
        .coll = q->have_coll ? &q->coll : NULL,
        .method = q->method,
        .res = q->have_res ? &q->res : NULL,
        .answer = q->answer,
        .provider = q->provider,
        .model = q->provider && strcmp(q->provider, "extractive") != 0 ? q->model : NULL,
        .degraded_reason = q->degraded[0] ? q->degraded : NULL,
        .stream_error = q->stream_error[0] ? q->stream_error : NULL,
        .stream_error_code = q->stream_error_code ? q->stream_error_code : "upstream_unavailable",
        .injection = &q->inj,
        .cached = q->cached,
        .reranked = q->reranked,
        .rerank_skipped_reason = q->req.rerank && !q->reranked && q->rerank_skipped[0] ? q->rerank_skipped : NULL,
        .timings = q->t,
        .cited = q->cited,
        .n_cited = q->n_cited,
        .prompt = q->have_fit && !q->cached ? &q->fit : NULL,
    };
    q->sink.on_done(&o, q->ctx);
    rag_op_free(q);
}

/* Ends the query with status (and a message when it failed): on_done comes from the loop
 * on its next turn. Any thread; once per query. */
static void rag_op_finish(rag_query_op *q, rag_status st, const char *fmt, ...)
{
    q->status = st;
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(q->message, sizeof q->message, fmt, ap);
        va_end(ap);
        utf8_sanitize(q->message);
    }
    loopq_post(q->e->cfg.lq, &q->item, rag_op_deliver, q);
}

/* The degraded reason: the embedder's failure (keyword retrieval only), then `failure`
 * (the generator's), either may be absent. */
static void rag_op_degrade(rag_query_op *q, const char *failure)
{
    snprintf(q->degraded, sizeof q->degraded, "%s%s%s%s%s", q->embed_failure,
             q->embed_failure[0] ? "; keyword retrieval only" : "", q->embed_failure[0] && failure ? "; " : "",
             failure ? failure : "", failure ? "; answered extractively" : "");
    utf8_sanitize(q->degraded);
}

/* The extractive answer is the answer. */
static void rag_op_answer_extractive(rag_query_op *q, const char *failure)
{
    q->provider = "extractive";
    q->answer = q->fallback;
    if (failure || q->embed_failure[0])
        rag_op_degrade(q, failure);
    rag_op_finish(q, RAG_OK, NULL);
}

/* Hands the next step to a worker; when the pool refuses, the query ends. */
static void rag_op_to_worker(rag_query_op *q, void (*fn)(void *arg), void (*dropped)(void *arg))
{
    ragd_err rc = workpool_submit(q->e->cfg.pool, fn, dropped, q);
    if (rc == RAGD_OK)
        return;
    if (rc == RAGD_ECLOSED)
        rag_op_finish(q, RAG_E_NOT_READY, "server is shutting down");
    else
        rag_op_finish(q, RAG_E_OVERLOADED, "server busy: %s",
                      rc == RAGD_EBUSY ? "the queue of the query threads (RAGD_WORKER_QUEUE) is full, retry shortly"
                                       : "out of memory");
}

/* A queued worker step dropped at shutdown. */
static void rag_op_dropped(void *arg)
{
    rag_op_finish(arg, RAG_E_NOT_READY, "server shut down before this request was processed");
}

/* ---- generate (loop) ---- */

/* The sources an LLM's citations may point at: the passages its prompt held. */
static size_t rag_op_sources_given(const rag_query_op *q) { return q->have_fit ? q->fit.passages : q->res.n; }

/* Gives on_token the answer up to byte `upto` (a character boundary, and one where
 * rag_citations_safe_end may cut, or the end) not given yet, its citations checked. */
static int rag_op_release(rag_query_op *q, size_t upto)
{
    if (upto <= q->released)
        return 0;
    size_t from = q->released;
    q->released = upto;
    strbuf piece;
    strbuf_init(&piece, RAG_ANSWER_CAP);
    if (rag_citations_filter(q->text.data + from, upto - from, rag_op_sources_given(q), &piece) != RAGD_OK) {
        strbuf_cleanup(&piece);
        return 1; /* out of memory: stop, the answer so far is the answer */
    }
    if (!q->tokens_sent && (!piece.data || piece.data[strspn(piece.data, " \t\r\n")] == '\0')) {
        /* nothing but blanks so far (e.g. only bogus markers): held, so that an answer that
         * stays so can still be replaced by the extractive one; filtered again with what
         * follows (the filter is local, docs/internals/passages.md) */
        q->released = from;
        strbuf_cleanup(&piece);
        return 0;
    }
    q->tokens_sent = true;
    int stop = q->sink.on_token(piece.data, piece.len, q->ctx);
    strbuf_cleanup(&piece);
    return stop;
}

/* The LLM's answer with its citations checked: the same text the stream gave out. Falls
 * back to the answer as it came when out of memory. */
static const char *rag_op_checked(rag_query_op *q)
{
    strbuf sb;
    strbuf_init(&sb, RAG_ANSWER_CAP);
    if (rag_citations_filter(q->text.data, q->text.len, rag_op_sources_given(q), &sb) != RAGD_OK ||
        strbuf_append(&sb, "", 0) != RAGD_OK) {
        strbuf_cleanup(&sb);
        return q->text.data;
    }
    free(q->checked);
    q->checked = strbuf_detach(&sb, NULL);
    return q->checked ? q->checked : q->text.data;
}

static int rag_on_text(const char *p, size_t n, void *arg)
{
    rag_query_op *q = arg;
    size_t before = q->text.len;
    if (q->leak)
        return 1; /* already withheld: nothing more is taken */
    if (atomic_load(&q->cancelled) || strbuf_append(&q->text, p, n) != RAGD_OK)
        return 1; /* cancelled, or past the cap: stop, keep what came */
    if (!q->sink.on_token)
        return 0; /* nothing goes out before the end: the guard judges the whole answer there */
    /* The output guard: a leak that ends in this piece starts less than the hold-back
     * window before it, and nothing of that window was released yet. */
    size_t from = before > FENCE_HOLDBACK_BYTES ? before - FENCE_HOLDBACK_BYTES : 0;
    q->leak = fence_guard_check(&q->guard, q->text.data + from, q->text.len - from);
    if (q->leak)
        return 1; /* stop generating; rag_on_generated withholds the answer */
    if (q->text.len <= FENCE_HOLDBACK_BYTES)
        return 0;
    size_t upto = q->text.len - FENCE_HOLDBACK_BYTES;
    while (upto > q->released && ((unsigned char)q->text.data[upto] & 0xc0) == 0x80)
        upto--; /* never split a character */
    upto = rag_citations_safe_end(q->text.data, q->released, upto); /* nor a citation marker */
    return rag_op_release(q, upto);
}

/* The answer leaked (q->leak): withheld. Before anything went out the extractive answer
 * replaces it; after, the stream ends with an error (prompt_injection). */
static void rag_op_withhold(rag_query_op *q)
{
    const char *reason = fence_leak_name(q->leak);
    q->inj.output_withheld = true;
    q->inj.withheld_reason = reason;
    metrics_count_injection("output", "withheld");
    log_warn("request answer withheld: the generator's answer leaked the %s",
             q->leak == FENCE_LEAK_CANARY ? "canary" : "system prompt");
    if (q->tokens_sent) {
        snprintf(q->stream_error, sizeof q->stream_error,
                 "the answer was withheld: it revealed the %s (prompt injection)",
                 q->leak == FENCE_LEAK_CANARY ? "request's canary" : "system prompt");
        q->stream_error_code = "prompt_injection";
        q->provider = q->e->cfg.generator_name;
        q->answer = "";
        rag_op_finish(q, RAG_OK, NULL);
        return;
    }
    q->provider = "extractive";
    q->answer = q->fallback;
    rag_op_finish(q, RAG_OK, NULL);
}

static void rag_on_generated(llm_status st, const char *message, const llm_chat_stats *stats, void *arg)
{
    (void)stats;
    rag_query_op *q = arg;
    rag_engine *e = q->e;
    q->gen_task = NULL;
    q->t.generate = clock_now_ms() - q->t.generate;
    if (st == LLM_CANCELLED && atomic_load(&q->cancelled)) {
        rag_op_finish(q, RAG_E_CANCELLED, "cancelled");
        return;
    }
    if (!q->leak && q->text.len > 0)
        q->leak = fence_guard_check(&q->guard, q->text.data, q->text.len);
    if (q->leak) {
        rag_op_withhold(q);
        return;
    }
    if (q->released && q->text.len > q->released) /* the held-back end, judged clean */
        rag_op_release(q, q->text.len);
    if (st == LLM_OK && q->text.len > 0) {
        const char *checked = rag_op_checked(q);
        /* an answer that held only citations of sources it was not given is, checked, no
         * answer: as an empty one, the extractive answer instead (unless some went out) */
        if (q->tokens_sent || checked[strspn(checked, " \t\r\n")] != '\0' ||
            q->text.data[strspn(q->text.data, " \t\r\n")] == '\0') {
            q->provider = e->cfg.generator_name;
            q->answer = checked;
            if (q->embed_failure[0])
                rag_op_degrade(q, NULL);
            rag_op_finish(q, RAG_OK, NULL);
            return;
        }
        message = "it cited only sources it was not given";
    }
    if (st == LLM_OVERLOADED && !q->tokens_sent) {
        /* Backpressure, not an outage: shed the query (503 + Retry-After) rather than
         * answer degraded, so clients slow down instead of piling up. */
        rag_op_finish(q, RAG_E_OVERLOADED, "generator %s is overloaded: %s", e->cfg.generator_name,
                      message && *message ? message : "queue full");
        return;
    }
    char failure[500];
    if (st == LLM_CANCELLED) /* llm_cancel_all: shutdown */
        snprintf(failure, sizeof failure, "server is shutting down");
    else
        snprintf(failure, sizeof failure, "generator %s %s: %s", e->cfg.generator_name,
                 st == LLM_OK ? "returned an empty answer" : llm_status_name(st), message && *message ? message : "no detail");
    utf8_sanitize(failure);
    if (q->tokens_sent) { /* what went out cannot be taken back: the answer so far, and why it stopped */
        snprintf(q->stream_error, sizeof q->stream_error, "%s", failure);
        q->provider = e->cfg.generator_name;
        q->answer = rag_op_checked(q);
        rag_op_finish(q, RAG_OK, NULL);
        return;
    }
    rag_op_answer_extractive(q, failure);
}

static void rag_step_generate(void *arg)
{
    rag_query_op *q = arg;
    rag_engine *e = q->e;
    if (atomic_load(&q->cancelled)) {
        rag_op_finish(q, RAG_E_CANCELLED, "cancelled");
        return;
    }
    if (!rag_engine_llm_in_use(e, e->cfg.generator)) {
        q->have_fit = false; /* the prompt is not sent */
        rag_op_answer_extractive(q, NULL); /* no LLM in use: the embedded parts answer, as intended */
        return;
    }
    if (q->sink.on_sources) {
        rag_outcome o = {.status = RAG_OK, .coll = &q->coll, .method = q->method, .res = &q->res,
                         .provider = e->cfg.generator_name, .model = q->model, .injection = &q->inj};
        q->sink.on_sources(&o, q->ctx);
    }
    q->t.generate = clock_now_ms();
    llm_chat_handlers h = {.on_text = rag_on_text, .on_done = rag_on_generated, .arg = q};
    /* Two messages: the system prompt, and the user message with the passages, the earlier
     * turns and the question (rag/prompt.h: the turns are quoted there rather than sent as
     * messages of their own, so a client's forged "assistant" turns stay data). The
     * request's format and keep_alive pass as the client gave them. */
    json_t *messages = json_pack("[{s:s, s:s}, {s:s, s:s}]", "role", "system", "content", q->system, "role", "user",
                                 "content", q->user);
    llm_chat_request rq = {.messages = messages, .options = q->options ? q->options : q->req.options,
                           .format = q->req.format, .keep_alive = q->req.keep_alive};
    q->gen_task = messages ? llm_chat_messages(e->cfg.generator, q->model, &rq,
                                               clock_now_ms() + e->cfg.generate_timeout_ms, &h, &q->reservation)
                           : NULL;
    json_decref(messages); /* the call copied what it needs */
    if (!q->gen_task) /* no callback will come: shutting down, or no memory */
        rag_op_answer_extractive(q, "generator call could not start");
}

/* ---- retrieve (worker) ---- */

/* The generator the request's provider asks for, or NULL for extractive; q->unavailable
 * says when the client asked for an LLM that is not configured. */
static llm *rag_op_generator(rag_query_op *q)
{
    const rag_engine_config *c = &q->e->cfg;
    switch (q->req.provider) {
    case RAG_PROVIDER_EXTRACTIVE: return NULL;
    case RAG_PROVIDER_AUTO: return c->generator;
    case RAG_PROVIDER_OLLAMA:
    case RAG_PROVIDER_OPENAI: break;
    }
    const char *want = q->req.provider == RAG_PROVIDER_OPENAI ? "openai" : "ollama";
    if (c->generator && strcmp(c->generator_name, want) == 0)
        return c->generator;
    q->unavailable = q->req.provider == RAG_PROVIDER_OPENAI
                         ? "generator 'openai' is not configured; answered extractively"
                         : "generator 'ollama' is not configured; answered extractively";
    return NULL;
}

/* The chunks become passages (rag/passages.h): merged neighbours, trimmed fragments. Out of
 * memory: the chunks stay as they are, each its own passage. */
static void rag_op_passages(rag_query_op *q)
{
    if (rag_passages_merge(&q->res) != RAGD_OK)
        log_debug("passages: out of memory merging chunks; the chunks are the passages");
}

/* Ollama runs a model at the request's options.num_ctx, else at its own default: with
 * RAGD_CONTEXT_TOKENS set and no num_ctx in the request, the request to Ollama says it
 * (q->options, a copy of the request's with num_ctx added), so the model runs at the context
 * the prompt is fitted to instead of cutting the prompt's start silently. */
static ragd_err rag_op_options(rag_query_op *q)
{
    const rag_engine_config *c = &q->e->cfg;
    const json_t *asked = q->req.options;
    if (!c->context_tokens || strcmp(c->generator_name, "ollama") != 0 ||
        (json_is_object(asked) && json_object_get(asked, "num_ctx")))
        return RAGD_OK;
    json_t *o = json_is_object(asked) ? json_deep_copy(asked) : json_object();
    if (!o || json_object_set_new(o, "num_ctx", json_integer((json_int_t)c->context_tokens)) != 0) {
        json_decref(o);
        return RAGD_ENOMEM;
    }
    q->options = o;
    return RAGD_OK;
}

/* The user message, fitted to the model's context (q->system written). RAGD_ETOOBIG: the
 * question alone does not fit (q->fit says by how much). */
static ragd_err rag_op_prompt(rag_query_op *q)
{
    const rag_engine_config *c = &q->e->cfg;
    if (rag_op_options(q) != RAGD_OK)
        return RAGD_ENOMEM;
    q->fit.context = rag_budget_context(c->generator_name, q->model, q->req.options, c->context_tokens);
    q->fit.reserved = rag_budget_reserve(c->generator_name, q->req.options, q->fit.context);
    q->fit.budget = q->fit.context - q->fit.reserved;
    q->have_fit = true;
    return rag_prompt_user_fit(&q->res, q->req.text, q->req.len, q->req.history, q->req.n_history, &q->keys,
                               rag_budget_tokens(q->system, strlen(q->system)), &q->fit, &q->user);
}

/* The extractive answer from the passages (or the "no relevant passages" text). */
static char *rag_op_extractive(const rag_query_op *q)
{
    if (q->res.n == 0) {
        char msg[320];
        if (q->coll.documents == 0) /* say how to fill it: the question was not the problem */
            snprintf(msg, sizeof msg,
                     "No relevant passages were found in collection '%s': it holds no documents yet. Add some "
                     "with: ragd ingest PATH --db %s",
                     q->coll.name, q->coll.name);
        else
            snprintf(msg, sizeof msg, "No relevant passages were found in collection '%s'.", q->coll.name);
        return strdup(msg);
    }
    extract_passage *ps = calloc(q->res.n, sizeof *ps);
    if (!ps)
        return NULL;
    for (size_t i = 0; i < q->res.n; i++) {
        ps[i].text = q->res.hits[i].row.text;
        ps[i].len = strlen(q->res.hits[i].row.text);
    }
    extract_params params = {.max_sentences = 3, .max_chars = 800};
    char *answer = NULL;
    if (extractive_answer(q->rtext, q->rtext_len, ps, q->res.n, &params, &answer) != RAGD_OK)
        answer = NULL;
    free(ps);
    return answer;
}

/* ---- rerank (loop) ---- */

static void rag_step_compose(void *arg);

/* Cuts the candidates back to the k the request asked for (more were retrieved for the
 * reranker). */
static void rag_op_keep_k(rag_query_op *q)
{
    if (q->res.n <= q->req.k)
        return;
    for (size_t i = q->req.k; i < q->res.n; i++)
        store_hit_rows_cleanup(&q->res.hits[i].row, 1);
    q->res.n = q->req.k;
}

/* Whether the retrieved candidates go to the reranker; when the request asked and they do
 * not, rerank_skipped says why. Any thread (reads configuration and the result only). */
static bool rag_op_rerank_wanted(rag_query_op *q)
{
    if (!q->req.rerank)
        return false;
    if (!q->e->cfg.reranker) {
        snprintf(q->rerank_skipped, sizeof q->rerank_skipped, "no reranker is configured (RAGD_RERANKER=off)");
        return false;
    }
    if (rerank_get_kind(q->e->cfg.reranker) == RERANK_KIND_LLM && !q->llm_in_use) {
        snprintf(q->rerank_skipped, sizeof q->rerank_skipped,
                 "the LLM judge's generator is not in use (RAGD_GENERATOR=auto and nothing has answered there yet)");
        return false;
    }
    size_t eligible = 0;
    for (size_t i = 0; i < q->res.n; i++)
        eligible += !q->res.hits[i].row.quarantined; /* quarantined chunks never go to the reranker */
    if (eligible < 2) {
        snprintf(q->rerank_skipped, sizeof q->rerank_skipped, "nothing to rerank: %zu candidate%s", eligible,
                 eligible == 1 ? "" : "s");
        return false;
    }
    return true;
}

/* Reorders the candidates by the reranker's scores: the scored ones are sorted (best
 * first, stable) among the places scored ones held; unscored ones (no number from the
 * judge, quarantined) keep their fused places. scores[i] belongs to hits[i]. */
static void rag_op_reorder(rag_query_op *q, const float *scores)
{
    size_t n = q->res.n;
    size_t *order = malloc(n * sizeof *order);
    rag_hit *was = malloc(n * sizeof *was);
    if (!order || !was) { /* the fused order stays */
        free(order);
        free(was);
        return;
    }
    for (size_t i = 0; i < n; i++) {
        was[i] = q->res.hits[i];
        was[i].has_rerank_score = !isnan(scores[i]);
        was[i].rerank_score = was[i].has_rerank_score ? scores[i] : 0;
    }
    q->reranked = rerank_order(scores, n, order) > 0;
    for (size_t i = 0; i < n; i++)
        q->res.hits[i] = was[order[i]];
    free(order);
    free(was);
}

static void rag_on_reranked(rerank_status st, const float *scores, size_t n, const char *message, void *arg)
{
    rag_query_op *q = arg;
    q->rerank_task = NULL;
    q->t.rerank = clock_now_ms() - q->t.rerank;
    if (atomic_load(&q->cancelled)) {
        rag_op_finish(q, RAG_E_CANCELLED, "cancelled");
        return;
    }
    if (st == RERANK_OK) {
        /* the scores of the eligible candidates, in order, back onto every hit */
        float *all = malloc(q->res.n * sizeof *all);
        size_t j = 0;
        for (size_t i = 0; all && i < q->res.n; i++)
            all[i] = q->res.hits[i].row.quarantined || j >= n ? NAN : scores[j++];
        if (all)
            rag_op_reorder(q, all);
        if (!q->reranked)
            snprintf(q->rerank_skipped, sizeof q->rerank_skipped, "%s",
                     all ? "bad_reply: the reranker scored no candidate" : "out of memory while reranking");
        free(all);
    } else {
        snprintf(q->rerank_skipped, sizeof q->rerank_skipped, "%s: %s", rerank_status_name(st),
                 message && *message ? message : "no detail");
        utf8_sanitize(q->rerank_skipped);
    }
    q->rerank_failed = !q->reranked;
    rag_op_keep_k(q);
    rag_op_to_worker(q, rag_step_compose, rag_op_dropped);
}

static void rag_step_rerank(void *arg)
{
    rag_query_op *q = arg;
    rag_engine *e = q->e;
    if (atomic_load(&q->cancelled)) {
        rag_op_finish(q, RAG_E_CANCELLED, "cancelled");
        return;
    }
    const char **docs = malloc(q->res.n * sizeof *docs);
    size_t *lens = malloc(q->res.n * sizeof *lens);
    size_t n = 0;
    for (size_t i = 0; docs && lens && i < q->res.n; i++) {
        if (q->res.hits[i].row.quarantined)
            continue;
        docs[n] = q->res.hits[i].row.text;
        lens[n++] = strlen(q->res.hits[i].row.text);
    }
    q->t.rerank = clock_now_ms();
    /* the query's deadline: the reranker's own timeout (RAGD_RERANK_TIMEOUT_S) bounds it */
    q->rerank_task = docs && lens ? rerank_start(e->cfg.reranker, q->rtext, q->rtext_len, docs, lens, n, INFINITY,
                                                 rag_on_reranked, q)
                                  : NULL;
    free(docs);
    free(lens);
    if (!q->rerank_task) { /* no callback will come: the fused order stays */
        q->t.rerank = 0;
        snprintf(q->rerank_skipped, sizeof q->rerank_skipped, "the reranker could not start (shutting down or out of memory)");
        q->rerank_failed = true;
        rag_op_keep_k(q);
        rag_op_to_worker(q, rag_step_compose, rag_op_dropped);
    }
}

/* The per-document cap of retrieval (RAGD_MAX_CHUNKS_PER_DOC, fusion_params). */
static size_t rag_op_max_per_doc(const rag_query_op *q)
{
    if (q->e->cfg.fusion)
        return q->e->cfg.fusion->max_per_doc;
    fusion_params d;
    fusion_params_default(&d);
    return d.max_per_doc;
}

static void rag_step_retrieve(void *arg)
{
    rag_query_op *q = arg;
    if (atomic_load(&q->cancelled)) {
        rag_op_finish(q, RAG_E_CANCELLED, "cancelled");
        return;
    }
    /* the builtin embedding of the query, for a builtin collection */
    if (q->method != RAG_KEYWORD && !q->vector) {
        if (q->coll.dim != EMBED_BUILTIN_DIM || strcmp(q->coll.embed_model, EMBED_BUILTIN_NAME) != 0) {
            rag_op_finish(q, RAG_E_MISMATCH, "collection '%s' was embedded with '%s' (dim %d); this server embeds with '%s'",
                          q->coll.name, q->coll.embed_model, q->coll.dim, EMBED_BUILTIN_NAME);
            return;
        }
        double t0 = clock_now_ms();
        q->vector = malloc(EMBED_BUILTIN_DIM * sizeof *q->vector);
        q->qvector = q->rtext_owned ? malloc(EMBED_BUILTIN_DIM * sizeof *q->qvector) : NULL;
        if (!q->vector || embed_builtin(q->rtext, q->rtext_len, q->vector) != RAGD_OK ||
            (q->rtext_owned && (!q->qvector || embed_builtin(q->req.text, q->req.len, q->qvector) != RAGD_OK))) {
            rag_op_finish(q, RAG_E_OVERLOADED, "out of memory while embedding the query");
            return;
        }
        q->t.embed = clock_now_ms() - t0;
    }
    if (rag_op_from_cache(q, true, true))
        return;
    store_reader *r = store_reader_acquire(q->e->cfg.st);
    if (!r) {
        rag_op_finish(q, RAG_E_NOT_READY, "store is closing");
        return;
    }
    size_t k = q->req.k;
    if (q->req.rerank && q->e->cfg.reranker && q->e->cfg.rerank_candidates > k)
        k = q->e->cfg.rerank_candidates; /* more candidates for the reranker; rag_op_keep_k cuts back */
    /* with history, both retrievals go deeper than k, so that the fusion sees a chunk's
     * score in both lists rather than only the top of each */
    size_t depth = q->rtext_owned && k < RAG_HISTORY_FUSE_DEPTH ? RAG_HISTORY_FUSE_DEPTH : k;
    rag_query rq = {.text = q->rtext, .len = q->rtext_len, .k = depth, .method = q->method,
                    .filter = q->req.filter.n_terms ? &q->req.filter : NULL, .vector = q->vector,
                    .fusion = q->e->cfg.fusion, .include_quarantined = q->req.include_quarantined};
    char err[256] = "";
    ragd_err rc = rag_retrieve(q->e->cfg.index, r, &q->coll, &rq, &q->res, err, sizeof err);
    if (rc == RAGD_OK && q->rtext_owned) {
        /* with history: the question alone too, the two fused (rag/history.h); when that
         * fails the retrieval of the retrieval text stands */
        rag_result alone = {0};
        rag_query aq = rq;
        aq.text = q->req.text;
        aq.len = q->req.len;
        aq.vector = q->qvector;
        char aerr[256] = "";
        if (rag_retrieve(q->e->cfg.index, r, &q->coll, &aq, &alone, aerr, sizeof aerr) != RAGD_OK ||
            rag_history_fuse(&q->res, &alone, k, rag_op_max_per_doc(q)) != RAGD_OK)
            log_debug("history: the question alone was not retrieved (%s); the conversation's retrieval stands",
                      aerr[0] ? aerr : "out of memory");
        rag_result_cleanup(&alone);
    }
    store_reader_release(r);
    if (rc) {
        if (rc == RAGD_ECONFLICT)
            rag_op_finish(q, RAG_E_MISMATCH, "%s", err);
        else if (rc == RAGD_ENOMEM)
            rag_op_finish(q, RAG_E_OVERLOADED, "retrieval failed: out of memory");
        else
            rag_op_finish(q, RAG_E_INTERNAL, "retrieval failed: %s", err[0] ? err : ragd_strerror(rc));
        return;
    }
    q->have_res = true;
    q->t.retrieve = q->res.retrieve_ms;
    if (rag_op_rerank_wanted(q)) {
        loopq_post(q->e->cfg.lq, &q->item, rag_step_rerank, q);
        return;
    }
    rag_op_keep_k(q);
    rag_step_compose(q);
}

/* ---- compose (worker) ---- */

/* The answer's inputs from the (reranked) passages: the extractive answer, the prompt. */
static void rag_step_compose(void *arg)
{
    rag_query_op *q = arg;
    if (atomic_load(&q->cancelled)) {
        rag_op_finish(q, RAG_E_CANCELLED, "cancelled");
        return;
    }
    if (!q->req.generate) {
        if (q->embed_failure[0])
            rag_op_degrade(q, NULL);
        rag_op_finish(q, RAG_OK, NULL);
        return;
    }
    rag_op_passages(q);
    q->fallback = rag_op_extractive(q);
    if (!q->fallback) { /* no answer to give, not even the degraded one */
        rag_op_finish(q, RAG_E_OVERLOADED, "out of memory while writing the answer");
        return;
    }
    llm *gen = rag_op_generator(q);
    if (!gen || q->res.n == 0) { /* nothing to generate from, or no LLM asked for */
        if (q->unavailable) {
            q->provider = "extractive";
            q->answer = q->fallback;
            snprintf(q->degraded, sizeof q->degraded, "%s", q->unavailable);
            rag_op_finish(q, RAG_OK, NULL);
            return;
        }
        rag_op_answer_extractive(q, NULL);
        return;
    }
    if (fence_keys_init(&q->keys, (fence_mode)q->e->cfg.spotlight) != RAGD_OK) {
        rag_op_finish(q, RAG_E_INTERNAL, "no randomness for the prompt's boundaries");
        return;
    }
    q->system = rag_prompt_system(&q->keys);
    ragd_err fit = q->system ? rag_op_prompt(q) : RAGD_ENOMEM;
    if (fit == RAGD_ETOOBIG) { /* never sent cut: the model would lose the instructions or the question */
        char failure[300];
        snprintf(failure, sizeof failure,
                 "the question needs about %zu tokens of prompt, more than the %zu the model's context leaves "
                 "(RAGD_CONTEXT_TOKENS or options.num_ctx)",
                 q->fit.tokens_estimate, q->fit.budget);
        rag_op_answer_extractive(q, failure);
        return;
    }
    q->have_guard = q->user && fence_guard_init(&q->guard, q->keys.canary, q->system) == RAGD_OK;
    if (!q->have_guard) { /* not a reason to answer without the LLM */
        rag_op_finish(q, RAG_E_OVERLOADED, "out of memory while writing the prompt");
        return;
    }
    loopq_post(q->e->cfg.lq, &q->item, rag_step_generate, q);
}

/* ---- embed (loop) ---- */

/* The upstream embedding is over: vector (dim floats), or a failure; retrieval goes on on a
 * worker, keyword-only when the embedder failed (the degraded mode of docs/api.md). */
static void rag_op_embedded(rag_query_op *q, const float *v, size_t dim, const char *failure)
{
    if (v && dim == (size_t)q->coll.dim) {
        q->vector = malloc(dim * sizeof *v);
        if (q->vector)
            memcpy(q->vector, v, dim * sizeof *v);
        if (q->vector && q->rtext_owned) { /* the question alone's, second (rag_step_embed) */
            q->qvector = malloc(dim * sizeof *v);
            if (q->qvector)
                memcpy(q->qvector, v + dim, dim * sizeof *v);
            else {
                free(q->vector);
                q->vector = NULL;
            }
        }
    }
    if (!q->vector) {
        snprintf(q->embed_failure, sizeof q->embed_failure, "embedder %s %s", q->e->cfg.embedder_name,
                 failure ? failure : "ran out of memory");
        utf8_sanitize(q->embed_failure);
        q->method = RAG_KEYWORD;
    }
    rag_op_to_worker(q, rag_step_retrieve, rag_op_dropped);
}

static void rag_on_embedded(llm_status st, const float *v, size_t dim, const char *message, void *arg)
{
    rag_query_op *q = arg;
    q->embed_task = NULL;
    q->t.embed = clock_now_ms() - q->t.embed;
    if (st == LLM_CANCELLED && atomic_load(&q->cancelled)) {
        rag_op_finish(q, RAG_E_CANCELLED, "cancelled");
        return;
    }
    char failure[400];
    if (st == LLM_CANCELLED) /* shutdown: still answered, from keyword retrieval */
        snprintf(failure, sizeof failure, "cancelled: server is shutting down");
    else if (st == LLM_OK && dim != (size_t)q->coll.dim)
        snprintf(failure, sizeof failure, "returned vectors of dimension %zu, the collection has %d", dim, q->coll.dim);
    else
        snprintf(failure, sizeof failure, "%s: %s", llm_status_name(st), message && *message ? message : "no detail");
    rag_op_embedded(q, st == LLM_OK ? v : NULL, dim, failure);
}

static void rag_step_embed(void *arg)
{
    rag_query_op *q = arg;
    rag_engine *e = q->e;
    if (atomic_load(&q->cancelled)) {
        rag_op_finish(q, RAG_E_CANCELLED, "cancelled");
        return;
    }
    /* the retrieval text, and with history the question alone too (rag_history_fuse) */
    const char *texts[2] = {q->rtext, q->req.text};
    size_t lens[2] = {q->rtext_len, q->req.len};
    q->t.embed = clock_now_ms();
    q->embed_task = llm_embed(e->cfg.embedder, q->coll.embed_model, texts, lens, q->rtext_owned ? 2 : 1,
                              clock_now_ms() + e->cfg.embed_timeout_ms, rag_on_embedded, q);
    if (!q->embed_task) /* no callback will come */
        rag_op_embedded(q, NULL, 0, "unavailable: the call could not start");
}

/* ---- lookup (worker) ---- */

/* The question's screen (worker): returns false when the query was refused (finished).
 * With history, the latest user turn (its first RAG_SCREEN_TURN_BYTES) is judged too — it
 * goes into the retrieval text and the prompt as the question does — and the worse
 * verdict counts. */
static bool rag_op_screen(rag_query_op *q)
{
    const rag_engine_config *c = &q->e->cfg;
    if (c->injection_policy == RAG_INJECTION_OFF)
        return true;
    guard_verdict v;
    if (guard_score(q->req.text, q->req.len, GUARD_QUERY, &v) != RAGD_OK)
        return true; /* out of memory: unjudged, like off (the answer still goes through the fences) */
    const rag_turn *last = rag_history_last_user(q->req.history, q->req.n_history);
    guard_verdict tv;
    const char *what = "the question";
    if (last && guard_score(last->text, last->len < RAG_SCREEN_TURN_BYTES ? last->len : RAG_SCREEN_TURN_BYTES,
                            GUARD_QUERY, &tv) == RAGD_OK &&
        ((tv.flagged && !v.flagged) || (tv.flagged == v.flagged && tv.score > v.score))) {
        v = tv;
        what = "the question's conversation (its latest user turn)";
    }
    q->inj.score = v.score;
    if (!v.flagged)
        return true;
    q->inj.flagged = true;
    q->inj.rule = v.rule;
    if (c->injection_policy == RAG_INJECTION_BLOCK && q->req.generate) {
        metrics_count_injection("query", "blocked");
        if (v.rule)
            rag_op_finish(q, RAG_E_INJECTION, "%s was refused as a prompt injection (rule '%s')", what, v.rule);
        else
            rag_op_finish(q, RAG_E_INJECTION, "%s was refused as a prompt injection (classifier score %.2f)", what,
                          (double)v.score);
        return false;
    }
    metrics_count_injection("query", "flagged");
    return true;
}

static void rag_step_lookup(void *arg)
{
    rag_query_op *q = arg;
    rag_engine *e = q->e;
    if (!rag_op_screen(q))
        return; /* never reaches the cache or the LLM */
    if (q->req.n_history) {
        size_t used = 0;
        q->rtext_owned = rag_history_retrieval_text(q->req.text, q->req.len, q->req.history, q->req.n_history,
                                                    &q->rtext_len, &used);
        if (!q->rtext_owned) {
            rag_op_finish(q, RAG_E_OVERLOADED, "out of memory while reading the conversation");
            return;
        }
        if (used == 0) { /* no user turn to add: the question alone, retrieved once */
            free(q->rtext_owned);
            q->rtext_owned = NULL;
        } else {
            q->rtext = q->rtext_owned;
        }
    }
    if (q->cache_on)
        q->ticket = cache_ticket(e->cfg.cache); /* before the collection (and its version) is read */
    store_reader *r = store_reader_acquire(e->cfg.st);
    if (!r) {
        rag_op_finish(q, RAG_E_NOT_READY, "store is closing");
        return;
    }
    ragd_err rc = store_collection_get(r, q->req.db, &q->coll);
    store_reader_release(r);
    if (rc == RAGD_ENOTFOUND) {
        rag_op_finish(q, RAG_E_NOT_FOUND,
                      "collection '%s' does not exist: ingesting creates it (ragd ingest PATH --db %s, or POST "
                      "/api/ingest)",
                      q->req.db, q->req.db);
        return;
    }
    if (rc) {
        rag_op_finish(q, rc == RAGD_ENOMEM ? RAG_E_OVERLOADED : RAG_E_INTERNAL, "reading collection '%s' failed: %s",
                      q->req.db, ragd_strerror(rc));
        return;
    }
    q->have_coll = true;
    if (q->cache_on) { /* an exact hit needs no embedding at all */
        q->params = rag_cache_params(&q->req, q->model, q->llm_in_use, &q->params_len);
        q->cache_on = q->params != NULL;
        if (rag_op_from_cache(q, false, false))
            return;
    }
    bool upstream = strcmp(q->coll.embed_model, EMBED_BUILTIN_NAME) != 0;
    if (upstream && q->method != RAG_KEYWORD) {
        if (!e->cfg.embedder) {
            rag_op_finish(q, RAG_E_MISMATCH,
                          "collection '%s' was embedded with '%s' (dim %d); no upstream embedder is configured",
                          q->coll.name, q->coll.embed_model, q->coll.dim);
            return;
        }
        loopq_post(e->cfg.lq, &q->item, rag_step_embed, q);
        return;
    }
    rag_step_retrieve(q);
}

/* ---- start and cancel (loop) ---- */

rag_status rag_query_start(rag_engine *e, rag_request *req, const rag_sink *sink, void *ctx, rag_query_op **out)
{
    *out = NULL;
    rag_query_op *q = calloc(1, sizeof *q);
    if (!q) {
        rag_request_cleanup(req);
        return RAG_E_OVERLOADED;
    }
    q->e = e;
    q->req = *req;
    memset(req, 0, sizeof *req);
    if (q->req.filter.n_terms)
        q->req.filter.terms = q->req.terms; /* the copy's own array */
    q->sink = *sink;
    q->ctx = ctx;
    q->t_start = clock_now_ms();
    q->method = q->req.method;
    strbuf_init(&q->text, RAG_ANSWER_CAP);
    snprintf(q->model, sizeof q->model, "%s", q->req.model ? q->req.model : e->cfg.llm_model);
    q->rtext = q->req.text;
    q->rtext_len = q->req.len;
    /* Shedding on arrival, before any worker time: a query that will ask the generator
     * takes a place toward its model, or is refused when every slot and queue place is
     * taken. The place is held until the generation has its own. */
    q->llm_in_use = rag_engine_llm_in_use(e, e->cfg.generator);
    /* a question with history is never answered from (nor stored in) the cache: its
     * entries are keyed by the question's words, and the same words after another
     * conversation ask something else (docs/internals/engine.md "History") */
    q->cache_on = e->cfg.cache && q->req.use_cache && !q->req.include_quarantined && q->req.n_history == 0;
    if (q->req.generate && rag_op_generator(q) && q->llm_in_use &&
        llm_reserve(e->cfg.generator, q->model, &q->reservation) != LLM_OK) {
        rag_op_free(q);
        return RAG_E_OVERLOADED;
    }
    q->unavailable = NULL; /* rag_op_generator runs again on the worker */
    ragd_err rc = workpool_submit(e->cfg.pool, rag_step_lookup, rag_op_dropped, q);
    if (rc != RAGD_OK) {
        rag_op_free(q);
        return rc == RAGD_ECLOSED ? RAG_E_NOT_READY : RAG_E_OVERLOADED;
    }
    *out = q;
    return RAG_OK;
}

void rag_query_cancel(rag_query_op *q)
{
    if (!q || q->delivering || atomic_load(&q->cancelled))
        return;
    atomic_store(&q->cancelled, true);
    /* an upstream task in flight ends with its CANCELLED callback, which ends the query;
     * a worker step sees the flag at its next hand-over */
    llm_task_cancel(q->gen_task);
    llm_task_cancel(q->embed_task);
    rerank_task_cancel(q->rerank_task);
}
