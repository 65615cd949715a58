/* POST /api/query and POST /api/retrieve: the HTTP adapter of the query engine
 * (rag/engine.h). It parses the JSON body into a rag_request, starts the engine, and renders
 * its events: JSON, or Server-Sent Events (sources, then a token per piece of the LLM's
 * answer, then done) when the client asks for a stream; the errors in the envelope. The
 * pipeline itself — lookup, embedding, retrieval, prompt, generation, the extractive
 * fallback — is the engine's. */
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "http/fields.h"
#include "http/handlers.h"
#include "rag/engine.h"
#include "util/jsonmem.h"
#include "util/log.h"
#include "util/loopq.h"
#include "util/names.h"
#include "util/clock.h"
#include "util/strbuf.h"

#define QUERY_MAX_CHARS 8192
/* A filter's limits: the store's caps on keys and on values in all (checked here, so that a
 * filter the store would refuse is a 422 naming the limit, not a 500), and at most 100
 * values in one $in list. */
#define QUERY_MAX_FILTER_TERMS STORE_FILTER_MAX_TERMS
#define QUERY_MAX_FILTER_TOTAL STORE_FILTER_MAX_VALUES
#define QUERY_MAX_FILTER_VALUES 100
#define QUERY_SSE_CAP ((size_t)64 << 20)
/* The largest body parsed on the loop thread: a query is a few hundred bytes; a bigger
 * body (a huge filter) is parsed on a worker first. */
#define QUERY_LOOP_PARSE_MAX ((size_t)64 * 1024)

/* ---- parsing ---- */

/* One filter value: a JSON scalar. */
static bool query_filter_value(json_t *v, store_value *out)
{
    memset(out, 0, sizeof *out);
    if (json_is_string(v)) {
        out->type = STORE_VAL_STRING;
        out->s = json_string_value(v);
    } else if (json_is_integer(v)) {
        out->type = STORE_VAL_INT;
        out->i = json_integer_value(v);
    } else if (json_is_real(v)) {
        out->type = STORE_VAL_REAL;
        out->d = json_real_value(v);
    } else if (json_is_boolean(v)) {
        out->type = STORE_VAL_BOOL;
        out->i = json_is_true(v);
    } else if (json_is_null(v)) {
        out->type = STORE_VAL_NULL;
    } else {
        return false;
    }
    return true;
}

/* filter: {"key": scalar} or {"key": {"$in": [scalars]}} or {"key": {"$eq": scalar}}. */
static bool query_parse_filter(http_request *req, json_t *filter, rag_request *in)
{
    if (!filter || json_object_size(filter) == 0)
        return true;
    if (json_object_size(filter) > QUERY_MAX_FILTER_TERMS) {
        http_reply_error(req, 422, "validation_error", "filter: at most %d keys", QUERY_MAX_FILTER_TERMS);
        return false;
    }
    size_t total = 0;
    const char *key;
    json_t *v;
    json_object_foreach(filter, key, v) {
        json_t *in_list = json_is_object(v) ? json_object_get(v, "$in") : NULL;
        size_t n = json_is_array(in_list) ? json_array_size(in_list) : 1;
        if (n > QUERY_MAX_FILTER_VALUES) {
            http_reply_error(req, 422, "validation_error", "filter.%s: $in takes 1 to %d values", key,
                             QUERY_MAX_FILTER_VALUES);
            return false;
        }
        total += n;
    }
    if (total > QUERY_MAX_FILTER_TOTAL) {
        http_reply_error(req, 422, "validation_error",
                         "filter: at most %d values in all (a scalar or $eq counts 1, an $in list its length), not %zu",
                         QUERY_MAX_FILTER_TOTAL, total);
        return false;
    }
    in->values = calloc(total ? total : 1, sizeof *in->values);
    if (!in->values) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return false;
    }
    size_t used = 0;
    json_object_foreach(filter, key, v) {
        if (!names_key_valid(key)) {
            http_reply_error(req, 422, "validation_error", "filter: keys must be 1-64 characters of [A-Za-z0-9_.-]");
            return false;
        }
        store_filter_term *t = &in->terms[in->filter.n_terms++];
        t->key = key;
        t->values = &in->values[used];
        if (json_is_object(v)) {
            json_t *list = json_object_get(v, "$in");
            json_t *eq = json_object_get(v, "$eq");
            bool ok = json_object_size(v) == 1 && (json_is_array(list) || eq);
            if (ok && eq) {
                ok = query_filter_value(eq, &in->values[used++]);
                t->n_values = 1;
            } else if (ok) {
                size_t n = json_array_size(list);
                ok = n > 0 && n <= QUERY_MAX_FILTER_VALUES;
                for (size_t i = 0; ok && i < n; i++)
                    ok = query_filter_value(json_array_get(list, i), &in->values[used++]);
                t->n_values = n;
            }
            if (!ok) {
                http_reply_error(req, 422, "validation_error",
                                 "filter.%s: must be a scalar, {\"$eq\": scalar} or {\"$in\": [1 to %d scalars]}", key,
                                 QUERY_MAX_FILTER_VALUES);
                return false;
            }
        } else if (query_filter_value(v, &in->values[used])) {
            used++;
            t->n_values = 1;
        } else {
            http_reply_error(req, 422, "validation_error", "filter.%s: must be a scalar, {\"$eq\": scalar} or {\"$in\": [...]}",
                             key);
            return false;
        }
    }
    in->filter.terms = in->terms;
    return true;
}

