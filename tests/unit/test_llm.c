/* The LLM call layer against the real fake Ollama (tools/fake_ollama, a separate python3
 * process on loopback): batched embeddings, streamed chat, 503-busy as overload (not a
 * breaker failure), five failures opening the breaker and the next call failing without
 * touching the network, recovery through a half-open trial, an error line mid-stream, and
 * fail-over to a second backend when the first refuses connections. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <curl/curl.h>
#include <event2/event.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "upstream/llm.h"
#include "util/clock.h"
#include "util/strbuf.h"

#include "fake_ollama_proc.h"

static fake fakes[2];

/* POSTs (body != NULL) or GETs an admin route; returns the parsed reply. */
static json_t *admin(fake *f, const char *path, const char *body)
{
    char url[128];
    snprintf(url, sizeof url, "%s%s", f->admin, path);
    strbuf sb;
    strbuf_init(&sb, 1 << 20);
    CURL *c = curl_easy_init();
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sb);
    if (body)
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_cleanup(c);
    json_t *j = json_loadb(sb.data ? sb.data : "", sb.len, 0, NULL);
    strbuf_cleanup(&sb);
    return j;
}

static long stat_int(fake *f, const char *key)
{
    json_t *j = admin(f, "/__admin/stats", NULL);
    long v = (long)json_integer_value(json_object_get(j, key));
    json_decref(j);
    return v;
}

static int group_setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return fake_start(&fakes[0]) || fake_start(&fakes[1]);
}

static int group_teardown(void **state)
{
    (void)state;
    fake_stop(&fakes[0]);
    fake_stop(&fakes[1]);
    curl_global_cleanup();
    return 0;
}

static int reset_fakes(void **state)
{
    (void)state;
    for (int i = 0; i < 2; i++) {
        json_decref(admin(&fakes[i], "/__admin/reset", "{}"));
        json_decref(admin(&fakes[i], "/__admin/stats/reset", "{}"));
    }
    return 0;
}

/* ---- a loop and an llm per test ---- */

typedef struct {
    struct event_base *base;
    upstream_client *client;
    llm *l;
    int pending;
    llm_status last;
    char text[4096];
    size_t text_len;
    size_t dim;
    int n_overloaded;
    int n_unavailable;
    double norm0;
    char message[320];
    llm_chat_stats stats;
    json_t *meta; /* the last meta reply (a new reference), or NULL */
} env;

static double now_ms(void *arg)
{
    (void)arg;
    return clock_now_ms();
}

static void env_init(env *e, llm_config *cfg, const char *const *urls, size_t n_urls)
{
    memset(e, 0, sizeof *e);
    e->base = event_base_new();
    e->client = upstream_client_new(e->base, NULL);
    cfg->urls = urls;
    cfg->n_urls = n_urls;
    char err[256];
    upstream_clock clk = {.now_ms = now_ms};
    assert_int_equal(llm_new(e->base, e->client, cfg, clk, upstream_rand_system(), &e->l, err, sizeof err), RAGD_OK);
}

/* env_init against the first fake backend alone. */
static void env_init_one(env *e, llm_config *cfg)
{
    static const char *url[1];
    url[0] = fakes[0].url;
    env_init(e, cfg, url, 1);
}

static void env_free(env *e)
{
    json_decref(e->meta);
    llm_free(e->l);
    upstream_client_free(e->client);
    event_base_free(e->base);
}

static void env_wait(env *e)
{
    if (e->pending > 0)
        event_base_loop(e->base, EVLOOP_NO_EXIT_ON_EMPTY);
}

static void on_embed(llm_status st, const float *v, size_t dim, const char *message, void *arg)
{
    env *e = arg;
    e->last = st;
    e->dim = dim;
    snprintf(e->message, sizeof e->message, "%s", message);
    if (v && dim) {
        double s = 0;
        for (size_t i = 0; i < dim; i++)
            s += (double)v[i] * v[i];
        e->norm0 = sqrt(s);
    }
    if (--e->pending == 0)
        event_base_loopbreak(e->base);
}

static int on_text(const char *p, size_t n, void *arg)
{
    env *e = arg;
    if (e->text_len + n < sizeof e->text) {
        memcpy(e->text + e->text_len, p, n);
        e->text_len += n;
    }
    return 0;
}

static void on_chat_done(llm_status st, const char *message, const llm_chat_stats *s, void *arg)
{
    env *e = arg;
    e->stats = *s;
    e->last = st;
    e->n_overloaded += st == LLM_OVERLOADED;
    e->n_unavailable += st == LLM_UNAVAILABLE;
    snprintf(e->message, sizeof e->message, "%s", message);
    if (--e->pending == 0)
        event_base_loopbreak(e->base);
}

static long chat_requests(fake *f)
{
    json_t *st = admin(f, "/__admin/stats", NULL);
    long n = (long)json_integer_value(json_object_get(json_object_get(st, "requests"), "/api/chat"));
    json_decref(st);
    return n;
}

static void chat_once(env *e)
{
    llm_chat_handlers h = {.on_text = on_text, .on_done = on_chat_done, .arg = e};
    e->pending++;
    e->text_len = 0;
    assert_non_null(llm_chat(e->l, "llama3.2", "Answer from the context.", "Context: [1] The sky is blue.\nQ: colour?",
                             NULL, clock_now_ms() + 10000, &h, NULL));
    env_wait(e);
}

static breaker_snapshot chat_breaker(env *e, size_t host)
{
    char name[200];
    snprintf(name, sizeof name, "%s chat/llama3.2", llm_host_url(e->l, host));
    breaker *b = breaker_registry_find(llm_breakers(e->l), name);
    assert_non_null(b);
    breaker_snapshot s;
    breaker_snapshot_get(b, &s);
    return s;
}

/* ---- tests ---- */

