/* Unit tests of the command-line client (src/cli): options, folder walking, reading, batching,
 * progress, SSE parsing, error messages, and the commands against a tiny in-process HTTP
 * server on loopback (one canned answer per connection). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/cli_int.h"

/* ---- helpers ---- */

static void write_file(const char *dir, const char *name, const char *data, size_t n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    if (n)
        assert_int_equal(fwrite(data, 1, n, f), n);
    fclose(f);
}

static void make_dir(const char *dir, const char *name)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    assert_int_equal(mkdir(path, 0755), 0);
}

static void remove_tree(const char *dir)
{
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    assert_int_equal(system(cmd), 0);
}

/* The tree used by the walking tests:
 *   a.txt b.md bad.txt(invalid UTF-8) .hidden.txt .git/config.md img.png noext
 *   sub/c.html sub/e.HTM sub/deep/d.markdown sub/.x/y.md
 *   link -> sub (folder link) filelink.md -> a.txt  broken.md -> missing
 *   "x\xff.txt" (name not UTF-8)  empty.txt (0 bytes) */
static char *make_tree(void)
{
    char *root = strdup("/tmp/ragd_cli_test_XXXXXX");
    assert_non_null(mkdtemp(root));
    write_file(root, "a.txt", "alpha\n", 6);
    write_file(root, "b.md", "# Bee\n", 6);
    write_file(root, "bad.txt", "ok \xff\xfe bad", 10);
    write_file(root, ".hidden.txt", "hidden", 6);
    make_dir(root, ".git");
    write_file(root, ".git/config.md", "git", 3);
    write_file(root, "img.png", "\x89PNG", 4);
    write_file(root, "noext", "x", 1);
    make_dir(root, "sub");
    write_file(root, "sub/c.html", "<p>see</p>", 10);
    write_file(root, "sub/e.HTM", "<p>e</p>", 8);
    make_dir(root, "sub/deep");
    write_file(root, "sub/deep/d.markdown", "dee", 3);
    make_dir(root, "sub/.x");
    write_file(root, "sub/.x/y.md", "y", 1);
    char p[4096], t[4096];
    snprintf(p, sizeof p, "%s/link", root);
    snprintf(t, sizeof t, "%s/sub", root);
    assert_int_equal(symlink(t, p), 0);
    snprintf(p, sizeof p, "%s/filelink.md", root);
    assert_int_equal(symlink("a.txt", p), 0);
    snprintf(p, sizeof p, "%s/broken.md", root);
    assert_int_equal(symlink("missing.md", p), 0);
    write_file(root, "x\xff.txt", "name", 4);
    write_file(root, "empty.txt", "", 0);
    return root;
}

/* Redirects fd 1 and 2 into temporary files while a command runs. */
typedef struct {
    int saved_out, saved_err;
    FILE *out, *err;
    char *out_text, *err_text;
} capture;

static void capture_start(capture *c)
{
    fflush(stdout);
    fflush(stderr);
    c->out = tmpfile();
    c->err = tmpfile();
    assert_non_null(c->out);
    assert_non_null(c->err);
    c->saved_out = dup(1);
    c->saved_err = dup(2);
    dup2(fileno(c->out), 1);
    dup2(fileno(c->err), 2);
}

static char *slurp(FILE *f)
{
    long n = ftell(f);
    char *s = calloc(1, (size_t)n + 1);
    assert_non_null(s);
    rewind(f);
    if (n > 0)
        assert_int_equal(fread(s, 1, (size_t)n, f), (size_t)n);
    return s;
}

static void capture_end(capture *c)
{
    fflush(stdout);
    fflush(stderr);
    dup2(c->saved_out, 1);
    dup2(c->saved_err, 2);
    close(c->saved_out);
    close(c->saved_err);
    fseek(c->out, 0, SEEK_END);
    fseek(c->err, 0, SEEK_END);
    c->out_text = slurp(c->out);
    c->err_text = slurp(c->err);
    fclose(c->out);
    fclose(c->err);
}

static void capture_free(capture *c)
{
    free(c->out_text);
    free(c->err_text);
}

static int run(capture *c, int argc, const char **argv)
{
    capture_start(c);
    int rc = cli_main(argc, (char **)argv);
    capture_end(c);
    return rc;
}

/* ---- a one-answer-per-connection HTTP server on loopback ---- */

#define SRV_MAX 16

typedef struct {
    int fd;
    int port;
    pthread_t th;
    int expect;                  /* connections to serve */
    const char *answers[SRV_MAX]; /* full raw responses by arrival; NULL: the ingest echo */
    const char *health;          /* the answer to GET /health (not counted); NULL: defaults */
    /* Answers by content, whatever the order of arrival: a request whose head or body holds
     * match[k] gets match_answer[k] (before answers[]). */
    const char *match[4], *match_answer[4];
    /* Requests in flight together: from arrival gather_from on, up to `gather` requests are
     * read and held before any is answered (those with a match answer first, then the others
     * last-come first); the next connection is awaited gather_wait_ms at most (10 s when 0),
     * so a client sending one at a time is not stuck but is seen holding fewer. */
    int gather_from, gather, gather_wait_ms;
    const char *after_gather; /* the answer to every request after the held ones (NULL: as above) */
    int most_held;            /* the requests held unanswered at once */
    char *bodies[SRV_MAX];    /* request bodies received, by arrival */
    char *heads[SRV_MAX];     /* request heads received */
    int got;
} fake_srv;

/* Answers an ingest body with its own document count (a raw body is one document). */
static char *ingest_echo(const char *body)
{
    json_t *root = json_loads(body, 0, NULL);
    size_t n = root ? json_array_size(json_object_get(root, "documents")) : 1;
    const char *db = json_string_value(json_object_get(root, "db"));
    char payload[256], *out = malloc(512);
    snprintf(payload, sizeof payload,
             "{\"db\":\"%s\",\"documents\":%zu,\"chunks\":%zu,\"duplicates\":1,\"ids\":[]}",
             db ? db : "default", n, 2 * n);
    snprintf(out, 512,
             "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
             "Connection: close\r\n\r\n%s",
             strlen(payload), payload);
    json_decref(root);
    return out;
}

static char *json_answer(int status, const char *reason, const char *body);

/* Reads one request from c into a NUL-terminated buffer; *head_end: where the body starts. */
static char *srv_read_request(int c, size_t *head_end)
{
    size_t cap = 32 << 20, len = 0, content_length = 0;
    char *buf = malloc(cap + 1);
    *head_end = 0;
    for (;;) {
        ssize_t r = read(c, buf + len, cap - len);
        if (r <= 0)
            break;
        len += (size_t)r;
        buf[len] = '\0';
        if (!*head_end) {
            char *e = strstr(buf, "\r\n\r\n");
            if (e) {
                *head_end = (size_t)(e - buf) + 4;
                char *cl = strcasestr(buf, "Content-Length:");
                if (cl && cl < e)
                    content_length = strtoul(cl + 15, NULL, 10);
            }
        }
        if (*head_end && len >= *head_end + content_length)
            break;
    }
    buf[len] = '\0';
    return buf;
}

/* The answer to request i (a copy to free); *matched: it came from match_answer. */
static char *srv_answer_for(fake_srv *s, int i, bool after_gather, bool *matched)
{
    *matched = false;
    for (int k = 0; k < 4 && s->match[k]; k++) {
        if (strstr(s->heads[i], s->match[k]) || strstr(s->bodies[i], s->match[k])) {
            *matched = true;
            return strdup(s->match_answer[k]);
        }
    }
    if (after_gather && s->after_gather)
        return strdup(s->after_gather);
    return s->answers[i] ? strdup(s->answers[i]) : ingest_echo(s->bodies[i]);
}

static void srv_reply(int c, char *ans)
{
    ssize_t w = write(c, ans, strlen(ans));
    (void)w;
    free(ans);
    close(c);
}

