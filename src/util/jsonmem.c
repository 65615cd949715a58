/* A counting front for jansson's allocator (see jsonmem.h). */
#include "util/jsonmem.h"

#include <jansson.h>
#include <stdbool.h>

static json_malloc_t jsonmem_next_malloc;
static _Thread_local unsigned long jsonmem_failed;

static void *jsonmem_malloc(size_t n)
{
    void *p = jsonmem_next_malloc(n);
    if (!p)
        jsonmem_failed++;
    return p;
}

void jsonmem_init(void)
{
    static bool done;
    if (done)
        return;
    done = true;
    json_free_t next_free = NULL;
    json_get_alloc_funcs(&jsonmem_next_malloc, &next_free);
    json_set_alloc_funcs(jsonmem_malloc, next_free);
}

unsigned long jsonmem_failures(void) { return jsonmem_failed; }
