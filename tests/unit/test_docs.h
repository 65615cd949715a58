#ifndef RAGD_TESTS_TEST_DOCS_H
#define RAGD_TESTS_TEST_DOCS_H

/* The repository's documentation as test input: every .md file of docs/ and docs/internals/
 * (unit tests run from the repository's root), each read whole (its first MiB) and handed
 * to fn. Include after <cmocka.h>: a folder or file that cannot be opened fails the test.
 * Header-only, static inline, like test_rng.h. */
#include <dirent.h>
#include <stdio.h>
#include <string.h>

typedef void (*test_doc_fn)(const char *text, size_t len, void *ud);

/* Calls fn(text, len, ud) once per documentation file; returns how many files. */
static inline size_t test_each_doc(test_doc_fn fn, void *ud)
{
    static const char *const dirs[] = {"docs", "docs/internals"};
    static char buf[1 << 20];
    size_t files = 0;
    for (size_t d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        DIR *dir = opendir(dirs[d]);
        assert_non_null(dir);
        struct dirent *e;
        while ((e = readdir(dir)) != NULL) {
            size_t nl = strlen(e->d_name);
            if (nl < 4 || strcmp(e->d_name + nl - 3, ".md") != 0)
                continue;
            char path[512];
            snprintf(path, sizeof path, "%s/%s", dirs[d], e->d_name);
            FILE *fp = fopen(path, "rb");
            assert_non_null(fp);
            size_t len = fread(buf, 1, sizeof buf, fp);
            fclose(fp);
            fn(buf, len, ud);
            files++;
        }
        closedir(dir);
    }
    return files;
}

#endif
