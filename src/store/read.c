/* Reads on a borrowed read connection. Every read that runs more than one statement does
 * so inside one read transaction, so it sees one snapshot of the database. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_int.h"
#include "util/log.h"
#include "util/strbuf.h"

/* ---------------------------------------------------------------- helpers */

static ragd_err prepare(sqlite3 *db, const char *sql, sqlite3_stmt **s)
{
    if (sqlite3_prepare_v2(db, sql, -1, s, NULL) != SQLITE_OK) {
        log_error("store: prepare failed: %s", sqlite3_errmsg(db));
        *s = NULL;
        return store__sql_error(db);
    }
    return RAGD_OK;
}

/* A statement of literal SQL (its address names it), prepared once per read connection and
 * kept (reset between uses): compiling a statement cost more than running it on the query
 * path. Dynamic SQL is prepared each time. Either way, give it back with stmt_done. */
static ragd_err stmt_get(store_reader *r, const char *sql, sqlite3_stmt **s)
{
    for (size_t i = 0; i < r->n_stmts; i++) {
        if (r->stmts[i].sql == sql) {
            *s = r->stmts[i].s;
            return RAGD_OK;
        }
    }
    if (sqlite3_prepare_v3(r->db, sql, -1, SQLITE_PREPARE_PERSISTENT, s, NULL) != SQLITE_OK) {
        log_error("store: prepare failed: %s", sqlite3_errmsg(r->db));
        *s = NULL;
        return store__sql_error(r->db);
    }
    if (r->n_stmts < STORE__READER_STMTS) {
        r->stmts[r->n_stmts].sql = sql;
        r->stmts[r->n_stmts++].s = *s;
    }
    return RAGD_OK;
}

/* Gives a statement back: a kept one is reset (and its bindings cleared: they may point into
 * the caller's memory), any other finalized. NULL ok. */
static void stmt_done(store_reader *r, sqlite3_stmt *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < r->n_stmts; i++) {
        if (r->stmts[i].s == s) {
            sqlite3_reset(s);
            sqlite3_clear_bindings(s);
            return;
        }
    }
    sqlite3_finalize(s);
}

static ragd_err begin_read(sqlite3 *db)
{
    if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK) {
        log_error("store: begin read: %s", sqlite3_errmsg(db));
        return store__sql_error(db);
    }
    return RAGD_OK;
}

static void end_read(sqlite3 *db)
{
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
}

static ragd_err step_error(sqlite3 *db)
{
    log_error("store: read failed: %s", sqlite3_errmsg(db));
    return store__sql_error(db);
}

/* malloc'd copy of a text column; NULL for SQL NULL. Sets *oom on allocation failure
 * (ours, or SQLite's: sqlite3_column_text returns NULL for a value it could not convert). */
static char *dup_col(sqlite3_stmt *s, int col, bool *oom)
{
    int type = sqlite3_column_type(s, col);
    const unsigned char *t = sqlite3_column_text(s, col);
    if (!t) {
        if (type != SQLITE_NULL)
            *oom = true;
        return NULL;
    }
    size_t n = (size_t)sqlite3_column_bytes(s, col);
    char *p = malloc(n + 1);
    if (!p) {
        *oom = true;
        return NULL;
    }
    memcpy(p, t, n);
    p[n] = '\0';
    return p;
}

/* Like dup_col, but SQL NULL gives a copy of dflt. */
static char *dup_col_or(sqlite3_stmt *s, int col, const char *dflt, bool *oom)
{
    if (sqlite3_column_type(s, col) != SQLITE_NULL)
        return dup_col(s, col, oom);
    char *p = strdup(dflt);
    if (!p)
        *oom = true;
    return p;
}

/* Makes room for one more element in arr, which holds len of *cap elements of elem_size
 * bytes: a full array doubles its capacity (an empty one starts at first_cap). Returns the
 * array to use from now on, with *cap updated; NULL when the allocation fails, arr then
 * being unchanged and still the caller's to free. */
static void *grow_one(void *arr, size_t len, size_t *cap, size_t elem_size, size_t first_cap)
{
    if (len < *cap)
        return arr;
    size_t ncap = *cap ? *cap * 2 : first_cap;
    if (ncap > SIZE_MAX / elem_size)
        return NULL;
    void *p = realloc(arr, ncap * elem_size);
    if (p)
        *cap = ncap;
    return p;
}

/* ---------------------------------------------------------------- collections */

