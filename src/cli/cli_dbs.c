/* `ragd dbs` (list, create, rm), `ragd docs DB`, `ragd rm DB ID...`: collections and
 * documents over /api/dbs. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli_int.h"

/* One request with a method; the parsed 2xx answer (caller decrefs) or NULL after printing
 * why. r keeps the answer either way (its status tells a 404 apart). */
static json_t *dbs_request(const cli_opts *o, const char *method, const char *path, const char *body,
                           cli_response *r)
{
    char err[512];
    cli_request q = {.method = method, .path = path, .body = body, .len = body ? strlen(body) : 0,
                     .timeout_s = CLI_SHORT_TIMEOUT_S};
    if (cli_http_send(o->url, &q, r, err, sizeof err) != RAGD_OK) {
        fprintf(stderr, "ragd: %s\n", err);
        return NULL;
    }
    return cli_answer_object(r);
}

/* ---- dbs ---- */

static int dbs_list(const cli_opts *o)
{
    int status = CLI_EXIT_FAIL;
    cli_response r;
    cli_response_init(&r);
    json_t *resp = cli_request_object(o, "/api/dbs", NULL, CLI_SHORT_TIMEOUT_S, &r, NULL);
    if (!resp)
        goto out;
    if (o->json) {
        cli_print_raw(&r);
        status = CLI_EXIT_OK;
        goto out;
    }
    json_t *dbs = json_object_get(resp, "dbs");
    if (!json_is_array(dbs)) {
        fprintf(stderr, "ragd: the server's answer has no \"dbs\" list\n");
        goto out;
    }
    /* Column widths from the data, at least the header's. */
    int wname = 4, wdocs = 9, wchunks = 6;
    size_t i;
    json_t *d;
    json_array_foreach(dbs, i, d) {
        const char *name = json_string_value(json_object_get(d, "name"));
        char num[32];
        int len = name ? (int)strlen(name) : 1;
        if (len > wname)
            wname = len > 64 ? 64 : len;
        len = snprintf(num, sizeof num, "%lld", json_integer_value(json_object_get(d, "documents")));
        if (len > wdocs)
            wdocs = len;
        len = snprintf(num, sizeof num, "%lld", json_integer_value(json_object_get(d, "chunks")));
        if (len > wchunks)
            wchunks = len;
    }
    printf("%-*s  %*s  %*s  %s\n", wname, "NAME", wdocs, "DOCUMENTS", wchunks, "CHUNKS",
           "EMBED_MODEL");
    json_array_foreach(dbs, i, d) {
        const char *name = json_string_value(json_object_get(d, "name"));
        const char *model = json_string_value(json_object_get(d, "embed_model"));
        printf("%-*s  %*lld  %*lld  %s\n", wname, name ? name : "?", wdocs,
               json_integer_value(json_object_get(d, "documents")), wchunks,
               json_integer_value(json_object_get(d, "chunks")), model ? model : "-");
    }
    status = CLI_EXIT_OK;
out:
    json_decref(resp);
    cli_response_cleanup(&r);
    return status;
}

/* `dbs create NAME`: POST /api/dbs. 201 created, 200 it exists with these settings. */
static int dbs_create(const cli_opts *o, const char *name)
{
    int status = CLI_EXIT_FAIL;
    cli_response r;
    cli_response_init(&r);
    json_t *resp = NULL;
    json_t *req = json_pack("{s:s}", "name", name);
    char *body = NULL;
    if (!req)
        goto out;
    if (o->embedder)
        json_object_set_new(req, "embed_model", json_string(o->embedder));
    if (o->chunk_size)
        json_object_set_new(req, "chunk_size", json_integer(o->chunk_size));
    if (o->chunk_overlap >= 0)
        json_object_set_new(req, "chunk_overlap", json_integer(o->chunk_overlap));
    body = json_dumps(req, JSON_COMPACT);
    if (!body) {
        fprintf(stderr, "ragd: out of memory\n");
        goto out;
    }
    resp = dbs_request(o, "POST", "/api/dbs", body, &r);
    if (!resp)
        goto out;
    printf("%s %s (embed model %s, chunk size %lld, overlap %lld)\n", name,
           r.status == 201 ? "created" : "exists already with these settings",
           json_string_value(json_object_get(resp, "embed_model")) ?: "?",
           json_integer_value(json_object_get(resp, "chunk_size")),
           json_integer_value(json_object_get(resp, "chunk_overlap")));
    status = CLI_EXIT_OK;
out:
    free(body);
    json_decref(req);
    json_decref(resp);
    cli_response_cleanup(&r);
    return status;
}