static void *srv_main(void *ud)
{
    fake_srv *s = ud;
    int held[SRV_MAX], held_at[SRV_MAX], nheld = 0;
    bool gathered = false;
    for (int i = 0; i < s->expect && i < SRV_MAX; i++) {
        bool gathering = !gathered && s->gather > 0 && i >= s->gather_from;
        if (gathering && nheld > 0) {
            struct pollfd pfd = {.fd = s->fd, .events = POLLIN};
            if (poll(&pfd, 1, s->gather_wait_ms ? s->gather_wait_ms : 10000) <= 0)
                gathering = false; /* no more in flight: answer what is held */
        }
        int c = -1;
        if (gathering || nheld == 0) {
            c = accept(s->fd, NULL, NULL);
            if (c < 0)
                break;
        }
        size_t head_end = 0;
        char *buf = c >= 0 ? srv_read_request(c, &head_end) : NULL;
        if (buf && strncmp(buf, "GET /health ", 12) == 0 && (!s->answers[i] || s->health)) {
            /* `ragd ingest` asks for the limits first: answered aside, not counted */
            srv_reply(c, json_answer(200, "OK", s->health ? s->health
                                                          : "{\"default_db\":\"default\",\"limits\":"
                                                            "{\"max_body_bytes\":10485760}}"));
            free(buf);
            i--;
            continue;
        }
        if (buf) {
            s->heads[i] = strndup(buf, head_end);
            s->bodies[i] = strdup(buf + head_end);
            free(buf);
            s->got++;
        }
        if (gathering) {
            held[nheld] = c;
            held_at[nheld] = i;
            nheld++;
            if (nheld > s->most_held)
                s->most_held = nheld;
            if (nheld < s->gather)
                continue;
        }
        if (nheld > 0) {
            /* answer the held requests: matched ones (failures) first, then last-come first */
            for (int pass = 0; pass < 2; pass++) {
                for (int h = nheld - 1; h >= 0; h--) {
                    if (held[h] < 0)
                        continue;
                    bool matched;
                    char *ans = srv_answer_for(s, held_at[h], false, &matched);
                    if (matched == (pass == 0)) {
                        srv_reply(held[h], ans);
                        held[h] = -1;
                    } else {
                        free(ans);
                    }
                }
            }
            nheld = 0;
            gathered = true;
            if (c < 0)
                i--; /* the wait ended with no connection: arrival i is still to come */
            continue;
        }
        bool matched;
        srv_reply(c, srv_answer_for(s, i, gathered, &matched));
    }
    return NULL;
}

static void srv_start(fake_srv *s, int expect)
{
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(s->fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(s->fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(s->fd, 16), 0);
    socklen_t al = sizeof a;
    getsockname(s->fd, (struct sockaddr *)&a, &al);
    s->port = ntohs(a.sin_port);
    s->expect = expect;
    assert_int_equal(pthread_create(&s->th, NULL, srv_main, s), 0);
}

static void srv_stop(fake_srv *s)
{
    shutdown(s->fd, SHUT_RDWR);
    pthread_join(s->th, NULL);
    close(s->fd);
}

static void srv_free(fake_srv *s)
{
    for (int i = 0; i < SRV_MAX; i++) {
        free(s->bodies[i]);
        free(s->heads[i]);
    }
}

/* A port with nothing listening (bound then closed). */
static int closed_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bind(fd, (struct sockaddr *)&a, sizeof a);
    socklen_t al = sizeof a;
    getsockname(fd, (struct sockaddr *)&a, &al);
    close(fd);
    return ntohs(a.sin_port);
}

static char *json_answer(int status, const char *reason, const char *body)
{
    char *out = malloc(strlen(body) + 256);
    sprintf(out,
            "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n"
            "Connection: close\r\n\r\n%s",
            status, reason, strlen(body), body);
    return out;
}

/* ---- format, ids ---- */

static void test_format_for(void **state)
{
    assert_string_equal(cli_format_for("a.txt"), "text");
    assert_string_equal(cli_format_for("a.text"), "text");
    assert_string_equal(cli_format_for("a.md"), "markdown");
    assert_string_equal(cli_format_for("README.MD"), "markdown");
    assert_string_equal(cli_format_for("x.markdown"), "markdown");
    assert_string_equal(cli_format_for("a.html"), "html");
    assert_string_equal(cli_format_for("A.HTM"), "html");
    assert_string_equal(cli_format_for("a.tar.txt"), "text");
    assert_null(cli_format_for("a.mdx"));
    assert_null(cli_format_for("a.txt.gz"));
    assert_null(cli_format_for("noext"));
    assert_null(cli_format_for(".md"));
    assert_null(cli_format_for("a."));
}

static void test_kind_of(void **state)
{
    cli_file f;
    cli_kind_of("x/a.PDF", &f);
    assert_false(f.text_kind);
    assert_false(f.junk);
    assert_string_equal(f.content_type, "application/pdf");
    cli_kind_of("a.docx", &f);
    assert_string_equal(f.content_type,
                        "application/vnd.openxmlformats-officedocument.wordprocessingml.document");
    cli_kind_of("a.odt", &f);
    assert_string_equal(f.content_type, "application/vnd.oasis.opendocument.text");
    cli_kind_of("a.epub", &f);
    assert_string_equal(f.content_type, "application/epub+zip");
    cli_kind_of("changelog.Debian.gz", &f);
    assert_false(f.text_kind);
    assert_string_equal(f.content_type, "application/gzip");
    assert_false(f.junk);
    cli_kind_of("tests.TAR.gz", &f); /* a compressed archive or picture is no document */
    assert_true(f.junk);
    cli_kind_of("refcard.dvi.gz", &f);
    assert_true(f.junk);
    cli_kind_of(".gz", &f);
    assert_false(f.junk);
    cli_kind_of("x/.hidden.gz", &f);
    assert_false(f.junk);
    cli_kind_of("doc/README", &f); /* no extension: text if UTF-8, else sniffed */
    assert_true(f.text_kind);
    assert_null(f.format);
    assert_string_equal(f.content_type, "application/octet-stream");
    cli_kind_of("a.rst", &f);
    assert_true(f.text_kind);
    assert_string_equal(f.format, "rst"); /* rag/formats.h: every text kind has its JSON format */
    assert_string_equal(f.content_type, "text/x-rst");
    cli_kind_of("page.XHTML", &f);
    assert_string_equal(f.format, "html");
    assert_string_equal(f.content_type, "text/html");
    cli_kind_of("main.c", &f); /* unknown: text if UTF-8, else sniffed */
    assert_true(f.text_kind);
    assert_false(f.junk);
    assert_string_equal(f.content_type, "application/octet-stream");
    cli_kind_of("logo.PNG", &f);
    assert_true(f.junk);
    assert_false(f.text_kind);
    cli_kind_of("dir.d/notes.html", &f); /* a dot in a folder name is no extension */
    assert_string_equal(f.format, "html");
    assert_string_equal(f.content_type, "text/html");
    cli_kind_of("dir.d/notes", &f);
    assert_null(f.format);
    assert_true(f.text_kind);
}

static void test_url_escape_and_text_start(void **state)
{
    strbuf sb;
    strbuf_init(&sb, 64);
    assert_int_equal(cli_url_escape(&sb, "a b/c%d&e=f.~_-\xc3\xa9", true), RAGD_OK);
    assert_string_equal(sb.data, "a%20b/c%25d%26e%3Df.~_-%C3%A9");
    strbuf_reset(&sb);
    assert_int_equal(cli_url_escape(&sb, "x/../y", false), RAGD_OK);
    assert_string_equal(sb.data, "x%2F..%2Fy");
    strbuf_reset(&sb);
    char longer[100];
    memset(longer, '/', sizeof longer - 1);
    longer[sizeof longer - 1] = '\0';
    assert_int_equal(cli_url_escape(&sb, longer, false), RAGD_ETOOBIG); /* the cap holds */
    strbuf_cleanup(&sb);

    assert_int_equal(cli_text_start("abc", 3), 0);
    assert_int_equal(cli_text_start("\xEF\xBB\xBF" "abc", 6), 3);
    assert_int_equal(cli_text_start("a\0b", 3), SIZE_MAX);
    assert_int_equal(cli_text_start("caf\xe9", 4), SIZE_MAX); /* Latin-1: goes raw */
    assert_int_equal(cli_text_start("", 0), 0);
}

static void test_printable(void **state)
{
    (void)state;
    char out[16];
    /* a name's escape sequence or newline never reaches the terminal as it is */
    assert_string_equal(cli_printable("d/e\x1b]0;X\x07.md", out, sizeof out), "d/e?]0;X?.md");
    assert_string_equal(cli_printable("a\nb\x7f", out, sizeof out), "a?b?");
    assert_string_equal(cli_printable("caf\xc3\xa9", out, sizeof out), "caf\xc3\xa9"); /* UTF-8 kept */
    assert_string_equal(cli_printable("0123456789abcdefXYZ", out, sizeof out), "0123456789abcde");
}

static void test_valid_id(void **state)
{
    char id[600];
    assert_true(cli_valid_id("a/b.md"));
    assert_true(cli_valid_id("caf\xc3\xa9.md"));
    assert_false(cli_valid_id(""));
    assert_false(cli_valid_id("a\nb.md"));
    assert_false(cli_valid_id("a\x7f.md"));
    assert_false(cli_valid_id("a\xc2\x85.md")); /* U+0085, a C1 control */
    assert_false(cli_valid_id("a\xff.md"));
    memset(id, 'a', 256);
    id[256] = '\0';
    assert_true(cli_valid_id(id));
    id[256] = 'a';
    id[257] = '\0';
    assert_false(cli_valid_id(id));
    /* The server counts bytes: 128 two-byte characters fit, 129 do not. */
    for (int i = 0; i < 129; i++)
        memcpy(id + 2 * i, "\xc3\xa9", 2);
    id[258] = '\0';
    assert_false(cli_valid_id(id));
    id[256] = '\0';
    assert_true(cli_valid_id(id));
}

