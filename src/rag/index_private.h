#ifndef RAGD_RAG_INDEX_PRIVATE_H
#define RAGD_RAG_INDEX_PRIVATE_H

/* The in-memory indexes of every collection (rag_index, retrieve.h), shared by the two files
 * that use its inside: retrieve.c (searches, the commit hook) and index_load.c (start-up). */
#include <pthread.h>

#include "index/kindex.h"
#include "index/vindex.h"
#include "rag/retrieve.h"

struct rag_index {
    vindex_set *set;
    /* Held for reading around a lookup+search, for writing around a collection drop, so
     * a search never sees a vindex freed under it. */
    pthread_rwlock_t drop_lock;
    /* The keyword indexes: reference-counted, so they need no drop_lock. */
    kindex_set *kset;
};

#endif
