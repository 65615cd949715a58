/* Unit tests for util/ (capped buffers, UTF-8, names, worker pool + loop queue) and
 * config validation. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "config.h"
#include "util/log.h"
#include "util/apikeys.h"
#include "util/secret.h"
#include "util/url.h"
#include "util/hash.h"
#include "util/jsonmem.h"
#include "util/jsontext.h"
#include "util/jsonw.h"
#include "util/loopq.h"
#include "util/names.h"
#include "util/queue.h"
#include "util/ratelimit.h"
#include "util/strbuf.h"
#include "util/utf8.h"
#include "util/workpool.h"

typedef struct {
    int v;
    queue_node link;
} qitem;

static int queue_values(queue_node *head, int *out, int max)
{
    int n = 0;
    queue_node *q;
    queue_foreach(q, head)
    {
        if (n < max)
            out[n] = queue_data(q, qitem, link)->v;
        n++;
    }
    return n;
}

static void test_queue(void **state)
{
    (void)state;
    queue_node a, b;
    queue_init(&a);
    queue_init(&b);
    qitem it[5] = {{0}, {0}, {0}, {0}, {0}};
    assert_true(queue_empty(&a));
    assert_null(queue_first(&a));
    assert_null(queue_pop(&a));
    assert_false(queue_linked(&it[0].link)); /* zeroed: unlinked */
    for (int i = 0; i < 5; i++) {
        it[i].v = i;
        queue_insert_tail(&a, &it[i].link);
    }
    int v[8];
    assert_int_equal(queue_values(&a, v, 8), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(v[i], i);
    /* Remove from the middle, twice (the second is a no-op), and the head. */
    queue_remove(&it[2].link);
    queue_remove(&it[2].link);
    assert_false(queue_linked(&it[2].link));
    assert_int_equal(queue_data(queue_pop(&a), qitem, link)->v, 0);
    assert_int_equal(queue_values(&a, v, 8), 3);
    assert_int_equal(v[0], 1);
    assert_int_equal(v[2], 4);
    queue_insert_head(&a, &it[2].link);
    assert_int_equal(queue_data(queue_first(&a), qitem, link)->v, 2);
    /* Move everything to b's tail; a is left empty and usable. */
    queue_insert_tail(&b, &it[0].link);
    queue_move(&a, &b);
    assert_true(queue_empty(&a));
    assert_int_equal(queue_values(&b, v, 8), 5);
    assert_int_equal(v[0], 0);
    assert_int_equal(v[1], 2);
    assert_int_equal(v[4], 4);
    queue_move(&a, &b); /* moving an empty list changes nothing */
    assert_int_equal(queue_values(&b, v, 8), 5);
    int drained = 0;
    while (queue_pop(&b))
        drained++;
    assert_int_equal(drained, 5);
    assert_true(queue_empty(&b));
}

/* strbuf_reserve: room for n more bytes, then appends up to n keep the same storage (the
 * HTTP layer reserves a body's Content-Length once); past the cap RAGD_ETOOBIG, nothing
 * changed. */
static void test_strbuf_reserve(void **state)
{
    (void)state;
    strbuf sb;
    strbuf_init(&sb, 100000);
    assert_int_equal(strbuf_appends(&sb, "head"), RAGD_OK);
    assert_int_equal(strbuf_reserve(&sb, 99996), RAGD_OK);
    assert_true(sb.alloc >= 100001); /* the room is there before the appends */
    const char *kept = sb.data;
    assert_string_equal(sb.data, "head");
    char block[1000];
    memset(block, 'x', sizeof block);
    for (int i = 0; i < 99; i++)
        assert_int_equal(strbuf_append(&sb, block, sizeof block), RAGD_OK);
    assert_int_equal(strbuf_append(&sb, block, 996), RAGD_OK);
    assert_ptr_equal(sb.data, kept); /* no reallocation on the way */
    assert_int_equal(sb.len, 100000);
    assert_int_equal(sb.data[sb.len], '\0');
    assert_int_equal(strbuf_reserve(&sb, 1), RAGD_ETOOBIG);
    assert_int_equal(sb.len, 100000);
    strbuf_cleanup(&sb);
}

static void test_strbuf_cap(void **state)
{
    (void)state;
    strbuf sb;
    strbuf_init(&sb, 10);
    assert_int_equal(strbuf_appends(&sb, "12345"), RAGD_OK);
    assert_int_equal(strbuf_appendf(&sb, "%d", 6789), RAGD_OK);
    assert_int_equal(sb.len, 9);
    assert_int_equal(strbuf_appends(&sb, "ab"), RAGD_ETOOBIG);
    assert_string_equal(sb.data, "123456789"); /* unchanged after a refused append */
    assert_int_equal(strbuf_appends(&sb, "a"), RAGD_OK);
    assert_int_equal(strbuf_appendf(&sb, "%s", "x"), RAGD_ETOOBIG);
    strbuf_truncate(&sb, 20); /* past the end: nothing */
    assert_int_equal(sb.len, 10);
    strbuf_truncate(&sb, 4);
    assert_string_equal(sb.data, "1234");
    assert_int_equal(strbuf_appends(&sb, "56789a"), RAGD_OK);
    size_t len = 0;
    char *p = strbuf_detach(&sb, &len);
    assert_int_equal(len, 10);
    assert_string_equal(p, "123456789a");
    free(p);
    assert_null(sb.data);
    strbuf_cleanup(&sb);
}