static void test_db_name(void **state)
{
    assert_true(cli_valid_db_name("default"));
    assert_true(cli_valid_db_name("a.b-c_9"));
    assert_false(cli_valid_db_name(""));
    assert_false(cli_valid_db_name(".x"));
    assert_false(cli_valid_db_name("../etc"));
    assert_false(cli_valid_db_name("a b"));
    char n[70];
    memset(n, 'x', 65);
    n[65] = '\0';
    assert_false(cli_valid_db_name(n));
    n[64] = '\0';
    assert_true(cli_valid_db_name(n));
}

/* ---- walking ---- */

static void test_walk_tree(void **state)
{
    char *root = make_tree();
    char err[256];
    char *devnull_buf = NULL;
    size_t devnull_len = 0;
    FILE *warn = open_memstream(&devnull_buf, &devnull_len);
    cli_walk w;
    cli_walk_init(&w);
    assert_int_equal(cli_walk_add(&w, root, warn, err, sizeof err), RAGD_OK);
    fclose(warn);

    /* Ids start with the folder argument's own name (its path from the parent). */
    const char *rootname = strrchr(root, '/') + 1;
    static const char *ids[] = {"a.txt",      "b.md",      "bad.txt",
                                "empty.txt",  "filelink.md", "img.png", "noext", "sub/c.html",
                                "sub/deep/d.markdown", "sub/e.HTM"};
    static const char *fmts[] = {"text", "markdown", "text", "text",
                                 "markdown", NULL, NULL, "html", "markdown", "html"};
    assert_int_equal(w.n, 10);
    for (size_t i = 0; i < w.n; i++) {
        char path[4096], id[4096];
        snprintf(path, sizeof path, "%s/%s", root, ids[i]);
        snprintf(id, sizeof id, "%s/%s", rootname, ids[i]);
        assert_string_equal(w.files[i].id, id);
        assert_string_equal(w.files[i].path, path);
        if (fmts[i])
            assert_string_equal(w.files[i].format, fmts[i]);
        else
            assert_null(w.files[i].format);
    }
    assert_true(w.files[5].junk);       /* img.png: skipped unless --all, by the sender */
    assert_true(w.files[6].text_kind);  /* noext: text when it reads as UTF-8 */
    assert_int_equal(w.nroots, 1);
    char rootid[4096];
    snprintf(rootid, sizeof rootid, "%s/", rootname);
    assert_string_equal(w.roots[0].id, rootid);
    assert_int_equal(w.hidden, 3);       /* .hidden.txt, .git, sub/.x */
    assert_int_equal(w.symlink_dirs, 1); /* link */
    assert_int_equal(w.bad_name, 1);     /* x\xff.txt */
    assert_int_equal(w.errors, 1);       /* broken.md */
    assert_int_equal(w.dup_ids, 0);
    assert_int_equal(cli_walk_skipped(&w), 3);
    assert_non_null(strstr(devnull_buf, "link: symbolic link to a folder"));
    assert_non_null(strstr(devnull_buf, "broken.md: broken symbolic link"));
    assert_null(strstr(devnull_buf, "img.png"));
    /* What --sync may remove: ids under the folder's name, nothing else. */
    char under[4096];
    snprintf(under, sizeof under, "%s/gone.md", rootname);
    assert_true(cli_walk_covers(&w, under));
    assert_false(cli_walk_covers(&w, "other/gone.md"));
    assert_false(cli_walk_covers(&w, rootname)); /* the name without the slash is not under it */
    free(devnull_buf);
    cli_walk_cleanup(&w);

    /* A trailing slash does not double; a file argument's id is its name. */
    char arg[4096];
    snprintf(arg, sizeof arg, "%s/sub/", root);
    cli_walk_init(&w);
    assert_int_equal(cli_walk_add(&w, arg, NULL, err, sizeof err), RAGD_OK);
    assert_int_equal(w.n, 3);
    snprintf(arg, sizeof arg, "%s/sub/c.html", root);
    assert_string_equal(w.files[0].path, arg);
    assert_string_equal(w.files[0].id, "sub/c.html");
    assert_string_equal(w.files[1].id, "sub/deep/d.markdown");
    assert_int_equal(cli_walk_add(&w, arg, NULL, err, sizeof err), RAGD_OK);
    assert_int_equal(w.n, 4);
    assert_string_equal(w.files[3].id, "c.html");
    assert_string_equal(w.files[3].path, arg);
    assert_true(cli_walk_covers(&w, "c.html"));
    assert_false(cli_walk_covers(&w, "c.html.old")); /* a file argument covers its id only */
    /* The same id twice: the later is dropped. */
    snprintf(arg, sizeof arg, "%s/sub/", root);
    assert_int_equal(cli_walk_add(&w, arg, NULL, err, sizeof err), RAGD_OK);
    assert_int_equal(w.n, 7);
    assert_int_equal(cli_walk_dedupe(&w, NULL), RAGD_OK);
    assert_int_equal(w.n, 4);
    assert_int_equal(w.dup_ids, 3);
    assert_string_equal(w.files[2].id, "sub/e.HTM");

    /* A symlinked folder given as the argument itself is followed, under its own name. */
    snprintf(arg, sizeof arg, "%s/link", root);
    size_t before = w.n;
    assert_int_equal(cli_walk_add(&w, arg, NULL, err, sizeof err), RAGD_OK);
    assert_int_equal(w.n, before + 3);
    assert_string_equal(w.files[before].id, "link/c.html");
    cli_walk_cleanup(&w);

    /* --id-prefix goes in front of every id and root. */
    cli_walk_init(&w);
    w.id_prefix = "P/";
    snprintf(arg, sizeof arg, "%s/sub", root);
    assert_int_equal(cli_walk_add(&w, arg, NULL, err, sizeof err), RAGD_OK);
    assert_string_equal(w.files[0].id, "P/sub/c.html");
    assert_string_equal(w.roots[0].id, "P/sub/");
    cli_walk_cleanup(&w);
    assert_string_equal(w.id_prefix, "P/"); /* kept for the next round (--watch) */

    /* "." takes the name of the folder it is. */
    char cwd[4096];
    assert_non_null(getcwd(cwd, sizeof cwd));
    snprintf(arg, sizeof arg, "%s/sub/deep", root);
    assert_int_equal(chdir(arg), 0);
    cli_walk_init(&w);
    assert_int_equal(cli_walk_add(&w, ".", NULL, err, sizeof err), RAGD_OK);
    assert_int_equal(chdir(cwd), 0);
    assert_int_equal(w.n, 1);
    assert_string_equal(w.files[0].id, "deep/d.markdown");
    /* A missing path is an error naming it. */
    snprintf(arg, sizeof arg, "%s/nope", root);
    assert_int_equal(cli_walk_add(&w, arg, NULL, err, sizeof err), RAGD_ENOTFOUND);
    assert_non_null(strstr(err, "nope"));
    assert_int_equal(cli_walk_add(&w, "", NULL, err, sizeof err), RAGD_ENOTFOUND);
    cli_walk_cleanup(&w);

    /* A folder the walk cannot list (here: past CLI_MAX_DEPTH) is unseen: --sync keeps
     * the documents under it, and only those. */
    char deep[8192];
    int len = snprintf(deep, sizeof deep, "%s/tall", root);
    assert_int_equal(mkdir(deep, 0755), 0);
    for (int i = 0; i <= CLI_MAX_DEPTH + 1; i++) {
        len += snprintf(deep + len, sizeof deep - (size_t)len, "/n");
        assert_int_equal(mkdir(deep, 0755), 0);
    }
    snprintf(arg, sizeof arg, "%s/tall", root);
    cli_walk_init(&w);
    w.id_prefix = "P/";
    assert_int_equal(cli_walk_add(&w, arg, NULL, err, sizeof err), RAGD_OK);
    assert_int_equal(w.errors, 1);
    char unseen_id[4096];
    len = snprintf(unseen_id, sizeof unseen_id, "P/tall");
    for (int i = 0; i <= CLI_MAX_DEPTH; i++)
        len += snprintf(unseen_id + len, sizeof unseen_id - (size_t)len, "/n");
    assert_true(cli_walk_covers(&w, "P/tall/n/gone.md"));        /* a listed folder */
    snprintf(unseen_id + len, sizeof unseen_id - (size_t)len, "/x.md");
    assert_false(cli_walk_covers(&w, unseen_id));                 /* under the unseen one */
    cli_walk_cleanup(&w);
    remove_tree(root);
    free(root);
}

