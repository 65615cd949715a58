#include "util/names.h"

#include <string.h>

static bool names_charset_ok(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 64)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_' ||
                  ch == '.' || ch == '-';
        if (!ok)
            return false;
    }
    return true;
}

bool names_db_valid(const char *s) { return s && s[0] != '.' && names_charset_ok(s); }
bool names_key_valid(const char *s) { return s && names_charset_ok(s); }
