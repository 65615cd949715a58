#ifndef RAGD_UPSTREAM_BULKHEAD_H
#define RAGD_UPSTREAM_BULKHEAD_H

/* Bulkheads and load shedding for upstream calls (docs/internals/bulkhead.md).
 *
 * One bulkhead per (backend, model): at most max_concurrent calls in flight, then a bounded
 * FIFO queue of waiters with a bounded wait, then shedding (the API answers 503 with
 * Retry-After at once). Optional SRE client-side adaptive throttling sheds in front of it.
 *
 * Threads: NOT thread-safe. Every function of a bulkhead (and of a bulkhead_set) must be
 * called from one thread, the event-loop thread, which also reads the gauges for /metrics.
 * No timers: the loop calls bulkhead_expire(now) (e.g. from one timer armed at
 * bulkhead_next_expiry()) to time waiters out.
 *
 * Callbacks (docs/internals/callbacks.md): no waiter's callback ever runs inside
 * bulkhead_acquire, bulkhead_release, bulkhead_cancel, bulkhead_expire or bulkhead_shed_all.
 * Those decide — a slot is handed to a waiter (and counted in flight at once), a waiter
 * timed out, a waiter was closed — and move the waiter to a ready list; only
 * bulkhead_dispatch delivers the callbacks, one at a time, each waiter unlinked before its
 * callback runs, so a callback may call any function of this module. When the ready list
 * gains its first waiter the bulkhead calls its wake hook, whose only job is to arrange a
 * bulkhead_dispatch on a later loop turn (a zero-timeout timer); it must not call into the
 * bulkhead. */
#include <stdbool.h>
#include <stddef.h>

#include "upstream/inject.h"
#include "upstream/outcome.h"
#include "util/err.h"
#include "util/queue.h"

typedef struct bulkhead bulkhead;

typedef enum {
    BULKHEAD_ADMITTED,  /* the call holds a slot: call bulkhead_release exactly once */
    BULKHEAD_QUEUED,    /* (acquire only) waiting; the callback will say what happened */
    BULKHEAD_SHED_FULL, /* (acquire only) queue full, or no queue: 503 + Retry-After */
    BULKHEAD_SHED_THROTTLED, /* (acquire only) adaptive throttling said no: 503 + Retry-After */
    BULKHEAD_TIMED_OUT, /* waited the bound (or the caller's deadline left no time): 503 */
    BULKHEAD_CLOSED,    /* (callback only) removed by bulkhead_shed_all (shutdown): 503 */
} bulkhead_status;

typedef struct bulkhead_waiter bulkhead_waiter;

/* Invoked once per queued waiter, from bulkhead_dispatch, with BULKHEAD_ADMITTED (holds a
 * slot now: release it later), BULKHEAD_TIMED_OUT or BULKHEAD_CLOSED (holds nothing).
 * Never invoked after bulkhead_cancel() of that waiter returned true. */
typedef void (*bulkhead_cb)(bulkhead_waiter *w, bulkhead_status status, void *arg);

/* Storage for one queued call, provided by the caller (a member of the request object), so
 * queueing never allocates. Zero-initialise it before its first use; it must stay valid
 * while queued or ready and may be reused once its callback ran or it was cancelled.
 * Fields are private. */
struct bulkhead_waiter {
    bulkhead_cb cb;
    void *arg;
    double expires_ms;
    queue_node node;         /* in the bulkhead's waiting or ready list */
    bulkhead *owner;         /* non-NULL while waiting or ready */
    bool ready;              /* decided, callback not yet delivered */
    bulkhead_status outcome; /* what the callback will say, once ready */
};

/* The wake hook: called (on the loop thread) when a bulkhead's ready list gains its first
 * waiter. It must only schedule bulkhead_dispatch / bulkhead_set_dispatch for later. */
typedef struct {
    void (*fn)(void *arg);
    void *arg;
} bulkhead_wake;

