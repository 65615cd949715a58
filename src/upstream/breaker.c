/* Per-backend circuit breaker: see breaker.h for the contract, docs/internals/breaker.md for
 * the why. One mutex per breaker guards everything in it; every public entry point takes it,
 * reads the injected clock once, applies the time-driven transitions (breaker_tick), then does
 * its work. */
#include "upstream/breaker.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BREAKER_BACKEND_MAX 1024
#define BREAKER_OP_MAX 64
#define BREAKER_MODEL_MAX 256
#define BREAKER_BUCKETS_MAX 1000
#define BREAKER_PERMITS_MAX 1024
#define BREAKER_STREAK_MAX 10000
#define BREAKER_BUSY_SCAN 4096

typedef struct {
    int64_t epoch; /* which bucket_ms slice of time this bucket holds */
    unsigned calls, failures, slow;
} breaker_bucket;

typedef struct {
    bool busy;
    double started_ms;
} breaker_trial;

struct breaker {
    pthread_mutex_t mu;
    char *backend, *op, *model, *name;
    breaker_config cfg;
    upstream_clock clock;
    upstream_rand rnd;

    breaker_state state;
    uint64_t generation;
    unsigned consecutive_failures;
    bool has_last_failure;
    double last_failure_ms;
    double closed_since_ms;
    double open_until_ms;
    double open_period_ms;
    unsigned open_streak;

    breaker_trial *trials; /* cfg.half_open_permits slots */
    unsigned trials_in_flight, trial_successes;

    breaker_bucket *buckets; /* cfg.window_buckets */
    double bucket_ms;

    uint64_t transitions[BREAKER_NSTATES];
    uint64_t not_permitted, successes, failures, neutral, overload, slow, stale;
};

/* ---- configuration ---- */

void breaker_config_default(breaker_config *c)
{
    *c = (breaker_config){
        .failure_threshold = 5,
        .rate_enabled = true,
        .failure_rate = 0.5,
        .min_calls = 20,
        .window_ms = 60000,
        .window_buckets = 10,
        .open_ms = 30000,
        .open_max_ms = 300000,
        .open_growth = 2,
        .open_jitter = 0.2,
        .quiet_ms = 300000,
        .half_open_permits = 1,
        .trial_timeout_ms = 120000,
        .slow_enabled = false,
        .slow_call_ms = 10000,
        .slow_call_rate = 0.8,
        .classify = NULL,
        .classify_arg = NULL,
    };
}

static ragd_err breaker_fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return RAGD_EINVAL;
}

static bool breaker_positive_time(double v) { return isfinite(v) && v > 0; }

static bool breaker_fraction(double v) { return isfinite(v) && v > 0 && v <= 1; }

ragd_err breaker_config_validate(const breaker_config *c, char *err, size_t errlen)
{
    if (!c)
        return breaker_fail(err, errlen, "breaker: no configuration");
    if (c->failure_threshold < 1)
        return breaker_fail(err, errlen, "breaker: failure_threshold must be at least 1 (got %u)",
                            c->failure_threshold);
    if (!breaker_fraction(c->failure_rate))
        return breaker_fail(err, errlen, "breaker: failure_rate must be in (0, 1] (got %g)", c->failure_rate);
    if (c->min_calls < 1)
        return breaker_fail(err, errlen, "breaker: min_calls must be at least 1 (got %u)", c->min_calls);
    if (!breaker_positive_time(c->window_ms))
        return breaker_fail(err, errlen, "breaker: window_ms must be a positive time (got %g)", c->window_ms);
    if (c->window_buckets < 1 || c->window_buckets > BREAKER_BUCKETS_MAX)
        return breaker_fail(err, errlen, "breaker: window_buckets must be in 1..%d (got %u)", BREAKER_BUCKETS_MAX,
                            c->window_buckets);
    if (!breaker_positive_time(c->open_ms))
        return breaker_fail(err, errlen, "breaker: open_ms must be a positive time (got %g)", c->open_ms);
    if (!breaker_positive_time(c->open_max_ms) || c->open_max_ms < c->open_ms)
        return breaker_fail(err, errlen, "breaker: open_max_ms must be a time >= open_ms (got %g)", c->open_max_ms);
    if (!isfinite(c->open_growth) || c->open_growth < 1 || c->open_growth > 100)
        return breaker_fail(err, errlen, "breaker: open_growth must be in [1, 100] (got %g)", c->open_growth);
    if (!isfinite(c->open_jitter) || c->open_jitter < 0 || c->open_jitter >= 1)
        return breaker_fail(err, errlen, "breaker: open_jitter must be in [0, 1) (got %g)", c->open_jitter);
    if (!breaker_positive_time(c->quiet_ms))
        return breaker_fail(err, errlen, "breaker: quiet_ms must be a positive time (got %g)", c->quiet_ms);
    if (c->half_open_permits < 1 || c->half_open_permits > BREAKER_PERMITS_MAX)
        return breaker_fail(err, errlen, "breaker: half_open_permits must be in 1..%d (got %u)", BREAKER_PERMITS_MAX,
                            c->half_open_permits);
    if (!breaker_positive_time(c->trial_timeout_ms))
        return breaker_fail(err, errlen, "breaker: trial_timeout_ms must be a positive time (got %g)",
                            c->trial_timeout_ms);
    if (!breaker_positive_time(c->slow_call_ms))
        return breaker_fail(err, errlen, "breaker: slow_call_ms must be a positive time (got %g)", c->slow_call_ms);
    if (!breaker_fraction(c->slow_call_rate))
        return breaker_fail(err, errlen, "breaker: slow_call_rate must be in (0, 1] (got %g)", c->slow_call_rate);
    return RAGD_OK;
}