static void test_embed_in_batches(void **state)
{
    (void)state;
    llm_config cfg;
    llm_config_default(&cfg);
    env e;
    env_init_one(&e, &cfg);
    const char *texts[100];
    size_t lens[100];
    char buf[100][32];
    for (int i = 0; i < 100; i++) {
        snprintf(buf[i], sizeof buf[i], "document number %d", i);
        texts[i] = buf[i];
        lens[i] = strlen(buf[i]);
    }
    e.pending = 1;
    assert_non_null(llm_embed(e.l, "nomic-embed-text", texts, lens, 100, clock_now_ms() + 10000, on_embed, &e));
    env_wait(&e);
    assert_int_equal(e.last, LLM_OK);
    assert_int_equal(e.dim, 768);
    assert_true(fabs(e.norm0 - 1.0) < 1e-3);
    assert_int_equal(stat_int(&fakes[0], "embed_calls"), 4); /* ceil(100 / 32) */
    assert_int_equal(stat_int(&fakes[0], "embed_inputs_total"), 100);
    env_free(&e);
}

/* An embed reply larger than its texts can need (8192 numbers each) is cut off there: a
 * backend sending one 2 MiB line for one text is refused after ~320 KiB, not read whole
 * (before, up to 64 MiB per call were held). */
static void test_embed_reply_capped_by_its_texts(void **state)
{
    (void)state;
    json_decref(admin(&fakes[0], "/__admin/config",
                      "{\"fault\": \"huge_line\", \"fault_huge_bytes\": 2097152, \"fault_paths\": [\"/api/embed\"]}"));
    llm_config cfg;
    llm_config_default(&cfg);
    cfg.retry.max_attempts = 1;
    env e;
    env_init_one(&e, &cfg);
    const char *text = "one short text";
    size_t len = strlen(text);
    e.pending = 1;
    assert_non_null(llm_embed(e.l, "nomic-embed-text", &text, &len, 1, clock_now_ms() + 10000, on_embed, &e));
    env_wait(&e);
    assert_int_not_equal(e.last, LLM_OK);
    assert_non_null(strstr(e.message, "too_big"));
    env_free(&e);
    json_decref(admin(&fakes[0], "/__admin/config", "{\"fault\": \"none\"}"));
}

static void test_chat_streams(void **state)
{
    (void)state;
    llm_config cfg;
    llm_config_default(&cfg);
    env e;
    env_init_one(&e, &cfg);
    chat_once(&e);
    assert_int_equal(e.last, LLM_OK);
    assert_true(e.text_len > 0);
    env_free(&e);
}

static void test_busy_is_overload(void **state)
{
    (void)state;
    json_decref(admin(&fakes[0], "/__admin/config", "{\"parallel\": 1, \"max_queue\": 0, \"latency_ms\": 300}"));
    llm_config cfg;
    llm_config_default(&cfg);
    cfg.retry.max_attempts = 1;
    env e;
    env_init_one(&e, &cfg);
    llm_chat_handlers h = {.on_text = on_text, .on_done = on_chat_done, .arg = &e};
    e.pending = 3;
    for (int i = 0; i < 3; i++)
        assert_non_null(llm_chat(e.l, "llama3.2", NULL, "hello", NULL, clock_now_ms() + 10000, &h, NULL));
    env_wait(&e);
    assert_int_equal(e.n_overloaded, 2); /* one slot, no queue: two of three are told "busy" */
    breaker_snapshot s = chat_breaker(&e, 0);
    assert_int_equal(s.state, BREAKER_CLOSED);
    assert_true(s.overload >= 1); /* the busy 503s */
    assert_int_equal(s.failures, 0);
    env_free(&e);
}

static void test_failures_open_then_recover(void **state)
{
    (void)state;
    json_decref(admin(&fakes[0], "/__admin/config", "{\"fault\": \"error500\"}"));
    llm_config cfg;
    llm_config_default(&cfg);
    cfg.retry.max_attempts = 1;
    cfg.breaker.open_ms = 300;
    cfg.breaker.open_max_ms = 300;
    env e;
    env_init_one(&e, &cfg);
    for (int i = 0; i < 5; i++) {
        chat_once(&e);
        assert_int_equal(e.last, LLM_UNAVAILABLE);
    }
    assert_int_equal(chat_breaker(&e, 0).state, BREAKER_OPEN);
    long before = chat_requests(&fakes[0]);
    chat_once(&e); /* refused at once, without the network */
    assert_int_equal(e.last, LLM_UNAVAILABLE);
    assert_int_equal(chat_requests(&fakes[0]), before);

    json_decref(admin(&fakes[0], "/__admin/config", "{\"fault\": \"none\"}"));
    usleep(350 * 1000); /* the open period (300 ms) passes: the next call is the half-open trial */
    chat_once(&e);
    assert_int_equal(e.last, LLM_OK);
    assert_int_equal(chat_breaker(&e, 0).state, BREAKER_CLOSED);
    env_free(&e);
}

/* HALF_OPEN admits one trial; a second call meanwhile is refused at once (no host left),
 * rather than asking the same breaker again and again. */
static void test_half_open_admits_one_trial(void **state)
{
    (void)state;
    json_decref(admin(&fakes[0], "/__admin/config", "{\"fault\": \"error500\"}"));
    llm_config cfg;
    llm_config_default(&cfg);
    cfg.retry.max_attempts = 1;
    cfg.breaker.open_ms = 200;
    cfg.breaker.open_max_ms = 200;
    env e;
    env_init_one(&e, &cfg);
    for (int i = 0; i < 5; i++)
        chat_once(&e);
    assert_int_equal(chat_breaker(&e, 0).state, BREAKER_OPEN);
    json_decref(admin(&fakes[0], "/__admin/config", "{\"fault\": \"none\", \"latency_ms\": 300}"));
    usleep(250 * 1000);
    llm_chat_handlers h = {.on_text = on_text, .on_done = on_chat_done, .arg = &e};
    e.pending = 2;
    e.n_unavailable = 0;
    assert_non_null(llm_chat(e.l, "llama3.2", NULL, "trial", NULL, clock_now_ms() + 10000, &h, NULL));
    assert_non_null(llm_chat(e.l, "llama3.2", NULL, "second", NULL, clock_now_ms() + 10000, &h, NULL));
    env_wait(&e);
    assert_int_equal(e.n_unavailable, 1);   /* the second, refused while the trial ran */
    assert_int_equal(chat_breaker(&e, 0).state, BREAKER_CLOSED); /* the trial succeeded */
    env_free(&e);
}