ragd_err store_collection_get(store_reader *r, const char *name, store_collection *out)
{
    sqlite3_stmt *s = NULL;
    ragd_err e = RAGD_EIO;
    memset(out, 0, sizeof *out);
    if (!name)
        return RAGD_EINVAL;
    e = stmt_get(r, "SELECT " STORE__COLL_COLS " FROM collections WHERE name = ?1", &s);
    if (e)
        goto out;
    sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        store__collection_from_row(s, out);
        e = RAGD_OK;
    } else if (rc == SQLITE_DONE) {
        e = RAGD_ENOTFOUND;
    } else {
        e = step_error(r->db);
    }
out:
    stmt_done(r, s);
    return e;
}

ragd_err store_collection_list(store_reader *r, store_collection **out, size_t *n)
{
    sqlite3_stmt *s = NULL;
    store_collection *arr = NULL;
    size_t len = 0, cap = 0;
    ragd_err e = RAGD_EIO;
    *out = NULL;
    *n = 0;
    e = stmt_get(r, "SELECT " STORE__COLL_COLS " FROM collections ORDER BY name", &s);
    if (e)
        goto out;
    for (;;) {
        int rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            e = step_error(r->db);
            goto out;
        }
        store_collection *p = grow_one(arr, len, &cap, sizeof *arr, 8);
        if (!p) {
            e = RAGD_ENOMEM;
            goto out;
        }
        arr = p;
        store__collection_from_row(s, &arr[len++]);
    }
    *out = arr;
    *n = len;
    arr = NULL;
    e = RAGD_OK;
out:
    free(arr);
    stmt_done(r, s);
    return e;
}

/* ---------------------------------------------------------------- documents */

#define DOC_COLS                                                                                   \
    "d.id, d.doc_id, d.content_hash, d.metadata, d.source, d.version,"                             \
    " (SELECT COUNT(*) FROM chunks c WHERE c.document_id = d.id), length(CAST(d.text AS BLOB)),"   \
    " d.created_at, d.updated_at, d.title"

void store_document_cleanup(store_document *d)
{
    if (!d)
        return;
    free(d->doc_id);
    free(d->metadata_json);
    free(d->source);
    free(d->title);
    memset(d, 0, sizeof *d);
}

void store_document_list_free(store_document *docs, size_t n)
{
    if (!docs)
        return;
    for (size_t i = 0; i < n; i++)
        store_document_cleanup(&docs[i]);
    free(docs);
}

/* Fills d from a DOC_COLS row. */
static ragd_err doc_from_row(sqlite3_stmt *s, store_document *d)
{
    bool oom = false;
    memset(d, 0, sizeof *d);
    d->rowid = sqlite3_column_int64(s, 0);
    d->doc_id = dup_col_or(s, 1, "", &oom);
    store__copy_col(s, 2, d->content_hash, sizeof d->content_hash);
    d->metadata_json = dup_col_or(s, 3, "{}", &oom);
    d->source = dup_col(s, 4, &oom);
    d->version = sqlite3_column_int64(s, 5);
    d->chunks = sqlite3_column_int64(s, 6);
    d->text_bytes = sqlite3_column_int64(s, 7);
    store__copy_col(s, 8, d->created_at, sizeof d->created_at);
    store__copy_col(s, 9, d->updated_at, sizeof d->updated_at);
    const unsigned char *title = sqlite3_column_text(s, 10);
    if (title && title[0])
        d->title = dup_col(s, 10, &oom);
    if (oom) {
        store_document_cleanup(d);
        return RAGD_ENOMEM;
    }
    return RAGD_OK;
}

/* The start of a paged listing of one collection, inside the read transaction the caller
 * has begun: *total from count_sql (?1 = the collection), and page_sql prepared with ?1 the
 * collection, ?2 the limit, ?3 the offset. Both statements go back with stmt_done. */
static ragd_err page_begin(store_reader *r, const char *count_sql, const char *page_sql, int64_t coll_id,
                           size_t limit, size_t offset, sqlite3_stmt **cnt, sqlite3_stmt **s, int64_t *total)
{
    ragd_err e = stmt_get(r, count_sql, cnt);
    if (e)
        return e;
    sqlite3_bind_int64(*cnt, 1, coll_id);
    if (sqlite3_step(*cnt) != SQLITE_ROW)
        return step_error(r->db);
    *total = sqlite3_column_int64(*cnt, 0);
    e = stmt_get(r, page_sql, s);
    if (e)
        return e;
    sqlite3_bind_int64(*s, 1, coll_id);
    sqlite3_bind_int64(*s, 2, limit > INT64_MAX ? INT64_MAX : (int64_t)limit);
    sqlite3_bind_int64(*s, 3, offset > INT64_MAX ? INT64_MAX : (int64_t)offset);
    return RAGD_OK;
}