/* Asks on the terminal; true for "y" or "yes". */
static bool dbs_confirm(const char *name, long long docs)
{
    fprintf(stderr, "delete collection '%s' and its %lld documents? [y/N] ", name, docs);
    fflush(stderr);
    char line[32];
    if (!fgets(line, sizeof line, stdin))
        return false;
    line[strcspn(line, "\r\n")] = '\0';
    return strcmp(line, "y") == 0 || strcmp(line, "Y") == 0 || strcmp(line, "yes") == 0;
}

/* `dbs rm NAME`: DELETE /api/dbs/NAME, after a question unless --yes. */
static int dbs_rm(const cli_opts *o, const char *name)
{
    int status = CLI_EXIT_FAIL;
    char path[128];
    cli_response r;
    cli_response_init(&r);
    json_t *resp = NULL;
    snprintf(path, sizeof path, "/api/dbs/%s", name);
    if (!o->yes) {
        if (isatty(STDIN_FILENO) != 1) {
            fprintf(stderr, "ragd dbs rm: deleting '%s' cannot be undone: add --yes to confirm\n", name);
            return CLI_EXIT_USAGE;
        }
        resp = dbs_request(o, "GET", path, NULL, &r);
        if (!resp)
            goto out;
        if (!dbs_confirm(name, json_integer_value(json_object_get(resp, "documents")))) {
            fprintf(stderr, "ragd: nothing deleted\n");
            goto out;
        }
        json_decref(resp);
        cli_response_cleanup(&r);
    }
    resp = dbs_request(o, "DELETE", path, NULL, &r);
    if (!resp)
        goto out;
    printf("deleted collection %s\n", name);
    status = CLI_EXIT_OK;
out:
    json_decref(resp);
    cli_response_cleanup(&r);
    return status;
}

int cli_cmd_dbs(const cli_opts *o)
{
    const char *sub = o->nargs ? o->args[0] : "list";
    bool list = strcmp(sub, "list") == 0, create = strcmp(sub, "create") == 0, rm = strcmp(sub, "rm") == 0;
    const char *why = NULL;
    if (!list && !create && !rm)
        why = "unknown subcommand (list, create or rm)";
    else if (list && o->nargs > 1)
        why = "too many arguments";
    else if (!list && o->nargs != 2)
        why = "needs one collection NAME";
    else if (!list && !cli_valid_db_name(o->args[1]))
        why = "NAME must be 1-64 of [A-Za-z0-9_.-], not starting with '.'";
    else if (!create && (o->embedder || o->chunk_size || o->chunk_overlap >= 0))
        why = "--embedder, --chunk-size and --chunk-overlap go with create";
    else if (!rm && o->yes)
        why = "--yes goes with rm";
    else if (!list && o->json)
        why = "--json goes with the listing";
    if (why) {
        fprintf(stderr, "ragd dbs: %s\n", why);
        return CLI_EXIT_USAGE;
    }
    if (create)
        return dbs_create(o, o->args[1]);
    if (rm)
        return dbs_rm(o, o->args[1]);
    return dbs_list(o);
}

/* ---- docs ---- */

/* Controls become blanks: one line per document. */
static void docs_cell_one_line(char *cell)
{
    for (char *p = cell; *p; p++) {
        if ((unsigned char)*p < 0x20)
            *p = ' ';
    }
}

