/* Unit tests for upstream/breaker: a fake clock and a seeded random source, nothing sleeps.
 * Covers the behaviour docs/internals/breaker.md describes: trips, open periods, half-open
 * trials, stale generations, classification, admin overrides, counters. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/breaker.h"

/* ---- fakes ---- */

typedef struct {
    _Atomic double now;
} fake_clock;

static double fake_now(void *arg) { return atomic_load(&((fake_clock *)arg)->now); }

static void fake_set(fake_clock *c, double t) { atomic_store(&c->now, t); }

static void fake_advance(fake_clock *c, double dt) { atomic_store(&c->now, atomic_load(&c->now) + dt); }

typedef struct {
    uint64_t s; /* only touched under the breaker's mutex */
} fake_rand;

static uint64_t fake_next(void *arg)
{
    fake_rand *r = arg;
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545f4914f6cdd1dULL;
}

typedef struct {
    fake_clock clock;
    fake_rand rnd;
    breaker *b;
} fixture;

static void fx_init(fixture *f, const breaker_config *cfg, uint64_t seed)
{
    fake_set(&f->clock, 1000);
    f->rnd.s = seed ? seed : 1;
    upstream_clock c = {.now_ms = fake_now, .arg = &f->clock};
    upstream_rand r = {.next = fake_next, .arg = &f->rnd};
    char err[256] = "";
    breaker_config def;
    breaker_config_default(&def);
    ragd_err rc = breaker_new("http://a:11434", "generate", "llama3.2", cfg ? cfg : &def, c, r, &f->b, err,
                              sizeof err);
    if (rc != RAGD_OK)
        fail_msg("breaker_new: %s", err);
}

static breaker_state state_of(breaker *b)
{
    breaker_snapshot s;
    breaker_snapshot_get(b, &s);
    return s.state;
}

/* Acquires (must be admitted) and releases with outcome. */
static void call(breaker *b, breaker_outcome o)
{
    breaker_permit p;
    assert_true(breaker_acquire(b, &p, NULL));
    breaker_release(b, &p, o, false);
}

static void fail_n(breaker *b, int n)
{
    for (int i = 0; i < n; i++)
        call(b, UPSTREAM_FAILURE);
}

/* Trips a CLOSED default breaker with 5 failures. */
static void trip(fixture *f)
{
    fail_n(f->b, 5);
    assert_int_equal(state_of(f->b), BREAKER_OPEN);
}

/* ---- consecutive-failure rule ---- */

static void test_consecutive(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL, 1);
    fail_n(f.b, 4);
    assert_int_equal(state_of(f.b), BREAKER_CLOSED);
    breaker_snapshot s;
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.consecutive_failures, 4);
    assert_true(s.has_last_failure);
    call(f.b, UPSTREAM_FAILURE);
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_OPEN);
    assert_int_equal(s.transitions[BREAKER_OPEN], 1);
    assert_int_equal(s.failures, 5);
    assert_true(s.remaining_open_ms == 30000);
    breaker_free(f.b);

    fx_init(&f, NULL, 1);
    call(f.b, UPSTREAM_FAILURE);
    call(f.b, UPSTREAM_SUCCESS);
    fail_n(f.b, 4);
    assert_int_equal(state_of(f.b), BREAKER_CLOSED);
    call(f.b, UPSTREAM_FAILURE);
    assert_int_equal(state_of(f.b), BREAKER_OPEN);
    breaker_free(f.b);
}

/* ---- failure-rate rule ---- */

static void rate_config(breaker_config *c)
{
    breaker_config_default(c);
    c->min_calls = 100;
    c->failure_rate = 0.5;
}

static void test_rate_49_stays_closed(void **state)
{
    (void)state;
    breaker_config c;
    rate_config(&c);
    fixture f;
    fx_init(&f, &c, 1);
    for (int i = 0; i < 49; i++) { /* F S F S ...: never 5 in a row */
        call(f.b, UPSTREAM_FAILURE);
        call(f.b, UPSTREAM_SUCCESS);
    }
    call(f.b, UPSTREAM_SUCCESS);
    call(f.b, UPSTREAM_SUCCESS);
    breaker_snapshot s;
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.window_calls, 100);
    assert_int_equal(s.window_failures, 49);
    assert_int_equal(s.state, BREAKER_CLOSED);
    breaker_free(f.b);
}

static void test_rate_50_opens_at_minimum(void **state)
{
    (void)state;
    breaker_config c;
    rate_config(&c);
    fixture f;
    fx_init(&f, &c, 1);
    for (int i = 0; i < 49; i++) {
        call(f.b, UPSTREAM_FAILURE);
        call(f.b, UPSTREAM_SUCCESS);
    }
    call(f.b, UPSTREAM_FAILURE); /* 50 of 99: over the rate but under the minimum */
    assert_int_equal(state_of(f.b), BREAKER_CLOSED);
    call(f.b, UPSTREAM_SUCCESS); /* 50 of 100: the minimum is reached, 50 % opens */
    assert_int_equal(state_of(f.b), BREAKER_OPEN);
    breaker_free(f.b);
}

