#ifndef RAGD_TESTS_TEST_RNG_H
#define RAGD_TESTS_TEST_RNG_H

/* A seeded PRNG (xorshift64*) for the randomized unit tests, so every run sees the same
 * data. Header-only (each test binary is one file); static inline, so a test that needs
 * only some of it compiles without unused-function warnings. */
#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint64_t s;
} rng;

static inline uint64_t rng_next(rng *r)
{
    r->s ^= r->s >> 12;
    r->s ^= r->s << 25;
    r->s ^= r->s >> 27;
    return r->s * 0x2545f4914f6cdd1dULL;
}

static inline size_t rng_below(rng *r, size_t n) { return (size_t)(rng_next(r) % n); }

static inline float rng_float(rng *r) /* [-1, 1) */
{
    return (float)((double)(rng_next(r) >> 11) / (double)(1ULL << 53)) * 2.0f - 1.0f;
}

static inline void rng_vec(rng *r, float *v, size_t dim)
{
    for (size_t i = 0; i < dim; i++)
        v[i] = rng_float(r);
}

#endif
