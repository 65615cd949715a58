/* The in-memory vector index: contiguous float32 rows, exact top-k by dot product.
 * See docs/internals/vindex.md for the layout and the reasons behind it. */
#include "index/vindex.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define VINDEX_MAX_DIM 8192
/* Hard cap on the rows of one index (2^26 = 67M rows; at dim 384 that is 100 GB, far
 * past any machine ragd targets, but it keeps every size computation far from overflow
 * and the slot numbers in 32 bits). */
#define VINDEX_MAX_ROWS ((size_t)1 << 26)
#define VINDEX_MIN_ROWS 16
/* The quantised first pass (vindex_search) from this many rows on; below it the exact scan
 * is cheap and the search stays exact by construction. */
#define VINDEX_Q8_MIN_ROWS 4096
/* Candidates the quantised pass keeps for exact rescoring: 2k + 32, at most this many. */
#define VINDEX_Q8_MAX_CAND 1024
#define MAP_EMPTY UINT32_MAX

struct vindex {
    pthread_rwlock_t lock;
    size_t dim;
    size_t n;        /* rows in use */
    size_t cap;      /* rows allocated */
    size_t reserved; /* rows promised by vindex_reserve: n + reserved <= cap */
    float *vecs;     /* cap * dim floats, row i at vecs + i * dim */
    int8_t *q8col;   /* cap * dim, column-major: (row i, dim j) at q8col[j * cap + i] ~ the
                      * float / q8scale[i]. By column, so that a sparse query (the builtin
                      * embedder's: 20-40 of 512) reads only its own columns */
    size_t col_stride; /* rows a column of q8col holds (the capacity it was made for) */
    float *q8scale;  /* per row: max |x| / 127 (0 for a zero row) */
    int64_t *chunks; /* chunk id of row i */
    int64_t *docs;   /* document row id of row i */
    /* chunk id -> row, open addressing with linear probing; entries are row numbers
     * (the key is chunks[row]), MAP_EMPTY marks a free bucket. map_size is a power of
     * two and at least 2 * cap, so the load factor stays <= 1/2. */
    uint32_t *map;
    size_t map_size;
};

/* ---------------------------------------------------------------------------------- */
/* Vector kernels                                                                      */

/* Dot product of two rows. The plainest form, one accumulator, is not vectorised by gcc
 * -O2: a float sum may not be reordered without -ffast-math. Eight independent partial
 * sums, each a plain `+=` of lane j of every block of eight, are: gcc packs them into two
 * SSE registers (mulps/addps; see docs/internals/vindex.md). Keeping them as scalars
 * matters: an accumulator array is vectorised too, but through memory, and measured
 * ~30% slower. The fixed order of the final additions makes the result the same bit for
 * bit on every run. */
static float vec_dot(const float *restrict a, const float *restrict b, size_t n)
{
    float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
    float s4 = 0.0f, s5 = 0.0f, s6 = 0.0f, s7 = 0.0f;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        s0 += a[i + 0] * b[i + 0];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
        s4 += a[i + 4] * b[i + 4];
        s5 += a[i + 5] * b[i + 5];
        s6 += a[i + 6] * b[i + 6];
        s7 += a[i + 7] * b[i + 7];
    }
    float tail = 0.0f;
    for (; i < n; i++)
        tail += a[i] * b[i];
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7)) + tail;
}

/* acc[i] += w * col[i] for i < n: one query dimension's share of every row's int8 dot
 * product (exact in int32: |sum| <= 8192 * 127 * 127 < 2^31). gcc -O2 does not vectorise
 * the int8 → int32 widening (its "very cheap" cost model refuses it), so this one function is
 * built for vectorisation, in an AVX2 and a baseline version picked at load time
 * (target_clones, an ifunc). */
#if defined(__SANITIZE_THREAD__)
/* ThreadSanitizer instruments the ifunc resolver, which the dynamic loader runs before the
 * sanitizer's runtime is up (a crash at load): the TSan build keeps the baseline only. */
#define VINDEX_Q8_BUILD __attribute__((optimize("tree-vectorize", "vect-cost-model=dynamic")))
#elif defined(__clang__)
#define VINDEX_Q8_BUILD __attribute__((target_clones("avx2", "default")))
#else
#define VINDEX_Q8_BUILD \
    __attribute__((target_clones("avx2", "default"), optimize("tree-vectorize", "vect-cost-model=dynamic")))
#endif
VINDEX_Q8_BUILD
static void vec_axpy_q8(int32_t *restrict acc, int32_t w, const int8_t *restrict col, size_t n)
{
    for (size_t i = 0; i < n; i++)
        acc[i] += w * (int32_t)col[i];
}

