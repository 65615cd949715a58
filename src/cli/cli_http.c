/* Blocking HTTP for the command-line client: libcurl's easy API, one request at a time.
 * (The server's own upstream calls use curl multi on the event loop; a client that does one
 * thing at a time has no use for that.) */
#include <curl/curl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/cli_int.h"
#include "util/url.h"

void cli_response_init(cli_response *r)
{
    r->status = 0;
    strbuf_init(&r->body, CLI_RESPONSE_CAP);
    r->content_type[0] = '\0';
    r->streamed = false;
}

void cli_response_cleanup(cli_response *r)
{
    strbuf_cleanup(&r->body);
    cli_response_init(r);
}

typedef enum { XFER_UNDECIDED, XFER_BUFFER, XFER_STREAM } xfer_mode;

typedef struct {
    CURL *h;
    cli_response *r;
    cli_stream_fn on_stream;
    void *ud;
    xfer_mode mode;
    ragd_err write_err; /* why the write callback stopped the transfer */
} xfer;

/* Records status and Content-Type once the headers are in. */
static void xfer_headers(xfer *x)
{
    char *ct = NULL;
    curl_easy_getinfo(x->h, CURLINFO_RESPONSE_CODE, &x->r->status);
    if (curl_easy_getinfo(x->h, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct)
        snprintf(x->r->content_type, sizeof x->r->content_type, "%s", ct);
}

static size_t xfer_write(char *p, size_t size, size_t nmemb, void *ud)
{
    xfer *x = ud;
    size_t n = size * nmemb;
    if (x->mode == XFER_UNDECIDED) {
        xfer_headers(x);
        bool ok = x->r->status >= 200 && x->r->status < 300;
        bool sse = strncmp(x->r->content_type, "text/event-stream", 17) == 0;
        x->mode = (x->on_stream && ok && sse) ? XFER_STREAM : XFER_BUFFER;
        x->r->streamed = x->mode == XFER_STREAM;
    }
    if (x->mode == XFER_STREAM) {
        if (!x->on_stream(p, n, x->ud)) {
            x->write_err = RAGD_ECLOSED;
            return 0;
        }
        return n;
    }
    ragd_err e = strbuf_append(&x->r->body, p, n);
    if (e) {
        x->write_err = e;
        return 0;
    }
    return n;
}

/* base_url without trailing slashes, then path. */
static ragd_err cli_url(strbuf *url, const char *base, const char *path)
{
    size_t n = strlen(base);
    while (n > 0 && base[n - 1] == '/')
        n--;
    ragd_err e = strbuf_append(url, base, n);
    if (!e)
        e = strbuf_appends(url, path);
    return e;
}

ragd_err cli_http(const char *base_url, const char *path, const char *body, size_t len,
                  long timeout_s, cli_stream_fn on_stream, void *ud, cli_response *r, char *err,
                  size_t errlen)
{
    cli_request q = {.method = body ? "POST" : "GET", .path = path, .body = body, .len = len,
                     .timeout_s = timeout_s, .on_stream = on_stream, .ud = ud};
    return cli_http_send(base_url, &q, r, err, errlen);
}

ragd_err cli_http_send(const char *base_url, const cli_request *q, cli_response *r, char *err,
                       size_t errlen)
{
    const char *path = q->path, *body = q->body;
    size_t len = q->len;
    cli_stream_fn on_stream = q->on_stream;
    void *ud = q->ud;
    long timeout_s = q->timeout_s;
    char ctype[160];
    ragd_err e = RAGD_OK;
    CURL *h = NULL;
    struct curl_slist *hdrs = NULL, *tmp = NULL;
    char cerr[CURL_ERROR_SIZE] = "";
    strbuf url, auth;
    strbuf_init(&url, 8192);
    strbuf_init(&auth, 8192);
    err[0] = '\0';

    /* The base URL as the user gave it, for messages. */
    size_t blen = strlen(base_url);
    while (blen > 0 && base_url[blen - 1] == '/')
        blen--;

    if (cli_url(&url, base_url, path) != RAGD_OK) {
        snprintf(err, errlen, "URL too long");
        e = RAGD_EINVAL;
        goto out;
    }
    h = curl_easy_init();
    if (!h) {
        e = RAGD_ENOMEM;
        snprintf(err, errlen, "cannot create a curl handle");
        goto out;
    }
    snprintf(ctype, sizeof ctype, "Content-Type: %s", q->content_type ? q->content_type : "application/json");
    const char *headers[] = {
        body ? ctype : NULL,
        on_stream ? "Accept: text/event-stream, application/json" : "Accept: application/json",
        "Expect:", /* no 100-continue round trip for large ingest bodies */
    };
    for (size_t i = 0; i < sizeof headers / sizeof headers[0]; i++) {
        if (!headers[i])
            continue;
        tmp = curl_slist_append(hdrs, headers[i]);
        if (!tmp) {
            e = RAGD_ENOMEM;
            goto out;
        }
        hdrs = tmp;
    }
    /* A server started with RAGD_API_KEYS wants a key; the client takes it from RAGD_API_KEY. */
    const char *key = getenv("RAGD_API_KEY");
    if (key && *key) {
        if (strbuf_appendf(&auth, "Authorization: Bearer %s", key) != RAGD_OK) {
            snprintf(err, errlen, "RAGD_API_KEY is too long");
            e = RAGD_EINVAL;
            goto out;
        }
        tmp = curl_slist_append(hdrs, auth.data);
        if (!tmp) {
            e = RAGD_ENOMEM;
            goto out;
        }
        hdrs = tmp;
    }

    xfer x = {.h = h, .r = r, .on_stream = on_stream, .ud = ud, .mode = XFER_UNDECIDED};
    curl_easy_setopt(h, CURLOPT_URL, url.data);
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(h, CURLOPT_PATH_AS_IS, 1L); /* ids are paths: no ".." squashing */
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, CLI_CONNECT_TIMEOUT_S);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, timeout_s);
    curl_easy_setopt(h, CURLOPT_USERAGENT, "ragd/" RAGD_VERSION);
    curl_easy_setopt(h, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, cerr);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, xfer_write);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, &x);
    if (strcmp(q->method, "GET") != 0 && strcmp(q->method, "POST") != 0)
        curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, q->method);
    if (body) {
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }

    CURLcode rc = curl_easy_perform(h);
    if (x.mode == XFER_UNDECIDED)
        xfer_headers(&x); /* an answer without a body */
    if (rc == CURLE_OK)
        goto out;

    const char *why = cerr[0] ? cerr : curl_easy_strerror(rc);
    /* messages name the server without its user:password (a proxy's credentials in --url) */
    char url_raw[8192], url_shown[8192];
    if (blen < sizeof url_raw) {
        snprintf(url_raw, sizeof url_raw, "%.*s", (int)blen, base_url);
        url_redact(url_raw, url_shown, sizeof url_shown);
        if (strlen(url_shown) > 200) /* redacted first, then cut: the userinfo never shows */
            memcpy(url_shown + 197, "...", 4);
    } else {
        snprintf(url_shown, sizeof url_shown, "the server (a URL over %zu bytes)", sizeof url_raw);
    }
    curl_off_t connect_us = 0;
    curl_easy_getinfo(h, CURLINFO_CONNECT_TIME_T, &connect_us);
    if (rc == CURLE_WRITE_ERROR && x.write_err == RAGD_ETOOBIG) {
        e = RAGD_ETOOBIG;
        snprintf(err, errlen, "the answer from %s is larger than %zu MiB", url_shown,
                 CLI_RESPONSE_CAP >> 20);
    } else if (rc == CURLE_WRITE_ERROR && x.write_err) {
        e = x.write_err == RAGD_ENOMEM ? RAGD_ENOMEM : RAGD_ECLOSED;
        snprintf(err, errlen, "reading the answer from %s failed", url_shown);
    } else if (r->status == 0 && connect_us == 0) {
        e = RAGD_EIO;
        snprintf(err, errlen, "cannot reach %s: %s", url_shown, why);
    } else {
        e = RAGD_ECLOSED;
        snprintf(err, errlen, "request to %s failed: %s", url_shown, why);
    }
