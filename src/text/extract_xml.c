/* XML parts of office documents and EPUB packages (text/extract_int.h). */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <pthread.h>
#include <string.h>

#include "text/extract_int.h"

/* No network, no entity substitution (NOENT unset), no external DTD (DTDLOAD unset), no
 * XML_PARSE_HUGE: libxml2's own limits stay (depth 256, text node 10 MB). */
#define XML_OPTS (XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA)

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init_once(void) { xmlInitParser(); }

static void xml_quiet_generic(void *ctx, const char *msg, ...) {}

static void xml_quiet_structured(void *ctx, xmlErrorPtr error) {}

/* SAX hook for a <!DOCTYPE>: marks the parse and stops it before any declaration in the
 * DTD is read. The byte search below misses a DOCTYPE in UTF-16 (or any encoding that is
 * not ASCII-compatible); this one sees it whatever the encoding. */
static void xml_refuse_doctype(void *ctx, const xmlChar *name, const xmlChar *external_id, const xmlChar *system_id)
{
    xmlParserCtxtPtr ctxt = ctx;
    ctxt->_private = ctxt; /* any non-NULL mark */
    xmlStopParser(ctxt);
}

xmlDoc *extract_xml_parse(extract_ctx *x, const char *data, size_t len, const char *what)
{
    pthread_once(&xml_once, xml_init_once);
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
    /* libxml2 keeps its error handlers per thread: silenced on this one, then restored. */
    xmlGenericErrorFunc old_generic = xmlGenericError;
    void *old_generic_ctx = xmlGenericErrorContext;
    xmlStructuredErrorFunc old_structured = xmlStructuredError;
    void *old_structured_ctx = xmlStructuredErrorContext;
    xmlSetGenericErrorFunc(NULL, xml_quiet_generic);
    xmlSetStructuredErrorFunc(NULL, xml_quiet_structured);
    xmlDoc *doc = NULL;
    bool doctype = false;
    xmlParserCtxtPtr ctxt = xmlNewParserCtxt();
    if (!ctxt) {
        extract_fail(x, RAGD_ENOMEM, "out of memory");
    } else {
        ctxt->sax->internalSubset = xml_refuse_doctype;
        doc = xmlCtxtReadMemory(ctxt, data, (int)len, NULL, NULL, XML_OPTS);
        doctype = ctxt->_private != NULL;
        if (doctype) {
            xmlFreeDoc(doc);
            doc = NULL;
            extract_fail(x, RAGD_EINVAL, "%s could not be read: an XML part declares a DTD or entities, which are refused",
                         what);
        } else if (!doc) {
            const xmlError *err = xmlCtxtGetLastError(ctxt);
            extract_fail(x, RAGD_EINVAL, "%s could not be read: bad XML%s%s", what, err && err->message ? ": " : "",
                         err && err->message ? err->message : "");
        }
        xmlFreeParserCtxt(ctxt);
    }
    xmlSetGenericErrorFunc(old_generic_ctx, old_generic);
    xmlSetStructuredErrorFunc(old_structured_ctx, old_structured);
    if (x->why && x->why_cap) { /* libxml2's messages end in a newline */
        size_t n = strlen(x->why);
        while (n > 0 && (x->why[n - 1] == '\n' || x->why[n - 1] == ' '))
            x->why[--n] = '\0';
    }
    return doc;
}