/* ---- classification ---- */

breaker_outcome breaker_classify_default(const breaker_call *call, void *arg)
{
    (void)arg;
    int s = call->http_status;
    if (call->cancelled)
        return UPSTREAM_NEUTRAL;
    if (call->transport != BREAKER_XPORT_NONE)
        return UPSTREAM_FAILURE;
    if ((s == 503 && call->busy) || s == 429)
        return UPSTREAM_OVERLOAD;
    if (s >= 500 && s <= 599)
        return UPSTREAM_FAILURE;
    if (s == 408)
        return UPSTREAM_FAILURE;
    if (s >= 400 && s <= 499)
        return UPSTREAM_NEUTRAL;
    if (s >= 200 && s <= 299) {
        if (call->stream == BREAKER_STREAM_ERROR_LINE || call->stream == BREAKER_STREAM_NO_DONE)
            return UPSTREAM_FAILURE;
        return UPSTREAM_SUCCESS;
    }
    return UPSTREAM_FAILURE;
}

static bool breaker_contains_ci(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);
    for (size_t i = 0; i + n <= len; i++) {
        size_t j = 0;
        while (j < n) {
            char c = hay[i + j];
            if (c >= 'A' && c <= 'Z')
                c = (char)(c - 'A' + 'a');
            if (c != needle[j])
                break;
            j++;
        }
        if (j == n)
            return true;
    }
    return false;
}

bool breaker_body_is_busy(const char *body, size_t len)
{
    if (!body)
        return false;
    if (len > BREAKER_BUSY_SCAN)
        len = BREAKER_BUSY_SCAN;
    return breaker_contains_ci(body, len, "server busy") ||
           breaker_contains_ci(body, len, "maximum pending requests exceeded");
}

const char *breaker_state_name(breaker_state s)
{
    switch (s) {
    case BREAKER_CLOSED: return "CLOSED";
    case BREAKER_OPEN: return "OPEN";
    case BREAKER_HALF_OPEN: return "HALF_OPEN";
    case BREAKER_FORCED_OPEN: return "FORCED_OPEN";
    case BREAKER_DISABLED: return "DISABLED";
    default: return "UNKNOWN";
    }
}

const char *breaker_outcome_name(breaker_outcome o)
{
    switch (o) {
    case UPSTREAM_SUCCESS: return "success";
    case UPSTREAM_FAILURE: return "failure";
    case UPSTREAM_OVERLOAD: return "overload";
    case UPSTREAM_NEUTRAL: return "neutral";
    default: return "unknown";
    }
}

/* ---- lifetime ---- */

static char *breaker_strdup(const char *s)
{
    size_t n = strlen(s);
    char *p = malloc(n + 1);
    if (p)
        memcpy(p, s, n + 1);
    return p;
}