static void bucket_config(breaker_config *c)
{
    breaker_config_default(c);
    c->failure_threshold = 1000; /* only the rate rule here */
    c->min_calls = 10;
    c->window_ms = 10000;
    c->window_buckets = 10;
}

static void test_rate_buckets_expire(void **state)
{
    (void)state;
    breaker_config c;
    bucket_config(&c);
    fixture f;
    breaker_snapshot s;

    /* 9 failures at t, then one more 9.999 s later: all within the window -> opens. */
    fx_init(&f, &c, 1);
    fail_n(f.b, 9);
    fake_advance(&f.clock, 9999);
    call(f.b, UPSTREAM_FAILURE);
    assert_int_equal(state_of(f.b), BREAKER_OPEN);
    breaker_free(f.b);

    /* Same, but the tenth arrives when the first bucket has left the window. */
    fx_init(&f, &c, 1);
    fail_n(f.b, 9);
    fake_advance(&f.clock, 10000);
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.window_calls, 0);
    call(f.b, UPSTREAM_FAILURE);
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_CLOSED);
    assert_int_equal(s.window_calls, 1);
    assert_int_equal(s.window_failures, 1);

    /* Buckets expire one by one: 5 failures at each of two bucket times. */
    fake_advance(&f.clock, 100000);
    fail_n(f.b, 5); /* bucket k */
    fake_advance(&f.clock, 5000);
    fail_n(f.b, 4); /* bucket k+5: 9 in the window */
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.window_calls, 9);
    fake_advance(&f.clock, 5000); /* bucket k leaves */
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.window_calls, 4);
    call(f.b, UPSTREAM_FAILURE);
    assert_int_equal(state_of(f.b), BREAKER_CLOSED);
    breaker_free(f.b);
}

/* ---- open period ---- */

static void test_open_30s_then_half_open(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL, 1);
    trip(&f);
    breaker_permit p;
    double rem = 0;
    fake_advance(&f.clock, 29999);
    assert_false(breaker_acquire(f.b, &p, &rem));
    assert_true(rem > 0.999 && rem < 1.001);
    assert_false(p.held);
    fake_advance(&f.clock, 1);
    assert_true(breaker_acquire(f.b, &p, &rem));
    assert_true(rem == 0);
    assert_true(p.trial_slot >= 0);
    breaker_snapshot s;
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_HALF_OPEN);
    assert_int_equal(s.trials_in_flight, 1);
    assert_int_equal(s.not_permitted, 1);
    assert_int_equal(s.transitions[BREAKER_HALF_OPEN], 1);
    /* The only trial permit is taken. */
    breaker_permit q;
    assert_false(breaker_acquire(f.b, &q, &rem));
    assert_true(rem == 0);
    /* One success (N = 1) closes. */
    breaker_release(f.b, &p, UPSTREAM_SUCCESS, false);
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_CLOSED);
    assert_int_equal(s.consecutive_failures, 0);
    assert_int_equal(s.transitions[BREAKER_CLOSED], 1);
    breaker_free(f.b);
}

/* Walks a breaker from OPEN through HALF_OPEN to a failed trial; returns the new open period. */
static double reopen(fixture *f)
{
    breaker_snapshot s;
    breaker_snapshot_get(f->b, &s);
    assert_int_equal(s.state, BREAKER_OPEN);
    fake_advance(&f->clock, s.remaining_open_ms + 1e-6); /* + 1e-6: immune to rounding */
    breaker_permit p;
    assert_true(breaker_acquire(f->b, &p, NULL));
    breaker_release(f->b, &p, UPSTREAM_FAILURE, false);
    breaker_snapshot_get(f->b, &s);
    assert_int_equal(s.state, BREAKER_OPEN);
    assert_true(fabs(s.remaining_open_ms - s.open_period_ms) < 1e-6);
    return s.open_period_ms;
}

static void test_reopen_doubles_with_jitter(void **state)
{
    (void)state;
    double lo = 1e18, hi = 0;
    for (uint64_t seed = 1; seed <= 200; seed++) {
        fixture f;
        fx_init(&f, NULL, seed * 7919);
        trip(&f);
        double w = reopen(&f);
        assert_true(w >= 48000 && w <= 72000);
        if (w < lo)
            lo = w;
        if (w > hi)
            hi = w;
        /* The re-open wait is honoured exactly. */
        breaker_permit p;
        fake_advance(&f.clock, w - 0.5);
        assert_false(breaker_acquire(f.b, &p, NULL));
        fake_advance(&f.clock, 0.5 + 1e-6);
        assert_true(breaker_acquire(f.b, &p, NULL));
        breaker_release(f.b, &p, UPSTREAM_NEUTRAL, false);
        breaker_free(f.b);
    }
    /* The jitter really spreads (seeded, so deterministic). */
    assert_true(lo < 54000);
    assert_true(hi > 66000);
}

