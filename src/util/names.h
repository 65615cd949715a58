#ifndef RAGD_UTIL_NAMES_H
#define RAGD_UTIL_NAMES_H

#include <stdbool.h>

/* Collection names: 1-64 of [A-Za-z0-9_.-], not starting with '.'. */
bool names_db_valid(const char *s);
/* Metadata keys usable in filters: 1-64 of [A-Za-z0-9_.-]. */
bool names_key_valid(const char *s);

#endif
