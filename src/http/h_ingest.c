/* POST /api/ingest: JSON batches, multipart/form-data uploads and raw bodies (text,
 * markdown, HTML, reStructuredText, PDF, DOCX, ODT, EPUB, gzip, sniffed octet-streams),
 * parsed on a worker into an ingest job of the engine (rag/ingest.h), whose outcome is
 * rendered here. Reading the bytes (charsets, binary formats) is the job's, on its run. */
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "app.h"
#include "http/fields.h"
#include "http/handlers.h"
#include "http/multipart.h"
#include "rag/ingest.h"
#include "util/jsonfast.h"
#include "util/jsonmem.h"
#include "util/jsontext.h"
#include "util/names.h"
#include "util/utf8.h"

#define INGEST_MAX_DOCS 10000
/* Parts of one multipart body: every file with its id field, plus db and metadata. */
#define INGEST_MAX_PARTS (2 * INGEST_MAX_DOCS + 2)

/* ---- media types ---- */

/* A raw body's or a file part's media type says its kind (rag/formats.h). The two AUTO
 * kinds (gzip, application/octet-stream) leave it to the file name's extension
 * (rag_format_of_source strips a ".gz"), and without a name to the bytes. */
static bool ingest_kind_by_name(const rag_format_kind *k)
{
    return k->format == RAG_FORMAT_AUTO;
}

bool handlers_ingest_accepts(const char *type)
{
    return type[0] == '\0' || strcmp(type, "application/json") == 0 || strcmp(type, "multipart/form-data") == 0 ||
           rag_format_kind_of_media_type(type) != NULL;
}

size_t handlers_ingest_raw_types(char *out, size_t cap)
{
    size_t n_kinds, len = 0;
    const rag_format_kind *kinds = rag_format_kinds(&n_kinds);
    size_t last_text_type = 0; /* the kind after which the charset note goes */
    for (size_t i = 0; i < n_kinds; i++)
        if (strncmp(kinds[i].media_types[0], "text/", 5) == 0)
            last_text_type = i;
    if (cap > 0)
        out[0] = '\0';
    for (size_t i = 0; i < n_kinds; i++) {
        const rag_format_kind *k = &kinds[i];
        bool room = len < cap; /* past the end: only counted (snprintf with no buffer) */
        int w = snprintf(room ? out + len : NULL, room ? cap - len : 0, "%s%s%s%s", i ? ", " : "", k->media_types[0],
                         i == last_text_type ? " (each with an optional charset=)" : "",
                         ingest_kind_by_name(k) && !k->exts[0] ? " (the bytes decide)" : "");
        len += w > 0 ? (size_t)w : 0;
    }
    return len;
}

static rag_format ingest_format_by_name(const char *name)
{
    return name && name[0] ? rag_format_of_source(name) : RAG_FORMAT_AUTO;
}

/* The format of a raw body of an accepted type (not JSON, not multipart). */
static rag_format ingest_raw_format(const char *type, const char *source)
{
    const rag_format_kind *k = rag_format_kind_of_media_type(type);
    return ingest_kind_by_name(k) ? ingest_format_by_name(source) : k->format;
}

/* The format of a file part by its type; false: a type ingest does not take. Clients label
 * files by guesswork (curl: a few extensions, the rest application/octet-stream; browsers
 * text/plain for many text kinds), so a generic type leaves it to the file name. */
static bool ingest_part_format(const multipart_part *p, rag_format *out)
{
    const rag_format_kind *k = p->media_type[0] ? rag_format_kind_of_media_type(p->media_type) : NULL;
    if (p->media_type[0] && !k)
        return false;
    if (!k || ingest_kind_by_name(k)) {
        *out = ingest_format_by_name(p->filename);
    } else if (k->format == RAG_FORMAT_TEXT) {
        rag_format f = rag_format_of_source(p->filename);
        *out = f == RAG_FORMAT_MARKDOWN || f == RAG_FORMAT_HTML || f == RAG_FORMAT_RST ? f : RAG_FORMAT_TEXT;
    } else {
        *out = k->format;
    }
    return true;
}