/* ---- reading ---- */

static void test_read_file(void **state)
{
    char *root = strdup("/tmp/ragd_cli_read_XXXXXX");
    assert_non_null(mkdtemp(root));
    write_file(root, "bom.txt", "\xEF\xBB\xBFhello", 8);
    write_file(root, "nul.txt", "a\0b", 3);
    write_file(root, "bad.txt", "\xC0\xAF", 2);
    write_file(root, "ten.txt", "0123456789", 10);
    write_file(root, "empty.txt", "", 0);
    char path[4096], err[256];
    char *text = NULL;
    size_t len = 99;

    snprintf(path, sizeof path, "%s/bom.txt", root);
    assert_int_equal(cli_read_file(path, 100, &text, &len, err, sizeof err), RAGD_OK);
    assert_int_equal(len, 5);
    assert_string_equal(text, "hello");
    free(text);

    snprintf(path, sizeof path, "%s/ten.txt", root);
    assert_int_equal(cli_read_file(path, 10, &text, &len, err, sizeof err), RAGD_OK);
    assert_int_equal(len, 10);
    free(text);
    assert_int_equal(cli_read_file(path, 9, &text, &len, err, sizeof err), RAGD_ETOOBIG);
    assert_null(text);

    snprintf(path, sizeof path, "%s/nul.txt", root);
    assert_int_equal(cli_read_file(path, 100, &text, &len, err, sizeof err), RAGD_EINVAL);
    assert_null(text);
    snprintf(path, sizeof path, "%s/bad.txt", root);
    assert_int_equal(cli_read_file(path, 100, &text, &len, err, sizeof err), RAGD_EINVAL);
    assert_string_equal(err, "not valid UTF-8 text");

    snprintf(path, sizeof path, "%s/empty.txt", root);
    assert_int_equal(cli_read_file(path, 100, &text, &len, err, sizeof err), RAGD_OK);
    assert_int_equal(len, 0);
    assert_string_equal(text, "");
    free(text);

    snprintf(path, sizeof path, "%s/missing.txt", root);
    assert_int_equal(cli_read_file(path, 100, &text, &len, err, sizeof err), RAGD_EIO);
    assert_int_equal(cli_read_file(root, 100, &text, &len, err, sizeof err), RAGD_EIO);
    remove_tree(root);
    free(root);
}

static void test_doc_json(void **state)
{
    cli_file f = {.path = "docs/a/b.md", .id = "a/b.md", .format = "markdown"};
    char *s = cli_doc_json(&f, "line \"1\"\nline 2", 15);
    assert_non_null(s);
    json_t *d = json_loads(s, 0, NULL);
    assert_non_null(d);
    assert_string_equal(json_string_value(json_object_get(d, "id")), "a/b.md");
    assert_string_equal(json_string_value(json_object_get(d, "text")), "line \"1\"\nline 2");
    assert_string_equal(json_string_value(json_object_get(d, "source")), "docs/a/b.md");
    assert_string_equal(json_string_value(json_object_get(d, "format")), "markdown");
    assert_int_equal(json_object_size(d), 4);
    json_decref(d);
    free(s);
    /* Every byte that JSON must escape, and UTF-8 beyond ASCII, come back as they were. */
    const char hard[] = "q\"b\\s/\x01\x1f\t\r\n\x7f \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80 end";
    cli_file h = {.path = "h.txt", .id = "h \"x\".txt", .format = NULL};
    s = cli_doc_json(&h, hard, sizeof hard - 1);
    assert_non_null(s);
    d = json_loads(s, 0, NULL);
    assert_non_null(d);
    json_t *t = json_object_get(d, "text");
    assert_int_equal(json_string_length(t), sizeof hard - 1);
    assert_memory_equal(json_string_value(t), hard, sizeof hard - 1);
    assert_string_equal(json_string_value(json_object_get(d, "id")), "h \"x\".txt");
    assert_null(json_object_get(d, "format"));
    json_decref(d);
    free(s);
    /* A path that is not UTF-8: the id stands in as the source. */
    cli_file g = {.path = "d\xff/x.txt", .id = "x.txt", .format = "text"};
    s = cli_doc_json(&g, "t", 1);
    d = json_loads(s, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(d, "source")), "x.txt");
    json_decref(d);
    free(s);
}

/* ---- batching ---- */

static void test_batch_boundaries(void **state)
{
    cli_batch b;
    assert_int_equal(cli_batch_init(&b, "my-db", 3, 100, CLI_MAX_BODY_BYTES), RAGD_OK);
    const char *doc = "{\"id\":\"x\",\"text\":\"0123456789\"}"; /* 30 bytes */
    size_t n = strlen(doc);
    size_t prefix = strlen("{\"db\":\"my-db\",\"documents\":[");
    assert_int_equal(b.body.len, prefix);
    assert_false(cli_batch_full(&b, n));
    assert_int_equal(cli_batch_add(&b, doc, n), RAGD_OK);
    /* prefix 27 + 30 = 57; + ",30" + "]}" = 90 <= 100: fits. */
    assert_false(cli_batch_full(&b, n));
    assert_int_equal(cli_batch_add(&b, doc, n), RAGD_OK);
    /* 88 + 31 + 2 > 100: the third would pass the size budget. */
    assert_true(cli_batch_full(&b, n));
    assert_false(cli_batch_full(&b, 8));  /* 88 + 9 + 2 = 99 */
    assert_false(cli_batch_full(&b, 9));  /* exactly 100 fits */
    assert_true(cli_batch_full(&b, 10)); /* 101 does not */
    size_t len = 0;
    const char *body = cli_batch_finish(&b, &len);
    assert_int_equal(len, strlen(body));
    json_t *root = json_loads(body, 0, NULL);
    assert_non_null(root);
    assert_string_equal(json_string_value(json_object_get(root, "db")), "my-db");
    assert_int_equal(json_array_size(json_object_get(root, "documents")), 2);
    json_decref(root);

    /* By count: max 3 documents, small ones. */
    cli_batch_reset(&b);
    b.max_bytes = 1 << 20;
    for (int i = 0; i < 3; i++) {
        assert_false(cli_batch_full(&b, 2));
        assert_int_equal(cli_batch_add(&b, "{}", 2), RAGD_OK);
    }
    assert_true(cli_batch_full(&b, 2));
    body = cli_batch_finish(&b, &len);
    assert_string_equal(body, "{\"db\":\"my-db\",\"documents\":[{},{},{}]}");

    /* An empty batch takes a document bigger than the budget, alone. */
    cli_batch_reset(&b);
    b.max_bytes = 100;
    char *big = malloc(CLI_MAX_BODY_BYTES + 1);
    memset(big, ' ', CLI_MAX_BODY_BYTES);
    big[0] = '{';
    big[199] = '}';
    assert_false(cli_batch_full(&b, 200));
    assert_int_equal(cli_batch_add(&b, big, 200), RAGD_OK);
    assert_true(cli_batch_full(&b, 2));
    /* One that can never fit the body cap fails and leaves the batch as it was. */
    cli_batch_reset(&b);
    size_t cap_left = CLI_MAX_BODY_BYTES - b.body.len - 2;
    assert_int_equal(cli_batch_add(&b, big, cap_left + 1), RAGD_ETOOBIG);
    assert_int_equal(b.ndocs, 0);
    assert_int_equal(b.body.len, prefix);
    assert_int_equal(cli_batch_add(&b, big, cap_left), RAGD_OK);
    body = cli_batch_finish(&b, &len);
    assert_int_equal(len, CLI_MAX_BODY_BYTES);
    free(big);
    cli_batch_cleanup(&b);

    /* Without --db the server's default collection is used: no "db" key. */
    assert_int_equal(cli_batch_init(&b, NULL, 32, CLI_BATCH_BYTES, CLI_MAX_BODY_BYTES), RAGD_OK);
    body = cli_batch_finish(&b, &len);
    assert_string_equal(body, "{\"documents\":[]}");
    cli_batch_cleanup(&b);
}

static void test_progress_format(void **state)
{
    char buf[512];
    cli_progress_format(buf, sizeof buf, 120, 300, 2, 10);
    assert_string_equal(buf, "[====>     ] 120/300 files  2 skipped");
    cli_progress_format(buf, sizeof buf, 0, 300, 0, 10);
    assert_string_equal(buf, "[>         ] 0/300 files  0 skipped");
    cli_progress_format(buf, sizeof buf, 300, 300, 0, 10);
    assert_string_equal(buf, "[==========] 300/300 files  0 skipped");
    cli_progress_format(buf, sizeof buf, 0, 0, 0, 4);
    assert_string_equal(buf, "[====] 0/0 files  0 skipped");
    cli_progress_format(buf, sizeof buf, 1, 2, 0, 1000);
    assert_int_equal(strlen(buf), strlen("[] 1/2 files  0 skipped") + 255);
}