static void test_utf8(void **state)
{
    (void)state;
    assert_true(utf8_valid("plain", 5));
    assert_true(utf8_valid("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 14));
    assert_false(utf8_valid("\xff", 1));
    assert_false(utf8_valid("\xc0\xaf", 2));         /* overlong '/' */
    assert_false(utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    assert_false(utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    assert_false(utf8_valid("\xe2\x82", 2));         /* truncated */
    assert_false(utf8_valid("a\0b", 3));             /* NUL */
    assert_int_equal(utf8_length("caf\xc3\xa9", 5), 4);
    char cut[] = "caf\xc3\xa9 \xe2\x82"; /* a euro sign cut by a fixed-size copy */
    assert_string_equal(utf8_sanitize(cut), "caf\xc3\xa9 ");
    char bad[] = "a\xff" "b\xc0\xaf" "c";
    assert_string_equal(utf8_sanitize(bad), "a?b??c");
    char tail[] = "a\xff"; /* not a cut: a byte that starts nothing is replaced */
    assert_string_equal(utf8_sanitize(tail), "a?");
    char ok[] = "\xf0\x9f\x98\x80 fine";
    assert_string_equal(utf8_sanitize(ok), "\xf0\x9f\x98\x80 fine");
}

/* utf8_valid checks plain ASCII 16 bytes at a time: a bad or a multi-byte sequence at
 * every offset of a block (and across two), in texts of every length around it. */
static void test_utf8_blocks(void **state)
{
    (void)state;
    static const struct {
        const char *seq;
        bool valid;
    } cases[] = {
        {"\xc3\xa9", true},         {"\xe2\x82\xac", true}, {"\xf0\x9f\x98\x80", true},
        {"", false /* NUL */},        {"\x80", false},         {"\xff", false},
        {"\xed\xa0\x80", false},     {"\xc3", false},         {"\x7f", true},
    };
    char buf[64];
    for (size_t len = 0; len <= 48; len++) {
        memset(buf, 'a', sizeof buf);
        assert_true(utf8_valid(buf, len));
        for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
            size_t sl = cases[c].seq[0] ? strlen(cases[c].seq) : 1;
            for (size_t at = 0; at + sl <= len; at++) {
                memset(buf, 'a', sizeof buf);
                memcpy(buf + at, cases[c].seq, sl);
                if (utf8_valid(buf, len) != cases[c].valid)
                    fail_msg("case %zu at %zu in %zu bytes: expected %d", c, at, len, cases[c].valid);
            }
            /* utf8_length counts code points eight bytes at a time */
            if (cases[c].valid && len > 0) {
                size_t at = len / 3;
                if (at + sl <= len) {
                    memset(buf, 'a', sizeof buf);
                    memcpy(buf + at, cases[c].seq, sl);
                    assert_int_equal(utf8_length(buf, len), len - sl + 1);
                }
            }
            /* cut by the end of the text: only a one-byte sequence stays valid */
            if (sl > 1 && len >= 1) {
                memset(buf, 'a', sizeof buf);
                memcpy(buf + len - 1, cases[c].seq, 1);
                assert_false(utf8_valid(buf, len));
            }
        }
    }
}

static void test_names(void **state)
{
    (void)state;
    assert_true(names_db_valid("default"));
    assert_true(names_db_valid("a.b-c_D9"));
    assert_false(names_db_valid(""));
    assert_false(names_db_valid(".hidden"));
    assert_false(names_db_valid("../etc"));
    assert_false(names_db_valid("a/b"));
    assert_false(names_db_valid("a b"));
    char long_name[66];
    memset(long_name, 'x', 65);
    long_name[65] = '\0';
    assert_false(names_db_valid(long_name));
    long_name[64] = '\0';
    assert_true(names_db_valid(long_name));
    assert_true(names_key_valid(".dot"));
}

/* RAGD_LOG_FORMAT=json: each record one valid JSON object whatever the message holds. */
static void test_log_json_record(void **state)
{
    (void)state;
    char out[512];
    log_field f[] = {LOG_STR("route", "/api/dbs/{name}"), LOG_INT("status", 200), LOG_NUM("duration_ms", 1.25),
                     LOG_STR("note", NULL)};
    size_t n = log_format_record(out, sizeof out, LOG_FORMAT_JSON, LOG_WARN, 0, 7, "a \"quoted\" \\ \x01 caf\xc3\xa9 \xff",
                                 f, 4);
    assert_int_equal(n, strlen(out));
    json_error_t je;
    json_t *rec = json_loads(out, 0, &je);
    assert_non_null(rec);
    assert_string_equal(json_string_value(json_object_get(rec, "ts")), "1970-01-01T00:00:00.007Z");
    assert_string_equal(json_string_value(json_object_get(rec, "level")), "warn");
    assert_string_equal(json_string_value(json_object_get(rec, "msg")), "a \"quoted\" \\ \x01 caf\xc3\xa9 ?");
    assert_string_equal(json_string_value(json_object_get(rec, "route")), "/api/dbs/{name}");
    assert_int_equal(json_integer_value(json_object_get(rec, "status")), 200);
    assert_true(json_is_null(json_object_get(rec, "note")));
    json_decref(rec);

    /* a record cut at the cap is still one valid object: the message cut between characters
     * (never inside an escape or a UTF-8 sequence), the members that do not fit left out */
    static const char *const long_msg = "a long \"message\" caf\xc3\xa9 \x01 that cannot fit in the record";
    for (size_t cap = 4; cap <= 200; cap++) {
        char small[200];
        size_t len = log_format_record(small, cap, LOG_FORMAT_JSON, LOG_INFO, 0, 0, long_msg, f, 4);
        assert_int_equal(len, strlen(small));
        assert_true(len < cap);
        assert_int_equal(small[len - 1], '\n');
        json_t *cut = json_loads(small, 0, &je);
        if (!cut)
            fail_msg("cap %zu: not JSON (%s): %s", cap, je.text, small);
        const char *m = json_string_value(json_object_get(cut, "msg"));
        if (m) {
            char want[200];
            snprintf(want, sizeof want, "%s", long_msg);
            want[strlen(m)] = '\0';
            assert_string_equal(m, want); /* a prefix of the message */
        }
        json_decref(cut);
    }

    /* a record cut at the cap is still one object */
    char small[48];
    log_format_record(small, sizeof small, LOG_FORMAT_JSON, LOG_INFO, 0, 0, "a long message that cannot fit in the record", f, 4);
    assert_int_equal(small[strlen(small) - 1], '\n');
    assert_int_equal(small[strlen(small) - 2], '}');
    /* cut inside a string (here in the middle of escapes, which grow 6x) it is still valid
     * JSON: the string closed between two escapes, later fields left out */
    char mid[160], hostile[400];
    memset(hostile, '\x01', sizeof hostile - 1);
    hostile[sizeof hostile - 1] = '\0';
    for (size_t cut = 100; cut <= sizeof mid; cut += 7) {
        log_field hf[] = {LOG_STR("route", "/x"), LOG_STR("target", hostile), LOG_INT("status", 200)};
        size_t len = log_format_record(mid, cut, LOG_FORMAT_JSON, LOG_INFO, 0, 0, "GET \"a\\b\"", hf, 3);
        assert_true(len < cut);
        assert_int_equal(mid[len - 1], '\n');
        json_error_t jerr;
        json_t *cutrec = json_loadb(mid, len, 0, &jerr);
        if (!cutrec)
            fail_msg("cap %zu: not JSON (%s): %s", cut, jerr.text, mid);
        json_decref(cutrec);
    }

    /* text: fields after the message, json_only left out, values with blanks quoted */
    f[0].json_only = true;
    log_field t[] = {f[0], LOG_STR("why", "two words"), LOG_INT("bytes", 12)};
    log_format_record(out, sizeof out, LOG_FORMAT_TEXT, LOG_INFO, 0, 0, "GET /x 200", t, 3);
    assert_string_equal(out, "1970-01-01T00:00:00.000Z info  GET /x 200 why=\"two words\" bytes=12\n");
}

/* RAGD_CONFIG_FILE overlays the environment; a bad line names the line, never the value. */
static void test_config_file(void **state)
{
    (void)state;
    char path[] = "/tmp/ragd-test-conf-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    const char *text = "# comment\n\nexport RAGD_LOG_LEVEL = debug\nRAGD_CHUNK_SIZE='500'\nRAGD_LOG_FORMAT=\"json\"\n";
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    setenv("RAGD_CHUNK_SIZE", "700", 1);
    setenv("RAGD_POOL_SIZE", "3", 1);
    setenv("RAGD_CONFIG_FILE", path, 1);
    ragd_config c;
    config_raw raw = {{0}};
    char err[256];
    assert_int_equal(config_load(&c, &raw, err, sizeof err), 0);
    assert_int_equal(c.chunk_size, 500); /* the file wins */
    assert_int_equal(c.pool_size, 3);    /* the environment still counts */
    assert_int_equal(c.log_level, LOG_DEBUG);
    assert_int_equal(c.log_format, LOG_FORMAT_JSON);
    config_raw raw2 = {{0}};
    assert_int_equal(config_load(&c, &raw2, err, sizeof err), 0);
    for (size_t i = 0; i < config_count(); i++)
        assert_false(config_raw_differs(&raw, &raw2, i));
    config_raw_free(&raw2);

    FILE *f = fopen(path, "w");
    fputs("RAGD_API_KEYS=secret-value-0123456789\nRAGD_WHAT=secret-value-0123456789\n", f);
    fclose(f);
    assert_int_equal(config_load(&c, &raw2, err, sizeof err), -1);
    assert_non_null(strstr(err, "line 2"));
    assert_null(strstr(err, "secret-value"));
    config_raw_free(&raw2);
    unlink(path);
    assert_int_equal(config_load(&c, &raw2, err, sizeof err), -1);
    assert_non_null(strstr(err, "RAGD_CONFIG_FILE"));
    config_raw_free(&raw2);
    config_raw_free(&raw);
    unsetenv("RAGD_CONFIG_FILE");
    unsetenv("RAGD_CHUNK_SIZE");
    unsetenv("RAGD_POOL_SIZE");
}

static void test_config(void **state)
{
    (void)state;
    ragd_config c;
    char err[256];
    unsetenv("RAGD_CHUNK_SIZE");
    assert_int_equal(config_from_env(&c, err, sizeof err), 0);
    assert_int_equal(c.listen_port, 8000);
    assert_int_equal(c.chunk_size, 1000);
    assert_int_equal(c.pool_size, 10);

    setenv("RAGD_CHUNK_SIZE", "abc", 1);
    assert_int_equal(config_from_env(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "RAGD_CHUNK_SIZE"));
    setenv("RAGD_CHUNK_SIZE", "200", 1);
    setenv("RAGD_CHUNK_OVERLAP", "100", 1);
    assert_int_equal(config_from_env(&c, err, sizeof err), -1);
    assert_non_null(strstr(err, "RAGD_CHUNK_OVERLAP"));
    setenv("RAGD_CHUNK_SIZE", "401", 1); /* odd size: 200 is not under 401 / 2 = 200 */
    setenv("RAGD_CHUNK_OVERLAP", "200", 1);
    assert_int_equal(config_from_env(&c, err, sizeof err), -1);
    setenv("RAGD_CHUNK_OVERLAP", "199", 1);
    assert_int_equal(config_from_env(&c, err, sizeof err), 0);
    unsetenv("RAGD_CHUNK_SIZE");
    unsetenv("RAGD_CHUNK_OVERLAP");

    const char *bad[][2] = {{"RAGD_POOL_SIZE", "0"},          {"RAGD_POOL_SIZE", "-1"},
                            {"RAGD_LISTEN", "nonsense"},      {"RAGD_LISTEN", "127.0.0.1:99999"},
                            {"RAGD_EMBEDDER", "bogus"},       {"RAGD_EMBEDDER", "openai"} /* no OPENAI_BASE_URL */,
                            {"RAGD_SHUTDOWN_GRACE_S", "-1"},  {"RAGD_LOG_LEVEL", "loud"},
                            {"RAGD_DEFAULT_DB", "../x"},      {"RAGD_MAX_BODY_BYTES", "10x"}};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        setenv(bad[i][0], bad[i][1], 1);
        assert_int_equal(config_from_env(&c, err, sizeof err), -1);
        assert_non_null(strstr(err, bad[i][0]));
        unsetenv(bad[i][0]);
    }
    setenv("OLLAMA_BASE_URL", "http://a:1, http://b:2/", 1);
    setenv("RAGD_GENERATOR", "ollama", 1);
    assert_int_equal(config_from_env(&c, err, sizeof err), 0);
    assert_int_equal(c.n_ollama_urls, 2);
    assert_string_equal(c.ollama_urls[0], "http://a:1");
    assert_string_equal(c.ollama_urls[1], "http://b:2/");
    assert_int_equal(c.generator, CONFIG_GENERATOR_OLLAMA);
    const char *bad_up[][2] = {{"OLLAMA_BASE_URL", "ftp://x"}, {"OLLAMA_BASE_URL", "http://a,,http://b"},
                               {"RAGD_GENERATOR", "openai"} /* without OPENAI_BASE_URL */,
                               {"RAGD_BREAKER_FAILURES", "0"}, {"RAGD_BREAKER_RECOVERY_S", "-1"},
                               {"RAGD_MAX_CONCURRENT", "0"}, {"RAGD_EMBED_TIMEOUT_S", "0"}};
    for (size_t i = 0; i < sizeof bad_up / sizeof *bad_up; i++) {
        const char *old = getenv(bad_up[i][0]);
        char keep[256];
        snprintf(keep, sizeof keep, "%s", old ? old : "");
        setenv(bad_up[i][0], bad_up[i][1], 1);
        assert_int_equal(config_from_env(&c, err, sizeof err), -1);
        assert_non_null(strstr(err, bad_up[i][0]));
        if (old)
            setenv(bad_up[i][0], keep, 1);
        else
            unsetenv(bad_up[i][0]);
    }
    unsetenv("OLLAMA_BASE_URL");
    unsetenv("RAGD_GENERATOR");
    setenv("RAGD_LISTEN", "[::1]:0", 1);
    setenv("RAGD_SHUTDOWN_GRACE_S", "0.5", 1);
    assert_int_equal(config_from_env(&c, err, sizeof err), 0);
    assert_string_equal(c.listen_host, "::1");
    assert_int_equal(c.listen_port, 0);
    assert_true(c.shutdown_grace_s == 0.5);
    unsetenv("RAGD_LISTEN");
    unsetenv("RAGD_SHUTDOWN_GRACE_S");
}

/* RAGD_FUSION*, RAGD_MAX_CHUNKS_PER_DOC, RAGD_RELEVANCE_FLOOR: defaults, good and bad values. */
static void test_config_fusion(void **state)
{
    (void)state;
    ragd_config c;
    char err[256];
    assert_int_equal(config_from_env(&c, err, sizeof err), 0);
    assert_int_equal(c.fusion.method, FUSION_WEIGHTED);
    assert_true(c.fusion.w_keyword == FUSION_DEFAULT_W_KEYWORD);
    assert_true(c.fusion.w_vector == FUSION_DEFAULT_W_VECTOR);
    assert_int_equal(c.fusion.depth, FUSION_DEFAULT_DEPTH);
    assert_int_equal(c.fusion.max_per_doc, FUSION_DEFAULT_MAX_PER_DOC);
    assert_true(c.fusion.floor == FUSION_DEFAULT_FLOOR);

    setenv("RAGD_FUSION", "rrf", 1);
    setenv("RAGD_FUSION_WEIGHTS", "vector:0.3,keyword:0.7", 1);
    setenv("RAGD_FUSION_DEPTH", "120", 1);
    setenv("RAGD_MAX_CHUNKS_PER_DOC", "0", 1);
    setenv("RAGD_RELEVANCE_FLOOR", "0", 1);
    assert_int_equal(config_from_env(&c, err, sizeof err), 0);
    assert_int_equal(c.fusion.method, FUSION_RRF);
    assert_true(c.fusion.w_keyword == 0.7 && c.fusion.w_vector == 0.3);
    assert_int_equal(c.fusion.depth, 120);
    assert_int_equal(c.fusion.max_per_doc, 0);
    assert_true(c.fusion.floor == 0.0);
    setenv("RAGD_FUSION_WEIGHTS", "keyword:1", 1); /* a list left out weighs 0 */
    assert_int_equal(config_from_env(&c, err, sizeof err), 0);
    assert_true(c.fusion.w_keyword == 1.0 && c.fusion.w_vector == 0.0);

    const char *bad[][2] = {
        {"RAGD_FUSION", "linear"},          {"RAGD_FUSION", "RRF"},
        {"RAGD_FUSION_WEIGHTS", "0.7,0.3"}, {"RAGD_FUSION_WEIGHTS", "keyword:0.7,vector"},
        {"RAGD_FUSION_WEIGHTS", "keyword:0,vector:0"}, {"RAGD_FUSION_WEIGHTS", "keyword:-1,vector:1"},
        {"RAGD_FUSION_WEIGHTS", "keyword:0.5,keyword:0.5"}, {"RAGD_FUSION_WEIGHTS", "title:1"},
        {"RAGD_FUSION_WEIGHTS", "keyword:0.5,"}, {"RAGD_FUSION_WEIGHTS", "keyword:nan"},
        {"RAGD_FUSION_WEIGHTS", "keyword:1e9"}, {"RAGD_FUSION_WEIGHTS", "keyword:0.5x"},
        {"RAGD_FUSION_DEPTH", "0"},         {"RAGD_FUSION_DEPTH", "1001"},
        {"RAGD_MAX_CHUNKS_PER_DOC", "-1"},  {"RAGD_MAX_CHUNKS_PER_DOC", "two"},
        {"RAGD_RELEVANCE_FLOOR", "1.5"},    {"RAGD_RELEVANCE_FLOOR", "-0.1"},
        {"RAGD_RELEVANCE_FLOOR", "low"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        const char *old = getenv(bad[i][0]);
        char keep[256];
        snprintf(keep, sizeof keep, "%s", old ? old : "");
        setenv(bad[i][0], bad[i][1], 1);
        assert_int_equal(config_from_env(&c, err, sizeof err), -1);
        assert_non_null(strstr(err, bad[i][0]));
        if (old)
            setenv(bad[i][0], keep, 1);
        else
            unsetenv(bad[i][0]);
    }
    unsetenv("RAGD_FUSION");
    unsetenv("RAGD_FUSION_WEIGHTS");
    unsetenv("RAGD_FUSION_DEPTH");
    unsetenv("RAGD_MAX_CHUNKS_PER_DOC");
    unsetenv("RAGD_RELEVANCE_FLOOR");
}

/* Workers compute, the loop queue brings every result back to the loop thread. */
typedef struct {
    loopq *q;
    atomic_int done_on_loop;
    int values[200];
    struct event_base *base;
} pool_ctx;

typedef struct {
    pool_ctx *ctx;
    loopq_item item;
    int i;
} pool_job;

static void pool_back(void *arg)
{
    pool_job *job = arg;
    job->ctx->values[job->i] = job->i * 2;
    if (atomic_fetch_add(&job->ctx->done_on_loop, 1) + 1 == 200)
        event_base_loopbreak(job->ctx->base);
    free(job);
}

static void pool_work(void *arg)
{
    pool_job *job = arg;
    loopq_post(job->ctx->q, &job->item, pool_back, job);
}

static void test_workpool_loopq(void **state)
{
    (void)state;
    evthread_use_pthreads();
    pool_ctx ctx = {0};
    ctx.base = event_base_new();
    ctx.q = loopq_new(ctx.base);
    workpool *p = workpool_new(4, 1000);
    for (int i = 0; i < 200; i++) {
        pool_job *job = malloc(sizeof *job);
        job->ctx = &ctx;
        job->i = i;
        assert_int_equal(workpool_submit(p, pool_work, NULL, job), RAGD_OK);
    }
    event_base_loop(ctx.base, EVLOOP_NO_EXIT_ON_EMPTY);
    assert_int_equal(atomic_load(&ctx.done_on_loop), 200);
    for (int i = 0; i < 200; i++)
        assert_int_equal(ctx.values[i], i * 2);
    workpool_free(p);
    loopq_free(ctx.q);
    event_base_free(ctx.base);
}

static void noop(void *arg) { (void)arg; }

static void test_workpool_bounded(void **state)
{
    (void)state;
    workpool *p = workpool_new(1, 0);
    assert_int_equal(workpool_submit(p, noop, NULL, NULL), RAGD_EBUSY);
    workpool_free(p);
    assert_null(workpool_new(0, 10));
}

/* Jobs still waiting at shutdown are cancelled (their cancel runs instead); running ones
 * and those without a cancel function are not. */
static pthread_mutex_t gate_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t gate_cv = PTHREAD_COND_INITIALIZER;
static bool gate_open_flag, gate_entered;

static void gate_job(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&gate_mu);
    gate_entered = true;
    pthread_cond_broadcast(&gate_cv);
    while (!gate_open_flag)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
}

static void count_job(void *arg) { atomic_fetch_add((atomic_int *)arg, 1); }
static void count_cancel(void *arg) { atomic_fetch_add((atomic_int *)arg, 1000); }

static void test_workpool_cancel_queued(void **state)
{
    (void)state;
    atomic_int counter = 0;
    workpool *p = workpool_new(1, 100);
    assert_int_equal(workpool_submit(p, gate_job, NULL, NULL), RAGD_OK);
    pthread_mutex_lock(&gate_mu);
    while (!gate_entered)
        pthread_cond_wait(&gate_cv, &gate_mu);
    pthread_mutex_unlock(&gate_mu);
    for (int i = 0; i < 5; i++)
        assert_int_equal(workpool_submit(p, count_job, count_cancel, &counter), RAGD_OK);
    assert_int_equal(workpool_submit(p, count_job, NULL, &counter), RAGD_OK);
    assert_int_equal(workpool_cancel_queued(p), 5);
    assert_int_equal(atomic_load(&counter), 5000);
    assert_int_equal(workpool_queued(p), 1);
    pthread_mutex_lock(&gate_mu);
    gate_open_flag = true;
    pthread_cond_broadcast(&gate_cv);
    pthread_mutex_unlock(&gate_mu);
    workpool_free(p); /* the job without cancel still runs */
    assert_int_equal(atomic_load(&counter), 5001);
}

/* workpool_for: every item exactly once, from any thread; with every other worker blocked
 * it finishes alone (it never waits on the queue); on a shut-down pool the caller does all. */
typedef struct {
    atomic_int hits[1000];
} for_items;

static void for_item(void *arg, size_t i) { atomic_fetch_add(&((for_items *)arg)->hits[i], 1); }

static void assert_each_once(for_items *it, size_t n)
{
    for (size_t i = 0; i < n; i++)
        assert_int_equal(atomic_load(&it->hits[i]), 1);
}

static pthread_mutex_t for_mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t for_cv = PTHREAD_COND_INITIALIZER;
static bool for_gate_open, for_gate_entered, for_done;
static workpool *for_pool;
static for_items for_shared;

static void for_gate_job(void *arg)
{
    (void)arg;
    pthread_mutex_lock(&for_mu);
    for_gate_entered = true;
    pthread_cond_broadcast(&for_cv);
    while (!for_gate_open)
        pthread_cond_wait(&for_cv, &for_mu);
    pthread_mutex_unlock(&for_mu);
}

static void for_runner_job(void *arg)
{
    (void)arg;
    assert_int_equal(workpool_for(for_pool, 200, for_item, &for_shared), RAGD_OK);
    pthread_mutex_lock(&for_mu);
    for_done = true;
    pthread_cond_broadcast(&for_cv);
    pthread_mutex_unlock(&for_mu);
}

static void test_workpool_for(void **state)
{
    (void)state;
    static for_items a, c;
    workpool *p = workpool_new(4, 1000);
    assert_int_equal(workpool_for(p, 1000, for_item, &a), RAGD_OK);
    assert_each_once(&a, 1000);
    assert_int_equal(workpool_for(p, 0, for_item, &a), RAGD_OK);
    workpool_free(p);

    /* two workers, one blocked: the other runs workpool_for, whose helper waits behind the
     * gate in the queue, and must finish by itself */
    for_pool = workpool_new(2, 100);
    assert_int_equal(workpool_submit(for_pool, for_gate_job, NULL, NULL), RAGD_OK);
    pthread_mutex_lock(&for_mu);
    while (!for_gate_entered)
        pthread_cond_wait(&for_cv, &for_mu);
    pthread_mutex_unlock(&for_mu);
    assert_int_equal(workpool_submit(for_pool, for_runner_job, NULL, NULL), RAGD_OK);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 20;
    pthread_mutex_lock(&for_mu);
    while (!for_done && pthread_cond_timedwait(&for_cv, &for_mu, &until) == 0)
        ;
    bool finished = for_done;
    for_gate_open = true;
    pthread_cond_broadcast(&for_cv);
    pthread_mutex_unlock(&for_mu);
    assert_true(finished);
    assert_each_once(&for_shared, 200);
    workpool_free(for_pool); /* the late helper runs now, finds nothing and leaves */

    /* a pool that is shut down: the caller alone */
    p = workpool_new(2, 10);
    workpool_shutdown(p);
    assert_int_equal(workpool_for(p, 10, for_item, &c), RAGD_OK);
    assert_each_once(&c, 10);
    workpool_free(p);
}

static void test_sha256(void **state)
{
    (void)state;
    char hex[SHA256_HEX_LEN + 1];
    hash_sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    hash_sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

/* hash_fnv1a64 and its inline form give FNV-1a's published 64-bit values (seed 0) and
 * agree with each other for seeds and lengths 0..64. */
static void test_fnv1a64(void **state)
{
    (void)state;
    assert_true(hash_fnv1a64("", 0, 0) == 0xcbf29ce484222325ULL);
    assert_true(hash_fnv1a64("a", 1, 0) == 0xaf63dc4c8601ec8cULL);
    assert_true(hash_fnv1a64("foobar", 6, 0) == 0x85944171f73967e8ULL);
    assert_true(hash_fnv1a64_inline("foobar", 6, 0) == 0x85944171f73967e8ULL);
    unsigned char buf[64];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (unsigned char)(i * 37 + 200);
    for (size_t n = 0; n <= sizeof buf; n++)
        assert_true(hash_fnv1a64(buf, n, 0x4b494458) == hash_fnv1a64_inline(buf, n, 0x4b494458));
}

static void test_jsontext_escape(void **state)
{
    (void)state;
    char out[64] = "x";
    size_t len = 1;
    assert_true(jsontext_escape(out, sizeof out, &len, "a\"b\\c\n\x01\t/\xc3\xa9"));
    assert_string_equal(out, "xa\\\"b\\\\c\\n\\u0001\\t/\xc3\xa9");
    assert_int_equal(len, strlen(out));
    /* What jansson reads back is the original. */
    char doc[80];
    snprintf(doc, sizeof doc, "[\"%s\"]", out + 1);
    json_t *j = json_loads(doc, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_array_get(j, 0)), "a\"b\\c\n\x01\t/\xc3\xa9");
    json_decref(j);
    /* Too small: false, out cut back to what it held. */
    char small[8] = "ab";
    len = 2;
    assert_false(jsontext_escape(small, sizeof small, &len, "\x01\x02"));
    assert_int_equal(len, 2);
    assert_string_equal(small, "ab");
    assert_true(jsontext_escape(small, sizeof small, &len, "cdefg"));
    assert_false(jsontext_escape(small, sizeof small, &len, "h"));
}

/* jsonw's eight-bytes-at-a-time scan escapes exactly what a byte-by-byte escape does: every
 * byte value at every offset of a word, alone and next to another special byte. */
static void test_jsonw_escape_every_byte(void **state)
{
    (void)state;
    char text[40];
    char want[40 * 6 + 3];
    strbuf sb;
    for (unsigned c = 0; c < 256; c++) {
        for (size_t pos = 0; pos < 24; pos++) {
            for (int pair = 0; pair < 2; pair++) {
                memset(text, 'a', sizeof text);
                text[pos] = (char)c;
                if (pair)
                    text[pos + 9] = '"';
                size_t wl = 0;
                want[wl++] = '"';
                for (size_t i = 0; i < sizeof text; i++) {
                    char esc[7];
                    size_t k = jsontext_escape_byte((unsigned char)text[i], esc);
                    if (k) {
                        memcpy(want + wl, esc, k);
                        wl += k;
                    } else {
                        want[wl++] = text[i];
                    }
                }
                want[wl++] = '"';
                strbuf_init(&sb, sizeof want);
                jsonw w;
                jsonw_init(&w, &sb);
                jsonw_stringn(&w, text, sizeof text);
                assert_int_equal(jsonw_status(&w), RAGD_OK);
                assert_int_equal(sb.len, wl);
                assert_memory_equal(sb.data, want, wl);
                strbuf_cleanup(&sb);
            }
        }
    }
}

/* The JSON writer: what jansson reads back is what was written, numbers as jansson would
 * write them; a full buffer is a sticky failure. */
static void test_jsonw(void **state)
{
    (void)state;
    strbuf sb;
    strbuf_init(&sb, 4096);
    jsonw w;
    jsonw_init(&w, &sb);
    jsonw_object_begin(&w);
    jsonw_key(&w, "s\"k");
    jsonw_string(&w, "a\"b\\c\n\x01\x1f\t/\xc3\xa9");
    jsonw_key(&w, "list");
    jsonw_array_begin(&w);
    jsonw_int(&w, -42);
    jsonw_double(&w, 1.0);
    jsonw_double(&w, 0.1);
    jsonw_double(&w, NAN);
    jsonw_bool(&w, true);
    jsonw_null(&w);
    jsonw_string(&w, NULL);
    jsonw_stringn(&w, "abc", 2);
    jsonw_array_begin(&w);
    jsonw_array_end(&w);
    jsonw_raw(&w, "{\"m\":[1,2]}");
    jsonw_array_end(&w);
    jsonw_key(&w, "empty");
    jsonw_object_begin(&w);
    jsonw_object_end(&w);
    jsonw_object_end(&w);
    assert_int_equal(jsonw_status(&w), RAGD_OK);
    assert_string_equal(sb.data, "{\"s\\\"k\":\"a\\\"b\\\\c\\n\\u0001\\u001f\\t/\xc3\xa9\","
                                 "\"list\":[-42,1.0,0.10000000000000001,null,true,null,null,\"ab\",[],{\"m\":[1,2]}],"
                                 "\"empty\":{}}");
    json_error_t err;
    json_t *j = json_loads(sb.data, 0, &err);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "s\"k")), "a\"b\\c\n\x01\x1f\t/\xc3\xa9");
    /* jansson writes the same text for the numbers */
    char *again = json_dumps(json_object_get(j, "list"), JSON_COMPACT);
    assert_non_null(again);
    assert_non_null(strstr(sb.data, again));
    free(again);
    json_decref(j);
    strbuf_cleanup(&sb);

    /* past the cap: the failure sticks, later writes do nothing */
    strbuf_init(&sb, 16);
    jsonw_init(&w, &sb);
    jsonw_array_begin(&w);
    jsonw_string(&w, "0123456789abcdef");
    assert_int_equal(jsonw_status(&w), RAGD_ETOOBIG);
    size_t len = sb.len;
    jsonw_int(&w, 1);
    jsonw_array_end(&w);
    assert_int_equal(sb.len, len);
    assert_int_equal(jsonw_status(&w), RAGD_ETOOBIG);
    strbuf_cleanup(&sb);

    /* nesting past JSONW_MAX_DEPTH fails rather than writing past its state */
    strbuf_init(&sb, 4096);
    jsonw_init(&w, &sb);
    for (int i = 0; i < JSONW_MAX_DEPTH + 2; i++)
        jsonw_array_begin(&w);
    assert_int_not_equal(jsonw_status(&w), RAGD_OK);
    strbuf_cleanup(&sb);
}

