#ifndef RAGD_TEXT_XMLUTIL_H
#define RAGD_TEXT_XMLUTIL_H

/* Small libxml2 helpers shared by the HTML reader (html.c) and the document extractors
 * (extract_xml.c, extract_office.c, extract_epub.c). */
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <stdbool.h>

/* libxml2's error handlers as they were before xmlutil_quiet. */
typedef struct {
    xmlGenericErrorFunc generic;
    void *generic_ctx;
    xmlStructuredErrorFunc structured;
    void *structured_ctx;
} xmlutil_handlers;

/* xmlInitParser, once per process, from whichever thread comes first. Call it before a parse. */
void xmlutil_init(void);
/* Silences libxml2's error output on this thread (it keeps its handlers per thread and
 * prints to stderr by default), saving the handlers in *saved for xmlutil_restore. The
 * last error stays readable with xmlGetLastError until xmlutil_restore. */
void xmlutil_quiet(xmlutil_handlers *saved);
void xmlutil_restore(const xmlutil_handlers *saved);

/* Whether n is an element whose local name (prefix ignored) is local. */
bool xmlutil_is(const xmlNode *n, const char *local);
/* The value of n's attribute of that local name, malloc'd by libxml2 (xmlFree), or NULL. */
xmlChar *xmlutil_attr(const xmlNode *n, const char *local);

#endif
