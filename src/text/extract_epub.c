/* EPUB (text/extract_int.h): META-INF/container.xml names the package (OPF); its spine
 * gives the reading order of manifest items, each XHTML read by the HTML reader
 * (text/html.h) and its body appended in turn, a blank line between; dc:title comes first. The
 * deadline is checked before each chapter; every entry counts against max_inflated. */
#include <libxml/tree.h>
#include <stdlib.h>
#include <string.h>

#include "text/extract_int.h"
#include "text/html.h"
#include "text/xmlutil.h"
#include "util/hex.h"

#define EPUB_PATH_MAX 1024 /* bytes of an entry name */

/* The first element named local under n, depth first. */
static const xmlNode *epub_find(const xmlNode *n, const char *local)
{
    for (const xmlNode *c = n ? n->children : NULL; c; c = c->next) {
        if (xmlutil_is(c, local))
            return c;
        const xmlNode *f = epub_find(c, local);
        if (f)
            return f;
    }
    return NULL;
}

/* The manifest's items sorted by id (ties in document order), so that each spine entry is
 * found by binary search: a linear scan per entry made a package of 60,000 items cost
 * minutes of a worker (3.6e9 comparisons) from a 320 KB upload. */
typedef struct {
    xmlChar *id;
    const xmlNode *item;
    size_t order;
} epub_item;

typedef struct {
    epub_item *v;
    size_t n;
} epub_manifest;

static int epub_item_cmp(const void *a, const void *b)
{
    const epub_item *x = a, *y = b;
    int c = strcmp((const char *)x->id, (const char *)y->id);
    if (c)
        return c;
    return x->order < y->order ? -1 : x->order > y->order;
}

static void epub_manifest_cleanup(epub_manifest *m)
{
    for (size_t i = 0; i < m->n; i++)
        xmlFree(m->v[i].id);
    free(m->v);
    m->v = NULL;
    m->n = 0;
}

/* RAGD_ENOMEM or RAGD_OK; items without an id are left out. */
static ragd_err epub_manifest_index(const xmlNode *manifest, epub_manifest *m)
{
    size_t cap = 0;
    for (const xmlNode *c = manifest->children; c; c = c->next)
        cap += xmlutil_is(c, "item");
    m->v = calloc(cap ? cap : 1, sizeof *m->v);
    m->n = 0;
    if (!m->v)
        return RAGD_ENOMEM;
    for (const xmlNode *c = manifest->children; c; c = c->next) {
        xmlChar *id = xmlutil_is(c, "item") ? xmlutil_attr(c, "id") : NULL;
        if (!id)
            continue;
        m->v[m->n] = (epub_item){.id = id, .item = c, .order = m->n};
        m->n++;
    }
    qsort(m->v, m->n, sizeof *m->v, epub_item_cmp);
    return RAGD_OK;
}

/* The first item (in document order) whose id is idref, or NULL. */
static const xmlNode *epub_manifest_find(const epub_manifest *m, const char *idref)
{
    size_t lo = 0, hi = m->n; /* the first entry whose id is >= idref */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp((const char *)m->v[mid].id, idref) < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < m->n && strcmp((const char *)m->v[lo].id, idref) == 0 ? m->v[lo].item : NULL;
}

/* dir + href (a relative URL: percent-decoded, fragment dropped, "./" and "../" resolved)
 * into out. false when it does not fit or climbs above the archive's root. */
