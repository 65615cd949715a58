/* Unit tests for upstream/retry: full-jitter backoff, the retry decision and the retry
 * budget, on a fake clock and a seeded random source. Nothing sleeps. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <string.h>

#include "upstream/retry.h"

/* ---- fakes ---- */

typedef struct {
    double t;
} fake_clock;

static double fake_now(void *arg) { return ((fake_clock *)arg)->t; }

static upstream_clock fake_clock_of(fake_clock *c) { return (upstream_clock){.now_ms = fake_now, .arg = c}; }

/* splitmix64: a good seeded generator for the tests. */
static uint64_t fake_next(void *arg)
{
    uint64_t *s = arg;
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static upstream_rand fake_rand_of(uint64_t *seed) { return (upstream_rand){.next = fake_next, .arg = seed}; }

/* ---- backoff ---- */

static void test_backoff_full_jitter_bounds_and_mean(void **state)
{
    (void)state;
    retry_policy p;
    retry_policy_default(&p);
    p.base_ms = 100;
    p.cap_ms = 2000;
    uint64_t seed = 42;
    upstream_rand r = fake_rand_of(&seed);
    /* n = 0..4 double from 100 to 1600; n >= 5 is capped at 2000; n = 1000 must not overflow. */
    const int ns[] = {0, 1, 2, 3, 4, 5, 8, 1000};
    const double bounds[] = {100, 200, 400, 800, 1600, 2000, 2000, 2000};
    for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
        double sum = 0, lo = INFINITY, hi = 0;
        for (int i = 0; i < 1000; i++) {
            double d = retry_backoff_ms(&p, ns[k], &r);
            assert_true(d >= 0.0);
            assert_true(d < bounds[k]);
            sum += d;
            lo = fmin(lo, d);
            hi = fmax(hi, d);
        }
        double mean = sum / 1000.0;
        /* U(0, B) has mean B/2 and sd B/sqrt(12); the sd of a 1,000-sample mean is ~0.009 B. */
        assert_true(fabs(mean - bounds[k] / 2) < 0.04 * bounds[k]);
        /* Full jitter really spans the interval (not "equal jitter" B/2..B). */
        assert_true(lo < 0.05 * bounds[k]);
        assert_true(hi > 0.95 * bounds[k]);
    }
    /* A negative n is the first retry. */
    for (int i = 0; i < 100; i++)
        assert_true(retry_backoff_ms(&p, -5, &r) < 100.0);
}

/* ---- decision ---- */

static void test_decide_classes(void **state)
{
    (void)state;
    retry_policy p;
    retry_policy_default(&p);
    uint64_t seed = 1;
    upstream_rand r = fake_rand_of(&seed);

    retry_decision d = retry_decide(&p, UPSTREAM_NEUTRAL, 1, INFINITY, &r, NULL);
    assert_false(d.retry);
    assert_int_equal(d.reason, RETRY_NO_CLASS);
    assert_false(d.prefer_other_host);
    assert_true(d.delay_ms == 0.0);

    d = retry_decide(&p, UPSTREAM_SUCCESS, 1, INFINITY, &r, NULL);
    assert_false(d.retry);
    assert_int_equal(d.reason, RETRY_NO_CLASS);

    d = retry_decide(&p, UPSTREAM_FAILURE, 1, INFINITY, &r, NULL);
    assert_true(d.retry);
    assert_int_equal(d.reason, RETRY_YES);
    assert_true(d.prefer_other_host);
    assert_true(d.delay_ms >= 0.0 && d.delay_ms < p.base_ms);

    d = retry_decide(&p, UPSTREAM_OVERLOAD, 1, INFINITY, &r, NULL);
    assert_true(d.retry);
    assert_true(d.prefer_other_host);

    assert_string_equal(retry_reason_name(RETRY_NO_BUDGET), "budget");
    assert_string_equal(retry_reason_name(RETRY_YES), "yes");
}

