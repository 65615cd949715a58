/* Unit tests for upstream/bulkhead: bounded concurrency, the bounded FIFO queue, timeouts,
 * cancellation, shedding and adaptive throttling, on a fake clock and a seeded random
 * source. Nothing sleeps. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "upstream/bulkhead.h"

/* ---- fakes ---- */

typedef struct {
    double t;
} fake_clock;

static double fake_now(void *arg) { return ((fake_clock *)arg)->t; }

static uint64_t fake_next(void *arg)
{
    uint64_t *s = arg;
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static fake_clock clk;
static uint64_t seed;

static upstream_clock test_clock(void) { return (upstream_clock){.now_ms = fake_now, .arg = &clk}; }
static upstream_rand test_rand(void) { return (upstream_rand){.next = fake_next, .arg = &seed}; }

/* A request waiting for a slot: records what its callback was told. */
typedef struct {
    bulkhead_waiter w;
    bulkhead *b;
    int calls;
    bulkhead_status last;
    int order;             /* admission order, from a shared counter */
    bool release_at_once;  /* on admission, release the slot immediately (re-entrancy) */
    upstream_outcome outcome;
} req;

static int admit_counter;
static int wakes; /* calls of the wake hook */

static void count_wake(void *arg)
{
    (void)arg;
    wakes++;
}

static bulkhead_wake test_wake(void) { return (bulkhead_wake){.fn = count_wake, .arg = NULL}; }

/* The loop's side of the callback rule: release / expire / shed_all decide, a later
 * dispatch delivers. These helpers check that nothing was delivered inside the call. */
static int calls_of(req *r, int n)
{
    int c = 0;
    for (int i = 0; i < n; i++)
        c += r[i].calls;
    return c;
}

static void req_cb(bulkhead_waiter *w, bulkhead_status status, void *arg)
{
    req *r = arg;
    assert_ptr_equal(&r->w, w);
    r->calls++;
    r->last = status;
    if (status == BULKHEAD_ADMITTED) {
        r->order = ++admit_counter;
        if (r->release_at_once)
            assert_int_equal(bulkhead_release(r->b, r->outcome), RAGD_OK);
    }
}

static bulkhead *make(int max_concurrent, int max_queue, double max_wait_ms, bool throttle)
{
    bulkhead_config c;
    bulkhead_config_default(&c);
    c.max_concurrent = max_concurrent;
    c.max_queue = max_queue;
    c.max_wait_ms = max_wait_ms;
    c.throttle = throttle;
    bulkhead *b = NULL;
    assert_int_equal(bulkhead_new(&c, "http://a:11434", "llama3", test_clock(), test_rand(), test_wake(), &b, NULL, 0),
                     RAGD_OK);
    return b;
}

static int setup(void **state)
{
    (void)state;
    clk.t = 1000;
    seed = 12345;
    admit_counter = 0;
    wakes = 0;
    return 0;
}

/* ---- tests ---- */

static void test_eleventh_call_rejected_without_queue(void **state)
{
    (void)state;
    bulkhead *b = make(10, 0, 1000, false);
    for (int i = 0; i < 10; i++)
        assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    req r = {.b = b};
    assert_int_equal(bulkhead_acquire(b, &r.w, INFINITY, req_cb, &r), BULKHEAD_SHED_FULL);
    assert_int_equal(r.calls, 0);
    bulkhead_stats s = bulkhead_get_stats(b);
    assert_int_equal(s.in_flight, 10);
    assert_int_equal(s.queued, 0);
    assert_int_equal(s.shed_full, 1);
    assert_int_equal(s.shed, 1);
    assert_int_equal(bulkhead_retry_after_s(b), 1);
    for (int i = 0; i < 10; i++)
        assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(bulkhead_get_stats(b).in_flight, 0);
    /* A double release is refused and never drives in_flight negative. */
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_EINVAL);
    assert_int_equal(bulkhead_get_stats(b).in_flight, 0);
    bulkhead_free(b);
}

