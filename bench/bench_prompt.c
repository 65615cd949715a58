/* The prompt stage's added cost and the token estimate's rate (docs/internals/passages.md):
 *   files     for each file given: bytes, rag_budget_tokens, bytes per estimated token
 *   merge     rag_passages_merge of 20 overlapping chunks of one document of ~1000 characters
 *   fit       rag_prompt_user_fit of 20 passages of ~1000 characters into a 2048-token context
 *             (most dropped, one cut: the worst case of the binary search)
 *   filter    rag_citations_filter of a 2 KB answer with 40 markers, in 4-byte stream pieces
 * Usage: build/bench_prompt [FILE...]. Real clock (CLOCK_MONOTONIC). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rag/budget.h"
#include "rag/citations.h"
#include "rag/passages.h"
#include "rag/prompt.h"
#include "util/clock.h"
#include "util/strbuf.h"

#define ROUNDS 2000

static void files(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        FILE *f = fopen(argv[i], "rb");
        if (!f)
            continue;
        static char buf[1 << 22];
        size_t n = fread(buf, 1, sizeof buf, f);
        fclose(f);
        size_t t = rag_budget_tokens(buf, n);
        printf("%-36s %8zu bytes %8zu tokens (est.) %.2f bytes/token\n", argv[i], n, t, t ? (double)n / (double)t : 0.0);
    }
}

/* A document of numbered sentences, ~20 kB. */
static char *document(size_t *len)
{
    strbuf sb;
    strbuf_init(&sb, 1 << 20);
    for (int i = 1; i <= 200; i++)
        strbuf_appendf(&sb, "Sentence %d says that the backup of volume %d runs nightly at %d o'clock. ", i, i, i % 12 + 1);
    return strbuf_detach(&sb, len);
}

/* 20 chunks of ~1000 bytes overlapping by ~150, as the chunker cuts them. */
static void chunks(const char *doc, size_t len, rag_result *res)
{
    res->hits = calloc(20, sizeof *res->hits);
    res->n = 20;
    for (size_t i = 0; i < 20; i++) {
        size_t start = i * 850, end = start + 1000 > len ? len : start + 1000;
        rag_hit *h = &res->hits[i];
        h->row.doc_rowid = 1;
        h->row.doc_id = strdup("doc");
        h->row.ordinal = (int)i;
        h->row.start = (int64_t)start;
        h->row.end = (int64_t)end;
        h->row.text = strndup(doc + start, end - start);
        h->row.metadata_json = strdup("{}");
        h->score = 1.0 - (double)i / 100;
    }
}

int main(int argc, char **argv)
{
    files(argc, argv);
    size_t len = 0;
    char *doc = document(&len);
    size_t dt = rag_budget_tokens(doc, len);
    printf("%-36s %8zu bytes %8zu tokens (est.) %.2f bytes/token\n", "(the generated English document)", len, dt,
           (double)len / (double)dt);
    double t0 = clock_now_ms();
    for (int r = 0; r < ROUNDS; r++) {
        rag_result res = {0};
        chunks(doc, len, &res);
        rag_passages_merge(&res);
        rag_result_cleanup(&res);
    }
    printf("merge   20 chunks -> 1 passage     %8.1f us (with building the chunks)\n", (clock_now_ms() - t0) * 1000 / ROUNDS);

    rag_result res = {0};
    chunks(doc, len, &res); /* unmerged: 20 passages */
    fence_keys k;
    fence_keys_init(&k, FENCE_MODE_FENCE);
    char *system = rag_prompt_system(&k);
    size_t st = rag_budget_tokens(system, strlen(system));
    rag_prompt_fit fit = {0};
    t0 = clock_now_ms();
    for (int r = 0; r < ROUNDS / 10; r++) {
        fit.context = 2048;
        fit.reserved = 512;
        fit.budget = 1536;
        char *user = NULL;
        rag_prompt_user_fit(&res, "When do backups run?", 20, &k, st, &fit, &user);
        free(user);
    }
    printf("fit     20 passages into 2048      %8.1f us (given %zu, dropped %zu, truncated %d, est %zu)\n",
           (clock_now_ms() - t0) * 1000 / (ROUNDS / 10), fit.passages, fit.passages_dropped, fit.truncated,
           fit.tokens_estimate);
    rag_result_cleanup(&res);
    free(system);

    strbuf ans;
    strbuf_init(&ans, 1 << 20);
    for (int i = 0; i < 40; i++)
        strbuf_appendf(&ans, "The backup runs nightly at two o'clock [%d]. ", i % 8 + 1);
    t0 = clock_now_ms();
    for (int r = 0; r < ROUNDS; r++) {
        strbuf out;
        strbuf_init(&out, 1 << 20);
        size_t released = 0;
        for (size_t have = 4; have < ans.len + 4; have += 4) {
            size_t upto = have > ans.len ? ans.len : have;
            if (upto < ans.len)
                upto = rag_citations_safe_end(ans.data, released, upto);
            if (upto > released)
                rag_citations_filter(ans.data + released, upto - released, 5, &out);
            released = upto > released ? upto : released;
        }
        strbuf_cleanup(&out);
    }
    printf("filter  %zu-byte answer, 4-byte pieces %6.1f us\n", ans.len, (clock_now_ms() - t0) * 1000 / ROUNDS);
    strbuf_cleanup(&ans);
    free(doc);
    return 0;
}