ragd_err store_document_list(store_reader *r, int64_t coll_id, size_t limit, size_t offset,
                             store_document **out, size_t *n, int64_t *total)
{
    sqlite3_stmt *s = NULL, *cnt = NULL;
    store_document *arr = NULL;
    size_t len = 0, cap = 0;
    ragd_err e = RAGD_EIO;
    *out = NULL;
    *n = 0;
    *total = 0;
    e = begin_read(r->db);
    if (e)
        return e;
    e = page_begin(r, "SELECT COUNT(*) FROM documents WHERE collection_id = ?1",
                   "SELECT " DOC_COLS " FROM documents d WHERE d.collection_id = ?1 ORDER BY d.doc_id LIMIT ?2 OFFSET ?3",
                   coll_id, limit, offset, &cnt, &s, total);
    if (e)
        goto out;
    for (;;) {
        int rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            e = step_error(r->db);
            goto out;
        }
        store_document *p = grow_one(arr, len, &cap, sizeof *arr, 16);
        if (!p) {
            e = RAGD_ENOMEM;
            goto out;
        }
        arr = p;
        e = doc_from_row(s, &arr[len]);
        if (e)
            goto out;
        len++;
    }
    *out = arr;
    *n = len;
    arr = NULL;
    e = RAGD_OK;
out:
    store_document_list_free(arr, len);
    stmt_done(r, s);
    stmt_done(r, cnt);
    end_read(r->db);
    return e;
}

void store_chunks_free(store_chunk *chunks, size_t n)
{
    if (!chunks)
        return;
    for (size_t i = 0; i < n; i++)
        free(chunks[i].text);
    free(chunks);
}

ragd_err store_document_get(store_reader *r, int64_t coll_id, const char *doc_id, store_document *doc,
                            store_chunk **chunks, size_t *n)
{
    sqlite3_stmt *s = NULL, *cs = NULL;
    store_chunk *arr = NULL;
    size_t len = 0, cap = 0;
    bool have_doc = false;
    ragd_err e = RAGD_EIO;
    memset(doc, 0, sizeof *doc);
    *chunks = NULL;
    *n = 0;
    if (!doc_id)
        return RAGD_EINVAL;
    e = begin_read(r->db);
    if (e)
        return e;
    e = stmt_get(r, "SELECT " DOC_COLS " FROM documents d WHERE d.collection_id = ?1 AND d.doc_id = ?2", &s);
    if (e)
        goto out;
    sqlite3_bind_int64(s, 1, coll_id);
    sqlite3_bind_text(s, 2, doc_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        e = RAGD_ENOTFOUND;
        goto out;
    }
    if (rc != SQLITE_ROW) {
        e = step_error(r->db);
        goto out;
    }
    e = doc_from_row(s, doc);
    if (e)
        goto out;
    have_doc = true;
    e = stmt_get(r, "SELECT id, ordinal, start, \"end\", text FROM chunks WHERE document_id = ?1 ORDER BY ordinal",
                &cs);
    if (e)
        goto out;
    sqlite3_bind_int64(cs, 1, doc->rowid);
    for (;;) {
        rc = sqlite3_step(cs);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            e = step_error(r->db);
            goto out;
        }
        store_chunk *p = grow_one(arr, len, &cap, sizeof *arr, 16);
        if (!p) {
            e = RAGD_ENOMEM;
            goto out;
        }
        arr = p;
        bool oom = false;
        store_chunk *c = &arr[len];
        c->chunk_id = sqlite3_column_int64(cs, 0);
        c->ordinal = sqlite3_column_int(cs, 1);
        c->start = sqlite3_column_int64(cs, 2);
        c->end = sqlite3_column_int64(cs, 3);
        c->text = dup_col_or(cs, 4, "", &oom);
        if (oom) {
            e = RAGD_ENOMEM;
            goto out;
        }
        len++;
    }
    *chunks = arr;
    *n = len;
    arr = NULL;
    e = RAGD_OK;