/* LLM_MODEL, or one of RAGD_LLM_MODELS. */
static bool query_model_allowed(const ragd_config *cfg, const char *model)
{
    if (strcmp(model, cfg->llm_model) == 0)
        return true;
    size_t n = strlen(model);
    for (const char *p = cfg->llm_models; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, model, n) == 0)
            return true;
        p += len + (comma ? 1 : 0);
    }
    return false;
}

/* Parses the body into in (which then holds a reference on the JSON); *stream says
 * whether the client wants SSE. Replies 400/422 and returns false on a bad body. */
static bool query_parse(http_request *req, bool generate, rag_request *in, bool *stream)
{
    memset(in, 0, sizeof *in);
    *stream = false;
    in->hold = http_json_object(req);
    if (!in->hold)
        return false;
    json_t *b = in->hold;
    static const char *const methods[] = {"hybrid", "vector", "keyword", NULL};
    static const char *const providers[] = {"auto", "extractive", "ollama", "openai", NULL};
    const char *text = NULL, *model = NULL;
    long long k = 5;
    int method = 0, provider = 0;
    bool flag = false;
    json_t *filter = NULL, *options = NULL;
    if (!fields_string(req, b, "query", true, QUERY_MAX_CHARS, &text))
        return false;
    const char *k_name = json_object_get(b, "k") || !json_object_get(b, "top_k") ? "k" : "top_k";
    if (!fields_int(req, b, k_name, 5, 1, 100, &k) || !fields_db(req, b, &in->db) ||
        !fields_choice(req, b, "method", methods, 0, &method) || !fields_object(req, b, "filter", &filter) ||
        !fields_bool(req, b, "rerank", false, &flag) || !fields_bool(req, b, "use_cache", true, &flag) ||
        !fields_bool(req, b, "stream", false, stream))
        return false;
    if (generate && (!fields_choice(req, b, "provider", providers, 0, &provider) ||
                     !fields_string(req, b, "model", false, 256, &model) || !fields_object(req, b, "options", &options)))
        return false;
    if (model && !query_model_allowed(&req->app->cfg, model)) {
        /* each model gets its own breakers and bulkheads: clients may not create them at will */
        http_reply_error(req, 422, "validation_error", "model: '%s' is not a configured model (LLM_MODEL, RAGD_LLM_MODELS)",
                         model);
        return false;
    }
    in->text = text;
    in->len = strlen(text);
    in->k = (size_t)k;
    in->method = (rag_method)method;
    in->generate = generate;
    in->provider = (rag_provider)provider;
    in->model = model;
    in->options = options;
    *stream = *stream || req->accept_sse;
    return query_parse_filter(req, filter, in);
}

/* ---- rendering ---- */

static json_t *query_source_json(size_t n, const rag_hit *h)
{
    char id[300];
    snprintf(id, sizeof id, "%s#%d", h->row.doc_id, h->row.ordinal);
    return json_pack("{s:I, s:s, s:s, s:i, s:f, s:s, s:o, s:s?, s:I, s:I}", "n", (json_int_t)n, "id", id, "doc_id",
                     h->row.doc_id, "chunk", h->row.ordinal, "score", h->score, "text", h->row.text, "metadata",
                     handlers_metadata(h->row.metadata_json), "source", h->row.source, "start",
                     (json_int_t)h->row.start, "end", (json_int_t)h->row.end);
}