static void test_decide_attempts_stop_at_three(void **state)
{
    (void)state;
    retry_policy p;
    retry_policy_default(&p);
    assert_int_equal(p.max_attempts, 3);
    uint64_t seed = 2;
    upstream_rand r = fake_rand_of(&seed);
    assert_true(retry_decide(&p, UPSTREAM_FAILURE, 1, INFINITY, &r, NULL).retry);
    retry_decision d = retry_decide(&p, UPSTREAM_FAILURE, 2, INFINITY, &r, NULL);
    assert_true(d.retry);
    assert_true(d.delay_ms < 2 * p.base_ms); /* second retry: n = 1 */
    d = retry_decide(&p, UPSTREAM_FAILURE, 3, INFINITY, &r, NULL);
    assert_false(d.retry);
    assert_int_equal(d.reason, RETRY_NO_ATTEMPTS);
    d = retry_decide(&p, UPSTREAM_OVERLOAD, 7, INFINITY, &r, NULL);
    assert_int_equal(d.reason, RETRY_NO_ATTEMPTS);

    p.max_attempts = 1; /* no retries at all */
    assert_int_equal(retry_decide(&p, UPSTREAM_FAILURE, 1, INFINITY, &r, NULL).reason, RETRY_NO_ATTEMPTS);
}

static void test_decide_deadline(void **state)
{
    (void)state;
    retry_policy p;
    retry_policy_default(&p); /* min_attempt_ms 50 */
    uint64_t seed = 3;
    upstream_rand r = fake_rand_of(&seed);

    retry_decision d = retry_decide(&p, UPSTREAM_FAILURE, 1, 49.9, &r, NULL);
    assert_false(d.retry);
    assert_int_equal(d.reason, RETRY_NO_DEADLINE);
    assert_int_equal(retry_decide(&p, UPSTREAM_FAILURE, 1, 0.0, &r, NULL).reason, RETRY_NO_DEADLINE);
    assert_int_equal(retry_decide(&p, UPSTREAM_FAILURE, 1, -10.0, &r, NULL).reason, RETRY_NO_DEADLINE);
    assert_int_equal(retry_decide(&p, UPSTREAM_FAILURE, 1, NAN, &r, NULL).reason, RETRY_NO_DEADLINE);

    /* Just enough time: the delay is shortened so the attempt keeps min_attempt_ms. */
    for (int i = 0; i < 200; i++) {
        d = retry_decide(&p, UPSTREAM_FAILURE, 2, 60.0, &r, NULL);
        assert_true(d.retry);
        assert_true(d.delay_ms >= 0.0 && d.delay_ms <= 10.0);
    }
    d = retry_decide(&p, UPSTREAM_FAILURE, 1, 50.0, &r, NULL);
    assert_true(d.retry);
    assert_true(d.delay_ms == 0.0);
}

/* ---- a request driver, the way the upstream client uses the policy ----
 * Hosts answer from a script; the "sleep" is recorded and advances the fake clock. */

typedef struct {
    upstream_outcome outcome[2]; /* what host 0 ("A") and host 1 ("B") answer */
    int calls[2];
    int order[8];
    int n_order;
    double slept[8];
    int n_slept;
} fake_backend;

/* Returns the final outcome; *attempts gets the number of attempts made. */
static upstream_outcome drive_request(const retry_policy *p, fake_backend *fb, fake_clock *clk, double deadline_ms,
                                      double attempt_ms, const upstream_rand *r, retry_budget *budget, int *attempts)
{
    int host = 0;
    int made = 0;
    upstream_outcome o = UPSTREAM_FAILURE;
    if (budget != NULL)
        retry_budget_note_request(budget);
    for (;;) {
        o = fb->outcome[host];
        fb->calls[host]++;
        if (fb->n_order < 8)
            fb->order[fb->n_order++] = host;
        made++;
        clk->t += attempt_ms;
        retry_decision d = retry_decide(p, o, made, deadline_ms - clk->t, r, budget);
        if (!d.retry)
            break;
        if (fb->n_slept < 8)
            fb->slept[fb->n_slept++] = d.delay_ms;
        clk->t += d.delay_ms; /* the injected sleep */
        if (d.prefer_other_host)
            host = 1 - host;
    }
    *attempts = made;
    return o;
}

static void test_retry_after_overload_goes_to_other_host(void **state)
{
    (void)state;
    retry_policy p;
    retry_policy_default(&p);
    uint64_t seed = 4;
    upstream_rand r = fake_rand_of(&seed);
    fake_clock clk = {.t = 0};
    fake_backend fb = {.outcome = {UPSTREAM_OVERLOAD, UPSTREAM_SUCCESS}};
    int attempts = 0;
    upstream_outcome o = drive_request(&p, &fb, &clk, 10000, 5, &r, NULL, &attempts);
    assert_int_equal(o, UPSTREAM_SUCCESS);
    assert_int_equal(attempts, 2);
    assert_int_equal(fb.order[0], 0);
    assert_int_equal(fb.order[1], 1); /* host B */
    assert_int_equal(fb.n_slept, 1);
    assert_true(fb.slept[0] >= 0 && fb.slept[0] < p.base_ms);
}

