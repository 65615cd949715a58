/* Unit tests for the HTTP layer's pure parts: percent-decoding, routing, JSON bodies,
 * field validation and the error envelope. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "http/fields.h"
#include "http/request.h"
#include "http/request_int.h"
#include "http/compat.h"
#include "http/handlers.h"
#include "http/router.h"

static app test_app;

static http_request *new_req(const char *body)
{
    http_request *req = http_request_new(&test_app, NULL, 1 << 20);
    assert_non_null(req);
    snprintf(req->request_id, sizeof req->request_id, "rid-1");
    if (body)
        assert_int_equal(strbuf_append(&req->body, body, strlen(body)), RAGD_OK);
    return req;
}

/* Parses the response body and returns error.code ("" when not an error). */
static json_t *resp_json(http_request *req)
{
    assert_non_null(req->resp_body);
    json_t *j = json_loadb(req->resp_body, req->resp_len, 0, NULL);
    assert_non_null(j);
    return j;
}

static void assert_error(http_request *req, int status, const char *code)
{
    assert_int_equal(req->status, status);
    json_t *j = resp_json(req);
    json_t *err = json_object_get(j, "error");
    assert_string_equal(json_string_value(json_object_get(err, "code")), code);
    assert_string_equal(json_string_value(json_object_get(err, "request_id")), "rid-1");
    const char *msg = json_string_value(json_object_get(err, "message"));
    assert_non_null(msg);
    assert_true(strlen(msg) > 0);
    assert_string_equal(json_string_value(json_object_get(j, "detail")), msg);
    json_decref(j);
}

static void test_percent_decode(void **state)
{
    (void)state;
    char *s = http_percent_decode("a%2Fb%20c", 9);
    assert_string_equal(s, "a/b c");
    free(s);
    s = http_percent_decode("100%", 4);
    assert_null(s);
    s = http_percent_decode("%zz", 3);
    assert_null(s);
    s = http_percent_decode("x%00y", 5);
    assert_null(s);
    s = http_percent_decode("%e2%82%ac", 9);
    assert_string_equal(s, "\xe2\x82\xac");
    free(s);
}

static void h_get(http_request *r) { (void)r; }
static void h_post(http_request *r) { (void)r; }

static const http_route routes[] = {
    {"/api/dbs", h_get, h_post, NULL, HTTP_BODY_JSON, HTTP_DIALECT_RAGD},
    {"/api/dbs/{name}", h_get, NULL, h_get, HTTP_BODY_NONE, HTTP_DIALECT_RAGD},
    {"/api/dbs/{name}/documents/{*id}", h_get, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_RAGD},
    {"/api/chat", NULL, h_post, NULL, HTTP_BODY_JSON, HTTP_DIALECT_OLLAMA},
    {"/v1/models", h_get, NULL, NULL, HTTP_BODY_NONE, HTTP_DIALECT_OPENAI},
};

static http_route_result match(const char *method, const char *path, http_request **out)
{
    http_request *req = new_req(NULL);
    req->path = strdup(path);
    req->method = strcmp(method, "GET") == 0 ? HTTP_GET : strcmp(method, "POST") == 0 ? HTTP_POST : HTTP_DELETE;
    const http_route *r = NULL;
    http_route_result rc = http_route_match(routes, sizeof routes / sizeof *routes, req, &r);
    *out = req;
    return rc;
}

