#ifndef RAGD_UTIL_LOOPQ_H
#define RAGD_UTIL_LOOPQ_H

#include <stddef.h>

#include "util/queue.h"

struct event_base;

/* A queue of callbacks to run on the event-loop thread, fed from any thread: the way
 * results of worker and writer jobs come back to the loop. Needs
 * evthread_use_pthreads() before the event_base is made. */
typedef struct loopq loopq;
typedef void (*loopq_fn)(void *arg);

/* Storage for one posted callback, provided by the poster (typically a member of the
 * object the callback is about), so posting can never fail for want of memory. */
typedef struct loopq_item {
    loopq_fn fn;
    void *arg;
    queue_node link;
} loopq_item;

loopq *loopq_new(struct event_base *base);
/* Frees the queue; callbacks still queued are run first, on the calling thread. NULL ok. */
void loopq_free(loopq *q);

/* Queues fn(arg) to run on the loop thread, in FIFO order, using item's storage, which
 * must stay valid (and not be posted again) until fn has started. Thread-safe; never
 * blocks beyond a short mutex; cannot fail. */
void loopq_post(loopq *q, loopq_item *item, loopq_fn fn, void *arg);

/* Runs every queued callback now, on the calling thread (which must be the loop thread,
 * or the loop must be stopped), each item taken off the queue before its callback runs;
 * callbacks posted meanwhile run on the next drain. Returns how many ran. */
size_t loopq_drain(loopq *q);

#endif