static void test_driver_no_retry_on_4xx_and_stops(void **state)
{
    (void)state;
    retry_policy p;
    retry_policy_default(&p);
    uint64_t seed = 5;
    upstream_rand r = fake_rand_of(&seed);
    fake_clock clk = {.t = 0};
    int attempts = 0;

    fake_backend fb4 = {.outcome = {UPSTREAM_NEUTRAL, UPSTREAM_SUCCESS}};
    assert_int_equal(drive_request(&p, &fb4, &clk, 10000, 5, &r, NULL, &attempts), UPSTREAM_NEUTRAL);
    assert_int_equal(attempts, 1);
    assert_int_equal(fb4.calls[1], 0);

    /* Both hosts down: 3 attempts in total, alternating A, B, A; delays within bounds. */
    fake_backend fb5 = {.outcome = {UPSTREAM_FAILURE, UPSTREAM_FAILURE}};
    clk.t = 0;
    assert_int_equal(drive_request(&p, &fb5, &clk, 10000, 5, &r, NULL, &attempts), UPSTREAM_FAILURE);
    assert_int_equal(attempts, 3);
    assert_int_equal(fb5.order[0], 0);
    assert_int_equal(fb5.order[1], 1);
    assert_int_equal(fb5.order[2], 0);
    assert_int_equal(fb5.n_slept, 2);
    assert_true(fb5.slept[0] < 100.0);
    assert_true(fb5.slept[1] < 200.0);

    /* A deadline of 120 ms with 60 ms attempts: the second attempt ends at >= 120, no third. */
    fake_backend fb6 = {.outcome = {UPSTREAM_FAILURE, UPSTREAM_FAILURE}};
    clk.t = 0;
    drive_request(&p, &fb6, &clk, 120, 60, &r, NULL, &attempts);
    assert_int_equal(attempts, 2);
    assert_true(clk.t <= 120.0 + 1e-9 + 60.0);
}

/* ---- budget ---- */

static void test_budget_thousand_failing_requests(void **state)
{
    (void)state;
    retry_policy p;
    retry_policy_default(&p);
    retry_budget_config bc;
    retry_budget_config_default(&bc);
    fake_clock clk = {.t = 1000};
    retry_budget *b = NULL;
    assert_int_equal(retry_budget_new(&bc, fake_clock_of(&clk), &b, NULL, 0), RAGD_OK);
    uint64_t seed = 6;
    upstream_rand r = fake_rand_of(&seed);
    fake_backend fb = {.outcome = {UPSTREAM_FAILURE, UPSTREAM_FAILURE}};
    int total_attempts = 0;
    double start = clk.t;
    for (int i = 0; i < 1000; i++) {
        int attempts = 0;
        fb.n_slept = 0;
        fb.n_order = 0;
        /* 1 ms per attempt; the fake clock also moves by each backoff delay. */
        drive_request(&p, &fb, &clk, clk.t + 10000, 1, &r, b, &attempts);
        total_attempts += attempts;
    }
    int retries = total_attempts - 1000;
    double seconds = (clk.t - start) / 1000.0;
    retry_budget_stats st = retry_budget_get_stats(b);
    assert_int_equal(st.requests, 1000);
    assert_int_equal((int)st.granted, retries);
    /* Backoff delays moved the clock by seconds; with this much traffic the per-second
     * floor (3/s) is covered by the requests' own tokens, so the bound is 10 % of the
     * requests plus the 3 tokens the bucket starts with. */
    assert_true(seconds > 2.0);
    assert_true(retries <= 100 + 3);
    assert_true(retries >= 95);
    assert_true(st.denied > 0);
    retry_budget_free(b);

    /* Same without time passing: exactly the initial 3 plus 1000 * 0.1. */
    clk.t = 0;
    assert_int_equal(retry_budget_new(&bc, fake_clock_of(&clk), &b, NULL, 0), RAGD_OK);
    int granted = 0;
    for (int i = 0; i < 1000; i++) {
        retry_budget_note_request(b);
        for (int k = 0; k < 2; k++)
            granted += retry_budget_try_withdraw(b);
    }
    assert_true(granted >= 102 && granted <= 103);
    retry_budget_free(b);
}