/* ---- options ---- */

static ragd_err parse(unsigned allowed, cli_opts *o, char *err, int argc, const char **argv)
{
    return cli_parse_opts(argc, (char **)argv, allowed, o, err, 256);
}

static void test_parse_opts(void **state)
{
    cli_opts o;
    char err[256];
    unsigned q = CLI_OPT_URL | CLI_OPT_DB | CLI_OPT_K | CLI_OPT_METHOD | CLI_OPT_STREAM |
                 CLI_OPT_JSON;
    unsetenv("RAGD_URL");

    const char *a1[] = {"query", "what", "--k", "7", "--db=x", "is", "--method", "vector",
                        "--", "--json"};
    assert_int_equal(parse(q, &o, err, 10, a1), RAGD_OK);
    assert_int_equal(o.k, 7);
    assert_string_equal(o.db, "x");
    assert_string_equal(o.method, "vector");
    assert_string_equal(o.url, CLI_DEFAULT_URL);
    assert_false(o.json);
    assert_int_equal(o.nargs, 3);
    assert_string_equal(o.args[0], "what");
    assert_string_equal(o.args[1], "is");
    assert_string_equal(o.args[2], "--json");
    cli_opts_cleanup(&o);

    /* reembed's options: values, flags, and refused where not allowed */
    const char *ar[] = {"reembed", "notes", "--embedder", "ollama", "--model=nomic-embed-text", "--wait"};
    assert_int_equal(parse(CLI_OPT_URL | CLI_OPT_REEMBED, &o, err, 6, ar), RAGD_OK);
    assert_string_equal(o.embedder, "ollama");
    assert_string_equal(o.model, "nomic-embed-text");
    assert_true(o.wait);
    assert_false(o.status_only);
    assert_int_equal(o.nargs, 1);
    cli_opts_cleanup(&o);
    const char *as[] = {"reembed", "notes", "--status"};
    assert_int_equal(parse(CLI_OPT_URL | CLI_OPT_REEMBED, &o, err, 3, as), RAGD_OK);
    assert_true(o.status_only);
    assert_null(o.embedder);
    cli_opts_cleanup(&o);
    assert_int_equal(parse(q, &o, err, 6, ar), RAGD_EINVAL); /* query takes no --embedder */
    assert_string_equal(err, "unknown option '--embedder'");
    cli_opts_cleanup(&o);

    setenv("RAGD_URL", "http://h:1", 1);
    const char *a2[] = {"dbs"};
    assert_int_equal(parse(CLI_OPT_URL, &o, err, 1, a2), RAGD_OK);
    assert_string_equal(o.url, "http://h:1");
    cli_opts_cleanup(&o);
    const char *a3[] = {"dbs", "--url", "https://x/"};
    assert_int_equal(parse(CLI_OPT_URL, &o, err, 3, a3), RAGD_OK);
    assert_string_equal(o.url, "https://x/");
    cli_opts_cleanup(&o);
    unsetenv("RAGD_URL");

    struct {
        const char *argv[4];
        int argc;
        unsigned allowed;
        const char *msg;
    } bad[] = {
        {{"q", "--bogus"}, 2, q, "unknown option '--bogus'"},
        {{"q", "-x"}, 2, q, "unknown option '-x'"},
        {{"q", "--k"}, 2, q, "option '--k' needs a value"},
        {{"q", "--k", "0"}, 3, q, "--k: must be an integer from 1 to 100"},
        {{"q", "--k", "101"}, 3, q, "--k: must be an integer from 1 to 100"},
        {{"q", "--k=5x"}, 2, q, "--k: must be an integer from 1 to 100"},
        {{"q", "--k", ""}, 3, q, "--k: must be an integer from 1 to 100"},
        {{"q", "--k", "99999999999999999999"}, 3, q, "--k: must be an integer from 1 to 100"},
        {{"q", "--method", "fuzzy"}, 3, q, "--method: must be hybrid, vector or keyword"},
        {{"q", "--db", "../etc"}, 3, q,
         "--db: must be 1-64 of [A-Za-z0-9_.-], not starting with '.'"},
        {{"q", "--url", "ftp://x"}, 3, q, "--url: must start with http:// or https://"},
        {{"q", "--stream=yes"}, 2, q, "option '--stream' takes no value"},
        {{"q", "--stream", "--json"}, 3, q, "--stream and --json cannot be combined"},
        {{"d", "--k", "3"}, 3, CLI_OPT_URL, "unknown option '--k'"},
        {{"i", "--batch", "0"}, 3, CLI_OPT_BATCH, "--batch: must be an integer from 1 to 10000"},
        {{"i", "--batch", "10001"}, 3, CLI_OPT_BATCH,
         "--batch: must be an integer from 1 to 10000"},
        {{"i", "--jobs", "0"}, 3, CLI_OPT_BATCH, "--jobs: must be an integer from 1 to 8"},
        {{"i", "--jobs=9"}, 2, CLI_OPT_BATCH, "--jobs: must be an integer from 1 to 8"},
        {{"q", "--jobs", "2"}, 3, q, "unknown option '--jobs'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_int_equal(parse(bad[i].allowed, &o, err, bad[i].argc, bad[i].argv), RAGD_EINVAL);
        assert_string_equal(err, bad[i].msg);
        cli_opts_cleanup(&o);
    }
    const char *a4[] = {"i", "--batch", "10000", "-h", "-"};
    assert_int_equal(parse(CLI_OPT_BATCH, &o, err, 5, a4), RAGD_OK);
    assert_int_equal(o.batch, 10000);
    assert_int_equal(o.jobs, CLI_INGEST_JOBS); /* the default: 3 in flight */
    assert_true(o.help);
    assert_int_equal(o.nargs, 1);
    assert_string_equal(o.args[0], "-");
    cli_opts_cleanup(&o);
    const char *a5[] = {"i", "--jobs", "8"};
    assert_int_equal(parse(CLI_OPT_BATCH, &o, err, 3, a5), RAGD_OK);
    assert_int_equal(o.jobs, 8);
    cli_opts_cleanup(&o);
}

static void test_cli_main_usage(void **state)
{
    capture c;
    const char *v[] = {"version"};
    assert_int_equal(run(&c, 1, v), 0);
    assert_string_equal(c.out_text, "ragd " RAGD_VERSION "\n");
    capture_free(&c);

    const char *h[] = {"query", "--help"};
    assert_int_equal(run(&c, 2, h), 0);
    assert_true(strncmp(c.out_text, "usage: ragd query", 17) == 0);
    assert_string_equal(c.err_text, "");
    capture_free(&c);

    const char *u[] = {"ingest", "--k", "3", "x"};
    assert_int_equal(run(&c, 4, u), 2);
    assert_string_equal(c.out_text, "");
    const char *want = "ragd ingest: unknown option '--k'\nusage: ragd ingest";
    assert_true(strncmp(c.err_text, want, strlen(want)) == 0);
    capture_free(&c);

    const char *m[] = {"ingest"};
    assert_int_equal(run(&c, 1, m), 2);
    assert_non_null(strstr(c.err_text, "missing argument"));
    capture_free(&c);

    const char *t[] = {"dbs", "list", "extra"};
    assert_int_equal(run(&c, 3, t), 2);
    assert_non_null(strstr(c.err_text, "too many arguments"));
    capture_free(&c);

    const char *g[] = {"--help"};
    assert_int_equal(run(&c, 1, g), 0);
    assert_true(strncmp(c.out_text, "usage: ragd COMMAND", 19) == 0);
    assert_non_null(strstr(c.out_text, "  serve "));
    capture_free(&c);

    const char *x[] = {"frobnicate"};
    assert_int_equal(run(&c, 1, x), 2);
    assert_non_null(strstr(c.err_text, "unknown command 'frobnicate'"));
    assert_non_null(strstr(c.err_text, "serve"));
    capture_free(&c);
}

/* ---- SSE ---- */

typedef struct {
    char log[4096];
    int events;
    int stop_after;
} sse_log;

static bool sse_collect(const char *event, const char *data, size_t len, void *ud)
{
    sse_log *l = ud;
    size_t used = strlen(l->log);
    snprintf(l->log + used, sizeof l->log - used, "<%s|%.*s>", event, (int)len, data);
    l->events++;
    return l->stop_after == 0 || l->events < l->stop_after;
}

static void test_sse(void **state)
{
    const char *stream = ": keep-alive\r\n"
                         "event: sources\r\ndata: {\"a\":1}\r\n\r\n"
                         "event:token\ndata:x\ndata: y\n\n"
                         "event: ignored-without-data\n\n"
                         "id: 7\rdata: cr\r\r"
                         "event: done\ndata: {}\n\n"
                         "event: tail\ndata: incomplete\n";
    const char *want = "<sources|{\"a\":1}><token|x\ny><message|cr><done|{}>";
    size_t n = strlen(stream);
    /* Whole, then byte by byte, then in pieces of 7: the same events. */
    size_t steps[] = {n, 1, 7};
    for (size_t k = 0; k < 3; k++) {
        sse_log l = {.log = ""};
        sse_parser s;
        sse_init(&s, CLI_SSE_LINE_CAP, sse_collect, &l);
        for (size_t i = 0; i < n; i += steps[k]) {
            size_t m = n - i < steps[k] ? n - i : steps[k];
            assert_int_equal(sse_feed(&s, stream + i, m), RAGD_OK);
        }
        assert_string_equal(l.log, want);
        sse_cleanup(&s);
    }
    /* The callback can stop the stream; then feed refuses more. */
    sse_log l = {.log = "", .stop_after = 1};
    sse_parser s;
    sse_init(&s, CLI_SSE_LINE_CAP, sse_collect, &l);
    assert_int_equal(sse_feed(&s, "data: 1\n\ndata: 2\n\n", 18), RAGD_ECLOSED);
    assert_int_equal(sse_feed(&s, "data: 3\n\n", 9), RAGD_ECLOSED);
    assert_string_equal(l.log, "<message|1>");
    sse_cleanup(&s);
    /* A line past the cap fails instead of growing. */
    sse_log l2 = {.log = ""};
    sse_init(&s, CLI_SSE_LINE_CAP, sse_collect, &l2);
    char *big = malloc(1 << 20);
    memset(big, 'a', 1 << 20);
    ragd_err e = RAGD_OK;
    for (size_t fed = 0; fed <= CLI_SSE_LINE_CAP && !e; fed += 1 << 20)
        e = sse_feed(&s, big, 1 << 20);
    assert_int_equal(e, RAGD_ETOOBIG);
    assert_true(s.failed);
    assert_int_equal(l2.events, 0);
    free(big);
    sse_cleanup(&s);
}

/* ---- error messages ---- */

static void test_error_message(void **state)
{
    cli_response r;
    char out[600];
    cli_response_init(&r);
    r.status = 404;
    strbuf_appends(&r.body, "{\"error\":{\"code\":\"db_not_found\",\"message\":\"collection 'x' "
                            "does not exist\",\"request_id\":\"r\"},\"detail\":\"...\"}");
    cli_http_error_message(&r, out, sizeof out);
    assert_string_equal(out, "collection 'x' does not exist (HTTP 404 db_not_found)");
    strbuf_reset(&r.body);
    r.status = 422;
    strbuf_appends(&r.body, "{\"detail\":\"bad\\nthing\"}");
    cli_http_error_message(&r, out, sizeof out);
    assert_string_equal(out, "bad thing (HTTP 422)");
    strbuf_reset(&r.body);
    r.status = 502;
    strbuf_appends(&r.body, "Bad Gateway\r\nmore");
    cli_http_error_message(&r, out, sizeof out);
    assert_string_equal(out, "server answered HTTP 502: Bad Gateway");
    strbuf_reset(&r.body);
    r.status = 500;
    cli_http_error_message(&r, out, sizeof out);
    assert_string_equal(out, "server answered HTTP 500");
    cli_response_cleanup(&r);
}

/* ---- commands against the fake server / no server ---- */

static void test_unreachable(void **state)
{
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", closed_port());
    capture c;
    const char *h[] = {"health", "--url", url};
    assert_int_equal(run(&c, 3, h), 2);
    char want[128];
    snprintf(want, sizeof want, "ragd: cannot reach %s: ", url);
    assert_true(strncmp(c.err_text, want, strlen(want)) == 0);
    assert_non_null(strchr(c.err_text, '\n'));
    assert_int_equal(strchr(c.err_text, '\n')[1], '\0'); /* one line */
    capture_free(&c);

    const char *q[] = {"query", "hi", "--url", url};
    assert_int_equal(run(&c, 4, q), 1);
    assert_true(strncmp(c.err_text, want, strlen(want)) == 0);
    capture_free(&c);
}

static void test_ingest_batches(void **state)
{
    char *root = make_tree();
    const char *rootname = strrchr(root, '/') + 1;
    fake_srv s = {0};
    srv_start(&s, 5);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d/", s.port);
    capture c;
    /* --jobs 1: one request at a time, so the fake server sees them in the client's order */
    const char *a[] = {"ingest", root, "--batch", "2", "--url", url, "--db", "notes", "--jobs", "1"};
    int rc = run(&c, 10, a);
    srv_stop(&s);
    assert_int_equal(rc, 0);
    /* 10 walked files: img.png (not a document type) and empty.txt skipped; bad.txt (not
     * UTF-8) goes alone as a raw body, at once; the 7 others in JSON batches of 2. */
    assert_int_equal(s.got, 5);
    char want[4096];
    snprintf(want, sizeof want, "POST /api/ingest?id=%s%%2Fbad.txt&source=", rootname);
    assert_non_null(strstr(s.heads[0], want));
    assert_non_null(strstr(s.heads[0], "&db=notes HTTP/1.1"));
    assert_non_null(strcasestr(s.heads[0], "Content-Type: text/plain"));
    assert_non_null(strcasestr(s.heads[0], "Content-Length: 10"));
    const char *want_ids[] = {"a.txt", "b.md", "filelink.md", "noext", "sub/c.html",
                              "sub/deep/d.markdown", "sub/e.HTM"};
    size_t k = 0;
    for (int i = 1; i < 5; i++) {
        assert_non_null(strstr(s.heads[i], "POST /api/ingest HTTP/1.1"));
        assert_non_null(strcasestr(s.heads[i], "Content-Type: application/json"));
        json_t *b = json_loads(s.bodies[i], 0, NULL);
        assert_non_null(b);
        assert_string_equal(json_string_value(json_object_get(b, "db")), "notes");
        json_t *docs = json_object_get(b, "documents");
        assert_int_equal(json_array_size(docs), i < 4 ? 2 : 1);
        for (size_t j = 0; j < json_array_size(docs); j++, k++) {
            json_t *d = json_array_get(docs, j);
            snprintf(want, sizeof want, "%s/%s", rootname, want_ids[k]);
            assert_string_equal(json_string_value(json_object_get(d, "id")), want);
            /* no format for a name without an extension: the server decides */
            assert_int_equal(json_object_get(d, "format") == NULL, strcmp(want_ids[k], "noext") == 0);
        }
        json_decref(b);
    }
    assert_int_equal(k, 7);
    assert_string_equal(c.out_text, "ingested 8 documents (16 chunks, 5 duplicates) into notes\n");
    assert_non_null(strstr(c.err_text, "empty.txt: empty file"));
    assert_null(strstr(c.err_text, "img.png")); /* counted, not reported one by one */
    assert_non_null(strstr(c.err_text,
                           "ragd: 13 files: 8 sent, 5 skipped (1 not a document type, 1 empty, "
                           "1 unreadable, 1 unusable name, 1 symlinked folder)\n"));
    capture_free(&c);
    srv_free(&s);

    /* --all sends img.png too (raw, application/octet-stream); a file over the server's
     * RAGD_MAX_BODY_BYTES is skipped with a message naming it. */
    fake_srv t = {0};
    t.health = "{\"default_db\":\"dflt\",\"limits\":{\"max_body_bytes\":1024}}";
    char big[2048];
    memset(big, 'x', sizeof big);
    write_file(root, "big.txt", big, sizeof big);
    srv_start(&t, 10);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", t.port);
    const char *b2[] = {"ingest", root, "--all", "--url", url, "--id-prefix", "P:", "--jobs=1"};
    rc = run(&c, 8, b2);
    srv_stop(&t);
    assert_int_equal(rc, 0);
    assert_true(t.got >= 3); /* bad.txt, img.png raw; JSON batches of at most 1024 bytes */
    for (int i = 2; i < t.got; i++)
        assert_true(strlen(t.bodies[i]) <= 1024);
    snprintf(want, sizeof want, "POST /api/ingest?id=P%%3A%s%%2Fimg.png&source=", rootname);
    assert_non_null(strstr(t.heads[1], want));
    assert_null(strstr(t.heads[1], "&db=")); /* no --db: the server's default */
    assert_non_null(strcasestr(t.heads[1], "Content-Type: application/octet-stream"));
    assert_non_null(strstr(c.err_text, "big.txt: larger than the server's limit of 1024 bytes "
                                       "(RAGD_MAX_BODY_BYTES)"));
    assert_non_null(strstr(c.out_text, "into dflt\n"));
    capture_free(&c);
    srv_free(&t);
    remove_tree(root);
    free(root);
}

static void test_ingest_http_error(void **state)
{
    char *root = make_tree();
    const char *rootname = strrchr(root, '/') + 1;
    fake_srv s = {0};
    char *bad = json_answer(422, "Unprocessable Entity",
                            "{\"error\":{\"code\":\"validation_error\",\"message\":\"documents[0]."
                            "text: must be a non-empty string\",\"request_id\":\"r\"}}");
    /* bad.txt raw, [a b filelink], [noext c.html d.markdown] refused: each alone, noext
     * refused again, then e.HTM */
    s.answers[2] = bad;
    s.answers[3] = bad;
    srv_start(&s, 7);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    capture c;
    const char *a[] = {"ingest", "--batch=3", root, "--url", url, "--jobs=1"};
    int rc = run(&c, 6, a);
    srv_stop(&s);
    assert_int_equal(rc, 1);
    assert_int_equal(s.got, 7);
    char want[4200];
    snprintf(want, sizeof want, "ragd: error: %s/noext: documents[0].text: must be a non-empty string "
                                "(HTTP 422 validation_error)\n", root);
    assert_non_null(strstr(c.err_text, want));
    assert_non_null(strstr(c.err_text, "7 sent, 1 failed, 5 skipped"));
    assert_non_null(strstr(c.err_text, "ragd: 1 files could not be ingested"));
    assert_string_equal(c.out_text, "ingested 7 documents (14 chunks, 5 duplicates) into default\n");
    json_t *alone = json_loads(s.bodies[3], 0, NULL);
    snprintf(want, sizeof want, "%s/noext", rootname);
    assert_string_equal(json_string_value(json_object_get(json_array_get(json_object_get(alone, "documents"), 0), "id")),
                        want);
    json_decref(alone);
    capture_free(&c);
    srv_free(&s);

    /* A server error ends the run at once, saying how much went in before. */
    fake_srv t = {0};
    char *down = json_answer(503, "Service Unavailable",
                             "{\"error\":{\"code\":\"overloaded\",\"message\":\"write queue full\"}}");
    t.answers[1] = down;
    srv_start(&t, 2);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", t.port);
    const char *b[] = {"ingest", "--batch=3", root, "--url", url, "--jobs=1"};
    rc = run(&c, 6, b);
    srv_stop(&t);
    assert_int_equal(rc, 1);
    assert_int_equal(t.got, 2);
    assert_non_null(strstr(c.err_text, "ragd: write queue full (HTTP 503 overloaded) (1 files were "
                                       "ingested before this failure)\n"));
    capture_free(&c);
    srv_free(&t);

    /* --sync removes a document only once every send has been answered: the server holds
     * the last requests it gets (a removal sent meanwhile would be held with them). */
    fake_srv u = {0};
    char listing[4400];
    snprintf(listing, sizeof listing,
             "{\"documents\":[{\"id\":\"%s/gone.txt\",\"content_hash\":\"x\"}],\"total\":1}",
             rootname);
    char *listed = json_answer(200, "OK", listing);
    u.health = "{\"default_db\":\"default\",\"limits\":{\"max_body_bytes\":10485760}}";
    u.answers[0] = listed;
    u.gather_from = 4; /* the listing, three of the five ingest requests; then the last two */
    u.gather = 3;
    u.gather_wait_ms = 300;
    srv_start(&u, 7);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", u.port);
    const char *d[] = {"ingest", root, "--sync", "--batch", "2", "--url", url};
    rc = run(&c, 7, d);
    srv_stop(&u);
    assert_int_equal(rc, 0);
    assert_int_equal(u.got, 7);
    assert_true(u.most_held <= 2); /* never the removal with ingest requests unanswered */
    snprintf(want, sizeof want, "DELETE /api/dbs/default/documents/%s/gone.txt HTTP/1.1", rootname);
    assert_non_null(strstr(u.heads[6], want));
    assert_string_equal(c.out_text, "synced default: 8 added, 0 changed, 0 unchanged, 1 removed\n");
    capture_free(&c);
    srv_free(&u);
    free(listed);
    free(bad);
    free(down);
    remove_tree(root);
    free(root);
}

/* Counts the occurrences of needle in hay. */
static int count_of(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = strstr(hay, needle); p; p = strstr(p + 1, needle))
        n++;
    return n;
}

