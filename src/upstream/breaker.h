#ifndef RAGD_UPSTREAM_BREAKER_H
#define RAGD_UPSTREAM_BREAKER_H

/* Per-backend circuit breaker (docs/internals/breaker.md).
 *
 * One breaker per backend and operation/model. States CLOSED, OPEN, HALF_OPEN, plus the admin
 * states FORCED_OPEN and DISABLED. No timer thread: every call evaluates the state lazily
 * against the injected clock (OPEN -> HALF_OPEN when the open period is over, a HALF_OPEN trial
 * older than the trial timeout counts as failed and re-opens).
 *
 * Threads: every function taking a breaker or a registry is safe from any thread (one mutex per
 * breaker, one per registry). The injected clock and random source are called with the
 * breaker's mutex held; they must not call back into the breaker.
 *
 * A call goes: breaker_acquire() -> permit (or denied) -> the call -> breaker_report() (or
 * breaker_release() with an outcome already classified). Every permit must be reported exactly
 * once; a second report of the same permit is ignored. A permit carries the breaker's
 * generation; reports under an older generation (a straggler from before a transition) change
 * no state, only the counters. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "upstream/inject.h"
#include "upstream/outcome.h"
#include "util/err.h"

typedef enum {
    BREAKER_CLOSED = 0,
    BREAKER_OPEN,
    BREAKER_HALF_OPEN,
    BREAKER_FORCED_OPEN, /* admin: deny everything until reset */
    BREAKER_DISABLED,    /* admin: admit everything, never trip, until reset */
    BREAKER_NSTATES
} breaker_state;

/* The outcome classes are shared with retry and bulkhead (upstream/outcome.h). */
typedef upstream_outcome breaker_outcome;

/* What the transport layer saw; any value other than NONE is a transport error. */
typedef enum {
    BREAKER_XPORT_NONE = 0,
    BREAKER_XPORT_CONNECT,       /* refused, unreachable, DNS */
    BREAKER_XPORT_RESET,         /* connection reset / closed early */
    BREAKER_XPORT_TTFB_TIMEOUT,  /* no first byte in time */
    BREAKER_XPORT_IDLE_TIMEOUT,  /* gap between stream chunks too long */
    BREAKER_XPORT_TOTAL_TIMEOUT, /* whole call too long */
    BREAKER_XPORT_OTHER,         /* any other transport error */
} breaker_transport;

typedef enum {
    BREAKER_STREAM_NONE = 0,   /* not a stream: a complete body was received */
    BREAKER_STREAM_DONE,       /* the stream ended with done:true */
    BREAKER_STREAM_ERROR_LINE, /* an {"error":...} line arrived mid-stream */
    BREAKER_STREAM_NO_DONE,    /* the stream ended without done:true */
} breaker_stream;

/* The facts of one finished call, input of the classifier. */
typedef struct {
    breaker_transport transport;
    int http_status;       /* 0 when no status line was received */
    bool busy;             /* the 503 body is Ollama's queue-full message (breaker_body_is_busy) */
    breaker_stream stream;
    bool model_loading;    /* load_duration > 0: the backend loaded the model during this call */
    bool cancelled;        /* cancelled by our own side (client disconnect, client deadline) */
} breaker_call;

/* A classifier: pure, thread-safe, maps a call to its class. */
typedef breaker_outcome (*breaker_classify_fn)(const breaker_call *call, void *arg);

/* The default classifier: cancelled -> NEUTRAL; any transport error ->
 * FAILURE; 503 with busy, or 429 -> OVERLOAD; other 5xx and 408 -> FAILURE; other 4xx ->
 * NEUTRAL; 2xx -> FAILURE when the stream had an error line or no done:true, else SUCCESS;
 * anything else (no status, 1xx, 3xx) -> FAILURE. arg is unused. */
breaker_outcome breaker_classify_default(const breaker_call *call, void *arg);

/* True when body (len bytes, not necessarily NUL-terminated) holds Ollama's queue-full text
 * ("server busy" or "maximum pending requests exceeded", case-insensitive). Only the first
 * 4096 bytes are looked at. */
bool breaker_body_is_busy(const char *body, size_t len);

/* Configuration. Every field is validated; nothing is silently replaced by a default. Times
 * are milliseconds on the injected clock. */
