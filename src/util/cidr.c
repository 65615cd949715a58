#include "util/cidr.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

static bool cidr_blank(char c) { return c == ' ' || c == '\t'; }

bool cidr_addr_parse(const char *text, size_t len, cidr_addr *out)
{
    while (len > 0 && cidr_blank(*text)) {
        text++;
        len--;
    }
    while (len > 0 && cidr_blank(text[len - 1]))
        len--;
    char tmp[64];
    if (len == 0 || len >= sizeof tmp)
        return false;
    memcpy(tmp, text, len);
    tmp[len] = '\0';
    memset(out, 0, sizeof *out);
    struct in_addr v4;
    if (inet_pton(AF_INET, tmp, &v4) == 1) {
        out->bytes[10] = 0xff;
        out->bytes[11] = 0xff;
        memcpy(out->bytes + 12, &v4, 4);
        return true;
    }
    return inet_pton(AF_INET6, tmp, out->bytes) == 1;
}

static bool cidr_is_v4(const cidr_addr *a)
{
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    return memcmp(a->bytes, mapped, 12) == 0;
}

/* One entry "ADDR" or "ADDR/N"; false when malformed. */
static bool cidr_block_parse(const char *p, size_t n, cidr_block *out)
{
    const char *slash = memchr(p, '/', n);
    size_t alen = slash ? (size_t)(slash - p) : n;
    if (!cidr_addr_parse(p, alen, &out->net))
        return false;
    unsigned max = cidr_is_v4(&out->net) ? 32 : 128;
    unsigned prefix = max;
    if (slash) {
        const char *d = slash + 1;
        size_t dn = n - alen - 1;
        while (dn > 0 && cidr_blank(d[dn - 1]))
            dn--;
        if (dn == 0 || dn > 3)
            return false;
        prefix = 0;
        for (size_t i = 0; i < dn; i++) {
            if (d[i] < '0' || d[i] > '9')
                return false;
            prefix = prefix * 10 + (unsigned)(d[i] - '0');
        }
        if (prefix > max)
            return false;
    }
    out->prefix = max == 32 ? 96 + prefix : prefix;
    return true;
}

int cidr_list_parse(cidr_list *list, const char *text, char *err, size_t errlen)
{
    list->n = 0;
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        bool blank = true;
        for (size_t i = 0; i < n; i++)
            blank = blank && cidr_blank(p[i]);
        if (!blank) {
            if (list->n == CIDR_MAX) {
                snprintf(err, errlen, "RAGD_TRUSTED_PROXIES: more than %d entries", CIDR_MAX);
                return -1;
            }
            if (!cidr_block_parse(p, n, &list->blocks[list->n])) {
                snprintf(err, errlen, "RAGD_TRUSTED_PROXIES: '%.*s' is not an IP address or CIDR block", (int)(n > 64 ? 64 : n), p);
                return -1;
            }
            list->n++;
        }
        p += n;
        if (*p == ',')
            p++;
    }
    return 0;
}

static bool cidr_block_contains(const cidr_block *b, const cidr_addr *a)
{
    unsigned full = b->prefix / 8, rest = b->prefix % 8;
    if (memcmp(b->net.bytes, a->bytes, full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xff << (8 - rest));
    return (b->net.bytes[full] & mask) == (a->bytes[full] & mask);
}

bool cidr_list_contains(const cidr_list *list, const cidr_addr *a)
{
    for (size_t i = 0; i < list->n; i++)
        if (cidr_block_contains(&list->blocks[i], a))
            return true;
    return false;
}

void cidr_addr_format(const cidr_addr *a, char *out, size_t outlen)
{
    const char *r = cidr_is_v4(a) ? inet_ntop(AF_INET, a->bytes + 12, out, (socklen_t)outlen)
                                  : inet_ntop(AF_INET6, a->bytes, out, (socklen_t)outlen);
    if (!r && outlen > 0)
        snprintf(out, outlen, "?");
}

cidr_addr cidr_client_of(const cidr_list *trusted, const cidr_addr *peer, const char *xff, size_t xff_len)
{
    cidr_addr client = *peer;
    if (!xff || trusted->n == 0 || !cidr_list_contains(trusted, peer))
        return client;
    size_t end = xff_len;
    while (end > 0) {
        size_t start = end;
        while (start > 0 && xff[start - 1] != ',')
            start--;
        cidr_addr hop;
        bool blank = true;
        for (size_t i = start; i < end; i++)
            blank = blank && cidr_blank(xff[i]);
        if (!blank) {
            if (!cidr_addr_parse(xff + start, end - start, &hop))
                return client; /* not an address: the trusted hop to its right named it */
            client = hop;
            if (!cidr_list_contains(trusted, &hop))
                return client;
        }
        end = start > 0 ? start - 1 : 0;
    }
    return client;
}
