/* The shared core of the Ollama- and OpenAI-compatible routes (compat.h,
 * docs/internals/compat.md): model names, conversations, and a chat run through the engine
 * (rag/ models) or the upstream layer (any other model), its events handed to the dialect's
 * renderer. */
#include "http/compat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "app.h"
#include "http/handlers.h"
#include "rag/prompt.h"
#include "util/clock.h"
#include "util/log.h"
#include "util/names.h"
#include "util/utf8.h"

#define COMPAT_CONVERSATION_MAX ((size_t)4 << 20) /* bytes of message text in one request */

bool compat_model_copy(http_request *req, const char *model, char out[COMPAT_MODEL_MAX + 1])
{
    if (!model || !compat_model_name_ok(model)) {
        http_reply_error(req, 400, "invalid_request", "model: a name of 1 to %d characters of [A-Za-z0-9._:/@+-]",
                         COMPAT_MODEL_MAX);
        return false;
    }
    snprintf(out, COMPAT_MODEL_MAX + 1, "%s", model);
    return true;
}

/* ---- names ---- */

bool compat_model_name_ok(const char *model)
{
    size_t n = strlen(model);
    if (n == 0 || n > COMPAT_MODEL_MAX)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = model[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                  strchr("._:/@+-", ch) != NULL;
        if (!ok)
            return false;
    }
    return true;
}

bool compat_rag_db(const char *model, char db[STORE_NAME_MAX + 1])
{
    if (strncmp(model, "rag/", 4) != 0)
        return false;
    const char *name = model + 4;
    size_t n = strlen(name);
    if (n > 7 && strcmp(name + n - 7, ":latest") == 0)
        n -= 7;
    if (n == 0 || n > STORE_NAME_MAX)
        return false;
    memcpy(db, name, n);
    db[n] = '\0';
    return names_db_valid(db);
}

void compat_now_rfc3339(char *out, size_t outlen)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    char day[32];
    strftime(day, sizeof day, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, outlen, "%s.%09ldZ", day, ts.tv_nsec);
}

/* ---- errors ---- */

void compat_reply_model_not_found(http_request *req, const char *model)
{
    if (req->dialect == HTTP_DIALECT_OPENAI)
        http_reply_error(req, 404, "model_not_found", "The model '%s' does not exist", model);
    else
        http_reply_error(req, 404, "model_not_found", "model \"%s\" not found, try pulling it first", model);
}

void compat_reply_llm_status(http_request *req, llm_status st, const char *message, const char *model)
{
    const char *why = message && message[0] ? message : llm_status_name(st);
    switch (st) {
    case LLM_NOT_FOUND: compat_reply_model_not_found(req, model); return;
    case LLM_OVERLOADED:
        http_reply_error(req, 503, "overloaded", "server busy, please try again.  %s", why);
        return;
    case LLM_UNAVAILABLE: http_reply_error(req, 503, "upstream_unavailable", "the LLM backend is unavailable: %s", why); return;
    case LLM_TIMEOUT: http_reply_error(req, 504, "upstream_timeout", "the LLM backend did not answer in time: %s", why); return;
    case LLM_REJECTED: http_reply_error(req, 400, "upstream_rejected", "%s", why); return;
    case LLM_BAD_REPLY: http_reply_error(req, 502, "bad_gateway", "the LLM backend's reply was not understood: %s", why); return;
    case LLM_CANCELLED: http_reply_error(req, 503, "not_ready", "server is shutting down"); return;
    case LLM_OK: break;
    }
    http_reply_error(req, 500, "internal", "unexpected upstream status");
}

/* ---- a call ---- */

static void compat_call_free(void *arg)
{
    compat_call *c = arg;
    rag_request_cleanup(&c->rr);
    json_decref(c->hold);
    strbuf_cleanup(&c->text);
    free(c);
}

compat_call *compat_call_new(http_request *req, const compat_renderer *r, compat_shape shape)
{
    compat_call *c = calloc(1, sizeof *c);
    if (!c) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return NULL;
    }
    c->req = req;
    c->a = req->app;
    c->r = r;
    c->shape = shape;
    c->created = (long long)time(NULL);
    unsigned long long x = 0;
    for (const char *p = req->request_id; *p; p++)
        x = x * 1099511628211ULL ^ (unsigned char)*p;
    snprintf(c->id, sizeof c->id, "chatcmpl-%016llx", x);
    /* a pass-through's text, with room left under the response cap for the object around it */
    size_t cap = req->app->cfg.max_response_bytes;
    strbuf_init(&c->text, cap > ((size_t)128 << 10) ? cap - ((size_t)64 << 10) : cap / 2);
    c->hold = json_object();
    if (!c->hold) {
        free(c);
        http_reply_error(req, 503, "overloaded", "out of memory");
        return NULL;
    }
    http_set_cleanup(req, compat_call_free, c);
    return c;
}

