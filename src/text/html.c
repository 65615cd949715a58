#include "text/html.h"

#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "text/charset.h"
#include "text/xmlutil.h"
#include "util/strbuf.h"
#include "util/utf8.h"

#define HTML_MAX_INPUT ((size_t)64 << 20)

/* How far into the document the charset declaration is looked for (as browsers do). */
#define HTML_SNIFF_BYTES 1024

#define HTML_PARSE_OPTS                                                                      \
    (HTML_PARSE_RECOVER | HTML_PARSE_NOERROR | HTML_PARSE_NOWARNING | HTML_PARSE_NONET |     \
     HTML_PARSE_IGNORE_ENC | XML_PARSE_HUGE)

/* ---------------------------------------------------------------- charset sniffing */

static int html_lower(int c) { return (c >= 'A' && c <= 'Z') ? c + 32 : c; }

/* Case-insensitive search for the ASCII word w in p[from..to). Returns its index or to. */
static size_t html_find(const unsigned char *p, size_t from, size_t to, const char *w)
{
    size_t wn = strlen(w);
    for (size_t i = from; i + wn <= to; i++) {
        size_t k = 0;
        while (k < wn && html_lower(p[i + k]) == w[k])
            k++;
        if (k == wn)
            return i;
    }
    return to;
}

