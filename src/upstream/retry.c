/* Retry policy, full-jitter backoff and the retry budget. See retry.h and
 * docs/internals/retry.md. */
#include "upstream/retry.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

struct retry_budget {
    pthread_mutex_t mu;
    upstream_clock clock;
    retry_budget_config cfg;
    double tokens;  /* guarded by mu */
    double surplus; /* request tokens not yet set against the time floor, <= min_per_sec */
    double last_ms; /* clock time of the last refill; guarded by mu */
    retry_budget_stats stats;
};


void retry_policy_default(retry_policy *p)
{
    *p = (retry_policy){.max_attempts = 3, .base_ms = 100.0, .cap_ms = 2000.0, .min_attempt_ms = 50.0};
}

void retry_budget_config_default(retry_budget_config *c)
{
    *c = (retry_budget_config){.ratio = 0.1, .min_per_sec = 3.0, .max_tokens = 10.0};
}

ragd_err retry_policy_validate(const retry_policy *p, char *err, size_t errlen)
{
    if (p->max_attempts < 1 || p->max_attempts > 100) {
        ragd_errorf(err, errlen, "retry max_attempts must be 1..100 (got %d)", p->max_attempts);
        return RAGD_EINVAL;
    }
    /* The negated comparisons also reject NaN. */
    if (!(p->base_ms > 0.0) || !isfinite(p->base_ms)) {
        ragd_errorf(err, errlen, "retry base_ms must be a positive number (got %g)", p->base_ms);
        return RAGD_EINVAL;
    }
    if (!(p->cap_ms >= p->base_ms) || !isfinite(p->cap_ms)) {
        ragd_errorf(err, errlen, "retry cap_ms must be >= base_ms (got %g < %g)", p->cap_ms, p->base_ms);
        return RAGD_EINVAL;
    }
    if (!(p->min_attempt_ms >= 0.0) || !isfinite(p->min_attempt_ms)) {
        ragd_errorf(err, errlen, "retry min_attempt_ms must be >= 0 (got %g)", p->min_attempt_ms);
        return RAGD_EINVAL;
    }
    return RAGD_OK;
}

double retry_backoff_ms(const retry_policy *p, int n, const upstream_rand *r)
{
    if (n < 0)
        n = 0;
    if (n > 60) /* base * 2^60 exceeds any sane cap; keeps ldexp far from overflow */
        n = 60;
    double bound = fmin(p->cap_ms, ldexp(p->base_ms, n));
    return bound * upstream_rand_unit(r);
}

retry_decision retry_decide(const retry_policy *p, upstream_outcome outcome, int attempts_made,
                            double time_left_ms, const upstream_rand *r, retry_budget *budget)
{
    retry_decision d = {.retry = false, .prefer_other_host = false, .delay_ms = 0.0, .reason = RETRY_YES};

    if (outcome != UPSTREAM_FAILURE && outcome != UPSTREAM_OVERLOAD) {
        d.reason = RETRY_NO_CLASS;
        goto out;
    }
    if (attempts_made >= p->max_attempts) {
        d.reason = RETRY_NO_ATTEMPTS;
        goto out;
    }
    /* !(a >= b) so that a NaN time left means "no time". */
    if (!(time_left_ms >= p->min_attempt_ms)) {
        d.reason = RETRY_NO_DEADLINE;
        goto out;
    }
    double delay = retry_backoff_ms(p, attempts_made - 1, r);
    double room = time_left_ms - p->min_attempt_ms; /* may be INFINITY */
    if (delay > room)
        delay = room; /* still within [0, bound]: the jitter bound holds */
    if (budget != NULL && !retry_budget_try_withdraw(budget)) {
        d.reason = RETRY_NO_BUDGET;
        goto out;
    }
    d.retry = true;
    d.prefer_other_host = true;
    d.delay_ms = delay;
    d.reason = RETRY_YES;
out:
    return d;
}

const char *retry_reason_name(retry_reason reason)
{
    switch (reason) {
    case RETRY_YES: return "yes";
    case RETRY_NO_CLASS: return "class";
    case RETRY_NO_ATTEMPTS: return "attempts";
    case RETRY_NO_DEADLINE: return "deadline";
    case RETRY_NO_BUDGET: return "budget";
    }
    return "unknown";
}

/* ---- budget ---- */