ragd_err breaker_new(const char *backend, const char *op, const char *model, const breaker_config *cfg,
                     upstream_clock clock, upstream_rand rnd, breaker **out, char *err, size_t errlen)
{
    ragd_err rc = RAGD_OK;
    breaker *b = NULL;
    *out = NULL;
    if (!model)
        model = "";
    if (!backend || !*backend || strlen(backend) > BREAKER_BACKEND_MAX) {
        rc = breaker_fail(err, errlen, "breaker: backend must be 1..%d bytes", BREAKER_BACKEND_MAX);
        goto out;
    }
    if (!op || !*op || strlen(op) > BREAKER_OP_MAX) {
        rc = breaker_fail(err, errlen, "breaker: op must be 1..%d bytes", BREAKER_OP_MAX);
        goto out;
    }
    if (strlen(model) > BREAKER_MODEL_MAX) {
        rc = breaker_fail(err, errlen, "breaker: model must be at most %d bytes", BREAKER_MODEL_MAX);
        goto out;
    }
    if (!clock.now_ms || !rnd.next) {
        rc = breaker_fail(err, errlen, "breaker: clock and random source are required");
        goto out;
    }
    rc = breaker_config_validate(cfg, err, errlen);
    if (rc != RAGD_OK)
        goto out;

    rc = RAGD_ENOMEM;
    b = calloc(1, sizeof *b);
    if (!b)
        goto out;
    b->cfg = *cfg;
    if (!b->cfg.classify)
        b->cfg.classify = breaker_classify_default;
    b->clock = clock;
    b->rnd = rnd;
    b->backend = breaker_strdup(backend);
    b->op = breaker_strdup(op);
    b->model = breaker_strdup(model);
    size_t namelen = strlen(backend) + strlen(op) + strlen(model) + 3;
    b->name = malloc(namelen);
    b->trials = calloc(cfg->half_open_permits, sizeof *b->trials);
    b->buckets = calloc(cfg->window_buckets, sizeof *b->buckets);
    if (!b->backend || !b->op || !b->model || !b->name || !b->trials || !b->buckets)
        goto out;
    if (*model)
        snprintf(b->name, namelen, "%s %s/%s", backend, op, model);
    else
        snprintf(b->name, namelen, "%s %s", backend, op);
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        rc = RAGD_EIO;
        goto out;
    }
    b->bucket_ms = cfg->window_ms / cfg->window_buckets;
    for (unsigned i = 0; i < cfg->window_buckets; i++)
        b->buckets[i].epoch = INT64_MIN;
    b->state = BREAKER_CLOSED;
    b->generation = 1;
    b->closed_since_ms = clock.now_ms(clock.arg);
    b->open_period_ms = cfg->open_ms;
    *out = b;
    b = NULL;
    rc = RAGD_OK;
out:
    if (b) {
        free(b->backend);
        free(b->op);
        free(b->model);
        free(b->name);
        free(b->trials);
        free(b->buckets);
        free(b);
    }
    return rc;
}

void breaker_free(breaker *b)
{
    if (!b)
        return;
    pthread_mutex_destroy(&b->mu);
    free(b->backend);
    free(b->op);
    free(b->model);
    free(b->name);
    free(b->trials);
    free(b->buckets);
    free(b);
}

const char *breaker_name(const breaker *b) { return b->name; }
const char *breaker_backend(const breaker *b) { return b->backend; }
const char *breaker_op(const breaker *b) { return b->op; }
const char *breaker_model(const breaker *b) { return b->model; }

/* ---- state machine (all with b->mu held) ---- */

static void breaker_window_clear(breaker *b)
{
    for (unsigned i = 0; i < b->cfg.window_buckets; i++)
        b->buckets[i] = (breaker_bucket){.epoch = INT64_MIN};
}

static int64_t breaker_epoch(const breaker *b, double now) { return (int64_t)floor(now / b->bucket_ms); }

/* Sums the buckets still inside the window ending now. */
static void breaker_window_sum(const breaker *b, double now, unsigned *calls, unsigned *failures, unsigned *slow)
{
    int64_t cur = breaker_epoch(b, now);
    int64_t oldest = cur - (int64_t)b->cfg.window_buckets + 1;
    *calls = *failures = *slow = 0;
    for (unsigned i = 0; i < b->cfg.window_buckets; i++) {
        const breaker_bucket *k = &b->buckets[i];
        if (k->epoch >= oldest && k->epoch <= cur) {
            *calls += k->calls;
            *failures += k->failures;
            *slow += k->slow;
        }
    }
}

static void breaker_window_add(breaker *b, double now, bool failure, bool slow)
{
    int64_t epoch = breaker_epoch(b, now);
    int64_t n = (int64_t)b->cfg.window_buckets;
    breaker_bucket *k = &b->buckets[((epoch % n) + n) % n];
    if (k->epoch != epoch)
        *k = (breaker_bucket){.epoch = epoch};
    k->calls++;
    if (failure)
        k->failures++;
    if (slow)
        k->slow++;
}

