/* `ragd query`, `ragd health`. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli_int.h"

void cli_print_raw(const cli_response *r)
{
    if (r->body.len > 0) {
        fwrite(r->body.data, 1, r->body.len, stdout);
        if (r->body.data[r->body.len - 1] != '\n')
            putchar('\n');
    }
}

/* ---- query ---- */

/* "[n] doc_id (chunk c, score 0.873) source" per source; the source part only when known. */
static void print_sources(const json_t *sources)
{
    printf("Sources:");
    if (!json_is_array(sources) || json_array_size(sources) == 0) {
        printf(" none\n");
        return;
    }
    putchar('\n');
    size_t i;
    json_t *s;
    json_array_foreach(sources, i, s) {
        json_t *n = json_object_get(s, "n");
        const char *doc = json_string_value(json_object_get(s, "doc_id"));
        if (!doc)
            doc = json_string_value(json_object_get(s, "id"));
        const char *src = json_string_value(json_object_get(s, "source"));
        if (!src)
            src = json_string_value(json_object_get(json_object_get(s, "metadata"), "source"));
        printf("[%lld] %s (chunk %lld, score %.3f)%s%s\n",
               json_is_integer(n) ? json_integer_value(n) : (long long)i + 1, doc ? doc : "?",
               json_integer_value(json_object_get(s, "chunk")),
               json_number_value(json_object_get(s, "score")), src ? " " : "", src ? src : "");
    }
}

static void print_degraded(const json_t *resp)
{
    if (!json_is_true(json_object_get(resp, "degraded")))
        return;
    const char *why = json_string_value(json_object_get(resp, "degraded_reason"));
    fprintf(stderr, "ragd: note: degraded answer%s%s\n", why ? ": " : "", why ? why : "");
}

/* The answer, a blank line, then the sources. */
static void print_answer(const json_t *resp)
{
    const char *answer = json_string_value(json_object_get(resp, "answer"));
    if (!answer)
        answer = "";
    size_t n = strlen(answer);
    fputs(answer, stdout);
    if (n == 0 || answer[n - 1] != '\n')
        putchar('\n');
    putchar('\n');
    print_sources(json_object_get(resp, "sources"));
    print_degraded(resp);
}

static char *query_body(const cli_opts *o)
{
    char *out = NULL;
    strbuf q;
    strbuf_init(&q, 1 << 20);
    for (size_t i = 0; i < o->nargs; i++) {
        if ((i && strbuf_append(&q, " ", 1)) || strbuf_appends(&q, o->args[i]))
            goto out;
    }
    json_t *req = json_object();
    if (!req)
        goto out;
    json_t *qs = json_string(q.data ? q.data : "");
    if (!qs) {
        fprintf(stderr, "ragd: the question is not valid UTF-8\n");
        json_decref(req);
        goto out;
    }
    json_object_set_new(req, "query", qs);
    if (o->k)
        json_object_set_new(req, "k", json_integer(o->k));
    if (o->db)
        json_object_set_new(req, "db", json_string(o->db));
    if (o->method)
        json_object_set_new(req, "method", json_string(o->method));
    if (o->stream)
        json_object_set_new(req, "stream", json_true());
    out = json_dumps(req, JSON_COMPACT);
    json_decref(req);
out:
    strbuf_cleanup(&q);
    return out;
}

typedef struct {
    sse_parser sse;
    json_t *sources; /* from event: sources */
    json_t *done;    /* the event: done object */
    char error[512]; /* from event: error */
    bool tokens;     /* some token text was printed */
    char last;       /* the last character printed */
} stream_state;

static bool on_event(const char *event, const char *data, size_t len, void *ud)
{
    stream_state *st = ud;
    json_t *v = json_loadb(data, len, 0, NULL);
    if (strcmp(event, "token") == 0) {
        const char *text = json_string_value(json_object_get(v, "text"));
        size_t n = text ? strlen(text) : 0;
        if (n) {
            fwrite(text, 1, n, stdout);
            fflush(stdout);
            st->tokens = true;
            st->last = text[n - 1];
        }
    } else if (strcmp(event, "sources") == 0) {
        json_t *s = json_object_get(v, "sources");
        if (json_is_array(s)) {
            json_decref(st->sources);
            st->sources = json_incref(s);
        }
    } else if (strcmp(event, "done") == 0 && json_is_object(v)) {
        json_decref(st->done);
        st->done = json_incref(v);
    } else if (strcmp(event, "error") == 0) {
        const char *msg = json_string_value(json_object_get(json_object_get(v, "error"), "message"));
        snprintf(st->error, sizeof st->error, "%s", msg ? msg : "the server reported an error");
    }
    json_decref(v);
    return true;
}

static bool on_stream_bytes(const char *p, size_t n, void *ud)
{
    stream_state *st = ud;
    return sse_feed(&st->sse, p, n) == RAGD_OK;
}

