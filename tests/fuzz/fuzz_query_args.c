/* libFuzzer target: a query string as the HTTP layer decodes it (http_percent_decode,
 * http_percent_valid) into the request's arguments, then read back (http_arg_get,
 * fields_arg_int). The input, up to its first NUL, is the raw query string: pairs split at
 * '&', a pair at its first '='. Checks: decoding fails exactly when the text is not valid
 * (a malformed escape or an escaped NUL); decoded text is never longer and holds no NUL;
 * text without '%' decodes to itself; an integer argument read back is within its range or
 * the default, and a refusal is a 400/422 in the envelope. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "http/fields.h"
#include "http/request.h"
#include "http/request_int.h"
#include "http/router.h"
#include "util/utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static app fz_app;

/* Decodes s[0..n) and checks the decoder against the validator; NULL when invalid. */
static char *fz_decode(const char *s, size_t n)
{
    char *d = http_percent_decode(s, n);
    bool valid = http_percent_valid(s, n);
    if ((d != NULL) != valid)
        abort();
    if (d && (strlen(d) > n || (!memchr(s, '%', n) && (strlen(d) != n || memcmp(d, s, n) != 0))))
        abort();
    return d;
}

static void fz_check_int(http_request *req, const char *name, long long def, long long min, long long max)
{
    long long v = 0;
    req->status = 0;
    if (fields_arg_int(req, name, def, min, max, &v)) {
        if (req->status != 0 || (v != def && (v < min || v > max)))
            abort();
        if (!http_arg_get(req, name) && v != def)
            abort();
        return;
    }
    if ((req->status != 400 && req->status != 422) || !req->resp_body ||
        !utf8_valid(req->resp_body, req->resp_len))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *q = malloc(size + 1);
    http_request *req = http_request_new(&fz_app, NULL, 0);
    if (!q || !req)
        goto out;
    memcpy(q, data, size);
    q[size] = '\0';
    snprintf(req->request_id, sizeof req->request_id, "fuzz");
    for (char *pair = q; pair && *pair && req->n_args < HTTP_MAX_ARGS;) {
        char *amp = strchr(pair, '&');
        size_t len = amp ? (size_t)(amp - pair) : strlen(pair);
        char *eq = memchr(pair, '=', len);
        size_t klen = eq ? (size_t)(eq - pair) : len;
        char *k = fz_decode(pair, klen);
        char *v = eq ? fz_decode(eq + 1, len - klen - 1) : strdup("");
        if (!k || !v) {
            free(k);
            free(v);
            req->bad_query = true;
        } else {
            req->args[req->n_args].key = k;
            req->args[req->n_args].value = v;
            req->n_args++;
        }
        pair = amp ? amp + 1 : NULL;
    }
    for (size_t i = 0; i < req->n_args; i++) { /* the first of a name is the one read */
        const char *got = http_arg_get(req, req->args[i].key);
        if (!got)
            abort();
        size_t first = 0;
        while (strcmp(req->args[first].key, req->args[i].key) != 0)
            first++;
        if (got != req->args[first].value)
            abort();
    }
    fz_check_int(req, "limit", 100, 1, 1000);
    fz_check_int(req, "offset", 0, 0, INT64_MAX);
    fz_check_int(req, "k", -5, -9223372036854775807LL - 1, 9223372036854775807LL);
out:
    free(q);
    http_request_unref(req);
    return 0;
}