/* The request whose first document has this id (-1: none); docs: its document count. */
static int request_with_first_id(const fake_srv *s, const char *id, size_t *docs)
{
    for (int i = 0; i < s->got; i++) {
        json_t *b = json_loads(s->bodies[i], 0, NULL);
        json_t *d = json_object_get(b, "documents");
        const char *first = json_string_value(json_object_get(json_array_get(d, 0), "id"));
        bool hit = first && strcmp(first, id) == 0;
        if (hit)
            *docs = json_array_size(d);
        json_decref(b);
        if (hit)
            return i;
    }
    return -1;
}

static void test_ingest_in_flight(void **state)
{
    char *root = make_tree();
    const char *rootname = strrchr(root, '/') + 1;
    char url[64], want[4300], match_c[4200];
    capture c;

    /* Three requests in flight at once: bad.txt raw, [a b], [filelink noext]; the server
     * holds all three before answering any, then answers the last first. [c.html d] is
     * refused (422 for any request holding c.html): each is re-sent alone, c.html is named,
     * d goes in. Seven requests, in whatever order the server took them. */
    fake_srv s = {0};
    char *bad = json_answer(422, "Unprocessable Entity",
                            "{\"error\":{\"code\":\"validation_error\",\"message\":\"cannot read "
                            "this\",\"request_id\":\"r\"}}");
    snprintf(match_c, sizeof match_c, "\"%s/sub/c.html\"", rootname);
    s.match[0] = match_c;
    s.match_answer[0] = bad;
    s.gather = 3;
    srv_start(&s, 7);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    const char *a[] = {"ingest", root, "--batch", "2", "--jobs", "3", "--url", url};
    int rc = run(&c, 8, a);
    srv_stop(&s);
    assert_int_equal(rc, 1);
    assert_int_equal(s.most_held, 3);
    assert_int_equal(s.got, 7);
    int raw = 0, json = 0;
    for (int i = 0; i < 3; i++) {
        raw += strstr(s.heads[i], "POST /api/ingest?id=") != NULL;
        json += strstr(s.heads[i], "POST /api/ingest HTTP/1.1") != NULL;
    }
    assert_int_equal(raw, 1); /* a raw body in flight with JSON batches */
    assert_int_equal(json, 2);
    snprintf(want, sizeof want, "ragd: error: %s/sub/c.html: cannot read this (HTTP 422 validation_error)\n",
             root);
    assert_int_equal(count_of(c.err_text, want), 1);
    assert_int_equal(count_of(c.err_text, "ragd: error: "), 1);
    size_t docs = 0;
    snprintf(want, sizeof want, "%s/sub/c.html", rootname);
    assert_true(request_with_first_id(&s, want, &docs) >= 0); /* the batch, then c.html alone */
    snprintf(want, sizeof want, "%s/sub/deep/d.markdown", rootname);
    assert_true(request_with_first_id(&s, want, &docs) >= 0);
    assert_int_equal(docs, 1); /* d alone, after its batch was refused */
    assert_non_null(strstr(c.err_text, "ragd: 13 files: 7 sent, 1 failed, 5 skipped"));
    assert_non_null(strstr(c.err_text, "ragd: 1 files could not be ingested"));
    assert_string_equal(c.out_text, "ingested 7 documents (14 chunks, 5 duplicates) into default\n");
    capture_free(&c);
    srv_free(&s);

    /* A 503 to [a b] while bad.txt and [filelink noext] are in flight: nothing new is sent
     * once it is seen (a request handed out before then gets a 503 too), the answers in
     * flight are taken, and the failure is printed once, counting the 3 files they got in. */
    fake_srv t = {0};
    char *down = json_answer(503, "Service Unavailable",
                             "{\"error\":{\"code\":\"overloaded\",\"message\":\"write queue full\"}}");
    char match_a[4200];
    snprintf(match_a, sizeof match_a, "\"%s/a.txt\"", rootname);
    t.match[0] = match_a;
    t.match_answer[0] = down;
    t.gather = 3;
    t.after_gather = down;
    srv_start(&t, 10);
    snprintf(url, sizeof url, "http://127.0.0.1:%d", t.port);
    const char *b[] = {"ingest", root, "--batch", "2", "--url", url}; /* --jobs: the default */
    rc = run(&c, 6, b);
    srv_stop(&t);
    assert_int_equal(rc, 1);
    assert_int_equal(t.most_held, 3);
    assert_true(t.got >= 3 && t.got <= 5);
    assert_int_equal(count_of(c.err_text, "write queue full"), 1);
    assert_non_null(strstr(c.err_text, "ragd: write queue full (HTTP 503 overloaded) (3 files were "
                                       "ingested before this failure)\n"));
    assert_null(strstr(c.err_text, " files: ")); /* no summary after a fatal failure */
    assert_string_equal(c.out_text, "");
    capture_free(&c);
    srv_free(&t);
    free(bad);
    free(down);
    remove_tree(root);
    free(root);
}

