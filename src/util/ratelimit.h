#ifndef RAGD_UTIL_RATELIMIT_H
#define RAGD_UTIL_RATELIMIT_H

/* Token buckets per client (RATE_LIMIT_QUERY, RAGD_RATE_LIMIT_INGEST; docs/api.md "Rate
 * limits"). A client may spend `count` requests per `period_s`, in bursts of up to `count`;
 * its bucket refills continuously. Clients are kept by the 64-bit hash of their id in a
 * fixed table: a bucket idle long enough to be full again is the same as no bucket, so such
 * buckets are dropped when room is needed (a sweep at most once a second); a newcomer that
 * still finds no room shares one overflow bucket with every other such newcomer, so memory
 * stays bounded whatever the number of clients. One thread (the loop). */
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    unsigned count;  /* requests per period; 0 = no limit */
    double period_s; /* 1, 60 or 3600 */
} ratelimit_spec;

/* "N/second", "N/minute", "N/hour" (also "N/s", "N/m", "N/h", "N/sec", "N/min"), N from 1
 * to 1000000, or "0" (no limit). Returns 0, or -1. */
int ratelimit_parse(const char *v, ratelimit_spec *out);

/* "second", "minute" or "hour". */
const char *ratelimit_unit(const ratelimit_spec *spec);

typedef struct ratelimit ratelimit;

/* A limiter for up to max_clients buckets (at least 16); NULL when out of memory. */
ratelimit *ratelimit_new(const ratelimit_spec *spec, size_t max_clients);
void ratelimit_free(ratelimit *rl); /* NULL ok */

typedef struct {
    bool allowed;
    unsigned limit;     /* X-RateLimit-Limit: the spec's count */
    unsigned remaining; /* X-RateLimit-Remaining: whole requests left now */
    unsigned reset_s;   /* X-RateLimit-Reset: seconds until the bucket is full again */
    unsigned retry_s;   /* Retry-After when refused: seconds until one request is allowed */
} ratelimit_verdict;

/* Takes one request of client (len bytes) at now_ms. */
void ratelimit_take(ratelimit *rl, const char *client, size_t len, double now_ms, ratelimit_verdict *out);

/* Buckets held (for tests and /metrics). */
size_t ratelimit_clients(const ratelimit *rl);

#endif
