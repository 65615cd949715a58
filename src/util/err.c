#include "util/err.h"

#include <stdarg.h>
#include <stdio.h>

const char *ragd_strerror(ragd_err e)
{
    switch (e) {
    case RAGD_OK: return "ok";
    case RAGD_ENOMEM: return "out of memory";
    case RAGD_EINVAL: return "invalid input";
    case RAGD_ENOTFOUND: return "not found";
    case RAGD_ECONFLICT: return "conflict";
    case RAGD_ETOOBIG: return "too large";
    case RAGD_EIO: return "i/o error";
    case RAGD_EBUSY: return "busy";
    case RAGD_ECLOSED: return "closed";
    case RAGD_ENOSPC: return "no space left";
    }
    return "unknown error";
}

void ragd_errorf(char *err, size_t errlen, const char *fmt, ...)
{
    if (err == NULL || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}