/* jansson's allocator below jsonmem's counter: fails while jsonmem_fail_next is set. */
static bool jsonmem_fail_next;
static void *failing_malloc(size_t n)
{
    if (jsonmem_fail_next) {
        jsonmem_fail_next = false;
        return NULL;
    }
    return malloc(n);
}

static void test_jsonmem(void **state)
{
    (void)state;
    json_set_alloc_funcs(failing_malloc, free);
    jsonmem_init();
    jsonmem_init(); /* once only: a second call must not chain to itself */
    unsigned long before = jsonmem_failures();
    json_t *j = json_loads("{\"a\": [1, 2, \"three\"]}", 0, NULL);
    assert_non_null(j);
    json_decref(j);
    assert_int_equal(jsonmem_failures(), before);
    jsonmem_fail_next = true;
    j = json_loads("{\"a\": [1, 2, \"three\"]}", 0, NULL);
    json_decref(j); /* NULL, or a result that must not be trusted */
    assert_int_equal(jsonmem_failures(), before + 1);
}

/* API keys: the list's forms, what a credential gets, and errors that name the variable but
 * never the key. */
static void test_apikeys(void **state)
{
    (void)state;
    static apikeys ks;
    memset(&ks, 0, sizeof ks);
    char err[256];
    assert_int_equal(apikeys_add(&ks, " writer-0123456789ab , reader-0123456789ab:read,,other-0123456789abc:write ", ',',
                                 "RAGD_API_KEYS", err, sizeof err),
                     0);
    assert_int_equal(ks.n, 3);
    assert_int_equal(apikeys_check(&ks, "writer-0123456789ab", 19), APIKEY_WRITE);
    assert_int_equal(apikeys_check(&ks, "reader-0123456789ab", 19), APIKEY_READ);
    assert_int_equal(apikeys_check(&ks, "other-0123456789abc", 19), APIKEY_WRITE);
    assert_int_equal(apikeys_check(&ks, "writer-0123456789a", 18), APIKEY_NONE);  /* a prefix */
    assert_int_equal(apikeys_check(&ks, "writer-0123456789abc", 20), APIKEY_NONE); /* longer */
    assert_int_equal(apikeys_check(&ks, "", 0), APIKEY_NONE);
    /* the same key listed read-only and read-write: the wider access wins */
    assert_int_equal(apikeys_add(&ks, "reader-0123456789ab", ',', "RAGD_API_KEYS", err, sizeof err), 0);
    assert_int_equal(apikeys_check(&ks, "reader-0123456789ab", 19), APIKEY_WRITE);

    /* a file: one a line, comments and blank lines, CRLF */
    static apikeys kf;
    memset(&kf, 0, sizeof kf);
    assert_int_equal(apikeys_add(&kf, "# team\r\n\n  file-key-0123456789:read\r\n", '\n', "RAGD_API_KEYS_FILE", err,
                                 sizeof err),
                     0);
    assert_int_equal(kf.n, 1);
    assert_int_equal(apikeys_check(&kf, "file-key-0123456789", 19), APIKEY_READ);

    const char *bad[] = {"short", "good-key-0123456789:admin", "two words-0123456789ab", "tab\tkey-0123456789ab",
                         "k\x7f-0123456789abcdefgh"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        memset(&kf, 0, sizeof kf);
        err[0] = '\0';
        assert_int_equal(apikeys_add(&kf, bad[i], ',', "RAGD_API_KEYS", err, sizeof err), -1);
        assert_non_null(strstr(err, "RAGD_API_KEYS: entry 1"));
        assert_null(strstr(err, "0123456789"));
    }
    char many[APIKEYS_MAX * 24 + 64] = "";
    size_t len = 0;
    for (int i = 0; i <= APIKEYS_MAX; i++)
        len += (size_t)snprintf(many + len, sizeof many - len, "key-%016d,", i);
    memset(&kf, 0, sizeof kf);
    assert_int_equal(apikeys_add(&kf, many, ',', "RAGD_API_KEYS", err, sizeof err), -1);
    assert_non_null(strstr(err, "more than"));
}