static void test_error_line_is_failure(void **state)
{
    (void)state;
    json_decref(admin(&fakes[0], "/__admin/config", "{\"fault\": \"error_line\"}"));
    llm_config cfg;
    llm_config_default(&cfg);
    env e;
    env_init_one(&e, &cfg);
    chat_once(&e);
    assert_int_not_equal(e.last, LLM_OK);
    assert_non_null(strstr(e.message, "mid-stream"));
    assert_int_equal(chat_breaker(&e, 0).failures, 1); /* text was sent: no retry */
    env_free(&e);
}

static void test_failover_to_second_host(void **state)
{
    (void)state;
    json_decref(admin(&fakes[0], "/__admin/config", "{\"fault\": \"refuse\"}"));
    llm_config cfg;
    llm_config_default(&cfg);
    const char *urls[] = {fakes[0].url, fakes[1].url};
    env e;
    env_init(&e, &cfg, urls, 2);
    const char *texts[] = {"one", "two"};
    size_t lens[] = {3, 3};
    e.pending = 1;
    assert_non_null(llm_embed(e.l, "nomic-embed-text", texts, lens, 2, clock_now_ms() + 10000, on_embed, &e));
    env_wait(&e);
    assert_int_equal(e.last, LLM_OK);
    assert_int_equal(stat_int(&fakes[1], "embed_calls"), 1);
    json_decref(admin(&fakes[0], "/__admin/config", "{\"fault\": \"up\"}"));
    env_free(&e);
}

/* ---- the callback rule: exactly one final callback, never inside the call that caused it ---- */

typedef struct {
    env *e;
    int calls;
    llm_status st;
} probe_cb;

static int inside; /* set while a call of the module under test runs */

static void counted_embed(llm_status st, const float *v, size_t dim, const char *message, void *arg)
{
    (void)v;
    (void)dim;
    (void)message;
    probe_cb *p = arg;
    assert_int_equal(inside, 0); /* never inside llm_embed / llm_task_cancel / llm_cancel_all */
    p->calls++;
    p->st = st;
    if (--p->e->pending == 0)
        event_base_loopbreak(p->e->base);
}

static void counted_chat_done(llm_status st, const char *message, const llm_chat_stats *s, void *arg)
{
    (void)message;
    (void)s;
    counted_embed(st, NULL, 0, NULL, arg);
}

static int no_text(const char *p, size_t n, void *arg)
{
    (void)p;
    (void)n;
    (void)arg;
    return 0;
}

static const char **many_texts(size_t n, size_t **lens)
{
    const char **texts = calloc(n, sizeof *texts);
    *lens = calloc(n, sizeof **lens);
    for (size_t i = 0; i < n; i++) {
        texts[i] = "a chunk of a long document about snapshots";
        (*lens)[i] = strlen(texts[i]);
    }
    return texts;
}

/* The crash of issue 6: a document's batches outnumber max_concurrent, the backend fails,
 * and a breaker that opens refuses the queued batches as they are admitted. The job must
 * end with one callback, whatever the order (run under ASan by make asan). */
static void test_many_batches_tight_limits_failing_backend(void **state)
{
    (void)state;
    static const char *const faults[] = {"{\"fault\": \"error500\"}", "{\"fault\": \"refuse\"}",
                                         "{\"fault\": \"reset\"}", "{\"parallel\": 1, \"max_queue\": 0}"};
    for (size_t f = 0; f < sizeof faults / sizeof *faults; f++) {
        json_decref(admin(&fakes[0], "/__admin/reset", "{}"));
        json_decref(admin(&fakes[0], "/__admin/config", faults[f]));
        for (int threshold = 1; threshold <= 5; threshold += 4) {
            llm_config cfg;
            llm_config_default(&cfg);
            bool busy = f == 3; /* the fake has 1 slot and no queue: busy 503s when we send 4 */
            cfg.bulkhead.max_concurrent = busy ? 4 : 1;
            cfg.bulkhead.max_queue = 100;
            cfg.breaker.failure_threshold = (unsigned)threshold;
            cfg.retry.base_ms = 1;
            cfg.retry.cap_ms = 5;
            env e;
            env_init_one(&e, &cfg);
            size_t *lens = NULL;
            const char **texts = many_texts(1000, &lens); /* 32 batches */
            probe_cb p = {.e = &e};
            e.pending = 1;
            inside = 1;
            assert_non_null(llm_embed(e.l, "nomic-embed-text", texts, lens, 1000, clock_now_ms() + 10000, counted_embed, &p));
            inside = 0;
            env_wait(&e);
            assert_int_equal(p.calls, 1);
            if (!busy)
                assert_int_not_equal(p.st, LLM_OK);
            assert_int_equal(llm_task_count(e.l), 0);
            bulkhead *bh = bulkhead_set_at(llm_bulkheads(e.l), 0);
            assert_int_equal(bulkhead_get_stats(bh).in_flight, 0);
            assert_int_equal(bulkhead_get_stats(bh).queued, 0);
            free(texts);
            free(lens);
            env_free(&e);
        }
    }
    json_decref(admin(&fakes[0], "/__admin/reset", "{}"));
}

/* A document of many batches is never shed by its own batches: with 2 slots and no queue
 * at all, 3,200 texts (100 batches) go through a window of 2 at a time. */