static void test_eleventh_call_waits_bounded(void **state)
{
    (void)state;
    bulkhead *b = make(10, 2, 2500, false);
    for (int i = 0; i < 10; i++)
        assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    req r1 = {.b = b}, r2 = {.b = b}, r3 = {.b = b};
    assert_int_equal(bulkhead_acquire(b, &r1.w, INFINITY, req_cb, &r1), BULKHEAD_QUEUED);
    clk.t += 100;
    assert_int_equal(bulkhead_acquire(b, &r2.w, INFINITY, req_cb, &r2), BULKHEAD_QUEUED);
    /* The queue holds 2: the 13th call is shed at once. */
    assert_int_equal(bulkhead_acquire(b, &r3.w, INFINITY, req_cb, &r3), BULKHEAD_SHED_FULL);
    assert_int_equal(bulkhead_get_stats(b).queued, 2);
    assert_true(bulkhead_next_expiry(b) == 1000 + 2500);
    assert_int_equal(bulkhead_retry_after_s(b), 3);

    /* Just before the bound nothing expires; at the bound r1 does, r2 100 ms later. */
    clk.t = 1000 + 2500 - 0.001;
    assert_int_equal(bulkhead_expire(b, clk.t), 0);
    assert_int_equal(r1.calls, 0);
    clk.t = 1000 + 2500;
    assert_int_equal(bulkhead_expire(b, clk.t), 1);
    assert_int_equal(r1.calls, 0); /* decided, not delivered */
    assert_int_equal(wakes, 1);
    assert_int_equal(bulkhead_dispatch(b), 1);
    assert_int_equal(r1.calls, 1);
    assert_int_equal(r1.last, BULKHEAD_TIMED_OUT);
    assert_int_equal(r2.calls, 0);
    assert_true(bulkhead_next_expiry(b) == 1000 + 2600);
    clk.t = 1000 + 2600;
    assert_int_equal(bulkhead_expire(b, clk.t), 1);
    assert_int_equal(bulkhead_dispatch(b), 1);
    assert_int_equal(r2.last, BULKHEAD_TIMED_OUT);
    assert_true(isinf(bulkhead_next_expiry(b)));

    bulkhead_stats s = bulkhead_get_stats(b);
    assert_int_equal(s.in_flight, 10);
    assert_int_equal(s.queued, 0);
    assert_int_equal(s.timed_out, 2);
    assert_int_equal(s.shed, 3);
    for (int i = 0; i < 10; i++)
        bulkhead_release(b, UPSTREAM_FAILURE);
    assert_int_equal(bulkhead_get_stats(b).in_flight, 0);
    bulkhead_free(b);
}

static void test_fifo_admission_on_release(void **state)
{
    (void)state;
    bulkhead *b = make(1, 5, 1000, false);
    assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    req r[3] = {{.b = b}, {.b = b}, {.b = b}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(bulkhead_acquire(b, &r[i].w, INFINITY, req_cb, &r[i]), BULKHEAD_QUEUED);
    /* While waiters queue, a new call does not jump the queue even after a release: the
     * slot is handed to r0 at once (counted in flight), its callback comes on dispatch. */
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(calls_of(r, 3), 0);
    assert_int_equal(bulkhead_get_stats(b).in_flight, 1);
    assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_SHED_FULL);
    assert_int_equal(bulkhead_dispatch(b), 1);
    assert_int_equal(r[0].last, BULKHEAD_ADMITTED);
    assert_int_equal(r[0].order, 1);
    assert_int_equal(r[1].calls, 0);
    assert_int_equal(bulkhead_get_stats(b).in_flight, 1);
    assert_int_equal(bulkhead_get_stats(b).queued, 2);
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(bulkhead_dispatch(b), 1);
    assert_int_equal(r[1].order, 2);
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(bulkhead_dispatch(b), 1);
    assert_int_equal(r[2].order, 3);
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    bulkhead_stats s = bulkhead_get_stats(b);
    assert_int_equal(s.in_flight, 0);
    assert_int_equal(s.admitted, 4);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r[i].calls, 1);
    bulkhead_free(b);
}

static void test_reentrant_release_chain(void **state)
{
    (void)state;
    bulkhead *b = make(1, 10, 1000, false);
    assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    req r[5];
    for (int i = 0; i < 5; i++) {
        r[i] = (req){.b = b, .release_at_once = true, .outcome = UPSTREAM_SUCCESS};
        assert_int_equal(bulkhead_acquire(b, &r[i].w, INFINITY, req_cb, &r[i]), BULKHEAD_QUEUED);
    }
    /* One release hands the slot to r0; dispatch delivers it, r0's callback releases,
     * which hands the slot to r1, delivered by the same dispatch, and so on. */
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(calls_of(r, 5), 0);
    assert_int_equal(bulkhead_dispatch(b), 5);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].order, i + 1);
    }
    assert_int_equal(bulkhead_get_stats(b).in_flight, 0);
    assert_int_equal(bulkhead_get_stats(b).queued, 0);
    bulkhead_free(b);
}