static void test_url_redact(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"http://localhost:11434", "http://localhost:11434"},
        {"http://user:s3cret@host:11434/v1", "http://***@host:11434/v1"},
        {"https://tok@en@host/path?x=1", "https://***@host/path?x=***"},
        {"http://host/v1?api_key=abc&mode=&z=9#frag", "http://host/v1?api_key=***&mode=&z=***#frag"},
        {"http://host/a@b", "http://host/a@b"}, /* an '@' in the path is no user info */
        {"host:1/x?k=v", "host:1/x?k=***"},
    };
    char out[128];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        url_redact(cases[i][0], out, sizeof out);
        assert_string_equal(out, cases[i][1]);
    }
    url_redact("http://user:s3cret@host", out, 12); /* cut, still without the secret */
    assert_string_equal(out, "http://***@");
}

/* A backend's message that quotes the API key: every occurrence masked, a cut one at the end
 * too, short secrets and unrelated text left alone. */
static void test_secret_scrub(void **state)
{
    (void)state;
    static const char *const cases[][2] = {
        {"Incorrect API key provided: sk-abc123456789.", "Incorrect API key provided: ***."},
        {"sk-abc123456789 and sk-abc123456789", "*** and ***"},
        {"quoted at the end: sk-abc1234", "quoted at the end: ***"}, /* cut to fit */
        {"ends with sk-ab", "ends with sk-ab"},                      /* 5 bytes: could be anything */
        {"nothing here", "nothing here"},
        {"", ""},
    };
    char buf[128];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        snprintf(buf, sizeof buf, "%s", cases[i][0]);
        secret_scrub(buf, "sk-abc123456789");
        assert_string_equal(buf, cases[i][1]);
    }
    snprintf(buf, sizeof buf, "key abcde here");
    secret_scrub(buf, "abcde"); /* too short to scrub */
    assert_string_equal(buf, "key abcde here");
    secret_scrub(buf, NULL);
    assert_string_equal(buf, "key abcde here");
}

