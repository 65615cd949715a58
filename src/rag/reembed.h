#ifndef RAGD_RAG_REEMBED_H
#define RAGD_RAG_REEMBED_H

/* Re-embedding a collection in the background (docs/internals/reembed.md): every chunk gets a
 * vector from another embedder (builtin on a worker, or the upstream embedder through
 * llm_embed, its breakers and bulkheads) while queries keep using the old vectors; the new
 * ones are stored as they come (store_write STORE_W_REEMBED_VECTORS), so a restart resumes
 * the job; when every chunk has one, one store transaction swaps them in (the collection's
 * model and dim change, its version is bumped, the in-memory vector index is replaced).
 *
 * Threads and callbacks (docs/internals/callbacks.md): a job's steps hand over through the
 * worker pool, the loop queue and the store's writer, one thread at a time; the start
 * callback of rag_reembed_start runs on the store's writer thread after the job's row was
 * committed (or refused), never inside rag_reembed_start. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "rag/engine.h"
#include "store/store.h"

struct event_base;
typedef struct rag_reembed rag_reembed;

/* Chunks read and embedded per step (one write of new vectors each). */
#define RAG_REEMBED_BATCH 256
/* An upstream batch that fails is tried again this many times in all, after 1 s, 2 s, 4 s...,
 * before the job stops as failed. */
#define RAG_REEMBED_ATTEMPTS 4

/* The jobs of a server. cfg (and what it points to) and base must outlive it. NULL: no
 * memory. */
rag_reembed *rag_reembed_new(const rag_engine_config *cfg, struct event_base *base);
/* Frees the jobs still held. Only once nothing can run any more: the loop stopped, the
 * workers joined, the store closed (a job not finished stays "running" in the store and
 * resumes at the next start). NULL ok. */
void rag_reembed_free(rag_reembed *m);

/* Resumes every job the store says is running (start-up, once the index is loaded). Any
 * thread; the reading happens on a worker. */
void rag_reembed_resume(rag_reembed *m);

/* Which model an embedder name means here: "builtin" (model absent, "builtin" or the builtin
 * embedder's name) or the configured upstream embedder's name (model absent: EMBED_MODEL).
 * false and why (422) for an unknown or unconfigured embedder or a bad model. */
bool rag_reembed_resolve(const rag_engine_config *cfg, const char *embedder, const char *model, char *out_model,
                         size_t out_cap, char *why, size_t why_cap);

/* Called once when the job's row is committed (w->status RAGD_OK, w->job_id, w->coll: the
 * job runs on) or refused (w->status and w->message: nothing runs). Store writer thread. */
typedef void (*rag_reembed_started_fn)(const store_write *w, void *ctx);

/* Starts a job for collection db: embedder ("builtin", "ollama", "openai") and the model
 * resolved by rag_reembed_resolve. RAGD_OK: started will be called. RAGD_ENOMEM, or the
 * store's refusal to queue (RAGD_EBUSY, RAGD_ECLOSED): nothing started, no callback. */
ragd_err rag_reembed_start(rag_reembed *m, const char *db, const char *embedder, const char *model,
                           rag_reembed_started_fn started, void *ctx);

#endif