static void test_routing(void **state)
{
    (void)state;
    http_request *req;
    assert_int_equal(match("GET", "/api/dbs", &req), HTTP_ROUTE_FOUND);
    assert_ptr_equal(req->handler, h_get);
    http_request_unref(req);

    assert_int_equal(match("POST", "/api/dbs", &req), HTTP_ROUTE_FOUND);
    assert_ptr_equal(req->handler, h_post);
    http_request_unref(req);

    assert_int_equal(match("DELETE", "/api/dbs", &req), HTTP_ROUTE_BAD_METHOD);
    assert_string_equal(req->allow, "GET, HEAD, POST");
    http_request_unref(req);

    assert_int_equal(match("GET", "/api/dbs/my%2Fdb", &req), HTTP_ROUTE_FOUND);
    assert_int_equal(req->n_params, 1);
    assert_string_equal(req->params[0], "my/db");
    http_request_unref(req);

    assert_int_equal(match("GET", "/api/dbs/x/documents/sub/dir/file.txt", &req), HTTP_ROUTE_FOUND);
    assert_int_equal(req->n_params, 2);
    assert_string_equal(req->params[1], "sub/dir/file.txt");
    http_request_unref(req);

    assert_int_equal(match("GET", "/api/dbs/", &req), HTTP_ROUTE_NOT_FOUND);
    http_request_unref(req);
    assert_int_equal(match("GET", "/api/dbsx", &req), HTTP_ROUTE_NOT_FOUND);
    http_request_unref(req);
    assert_int_equal(match("GET", "/api/dbs/a/b", &req), HTTP_ROUTE_NOT_FOUND);
    http_request_unref(req);
    assert_int_equal(match("GET", "/api/dbs/%zz", &req), HTTP_ROUTE_BAD_ENCODING);
    http_request_unref(req);
    assert_int_equal(match("GET", "/", &req), HTTP_ROUTE_NOT_FOUND);
    http_request_unref(req);

    /* each route's dialect, found or refused */
    assert_int_equal(match("GET", "/api/dbs", &req), HTTP_ROUTE_FOUND);
    assert_int_equal(req->dialect, HTTP_DIALECT_RAGD);
    http_request_unref(req);
    assert_int_equal(match("GET", "/api/chat", &req), HTTP_ROUTE_BAD_METHOD);
    assert_int_equal(req->dialect, HTTP_DIALECT_OLLAMA);
    http_request_unref(req);
    assert_int_equal(match("GET", "/v1/models", &req), HTTP_ROUTE_FOUND);
    assert_int_equal(req->dialect, HTTP_DIALECT_OPENAI);
    http_request_unref(req);

    /* What tells a bad escape (400) from no memory (503) when decoding returns NULL. */
    assert_true(http_percent_valid("a%20b%2F", 8));
    assert_true(http_percent_valid("", 0));
    assert_false(http_percent_valid("%zz", 3));
    assert_false(http_percent_valid("%00", 3));
    assert_false(http_percent_valid("ab%2", 4));
    assert_false(http_percent_valid("%", 1));
}

static char *nested(int depth)
{
    char *s = malloc((size_t)depth * 2 + 16);
    size_t o = 0;
    s[o++] = '{';
    memcpy(s + o, "\"a\":", 4);
    o += 4;
    for (int i = 1; i < depth; i++)
        s[o++] = '[';
    for (int i = 1; i < depth; i++)
        s[o++] = ']';
    s[o++] = '}';
    s[o] = '\0';
    return s;
}

static void test_json_bodies(void **state)
{
    (void)state;
    http_request *req = new_req("{\"query\": \"x\"}");
    json_t *j = http_json_object(req);
    assert_non_null(j);
    assert_int_equal(req->status, 0);
    json_decref(j);
    http_request_unref(req);

    const char *bad[] = {"", "{", "{\"a\":}", "nul", "{\"a\":\"\xff\"}", "{\"a\":\"\\u0000\"}", "{'a':1}"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        req = new_req(bad[i]);
        assert_null(http_json_object(req));
        assert_error(req, 400, "invalid_json");
        http_request_unref(req);
    }
    const char *not_object[] = {"[]", "1", "\"s\"", "null"};
    for (size_t i = 0; i < sizeof not_object / sizeof *not_object; i++) {
        req = new_req(not_object[i]);
        assert_null(http_json_object(req));
        assert_error(req, 422, "validation_error");
        http_request_unref(req);
    }
    char *ok64 = nested(64), *bad65 = nested(65);
    req = new_req(ok64);
    j = http_json_object(req);
    assert_non_null(j);
    json_decref(j);
    http_request_unref(req);
    req = new_req(bad65);
    assert_null(http_json_object(req));
    assert_error(req, 400, "invalid_json");
    http_request_unref(req);
    /* brackets inside strings do not count */
    req = new_req("{\"a\": \"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[\"}");
    j = http_json_object(req);
    assert_non_null(j);
    json_decref(j);
    http_request_unref(req);
    free(ok64);
    free(bad65);
}