static void test_open_cap(void **state)
{
    (void)state;
    for (uint64_t seed = 1; seed <= 20; seed++) {
        fixture f;
        fx_init(&f, NULL, seed);
        trip(&f);
        for (int i = 2; i <= 12; i++) {
            double w = reopen(&f);
            double nominal = 30000.0 * (double)(1u << (i - 1));
            if (nominal > 300000)
                nominal = 300000;
            assert_true(w <= 300000);
            assert_true(w >= nominal * 0.8 - 1e-6);
            assert_true(w <= nominal * 1.2 + 1e-6);
        }
        breaker_snapshot s;
        breaker_snapshot_get(f.b, &s);
        assert_int_equal(s.open_streak, 12);
        breaker_free(f.b);
    }
}

/* Closes an OPEN breaker through one successful trial. */
static void close_via_trial(fixture *f)
{
    breaker_snapshot s;
    breaker_snapshot_get(f->b, &s);
    fake_advance(&f->clock, s.remaining_open_ms + 1e-6);
    call(f->b, UPSTREAM_SUCCESS);
    assert_int_equal(state_of(f->b), BREAKER_CLOSED);
}

static void test_growth_resets_after_quiet(void **state)
{
    (void)state;
    breaker_config c;
    breaker_config_default(&c);
    c.quiet_ms = 120000;
    fixture f;
    breaker_snapshot s;

    /* Re-tripped soon after closing: a consecutive re-open, the wait grows. */
    fx_init(&f, &c, 3);
    trip(&f);
    close_via_trial(&f);
    fake_advance(&f.clock, 119999);
    trip(&f);
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.open_streak, 2);
    assert_true(s.open_period_ms >= 48000 && s.open_period_ms <= 72000);
    breaker_free(f.b);

    /* CLOSED for the quiet period: back to exactly 30 s. */
    fx_init(&f, &c, 3);
    trip(&f);
    reopen(&f);
    reopen(&f);
    close_via_trial(&f);
    fake_advance(&f.clock, 120000);
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.open_streak, 0);
    trip(&f);
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.open_streak, 1);
    assert_true(s.open_period_ms == 30000);
    breaker_free(f.b);
}

/* ---- half-open ---- */

typedef struct {
    breaker *b;
    pthread_barrier_t *barrier;
    atomic_int *admitted;
    breaker_permit permit;
    bool ok;
} racer;

static void *race_main(void *arg)
{
    racer *r = arg;
    pthread_barrier_wait(r->barrier);
    r->ok = breaker_acquire(r->b, &r->permit, NULL);
    if (r->ok)
        atomic_fetch_add(r->admitted, 1);
    return NULL;
}

static void race(unsigned permits)
{
    enum { NT = 64 };
    breaker_config c;
    breaker_config_default(&c);
    c.half_open_permits = permits;
    fixture f;
    fx_init(&f, &c, 5);
    trip(&f);
    fake_advance(&f.clock, 30000); /* nobody has looked yet: the first call flips it */
    pthread_barrier_t barrier;
    pthread_barrier_init(&barrier, NULL, NT);
    atomic_int admitted = 0;
    static racer rs[NT];
    pthread_t th[NT];
    for (int i = 0; i < NT; i++) {
        rs[i] = (racer){.b = f.b, .barrier = &barrier, .admitted = &admitted};
        assert_int_equal(pthread_create(&th[i], NULL, race_main, &rs[i]), 0);
    }
    for (int i = 0; i < NT; i++)
        pthread_join(th[i], NULL);
    pthread_barrier_destroy(&barrier);
    assert_int_equal(atomic_load(&admitted), (int)permits);
    breaker_snapshot s;
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_HALF_OPEN);
    assert_int_equal(s.transitions[BREAKER_HALF_OPEN], 1);
    assert_int_equal(s.trials_in_flight, permits);
    assert_int_equal(s.not_permitted, NT - permits);
    /* Report from the racing threads' permits: N successes close. */
    unsigned reported = 0;
    for (int i = 0; i < NT; i++) {
        if (!rs[i].ok)
            continue;
        breaker_release(f.b, &rs[i].permit, UPSTREAM_SUCCESS, false);
        reported++;
        assert_int_equal(state_of(f.b), reported == permits ? BREAKER_CLOSED : BREAKER_HALF_OPEN);
    }
    breaker_free(f.b);
}

static void test_race_one_permit(void **state)
{
    (void)state;
    race(1);
}

static void test_race_three_permits(void **state)
{
    (void)state;
    race(3);
}

static void test_hung_trial_reopens(void **state)
{
    (void)state;
    breaker_config c;
    breaker_config_default(&c);
    c.trial_timeout_ms = 5000;
    fixture f;
    fx_init(&f, &c, 9);
    trip(&f);
    fake_advance(&f.clock, 30000);
    breaker_permit hung;
    assert_true(breaker_acquire(f.b, &hung, NULL));
    fake_advance(&f.clock, 4999);
    assert_int_equal(state_of(f.b), BREAKER_HALF_OPEN);
    fake_advance(&f.clock, 1);
    breaker_snapshot s;
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_OPEN);
    assert_int_equal(s.failures, 6); /* the hung trial counts as failed */
    assert_int_equal(s.open_streak, 2);
    assert_true(s.open_period_ms >= 48000 && s.open_period_ms <= 72000);
    /* The straggler finally reports success: stale, still OPEN. */
    breaker_release(f.b, &hung, UPSTREAM_SUCCESS, false);
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_OPEN);
    assert_int_equal(s.stale, 1);
    breaker_free(f.b);
}

