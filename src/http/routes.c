/* The route table: every path ragd serves, which method goes where, and whose API it speaks
 * (the shape of its errors: ragd's envelope unless said). */
#include "http/handlers.h"

const http_route handlers_routes[] = {
    {"/health", handlers_health, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_RAGD},
    {"/health/live", handlers_health_live, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_RAGD},
    {"/health/ready", handlers_health_ready, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_RAGD},
    {"/api/pool/stats", handlers_pool_stats, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_RAGD},
    {"/metrics", handlers_metrics, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_RAGD},
    {"/api/ingest", NULL, handlers_ingest, NULL, HTTP_BODY_INGEST, HTTP_DIALECT_RAGD},
    {"/api/query", NULL, handlers_query, NULL, HTTP_BODY_JSON, HTTP_DIALECT_RAGD},
    {"/api/retrieve", NULL, handlers_retrieve, NULL, HTTP_BODY_JSON, HTTP_DIALECT_RAGD},
    {"/api/dbs", handlers_dbs_list, handlers_dbs_create, NULL, HTTP_BODY_JSON, HTTP_DIALECT_RAGD},
    {"/api/dbs/{name}", handlers_dbs_get, NULL, handlers_dbs_delete, HTTP_BODY_NONE, HTTP_DIALECT_RAGD},
    {"/api/dbs/{name}/documents", handlers_documents_list, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_RAGD},
    {"/api/dbs/{name}/quarantine", handlers_quarantine_list, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_RAGD},
    {"/api/dbs/{name}/reembed", handlers_reembed_get, handlers_reembed_start, handlers_reembed_cancel, HTTP_BODY_JSON, HTTP_DIALECT_RAGD},
    {"/api/admin/breakers", handlers_admin_breakers_list, handlers_admin_breakers_set, NULL, HTTP_BODY_JSON, HTTP_DIALECT_RAGD},
    {"/api/dbs/{name}/documents/{*id}", handlers_document_get, NULL, handlers_document_delete, HTTP_BODY_NONE, HTTP_DIALECT_RAGD},
    /* The web page (h_web.c); other /assets/ paths are 404. "/" is Ollama's too (for a client
     * that does not ask for HTML), and keeps Ollama's error shape. */
    {"/assets/app.js", handlers_web_asset, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_RAGD},
    {"/assets/app.css", handlers_web_asset, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_RAGD},
    /* Ollama's API (h_ollama.c): its paths share /api with ragd's and none is ragd's own */
    {"/", handlers_web_root, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_OLLAMA},
    {"/api/tags", handlers_ollama_tags, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_OLLAMA},
    {"/api/show", NULL, handlers_ollama_show, NULL, HTTP_BODY_JSON, HTTP_DIALECT_OLLAMA},
    {"/api/version", handlers_ollama_version, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_OLLAMA},
    {"/api/ps", handlers_ollama_ps, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_OLLAMA},
    {"/api/chat", NULL, handlers_ollama_chat, NULL, HTTP_BODY_JSON, HTTP_DIALECT_OLLAMA},
    {"/api/generate", NULL, handlers_ollama_generate, NULL, HTTP_BODY_JSON, HTTP_DIALECT_OLLAMA},
    {"/api/embed", NULL, handlers_ollama_embed, NULL, HTTP_BODY_JSON, HTTP_DIALECT_OLLAMA},
    {"/api/embeddings", NULL, handlers_ollama_embeddings, NULL, HTTP_BODY_JSON, HTTP_DIALECT_OLLAMA},
    /* OpenAI's API (h_openai.c) */
    {"/v1/models", handlers_openai_models, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_OPENAI},
    {"/v1/models/{*model}", handlers_openai_model, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_OPENAI},
    {"/v1/chat/completions", NULL, handlers_openai_chat, NULL, HTTP_BODY_JSON, HTTP_DIALECT_OPENAI},
    {"/v1/embeddings", NULL, handlers_openai_embeddings, NULL, HTTP_BODY_JSON, HTTP_DIALECT_OPENAI},
};

const size_t handlers_routes_count = sizeof handlers_routes / sizeof *handlers_routes;