/* One /api/ingest, owned by its request (freed by the request's cleanup, on the loop). */
typedef struct {
    http_request *req;
    rag_ingest *job; /* until rag_ingest_run takes it */
    char *ack;       /* the 200 body's memory, allocated before the run (ingest_ack_size) */
    size_t ack_cap;
} ingest_call;

static void ingest_call_free(void *arg)
{
    ingest_call *c = arg;
    rag_ingest_free(c->job);
    free(c->ack);
    free(c);
}

/* Stored metadata: the client's object plus "source" when given separately. */
static char *ingest_metadata(json_t *meta, const char *source)
{
    json_t *m = meta ? json_deep_copy(meta) : json_object();
    bool ok = m != NULL;
    if (ok && source && !json_object_get(m, "source")) {
        json_t *s = json_string(source);
        ok = s && json_object_set_new(m, "source", s) == 0; /* a lost "source" is no 200 */
    }
    char *text = ok ? json_dumps(m, JSON_COMPACT) : NULL;
    json_decref(m);
    return text;
}

/* One submitted document as a request gives it (strings the request's). */
typedef struct {
    const char *bytes; /* as submitted: text or a binary file */
    size_t len;
    rag_format format;
    const char *charset; /* declared, or NULL */
    const char *id;      /* NULL: the hash of the bytes */
    const char *source;
} ingest_item;

/* Adds one submitted document to the job; doc and field name it and its bytes in messages.
 * Returns false after replying. */
static bool ingest_add(http_request *req, rag_ingest *job, const ingest_item *it, json_t *meta, const char *doc,
                       const char *field)
{
    const char *source = it->source;
    char *metadata = ingest_metadata(meta, source);
    if (!metadata) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return false;
    }
    /* Metadata comes back with every passage of the document: bounded here, so that one
     * small query cannot make a response of hundreds of megabytes. */
    size_t cap = req->app->cfg.max_metadata_bytes;
    if (strlen(metadata) > cap) {
        free(metadata);
        http_reply_error(req, 422, "validation_error", "%s: metadata is over %zu bytes as JSON (RAGD_MAX_METADATA_BYTES)",
                         doc, cap);
        return false;
    }
    json_t *mt = meta ? json_object_get(meta, "title") : NULL;
    rag_document d = {
        .id = it->id,
        .text = it->bytes,
        .len = it->len,
        .format = it->format,
        .charset = it->charset,
        .source = source,
        .metadata_json = metadata,
        .title = json_is_string(mt) ? json_string_value(mt) : NULL,
        .title_len = json_is_string(mt) ? json_string_length(mt) : 0,
    };
    char why[300];
    rag_status st = rag_ingest_add(job, &d, why, sizeof why);
    free(metadata);
    if (st == RAG_E_INVALID)
        http_reply_error(req, 422, "validation_error", "%s: %s", field, why);
    else if (st != RAG_OK)
        handlers_reply_rag_status(req, st, why);
    return st == RAG_OK;
}

static bool ingest_new_job(http_request *req, ingest_call *c, const char *db, size_t n)
{
    c->job = rag_ingest_new(req->app->engine, db, n);
    if (!c->job)
        http_reply_error(req, 503, "overloaded", "out of memory");
    return c->job != NULL;
}

/* The body as a JSON object: jsonfast_loadb for a well-formed body (megabytes of document
 * text parse several times faster), http_json_object for anything else, so every error
 * reply (empty, too deep, malformed, invalid UTF-8, not an object, out of memory) is
 * http_json_object's. */
static json_t *ingest_body_object(http_request *req)
{
    json_t *v = jsonfast_loadb(req->body.data, req->body.len, HTTP_JSON_MAX_DEPTH);
    if (json_is_object(v))
        return v;
    json_decref(v);
    return http_json_object(req);
}

