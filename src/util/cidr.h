#ifndef RAGD_UTIL_CIDR_H
#define RAGD_UTIL_CIDR_H

/* IP addresses and CIDR blocks (v4 and v6) for RAGD_TRUSTED_PROXIES, and the
 * X-Forwarded-For walk that names the client behind trusted proxies. No allocation. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CIDR_MAX 32

typedef struct {
    uint8_t bytes[16]; /* IPv4 as the v4-mapped IPv6 address ::ffff:a.b.c.d */
} cidr_addr;

typedef struct {
    cidr_addr net;
    unsigned prefix; /* 0..128 over the 16 bytes (a v4 /n is 96 + n) */
} cidr_block;

typedef struct {
    cidr_block blocks[CIDR_MAX];
    size_t n;
} cidr_list;

/* Parses text[0..len) as an IPv4 or IPv6 address (surrounding blanks allowed). */
bool cidr_addr_parse(const char *text, size_t len, cidr_addr *out);
/* Parses a comma-separated list of addresses and CIDR blocks ("10.0.0.0/8, ::1, fd00::/8")
 * into *list (replacing it). -1 and a message naming the bad entry on error; "" gives an
 * empty list. */
int cidr_list_parse(cidr_list *list, const char *text, char *err, size_t errlen);
/* True when a lies in one of the list's blocks. */
bool cidr_list_contains(const cidr_list *list, const cidr_addr *a);
/* Writes a in its usual text form (dotted quad for v4). out has at least 46 bytes. */
void cidr_addr_format(const cidr_addr *a, char *out, size_t outlen);

/* The client of a request that came from `peer` with X-Forwarded-For value xff (the headers'
 * values joined with commas, or NULL): when the peer is a trusted proxy, the right-most XFF
 * address that is not itself trusted; if every listed address is trusted, the left-most; an
 * entry that is not an address stops the walk at the trusted hop to its right. When the peer
 * is not trusted (or the list is empty), the peer. */
cidr_addr cidr_client_of(const cidr_list *trusted, const cidr_addr *peer, const char *xff, size_t xff_len);

#endif
