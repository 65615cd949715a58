#include "util/apikeys.h"

#include <openssl/crypto.h>
#include <stdio.h>
#include <string.h>

static bool apikey_char_ok(char ch) { return ch > ' ' && ch < 0x7f && ch != ',' && ch != ':'; }

/* One entry, s[0..n) with blanks trimmed: KEY, KEY:read or KEY:write. */
static int apikeys_add_one(apikeys *ks, const char *s, size_t n, const char *name, size_t at, char *err,
                           size_t errlen)
{
    const char *colon = memchr(s, ':', n);
    size_t klen = colon ? (size_t)(colon - s) : n;
    apikey_access access = APIKEY_WRITE;
    if (colon) {
        size_t alen = n - klen - 1;
        if (alen == 4 && memcmp(colon + 1, "read", 4) == 0)
            access = APIKEY_READ;
        else if (!(alen == 5 && memcmp(colon + 1, "write", 5) == 0)) {
            snprintf(err, errlen, "%s: entry %zu: the access after ':' must be 'read' or 'write'", name, at);
            return -1;
        }
    }
    bool ok = klen >= APIKEY_MIN_LEN && klen <= APIKEY_MAX_LEN;
    for (size_t i = 0; ok && i < klen; i++)
        ok = apikey_char_ok(s[i]);
    if (!ok) {
        snprintf(err, errlen, "%s: entry %zu: a key must be %d to %d printable characters without blanks, ',' or ':'",
                 name, at, APIKEY_MIN_LEN, APIKEY_MAX_LEN);
        return -1;
    }
    if (ks->n == APIKEYS_MAX) {
        snprintf(err, errlen, "%s: more than %d keys", name, APIKEYS_MAX);
        return -1;
    }
    apikey *k = &ks->keys[ks->n++];
    hash_sha256_hex(s, klen, k->digest);
    k->access = access;
    return 0;
}

int apikeys_add(apikeys *ks, const char *list, char sep, const char *name, char *err, size_t errlen)
{
    size_t at = 0;
    for (const char *p = list; *p;) {
        const char *end = strchr(p, sep);
        size_t n = end ? (size_t)(end - p) : strlen(p);
        const char *s = p;
        p += n + (end != NULL);
        while (n > 0 && (*s == ' ' || *s == '\t' || *s == '\r'))
            s++, n--;
        while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r'))
            n--;
        if (n == 0 || (sep == '\n' && s[0] == '#'))
            continue;
        if (apikeys_add_one(ks, s, n, name, ++at, err, errlen) != 0)
            return -1;
    }
    return 0;
}

apikey_access apikeys_check(const apikeys *ks, const char *credential, size_t len)
{
    char digest[SHA256_HEX_LEN + 1];
    hash_sha256_hex(credential, len, digest);
    apikey_access best = APIKEY_NONE;
    for (size_t i = 0; i < ks->n; i++) {
        bool match = CRYPTO_memcmp(digest, ks->keys[i].digest, SHA256_HEX_LEN) == 0;
        /* no branch on the outcome inside the loop's comparison: every key is compared */
        apikey_access a = match ? ks->keys[i].access : APIKEY_NONE;
        best = a > best ? a : best;
    }
    return best;
}