static int query_stream(const cli_opts *o, const char *body)
{
    int status = CLI_EXIT_FAIL;
    char err[512];
    cli_response r;
    cli_response_init(&r);
    stream_state st;
    memset(&st, 0, sizeof st);
    sse_init(&st.sse, CLI_SSE_LINE_CAP, on_event, &st);
    json_t *plain = NULL;

    ragd_err e = cli_http(o->url, "/api/query", body, strlen(body), CLI_QUERY_TIMEOUT_S,
                          on_stream_bytes, &st, &r, err, sizeof err);
    if (st.tokens && st.last != '\n')
        putchar('\n');
    if (e) {
        if (st.sse.failed)
            snprintf(err, sizeof err, "a streamed event was larger than %zu MiB",
                     CLI_SSE_LINE_CAP >> 20);
        fprintf(stderr, "ragd: %s\n", err);
        goto out;
    }
    if (!r.streamed) {
        /* An error before the stream, or a server that answered with plain JSON. */
        plain = cli_answer_object(&r);
        if (!plain)
            goto out;
        print_answer(plain);
        status = CLI_EXIT_OK;
        goto out;
    }
    if (st.error[0]) {
        fprintf(stderr, "ragd: %s\n", st.error);
        goto out;
    }
    if (!st.done) {
        fprintf(stderr, "ragd: the stream ended before the answer was complete\n");
        goto out;
    }
    if (!st.tokens) {
        /* Nothing was streamed (e.g. an empty answer): the done event carries it. */
        const char *answer = json_string_value(json_object_get(st.done, "answer"));
        if (answer && *answer) {
            fputs(answer, stdout);
            if (answer[strlen(answer) - 1] != '\n')
                putchar('\n');
        }
    }
    putchar('\n');
    json_t *sources = json_object_get(st.done, "sources");
    print_sources(json_is_array(sources) ? sources : st.sources);
    print_degraded(st.done);
    status = CLI_EXIT_OK;
out:
    json_decref(plain);
    json_decref(st.sources);
    json_decref(st.done);
    sse_cleanup(&st.sse);
    cli_response_cleanup(&r);
    return status;
}

int cli_cmd_query(const cli_opts *o)
{
    int status = CLI_EXIT_FAIL;
    cli_response r;
    cli_response_init(&r);
    json_t *resp = NULL;
    char *body = query_body(o);
    if (!body) {
        fprintf(stderr, "ragd: cannot build the request\n");
        goto out;
    }
    if (o->stream) {
        status = query_stream(o, body);
        goto out;
    }
    resp = cli_request_object(o, "/api/query", body, CLI_QUERY_TIMEOUT_S, &r, NULL);
    if (!resp)
        goto out;
    if (o->json)
        cli_print_raw(&r);
    else
        print_answer(resp);
    status = CLI_EXIT_OK;
out:
    json_decref(resp);
    free(body);
    cli_response_cleanup(&r);
    return status;
}

/* ---- health ---- */

/* "  name  healthy|unhealthy  key=value ..." for one service object. */
static void print_service(const char *name, json_t *svc)
{
    json_t *h = json_object_get(svc, "healthy");
    printf("  %-10s %s", name,
           json_is_boolean(h) ? (json_is_true(h) ? "healthy" : "unhealthy") : "unknown");
    const char *key;
    json_t *v;
    json_object_foreach(svc, key, v) {
        if (strcmp(key, "healthy") == 0)
            continue;
        if (json_is_string(v))
            printf("  %s=%s", key, json_string_value(v));
        else if (json_is_integer(v))
            printf("  %s=%lld", key, json_integer_value(v));
        else if (json_is_real(v))
            printf("  %s=%g", key, json_real_value(v));
        else if (json_is_boolean(v))
            printf("  %s=%s", key, json_is_true(v) ? "true" : "false");
        else if (json_is_object(v) && json_is_string(json_object_get(v, "state")))
            printf("  %s=%s", key, json_string_value(json_object_get(v, "state")));
    }
    putchar('\n');
}

int cli_cmd_health(const cli_opts *o)
{
    int status = CLI_EXIT_FAIL;
    cli_response r;
    cli_response_init(&r);
    bool reached;
    json_t *resp = cli_request_object(o, "/health", NULL, CLI_SHORT_TIMEOUT_S, &r, &reached);
    if (!resp) {
        if (!reached)
            status = CLI_EXIT_UNREACHABLE;
        goto out;
    }
    const char *s = json_string_value(json_object_get(resp, "status"));
    printf("%s\n", s ? s : "unknown");
    json_t *services = json_object_get(resp, "services");
    const char *name;
    json_t *svc;
    json_object_foreach(services, name, svc) {
        if (json_is_object(svc))
            print_service(name, svc);
    }
    status = (s && strcmp(s, "healthy") == 0) ? CLI_EXIT_OK : CLI_EXIT_FAIL;
out:
    json_decref(resp);
    cli_response_cleanup(&r);
    return status;
}