/* Quantises a row of n finite floats to int8 with one scale (max |x| / 127); returns the
 * scale. Each value is src[i] * (127 / max) rounded as lrintf rounds in the default mode
 * (to nearest, ties to even), without a libm call per value: adding and subtracting
 * 1.5 * 2^23 rounds a float of magnitude below 2^22 to an integer in that mode (the sum's
 * ulp is 1), and |src[i] * inv| <= 127 (plus an ulp). The maximum is kept in eight
 * partial maxima so that the loop has no chain of dependent maxss: the maximum of finite
 * values does not depend on the order. */
static float vec_quantise(int8_t *dst, const float *src, size_t n)
{
    float m0 = 0.0f, m1 = 0.0f, m2 = 0.0f, m3 = 0.0f, m4 = 0.0f, m5 = 0.0f, m6 = 0.0f, m7 = 0.0f;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        m0 = fabsf(src[i + 0]) > m0 ? fabsf(src[i + 0]) : m0;
        m1 = fabsf(src[i + 1]) > m1 ? fabsf(src[i + 1]) : m1;
        m2 = fabsf(src[i + 2]) > m2 ? fabsf(src[i + 2]) : m2;
        m3 = fabsf(src[i + 3]) > m3 ? fabsf(src[i + 3]) : m3;
        m4 = fabsf(src[i + 4]) > m4 ? fabsf(src[i + 4]) : m4;
        m5 = fabsf(src[i + 5]) > m5 ? fabsf(src[i + 5]) : m5;
        m6 = fabsf(src[i + 6]) > m6 ? fabsf(src[i + 6]) : m6;
        m7 = fabsf(src[i + 7]) > m7 ? fabsf(src[i + 7]) : m7;
    }
    for (; i < n; i++)
        m0 = fabsf(src[i]) > m0 ? fabsf(src[i]) : m0;
    m0 = m1 > m0 ? m1 : m0;
    m2 = m3 > m2 ? m3 : m2;
    m4 = m5 > m4 ? m5 : m4;
    m6 = m7 > m6 ? m7 : m6;
    m0 = m2 > m0 ? m2 : m0;
    m4 = m6 > m4 ? m6 : m4;
    float m = m4 > m0 ? m4 : m0;
    if (m == 0.0f) {
        memset(dst, 0, n);
        return 0.0f;
    }
    const float round_magic = 12582912.0f; /* 1.5 * 2^23 */
    float inv = 127.0f / m;
    for (i = 0; i < n; i++)
        dst[i] = (int8_t)(int32_t)((src[i] * inv + round_magic) - round_magic);
    return m / 127.0f;
}

/* Writes src / |src| to dst (a plain copy when src is already of unit length or zero).
 * Returns false when src holds a NaN or an infinity. */
static bool vec_normalise(float *dst, const float *src, size_t n)
{
    double ss = 0.0;
    for (size_t i = 0; i < n; i++) {
        if (!isfinite(src[i]))
            return false;
        ss += (double)src[i] * (double)src[i];
    }
    if (!isfinite(ss))
        return false;
    if (ss == 0.0 || fabs(ss - 1.0) < 1e-6) {
        memcpy(dst, src, n * sizeof *dst);
        return true;
    }
    double inv = 1.0 / sqrt(ss);
    for (size_t i = 0; i < n; i++)
        dst[i] = (float)(src[i] * inv);
    return true;
}

/* ---------------------------------------------------------------------------------- */
/* chunk id -> row map                                                                 */

static size_t map_bucket(int64_t key, size_t map_size)
{
    uint64_t x = (uint64_t)key; /* splitmix64 finaliser: ids are often sequential */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return (size_t)(x & (map_size - 1));
}

/* Returns the bucket holding key, or the empty bucket where it would go. */
static size_t map_find(const vindex *ix, int64_t key)
{
    size_t mask = ix->map_size - 1;
    size_t b = map_bucket(key, ix->map_size);
    while (ix->map[b] != MAP_EMPTY && ix->chunks[ix->map[b]] != key)
        b = (b + 1) & mask;
    return b;
}