static const char *query_answer =
    "{\"answer\":\"RAG retrieves. [1]\",\"sources\":["
    "{\"n\":1,\"id\":\"a.md#0\",\"doc_id\":\"a.md\",\"chunk\":0,\"score\":0.8734,\"source\":\"docs/a.md\"},"
    "{\"n\":2,\"id\":\"b#3\",\"doc_id\":\"b\",\"chunk\":3,\"score\":0.5,\"metadata\":{}}],"
    "\"degraded\":false}";

static void test_query(void **state)
{
    fake_srv s = {0};
    char *ans = json_answer(200, "OK", query_answer);
    s.answers[0] = ans;
    s.answers[1] = ans;
    srv_start(&s, 2);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    capture c;
    const char *a[] = {"query", "what", "is", "RAG?", "--k", "3", "--url", url};
    assert_int_equal(run(&c, 8, a), 0);
    assert_string_equal(c.out_text, "RAG retrieves. [1]\n\nSources:\n"
                                    "[1] a.md (chunk 0, score 0.873) docs/a.md\n"
                                    "[2] b (chunk 3, score 0.500)\n");
    capture_free(&c);
    json_t *req = json_loads(s.bodies[0], 0, NULL);
    assert_string_equal(json_string_value(json_object_get(req, "query")), "what is RAG?");
    assert_int_equal(json_integer_value(json_object_get(req, "k")), 3);
    assert_null(json_object_get(req, "stream"));
    assert_null(json_object_get(req, "db"));
    json_decref(req);

    const char *j[] = {"query", "x", "--json", "--url", url};
    assert_int_equal(run(&c, 5, j), 0);
    char want[1024];
    snprintf(want, sizeof want, "%s\n", query_answer);
    assert_string_equal(c.out_text, want);
    capture_free(&c);
    srv_stop(&s);
    srv_free(&s);
    free(ans);
}