static bool ingest_parse_json(http_request *req, ingest_call *c)
{
    json_t *body = ingest_body_object(req);
    bool ok = false;
    if (!body)
        return false;
    const char *db = NULL;
    if (!fields_db(req, body, &db))
        goto out;
    json_t *docs = json_object_get(body, "documents");
    if (!json_is_array(docs) || json_array_size(docs) == 0 || json_array_size(docs) > INGEST_MAX_DOCS) {
        http_reply_error(req, 422, "validation_error", "documents: must be an array of 1 to %d documents",
                         INGEST_MAX_DOCS);
        goto out;
    }
    if (!ingest_new_job(req, c, db, json_array_size(docs)))
        goto out;
    /* the JSON "format" values, in rag_format's order (fields_choice's index); the binary
     * formats come as raw bodies, not JSON strings */
    const char *formats[RAG_FORMAT_RST + 2];
    for (int f = 0; f <= RAG_FORMAT_RST; f++)
        formats[f] = rag_format_json_name((rag_format)f);
    formats[RAG_FORMAT_RST + 1] = NULL;
    for (size_t i = 0; i < json_array_size(docs); i++) {
        json_t *doc = json_array_get(docs, i);
        char field[64];
        snprintf(field, sizeof field, "documents[%zu]", i);
        if (!json_is_object(doc)) {
            http_reply_error(req, 422, "validation_error", "%s: must be an object", field);
            goto out;
        }
        const char *text = NULL, *id = NULL, *source = NULL;
        json_t *meta = NULL;
        int fmt = 0;
        char text_field[96];
        snprintf(text_field, sizeof text_field, "%s.text", field);
        json_t *tv = json_object_get(doc, "text");
        if (!json_is_string(tv)) {
            http_reply_error(req, 422, "validation_error", "%s: %s", text_field, tv ? "must be a string" : "is required");
            goto out;
        }
        if (!fields_string(req, doc, "text", true, SIZE_MAX, &text) ||
            !fields_string(req, doc, "id", false, RAG_INGEST_ID_MAX, &id) ||
            !fields_string(req, doc, "source", false, 1024, &source) || !fields_object(req, doc, "metadata", &meta))
            goto out;
        if (id && !rag_ingest_id_valid(id)) {
            http_reply_error(req, 422, "validation_error", "%s.id: must be 1-%d characters without control characters",
                             field, RAG_INGEST_ID_MAX);
            goto out;
        }
        if (!fields_choice(req, doc, "format", formats, (int)rag_format_text_only(rag_format_of_source(source)), &fmt))
            goto out;
        ingest_item it = {.bytes = text, .len = json_string_length(tv), .format = (rag_format)fmt, .id = id,
                          .source = source};
        if (!ingest_add(req, c->job, &it, meta, field, text_field))
            goto out;
    }
    ok = true;
out:
    json_decref(body);
    return ok;
}

/* The collection of a raw or multipart request from ?db= (or the default). */
static bool ingest_arg_db(http_request *req, const char **db)
{
    const char *arg = http_arg_get(req, "db");
    *db = arg ? arg : req->app->cfg.default_db;
    if (!names_db_valid(*db)) {
        http_reply_error(req, 422, "validation_error", "db: must be 1-64 characters of [A-Za-z0-9_.-], not starting with '.'");
        return false;
    }
    return true;
}

/* A parameter of the request's Content-Type into out (cap bytes; lower-cased when lower:
 * a charset is case-insensitive, a boundary is not); "" when absent. Replies 400 and
 * returns false when the parameters are malformed or too long. */
static bool ingest_type_param(http_request *req, const char *name, bool lower, char *out, size_t cap)
{
    bool found = false;
    ragd_err e = req->content_params_too_long
                     ? RAGD_ETOOBIG
                     : multipart_param(req->content_params, strlen(req->content_params), name, out, cap, &found);
    if (e == RAGD_ETOOBIG)
        http_reply_error(req, 400, "invalid_json", "Content-Type: the %s parameter is too long", name);
    else if (e != RAGD_OK)
        http_reply_error(req, 400, "invalid_json", "Content-Type: malformed parameters");
    for (char *p = out; lower && e == RAGD_OK && *p; p++)
        *p = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    return e == RAGD_OK;
}

/* One document as the raw body: its type says the format (rag/ingest.h reads the bytes),
 * ?db=&id=&source= the rest. */
