/* GET /api/dbs/{name}/quarantine: the chunks the prompt-injection screen quarantined at
 * ingest (docs/api.md, docs/internals/fence.md) — kept in the store, never put in a prompt
 * or an extractive answer, listed here for review with a short preview. */
#include <jansson.h>

#include "http/fields.h"
#include "http/handlers.h"
#include "store/store.h"

#define QUARANTINE_PAGE_DEFAULT 100
#define QUARANTINE_PAGE_MAX 1000

static void quarantine_list_work(http_request *req)
{
    const char *name = handlers_path_db(req);
    long long limit = 0, offset = 0;
    if (!name)
        return;
    if (!fields_arg_int(req, "limit", QUARANTINE_PAGE_DEFAULT, 1, QUARANTINE_PAGE_MAX, &limit) ||
        !fields_arg_int(req, "offset", 0, 0, INT64_MAX, &offset))
        return;
    store_reader *r = handlers_reader(req);
    if (!r)
        return;
    store_collection c;
    store_quarantined *list = NULL;
    size_t n = 0;
    int64_t total = 0;
    if (!handlers_collection(req, r, name, &c))
        goto out;
    ragd_err rc = store_quarantine_list(r, c.id, (size_t)limit, (size_t)offset, &list, &n, &total);
    if (rc) {
        http_reply_error(req, rc == RAGD_ENOMEM ? 503 : 500, rc == RAGD_ENOMEM ? "overloaded" : "internal",
                         "listing quarantined chunks failed: %s", ragd_strerror(rc));
        goto out;
    }
    json_t *arr = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(arr, json_pack("{s:s, s:i, s:f, s:s?, s:s}", "doc_id", list[i].doc_id, "chunk",
                                             list[i].ordinal, "score", (double)list[i].score, "rule", list[i].rule,
                                             "preview", list[i].preview));
    http_reply_json(req, 200,
                    json_pack("{s:s, s:I, s:I, s:I, s:o}", "db", c.name, "total", (json_int_t)total, "limit",
                              (json_int_t)limit, "offset", (json_int_t)offset, "chunks", arr));
out:
    store_quarantined_free(list, n);
    store_reader_release(r);
}

void handlers_quarantine_list(http_request *req) { http_defer(req, quarantine_list_work); }
