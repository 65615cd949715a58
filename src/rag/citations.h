#ifndef RAGD_RAG_CITATIONS_H
#define RAGD_RAG_CITATIONS_H

/* Citation markers in an answer (docs/internals/passages.md): "[n]", "[n, m]" / "[n; m]",
 * "[n-m]" (also with an en dash), spaces allowed inside; "[n][m]" is two markers. Numbers
 * are 1 to 4 digits, a marker at most RAG_CITATION_MAX bytes. A marker is checked against
 * the sources 1..n_sources the answer was given: numbers outside are dropped (a range is
 * narrowed to the sources), a marker left with none is removed with the spaces and tabs
 * just before it. Anything else in brackets is text. Pure functions: any thread. */
#include <stddef.h>

#include "util/err.h"
#include "util/strbuf.h"

#define RAG_CITATION_MAX 40

/* Appends text[0..len) to out with its markers checked. Only ASCII bytes are removed, so
 * valid UTF-8 stays valid. Filtering pieces cut at rag_citations_safe_end gives, joined,
 * the same text as filtering the whole. RAGD_ENOMEM / RAGD_ETOOBIG from out. */
ragd_err rag_citations_filter(const char *text, size_t len, size_t n_sources, strbuf *out);

/* Where a stream may be cut for filtering, at or before upto and not before from: never
 * inside a marker that may still be growing (an '[' less than RAG_CITATION_MAX bytes
 * before upto with no ']' after it), nor after spaces or tabs (they may precede a marker
 * that is removed). */
size_t rag_citations_safe_end(const char *text, size_t from, size_t upto);

/* The sources text[0..len) cites, in 1..n_sources: sorted, each once; at most cap of them
 * written to out. Returns how many were written. */
size_t rag_citations_list(const char *text, size_t len, size_t n_sources, int *out, size_t cap);

#endif
