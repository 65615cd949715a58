#ifndef RAGD_UTIL_URL_H
#define RAGD_UTIL_URL_H

#include <stddef.h>

/* The form of a URL that may be shown (logs, /health, /metrics, messages): the user info
 * (`user:password@`) replaced by `***@`, and every query-string value by `***`, so that
 * credentials in a backend URL never leave the process. out gets at most cap bytes, NUL
 * included (cut if need be). */
void url_redact(const char *url, char *out, size_t cap);

#endif
