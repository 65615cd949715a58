/* upstream/admission.c: a bulkhead set driven by the event loop (see admission.h). */
#include "upstream/admission.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

struct admission {
    bulkhead_set *bulkheads;
    upstream_clock clock;
    struct event *expiry;   /* bulkhead waiters' time limits */
    struct event *dispatch; /* zero-timeout: delivers the bulkheads' decisions */
};

void admission_arm_timer(struct event *ev, double ms)
{
    if (ms < 0)
        ms = 0;
    struct timeval tv = {.tv_sec = (time_t)(ms / 1000), .tv_usec = (suseconds_t)((long)(ms * 1000) % 1000000)};
    evtimer_add(ev, &tv);
}

breaker_transport admission_breaker_transport(upstream_transport x)
{
    switch (x) {
    case UPSTREAM_T_OK: return BREAKER_XPORT_NONE;
    case UPSTREAM_T_CONNECT: return BREAKER_XPORT_CONNECT;
    case UPSTREAM_T_TTFB_TIMEOUT: return BREAKER_XPORT_TTFB_TIMEOUT;
    case UPSTREAM_T_IDLE_TIMEOUT: return BREAKER_XPORT_IDLE_TIMEOUT;
    case UPSTREAM_T_TOTAL_TIMEOUT: return BREAKER_XPORT_TOTAL_TIMEOUT;
    case UPSTREAM_T_RESET: return BREAKER_XPORT_RESET;
    default: return BREAKER_XPORT_OTHER;
    }
}

void admission_waiting(admission *a)
{
    double next = bulkhead_set_next_expiry(a->bulkheads);
    if (!isfinite(next) || next < 0) {
        event_del(a->expiry); /* nobody is waiting */
        return;
    }
    admission_arm_timer(a->expiry, next - a->clock.now_ms(a->clock.arg));
}

static void admission_on_expiry(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    admission *a = arg;
    bulkhead_set_expire(a->bulkheads, a->clock.now_ms(a->clock.arg)); /* decides; dispatch delivers */
    admission_waiting(a);
}

/* The bulkheads' wake hook: their decisions are delivered on the next loop turn. */
static void admission_dispatch_later(void *arg)
{
    admission *a = arg;
    admission_arm_timer(a->dispatch, 0);
}

static void admission_on_dispatch(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    admission *a = arg;
    bulkhead_set_dispatch(a->bulkheads);
    admission_waiting(a);
}

ragd_err admission_new(struct event_base *base, const bulkhead_config *cfg, size_t max_bulkheads,
                       upstream_clock clock, upstream_rand rnd, admission **out, char *err, size_t errlen)
{
    *out = NULL;
    admission *a = calloc(1, sizeof *a);
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return RAGD_ENOMEM;
    }
    a->clock = clock;
    a->expiry = evtimer_new(base, admission_on_expiry, a);
    a->dispatch = evtimer_new(base, admission_on_dispatch, a);
    ragd_err e = a->expiry && a->dispatch ? RAGD_OK : RAGD_ENOMEM;
    if (e == RAGD_ENOMEM)
        snprintf(err, errlen, "out of memory");
    else
        e = bulkhead_set_new(cfg, max_bulkheads, clock, rnd, (bulkhead_wake){.fn = admission_dispatch_later, .arg = a},
                             &a->bulkheads, err, errlen);
    if (e != RAGD_OK) {
        admission_free(a);
        return e;
    }
    *out = a;
    return RAGD_OK;
}

void admission_free(admission *a)
{
    if (!a)
        return;
    bulkhead_set_free(a->bulkheads);
    if (a->expiry)
        event_free(a->expiry);
    if (a->dispatch)
        event_free(a->dispatch);
    free(a);
}

bulkhead_status admission_hold_acquire(admission *a, admission_hold *h, double deadline_ms, bulkhead_cb cb,
                                       void *arg)
{
    memset(&h->waiter, 0, sizeof h->waiter);
    bulkhead_status st = bulkhead_acquire(h->bh, &h->waiter, deadline_ms, cb, arg);
    if (st == BULKHEAD_ADMITTED) {
        h->slot = true;
    } else if (st == BULKHEAD_QUEUED) {
        h->queued = true;
        admission_waiting(a);
    }
    return st;
}

bool admission_hold_admitted(admission_hold *h, bulkhead_status status)
{
    h->queued = false;
    h->slot = status == BULKHEAD_ADMITTED;
    return h->slot;
}

bool admission_hold_permit(admission_hold *h)
{
    double remaining = 0;
    if (!breaker_acquire(h->br, &h->permit, &remaining)) {
        bulkhead_release(h->bh, UPSTREAM_NEUTRAL);
        h->slot = false;
        return false;
    }
    h->permitted = true;
    return true;
}

upstream_outcome admission_hold_report(admission_hold *h, const breaker_call *bc)
{
    upstream_outcome outcome = breaker_report(h->br, &h->permit, bc);
    h->permitted = false;
    bulkhead_release(h->bh, outcome);
    h->slot = false;
    return outcome;
}

void admission_hold_abandon(admission_hold *h)
{
    if (h->queued) {
        bulkhead_cancel(h->bh, &h->waiter);
        h->queued = false;
    }
    if (h->call) {
        upstream_cancel(h->call);
        h->call = NULL;
    }
    if (h->permitted) {
        breaker_release(h->br, &h->permit, UPSTREAM_NEUTRAL, false);
        h->permitted = false;
    }
    if (h->slot) {
        bulkhead_release(h->bh, UPSTREAM_NEUTRAL);
        h->slot = false;
    }
}

bulkhead_set *admission_bulkheads(const admission *a) { return a ? a->bulkheads : NULL; }
