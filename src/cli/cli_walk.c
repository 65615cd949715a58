/* Walking the PATH arguments of `ragd ingest` into a list of files to send. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli/cli_int.h"
#include "util/utf8.h"

static const struct {
    const char *ext;
    const char *format;
} formats[] = {
    {".txt", "text"},          {".text", "text"}, {".md", "markdown"},
    {".markdown", "markdown"}, {".html", "html"}, {".htm", "html"},
};

const char *cli_format_for(const char *name)
{
    const char *dot = strrchr(name, '.');
    if (!dot || dot == name)
        return NULL; /* no extension, or a bare dot file such as ".md" */
    for (size_t i = 0; i < sizeof formats / sizeof formats[0]; i++) {
        if (strcasecmp(dot, formats[i].ext) == 0)
            return formats[i].format;
    }
    return NULL;
}

bool cli_valid_id(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || !utf8_valid(id, n))
        return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)id[i];
        if (c < 0x20 || c == 0x7f)
            return false;
    }
    /* C1 controls U+0080..U+009F are encoded C2 80..C2 9F. */
    for (size_t i = 0; i + 1 < n; i++) {
        if ((unsigned char)id[i] == 0xC2 && (unsigned char)id[i + 1] >= 0x80 &&
            (unsigned char)id[i + 1] <= 0x9F)
            return false;
    }
    return utf8_length(id, n) <= CLI_MAX_ID_CHARS;
}

void cli_walk_init(cli_walk *w) { memset(w, 0, sizeof *w); }

void cli_walk_cleanup(cli_walk *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->files[i].path);
        free(w->files[i].id);
    }
    free(w->files);
    cli_walk_init(w);
}

size_t cli_walk_skipped(const cli_walk *w)
{
    return w->unsupported + w->symlink_dirs + w->bad_name + w->dup_ids + w->errors;
}

/* Prints one warning line, "ragd: warning: ...", when f is set. */
static void cli_warn(FILE *f, const char *what, const char *path)
{
    if (f)
        fprintf(f, "ragd: warning: skipping %s: %s\n", path, what);
}

/* Joins a directory path and an entry name without doubling a trailing '/'. */
static char *cli_join(const char *dir, const char *name)
{
    size_t dl = strlen(dir), nl = strlen(name);
    bool slash = dl > 0 && dir[dl - 1] != '/';
    char *p = malloc(dl + slash + nl + 1);
    if (!p)
        return NULL;
    memcpy(p, dir, dl);
    if (slash)
        p[dl] = '/';
    memcpy(p + dl + slash, name, nl + 1);
    return p;
}

/* Takes ownership of path and id (freed on failure). */
static ragd_err cli_walk_push(cli_walk *w, char *path, char *id, const char *format)
{
    ragd_err e = RAGD_OK;
    if (w->n >= CLI_MAX_FILES) {
        e = RAGD_ETOOBIG;
        goto fail;
    }
    if (w->n == w->alloc) {
        size_t na = w->alloc ? w->alloc * 2 : 64;
        cli_file *nf = realloc(w->files, na * sizeof *nf);
        if (!nf) {
            e = RAGD_ENOMEM;
            goto fail;
        }
        w->files = nf;
        w->alloc = na;
    }
    w->files[w->n++] = (cli_file){.path = path, .id = id, .format = format};
    return RAGD_OK;
fail:
    free(path);
    free(id);
    return e;
}

/* A regular file found at `path` whose id would be `id` (both borrowed). */
static ragd_err cli_walk_file(cli_walk *w, const char *path, const char *id, FILE *warn)
{
    const char *format = cli_format_for(id);
    if (!format) {
        w->unsupported++;
        return RAGD_OK;
    }
    if (!cli_valid_id(id)) {
        w->bad_name++;
        cli_warn(warn, "name is not usable as a document id (not UTF-8, control characters "
                       "or over 256 characters)", path);
        return RAGD_OK;
    }
    char *p = strdup(path);
    char *i = strdup(id);
    if (!p || !i) {
        free(p);
        free(i);
        return RAGD_ENOMEM;
    }
    return cli_walk_push(w, p, i, format);
}

static int cli_name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Reads the names of a directory (minus . and ..) into a sorted heap array. */
static ragd_err cli_list_dir(const char *dir, char ***out, size_t *count)
{
    ragd_err e = RAGD_OK;
    char **names = NULL;
    size_t n = 0, alloc = 0;
    DIR *d = opendir(dir);
    if (!d)
        return RAGD_EIO;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (!de) {
            if (errno)
                e = RAGD_EIO;
            break;
        }
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (n == alloc) {
            size_t na = alloc ? alloc * 2 : 32;
            char **nn = realloc(names, na * sizeof *nn);
            if (!nn) {
                e = RAGD_ENOMEM;
                break;
            }
            names = nn;
            alloc = na;
        }
        names[n] = strdup(de->d_name);
        if (!names[n]) {
            e = RAGD_ENOMEM;
            break;
        }
        n++;
    }
    int saved_errno = errno; /* for the caller's message */
    closedir(d);
    errno = saved_errno;
    if (e) {
        for (size_t i = 0; i < n; i++)
            free(names[i]);
        free(names);
        return e;
    }
    if (n > 1)
        qsort(names, n, sizeof *names, cli_name_cmp);
    *out = names;
    *count = n;
    return RAGD_OK;
}