/* Puts v into obj under key, or appends it to the array obj (key NULL). Takes v. False
 * when v is NULL or cannot be added: jansson ran out of memory, and a response with a
 * value missing must not go out as a 200 (the caller answers 503). */
static bool query_put(json_t *obj, const char *key, json_t *v)
{
    if (!v || !obj) {
        json_decref(v);
        return false;
    }
    return (key ? json_object_set_new(obj, key, v) : json_array_append_new(obj, v)) == 0;
}

/* The original plan's lists plus sources, shared by retrieve and query; NULL when out of
 * memory. */
static json_t *query_results_json(const rag_result *res, const char *db, rag_method method)
{
    json_t *documents = json_array(), *metadatas = json_array(), *distances = json_array(), *sources = json_array();
    bool ok = documents && metadatas && distances && sources;
    for (size_t i = 0; ok && i < res->n; i++) {
        const rag_hit *h = &res->hits[i];
        ok = query_put(documents, NULL, json_string(h->row.text)) &&
             query_put(metadatas, NULL, handlers_metadata(h->row.metadata_json)) &&
             query_put(distances, NULL, json_real(h->distance)) && query_put(sources, NULL, query_source_json(i + 1, h));
    }
    if (!ok) {
        json_decref(documents);
        json_decref(metadatas);
        json_decref(distances);
        json_decref(sources);
        return NULL;
    }
    /* "o" references are taken even when json_pack fails (jansson >= 2.13) */
    return json_pack("{s:o, s:o, s:o, s:o, s:s, s:s}", "documents", documents, "metadatas", metadatas, "distances",
                     distances, "sources", sources, "db", db, "method", rag_method_name(method));
}

/* Adds timings_ms and request_id; false when out of memory. */
static bool query_put_timings(http_request *req, json_t *resp, const rag_timings *t)
{
    return query_put(resp, "timings_ms",
                     json_pack("{s:f, s:f, s:f, s:f, s:f}", "embed", t->embed, "retrieve", t->retrieve, "rerank",
                               t->rerank, "generate", t->generate, "total", clock_now_ms() - req->t_start_ms)) &&
           query_put(resp, "request_id", json_string(req->request_id));
}

/* Adds degraded and degraded_reason; false when out of memory. */
static bool query_put_degraded(json_t *resp, const char *reason)
{
    return query_put(resp, "degraded", json_boolean(reason != NULL)) &&
           query_put(resp, "degraded_reason", reason ? json_string(reason) : json_null());
}

/* Appends one SSE event; takes data. False when out of memory (or past the cap). */
static bool query_sse_event(strbuf *sb, const char *event, json_t *data)
{
    char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    bool ok = text && strbuf_appendf(sb, "event: %s\ndata: %s\n\n", event, text) == RAGD_OK;
    free(text);
    return ok;
}

/* The whole response of a finished query; NULL when out of memory. Retrieve: the lists,
 * timings and the degraded flag; query: the answer and who gave it too. */
static json_t *query_response_json(http_request *req, const rag_outcome *o, bool generate)
{
    json_t *resp = query_results_json(o->res, o->coll->name, o->method);
    bool ok = resp && query_put_degraded(resp, o->degraded_reason) && query_put_timings(req, resp, &o->timings);
    if (ok && generate)
        ok = o->answer && query_put(resp, "answer", json_string(o->answer)) &&
             query_put(resp, "provider", json_string(o->provider)) &&
             query_put(resp, "model", o->model ? json_string(o->model) : json_null()) &&
             query_put(resp, "cached", json_boolean(o->cached));
    if (!ok) {
        json_decref(resp);
        return NULL;
    }
    return resp;
}

/* The whole response as one SSE body: sources, the answer as one token, done. NULL when out
 * of memory (nothing was sent yet: the caller answers 503). Takes resp. */
static char *query_sse_body(json_t *resp, size_t *len)
{
    strbuf sb;
    strbuf_init(&sb, QUERY_SSE_CAP);
    unsigned long failed = jsonmem_failures(); /* jansson may drop a member silently (jsonmem.h) */
    bool ok = query_sse_event(&sb, "sources", json_pack("{s:O}", "sources", json_object_get(resp, "sources"))) &&
              query_sse_event(&sb, "token", json_pack("{s:O}", "text", json_object_get(resp, "answer")));
    json_object_del(resp, "documents");
    ok = ok && query_sse_event(&sb, "done", json_incref(resp)) && jsonmem_failures() == failed;
    json_decref(resp);
    char *body = ok ? strbuf_detach(&sb, len) : NULL;
    strbuf_cleanup(&sb);
    return body;
}

