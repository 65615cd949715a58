#ifndef RAGD_UTIL_HEX_H
#define RAGD_UTIL_HEX_H

/* The value of one hexadecimal digit (either case), or -1 when c is not one. Used by the
 * %-decoding of paths and arguments, the chunk sizes of HTTP bodies and the prompt-injection
 * normaliser's hex and %xx runs. */
static inline int hex_digit_value(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

#endif