/* ---- conversations ---- */

/* A message's content as one string: a string, or a list of text parts joined by newlines.
 * NULL (after replying 400) for anything else; a new reference otherwise. */
static json_t *compat_content(compat_call *c, json_t *content, size_t i)
{
    if (json_is_string(content))
        return json_incref(content);
    if (json_is_null(content))
        return json_string("");
    if (!json_is_array(content)) {
        http_reply_error(c->req, 400, "invalid_request", "messages[%zu].content: must be a string", i);
        return NULL;
    }
    strbuf sb;
    strbuf_init(&sb, COMPAT_CONVERSATION_MAX);
    size_t j;
    json_t *part;
    json_array_foreach(content, j, part) {
        const char *type = json_string_value(json_object_get(part, "type"));
        const char *text = json_string_value(json_object_get(part, "text"));
        if (!type || strcmp(type, "text") != 0 || !text) {
            strbuf_cleanup(&sb);
            http_reply_error(c->req, 400, "invalid_request",
                             "messages[%zu].content[%zu]: only {\"type\":\"text\",\"text\":...} parts are supported", i, j);
            return NULL;
        }
        if ((j > 0 && strbuf_append(&sb, "\n", 1) != RAGD_OK) || strbuf_appends(&sb, text) != RAGD_OK) {
            strbuf_cleanup(&sb);
            http_reply_error(c->req, 413, "payload_too_large", "the conversation is over %zu bytes",
                             COMPAT_CONVERSATION_MAX);
            return NULL;
        }
    }
    json_t *s = json_stringn(sb.data ? sb.data : "", sb.len);
    strbuf_cleanup(&sb);
    if (!s)
        http_reply_error(c->req, 503, "overloaded", "out of memory");
    return s;
}

bool compat_messages(compat_call *c, json_t *messages)
{
    http_request *req = c->req;
    if (!json_is_array(messages) || json_array_size(messages) == 0) {
        http_reply_error(req, 400, "invalid_request", "messages: a non-empty list of {\"role\",\"content\"} is required");
        return false;
    }
    if (json_array_size(messages) > COMPAT_MAX_MESSAGES) {
        http_reply_error(req, 400, "invalid_request", "messages: at most %d messages, not %zu", COMPAT_MAX_MESSAGES,
                         json_array_size(messages));
        return false;
    }
    static const char *const roles[] = {"system", "user", "assistant", "tool", "developer", NULL};
    json_t *out = json_array();
    if (!out || json_object_set_new(c->hold, "messages", out) != 0) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return false;
    }
    size_t total = 0, i;
    json_t *m;
    json_array_foreach(messages, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        bool known = false;
        for (size_t r = 0; role && roles[r]; r++)
            known = known || strcmp(role, roles[r]) == 0;
        if (!json_is_object(m) || !known) {
            http_reply_error(req, 400, "invalid_request",
                             "messages[%zu]: an object whose role is system, user, assistant or tool", i);
            return false;
        }
        json_t *images = json_object_get(m, "images"); /* Ollama's; the upstream API carries none */
        if (images && !json_is_null(images) && !(json_is_array(images) && json_array_size(images) == 0)) {
            http_reply_error(req, 400, "invalid_request", "messages[%zu].images: images are not supported", i);
            return false;
        }
        json_t *content = compat_content(c, json_object_get(m, "content"), i);
        if (!content)
            return false;
        total += json_string_length(content);
        if (total > COMPAT_CONVERSATION_MAX) {
            json_decref(content);
            http_reply_error(req, 413, "payload_too_large", "the conversation is over %zu bytes", COMPAT_CONVERSATION_MAX);
            return false;
        }
        json_t *one = json_pack("{s:s,s:o}", "role", strcmp(role, "developer") == 0 ? "system" : role, "content", content);
        if (!one || json_array_append_new(out, one) != 0) {
            http_reply_error(req, 503, "overloaded", "out of memory");
            return false;
        }
    }
    c->messages = out;
    return true;
}

