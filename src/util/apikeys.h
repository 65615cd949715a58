#ifndef RAGD_UTIL_APIKEYS_H
#define RAGD_UTIL_APIKEYS_H

/* API keys (RAGD_API_KEYS, RAGD_API_KEYS_FILE; docs/api.md "Authentication"). Each key is
 * kept only as its SHA-256 with its access; a presented credential is hashed and compared
 * with every key in constant time (CRYPTO_memcmp over equal-length digests, no early exit),
 * so neither the keys' contents nor their lengths leak through timing. */
#include <stdbool.h>
#include <stddef.h>

#include "util/hash.h"

#define APIKEYS_MAX 256
#define APIKEY_MIN_LEN 16
#define APIKEY_MAX_LEN 256

typedef enum { APIKEY_NONE = 0, APIKEY_READ, APIKEY_WRITE } apikey_access;

typedef struct {
    char digest[SHA256_HEX_LEN + 1];
    apikey_access access;
} apikey;

typedef struct {
    apikey keys[APIKEYS_MAX];
    size_t n;
} apikeys;

/* Adds the keys of `list`: entries separated by `sep` (',' for the variable, '\n' for the
 * file), each KEY (read and write), KEY:read or KEY:write; surrounding blanks are dropped,
 * empty entries and, in a file, lines starting with '#' are skipped. A key is
 * APIKEY_MIN_LEN..APIKEY_MAX_LEN printable ASCII characters without blanks, ',' or ':'.
 * Returns 0, or -1 with a message naming `name` (never the key) in err. */
int apikeys_add(apikeys *ks, const char *list, char sep, const char *name, char *err, size_t errlen);

/* The access `credential` (len bytes) grants: APIKEY_NONE when it matches no key. */
apikey_access apikeys_check(const apikeys *ks, const char *credential, size_t len);

#endif
