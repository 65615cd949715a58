#ifndef RAGD_UTIL_JSONMEM_H
#define RAGD_UTIL_JSONMEM_H

/* Failed jansson allocations, counted per thread.
 *
 * jansson 2.14 does not always report that it ran out of memory: its lexer drops a byte
 * of a token when its buffer cannot grow (lex_save ignores the failure), so json_loads
 * can succeed with altered text, and some paths return NULL without an error message.
 * A caller that must not trust such a result compares jsonmem_failures() before and
 * after the call (http_json_object does; found by the allocation torture pass). */

/* Routes jansson's allocations through the counter, in front of the allocator installed
 * before (jansson's default, or a test's). Call once, before any thread starts and before
 * any jansson call; without it the count stays 0. */
void jsonmem_init(void);

/* How many jansson allocations have failed on the calling thread so far. */
unsigned long jsonmem_failures(void);

#endif