/* Empties bucket b and shifts later members of its probe run back (no tombstones). */
static void map_erase_bucket(vindex *ix, size_t b)
{
    size_t mask = ix->map_size - 1;
    size_t hole = b;
    size_t j = b;
    ix->map[hole] = MAP_EMPTY;
    for (;;) {
        j = (j + 1) & mask;
        if (ix->map[j] == MAP_EMPTY)
            break;
        size_t home = map_bucket(ix->chunks[ix->map[j]], ix->map_size);
        /* The entry at j may move to the hole when its home is not cyclically in
         * (hole, j]. */
        bool stays = hole <= j ? (hole < home && home <= j) : (hole < home || home <= j);
        if (!stays) {
            ix->map[hole] = ix->map[j];
            ix->map[j] = MAP_EMPTY;
            hole = j;
        }
    }
}

/* Rebuilds the map with map_size buckets from the rows. */
static ragd_err map_rebuild(vindex *ix, size_t map_size)
{
    uint32_t *map = malloc(map_size * sizeof *map);
    if (map == NULL)
        return RAGD_ENOMEM;
    for (size_t i = 0; i < map_size; i++)
        map[i] = MAP_EMPTY;
    free(ix->map);
    ix->map = map;
    ix->map_size = map_size;
    for (size_t row = 0; row < ix->n; row++) {
        size_t b = map_find(ix, ix->chunks[row]);
        assert(ix->map[b] == MAP_EMPTY); /* chunk ids are unique among rows */
        ix->map[b] = (uint32_t)row;
    }
    return RAGD_OK;
}

static size_t map_size_for(size_t cap)
{
    size_t s = 32;
    while (s < 2 * cap)
        s *= 2;
    return s;
}

/* ---------------------------------------------------------------------------------- */
/* Storage                                                                             */

/* Reallocates the row arrays to new_cap rows (n <= new_cap) and sizes the map for them.
 * On failure every array still holds at least ix->cap rows and the map still has room
 * for them: growing enlarges the map first and commits cap last; shrinking commits cap
 * after the first array shrinks (all of them hold >= new_cap rows from then on), and a
 * map left larger than needed is harmless. */
static ragd_err rows_resize(vindex *ix, size_t new_cap)
{
    assert(new_cap >= ix->n && new_cap <= VINDEX_MAX_ROWS);
    bool grow = new_cap > ix->cap;
    size_t want = map_size_for(new_cap);
    if (grow && want > ix->map_size) {
        ragd_err rc = map_rebuild(ix, want);
        if (rc != RAGD_OK)
            return rc;
    }
    /* The int8 columns' stride is their capacity: a new block, committed only at the end
     * (until then the old one and its stride stay valid). */
    int8_t *q8col = malloc(new_cap * ix->dim);
    if (q8col == NULL)
        return RAGD_ENOMEM;
    float *vecs = realloc(ix->vecs, new_cap * ix->dim * sizeof *vecs);
    if (vecs == NULL)
        goto nomem;
    ix->vecs = vecs;
    if (!grow)
        ix->cap = new_cap;
    float *q8scale = realloc(ix->q8scale, new_cap * sizeof *q8scale);
    if (q8scale == NULL)
        goto nomem;
    ix->q8scale = q8scale;
    int64_t *chunks = realloc(ix->chunks, new_cap * sizeof *chunks);
    if (chunks == NULL)
        goto nomem;
    ix->chunks = chunks;
    int64_t *docs = realloc(ix->docs, new_cap * sizeof *docs);
    if (docs == NULL)
        goto nomem;
    ix->docs = docs;
    for (size_t d = 0; ix->q8col && d < ix->dim; d++)
        memcpy(q8col + d * new_cap, ix->q8col + d * ix->col_stride, ix->n);
    free(ix->q8col);
    ix->q8col = q8col;
    ix->col_stride = new_cap;
    ix->cap = new_cap;
    if (!grow && want < ix->map_size)
        (void)map_rebuild(ix, want); /* keeping the larger map on failure is fine */
    return RAGD_OK;
nomem:
    free(q8col);
    return RAGD_ENOMEM;
}

/* vindex_new: an empty index for vectors of `dim` floats; NULL on a bad dim or no
 * memory. Free with vindex_free. */
vindex *vindex_new(size_t dim)
{
    vindex *ix = NULL;
    if (dim == 0 || dim > VINDEX_MAX_DIM)
        goto fail;
    ix = calloc(1, sizeof *ix);
    if (ix == NULL)
        goto fail;
    ix->dim = dim;
    if (pthread_rwlock_init(&ix->lock, NULL) != 0) {
        free(ix);
        ix = NULL;
        goto fail;
    }
    if (rows_resize(ix, VINDEX_MIN_ROWS) != RAGD_OK)
        goto fail;
    return ix;
fail:
    vindex_free(ix);
    return NULL;
}

/* vindex_free: releases the index and its rows; NULL is accepted. No other thread may
 * be using it. */
