/* libFuzzer target: the HTTP layer's JSON body handling (http_json_object + fields_*).
 * The input is the request body, as the server would have buffered it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "http/fields.h"
#include "http/request.h"
#include "http/request_int.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static app fz_app = {.cfg = {.default_db = "default"}};

/* Every reply must be a well-formed response the server could send. */
static void fz_check_reply(const http_request *req)
{
    if (req->status == 0)
        return;
    if (req->status < 400 || req->status > 599 || !req->resp_body || !req->resp_type)
        abort();
    if (strlen(req->resp_body) != req->resp_len || !utf8_valid(req->resp_body, req->resp_len))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    http_request *req = http_request_new(&fz_app, NULL, size + 1);
    if (!req)
        return 0;
    snprintf(req->request_id, sizeof req->request_id, "fuzz");
    if (size > 0 && strbuf_append(&req->body, data, size) != RAGD_OK)
        abort();

    json_t *obj = http_json_object(req);
    if (!obj) {
        if (req->status != 400 && req->status != 422)
            abort();
        fz_check_reply(req);
        goto out;
    }
    if (req->status != 0)
        abort();

    static const char *const formats[] = {"plain", "markdown", "html", NULL};
    const char *s = NULL;
    long long n = 0;
    bool b = false;
    json_t *sub = NULL;
    int choice = 0;

    if (fields_string(req, obj, "query", true, 4000, &s) && (!s || !utf8_valid(s, strlen(s))))
        abort();
    fz_check_reply(req);
    if (fields_string(req, obj, "text", false, 50, &s) && s && !utf8_valid(s, strlen(s)))
        abort();
    fields_int(req, obj, "top_k", 5, 1, 50, &n);
    if (n < 1 || n > 50)
        abort();
    fields_int(req, obj, "chunk_size", 0, -9223372036854775807LL - 1, 9223372036854775807LL, &n);
    fields_bool(req, obj, "stream", false, &b);
    if (fields_object(req, obj, "metadata", &sub) && sub && !json_is_object(sub))
        abort();
    if (fields_choice(req, obj, "format", formats, 0, &choice) && (choice < 0 || choice > 2))
        abort();
    if (fields_db(req, obj, &s) && (!s || !*s))
        abort();
    fz_check_reply(req);
    json_decref(obj);
out:
    http_request_unref(req);
    return 0;
}
