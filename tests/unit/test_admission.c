/* Unit tests for upstream/admission: a bulkhead set driven on a real libevent loop (on a
 * fake clock), and the hold/release sequence of one guarded call. The loop runs turn by
 * turn (EVLOOP_NONBLOCK / EVLOOP_ONCE), so the tests see that no waiter's callback runs
 * inside the call that decided it. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <event2/event.h>
#include <stdlib.h>
#include <string.h>

#include "upstream/admission.h"

typedef struct {
    double t;
} fake_clock;

static double fake_now(void *arg) { return ((fake_clock *)arg)->t; }
static uint64_t fake_next(void *arg)
{
    uint64_t *s = arg;
    return *s += 0x9e3779b97f4a7c15ULL;
}

typedef struct {
    struct event_base *base;
    fake_clock clk;
    uint64_t seed;
    admission *a;
    breaker_registry *breakers;
    breaker *br;
    bulkhead *bh;
} fixture;

/* A call waiting in the queue: what its callback was told. */
typedef struct {
    admission_hold hold;
    int calls;
    bulkhead_status last;
    bool admitted;
} waiting_call;

static void on_admission(bulkhead_waiter *w, bulkhead_status status, void *arg)
{
    (void)w;
    waiting_call *c = arg;
    c->calls++;
    c->last = status;
    c->admitted = admission_hold_admitted(&c->hold, status);
}

static int setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    f->base = event_base_new();
    upstream_clock clock = {.now_ms = fake_now, .arg = &f->clk};
    upstream_rand rnd = {.next = fake_next, .arg = &f->seed};
    bulkhead_config bc;
    bulkhead_config_default(&bc);
    bc.max_concurrent = 1;
    bc.max_queue = 4;
    char err[200];
    assert_int_equal(admission_new(f->base, &bc, 2, clock, rnd, &f->a, err, sizeof err), RAGD_OK);
    assert_int_equal(bulkhead_set_get(admission_bulkheads(f->a), "http://h", "m", &f->bh), RAGD_OK);
    breaker_config brc;
    breaker_config_default(&brc);
    brc.failure_threshold = 1;
    f->breakers = breaker_registry_new(clock, rnd);
    assert_int_equal(breaker_registry_add(f->breakers, "http://h", "op", "m", &brc, &f->br, err, sizeof err), RAGD_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    admission_free(f->a);
    breaker_registry_free(f->breakers);
    event_base_free(f->base);
    free(f);
    return 0;
}

static void hold_init(fixture *f, admission_hold *h)
{
    memset(h, 0, sizeof *h);
    h->bh = f->bh;
    h->br = f->br;
}

static void test_queued_call_is_admitted_on_a_later_turn(void **state)
{
    fixture *f = *state;
    admission_hold first;
    waiting_call second = {0};
    hold_init(f, &first);
    hold_init(f, &second.hold);
    assert_int_equal(admission_hold_acquire(f->a, &first, 1000, on_admission, NULL), BULKHEAD_ADMITTED);
    assert_true(first.slot);
    assert_int_equal(admission_hold_acquire(f->a, &second.hold, 1000, on_admission, &second), BULKHEAD_QUEUED);
    assert_true(second.hold.queued);

    admission_hold_abandon(&first); /* the slot goes to the waiter: decided, not delivered */
    assert_false(first.slot);
    assert_int_equal(second.calls, 0);
    event_base_loop(f->base, EVLOOP_NONBLOCK);
    assert_int_equal(second.calls, 1);
    assert_int_equal(second.last, BULKHEAD_ADMITTED);
    assert_true(second.admitted);
    assert_true(second.hold.slot);
    assert_false(second.hold.queued);
    assert_int_equal(bulkhead_get_stats(f->bh).in_flight, 1);
    admission_hold_abandon(&second.hold);
    assert_int_equal(bulkhead_get_stats(f->bh).in_flight, 0);
}

static void test_expiry_timer_times_a_waiter_out(void **state)
{
    fixture *f = *state;
    admission_hold first;
    waiting_call second = {0};
    hold_init(f, &first);
    hold_init(f, &second.hold);
    assert_int_equal(admission_hold_acquire(f->a, &first, 1000, on_admission, NULL), BULKHEAD_ADMITTED);
    assert_int_equal(admission_hold_acquire(f->a, &second.hold, 5, on_admission, &second), BULKHEAD_QUEUED);
    f->clk.t = 10; /* past the waiter's deadline: the expiry timer (armed for 5 ms) decides */
    for (int turns = 0; turns < 100 && second.calls == 0; turns++)
        event_base_loop(f->base, EVLOOP_ONCE);
    assert_int_equal(second.calls, 1);
    assert_int_equal(second.last, BULKHEAD_TIMED_OUT);
    assert_false(second.admitted);
    assert_false(second.hold.slot);
    assert_false(second.hold.queued);
    admission_hold_abandon(&first);
    assert_int_equal(bulkhead_get_stats(f->bh).in_flight, 0);
}

static void test_permit_report_and_abandon(void **state)
{
    fixture *f = *state;
    admission_hold h;
    hold_init(f, &h);
    admission_hold_abandon(&h); /* holds nothing: no effect */
    assert_int_equal(admission_hold_acquire(f->a, &h, 1000, on_admission, NULL), BULKHEAD_ADMITTED);
    assert_true(admission_hold_permit(&h));
    assert_true(h.permitted);
    breaker_call failed = {.transport = BREAKER_XPORT_CONNECT};
    assert_int_equal(admission_hold_report(&h, &failed), UPSTREAM_FAILURE);
    assert_false(h.permitted);
    assert_false(h.slot);
    assert_int_equal(bulkhead_get_stats(f->bh).in_flight, 0);

    /* the breaker opened (threshold 1): a refused permit gives the slot back */
    assert_int_equal(admission_hold_acquire(f->a, &h, 1000, on_admission, NULL), BULKHEAD_ADMITTED);
    assert_false(admission_hold_permit(&h));
    assert_false(h.slot);
    assert_false(h.permitted);
    assert_int_equal(bulkhead_get_stats(f->bh).in_flight, 0);
}

static void test_breaker_transport(void **state)
{
    (void)state;
    assert_int_equal(admission_breaker_transport(UPSTREAM_T_OK), BREAKER_XPORT_NONE);
    assert_int_equal(admission_breaker_transport(UPSTREAM_T_CONNECT), BREAKER_XPORT_CONNECT);
    assert_int_equal(admission_breaker_transport(UPSTREAM_T_TTFB_TIMEOUT), BREAKER_XPORT_TTFB_TIMEOUT);
    assert_int_equal(admission_breaker_transport(UPSTREAM_T_IDLE_TIMEOUT), BREAKER_XPORT_IDLE_TIMEOUT);
    assert_int_equal(admission_breaker_transport(UPSTREAM_T_TOTAL_TIMEOUT), BREAKER_XPORT_TOTAL_TIMEOUT);
    assert_int_equal(admission_breaker_transport(UPSTREAM_T_RESET), BREAKER_XPORT_RESET);
    assert_int_equal(admission_breaker_transport(UPSTREAM_T_ABORTED), BREAKER_XPORT_OTHER);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_queued_call_is_admitted_on_a_later_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry_timer_times_a_waiter_out, setup, teardown),
        cmocka_unit_test_setup_teardown(test_permit_report_and_abandon, setup, teardown),
        cmocka_unit_test(test_breaker_transport),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