static bool ingest_parse_raw(http_request *req, ingest_call *c)
{
    const char *id = http_arg_get(req, "id");
    const char *source = http_arg_get(req, "source");
    const char *db = NULL;
    char charset[MULTIPART_CHARSET_MAX + 1];
    if (!ingest_arg_db(req, &db))
        return false;
    if (id && (!rag_ingest_id_valid(id) || !utf8_valid(id, strlen(id)))) {
        http_reply_error(req, 422, "validation_error", "id: must be 1-%d characters without control characters",
                         RAG_INGEST_ID_MAX);
        return false;
    }
    if (source && !utf8_valid(source, strlen(source))) {
        http_reply_error(req, 422, "validation_error", "source: must be valid UTF-8");
        return false;
    }
    if (req->body.len == 0) {
        http_reply_error(req, 422, "validation_error", "body: empty: send the document's bytes");
        return false;
    }
    if (!ingest_type_param(req, "charset", true, charset, sizeof charset))
        return false;
    ingest_item it = {.bytes = req->body.data,
                      .len = req->body.len,
                      .format = ingest_raw_format(req->content_type, source),
                      .charset = charset[0] ? charset : NULL,
                      .id = id,
                      .source = source};
    return ingest_new_job(req, c, db, 1) && ingest_add(req, c->job, &it, NULL, "source", "body");
}

/* ---- multipart/form-data ---- */

/* What the form holds besides its files (ingest_form_scan). */
typedef struct {
    char db[65];         /* the db field, "" when absent */
    json_t *meta;        /* the metadata field, or NULL */
    size_t files, ids;   /* file parts, id fields */
} ingest_form;

static void ingest_form_cleanup(ingest_form *f) { json_decref(f->meta); }

static bool ingest_multipart_refused(http_request *req, const multipart_reader *r)
{
    http_reply_error(req, 400, "invalid_multipart", "multipart body: %s", r->message);
    return false;
}

/* A part without a filename: one of the text fields db, metadata, id. */
static bool ingest_form_field(http_request *req, ingest_form *f, const multipart_part *p)
{
    if (strcmp(p->name, "db") == 0) {
        if (f->db[0] || p->len == 0 || p->len >= sizeof f->db) {
            http_reply_error(req, 422, "validation_error", "db: %s", f->db[0] ? "given twice" : "must be 1-64 characters");
            return false;
        }
        memcpy(f->db, p->data, p->len);
        f->db[p->len] = '\0';
        if (strlen(f->db) != p->len || !names_db_valid(f->db)) { /* a NUL would cut the name */
            http_reply_error(req, 422, "validation_error", "db: must be 1-64 characters of [A-Za-z0-9_.-], not starting with '.'");
            return false;
        }
        return true;
    }
    if (strcmp(p->name, "metadata") == 0) {
        if (http_json_too_deep(p->data, p->len)) {
            http_reply_error(req, 422, "validation_error", "metadata: JSON nested deeper than 64 levels");
            return false;
        }
        unsigned long failed = jsonmem_failures();
        json_t *m = f->meta ? NULL : json_loadb(p->data, p->len, JSON_REJECT_DUPLICATES, NULL);
        if (jsonmem_failures() != failed) { /* jansson ran out of memory: m may hold altered text */
            json_decref(m);
            http_reply_error(req, 503, "overloaded", "out of memory while reading the metadata field");
            return false;
        }
        if (!json_is_object(m)) {
            json_decref(m);
            http_reply_error(req, 422, "validation_error", "metadata: %s",
                             f->meta ? "given twice" : "must be a JSON object (applied to every file)");
            return false;
        }
        f->meta = m;
        return true;
    }
    if (strcmp(p->name, "id") == 0) {
        f->ids++;
        return true;
    }
    http_reply_error(req, 400, "invalid_multipart",
                     "part %zu (field '%s'): not a file (it has no filename) and not one of the fields db, metadata, "
                     "id; send files as curl -F 'file=@path' (with the @)",
                     p->number, p->name);
    return false;
}

/* A file part: a name, bytes, and a type ingest takes. */
static bool ingest_form_file(http_request *req, const multipart_part *p)
{
    rag_format fmt;
    if (p->filename[0] == '\0') {
        http_reply_error(req, 400, "invalid_multipart", "part %zu: the filename is empty", p->number);
        return false;
    }
    if (!ingest_part_format(p, &fmt)) {
        char types[HANDLERS_INGEST_RAW_TYPES_MAX];
        handlers_ingest_raw_types(types, sizeof types);
        http_reply_error(req, 415, "unsupported_media_type",
                         "part %zu (%s): Content-Type '%s' is not accepted; a file may be %s, or have no Content-Type "
                         "(its name's extension decides)",
                         p->number, p->filename, p->media_type, types);
        return false;
    }
    if (p->len == 0) {
        http_reply_error(req, 422, "validation_error", "part %zu (%s): the file is empty", p->number, p->filename);
        return false;
    }
    return true;
}