/* Reads `key` = value inside p[from..to) into label (lower-cased); 1 when found. */
static int html_read_attr(const unsigned char *p, size_t from, size_t to, const char *key,
                          char *label, size_t cap)
{
    size_t i = html_find(p, from, to, key);
    if (i >= to)
        return 0;
    i += strlen(key);
    while (i < to && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r'))
        i++;
    if (i >= to || p[i] != '=')
        return 0;
    i++;
    while (i < to && (p[i] == ' ' || p[i] == '\t' || p[i] == '\n' || p[i] == '\r' ||
                      p[i] == '"' || p[i] == '\''))
        i++;
    size_t n = 0;
    while (i < to && n + 1 < cap &&
           ((p[i] >= 'a' && p[i] <= 'z') || (p[i] >= 'A' && p[i] <= 'Z') ||
            (p[i] >= '0' && p[i] <= '9') || p[i] == '-' || p[i] == '_' || p[i] == '.' ||
            p[i] == ':')) {
        label[n++] = (char)html_lower(p[i]);
        i++;
    }
    label[n] = '\0';
    return n > 0;
}

/* The charset a document declares in its first bytes: a <meta charset=...> or
 * <meta http-equiv content="...; charset=..."> or an XML declaration's encoding. Not an
 * HTML parser: a bounded look for one attribute, like a browser's pre-scan. */
static int html_declared_charset(const unsigned char *p, size_t n, char *label, size_t cap)
{
    size_t end = n < HTML_SNIFF_BYTES ? n : HTML_SNIFF_BYTES;
    if (end >= 5 && memcmp(p, "<?xml", 5) == 0) {
        size_t close = html_find(p, 0, end, "?>");
        if (html_read_attr(p, 0, close, "encoding", label, cap))
            return 1;
    }
    size_t i = 0;
    while (i < end) {
        size_t m = html_find(p, i, end, "<meta");
        if (m >= end)
            break;
        size_t limit = n < end + 512 ? n : end + 512; /* an unclosed tag: bounded look */
        size_t close = m;
        while (close < limit && p[close] != '>')
            close++;
        if (html_read_attr(p, m, close, "charset", label, cap))
            return 1;
        i = m + 5;
    }
    return 0;
}

static int html_label_is(const char *label, const char *const *names)
{
    for (size_t k = 0; names[k]; k++)
        if (strcmp(label, names[k]) == 0)
            return 1;
    return 0;
}

/* Chooses the charset to decode the document from (a constant, or `label` holding the
 * declared name) and how many leading bytes (a BOM) to skip. Following the WHATWG encoding rules:
 * a BOM wins; a UTF-16/32 label in an ASCII-compatible document means UTF-8; Latin-1 and
 * ASCII labels mean windows-1252; an unknown label, or none, means UTF-8. */
static const char *html_pick_encoding(const unsigned char *p, size_t n, size_t *skip,
                                      char *label, size_t cap)
{
    static const char *const utf8_like[] = {"utf-8", "utf8", "unicode-1-1-utf-8", "utf-16",
                                            "utf-16le", "utf-16be", "utf-32", "utf-32le",
                                            "utf-32be", "unicode", "ucs-2", NULL};
    static const char *const latin1_like[] = {"iso-8859-1", "iso8859-1", "iso_8859-1",
                                              "latin1", "l1", "us-ascii", "ascii",
                                              "windows-1252", "cp1252", "x-cp1252",
                                              "iso-ir-100", "cp819", "ibm819", NULL};
    *skip = 0;
    if (n >= 3 && p[0] == 0xEF && p[1] == 0xBB && p[2] == 0xBF) {
        *skip = 3;
        return "UTF-8";
    }
    if (n >= 2 && p[0] == 0xFF && p[1] == 0xFE) {
        *skip = 2;
        return "UTF-16LE";
    }
    if (n >= 2 && p[0] == 0xFE && p[1] == 0xFF) {
        *skip = 2;
        return "UTF-16BE";
    }
    if (!html_declared_charset(p, n, label, cap))
        return "UTF-8";
    if (html_label_is(label, utf8_like))
        return "UTF-8";
    if (html_label_is(label, latin1_like))
        return charset_known("windows-1252") ? "windows-1252" : "ISO-8859-1";
    return charset_known(label) ? label : "UTF-8";
}

/* ---------------------------------------------------------------- tree walk */

typedef enum {
    HTML_K_INLINE = 0,
    HTML_K_SKIP,  /* dropped with its content */
    HTML_K_LINE,  /* starts and ends a line */
    HTML_K_PARA,  /* starts and ends a paragraph */
    HTML_K_BR,    /* one line break */
    HTML_K_CELL,  /* table cell: " | " between cells of a row */
    HTML_K_PRE,   /* a paragraph whose whitespace is kept */
} html_kind;

typedef struct {
    const char *name;
    html_kind kind;
} html_tag;

/* Sorted by name for bsearch. */
static const html_tag html_tags[] = {
    {"address", HTML_K_PARA},   {"article", HTML_K_PARA},    {"aside", HTML_K_PARA},
    {"blockquote", HTML_K_PARA}, {"body", HTML_K_PARA},      {"br", HTML_K_BR},
    {"caption", HTML_K_LINE},   {"center", HTML_K_PARA},     {"dd", HTML_K_LINE},
    {"details", HTML_K_PARA},   {"dialog", HTML_K_PARA},     {"dir", HTML_K_PARA},
    {"div", HTML_K_LINE},       {"dl", HTML_K_PARA},         {"dt", HTML_K_LINE},
    {"fieldset", HTML_K_PARA},  {"figcaption", HTML_K_LINE}, {"figure", HTML_K_PARA},
    {"footer", HTML_K_PARA},    {"form", HTML_K_PARA},       {"h1", HTML_K_PARA},
    {"h2", HTML_K_PARA},        {"h3", HTML_K_PARA},         {"h4", HTML_K_PARA},
    {"h5", HTML_K_PARA},        {"h6", HTML_K_PARA},         {"head", HTML_K_SKIP},
    {"header", HTML_K_PARA},    {"hgroup", HTML_K_PARA},     {"hr", HTML_K_PARA},
    {"legend", HTML_K_LINE},    {"li", HTML_K_LINE},         {"listing", HTML_K_PRE},
    {"main", HTML_K_PARA},      {"menu", HTML_K_PARA},       {"nav", HTML_K_PARA},
    {"noscript", HTML_K_SKIP},  {"ol", HTML_K_PARA},         {"option", HTML_K_LINE},
    {"p", HTML_K_PARA},         {"plaintext", HTML_K_PRE},   {"pre", HTML_K_PRE},
    {"script", HTML_K_SKIP},    {"section", HTML_K_PARA},    {"style", HTML_K_SKIP},
    {"summary", HTML_K_LINE},   {"table", HTML_K_PARA},      {"td", HTML_K_CELL},
    {"template", HTML_K_SKIP},  {"textarea", HTML_K_PRE},    {"th", HTML_K_CELL},
    {"title", HTML_K_SKIP},     {"tr", HTML_K_LINE},         {"ul", HTML_K_PARA},
    {"xmp", HTML_K_PRE},
};

static int html_tag_cmp(const void *key, const void *elem)
{
    return strcmp(key, ((const html_tag *)elem)->name);
}

static html_kind html_kind_of(const xmlNode *n)
{
    if (!n->name)
        return HTML_K_INLINE;
    const html_tag *t = bsearch(n->name, html_tags, sizeof html_tags / sizeof html_tags[0],
                                sizeof html_tags[0], html_tag_cmp);
    return t ? t->kind : HTML_K_INLINE;
}

/* Pending separators, strongest last; flushed only before more text. */
enum { HTML_SEP_NONE, HTML_SEP_SPACE, HTML_SEP_CELL, HTML_SEP_LINE, HTML_SEP_PARA };

typedef struct {
    strbuf sb;
    int pending;
    int pre_depth;
    ragd_err err;
} html_out;

static void html_want(html_out *o, int sep)
{
    if (sep > o->pending)
        o->pending = sep;
}

static void html_put(html_out *o, const void *p, size_t n)
{
    if (o->err || n == 0)
        return;
    if (o->sb.len > 0 && o->pending != HTML_SEP_NONE) {
        static const char *const seps[] = {"", " ", " | ", "\n", "\n\n"};
        o->err = strbuf_appends(&o->sb, seps[o->pending]);
        if (o->err)
            return;
    }
    o->pending = HTML_SEP_NONE;
    o->err = strbuf_append(&o->sb, p, n);
}

static int html_is_collapsible(const unsigned char *p, size_t i, size_t n, size_t *w)
{
    unsigned c = p[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f') {
        *w = 1;
        return 1;
    }
    if (c == 0xC2 && i + 1 < n && p[i + 1] == 0xA0) { /* no-break space */
        *w = 2;
        return 1;
    }
    return 0;
}

/* Text outside <pre>: each run of whitespace becomes (at most) one space. */
static void html_text(html_out *o, const unsigned char *p, size_t n)
{
    if (o->pre_depth > 0) {
        html_put(o, p, n);
        return;
    }
    size_t i = 0;
    while (i < n && !o->err) {
        size_t w;
        if (html_is_collapsible(p, i, n, &w)) {
            html_want(o, HTML_SEP_SPACE);
            i += w;
            continue;
        }
        size_t run = i;
        while (i < n && !html_is_collapsible(p, i, n, &w))
            i++;
        html_put(o, p + run, i - run);
    }
}

/* A list nested in a list item stays part of the outer list: line breaks, not paragraphs. */
static int html_para_sep(const xmlNode *n)
{
    const char *name = (const char *)n->name;
    if (strcmp(name, "ul") != 0 && strcmp(name, "ol") != 0 && strcmp(name, "dl") != 0 &&
        strcmp(name, "menu") != 0)
        return HTML_SEP_PARA;
    for (const xmlNode *a = n->parent; a && a->type == XML_ELEMENT_NODE; a = a->parent) {
        if (strcmp((const char *)a->name, "li") == 0 || strcmp((const char *)a->name, "dd") == 0)
            return HTML_SEP_LINE;
    }
    return HTML_SEP_PARA;
}

/* One CSS declaration "name:value" (lower-cased, blanks removed) that hides its element:
 * display:none, visibility:hidden|collapse, font-size or opacity of zero. */
static int html_hiding_declaration(const char *d)
{
    if (strncmp(d, "display:none", 12) == 0 || strncmp(d, "visibility:hidden", 17) == 0 ||
        strncmp(d, "visibility:collapse", 19) == 0)
        return 1;
    const char *v = NULL;
    if (strncmp(d, "font-size:", 10) == 0)
        v = d + 10;
    else if (strncmp(d, "opacity:", 8) == 0)
        v = d + 8;
    if (!v || !((*v >= '0' && *v <= '9') || *v == '.'))
        return 0;
    char *end = NULL;
    double x = strtod(v, &end);
    return end != v && x == 0.0;
}

/* Whether an inline style attribute hides the element. */
static int html_style_hides(const char *style)
{
    char decl[128];
    size_t w = 0;
    for (const char *p = style;; p++) {
        if (*p == ';' || *p == '\0') {
            decl[w] = '\0';
            if (html_hiding_declaration(decl))
                return 1;
            w = 0;
            if (*p == '\0')
                return 0;
            continue;
        }
        if (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r' || *p == '\f')
            continue;
        if (w + 1 < sizeof decl)
            decl[w++] = (char)html_lower((unsigned char)*p);
    }
}

/* An element a reader never sees, whose text is left out (hidden carriers of injected
 * instructions, docs/internals/text.md): the hidden attribute, aria-hidden="true", or an
 * inline style that hides it. Stylesheets and classes are not evaluated. */
static int html_hidden(const xmlNode *n)
{
    for (const xmlAttr *a = n->properties; a; a = a->next) {
        const char *name = (const char *)a->name;
        if (!name)
            continue;
        int hidden_attr = strcasecmp(name, "hidden") == 0;
        int aria = strcasecmp(name, "aria-hidden") == 0;
        int style = strcasecmp(name, "style") == 0;
        if (!hidden_attr && !aria && !style)
            continue;
        if (hidden_attr)
            return 1;
        xmlChar *v = xmlNodeGetContent((const xmlNode *)a);
        int hides = 0;
        if (v && aria) {
            const char *t = (const char *)v;
            while (*t == ' ')
                t++;
            hides = strncasecmp(t, "true", 4) == 0;
        } else if (v) {
            hides = html_style_hides((const char *)v);
        }
        xmlFree(v);
        if (hides)
            return 1;
    }
    return 0;
}

/* Called on entering a node; returns 1 to walk its children. */
static int html_enter(html_out *o, const xmlNode *n)
{
    if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
        if (n->content)
            html_text(o, n->content, strlen((const char *)n->content));
        return 0;
    }
    if (n->type != XML_ELEMENT_NODE)
        return 0; /* comments, processing instructions, DTD */
    if (html_hidden(n))
        return 0;
    switch (html_kind_of(n)) {
    case HTML_K_SKIP:
        return 0;
    case HTML_K_BR:
        html_want(o, o->pending >= HTML_SEP_LINE ? HTML_SEP_PARA : HTML_SEP_LINE);
        return 0;
    case HTML_K_LINE:
        html_want(o, HTML_SEP_LINE);
        return 1;
    case HTML_K_PARA:
        html_want(o, html_para_sep(n));
        return 1;
    case HTML_K_PRE:
        html_want(o, HTML_SEP_PARA);
        o->pre_depth++;
        return 1;
    case HTML_K_CELL:
        for (const xmlNode *s = n->prev; s; s = s->prev) {
            if (s->type == XML_ELEMENT_NODE) {
                if (html_kind_of(s) == HTML_K_CELL)
                    html_want(o, HTML_SEP_CELL);
                break;
            }
        }
        return 1;
    case HTML_K_INLINE:
        return 1;
    }
    return 1;
}

static void html_leave(html_out *o, const xmlNode *n)
{
    if (n->type != XML_ELEMENT_NODE)
        return;
    switch (html_kind_of(n)) {
    case HTML_K_LINE:
        html_want(o, HTML_SEP_LINE);
        break;
    case HTML_K_PARA:
        html_want(o, html_para_sep(n));
        break;
    case HTML_K_PRE:
        html_want(o, HTML_SEP_PARA);
        o->pre_depth--;
        break;
    default:
        break;
    }
}

/* Depth-first walk without recursion (documents can nest deeply). */
static void html_walk(html_out *o, xmlDoc *doc)
{
    xmlNode *top = (xmlNode *)doc;
    xmlNode *n = doc->children;
    while (n && !o->err) {
        int down = html_enter(o, n);
        if (down && n->children) {
            n = n->children;
            continue;
        }
        if (down)
            html_leave(o, n);
        while (n && !n->next) {
            n = n->parent;
            if (!n || n == top) {
                n = NULL;
                break;
            }
            html_leave(o, n);
        }
        if (n)
            n = n->next;
    }
}

/* The first <title> in <head> (where the parser always puts a title it meets first). */
static const xmlNode *html_find_title(xmlDoc *doc)
{
    const xmlNode *root = xmlDocGetRootElement(doc);
    if (!root)
        return NULL;
    for (const xmlNode *h = root->children; h; h = h->next) {
        if (h->type != XML_ELEMENT_NODE || strcmp((const char *)h->name, "head") != 0)
            continue;
        for (const xmlNode *t = h->children; t; t = t->next)
            if (t->type == XML_ELEMENT_NODE && strcmp((const char *)t->name, "title") == 0)
                return t;
    }
    return NULL;
}

/* ---------------------------------------------------------------- entry point */

/* Parses with libxml2 (errors silenced on this thread only: libxml2 keeps its error
 * handlers per thread), extracts the title and then the body text, and repairs the
 * result so it is valid UTF-8 whatever the input was. */
ragd_err html_to_text(const char *html, size_t len, char **out, size_t *out_len)
{
    return html_to_text_title(html, len, out, out_len, NULL);
}

ragd_err html_to_text_title(const char *html, size_t len, char **out, size_t *out_len, size_t *title_len)
{
    return html_to_text_as(html, len, NULL, out, out_len, title_len);
}

ragd_err html_to_text_as(const char *html, size_t len, const char *charset, char **out, size_t *out_len,
                         size_t *title_len)
{
    strbuf in;
    html_out o = {.pending = HTML_SEP_NONE};
    strbuf fixed;
    xmlDoc *doc = NULL;
    xmlChar *title = NULL;
    ragd_err err = RAGD_OK;

    strbuf_init(&in, 3 * HTML_MAX_INPUT + 16);
    strbuf_init(&o.sb, 4 * HTML_MAX_INPUT + 1024);
    strbuf_init(&fixed, 4 * HTML_MAX_INPUT + 1024);
    if (!out || (!html && len > 0)) {
        err = RAGD_EINVAL;
        goto out;
    }
    *out = NULL;
    if (out_len)
        *out_len = 0;
    if (title_len)
        *title_len = 0;
    size_t title_end = 0;
    if (len > HTML_MAX_INPUT) {
        err = RAGD_ETOOBIG;
        goto out;
    }
    xmlutil_init();

    const unsigned char *p = (const unsigned char *)html;
    size_t skip = 0;
    char label[41];
    const char *enc = html_pick_encoding(p, len, &skip, label, sizeof label);
    /* A charset declared by the transport (Content-Type) beats the document's own <meta>;
     * a byte order mark beats both (WHATWG). */
    if (charset && skip == 0)
        enc = charset_known(charset_canonical(charset)) ? charset_canonical(charset) : enc;
    p += skip;
    size_t n = len - skip;

    /* Whatever the charset, libxml2 gets repaired UTF-8 (it stops at a NUL byte and
     * switches to Latin-1 at the first bad UTF-8 byte otherwise). */
    if (strcmp(enc, "UTF-8") == 0)
        err = charset_append_repaired(&in, p, n);
    else
        err = charset_convert(&in, p, n, enc);
    if (err)
        goto out;

    if (in.len > 0) {
        xmlutil_handlers saved;
        xmlutil_quiet(&saved);
        doc = htmlReadMemory(in.data, (int)in.len, NULL, "UTF-8", HTML_PARSE_OPTS);
        xmlutil_restore(&saved);
    }
    strbuf_cleanup(&in);

    if (doc) {
        const xmlNode *t = html_find_title(doc);
        if (t) {
            title = xmlNodeGetContent(t);
            if (title) {
                html_text(&o, title, strlen((const char *)title));
                title_end = o.sb.len;
                html_want(&o, HTML_SEP_PARA);
            }
        }
        html_walk(&o, doc);
        if (o.err) {
            err = o.err;
            goto out;
        }
    }
    /* Text from <pre> may end in whitespace. */
    while (o.sb.len > 0 && (o.sb.data[o.sb.len - 1] == '\n' || o.sb.data[o.sb.len - 1] == ' ' ||
                            o.sb.data[o.sb.len - 1] == '\t' || o.sb.data[o.sb.len - 1] == '\r'))
        o.sb.data[--o.sb.len] = '\0';

    /* libxml2 hands out UTF-8, but a stray char reference (&#0;) must not slip through. */
    strbuf *res = &o.sb;
    if (o.sb.len > 0 && !utf8_valid(o.sb.data, o.sb.len)) {
        err = charset_append_repaired(&fixed, (const unsigned char *)o.sb.data, o.sb.len);
        res = &fixed;
        title_end = 0; /* the repair may have moved it; rare enough to do without */
    }
    if (!err && !res->data)
        err = strbuf_append(res, "", 0);
    if (err)
        goto out;
    size_t flen;
    *out = strbuf_detach(res, &flen);
    if (out_len)
        *out_len = flen;
    if (title_len)
        *title_len = title_end <= flen ? title_end : 0;
out:
    xmlFree(title);
    xmlFreeDoc(doc);
    strbuf_cleanup(&in);
    strbuf_cleanup(&o.sb);
    strbuf_cleanup(&fixed);
    return err;
}
