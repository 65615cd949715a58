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
#include "rag/prompt.h"
#include "util/jsonw.h"
#include "util/log.h"
#include "util/loopq.h"
#include "util/names.h"
#include "util/clock.h"
#include "util/strbuf.h"
#include "util/utf8.h"

#define QUERY_MAX_CHARS 8192
/* A filter's limits: the store's caps on keys and on values in all (checked here, so that a
 * filter the store would refuse is a 422 naming the limit, not a 500), and at most 100
 * values in one $in list. */
#define QUERY_MAX_FILTER_TERMS STORE_FILTER_MAX_TERMS
#define QUERY_MAX_FILTER_TOTAL STORE_FILTER_MAX_VALUES
#define QUERY_MAX_FILTER_VALUES 100
/* What a response holds besides its passages (ids, timings, keys), counted generously
 * when passages are fitted under RAGD_MAX_RESPONSE_BYTES. */
#define QUERY_FIXED_BYTES ((size_t)4096)
#define QUERY_HIT_FIXED_BYTES ((size_t)368) /* ... and ,"page":N,"page_end":N */
#define QUERY_RERANK_SCORE_BYTES ((size_t)48) /* ,"rerank_score":-1.2345678901234567e-308 */
/* history: the earlier turns of a conversation (docs/api.md). The engine gives the model
 * only what fits its context; these caps bound what a request may make it look at. */
#define QUERY_MAX_HISTORY_TURNS 10000
#define QUERY_MAX_HISTORY_BYTES ((size_t)4 << 20) /* the turns' contents together */
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

/* history: [{"role": "user"|"assistant", "content": "..."}], oldest first, into in->history
 * (texts borrowed from the body). Other members of a turn are ignored; a "system" turn is
 * refused (the server writes its own system prompt). Replies 422 (or 503) and returns false
 * on a bad list. */
