/* Walking the PATH arguments of `ragd ingest` into a list of files to send. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "cli/cli_int.h"
#include "rag/formats.h"
#include "util/utf8.h"

/* Extensions of files that are never documents (pictures, sound, video, archives other
 * than gzip, compiled code, fonts, databases): skipped unless --all, so a folder of docs
 * with its images does not end in a pile of per-file refusals. */
static const char *const junk_exts[] = {
    ".png", ".jpg", ".jpeg", ".gif", ".bmp", ".ico", ".webp", ".tif", ".tiff", ".psd",
    ".mp3", ".ogg", ".oga", ".flac", ".wav", ".mp4", ".mkv", ".avi", ".mov", ".webm",
    ".zip", ".tar", ".tgz", ".xz", ".bz2", ".zst", ".7z", ".rar", ".jar", ".deb", ".rpm",
    ".o", ".a", ".so", ".pyc", ".class", ".exe", ".dll", ".wasm", ".bin",
    ".woff", ".woff2", ".ttf", ".otf", ".sqlite", ".db", ".dvi",
};

/* True when the extension at dot (".png") is one of junk_exts. */
static bool cli_junk_ext(const char *dot, size_t len)
{
    for (size_t i = 0; i < sizeof junk_exts / sizeof junk_exts[0]; i++) {
        if (strlen(junk_exts[i]) == len && strncasecmp(dot, junk_exts[i], len) == 0)
            return true;
    }
    return false;
}

void cli_kind_of(const char *name, cli_file *f)
{
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    f->format = "text";
    f->content_type = "application/octet-stream";
    f->text_kind = false;
    f->junk = false;
    if (!dot || dot == base) {
        /* no extension (README, copyright) or a bare dot name: text when it reads as UTF-8 */
        f->format = NULL;
        f->text_kind = true;
        return;
    }
    /* A known kind (rag/formats.h, a trailing ".gz" is a gzip stream whatever it wraps):
     * its media type for a raw body; a text kind goes as JSON, with its format, when it is
     * valid UTF-8. */
    const rag_format_kind *k = rag_format_kind_of_ext(dot, strlen(dot));
    if (k) {
        f->format = k->text ? k->name : NULL;
        f->content_type = k->media_types[0];
        f->text_kind = k->text;
    }
    if (strcasecmp(dot, ".gz") == 0) {
        /* a compressed picture or archive (x.tar.gz, y.dvi.gz) is still no document */
        const char *inner = dot;
        while (inner > base && inner[-1] != '.')
            inner--;
        if (inner > base + 1)
            f->junk = cli_junk_ext(inner - 1, (size_t)(dot - inner + 1));
        return;
    }
    if (k)
        return;
    f->junk = cli_junk_ext(dot, strlen(dot));
    /* An unknown extension (.c, .json, changelog.Debian): the bytes decide. Valid UTF-8 goes
     * in a JSON batch without a format (the server reads the source name, then the text);
     * anything else goes raw as application/octet-stream, for the server to sniff. */
    f->format = NULL;
    f->text_kind = !f->junk;
}

const char *cli_format_for(const char *name)
{
    cli_file f;
    cli_kind_of(name, &f);
    return f.text_kind ? f.format : NULL;
}

const char *cli_printable(const char *s, char *out, size_t cap)
{
    size_t n = 0;
    for (; s[n] && n + 1 < cap; n++) {
        unsigned char c = (unsigned char)s[n];
        out[n] = (c < 0x20 || c == 0x7f) ? '?' : (char)c;
    }
    out[n] = '\0';
    return out;
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
    return n <= CLI_MAX_ID_BYTES;
}

void cli_walk_init(cli_walk *w) { memset(w, 0, sizeof *w); }

void cli_walk_cleanup(cli_walk *w)
{
    for (size_t i = 0; i < w->n; i++) {
        free(w->files[i].path);
        free(w->files[i].id);
    }
    free(w->files);
    for (size_t i = 0; i < w->nroots; i++)
        free(w->roots[i].id);
    free(w->roots);
    for (size_t i = 0; i < w->nunseen; i++)
        free(w->unseen[i].id);
    free(w->unseen);
    const char *prefix = w->id_prefix;
    bool all = w->all;
    cli_walk_init(w);
    w->id_prefix = prefix; /* settings survive, so a walk can be run again (--watch) */
    w->all = all;
}

