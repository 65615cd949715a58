/* libxml2 helpers (text/xmlutil.h). */
#include "text/xmlutil.h"

#include <libxml/parser.h>
#include <pthread.h>
#include <string.h>

static pthread_once_t xmlutil_once = PTHREAD_ONCE_INIT;

static void xmlutil_init_once(void) { xmlInitParser(); }

void xmlutil_init(void) { pthread_once(&xmlutil_once, xmlutil_init_once); }

static void xmlutil_quiet_generic(void *ctx, const char *msg, ...) {}

static void xmlutil_quiet_structured(void *ctx, xmlErrorPtr error) {}

void xmlutil_quiet(xmlutil_handlers *saved)
{
    saved->generic = xmlGenericError;
    saved->generic_ctx = xmlGenericErrorContext;
    saved->structured = xmlStructuredError;
    saved->structured_ctx = xmlStructuredErrorContext;
    xmlSetGenericErrorFunc(NULL, xmlutil_quiet_generic);
    xmlSetStructuredErrorFunc(NULL, xmlutil_quiet_structured);
}

void xmlutil_restore(const xmlutil_handlers *saved)
{
    xmlSetGenericErrorFunc(saved->generic_ctx, saved->generic);
    xmlSetStructuredErrorFunc(saved->structured_ctx, saved->structured);
}

bool xmlutil_is(const xmlNode *n, const char *local)
{
    return n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, local) == 0;
}

xmlChar *xmlutil_attr(const xmlNode *n, const char *local)
{
    for (const xmlAttr *a = n->properties; a; a = a->next)
        if (strcmp((const char *)a->name, local) == 0)
            return xmlNodeGetContent((const xmlNode *)a);
    return NULL;
}
