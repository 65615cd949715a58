/* `ragd reembed DB --embedder E [--model M] [--wait]`: starts re-embedding a collection
 * (POST /api/dbs/DB/reembed) and, with --wait, follows its progress until it is done;
 * `ragd reembed DB --status` shows the job. See docs/internals/reembed.md. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/cli_int.h"

#define CLI_REEMBED_POLL_MS 1000

/* One request on a fresh r; the parsed 2xx answer (caller decrefs), or NULL after printing why. */
static json_t *reembed_request(const cli_opts *o, const char *path, const char *body, cli_response *r)
{
    cli_response_cleanup(r);
    cli_response_init(r);
    return cli_request_object(o, path, body, CLI_SHORT_TIMEOUT_S, r, NULL);
}

/* "DB: STATE EMBEDDER 'MODEL' DONE/TOTAL[ error: …]" */
static void print_job(const char *db, json_t *job)
{
    const char *err = json_string_value(json_object_get(job, "error"));
    printf("%s: %s %s '%s' %lld/%lld%s%s\n", db, json_string_value(json_object_get(job, "state")) ?: "?",
           json_string_value(json_object_get(job, "embedder")) ?: "?",
           json_string_value(json_object_get(job, "model")) ?: "?",
           json_integer_value(json_object_get(job, "done")), json_integer_value(json_object_get(job, "total")),
           err ? " error: " : "", err ? err : "");
}

/* Polls GET /api/dbs/DB until the job is done (0), failed or gone (1). */
static int reembed_wait(const cli_opts *o, const char *db, cli_response *r)
{
    char path[128];
    snprintf(path, sizeof path, "/api/dbs/%s", db);
    for (;;) {
        json_t *coll = reembed_request(o, path, NULL, r);
        if (!coll)
            return CLI_EXIT_FAIL;
        json_t *job = json_object_get(coll, "reembed");
        const char *state = json_string_value(json_object_get(job, "state"));
        if (!state) {
            fprintf(stderr, "ragd: the re-embedding job of '%s' is gone (cancelled)\n", db);
            json_decref(coll);
            return CLI_EXIT_FAIL;
        }
        print_job(db, job);
        int status = strcmp(state, "done") == 0 ? CLI_EXIT_OK : strcmp(state, "failed") == 0 ? CLI_EXIT_FAIL : -1;
        json_decref(coll);
        if (status >= 0)
            return status;
        struct timespec ts = {CLI_REEMBED_POLL_MS / 1000, (CLI_REEMBED_POLL_MS % 1000) * 1000000L};
        nanosleep(&ts, NULL);
    }
}

int cli_cmd_reembed(const cli_opts *o)
{
    int status = CLI_EXIT_FAIL;
    const char *db = o->args[0];
    json_t *resp = NULL, *body = NULL;
    char *text = NULL;
    cli_response r;
    cli_response_init(&r);
    if (!cli_valid_db_name(db)) {
        fprintf(stderr, "ragd reembed: DB must be 1-64 of [A-Za-z0-9_.-], not starting with '.'\n");
        status = CLI_EXIT_USAGE;
        goto out;
    }
    char path[128];
    snprintf(path, sizeof path, "/api/dbs/%s/reembed", db);
    if (o->status_only) {
        resp = reembed_request(o, path, NULL, &r);
        if (resp) {
            print_job(db, json_object_get(resp, "reembed"));
            status = CLI_EXIT_OK;
        }
        goto out;
    }
    if (!o->embedder) {
        fprintf(stderr, "ragd reembed: --embedder is required (builtin, ollama or openai)\n");
        status = CLI_EXIT_USAGE;
        goto out;
    }
    body = json_pack("{s:s}", "embedder", o->embedder);
    if (body && o->model)
        json_object_set_new(body, "model", json_string(o->model));
    text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    if (!text) {
        fprintf(stderr, "ragd: out of memory\n");
        goto out;
    }
    resp = reembed_request(o, path, text, &r);
    if (!resp)
        goto out;
    json_t *job = json_object_get(resp, "reembed");
    printf("%s: re-embedding with %s '%s' started (%lld chunks); queries use the old vectors until it is done\n",
           db, json_string_value(json_object_get(job, "embedder")) ?: "?",
           json_string_value(json_object_get(job, "model")) ?: "?", json_integer_value(json_object_get(job, "total")));
    status = o->wait ? reembed_wait(o, db, &r) : CLI_EXIT_OK;
out:
    free(text);
    json_decref(body);
    json_decref(resp);
    cli_response_cleanup(&r);
    return status;
}
