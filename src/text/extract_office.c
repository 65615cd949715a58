/* DOCX (word/document.xml) and ODT (content.xml) to text (text/extract_int.h): one
 * paragraph per paragraph, headings as markdown '#' lines so that the chunker starts a
 * chunk at each and the heading paths name them. Elements are matched by local name.
 *   DOCX: w:p; its w:pPr/w:pStyle "Heading1".."Heading9" (or "Title": level 1) or
 *         w:outlineLvl makes it a heading; w:t text, w:tab, w:br/w:cr; table cells end
 *         with " | ", rows with a line; deleted text (w:delText), field codes
 *         (w:instrText) and the fallback copy of alternate content (mc:Fallback) left out.
 *         Styles named otherwise (a localised "Überschrift1") are plain paragraphs.
 *   ODT:  office:body's text:h (level from text:outline-level) and text:p; text:s (c
 *         spaces), text:tab, text:line-break; runs of white space collapse as ODF says;
 *         tracked deletions (text:tracked-changes) left out. */
#include <libxml/tree.h>
#include <stdlib.h>
#include <string.h>

#include "text/extract_int.h"
#include "text/xmlutil.h"

typedef struct {
    strbuf *out;
    ragd_err err;
    bool odf;       /* ODT white-space rules */
    bool space;     /* ODT: the last byte written was collapsible white space */
} office_w;

static void office_put(office_w *w, const char *s, size_t n)
{
    if (!w->err && n)
        w->err = strbuf_append(w->out, s, n);
}

/* Ends a paragraph: a blank line unless the text is empty or ends in one. */
static void office_para_end(office_w *w)
{
    strbuf *o = w->out;
    while (o->len > 0 && (o->data[o->len - 1] == ' ' || o->data[o->len - 1] == '\t'))
        o->data[--o->len] = '\0';
    if (o->len == 0)
        return;
    if (o->len >= 2 && o->data[o->len - 1] == '\n' && o->data[o->len - 2] == '\n')
        return;
    office_put(w, o->data[o->len - 1] == '\n' ? "\n" : "\n\n", o->data[o->len - 1] == '\n' ? 1 : 2);
    w->space = true;
}

static void office_heading(office_w *w, int level)
{
    static const char hashes[] = "###### ";
    if (level < 1)
        level = 1;
    if (level > 6)
        level = 6;
    office_put(w, hashes + 6 - level, (size_t)level + 1);
}

static const xmlNode *office_child(const xmlNode *n, const char *local)
{
    for (const xmlNode *c = n ? n->children : NULL; c; c = c->next)
        if (xmlutil_is(c, local))
            return c;
    return NULL;
}

/* ---------------------------------------------------------------- DOCX */

/* The heading level of a w:p (0: none). */
static int docx_level(const xmlNode *p)
{
    const xmlNode *ppr = office_child(p, "pPr");
    int level = 0;
    xmlChar *v = NULL;
    const xmlNode *style = office_child(ppr, "pStyle");
    if (style && (v = xmlutil_attr(style, "val")) != NULL) {
        const char *s = (const char *)v;
        if (strncmp(s, "Heading", 7) == 0 && s[7] >= '1' && s[7] <= '9' && s[8] == '\0')
            level = s[7] - '0';
        else if (strcmp(s, "Title") == 0)
            level = 1;
        xmlFree(v);
    }
    const xmlNode *outline = office_child(ppr, "outlineLvl");
    if (!level && outline && (v = xmlutil_attr(outline, "val")) != NULL) {
        int l = atoi((const char *)v);
        if (l >= 0 && l <= 8)
            level = l + 1;
        xmlFree(v);
    }
    return level;
}

static void docx_walk(office_w *w, const xmlNode *n)
{
    for (const xmlNode *c = n->children; c && !w->err; c = c->next) {
        if (c->type != XML_ELEMENT_NODE)
            continue;
        const char *name = (const char *)c->name;
        if (strcmp(name, "p") == 0) {
            int level = docx_level(c);
            if (level)
                office_heading(w, level);
            docx_walk(w, c);
            office_para_end(w);
        } else if (strcmp(name, "t") == 0) {
            for (const xmlNode *t = c->children; t; t = t->next)
                if (t->type == XML_TEXT_NODE && t->content)
                    office_put(w, (const char *)t->content, strlen((const char *)t->content));
        } else if (strcmp(name, "tab") == 0 && c->parent && xmlutil_is(c->parent, "r")) {
            office_put(w, "\t", 1);
        } else if (strcmp(name, "br") == 0 || strcmp(name, "cr") == 0) {
            office_put(w, "\n", 1);
        } else if (strcmp(name, "tc") == 0) {
            docx_walk(w, c);
            /* a cell's paragraphs ended with a blank line: the cells of a row on one line */
            while (w->out->len > 0 && w->out->data[w->out->len - 1] == '\n')
                w->out->data[--w->out->len] = '\0';
            office_put(w, " | ", 3);
        } else if (strcmp(name, "tr") == 0) {
            docx_walk(w, c);
            if (w->out->len >= 3 && memcmp(w->out->data + w->out->len - 3, " | ", 3) == 0)
                strbuf_truncate(w->out, w->out->len - 3);
            office_put(w, "\n", 1);
        } else if (strcmp(name, "delText") == 0 || strcmp(name, "instrText") == 0 || strcmp(name, "Fallback") == 0 ||
                   strcmp(name, "pPr") == 0 || strcmp(name, "rPr") == 0) {
            continue;
        } else {
            docx_walk(w, c);
        }
    }
}