static void test_half_open_n_successes(void **state)
{
    (void)state;
    breaker_config c;
    breaker_config_default(&c);
    c.half_open_permits = 2;
    fixture f;
    fx_init(&f, &c, 9);
    trip(&f);
    fake_advance(&f.clock, 30000);
    breaker_permit a, b2, x;
    assert_true(breaker_acquire(f.b, &a, NULL));
    assert_true(breaker_acquire(f.b, &b2, NULL));
    assert_false(breaker_acquire(f.b, &x, NULL));
    breaker_release(f.b, &a, UPSTREAM_SUCCESS, false);
    assert_int_equal(state_of(f.b), BREAKER_HALF_OPEN);
    /* A success uses its permit up: still no room. */
    assert_false(breaker_acquire(f.b, &x, NULL));
    /* OVERLOAD frees the permit without counting. */
    breaker_release(f.b, &b2, UPSTREAM_OVERLOAD, false);
    assert_int_equal(state_of(f.b), BREAKER_HALF_OPEN);
    assert_true(breaker_acquire(f.b, &x, NULL));
    breaker_release(f.b, &x, UPSTREAM_SUCCESS, false);
    assert_int_equal(state_of(f.b), BREAKER_CLOSED);
    breaker_free(f.b);

    /* One failure among the trials re-opens at once. */
    fx_init(&f, &c, 9);
    trip(&f);
    fake_advance(&f.clock, 30000);
    assert_true(breaker_acquire(f.b, &a, NULL));
    assert_true(breaker_acquire(f.b, &b2, NULL));
    breaker_release(f.b, &a, UPSTREAM_SUCCESS, false);
    breaker_release(f.b, &b2, UPSTREAM_FAILURE, false);
    assert_int_equal(state_of(f.b), BREAKER_OPEN);
    breaker_free(f.b);
}

/* ---- generations ---- */

static void test_stale_generation(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL, 1);
    breaker_permit old1, old2;
    assert_true(breaker_acquire(f.b, &old1, NULL));
    assert_true(breaker_acquire(f.b, &old2, NULL));
    trip(&f);
    breaker_snapshot s0, s;
    breaker_snapshot_get(f.b, &s0);
    breaker_release(f.b, &old1, UPSTREAM_SUCCESS, false);
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_OPEN);
    assert_int_equal(s.generation, s0.generation);
    assert_true(s.remaining_open_ms == s0.remaining_open_ms);
    assert_int_equal(s.stale, 1);
    /* A straggler reporting success while HALF_OPEN must not close it either. */
    fake_advance(&f.clock, 30000);
    breaker_permit trial;
    assert_true(breaker_acquire(f.b, &trial, NULL));
    breaker_release(f.b, &old2, UPSTREAM_SUCCESS, false);
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_HALF_OPEN);
    assert_int_equal(s.trials_in_flight, 1);
    assert_int_equal(s.stale, 2);
    /* Reporting the same permit twice is ignored. */
    breaker_release(f.b, &trial, UPSTREAM_NEUTRAL, false);
    breaker_release(f.b, &trial, UPSTREAM_SUCCESS, false);
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_HALF_OPEN);
    assert_int_equal(s.stale, 3);
    breaker_free(f.b);
}

/* ---- classification through breaker_report ---- */

static breaker_call http(int status)
{
    return (breaker_call){.http_status = status};
}

static void test_neutral_never_trips(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL, 1);
    for (int i = 0; i < 100; i++) {
        breaker_permit p;
        assert_true(breaker_acquire(f.b, &p, NULL));
        breaker_call c = http(i % 2 ? 400 : 404);
        assert_int_equal(breaker_report(f.b, &p, &c), UPSTREAM_NEUTRAL);
    }
    breaker_snapshot s;
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_CLOSED);
    assert_int_equal(s.neutral, 100);
    assert_int_equal(s.failures, 0);
    assert_int_equal(s.window_calls, 0);
    /* Neutral calls do not break a failure streak either... */
    fail_n(f.b, 4);
    breaker_permit p;
    assert_true(breaker_acquire(f.b, &p, NULL));
    breaker_call c422 = http(422);
    assert_int_equal(breaker_report(f.b, &p, &c422), UPSTREAM_NEUTRAL);
    call(f.b, UPSTREAM_FAILURE);
    assert_int_equal(state_of(f.b), BREAKER_OPEN);
    breaker_free(f.b);
}