out:
    store_chunks_free(arr, len);
    if (e && have_doc)
        store_document_cleanup(doc);
    stmt_done(r, s);
    stmt_done(r, cs);
    end_read(r->db);
    return e;
}

ragd_err store_document_hash(store_reader *r, int64_t coll_id, const char *doc_id, char hash[STORE_HASH_HEX + 1])
{
    sqlite3_stmt *s = NULL;
    ragd_err e = RAGD_EIO;
    hash[0] = '\0';
    if (!doc_id)
        return RAGD_EINVAL;
    e = stmt_get(r, "SELECT content_hash FROM documents WHERE collection_id = ?1 AND doc_id = ?2", &s);
    if (e)
        goto out;
    sqlite3_bind_int64(s, 1, coll_id);
    sqlite3_bind_text(s, 2, doc_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        store__copy_col(s, 0, hash, STORE_HASH_HEX + 1);
        e = RAGD_OK;
    } else if (rc == SQLITE_DONE) {
        e = RAGD_ENOTFOUND;
    } else {
        e = step_error(r->db);
    }
out:
    stmt_done(r, s);
    return e;
}

/* ---------------------------------------------------------------- chunks by id */

void store_hit_rows_cleanup(store_hit_row *rows, size_t n)
{
    if (!rows)
        return;
    for (size_t i = 0; i < n; i++) {
        free(rows[i].doc_id);
        free(rows[i].text);
        free(rows[i].metadata_json);
        free(rows[i].source);
        free(rows[i].title);
        memset(&rows[i], 0, sizeof rows[i]);
    }
}

ragd_err store_chunks_fetch(store_reader *r, const int64_t *ids, size_t n, store_hit_row *out, bool *found)
{
    sqlite3_stmt *s = NULL;
    ragd_err e = RAGD_EIO;
    memset(out, 0, n * sizeof *out);
    for (size_t i = 0; i < n; i++)
        found[i] = false;
    if (n == 0)
        return RAGD_OK;
    e = begin_read(r->db);
    if (e)
        return e;
    e = stmt_get(r,
                "SELECT c.id, c.document_id, d.doc_id, c.ordinal, c.start, c.\"end\", c.text, d.metadata, d.source,"
                " c.quarantined, c.injection_score, c.page, c.page_end, d.title"
                " FROM chunks c JOIN documents d ON d.id = c.document_id WHERE c.id = ?1",
                &s);
    if (e)
        goto out;
    for (size_t i = 0; i < n; i++) {
        sqlite3_reset(s);
        sqlite3_bind_int64(s, 1, ids[i]);
        int rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            continue;
        if (rc != SQLITE_ROW) {
            e = step_error(r->db);
            goto out;
        }
        bool oom = false;
        store_hit_row *h = &out[i];
        h->chunk_id = sqlite3_column_int64(s, 0);
        h->doc_rowid = sqlite3_column_int64(s, 1);
        h->doc_id = dup_col_or(s, 2, "", &oom);
        h->ordinal = sqlite3_column_int(s, 3);
        h->start = sqlite3_column_int64(s, 4);
        h->end = sqlite3_column_int64(s, 5);
        h->text = dup_col_or(s, 6, "", &oom);
        h->metadata_json = dup_col_or(s, 7, "{}", &oom);
        h->source = dup_col(s, 8, &oom);
        h->quarantined = sqlite3_column_int(s, 9) != 0;
        h->injection_score = (float)sqlite3_column_double(s, 10);
        h->page = sqlite3_column_int(s, 11); /* NULL reads as 0: no page */
        h->page_end = h->page > 0 ? sqlite3_column_int(s, 12) : 0;
        if (h->page_end < h->page)
            h->page_end = h->page;
        const unsigned char *title = sqlite3_column_text(s, 13);
        if (title && title[0])
            h->title = dup_col(s, 13, &oom);
        found[i] = true;
        if (oom) {
            e = RAGD_ENOMEM;
            goto out;
        }
    }
    e = RAGD_OK;
out:
    if (e) {
        store_hit_rows_cleanup(out, n);
        for (size_t i = 0; i < n; i++)
            found[i] = false;
    }
    stmt_done(r, s);
    end_read(r->db);
    return e;
}

/* ---------------------------------------------------------------- metadata filters */

static bool valid_key(const char *k)
{
    if (!k)
        return false;
    size_t n = 0;
    for (; k[n]; n++) {
        char c = k[n];
        bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
                  c == '.' || c == '-';
        if (!ok || n >= 64)
            return false;
    }
    return n >= 1;
}