static void test_deadline_and_late_admission(void **state)
{
    (void)state;
    bulkhead *b = make(1, 5, 5000, false);
    assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    /* The caller's deadline is shorter than max_wait: it bounds the wait. */
    req r1 = {.b = b};
    assert_int_equal(bulkhead_acquire(b, &r1.w, clk.t + 300, req_cb, &r1), BULKHEAD_QUEUED);
    assert_true(bulkhead_next_expiry(b) == clk.t + 300);
    /* A deadline already gone: no wait at all, no callback. */
    req r2 = {.b = b};
    assert_int_equal(bulkhead_acquire(b, &r2.w, clk.t, req_cb, &r2), BULKHEAD_TIMED_OUT);
    assert_int_equal(r2.calls, 0);
    assert_int_equal(bulkhead_get_stats(b).queued, 1);
    /* The loop was late to call expire; a release after the bound times r1 out instead of
     * handing it a slot it can no longer use. */
    clk.t += 400;
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(bulkhead_dispatch(b), 1);
    assert_int_equal(r1.calls, 1);
    assert_int_equal(r1.last, BULKHEAD_TIMED_OUT);
    bulkhead_stats s = bulkhead_get_stats(b);
    assert_int_equal(s.in_flight, 0);
    assert_int_equal(s.timed_out, 2);
    bulkhead_free(b);
}

static void test_cancel(void **state)
{
    (void)state;
    bulkhead *b = make(1, 5, 1000, false);
    assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    req r1 = {.b = b}, r2 = {.b = b}, r3 = {.b = b};
    assert_int_equal(bulkhead_acquire(b, &r1.w, INFINITY, req_cb, &r1), BULKHEAD_QUEUED);
    assert_int_equal(bulkhead_acquire(b, &r2.w, INFINITY, req_cb, &r2), BULKHEAD_QUEUED);
    assert_int_equal(bulkhead_acquire(b, &r3.w, INFINITY, req_cb, &r3), BULKHEAD_QUEUED);
    /* Queuing the same waiter twice is refused, and it stays queued once. */
    assert_int_equal(bulkhead_acquire(b, &r2.w, INFINITY, req_cb, &r2), BULKHEAD_SHED_FULL);
    assert_int_equal(bulkhead_get_stats(b).queued, 3);

    assert_true(bulkhead_cancel(b, &r2.w)); /* middle */
    assert_false(bulkhead_cancel(b, &r2.w));
    assert_true(bulkhead_cancel(b, &r1.w)); /* head */
    assert_int_equal(bulkhead_get_stats(b).queued, 1);
    /* Another bulkhead's waiter is not ours. */
    bulkhead *other = make(1, 1, 1000, false);
    assert_false(bulkhead_cancel(other, &r3.w));
    assert_false(bulkhead_cancel(b, NULL));
    bulkhead_free(other);

    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(bulkhead_dispatch(b), 1);
    assert_int_equal(r1.calls, 0);
    assert_int_equal(r2.calls, 0);
    assert_int_equal(r3.last, BULKHEAD_ADMITTED);
    assert_false(bulkhead_cancel(b, &r3.w)); /* delivered: holds a slot, cancel is too late */
    assert_int_equal(bulkhead_release(b, UPSTREAM_NEUTRAL), RAGD_OK);
    /* A cancelled waiter's storage can be reused. */
    assert_int_equal(bulkhead_acquire(b, &r1.w, INFINITY, req_cb, &r1), BULKHEAD_ADMITTED);
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    /* Expiry after cancel calls nobody. */
    clk.t += 10000;
    assert_int_equal(bulkhead_expire(b, clk.t), 0);
    bulkhead_stats s = bulkhead_get_stats(b);
    assert_int_equal(s.cancelled, 2);
    assert_int_equal(s.in_flight, 0);
    assert_int_equal(s.queued, 0);
    bulkhead_free(b);
}

/* A waiter whose timeout callback cancels another expired, not yet delivered, waiter:
 * that one is never called. */
typedef struct {
    req r;
    bulkhead_waiter *victim;
    bool cancelled_ok;
} canceller;

static void canceller_cb(bulkhead_waiter *w, bulkhead_status status, void *arg)
{
    canceller *c = arg;
    req_cb(w, status, &c->r);
    c->cancelled_ok = bulkhead_cancel(c->r.b, c->victim);
}

static void test_cancel_from_callback_during_expire(void **state)
{
    (void)state;
    bulkhead *b = make(1, 5, 1000, false);
    assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    req victim = {.b = b};
    canceller c = {.r = {.b = b}, .victim = &victim.w};
    assert_int_equal(bulkhead_acquire(b, &c.r.w, INFINITY, canceller_cb, &c), BULKHEAD_QUEUED);
    assert_int_equal(bulkhead_acquire(b, &victim.w, INFINITY, req_cb, &victim), BULKHEAD_QUEUED);
    clk.t += 1000;
    assert_int_equal(bulkhead_expire(b, clk.t), 2); /* both decided ... */
    assert_int_equal(bulkhead_dispatch(b), 1);      /* ... c's callback withdraws the victim */
    assert_true(c.cancelled_ok);
    assert_int_equal(victim.calls, 0);
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(bulkhead_get_stats(b).in_flight, 0);
    bulkhead_free(b);
}

