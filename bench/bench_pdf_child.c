/* The cost of reading PDFs in a child process (text/extract_jail.c): one PDF file read
 * RUNS times in this process, then RUNS times through `RAGD_BIN __extract-pdf`, the mean
 * wall time of each. Usage: bench_pdf_child FILE.pdf RAGD_BIN [RUNS] */
#include <stdio.h>
#include <stdlib.h>

#include "text/extract.h"
#include "util/clock.h"

#define BENCH_PDF_MAX ((size_t)64 << 20)

int main(int argc, char **argv)
{
    if (argc < 3) {
        fprintf(stderr, "usage: bench_pdf_child FILE.pdf RAGD_BIN [RUNS]\n");
        return 2;
    }
    int runs = argc > 3 ? atoi(argv[3]) : 100;
    FILE *f = fopen(argv[1], "rb");
    char *buf = malloc(BENCH_PDF_MAX);
    if (!f || !buf || runs < 1)
        return 2;
    size_t n = fread(buf, 1, BENCH_PDF_MAX, f);
    fclose(f);
    for (int child = 0; child < 2; child++) {
        extract_configure(child ? argv[2] : NULL, EXTRACT_SECONDS);
        double t0 = clock_now_ms();
        for (int i = 0; i < runs; i++) {
            extract_result r;
            char why[400];
            if (extract_document(buf, n, EXTRACT_PDF, NULL, NULL, &r, why, sizeof why) != RAGD_OK) {
                fprintf(stderr, "%s\n", why);
                return 1;
            }
            extract_result_cleanup(&r);
        }
        printf("%-10s %.2f ms per PDF (%d runs, %zu bytes)\n", child ? "child" : "in-process",
               (clock_now_ms() - t0) / runs, runs, n);
    }
    free(buf);
    return 0;
}