void vindex_free(vindex *ix)
{
    if (ix == NULL)
        return;
    pthread_rwlock_destroy(&ix->lock);
    free(ix->vecs);
    free(ix->q8col);
    free(ix->q8scale);
    free(ix->chunks);
    free(ix->docs);
    free(ix->map);
    free(ix);
}

/* vindex_dim: the dimension given at creation (immutable, so no lock). */
size_t vindex_dim(const vindex *ix) { return ix == NULL ? 0 : ix->dim; }

/* vindex_count: the number of vectors stored now. */
size_t vindex_count(vindex *ix)
{
    if (ix == NULL)
        return 0;
    pthread_rwlock_rdlock(&ix->lock);
    size_t n = ix->n;
    pthread_rwlock_unlock(&ix->lock);
    return n;
}

/* Under the write lock: vindex_add's work except writing the row's int8 columns, which
 * it leaves in q8 (dim bytes) for the caller, with the row in *row_out. */
static ragd_err add_locked(vindex *ix, int64_t chunk_id, int64_t doc_rowid, const float *vec, int8_t *q8,
                           size_t *row_out)
{
    size_t b = map_find(ix, chunk_id);
    size_t row;
    if (ix->map[b] != MAP_EMPTY) {
        row = ix->map[b];
    } else {
        if (ix->n == ix->cap) {
            if (ix->cap >= VINDEX_MAX_ROWS)
                return RAGD_ETOOBIG;
            size_t new_cap = ix->cap * 2 > VINDEX_MAX_ROWS ? VINDEX_MAX_ROWS : ix->cap * 2;
            ragd_err rc = rows_resize(ix, new_cap);
            if (rc != RAGD_OK)
                return rc;
            b = map_find(ix, chunk_id); /* the map may have been rebuilt */
        }
        row = ix->n;
    }
    if (!vec_normalise(ix->vecs + row * ix->dim, vec, ix->dim)) {
        /* Only a new row can be half-written here, and it is not counted yet. A
         * replaced row was left alone: vec_normalise checks before it writes. */
        return RAGD_EINVAL;
    }
    ix->q8scale[row] = vec_quantise(q8, ix->vecs + row * ix->dim, ix->dim);
    ix->docs[row] = doc_rowid;
    if (row == ix->n) {
        ix->chunks[row] = chunk_id;
        ix->map[b] = (uint32_t)row;
        ix->n++;
    }
    *row_out = row;
    return RAGD_OK;
}

/* vindex_add: stores a unit-length copy of vec under chunk_id, replacing the vector and
 * document of an existing chunk_id. RAGD_EINVAL for NULL arguments or a vector holding
 * NaN/inf (a zero vector is accepted: it scores 0 against everything); RAGD_ETOOBIG past
 * VINDEX_MAX_ROWS; RAGD_ENOMEM when growing fails (the index is unchanged). */
ragd_err vindex_add(vindex *ix, int64_t chunk_id, int64_t doc_rowid, const float *vec)
{
    if (ix == NULL || vec == NULL)
        return RAGD_EINVAL;
    int8_t q8[VINDEX_MAX_DIM];
    size_t row = 0;
    pthread_rwlock_wrlock(&ix->lock);
    ragd_err rc = add_locked(ix, chunk_id, doc_rowid, vec, q8, &row);
    if (rc == RAGD_OK)
        for (size_t d = 0; d < ix->dim; d++)
            ix->q8col[d * ix->col_stride + row] = q8[d];
    pthread_rwlock_unlock(&ix->lock);
    return rc;
}

/* vindex_add_rows gathers up to VINDEX_ADD_BLOCK_ROWS int8 rows, VINDEX_ADD_BLOCK_BYTES
 * in all (4 rows at the largest dim), before writing them into the columns. On the stack:
 * it runs where nothing may be allocated (the store's COMMITTED phase). */
#define VINDEX_ADD_BLOCK_BYTES 32768
#define VINDEX_ADD_BLOCK_ROWS 256

/* vindex_add_rows: as vindex_add of each row in order, under one lock, and with the int8
 * columns written a block of rows at a time (a row's 512 column bytes are 512 cache lines
 * apart: written one row at a time, every byte cost a cache miss). */