/* ---- one call: a request, the engine's query, the rendering ---- */

/* Owned by the request (http_set_cleanup), freed with it whatever path it took; the request
 * is held (http_go_async / a worker's part) from the engine's start until on_done. */
typedef struct {
    http_request *req;
    app *a;
    bool generate;
    bool stream;         /* the client wants SSE */
    bool parsed;
    rag_request rr;
    rag_query_op *op;    /* the engine's query until on_done */
    char *sources_event; /* streaming: the sources event, kept until the first token */
    http_stream *out;    /* streaming: the SSE body, once the first token came */
    loopq_item item;
} query_call;

static void query_call_free(void *arg)
{
    query_call *c = arg;
    rag_request_cleanup(&c->rr);
    free(c->sources_event);
    free(c);
}

static const char query_oom[] = "out of memory while writing the response";
static const char query_event_oom[] = "{\"error\":{\"code\":\"internal\",\"message\":\"event could not be encoded\"}}";

/* The engine's refusal or failure, in the envelope. */
static void query_reply_status(http_request *req, rag_status st, const char *message)
{
    switch (st) {
    case RAG_E_NOT_FOUND: http_reply_error(req, 404, "db_not_found", "%s", message); break;
    case RAG_E_MISMATCH: http_reply_error(req, 409, "embed_model_mismatch", "%s", message); break;
    case RAG_E_INVALID: http_reply_error(req, 422, "validation_error", "%s", message); break;
    case RAG_E_OVERLOADED: http_reply_error(req, 503, "overloaded", "%s", message); break;
    case RAG_E_NOT_READY:
    case RAG_E_CANCELLED: http_reply_error(req, 503, "not_ready", "%s", message); break;
    case RAG_OK:
    case RAG_E_INTERNAL: http_reply_error(req, 500, "internal", "%s", message); break;
    }
}

/* One SSE event onto the live stream; takes data (NULL: an error event that says the
 * event could not be encoded). */
static void query_stream_event(query_call *c, const char *event, json_t *data)
{
    char *text = data ? json_dumps(data, JSON_COMPACT) : NULL;
    json_decref(data);
    http_stream_write(c->out, "event: ", 7);
    http_stream_write(c->out, event, strlen(event));
    http_stream_write(c->out, "\ndata: ", 7);
    if (text)
        http_stream_write(c->out, text, strlen(text));
    else
        http_stream_write(c->out, query_event_oom, sizeof query_event_oom - 1);
    http_stream_write(c->out, "\n\n", 2);
    free(text);
}

static void query_on_client_gone(void *arg)
{
    query_call *c = arg;
    log_debug("request %s: client went away; query cancelled", c->req->request_id);
    rag_query_cancel(c->op);
}

/* on_sources: the passages are known and an LLM will answer; the event is
 * kept until the first token, so that a query the LLM sheds can still be answered 503. */
static void query_on_sources(const rag_outcome *o, void *arg)
{
    query_call *c = arg;
    json_t *resp = query_results_json(o->res, o->coll->name, o->method);
    json_t *ev = resp ? json_pack("{s:O}", "sources", json_object_get(resp, "sources")) : NULL;
    json_decref(resp);
    c->sources_event = ev ? json_dumps(ev, JSON_COMPACT) : NULL;
    json_decref(ev);
}

/* on_token (streaming): the first one turns the response into a live SSE stream (200, sources), then
 * every piece is a token event. */
static int query_on_token(const char *p, size_t n, void *arg)
{
    query_call *c = arg;
    if (!c->out) {
        if (!c->sources_event || !(c->out = http_stream_begin(c->req, "text/event-stream; charset=utf-8")))
            return 1; /* out of memory: stop; on_done answers 503 or the answer so far */
        http_unwatch_close(c->req); /* from here on MHD watches the socket, and on_close reports */
        http_retain(c->req);        /* the stream's own hold, released in on_done */
        http_on_close(c->req, query_on_client_gone, c);
        static const char head[] = "event: sources\ndata: ";
        http_stream_write(c->out, head, sizeof head - 1);
        http_stream_write(c->out, c->sources_event, strlen(c->sources_event));
        http_stream_write(c->out, "\n\n", 2);
        http_complete(c->req); /* the loop queues the stream response now */
    }
    query_stream_event(c, "token", json_pack("{s:s%}", "text", p, n));
    return 0;
}

