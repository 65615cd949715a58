#ifndef RAGD_UTIL_LOG_H
#define RAGD_UTIL_LOG_H

/* Logging to stderr, one record per line, in one of two formats (RAGD_LOG_FORMAT):
 *   text (default): "2026-12-04T01:10:00.123Z info  message key=value ..."
 *   json:           {"ts":"2026-12-04T01:10:00.123Z","level":"info","msg":"message","key":value,...}
 * Thread-safe; level and format may change while threads log (SIGHUP). Control characters
 * in a message become spaces (a record is one line whatever it quotes); in JSON, bytes that
 * are not UTF-8 become '?'. Never pass a secret (API key, token, URL userinfo) to these
 * functions. */
#include <stdbool.h>
#include <stddef.h>

typedef enum { LOG_DEBUG = 0, LOG_INFO, LOG_WARN, LOG_ERROR } log_level;
typedef enum { LOG_FORMAT_TEXT = 0, LOG_FORMAT_JSON } log_format;

void log_set_level(log_level level);
log_level log_get_level(void);
/* Parses "debug|info|warn|error"; returns -1 for anything else. */
int log_parse_level(const char *s);
/* The level's name ("info"); "?" out of range. */
const char *log_level_name(log_level level);

void log_set_format(log_format f);
log_format log_get_format(void);
/* Parses "text|json"; returns -1 for anything else. */
int log_parse_format(const char *s);

void log_msg(log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, __VA_ARGS__)
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)

/* A named value of a structured record. In text a field is written " key=value" after the
 * message unless json_only; in JSON every field is a member of the record. */
typedef enum { LOG_F_STR, LOG_F_INT, LOG_F_NUM } log_field_kind;
typedef struct {
    const char *key;  /* a static name: [a-z_]+ */
    log_field_kind kind;
    const char *s;    /* LOG_F_STR; NULL is written as null (JSON) or "-" (text) */
    long long i;      /* LOG_F_INT */
    double d;         /* LOG_F_NUM: written with one decimal (milliseconds, seconds) */
    bool json_only;   /* already said by the text message */
    const char *text_key; /* the name in text when it differs (NULL: key) */
} log_field;

#define LOG_STR(k, v) ((log_field){.key = (k), .kind = LOG_F_STR, .s = (v)})
#define LOG_INT(k, v) ((log_field){.key = (k), .kind = LOG_F_INT, .i = (long long)(v)})
#define LOG_NUM(k, v) ((log_field){.key = (k), .kind = LOG_F_NUM, .d = (v)})

/* One record with fields (the access line, what a reload changed). msg is a plain
 * message, not a format. */
void log_fields(log_level level, const char *msg, const log_field *fields, size_t n);

/* Formats one record into out (cap bytes, NUL-terminated, newline included), as log_fields
 * writes it, at wall-clock time ts_sec/ts_ms. Returns the length. For tests. */
size_t log_format_record(char *out, size_t cap, log_format f, log_level level, long long ts_sec, int ts_ms,
                         const char *msg, const log_field *fields, size_t n);

#endif