ragd_err vindex_add_rows(vindex *ix, size_t n, const int64_t *chunk_ids, const int64_t *doc_rowids,
                         const float *const *rows, size_t *failed)
{
    if (failed)
        *failed = 0;
    if (ix == NULL || (n > 0 && (chunk_ids == NULL || doc_rowids == NULL || rows == NULL)))
        return RAGD_EINVAL;
    _Static_assert(VINDEX_ADD_BLOCK_BYTES >= VINDEX_MAX_DIM, "a block holds at least one row");
    int8_t q8[VINDEX_ADD_BLOCK_BYTES];
    size_t row_of[VINDEX_ADD_BLOCK_ROWS];
    size_t per_block = sizeof q8 / ix->dim, nfail = 0;
    if (per_block > VINDEX_ADD_BLOCK_ROWS)
        per_block = VINDEX_ADD_BLOCK_ROWS;
    ragd_err first = RAGD_OK;
    pthread_rwlock_wrlock(&ix->lock);
    for (size_t i0 = 0; i0 < n; i0 += per_block) {
        size_t m = n - i0 < per_block ? n - i0 : per_block, k = 0;
        for (size_t i = i0; i < i0 + m; i++) {
            ragd_err rc = rows[i] == NULL ? RAGD_EINVAL
                                          : add_locked(ix, chunk_ids[i], doc_rowids[i], rows[i], q8 + k * ix->dim,
                                                       &row_of[k]);
            if (rc == RAGD_OK) {
                k++;
            } else {
                nfail++;
                if (first == RAGD_OK)
                    first = rc;
            }
        }
        /* in order, so a chunk id given twice ends with its last vector, as with vindex_add */
        for (size_t d = 0; d < ix->dim; d++) {
            int8_t *col = ix->q8col + d * ix->col_stride;
            for (size_t j = 0; j < k; j++)
                col[row_of[j]] = q8[j * ix->dim + d];
        }
    }
    pthread_rwlock_unlock(&ix->lock);
    if (failed)
        *failed = nfail;
    return first;
}

/* vindex_reserve: grows the storage so that n + reserved + k rows fit, then counts k more
 * reserved rows. Adds of new chunk ids cannot fail for want of memory while reservations
 * cover them (the store reserves before COMMIT and adds after it). RAGD_ETOOBIG past
 * VINDEX_MAX_ROWS; RAGD_ENOMEM when growing fails (nothing changed). */
ragd_err vindex_reserve(vindex *ix, size_t k)
{
    if (ix == NULL)
        return RAGD_EINVAL;
    ragd_err rc = RAGD_OK;
    pthread_rwlock_wrlock(&ix->lock);
    if (k > VINDEX_MAX_ROWS - ix->n - ix->reserved) {
        rc = RAGD_ETOOBIG;
        goto out;
    }
    size_t need = ix->n + ix->reserved + k;
    if (need > ix->cap) {
        size_t new_cap = ix->cap;
        while (new_cap < need)
            new_cap *= 2;
        rc = rows_resize(ix, new_cap > VINDEX_MAX_ROWS ? VINDEX_MAX_ROWS : new_cap);
        if (rc != RAGD_OK)
            goto out;
    }
    ix->reserved += k;
out:
    pthread_rwlock_unlock(&ix->lock);
    return rc;
}

/* vindex_release: gives back k reserved rows (at most all of them). */
void vindex_release(vindex *ix, size_t k)
{
    if (ix == NULL)
        return;
    pthread_rwlock_wrlock(&ix->lock);
    ix->reserved -= k < ix->reserved ? k : ix->reserved;
    pthread_rwlock_unlock(&ix->lock);
}

/* Moves the last row into `row` (which is being removed) and fixes the map. */
static void row_remove(vindex *ix, size_t row)
{
    size_t last = ix->n - 1;
    map_erase_bucket(ix, map_find(ix, ix->chunks[row]));
    if (row != last) {
        size_t b = map_find(ix, ix->chunks[last]);
        assert(ix->map[b] == (uint32_t)last);
        memcpy(ix->vecs + row * ix->dim, ix->vecs + last * ix->dim, ix->dim * sizeof(float));
        for (size_t d = 0; d < ix->dim; d++)
            ix->q8col[d * ix->col_stride + row] = ix->q8col[d * ix->col_stride + last];
        ix->q8scale[row] = ix->q8scale[last];
        ix->chunks[row] = ix->chunks[last];
        ix->docs[row] = ix->docs[last];
        ix->map[b] = (uint32_t)row;
    }
    ix->n--;
}

/* vindex_remove_doc: removes every row of doc_rowid (one scan; each removal moves the
 * last row into the hole). Storage shrinks by half when less than a quarter is used or
 * reserved. */