static void test_404_in_half_open(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL, 1);
    trip(&f);
    fake_advance(&f.clock, 30000);
    breaker_permit p;
    assert_true(breaker_acquire(f.b, &p, NULL));
    breaker_call c = http(404);
    assert_int_equal(breaker_report(f.b, &p, &c), UPSTREAM_NEUTRAL);
    breaker_snapshot s;
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_HALF_OPEN); /* not closed */
    assert_int_equal(s.trials_in_flight, 0);      /* permit not kept */
    assert_int_equal(s.trial_successes, 0);
    assert_true(breaker_acquire(f.b, &p, NULL)); /* so the next trial can go */
    /* A client cancellation frees it too. */
    breaker_call cancelled = {.transport = BREAKER_XPORT_TTFB_TIMEOUT, .cancelled = true};
    assert_int_equal(breaker_report(f.b, &p, &cancelled), UPSTREAM_NEUTRAL);
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_HALF_OPEN);
    assert_int_equal(s.trials_in_flight, 0);
    breaker_free(f.b);
}

static void test_overload_not_failure(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL, 1);
    const char *body = "{\"error\":\"server busy, please try again.  maximum pending requests exceeded\"}";
    for (int i = 0; i < 100; i++) {
        breaker_permit p;
        assert_true(breaker_acquire(f.b, &p, NULL));
        breaker_call c = http(503);
        c.busy = breaker_body_is_busy(body, strlen(body));
        assert_int_equal(breaker_report(f.b, &p, &c), UPSTREAM_OVERLOAD);
    }
    breaker_snapshot s;
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_CLOSED);
    assert_int_equal(s.overload, 100);
    assert_int_equal(s.failures, 0);
    assert_int_equal(s.consecutive_failures, 0);
    /* A 503 that is not the busy message is a failure. */
    for (int i = 0; i < 5; i++) {
        breaker_permit p;
        assert_true(breaker_acquire(f.b, &p, NULL));
        breaker_call c = http(503);
        const char *other = "{\"error\":\"model runner crashed\"}";
        c.busy = breaker_body_is_busy(other, strlen(other));
        assert_int_equal(breaker_report(f.b, &p, &c), UPSTREAM_FAILURE);
    }
    assert_int_equal(state_of(f.b), BREAKER_OPEN);
    breaker_free(f.b);
}

static void test_stream_failures(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL, 1);
    for (int i = 0; i < 5; i++) {
        breaker_permit p;
        assert_true(breaker_acquire(f.b, &p, NULL));
        breaker_call c = http(200);
        c.stream = i % 2 ? BREAKER_STREAM_ERROR_LINE : BREAKER_STREAM_NO_DONE;
        assert_int_equal(breaker_report(f.b, &p, &c), UPSTREAM_FAILURE);
    }
    assert_int_equal(state_of(f.b), BREAKER_OPEN);
    breaker_free(f.b);

    fx_init(&f, NULL, 1);
    breaker_permit p;
    assert_true(breaker_acquire(f.b, &p, NULL));
    breaker_call done = http(200);
    done.stream = BREAKER_STREAM_DONE;
    assert_int_equal(breaker_report(f.b, &p, &done), UPSTREAM_SUCCESS);
    breaker_snapshot s;
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.successes, 1);
    breaker_free(f.b);
}

static void test_classify_table(void **state)
{
    (void)state;
    static const struct {
        breaker_call call;
        breaker_outcome want;
    } cases[] = {
        {{.transport = BREAKER_XPORT_CONNECT}, UPSTREAM_FAILURE},
        {{.transport = BREAKER_XPORT_RESET}, UPSTREAM_FAILURE},
        {{.transport = BREAKER_XPORT_TTFB_TIMEOUT}, UPSTREAM_FAILURE},
        {{.transport = BREAKER_XPORT_IDLE_TIMEOUT, .http_status = 200}, UPSTREAM_FAILURE},
        {{.transport = BREAKER_XPORT_TOTAL_TIMEOUT}, UPSTREAM_FAILURE},
        {{.transport = BREAKER_XPORT_OTHER}, UPSTREAM_FAILURE},
        {{.http_status = 500}, UPSTREAM_FAILURE},
        {{.http_status = 502}, UPSTREAM_FAILURE},
        {{.http_status = 503}, UPSTREAM_FAILURE},
        {{.http_status = 503, .busy = true}, UPSTREAM_OVERLOAD},
        {{.http_status = 429}, UPSTREAM_OVERLOAD},
        {{.http_status = 408}, UPSTREAM_FAILURE},
        {{.http_status = 400}, UPSTREAM_NEUTRAL},
        {{.http_status = 404}, UPSTREAM_NEUTRAL},
        {{.http_status = 422}, UPSTREAM_NEUTRAL},
        {{.http_status = 500, .cancelled = true}, UPSTREAM_NEUTRAL},
        {{.transport = BREAKER_XPORT_RESET, .cancelled = true}, UPSTREAM_NEUTRAL},
        {{.http_status = 200}, UPSTREAM_SUCCESS},
        {{.http_status = 200, .stream = BREAKER_STREAM_DONE, .model_loading = true}, UPSTREAM_SUCCESS},
        {{.http_status = 200, .stream = BREAKER_STREAM_ERROR_LINE}, UPSTREAM_FAILURE},
        {{.http_status = 200, .stream = BREAKER_STREAM_NO_DONE}, UPSTREAM_FAILURE},
        {{.http_status = 0}, UPSTREAM_FAILURE},
        {{.http_status = 302}, UPSTREAM_FAILURE},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        breaker_outcome got = breaker_classify_default(&cases[i].call, NULL);
        if (got != cases[i].want)
            fail_msg("case %zu: got %s, want %s", i, breaker_outcome_name(got), breaker_outcome_name(cases[i].want));
    }
    const char *busy = "{\"error\":\"Server Busy, please try again.  maximum pending requests exceeded\"}";
    assert_true(breaker_body_is_busy(busy, strlen(busy)));
    assert_true(breaker_body_is_busy("maximum pending requests exceeded", 33));
    assert_false(breaker_body_is_busy("maximum pending requests exceeded", 32)); /* length honoured */
    assert_false(breaker_body_is_busy("{\"error\":\"oops\"}", 16));
    assert_false(breaker_body_is_busy(NULL, 0));
    assert_false(breaker_body_is_busy("", 0));
    assert_string_equal(breaker_state_name(BREAKER_HALF_OPEN), "HALF_OPEN");
    assert_string_equal(breaker_state_name((breaker_state)99), "UNKNOWN");
    assert_string_equal(breaker_outcome_name(UPSTREAM_OVERLOAD), "overload");
}