/* The office document's main XML part, parsed. */
static xmlDoc *office_part(extract_ctx *x, const char *bytes, size_t len, const char *what, const char *part,
                           ragd_err *e)
{
    extract_zip *z = extract_zip_open(x, bytes, len, what);
    *e = RAGD_EINVAL;
    if (!z)
        return NULL;
    char *data = NULL;
    size_t n = 0;
    xmlDoc *doc = NULL;
    *e = extract_zip_read(x, z, part, what, &data, &n);
    if (*e == RAGD_ENOTFOUND)
        *e = RAGD_EINVAL;
    if (*e == RAGD_OK && (doc = extract_xml_parse(x, data, n, what)) == NULL)
        *e = RAGD_EINVAL;
    free(data);
    extract_zip_close(z);
    return doc;
}

static ragd_err office_done(extract_ctx *x, office_w *w, const char *what)
{
    if (w->err == RAGD_ETOOBIG)
        return extract_fail(x, w->err, "%s could not be read: its text is over %zu bytes", what, x->lim->max_text);
    if (w->err)
        return extract_fail(x, w->err, "out of memory");
    strbuf *o = w->out;
    while (o->len > 0 && (o->data[o->len - 1] == '\n' || o->data[o->len - 1] == ' '))
        o->data[--o->len] = '\0';
    return RAGD_OK;
}

ragd_err extract_docx(extract_ctx *x, const char *bytes, size_t len, strbuf *out)
{
    ragd_err e;
    xmlDoc *doc = office_part(x, bytes, len, "DOCX", "word/document.xml", &e);
    if (!doc)
        return e;
    office_w w = {.out = out};
    docx_walk(&w, (const xmlNode *)doc);
    xmlFreeDoc(doc);
    return office_done(x, &w, "DOCX");
}

/* ---------------------------------------------------------------- ODT */

/* ODF text: every run of white space is one space (the spec's collapsing rule). */
static void odt_text(office_w *w, const char *s)
{
    for (; *s && !w->err; s++) {
        bool ws = *s == ' ' || *s == '\t' || *s == '\n' || *s == '\r';
        if (ws) {
            if (!w->space)
                office_put(w, " ", 1);
            w->space = true;
        } else {
            office_put(w, s, 1);
            w->space = false;
        }
    }
}

static void odt_walk(office_w *w, const xmlNode *n)
{
    for (const xmlNode *c = n->children; c && !w->err; c = c->next) {
        if (c->type == XML_TEXT_NODE) {
            if (c->content)
                odt_text(w, (const char *)c->content);
            continue;
        }
        if (c->type != XML_ELEMENT_NODE)
            continue;
        const char *name = (const char *)c->name;
        if (strcmp(name, "h") == 0 || strcmp(name, "p") == 0) {
            office_para_end(w);
            w->space = true; /* leading white space of a paragraph goes */
            if (name[0] == 'h') {
                xmlChar *v = xmlutil_attr(c, "outline-level");
                office_heading(w, v ? atoi((const char *)v) : 1);
                xmlFree(v);
            }
            odt_walk(w, c);
            office_para_end(w);
        } else if (strcmp(name, "s") == 0) {
            xmlChar *v = xmlutil_attr(c, "c");
            int k = v ? atoi((const char *)v) : 1;
            xmlFree(v);
            for (int i = 0; i < k && i < 64; i++)
                office_put(w, " ", 1);
            w->space = false;
        } else if (strcmp(name, "tab") == 0) {
            office_put(w, "\t", 1);
        } else if (strcmp(name, "line-break") == 0) {
            office_put(w, "\n", 1);
            w->space = true;
        } else if (strcmp(name, "tracked-changes") == 0 || strcmp(name, "automatic-styles") == 0 ||
                   strcmp(name, "font-face-decls") == 0 || strcmp(name, "scripts") == 0) {
            continue;
        } else {
            odt_walk(w, c);
        }
    }
}

ragd_err extract_odt(extract_ctx *x, const char *bytes, size_t len, strbuf *out)
{
    ragd_err e;
    xmlDoc *doc = office_part(x, bytes, len, "ODT", "content.xml", &e);
    if (!doc)
        return e;
    office_w w = {.out = out, .odf = true, .space = true};
    /* only office:body holds the document's text */
    const xmlNode *root = xmlDocGetRootElement(doc);
    const xmlNode *body = office_child(root, "body");
    if (body)
        odt_walk(&w, body);
    xmlFreeDoc(doc);
    return office_done(x, &w, "ODT");
}
