/* The multipart reader's cost (http/multipart.h): walks a body of `files` parts of `size`
 * bytes each (curl's boundary and part headers), `reps` times, and prints the time of one
 * walk. /api/ingest walks an upload two or three times (docs/internals/http.md), so this
 * times the whole of its multipart parsing. Usage: bench_multipart [files size reps]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "http/multipart.h"

#define BOUNDARY "------------------------d74496d66958873e"

static double bench_now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    size_t files = argc > 1 ? strtoul(argv[1], NULL, 10) : 1000;
    size_t size = argc > 2 ? strtoul(argv[2], NULL, 10) : 10400;
    int reps = argc > 3 ? atoi(argv[3]) : 50;
    size_t cap = files * (size + 256) + 128, n = 0;
    char *body = malloc(cap);
    if (!body || files == 0 || reps <= 0)
        return 1;
    for (size_t i = 0; i < files; i++) {
        n += (size_t)snprintf(body + n, cap - n,
                              "--" BOUNDARY "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"doc%zu.txt\"\r\n"
                              "Content-Type: text/plain\r\n\r\n",
                              i);
        for (size_t k = 0; k < size; k++)
            body[n++] = "abcdefghij -\r\n"[k % 14]; /* CRLFs and dashes, as in text */
        n += (size_t)snprintf(body + n, cap - n, "\r\n");
    }
    n += (size_t)snprintf(body + n, cap - n, "--" BOUNDARY "--\r\n");
    size_t parts = 0;
    double t0 = bench_now_s();
    for (int rep = 0; rep < reps; rep++) {
        multipart_reader r;
        multipart_part p;
        bool end = false;
        multipart_reader_init(&r, body, n, BOUNDARY, 2 * files + 2);
        while (multipart_next(&r, &p, &end) == RAGD_OK && !end)
            parts++;
    }
    double s = bench_now_s() - t0;
    printf("body %zu bytes, %zu parts: %.3f ms per walk, %.0f MB/s\n", n, parts / (size_t)reps, s * 1000 / reps,
           (double)n * reps / s / 1e6);
    free(body);
    return parts == files * (size_t)reps ? 0 : 1;
}