static void test_large_job_is_not_shed_by_itself(void **state)
{
    (void)state;
    llm_config cfg;
    llm_config_default(&cfg);
    cfg.bulkhead.max_concurrent = 2;
    cfg.bulkhead.max_queue = 0;
    env e;
    env_init_one(&e, &cfg);
    size_t *lens = NULL;
    const char **texts = many_texts(3200, &lens);
    probe_cb p = {.e = &e};
    e.pending = 1;
    assert_non_null(llm_embed(e.l, "nomic-embed-text", texts, lens, 3200, clock_now_ms() + 60000, counted_embed, &p));
    env_wait(&e);
    assert_int_equal(p.calls, 1);
    assert_int_equal(p.st, LLM_OK);
    assert_int_equal(stat_int(&fakes[0], "embed_calls"), 100);
    assert_true(stat_int(&fakes[0], "max_in_flight") <= 2);
    free(texts);
    free(lens);
    env_free(&e);
}

/* Cancel: the attempt ends now, and exactly one LLM_CANCELLED callback comes on a later
 * loop turn — for a chat waiting on a slow backend, an embed job with batches in flight and
 * queued, and a chat cancelled twice. */
static void test_cancel_ends_in_one_cancelled_callback(void **state)
{
    (void)state;
    json_decref(admin(&fakes[0], "/__admin/config", "{\"latency_ms\": 300}"));
    llm_config cfg;
    llm_config_default(&cfg);
    cfg.bulkhead.max_concurrent = 2;
    env e;
    env_init_one(&e, &cfg);
    llm_chat_handlers h = {.on_text = no_text, .on_done = counted_chat_done};
    probe_cb chat = {.e = &e}, job = {.e = &e};
    h.arg = &chat;
    size_t *lens = NULL;
    const char **texts = many_texts(200, &lens);
    inside = 1;
    llm_task *c = llm_chat(e.l, "llama3.2", NULL, "hello", NULL, clock_now_ms() + 10000, &h, NULL);
    llm_task *j = llm_embed(e.l, "nomic-embed-text", texts, lens, 200, clock_now_ms() + 10000, counted_embed, &job);
    inside = 0;
    assert_non_null(c);
    assert_non_null(j);
    e.pending = 2;
    /* Let the calls start (they wait 300 ms at the fake), then cancel both. */
    struct timeval tv = {0, 100 * 1000};
    event_base_loopexit(e.base, &tv);
    event_base_dispatch(e.base);
    assert_int_equal(chat.calls + job.calls, 0);
    inside = 1;
    llm_task_cancel(c);
    llm_task_cancel(c); /* a second cancel is a no-op */
    llm_task_cancel(j);
    inside = 0;
    assert_int_equal(chat.calls + job.calls, 0);
    env_wait(&e);
    assert_int_equal(chat.calls, 1);
    assert_int_equal(chat.st, LLM_CANCELLED);
    assert_int_equal(job.calls, 1);
    assert_int_equal(job.st, LLM_CANCELLED);
    assert_int_equal(llm_task_count(e.l), 0);
    bulkhead_stats st = bulkhead_get_stats(bulkhead_set_at(llm_bulkheads(e.l), 0));
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.queued, 0);
    free(texts);
    free(lens);
    env_free(&e);
}

/* Shutdown: llm_cancel_all ends every task with CANCELLED (later), and refuses new ones. */
static void test_cancel_all(void **state)
{
    (void)state;
    json_decref(admin(&fakes[0], "/__admin/config", "{\"latency_ms\": 2000}"));
    llm_config cfg;
    llm_config_default(&cfg);
    cfg.bulkhead.max_concurrent = 1;
    env e;
    env_init_one(&e, &cfg);
    llm_chat_handlers h = {.on_text = no_text, .on_done = counted_chat_done};
    probe_cb p[5];
    for (int i = 0; i < 5; i++) {
        p[i] = (probe_cb){.e = &e};
        h.arg = &p[i];
        assert_non_null(llm_chat(e.l, "llama3.2", NULL, "hello", NULL, clock_now_ms() + 10000, &h, NULL));
    }
    e.pending = 5;
    struct timeval tv = {0, 50 * 1000};
    event_base_loopexit(e.base, &tv);
    event_base_dispatch(e.base); /* one in flight, four queued */
    inside = 1;
    llm_cancel_all(e.l);
    inside = 0;
    h.arg = &p[0];
    assert_null(llm_chat(e.l, "llama3.2", NULL, "late", NULL, clock_now_ms() + 10000, &h, NULL));
    env_wait(&e);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(p[i].calls, 1);
        assert_int_equal(p[i].st, LLM_CANCELLED);
    }
    assert_int_equal(llm_task_count(e.l), 0);
    env_free(&e);
}

/* Reservations count toward the shed-on-arrival decision and are handed to the chat. */
static void test_reservations(void **state)
{
    (void)state;
    llm_config cfg;
    llm_config_default(&cfg);
    cfg.bulkhead.max_concurrent = 1;
    cfg.bulkhead.max_queue = 1;
    env e;
    env_init_one(&e, &cfg);
    llm_reservation a, b, c;
    assert_int_equal(llm_reserve(e.l, "llama3.2", &a), LLM_OK);
    assert_int_equal(llm_reserve(e.l, "llama3.2", &b), LLM_OK);
    assert_int_equal(llm_reserve(e.l, "llama3.2", &c), LLM_OVERLOADED); /* 1 slot + 1 queue place */
    assert_false(c.held);
    assert_int_equal(llm_reserve(e.l, "other", &c), LLM_OK); /* another model's own places */
    llm_unreserve(&c);
    llm_unreserve(&b);
    llm_unreserve(&b); /* twice: a no-op */
    assert_int_equal(llm_reserve(e.l, "llama3.2", &b), LLM_OK);
    llm_unreserve(&b);
    /* A chat takes its reservation over and gives it back once it has its own place. */
    llm_chat_handlers h = {.on_text = no_text, .on_done = counted_chat_done};
    probe_cb p = {.e = &e};
    h.arg = &p;
    e.pending = 1;
    assert_non_null(llm_chat(e.l, "llama3.2", NULL, "hello", NULL, clock_now_ms() + 10000, &h, &a));
    assert_false(a.held);
    env_wait(&e);
    assert_int_equal(p.st, LLM_OK);
    assert_int_equal(llm_reserve(e.l, "llama3.2", &a), LLM_OK);
    assert_int_equal(llm_reserve(e.l, "llama3.2", &b), LLM_OK);
    llm_unreserve(&a);
    llm_unreserve(&b);
    env_free(&e);
}


