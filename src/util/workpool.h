#ifndef RAGD_UTIL_WORKPOOL_H
#define RAGD_UTIL_WORKPOOL_H

#include <stddef.h>

#include "util/err.h"

/* A fixed pool of worker threads for blocking and CPU-bound work (store reads, chunking,
 * embedding, vector search), so the event loop never blocks. Jobs run in FIFO order.
 * Results go back to the loop through a loopq, which the job itself posts to. */
typedef struct workpool workpool;
typedef void (*workpool_fn)(void *arg);

/* Starts n threads (n >= 1) with a queue bounded at max_queue jobs. */
workpool *workpool_new(size_t n, size_t max_queue);

/* Queues fn(arg) for a worker. RAGD_EBUSY when the queue is full, RAGD_ECLOSED after
 * workpool_free began; in both cases fn will never run. Thread-safe. */
ragd_err workpool_submit(workpool *p, workpool_fn fn, void *arg);

size_t workpool_threads(const workpool *p);
size_t workpool_queued(workpool *p);
size_t workpool_busy(workpool *p);

/* Refuses new jobs, runs every queued job to completion, joins the threads. NULL ok. */
void workpool_free(workpool *p);

#endif
