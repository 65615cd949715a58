#ifndef RAGD_HTTP_HANDLERS_H
#define RAGD_HTTP_HANDLERS_H

/* The route table and the handlers behind it (one file per resource: h_health.c,
 * h_dbs.c, h_ingest.c, h_query.c, ...; one per compatible API: h_ollama.c, h_openai.c,
 * whose shared core is compat.h), plus the helpers they share (h_common.c). */
#include <jansson.h>
#include <stdbool.h>

#include "config.h"
#include "http/request.h"
#include "http/router.h"
#include "rag/engine.h"
#include "store/store.h"

extern const http_route handlers_routes[];
extern const size_t handlers_routes_count;

void handlers_health(http_request *req);
void handlers_health_live(http_request *req);
void handlers_health_ready(http_request *req);
void handlers_pool_stats(http_request *req);
void handlers_metrics(http_request *req);

void handlers_dbs_list(http_request *req);
void handlers_dbs_create(http_request *req);
void handlers_dbs_get(http_request *req);
void handlers_dbs_delete(http_request *req);
void handlers_documents_list(http_request *req);
void handlers_quarantine_list(http_request *req); /* h_quarantine.c */
void handlers_document_get(http_request *req);
void handlers_document_delete(http_request *req);
void handlers_reembed_start(http_request *req);  /* h_reembed.c */
void handlers_reembed_get(http_request *req);
void handlers_reembed_cancel(http_request *req);
/* {"state","embedder","model","done","total","started_at","updated_at"[,"dim"][,"error"]} */
json_t *handlers_reembed_json(const store_reembed_job *j);

void handlers_ingest(http_request *req);
/* Writes the types /api/ingest takes as one document's raw body, for messages (the 415's
 * list: "text/plain, ..., application/octet-stream (the bytes decide)"), one per kind of
 * rag/formats.h, into out (always NUL-terminated when cap > 0; cut at cap). Returns the
 * length the whole list needs, as snprintf. HANDLERS_INGEST_RAW_TYPES_MAX holds it. */
#define HANDLERS_INGEST_RAW_TYPES_MAX 512
size_t handlers_ingest_raw_types(char *out, size_t cap);
/* Whether /api/ingest takes a body of this media type (lower-case, without parameters):
 * JSON, multipart/form-data, or a media type of a kind of rag/formats.h. */
bool handlers_ingest_accepts(const char *type);
void handlers_admin_breakers_list(http_request *req);
void handlers_admin_breakers_set(http_request *req);
void handlers_query(http_request *req);
void handlers_retrieve(http_request *req);

/* The web page (h_web.c): GET / (the page for a browser, else handlers_ollama_root) and
 * GET /assets/<name> for each embedded file named by its route. */
void handlers_web_root(http_request *req);
void handlers_web_asset(http_request *req);

/* The Ollama-compatible API (h_ollama.c) and the OpenAI-compatible one (h_openai.c). */
void handlers_ollama_root(http_request *req);
void handlers_ollama_tags(http_request *req);
void handlers_ollama_show(http_request *req);
void handlers_ollama_version(http_request *req);
void handlers_ollama_ps(http_request *req);
void handlers_ollama_chat(http_request *req);
void handlers_ollama_generate(http_request *req);
void handlers_ollama_embed(http_request *req);
void handlers_ollama_embeddings(http_request *req);
void handlers_openai_models(http_request *req);
void handlers_openai_model(http_request *req);
void handlers_openai_chat(http_request *req);
void handlers_openai_embeddings(http_request *req);
/* The texts of an embeddings input: a string (none when "" and empty_string_is_none) or a
 * list of at most COMPAT_MAX_INPUTS strings, pointing into input. Replies 400 ("invalid
 * input type") and returns false for anything else; *texts and *lens are malloc'd and the
 * caller's. */
bool handlers_compat_inputs(http_request *req, json_t *input, bool empty_string_is_none, const char ***texts,
                            size_t **lens, size_t *n);

/* ---- shared helpers (worker threads) ---- */

/* Borrows a store reader; replies 503 not_ready and returns NULL when the store is closing. */
store_reader *handlers_reader(http_request *req);
/* The collection name of a /api/dbs/{name}/... path (params[0]); replies 422
 * validation_error and returns NULL when it is not a valid name (util/names.h). */
const char *handlers_path_db(http_request *req);
/* Whether collection name exists, for a handler that must tell db_not_found from its own
 * not-found before a write: borrows and gives back a reader; on false the reply is sent
 * (as handlers_reader / handlers_collection). */
bool handlers_collection_exists(http_request *req, const char *name);
/* Looks a collection up by name; replies 404 db_not_found (503 when out of memory, else
 * 500) and returns false when it cannot. */
bool handlers_collection(http_request *req, store_reader *r, const char *name, store_collection *out);
/* {"name","documents","chunks","embed_model","dim","chunk_size","chunk_overlap","version","created_at"} */
json_t *handlers_collection_json(const store_collection *c);
/* Parses stored metadata JSON text into an object ({} when unparseable); NULL when out of
 * memory, which the caller must not mistake for "no metadata". */
json_t *handlers_metadata(const char *metadata_json);
/* http_reply_json under RAGD_MAX_RESPONSE_BYTES: a body whose text would exceed it is a 500
 * response_too_large (the text is never built past the cap); steals body; NULL body or no
 * memory: 503 overloaded. For responses whose size depends on stored data. */
void handlers_reply_json_capped(http_request *req, int status, json_t *body);
/* Replies for a failed store write, by its status (409/404/422; 503 for a busy or closing
 * store and for no memory; else 500). */
void handlers_reply_write_error(http_request *req, const store_write *w, const char *not_found_code);
/* Submits a write for req: holds req, and on RAGD_EBUSY/ECLOSED replies 503 and releases it. */
bool handlers_submit(http_request *req, store_write *w);
/* A write of kind that names only the collection (drop, cancel a re-embedding): allocates
 * it, sets done(w, req) and submits it as handlers_submit; done frees w. Replies 503 when
 * out of memory. False when nothing was submitted (the reply is sent). */
bool handlers_submit_collection_write(http_request *req, store_write_kind kind, const char *name,
                                      void (*done)(store_write *w, void *arg));

/* The engine's refusal or failure (rag/engine.h) in the envelope: 404 db_not_found, 409
 * embed_model_mismatch, 422 validation_error, 503 overloaded / upstream_unavailable /
 * not_ready with Retry-After, else 500 internal. */
void handlers_reply_rag_status(http_request *req, rag_status st, const char *message);
/* A held step dropped at shutdown before a worker took it: 503 not_ready, part given back. */
void handlers_reply_dropped(http_request *req);
/* Whether a client may pick model for an answer: LLM_MODEL or one of RAGD_LLM_MODELS.
 * Each model has its own breakers and bulkheads, so clients may not make new ones at will
 * (/api/query's `model`, a rag/ chat's options.model). */
bool handlers_llm_model_allowed(const ragd_config *cfg, const char *model);



#endif
