/* The engine's cache stage: key parameters and the answer's encoding. See answer_cache.h. */
#include "rag/answer_cache.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "util/jsonmem.h"

/* v as JSON text, or NULL when out of memory — also when a jansson allocation failed since
 * `failed` was read (the text might lack a member). Releases v; NULL v gives NULL. */
static char *rag_cache_dump(json_t *v, size_t flags, unsigned long failed, size_t *len)
{
    char *text = v ? json_dumps(v, flags) : NULL;
    json_decref(v);
    if (text && jsonmem_failures() != failed) {
        free(text);
        text = NULL;
    }
    if (text)
        *len = strlen(text);
    return text;
}

char *rag_cache_params(const rag_request *r, const char *model, bool llm_in_use, size_t *len)
{
    json_t *filter = r->hold ? json_object_get(r->hold, "filter") : NULL;
    /* format shapes the answer (keep_alive does not); history never reaches here (a query
     * with history bypasses the cache) */
    json_t *p = json_pack("{s:b, s:b, s:i, s:I, s:i, s:s, s:O?, s:O?, s:b, s:O?}", "generate", r->generate, "llm",
                          r->generate && llm_in_use, "method", (int)r->method, "k", (json_int_t)r->k, "provider",
                          (int)r->provider, "model", r->generate ? model : "",
                          "filter", json_object_size(filter) ? filter : NULL, "options", r->generate ? r->options : NULL,
                          "rerank", r->rerank, "format", r->generate ? r->format : NULL);
    unsigned long failed = jsonmem_failures(); /* a member dropped silently would share answers */
    return rag_cache_dump(p, JSON_COMPACT | JSON_SORT_KEYS, failed, len);
}

char *rag_cache_encode(const rag_result *res, rag_method method, const char *answer, const char *provider,
                       const char *model, size_t *len)
{
    json_t *hits = json_array();
    bool ok = hits != NULL;
    for (size_t i = 0; ok && i < res->n; i++) {
        const rag_hit *h = &res->hits[i];
        const store_hit_row *w = &h->row;
        json_t *row = json_pack("[I, I, s, i, I, I, s, s, s?, f, f, i]", (json_int_t)w->chunk_id, (json_int_t)w->doc_rowid,
                                w->doc_id, w->ordinal, (json_int_t)w->start, (json_int_t)w->end, w->text,
                                w->metadata_json ? w->metadata_json : "{}", w->source, h->score, h->distance,
                                h->n_chunks);
        /* 13th member: the reranker's score or null; 14th, 15th: the pages (0 when none);
         * 16th: the document's title; each only when it or a later one is there */
        bool more = h->has_rerank_score || w->page > 0 || w->title;
        if (row && more &&
            json_array_append_new(row, h->has_rerank_score ? json_real(h->rerank_score) : json_null()) != 0) {
            json_decref(row);
            row = NULL;
        }
        if (row && (w->page > 0 || w->title) &&
            (json_array_append_new(row, json_integer(w->page)) != 0 ||
             json_array_append_new(row, json_integer(w->page_end)) != 0)) {
            json_decref(row);
            row = NULL;
        }
        if (row && w->title && json_array_append_new(row, json_string(w->title)) != 0) {
            json_decref(row);
            row = NULL;
        }
        ok = row && json_array_append_new(hits, row) == 0;
    }
    unsigned long failed = jsonmem_failures();
    json_t *v = ok ? json_pack("{s:i, s:s?, s:s?, s:s?, s:o}", "method", (int)method, "answer", answer, "provider",
                               provider, "model", model, "hits", hits)
                   : NULL;
    if (!ok)
        json_decref(hits);
    return rag_cache_dump(v, JSON_COMPACT, failed, len);
}

static char *rag_cache_dup(json_t *s)
{
    return json_is_string(s) ? strdup(json_string_value(s)) : NULL;
}

bool rag_cache_decode(const char *data, size_t len, rag_result *res, rag_method *method, char **answer,
                      char **provider, char **model)
{
    memset(res, 0, sizeof *res);
    *answer = *provider = *model = NULL;
    unsigned long failed = jsonmem_failures();
    json_t *v = json_loadb(data, len, 0, NULL);
    json_t *hits = json_object_get(v, "hits");
    bool ok = v && jsonmem_failures() == failed && json_is_array(hits);
    size_t n = ok ? json_array_size(hits) : 0;
    if (ok && n) {
        res->hits = calloc(n, sizeof *res->hits);
        ok = res->hits != NULL;
    }
    for (size_t i = 0; ok && i < n; i++) {
        json_t *r = json_array_get(hits, i);
        rag_hit *h = &res->hits[res->n];
        store_hit_row *w = &h->row;
        /* 11: before passages; 12: + n_chunks; 13: + the reranker's score (or null); 15: + pages;
         * 16: + the title */
        ok = json_is_array(r) && json_array_size(r) >= 11 && json_array_size(r) <= 16 && json_array_size(r) != 14;
        if (!ok)
            break;
        res->n++;
        w->chunk_id = json_integer_value(json_array_get(r, 0));
        w->doc_rowid = json_integer_value(json_array_get(r, 1));
        w->doc_id = rag_cache_dup(json_array_get(r, 2));
        w->ordinal = (int)json_integer_value(json_array_get(r, 3));
        w->start = json_integer_value(json_array_get(r, 4));
        w->end = json_integer_value(json_array_get(r, 5));
        w->text = rag_cache_dup(json_array_get(r, 6));
        w->metadata_json = rag_cache_dup(json_array_get(r, 7));
        w->source = rag_cache_dup(json_array_get(r, 8));
        h->score = json_real_value(json_array_get(r, 9));
        h->distance = json_real_value(json_array_get(r, 10));
        h->n_chunks = (int)json_integer_value(json_array_get(r, 11)); /* absent: 0, one chunk */
        h->has_rerank_score = json_is_number(json_array_get(r, 12));
        h->rerank_score = (float)json_number_value(json_array_get(r, 12));
        w->page = (int)json_integer_value(json_array_get(r, 13)); /* absent: 0, no page */
        w->page_end = (int)json_integer_value(json_array_get(r, 14));
        w->title = rag_cache_dup(json_array_get(r, 15)); /* absent: none */
        ok = w->doc_id && w->text && w->metadata_json && (w->source || json_is_null(json_array_get(r, 8))) &&
             (w->title || !json_is_string(json_array_get(r, 15))); /* a failed copy is a miss, not a row without */
    }
    if (ok) {
        *method = (rag_method)json_integer_value(json_object_get(v, "method"));
        json_t *a = json_object_get(v, "answer"), *p = json_object_get(v, "provider"), *m = json_object_get(v, "model");
        *answer = rag_cache_dup(a);
        *provider = rag_cache_dup(p);
        *model = rag_cache_dup(m);
        /* absent or null (a passage list has no answer, an extractive answer no model) is
         * not a failure; a string that could not be copied is */
        ok = (!json_is_string(a) || *answer) && (!json_is_string(p) || *provider) && (!json_is_string(m) || *model);
    }
    json_decref(v);
    if (!ok) {
        rag_result_cleanup(res);
        free(*answer);
        free(*provider);
        free(*model);
        *answer = *provider = *model = NULL;
    }
    return ok;
}