bool compat_no_tools(compat_call *c, json_t *body)
{
    json_t *tools = json_object_get(body, "tools");
    if (!tools || json_is_null(tools) || (json_is_array(tools) && json_array_size(tools) == 0))
        return true;
    http_reply_error(c->req, 400, "tools_unsupported", "%s does not support tools", c->model);
    return false;
}

/* ---- the answer's sources, for any client ---- */

/* A passage's title: its document's as ingest derived it, else its metadata's "title" when
 * a string (one ingest did not take as a title, e.g. blank), else NULL. */
static char *compat_title(const rag_hit *h)
{
    if (h->row.title) {
        char *out = strndup(h->row.title, 200);
        if (out)
            utf8_sanitize(out);
        return out;
    }
    const char *m = h->row.metadata_json;
    if (!m || m[0] != '{' || !strstr(m, "\"title\""))
        return NULL;
    json_t *meta = json_loads(m, 0, NULL);
    const char *t = json_string_value(json_object_get(meta, "title"));
    char *out = t && t[0] ? strndup(t, 200) : NULL;
    json_decref(meta);
    if (out)
        utf8_sanitize(out);
    return out;
}

/* Whether passage n (1-based) is listed: cited, or every passage when none is. */
static bool compat_listed(const rag_outcome *o, size_t n)
{
    if (o->n_cited == 0)
        return true;
    for (size_t i = 0; i < o->n_cited; i++)
        if ((size_t)o->cited[i] == n)
            return true;
    return false;
}

bool compat_sources_text(strbuf *sb, const rag_outcome *o)
{
    if (!o->res || o->res->n == 0)
        return true;
    if (strbuf_appends(sb, "\n\nSources:") != RAGD_OK)
        return false;
    for (size_t i = 0; i < o->res->n; i++) {
        if (!compat_listed(o, i + 1))
            continue;
        const rag_hit *h = &o->res->hits[i];
        char *title = compat_title(h);
        ragd_err rc = title ? strbuf_appendf(sb, "\n[%zu] %s (%s)", i + 1, title, h->row.doc_id)
                            : strbuf_appendf(sb, "\n[%zu] %s", i + 1, h->row.doc_id);
        free(title);
        if (rc != RAGD_OK)
            return false;
    }
    return true;
}

/* Whether the answer is extractive in place of the LLM's: not when no passage was found
 * (then no LLM is asked, and "No relevant passages…" is the whole truth). */
static bool compat_llm_missing(const rag_outcome *o)
{
    bool extractive = o->provider && strcmp(o->provider, "extractive") == 0;
    return extractive && (o->degraded_reason != NULL || (o->res && o->res->n > 0));
}

const char *compat_extractive_note(const rag_outcome *o)
{
    if (!compat_llm_missing(o))
        return "";
    /* degraded: an LLM was to answer and could not; else none is in use (the defaults with no
     * backend ever reached), as /api/query tells them apart */
    return o->degraded_reason ? "(LLM unavailable \xe2\x80\x94 extractive answer from the sources)\n\n"
                              : "(Extractive answer from the sources \xe2\x80\x94 no LLM is in use)\n\n";
}

void compat_write_rag_extras(jsonw *w, const rag_outcome *o)
{
    jsonw_key(w, "sources");
    jsonw_array_begin(w);
    for (size_t i = 0; o->res && i < o->res->n; i++) {
        const rag_hit *h = &o->res->hits[i];
        char id[300];
        snprintf(id, sizeof id, "%s#%d", h->row.doc_id, h->row.ordinal);
        char *title = compat_title(h);
        jsonw_object_begin(w);
        jsonw_key(w, "n");
        jsonw_int(w, (int64_t)i + 1);
        jsonw_key(w, "id");
        jsonw_string(w, id);
        jsonw_key(w, "doc_id");
        jsonw_string(w, h->row.doc_id);
        jsonw_key(w, "title");
        jsonw_string(w, title);
        jsonw_key(w, "source");
        jsonw_string(w, h->row.source);
        jsonw_key(w, "score");
        jsonw_double(w, h->score);
        jsonw_key(w, "text");
        jsonw_string(w, h->row.text);
        jsonw_object_end(w);
        free(title);
    }
    jsonw_array_end(w);
    jsonw_key(w, "rag");
    jsonw_object_begin(w);
    jsonw_key(w, "collection");
    jsonw_string(w, o->coll ? o->coll->name : NULL);
    jsonw_key(w, "provider");
    jsonw_string(w, o->provider);
    jsonw_key(w, "model");
    jsonw_string(w, o->model);
    jsonw_key(w, "degraded");
    jsonw_bool(w, o->degraded_reason != NULL); /* as /api/query's `degraded` */
    jsonw_key(w, "degraded_reason");
    jsonw_string(w, o->degraded_reason);
    jsonw_key(w, "cached");
    jsonw_bool(w, o->cached);
    jsonw_key(w, "reranked");
    jsonw_bool(w, o->reranked);
    jsonw_key(w, "cited");
    jsonw_array_begin(w);
    for (size_t i = 0; i < o->n_cited; i++)
        jsonw_int(w, o->cited[i]);
    jsonw_array_end(w);
    jsonw_object_end(w);
}

