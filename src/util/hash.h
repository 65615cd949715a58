#ifndef RAGD_UTIL_HASH_H
#define RAGD_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_HEX_LEN 64

/* Writes the lower-case hex SHA-256 of p[0..n) and a NUL into out (65 bytes). */
void hash_sha256_hex(const void *p, size_t n, char out[SHA256_HEX_LEN + 1]);

/* 64-bit FNV-1a with a seed; stable across versions (embeddings depend on it). */
uint64_t hash_fnv1a64(const void *p, size_t n, uint64_t seed);

/* hash_fnv1a64, inline: for callers that hash every word of a text (a call per ~5-byte
 * word cost as much as the hashing). Same value. */
static inline uint64_t hash_fnv1a64_inline(const void *p, size_t n, uint64_t seed)
{
    const unsigned char *b = p;
    uint64_t h = 0xcbf29ce484222325ULL ^ seed;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

/* Fills buf with n cryptographically random bytes; returns 0 on success. */
int hash_random_bytes(void *buf, size_t n);

#endif