/* The value of metadata[key] as text for a table cell ("-" when absent). */
static void docs_meta_cell(json_t *doc, const char *key, char *out, size_t outlen)
{
    json_t *v = json_object_get(json_object_get(doc, "metadata"), key);
    if (json_is_string(v))
        snprintf(out, outlen, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(out, outlen, "%lld", json_integer_value(v));
    else
        snprintf(out, outlen, "-");
    docs_cell_one_line(out);
}

int cli_cmd_docs(const cli_opts *o)
{
    int status = CLI_EXIT_FAIL;
    const char *db = o->args[0];
    cli_response r;
    cli_response_init(&r);
    json_t *all = json_array();
    json_t *resp = NULL;
    long long offset = 0, total = 0;
    if (!cli_valid_db_name(db)) {
        fprintf(stderr, "ragd docs: DB must be 1-64 of [A-Za-z0-9_.-], not starting with '.'\n");
        status = CLI_EXIT_USAGE;
        goto out;
    }
    if (!all)
        goto out;
    for (;;) {
        char path[160];
        snprintf(path, sizeof path, "/api/dbs/%s/documents?limit=1000&offset=%lld", db, offset);
        json_decref(resp);
        cli_response_cleanup(&r);
        resp = dbs_request(o, "GET", path, NULL, &r);
        json_t *docs = resp ? json_object_get(resp, "documents") : NULL;
        if (!resp)
            goto out;
        if (!json_is_array(docs)) {
            fprintf(stderr, "ragd: the server's answer has no \"documents\" list\n");
            goto out;
        }
        if (json_array_size(all) > CLI_MAX_KNOWN) { /* a server whose pages never end */
            fprintf(stderr, "ragd: the server's document listing does not end (over %d documents)\n",
                    CLI_MAX_KNOWN);
            goto out;
        }
        json_array_extend(all, docs);
        size_t got = json_array_size(docs);
        offset += (long long)got;
        total = json_integer_value(json_object_get(resp, "total"));
        bool truncated = json_is_true(json_object_get(resp, "truncated"));
        if (got == 0 || (!truncated && (got < 1000 || offset >= total)))
            break;
    }
    if (o->json) {
        json_t *out = json_pack("{s:s, s:I, s:O}", "db", db, "total", (json_int_t)total, "documents", all);
        char *text = out ? json_dumps(out, JSON_COMPACT) : NULL;
        json_decref(out);
        if (!text) {
            fprintf(stderr, "ragd: out of memory\n");
            goto out;
        }
        puts(text);
        free(text);
        status = CLI_EXIT_OK;
        goto out;
    }
    if (json_array_size(all) == 0) {
        printf("%s holds no documents; add some with: ragd ingest PATH --db %s\n", db, db);
        status = CLI_EXIT_OK;
        goto out;
    }
    int wid = 2;
    size_t i;
    json_t *d;
    json_array_foreach(all, i, d) {
        const char *id = json_string_value(json_object_get(d, "id"));
        int len = id ? (int)strlen(id) : 1;
        if (len > wid)
            wid = len > 80 ? 80 : len;
    }
    printf("%-*s  %6s  %10s  %-20s  %s\n", wid, "ID", "CHUNKS", "BYTES", "UPDATED", "TITLE");
    json_array_foreach(all, i, d) {
        const char *id = json_string_value(json_object_get(d, "id"));
        const char *updated = json_string_value(json_object_get(d, "updated_at"));
        char bytes[32], title[256];
        json_t *tb = json_object_get(d, "text_bytes");
        if (json_is_integer(tb))
            snprintf(bytes, sizeof bytes, "%lld", json_integer_value(tb));
        else
            docs_meta_cell(d, "bytes", bytes, sizeof bytes);
        const char *derived = json_string_value(json_object_get(d, "title"));
        if (derived)
            snprintf(title, sizeof title, "%s", derived);
        else
            docs_meta_cell(d, "title", title, sizeof title); /* a server from before "title" */
        docs_cell_one_line(title);
        printf("%-*s  %6lld  %10s  %-20s  %s\n", wid, id ? id : "?",
               json_integer_value(json_object_get(d, "chunks")), bytes, updated ? updated : "-", title);
    }
    printf("%zu of %lld documents\n", json_array_size(all), total);
    status = CLI_EXIT_OK;
out:
    json_decref(resp);
    json_decref(all);
    cli_response_cleanup(&r);
    return status;
}

/* ---- rm ---- */

int cli_cmd_rm(const cli_opts *o)
{
    const char *db = o->args[0];
    size_t failed = 0, deleted = 0;
    if (!cli_valid_db_name(db)) {
        fprintf(stderr, "ragd rm: DB must be 1-64 of [A-Za-z0-9_.-], not starting with '.'\n");
        return CLI_EXIT_USAGE;
    }
    for (size_t i = 1; i < o->nargs; i++) {
        const char *id = o->args[i];
        strbuf path;
        strbuf_init(&path, 8192);
        cli_response r;
        cli_response_init(&r);
        json_t *resp = NULL;
        if (!cli_valid_id(id) || strbuf_appendf(&path, "/api/dbs/%s/documents/", db) ||
            cli_url_escape(&path, id, true)) {
            fprintf(stderr, "ragd: %s: not a document id\n", id);
            failed++;
        } else if ((resp = dbs_request(o, "DELETE", path.data, NULL, &r)) != NULL) {
            printf("deleted %s\n", id);
            deleted++;
        } else if (r.status == 0 || r.status >= 500) {
            failed++; /* the server is gone or failing: the rest would fail alike */
            strbuf_cleanup(&path);
            cli_response_cleanup(&r);
            break;
        } else {
            failed++; /* the one-line reason (404: no such document) is printed */
        }
        json_decref(resp);
        strbuf_cleanup(&path);
        cli_response_cleanup(&r);
    }
    if (failed)
        fprintf(stderr, "ragd: %zu deleted, %zu failed\n", deleted, failed);
    return failed ? CLI_EXIT_FAIL : CLI_EXIT_OK;
}