out:
    if (e && !err[0])
        snprintf(err, errlen, "%s", ragd_strerror(e));
    curl_slist_free_all(hdrs);
    if (h)
        curl_easy_cleanup(h);
    strbuf_cleanup(&url);
    strbuf_cleanup(&auth);
    return e;
}

/* Copies at most max bytes of s into out as one line: control bytes become spaces, and with
 * first_line set the copy stops at the first line end. */
static void cli_clean_line(char *out, size_t outlen, const char *s, size_t max, bool first_line)
{
    size_t o = 0;
    for (size_t i = 0; i < max && s[i] && o + 1 < outlen; i++) {
        unsigned char c = (unsigned char)s[i];
        if (first_line && (c == '\n' || c == '\r'))
            break;
        out[o++] = (c < 0x20 || c == 0x7f) ? ' ' : (char)c;
    }
    out[o] = '\0';
}

void cli_http_error_message(const cli_response *r, char *out, size_t outlen)
{
    json_t *root = NULL;
    const char *msg = NULL, *code = NULL;
    if (r->body.len > 0)
        root = json_loadb(r->body.data, r->body.len, 0, NULL);
    json_t *eo = json_is_object(root) ? json_object_get(root, "error") : NULL;
    if (json_is_object(eo)) {
        msg = json_string_value(json_object_get(eo, "message"));
        code = json_string_value(json_object_get(eo, "code"));
    } else if (json_is_object(root)) {
        /* FastAPI-style {"detail": "..."} */
        msg = json_string_value(json_object_get(root, "detail"));
    }
    char clean[512];
    if (msg) {
        cli_clean_line(clean, sizeof clean, msg, strlen(msg), false);
        if (code)
            snprintf(out, outlen, "%s (HTTP %ld %s)", clean, r->status, code);
        else
            snprintf(out, outlen, "%s (HTTP %ld)", clean, r->status);
    } else if (r->body.len > 0 && !root) {
        cli_clean_line(clean, sizeof clean, r->body.data, 200, true);
        snprintf(out, outlen, "server answered HTTP %ld%s%s", r->status, clean[0] ? ": " : "",
                 clean);
    } else {
        snprintf(out, outlen, "server answered HTTP %ld", r->status);
    }
    json_decref(root);
}

