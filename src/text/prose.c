/* Passage text → running prose: markup lines left out, inline markup reduced to its text.
 * Used by the extractive answer (docs/internals/extractive.md has the rules and why). */
#include "text/prose.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A line at most this long without closing punctuation, followed by a capitalised line,
 * is a paragraph of its own (a heading or label in text made from HTML). */
#define PROSE_SHORT_LINE 60
/* Code-like: more than this percentage of the non-blank bytes are symbols (at least 3). */
#define PROSE_SYMBOL_PCT 15

typedef enum { LINE_BLANK, LINE_JUNK, LINE_PROSE, LINE_ITEM } prose_kind;

typedef struct {
    size_t start, end; /* the content: indentation and markers skipped, trailing blanks trimmed */
    size_t indent;     /* columns of leading blanks (a tab counts 4) */
    prose_kind kind;
} prose_line;

static int prose_blank(unsigned char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v'; }
static int prose_alnum(unsigned char c)
{
    return (unsigned)((c | 0x20) - 'a') < 26u || (unsigned)(c - '0') < 10u || c >= 0x80;
}
static int prose_upper(unsigned char c) { return (unsigned)(c - 'A') < 26u; }

/* Number of c at p[i..e). */
static size_t prose_run(const char *p, size_t i, size_t e, char c)
{
    size_t n = 0;
    while (i + n < e && p[i + n] == c)
        n++;
    return n;
}

/* A code fence opener/closer: three or more ` or ~. */
static int prose_is_fence(const char *p, size_t s, size_t e, char *fc)
{
    if (s < e && (p[s] == '`' || p[s] == '~') && prose_run(p, s, e, p[s]) >= 3) {
        *fc = p[s];
        return 1;
    }
    return 0;
}

/* "# Title" .. "###### Title", or a lone run of #. */
static int prose_is_atx(const char *p, size_t s, size_t e)
{
    size_t n = prose_run(p, s, e, '#');
    return n >= 1 && n <= 6 && (s + n == e || prose_blank((unsigned char)p[s + n]));
}

/* A line of one of = - * _ (blanks between allowed), at least 2: setext underline or rule. */
static int prose_is_rule(const char *p, size_t s, size_t e)
{
    char c = p[s];
    if (c != '=' && c != '-' && c != '*' && c != '_')
        return 0;
    size_t n = 0;
    for (size_t i = s; i < e; i++) {
        if (p[i] == c)
            n++;
        else if (!prose_blank((unsigned char)p[i]))
            return 0;
    }
    return n >= 2;
}

/* A table row: starts with '|', holds two '|' or more, or a grid line "+---+". */
static int prose_is_table(const char *p, size_t s, size_t e)
{
    if (p[s] == '|' || (p[s] == '+' && e - s > 2 && p[s + 1] == '-'))
        return 1;
    size_t bars = 0;
    for (size_t i = s; i < e; i++)
        bars += p[i] == '|';
    return bars >= 2;
}

/* Length of a markdown link or image "[text](url)" / "![alt](url)" at p[i], with the text
 * in [*ts, *te); 0 when none starts there. Only within the line. */
static size_t prose_link_at(const char *p, size_t i, size_t e, size_t *ts, size_t *te)
{
    size_t j = i;
    if (p[j] == '!')
        j++;
    if (j >= e || p[j] != '[')
        return 0;
    size_t close = j + 1;
    while (close < e && p[close] != ']' && p[close] != '[')
        close++;
    if (close + 1 >= e || p[close] != ']' || p[close + 1] != '(')
        return 0;
    size_t paren = close + 2;
    while (paren < e && p[paren] != ')' && !prose_blank((unsigned char)p[paren]))
        paren++;
    while (paren < e && p[paren] != ')') /* a title: [a](url "title") */
        paren++;
    if (paren >= e)
        return 0;
    *ts = j + 1;
    *te = close;
    return paren + 1 - i;
}

/* A link list or a line of table-of-contents links: it holds links (markdown links or bare
 * URLs) and fewer than 3 words outside them, or 3 links or more and fewer words outside
 * them than links. "Read the [guide](url) first." is prose. */
static int prose_mostly_links(const char *p, size_t s, size_t e)
{
    size_t links = 0, words = 0;
    int in_word = 0;
    for (size_t i = s; i < e;) {
        size_t ts, te;
        size_t n = (p[i] == '[' || p[i] == '!') ? prose_link_at(p, i, e, &ts, &te) : 0;
        if (n == 0 && p[i] == 'h' && e - i > 8 &&
            (memcmp(p + i, "http://", 7) == 0 || memcmp(p + i, "https://", 8) == 0)) {
            while (i + n < e && !prose_blank((unsigned char)p[i + n]))
                n++;
        }
        if (n > 0) {
            links++;
            in_word = 0;
            i += n;
            continue;
        }
        int w = prose_alnum((unsigned char)p[i]);
        words += w && !in_word;
        in_word = w;
        i++;
    }
    return links > 0 && (words < 3 || (links >= 3 && words < links));
}

/* "Title ....... 12", "Title . . . . 12", "Title … 12": a table-of-contents entry. */
static int prose_is_toc(const char *p, size_t s, size_t e)
{
    size_t i = e;
    while (i > s && ((unsigned)(p[i - 1] - '0') < 10u || (p[i - 1] | 0x20) == 'i' || (p[i - 1] | 0x20) == 'v' ||
                     (p[i - 1] | 0x20) == 'x'))
        i--;
    if (i == e)
        return 0;
    size_t dots = 0;
    while (i > s) {
        unsigned char c = (unsigned char)p[i - 1];
        if (c == '.')
            dots++;
        else if (c == 0xA6 && i - s >= 3 && (unsigned char)p[i - 2] == 0x80 && (unsigned char)p[i - 3] == 0xE2) {
            dots += 3; /* U+2026 */
            i -= 2;
        } else if (!prose_blank(c)) {
            break;
        }
        i--;
    }
    return dots >= 3;
}

/* Punctuation of ordinary text (not counted as a symbol by prose_is_code). */
static int prose_text_punct(unsigned char c)
{
    switch (c) {
    case '.': case ',': case ';': case ':': case '!': case '?': case '\'': case '"': case '(': case ')': case '-':
        return 1;
    default:
        return 0;
    }
}

/* Mostly symbols, or the shape of a code line. */
static int prose_is_code(const char *p, size_t s, size_t e)
{
    char last = p[e - 1];
    if (last == '{' || last == '}' || last == ';')
        return 1;
    if ((e - s >= 2 &&
         (memcmp(p + s, "//", 2) == 0 || memcmp(p + s, "/*", 2) == 0 || memcmp(p + s, "$ ", 2) == 0)) ||
        (e - s >= 4 && memcmp(p + s, ">>> ", 4) == 0))
        return 1;
    /* Counted on the text as it will read: link targets, tags, emphasis marks, escapes and
     * footnote marks skipped. */
    size_t sym = 0, nonblank = 0;
    for (size_t i = s; i < e; i++) {
        unsigned char c = (unsigned char)p[i];
        size_t ts, te;
        size_t n = (c == '[' || c == '!') ? prose_link_at(p, i, e, &ts, &te) : 0;
        const char *gt = c == '<' ? memchr(p + i, '>', e - i) : NULL;
        if (n > 0) {
            nonblank += te - ts;
            i += n - 1;
            continue;
        }
        if (gt != NULL) {
            i = (size_t)(gt - p);
            continue;
        }
        if (c == '\\' && i + 1 < e && !prose_alnum((unsigned char)p[i + 1])) {
            i++; /* an escape: the character it escapes is text */
            nonblank++;
            continue;
        }
        if (c == '[' && i + 1 < e && p[i + 1] == '^') { /* a footnote mark */
            const char *cl = memchr(p + i, ']', e - i);
            if (cl != NULL) {
                i = (size_t)(cl - p);
                continue;
            }
        }
        if (prose_blank(c) || c == '*' || c == '`')
            continue;
        nonblank++;
        if (!prose_alnum(c) && !prose_text_punct(c))
            sym++;
    }
    return sym >= 3 && sym * 100 > nonblank * PROSE_SYMBOL_PCT;
}

/* A line made of HTML tags only (after removing them, fewer than 3 letters or digits). */
static int prose_is_tag_line(const char *p, size_t s, size_t e)
{
    if (p[s] != '<')
        return 0;
    size_t text = 0;
    int in_tag = 0;
    for (size_t i = s; i < e; i++) {
        if (p[i] == '<')
            in_tag = 1;
        else if (p[i] == '>')
            in_tag = 0;
        else if (!in_tag && prose_alnum((unsigned char)p[i]))
            text++;
    }
    return text < 3;
}

/* Skips list and quote markers at p[*s]; returns 1 when a list marker was there. */
static int prose_skip_markers(const char *p, size_t *s, size_t e)
{
    int item = 0;
    for (;;) {
        size_t i = *s;
        if (i < e && p[i] == '>') {
            i++;
        } else if (i + 1 < e && (p[i] == '-' || p[i] == '*' || p[i] == '+') &&
                   prose_blank((unsigned char)p[i + 1])) {
            i += 2;
            item = 1;
        } else {
            size_t d = 0;
            while (i + d < e && (unsigned)(p[i + d] - '0') < 10u && d < 9)
                d++;
            if (d == 0 || i + d + 1 >= e || (p[i + d] != '.' && p[i + d] != ')') || !prose_blank((unsigned char)p[i + d + 1]))
                break;
            i += d + 2;
            item = 1;
        }
        while (i < e && prose_blank((unsigned char)p[i]))
            i++;
        if (e - i >= 4 && p[i] == '[' && p[i + 2] == ']' && (p[i + 1] == ' ' || (p[i + 1] | 0x20) == 'x'))
            i += 4; /* a task box "[ ] " */
        while (i < e && prose_blank((unsigned char)p[i]))
            i++;
        *s = i;
    }
    return item;
}

/* The bytes prose_append_inline may treat as markup. */
static int prose_inline_special(unsigned char c)
{
    return c == '[' || c == '!' || c == '<' || c == '`' || c == '*' || c == '_' || c == '\\';
}

/* Appends the line's text with inline markup reduced (see the header). */
static ragd_err prose_append_inline(const char *p, size_t s, size_t e, strbuf *out)
{
    ragd_err rc = RAGD_OK;
    for (size_t i = s; i < e && rc == RAGD_OK;) {
        char c = p[i];
        size_t ts, te;
        size_t n = (c == '[' || c == '!') ? prose_link_at(p, i, e, &ts, &te) : 0;
        if (n > 0) {
            rc = prose_append_inline(p, ts, te, out);
            i += n;
        } else if (c == '<' && i + 1 < e && ((unsigned)((p[i + 1] | 0x20) - 'a') < 26u || p[i + 1] == '/' || p[i + 1] == '!')) {
            const char *gt = memchr(p + i, '>', e - i);
            if (gt == NULL) {
                rc = strbuf_append(out, p + i, 1);
                i++;
                continue;
            }
            /* "a<br>b" reads "a b", "<b>first</b>." reads "first.": a space only before a word. */
            size_t next = (size_t)(gt - p) + 1;
            if (next < e && prose_alnum((unsigned char)p[next]) && out->len > 0 &&
                out->data[out->len - 1] != ' ' && out->data[out->len - 1] != '\n')
                rc = strbuf_append(out, " ", 1);
            i = next;
        } else if (c == '`' || c == '*' || (c == '_' && i + 1 < e && p[i + 1] == '_')) {
            i += c == '_' ? 2 : 1;
        } else if (c == '\\' && i + 1 < e && strchr("\\`*_{}[]()#+-.!<>|", p[i + 1]) != NULL && p[i + 1] != '\0') {
            rc = strbuf_append(out, p + i + 1, 1);
            i += 2;
        } else if (c == '[' && i + 1 < e && p[i + 1] == '^') { /* a footnote mark [^1] */
            const char *cl = memchr(p + i, ']', e - i);
            i = cl != NULL ? (size_t)(cl - p) + 1 : i + 1;
        } else {
            /* A run of bytes with no markup character in it goes out in one append. */
            size_t j = i + 1;
            while (j < e && !prose_inline_special((unsigned char)p[j]))
                j++;
            rc = strbuf_append(out, p + i, j - i);
            i = j;
        }
    }
    return rc;
}

/* The last byte of the line is closing punctuation (after closing quotes/brackets). */
static int prose_ends_closed(const char *p, size_t s, size_t e)
{
    while (e > s && strchr(")]\"'*_`", p[e - 1]) != NULL && p[e - 1] != '\0')
        e--;
    if (e == s)
        return 0;
    unsigned char c = (unsigned char)p[e - 1];
    return c == '.' || c == '!' || c == '?' || c == ':' || c == ';' || c == ',' || c >= 0x80;
}

/* Whether the passage starts inside a code block: a chunk can begin after a fence
 * opened. Told by the first fence line: it is bare (an opening fence usually names its
 * language) and the passage holds an odd number of fences. */
static int prose_starts_in_fence(const char *p, const prose_line *lines, size_t nl)
{
    size_t fences = 0;
    int first_bare = 0;
    char fc;
    for (size_t k = 0; k < nl; k++) {
        size_t s = lines[k].start, e = lines[k].end;
        while (s < e && prose_blank((unsigned char)p[s]))
            s++;
        while (e > s && prose_blank((unsigned char)p[e - 1]))
            e--;
        if (!prose_is_fence(p, s, e, &fc))
            continue;
        if (fences == 0)
            first_bare = prose_run(p, s, e, fc) == e - s;
        fences++;
    }
    return first_bare && fences % 2 == 1;
}

/* Classifies each line. */
static void prose_classify(const char *p, prose_line *lines, size_t nl)
{
    int in_fence = prose_starts_in_fence(p, lines, nl);
    char fence_char = 0;
    for (size_t k = 0; k < nl; k++) {
        prose_line *ln = &lines[k];
        size_t s = ln->start, e = ln->end;
        size_t indent = 0;
        while (s < e && prose_blank((unsigned char)p[s])) {
            indent += p[s] == '\t' ? 4 : 1;
            s++;
        }
        while (e > s && prose_blank((unsigned char)p[e - 1]))
            e--;
        ln->start = s;
        ln->end = e;
        ln->indent = indent;
        char fc;
        prose_kind prev = k > 0 ? lines[k - 1].kind : LINE_BLANK;
        if (s == e) {
            ln->kind = in_fence ? LINE_JUNK : LINE_BLANK;
            continue;
        }
        if (in_fence) {
            if (prose_is_fence(p, s, e, &fc) && (fc == fence_char || fence_char == 0))
                in_fence = 0;
            ln->kind = LINE_JUNK;
            continue;
        }
        if (prose_is_fence(p, s, e, &fc)) {
            in_fence = 1;
            fence_char = fc;
            ln->kind = LINE_JUNK;
            continue;
        }
        if (indent >= 4 && (prev == LINE_BLANK || prev == LINE_JUNK)) {
            ln->kind = LINE_JUNK; /* indented code */
            continue;
        }
        if (prose_is_rule(p, s, e)) {
            /* A setext underline makes the single line above it a heading. */
            if (prev == LINE_PROSE && (k < 2 || lines[k - 2].kind == LINE_BLANK || lines[k - 2].kind == LINE_JUNK))
                lines[k - 1].kind = LINE_JUNK;
            ln->kind = LINE_JUNK;
            continue;
        }
        int item = prose_skip_markers(p, &s, e);
        ln->start = s;
        if (s == e || prose_is_atx(p, s, e) || prose_is_table(p, s, e) || prose_is_tag_line(p, s, e) ||
            prose_mostly_links(p, s, e) || prose_is_toc(p, s, e) || prose_is_code(p, s, e)) {
            ln->kind = LINE_JUNK;
            continue;
        }
        ln->kind = item ? LINE_ITEM : LINE_PROSE;
    }
}

/* prose_extract: see the header. */
ragd_err prose_extract(const char *text, size_t len, strbuf *out, prose_info *info)
{
    prose_line *lines = NULL;
    ragd_err rc = RAGD_OK;
    if (out == NULL || (text == NULL && len > 0))
        return RAGD_EINVAL;
    if (info != NULL)
        *info = (prose_info){0};
    if (len == 0)
        return RAGD_OK;
    size_t nl = 1;
    for (size_t i = 0; i < len; i++)
        nl += text[i] == '\n';
    lines = malloc(nl * sizeof *lines);
    if (lines == NULL)
        return RAGD_ENOMEM;
    size_t k = 0, ls = 0;
    for (size_t i = 0; i <= len; i++) {
        if (i == len || text[i] == '\n') {
            lines[k].start = ls;
            lines[k].end = i;
            k++;
            ls = i + 1;
        }
    }
    prose_classify(text, lines, nl);

    size_t first = nl, last = nl;
    for (size_t i = 0; i < nl; i++) {
        if (lines[i].kind != LINE_BLANK) {
            if (first == nl)
                first = i;
            last = i;
        }
    }
    size_t begin = out->len;
    int in_para = 0;
    for (size_t i = 0; i < nl; i++) {
        const prose_line *ln = &lines[i];
        if (ln->kind == LINE_BLANK || ln->kind == LINE_JUNK) {
            in_para = 0;
            continue;
        }
        int brk = !in_para || ln->kind == LINE_ITEM;
        if (!brk) {
            const prose_line *pv = &lines[i - 1];
            brk = pv->end - pv->start <= PROSE_SHORT_LINE && !prose_ends_closed(text, pv->start, pv->end) &&
                  prose_upper((unsigned char)text[ln->start]);
        }
        if (out->len > begin)
            rc = strbuf_append(out, brk ? "\n\n" : " ", brk ? 2 : 1);
        if (rc == RAGD_OK)
            rc = prose_append_inline(text, ln->start, ln->end, out);
        if (rc != RAGD_OK)
            goto out;
        in_para = 1;
    }
    if (info != NULL && first < nl) {
        /* A list item starts where its marker is: not a cut, even when it is the first line. */
        info->starts_at_top = lines[first].kind == LINE_PROSE;
        info->ends_at_bottom = lines[last].kind == LINE_PROSE || lines[last].kind == LINE_ITEM;
    }
out:
    free(lines);
    return rc;
}