void compat_reply_built(http_request *req, strbuf *sb, bool ok, const char *what)
{
    if (ok) {
        size_t len;
        char *text = strbuf_detach(sb, &len);
        http_reply_owned(req, 200, "application/json; charset=utf-8", text, len);
    } else {
        http_reply_error(req, 500, "response_too_large", "the %s would exceed RAGD_MAX_RESPONSE_BYTES", what);
    }
    strbuf_cleanup(sb);
}

bool compat_write_vector(strbuf *sb, const float *v, size_t dim)
{
    if (strbuf_append(sb, "[", 1) != RAGD_OK)
        return false;
    for (size_t i = 0; i < dim; i++)
        if (strbuf_appendf(sb, i ? ",%.9g" : "%.9g", (double)v[i]) != RAGD_OK)
            return false;
    return strbuf_append(sb, "]", 1) == RAGD_OK;
}

/* ---- the stream ---- */

static void compat_on_client_gone(void *arg)
{
    compat_call *c = arg;
    log_debug("request %s: client went away; chat cancelled", c->req->request_id);
    c->gone = true;
    if (c->op)
        rag_query_cancel(c->op);
    if (c->task)
        llm_task_cancel(c->task);
}

/* Turns the response into the live stream (200): the first piece is about to go. False
 * when out of memory. */
static bool compat_stream_open(compat_call *c)
{
    if (c->out)
        return true;
    c->out = http_stream_begin(c->req, c->r->stream_type);
    if (!c->out)
        return false;
    http_unwatch_close(c->req); /* the connection watches the socket from here on */
    http_retain(c->req);        /* the stream's own hold, released at its end */
    http_on_close(c->req, compat_on_client_gone, c);
    http_complete(c->req);      /* the loop sends the head now */
    return true;
}

/* Sends one piece of text on the live stream, in the dialect's shape. */
static void compat_stream_piece(compat_call *c, const char *p, size_t n)
{
    strbuf sb;
    strbuf_init(&sb, c->a->cfg.max_response_bytes);
    if (c->r->piece(c, &sb, p, n))
        http_stream_write(c->out, sb.data, sb.len);
    strbuf_cleanup(&sb);
}

/* Ends the live stream: the final chunk, or the dialect's mid-stream error. The request
 * (and c with it) may be freed by the release: nothing touches c after this. */
static void compat_stream_close(compat_call *c, const compat_final *f, const char *code, const char *error)
{
    http_request *req = c->req;
    strbuf sb;
    strbuf_init(&sb, c->a->cfg.max_response_bytes);
    bool ok = f ? c->r->final(c, &sb, f) : c->r->fail(c, &sb, code, error);
    if (ok)
        http_stream_write(c->out, sb.data, sb.len);
    strbuf_cleanup(&sb);
    http_stream_end(c->out);
    http_on_close(req, NULL, NULL);
    http_release(req);
}

/* A whole answer as the response: a stream body of pieces and final when the client asked
 * for a stream (it came whole: extractive, cached, short), else the dialect's object. */
