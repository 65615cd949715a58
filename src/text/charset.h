#ifndef RAGD_TEXT_CHARSET_H
#define RAGD_TEXT_CHARSET_H

/* Bytes in a named charset to UTF-8 with iconv, and the repair of almost-UTF-8. Pure
 * functions, any thread (each call opens its own iconv descriptor). */
#include <stdbool.h>
#include <stddef.h>

#include "util/strbuf.h"

/* Appends p[0..n) to sb with every byte that does not belong to well-formed UTF-8, and
 * every NUL, replaced by U+FFFD. RAGD_ETOOBIG at sb's cap, RAGD_ENOMEM. */
ragd_err charset_append_repaired(strbuf *sb, const unsigned char *p, size_t n);

/* Appends p[0..n), in charset enc (an iconv name), to sb as UTF-8. Bytes the charset does
 * not define become U+FFFD and decoding goes on. An enc iconv does not know: the bytes are
 * appended repaired as UTF-8 (callers check charset_known first when that matters). */
ragd_err charset_convert(strbuf *sb, const unsigned char *p, size_t n, const char *enc);

/* Whether iconv can decode from enc. */
bool charset_known(const char *enc);

/* The iconv name to decode a declared label with, following the WHATWG rule that Latin-1
 * and ASCII labels mean windows-1252 (a superset that names 0x80-0x9F): "UTF-8" for the
 * UTF-8 labels, "windows-1252" for the Latin-1 family, else label itself (case kept).
 * Never NULL. */
const char *charset_canonical(const char *label);

#endif
