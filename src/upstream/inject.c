#include "upstream/inject.h"

#include "util/clock.h"
#include "util/hash.h"

static double inject_system_now(void *arg)
{
    (void)arg;
    return clock_now_ms();
}

upstream_clock upstream_clock_system(void) { return (upstream_clock){.now_ms = inject_system_now, .arg = 0}; }

/* xorshift64* per thread, seeded once per thread from the OS random source. */
static uint64_t inject_system_next(void *arg)
{
    (void)arg;
    static _Thread_local uint64_t state;
    if (state == 0 && hash_random_bytes(&state, sizeof state) != 0)
        state = 0;
    if (state == 0)
        state = 0x9e3779b97f4a7c15ULL;
    state ^= state >> 12;
    state ^= state << 25;
    state ^= state >> 27;
    return state * 0x2545f4914f6cdd1dULL;
}

upstream_rand upstream_rand_system(void) { return (upstream_rand){.next = inject_system_next, .arg = 0}; }

double upstream_rand_unit(const upstream_rand *r) { return (double)(r->next(r->arg) >> 11) / 9007199254740992.0; }
