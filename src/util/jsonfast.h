#ifndef RAGD_UTIL_JSONFAST_H
#define RAGD_UTIL_JSONFAST_H

/* A fast path in front of jansson's json_loadb for big, plain JSON request bodies (an
 * /api/ingest batch is megabytes of document text in a few strings).
 *
 * jsonfast_loadb either returns the tree json_loadb(p, n, JSON_DECODE_ANY, ...) would
 * return (same values, same key order, the last of duplicate keys kept), or NULL when it
 * is not sure: anything it does not handle itself (a fraction or exponent, an integer of
 * more than 18 digits, "-0", a \u escape of NUL or of a surrogate, nesting deeper than
 * max_depth) and any input jansson would reject. The caller then parses with jansson,
 * which gives the same result and the usual error message: this never decides an error.
 * The tree's allocations go through jansson's allocator (counted by jsonmem); the scratch
 * buffer for strings with escapes (at most the input's size) and a long escaped key's copy
 * come from malloc. Any out-of-memory failure ends in NULL. */
#include <jansson.h>
#include <stddef.h>

json_t *jsonfast_loadb(const char *p, size_t n, int max_depth);

#endif
