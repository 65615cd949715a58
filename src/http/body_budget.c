#include "http/body_budget.h"

size_t body_budget_used(const body_budget *b) { return atomic_load_explicit(&b->used, memory_order_relaxed); }

size_t body_budget_left(const body_budget *b, size_t limit)
{
    size_t used = body_budget_used(b);
    return used < limit ? limit - used : 0;
}

bool body_budget_cover(body_budget *b, size_t limit, size_t *charged, size_t want)
{
    if (want <= *charged)
        return true;
    size_t more = want - *charged;
    if (more > body_budget_left(b, limit))
        return false;
    atomic_fetch_add_explicit(&b->used, more, memory_order_relaxed);
    *charged = want;
    return true;
}

void body_budget_release(body_budget *b, size_t *charged)
{
    if (*charged == 0)
        return;
    atomic_fetch_sub_explicit(&b->used, *charged, memory_order_relaxed);
    *charged = 0;
}