static breaker_outcome classify_all_neutral(const breaker_call *call, void *arg)
{
    (void)call;
    (*(int *)arg)++;
    return UPSTREAM_NEUTRAL;
}

static void test_pluggable_classifier(void **state)
{
    (void)state;
    int seen = 0;
    breaker_config c;
    breaker_config_default(&c);
    c.classify = classify_all_neutral;
    c.classify_arg = &seen;
    fixture f;
    fx_init(&f, &c, 1);
    for (int i = 0; i < 10; i++) {
        breaker_permit p;
        assert_true(breaker_acquire(f.b, &p, NULL));
        breaker_call call500 = http(500);
        assert_int_equal(breaker_report(f.b, &p, &call500), UPSTREAM_NEUTRAL);
    }
    assert_int_equal(seen, 10);
    assert_int_equal(state_of(f.b), BREAKER_CLOSED);
    breaker_free(f.b);
}

/* ---- slow calls ---- */

static void slow_config(breaker_config *c)
{
    breaker_config_default(c);
    c->slow_enabled = true;
    c->slow_call_ms = 1000;
    c->slow_call_rate = 0.5;
    c->min_calls = 4;
}

static void slow_call(fixture *f, bool loading, double took)
{
    breaker_permit p;
    assert_true(breaker_acquire(f->b, &p, NULL));
    fake_advance(&f->clock, took);
    breaker_call c = http(200);
    c.stream = BREAKER_STREAM_DONE;
    c.model_loading = loading;
    assert_int_equal(breaker_report(f->b, &p, &c), UPSTREAM_SUCCESS);
}

static void test_slow_load_is_not_slow(void **state)
{
    (void)state;
    breaker_config c;
    slow_config(&c);
    fixture f;
    fx_init(&f, &c, 1);
    for (int i = 0; i < 20; i++)
        slow_call(&f, true, 5000); /* slow because the model was loading */
    breaker_snapshot s;
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_CLOSED);
    assert_int_equal(s.slow, 0);
    assert_int_equal(s.successes, 20);
    breaker_free(f.b);

    /* The same durations without loading are slow, and the slow-call rate trips. */
    fx_init(&f, &c, 1);
    slow_call(&f, false, 999); /* just under the threshold */
    slow_call(&f, false, 1000);
    slow_call(&f, false, 5000);
    assert_int_equal(state_of(f.b), BREAKER_CLOSED); /* 3 < min_calls */
    slow_call(&f, false, 100);                      /* 2 slow of 4 = 50 % */
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.slow, 2);
    assert_int_equal(s.state, BREAKER_OPEN);
    breaker_free(f.b);

    /* Disabled by default: nothing is counted slow. */
    fx_init(&f, NULL, 1);
    slow_call(&f, false, 60000);
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.slow, 0);
    breaker_free(f.b);
}

/* ---- admin ---- */

static void test_admin(void **state)
{
    (void)state;
    fixture f;
    fx_init(&f, NULL, 1);
    breaker_permit before, p;
    assert_true(breaker_acquire(f.b, &before, NULL));

    breaker_force_open(f.b);
    double rem = 0;
    assert_false(breaker_acquire(f.b, &p, &rem));
    assert_true(rem == -1);
    fake_advance(&f.clock, 1e9); /* forced open does not time out */
    assert_false(breaker_acquire(f.b, &p, NULL));
    breaker_snapshot s;
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_FORCED_OPEN);
    assert_true(s.remaining_open_ms == -1);
    assert_int_equal(s.not_permitted, 2);
    breaker_release(f.b, &before, UPSTREAM_FAILURE, false); /* stale */
    assert_int_equal(state_of(f.b), BREAKER_FORCED_OPEN);

    breaker_disable(f.b);
    fail_n(f.b, 100);
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_DISABLED);
    assert_int_equal(s.failures, 101);

    breaker_reset(f.b);
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.state, BREAKER_CLOSED);
    assert_int_equal(s.consecutive_failures, 0);
    assert_int_equal(s.transitions[BREAKER_FORCED_OPEN], 1);
    assert_int_equal(s.transitions[BREAKER_DISABLED], 1);
    assert_int_equal(s.transitions[BREAKER_CLOSED], 1);
    assert_int_equal(s.failures, 101); /* counters only grow */

    /* Reset from OPEN after several re-opens: admits at once, growth starts over. */
    trip(&f);
    reopen(&f);
    reopen(&f);
    breaker_reset(f.b);
    assert_true(breaker_acquire(f.b, &p, NULL));
    breaker_release(f.b, &p, UPSTREAM_SUCCESS, false);
    trip(&f);
    breaker_snapshot_get(f.b, &s);
    assert_true(s.open_period_ms == 30000);
    breaker_free(f.b);
}