size_t vindex_remove_doc(vindex *ix, int64_t doc_rowid)
{
    if (ix == NULL)
        return 0;
    size_t removed = 0;
    pthread_rwlock_wrlock(&ix->lock);
    size_t row = 0;
    while (row < ix->n) {
        if (ix->docs[row] == doc_rowid) {
            row_remove(ix, row); /* row now holds the former last row: look again */
            removed++;
        } else {
            row++;
        }
    }
    if (removed > 0 && ix->cap > VINDEX_MIN_ROWS && ix->n + ix->reserved < ix->cap / 4) {
        size_t new_cap = ix->cap / 2;
        if (new_cap < VINDEX_MIN_ROWS)
            new_cap = VINDEX_MIN_ROWS;
        /* Shrinking only gives memory back; the index stays valid if it fails. */
        (void)rows_resize(ix, new_cap);
    }
    pthread_rwlock_unlock(&ix->lock);
    return removed;
}

/* ---------------------------------------------------------------------------------- */
/* Search                                                                              */

/* True when a ranks strictly below b: lower score, or equal score and higher chunk id. */
static bool hit_worse(const vindex_hit *a, const vindex_hit *b)
{
    if (a->score != b->score)
        return a->score < b->score;
    return a->chunk_id > b->chunk_id;
}

/* Restores the min-heap (worst hit at the root) below position i. */
static void heap_sift_down(vindex_hit *h, size_t n, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1;
        size_t r = l + 1;
        size_t m = i;
        if (l < n && hit_worse(&h[l], &h[m]))
            m = l;
        if (r < n && hit_worse(&h[r], &h[m]))
            m = r;
        if (m == i)
            return;
        vindex_hit t = h[i];
        h[i] = h[m];
        h[m] = t;
        i = m;
    }
}

static void heap_sift_up(vindex_hit *h, size_t i)
{
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!hit_worse(&h[i], &h[p]))
            return;
        vindex_hit t = h[i];
        h[i] = h[p];
        h[p] = t;
        i = p;
    }
}

/* Keeps the best k hits in out (a min-heap of k, the worst at the root). */
static void heap_offer(vindex_hit *out, size_t *len, size_t k, vindex_hit h)
{
    if (*len < k) {
        out[*len] = h;
        heap_sift_up(out, *len);
        (*len)++;
    } else if (hit_worse(&out[0], &h)) {
        out[0] = h;
        heap_sift_down(out, *len, 0);
    }
}

/* The rows a search may return: all, or those whose document passes the filter (one call
 * per run of rows of one document). */
typedef struct {
    vindex_filter_fn fn;
    void *arg;
    bool have_last;
    int64_t last_doc;
    bool last_ok;
} row_filter;

static bool row_allowed(row_filter *f, int64_t doc)
{
    if (f->fn == NULL)
        return true;
    if (!f->have_last || doc != f->last_doc) {
        f->last_doc = doc;
        f->last_ok = f->fn(doc, f->arg);
        f->have_last = true;
    }
    return f->last_ok;
}

/* The quantised pass's candidates. Rows that beat a threshold are appended to a buffer of
 * Q8_BUF_FACTOR * ncand; when it fills, the best ncand are selected (quickselect) and the
 * threshold rises to the worst of them. Most rows fail the one comparison; the others are
 * appended without the unpredictable branches of a heap, whose sift-downs (~750 a query on
 * real text) cost ~9 % of a hybrid query. */
#define Q8_BUF_FACTOR 4
typedef struct {
    float score;
    uint32_t row;
} q8_cand;

/* a before b: higher score, then the lower chunk id (as the search ranks: identical
 * vectors, e.g. a text stored twice, tie exactly in both passes) */
static bool q8_better(const q8_cand *a, const q8_cand *b, const int64_t *chunks)
{
    return a->score > b->score || (a->score == b->score && chunks[a->row] < chunks[b->row]);
}

static void q8_swap(q8_cand *a, q8_cand *b)
{
    q8_cand t = *a;
    *a = *b;
    *b = t;
}

/* Reorders c[0..n) so that its best `keep` (0 < keep < n) come first, in no order. */
static void q8_select(q8_cand *c, size_t n, size_t keep, const int64_t *chunks)
{
    size_t lo = 0, hi = n - 1;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2; /* median of three as the pivot, moved to hi */
        if (q8_better(&c[mid], &c[lo], chunks))
            q8_swap(&c[mid], &c[lo]);
        if (q8_better(&c[hi], &c[lo], chunks))
            q8_swap(&c[hi], &c[lo]);
        if (q8_better(&c[mid], &c[hi], chunks))
            q8_swap(&c[mid], &c[hi]);
        q8_cand pivot = c[hi];
        size_t store = lo;
        for (size_t i = lo; i < hi; i++)
            if (q8_better(&c[i], &pivot, chunks))
                q8_swap(&c[i], &c[store++]);
        q8_swap(&c[store], &c[hi]); /* c[lo..store) better than the pivot, now at store */
        if (store == keep || store + 1 == keep)
            return;
        if (store > keep)
            hi = store - 1;
        else
            lo = store + 1;
    }
}