/* First walk: every part checked, the fields read, the files counted; nothing is added. */
static bool ingest_form_scan(http_request *req, const char *boundary, ingest_form *f)
{
    multipart_reader r;
    multipart_part p;
    bool end = false;
    if (multipart_reader_init(&r, req->body.data, req->body.len, boundary, INGEST_MAX_PARTS) != RAGD_OK)
        return ingest_multipart_refused(req, &r);
    for (;;) {
        if (multipart_next(&r, &p, &end) != RAGD_OK)
            return ingest_multipart_refused(req, &r);
        if (end)
            break;
        if (p.has_filename ? !ingest_form_file(req, &p) : !ingest_form_field(req, f, &p))
            return false;
        f->files += p.has_filename;
    }
    if (f->files == 0 || f->files > INGEST_MAX_DOCS) {
        http_reply_error(req, 422, "validation_error",
                         "files: the form must hold 1 to %d files (parts with a filename: curl -F 'file=@path')",
                         INGEST_MAX_DOCS);
        return false;
    }
    if (f->ids && f->ids != f->files) {
        http_reply_error(req, 422, "validation_error",
                         "id: %zu id field%s for %zu file%s: give one per file, in the files' order, or none",
                         f->ids, f->ids == 1 ? "" : "s", f->files, f->files == 1 ? "" : "s");
        return false;
    }
    return true;
}

/* The next id field's value after r's position, into out; 422 when it is not a valid id. */
static bool ingest_form_next_id(http_request *req, multipart_reader *r, char *out, size_t cap)
{
    multipart_part p;
    bool end = false;
    /* the scan read the same body: every part is well-formed and there are enough ids */
    while (multipart_next(r, &p, &end) == RAGD_OK && !end) {
        if (p.has_filename || strcmp(p.name, "id") != 0)
            continue;
        bool ok = p.len > 0 && p.len < cap && utf8_valid(p.data, p.len);
        if (ok) {
            memcpy(out, p.data, p.len);
            out[p.len] = '\0';
            ok = rag_ingest_id_valid(out);
        }
        if (!ok)
            http_reply_error(req, 422, "validation_error",
                             "part %zu: id: must be 1-%d characters of UTF-8 without control characters", p.number,
                             RAG_INGEST_ID_MAX);
        return ok;
    }
    http_reply_error(req, 500, "internal", "multipart body: an id field went missing between two readings");
    return false;
}

/* Second walk: each file added with its id (the next id field, ?id=, or its file name),
 * its file name as source, and the metadata field. */
static bool ingest_form_add(http_request *req, ingest_call *c, const char *boundary, const ingest_form *f)
{
    multipart_reader r, ids;
    multipart_part p;
    bool end = false;
    const char *arg_id = http_arg_get(req, "id");
    char id[RAG_INGEST_ID_MAX + 1];
    multipart_reader_init(&r, req->body.data, req->body.len, boundary, INGEST_MAX_PARTS);
    multipart_reader_init(&ids, req->body.data, req->body.len, boundary, INGEST_MAX_PARTS);
    while (multipart_next(&r, &p, &end) == RAGD_OK && !end) {
        if (!p.has_filename)
            continue;
        rag_format fmt = RAG_FORMAT_AUTO;
        ingest_part_format(&p, &fmt);
        const char *doc_id = p.filename;
        if (f->ids) {
            if (!ingest_form_next_id(req, &ids, id, sizeof id))
                return false;
            doc_id = id;
        } else if (arg_id) {
            doc_id = arg_id;
        } else if (!rag_ingest_id_valid(p.filename)) {
            http_reply_error(req, 422, "validation_error",
                             "part %zu: the file name is over %d bytes and cannot be the document's id: give an id "
                             "field",
                             p.number, RAG_INGEST_ID_MAX);
            return false;
        }
        char doc[64 + MULTIPART_FILENAME_MAX];
        snprintf(doc, sizeof doc, "part %zu (%s)", p.number, p.filename);
        ingest_item it = {.bytes = p.data,
                          .len = p.len,
                          .format = fmt,
                          .charset = p.charset[0] ? p.charset : NULL,
                          .id = doc_id,
                          .source = p.filename};
        if (!ingest_add(req, c->job, &it, f->meta, doc, doc))
            return false;
    }
    return true;
}

