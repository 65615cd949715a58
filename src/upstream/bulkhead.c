/* Bulkhead: bounded concurrency, a bounded FIFO wait queue, shedding and SRE adaptive
 * throttling, on the event-loop thread. See bulkhead.h and docs/internals/bulkhead.md. */
#include "upstream/bulkhead.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BULKHEAD_LIMIT 100000  /* upper bound for max_concurrent and max_queue */
#define BULKHEAD_BUCKETS 10    /* throttle window = this many buckets */
#define BULKHEAD_NAME_MAX 256  /* backend and model names, bytes */

typedef struct {
    int64_t epoch; /* floor(time / bucket width) this bucket counts; -1 = empty */
    double requests;
    double accepts;
} bulkhead_bucket;

struct bulkhead {
    bulkhead_config cfg;
    char *backend;
    char *model;
    upstream_clock clock;
    upstream_rand rand;
    bulkhead_wake wake;
    int in_flight; /* slots held, including those handed to ready waiters */
    int queued;    /* waiters still waiting (not ready) */
    queue_node waiting; /* FIFO: the first is the oldest */
    queue_node ready;   /* decided, callbacks not yet delivered (bulkhead_dispatch) */
    bulkhead_bucket buckets[BULKHEAD_BUCKETS];
    bulkhead_stats stats; /* counters; gauges are filled in by get_stats */
};

struct bulkhead_set {
    bulkhead_config cfg;
    upstream_clock clock;
    upstream_rand rand;
    bulkhead_wake wake;
    bulkhead **items;
    size_t count, cap, max_entries;
    unsigned long removals; /* bulkhead_set_remove calls: a dispatch pass notices them */
};


void bulkhead_config_default(bulkhead_config *c)
{
    *c = (bulkhead_config){
        .max_concurrent = 10,
        .max_queue = 100,
        .max_wait_ms = 5000.0,
        .throttle = false,
        .throttle_k = 2.0,
        .throttle_window_ms = 120000.0,
    };
}

ragd_err bulkhead_config_validate(const bulkhead_config *c, char *err, size_t errlen)
{
    if (c->max_concurrent < 1 || c->max_concurrent > BULKHEAD_LIMIT) {
        ragd_errorf(err, errlen, "bulkhead max_concurrent must be 1..%d (got %d)", BULKHEAD_LIMIT,
                         c->max_concurrent);
        return RAGD_EINVAL;
    }
    if (c->max_queue < 0 || c->max_queue > BULKHEAD_LIMIT) {
        ragd_errorf(err, errlen, "bulkhead max_queue must be 0..%d (got %d)", BULKHEAD_LIMIT, c->max_queue);
        return RAGD_EINVAL;
    }
    /* Negated comparisons reject NaN too. */
    if (!(c->max_wait_ms > 0.0) || !isfinite(c->max_wait_ms)) {
        ragd_errorf(err, errlen, "bulkhead max_wait_ms must be a positive number (got %g)", c->max_wait_ms);
        return RAGD_EINVAL;
    }
    if (!(c->throttle_k >= 1.0) || !isfinite(c->throttle_k)) {
        ragd_errorf(err, errlen, "bulkhead throttle_k must be >= 1 (got %g)", c->throttle_k);
        return RAGD_EINVAL;
    }
    if (!(c->throttle_window_ms >= BULKHEAD_BUCKETS) || !isfinite(c->throttle_window_ms)) {
        ragd_errorf(err, errlen, "bulkhead throttle_window_ms must be >= %d (got %g)", BULKHEAD_BUCKETS,
                         c->throttle_window_ms);
        return RAGD_EINVAL;
    }
    return RAGD_OK;
}

static bool bulkhead_name_ok(const char *s) { return s != NULL && strlen(s) < BULKHEAD_NAME_MAX; }

ragd_err bulkhead_new(const bulkhead_config *c, const char *backend, const char *model,
                      upstream_clock clock, upstream_rand rand, bulkhead_wake wake, bulkhead **out,
                      char *err, size_t errlen)
{
    ragd_err rc = bulkhead_config_validate(c, err, errlen);
    bulkhead *b = NULL;
    if (rc != RAGD_OK)
        goto out;
    if (!bulkhead_name_ok(backend) || !bulkhead_name_ok(model)) {
        ragd_errorf(err, errlen, "bulkhead backend/model name missing or longer than %d bytes",
                         BULKHEAD_NAME_MAX - 1);
        rc = RAGD_EINVAL;
        goto out;
    }
    rc = RAGD_ENOMEM;
    b = calloc(1, sizeof *b);
    if (b == NULL)
        goto out;
    b->backend = strdup(backend);
    b->model = strdup(model);
    if (b->backend == NULL || b->model == NULL)
        goto out;
    b->cfg = *c;
    b->clock = clock;
    b->rand = rand;
    b->wake = wake;
    queue_init(&b->waiting);
    queue_init(&b->ready);
    for (int i = 0; i < BULKHEAD_BUCKETS; i++)
        b->buckets[i].epoch = -1;
    *out = b;
    b = NULL;
    rc = RAGD_OK;
out:
    if (rc == RAGD_ENOMEM)
        ragd_errorf(err, errlen, "out of memory");
    bulkhead_free(b);
    return rc;
}

