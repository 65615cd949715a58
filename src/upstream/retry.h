#ifndef RAGD_UPSTREAM_RETRY_H
#define RAGD_UPSTREAM_RETRY_H

/* Retry decisions for upstream calls (docs/internals/retry.md).
 *
 * The policy is plain data; retry_decide() is a pure function of (policy, outcome, attempts
 * made, time left) plus one draw from the injected random source and, if a budget is given,
 * one token from it. It never sleeps: the caller waits `delay_ms` (a timer on the loop) and
 * then makes the next attempt, on another host when `prefer_other_host` says so.
 * Only this layer retries: the HTTP client and the backends must not. */
#include <stdbool.h>
#include <stddef.h>

#include "upstream/inject.h"
#include "upstream/outcome.h"
#include "util/err.h"

typedef struct {
    int max_attempts;      /* attempts in total, the first included (>= 1; default 3) */
    double base_ms;        /* backoff base (> 0; default 100) */
    double cap_ms;         /* backoff cap (>= base_ms; default 2000) */
    double min_attempt_ms; /* an attempt needs at least this much of the deadline left
                              after its delay (>= 0; default 50) */
} retry_policy;

/* Why retry_decide() said what it said (also the label of a /metrics counter). */
typedef enum {
    RETRY_YES = 0,       /* retry after delay_ms */
    RETRY_NO_CLASS,      /* SUCCESS or NEUTRAL: never retried */
    RETRY_NO_ATTEMPTS,   /* max_attempts reached */
    RETRY_NO_DEADLINE,   /* not enough of the request's deadline left */
    RETRY_NO_BUDGET,     /* the retry budget is empty */
} retry_reason;

typedef struct {
    bool retry;             /* reason == RETRY_YES */
    bool prefer_other_host; /* set on every retry: try a different host if one is usable */
    double delay_ms;        /* wait this long before the retry; 0 when !retry */
    retry_reason reason;
} retry_decision;

typedef struct retry_budget retry_budget;

typedef struct {
    double ratio;       /* retries per original request (0 < ratio <= 1; default 0.1) */
    double min_per_sec; /* retries allowed per second whatever the traffic (>= 0; default 3) */
    double max_tokens;  /* bucket size, the largest burst of retries (>= 1; default 10) */
} retry_budget_config;

/* Fills p / c with the defaults above. */
void retry_policy_default(retry_policy *p);
void retry_budget_config_default(retry_budget_config *c);

/* RAGD_OK, or RAGD_EINVAL with a message in err (may be NULL) naming the bad field. Values
 * out of range (0 attempts, a 0 base, NaN, ...) are rejected, never replaced by defaults. */
ragd_err retry_policy_validate(const retry_policy *p, char *err, size_t errlen);

/* The full-jitter delay before retry number n (n = 0 for the first retry):
 * U(0, min(cap_ms, base_ms * 2^n)), one draw from r. n < 0 is treated as 0. */
double retry_backoff_ms(const retry_policy *p, int n, const upstream_rand *r);

/* Decides whether to retry after an attempt that ended with `outcome`.
 * attempts_made: attempts finished so far, the one just failed included (1 after the first).
 * time_left_ms:  what remains of the request's deadline now (INFINITY when it has none).
 * budget:        may be NULL (no budget). A token is taken only when every other check
 *                passes, so a "no" never costs budget.
 * The delay is the full-jitter draw, shortened if needed so that min_attempt_ms of the
 * deadline remain for the attempt; with less than min_attempt_ms left: RETRY_NO_DEADLINE.
 * p must be valid (retry_policy_validate). Thread-safe if r and budget are. */
retry_decision retry_decide(const retry_policy *p, upstream_outcome outcome, int attempts_made,
                            double time_left_ms, const upstream_rand *r, retry_budget *budget);

/* A static name for a reason ("yes", "class", "attempts", "deadline", "budget"). */
const char *retry_reason_name(retry_reason reason);

/* ---- Retry budget: a token bucket, thread-safe. ----
 * Each original request (not each attempt) adds `ratio` tokens; the injected clock tops the
 * deposits up to a floor of `min_per_sec` tokens per second (a floor, not an extra: tokens
 * from requests count toward it). The bucket holds at most max_tokens and starts with
 * min(max_tokens, max(1, min_per_sec)) tokens. A retry takes one whole token. So over any
 * period: retries <= max(ratio * requests, min_per_sec * seconds) + min_per_sec + max_tokens. */

/* Creates a budget. RAGD_EINVAL (message in err) for a bad config, RAGD_ENOMEM. The clock is
 * copied and must be callable from any thread. *out is set only on success. */
ragd_err retry_budget_new(const retry_budget_config *c, upstream_clock clock, retry_budget **out,
                          char *err, size_t errlen);
/* Frees the budget; NULL ok. No other thread may be using it. */
void retry_budget_free(retry_budget *b);

/* Counts one original request (call once per request, before or after its first attempt). */
void retry_budget_note_request(retry_budget *b);

/* Takes one token if there is one: true = the retry may go. retry_decide() calls this. */
bool retry_budget_try_withdraw(retry_budget *b);

typedef struct {
    unsigned long long requests; /* note_request calls */
    unsigned long long granted;  /* tokens taken */
    unsigned long long denied;   /* withdrawals refused */
    double tokens;               /* tokens now (after refilling to the current time) */
} retry_budget_stats;

/* A consistent snapshot for /metrics. */
retry_budget_stats retry_budget_get_stats(retry_budget *b);

#endif