/* ---- the pass-through API: whole conversations, stats, 404, model metadata ---- */

static json_t *last_of(fake *f, const char *key)
{
    json_t *st = admin(f, "/__admin/stats", NULL);
    json_t *list = json_object_get(st, key);
    json_t *last = json_incref(json_array_get(list, json_array_size(list) - 1));
    json_decref(st);
    return last;
}

static void chat_request(env *e, const char *model, const llm_chat_request *rq)
{
    llm_chat_handlers h = {.on_text = on_text, .on_done = on_chat_done, .arg = e};
    e->pending++;
    e->text_len = 0;
    memset(e->text, 0, sizeof e->text);
    assert_non_null(llm_chat_messages(e->l, model, rq, clock_now_ms() + 10000, &h, NULL));
    env_wait(e);
}

static json_t *conversation(void)
{
    return json_pack("[{s:s, s:s}, {s:s, s:s}, {s:s, s:s}, {s:s, s:s}]", "role", "system", "content",
                     "You are terse.", "role", "user", "content", "Who wrote the walrus song?", "role", "assistant",
                     "content", "The Beatles wrote it.", "role", "user", "content", "In which year?");
}

/* Every turn reaches the backend, in order, with options, format and keep_alive as given;
 * the done chunk's counters come back in the stats. */
static void test_chat_messages_multi_turn(void **state)
{
    (void)state;
    llm_config cfg;
    llm_config_default(&cfg);
    env e;
    env_init_one(&e, &cfg);
    json_t *messages = conversation();
    json_t *options = json_pack("{s:f, s:i}", "temperature", 0.25, "num_predict", 3);
    json_t *format = json_string("json");
    json_t *keep = json_integer(0); /* unload right after the call */
    llm_chat_request rq = {.messages = messages, .options = options, .format = format, .keep_alive = keep};
    chat_request(&e, "llama3.2", &rq);
    assert_int_equal(e.last, LLM_OK);
    json_t *prompt = last_of(&fakes[0], "prompts");
    const char *p = json_string_value(prompt);
    assert_non_null(p);
    const char *turns[] = {"You are terse.", "Who wrote the walrus song?", "The Beatles wrote it.", "In which year?"};
    const char *at = p;
    for (size_t i = 0; i < 4; i++) { /* all four, in order */
        at = strstr(at, turns[i]);
        assert_non_null(at);
    }
    json_decref(prompt);
    json_t *got = last_of(&fakes[0], "chat_options");
    assert_true(json_number_value(json_object_get(got, "temperature")) == 0.25);
    json_decref(got);
    assert_non_null(strstr(e.text, "{\"answer\"")); /* format reached the model */
    assert_string_equal(e.stats.done_reason, "length"); /* num_predict 3 cut it */
    assert_int_equal(e.stats.completion_tokens, 3);
    assert_true(e.stats.prompt_tokens > 10);
    assert_true(e.stats.eval_ns >= 0);
    assert_true(e.stats.prompt_eval_ns >= 0);
    assert_true(e.stats.load_ns >= 0);
    json_decref(messages);
    json_decref(options);
    json_decref(format);
    json_decref(keep);
    env_free(&e);
}

/* The same against an OpenAI-compatible backend: usage and finish_reason fill the stats,
 * the durations stay -1 (it does not report them), format becomes response_format. */
static void test_chat_messages_openai_stats(void **state)
{
    (void)state;
    llm_config cfg;
    llm_config_default(&cfg);
    cfg.kind = LLM_KIND_OPENAI;
    env e;
    env_init_one(&e, &cfg);
    json_t *messages = conversation();
    json_t *format = json_string("json");
    json_t *options = json_pack("{s:f}", "temperature", 0.5);
    llm_chat_request rq = {.messages = messages, .options = options, .format = format};
    chat_request(&e, "llama3.2", &rq);
    assert_int_equal(e.last, LLM_OK);
    json_t *prompt = last_of(&fakes[0], "prompts");
    assert_non_null(strstr(json_string_value(prompt), "The Beatles wrote it."));
    json_decref(prompt);
    json_t *got = last_of(&fakes[0], "chat_options");
    assert_true(json_number_value(json_object_get(got, "temperature")) == 0.5);
    json_decref(got);
    assert_non_null(strstr(e.text, "{\"answer\""));
    assert_string_equal(e.stats.done_reason, "stop");
    assert_true(e.stats.prompt_tokens > 10);
    assert_true(e.stats.completion_tokens > 0);
    assert_int_equal(e.stats.load_ns, -1);
    assert_int_equal(e.stats.eval_ns, -1);
    json_decref(messages);
    json_decref(format);
    json_decref(options);
    env_free(&e);
}

/* llm_chat is llm_chat_messages with [system, user]: the stats are filled there too. */
static void test_chat_stats_from_llm_chat(void **state)
{
    (void)state;
    llm_config cfg;
    llm_config_default(&cfg);
    env e;
    env_init_one(&e, &cfg);
    chat_once(&e);
    assert_int_equal(e.last, LLM_OK);
    assert_string_equal(e.stats.done_reason, "stop");
    assert_true(e.stats.completion_tokens > 0);
    json_t *prompt = last_of(&fakes[0], "prompts");
    assert_non_null(strstr(json_string_value(prompt), "Answer from the context."));
    json_decref(prompt);
    env_free(&e);
}

/* A model the backend does not know is LLM_NOT_FOUND at once (no retry), for chat and
 * embed, both kinds; the breaker does not count it: six of them leave it CLOSED. */