/* ---- the waiting and ready lists ---- */

static bulkhead_waiter *bulkhead_waiter_of(queue_node *n) { return queue_data(n, bulkhead_waiter, node); }

/* Takes w out of whichever list holds it. */
static void bulkhead_unlink(bulkhead *b, bulkhead_waiter *w)
{
    queue_remove(&w->node);
    if (!w->ready)
        b->queued--;
    w->owner = NULL;
    w->ready = false;
}

static void bulkhead_push(bulkhead *b, bulkhead_waiter *w)
{
    queue_insert_tail(&b->waiting, &w->node);
    w->owner = b;
    w->ready = false;
    b->queued++;
}

/* Moves a waiting w to the ready list with the callback's status; wakes the owner when
 * the ready list was empty. */
static void bulkhead_make_ready(bulkhead *b, bulkhead_waiter *w, bulkhead_status outcome)
{
    bool was_empty = queue_empty(&b->ready);
    queue_remove(&w->node);
    b->queued--;
    w->ready = true;
    w->outcome = outcome;
    queue_insert_tail(&b->ready, &w->node);
    if (was_empty && b->wake.fn)
        b->wake.fn(b->wake.arg);
}

void bulkhead_free(bulkhead *b)
{
    if (b == NULL)
        return;
    queue_node *n;
    while ((n = queue_pop(&b->waiting)) != NULL)
        bulkhead_waiter_of(n)->owner = NULL;
    while ((n = queue_pop(&b->ready)) != NULL)
        bulkhead_waiter_of(n)->owner = NULL;
    free(b->backend);
    free(b->model);
    free(b);
}

/* ---- adaptive throttling: BULKHEAD_BUCKETS buckets of window/BUCKETS each ---- */

static int64_t bulkhead_epoch(const bulkhead *b, double now_ms)
{
    double width = b->cfg.throttle_window_ms / BULKHEAD_BUCKETS;
    double e = floor(now_ms / width);
    if (!(e >= 0.0)) /* a clock before 0 (or NaN) counts as the first bucket */
        e = 0.0;
    if (e > 9.0e15)
        e = 9.0e15;
    return (int64_t)e;
}

static void bulkhead_record(bulkhead *b, double now_ms, double requests, double accepts)
{
    int64_t epoch = bulkhead_epoch(b, now_ms);
    bulkhead_bucket *k = &b->buckets[epoch % BULKHEAD_BUCKETS];
    if (k->epoch != epoch)
        *k = (bulkhead_bucket){.epoch = epoch, .requests = 0.0, .accepts = 0.0};
    k->requests += requests;
    k->accepts += accepts;
}

static double bulkhead_p_at(const bulkhead *b, double now_ms)
{
    if (!b->cfg.throttle)
        return 0.0;
    int64_t epoch = bulkhead_epoch(b, now_ms);
    double requests = 0.0, accepts = 0.0;
    for (int i = 0; i < BULKHEAD_BUCKETS; i++) {
        const bulkhead_bucket *k = &b->buckets[i];
        if (k->epoch >= 0 && k->epoch > epoch - BULKHEAD_BUCKETS && k->epoch <= epoch) {
            requests += k->requests;
            accepts += k->accepts;
        }
    }
    double p = (requests - b->cfg.throttle_k * accepts) / (requests + 1.0);
    return p > 0.0 ? p : 0.0;
}

double bulkhead_throttle_p(bulkhead *b) { return bulkhead_p_at(b, b->clock.now_ms(b->clock.arg)); }

/* ---- acquire / release / cancel / expire ---- */

bulkhead_status bulkhead_acquire(bulkhead *b, bulkhead_waiter *w, double deadline_ms, bulkhead_cb cb,
                                 void *arg)
{
    double now = b->clock.now_ms(b->clock.arg);
    if (b->cfg.throttle) {
        double p = bulkhead_p_at(b, now);
        if (p > 0.0 && upstream_rand_unit(&b->rand) < p) {
            /* SRE: locally rejected requests count as requests, so P keeps rising
             * while the backend keeps refusing. */
            bulkhead_record(b, now, 1.0, 0.0);
            b->stats.shed_throttled++;
            return BULKHEAD_SHED_THROTTLED;
        }
    }
    if (b->in_flight < b->cfg.max_concurrent && queue_empty(&b->waiting)) {
        b->in_flight++;
        b->stats.admitted++;
        return BULKHEAD_ADMITTED;
    }
    if (w == NULL || cb == NULL || w->owner != NULL || b->queued >= b->cfg.max_queue) {
        b->stats.shed_full++;
        return BULKHEAD_SHED_FULL;
    }
    double expires = fmin(now + b->cfg.max_wait_ms, deadline_ms);
    if (!(expires > now)) {
        b->stats.timed_out++;
        return BULKHEAD_TIMED_OUT;
    }
    w->cb = cb;
    w->arg = arg;
    w->expires_ms = expires;
    bulkhead_push(b, w);
    return BULKHEAD_QUEUED;
}