size_t cli_walk_skipped(const cli_walk *w)
{
    return w->symlink_dirs + w->bad_name + w->dup_ids + w->errors;
}

/* Prints one warning line, "ragd: warning: ...", when f is set. */
static void cli_warn(FILE *f, const char *what, const char *path)
{
    char shown[CLI_SHOWN_PATH];
    if (f)
        fprintf(f, "ragd: warning: skipping %s: %s\n", cli_printable(path, shown, sizeof shown), what);
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
static ragd_err cli_walk_push(cli_walk *w, char *path, char *id)
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
    cli_file *f = &w->files[w->n++];
    memset(f, 0, sizeof *f);
    f->path = path;
    f->id = id;
    cli_kind_of(id, f);
    return RAGD_OK;
fail:
    free(path);
    free(id);
    return e;
}

/* prefix + rest, malloc'd. */
static char *cli_concat(const char *prefix, const char *rest)
{
    size_t pl = strlen(prefix), rl = strlen(rest);
    char *p = malloc(pl + rl + 1);
    if (p) {
        memcpy(p, prefix, pl);
        memcpy(p + pl, rest, rl + 1);
    }
    return p;
}

/* A regular file found at `path` whose id (before --id-prefix) would be `id` (both borrowed). */
static ragd_err cli_walk_file(cli_walk *w, const char *path, const char *id, FILE *warn)
{
    char *full = cli_concat(w->id_prefix ? w->id_prefix : "", id);
    if (!full)
        return RAGD_ENOMEM;
    if (!cli_valid_id(full)) {
        free(full);
        w->bad_name++;
        cli_warn(warn, "name is not usable as a document id (not UTF-8, control characters "
                       "or over 256 bytes)", path);
        return RAGD_OK;
    }
    char *p = strdup(path);
    if (!p) {
        free(full);
        return RAGD_ENOMEM;
    }
    return cli_walk_push(w, p, full);
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

static ragd_err cli_walk_unseen(cli_walk *w, const char *rel_prefix);

/* A folder with ids under rel ("docs/" or "docs/sub") that could not be listed. */
static ragd_err cli_walk_unseen_dir(cli_walk *w, const char *rel)
{
    char *slashed = cli_join(rel, ""); /* "" stays "": the whole id space */
    if (!slashed)
        return RAGD_ENOMEM;
    ragd_err e = cli_walk_unseen(w, slashed);
    free(slashed);
    return e;
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
        return cli_walk_unseen_dir(w, rel);
    }
    ragd_err e = cli_list_dir(dir, &names, &count);
    if (e == RAGD_EIO) {
        w->errors++;
        cli_warn(warn, strerror(errno), dir);
        return cli_walk_unseen_dir(w, rel);
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
            /* file or folder, unknown: keep the id and everything that starts with it */
            e = cli_walk_unseen(w, id);
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

/* The name a folder argument gives its files' ids: its last component ("docs/" -> "docs"),
 * that of its real path for "." or ".." ("" for the root folder). malloc'd. */
static char *cli_root_name(const char *arg)
{
    size_t n = strlen(arg);
    while (n > 1 && arg[n - 1] == '/')
        n--;
    size_t start = n;
    while (start > 0 && arg[start - 1] != '/')
        start--;
    char *name = strndup(arg + start, n - start);
    if (!name)
        return NULL;
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0 || strcmp(name, "/") == 0 || !name[0]) {
        free(name);
        char *real = realpath(arg, NULL);
        if (!real)
            return NULL;
        const char *slash = strrchr(real, '/');
        name = strdup(slash ? slash + 1 : real);
        free(real);
    }
    return name;
}

/* Appends {id, is_dir} to a root list (takes id; freed on failure). */
static ragd_err cli_root_push(cli_root **list, size_t *n, size_t *alloc, char *id, bool is_dir)
{
    if (!id)
        return RAGD_ENOMEM;
    if (*n == *alloc) {
        size_t na = *alloc ? *alloc * 2 : 8;
        cli_root *nr = realloc(*list, na * sizeof *nr);
        if (!nr) {
            free(id);
            return RAGD_ENOMEM;
        }
        *list = nr;
        *alloc = na;
    }
    (*list)[(*n)++] = (cli_root){.id = id, .is_dir = is_dir};
    return RAGD_OK;
}

/* Records where an argument's documents live in the id space (for --sync). */
static ragd_err cli_walk_root(cli_walk *w, char *id, bool is_dir)
{
    return cli_root_push(&w->roots, &w->nroots, &w->roots_alloc, id, is_dir);
}

/* Records that the ids starting with --id-prefix + rel_prefix were not listed (a folder or
 * entry the walk could not read): --sync must not take their documents for deleted. */
static ragd_err cli_walk_unseen(cli_walk *w, const char *rel_prefix)
{
    char *id = cli_concat(w->id_prefix ? w->id_prefix : "", rel_prefix);
    return cli_root_push(&w->unseen, &w->nunseen, &w->unseen_alloc, id, true);
}

ragd_err cli_walk_add(cli_walk *w, const char *arg, FILE *warn, char *err, size_t errlen)
{
    struct stat st;
    if (arg[0] == '\0' || stat(arg, &st) != 0) {
        char shown[CLI_SHOWN_PATH];
        snprintf(err, errlen, "cannot access '%s': %s", cli_printable(arg, shown, sizeof shown),
                 arg[0] ? strerror(errno) : "empty path");
        return RAGD_ENOTFOUND;
    }
    const char *prefix = w->id_prefix ? w->id_prefix : "";
    ragd_err e;
    if (S_ISDIR(st.st_mode)) {
        /* Ids keep the folder's own name: `a/ b/` give a/x.html and b/x.html. */
        char *name = cli_root_name(arg);
        char *rel = name && name[0] ? cli_join(name, "") : (name ? strdup("") : NULL);
        e = rel ? cli_walk_root(w, cli_concat(prefix, rel), true) : RAGD_ENOMEM;
        if (!e)
            e = cli_walk_dir(w, arg, rel, 0, warn);
        free(name);
        free(rel);
    } else if (S_ISREG(st.st_mode)) {
        /* The id of a file argument is its last path component. */
        const char *base = strrchr(arg, '/');
        base = base ? base + 1 : arg;
        e = cli_walk_root(w, cli_concat(prefix, base), false);
        if (!e)
            e = cli_walk_file(w, arg, base, warn);
    } else {
        char shown[CLI_SHOWN_PATH];
        snprintf(err, errlen, "cannot ingest '%s': not a regular file or folder",
                 cli_printable(arg, shown, sizeof shown));
        return RAGD_ENOTFOUND;
    }
    if (e == RAGD_ETOOBIG)
        snprintf(err, errlen, "more than %d files to ingest", CLI_MAX_FILES);
    else if (e)
        snprintf(err, errlen, "%s", ragd_strerror(e));
    return e;
}

bool cli_walk_covers(const cli_walk *w, const char *id)
{
    for (size_t i = 0; i < w->nunseen; i++) {
        if (strncmp(id, w->unseen[i].id, strlen(w->unseen[i].id)) == 0)
            return false;
    }
    for (size_t i = 0; i < w->nroots; i++) {
        const cli_root *r = &w->roots[i];
        if (r->is_dir ? strncmp(id, r->id, strlen(r->id)) == 0 : strcmp(id, r->id) == 0)
            return true;
    }
    return false;
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
            char shown_cur[CLI_SHOWN_PATH], shown_first[CLI_SHOWN_PATH];
            if (warn) /* ids have no control bytes (cli_valid_id); paths may */
                fprintf(warn, "ragd: warning: skipping %s: id '%s' is already used by %s\n",
                        cli_printable(w->files[cur].path, shown_cur, sizeof shown_cur), w->files[cur].id,
                        cli_printable(w->files[first].path, shown_first, sizeof shown_first));
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