/* Files as multipart/form-data (curl -F): each part with a filename is a document; the text
 * fields db, metadata and id apply (docs/api.md "Uploads"). Read twice: checked whole before
 * anything is added, so a bad part anywhere stores nothing. */
static bool ingest_parse_multipart(http_request *req, ingest_call *c)
{
    char boundary[MULTIPART_BOUNDARY_MAX + 2];
    ingest_form f = {0};
    bool ok = false;
    const char *db = NULL;
    const char *arg_id = http_arg_get(req, "id");
    if (!ingest_type_param(req, "boundary", false, boundary, sizeof boundary))
        goto out;
    if (!boundary[0]) {
        http_reply_error(req, 400, "invalid_multipart",
                         "multipart/form-data without a boundary parameter (Content-Type: multipart/form-data; "
                         "boundary=...)");
        goto out;
    }
    if (!ingest_form_scan(req, boundary, &f) || !ingest_arg_db(req, &db))
        goto out;
    if (f.db[0] && http_arg_get(req, "db") && strcmp(f.db, db) != 0) {
        http_reply_error(req, 422, "validation_error", "db: the form's db field and ?db= differ");
        goto out;
    }
    if (arg_id && (f.files > 1 || f.ids)) {
        http_reply_error(req, 422, "validation_error",
                         "id: ?id= names one document and the form holds %zu files%s: give an id field per file",
                         f.files, f.ids ? " and id fields" : "");
        goto out;
    }
    if (arg_id && (!rag_ingest_id_valid(arg_id) || !utf8_valid(arg_id, strlen(arg_id)))) {
        http_reply_error(req, 422, "validation_error", "id: must be 1-%d characters without control characters",
                         RAG_INGEST_ID_MAX);
        goto out;
    }
    ok = ingest_new_job(req, c, f.db[0] ? f.db : db, f.files) && ingest_form_add(req, c, boundary, &f);
out:
    ingest_form_cleanup(&f);
    return ok;
}

/* ---- the acknowledgement ---- */

/* The acknowledgement of a committed ingest is written into memory allocated before the
 * job ran: once the documents are stored the client must learn it, so nothing after the
 * commit may fail for want of memory. Its size bounds what is written: every string
 * escaped (at most 6 bytes a byte) plus the fixed text and the numbers. */
static size_t ingest_ack_size(const rag_ingest *job, size_t n)
{
    size_t size = 6 * (STORE_NAME_MAX + RAG_INGEST_WARNING_MAX + STORE_MODEL_MAX + 16) + 512;
    for (size_t i = 0; i < n; i++)
        size += 2 * (6 * strlen(rag_ingest_doc_id(job, i)) + 4) + 48; /* in ids, and in quarantined_documents */
    return size;
}

