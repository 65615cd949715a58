/* Unit tests for src/rag/rerank.c: the judge's number, the URL's shape, the reply parser, and
 * tasks against the fake backend (tools/fake_ollama) on a real loop — scores in input order,
 * the callback never inside rerank_start or rerank_task_cancel, a cancel says CANCELLED, a
 * refused service says UNAVAILABLE. The static helpers are reached by including the file
 * (a static function is tested by including its .c file). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <event2/event.h>
#include <math.h>

#include "../../src/rag/rerank.c"
#include "fake_ollama_proc.h"
#include "upstream/client.h"

static void test_judge_number(void **state)
{
    (void)state;
    struct {
        const char *reply;
        float want;
    } cases[] = {{"7", 7}, {"10", 10}, {"0", 0}, {"Score: 7/10", 7}, {"I'd say 7.5.", 7.5f}, {" 3\n", 3},
                 {"none", NAN}, {"", NAN}, {"11", NAN}, {"12345678901234567890", NAN}, {"eight", NAN},
                 {"-5", NAN}, {"Score: -3/10", NAN}, {"1e9", NAN}, {"2E+3", NAN}, {"x-1: 4", 1}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        float got = rerank_judge_number(cases[i].reply, strlen(cases[i].reply));
        if (isnan(cases[i].want))
            assert_true(isnan(got));
        else
            assert_float_equal(got, cases[i].want, 1e-6);
    }
}

static void test_url_shape(void **state)
{
    (void)state;
    assert_true(rerank_url_is_tei("http://127.0.0.1:8080/rerank"));
    assert_true(rerank_url_is_tei("https://tei.example/api/rerank?x=1"));
    assert_false(rerank_url_is_tei("http://127.0.0.1:8080/v1/rerank"));
    assert_false(rerank_url_is_tei("http://h/v1/models/x/rerank"));
    assert_false(rerank_url_is_tei("https://api.cohere.com/v2/rerank-x"));
    assert_false(rerank_url_is_tei("http://h/"));
    assert_false(rerank_url_is_tei("http://h"));
}

static void check_order(const float *scores, size_t n, const size_t *want, size_t want_scored)
{
    size_t order[16];
    assert_int_equal(rerank_order(scores, n, order), want_scored);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(order[i], want[i]);
}

static void test_order(void **state)
{
    (void)state;
    const float N = NAN;
    check_order((const float[]){0.1f, 0.9f, 0.5f}, 3, (const size_t[]){1, 2, 0}, 3);
    /* ties keep the fused order */
    check_order((const float[]){0.5f, 0.5f, 0.7f, 0.5f}, 4, (const size_t[]){2, 0, 1, 3}, 4);
    /* unscored candidates (no number, quarantined) keep their places */
    check_order((const float[]){0.1f, N, 0.9f, N, 0.5f}, 5, (const size_t[]){2, 1, 4, 3, 0}, 3);
    check_order((const float[]){N, 0.2f, 0.8f}, 3, (const size_t[]){0, 2, 1}, 2);
    check_order((const float[]){N, N}, 2, (const size_t[]){0, 1}, 0);
    check_order((const float[]){3.0f}, 1, (const size_t[]){0}, 1);
    check_order((const float[]){-2.0f, N, -1.0f, N, N, 7.0f, 0.0f}, 7, (const size_t[]){5, 1, 6, 3, 4, 2, 0}, 4);
}

/* ---- tasks on a loop ---- */

typedef struct {
    struct event_base *base;
    bool in_start;
    bool called_inside;
    int calls;
    rerank_status st;
    float scores[16];
    size_t n;
    char message[320];
} outcome;

static void on_done(rerank_status st, const float *scores, size_t n, const char *message, void *arg)
{
    outcome *o = arg;
    o->called_inside = o->called_inside || o->in_start;
    o->calls++;
    o->st = st;
    o->n = n;
    for (size_t i = 0; scores && i < n && i < 16; i++)
        o->scores[i] = scores[i];
    snprintf(o->message, sizeof o->message, "%s", message ? message : "");
    event_base_loopbreak(o->base);
}