/* ---- configuration ---- */

static void expect_invalid(const breaker_config *c, const char *field)
{
    char err[256] = "";
    assert_int_equal(breaker_config_validate(c, err, sizeof err), RAGD_EINVAL);
    if (!strstr(err, field))
        fail_msg("message \"%s\" does not name %s", err, field);
    fake_clock fc = {0};
    fake_rand fr = {1};
    breaker *b = (breaker *)1;
    assert_int_equal(breaker_new("http://a", "embed", NULL, c, (upstream_clock){fake_now, &fc},
                                 (upstream_rand){fake_next, &fr}, &b, err, sizeof err),
                     RAGD_EINVAL);
    assert_null(b);
}

static void test_config_validation(void **state)
{
    (void)state;
    breaker_config c;
    breaker_config_default(&c);
    assert_int_equal(breaker_config_validate(&c, NULL, 0), RAGD_OK);
    assert_int_equal(c.failure_threshold, 5);
    assert_true(c.open_ms == 30000 && c.open_max_ms == 300000 && c.open_jitter == 0.2);
    assert_int_equal(c.half_open_permits, 1);

#define BAD(field, value)                                                                                              \
    do {                                                                                                               \
        breaker_config_default(&c);                                                                                    \
        c.field = value;                                                                                               \
        expect_invalid(&c, #field);                                                                                    \
    } while (0)
    BAD(failure_threshold, 0);
    BAD(failure_rate, 0);
    BAD(failure_rate, 1.5);
    BAD(failure_rate, NAN);
    BAD(min_calls, 0);
    BAD(window_ms, 0);
    BAD(window_ms, -1);
    BAD(window_buckets, 0);
    BAD(window_buckets, 1001);
    BAD(open_ms, 0);
    BAD(open_ms, -30000);
    BAD(open_ms, INFINITY);
    BAD(open_max_ms, 1000); /* below open_ms */
    BAD(open_growth, 0.5);
    BAD(open_jitter, -0.1);
    BAD(open_jitter, 1);
    BAD(quiet_ms, 0);
    BAD(half_open_permits, 0);
    BAD(half_open_permits, 5000);
    BAD(trial_timeout_ms, -5);
    BAD(slow_call_ms, 0);
    BAD(slow_call_rate, 0);
#undef BAD

    /* Names. */
    breaker_config_default(&c);
    char err[128] = "";
    breaker *b = NULL;
    fake_clock fc = {0};
    fake_rand fr = {1};
    upstream_clock ck = {fake_now, &fc};
    upstream_rand rn = {fake_next, &fr};
    assert_int_equal(breaker_new("", "embed", NULL, &c, ck, rn, &b, err, sizeof err), RAGD_EINVAL);
    assert_non_null(strstr(err, "backend"));
    assert_int_equal(breaker_new("http://a", NULL, NULL, &c, ck, rn, &b, err, sizeof err), RAGD_EINVAL);
    assert_non_null(strstr(err, "op"));
    assert_int_equal(breaker_new("http://a", "embed", NULL, &c, (upstream_clock){0}, rn, &b, err, sizeof err),
                     RAGD_EINVAL);
    assert_null(b);
    /* A tiny error buffer is still NUL-terminated. */
    char tiny[4];
    breaker_config_default(&c);
    c.min_calls = 0;
    assert_int_equal(breaker_config_validate(&c, tiny, sizeof tiny), RAGD_EINVAL);
    assert_int_equal(strlen(tiny), 3);
}

/* ---- registry ---- */

static void test_registry(void **state)
{
    (void)state;
    fake_clock fc = {0};
    fake_rand fr = {1};
    breaker_registry *r = breaker_registry_new((upstream_clock){fake_now, &fc}, (upstream_rand){fake_next, &fr});
    assert_non_null(r);
    breaker_config c;
    breaker_config_default(&c);
    char err[128];
    breaker *a = NULL, *b = NULL, *dup = NULL;
    assert_int_equal(breaker_registry_add(r, "http://a:11434", "embed", "nomic-embed-text", &c, &a, err, sizeof err),
                     RAGD_OK);
    assert_int_equal(breaker_registry_add(r, "http://a:11434", "generate", "", &c, &b, err, sizeof err), RAGD_OK);
    assert_string_equal(breaker_name(a), "http://a:11434 embed/nomic-embed-text");
    assert_string_equal(breaker_name(b), "http://a:11434 generate");
    assert_string_equal(breaker_backend(a), "http://a:11434");
    assert_string_equal(breaker_op(a), "embed");
    assert_string_equal(breaker_model(a), "nomic-embed-text");
    assert_string_equal(breaker_model(b), "");
    assert_int_equal(breaker_registry_add(r, "http://a:11434", "embed", "nomic-embed-text", &c, &dup, err, sizeof err),
                     RAGD_ECONFLICT);
    assert_ptr_equal(dup, a);
    c.failure_threshold = 0;
    assert_int_equal(breaker_registry_add(r, "http://b", "embed", NULL, &c, &dup, err, sizeof err), RAGD_EINVAL);
    assert_null(dup);
    assert_int_equal(breaker_registry_count(r), 2);
    assert_ptr_equal(breaker_registry_at(r, 0), a);
    assert_ptr_equal(breaker_registry_at(r, 1), b);
    assert_null(breaker_registry_at(r, 2));
    assert_ptr_equal(breaker_registry_find(r, "http://a:11434 generate"), b);
    assert_null(breaker_registry_find(r, "http://nope embed"));
    /* Grows past its first allocation. */
    breaker_config_default(&c);
    for (int i = 0; i < 40; i++) {
        char url[64];
        snprintf(url, sizeof url, "http://h%d:11434", i);
        breaker *x = NULL;
        assert_int_equal(breaker_registry_add(r, url, "embed", "m", &c, &x, err, sizeof err), RAGD_OK);
    }
    assert_int_equal(breaker_registry_count(r), 42);
    assert_non_null(breaker_registry_find(r, "http://h39:11434 embed/m"));
    /* The registry's breakers work on the shared clock. */
    for (int i = 0; i < 5; i++)
        call(a, UPSTREAM_FAILURE);
    assert_int_equal(state_of(a), BREAKER_OPEN);
    assert_int_equal(state_of(b), BREAKER_CLOSED);
    breaker_registry_free(r);
    breaker_registry_free(NULL);
    breaker_free(NULL);
}

/* ---- threads: mixed traffic keeps the books straight (run under TSan too) ---- */

typedef struct {
    breaker *b;
    int id;
    unsigned long admitted;
} worker;

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (int i = 0; i < 2000; i++) {
        breaker_permit p;
        if (!breaker_acquire(w->b, &p, NULL))
            continue;
        w->admitted++;
        breaker_outcome o = (breaker_outcome)((i + w->id) % 4);
        breaker_release(w->b, &p, o, false);
    }
    return NULL;
}

