#include "util/log.h"

#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define LOG_LINE_MAX 2048   /* a message after formatting */
#define LOG_RECORD_MAX 8192 /* the whole record: escaping may grow the message up to 6× */

static atomic_int current_level = LOG_INFO;
static atomic_int current_format = LOG_FORMAT_TEXT;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_set_level(log_level level) { atomic_store_explicit(&current_level, (int)level, memory_order_relaxed); }
log_level log_get_level(void) { return (log_level)atomic_load_explicit(&current_level, memory_order_relaxed); }
void log_set_format(log_format f) { atomic_store_explicit(&current_format, (int)f, memory_order_relaxed); }
log_format log_get_format(void) { return (log_format)atomic_load_explicit(&current_format, memory_order_relaxed); }

const char *log_level_name(log_level level) { return level >= LOG_DEBUG && level <= LOG_ERROR ? level_names[level] : "?"; }

int log_parse_level(const char *s)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

int log_parse_format(const char *s)
{
    if (strcmp(s, "text") == 0)
        return LOG_FORMAT_TEXT;
    if (strcmp(s, "json") == 0)
        return LOG_FORMAT_JSON;
    return -1;
}

/* ---- a capped output buffer: writes past the cap are dropped, never overflow ---- */

typedef struct {
    char *p;
    size_t cap, len; /* len < cap always; p[len] == '\0' */
} log_out;

static void log_put(log_out *o, const char *s, size_t n)
{
    if (o->len + 1 >= o->cap)
        return;
    size_t room = o->cap - 1 - o->len;
    if (n > room)
        n = room;
    memcpy(o->p + o->len, s, n);
    o->len += n;
    o->p[o->len] = '\0';
}

static void log_puts(log_out *o, const char *s) { log_put(o, s, strlen(s)); }

static void log_putf(log_out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void log_putf(log_out *o, const char *fmt, ...)
{
    char tmp[64];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0)
        log_put(o, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Length of the valid UTF-8 sequence at s (n bytes left), or 0 when it is not one. */
static size_t log_utf8_len(const unsigned char *s, size_t n)
{
    if (s[0] < 0x80)
        return 1;
    size_t len = s[0] >= 0xc2 && s[0] <= 0xdf ? 2 : s[0] >= 0xe0 && s[0] <= 0xef ? 3 : s[0] >= 0xf0 && s[0] <= 0xf4 ? 4 : 0;
    if (len == 0 || len > n)
        return 0;
    for (size_t i = 1; i < len; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] >= 0xa0) || (s[0] == 0xf0 && s[1] < 0x90) ||
        (s[0] == 0xf4 && s[1] >= 0x90))
        return 0; /* overlong, surrogate, past U+10FFFF */
    return len;
}

/* True when n more bytes fit in o with `reserve` bytes still free after them. */
static bool log_fits(const log_out *o, size_t n, size_t reserve)
{
    return o->len + n + reserve < o->cap;
}

/* s as the inside of a JSON string: quotes, backslashes and control characters escaped,
 * bytes that are not UTF-8 written as '?'. Whole escapes and characters only, leaving
 * `reserve` bytes free (room to close the record); false when s was cut to do so. */
static bool log_put_json_str(log_out *o, const char *s, size_t reserve)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t n = strlen(s);
    for (size_t i = 0; i < n;) {
        unsigned char ch = u[i];
        char piece[8];
        size_t len = 1;
        const char *from = piece;
        if (ch == '"' || ch == '\\') {
            piece[0] = '\\';
            piece[1] = (char)ch;
            len = 2;
        } else if (ch < 0x20 || ch == 0x7f) {
            len = (size_t)snprintf(piece, sizeof piece, "\\u%04x", ch);
        } else {
            len = log_utf8_len(u + i, n - i);
            from = s + i;
            if (len == 0) {
                piece[0] = '?';
                from = piece;
                len = 1;
            }
        }
        if (!log_fits(o, len, reserve))
            return false;
        log_put(o, from, len);
        i += from == s + i ? len : 1;
    }
    return true;
}

/* A text value: as is when it has no blank or quote, else in double quotes. */
static void log_put_text_value(log_out *o, const char *s)
{
    if (!s) {
        log_put(o, "-", 1);
        return;
    }
    bool plain = *s != '\0';
    for (const unsigned char *p = (const unsigned char *)s; *p && plain; p++)
        plain = *p > 0x20 && *p != 0x7f && *p != '"' && *p != '=' && *p != '\\';
    if (plain) {
        log_puts(o, s);
        return;
    }
    log_put(o, "\"", 1);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\')
            log_put(o, "\\", 1);
        log_put(o, *p < 0x20 || *p == 0x7f ? " " : (const char *)p, 1); /* one record, one line */
    }
    log_put(o, "\"", 1);
}