static bool epub_resolve(const char *dir, const char *href, char *out, size_t cap)
{
    char raw[EPUB_PATH_MAX];
    size_t n = 0;
    size_t dl = strlen(dir);
    if (dl >= sizeof raw)
        return false;
    memcpy(raw, dir, dl);
    n = dl;
    for (const char *p = href; *p && *p != '#' && *p != '?'; p++) {
        char c = *p;
        int hi = c == '%' ? hex_digit_value((unsigned char)p[1]) : -1;
        int lo = hi >= 0 ? hex_digit_value((unsigned char)p[2]) : -1;
        if (lo >= 0) {
            c = (char)(hi * 16 + lo);
            p += 2;
        }
        if (c == '\0' || n + 1 >= sizeof raw)
            return false;
        raw[n++] = c;
    }
    raw[n] = '\0';
    /* normalise segment by segment */
    size_t o = 0;
    char *save = NULL;
    for (char *seg = strtok_r(raw, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
        if (strcmp(seg, ".") == 0)
            continue;
        if (strcmp(seg, "..") == 0) {
            if (o == 0)
                return false;
            while (o > 0 && out[o - 1] != '/')
                o--;
            if (o > 0)
                o--; /* the slash */
            continue;
        }
        size_t sl = strlen(seg);
        if (o + sl + 2 > cap)
            return false;
        if (o > 0)
            out[o++] = '/';
        memcpy(out + o, seg, sl);
        o += sl;
    }
    out[o] = '\0';
    return o > 0;
}

/* Reads and parses one XML entry. */
static xmlDoc *epub_xml(extract_ctx *x, extract_zip *z, const char *name, ragd_err *e)
{
    char *data = NULL;
    size_t n = 0;
    *e = extract_zip_read(x, z, name, "EPUB", &data, &n);
    if (*e == RAGD_ENOTFOUND)
        *e = RAGD_EINVAL;
    xmlDoc *doc = NULL;
    if (!*e && (doc = extract_xml_parse(x, data, n, "EPUB")) == NULL)
        *e = RAGD_EINVAL;
    free(data);
    return doc;
}

/* One chapter: the entry through the HTML reader, appended after a blank line. */
static ragd_err epub_chapter(extract_ctx *x, extract_zip *z, const char *name, strbuf *out)
{
    char *data = NULL, *text = NULL;
    size_t n = 0, tl = 0;
    ragd_err e = extract_zip_read(x, z, name, "EPUB", &data, &n);
    if (e == RAGD_ENOTFOUND) /* a spine item missing from the archive: skipped */
        return RAGD_OK;
    if (e)
        return e;
    size_t title = 0;
    e = html_to_text_title(data, n, &text, &tl, &title);
    free(data);
    /* A chapter's <title> is often the book's, repeated in every chapter, and its heading
     * is in the body anyway: the body only. */
    size_t from = title;
    while (from < tl && (text[from] == '\n' || text[from] == ' '))
        from++;
    if (e == RAGD_ENOMEM)
        return extract_fail(x, e, "out of memory");
    if (e)
        return extract_fail(x, e, "EPUB could not be read: chapter %s: %s", name, ragd_strerror(e));
    if (tl > from && out->len > 0)
        e = strbuf_append(out, "\n\n", 2);
    if (!e)
        e = strbuf_append(out, text + from, tl - from);
    free(text);
    if (e == RAGD_ETOOBIG)
        return extract_fail(x, e, "EPUB could not be read: its text is over %zu bytes", x->lim->max_text);
    if (e)
        return extract_fail(x, e, "out of memory");
    return RAGD_OK;
}

ragd_err extract_epub(extract_ctx *x, const char *bytes, size_t len, strbuf *out, size_t *title_len)
{
    extract_zip *z = extract_zip_open(x, bytes, len, "EPUB");
    xmlDoc *container = NULL, *opf = NULL;
    xmlChar *opf_path = NULL, *title = NULL;
    epub_manifest index = {0};
    ragd_err e = RAGD_EINVAL;
    *title_len = 0;
    if (!z)
        goto out;
    container = epub_xml(x, z, "META-INF/container.xml", &e);
    if (!container)
        goto out;
    const xmlNode *rootfile = epub_find((const xmlNode *)container, "rootfile");
    opf_path = rootfile ? xmlutil_attr(rootfile, "full-path") : NULL;
    char opf_name[EPUB_PATH_MAX];
    if (!opf_path || !epub_resolve("", (const char *)opf_path, opf_name, sizeof opf_name)) {
        e = extract_fail(x, RAGD_EINVAL, "EPUB could not be read: container.xml names no package file");
        goto out;
    }
    opf = epub_xml(x, z, opf_name, &e);
    if (!opf)
        goto out;
    char dir[EPUB_PATH_MAX];
    snprintf(dir, sizeof dir, "%s", opf_name);
    char *slash = strrchr(dir, '/');
    if (slash)
        slash[1] = '\0';
    else
        dir[0] = '\0';

    const xmlNode *meta = epub_find((const xmlNode *)opf, "metadata");
    const xmlNode *t = meta ? epub_find(meta, "title") : NULL;
    title = t ? xmlNodeGetContent(t) : NULL;
    if (title && *title) {
        const char *s = (const char *)title;
        size_t n = strlen(s);
        for (size_t i = 0; i < n; i++) /* one line, no control characters */
            if ((unsigned char)s[i] < 0x20)
                ((char *)title)[i] = ' ';
        if ((e = strbuf_append(out, s, n)) != RAGD_OK) {
            e = extract_fail(x, e, e == RAGD_ENOMEM ? "out of memory" : "EPUB could not be read: title too long");
            goto out;
        }
        *title_len = out->len;
    }
    const xmlNode *manifest = epub_find((const xmlNode *)opf, "manifest");
    const xmlNode *spine = epub_find((const xmlNode *)opf, "spine");
    if (!manifest || !spine) {
        e = extract_fail(x, RAGD_EINVAL, "EPUB could not be read: the package has no manifest or spine");
        goto out;
    }
    if ((e = epub_manifest_index(manifest, &index)) != RAGD_OK) {
        e = extract_fail(x, e, "out of memory");
        goto out;
    }
    for (const xmlNode *ref = spine->children; ref && !e; ref = ref->next) {
        if (!xmlutil_is(ref, "itemref"))
            continue;
        if ((e = extract_check_time(x, "EPUB")) != RAGD_OK)
            break;
        xmlChar *idref = xmlutil_attr(ref, "idref");
        const xmlNode *item = idref ? epub_manifest_find(&index, (const char *)idref) : NULL;
        xmlFree(idref);
        xmlChar *href = item ? xmlutil_attr(item, "href") : NULL;
        char name[EPUB_PATH_MAX];
        if (href && epub_resolve(dir, (const char *)href, name, sizeof name))
            e = epub_chapter(x, z, name, out);
        xmlFree(href);
    }
out:
    epub_manifest_cleanup(&index);
    xmlFree(opf_path);
    xmlFree(title);
    xmlFreeDoc(container);
    xmlFreeDoc(opf);
    extract_zip_close(z);
    return e;
}