static void test_unknown_model_is_not_found(void **state)
{
    (void)state;
    for (int kind = 0; kind < 2; kind++) {
        json_decref(admin(&fakes[0], "/__admin/stats/reset", "{}"));
        llm_config cfg;
        llm_config_default(&cfg);
        cfg.kind = kind ? LLM_KIND_OPENAI : LLM_KIND_OLLAMA;
        env e;
        env_init_one(&e, &cfg);
        json_t *messages = conversation();
        llm_chat_request rq = {.messages = messages};
        for (int i = 0; i < 6; i++) {
            chat_request(&e, "no-such-model", &rq);
            assert_int_equal(e.last, LLM_NOT_FOUND);
            assert_int_equal(e.stats.attempts, 1);
        }
        assert_non_null(strstr(e.message, "no-such-model"));
        char name[200];
        snprintf(name, sizeof name, "%s chat/no-such-model", llm_host_url(e.l, 0));
        breaker_snapshot s;
        breaker_snapshot_get(breaker_registry_find(llm_breakers(e.l), name), &s);
        assert_int_equal(s.state, BREAKER_CLOSED);
        assert_int_equal(s.failures, 0);
        const char *text = "one";
        size_t len = 3;
        e.pending = 1;
        assert_non_null(llm_embed(e.l, "no-such-embedder", &text, &len, 1, clock_now_ms() + 10000, on_embed, &e));
        env_wait(&e);
        assert_int_equal(e.last, LLM_NOT_FOUND);
        json_decref(messages);
        env_free(&e);
    }
}

static void on_meta(llm_status st, json_t *reply, const char *message, void *arg)
{
    env *e = arg;
    e->last = st;
    json_decref(e->meta);
    e->meta = json_incref(reply);
    snprintf(e->message, sizeof e->message, "%s", message);
    if (--e->pending == 0)
        event_base_loopbreak(e->base);
}

static void meta_once(env *e, llm_meta_kind what, const char *model)
{
    e->pending++;
    assert_non_null(llm_meta(e->l, what, model, clock_now_ms() + 10000, on_meta, e));
    env_wait(e);
}

static bool list_has(const json_t *list, const char *name)
{
    size_t i;
    json_t *m;
    json_array_foreach(list, i, m) if (strcmp(json_string_value(json_object_get(m, "name")), name) == 0) return true;
    return false;
}

/* Models, show, running, version in Ollama's shapes from both kinds of backend. */
static void test_meta_both_kinds(void **state)
{
    (void)state;
    for (int kind = 0; kind < 2; kind++) {
        llm_config cfg;
        llm_config_default(&cfg);
        cfg.kind = kind ? LLM_KIND_OPENAI : LLM_KIND_OLLAMA;
        env e;
        env_init_one(&e, &cfg);
        meta_once(&e, LLM_META_MODELS, NULL);
        assert_int_equal(e.last, LLM_OK);
        assert_true(list_has(e.meta, "llama3.2:latest"));
        assert_true(list_has(e.meta, "nomic-embed-text:latest"));
        json_t *first = json_array_get(e.meta, 0);
        assert_true(json_is_string(json_object_get(first, "model")));
        assert_true(json_is_object(json_object_get(first, "details")));

        meta_once(&e, LLM_META_SHOW, "llama3.2");
        assert_int_equal(e.last, LLM_OK);
        assert_true(json_is_object(json_object_get(e.meta, "details")));
        assert_true(json_is_array(json_object_get(e.meta, "capabilities")));
        meta_once(&e, LLM_META_SHOW, "no-such-model");
        assert_int_equal(e.last, LLM_NOT_FOUND);
        assert_null(e.meta);

        chat_once(&e); /* loads llama3.2 at the fake */
        meta_once(&e, LLM_META_RUNNING, NULL);
        assert_int_equal(e.last, LLM_OK);
        assert_true(json_is_array(e.meta));
        assert_int_equal(json_array_size(e.meta), kind ? 0 : 1); /* OpenAI: always empty */

        meta_once(&e, LLM_META_VERSION, NULL);
        if (kind) {
            assert_int_equal(e.last, LLM_REJECTED);
        } else {
            assert_int_equal(e.last, LLM_OK);
            assert_true(json_is_string(json_object_get(e.meta, "version")));
        }
        char name[200];
        snprintf(name, sizeof name, "%s models/llama3.2", llm_host_url(e.l, 0));
        assert_non_null(breaker_registry_find(llm_breakers(e.l), name)); /* its own breaker op */
        env_free(&e);
    }
}

/* keep_alive passes: 0 unloads the model after the call, so /api/ps soon lists nothing.
 * Ollama (and the fake) unloads after the reply's last byte, so /api/ps asked at once may
 * still list the model for a moment: ask until it is gone, for up to 2 s. */
static void test_keep_alive_passes(void **state)
{
    (void)state;
    llm_config cfg;
    llm_config_default(&cfg);
    env e;
    env_init_one(&e, &cfg);
    json_t *messages = conversation();
    json_t *keep = json_integer(0);
    llm_chat_request rq = {.messages = messages, .keep_alive = keep};
    chat_request(&e, "llama3.2", &rq);
    assert_int_equal(e.last, LLM_OK);
    for (int tries = 0; tries < 100; tries++) {
        meta_once(&e, LLM_META_RUNNING, NULL);
        assert_int_equal(e.last, LLM_OK);
        if (json_array_size(e.meta) == 0)
            break;
        usleep(20 * 1000);
    }
    assert_int_equal(json_array_size(e.meta), 0);
    rq.keep_alive = NULL;
    chat_request(&e, "llama3.2", &rq);
    meta_once(&e, LLM_META_RUNNING, NULL);
    assert_int_equal(json_array_size(e.meta), 1);
    json_decref(messages);
    json_decref(keep);
    env_free(&e);
}

/* A backend whose model list is not the format (garbage, an HTML page, a wrong shape) is
 * LLM_BAD_REPLY and a failure of its "models" breaker; a model list over the cap too. */