/* Walks directory `dir` whose entries get ids prefixed by `rel` ("" at the argument). */
static ragd_err cli_walk_dir(cli_walk *w, const char *dir, const char *rel, int depth,
                             FILE *warn)
{
    char **names = NULL;
    size_t count = 0;
    if (depth > CLI_MAX_DEPTH) {
        w->errors++;
        cli_warn(warn, "folders nested too deeply", dir);
        return RAGD_OK;
    }
    ragd_err e = cli_list_dir(dir, &names, &count);
    if (e == RAGD_EIO) {
        w->errors++;
        cli_warn(warn, strerror(errno), dir);
        return RAGD_OK;
    }
    if (e)
        return e;

    for (size_t i = 0; i < count && !e; i++) {
        const char *name = names[i];
        char *path = NULL, *id = NULL;
        struct stat lst, st;
        if (name[0] == '.') {
            w->hidden++;
            continue;
        }
        path = cli_join(dir, name);
        id = rel[0] ? cli_join(rel, name) : strdup(name);
        if (!path || !id) {
            e = RAGD_ENOMEM;
            goto next;
        }
        if (lstat(path, &lst) != 0) {
            w->errors++;
            cli_warn(warn, strerror(errno), path);
            goto next;
        }
        if (S_ISLNK(lst.st_mode)) {
            if (stat(path, &st) != 0) {
                w->errors++;
                cli_warn(warn, "broken symbolic link", path);
                goto next;
            }
            if (S_ISDIR(st.st_mode)) {
                /* Links to folders are not followed: they can loop, or leave the tree. */
                w->symlink_dirs++;
                cli_warn(warn, "symbolic link to a folder (not followed)", path);
                goto next;
            }
        } else {
            st = lst;
        }
        if (S_ISDIR(st.st_mode)) {
            e = cli_walk_dir(w, path, id, depth + 1, warn);
        } else if (S_ISREG(st.st_mode)) {
            e = cli_walk_file(w, path, id, warn);
        } else {
            w->errors++;
            cli_warn(warn, "not a regular file", path);
        }
    next:
        free(path);
        free(id);
    }
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
    return e;
}

ragd_err cli_walk_add(cli_walk *w, const char *arg, FILE *warn, char *err, size_t errlen)
{
    struct stat st;
    if (arg[0] == '\0' || stat(arg, &st) != 0) {
        snprintf(err, errlen, "cannot access '%s': %s", arg,
                 arg[0] ? strerror(errno) : "empty path");
        return RAGD_ENOTFOUND;
    }
    ragd_err e;
    if (S_ISDIR(st.st_mode)) {
        e = cli_walk_dir(w, arg, "", 0, warn);
    } else if (S_ISREG(st.st_mode)) {
        /* The id of a file argument is its last path component. */
        const char *base = strrchr(arg, '/');
        base = base ? base + 1 : arg;
        e = cli_walk_file(w, arg, base, warn);
    } else {
        snprintf(err, errlen, "cannot ingest '%s': not a regular file or folder", arg);
        return RAGD_ENOTFOUND;
    }
    if (e == RAGD_ETOOBIG)
        snprintf(err, errlen, "more than %d files to ingest", CLI_MAX_FILES);
    else if (e)
        snprintf(err, errlen, "%s", ragd_strerror(e));
    return e;
}

static const cli_walk *sort_walk; /* qsort has no user pointer; single-threaded CLI */

static int cli_idx_by_id(const void *a, const void *b)
{
    size_t ia = *(const size_t *)a, ib = *(const size_t *)b;
    int c = strcmp(sort_walk->files[ia].id, sort_walk->files[ib].id);
    if (c)
        return c;
    return ia < ib ? -1 : ia > ib;
}

ragd_err cli_walk_dedupe(cli_walk *w, FILE *warn)
{
    if (w->n < 2)
        return RAGD_OK;
    size_t *idx = malloc(w->n * sizeof *idx);
    bool *drop = calloc(w->n, sizeof *drop);
    if (!idx || !drop) {
        free(idx);
        free(drop);
        return RAGD_ENOMEM;
    }
    for (size_t i = 0; i < w->n; i++)
        idx[i] = i;
    sort_walk = w;
    qsort(idx, w->n, sizeof *idx, cli_idx_by_id);
    sort_walk = NULL;
    /* Sorted by id, then by position: within a run of equal ids the first is the earliest. */
    for (size_t i = 1; i < w->n; i++) {
        size_t first = idx[i - 1], cur = idx[i];
        if (strcmp(w->files[first].id, w->files[cur].id) == 0) {
            drop[cur] = true;
            idx[i] = first; /* keep the earliest as the run's reference */
            if (warn)
                fprintf(warn, "ragd: warning: skipping %s: id '%s' is already used by %s\n",
                        w->files[cur].path, w->files[cur].id, w->files[first].path);
        }
    }
    size_t out = 0;
    for (size_t i = 0; i < w->n; i++) {
        if (drop[i]) {
            free(w->files[i].path);
            free(w->files[i].id);
            w->dup_ids++;
        } else {
            w->files[out++] = w->files[i];
        }
    }
    w->n = out;
    free(idx);
    free(drop);
    return RAGD_OK;
}
