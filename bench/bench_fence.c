/* The per-request and per-chunk cost of the prompt-injection defences (docs/internals/fence.md):
 *   screen    guard_score(GUARD_CHUNK) + the invisible-character filter on N chunks of ~1000
 *             characters: what ingest adds per chunk (whatever screen is linked: rerun once
 *             the real one is merged)
 *   fence     fencing 5 such passages into a prompt (keys, system prompt, user prompt)
 *   guard     fence_guard_init + fence_guard_check of a whole 2 KB answer
 *   stream    the streamed guard: a 2 KB answer arriving in 4-byte pieces, each judged over
 *             the hold-back window, as rag_on_text does
 * Usage: build/bench_fence [N_CHUNKS] (default 20000). Real clock (CLOCK_MONOTONIC). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guard/guard.h"
#include "rag/fence.h"
#include "util/clock.h"

#define CHUNK_CHARS 1000

static const char *const words[] = {"the", "retention", "of", "snapshot", "checkpoint", "follows", "volcano",
                                    "island", "erupted", "survey", "records", "steady", "conditions", "and",
                                    "routine", "maintenance", "ignore", "previous", "answer", "question"};

static void fill(char *buf, size_t cap, unsigned seed)
{
    size_t w = 0;
    while (w + 16 < cap) {
        seed = seed * 1103515245u + 12345u;
        const char *word = words[(seed >> 16) % (sizeof words / sizeof *words)];
        size_t n = strlen(word);
        memcpy(buf + w, word, n);
        w += n;
        buf[w++] = (seed >> 8) % 13 == 0 ? '.' : ' ';
    }
    buf[w] = '\0';
}

int main(int argc, char **argv)
{
    size_t n = argc > 1 ? (size_t)strtoull(argv[1], NULL, 10) : 20000;
    if (n == 0 || guard_init() != RAGD_OK)
        return 2;
    char (*chunks)[CHUNK_CHARS + 1] = malloc(n * sizeof *chunks);
    if (!chunks)
        return 1;
    for (size_t i = 0; i < n; i++)
        fill(chunks[i], sizeof chunks[i], (unsigned)i + 1);

    double t0 = clock_now_ms();
    size_t flagged = 0;
    for (size_t i = 0; i < n; i++) {
        size_t len = fence_strip_invisible(chunks[i], strlen(chunks[i]));
        guard_verdict v;
        if (guard_score(chunks[i], len, GUARD_CHUNK, &v) != RAGD_OK)
            return 1;
        flagged += v.flagged;
    }
    double t_screen = clock_now_ms() - t0;
    printf("screen: %zu chunks of %d chars in %.1f ms = %.1f us/chunk (%zu flagged)\n", n, CHUNK_CHARS, t_screen,
           1000.0 * t_screen / (double)n, flagged);

    size_t reps = n / 10 ? n / 10 : 1;
    t0 = clock_now_ms();
    for (size_t r = 0; r < reps; r++) {
        fence_keys k;
        if (fence_keys_init(&k, FENCE_MODE_FENCE) != RAGD_OK)
            return 1;
        char *sys = fence_system_prompt(&k);
        strbuf sb;
        strbuf_init(&sb, (size_t)1 << 20);
        for (size_t p = 0; p < 5; p++)
            fence_append_passage(&sb, &k, p + 1, chunks[(r + p) % n], strlen(chunks[(r + p) % n]));
        fence_append_neutral(&sb, "When did the volcano erupt?", 27);
        strbuf_cleanup(&sb);
        free(sys);
    }
    double t_fence = clock_now_ms() - t0;
    printf("fence: %zu prompts of 5 passages in %.1f ms = %.1f us/prompt\n", reps, t_fence,
           1000.0 * t_fence / (double)reps);

    char answer[2049];
    fill(answer, sizeof answer, 7);
    size_t alen = strlen(answer);
    t0 = clock_now_ms();
    size_t leaks = 0;
    for (size_t r = 0; r < reps; r++) {
        fence_keys k;
        fence_keys_init(&k, FENCE_MODE_FENCE);
        char *sys = fence_system_prompt(&k);
        fence_guard g;
        if (!sys || fence_guard_init(&g, k.canary, sys) != RAGD_OK)
            return 1;
        leaks += fence_guard_check(&g, answer, alen) != FENCE_LEAK_NONE;
        fence_guard_cleanup(&g);
        free(sys);
    }
    double t_guard = clock_now_ms() - t0;
    printf("guard: %zu answers of %zu bytes in %.1f ms = %.1f us/answer (%zu leaks)\n", reps, alen, t_guard,
           1000.0 * t_guard / (double)reps, leaks);

    fence_keys k;
    fence_keys_init(&k, FENCE_MODE_FENCE);
    char *sys = fence_system_prompt(&k);
    fence_guard g;
    if (!sys || fence_guard_init(&g, k.canary, sys) != RAGD_OK)
        return 1;
    size_t sreps = reps / 10 ? reps / 10 : 1;
    t0 = clock_now_ms();
    for (size_t r = 0; r < sreps; r++)
        for (size_t end = 4; end <= alen; end += 4) {
            size_t before = end - 4;
            size_t from = before > FENCE_HOLDBACK_BYTES ? before - FENCE_HOLDBACK_BYTES : 0;
            leaks += fence_guard_check(&g, answer + from, end - from) != FENCE_LEAK_NONE;
        }
    double t_stream = clock_now_ms() - t0;
    printf("stream: %zu answers of %zu bytes in 4-byte pieces in %.1f ms = %.1f us/answer (%zu leaks)\n", sreps, alen,
           t_stream, 1000.0 * t_stream / (double)sreps, leaks);
    fence_guard_cleanup(&g);
    free(sys);
    free(chunks);
    guard_shutdown();
    return 0;
}
