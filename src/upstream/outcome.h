#ifndef RAGD_UPSTREAM_OUTCOME_H
#define RAGD_UPSTREAM_OUTCOME_H

/* The class of one finished upstream call, shared by breaker, retry and bulkhead
 * (breaker_classify_default in breaker.h, and docs/internals/breaker.md "Classification",
 * say which transport error / status maps to which). */
typedef enum {
    UPSTREAM_SUCCESS,  /* the backend answered usefully */
    UPSTREAM_FAILURE,  /* connect error, timeout, 5xx, broken stream: breaker failure, retried */
    UPSTREAM_OVERLOAD, /* 503 "server busy": backpressure, not a failure; retried elsewhere */
    UPSTREAM_NEUTRAL,  /* 4xx or cancelled by us: neither failure nor success, never retried */
    UPSTREAM_NOUTCOMES /* the count, for arrays of counters */
} upstream_outcome;

#endif
