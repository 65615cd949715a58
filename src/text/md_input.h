#ifndef RAGD_TEXT_MD_INPUT_H
#define RAGD_TEXT_MD_INPUT_H

/* The text handed to md4c (chunker.c, doccontext.c). md4c 0.4.8 (Debian 12) reads past the
 * end of its input looking for the ')' of an unclosed link destination ("[a](b" at the
 * very end): with a ')' after the buffer it takes bytes beyond it for the link, and with
 * more of them it crashes (found by fuzz_markdown, whose inputs are not NUL-terminated).
 * A NUL right after the text stops it, so md4c only ever parses a NUL-terminated copy,
 * whatever the caller's buffer holds after len. Internal to src/text/. */
#include <stdlib.h>
#include <string.h>

/* A malloc'd copy of text[0..len) followed by a NUL; NULL when out of memory. */
static inline char *md_input_copy(const char *text, size_t len)
{
    char *copy = malloc(len + 1);
    if (copy) {
        memcpy(copy, text, len);
        copy[len] = '\0';
    }
    return copy;
}

#endif
