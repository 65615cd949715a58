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

/* workpool_new whose threads each lower their own scheduling priority by nice (0-19, with
 * setpriority on the thread id: Linux applies nice per thread) before taking a job, so
 * that on a busy machine the kernel runs other threads first while idle cores still run
 * these at full speed. A priority that cannot be lowered is ignored (a debug log). */
workpool *workpool_new_niced(size_t n, size_t max_queue, int nice);

/* Names the pool's threads "<prefix>-<i>" (pthread_setname_np; what `top -H`, `ps -L` and
 * perf show), cut to the kernel's 15 bytes. Best effort: a name that cannot be set is
 * left as it was. */
void workpool_name_threads(workpool *p, const char *prefix);

/* Queues fn(arg) for a worker. cancel, when not NULL, is what workpool_cancel_queued calls
 * instead of fn if the job is still waiting then. RAGD_EBUSY when the queue is full,
 * RAGD_ECLOSED after workpool_free began; in both cases neither fn nor cancel will run.
 * Thread-safe. */
ragd_err workpool_submit(workpool *p, workpool_fn fn, workpool_fn cancel, void *arg);

/* Takes every waiting job that has a cancel function off the queue and calls its cancel
 * (on the calling thread); jobs being run, and waiting ones without cancel, are left.
 * Returns how many were cancelled. */
size_t workpool_cancel_queued(workpool *p);

/* One item of a workpool_for: fn(arg, i) for an index i of [0, n). */
typedef void (*workpool_each_fn)(void *arg, size_t i);

/* Runs fn(arg, i) for every i in [0, n), each exactly once, on the calling thread and on
 * up to (threads - 1) workers that are free to help, and returns when all n have
 * finished. The caller takes items too and waits only for items a helper has already
 * started, so it never waits on the queue: called from a worker, with every other worker
 * busy (or the queue full, or the pool closing), it simply does all n itself. Helpers that
 * start after the last item was taken leave at once. fn runs on several threads at a time:
 * items must touch disjoint data (or lock). Returns RAGD_ENOMEM only if the shared state
 * cannot be allocated; then nothing ran. */
ragd_err workpool_for(workpool *p, size_t n, workpool_each_fn fn, void *arg);

size_t workpool_threads(const workpool *p);
size_t workpool_queued(workpool *p);
size_t workpool_busy(workpool *p);

/* Refuses new jobs (submit says RAGD_ECLOSED from now on), runs every queued job to
 * completion, joins the threads. The pool stays allocated. Idempotent. */
void workpool_shutdown(workpool *p);

/* workpool_shutdown, then frees. NULL ok. */
void workpool_free(workpool *p);

#endif
