#ifndef RAGD_HTTP_MULTIPART_H
#define RAGD_HTTP_MULTIPART_H

/* multipart/form-data (RFC 7578 on the multipart syntax of RFC 2046 5.1), read from a
 * body already buffered in memory (under RAGD_MAX_BODY_BYTES). No I/O and no allocation: a
 * reader walks the body one part at a time; each part's content points into the body, its
 * names are decoded into the part's own fixed buffers. docs/internals/http.md.
 *
 * What is read:
 *   [preamble CRLF] "--" boundary [LWSP] CRLF
 *   ( headers CRLF content CRLF "--" boundary [LWSP] CRLF )*
 *   ... CRLF "--" boundary "--" [epilogue]
 * The first boundary line may open the body or follow a preamble's CRLF; the epilogue
 * after the closing boundary is ignored. Part headers: "Name: value" lines ended by CRLF,
 * one empty line ending them; Content-Disposition (required: form-data with a name;
 * filename and RFC 5987 filename* read), Content-Type (media type and charset) and
 * Content-Transfer-Encoding (only 7bit, 8bit, binary) are read, other headers ignored.
 *
 * Refused (RAGD_EINVAL, reader.message says what and names the part by its 1-based
 * number): no boundary line in the body; a boundary line followed by anything but
 * optional blanks and CRLF, or "--"; a body ending inside a part (no closing boundary); a
 * part's header block over MULTIPART_HEAD_MAX bytes or MULTIPART_HEAD_LINES lines, a
 * header line without a colon or with a name that is not a token, a folded or bare-LF
 * line; Content-Disposition missing, twice, not form-data or without a name; a name, file
 * name, media type or charset over its buffer, not valid UTF-8 or holding a control
 * character; filename* in a charset other than UTF-8 or with a bad %-escape; a
 * Content-Transfer-Encoding that would need decoding; more than max_parts parts. */
#include <stdbool.h>
#include <stddef.h>

#include "util/err.h"

#define MULTIPART_BOUNDARY_MAX 70  /* RFC 2046: 1-70 characters */
#define MULTIPART_HEAD_MAX 8192    /* bytes of one part's header block */
#define MULTIPART_HEAD_LINES 32    /* header lines of one part */
#define MULTIPART_NAME_MAX 255     /* bytes of a field name */
#define MULTIPART_FILENAME_MAX 1024 /* bytes of a file name, decoded (ingest's source cap) */
#define MULTIPART_TYPE_MAX 127     /* bytes of a part's media type */
#define MULTIPART_CHARSET_MAX 39   /* bytes of a charset name */
#define MULTIPART_MESSAGE_MAX 200  /* bytes of the refusal's message, NUL included */

/* One part, as multipart_next fills it. Strings are NUL-terminated in the part itself. */
typedef struct {
    size_t number;                          /* 1-based position in the body */
    char name[MULTIPART_NAME_MAX + 1];      /* the form field's name */
    bool has_filename;                      /* filename or filename* was given (maybe empty) */
    char filename[MULTIPART_FILENAME_MAX + 1]; /* filename* (decoded) when given, else filename; "" if none */
    char media_type[MULTIPART_TYPE_MAX + 1];   /* lower-case, no parameters; "" when no Content-Type */
    char charset[MULTIPART_CHARSET_MAX + 1];   /* Content-Type's charset, lower-case; "" when none */
    const char *data;                       /* the content: data[0..len) inside the body */
    size_t len;
} multipart_part;

/* A walk over one body. Fields are the reader's own; message is for the client. */
typedef struct {
    const char *body;
    size_t len;
    char delim[4 + MULTIPART_BOUNDARY_MAX + 1]; /* CRLF "--" boundary */
    size_t delim_len;
    size_t pos;        /* where the next call reads */
    size_t parts;      /* parts returned so far */
    size_t max_parts;
    int state;
    char message[MULTIPART_MESSAGE_MAX];
} multipart_reader;

/* Starts a walk over body[0..len) with the given boundary (the Content-Type's parameter,
 * already unquoted); body may be NULL for an empty body. RAGD_EINVAL (message set) for a boundary of 0 or over 70 bytes, or with
 * a byte outside RFC 2046's bchars (letters, digits, '()+_,-./:=? and a space not last). */
ragd_err multipart_reader_init(multipart_reader *r, const char *body, size_t len, const char *boundary,
                               size_t max_parts);
/* The next part. RAGD_OK with *end false: *p is filled. RAGD_OK with *end true: the closing
 * boundary was read (and returned again on later calls). RAGD_EINVAL: the body is refused
 * (see above), r->message says why, and every later call says the same. */
ragd_err multipart_next(multipart_reader *r, multipart_part *p, bool *end);

/* A parameter of a header value "type; a=1; b="x y"" (Content-Type, Content-Disposition):
 * parameters follow the first ';' as token "=" (token / quoted-string) (RFC 9110 5.6.6,
 * quoted-pairs decoded; an unquoted value is taken up to ';' or a blank). The name is
 * matched case-insensitively. RAGD_OK: *found says whether it was there, out holds its
 * value (NUL-terminated; "" when not found). RAGD_EINVAL: the list is malformed, or the
 * name appears twice. RAGD_ETOOBIG: the value does not fit in cap bytes with its NUL. */
ragd_err multipart_param(const char *value, size_t n, const char *name, char *out, size_t cap, bool *found);

#endif
