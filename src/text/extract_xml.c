/* XML parts of office documents and EPUB packages (text/extract_int.h). */
#include <libxml/SAX2.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <string.h>

#include "text/extract_int.h"
#include "text/xmlutil.h"

/* No network, no entity substitution (NOENT unset), no external DTD (DTDLOAD unset), no
 * XML_PARSE_HUGE: libxml2's own limits stay (depth 256, text node 10 MB). */
#define XML_OPTS (XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA)

/* What the SAX hooks below watch, in the parser context's _private. */
typedef struct {
    bool doctype;  /* a <!DOCTYPE> was met */
    size_t nodes;  /* elements, attributes, text and comment events so far */
    bool too_many; /* nodes went over EXTRACT_XML_NODES_MAX */
} xml_guard;

/* SAX hook for a <!DOCTYPE>: marks the parse and stops it before any declaration in the
 * DTD is read. The byte search below misses a DOCTYPE in UTF-16 (or any encoding that is
 * not ASCII-compatible); this one sees it whatever the encoding. */
static void xml_refuse_doctype(void *ctx, const xmlChar *name, const xmlChar *external_id, const xmlChar *system_id)
{
    xmlParserCtxtPtr ctxt = ctx;
    ((xml_guard *)ctxt->_private)->doctype = true;
    xmlStopParser(ctxt);
}

/* Counts n tree nodes; false (and the parser stopped) past the cap. The tree costs about
 * 120 bytes a node, so dense markup (<w:p/> repeated: 6 bytes a node) would make a tree
 * 20x the part's size, and a part may be as large as the unpacked budget (200 MiB). */
static bool xml_count(void *ctx, size_t n)
{
    xmlParserCtxtPtr ctxt = ctx;
    xml_guard *g = ctxt->_private;
    g->nodes += n;
    if (g->nodes <= EXTRACT_XML_NODES_MAX)
        return true;
    g->too_many = true;
    xmlStopParser(ctxt);
    return false;
}

static void xml_count_element(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri,
                              int nb_namespaces, const xmlChar **namespaces, int nb_attributes, int nb_defaulted,
                              const xmlChar **attributes)
{
    if (xml_count(ctx, 1 + (size_t)(nb_attributes > 0 ? nb_attributes : 0)))
        xmlSAX2StartElementNs(ctx, localname, prefix, uri, nb_namespaces, namespaces, nb_attributes, nb_defaulted,
                              attributes);
}

static void xml_count_characters(void *ctx, const xmlChar *ch, int len)
{
    if (xml_count(ctx, 1))
        xmlSAX2Characters(ctx, ch, len);
}

static void xml_count_comment(void *ctx, const xmlChar *value)
{
    if (xml_count(ctx, 1))
        xmlSAX2Comment(ctx, value);
}

static void xml_count_pi(void *ctx, const xmlChar *target, const xmlChar *data)
{
    if (xml_count(ctx, 1))
        xmlSAX2ProcessingInstruction(ctx, target, data);
}

xmlDoc *extract_xml_parse(extract_ctx *x, const char *data, size_t len, const char *what)
{
    xmlutil_init();
    if (len > (size_t)INT32_MAX) {
        extract_fail(x, RAGD_ETOOBIG, "%s could not be read: an XML part over 2 GiB", what);
        return NULL;
    }
    /* A DTD is where entity bombs and external entities live; no part ragd reads has one. */
    if (memmem(data, len, "<!DOCTYPE", 9) || memmem(data, len, "<!ENTITY", 8)) {
        extract_fail(x, RAGD_EINVAL, "%s could not be read: an XML part declares a DTD or entities, which are refused",
                     what);
        return NULL;
    }
    xmlutil_handlers saved;
    xmlutil_quiet(&saved);
    xmlDoc *doc = NULL;
    xml_guard guard = {0};
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt) {
        extract_fail(x, RAGD_ENOMEM, "out of memory");
    } else {
        ctxt->_private = &guard;
        ctxt->sax->internalSubset = xml_refuse_doctype;
        ctxt->sax->startElementNs = xml_count_element;
        ctxt->sax->characters = xml_count_characters;
        ctxt->sax->ignorableWhitespace = xml_count_characters;
        ctxt->sax->comment = xml_count_comment;
        ctxt->sax->processingInstruction = xml_count_pi;
        doc = xmlCtxtReadMemory(ctxt, data, (int)len, NULL, NULL, XML_OPTS);
        if (guard.doctype || guard.too_many) {
            xmlFreeDoc(doc);
            doc = NULL;
        }
        if (guard.doctype) {
            extract_fail(x, RAGD_EINVAL, "%s could not be read: an XML part declares a DTD or entities, which are refused",
                         what);
        } else if (guard.too_many) {
            extract_fail(x, RAGD_ETOOBIG, "%s could not be read: an XML part has over %d elements, attributes and texts",
                         what, EXTRACT_XML_NODES_MAX);
        } else if (!doc) {
            const xmlError *err = xmlCtxtGetLastError(ctxt);
            extract_fail(x, RAGD_EINVAL, "%s could not be read: bad XML%s%s", what, err && err->message ? ": " : "",
                         err && err->message ? err->message : "");
        }
        xmlFreeParserCtxt(ctxt);
    }
    xmlutil_restore(&saved);
    if (x->why && x->why_cap) { /* libxml2's messages end in a newline */
        size_t n = strlen(x->why);
        while (n > 0 && (x->why[n - 1] == '\n' || x->why[n - 1] == ' '))
            x->why[--n] = '\0';
    }
    return doc;
}
