#ifndef RAGD_UPSTREAM_INJECT_H
#define RAGD_UPSTREAM_INJECT_H

/* Injected time and randomness for the resilience modules (breaker, retry, bulkhead), so
 * their tests run on a fake clock and a seeded random source and never sleep.
 * Both functions must be safe to call from any thread. */
#include <stdint.h>

typedef struct {
    double (*now_ms)(void *arg); /* monotonic milliseconds */
    void *arg;
} upstream_clock;

typedef struct {
    uint64_t (*next)(void *arg); /* uniformly distributed 64-bit values */
    void *arg;
} upstream_rand;

/* The real ones: CLOCK_MONOTONIC, and a per-thread xorshift seeded from the OS. */
upstream_clock upstream_clock_system(void);
upstream_rand upstream_rand_system(void);

/* A uniform double in [0, 1) from r. */
double upstream_rand_unit(const upstream_rand *r);

#endif