static void test_expire_out_of_order_deadlines(void **state)
{
    (void)state;
    bulkhead *b = make(1, 10, 1000, false);
    assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    const double dl[] = {500, 100, 300, INFINITY, 200};
    req r[5];
    for (int i = 0; i < 5; i++) {
        r[i] = (req){.b = b};
        assert_int_equal(bulkhead_acquire(b, &r[i].w, clk.t + dl[i], req_cb, &r[i]), BULKHEAD_QUEUED);
    }
    assert_true(bulkhead_next_expiry(b) == clk.t + 100);
    assert_int_equal(bulkhead_expire(b, clk.t + 250), 2);
    assert_int_equal(bulkhead_dispatch(b), 2);
    assert_int_equal(r[1].last, BULKHEAD_TIMED_OUT);
    assert_int_equal(r[4].last, BULKHEAD_TIMED_OUT);
    assert_int_equal(r[0].calls + r[2].calls + r[3].calls, 0);
    assert_true(bulkhead_next_expiry(b) == clk.t + 300);
    /* The FIFO order of the rest is kept. */
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(bulkhead_dispatch(b), 1);
    assert_int_equal(r[0].last, BULKHEAD_ADMITTED);
    assert_int_equal(bulkhead_expire(b, clk.t + 1000), 2); /* r2 at 300, r3 at max_wait */
    assert_int_equal(bulkhead_dispatch(b), 2);
    assert_int_equal(r[3].last, BULKHEAD_TIMED_OUT);
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(bulkhead_get_stats(b).in_flight, 0);
    bulkhead_free(b);
}

static void test_mixed_outcomes_return_to_zero(void **state)
{
    (void)state;
    bulkhead *b = make(4, 6, 300, false);
    enum { NREQ = 400 };
    static req r[NREQ];
    int held = 0; /* slots held by calls we admitted directly, released later */
    int started = 0;
    uint64_t s = 99;
    const upstream_outcome outcomes[] = {UPSTREAM_SUCCESS, UPSTREAM_FAILURE, UPSTREAM_OVERLOAD, UPSTREAM_NEUTRAL};
    for (int step = 0; step < 3000; step++) {
        uint64_t x = fake_next(&s);
        int op = (int)(x % 6);
        upstream_outcome out = outcomes[(x >> 8) % 4];
        if (op <= 1 && started < NREQ) {
            req *q = &r[started++];
            *q = (req){.b = b, .release_at_once = ((x >> 16) % 3) == 0, .outcome = out};
            bulkhead_status st = bulkhead_acquire(b, &q->w, clk.t + (double)((x >> 20) % 500), req_cb, q);
            if (st == BULKHEAD_ADMITTED)
                held++;
        } else if (op == 2 && held > 0) {
            held--;
            assert_int_equal(bulkhead_release(b, out), RAGD_OK);
        } else if (op == 3 && started > 0) {
            req *q = &r[(x >> 24) % (uint64_t)started];
            (void)bulkhead_cancel(b, &q->w);
        } else if (op == 4) {
            clk.t += (double)((x >> 32) % 100);
            bulkhead_expire(b, clk.t);
            if ((x >> 40) % 2)
                bulkhead_dispatch(b);
        } else {
            bulkhead_dispatch(b);
            /* Waiters admitted later and not released by their callback hold a slot too. */
            for (int i = 0; i < started; i++) {
                if (r[i].calls == 1 && r[i].last == BULKHEAD_ADMITTED && !r[i].release_at_once) {
                    r[i].release_at_once = true; /* mark as released */
                    assert_int_equal(bulkhead_release(b, r[i].outcome), RAGD_OK);
                }
            }
        }
        bulkhead_stats st = bulkhead_get_stats(b);
        assert_true(st.in_flight >= 0 && st.in_flight <= 4);
        assert_true(st.queued >= 0 && st.queued <= 6);
    }
    /* Every exit path: release what is held, let the rest time out. */
    while (held > 0) {
        held--;
        assert_int_equal(bulkhead_release(b, UPSTREAM_FAILURE), RAGD_OK);
    }
    bulkhead_dispatch(b);
    for (int i = 0; i < started; i++) {
        if (r[i].calls == 1 && r[i].last == BULKHEAD_ADMITTED && !r[i].release_at_once) {
            r[i].release_at_once = true;
            assert_int_equal(bulkhead_release(b, r[i].outcome), RAGD_OK);
        }
    }
    clk.t += 1e6;
    bulkhead_expire(b, clk.t);
    bulkhead_dispatch(b);
    for (int i = 0; i < started; i++) {
        if (r[i].calls == 1 && r[i].last == BULKHEAD_ADMITTED && !r[i].release_at_once)
            assert_int_equal(bulkhead_release(b, r[i].outcome), RAGD_OK);
        assert_true(r[i].calls <= 1); /* never called twice */
    }
    bulkhead_stats st = bulkhead_get_stats(b);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.queued, 0);
    assert_true(st.admitted > 50);
    assert_true(st.cancelled > 0);
    assert_true(st.timed_out > 0);
    assert_true(st.shed_full > 0);
    bulkhead_free(b);
}

