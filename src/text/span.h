#ifndef RAGD_TEXT_SPAN_H
#define RAGD_TEXT_SPAN_H

#include <stddef.h>

/* A half-open byte range [start, end) into some UTF-8 text; both ends on code point
 * boundaries. */
typedef struct {
    size_t start;
    size_t end;
} text_span;

#endif