/* Checks f against the caps and rules. */
static ragd_err filter_check(const store_filter *f)
{
    if (!f || f->n_terms == 0)
        return RAGD_OK;
    if (!f->terms)
        return RAGD_EINVAL;
    if (f->n_terms > STORE_FILTER_MAX_TERMS)
        return RAGD_ETOOBIG;
    size_t total = 0;
    for (size_t t = 0; t < f->n_terms; t++) {
        const store_filter_term *term = &f->terms[t];
        if (!valid_key(term->key) || (term->n_values > 0 && !term->values))
            return RAGD_EINVAL;
        total += term->n_values;
        if (total > STORE_FILTER_MAX_VALUES)
            return RAGD_ETOOBIG;
        for (size_t v = 0; v < term->n_values; v++) {
            const store_value *val = &term->values[v];
            if (val->type == STORE_VAL_STRING && !val->s)
                return RAGD_EINVAL;
            if (val->type < STORE_VAL_STRING || val->type > STORE_VAL_NULL)
                return RAGD_EINVAL;
        }
    }
    return RAGD_OK;
}

/* Appends " AND (...)" per term to sql, with anonymous parameters that filter_bind binds in
 * the same order. The SQL text depends only on the filter's shape (types), never on its
 * keys or values, which are all bound. A term with no values matches nothing. */
static ragd_err filter_sql(const store_filter *f, strbuf *sql)
{
    ragd_err e = RAGD_OK;
    if (!f)
        return RAGD_OK;
    for (size_t t = 0; t < f->n_terms && !e; t++) {
        const store_filter_term *term = &f->terms[t];
        e = strbuf_appends(sql, " AND (0");
        for (size_t v = 0; v < term->n_values && !e; v++) {
            switch (term->values[v].type) {
            case STORE_VAL_STRING:
                e = strbuf_appends(sql, " OR (json_type(d.metadata, ?) = 'text' AND json_extract(d.metadata, ?) = ?)");
                break;
            case STORE_VAL_INT:
            case STORE_VAL_REAL:
                e = strbuf_appends(sql, " OR (json_type(d.metadata, ?) IN ('integer', 'real')"
                                        " AND json_extract(d.metadata, ?) = ?)");
                break;
            case STORE_VAL_BOOL:
            case STORE_VAL_NULL:
                e = strbuf_appends(sql, " OR json_type(d.metadata, ?) = ?");
                break;
            }
        }
        if (!e)
            e = strbuf_appends(sql, ")");
    }
    return e;
}

/* Binds the parameters of filter_sql's text from index *idx on, advancing *idx. Returns
 * RAGD_ENOMEM when SQLite could not copy a value (a parameter left unbound would silently
 * change what the filter matches). */
static ragd_err filter_bind(const store_filter *f, sqlite3_stmt *s, int *idx)
{
    if (!f)
        return RAGD_OK;
    int rc = SQLITE_OK;
    for (size_t t = 0; t < f->n_terms && rc == SQLITE_OK; t++) {
        const store_filter_term *term = &f->terms[t];
        char path[80];
        /* '$."key"': the quotes make '.' and '-' part of the key, not path syntax. */
        snprintf(path, sizeof path, "$.\"%s\"", term->key);
        for (size_t v = 0; v < term->n_values && rc == SQLITE_OK; v++) {
            const store_value *val = &term->values[v];
            rc = sqlite3_bind_text(s, (*idx)++, path, -1, SQLITE_TRANSIENT);
            int rc2 = SQLITE_OK, rc3 = SQLITE_OK;
            switch (val->type) {
            case STORE_VAL_STRING:
                rc2 = sqlite3_bind_text(s, (*idx)++, path, -1, SQLITE_TRANSIENT);
                rc3 = sqlite3_bind_text(s, (*idx)++, val->s, -1, SQLITE_STATIC);
                break;
            case STORE_VAL_INT:
                rc2 = sqlite3_bind_text(s, (*idx)++, path, -1, SQLITE_TRANSIENT);
                rc3 = sqlite3_bind_int64(s, (*idx)++, val->i);
                break;
            case STORE_VAL_REAL:
                rc2 = sqlite3_bind_text(s, (*idx)++, path, -1, SQLITE_TRANSIENT);
                rc3 = sqlite3_bind_double(s, (*idx)++, val->d);
                break;
            case STORE_VAL_BOOL:
                rc2 = sqlite3_bind_text(s, (*idx)++, val->i ? "true" : "false", -1, SQLITE_STATIC);
                break;
            case STORE_VAL_NULL:
                rc2 = sqlite3_bind_text(s, (*idx)++, "null", -1, SQLITE_STATIC);
                break;
            }
            if (rc == SQLITE_OK)
                rc = rc2 != SQLITE_OK ? rc2 : rc3;
        }
    }
    if (rc == SQLITE_OK)
        return RAGD_OK;
    log_error("store: binding a filter value: %s", sqlite3_errstr(rc));
    return rc == SQLITE_NOMEM ? RAGD_ENOMEM : RAGD_EIO;
}

