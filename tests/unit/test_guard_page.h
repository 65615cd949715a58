/* A buffer that ends where readable memory ends: the next page is PROT_NONE, so a read
 * past the end crashes at once instead of reading whatever the heap holds. For tests
 * that a parser reads only text[0..len). */
#ifndef RAGD_TEST_GUARD_PAGE_H
#define RAGD_TEST_GUARD_PAGE_H

#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    char *map;
    size_t map_len;
} guard_page;

/* text[0..len) followed by `fill` bytes of `fill_byte`, the last of them just before the
 * guard page. Returns the copy of text (NULL on failure); free with guard_page_free. */
static inline char *guard_page_copy(guard_page *g, const char *text, size_t len, char fill_byte, size_t fill)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    size_t data = len + fill;
    size_t pages = (data + page - 1) / page + 1;
    g->map_len = pages * page;
    g->map = mmap(NULL, g->map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g->map == MAP_FAILED)
        return NULL;
    char *guard = g->map + (pages - 1) * page;
    if (mprotect(guard, page, PROT_NONE) != 0)
        return NULL;
    char *start = guard - data;
    memcpy(start, text, len);
    memset(start + len, fill_byte, fill);
    return start;
}

static inline void guard_page_free(guard_page *g) { munmap(g->map, g->map_len); }

#endif