static void compat_reply_whole(compat_call *c, const compat_final *f, const char *prefix, const char *body,
                               size_t body_len, const char *suffix, size_t suffix_len)
{
    strbuf sb;
    strbuf_init(&sb, c->a->cfg.max_response_bytes);
    strbuf all;
    strbuf_init(&all, c->a->cfg.max_response_bytes);
    bool ok = strbuf_appends(&all, prefix) == RAGD_OK && strbuf_append(&all, body ? body : "", body_len) == RAGD_OK &&
              strbuf_append(&all, suffix ? suffix : "", suffix_len) == RAGD_OK;
    compat_final whole = *f;
    whole.text = all.data ? all.data : "";
    whole.len = all.len;
    if (ok && c->stream)
        ok = (all.len == 0 || c->r->piece(c, &sb, whole.text, whole.len)) && c->r->final(c, &sb, &whole);
    else if (ok)
        ok = c->r->whole(c, &sb, &whole);
    if (ok) {
        size_t len;
        char *text = strbuf_detach(&sb, &len);
        http_reply_owned(c->req, 200, c->stream ? c->r->stream_type : "application/json; charset=utf-8", text, len);
    } else {
        http_reply_error(c->req, 500, "response_too_large", "the answer would exceed RAGD_MAX_RESPONSE_BYTES (%zu bytes)",
                         c->a->cfg.max_response_bytes);
    }
    strbuf_cleanup(&all);
    strbuf_cleanup(&sb);
}

/* ---- a rag/ model: the engine ---- */

static long long compat_ns(double ms) { return ms > 0 ? (long long)(ms * 1e6) : 0; }

/* The counters of a rag/ answer: the engine's timings as Ollama's durations, the prompt's
 * estimated tokens, and the answer's at four bytes a token (the engine does not pass the
 * backend's counts on). */
static void compat_rag_final(const compat_call *c, const rag_outcome *o, size_t answer_len, compat_final *f)
{
    memset(f, 0, sizeof *f);
    f->done_reason = "stop";
    f->rag = o;
    f->total_ns = compat_ns(clock_now_ms() - c->req->t_start_ms);
    f->prompt_eval_ns = compat_ns(o->timings.embed + o->timings.retrieve + o->timings.rerank);
    f->eval_ns = compat_ns(o->timings.generate);
    f->prompt_tokens = o->prompt ? (long long)o->prompt->tokens_estimate : (long long)(c->rr.len + 3) / 4;
    f->completion_tokens = (long long)(answer_len + 3) / 4;
}

static int compat_rag_on_token(const char *p, size_t n, void *arg)
{
    compat_call *c = arg;
    if (c->gone)
        return 1;
    if (!compat_stream_open(c))
        return 1; /* out of memory: stop; on_done answers with what there is */
    compat_stream_piece(c, p, n);
    if (strbuf_append(&c->text, p, n) != RAGD_OK)
        strbuf_truncate(&c->text, 0); /* only its length is used: an estimate */
    return http_stream_ended(c->out) ? 1 : 0; /* capped (a client that does not read): stop the LLM */
}

static void compat_rag_on_done(const rag_outcome *o, void *arg)
{
    compat_call *c = arg;
    http_request *req = c->req;
    c->op = NULL;
    if (req->close_arg == c)
        http_unwatch_close(req);
    req->upstream = (http_upstream_time){.embed_ms = o->timings.embed, .rerank_ms = o->timings.rerank,
                                         .generate_ms = o->timings.generate};
    strbuf suffix;
    strbuf_init(&suffix, c->a->cfg.max_response_bytes);
    if (o->status == RAG_OK && !c->format) /* a format asked for (JSON): the text stays the LLM's alone */
        compat_sources_text(&suffix, o);
    if (c->out) {
        if (o->status == RAG_OK && !o->stream_error) {
            compat_final f;
            compat_rag_final(c, o, o->answer ? strlen(o->answer) : 0, &f);
            if (suffix.len > 0)
                compat_stream_piece(c, suffix.data, suffix.len);
            strbuf_cleanup(&suffix);
            compat_stream_close(c, &f, NULL, NULL);
        } else {
            strbuf_cleanup(&suffix);
            compat_stream_close(c, NULL, o->stream_error ? o->stream_error_code : "upstream_unavailable",
                                o->stream_error ? o->stream_error : o->message);
        }
        return;
    }
    if (o->status == RAG_E_NOT_FOUND) {
        compat_reply_model_not_found(req, c->model);
    } else if (o->status != RAG_OK) {
        handlers_reply_rag_status(req, o->status, o->message);
    } else {
        compat_final f;
        size_t alen = o->answer ? strlen(o->answer) : 0;
        compat_rag_final(c, o, alen, &f);
        compat_reply_whole(c, &f, compat_extractive_note(o), o->answer, alen, suffix.data, suffix.len);
    }
    strbuf_cleanup(&suffix);
    http_complete(req);
}