ragd_err store_filter_docs(store_reader *r, int64_t coll_id, const store_filter *f, int64_t **rowids, size_t *n)
{
    sqlite3_stmt *s = NULL;
    strbuf sql;
    int64_t *arr = NULL;
    size_t len = 0, cap = 0;
    *rowids = NULL;
    *n = 0;
    strbuf_init(&sql, 256 * 1024);
    ragd_err e = filter_check(f);
    if (e)
        goto out;
    e = strbuf_appends(&sql, "SELECT d.id FROM documents d WHERE d.collection_id = ?");
    if (!e)
        e = filter_sql(f, &sql);
    if (!e)
        e = strbuf_appends(&sql, " ORDER BY d.id");
    if (e)
        goto out;
    e = prepare(r->db, sql.data, &s);
    if (e)
        goto out;
    int idx = 1;
    sqlite3_bind_int64(s, idx++, coll_id);
    e = filter_bind(f, s, &idx);
    if (e)
        goto out;
    for (;;) {
        int rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            e = step_error(r->db);
            goto out;
        }
        int64_t *p = grow_one(arr, len, &cap, sizeof *arr, 64);
        if (!p) {
            e = RAGD_ENOMEM;
            goto out;
        }
        arr = p;
        arr[len++] = sqlite3_column_int64(s, 0);
    }
    *rowids = arr;
    *n = len;
    arr = NULL;
out:
    free(arr);
    stmt_done(r, s);
    strbuf_cleanup(&sql);
    return e;
}

/* ---------------------------------------------------------------- start-up scan */

ragd_err store_scan_chunks(store_reader *r, store_chunk_fn fn, void *arg)
{
    sqlite3_stmt *s = NULL;
    float *vec = NULL;
    size_t vec_cap = 0;
    ragd_err e = begin_read(r->db);
    if (e)
        return e;
    /* documents in row id order, each one's chunks through chunks_by_document: no sort */
    e = prepare(r->db,
                "SELECT d.collection_id, col.dim, c.id, d.id, c.embedding, c.text, c.heading, d.title"
                " FROM documents d JOIN collections col ON col.id = d.collection_id"
                " JOIN chunks c ON c.document_id = d.id ORDER BY d.id, c.ordinal",
                &s);
    if (e)
        goto out;
    for (;;) {
        int rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            e = step_error(r->db);
            goto out;
        }
        store_chunk_row row = {
            .coll_id = sqlite3_column_int64(s, 0),
            .dim = sqlite3_column_int(s, 1),
            .chunk_id = sqlite3_column_int64(s, 2),
            .doc_rowid = sqlite3_column_int64(s, 3),
        };
        const void *blob = sqlite3_column_blob(s, 4);
        size_t bytes = (size_t)sqlite3_column_bytes(s, 4);
        if (row.dim >= 1 && blob && bytes == (size_t)row.dim * sizeof(float)) {
            if ((size_t)row.dim > vec_cap) {
                float *p = realloc(vec, (size_t)row.dim * sizeof *p);
                if (!p) {
                    e = RAGD_ENOMEM;
                    goto out;
                }
                vec = p;
                vec_cap = (size_t)row.dim;
            }
            memcpy(vec, blob, bytes); /* little-endian float32, not necessarily aligned */
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
            for (int i = 0; i < row.dim; i++) {
                uint32_t u;
                memcpy(&u, &vec[i], 4);
                u = __builtin_bswap32(u);
                memcpy(&vec[i], &u, 4);
            }
#endif
            row.vec = vec;
        } else {
            log_warn("store: chunk %lld has an embedding of %zu bytes, collection dim %d: no vector",
                     (long long)row.chunk_id, bytes, row.dim);
        }
        const int cols[3] = {5, 6, 7};
        const char **txt[3] = {&row.text, &row.heading, &row.title};
        size_t *lens[3] = {&row.text_len, &row.heading_len, &row.title_len};
        for (int i = 0; i < 3; i++) {
            const unsigned char *t = sqlite3_column_text(s, cols[i]);
            if (!t && sqlite3_column_type(s, cols[i]) != SQLITE_NULL) {
                e = RAGD_ENOMEM;
                goto out;
            }
            *txt[i] = t ? (const char *)t : "";
            *lens[i] = t ? (size_t)sqlite3_column_bytes(s, cols[i]) : 0;
        }
        if (fn(&row, arg) != 0)
            break;
    }
    e = RAGD_OK;
