#include "util/err.h"

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
    }
    return "unknown error";
}
