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

/* Arms ev (a timer) to fire in ms milliseconds; ms <= 0 means the next loop turn. */
void admission_arm_timer(struct event *ev, double ms);

/* How the breaker classes a call's transport outcome (UPSTREAM_T_OK is no transport error). */
breaker_transport admission_breaker_transport(upstream_transport x);

#endif
