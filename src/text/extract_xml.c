/* XML parts of office documents and EPUB packages (text/extract_int.h). */
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <string.h>

#include "text/extract_int.h"
#include "text/xmlutil.h"

/* No network, no entity substitution (NOENT unset), no external DTD (DTDLOAD unset), no
 * XML_PARSE_HUGE: libxml2's own limits stay (depth 256, text node 10 MB). */
#define XML_OPTS (XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING | XML_PARSE_NOCDATA)

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
    xmlDoc *doc = xmlReadMemory(data, (int)len, NULL, NULL, XML_OPTS);
    const xmlError *err = doc ? NULL : xmlGetLastError();
    if (!doc)
        extract_fail(x, RAGD_EINVAL, "%s could not be read: bad XML%s%s", what, err && err->message ? ": " : "",
                     err && err->message ? err->message : "");
    xmlutil_restore(&saved);
    if (x->why && x->why_cap) { /* libxml2's messages end in a newline */
        size_t n = strlen(x->why);
        while (n > 0 && (x->why[n - 1] == '\n' || x->why[n - 1] == ' '))
            x->why[--n] = '\0';
    }
    return doc;
}