out:
    free(vec);
    sqlite3_finalize(s);
    end_read(r->db);
    return e;
}

/* ---------------------------------------------------------------- quarantine */

void store_quarantined_free(store_quarantined *q, size_t n)
{
    if (!q)
        return;
    for (size_t i = 0; i < n; i++) {
        free(q[i].doc_id);
        free(q[i].rule);
        free(q[i].preview);
    }
    free(q);
}

ragd_err store_quarantine_list(store_reader *r, int64_t coll_id, size_t limit, size_t offset, store_quarantined **out,
                               size_t *n, int64_t *total)
{
    sqlite3_stmt *s = NULL, *cnt = NULL;
    store_quarantined *arr = NULL;
    size_t len = 0, cap = 0;
    ragd_err e = RAGD_EIO;
    *out = NULL;
    *n = 0;
    *total = 0;
    e = begin_read(r->db);
    if (e)
        return e;
    /* substr counts characters on TEXT: the preview never splits one */
    e = page_begin(r, "SELECT COUNT(*) FROM chunks WHERE collection_id = ?1 AND quarantined = 1",
                   "SELECT d.doc_id, c.ordinal, c.injection_score, c.injection_rule, substr(c.text, 1, ?4)"
                   " FROM chunks c JOIN documents d ON d.id = c.document_id"
                   " WHERE c.collection_id = ?1 AND c.quarantined = 1"
                   " ORDER BY d.doc_id, c.ordinal LIMIT ?2 OFFSET ?3",
                   coll_id, limit, offset, &cnt, &s, total);
    if (e)
        goto out;
    sqlite3_bind_int(s, 4, STORE_PREVIEW_CHARS);
    for (;;) {
        int rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            e = step_error(r->db);
            goto out;
        }
        store_quarantined *p = grow_one(arr, len, &cap, sizeof *arr, 16);
        if (!p) {
            e = RAGD_ENOMEM;
            goto out;
        }
        arr = p;
        bool oom = false;
        store_quarantined *q = &arr[len++];
        memset(q, 0, sizeof *q);
        q->doc_id = dup_col_or(s, 0, "", &oom);
        q->ordinal = sqlite3_column_int(s, 1);
        q->score = (float)sqlite3_column_double(s, 2);
        q->rule = dup_col(s, 3, &oom);
        q->preview = dup_col_or(s, 4, "", &oom);
        if (oom) {
            e = RAGD_ENOMEM;
            goto out;
        }
    }
    *out = arr;
    *n = len;
    arr = NULL;
    e = RAGD_OK;
out:
    store_quarantined_free(arr, len);
    stmt_done(r, s);
    stmt_done(r, cnt);
    end_read(r->db);
    return e;
}

/* ---------------------------------------------------------------- re-embedding */

#define REEMBED_COLS                                                                               \
    "j.id, j.collection_id, c.name, j.state, j.embedder, j.model, j.dim, j.error, j.started_at,"  \
    " j.updated_at, c.chunks"

static void reembed_from_row(sqlite3_stmt *s, store_reembed_job *j)
{
    memset(j, 0, sizeof *j);
    j->job_id = sqlite3_column_int64(s, 0);
    j->coll_id = sqlite3_column_int64(s, 1);
    store__copy_col(s, 2, j->collection, sizeof j->collection);
    store__copy_col(s, 3, j->state, sizeof j->state);
    store__copy_col(s, 4, j->embedder, sizeof j->embedder);
    store__copy_col(s, 5, j->model, sizeof j->model);
    j->dim = sqlite3_column_int(s, 6);
    store__copy_col(s, 7, j->error, sizeof j->error);
    store__copy_col(s, 8, j->started_at, sizeof j->started_at);
    store__copy_col(s, 9, j->updated_at, sizeof j->updated_at);
    j->total = sqlite3_column_int64(s, 10);
}