static void breaker_enter(breaker *b, breaker_state to, double now)
{
    b->state = to;
    b->generation++;
    b->transitions[to]++;
    b->trials_in_flight = 0;
    b->trial_successes = 0;
    memset(b->trials, 0, b->cfg.half_open_permits * sizeof *b->trials);
    if (to == BREAKER_CLOSED) {
        b->closed_since_ms = now;
        b->consecutive_failures = 0;
        breaker_window_clear(b);
    }
}

/* Trips to OPEN. The first open of a streak lasts open_ms exactly; each consecutive re-open
 * multiplies by open_growth and adds +-open_jitter, never beyond open_max_ms. */
static void breaker_trip(breaker *b, double now)
{
    if (b->open_streak < BREAKER_STREAK_MAX)
        b->open_streak++;
    double period = b->cfg.open_ms * pow(b->cfg.open_growth, (double)(b->open_streak - 1));
    if (!(period <= b->cfg.open_max_ms))
        period = b->cfg.open_max_ms;
    if (b->open_streak > 1) {
        double u = upstream_rand_unit(&b->rnd);
        period *= 1.0 + b->cfg.open_jitter * (2.0 * u - 1.0);
        if (period > b->cfg.open_max_ms)
            period = b->cfg.open_max_ms;
    }
    b->open_period_ms = period;
    b->open_until_ms = now + period;
    breaker_enter(b, BREAKER_OPEN, now);
}

static void breaker_note_failure(breaker *b, double now)
{
    b->has_last_failure = true;
    b->last_failure_ms = now;
}

/* The time-driven transitions, evaluated lazily on every entry point. */
static void breaker_tick(breaker *b, double now)
{
    if (b->state == BREAKER_CLOSED && b->open_streak > 0 && now - b->closed_since_ms >= b->cfg.quiet_ms)
        b->open_streak = 0;
    if (b->state == BREAKER_OPEN && now >= b->open_until_ms)
        breaker_enter(b, BREAKER_HALF_OPEN, now);
    if (b->state == BREAKER_HALF_OPEN) {
        for (unsigned i = 0; i < b->cfg.half_open_permits; i++) {
            if (b->trials[i].busy && now - b->trials[i].started_ms >= b->cfg.trial_timeout_ms) {
                /* A hung trial counts as a failed one. */
                b->failures++;
                breaker_note_failure(b, now);
                breaker_trip(b, now);
                break;
            }
        }
    }
}

/* Applies the CLOSED rules after a new call was recorded. */
static void breaker_check_closed(breaker *b, double now)
{
    if (b->consecutive_failures >= b->cfg.failure_threshold) {
        breaker_trip(b, now);
        return;
    }
    unsigned calls, failures, slow;
    breaker_window_sum(b, now, &calls, &failures, &slow);
    if (calls < b->cfg.min_calls)
        return;
    if (b->cfg.rate_enabled && (double)failures / calls >= b->cfg.failure_rate) {
        breaker_trip(b, now);
        return;
    }
    if (b->cfg.slow_enabled && (double)slow / calls >= b->cfg.slow_call_rate)
        breaker_trip(b, now);
}

/* ---- admission and reports ---- */

bool breaker_acquire(breaker *b, breaker_permit *permit, double *remaining_ms)
{
    bool ok = false;
    double remaining = 0;
    pthread_mutex_lock(&b->mu);
    double now = b->clock.now_ms(b->clock.arg);
    breaker_tick(b, now);
    *permit = (breaker_permit){.generation = b->generation, .started_ms = now, .trial_slot = -1, .held = false};
    switch (b->state) {
    case BREAKER_CLOSED:
    case BREAKER_DISABLED:
        ok = true;
        break;
    case BREAKER_OPEN:
        remaining = b->open_until_ms - now;
        break;
    case BREAKER_FORCED_OPEN:
        remaining = -1;
        break;
    case BREAKER_HALF_OPEN:
        if (b->trials_in_flight + b->trial_successes < b->cfg.half_open_permits) {
            for (unsigned i = 0; i < b->cfg.half_open_permits; i++) {
                if (!b->trials[i].busy) {
                    b->trials[i] = (breaker_trial){.busy = true, .started_ms = now};
                    permit->trial_slot = (int)i;
                    b->trials_in_flight++;
                    ok = true;
                    break;
                }
            }
        }
        break;
    default:
        break;
    }
    if (ok)
        permit->held = true;
    else
        b->not_permitted++;
    pthread_mutex_unlock(&b->mu);
    if (remaining_ms)
        *remaining_ms = ok ? 0 : remaining;
    return ok;
}