typedef struct {
    unsigned failure_threshold; /* consecutive failures that open; >= 1; default 5 */
    bool rate_enabled;          /* the failure-rate rule; default true */
    double failure_rate;        /* opens when failures/calls >= this; (0, 1]; default 0.5 */
    unsigned min_calls;         /* rate rules apply once the window holds this many; >= 1; 20 */
    double window_ms;           /* sliding window length; > 0; default 60000 */
    unsigned window_buckets;    /* buckets in the window; 1..1000; default 10 */
    double open_ms;             /* first open period; > 0; default 30000 */
    double open_max_ms;         /* cap of the open period; >= open_ms; default 300000 */
    double open_growth;         /* factor per consecutive re-open; 1..100; default 2 */
    double open_jitter;         /* +- fraction on re-opens; [0, 1); default 0.2 */
    double quiet_ms;            /* CLOSED this long resets the growth; > 0; default 300000 */
    unsigned half_open_permits; /* trial calls in HALF_OPEN, and successes to close; 1..1024; 1 */
    double trial_timeout_ms;    /* an unreported trial this old counts as failed; > 0; 120000 */
    bool slow_enabled;          /* the slow-call-rate rule; default false */
    double slow_call_ms;        /* a call at least this long is slow; > 0; default 10000 */
    double slow_call_rate;      /* opens when slow/calls >= this; (0, 1]; default 0.8 */
    breaker_classify_fn classify; /* NULL = breaker_classify_default */
    void *classify_arg;
} breaker_config;

/* Fills c with the defaults listed above. */
void breaker_config_default(breaker_config *c);

/* RAGD_OK, or RAGD_EINVAL with a message naming the field and the rule into err (which may be
 * NULL when errlen is 0). */
ragd_err breaker_config_validate(const breaker_config *c, char *err, size_t errlen);

typedef struct breaker breaker;

/* Admission ticket, storage owned by the caller (a member of the request). Fill it with
 * breaker_acquire; hand it back once to breaker_report/breaker_release. */
typedef struct {
    uint64_t generation; /* the breaker's generation at admission */
    double started_ms;   /* injected-clock time of admission (for slow-call timing) */
    int trial_slot;      /* >= 0 for a HALF_OPEN trial, else -1 */
    bool held;           /* true until reported */
} breaker_permit;

/* Makes a breaker named "<backend> <op>/<model>" ("<backend> <op>" when model is NULL or
 * empty). backend (1..1024 bytes) and op (1..64) are required; model at most 256 bytes; all are
 * copied. cfg is validated and copied. RAGD_OK and *out (free with breaker_free), RAGD_EINVAL
 * with a message, or RAGD_ENOMEM. */
ragd_err breaker_new(const char *backend, const char *op, const char *model, const breaker_config *cfg,
                     upstream_clock clock, upstream_rand rnd, breaker **out, char *err, size_t errlen);

/* Frees b (NULL is fine). No other thread may be using it. */
void breaker_free(breaker *b);

/* The breaker's immutable strings, owned by the breaker, valid until it is freed. model is ""
 * when none was given. */
const char *breaker_name(const breaker *b);
const char *breaker_backend(const breaker *b);
const char *breaker_op(const breaker *b);
const char *breaker_model(const breaker *b);

/* Asks to make a call. True: *permit is filled and must be reported exactly once. False: the
 * call is not permitted (counted as not-permitted) and *remaining_ms, when not NULL, gets the
 * time until the breaker will admit again: the rest of the open period when OPEN, 0 when
 * HALF_OPEN with every trial permit taken (unknown: trials are in flight), -1 when FORCED_OPEN
 * (until an admin resets). Atomic: with N trial permits, exactly N concurrent callers win. */
bool breaker_acquire(breaker *b, breaker_permit *permit, double *remaining_ms);

/* Reports the outcome of the call behind permit. model_loading (load_duration > 0) excludes the
 * call from slow-call counting. The call is slow when slow_enabled, it took at least
 * slow_call_ms since acquire, it is SUCCESS or FAILURE, and the model was not loading.
 * A stale generation changes no state (the outcome counters still count the call, and `stale`
 * counts it too); a permit already reported is ignored except for `stale`. An outcome out of
 * range is taken as FAILURE. Marks the permit as reported. */