static void test_budget_minimum_per_second_and_cap(void **state)
{
    (void)state;
    retry_budget_config bc;
    retry_budget_config_default(&bc); /* 3/s, 10 max */
    fake_clock clk = {.t = 0};
    retry_budget *b = NULL;
    assert_int_equal(retry_budget_new(&bc, fake_clock_of(&clk), &b, NULL, 0), RAGD_OK);
    /* No requests at all: 3 retries at start, then 3 per second. */
    int granted = 0;
    while (retry_budget_try_withdraw(b))
        granted++;
    assert_int_equal(granted, 3);
    for (int s = 0; s < 5; s++) {
        clk.t += 1000;
        granted = 0;
        while (retry_budget_try_withdraw(b))
            granted++;
        assert_int_equal(granted, 3);
    }
    /* A long quiet period fills to the cap, not beyond. */
    clk.t += 3600 * 1000.0;
    assert_true(fabs(retry_budget_get_stats(b).tokens - 10.0) < 1e-9);
    granted = 0;
    while (retry_budget_try_withdraw(b))
        granted++;
    assert_int_equal(granted, 10);
    /* A clock going backwards adds nothing. */
    clk.t -= 5000;
    assert_false(retry_budget_try_withdraw(b));
    retry_budget_free(b);

    /* The floor is a minimum, not an extra. 100 requests/s for 10 s: 10 % = 10/s beats
     * the 3/s floor, so about 100 retries (not 130). 1 request/s: the floor rules, 3/s. */
    assert_int_equal(retry_budget_new(&bc, fake_clock_of(&clk), &b, NULL, 0), RAGD_OK);
    while (retry_budget_try_withdraw(b)) /* spend the initial tokens */
        ;
    granted = 0;
    for (int i = 0; i < 1000; i++) {
        clk.t += 10;
        retry_budget_note_request(b);
        granted += retry_budget_try_withdraw(b);
    }
    assert_true(granted >= 99 && granted <= 103);
    granted = 0;
    for (int i = 0; i < 10; i++) {
        clk.t += 1000;
        retry_budget_note_request(b);
        while (retry_budget_try_withdraw(b))
            granted++;
    }
    /* The first quiet second is paid by the busy phase's surplus (at most 1 s of floor). */
    assert_true(granted >= 26 && granted <= 31);
    retry_budget_free(b);

    /* Through retry_decide: an empty budget says RETRY_NO_BUDGET; a "no" for another
     * reason costs no token. */
    bc.min_per_sec = 0;
    bc.max_tokens = 1;
    assert_int_equal(retry_budget_new(&bc, fake_clock_of(&clk), &b, NULL, 0), RAGD_OK);
    retry_policy p;
    retry_policy_default(&p);
    uint64_t seed = 7;
    upstream_rand r = fake_rand_of(&seed);
    assert_int_equal(retry_decide(&p, UPSTREAM_NEUTRAL, 1, INFINITY, &r, b).reason, RETRY_NO_CLASS);
    assert_int_equal(retry_decide(&p, UPSTREAM_FAILURE, 3, INFINITY, &r, b).reason, RETRY_NO_ATTEMPTS);
    assert_int_equal(retry_decide(&p, UPSTREAM_FAILURE, 1, 1.0, &r, b).reason, RETRY_NO_DEADLINE);
    assert_int_equal(retry_decide(&p, UPSTREAM_FAILURE, 1, INFINITY, &r, b).reason, RETRY_YES);
    retry_decision d = retry_decide(&p, UPSTREAM_FAILURE, 1, INFINITY, &r, b);
    assert_false(d.retry);
    assert_int_equal(d.reason, RETRY_NO_BUDGET);
    assert_true(d.delay_ms == 0.0);
    retry_budget_free(b);
    retry_budget_free(NULL);
}