/* Token buckets on a fake clock: the parse forms, a burst of `count`, refusal with the time
 * to wait, refill, clients apart, and a bounded table (idle-full buckets swept, then the
 * overflow bucket shared). */
static void test_ratelimit(void **state)
{
    (void)state;
    ratelimit_spec sp;
    assert_int_equal(ratelimit_parse("5/minute", &sp), 0);
    assert_int_equal(sp.count, 5);
    assert_true(sp.period_s == 60);
    assert_string_equal(ratelimit_unit(&sp), "minute");
    assert_int_equal(ratelimit_parse("10/s", &sp), 0);
    assert_true(sp.period_s == 1);
    assert_int_equal(ratelimit_parse("3/hour", &sp), 0);
    assert_true(sp.period_s == 3600);
    assert_int_equal(ratelimit_parse("0", &sp), 0);
    assert_int_equal(sp.count, 0);
    const char *bad[] = {"", "5", "5/day", "-5/minute", "0/minute", "5/minutes", "1000001/s", " 5/s", "5/ s"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
        assert_int_equal(ratelimit_parse(bad[i], &sp), -1);

    assert_int_equal(ratelimit_parse("5/minute", &sp), 0);
    ratelimit *rl = ratelimit_new(&sp, 16);
    assert_non_null(rl);
    ratelimit_verdict v;
    double t = 1000.0;
    for (unsigned i = 0; i < 5; i++) {
        ratelimit_take(rl, "a", 1, t, &v);
        assert_true(v.allowed);
        assert_int_equal(v.limit, 5);
        assert_int_equal(v.remaining, 4 - i);
    }
    ratelimit_take(rl, "a", 1, t, &v);
    assert_false(v.allowed);
    assert_int_equal(v.remaining, 0);
    assert_int_equal(v.retry_s, 12); /* one token every 12 s */
    assert_int_equal(v.reset_s, 60);
    ratelimit_take(rl, "b", 1, t, &v); /* another client is not affected */
    assert_true(v.allowed);
    ratelimit_take(rl, "a", 1, t + 11000, &v);
    assert_false(v.allowed);
    assert_int_equal(v.retry_s, 1);
    ratelimit_take(rl, "a", 1, t + 12100, &v); /* refilled one */
    assert_true(v.allowed);
    assert_int_equal(v.remaining, 0);
    assert_int_equal(ratelimit_clients(rl), 2);

    /* 16 buckets at most: more clients while all are busy share the overflow bucket ... */
    char id[16];
    for (int i = 0; i < 14; i++) {
        snprintf(id, sizeof id, "c%d", i);
        ratelimit_take(rl, id, strlen(id), t + 13000, &v);
        assert_true(v.allowed);
    }
    assert_int_equal(ratelimit_clients(rl), 16);
    /* x0 finds the table full: a sweep drops "b" (full again by now) and x0 takes its place;
     * x1.. find it full again (no second sweep within a second) and share the overflow
     * bucket: 5 pass, then it is empty for all of them */
    for (int i = 0; i < 7; i++) {
        snprintf(id, sizeof id, "x%d", i);
        ratelimit_take(rl, id, strlen(id), t + 13000, &v);
        assert_int_equal(v.allowed, i < 6);
    }
    assert_int_equal(ratelimit_clients(rl), 16);
    /* ... until the idle ones are full again: swept, and newcomers get their own */
    ratelimit_take(rl, "late", 4, t + 13000 + 61000, &v);
    assert_true(v.allowed);
    assert_int_equal(v.remaining, 4);
    assert_int_equal(ratelimit_clients(rl), 1);
    ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_queue),
        cmocka_unit_test(test_strbuf_cap),     cmocka_unit_test(test_strbuf_reserve),
        cmocka_unit_test(test_utf8),           cmocka_unit_test(test_utf8_blocks),
        cmocka_unit_test(test_names),          cmocka_unit_test(test_config),
        cmocka_unit_test(test_log_json_record),
        cmocka_unit_test(test_config_file),
        cmocka_unit_test(test_config_fusion),
        cmocka_unit_test(test_workpool_loopq), cmocka_unit_test(test_workpool_bounded),
        cmocka_unit_test(test_workpool_cancel_queued),
        cmocka_unit_test(test_workpool_for),
        cmocka_unit_test(test_sha256),           cmocka_unit_test(test_jsontext_escape),
        cmocka_unit_test(test_fnv1a64),
        cmocka_unit_test(test_jsonmem),
        cmocka_unit_test(test_jsonw),
        cmocka_unit_test(test_jsonw_escape_every_byte),
        cmocka_unit_test(test_apikeys),
        cmocka_unit_test(test_url_redact),
        cmocka_unit_test(test_secret_scrub),
        cmocka_unit_test(test_ratelimit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