static const rag_sink compat_rag_stream_sink = {.on_token = compat_rag_on_token, .on_done = compat_rag_on_done};
static const rag_sink compat_rag_plain_sink = {.on_done = compat_rag_on_done};

/* The rag_request of a chat with collection db: the last user message is the question, the
 * user and assistant turns before it (the latest COMPAT_MAX_HISTORY) the history. */
static bool compat_rag_request(compat_call *c, const char *db)
{
    http_request *req = c->req;
    rag_request *rr = &c->rr;
    memset(rr, 0, sizeof *rr);
    size_t n = json_array_size(c->messages);
    size_t last = n;
    for (size_t i = n; i-- > 0;) {
        const char *role = json_string_value(json_object_get(json_array_get(c->messages, i), "role"));
        if (strcmp(role, "user") == 0) {
            last = i;
            break;
        }
    }
    if (last == n) {
        http_reply_error(req, 400, "invalid_request", "messages: a rag/ model answers the last user message; there is none");
        return false;
    }
    json_t *q = json_object_get(json_array_get(c->messages, last), "content");
    size_t qlen = json_string_length(q);
    if (qlen == 0 || qlen > COMPAT_QUESTION_MAX) {
        http_reply_error(req, 400, "invalid_request", "the last user message must have 1 to %d bytes, not %zu",
                         COMPAT_QUESTION_MAX, qlen);
        return false;
    }
    size_t kept = 0;
    rr->history = calloc(COMPAT_MAX_HISTORY, sizeof *rr->history);
    if (!rr->history) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return false;
    }
    size_t first = 0;
    size_t turns = 0;
    for (size_t i = last; i-- > 0;) { /* the latest turns first, to know where to start */
        const char *role = json_string_value(json_object_get(json_array_get(c->messages, i), "role"));
        if (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0)
            continue;
        if (++turns > COMPAT_MAX_HISTORY)
            break;
        first = i;
    }
    for (size_t i = first; i < last && kept < COMPAT_MAX_HISTORY; i++) {
        json_t *m = json_array_get(c->messages, i);
        const char *role = json_string_value(json_object_get(m, "role"));
        if (strcmp(role, "user") != 0 && strcmp(role, "assistant") != 0)
            continue;
        json_t *t = json_object_get(m, "content");
        rr->history[kept].role = role;
        rr->history[kept].text = json_string_value(t);
        rr->history[kept].len = json_string_length(t);
        kept++;
    }
    rr->n_history = kept;
    rr->hold = json_incref(c->hold);
    rr->db = db;
    rr->text = json_string_value(q);
    rr->len = qlen;
    rr->k = 5;
    rr->method = RAG_HYBRID;
    rr->generate = true;
    rr->use_cache = kept == 0; /* an answer depends on the turns before it: not shared */
    rr->provider = RAG_PROVIDER_AUTO;
    rr->rerank = c->a->cfg.rerank_default;
    rr->options = c->options;
    rr->format = c->format;
    rr->keep_alive = c->keep_alive;
    return true;
}

/* options.model picks the LLM of a rag/ chat (LLM_MODEL or RAGD_LLM_MODELS); it is taken
 * out of the options the LLM gets. */
static bool compat_rag_model(compat_call *c)
{
    json_t *m = json_object_get(c->options, "model");
    if (!m)
        return true;
    const char *model = json_string_value(m);
    if (!model || !handlers_llm_model_allowed(&c->a->cfg, model)) {
        http_reply_error(c->req, 400, "invalid_request",
                         "options.model: '%s' is not a configured model (LLM_MODEL, RAGD_LLM_MODELS)",
                         model ? model : "(not a string)");
        return false;
    }
    json_t *copy = json_copy(c->options);
    if (!copy || json_object_set_new(c->hold, "llm_options", copy) != 0 ||
        json_object_set_new(c->hold, "llm_model", json_string(model)) != 0) {
        http_reply_error(c->req, 503, "overloaded", "out of memory");
        return false;
    }
    json_object_del(copy, "model");
    c->options = copy;
    c->rr.options = copy;
    c->rr.model = json_string_value(json_object_get(c->hold, "llm_model"));
    return true;
}

