#ifndef RAGD_UTIL_LOG_H
#define RAGD_UTIL_LOG_H

/* Structured-enough logging to stderr: one line per call, "ts level message".
 * Thread-safe. Never pass a secret (API key, token) to these functions. */
typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;

void log_set_level(log_level level);
log_level log_get_level(void);
/* Parses "debug|info|warn|error"; returns -1 for anything else. */
int log_parse_level(const char *s);

void log_msg(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

#endif