static void breaker_count(breaker *b, breaker_outcome o, bool slow)
{
    switch (o) {
    case UPSTREAM_SUCCESS: b->successes++; break;
    case UPSTREAM_FAILURE: b->failures++; break;
    case UPSTREAM_OVERLOAD: b->overload++; break;
    default: b->neutral++; break;
    }
    if (slow)
        b->slow++;
}

/* The HALF_OPEN half of a current-generation report. */
static void breaker_release_trial(breaker *b, const breaker_permit *p, breaker_outcome o, double now)
{
    int slot = p->trial_slot;
    if (slot < 0 || (unsigned)slot >= b->cfg.half_open_permits || !b->trials[slot].busy)
        return; /* cannot happen for a permit this generation handed out; ignore defensively */
    b->trials[slot].busy = false;
    b->trials_in_flight--;
    if (o == UPSTREAM_FAILURE) {
        breaker_trip(b, now);
    } else if (o == UPSTREAM_SUCCESS) {
        b->trial_successes++;
        if (b->trial_successes >= b->cfg.half_open_permits)
            breaker_enter(b, BREAKER_CLOSED, now);
    }
    /* OVERLOAD, NEUTRAL: the permit is free again, nothing learned. */
}

void breaker_release(breaker *b, breaker_permit *permit, breaker_outcome outcome, bool model_loading)
{
    pthread_mutex_lock(&b->mu);
    double now = b->clock.now_ms(b->clock.arg);
    breaker_tick(b, now);
    if (!permit->held) {
        b->stale++;
        goto out;
    }
    permit->held = false;
    if ((unsigned)outcome >= UPSTREAM_NOUTCOMES)
        outcome = UPSTREAM_FAILURE; /* an unknown class is treated as the cautious one */
    bool counted = outcome == UPSTREAM_SUCCESS || outcome == UPSTREAM_FAILURE;
    bool slow = b->cfg.slow_enabled && counted && !model_loading && now - permit->started_ms >= b->cfg.slow_call_ms;
    breaker_count(b, outcome, slow);
    if (outcome == UPSTREAM_FAILURE)
        breaker_note_failure(b, now);
    if (permit->generation != b->generation) {
        b->stale++;
        goto out;
    }
    switch (b->state) {
    case BREAKER_CLOSED:
        if (!counted)
            break;
        if (outcome == UPSTREAM_FAILURE)
            b->consecutive_failures++;
        else
            b->consecutive_failures = 0;
        breaker_window_add(b, now, outcome == UPSTREAM_FAILURE, slow);
        breaker_check_closed(b, now);
        break;
    case BREAKER_HALF_OPEN:
        breaker_release_trial(b, permit, outcome, now);
        break;
    default: /* DISABLED records nothing; OPEN/FORCED_OPEN hand out no permits */
        break;
    }
out:
    pthread_mutex_unlock(&b->mu);
}

breaker_outcome breaker_report(breaker *b, breaker_permit *permit, const breaker_call *call)
{
    breaker_outcome o = b->cfg.classify(call, b->cfg.classify_arg);
    breaker_release(b, permit, o, call->model_loading);
    return o;
}

/* ---- admin ---- */

static void breaker_admin(breaker *b, breaker_state to)
{
    pthread_mutex_lock(&b->mu);
    double now = b->clock.now_ms(b->clock.arg);
    breaker_tick(b, now);
    if (to == BREAKER_CLOSED)
        b->open_streak = 0;
    breaker_enter(b, to, now);
    pthread_mutex_unlock(&b->mu);
}

void breaker_force_open(breaker *b) { breaker_admin(b, BREAKER_FORCED_OPEN); }
void breaker_disable(breaker *b) { breaker_admin(b, BREAKER_DISABLED); }
void breaker_reset(breaker *b) { breaker_admin(b, BREAKER_CLOSED); }

