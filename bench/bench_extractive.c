/* The cost of one extractive answer (src/rag/extractive.c), which runs on a worker for every
 * query: the given markdown files are chunked like ingest does (1000 characters, overlap 100),
 * and each answer takes K consecutive chunks of one file as its passages (overlapping, as a
 * retrieval of one document returns them) and one question of a fixed set.
 * Usage: build/bench_extractive [ROUNDS] [K] FILE...   (defaults 200, 5)
 * Prints µs per answer (mean over ROUNDS × questions × passage windows). Real clock. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rag/extractive.h"
#include "text/chunker.h"
#include "util/clock.h"

static const char *const questions[] = {
    "what did we decide about backups?", "how do I run the unit tests?", "when is a document quarantined?",
    "why does ragd defer completion callbacks?", "how many retries does the upstream client make?",
    "what happens when Ollama is down?", "where is the data stored?", "who can use the server?",
};
#define NQ (sizeof questions / sizeof questions[0])

static char *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    char *buf = NULL;
    size_t cap = 0, n = 0;
    for (;;) {
        if (n + 4096 > cap) {
            cap = cap ? cap * 2 : 65536;
            char *nb = realloc(buf, cap);
            if (nb == NULL) {
                free(buf);
                fclose(f);
                return NULL;
            }
            buf = nb;
        }
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
    }
    fclose(f);
    *len = n;
    return buf;
}

int main(int argc, char **argv)
{
    int arg = 1;
    size_t rounds = 200, k = 5;
    if (arg < argc && strtoul(argv[arg], NULL, 10) > 0)
        rounds = strtoul(argv[arg++], NULL, 10);
    if (arg < argc && strtoul(argv[arg], NULL, 10) > 0)
        k = strtoul(argv[arg++], NULL, 10);
    extract_passage *ps = NULL;
    size_t nps = 0;
    size_t *file_start = calloc((size_t)argc + 1, sizeof *file_start);
    char **texts = calloc((size_t)argc + 1, sizeof *texts);
    size_t nfiles = 0;
    if (file_start == NULL || texts == NULL)
        return 1;
    chunk_params cp = {1000, 100};
    for (; arg < argc; arg++) {
        size_t len = 0;
        char *text = read_file(argv[arg], &len);
        text_span *spans = NULL;
        size_t ns = 0;
        if (text == NULL || chunker_split(text, len, CHUNK_FORMAT_MARKDOWN, &cp, &spans, &ns) != RAGD_OK) {
            fprintf(stderr, "%s: unreadable or not UTF-8, skipped\n", argv[arg]);
            free(text);
            continue;
        }
        extract_passage *nps2 = realloc(ps, (nps + ns) * sizeof *ps);
        if (nps2 == NULL)
            return 1;
        ps = nps2;
        texts[nfiles] = text;
        file_start[nfiles++] = nps;
        for (size_t i = 0; i < ns; i++)
            ps[nps++] = (extract_passage){text + spans[i].start, spans[i].end - spans[i].start};
        free(spans); /* text stays: the passages point into it */
    }
    file_start[nfiles] = nps;
    if (nps < k) {
        fprintf(stderr, "usage: bench_extractive [ROUNDS] [K] FILE... (need at least K chunks)\n");
        return 2;
    }
    extract_params prm = {3, 800};
    size_t answers = 0, bytes = 0;
    double t0 = clock_now_ms();
    for (size_t r = 0; r < rounds; r++) {
        for (size_t f = 0; f < nfiles; f++) {
            size_t s = file_start[f], e = file_start[f + 1];
            for (size_t w = s; w + k <= e || (w == s && e > s); w += k) {
                size_t n = w + k <= e ? k : e - w;
                const char *q = questions[(r + w) % NQ];
                char *a = NULL;
                if (extractive_answer(q, strlen(q), ps + w, n, &prm, &a) != RAGD_OK)
                    return 1;
                bytes += a ? strlen(a) : 0;
                free(a);
                answers++;
            }
        }
    }
    double ms = clock_now_ms() - t0;
    printf("%zu answers over %zu chunks (k=%zu): %.1f us per answer (%zu answer bytes)\n", answers, nps, k,
           ms * 1000.0 / (double)answers, bytes);
    for (size_t f = 0; f < nfiles; f++)
        free(texts[f]);
    free(texts);
    free(file_start);
    free(ps);
    return 0;
}