static void test_validation(void **state)
{
    (void)state;
    char err[128];
    retry_policy p;
    retry_policy_default(&p);
    assert_int_equal(retry_policy_validate(&p, err, sizeof err), RAGD_OK);
    p.max_attempts = 0;
    assert_int_equal(retry_policy_validate(&p, err, sizeof err), RAGD_EINVAL);
    assert_non_null(strstr(err, "max_attempts"));
    retry_policy_default(&p);
    p.base_ms = 0;
    assert_int_equal(retry_policy_validate(&p, err, sizeof err), RAGD_EINVAL);
    assert_non_null(strstr(err, "base_ms"));
    p.base_ms = NAN;
    assert_int_equal(retry_policy_validate(&p, NULL, 0), RAGD_EINVAL);
    retry_policy_default(&p);
    p.cap_ms = 50; /* < base */
    assert_int_equal(retry_policy_validate(&p, err, sizeof err), RAGD_EINVAL);
    assert_non_null(strstr(err, "cap_ms"));
    retry_policy_default(&p);
    p.min_attempt_ms = -1;
    assert_int_equal(retry_policy_validate(&p, err, sizeof err), RAGD_EINVAL);

    retry_budget_config bc;
    fake_clock clk = {0};
    retry_budget *b = NULL;
    const double bad_ratio[] = {0.0, -0.1, 1.5, NAN};
    for (size_t i = 0; i < 4; i++) {
        retry_budget_config_default(&bc);
        bc.ratio = bad_ratio[i];
        assert_int_equal(retry_budget_new(&bc, fake_clock_of(&clk), &b, err, sizeof err), RAGD_EINVAL);
        assert_non_null(strstr(err, "ratio"));
        assert_null(b);
    }
    retry_budget_config_default(&bc);
    bc.min_per_sec = -1;
    assert_int_equal(retry_budget_new(&bc, fake_clock_of(&clk), &b, err, sizeof err), RAGD_EINVAL);
    retry_budget_config_default(&bc);
    bc.max_tokens = 0.5;
    assert_int_equal(retry_budget_new(&bc, fake_clock_of(&clk), &b, err, sizeof err), RAGD_EINVAL);
    assert_non_null(strstr(err, "max_tokens"));
    assert_null(b);
}

/* ---- threads (run under TSan too) ---- */

typedef struct {
    retry_budget *b;
    int granted;
} budget_worker;

static void *budget_thread(void *arg)
{
    budget_worker *w = arg;
    for (int i = 0; i < 5000; i++) {
        retry_budget_note_request(w->b);
        if (retry_budget_try_withdraw(w->b))
            w->granted++;
        (void)retry_budget_get_stats(w->b);
    }
    return NULL;
}

static void test_budget_threads(void **state)
{
    (void)state;
    retry_budget_config bc;
    retry_budget_config_default(&bc);
    fake_clock clk = {.t = 0}; /* not moved while the threads run */
    retry_budget *b = NULL;
    assert_int_equal(retry_budget_new(&bc, fake_clock_of(&clk), &b, NULL, 0), RAGD_OK);
    enum { N = 8 };
    pthread_t th[N];
    budget_worker w[N];
    for (int i = 0; i < N; i++) {
        w[i] = (budget_worker){.b = b, .granted = 0};
        assert_int_equal(pthread_create(&th[i], NULL, budget_thread, &w[i]), 0);
    }
    int granted = 0;
    for (int i = 0; i < N; i++) {
        pthread_join(th[i], NULL);
        granted += w[i].granted;
    }
    retry_budget_stats st = retry_budget_get_stats(b);
    assert_int_equal(st.requests, N * 5000);
    assert_int_equal((int)st.granted, granted);
    assert_int_equal((int)(st.granted + st.denied), N * 5000);
    assert_true(granted <= 3 + N * 5000 / 10);
    assert_true(granted >= N * 5000 / 10 - 1);
    retry_budget_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backoff_full_jitter_bounds_and_mean),
        cmocka_unit_test(test_decide_classes),
        cmocka_unit_test(test_decide_attempts_stop_at_three),
        cmocka_unit_test(test_decide_deadline),
        cmocka_unit_test(test_retry_after_overload_goes_to_other_host),
        cmocka_unit_test(test_driver_no_retry_on_4xx_and_stops),
        cmocka_unit_test(test_budget_thousand_failing_requests),
        cmocka_unit_test(test_budget_minimum_per_second_and_cap),
        cmocka_unit_test(test_validation),
        cmocka_unit_test(test_budget_threads),
    };
    return cmocka_run_group_tests_name("retry", tests, NULL, NULL);
}