ragd_err store_reembed_get(store_reader *r, int64_t coll_id, store_reembed_job *out)
{
    sqlite3_stmt *s = NULL, *cs = NULL;
    ragd_err e = begin_read(r->db);
    if (e)
        return e;
    e = stmt_get(r, "SELECT " REEMBED_COLS " FROM reembed_jobs j JOIN collections c ON c.id = j.collection_id"
                    " WHERE j.collection_id = ?1", &s);
    if (e)
        goto out;
    sqlite3_bind_int64(s, 1, coll_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_DONE) {
        e = RAGD_ENOTFOUND;
        goto out;
    }
    if (rc != SQLITE_ROW) {
        e = step_error(r->db);
        goto out;
    }
    reembed_from_row(s, out);
    if (strcmp(out->state, "done") == 0) {
        out->done = out->total;
        goto out;
    }
    e = stmt_get(r, "SELECT count(*) FROM reembed_vectors WHERE collection_id = ?1", &cs);
    if (e)
        goto out;
    sqlite3_bind_int64(cs, 1, coll_id);
    rc = sqlite3_step(cs);
    if (rc == SQLITE_ROW)
        out->done = sqlite3_column_int64(cs, 0);
    else
        e = step_error(r->db);
out:
    stmt_done(r, s);
    stmt_done(r, cs);
    end_read(r->db);
    return e;
}

ragd_err store_reembed_running(store_reader *r, store_reembed_job **out, size_t *n)
{
    sqlite3_stmt *s = NULL;
    store_reembed_job *arr = NULL;
    size_t len = 0, cap = 0;
    *out = NULL;
    *n = 0;
    ragd_err e = stmt_get(r, "SELECT " REEMBED_COLS " FROM reembed_jobs j JOIN collections c ON c.id = j.collection_id"
                             " WHERE j.state = 'running' ORDER BY j.id", &s);
    if (e)
        goto out;
    for (;;) {
        int rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            e = step_error(r->db);
            goto out;
        }
        store_reembed_job *p = grow_one(arr, len, &cap, sizeof *arr, 4);
        if (!p) {
            e = RAGD_ENOMEM;
            goto out;
        }
        arr = p;
        reembed_from_row(s, &arr[len++]);
    }
    *out = arr;
    *n = len;
    arr = NULL;
out:
    free(arr);
    stmt_done(r, s);
    return e;
}

ragd_err store_reembed_pending(store_reader *r, int64_t coll_id, int64_t after, size_t limit, store_chunk **out,
                               size_t *n)
{
    sqlite3_stmt *s = NULL;
    store_chunk *arr = NULL;
    size_t len = 0, cap = 0;
    bool oom = false;
    *out = NULL;
    *n = 0;
    ragd_err e = stmt_get(r, "SELECT c.id, c.text FROM chunks c WHERE c.collection_id = ?1 AND c.id > ?2"
                             " AND NOT EXISTS (SELECT 1 FROM reembed_vectors v WHERE v.chunk_id = c.id)"
                             " ORDER BY c.id LIMIT ?3", &s);
    if (e)
        goto out;
    sqlite3_bind_int64(s, 1, coll_id);
    sqlite3_bind_int64(s, 2, after);
    sqlite3_bind_int64(s, 3, (int64_t)limit);
    for (;;) {
        int rc = sqlite3_step(s);
        if (rc == SQLITE_DONE)
            break;
        if (rc != SQLITE_ROW) {
            e = step_error(r->db);
            goto out;
        }
        store_chunk *p = grow_one(arr, len, &cap, sizeof *arr, 16);
        if (!p) {
            e = RAGD_ENOMEM;
            goto out;
        }
        arr = p;
        memset(&arr[len], 0, sizeof arr[len]);
        arr[len].chunk_id = sqlite3_column_int64(s, 0);
        arr[len].text = dup_col_or(s, 1, "", &oom);
        len++;
        if (oom) {
            e = RAGD_ENOMEM;
            goto out;
        }
    }
    *out = arr;
    *n = len;
    arr = NULL;
    len = 0;
out:
    store_chunks_free(arr, len);
    stmt_done(r, s);
    return e;
}