static void test_fields(void **state)
{
    (void)state;
    snprintf(test_app.cfg.default_db, sizeof test_app.cfg.default_db, "default");
    http_request *req = new_req("{\"k\": 5, \"q\": \"  hi  \", \"e\": \"   \", \"b\": true, \"f\": 1.5, \"s\": \"5\"}");
    json_t *j = http_json_object(req);
    long long k = 0;
    assert_true(fields_int(req, j, "k", 3, 1, 100, &k));
    assert_int_equal(k, 5);
    assert_true(fields_int(req, j, "missing", 3, 1, 100, &k));
    assert_int_equal(k, 3);
    assert_false(fields_int(req, j, "k", 3, 6, 100, &k));
    assert_error(req, 422, "validation_error");
    assert_false(fields_int(req, j, "f", 3, 1, 100, &k));
    assert_false(fields_int(req, j, "s", 3, 1, 100, &k));
    const char *s = NULL;
    assert_true(fields_string(req, j, "q", true, 10, &s));
    assert_string_equal(s, "  hi  ");
    assert_false(fields_string(req, j, "e", true, 10, &s));
    assert_false(fields_string(req, j, "nope", true, 10, &s));
    assert_true(fields_string(req, j, "nope", false, 10, &s));
    assert_null(s);
    assert_false(fields_string(req, j, "k", true, 10, &s));
    bool b = false;
    assert_true(fields_bool(req, j, "b", false, &b));
    assert_true(b);
    assert_false(fields_bool(req, j, "k", false, &b));
    const char *db = NULL;
    assert_true(fields_db(req, j, &db));
    assert_string_equal(db, "default");
    json_decref(j);
    http_request_unref(req);

    const char *bad_names[] = {"{\"db\": \"../etc\"}", "{\"db\": \".hidden\"}", "{\"db\": \"a b\"}", "{\"db\": 7}",
                               "{\"db\": \"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}"};
    for (size_t i = 0; i < sizeof bad_names / sizeof *bad_names; i++) {
        req = new_req(bad_names[i]);
        j = http_json_object(req);
        assert_non_null(j);
        assert_false(fields_db(req, j, &db));
        assert_error(req, 422, "validation_error");
        json_decref(j);
        http_request_unref(req);
    }
}

static void test_error_envelope_with_bad_utf8(void **state)
{
    (void)state;
    http_request *req = new_req(NULL);
    http_reply_error(req, 404, "db_not_found", "collection '%s' does not exist", "\xff\xfe");
    assert_error(req, 404, "db_not_found");
    http_request_unref(req);
}

/* The body of req's response, as parsed JSON. */
static json_t *response_json(const http_request *req)
{
    const char *text = req->resp_static ? req->resp_static : req->resp_body;
    json_t *j = json_loadb(text, req->resp_len, 0, NULL);
    assert_non_null(j);
    return j;
}

