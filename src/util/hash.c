#include "util/hash.h"

/* The low-level SHA256_* functions are deprecated in OpenSSL 3 in favour of EVP, but EVP
 * allocates (a context, a fetched implementation) and can fail; when it did, the digest
 * was left uninitialised and an ingest stored a garbage content hash, or a garbage id for
 * a document without one (found by the allocation torture pass, docs/testing.md). These
 * work on a context on the stack and cannot fail. */
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/rand.h>
#include <openssl/sha.h>

void hash_sha256_hex(const void *p, size_t n, char out[SHA256_HEX_LEN + 1])
{
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256_CTX ctx;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, p, n);
    SHA256_Final(md, &ctx);
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32; i++) {
        out[2 * i] = hex[md[i] >> 4];
        out[2 * i + 1] = hex[md[i] & 15];
    }
    out[SHA256_HEX_LEN] = '\0';
}

uint64_t hash_fnv1a64(const void *p, size_t n, uint64_t seed) { return hash_fnv1a64_inline(p, n, seed); }

int hash_random_bytes(void *buf, size_t n) { return RAND_bytes(buf, (int)n) == 1 ? 0 : -1; }
