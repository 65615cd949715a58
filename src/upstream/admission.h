#ifndef RAGD_UPSTREAM_ADMISSION_H
#define RAGD_UPSTREAM_ADMISSION_H

/* The loop side of upstream admission, shared by every owner of bulkheads (llm.c for the
 * generation/embedding backends, rag/rerank.c for the rerank service;
 * docs/internals/bulkhead.md).
 *
 * An admission owns a bulkhead_set and the two events that drive it on the event loop:
 * an expiry timer armed at the waiters' earliest time limit, and a zero-timeout dispatch
 * event that the set's wake hook arms, so a waiter's callback always runs on a later loop
 * turn, never inside the bulkhead call that decided it (docs/internals/callbacks.md).
 * The owner calls bulkhead_set_get / bulkhead_acquire / bulkhead_release on
 * admission_bulkheads() as before, and admission_waiting() after a BULKHEAD_QUEUED.
 *
 * Also here: the two small pieces every caller of a guarded upstream call repeated — arming
 * a timer in milliseconds, and the breaker's view of a transport outcome.
 *
 * Threads: loop thread only. */
#include <event2/event.h>
#include <stdbool.h>
#include <stddef.h>

#include "upstream/breaker.h"
#include "upstream/bulkhead.h"
#include "upstream/client.h"
#include "upstream/inject.h"
#include "util/err.h"

typedef struct admission admission;

/* A bulkhead set of config cfg, at most max_bulkheads (backend, model) pairs, with its
 * expiry and dispatch events on base. RAGD_EINVAL (cfg, message in err) / RAGD_ENOMEM;
 * *out is NULL on error. */
ragd_err admission_new(struct event_base *base, const bulkhead_config *cfg, size_t max_bulkheads,
                       upstream_clock clock, upstream_rand rnd, admission **out, char *err, size_t errlen);

/* Frees the set (waiters dropped without callbacks, as bulkhead_set_free) and the events;
 * NULL ok. */
void admission_free(admission *a);

/* The set, owned by a (for bulkhead_set_get, /metrics). */
bulkhead_set *admission_bulkheads(const admission *a);

/* Call after bulkhead_acquire answered BULKHEAD_QUEUED: (re)arms the expiry timer at the
 * earliest waiter's time limit. Never runs a callback. */
void admission_waiting(admission *a);

/* ---- What one guarded call holds while it runs (a task's attempt, a rerank call) ---- */
typedef struct {
    bulkhead *bh;           /* this call's bulkhead and breaker (owned by their sets) */
    breaker *br;
    bulkhead_waiter waiter; /* while queued for a slot */
    bool queued;
    bool slot;              /* a bulkhead slot is held */
    breaker_permit permit;
    bool permitted;         /* a breaker permit is held */
    upstream_call *call;    /* the HTTP call in flight, or NULL */
} admission_hold;

/* Asks h->bh for a slot before deadline_ms (absolute, clock ms): ADMITTED (h->slot set),
 * QUEUED (h->queued set, the expiry timer armed; cb(arg) comes on a later loop turn), or a
 * refusal (nothing held). Never runs cb inside. */
bulkhead_status admission_hold_acquire(admission *a, admission_hold *h, double deadline_ms, bulkhead_cb cb,
                                       void *arg);

/* For the bulkhead_cb of a queued hold: the hold is no longer queued; true (and a slot held)
 * when status is BULKHEAD_ADMITTED. */
bool admission_hold_admitted(admission_hold *h, bulkhead_status status);

/* With a slot held: takes a permit of h->br. When the breaker refuses, the slot goes back
 * (NEUTRAL) and false is returned. */
bool admission_hold_permit(admission_hold *h);

/* The call ended (its on_done ran): reports bc to the breaker, releases the slot with the
 * breaker's outcome, and returns that outcome. h->call is the caller's to clear. */
upstream_outcome admission_hold_report(admission_hold *h, const breaker_call *bc);

/* Gives back whatever h holds, without callbacks: the waiter withdrawn, the HTTP call
 * cancelled, permit and slot returned as NEUTRAL (we stopped it, the backend did nothing
 * wrong). Safe on a hold that holds nothing. */
void admission_hold_abandon(admission_hold *h);

/* Arms ev (a timer) to fire in ms milliseconds; ms <= 0 means the next loop turn. */
void admission_arm_timer(struct event *ev, double ms);

/* How the breaker classes a call's transport outcome (UPSTREAM_T_OK is no transport error). */
breaker_transport admission_breaker_transport(upstream_transport x);

#endif