static bool query_parse_history(http_request *req, json_t *b, rag_request *in)
{
    json_t *h = json_object_get(b, "history");
    if (!h || json_is_null(h))
        return true;
    if (!json_is_array(h)) {
        http_reply_error(req, 422, "validation_error",
                         "history: must be an array of {\"role\": \"user\" or \"assistant\", \"content\": string}");
        return false;
    }
    size_t n = json_array_size(h), total = 0;
    if (n > QUERY_MAX_HISTORY_TURNS) {
        http_reply_error(req, 422, "validation_error", "history: at most %d turns, not %zu", QUERY_MAX_HISTORY_TURNS, n);
        return false;
    }
    if (n == 0)
        return true;
    in->history = calloc(n, sizeof *in->history);
    if (!in->history) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(h, i);
        json_t *role = json_object_get(t, "role"), *content = json_object_get(t, "content");
        const char *r = json_string_value(role);
        if (!json_is_object(t) || !r || (strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0)) {
            http_reply_error(req, 422, "validation_error",
                             r && strcmp(r, "system") == 0
                                 ? "history[%zu].role: \"system\" is not accepted (the server writes its own system prompt)"
                                 : "history[%zu]: must be an object whose role is \"user\" or \"assistant\"",
                             i);
            return false;
        }
        if (!json_is_string(content)) {
            http_reply_error(req, 422, "validation_error", "history[%zu].content: must be a string", i);
            return false;
        }
        size_t len = json_string_length(content);
        total += len;
        if (total > QUERY_MAX_HISTORY_BYTES) {
            http_reply_error(req, 422, "validation_error", "history: the turns' contents exceed %zu bytes in all",
                             QUERY_MAX_HISTORY_BYTES);
            return false;
        }
        in->history[i] = (rag_turn){.role = r, .text = json_string_value(content), .len = len};
    }
    in->n_history = n;
    return true;
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
    json_t *filter = NULL, *options = NULL;
    if (!fields_string(req, b, "query", true, QUERY_MAX_CHARS, &text))
        return false;
    const char *k_name = json_object_get(b, "k") || !json_object_get(b, "top_k") ? "k" : "top_k";
    if (!fields_int(req, b, k_name, 5, 1, 100, &k) || !fields_db(req, b, &in->db) ||
        !fields_choice(req, b, "method", methods, 0, &method) || !fields_object(req, b, "filter", &filter) ||
        !fields_bool(req, b, "rerank", req->app->cfg.rerank_default, &in->rerank) || !fields_bool(req, b, "use_cache", true, &in->use_cache) ||
        !fields_bool(req, b, "stream", false, stream))
        return false;
    if (!generate && !fields_bool(req, b, "include_quarantined", false, &in->include_quarantined))
        return false;
    if (generate && (!fields_choice(req, b, "provider", providers, 0, &provider) ||
                     !fields_string(req, b, "model", false, 256, &model) || !fields_object(req, b, "options", &options) ||
                     !fields_llm_options(req, options) || !query_parse_history(req, b, in)))
        return false;
    if (model && !handlers_llm_model_allowed(&req->app->cfg, model)) {
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

/* Responses are written with the JSON writer (util/jsonw.h) rather than built as jansson
 * trees: on the loop thread, rendering five passages through jansson cost more than
 * retrieving them (docs/internals/http.md). */

/* A passage's metadata as JSON text: the stored object (the store checks at ingest that it is
 * one), "{}" when there is none. */
static const char *query_metadata_text(const rag_hit *h)
{
    const char *m = h->row.metadata_json;
    return m && m[0] == '{' ? m : "{}";
}

/* How many passages, best first, the response can carry under cap bytes (the response cap,
 * docs/api.md): each passage's text goes out up to twice (documents, sources) and its
 * metadata up to three times (an SSE stream's sources and done events), so this bound holds
 * for every shape of the response. The lowest-ranked passages are the ones left out.
 * SIZE_MAX when not even the response without passages fits (an answer over the cap). */
static size_t query_hits_that_fit(const rag_outcome *o, size_t cap)
{
    size_t used = QUERY_FIXED_BYTES + jsonw_string_size(o->answer) + jsonw_string_size(o->provider) +
                  jsonw_string_size(o->model) + jsonw_string_size(o->degraded_reason) +
                  (o->coll ? jsonw_string_size(o->coll->name) : 0) + jsonw_string_size(o->rerank_skipped_reason);
    if (o->answer)
        used += jsonw_string_size(o->answer); /* a stream's token event repeats it */
    if (used > cap)
        return SIZE_MAX;
    const rag_result *res = o->res;
    size_t n = 0;
    for (; res && n < res->n; n++) {
        const rag_hit *h = &res->hits[n];
        size_t cost = QUERY_HIT_FIXED_BYTES + 2 * jsonw_string_size(h->row.text) +
                      3 * strlen(query_metadata_text(h)) + 3 * jsonw_string_size(h->row.doc_id) +
                      jsonw_string_size(h->row.source) + jsonw_string_size(h->row.title) +
                      (h->has_rerank_score ? 2 * QUERY_RERANK_SCORE_BYTES : 0);
        if (cost > cap - used)
            break;
        used += cost;
    }
    return n;
}

/* "sources": [{"n","id","doc_id","title","chunk","score","text","metadata","source","start","end",
 * "page"/"page_end" for documents with pages}],
 * of the first n passages. */
static void query_write_sources(jsonw *w, const rag_result *res, size_t n)
{
    jsonw_key(w, "sources");
    jsonw_array_begin(w);
    for (size_t i = 0; i < n; i++) {
        const rag_hit *h = &res->hits[i];
        char id[300];
        snprintf(id, sizeof id, "%s#%d", h->row.doc_id, h->row.ordinal);
        jsonw_object_begin(w);
        jsonw_key(w, "n");
        jsonw_int(w, (int64_t)i + 1);
        jsonw_key(w, "id");
        jsonw_string(w, id);
        jsonw_key(w, "doc_id");
        jsonw_string(w, h->row.doc_id);
        jsonw_key(w, "title");
        jsonw_string(w, h->row.title);
        jsonw_key(w, "chunk");
        jsonw_int(w, h->row.ordinal);
        jsonw_key(w, "score");
        jsonw_double(w, h->score);
        jsonw_key(w, "text");
        jsonw_string(w, h->row.text);
        jsonw_key(w, "metadata");
        jsonw_raw(w, query_metadata_text(h));
        jsonw_key(w, "source");
        jsonw_string(w, h->row.source);
        jsonw_key(w, "start");
        jsonw_int(w, h->row.start);
        jsonw_key(w, "end");
        jsonw_int(w, h->row.end);
        if (h->row.page > 0) { /* a document with pages (PDF) */
            jsonw_key(w, "page");
            jsonw_int(w, h->row.page);
            if (h->row.page_end > h->row.page) {
                jsonw_key(w, "page_end");
                jsonw_int(w, h->row.page_end);
            }
        }
        if (h->has_rerank_score) {
            jsonw_key(w, "rerank_score");
            jsonw_double(w, (double)h->rerank_score);
        }
        if (h->n_chunks > 1) { /* a passage of neighbouring chunks (docs/api.md) */
            jsonw_key(w, "chunks");
            jsonw_array_begin(w);
            for (int c = 0; c < h->n_chunks; c++)
                jsonw_int(w, (int64_t)h->row.ordinal + c);
            jsonw_array_end(w);
        }
        if (h->row.quarantined) { /* only with include_quarantined (retrieve) */
            jsonw_key(w, "quarantined");
            jsonw_bool(w, true);
            jsonw_key(w, "injection_score");
            jsonw_double(w, h->row.injection_score);
        }
        jsonw_object_end(w);
    }
    jsonw_array_end(w);
}

/* "injection": what the prompt-injection defence saw, when it saw anything: the question
 * flagged (score, rule), the answer withheld (reason). Left out otherwise. A flagged
 * question also gets the original plan's "flags": ["prompt_injection"]. */
static void query_write_injection(jsonw *w, const rag_injection *inj)
{
    if (!inj || (!inj->flagged && !inj->output_withheld))
        return;
    if (inj->flagged) {
        jsonw_key(w, "flags");
        jsonw_array_begin(w);
        jsonw_string(w, "prompt_injection");
        jsonw_array_end(w);
    }
    jsonw_key(w, "injection");
    jsonw_object_begin(w);
    jsonw_key(w, "flagged");
    jsonw_bool(w, inj->flagged);
    if (inj->flagged) {
        jsonw_key(w, "score");
        jsonw_double(w, (double)inj->score);
        jsonw_key(w, "rule");
        jsonw_string(w, inj->rule);
    }
    if (inj->output_withheld) {
        jsonw_key(w, "output_withheld");
        jsonw_bool(w, true);
        jsonw_key(w, "reason");
        jsonw_string(w, inj->withheld_reason);
    }
    jsonw_object_end(w);
}

/* "prompt": what fitting the prompt to the model's context did, when a prompt was built. */
static void query_write_prompt(jsonw *w, const rag_prompt_fit *fit)
{
    if (!fit)
        return;
    jsonw_key(w, "prompt");
    jsonw_object_begin(w);
    const char *names[] = {"context_tokens", "budget", "tokens_estimate", "passages", "passages_dropped",
                           "history_turns", "history_dropped"};
    size_t values[] = {fit->context, fit->budget, fit->tokens_estimate, fit->passages, fit->passages_dropped,
                       fit->history_turns, fit->history_dropped};
    for (size_t i = 0; i < sizeof values / sizeof *values; i++) {
        jsonw_key(w, names[i]);
        jsonw_int(w, (int64_t)values[i]);
    }
    jsonw_key(w, "truncated");
    jsonw_bool(w, fit->truncated);
    jsonw_key(w, "history_truncated");
    jsonw_bool(w, fit->history_truncated);
    jsonw_object_end(w);
}

/* The response of a finished query as one object: the original plan's lists (documents
 * only when `documents`: a stream's done event leaves them out), sources, collection,
 * method, cached, degraded, timings, request id; for /api/query the answer and who gave it. */
static void query_write_response(jsonw *w, http_request *req, const rag_outcome *o, bool generate, bool documents,
                                 size_t n)
{
    const rag_result *res = o->res;
    jsonw_object_begin(w);
    if (documents) {
        jsonw_key(w, "documents");
        jsonw_array_begin(w);
        for (size_t i = 0; i < n; i++)
            jsonw_string(w, res->hits[i].row.text);
        jsonw_array_end(w);
    }
    jsonw_key(w, "metadatas");
    jsonw_array_begin(w);
    for (size_t i = 0; i < n; i++)
        jsonw_raw(w, query_metadata_text(&res->hits[i]));
    jsonw_array_end(w);
    jsonw_key(w, "distances");
    jsonw_array_begin(w);
    for (size_t i = 0; i < n; i++)
        jsonw_double(w, res->hits[i].distance);
    jsonw_array_end(w);
    query_write_sources(w, res, n);
    jsonw_key(w, "db");
    jsonw_string(w, o->coll->name);
    jsonw_key(w, "method");
    jsonw_string(w, rag_method_name(o->method));
    if (generate) {
        jsonw_key(w, "answer");
        jsonw_string(w, o->answer);
        jsonw_key(w, "provider");
        jsonw_string(w, o->provider);
        jsonw_key(w, "model");
        jsonw_string(w, o->model);
        jsonw_key(w, "cited");
        jsonw_array_begin(w);
        for (size_t i = 0; i < o->n_cited; i++)
            jsonw_int(w, o->cited[i]);
        jsonw_array_end(w);
        query_write_prompt(w, o->prompt);
    }
    query_write_injection(w, o->injection);
    jsonw_key(w, "cached");
    jsonw_bool(w, o->cached);
    jsonw_key(w, "degraded");
    jsonw_bool(w, o->degraded_reason != NULL);
    jsonw_key(w, "degraded_reason");
    jsonw_string(w, o->degraded_reason);
    jsonw_key(w, "reranked");
    jsonw_bool(w, o->reranked);
    if (o->rerank_skipped_reason) { /* asked for and not done */
        jsonw_key(w, "rerank_skipped_reason");
        jsonw_string(w, o->rerank_skipped_reason);
    }
    jsonw_key(w, "truncated"); /* passages left out to stay under RAGD_MAX_RESPONSE_BYTES */
    jsonw_bool(w, n < res->n);
    jsonw_key(w, "timings_ms");
    jsonw_object_begin(w);
    const rag_timings *t = &o->timings;
    const char *names[] = {"embed", "retrieve", "rerank", "generate", "total"};
    double values[] = {t->embed, t->retrieve, t->rerank, t->generate, clock_now_ms() - req->t_start_ms};
    for (size_t i = 0; i < 5; i++) {
        jsonw_key(w, names[i]);
        jsonw_double(w, values[i]);
    }
    jsonw_object_end(w);
    jsonw_key(w, "request_id");
    jsonw_string(w, req->request_id);
    jsonw_object_end(w);
}

/* An SSE event is "event: NAME\ndata: " + one JSON text + "\n\n": open it, write the JSON
 * with w, close it. False when the buffer is full or out of memory. */
static bool query_event_open(strbuf *sb, jsonw *w, const char *event)
{
    jsonw_init(w, sb);
    return strbuf_appendf(sb, "event: %s\ndata: ", event) == RAGD_OK;
}

static bool query_event_close(strbuf *sb, const jsonw *w)
{
    return jsonw_status(w) == RAGD_OK && strbuf_append(sb, "\n\n", 2) == RAGD_OK;
}

/* event: sources — {"sources": [...] (the first n), "injection": {...} when the question was flagged} */
static bool query_write_sources_event(strbuf *sb, const rag_result *res, size_t n, const rag_injection *inj)
{
    jsonw w;
    if (!query_event_open(sb, &w, "sources"))
        return false;
    jsonw_object_begin(&w);
    query_write_sources(&w, res, n);
    query_write_injection(&w, inj);
    jsonw_object_end(&w);
    return query_event_close(sb, &w);
}

/* event: token — {"text": piece} */
static bool query_write_token_event(strbuf *sb, const char *p, size_t n)
{
    jsonw w;
    if (!query_event_open(sb, &w, "token"))
        return false;
    jsonw_object_begin(&w);
    jsonw_key(&w, "text");
    jsonw_stringn(&w, p, n);
    jsonw_object_end(&w);
    return query_event_close(sb, &w);
}

/* event: done — the response without documents. */
static bool query_write_done_event(strbuf *sb, http_request *req, const rag_outcome *o, size_t n)
{
    jsonw w;
    if (!query_event_open(sb, &w, "done"))
        return false;
    query_write_response(&w, req, o, true, false, n);
    return query_event_close(sb, &w);
}

/* event: error — the envelope, for an LLM that failed after tokens went out (code
 * upstream_unavailable), or an answer the output guard withheld (prompt_injection). The
 * reason may quote a backend's words: it is made valid UTF-8 first. */
static bool query_write_error_event(strbuf *sb, http_request *req, const char *code, const char *reason)
{
    char why[600];
    snprintf(why, sizeof why, "%s", reason ? reason : "the LLM failed");
    utf8_sanitize(why);
    jsonw w;
    if (!query_event_open(sb, &w, "error"))
        return false;
    jsonw_object_begin(&w);
    jsonw_key(&w, "error");
    jsonw_object_begin(&w);
    jsonw_key(&w, "code");
    jsonw_string(&w, code);
    jsonw_key(&w, "message");
    jsonw_string(&w, why);
    jsonw_key(&w, "request_id");
    jsonw_string(&w, req->request_id);
    jsonw_object_end(&w);
    jsonw_key(&w, "detail");
    jsonw_string(&w, why);
    jsonw_object_end(&w);
    return query_event_close(sb, &w);
}

/* The whole answer of a finished query, its first n passages: JSON, or (a client that asked
 * for a stream of an answer that came whole: cached, extractive, degraded) one SSE body of
 * sources, the answer as one token, done. RAGD_ETOOBIG when it did not fit sb's cap,
 * RAGD_ENOMEM when out of memory. */
static ragd_err query_write_body(strbuf *sb, http_request *req, const rag_outcome *o, bool generate, bool sse, size_t n)
{
    if (sse) {
        bool ok = query_write_sources_event(sb, o->res, n, o->injection) &&
                  query_write_token_event(sb, o->answer ? o->answer : "", o->answer ? strlen(o->answer) : 0) &&
                  query_write_done_event(sb, req, o, n);
        /* strbuf refuses past its cap before it allocates: a failure near the cap is the cap */
        return ok ? RAGD_OK : sb->len + 2 * jsonw_string_size(o->answer) + 4096 >= sb->cap ? RAGD_ETOOBIG : RAGD_ENOMEM;
    }
    jsonw w;
    jsonw_init(&w, sb);
    query_write_response(&w, req, o, generate, true, n);
    return jsonw_status(&w);
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
    size_t sources_len;
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


/* Sends what sb holds (one or more events) onto the live stream and empties it; ok false: the
 * events could not be written (out of memory), an error event says so instead. */
static void query_stream_send(query_call *c, strbuf *sb, bool ok)
{
    static const char oom_event[] = "event: error\ndata: "
                                    "{\"error\":{\"code\":\"internal\",\"message\":\"event could not be encoded\"}}\n\n";
    if (ok)
        http_stream_write(c->out, sb->data, sb->len);
    else
        http_stream_write(c->out, oom_event, sizeof oom_event - 1);
    strbuf_cleanup(sb);
}

static void query_on_client_gone(void *arg)
{
    query_call *c = arg;
    log_debug("request %s: client went away; query cancelled", c->req->request_id);
    rag_query_cancel(c->op);
}

/* on_sources: the passages are known and an LLM will answer; the event is kept until the
 * first token, so that a query the LLM sheds can still be answered 503. */
static void query_on_sources(const rag_outcome *o, void *arg)
{
    query_call *c = arg;
    size_t cap = c->req->app->cfg.max_response_bytes;
    size_t n = query_hits_that_fit(o, cap);
    strbuf sb;
    strbuf_init(&sb, cap);
    if (n != SIZE_MAX && query_write_sources_event(&sb, o->res, n, o->injection))
        c->sources_event = strbuf_detach(&sb, &c->sources_len);
    strbuf_cleanup(&sb);
}

/* on_token (streaming): the first one turns the response into a live SSE stream (200, sources), then
 * every piece is a token event. */
static int query_on_token(const char *p, size_t n, void *arg)
{
    query_call *c = arg;
    if (!c->out) {
        if (!c->sources_event || !(c->out = http_stream_begin(c->req, "text/event-stream; charset=utf-8")))
            return 1; /* out of memory: stop; on_done answers 503 or the answer so far */
        http_unwatch_close(c->req); /* from here on the connection watches the socket, and on_close reports */
        http_retain(c->req);        /* the stream's own hold, released in on_done */
        http_on_close(c->req, query_on_client_gone, c);
        http_stream_write(c->out, c->sources_event, c->sources_len);
        http_complete(c->req); /* the loop queues the stream response now */
    }
    strbuf sb;
    strbuf_init(&sb, c->req->app->cfg.max_response_bytes);
    query_stream_send(c, &sb, query_write_token_event(&sb, p, n));
    return 0;
}

/* The end of a live stream: done, or an error event when the LLM failed after tokens. */
static void query_end_stream(query_call *c, const rag_outcome *o)
{
    http_request *req = c->req;
    size_t cap = req->app->cfg.max_response_bytes;
    size_t n = query_hits_that_fit(o, cap);
    strbuf sb;
    strbuf_init(&sb, cap);
    if (o->status == RAG_OK && !o->stream_error)
        query_stream_send(c, &sb, n != SIZE_MAX && query_write_done_event(&sb, req, o, n));
    else if (o->status != RAG_E_CANCELLED)
        query_stream_send(c, &sb,
                          query_write_error_event(&sb, req, o->stream_error ? o->stream_error_code : "upstream_unavailable",
                                                  o->stream_error ? o->stream_error : o->message));
    strbuf_cleanup(&sb);
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
    req->upstream = (http_upstream_time){.embed_ms = o->timings.embed, .rerank_ms = o->timings.rerank,
                                         .generate_ms = o->timings.generate};
    if (c->out) {
        query_end_stream(c, o);
        return;
    }
    if (o->status != RAG_OK) {
        handlers_reply_rag_status(req, o->status, o->message);
    } else {
        bool sse = c->stream && c->generate;
        size_t cap = req->app->cfg.max_response_bytes;
        size_t n = query_hits_that_fit(o, cap);
        strbuf sb;
        strbuf_init(&sb, cap);
        ragd_err rc = n == SIZE_MAX ? RAGD_ETOOBIG : query_write_body(&sb, req, o, c->generate, sse, n);
        if (rc == RAGD_OK) {
            size_t len;
            char *body = strbuf_detach(&sb, &len);
            http_reply_owned(req, 200, sse ? "text/event-stream; charset=utf-8" : "application/json; charset=utf-8", body,
                             len);
        } else if (rc == RAGD_ETOOBIG) {
            http_reply_error(req, 500, "response_too_large",
                             "the response would exceed RAGD_MAX_RESPONSE_BYTES (%zu bytes) even without passages", cap);
        } else {
            http_reply_error(req, 503, "overloaded", "%s", query_oom);
        }
        strbuf_cleanup(&sb);
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
        handlers_reply_rag_status(req, st, "server is shutting down");
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