/* Hands free slots to waiters, oldest first; one whose bound has passed (the loop has not
 * called bulkhead_expire yet) is made ready to time out instead of taking the slot. */
static void bulkhead_admit_waiters(bulkhead *b)
{
    double now = b->clock.now_ms(b->clock.arg);
    while (b->in_flight < b->cfg.max_concurrent && !queue_empty(&b->waiting)) {
        bulkhead_waiter *w = bulkhead_waiter_of(queue_first(&b->waiting));
        if (w->expires_ms <= now) {
            b->stats.timed_out++;
            bulkhead_make_ready(b, w, BULKHEAD_TIMED_OUT);
            continue;
        }
        b->in_flight++;
        b->stats.admitted++;
        bulkhead_make_ready(b, w, BULKHEAD_ADMITTED);
    }
}

ragd_err bulkhead_release(bulkhead *b, upstream_outcome outcome)
{
    if (b->in_flight <= 0)
        return RAGD_EINVAL;
    b->in_flight--;
    if (b->cfg.throttle)
        bulkhead_record(b, b->clock.now_ms(b->clock.arg), 1.0, outcome == UPSTREAM_OVERLOAD ? 0.0 : 1.0);
    bulkhead_admit_waiters(b);
    return RAGD_OK;
}

bool bulkhead_cancel(bulkhead *b, bulkhead_waiter *w)
{
    if (w == NULL || w->owner != b)
        return false;
    bool held_slot = w->ready && w->outcome == BULKHEAD_ADMITTED;
    bulkhead_unlink(b, w);
    b->stats.cancelled++;
    if (held_slot) { /* handed a slot it never used: give it back, uncounted by the throttle */
        b->in_flight--;
        b->stats.admitted--;
        bulkhead_admit_waiters(b);
    }
    return true;
}

size_t bulkhead_expire(bulkhead *b, double now_ms)
{
    size_t n = 0;
    queue_node *node = b->waiting.next;
    while (node != &b->waiting) {
        queue_node *next = node->next; /* making a waiter ready touches no other waiter */
        bulkhead_waiter *w = bulkhead_waiter_of(node);
        if (w->expires_ms <= now_ms) {
            b->stats.timed_out++;
            bulkhead_make_ready(b, w, BULKHEAD_TIMED_OUT);
            n++;
        }
        node = next;
    }
    return n;
}

double bulkhead_next_expiry(const bulkhead *b)
{
    double t = INFINITY;
    const queue_node *n;
    queue_foreach(n, &b->waiting) t = fmin(t, queue_data(n, const bulkhead_waiter, node)->expires_ms);
    return t;
}

size_t bulkhead_shed_all(bulkhead *b)
{
    size_t n = 0;
    while (!queue_empty(&b->waiting)) {
        bulkhead_make_ready(b, bulkhead_waiter_of(queue_first(&b->waiting)), BULKHEAD_CLOSED);
        n++;
    }
    return n;
}

size_t bulkhead_dispatch(bulkhead *b)
{
    size_t n = 0;
    queue_node *node;
    while ((node = queue_first(&b->ready)) != NULL) {
        bulkhead_waiter *w = bulkhead_waiter_of(node);
        bulkhead_status outcome = w->outcome;
        bulkhead_unlink(b, w); /* before the callback: it may reuse w at once */
        w->cb(w, outcome, w->arg);
        n++;
    }
    return n;
}

int bulkhead_retry_after_s(const bulkhead *b)
{
    double s = ceil(b->cfg.max_wait_ms / 1000.0);
    if (s < 1.0)
        s = 1.0;
    if (s > 3600.0)
        s = 3600.0;
    return (int)s;
}

bulkhead_stats bulkhead_get_stats(bulkhead *b)
{
    bulkhead_stats s = b->stats;
    s.in_flight = b->in_flight;
    s.queued = b->queued;
    s.shed = s.shed_full + s.shed_throttled + s.timed_out;
    s.throttle_p = bulkhead_throttle_p(b);
    return s;
}

const char *bulkhead_backend(const bulkhead *b) { return b->backend; }
const char *bulkhead_model(const bulkhead *b) { return b->model; }