typedef struct {
    int max_concurrent;         /* calls in flight (1..100000; default 10) */
    int max_queue;              /* waiters (0..100000, 0 = no queue; default 100 = RAGD_MAX_QUEUE) */
    double max_wait_ms;         /* longest wait in the queue (> 0; default 5000) */
    bool throttle;              /* SRE adaptive throttling (default false) */
    double throttle_k;          /* K in P(reject) (>= 1; default 2) */
    double throttle_window_ms;  /* sliding window of requests/accepts (> 0; default 120000) */
} bulkhead_config;

/* Gauges and counters for /metrics. */
typedef struct {
    int in_flight;
    int queued;
    unsigned long long admitted;       /* slots given, at once or from the queue */
    unsigned long long shed_full;      /* SHED_FULL answers */
    unsigned long long shed_throttled; /* SHED_THROTTLED answers */
    unsigned long long timed_out;      /* waiters timed out (and acquire-time TIMED_OUT) */
    unsigned long long cancelled;      /* waiters cancelled by their caller */
    unsigned long long shed;           /* shed_full + shed_throttled + timed_out */
    double throttle_p;                 /* current P(reject), 0 when throttling is off */
} bulkhead_stats;

/* Fills c with the defaults above. */
void bulkhead_config_default(bulkhead_config *c);

/* RAGD_OK, or RAGD_EINVAL with a message in err (may be NULL) naming the bad field. */
ragd_err bulkhead_config_validate(const bulkhead_config *c, char *err, size_t errlen);

/* Creates a bulkhead named by (backend, model) (copied; model may be "" for all models).
 * The clock is read by acquire (queue deadlines, throttle window); rand only by throttling.
 * wake may have a NULL fn (the owner then calls bulkhead_dispatch itself, as unit tests
 * do). RAGD_EINVAL (message in err), RAGD_ENOMEM. *out is set only on success. */
ragd_err bulkhead_new(const bulkhead_config *c, const char *backend, const char *model,
                      upstream_clock clock, upstream_rand rand, bulkhead_wake wake, bulkhead **out,
                      char *err, size_t errlen);

/* Frees the bulkhead; NULL ok. Waiters still waiting or ready are unlinked without a
 * callback: call bulkhead_shed_all and bulkhead_dispatch first if they must be answered. */
void bulkhead_free(bulkhead *b);

/* Asks for a slot. Returns:
 *  BULKHEAD_ADMITTED        a slot is held now; cb will never be called for w.
 *  BULKHEAD_QUEUED          w is queued; cb(w, ...) is called exactly once later, from
 *                           bulkhead_dispatch, unless bulkhead_cancel(b, w) returns true
 *                           first.
 *  BULKHEAD_SHED_FULL / _THROTTLED / BULKHEAD_TIMED_OUT (when deadline_ms leaves no time to
 *                           wait): nothing is held; cb will never be called. Answer 503 with
 *                           Retry-After: bulkhead_retry_after_s().
 * deadline_ms: the request's own deadline on the injected clock (INFINITY for none); a
 * waiter times out at min(now + max_wait_ms, deadline_ms). w may be NULL only if the caller
 * cannot wait (then a full bulkhead sheds). A w that is queued already (a caller bug) is
 * answered BULKHEAD_SHED_FULL and stays where it is. */
bulkhead_status bulkhead_acquire(bulkhead *b, bulkhead_waiter *w, double deadline_ms, bulkhead_cb cb,
                                 void *arg);

/* Gives back a slot held by an admitted call, reporting how the call ended (OVERLOAD is
 * what the throttle counts as a rejection; every other outcome is an accept). Then hands
 * free slots to waiting callers, oldest first (each counted in flight at once and made
 * ready for BULKHEAD_ADMITTED); a waiter whose bound has passed on the clock is made ready
 * for BULKHEAD_TIMED_OUT instead of being admitted late. Runs no callback. RAGD_EINVAL (and
 * nothing changes) if no slot is held: a double release is a caller bug that must not drive
 * in_flight negative. */
ragd_err bulkhead_release(bulkhead *b, upstream_outcome outcome);