static float q8_worst_score(const q8_cand *c, size_t n)
{
    float w = c[0].score;
    for (size_t i = 1; i < n; i++)
        w = c[i].score < w ? c[i].score : w;
    return w;
}

/* vindex_search: top-k; see the header. Small indexes are scanned exactly. From
 * VINDEX_Q8_MIN_ROWS rows on, a first pass computes every row's dot product on the int8
 * copy, column by column over the query's non-zero dimensions only — the builtin embedder's
 * queries have 20-40 of 512, so this reads a few percent of what the float scan reads, and
 * a dense query reads a quarter — and keeps the best 2k + 32 by that approximation; a second
 * pass scores those exactly from the float rows, so every score returned is exact, and a
 * row is missed only if quantisation moved it from the top k to below the top 2k + 32
 * (bench_vindex measures the recall: 1.0 on random vectors). The first pass needs n int32
 * of scratch; without that memory the search is the exact scan. The filter runs under the
 * read lock and must not call vindex_add or vindex_remove_doc on the same index. A NULL
 * query, k == 0 or a query holding NaN/inf gives 0 hits. */
size_t vindex_search(vindex *ix, const float *query, size_t k, vindex_filter_fn filter, void *arg,
                     vindex_hit *out)
{
    if (ix == NULL || query == NULL || out == NULL || k == 0)
        return 0;
    float q[VINDEX_MAX_DIM];
    if (!vec_normalise(q, query, ix->dim))
        return 0;
    int8_t q8[VINDEX_MAX_DIM];
    float qscale = vec_quantise(q8, q, ix->dim);

    size_t len = 0;
    row_filter f = {.fn = filter, .arg = arg};
    pthread_rwlock_rdlock(&ix->lock);
    const size_t dim = ix->dim, n = ix->n;
    size_t ncand = 2 * k + 32;
    int32_t *acc = n >= VINDEX_Q8_MIN_ROWS && ncand <= VINDEX_Q8_MAX_CAND && ncand < n ? calloc(n, sizeof *acc) : NULL;
    if (!acc) {
        for (size_t row = 0; row < n; row++)
            if (row_allowed(&f, ix->docs[row]))
                heap_offer(out, &len, k,
                           (vindex_hit){.chunk_id = ix->chunks[row], .doc_rowid = ix->docs[row],
                                        .score = vec_dot(q, ix->vecs + row * dim, dim)});
    } else {
        for (size_t d = 0; d < dim; d++)
            if (q8[d] != 0)
                vec_axpy_q8(acc, q8[d], ix->q8col + d * ix->col_stride, n);
        q8_cand buf[Q8_BUF_FACTOR * VINDEX_Q8_MAX_CAND];
        size_t nb = 0, cap = Q8_BUF_FACTOR * ncand;
        float threshold = -INFINITY; /* the worst score kept at the last selection */
        for (size_t row = 0; row < n; row++) {
            float score = (float)acc[row] * ix->q8scale[row] * qscale;
            /* below the threshold: out; a tie may still win on its chunk id */
            if (score < threshold || !row_allowed(&f, ix->docs[row]))
                continue;
            buf[nb++] = (q8_cand){.score = score, .row = (uint32_t)row};
            if (nb == cap) {
                q8_select(buf, nb, ncand, ix->chunks);
                nb = ncand;
                threshold = q8_worst_score(buf, nb);
            }
        }
        if (nb > ncand) {
            q8_select(buf, nb, ncand, ix->chunks);
            nb = ncand;
        }
        for (size_t i = 0; i < nb; i++) {
            size_t row = buf[i].row;
            heap_offer(out, &len, k,
                       (vindex_hit){.chunk_id = ix->chunks[row], .doc_rowid = ix->docs[row],
                                    .score = vec_dot(q, ix->vecs + row * dim, dim)});
        }
    }
    pthread_rwlock_unlock(&ix->lock);
    free(acc);

    /* Heap sort: repeatedly move the worst hit to the end, leaving best first. */
    for (size_t end = len; end > 1; end--) {
        vindex_hit t = out[0];
        out[0] = out[end - 1];
        out[end - 1] = t;
        heap_sift_down(out, end - 1, 0);
    }
    return len;
}

