/* libFuzzer target: the Ollama wire decoders (upstream/ollama.c) on what a backend could
 * send: the streamed NDJSON chat reply (fed whole, and again in pieces of varying length),
 * the /api/embed reply and an error body. Byte 0 is the number of vectors the embed parse
 * expects (0..15) and, in its high bit, whether on_text stops after the first piece; the
 * rest is the body. Checks: the stream decoder gives the same text and the same final
 * state however the bytes were cut; a stream that is over says why (never RUNNING); an
 * embed parse that succeeds holds exactly the vectors asked for, all finite; messages are
 * NUL-terminated within their buffers. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "upstream/ollama.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    strbuf text;
    bool stop_first;
    size_t pieces;
} fz_sink;

static int fz_on_text(const char *p, size_t n, void *arg)
{
    fz_sink *s = arg;
    if (strbuf_append(&s->text, p, n) != RAGD_OK)
        abort();
    s->pieces++;
    return s->stop_first;
}

static ollama_stream_state fz_stream(const char *p, size_t n, uint32_t seed, bool stop_first, fz_sink *sink)
{
    ollama_stream s;
    strbuf_init(&sink->text, (size_t)64 << 20);
    sink->stop_first = stop_first;
    sink->pieces = 0;
    ollama_stream_init(&s, fz_on_text, sink);
    ragd_err e = RAGD_OK;
    size_t off = 0;
    while (off < n && !e) {
        size_t take = seed ? fz_piece(&seed, 48) : n;
        if (take > n - off)
            take = n - off;
        e = ollama_stream_feed(&s, p + off, take);
        off += take;
    }
    if (e == RAGD_ECLOSED && s.state == OLLAMA_STREAM_RUNNING && !(stop_first && sink->pieces))
        abort(); /* over, but the state does not say why */
    ollama_stream_state st = ollama_stream_end(&s);
    if (st == OLLAMA_STREAM_RUNNING || strnlen(s.error, sizeof s.error) == sizeof s.error ||
        strnlen(s.done_reason, sizeof s.done_reason) == sizeof s.done_reason)
        abort();
    ollama_stream_cleanup(&s);
    return st;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const char *p = (const char *)data + 1;
    size_t n = size - 1;
    bool stop_first = data[0] & 0x80;

    fz_sink whole, pieces;
    ollama_stream_state s1 = fz_stream(p, n, 0, stop_first, &whole);
    ollama_stream_state s2 = fz_stream(p, n, fz_seed(data, size) | 1u, stop_first, &pieces);
    if (s1 != s2 || whole.text.len != pieces.text.len ||
        (whole.text.len && memcmp(whole.text.data, pieces.text.data, whole.text.len) != 0))
        abort();
    strbuf_cleanup(&whole.text);
    strbuf_cleanup(&pieces.text);

    size_t expected = data[0] & 0x0F, dim = 0;
    float *vectors = NULL;
    char err[200];
    if (ollama_embed_parse(p, n, expected, &dim, &vectors, err, sizeof err) == RAGD_OK) {
        if (expected && (dim < 1 || dim > 8192 || !vectors))
            abort();
        for (size_t i = 0; i < expected * dim; i++)
            if (!isfinite(vectors[i]))
                abort();
    } else if (strnlen(err, sizeof err) == sizeof err) {
        abort();
    }
    free(vectors);

    char msg[300];
    ollama_error_message(p, n, msg, sizeof msg);
    if (strnlen(msg, sizeof msg) == sizeof msg)
        abort();
    return 0;
}
