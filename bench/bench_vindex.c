/* bench_vindex: times vindex_search over 100k random 512-dim vectors (k = 10), and
 * measures its recall@10 against a brute-force float scan of the same vectors (from
 * 4,096 rows on the search scores an int8 copy first and rescores 4k + 32 candidates).
 * Not part of the test suite. Build and run:
 *   cc -std=c17 -D_GNU_SOURCE -O2 -Isrc bench/bench_vindex.c src/index/vindex.c \
 *      src/util/clock.c -o /tmp/bench_vindex -lpthread -lm && /tmp/bench_vindex
 * Optional arguments: rows dim queries. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "index/vindex.h"
#include "util/clock.h"

static uint64_t rng_state = 0x9e3779b97f4a7c15ULL;

/* xorshift64*: a fixed seed, so every run measures the same data. */
static float rng_float(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    uint64_t r = rng_state * 0x2545f4914f6cdd1dULL;
    return (float)((double)(r >> 11) / (double)(1ULL << 53)) * 2.0f - 1.0f;
}

int main(int argc, char **argv)
{
    size_t rows = argc > 1 ? strtoul(argv[1], NULL, 10) : 100000;
    size_t dim = argc > 2 ? strtoul(argv[2], NULL, 10) : 512;
    size_t queries = argc > 3 ? strtoul(argv[3], NULL, 10) : 200;
    int rc = 1;
    float *v = malloc(dim * sizeof *v);
    float *all = malloc(rows * dim * sizeof *all); /* unit rows, for the brute force */
    vindex *ix = vindex_new(dim);
    if (v == NULL || all == NULL || ix == NULL || rows == 0 || queries == 0) {
        fprintf(stderr, "bench_vindex: bad arguments or no memory\n");
        goto out;
    }
    double t0 = clock_now_ms();
    for (size_t r = 0; r < rows; r++) {
        for (size_t d = 0; d < dim; d++)
            v[d] = rng_float();
        if (vindex_add(ix, (int64_t)r, (int64_t)(r / 8), v) != RAGD_OK) {
            fprintf(stderr, "bench_vindex: vindex_add failed at row %zu\n", r);
            goto out;
        }
        double ss = 0.0;
        for (size_t d = 0; d < dim; d++)
            ss += (double)v[d] * v[d];
        for (size_t d = 0; d < dim; d++)
            all[r * dim + d] = (float)(v[d] / sqrt(ss));
    }
    double t1 = clock_now_ms();
    vindex_hit hits[10];
    double checksum = 0.0;
    for (size_t q = 0; q < queries; q++) {
        for (size_t d = 0; d < dim; d++)
            v[d] = rng_float();
        size_t got = vindex_search(ix, v, 10, NULL, NULL, hits);
        checksum += got > 0 ? hits[0].score : 0.0;
    }
    double t2 = clock_now_ms();
    printf("rows=%zu dim=%zu k=10 queries=%zu\n", rows, dim, queries);
    printf("add:    %.3f us/vector\n", (t1 - t0) * 1000.0 / (double)rows);
    printf("search: %.3f ms/query (%.2f GB/s of float rows equivalent; checksum %.4f)\n",
           (t2 - t1) / (double)queries,
           (double)rows * (double)dim * 4.0 * (double)queries / ((t2 - t1) / 1000.0) / 1e9, checksum);
    /* recall@10 against the brute force, on 20 more queries */
    size_t found = 0, wanted = 0;
    for (size_t q = 0; q < 20; q++) {
        for (size_t d = 0; d < dim; d++)
            v[d] = rng_float();
        size_t got = vindex_search(ix, v, 10, NULL, NULL, hits);
        double best[10];
        int64_t ids[10];
        size_t nb = 0;
        for (size_t r = 0; r < rows; r++) {
            double s = 0.0;
            for (size_t d = 0; d < dim; d++)
                s += (double)v[d] * all[r * dim + d];
            if (nb < 10 || s > best[nb - 1]) {
                size_t i = nb < 10 ? nb++ : nb - 1;
                while (i > 0 && best[i - 1] < s) {
                    best[i] = best[i - 1];
                    ids[i] = ids[i - 1];
                    i--;
                }
                best[i] = s;
                ids[i] = (int64_t)r;
            }
        }
        for (size_t i = 0; i < nb; i++) {
            wanted++;
            for (size_t j = 0; j < got; j++)
                if (hits[j].chunk_id == ids[i]) {
                    found++;
                    break;
                }
        }
    }
    printf("recall@10 against a brute-force float scan (20 queries): %.4f\n", (double)found / (double)wanted);
    rc = 0;
out:
    vindex_free(ix);
    free(all);
    free(v);
    return rc;
}