static const char *const DOCS[] = {"the weather is rainy", "we decided to back up nightly", "lunch at noon",
                                   "backups are nightly and we decided so", "nothing here"};

/* One fake for the whole group: stopping one a moment after it started can hang in its own
 * shutdown. */
static fake g_fake;

static int group_setup(void **state)
{
    (void)state;
    return fake_start(&g_fake);
}

static int group_teardown(void **state)
{
    (void)state;
    fake_stop(&g_fake);
    return 0;
}

static void run_task(const char *url, bool cancel_at_once, outcome *o)
{
    char full[128];
    snprintf(full, sizeof full, "%s%s", url ? "" : g_fake.url, url ? url : "/v1/rerank");
    struct event_base *base = event_base_new();
    upstream_client_options co = {.max_host_connections = 8, .max_total_connections = 16};
    upstream_client *client = upstream_client_new(base, &co);
    rerank_config rc;
    rerank_config_default(&rc);
    rc.kind = RERANK_KIND_HTTP;
    rc.url = full;
    rc.batch = 2;
    rc.timeout_ms = 5000;
    rerank *r = NULL;
    char err[200];
    assert_int_equal(rerank_new(base, client, &rc, upstream_clock_system(), upstream_rand_system(), &r, err, sizeof err),
                     RAGD_OK);
    size_t lens[5];
    for (size_t i = 0; i < 5; i++)
        lens[i] = strlen(DOCS[i]);
    memset(o, 0, sizeof *o);
    o->base = base;
    o->in_start = true;
    const char *q = "did we decide nightly backups";
    rerank_task *t = rerank_start(r, q, strlen(q), DOCS, lens, 5, INFINITY, on_done, o);
    assert_non_null(t);
    if (cancel_at_once)
        rerank_task_cancel(t);
    o->in_start = false;
    assert_int_equal(o->calls, 0);
    event_base_loop(base, EVLOOP_NO_EXIT_ON_EMPTY);
    assert_int_equal(o->calls, 1);
    assert_false(o->called_inside);
    assert_int_equal(rerank_task_count(r), 0);
    rerank_free(r);
    upstream_client_free(client);
    event_base_free(base);
}

static void test_scores_in_input_order(void **state)
{
    (void)state;
    outcome o;
    run_task(NULL, false, &o);
    assert_int_equal(o.st, RERANK_OK);
    assert_int_equal(o.n, 5);
    for (size_t i = 0; i < 5; i++)
        assert_false(isnan(o.scores[i]));
    /* the fake's word overlap: the two passages about the decision score highest */
    assert_true(o.scores[1] > o.scores[0] && o.scores[1] > o.scores[2] && o.scores[1] > o.scores[4]);
    assert_true(o.scores[3] > o.scores[0] && o.scores[3] > o.scores[2]);
}

static void test_cancel_says_cancelled_later(void **state)
{
    (void)state;
    outcome o;
    run_task(NULL, true, &o);
    assert_int_equal(o.st, RERANK_CANCELLED);
}

static void test_refused_is_unavailable(void **state)
{
    (void)state;
    outcome o;
    run_task("http://127.0.0.1:9/rerank", false, &o);
    assert_int_equal(o.st, RERANK_UNAVAILABLE);
    assert_non_null(strstr(o.message, "reranker http://127.0.0.1:9/rerank"));
}

int main(void)
{
    (void)collect; /* fake_ollama_proc.h's curl helper: not needed here */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_judge_number),
        cmocka_unit_test(test_url_shape),
        cmocka_unit_test(test_order),
        cmocka_unit_test(test_scores_in_input_order),
        cmocka_unit_test(test_cancel_says_cancelled_later),
        cmocka_unit_test(test_refused_is_unavailable),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