/* The end of a live stream: done, or an error event when the LLM failed after tokens. */
static void query_end_stream(query_call *c, const rag_outcome *o)
{
    http_request *req = c->req;
    if (o->status == RAG_OK && !o->stream_error) {
        json_t *resp = query_response_json(req, o, true);
        if (resp) {
            json_object_del(resp, "documents");
            query_stream_event(c, "done", resp);
        } else {
            query_stream_event(c, "error", NULL);
        }
    } else if (o->status != RAG_E_CANCELLED) {
        const char *why = o->stream_error ? o->stream_error : o->message;
        json_t *err = json_pack("{s:s, s:s, s:s}", "code", "upstream_unavailable", "message", why, "request_id",
                                req->request_id);
        query_stream_event(c, "error", err ? json_pack("{s:o, s:s}", "error", err, "detail", why) : NULL);
    }
    http_stream_end(c->out);
    http_on_close(req, NULL, NULL);
    http_release(req); /* the stream's hold: the request, and with it this call, may be freed
                        * here (a client already gone): nothing touches c after this */
}

static void query_on_done(const rag_outcome *o, void *arg)
{
    query_call *c = arg;
    http_request *req = c->req;
    c->op = NULL;
    if (req->close_arg == c)
        http_unwatch_close(req);
    if (c->out) {
        query_end_stream(c, o);
        return;
    }
    if (o->status != RAG_OK) {
        query_reply_status(req, o->status, o->message);
    } else {
        json_t *resp = query_response_json(req, o, c->generate);
        size_t len = 0;
        char *body = resp && c->stream && c->generate ? query_sse_body(resp, &len) : NULL;
        if (!resp || (c->stream && c->generate && !body))
            http_reply_error(req, 503, "overloaded", "%s", query_oom);
        else if (body)
            http_reply_raw(req, 200, "text/event-stream; charset=utf-8", body, len);
        else
            http_reply_json(req, 200, resp);
        free(body);
    }
    http_complete(req);
}

/* A streamed query hears the sources and every token; a plain one only its end (a failure
 * mid-answer is then still answered extractively: nothing went out). */
static const rag_sink query_stream_sink = {.on_sources = query_on_sources, .on_token = query_on_token,
                                           .on_done = query_on_done};
static const rag_sink query_plain_sink = {.on_done = query_on_done};

/* Starts the engine's query (loop); the request is held already. On a refusal (shed on
 * arrival, shutting down) answers at once. */
static void query_start(query_call *c)
{
    http_request *req = c->req;
    const rag_sink *sink = c->stream && c->generate ? &query_stream_sink : &query_plain_sink;
    rag_status st = rag_query_start(c->a->engine, &c->rr, sink, c, &c->op);
    if (st == RAG_OK) {
        http_watch_close(req, query_on_client_gone, c); /* until a stream begins */
        return;
    }
    if (st == RAG_E_OVERLOADED)
        http_reply_error(req, 503, "overloaded", "generator %s is saturated: every slot and queue place is taken",
                         c->a->generator_name);
    else
        query_reply_status(req, st, "server is shutting down");
    http_complete(req);
}

static void query_start_step(void *arg) { query_start(arg); }

/* A large body is parsed on a worker; the query starts from the loop. */
static void query_parse_work(http_request *req)
{
    query_call *c = req->cleanup_arg;
    if (!query_parse(req, c->generate, &c->rr, &c->stream))
        return;
    http_hold(req);
    loopq_post(c->a->lq, &c->item, query_start_step, c);
}

/* Arrival, on the loop. A small body is parsed here and the query starts at once — a query
 * that would wait on a saturated generator is shed before any worker time. */
static void query_arrive(http_request *req, bool generate)
{
    query_call *c = calloc(1, sizeof *c);
    if (!c) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    c->req = req;
    c->a = req->app;
    c->generate = generate;
    http_set_cleanup(req, query_call_free, c);
    if (req->body.len > QUERY_LOOP_PARSE_MAX) {
        http_defer(req, query_parse_work);
        return;
    }
    if (!query_parse(req, generate, &c->rr, &c->stream))
        return;
    http_go_async(req);
    query_start(c);
}

void handlers_query(http_request *req) { query_arrive(req, true); }
void handlers_retrieve(http_request *req) { query_arrive(req, false); }