static void test_meta_lying_backend(void **state)
{
    (void)state;
    static const char *const faults[] = {
        "{\"fault\": \"garbage\", \"fault_paths\": [\"/api/tags\", \"/v1/models\"]}",
        "{\"fault\": \"wrong_content_type\", \"fault_paths\": [\"/api/tags\", \"/v1/models\"]}",
        "{\"fault\": \"huge_line\", \"fault_huge_bytes\": 8388608, \"fault_paths\": [\"/api/tags\", \"/v1/models\"]}",
    };
    for (int kind = 0; kind < 2; kind++) {
        for (size_t f = 0; f < sizeof faults / sizeof *faults; f++) {
            json_decref(admin(&fakes[0], "/__admin/config", faults[f]));
            llm_config cfg;
            llm_config_default(&cfg);
            cfg.kind = kind ? LLM_KIND_OPENAI : LLM_KIND_OLLAMA;
            env e;
            env_init_one(&e, &cfg);
            meta_once(&e, LLM_META_MODELS, NULL);
            assert_int_not_equal(e.last, LLM_OK);
            if (f < 2)
                assert_int_equal(e.last, LLM_BAD_REPLY);
            assert_null(e.meta);
            char name[200];
            snprintf(name, sizeof name, "%s models", llm_host_url(e.l, 0)); /* no model: "host op" */
            breaker_snapshot s;
            breaker_snapshot_get(breaker_registry_find(llm_breakers(e.l), name), &s);
            assert_int_equal(s.failures, 1);
            env_free(&e);
        }
    }
    json_decref(admin(&fakes[0], "/__admin/reset", "{}"));
}

/* ---- the registry: configured models kept, others on demand up to max_models ---- */

static bool has_breaker(env *e, const char *op_model)
{
    char name[200];
    snprintf(name, sizeof name, "%s %s", llm_host_url(e->l, 0), op_model);
    return breaker_registry_find(llm_breakers(e->l), name) != NULL;
}

/* With room for two models on demand, a third evicts the least recently used idle one
 * (its breaker and bulkhead go); a configured model is never evicted; a model whose
 * breaker is OPEN is not idle and stays. */
static void test_models_on_demand_evict_lru(void **state)
{
    (void)state;
    json_decref(admin(&fakes[0], "/__admin/config", "{\"chat_models\": [\"llama3.2\", \"m1\", \"m2\", \"m3\", \"m4\"]}"));
    llm_config cfg;
    llm_config_default(&cfg);
    const char *models[] = {"llama3.2"};
    cfg.models = models;
    cfg.n_models = 1;
    cfg.max_models = 2;
    cfg.retry.max_attempts = 1;
    cfg.breaker.failure_threshold = 1;
    env e;
    env_init_one(&e, &cfg);
    json_t *messages = conversation();
    llm_chat_request rq = {.messages = messages};
    chat_once(&e); /* llama3.2, configured */
    chat_request(&e, "m1", &rq);
    chat_request(&e, "m2", &rq);
    assert_int_equal(e.last, LLM_OK);
    assert_true(has_breaker(&e, "chat/m1") && has_breaker(&e, "chat/m2"));
    chat_request(&e, "m1", &rq); /* m1 used last: m2 is the least recently used */
    chat_request(&e, "m3", &rq);
    assert_int_equal(e.last, LLM_OK);
    assert_false(has_breaker(&e, "chat/m2"));
    assert_true(has_breaker(&e, "chat/m1") && has_breaker(&e, "chat/m3") && has_breaker(&e, "chat/llama3.2"));
    size_t bulkheads = bulkhead_set_count(llm_bulkheads(e.l));
    for (size_t i = 0; i < bulkheads; i++)
        assert_string_not_equal(bulkhead_model(bulkhead_set_at(llm_bulkheads(e.l), i)), "m2");

    /* m1's breaker opens (one failure with threshold 1): not idle, so m4 evicts m3. */
    json_decref(admin(&fakes[0], "/__admin/config", "{\"fault\": \"error500\"}"));
    chat_request(&e, "m1", &rq);
    assert_int_equal(e.last, LLM_UNAVAILABLE);
    json_decref(admin(&fakes[0], "/__admin/config", "{\"fault\": \"none\"}"));
    chat_request(&e, "m4", &rq);
    assert_int_equal(e.last, LLM_OK);
    assert_true(has_breaker(&e, "chat/m1"));
    assert_false(has_breaker(&e, "chat/m3"));
    json_decref(messages);
    env_free(&e);
}

static char refusal[320];

static void refused_chat_done(llm_status st, const char *message, const llm_chat_stats *s, void *arg)
{
    snprintf(refusal, sizeof refusal, "%s", message);
    counted_chat_done(st, message, s, arg);
}

/* When every model on demand is busy (calls in flight, or reservations), another model is
 * refused with LLM_OVERLOADED and a message that says why; configured models still go. */
static void test_models_on_demand_full_is_overload(void **state)
{
    (void)state;
    json_decref(admin(&fakes[0], "/__admin/config",
                      "{\"chat_models\": [\"llama3.2\", \"m1\", \"m2\", \"m3\"], \"latency_ms\": 300, \"parallel\": 4}"));
    llm_config cfg;
    llm_config_default(&cfg);
    const char *models[] = {"llama3.2"};
    cfg.models = models;
    cfg.n_models = 1;
    cfg.max_models = 2;
    env e;
    env_init_one(&e, &cfg);
    json_t *messages = conversation();
    llm_chat_request rq = {.messages = messages};
    llm_chat_handlers h = {.on_text = on_text, .on_done = on_chat_done, .arg = &e};
    e.pending = 2;
    assert_non_null(llm_chat_messages(e.l, "m1", &rq, clock_now_ms() + 10000, &h, NULL));
    assert_non_null(llm_chat_messages(e.l, "m2", &rq, clock_now_ms() + 10000, &h, NULL));
    struct timeval tv = {0, 100 * 1000}; /* both in flight at the fake (300 ms) */
    event_base_loopexit(e.base, &tv);
    event_base_dispatch(e.base);
    llm_chat_handlers h3 = {.on_text = no_text, .on_done = refused_chat_done};
    probe_cb third = {.e = &e};
    h3.arg = &third;
    e.pending++;
    assert_non_null(llm_chat_messages(e.l, "m3", &rq, clock_now_ms() + 10000, &h3, NULL));
    llm_reservation r;
    assert_int_equal(llm_reserve(e.l, "m3", &r), LLM_OVERLOADED); /* no entry can be made either */
    assert_int_equal(llm_reserve(e.l, "llama3.2", &r), LLM_OK);   /* configured: always there */
    llm_unreserve(&r);
    env_wait(&e);
    assert_int_equal(third.calls, 1);
    assert_int_equal(third.st, LLM_OVERLOADED);
    assert_non_null(strstr(refusal, "RAGD_MAX_MODELS")); /* says why */
    assert_int_equal(e.n_overloaded, 0); /* m1 and m2 answered */

    /* Reservations hold an entry too; given back, the model can go. */
    assert_int_equal(llm_reserve(e.l, "m1", &r), LLM_OK);
    llm_reservation r2;
    assert_int_equal(llm_reserve(e.l, "m2", &r2), LLM_OK);
    llm_reservation r3;
    assert_int_equal(llm_reserve(e.l, "m3", &r3), LLM_OVERLOADED);
    llm_unreserve(&r);
    assert_int_equal(llm_reserve(e.l, "m3", &r3), LLM_OK); /* m1 evicted */
    llm_unreserve(&r2);
    llm_unreserve(&r3);
    json_decref(messages);
    env_free(&e);
}

