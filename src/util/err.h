#ifndef RAGD_UTIL_ERR_H
#define RAGD_UTIL_ERR_H

/* The one error type of ragd. Functions that can fail return a ragd_err (0 = success);
 * where a caller needs detail they also take a `char *err, size_t errlen` message buffer. */
typedef enum {
    RAGD_OK = 0,
    RAGD_ENOMEM,    /* allocation failed */
    RAGD_EINVAL,    /* input breaks a documented rule */
    RAGD_ENOTFOUND, /* the named thing does not exist */
    RAGD_ECONFLICT, /* exists already with other settings / mismatch */
    RAGD_ETOOBIG,   /* a cap was reached */
    RAGD_EIO,       /* storage or system call failed */
    RAGD_EBUSY,     /* a queue is full; try again later */
    RAGD_ECLOSED,   /* the component is shutting down */
    RAGD_ENOSPC,    /* no room to store: the filesystem is full, or a configured quota is reached */
} ragd_err;

/* A static, human-readable name for an error code. Never NULL. */
const char *ragd_strerror(ragd_err e);

#include <stddef.h>
/* Formats a message into err (nothing when err is NULL or errlen 0). */
void ragd_errorf(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