static void test_shed_all(void **state)
{
    (void)state;
    bulkhead *b = make(1, 3, 1000, false);
    assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    req r[3] = {{.b = b}, {.b = b}, {.b = b}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(bulkhead_acquire(b, &r[i].w, INFINITY, req_cb, &r[i]), BULKHEAD_QUEUED);
    assert_int_equal(bulkhead_shed_all(b), 3);
    assert_int_equal(calls_of(r, 3), 0);
    assert_int_equal(bulkhead_dispatch(b), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(r[i].last, BULKHEAD_CLOSED);
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    /* Freeing with waiters queued unlinks them without a call. */
    assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    req late = {.b = b};
    assert_int_equal(bulkhead_acquire(b, &late.w, INFINITY, req_cb, &late), BULKHEAD_QUEUED);
    bulkhead_free(b);
    assert_int_equal(late.calls, 0);
    assert_null(late.w.owner);
    bulkhead_free(NULL);
}

static void test_adaptive_throttling_proportion(void **state)
{
    (void)state;
    bulkhead *b = make(100000, 0, 1000, true);
    /* Nothing seen: P = 0. All accepted: P stays 0. */
    assert_true(bulkhead_throttle_p(b) == 0.0);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
        assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    }
    assert_true(bulkhead_throttle_p(b) == 0.0);
    /* Half overloaded: requests = 2 * accepts, so K = 2 still rejects nothing. */
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
        assert_int_equal(bulkhead_release(b, UPSTREAM_OVERLOAD), RAGD_OK);
    }
    assert_true(bulkhead_throttle_p(b) == 0.0);
    /* Move past the window: old buckets expire. Then 10,000 calls, 2,500 accepted (all
     * admitted first: the history is made of answers, so P is 0 until they come back). */
    clk.t += 120000;
    for (int i = 0; i < 10000; i++)
        assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    for (int i = 0; i < 10000; i++)
        assert_int_equal(bulkhead_release(b, i % 4 == 0 ? UPSTREAM_SUCCESS : UPSTREAM_OVERLOAD), RAGD_OK);
    double p0 = bulkhead_throttle_p(b);
    assert_true(fabs(p0 - (10000.0 - 2.0 * 2500.0) / 10001.0) < 1e-9);
    /* 1,000 more calls (held, not yet answered): each local rejection adds a request, so P
     * drifts from 0.49995 to at most (10500 - 5000) / 10501 = 0.5238. */
    int rejected = 0;
    for (int i = 0; i < 1000; i++) {
        bulkhead_status st = bulkhead_acquire(b, NULL, INFINITY, NULL, NULL);
        assert_true(st == BULKHEAD_ADMITTED || st == BULKHEAD_SHED_THROTTLED);
        rejected += st == BULKHEAD_SHED_THROTTLED;
    }
    assert_true(rejected >= 440 && rejected <= 580);
    bulkhead_stats s = bulkhead_get_stats(b);
    assert_int_equal((int)s.shed_throttled, rejected);
    assert_int_equal(s.in_flight, 1000 - rejected);
    assert_true(fabs(s.throttle_p - (10000.0 + rejected - 5000.0) / (10000.0 + rejected + 1.0)) < 1e-9);
    for (int i = 0; i < 1000 - rejected; i++)
        assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(bulkhead_get_stats(b).in_flight, 0);
    /* The window slides: 2 minutes later the history is gone and nothing is rejected. */
    clk.t += 120000;
    assert_true(bulkhead_throttle_p(b) == 0.0);
    assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    bulkhead_free(b);

    /* Backend refusing everything: P approaches 1 and almost everything is shed. */
    b = make(100000, 0, 1000, true);
    for (int i = 0; i < 200; i++) {
        if (bulkhead_acquire(b, NULL, INFINITY, NULL, NULL) == BULKHEAD_ADMITTED)
            assert_int_equal(bulkhead_release(b, UPSTREAM_OVERLOAD), RAGD_OK);
    }
    assert_true(bulkhead_throttle_p(b) > 0.99);
    /* Throttling off: P is 0 whatever happened. */
    bulkhead_free(b);
    b = make(10, 0, 1000, false);
    for (int i = 0; i < 100; i++) {
        assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
        assert_int_equal(bulkhead_release(b, UPSTREAM_OVERLOAD), RAGD_OK);
    }
    assert_true(bulkhead_throttle_p(b) == 0.0);
    bulkhead_free(b);
}