static void test_error_dialects(void **state)
{
    (void)state;
    http_request *req = new_req(NULL);
    req->dialect = HTTP_DIALECT_OLLAMA;
    http_reply_error(req, 422, "validation_error", "stream: must be a boolean");
    assert_int_equal(req->status, 400); /* no 422 in Ollama's API */
    json_t *j = response_json(req);
    assert_int_equal(json_object_size(j), 1);
    assert_string_equal(json_string_value(json_object_get(j, "error")), "stream: must be a boolean");
    json_decref(j);
    http_request_unref(req);

    const struct {
        int status;
        const char *type;
    } cases[] = {{401, "authentication_error"}, {404, "not_found_error"}, {429, "rate_limit_error"},
                 {413, "invalid_request_error"}, {503, "api_error"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        req = new_req(NULL);
        req->dialect = HTTP_DIALECT_OPENAI;
        http_reply_error(req, cases[i].status, "some_code", "bad \xff thing");
        assert_int_equal(req->status, cases[i].status);
        j = response_json(req);
        json_t *err = json_object_get(j, "error");
        assert_string_equal(json_string_value(json_object_get(err, "type")), cases[i].type);
        assert_string_equal(json_string_value(json_object_get(err, "code")), "some_code");
        assert_true(json_is_null(json_object_get(err, "param")));
        assert_non_null(json_string_value(json_object_get(err, "message")));
        json_decref(j);
        http_request_unref(req);
    }
}

static void test_compat_names(void **state)
{
    (void)state;
    char db[STORE_NAME_MAX + 1];
    assert_true(compat_rag_db("rag/docs", db));
    assert_string_equal(db, "docs");
    assert_true(compat_rag_db("rag/my-db.v2:latest", db));
    assert_string_equal(db, "my-db.v2");
    assert_false(compat_rag_db("rag/", db));
    assert_false(compat_rag_db("rag/:latest", db));
    assert_false(compat_rag_db("rag/.hidden", db));
    assert_false(compat_rag_db("rag/a/b", db));
    assert_false(compat_rag_db("rag/docs:v2", db)); /* only :latest is a collection's tag */
    assert_false(compat_rag_db("llama3.2", db));
    assert_false(compat_rag_db("RAG/docs", db));
    char long_name[80];
    memset(long_name, 'a', sizeof long_name);
    memcpy(long_name, "rag/", 4);
    long_name[4 + STORE_NAME_MAX + 1] = '\0';
    assert_false(compat_rag_db(long_name, db));

    assert_true(compat_model_name_ok("llama3.2:latest"));
    assert_true(compat_model_name_ok("hf.co/org/model@sha256:ab+c_d-e"));
    assert_false(compat_model_name_ok(""));
    assert_false(compat_model_name_ok("a b"));
    assert_false(compat_model_name_ok("a\"b"));
    char big[COMPAT_MODEL_MAX + 2];
    memset(big, 'm', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    assert_false(compat_model_name_ok(big));
    big[sizeof big - 2] = '\0';
    assert_true(compat_model_name_ok(big));
}

/* The one route table: no pattern twice (Ollama's paths share /api/ with ragd's), every
 * /v1/ route speaks OpenAI, every Ollama path Ollama, and ragd's own routes ragd. */
static void test_route_table_dialects(void **state)
{
    (void)state;
    static const char *const ollama[] = {"/", "/api/tags", "/api/show", "/api/version", "/api/ps", "/api/chat",
                                         "/api/generate", "/api/embed", "/api/embeddings"};
    size_t n_ollama = 0;
    for (size_t i = 0; i < handlers_routes_count; i++) {
        const http_route *r = &handlers_routes[i];
        for (size_t j = i + 1; j < handlers_routes_count; j++)
            assert_string_not_equal(r->pattern, handlers_routes[j].pattern);
        bool is_ollama = false;
        for (size_t k = 0; k < sizeof ollama / sizeof *ollama; k++)
            is_ollama = is_ollama || strcmp(r->pattern, ollama[k]) == 0;
        n_ollama += is_ollama;
        http_dialect want = strncmp(r->pattern, "/v1/", 4) == 0 ? HTTP_DIALECT_OPENAI
                            : is_ollama                         ? HTTP_DIALECT_OLLAMA
                                                                : HTTP_DIALECT_RAGD;
        assert_int_equal(r->dialect, want);
    }
    assert_int_equal(n_ollama, sizeof ollama / sizeof *ollama);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_percent_decode),
        cmocka_unit_test(test_routing),
        cmocka_unit_test(test_json_bodies),
        cmocka_unit_test(test_fields),
        cmocka_unit_test(test_error_envelope_with_bad_utf8),
        cmocka_unit_test(test_error_dialects),
        cmocka_unit_test(test_compat_names),
        cmocka_unit_test(test_route_table_dialects),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
