/* upstream/admission.c: a bulkhead set driven by the event loop (see admission.h). */
#include "upstream/admission.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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

bulkhead_set *admission_bulkheads(const admission *a) { return a ? a->bulkheads : NULL; }