void breaker_release(breaker *b, breaker_permit *permit, breaker_outcome outcome, bool model_loading);

/* Classifies call with the breaker's classifier, then breaker_release()s permit with that
 * outcome and call->model_loading. Returns the outcome (for retry decisions and metrics). */
breaker_outcome breaker_report(breaker *b, breaker_permit *permit, const breaker_call *call);

/* Admin overrides. force_open: FORCED_OPEN, denies until reset. disable: DISABLED, admits
 * everything and never trips until reset. reset: CLOSED with empty window, zero consecutive
 * failures and the open-period growth reset. Each starts a new generation (permits taken
 * before are stale) and counts a transition, even when the state does not change. */
void breaker_force_open(breaker *b);
void breaker_disable(breaker *b);
void breaker_reset(breaker *b);

/* A consistent picture of one breaker, for /health and /metrics. Counters only grow. */
typedef struct {
    breaker_state state;
    uint64_t generation;
    unsigned consecutive_failures; /* /health "failure_count" */
    bool has_last_failure;
    double last_failure_ms;     /* injected-clock time of the last FAILURE report */
    double last_failure_age_ms; /* now - last_failure_ms */
    double remaining_open_ms;   /* OPEN: rest of the open period; FORCED_OPEN: -1; else 0 */
    double open_period_ms;      /* the current (or last) open period */
    unsigned open_streak;       /* consecutive opens without a quiet period */
    unsigned trials_in_flight;  /* HALF_OPEN trials admitted and not reported */
    unsigned trial_successes;   /* HALF_OPEN successes so far */
    unsigned window_calls;      /* SUCCESS+FAILURE calls in the sliding window */
    unsigned window_failures;
    unsigned window_slow;
    uint64_t transitions[BREAKER_NSTATES]; /* transitions into each state */
    uint64_t not_permitted;
    uint64_t successes, failures, neutral, overload, slow;
    uint64_t stale; /* reports ignored: stale generation or permit already reported */
} breaker_snapshot;

/* Fills *out (after evaluating time-driven transitions). */
void breaker_snapshot_get(breaker *b, breaker_snapshot *out);

/* "CLOSED", "OPEN", "HALF_OPEN", "FORCED_OPEN", "DISABLED"; "UNKNOWN" otherwise. Static. */
const char *breaker_state_name(breaker_state s);

/* "success", "failure", "overload", "neutral"; "unknown" otherwise. Static. */
const char *breaker_outcome_name(breaker_outcome o);

/* ---- registry: every breaker of the process, read by /health and /metrics ---- */

typedef struct breaker_registry breaker_registry;

#define BREAKER_REGISTRY_MAX 4096

/* A registry whose breakers share clock and rnd. NULL on allocation failure. Free with
 * breaker_registry_free, which frees every breaker in it (NULL is fine; no other thread may be
 * using it or its breakers). */
breaker_registry *breaker_registry_new(upstream_clock clock, upstream_rand rnd);
void breaker_registry_free(breaker_registry *r);

/* Creates and registers a breaker (arguments as breaker_new). RAGD_OK and *out; RAGD_ECONFLICT
 * when the name is taken, with *out set to the existing breaker (so a racing creator can use
 * it); RAGD_ETOOBIG past BREAKER_REGISTRY_MAX; RAGD_EINVAL with a message; RAGD_ENOMEM.
 * The registry owns the breaker; breakers are never removed, so pointers stay valid until
 * breaker_registry_free. */
ragd_err breaker_registry_add(breaker_registry *r, const char *backend, const char *op, const char *model,
                              const breaker_config *cfg, breaker **out, char *err, size_t errlen);

/* Removes b from the registry and frees it (a no-op when b is not in it). Only for an owner
 * that knows no one holds b or a permit of it (upstream/registry.c evicts idle models); the
 * others (iteration by index) see the breakers after it move down by one. */
void breaker_registry_remove(breaker_registry *r, breaker *b);

/* The breaker with that name, or NULL. */
breaker *breaker_registry_find(breaker_registry *r, const char *name);

/* Iteration in creation order: count, then at(i) for i < count (NULL past the end). Safe while
 * other threads add: a breaker added meanwhile is simply not seen by this pass. */
size_t breaker_registry_count(breaker_registry *r);
breaker *breaker_registry_at(breaker_registry *r, size_t i);

#endif
