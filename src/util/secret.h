#ifndef RAGD_UTIL_SECRET_H
#define RAGD_UTIL_SECRET_H

#include <stddef.h>

/* Removes a secret from text that came from outside (a backend's error message, which some
 * servers and proxies write with the API key they were sent): every occurrence of the secret
 * becomes "***", and so does a tail of the text that is the secret's first 6 or more bytes
 * (the message was cut to fit while quoting it). In place; text stays NUL-terminated. A
 * secret shorter than 6 bytes, or NULL, changes nothing (too short to tell from words). */
void secret_scrub(char *text, const char *secret);

#endif
