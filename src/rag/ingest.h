#ifndef RAGD_RAG_INGEST_H
#define RAGD_RAG_INGEST_H

/* Ingest apart from HTTP (docs/internals/ingest.md): documents → text (text/extract.h:
 * HTML, PDF, DOCX, ODT, EPUB, reStructuredText, legacy charsets, gzip), titles
 * and heading paths → chunks → embeddings (builtin on a worker, or the collection's
 * upstream embedder from the loop, with the builtin fallback for a new collection under
 * RAGD_EMBEDDER=auto) → one write to the store, reported after its commit. /api/ingest is
 * an adapter that parses a request into a job and renders the outcome.
 *
 * Threads and callbacks (docs/internals/callbacks.md): a job is built by one thread
 * (rag_ingest_new, rag_ingest_add) and started by rag_ingest_run on a worker. on_done comes
 * exactly once per started job and never inside rag_ingest_run, on whichever thread ends the
 * job — the store's writer (after the commit), a worker (the builtin fallback) or the loop
 * (the upstream embedder failed) — possibly before rag_ingest_run has returned on its own
 * thread. The job is freed right after on_done returns. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rag/engine.h"
#include "rag/formats.h" /* rag_format, rag_format_of_source */
#include "store/store.h"

#define RAG_INGEST_ID_MAX 256        /* bytes of a document id */
#define RAG_INGEST_WARNING_MAX 600   /* bytes of the outcome's warning, NUL included */

/* 1-RAG_INGEST_ID_MAX bytes without control characters (the caller checks UTF-8). */
bool rag_ingest_id_valid(const char *id);

/* One submitted document. Everything is copied by rag_ingest_add. */
typedef struct {
    const char *id;            /* NULL: the SHA-256 of the submitted bytes */
    const char *text;          /* the submitted bytes: any bytes (binary for PDF, DOCX, ODT,
                                * EPUB, gzip, AUTO); read into text by the run, on a worker */
    size_t len;
    rag_format format;
    const char *charset;       /* the declared charset of text kinds ("iso-8859-1"), or NULL:
                                * undeclared (UTF-8, else a guess: text/extract.h) */
    const char *source;        /* a file name or URL, or NULL */
    const char *metadata_json; /* the metadata object to store, as JSON text */
    const char *title;         /* the metadata's title, or NULL (text/doccontext.h) */
    size_t title_len;
} rag_document;

typedef struct rag_ingest rag_ingest;

/* A job for up to max_docs documents into collection db (a valid name). NULL: no memory. */
rag_ingest *rag_ingest_new(rag_engine *e, const char *db, size_t max_docs);
/* Adds a document: its bytes copied and hashed (the hash is the default id and the
 * duplicate check); nothing is read yet. RAG_OK; RAG_E_OVERLOADED (no memory, or max_docs
 * reached), why says what. */
rag_status rag_ingest_add(rag_ingest *j, const rag_document *d, char *why, size_t why_cap);
/* How many documents were added. */
size_t rag_ingest_docs(const rag_ingest *j);
/* The id a document got (its own, or the hash). i < the number added. */
const char *rag_ingest_doc_id(const rag_ingest *j, size_t i);
/* How many of document i's chunks the injection screen quarantined (or, with
 * RAGD_INJECTION_QUARANTINE=off, flagged). Valid during on_done. */
size_t rag_ingest_doc_quarantined(const rag_ingest *j, size_t i);
/* Frees a job that was never run. NULL ok. */
void rag_ingest_free(rag_ingest *j);

/* What an ingest came to. Valid during on_done. */
typedef struct {
    rag_status status;         /* RAG_OK: committed (or every document already stored) */
    const char *message;       /* why, when status != RAG_OK */
    const store_write *write;  /* RAG_E_STORE: the store's refusal (its status and message) */
    const char *db;
    size_t documents;          /* as submitted, duplicates included */
    size_t duplicates;         /* already stored with the same content */
    int64_t chunks;            /* chunks written */
    size_t quarantined;        /* of them, quarantined (flagged when quarantine is off) */
    bool created;              /* the collection was created by this ingest */
    const char *embedder;      /* "builtin" or the upstream embedder's name */
    const char *embed_model;   /* the collection's embedding model */
    const char *warning;       /* "" or what the client should know (the builtin fallback) */
    double embed_ms;           /* the upstream embedding call's duration; 0: none was made */
} rag_ingest_outcome;

typedef void (*rag_ingest_done_fn)(const rag_ingest_outcome *o, const rag_ingest *j, void *ctx);

/* Runs the job: the collection is looked up, the documents already stored unchanged are
 * skipped, the rest read into text (extracted), chunked and embedded, then written. Worker
 * thread (it reads the store, extracts and chunks on the calling thread). RAG_OK: on_done
 * will come. Any other status: nothing was stored, no callback will come, why says what
 * (RAG_E_MISMATCH, RAG_E_INVALID — a document that cannot be read, named by its id or
 * source: "document 'x.pdf': PDF could not be read: ..." —, RAG_E_OVERLOADED,
 * RAG_E_NOT_READY, RAG_E_INTERNAL). The job is taken either way. */
rag_status rag_ingest_run(rag_ingest *j, rag_ingest_done_fn on_done, void *ctx, char *why, size_t why_cap);

#endif