/* printf at out + *len, never past cap (the text is cut there, *len stays below cap). */
static void ack_printf(char *out, size_t cap, size_t *len, const char *fmt, ...) __attribute__((format(printf, 4, 5)));
static void ack_printf(char *out, size_t cap, size_t *len, const char *fmt, ...)
{
    if (*len + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(out + *len, cap - *len, fmt, ap);
    va_end(ap);
    if (n > 0)
        *len = *len + (size_t)n < cap ? *len + (size_t)n : cap - 1;
}

/* Writes the 200 body into c->ack (ingest_ack_size bytes); returns its length. */
static size_t ingest_write_ack(ingest_call *c, const rag_ingest_outcome *o, const rag_ingest *job)
{
    char *out = c->ack;
    size_t cap = c->ack_cap, len = 0;
    /* every piece fits by construction (ingest_ack_size); ack_printf and jsontext_escape
     * both stop at the cap if not */
    ack_printf(out, cap, &len, "{\"db\":\"");
    jsontext_escape(out, cap, &len, o->db);
    ack_printf(out, cap, &len, "\",\"documents\":%zu,\"chunks\":%lld,\"duplicates\":%zu,\"ids\":[", o->documents,
               (long long)o->chunks, o->duplicates);
    for (size_t i = 0; i < o->documents; i++) {
        ack_printf(out, cap, &len, "%s\"", i ? "," : "");
        jsontext_escape(out, cap, &len, rag_ingest_doc_id(job, i));
        ack_printf(out, cap, &len, "\"");
    }
    ack_printf(out, cap, &len, "],\"created\":%s,\"embedder\":\"%s\",\"embed_model\":\"",
               o->created ? "true" : "false", o->embedder);
    jsontext_escape(out, cap, &len, o->embed_model);
    /* the injection screen: chunks quarantined, in all and per document that has any */
    ack_printf(out, cap, &len, "\",\"quarantined\":%zu,\"quarantined_documents\":[", o->quarantined);
    bool first = true;
    for (size_t i = 0; i < o->documents; i++) {
        size_t nq = rag_ingest_doc_quarantined(job, i);
        if (!nq)
            continue;
        ack_printf(out, cap, &len, "%s{\"id\":\"", first ? "" : ",");
        jsontext_escape(out, cap, &len, rag_ingest_doc_id(job, i));
        ack_printf(out, cap, &len, "\",\"quarantined\":%zu}", nq);
        first = false;
    }
    ack_printf(out, cap, &len, "],\"warnings\":[");
    if (o->warning[0]) {
        ack_printf(out, cap, &len, "\"");
        jsontext_escape(out, cap, &len, o->warning);
        ack_printf(out, cap, &len, "\"");
    }
    ack_printf(out, cap, &len, "]}");
    return len;
}

/* The engine's outcome (writer, worker or loop thread): the response, then the request may go. */
static void ingest_on_done(const rag_ingest_outcome *o, const rag_ingest *job, void *ctx)
{
    ingest_call *c = ctx;
    http_request *req = c->req;
    req->upstream.embed_ms = o->embed_ms; /* for the access line */
    if (o->status == RAG_OK) {
        size_t len = ingest_write_ack(c, o, job);
        http_reply_owned(req, 200, "application/json; charset=utf-8", c->ack, len);
        c->ack = NULL;
    } else if (o->write) {
        handlers_reply_write_error(req, o->write, "db_not_found");
    } else {
        handlers_reply_rag_status(req, o->status, o->message);
    }
    http_complete(req);
}

/* On a worker: the request parsed into a job, which the engine runs. */
static void ingest_work(http_request *req)
{
    ingest_call *c = req->cleanup_arg;
    bool parsed = false;
    if (req->content_type[0] == '\0' || strcmp(req->content_type, "application/json") == 0)
        parsed = ingest_parse_json(req, c);
    else if (strcmp(req->content_type, "multipart/form-data") == 0)
        parsed = ingest_parse_multipart(req, c);
    else
        parsed = ingest_parse_raw(req, c);
    if (!parsed)
        return;
    c->ack_cap = ingest_ack_size(c->job, rag_ingest_docs(c->job));
    c->ack = malloc(c->ack_cap);
    if (!c->ack) {
        http_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    rag_ingest *job = c->job;
    c->job = NULL; /* the engine's now */
    char why[700];
    http_hold(req); /* given back by ingest_on_done, which may come before the run returns */
    rag_status st = rag_ingest_run(job, ingest_on_done, c, why, sizeof why);
    if (st != RAG_OK) {
        handlers_reply_rag_status(req, st, why);
        http_complete(req);
    }
}

/* Arrival (loop): the call is made and owned by the request; a worker does the rest. */
void handlers_ingest(http_request *req)
{
    ingest_call *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(req->retry_after, sizeof req->retry_after, "1");
        http_reply_error(req, 503, "overloaded", "out of memory");
        return;
    }
    c->req = req;
    http_set_cleanup(req, ingest_call_free, c);
    http_defer_on(req, req->app->ingest_pool, ingest_work); /* parsing, extraction, chunking: off the query pool */
}