/* What must not be sent is refused before any request, with one REJECTED callback on a later
 * turn: a model name over 256 bytes (chat, embed, meta), a chat body over 32 MiB. A
 * reservation handed to a refused chat is given back. */
static void test_refused_before_sending(void **state)
{
    (void)state;
    llm_config cfg;
    llm_config_default(&cfg);
    cfg.bulkhead.max_concurrent = 1;
    cfg.bulkhead.max_queue = 0;
    env e;
    env_init_one(&e, &cfg);
    char long_model[300];
    memset(long_model, 'm', sizeof long_model - 1);
    long_model[sizeof long_model - 1] = '\0';
    json_t *messages = conversation();
    llm_chat_request rq = {.messages = messages};
    llm_reservation r;
    assert_int_equal(llm_reserve(e.l, long_model, &r), LLM_OK); /* too long to count: not held */
    assert_int_equal(llm_reserve(e.l, "llama3.2", &r), LLM_OK);
    llm_chat_handlers h = {.on_text = on_text, .on_done = on_chat_done, .arg = &e};
    e.pending = 1;
    inside = 1;
    assert_non_null(llm_chat_messages(e.l, long_model, &rq, clock_now_ms() + 10000, &h, &r));
    inside = 0;
    assert_false(r.held); /* taken over, and given back at the end */
    env_wait(&e);
    assert_int_equal(e.last, LLM_REJECTED);
    assert_non_null(strstr(e.message, "256"));
    llm_reservation r2;
    assert_int_equal(llm_reserve(e.l, "llama3.2", &r2), LLM_OK); /* the one place is free again */
    llm_unreserve(&r2);

    const char *text = "one";
    size_t len = 3;
    e.pending = 1;
    assert_non_null(llm_embed(e.l, long_model, &text, &len, 1, clock_now_ms() + 10000, on_embed, &e));
    env_wait(&e);
    assert_int_equal(e.last, LLM_REJECTED);
    meta_once(&e, LLM_META_SHOW, long_model);
    assert_int_equal(e.last, LLM_REJECTED);

    size_t big = ((size_t)32 << 20) + 16;
    char *huge = malloc(big + 1);
    memset(huge, 'a', big);
    huge[big] = '\0';
    json_t *one = json_pack("[{s:s, s:s}]", "role", "user", "content", huge);
    free(huge);
    llm_chat_request brq = {.messages = one};
    chat_request(&e, "llama3.2", &brq);
    assert_int_equal(e.last, LLM_REJECTED);
    assert_non_null(strstr(e.message, "32 MiB"));
    json_decref(one);
    assert_int_equal(chat_requests(&fakes[0]), 0);
    assert_int_equal(stat_int(&fakes[0], "embed_calls"), 0);
    json_decref(messages);
    env_free(&e);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_embed_in_batches, reset_fakes),
        cmocka_unit_test_setup(test_embed_reply_capped_by_its_texts, reset_fakes),
        cmocka_unit_test_setup(test_chat_streams, reset_fakes),
        cmocka_unit_test_setup(test_busy_is_overload, reset_fakes),
        cmocka_unit_test_setup(test_failures_open_then_recover, reset_fakes),
        cmocka_unit_test_setup(test_half_open_admits_one_trial, reset_fakes),
        cmocka_unit_test_setup(test_error_line_is_failure, reset_fakes),
        cmocka_unit_test_setup(test_failover_to_second_host, reset_fakes),
        cmocka_unit_test_setup(test_many_batches_tight_limits_failing_backend, reset_fakes),
        cmocka_unit_test_setup(test_large_job_is_not_shed_by_itself, reset_fakes),
        cmocka_unit_test_setup(test_cancel_ends_in_one_cancelled_callback, reset_fakes),
        cmocka_unit_test_setup(test_cancel_all, reset_fakes),
        cmocka_unit_test_setup(test_reservations, reset_fakes),
        cmocka_unit_test_setup(test_chat_messages_multi_turn, reset_fakes),
        cmocka_unit_test_setup(test_chat_messages_openai_stats, reset_fakes),
        cmocka_unit_test_setup(test_chat_stats_from_llm_chat, reset_fakes),
        cmocka_unit_test_setup(test_unknown_model_is_not_found, reset_fakes),
        cmocka_unit_test_setup(test_meta_both_kinds, reset_fakes),
        cmocka_unit_test_setup(test_keep_alive_passes, reset_fakes),
        cmocka_unit_test_setup(test_meta_lying_backend, reset_fakes),
        cmocka_unit_test_setup(test_models_on_demand_evict_lru, reset_fakes),
        cmocka_unit_test_setup(test_refused_before_sending, reset_fakes),
        cmocka_unit_test_setup(test_models_on_demand_full_is_overload, reset_fakes),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
