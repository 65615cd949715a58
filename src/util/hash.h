#ifndef RAGD_UTIL_HASH_H
#define RAGD_UTIL_HASH_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_HEX_LEN 64

/* Writes the lower-case hex SHA-256 of p[0..n) and a NUL into out (65 bytes). */
void hash_sha256_hex(const void *p, size_t n, char out[SHA256_HEX_LEN + 1]);

/* 64-bit FNV-1a with a seed; stable across versions (embeddings depend on it). */
uint64_t hash_fnv1a64(const void *p, size_t n, uint64_t seed);

#define HASH_FNV_OFFSET 0xcbf29ce484222325ULL
#define HASH_FNV_PRIME 0x100000001b3ULL

/* hash_fnv1a64 continued over p[0..n) from the state h: hash_fnv1a64(a + b, seed) is
 * hash_fnv1a64_more(hash_fnv1a64(a, seed), b, len(b)). Inline, as the next one. */
static inline uint64_t hash_fnv1a64_more(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= HASH_FNV_PRIME;
    }
    return h;
}

/* hash_fnv1a64, inline: for callers that hash every word of a text (a call per ~5-byte
 * word cost as much as the hashing). Same value. */
static inline uint64_t hash_fnv1a64_inline(const void *p, size_t n, uint64_t seed)
{
    return hash_fnv1a64_more(HASH_FNV_OFFSET ^ seed, p, n);
}

/* Fills buf with n cryptographically random bytes; returns 0 on success. */
int hash_random_bytes(void *buf, size_t n);

#endif
