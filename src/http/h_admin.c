/* Admin overrides of the circuit breakers (docs/api.md "Admin: circuit breakers"): list them, force them
 * open, disable them, reset them. Loop thread (breaker calls take only a short mutex).
 * Authenticated by a read-write API key (RAGD_API_KEYS) or RAGD_ADMIN_TOKEN (as
 * "Authorization: Bearer" or "X-API-Key"); with neither configured the routes are off. */
#include <openssl/crypto.h>
#include <string.h>

#include "app.h"
#include "http/fields.h"
#include "http/handlers.h"
#include "upstream/llm.h"

/* Replies and returns false unless the request may use the admin routes: with API keys
 * configured, the HTTP layer has already required a read-write key (or the admin token);
 * without, the admin token is needed, compared whole (an over-long credential is refused,
 * never cut to a prefix that might match). */
static bool admin_allowed(http_request *req)
{
    if (req->app->cfg.api_keys.n > 0)
        return true;
    const char *token = req->app->cfg.admin_token;
    if (!token[0]) {
        http_reply_error(req, 403, "forbidden",
                         "admin routes are off: set RAGD_ADMIN_TOKEN (or RAGD_API_KEYS) to use them");
        return false;
    }
    size_t n = strlen(token);
    if (req->credential_too_long || strlen(req->credential) != n || CRYPTO_memcmp(req->credential, token, n) != 0) {
        http_reply_error(req, 401, "unauthorized", "admin routes need the admin token");
        return false;
    }
    return true;
}

static json_t *admin_breaker_json(breaker *b)
{
    breaker_snapshot s;
    breaker_snapshot_get(b, &s);
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:i, s:f, s:I, s:I, s:I, s:I, s:I, s:I}", "name", breaker_name(b),
                     "backend", breaker_backend(b), "op", breaker_op(b), "model", breaker_model(b), "state",
                     breaker_state_name(s.state), "failure_count", (int)s.consecutive_failures, "remaining_open_ms",
                     s.remaining_open_ms, "successes", (json_int_t)s.successes, "failures", (json_int_t)s.failures,
                     "overload", (json_int_t)s.overload, "neutral", (json_int_t)s.neutral, "not_permitted",
                     (json_int_t)s.not_permitted, "opened", (json_int_t)s.transitions[BREAKER_OPEN]);
}

/* Every breaker of the LLM backends, once even when generator and embedder share one. */
static json_t *admin_list(app *a, const char *backend, const char *op, const char *model, const char *action,
                          size_t *changed)
{
    json_t *arr = json_array();
    *changed = 0;
    for (int k = 0; k < 2; k++) {
        if (!a->llms[k])
            continue;
        breaker_registry *reg = llm_breakers(a->llms[k]);
        for (size_t i = 0; i < breaker_registry_count(reg); i++) {
            breaker *b = breaker_registry_at(reg, i);
            if ((backend && strcmp(backend, breaker_backend(b)) != 0) || (op && strcmp(op, breaker_op(b)) != 0) ||
                (model && strcmp(model, breaker_model(b)) != 0))
                continue;
            if (action) {
                if (strcmp(action, "reset") == 0)
                    breaker_reset(b);
                else if (strcmp(action, "force_open") == 0)
                    breaker_force_open(b);
                else
                    breaker_disable(b);
                (*changed)++;
            }
            json_array_append_new(arr, admin_breaker_json(b));
        }
    }
    return arr;
}

void handlers_admin_breakers_list(http_request *req)
{
    if (!admin_allowed(req))
        return;
    size_t changed;
    http_reply_json(req, 200, json_pack("{s:o}", "breakers", admin_list(req->app, NULL, NULL, NULL, NULL, &changed)));
}

void handlers_admin_breakers_set(http_request *req)
{
    if (!admin_allowed(req))
        return;
    json_t *body = http_json_object(req);
    if (!body)
        return;
    static const char *const actions[] = {"reset", "force_open", "disable", NULL};
    int action = 0;
    const char *backend = NULL, *op = NULL, *model = NULL;
    if (!json_object_get(body, "action")) {
        http_reply_error(req, 422, "validation_error", "action: is required (reset, force_open, disable)");
    } else if (fields_choice(req, body, "action", actions, 0, &action) &&
               fields_string(req, body, "backend", false, 1024, &backend) &&
               fields_string(req, body, "op", false, 16, &op) && fields_string(req, body, "model", false, 256, &model)) {
        size_t changed;
        json_t *list = admin_list(req->app, backend, op, model, actions[action], &changed);
        http_reply_json(req, 200, json_pack("{s:s, s:I, s:o}", "action", actions[action], "changed", (json_int_t)changed,
                                            "breakers", list));
    }
    json_decref(body);
}