/* ---------------------------------------------------------------------------------- */
/* The set of indexes, one per collection                                              */

/* Past this many collections vindex_set_get refuses to create more (NULL). */
#define VINDEX_SET_MAX 65536

typedef struct {
    int64_t collection_id;
    vindex *ix;
} set_entry;

struct vindex_set {
    pthread_mutex_t mu;
    set_entry *entries; /* unordered; a process has few collections, so a scan is fine */
    size_t n;
    size_t cap;
};

/* vindex_set_new: an empty set; NULL on no memory. Free with vindex_set_free. */
vindex_set *vindex_set_new(void)
{
    vindex_set *set = calloc(1, sizeof *set);
    if (set == NULL)
        return NULL;
    if (pthread_mutex_init(&set->mu, NULL) != 0) {
        free(set);
        return NULL;
    }
    return set;
}

/* vindex_set_free: frees the set and every index in it; NULL is accepted. */
void vindex_set_free(vindex_set *set)
{
    if (set == NULL)
        return;
    for (size_t i = 0; i < set->n; i++)
        vindex_free(set->entries[i].ix);
    free(set->entries);
    pthread_mutex_destroy(&set->mu);
    free(set);
}

/* The entry of collection_id, or NULL; set->mu held. */
static set_entry *vindex_set_find_locked(vindex_set *set, int64_t collection_id)
{
    for (size_t i = 0; i < set->n; i++)
        if (set->entries[i].collection_id == collection_id)
            return &set->entries[i];
    return NULL;
}

/* Appends collection_id -> ix; false (nothing changed) at VINDEX_SET_MAX entries or when
 * out of memory. set->mu held. */
static bool vindex_set_append_locked(vindex_set *set, int64_t collection_id, vindex *ix)
{
    if (set->n == set->cap) {
        if (set->cap >= VINDEX_SET_MAX)
            return false;
        size_t new_cap = set->cap == 0 ? 8 : set->cap * 2;
        set_entry *e = realloc(set->entries, new_cap * sizeof *e);
        if (e == NULL)
            return false;
        set->entries = e;
        set->cap = new_cap;
    }
    set->entries[set->n].collection_id = collection_id;
    set->entries[set->n].ix = ix;
    set->n++;
    return true;
}

/* vindex_set_get: see the header. A lookup (create false) with dim 0 accepts any
 * dimension; otherwise an existing index of another dimension gives NULL. NULL too when
 * creating fails (bad dim, no memory, VINDEX_SET_MAX reached). */
vindex *vindex_set_get(vindex_set *set, int64_t collection_id, size_t dim, bool create)
{
    if (set == NULL)
        return NULL;
    vindex *ix = NULL;
    pthread_mutex_lock(&set->mu);
    set_entry *found = vindex_set_find_locked(set, collection_id);
    if (found != NULL) {
        ix = found->ix;
        if (dim != 0 && ix->dim != dim)
            ix = NULL;
        goto out;
    }
    if (!create)
        goto out;
    /* checked before the index is built: a full set costs no allocation */
    if (set->n == set->cap && set->cap >= VINDEX_SET_MAX)
        goto out;
    ix = vindex_new(dim);
    if (ix != NULL && !vindex_set_append_locked(set, collection_id, ix)) {
        vindex_free(ix);
        ix = NULL;
    }
out:
    pthread_mutex_unlock(&set->mu);
    return ix;
}

/* vindex_set_drop: removes and frees the index of collection_id (nothing when absent). */
void vindex_set_drop(vindex_set *set, int64_t collection_id)
{
    if (set == NULL)
        return;
    vindex *victim = NULL;
    pthread_mutex_lock(&set->mu);
    set_entry *found = vindex_set_find_locked(set, collection_id);
    if (found != NULL) {
        victim = found->ix;
        *found = set->entries[set->n - 1];
        set->n--;
    }
    pthread_mutex_unlock(&set->mu);
    vindex_free(victim);
}

/* vindex_set_replace: see the header. */
vindex *vindex_set_replace(vindex_set *set, int64_t collection_id, vindex *ix)
{
    if (set == NULL || ix == NULL)
        return ix;
    vindex *old = ix; /* what comes back when ix could not be put in */
    pthread_mutex_lock(&set->mu);
    set_entry *found = vindex_set_find_locked(set, collection_id);
    if (found != NULL) {
        old = found->ix;
        found->ix = ix;
    } else if (vindex_set_append_locked(set, collection_id, ix)) {
        old = NULL;
    }
    pthread_mutex_unlock(&set->mu);
    return old;
}
