/* Helpers shared by the stream-parser fuzz targets (header only: each target is one
 * translation unit linked with libragd-fuzz.a). */
#ifndef RAGD_FUZZ_COMMON_H
#define RAGD_FUZZ_COMMON_H

#include <stddef.h>
#include <stdint.h>

/* The length of the next piece when an input is fed in pieces: 1..max, drawn from a
 * xorshift state seeded by the input, so a crash replays exactly. */
static inline size_t fz_piece(uint32_t *state, size_t max)
{
    uint32_t x = *state ? *state : 0x9E3779B9u;
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    *state = x;
    return max <= 1 ? 1 : 1 + (size_t)(x % max);
}

/* FNV-1a of the input: the seed of the piece lengths. */
static inline uint32_t fz_seed(const uint8_t *data, size_t size)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < size; i++)
        h = (h ^ data[i]) * 16777619u;
    return h;
}

#endif