const char *bulkhead_status_name(bulkhead_status s)
{
    switch (s) {
    case BULKHEAD_ADMITTED: return "admitted";
    case BULKHEAD_QUEUED: return "queued";
    case BULKHEAD_SHED_FULL: return "shed_full";
    case BULKHEAD_SHED_THROTTLED: return "shed_throttled";
    case BULKHEAD_TIMED_OUT: return "timed_out";
    case BULKHEAD_CLOSED: return "closed";
    }
    return "unknown";
}

/* ---- the set ---- */

ragd_err bulkhead_set_new(const bulkhead_config *c, size_t max_entries, upstream_clock clock,
                          upstream_rand rand, bulkhead_wake wake, bulkhead_set **out, char *err,
                          size_t errlen)
{
    ragd_err rc = bulkhead_config_validate(c, err, errlen);
    if (rc != RAGD_OK)
        return rc;
    if (max_entries < 1 || max_entries > BULKHEAD_LIMIT) {
        ragd_errorf(err, errlen, "bulkhead set max_entries must be 1..%d (got %zu)", BULKHEAD_LIMIT,
                         max_entries);
        return RAGD_EINVAL;
    }
    bulkhead_set *s = calloc(1, sizeof *s);
    if (s == NULL) {
        ragd_errorf(err, errlen, "out of memory");
        return RAGD_ENOMEM;
    }
    s->cfg = *c;
    s->clock = clock;
    s->rand = rand;
    s->wake = wake;
    s->max_entries = max_entries;
    *out = s;
    return RAGD_OK;
}

void bulkhead_set_free(bulkhead_set *s)
{
    if (s == NULL)
        return;
    for (size_t i = 0; i < s->count; i++)
        bulkhead_free(s->items[i]);
    free(s->items);
    free(s);
}

ragd_err bulkhead_set_get(bulkhead_set *s, const char *backend, const char *model, bulkhead **out)
{
    if (backend == NULL || model == NULL)
        return RAGD_EINVAL;
    for (size_t i = 0; i < s->count; i++) {
        if (strcmp(s->items[i]->backend, backend) == 0 && strcmp(s->items[i]->model, model) == 0) {
            *out = s->items[i];
            return RAGD_OK;
        }
    }
    if (s->count >= s->max_entries)
        return RAGD_ETOOBIG;
    if (s->count == s->cap) {
        size_t ncap = s->cap == 0 ? 8 : s->cap * 2;
        if (ncap > s->max_entries)
            ncap = s->max_entries;
        bulkhead **items = realloc(s->items, ncap * sizeof *items);
        if (items == NULL)
            return RAGD_ENOMEM;
        s->items = items;
        s->cap = ncap;
    }
    bulkhead *b = NULL;
    ragd_err rc = bulkhead_new(&s->cfg, backend, model, s->clock, s->rand, s->wake, &b, NULL, 0);
    if (rc != RAGD_OK)
        return rc;
    s->items[s->count++] = b;
    *out = b;
    return RAGD_OK;
}

bool bulkhead_idle(const bulkhead *b) { return b->in_flight == 0 && b->queued == 0 && queue_empty(&b->ready); }

ragd_err bulkhead_set_remove(bulkhead_set *s, bulkhead *b)
{
    for (size_t i = 0; i < s->count; i++) {
        if (s->items[i] != b)
            continue;
        if (!bulkhead_idle(b))
            return RAGD_EBUSY;
        memmove(s->items + i, s->items + i + 1, (s->count - i - 1) * sizeof *s->items);
        s->count--;
        s->removals++;
        bulkhead_free(b);
        return RAGD_OK;
    }
    return RAGD_EINVAL;
}

size_t bulkhead_set_count(const bulkhead_set *s) { return s->count; }

bulkhead *bulkhead_set_at(const bulkhead_set *s, size_t i) { return i < s->count ? s->items[i] : NULL; }

size_t bulkhead_set_expire(bulkhead_set *s, double now_ms)
{
    size_t n = 0;
    for (size_t i = 0; i < s->count; i++)
        n += bulkhead_expire(s->items[i], now_ms);
    return n;
}

double bulkhead_set_next_expiry(const bulkhead_set *s)
{
    double t = INFINITY;
    for (size_t i = 0; i < s->count; i++)
        t = fmin(t, bulkhead_next_expiry(s->items[i]));
    return t;
}

size_t bulkhead_set_dispatch(bulkhead_set *s)
{
    size_t n = 0;
    /* A callback may add bulkheads (count is re-read) or remove an idle one (the array
     * shifts: start over; dispatching a bulkhead with nothing ready is a no-op). */
    for (size_t i = 0; i < s->count; i++) {
        unsigned long removals = s->removals;
        n += bulkhead_dispatch(s->items[i]);
        if (s->removals != removals)
            i = (size_t)-1; /* the loop's i++ makes it 0 */
    }
    return n;
}
