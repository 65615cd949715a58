#include "util/workpool.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>

typedef struct workpool_job {
    workpool_fn fn;
    workpool_fn cancel;
    void *arg;
    struct workpool_job *next;
} workpool_job;

struct workpool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    workpool_job *head;
    workpool_job *tail;
    size_t queued;
    size_t busy;
    size_t max_queue;
    bool closing;
    size_t n_threads;
    pthread_t *threads;
};

static void *workpool_thread(void *arg)
{
    workpool *p = arg;
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (!p->head && !p->closing)
            pthread_cond_wait(&p->cond, &p->lock);
        if (!p->head)
            break; /* closing and drained */
        workpool_job *job = p->head;
        p->head = job->next;
        if (!p->head)
            p->tail = NULL;
        p->queued--;
        p->busy++;
        pthread_mutex_unlock(&p->lock);
        job->fn(job->arg);
        free(job);
        pthread_mutex_lock(&p->lock);
        p->busy--;
    }
    pthread_mutex_unlock(&p->lock);
    return NULL;
}

workpool *workpool_new(size_t n, size_t max_queue)
{
    if (n == 0)
        return NULL;
    workpool *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->threads = calloc(n, sizeof *p->threads);
    if (!p->threads) {
        free(p);
        return NULL;
    }
    pthread_mutex_init(&p->lock, NULL);
    pthread_cond_init(&p->cond, NULL);
    p->max_queue = max_queue;
    for (size_t i = 0; i < n; i++) {
        if (pthread_create(&p->threads[i], NULL, workpool_thread, p) != 0)
            break;
        p->n_threads++;
    }
    if (p->n_threads == 0) {
        workpool_free(p);
        return NULL;
    }
    return p;
}

ragd_err workpool_submit(workpool *p, workpool_fn fn, workpool_fn cancel, void *arg)
{
    workpool_job *job = malloc(sizeof *job);
    if (!job)
        return RAGD_ENOMEM;
    job->fn = fn;
    job->cancel = cancel;
    job->arg = arg;
    job->next = NULL;
    ragd_err rc = RAGD_OK;
    pthread_mutex_lock(&p->lock);
    if (p->closing)
        rc = RAGD_ECLOSED;
    else if (p->queued >= p->max_queue)
        rc = RAGD_EBUSY;
    if (rc == RAGD_OK) {
        if (p->tail)
            p->tail->next = job;
        else
            p->head = job;
        p->tail = job;
        p->queued++;
        pthread_cond_signal(&p->cond);
    }
    pthread_mutex_unlock(&p->lock);
    if (rc != RAGD_OK)
        free(job);
    return rc;
}

size_t workpool_cancel_queued(workpool *p)
{
    workpool_job *cancelled = NULL;
    pthread_mutex_lock(&p->lock);
    workpool_job **link = &p->head;
    p->tail = NULL;
    while (*link) {
        workpool_job *job = *link;
        if (job->cancel) {
            *link = job->next;
            job->next = cancelled;
            cancelled = job;
            p->queued--;
        } else {
            p->tail = job;
            link = &job->next;
        }
    }
    pthread_mutex_unlock(&p->lock);
    size_t n = 0;
    while (cancelled) {
        workpool_job *next = cancelled->next;
        cancelled->cancel(cancelled->arg);
        free(cancelled);
        cancelled = next;
        n++;
    }
    return n;
}

size_t workpool_threads(const workpool *p) { return p->n_threads; }

size_t workpool_queued(workpool *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->queued;
    pthread_mutex_unlock(&p->lock);
    return n;
}

size_t workpool_busy(workpool *p)
{
    pthread_mutex_lock(&p->lock);
    size_t n = p->busy;
    pthread_mutex_unlock(&p->lock);
    return n;
}

void workpool_shutdown(workpool *p)
{
    pthread_mutex_lock(&p->lock);
    p->closing = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < p->n_threads; i++)
        pthread_join(p->threads[i], NULL);
    p->n_threads = 0;
}

void workpool_free(workpool *p)
{
    if (!p)
        return;
    workpool_shutdown(p);
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p->threads);
    free(p);
}