json_t *cli_answer_object(const cli_response *r)
{
    char msg[512];
    if (r->status < 200 || r->status >= 300) {
        cli_http_error_message(r, msg, sizeof msg);
        fprintf(stderr, "ragd: %s\n", msg);
        return NULL;
    }
    json_t *root = json_loadb(r->body.data ? r->body.data : "", r->body.len, 0, NULL);
    if (!json_is_object(root)) {
        fprintf(stderr, "ragd: the server's answer is not a JSON object\n");
        json_decref(root);
        return NULL;
    }
    return root;
}

json_t *cli_request_object(const cli_opts *o, const char *path, const char *body, long timeout_s,
                              cli_response *r, bool *reached)
{
    char err[512];
    if (reached)
        *reached = true;
    ragd_err e = cli_http(o->url, path, body, body ? strlen(body) : 0, timeout_s, NULL, NULL, r, err,
                          sizeof err);
    if (e) {
        fprintf(stderr, "ragd: %s\n", err);
        if (reached)
            *reached = false;
        return NULL;
    }
    return cli_answer_object(r);
}

ragd_err cli_url_escape(strbuf *sb, const char *s, bool keep_slash)
{
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        unsigned char c = *p;
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                     c == '-' || c == '.' || c == '_' || c == '~' || (keep_slash && c == '/');
        char enc[3] = {'%', hex[c >> 4], hex[c & 15]};
        ragd_err e = plain ? strbuf_append(sb, (const char *)p, 1) : strbuf_append(sb, enc, 3);
        if (e)
            return e;
    }
    return RAGD_OK;
}