static ragd_err retry_budget_config_validate(const retry_budget_config *c, char *err, size_t errlen)
{
    if (!(c->ratio > 0.0 && c->ratio <= 1.0)) {
        ragd_errorf(err, errlen, "retry budget ratio must be in (0, 1] (got %g)", c->ratio);
        return RAGD_EINVAL;
    }
    if (!(c->min_per_sec >= 0.0) || !isfinite(c->min_per_sec)) {
        ragd_errorf(err, errlen, "retry budget min_per_sec must be >= 0 (got %g)", c->min_per_sec);
        return RAGD_EINVAL;
    }
    if (!(c->max_tokens >= 1.0) || !isfinite(c->max_tokens)) {
        ragd_errorf(err, errlen, "retry budget max_tokens must be >= 1 (got %g)", c->max_tokens);
        return RAGD_EINVAL;
    }
    return RAGD_OK;
}

ragd_err retry_budget_new(const retry_budget_config *c, upstream_clock clock, retry_budget **out,
                          char *err, size_t errlen)
{
    ragd_err rc = retry_budget_config_validate(c, err, errlen);
    if (rc != RAGD_OK)
        return rc;
    retry_budget *b = calloc(1, sizeof *b);
    if (b == NULL) {
        ragd_errorf(err, errlen, "out of memory");
        return RAGD_ENOMEM;
    }
    if (pthread_mutex_init(&b->mu, NULL) != 0) {
        free(b);
        ragd_errorf(err, errlen, "cannot create mutex");
        return RAGD_ENOMEM;
    }
    b->clock = clock;
    b->cfg = *c;
    b->tokens = fmin(c->max_tokens, fmax(1.0, c->min_per_sec));
    b->last_ms = clock.now_ms(clock.arg);
    *out = b;
    return RAGD_OK;
}

void retry_budget_free(retry_budget *b)
{
    if (b == NULL)
        return;
    pthread_mutex_destroy(&b->mu);
    free(b);
}

/* Adds the time floor since the last refill. Caller holds mu. The floor is a minimum, not
 * an extra: tokens that requests deposited recently (the surplus) pay for it first, so the
 * rate of deposits is max(ratio * request rate, min_per_sec), not their sum — with heavy
 * traffic the 10 % holds exactly. A clock that goes backwards adds nothing (and does not
 * move last_ms back). */
static void retry_budget_refill_locked(retry_budget *b)
{
    double now = b->clock.now_ms(b->clock.arg);
    if (now > b->last_ms) {
        double floor_tokens = (now - b->last_ms) / 1000.0 * b->cfg.min_per_sec;
        if (floor_tokens > b->surplus) {
            b->tokens += floor_tokens - b->surplus;
            b->surplus = 0.0;
        } else {
            b->surplus -= floor_tokens;
        }
        b->last_ms = now;
    }
    if (b->tokens > b->cfg.max_tokens)
        b->tokens = b->cfg.max_tokens;
}

void retry_budget_note_request(retry_budget *b)
{
    pthread_mutex_lock(&b->mu);
    retry_budget_refill_locked(b);
    b->tokens = fmin(b->cfg.max_tokens, b->tokens + b->cfg.ratio);
    /* At most one second of floor is set off, so a busy hour does not mute the floor for
     * the quiet hour after it. */
    b->surplus = fmin(b->cfg.min_per_sec, b->surplus + b->cfg.ratio);
    b->stats.requests++;
    pthread_mutex_unlock(&b->mu);
}

bool retry_budget_try_withdraw(retry_budget *b)
{
    bool ok = false;
    pthread_mutex_lock(&b->mu);
    retry_budget_refill_locked(b);
    /* A small epsilon: ten deposits of 0.1 must make one token despite rounding. */
    if (b->tokens >= 1.0 - 1e-9) {
        b->tokens = fmax(0.0, b->tokens - 1.0);
        b->stats.granted++;
        ok = true;
    } else {
        b->stats.denied++;
    }
    pthread_mutex_unlock(&b->mu);
    return ok;
}

retry_budget_stats retry_budget_get_stats(retry_budget *b)
{
    pthread_mutex_lock(&b->mu);
    retry_budget_refill_locked(b);
    retry_budget_stats s = b->stats;
    s.tokens = b->tokens;
    pthread_mutex_unlock(&b->mu);
    return s;
}
