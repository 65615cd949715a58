/* reStructuredText (text/extract_int.h): the text as written, with each section title —
 * a line underlined (and optionally overlined) by one punctuation character repeated at
 * least as long as the title — turned into a markdown '#' heading, so the chunker and the
 * heading paths see the document's structure. Levels follow the order in which adornment
 * styles first appear (the reStructuredText rule); past six levels, six. Everything else
 * (directives, inline markup, tables) stays text. */
#include <stdbool.h>
#include <string.h>

#include "text/extract_int.h"
#include "util/utf8.h"

#define RST_STYLES 16 /* distinct adornment styles remembered */

typedef struct {
    char ch;
    bool over;
} rst_style;

/* One line: [s, e) without its line break. */
typedef struct {
    const char *s;
    size_t len;
} rst_line;

static bool rst_adorn_char(char c)
{
    return c && strchr("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~", c) != NULL;
}

/* Whether the line is an adornment: one punctuation character, 2+ times, maybe trailing spaces. */
static bool rst_is_adornment(rst_line l, char *ch)
{
    size_t n = l.len;
    while (n > 0 && (l.s[n - 1] == ' ' || l.s[n - 1] == '\t' || l.s[n - 1] == '\r'))
        n--;
    if (n < 2 || !rst_adorn_char(l.s[0]))
        return false;
    for (size_t i = 1; i < n; i++)
        if (l.s[i] != l.s[0])
            return false;
    *ch = l.s[0];
    return true;
}

static size_t rst_trimmed_len(rst_line l)
{
    size_t n = l.len;
    while (n > 0 && (l.s[n - 1] == ' ' || l.s[n - 1] == '\t' || l.s[n - 1] == '\r'))
        n--;
    return n;
}

/* A title line: not blank, not indented, not an adornment itself. */
static bool rst_is_title(rst_line l)
{
    char c;
    size_t n = rst_trimmed_len(l);
    return n > 0 && l.s[0] != ' ' && l.s[0] != '\t' && !rst_is_adornment(l, &c);
}

/* The level (1-based) of a style, adding it when new. */
static int rst_level(rst_style *styles, size_t *n, char ch, bool over)
{
    for (size_t i = 0; i < *n; i++)
        if (styles[i].ch == ch && styles[i].over == over)
            return (int)i + 1;
    if (*n < RST_STYLES)
        styles[(*n)++] = (rst_style){ch, over};
    return (int)*n;
}

static rst_line rst_line_at(const char *text, size_t len, size_t at)
{
    const char *nl = memchr(text + at, '\n', len - at);
    size_t end = nl ? (size_t)(nl - text) : len;
    return (rst_line){text + at, end - at};
}

static ragd_err rst_heading(strbuf *out, int level, rst_line title)
{
    static const char hashes[] = "###### ";
    int h = level > 6 ? 6 : level;
    ragd_err e = strbuf_append(out, hashes + 6 - h, (size_t)h + 1);
    size_t n = rst_trimmed_len(title);
    size_t lead = 0;
    while (lead < n && (title.s[lead] == ' ' || title.s[lead] == '\t'))
        lead++;
    if (!e)
        e = strbuf_append(out, title.s + lead, n - lead);
    if (!e)
        e = strbuf_append(out, "\n", 1);
    return e;
}

ragd_err extract_rst(extract_ctx *x, const char *text, size_t len, strbuf *out)
{
    rst_style styles[RST_STYLES];
    size_t n_styles = 0;
    size_t at = 0;
    ragd_err e = RAGD_OK;
    while (at < len && !e) {
        rst_line a = rst_line_at(text, len, at);
        size_t after_a = at + a.len + (at + a.len < len);
        char c1 = 0, c3 = 0;
        /* overline, title, underline */
        if (rst_is_adornment(a, &c1) && after_a < len) {
            rst_line b = rst_line_at(text, len, after_a);
            size_t after_b = after_a + b.len + (after_a + b.len < len);
            if (after_b < len && rst_trimmed_len(b) > 0) {
                rst_line c = rst_line_at(text, len, after_b);
                if (rst_is_adornment(c, &c3) && c3 == c1 && rst_trimmed_len(c) == rst_trimmed_len(a)) {
                    e = rst_heading(out, rst_level(styles, &n_styles, c1, true), b);
                    at = after_b + c.len + (after_b + c.len < len);
                    continue;
                }
            }
        }
        /* title, underline at least as long (in characters) */
        if (rst_is_title(a) && after_a < len) {
            rst_line u = rst_line_at(text, len, after_a);
            if (rst_is_adornment(u, &c3) && rst_trimmed_len(u) >= utf8_length(a.s, rst_trimmed_len(a))) {
                e = rst_heading(out, rst_level(styles, &n_styles, c3, false), a);
                at = after_a + u.len + (after_a + u.len < len);
                continue;
            }
        }
        e = strbuf_append(out, a.s, after_a - at);
        at = after_a;
    }
    if (e == RAGD_ETOOBIG)
        return extract_fail(x, e, "reStructuredText is over %zu bytes as text", x->lim->max_text);
    if (e)
        return extract_fail(x, e, "out of memory");
    return RAGD_OK;
}