static void test_config_validation(void **state)
{
    (void)state;
    char err[160];
    bulkhead_config c;
    bulkhead_config_default(&c);
    assert_int_equal(c.max_concurrent, 10);
    assert_int_equal(c.max_queue, 100);
    assert_int_equal(bulkhead_config_validate(&c, err, sizeof err), RAGD_OK);
    c.max_concurrent = 0;
    assert_int_equal(bulkhead_config_validate(&c, err, sizeof err), RAGD_EINVAL);
    assert_non_null(strstr(err, "max_concurrent"));
    bulkhead_config_default(&c);
    c.max_queue = -1;
    assert_int_equal(bulkhead_config_validate(&c, err, sizeof err), RAGD_EINVAL);
    assert_non_null(strstr(err, "max_queue"));
    bulkhead_config_default(&c);
    c.max_wait_ms = 0;
    assert_int_equal(bulkhead_config_validate(&c, err, sizeof err), RAGD_EINVAL);
    assert_non_null(strstr(err, "max_wait_ms"));
    c.max_wait_ms = NAN;
    assert_int_equal(bulkhead_config_validate(&c, NULL, 0), RAGD_EINVAL);
    bulkhead_config_default(&c);
    c.throttle_k = 0.5;
    assert_int_equal(bulkhead_config_validate(&c, err, sizeof err), RAGD_EINVAL);
    bulkhead_config_default(&c);
    c.throttle_window_ms = -5;
    assert_int_equal(bulkhead_config_validate(&c, err, sizeof err), RAGD_EINVAL);

    bulkhead_config_default(&c);
    bulkhead *b = NULL;
    assert_int_equal(bulkhead_new(&c, NULL, "m", test_clock(), test_rand(), test_wake(), &b, err, sizeof err), RAGD_EINVAL);
    char longname[300];
    memset(longname, 'x', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(bulkhead_new(&c, longname, "m", test_clock(), test_rand(), test_wake(), &b, err, sizeof err), RAGD_EINVAL);
    assert_null(b);
    assert_string_equal(bulkhead_status_name(BULKHEAD_SHED_THROTTLED), "shed_throttled");
}

static void test_set_per_backend_model(void **state)
{
    (void)state;
    bulkhead_config c;
    bulkhead_config_default(&c);
    c.max_concurrent = 1;
    c.max_queue = 1;
    c.max_wait_ms = 100;
    bulkhead_set *s = NULL;
    assert_int_equal(bulkhead_set_new(&c, 0, test_clock(), test_rand(), test_wake(), &s, NULL, 0), RAGD_EINVAL);
    assert_int_equal(bulkhead_set_new(&c, 3, test_clock(), test_rand(), test_wake(), &s, NULL, 0), RAGD_OK);
    bulkhead *a1 = NULL, *a2 = NULL, *a1b = NULL, *b1 = NULL, *x = NULL;
    assert_int_equal(bulkhead_set_get(s, "A", "llama3", &a1), RAGD_OK);
    assert_int_equal(bulkhead_set_get(s, "A", "nomic-embed", &a2), RAGD_OK);
    assert_int_equal(bulkhead_set_get(s, "A", "llama3", &a1b), RAGD_OK);
    assert_ptr_equal(a1, a1b);
    assert_ptr_not_equal(a1, a2);
    assert_int_equal(bulkhead_set_get(s, "B", "llama3", &b1), RAGD_OK);
    assert_int_equal(bulkhead_set_get(s, "C", "llama3", &x), RAGD_ETOOBIG);
    assert_int_equal(bulkhead_set_get(s, NULL, "llama3", &x), RAGD_EINVAL);
    assert_int_equal(bulkhead_set_count(s), 3);
    assert_string_equal(bulkhead_backend(bulkhead_set_at(s, 1)), "A");
    assert_string_equal(bulkhead_model(bulkhead_set_at(s, 1)), "nomic-embed");
    assert_null(bulkhead_set_at(s, 3));

    /* Compartments are independent: A/llama3 full does not block A/nomic-embed. */
    assert_int_equal(bulkhead_acquire(a1, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    assert_int_equal(bulkhead_acquire(a2, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    req r = {.b = a1};
    assert_int_equal(bulkhead_acquire(a1, &r.w, INFINITY, req_cb, &r), BULKHEAD_QUEUED);
    assert_true(bulkhead_set_next_expiry(s) == clk.t + 100);
    clk.t += 100;
    assert_int_equal(bulkhead_set_expire(s, clk.t), 1);
    assert_int_equal(r.calls, 0);
    assert_int_equal(bulkhead_set_dispatch(s), 1);
    assert_int_equal(r.last, BULKHEAD_TIMED_OUT);
    assert_int_equal(bulkhead_release(a1, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(bulkhead_release(a2, UPSTREAM_SUCCESS), RAGD_OK);
    bulkhead_set_free(s);
    bulkhead_set_free(NULL);
}

/* The case that crashed ragd: a release inside one caller's completion used to run the
 * next waiter's callback at once, which could end (and free) the very object whose
 * completion was still on the stack. Now release only decides; the owner is woken once
 * to dispatch later, and a waiter withdrawn before dispatch gives its slot back. */
static void test_no_callback_inside_release_cancel_shed(void **state)
{
    (void)state;
    bulkhead *b = make(1, 5, 1000, false);
    assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    req r[3] = {{.b = b}, {.b = b}, {.b = b}};
    for (int i = 0; i < 3; i++)
        assert_int_equal(bulkhead_acquire(b, &r[i].w, INFINITY, req_cb, &r[i]), BULKHEAD_QUEUED);
    assert_int_equal(wakes, 0);

    /* release: r0 is handed the slot, undelivered; one wake. */
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(calls_of(r, 3), 0);
    assert_int_equal(wakes, 1);
    bulkhead_stats st = bulkhead_get_stats(b);
    assert_int_equal(st.in_flight, 1);
    assert_int_equal(st.queued, 2);

    /* cancel of the ready r0: its slot passes to r1, still nothing delivered; the ready
     * list never emptied from the outside, so the wake count tells how often it filled. */
    assert_true(bulkhead_cancel(b, &r[0].w));
    assert_false(bulkhead_cancel(b, &r[0].w));
    assert_int_equal(calls_of(r, 3), 0);
    st = bulkhead_get_stats(b);
    assert_int_equal(st.in_flight, 1);
    assert_int_equal(st.queued, 1);
    assert_int_equal(st.cancelled, 1);

    /* shed_all: r2 is decided CLOSED; still nothing delivered. */
    assert_int_equal(bulkhead_shed_all(b), 1);
    assert_int_equal(calls_of(r, 3), 0);

    /* dispatch delivers r1 (ADMITTED) then r2 (CLOSED), each once, oldest decision first. */
    assert_int_equal(bulkhead_dispatch(b), 2);
    assert_int_equal(r[0].calls, 0);
    assert_int_equal(r[1].calls, 1);
    assert_int_equal(r[1].last, BULKHEAD_ADMITTED);
    assert_int_equal(r[2].calls, 1);
    assert_int_equal(r[2].last, BULKHEAD_CLOSED);
    assert_int_equal(bulkhead_dispatch(b), 0);
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    st = bulkhead_get_stats(b);
    assert_int_equal(st.in_flight, 0);
    assert_int_equal(st.queued, 0);
    assert_int_equal(st.admitted, 2); /* the direct call and r1: r0's slot went back */

    /* A ready waiter freed with its bulkhead is unlinked without a call. */
    assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    req late = {.b = b};
    assert_int_equal(bulkhead_acquire(b, &late.w, INFINITY, req_cb, &late), BULKHEAD_QUEUED);
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    bulkhead_free(b);
    assert_int_equal(late.calls, 0);
    assert_null(late.w.owner);
}

/* A callback that releases its slot and queues again is served by the same dispatch, and
 * the wake hook fires only when the ready list goes from empty to non-empty. */
typedef struct {
    req r;
    int rounds;
} requeuer;

static void requeuer_cb(bulkhead_waiter *w, bulkhead_status status, void *arg)
{
    requeuer *q = arg;
    req_cb(w, status, &q->r);
    if (status != BULKHEAD_ADMITTED || q->rounds-- <= 0)
        return;
    assert_int_equal(bulkhead_acquire(q->r.b, NULL, INFINITY, NULL, NULL), BULKHEAD_SHED_FULL);
    assert_int_equal(bulkhead_acquire(q->r.b, &q->r.w, INFINITY, requeuer_cb, q), BULKHEAD_QUEUED);
    assert_int_equal(bulkhead_release(q->r.b, UPSTREAM_SUCCESS), RAGD_OK); /* hands it to us again */
}

static void test_requeue_from_callback(void **state)
{
    (void)state;
    bulkhead *b = make(1, 2, 1000, false);
    assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    requeuer q = {.r = {.b = b}, .rounds = 3};
    assert_int_equal(bulkhead_acquire(b, &q.r.w, INFINITY, requeuer_cb, &q), BULKHEAD_QUEUED);
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(wakes, 1);
    assert_int_equal(bulkhead_dispatch(b), 4);
    assert_int_equal(q.r.calls, 4);
    assert_int_equal(wakes, 4); /* each round re-filled an empty ready list */
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(bulkhead_get_stats(b).in_flight, 0);
    bulkhead_free(b);
}

/* bulkhead_set_remove: only an idle bulkhead goes; removing one from inside a waiter's
 * callback during a dispatch pass still delivers every other ready waiter (the pass starts
 * over: without that, the shifted array made the pass skip C's waiter). */
typedef struct {
    req r;
    bulkhead_set *s;
    bulkhead *victim;
    ragd_err removed;
} remover;

static void remover_cb(bulkhead_waiter *w, bulkhead_status status, void *arg)
{
    remover *m = arg;
    req_cb(w, status, &m->r);
    m->removed = bulkhead_set_remove(m->s, m->victim);
}

static void test_set_remove_during_dispatch(void **state)
{
    (void)state;
    bulkhead_config c;
    bulkhead_config_default(&c);
    c.max_concurrent = 1;
    c.max_queue = 1;
    c.max_wait_ms = 100;
    bulkhead_set *s = NULL;
    assert_int_equal(bulkhead_set_new(&c, 8, test_clock(), test_rand(), test_wake(), &s, NULL, 0), RAGD_OK);
    bulkhead *a = NULL, *b = NULL, *cc = NULL, *other = NULL;
    assert_int_equal(bulkhead_set_get(s, "H", "A", &a), RAGD_OK);
    assert_int_equal(bulkhead_set_get(s, "H", "B", &b), RAGD_OK);
    assert_int_equal(bulkhead_set_get(s, "H", "C", &cc), RAGD_OK);
    assert_true(bulkhead_idle(a));
    assert_int_equal(bulkhead_acquire(b, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    assert_int_equal(bulkhead_acquire(cc, NULL, INFINITY, NULL, NULL), BULKHEAD_ADMITTED);
    assert_false(bulkhead_idle(b));
    assert_int_equal(bulkhead_set_remove(s, b), RAGD_EBUSY); /* in flight: kept */
    remover m = {.r = {.b = b}, .s = s, .victim = a, .removed = RAGD_EINVAL};
    req rc = {.b = cc};
    assert_int_equal(bulkhead_acquire(b, &m.r.w, INFINITY, remover_cb, &m), BULKHEAD_QUEUED);
    assert_int_equal(bulkhead_acquire(cc, &rc.w, INFINITY, req_cb, &rc), BULKHEAD_QUEUED);
    clk.t += 100;
    assert_int_equal(bulkhead_set_expire(s, clk.t), 2); /* both decided, neither delivered */
    assert_int_equal(bulkhead_set_dispatch(s), 2);
    assert_int_equal(m.removed, RAGD_OK);
    assert_int_equal(m.r.calls, 1);
    assert_int_equal(rc.calls, 1);
    assert_int_equal(rc.last, BULKHEAD_TIMED_OUT);
    assert_int_equal(bulkhead_set_count(s), 2);
    assert_ptr_equal(bulkhead_set_at(s, 0), b);
    assert_int_equal(bulkhead_set_remove(s, a), RAGD_EINVAL); /* gone already */
    assert_int_equal(bulkhead_set_get(s, "H", "A", &other), RAGD_OK); /* made again on demand */
    assert_int_equal(bulkhead_release(b, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(bulkhead_release(cc, UPSTREAM_SUCCESS), RAGD_OK);
    assert_int_equal(bulkhead_set_remove(s, b), RAGD_OK);
    bulkhead_set_free(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_eleventh_call_rejected_without_queue, setup),
        cmocka_unit_test_setup(test_eleventh_call_waits_bounded, setup),
        cmocka_unit_test_setup(test_fifo_admission_on_release, setup),
        cmocka_unit_test_setup(test_reentrant_release_chain, setup),
        cmocka_unit_test_setup(test_deadline_and_late_admission, setup),
        cmocka_unit_test_setup(test_cancel, setup),
        cmocka_unit_test_setup(test_cancel_from_callback_during_expire, setup),
        cmocka_unit_test_setup(test_expire_out_of_order_deadlines, setup),
        cmocka_unit_test_setup(test_mixed_outcomes_return_to_zero, setup),
        cmocka_unit_test_setup(test_shed_all, setup),
        cmocka_unit_test_setup(test_adaptive_throttling_proportion, setup),
        cmocka_unit_test_setup(test_config_validation, setup),
        cmocka_unit_test_setup(test_set_per_backend_model, setup),
        cmocka_unit_test_setup(test_no_callback_inside_release_cancel_shed, setup),
        cmocka_unit_test_setup(test_requeue_from_callback, setup),
        cmocka_unit_test_setup(test_set_remove_during_dispatch, setup),
    };
    return cmocka_run_group_tests_name("bulkhead", tests, NULL, NULL);
}