void breaker_snapshot_get(breaker *b, breaker_snapshot *out)
{
    pthread_mutex_lock(&b->mu);
    double now = b->clock.now_ms(b->clock.arg);
    breaker_tick(b, now);
    *out = (breaker_snapshot){
        .state = b->state,
        .generation = b->generation,
        .consecutive_failures = b->consecutive_failures,
        .has_last_failure = b->has_last_failure,
        .last_failure_ms = b->has_last_failure ? b->last_failure_ms : 0,
        .last_failure_age_ms = b->has_last_failure ? now - b->last_failure_ms : 0,
        .remaining_open_ms = 0,
        .open_period_ms = b->open_period_ms,
        .open_streak = b->open_streak,
        .trials_in_flight = b->trials_in_flight,
        .trial_successes = b->trial_successes,
        .not_permitted = b->not_permitted,
        .successes = b->successes,
        .failures = b->failures,
        .neutral = b->neutral,
        .overload = b->overload,
        .slow = b->slow,
        .stale = b->stale,
    };
    if (b->state == BREAKER_OPEN)
        out->remaining_open_ms = b->open_until_ms - now;
    else if (b->state == BREAKER_FORCED_OPEN)
        out->remaining_open_ms = -1;
    if (b->state == BREAKER_CLOSED)
        breaker_window_sum(b, now, &out->window_calls, &out->window_failures, &out->window_slow);
    memcpy(out->transitions, b->transitions, sizeof out->transitions);
    pthread_mutex_unlock(&b->mu);
}

/* ---- registry ---- */

struct breaker_registry {
    pthread_mutex_t mu;
    upstream_clock clock;
    upstream_rand rnd;
    breaker **items;
    size_t len, cap;
};

breaker_registry *breaker_registry_new(upstream_clock clock, upstream_rand rnd)
{
    breaker_registry *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    if (pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r);
        return NULL;
    }
    r->clock = clock;
    r->rnd = rnd;
    return r;
}

void breaker_registry_free(breaker_registry *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->len; i++)
        breaker_free(r->items[i]);
    free(r->items);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static breaker *breaker_registry_find_locked(breaker_registry *r, const char *name)
{
    for (size_t i = 0; i < r->len; i++)
        if (strcmp(r->items[i]->name, name) == 0)
            return r->items[i];
    return NULL;
}

ragd_err breaker_registry_add(breaker_registry *r, const char *backend, const char *op, const char *model,
                              const breaker_config *cfg, breaker **out, char *err, size_t errlen)
{
    breaker *b = NULL;
    ragd_err rc = breaker_new(backend, op, model, cfg, r->clock, r->rnd, &b, err, errlen);
    *out = NULL;
    if (rc != RAGD_OK)
        return rc;
    pthread_mutex_lock(&r->mu);
    breaker *existing = breaker_registry_find_locked(r, b->name);
    if (existing) {
        *out = existing;
        rc = RAGD_ECONFLICT;
        goto out;
    }
    if (r->len == BREAKER_REGISTRY_MAX) {
        rc = RAGD_ETOOBIG;
        goto out;
    }
    if (r->len == r->cap) {
        size_t ncap = r->cap ? r->cap * 2 : 8;
        if (ncap > BREAKER_REGISTRY_MAX)
            ncap = BREAKER_REGISTRY_MAX;
        breaker **items = realloc(r->items, ncap * sizeof *items);
        if (!items) {
            rc = RAGD_ENOMEM;
            goto out;
        }
        r->items = items;
        r->cap = ncap;
    }
    r->items[r->len++] = b;
    *out = b;
    b = NULL;
out:
    pthread_mutex_unlock(&r->mu);
    breaker_free(b);
    return rc;
}

void breaker_registry_remove(breaker_registry *r, breaker *b)
{
    pthread_mutex_lock(&r->mu);
    bool found = false;
    for (size_t i = 0; i < r->len && !found; i++) {
        if (r->items[i] == b) {
            memmove(r->items + i, r->items + i + 1, (r->len - i - 1) * sizeof *r->items);
            r->len--;
            found = true;
        }
    }
    pthread_mutex_unlock(&r->mu);
    if (found)
        breaker_free(b);
}

breaker *breaker_registry_find(breaker_registry *r, const char *name)
{
    pthread_mutex_lock(&r->mu);
    breaker *b = breaker_registry_find_locked(r, name);
    pthread_mutex_unlock(&r->mu);
    return b;
}

size_t breaker_registry_count(breaker_registry *r)
{
    pthread_mutex_lock(&r->mu);
    size_t n = r->len;
    pthread_mutex_unlock(&r->mu);
    return n;
}

breaker *breaker_registry_at(breaker_registry *r, size_t i)
{
    pthread_mutex_lock(&r->mu);
    breaker *b = i < r->len ? r->items[i] : NULL;
    pthread_mutex_unlock(&r->mu);
    return b;
}