static void log_put_num(log_out *o, double d, bool json)
{
    if (!isfinite(d))
        log_puts(o, json ? "null" : "-");
    else
        log_putf(o, "%.1f", d);
}

size_t log_format_record(char *out, size_t cap, log_format f, log_level level, long long ts_sec, int ts_ms,
                         const char *msg, const log_field *fields, size_t n)
{
    if (cap == 0)
        return 0;
    log_out o = {.p = out, .cap = cap, .len = 0};
    out[0] = '\0';
    time_t secs = (time_t)ts_sec;
    struct tm tm;
    gmtime_r(&secs, &tm);
    char stamp[40];
    size_t sn = strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(stamp + sn, sizeof stamp - sn, ".%03dZ", ts_ms);
    if (f == LOG_FORMAT_JSON) {
        log_puts(&o, "{\"ts\":\"");
        log_puts(&o, stamp);
        log_puts(&o, "\",\"level\":\"");
        log_puts(&o, log_level_name(level));
        /* A record cut by the cap is still one JSON object: strings are cut between whole
         * escapes and closed, the fields that do not fit are left out, and the record
         * says "truncated":true. TAIL is what closing needs: "\",\"truncated\":true}\n". */
        enum { TAIL = 24, FIELD_MAX = 48 /* a key (short, ours) and a number */ };
        log_puts(&o, "\",\"msg\":\"");
        bool whole = log_put_json_str(&o, msg, TAIL);
        log_put(&o, "\"", 1);
        for (size_t i = 0; i < n && whole; i++) {
            if (!log_fits(&o, strlen(fields[i].key) + FIELD_MAX, TAIL)) {
                whole = false;
                break;
            }
            log_puts(&o, ",\"");
            log_puts(&o, fields[i].key);
            log_puts(&o, "\":");
            if (fields[i].kind == LOG_F_STR && fields[i].s) {
                log_put(&o, "\"", 1);
                whole = log_put_json_str(&o, fields[i].s, TAIL);
                log_put(&o, "\"", 1);
            } else if (fields[i].kind == LOG_F_STR) {
                log_puts(&o, "null");
            } else if (fields[i].kind == LOG_F_INT) {
                log_putf(&o, "%lld", fields[i].i);
            } else {
                log_put_num(&o, fields[i].d, true);
            }
        }
        if (!whole)
            log_puts(&o, ",\"truncated\":true");
        if (o.len + 3 > cap) { /* a cap smaller than the record's head: end it at least */
            o.len = cap > 3 ? cap - 3 : 0;
            o.p[o.len] = '\0';
        }
        log_puts(&o, "}");
    } else {
        char lvl[8];
        snprintf(lvl, sizeof lvl, "%-5s", log_level_name(level));
        log_puts(&o, stamp);
        log_put(&o, " ", 1);
        log_puts(&o, lvl);
        log_put(&o, " ", 1);
        log_puts(&o, msg);
        for (size_t i = 0; i < n; i++) {
            if (fields[i].json_only)
                continue;
            log_put(&o, " ", 1);
            log_puts(&o, fields[i].text_key ? fields[i].text_key : fields[i].key);
            log_put(&o, "=", 1);
            if (fields[i].kind == LOG_F_STR)
                log_put_text_value(&o, fields[i].s);
            else if (fields[i].kind == LOG_F_INT)
                log_putf(&o, "%lld", fields[i].i);
            else
                log_put_num(&o, fields[i].d, false);
        }
        if (o.len + 2 > cap) {
            o.len = cap > 2 ? cap - 2 : 0;
            o.p[o.len] = '\0';
        }
    }
    log_put(&o, "\n", 1);
    return o.len;
}

/* Control characters become spaces: a control character from outside (a backend's error
 * message, a name) cannot start a forged record or drive a terminal. */
static void log_flatten(char *line)
{
    for (char *p = line; *p; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            *p = ' ';
}

static void log_emit(log_level level, char *msg, const log_field *fields, size_t n)
{
    log_flatten(msg);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    char record[LOG_RECORD_MAX];
    size_t len = log_format_record(record, sizeof record, log_get_format(), level, (long long)ts.tv_sec,
                                   (int)(ts.tv_nsec / 1000000), msg, fields, n);
    pthread_mutex_lock(&log_lock);
    fwrite(record, 1, len, stderr);
    pthread_mutex_unlock(&log_lock);
}

void log_msg(log_level level, const char *fmt, ...)
{
    if (level < log_get_level())
        return;
    char line[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    log_emit(level, line, NULL, 0);
}

void log_fields(log_level level, const char *msg, const log_field *fields, size_t n)
{
    if (level < log_get_level())
        return;
    char line[LOG_LINE_MAX];
    snprintf(line, sizeof line, "%s", msg);
    log_emit(level, line, fields, n);
}