static void compat_rag_run(compat_call *c, const char *db_name)
{
    http_request *req = c->req;
    json_t *db = json_string(db_name);
    if (!db || json_object_set_new(c->hold, "db", db) != 0) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    if (!compat_rag_request(c, json_string_value(db)) || !compat_rag_model(c))
        return;
    c->is_rag = true;
    http_go_async(req);
    const rag_sink *sink = c->stream ? &compat_rag_stream_sink : &compat_rag_plain_sink;
    rag_status st = rag_query_start(c->a->engine, &c->rr, sink, c, &c->op);
    memset(&c->rr, 0, sizeof c->rr); /* taken by the engine */
    if (st == RAG_OK) {
        http_watch_close(req, compat_on_client_gone, c);
        return;
    }
    if (st == RAG_E_OVERLOADED)
        http_reply_error(req, 503, "overloaded", "server busy, please try again.  the generator is saturated");
    else
        handlers_reply_rag_status(req, st, "server is shutting down");
    http_complete(req);
}

/* ---- any other model: through the upstream layer ---- */

static int compat_llm_on_text(const char *p, size_t n, void *arg)
{
    compat_call *c = arg;
    if (c->gone)
        return 1;
    if (c->stream) {
        if (!compat_stream_open(c))
            return 1;
        compat_stream_piece(c, p, n);
        return http_stream_ended(c->out) ? 1 : 0; /* capped (a client that does not read): stop the backend */
    }
    if (strbuf_append(&c->text, p, n) == RAGD_OK)
        return 0;
    c->text_capped = true; /* past the response cap: stop there, and say the answer was cut */
    return 1;
}

static void compat_llm_on_done(llm_status st, const char *message, const llm_chat_stats *stats, void *arg)
{
    compat_call *c = arg;
    http_request *req = c->req;
    c->task = NULL;
    if (req->close_arg == c)
        http_unwatch_close(req);
    if (stats)
        req->upstream.generate_ms = stats->total_ms;
    compat_final f;
    memset(&f, 0, sizeof f);
    f.done_reason = c->text_capped ? "length" : stats && stats->done_reason[0] ? stats->done_reason : "stop";
    f.prompt_tokens = stats ? stats->prompt_tokens : -1;
    f.completion_tokens = stats ? stats->completion_tokens : -1;
    f.total_ns = compat_ns(clock_now_ms() - req->t_start_ms);
    f.load_ns = stats && stats->load_ns > 0 ? stats->load_ns : 0;
    f.prompt_eval_ns = stats && stats->prompt_eval_ns > 0 ? stats->prompt_eval_ns : 0;
    f.eval_ns = stats && stats->eval_ns > 0 ? stats->eval_ns : 0;
    if (c->out) {
        if (st == LLM_OK)
            compat_stream_close(c, &f, NULL, NULL);
        else
            compat_stream_close(c, NULL, "upstream_unavailable", message && message[0] ? message : llm_status_name(st));
        return;
    }
    if (st == LLM_OK)
        compat_reply_whole(c, &f, "", c->text.data, c->text.len, NULL, 0);
    else
        compat_reply_llm_status(req, st, message, c->model);
    http_complete(req);
}

static void compat_llm_run(compat_call *c)
{
    http_request *req = c->req;
    llm *l = c->a->generator;
    if (!l) { /* no backend: no model but the collections */
        compat_reply_model_not_found(req, c->model);
        return;
    }
    llm_chat_request rq = {.messages = c->messages, .options = c->options, .format = c->format,
                           .keep_alive = c->keep_alive};
    llm_chat_handlers h = {.on_text = compat_llm_on_text, .on_done = compat_llm_on_done, .arg = c};
    http_go_async(req);
    c->task = llm_chat_messages(l, c->model, &rq, clock_now_ms() + c->a->cfg.generate_timeout_s * 1000.0, &h, NULL);
    if (!c->task) {
        http_reply_error(req, 503, "overloaded", "the chat could not start (out of memory or shutting down)");
        http_complete(req);
        return;
    }
    http_watch_close(req, compat_on_client_gone, c);
}

void compat_chat_run(compat_call *c)
{
    char db[STORE_NAME_MAX + 1];
    if (compat_rag_db(c->model, db))
        compat_rag_run(c, db);
    else
        compat_llm_run(c);
}