static void test_threads_mixed(void **state)
{
    (void)state;
    enum { NT = 8 };
    fixture f;
    fx_init(&f, NULL, 11);
    breaker_disable(f.b);
    breaker_reset(f.b);
    pthread_t th[NT];
    worker ws[NT];
    for (int i = 0; i < NT; i++) {
        ws[i] = (worker){.b = f.b, .id = i};
        assert_int_equal(pthread_create(&th[i], NULL, worker_main, &ws[i]), 0);
    }
    /* Readers and admins race with the workers. */
    for (int i = 0; i < 200; i++) {
        breaker_snapshot s;
        breaker_snapshot_get(f.b, &s);
        if (i % 50 == 0)
            breaker_reset(f.b);
    }
    unsigned long admitted = 0;
    for (int i = 0; i < NT; i++) {
        pthread_join(th[i], NULL);
        admitted += ws[i].admitted;
    }
    breaker_snapshot s;
    breaker_snapshot_get(f.b, &s);
    assert_int_equal(s.successes + s.failures + s.neutral + s.overload, admitted);
    assert_int_equal(admitted + s.not_permitted, NT * 2000);
    breaker_free(f.b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_consecutive),
        cmocka_unit_test(test_rate_49_stays_closed),
        cmocka_unit_test(test_rate_50_opens_at_minimum),
        cmocka_unit_test(test_rate_buckets_expire),
        cmocka_unit_test(test_open_30s_then_half_open),
        cmocka_unit_test(test_reopen_doubles_with_jitter),
        cmocka_unit_test(test_open_cap),
        cmocka_unit_test(test_growth_resets_after_quiet),
        cmocka_unit_test(test_race_one_permit),
        cmocka_unit_test(test_race_three_permits),
        cmocka_unit_test(test_hung_trial_reopens),
        cmocka_unit_test(test_half_open_n_successes),
        cmocka_unit_test(test_stale_generation),
        cmocka_unit_test(test_neutral_never_trips),
        cmocka_unit_test(test_404_in_half_open),
        cmocka_unit_test(test_overload_not_failure),
        cmocka_unit_test(test_stream_failures),
        cmocka_unit_test(test_classify_table),
        cmocka_unit_test(test_pluggable_classifier),
        cmocka_unit_test(test_slow_load_is_not_slow),
        cmocka_unit_test(test_admin),
        cmocka_unit_test(test_config_validation),
        cmocka_unit_test(test_registry),
        cmocka_unit_test(test_threads_mixed),
    };
    return cmocka_run_group_tests_name("breaker", tests, NULL, NULL);
}