/* Withdraws a waiter (its caller went away), whether still waiting or already decided
 * but not yet delivered; a slot it had been handed goes back (and may be handed on).
 * true = it was w's bulkhead and its callback will not be called; false = w is not waiting
 * here (its callback already ran, or it never queued). Runs no callback. */
bool bulkhead_cancel(bulkhead *b, bulkhead_waiter *w);

/* Makes ready, for BULKHEAD_TIMED_OUT, every waiter whose bound is <= now_ms. Returns how
 * many. Runs no callback. */
size_t bulkhead_expire(bulkhead *b, double now_ms);

/* The earliest waiter expiry (INFINITY when nobody waits): when to call bulkhead_expire. */
double bulkhead_next_expiry(const bulkhead *b);

/* Makes every waiting caller ready for BULKHEAD_CLOSED (shutdown). Returns how many. Runs
 * no callback. */
size_t bulkhead_shed_all(bulkhead *b);

/* Delivers the callbacks of the ready waiters, oldest decision first, including waiters
 * that callbacks make ready meanwhile. Returns how many callbacks ran. */
size_t bulkhead_dispatch(bulkhead *b);

/* Seconds for a Retry-After header after a shed: ceil(max_wait_ms / 1000), at least 1. */
int bulkhead_retry_after_s(const bulkhead *b);

/* Current P(reject) of adaptive throttling = max(0, (requests - K*accepts) / (requests + 1))
 * over the window ending now (0 when throttling is off). */
double bulkhead_throttle_p(bulkhead *b);

bulkhead_stats bulkhead_get_stats(bulkhead *b);
const char *bulkhead_backend(const bulkhead *b);
const char *bulkhead_model(const bulkhead *b);

/* A static name for a status ("admitted", "queued", "shed_full", ...). */
const char *bulkhead_status_name(bulkhead_status s);

/* ---- The set of bulkheads, one per (backend, model), created on first use. Same thread
 * rule as above. ---- */
typedef struct bulkhead_set bulkhead_set;

/* Creates an empty set; every bulkhead in it gets config c and the wake hook. max_entries
 * caps how many (backend, model) pairs may exist (>= 1). RAGD_EINVAL / RAGD_ENOMEM. */
ragd_err bulkhead_set_new(const bulkhead_config *c, size_t max_entries, upstream_clock clock,
                          upstream_rand rand, bulkhead_wake wake, bulkhead_set **out, char *err,
                          size_t errlen);
/* Frees the set and its bulkheads (as bulkhead_free); NULL ok. */
void bulkhead_set_free(bulkhead_set *s);

/* The bulkhead of (backend, model), created if new; owned by the set. RAGD_ETOOBIG when
 * max_entries are in use, RAGD_ENOMEM, RAGD_EINVAL for a NULL name. */
ragd_err bulkhead_set_get(bulkhead_set *s, const char *backend, const char *model, bulkhead **out);

/* Nothing in flight, waiting, or decided but not yet delivered. */
bool bulkhead_idle(const bulkhead *b);
/* Removes an idle b from the set and frees it: RAGD_OK, or RAGD_EBUSY (b not idle; kept)
 * / RAGD_EINVAL (not in the set). Safe from a waiter's callback: a dispatch pass of the set
 * in progress starts over (the bulkheads after b moved down by one). */
ragd_err bulkhead_set_remove(bulkhead_set *s, bulkhead *b);
/* For /metrics: the count, and the i-th bulkhead (NULL past the end), in creation order. */
size_t bulkhead_set_count(const bulkhead_set *s);
bulkhead *bulkhead_set_at(const bulkhead_set *s, size_t i);

/* bulkhead_expire / bulkhead_next_expiry / bulkhead_dispatch over every bulkhead of the set. */
size_t bulkhead_set_expire(bulkhead_set *s, double now_ms);
double bulkhead_set_next_expiry(const bulkhead_set *s);
size_t bulkhead_set_dispatch(bulkhead_set *s);

#endif
