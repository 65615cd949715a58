#ifndef RAGD_UTIL_CLOCK_H
#define RAGD_UTIL_CLOCK_H

#include <stddef.h>

/* Monotonic milliseconds (CLOCK_MONOTONIC), for durations and deadlines. */
double clock_now_ms(void);

/* Writes the current UTC time as RFC 3339 ("2026-01-01T00:00:00Z") into out. */
void clock_utc_rfc3339(char *out, size_t outlen);

#endif
