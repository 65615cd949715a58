/* The ingest screen's cost on real chunks: guard_score(GUARD_CHUNK) on every chunk of the
 * text files of a directory, chunked as ingest does by default (1000 characters, 150 of
 * overlap, plain text). Prints µs per chunk, MB/s, and a checksum of every verdict (score
 * and model score bits, rule name) so that a change can show it leaves them identical.
 * Usage: build/bench_guard DIR [ROUNDS] [DUMP_FILE]. ROUNDS (default 3): passes over all
 * chunks; the best pass is reported. DUMP_FILE: one line per chunk (score bits, rule). */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"
#include "text/chunker.h"
#include "util/clock.h"

#define BENCH_MAX_FILE (64u << 20)

typedef struct {
    char *text;
    size_t len;
} bench_chunk;

/* Reads path whole (at most BENCH_MAX_FILE bytes); NULL on failure. */
static char *bench_read(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *buf = malloc(BENCH_MAX_FILE);
    size_t n = buf ? fread(buf, 1, BENCH_MAX_FILE, f) : 0;
    fclose(f);
    *len = n;
    return buf;
}

static uint64_t bench_mix(uint64_t h, uint64_t v)
{
    h ^= v;
    h *= 0x100000001B3ull;
    return h;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR [ROUNDS] [DUMP_FILE]\n", argv[0]);
        return 2;
    }
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    if (guard_init() != RAGD_OK)
        return 1;
    DIR *dir = opendir(argv[1]);
    if (!dir)
        return 1;
    bench_chunk *chunks = NULL;
    size_t n_chunks = 0, cap = 0, bytes = 0;
    chunk_params cp = {.chunk_size = 1000, .overlap = 150};
    struct dirent *de;
    while ((de = readdir(dir)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", argv[1], de->d_name);
        size_t len = 0;
        char *text = bench_read(path, &len);
        if (!text)
            continue;
        text_span *spans = NULL;
        size_t n = 0;
        if (chunker_split(text, len, CHUNK_FORMAT_PLAIN, &cp, &spans, &n) != RAGD_OK) {
            free(text);
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            if (n_chunks == cap) {
                cap = cap ? 2 * cap : 1024;
                chunks = realloc(chunks, cap * sizeof *chunks);
                if (!chunks)
                    return 1;
            }
            size_t cl = spans[i].end - spans[i].start;
            chunks[n_chunks].text = malloc(cl + 1);
            memcpy(chunks[n_chunks].text, text + spans[i].start, cl);
            chunks[n_chunks].len = cl;
            bytes += cl;
            n_chunks++;
        }
        free(spans);
        free(text);
    }
    closedir(dir);
    double best = 1e30;
    uint64_t sum = 0;
    size_t flagged = 0;
    FILE *dump = argc > 3 ? fopen(argv[3], "w") : NULL;
    for (int r = 0; r < rounds; r++) {
        uint64_t h = 0xCBF29CE484222325ull;
        size_t fl = 0;
        double t0 = clock_now_ms();
        for (size_t i = 0; i < n_chunks; i++) {
            guard_verdict v;
            if (guard_score(chunks[i].text, chunks[i].len, GUARD_CHUNK, &v) != RAGD_OK)
                return 1;
            uint32_t sb, mb;
            memcpy(&sb, &v.score, 4);
            memcpy(&mb, &v.model_score, 4);
            /* a sum of per-chunk hashes: independent of readdir's order */
            uint64_t c = bench_mix(bench_mix(0xCBF29CE484222325ull, sb), mb);
            for (const char *p = v.rule ? v.rule : ""; *p; p++)
                c = bench_mix(c, (unsigned char)*p);
            h += c;
            fl += v.flagged;
            if (dump && r == 0)
                fprintf(dump, "%08x %08x %s\n", sb, mb, v.rule ? v.rule : "-");
        }
        double s = (clock_now_ms() - t0) / 1e3;
        if (s < best)
            best = s;
        sum = h;
        flagged = fl;
    }
    if (dump)
        fclose(dump);
    printf("chunks %zu bytes %zu flagged %zu checksum %016llx  best of %d: %.3f s, %.2f us/chunk, %.2f MB/s\n",
           n_chunks, bytes, flagged, (unsigned long long)sum, rounds, best, best * 1e6 / (double)n_chunks,
           (double)bytes / best / 1e6);
    for (size_t i = 0; i < n_chunks; i++)
        free(chunks[i].text);
    free(chunks);
    guard_shutdown();
    return 0;
}