static void test_query_stream(void **state)
{
    const char *events =
        "event: sources\ndata: {\"sources\":[{\"n\":1,\"doc_id\":\"a\",\"chunk\":2,\"score\":1}]}\n\n"
        "event: token\ndata: {\"text\":\"Hello \"}\n\n"
        ": ping\n\n"
        "event: token\r\ndata: {\"text\":\"world\"}\r\n\r\n"
        "event: done\ndata: {\"answer\":\"Hello world\",\"degraded\":true,"
        "\"degraded_reason\":\"llm down\"}\n\n";
    char *ans = malloc(strlen(events) + 256);
    sprintf(ans, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n%s",
            events);
    const char *trunc_events = "event: token\ndata: {\"text\":\"Hel\"}\n\n";
    char *trunc = malloc(strlen(trunc_events) + 256);
    sprintf(trunc,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n%s",
            trunc_events);
    const char *err_events = "event: error\ndata: {\"error\":{\"code\":\"upstream_timeout\","
                             "\"message\":\"generation timed out\"}}\n\n";
    char *errs = malloc(strlen(err_events) + 256);
    sprintf(errs,
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n%s",
            err_events);
    char *nf = json_answer(404, "Not Found",
                           "{\"error\":{\"code\":\"db_not_found\",\"message\":\"collection 'z' "
                           "does not exist\",\"request_id\":\"r\"}}");
    fake_srv s = {0};
    s.answers[0] = ans;
    s.answers[1] = trunc;
    s.answers[2] = errs;
    s.answers[3] = nf;
    srv_start(&s, 4);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    capture c;
    const char *a[] = {"query", "hi", "--stream", "--url", url};
    assert_int_equal(run(&c, 5, a), 0);
    assert_string_equal(c.out_text, "Hello world\n\nSources:\n[1] a (chunk 2, score 1.000)\n");
    assert_string_equal(c.err_text, "ragd: note: degraded answer: llm down\n");
    assert_non_null(strstr(s.heads[0], "text/event-stream"));
    json_t *req = json_loads(s.bodies[0], 0, NULL);
    assert_true(json_is_true(json_object_get(req, "stream")));
    json_decref(req);
    capture_free(&c);

    assert_int_equal(run(&c, 5, a), 1);
    assert_string_equal(c.out_text, "Hel\n");
    assert_string_equal(c.err_text, "ragd: the stream ended before the answer was complete\n");
    capture_free(&c);

    assert_int_equal(run(&c, 5, a), 1);
    assert_string_equal(c.err_text, "ragd: generation timed out\n");
    capture_free(&c);

    assert_int_equal(run(&c, 5, a), 1);
    assert_string_equal(c.err_text,
                        "ragd: collection 'z' does not exist (HTTP 404 db_not_found)\n");
    capture_free(&c);
    srv_stop(&s);
    srv_free(&s);
    free(ans);
    free(trunc);
    free(errs);
    free(nf);
}

static void test_dbs_and_health(void **state)
{
    char *dbs = json_answer(200, "OK",
                            "{\"dbs\":[{\"name\":\"default\",\"documents\":12,\"chunks\":3456,"
                            "\"embed_model\":\"ragd-hash-v1-512\"},{\"name\":\"a-very-long-name\","
                            "\"documents\":0,\"chunks\":0,\"embed_model\":\"m\"}]}");
    char *healthy = json_answer(200, "OK",
                                "{\"status\":\"healthy\",\"services\":{\"store\":{\"healthy\":true,"
                                "\"path\":\"/d/ragd.db\",\"schema_version\":1},\"generator\":{"
                                "\"name\":\"extractive\",\"healthy\":true}},\"timestamp\":\"t\"}");
    char *degraded = json_answer(200, "OK",
                                 "{\"status\":\"degraded\",\"services\":{\"ollama\":{\"healthy\":"
                                 "false,\"circuit_breaker\":{\"state\":\"OPEN\"}}}}");
    fake_srv s = {0};
    s.answers[0] = dbs;
    s.answers[1] = healthy;
    s.answers[2] = degraded;
    srv_start(&s, 3);
    char url[64];
    snprintf(url, sizeof url, "http://127.0.0.1:%d", s.port);
    capture c;
    const char *d[] = {"dbs", "--url", url};
    assert_int_equal(run(&c, 3, d), 0);
    assert_string_equal(c.out_text, "NAME              DOCUMENTS  CHUNKS  EMBED_MODEL\n"
                                    "default                  12    3456  ragd-hash-v1-512\n"
                                    "a-very-long-name          0       0  m\n");
    assert_non_null(strstr(s.heads[0], "GET /api/dbs HTTP/1.1"));
    capture_free(&c);
    const char *h[] = {"health", "--url", url};
    assert_int_equal(run(&c, 3, h), 0);
    assert_string_equal(c.out_text, "healthy\n"
                                    "  store      healthy  path=/d/ragd.db  schema_version=1\n"
                                    "  generator  healthy  name=extractive\n");
    capture_free(&c);
    assert_int_equal(run(&c, 3, h), 1);
    assert_string_equal(c.out_text, "degraded\n  ollama     unhealthy  circuit_breaker=OPEN\n");
    capture_free(&c);
    srv_stop(&s);
    srv_free(&s);
    free(dbs);
    free(healthy);
    free(degraded);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format_for),
        cmocka_unit_test(test_kind_of),
        cmocka_unit_test(test_url_escape_and_text_start),
        cmocka_unit_test(test_printable),
        cmocka_unit_test(test_valid_id),
        cmocka_unit_test(test_db_name),
        cmocka_unit_test(test_walk_tree),
        cmocka_unit_test(test_read_file),
        cmocka_unit_test(test_doc_json),
        cmocka_unit_test(test_batch_boundaries),
        cmocka_unit_test(test_progress_format),
        cmocka_unit_test(test_parse_opts),
        cmocka_unit_test(test_cli_main_usage),
        cmocka_unit_test(test_sse),
        cmocka_unit_test(test_error_message),
        cmocka_unit_test(test_unreachable),
        cmocka_unit_test(test_ingest_batches),
        cmocka_unit_test(test_ingest_http_error),
        cmocka_unit_test(test_ingest_in_flight),
        cmocka_unit_test(test_query),
        cmocka_unit_test(test_query_stream),
        cmocka_unit_test(test_dbs_and_health),
    };
    return cmocka_run_group_tests_name("cli", tests, NULL, NULL);
}
