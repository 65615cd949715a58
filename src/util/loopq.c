#include "util/loopq.h"

#include <event2/event.h>
#include <pthread.h>
#include <stdlib.h>

struct loopq {
    pthread_mutex_t lock;
    queue_node items; /* FIFO, guarded by lock */
    struct event *wake;
};

static void loopq_on_wake(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    loopq_drain(arg);
}

loopq *loopq_new(struct event_base *base)
{
    loopq *q = calloc(1, sizeof *q);
    if (!q)
        return NULL;
    pthread_mutex_init(&q->lock, NULL);
    queue_init(&q->items);
    q->wake = event_new(base, -1, 0, loopq_on_wake, q);
    if (!q->wake) {
        pthread_mutex_destroy(&q->lock);
        free(q);
        return NULL;
    }
    return q;
}

void loopq_free(loopq *q)
{
    if (!q)
        return;
    loopq_drain(q);
    event_free(q->wake);
    pthread_mutex_destroy(&q->lock);
    free(q);
}

void loopq_post(loopq *q, loopq_item *it, loopq_fn fn, void *arg)
{
    it->fn = fn;
    it->arg = arg;
    pthread_mutex_lock(&q->lock);
    queue_insert_tail(&q->items, &it->link);
    pthread_mutex_unlock(&q->lock);
    event_active(q->wake, EV_READ, 0);
}

size_t loopq_drain(loopq *q)
{
    queue_node batch;
    queue_init(&batch);
    pthread_mutex_lock(&q->lock);
    queue_move(&q->items, &batch);
    pthread_mutex_unlock(&q->lock);
    size_t ran = 0;
    queue_node *n;
    while ((n = queue_pop(&batch)) != NULL) {
        loopq_item *it = queue_data(n, loopq_item, link);
        it->fn(it->arg); /* may free the item's owner, or post the item again */
        ran++;
    }
    return ran;
}
