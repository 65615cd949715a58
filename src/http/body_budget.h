#ifndef RAGD_HTTP_BODY_BUDGET_H
#define RAGD_HTTP_BODY_BUDGET_H

/* The server-wide budget of request-body bytes held in memory at once
 * (RAGD_MAX_BODY_BYTES_TOTAL, docs/internals/http.md). Each request's body holds a charge:
 * the room of its buffer, raised before the buffer grows and given back in full when the
 * body is freed. Changed on the loop thread only; `used` may be read from any thread. */
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
    atomic_size_t used; /* bytes charged to bodies now */
} body_budget;

/* Bytes left under limit: 0 when what is in use reaches it (or passes a lowered limit). */
size_t body_budget_left(const body_budget *b, size_t limit);
/* Raises a body's charge (*charged) to want bytes. True when it fits under limit (or want
 * is not above the charge already held); false, with nothing changed, when it does not. */
bool body_budget_cover(body_budget *b, size_t limit, size_t *charged, size_t want);
/* Gives a body's whole charge back and sets it to 0. */
void body_budget_release(body_budget *b, size_t *charged);
/* Bytes charged to bodies now. */
size_t body_budget_used(const body_budget *b);

#endif
