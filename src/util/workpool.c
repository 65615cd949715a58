#include "util/workpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util/log.h"
#include "util/queue.h"

typedef struct workpool_job {
    workpool_fn fn;
    workpool_fn cancel;
    void *arg;
    queue_node link;
} workpool_job;

struct workpool {
    pthread_mutex_t lock;
    pthread_cond_t cond;
    queue_node jobs; /* FIFO, guarded by lock */
    size_t queued;
    size_t busy;
    size_t max_queue;
    bool closing;
    int nice;        /* added to each thread's nice value at its start (0: unchanged) */
    size_t n_threads;
    pthread_t *threads;
};

/* Lowers the calling thread's priority by nice; on Linux a PRIO_PROCESS who of a thread
 * id applies to that thread alone. */
static void workpool_lower_priority(int nice)
{
    pid_t tid = (pid_t)syscall(SYS_gettid);
    errno = 0;
    int now = getpriority(PRIO_PROCESS, (id_t)tid);
    if (now == -1 && errno != 0)
        now = 0;
    if (setpriority(PRIO_PROCESS, (id_t)tid, now + nice) != 0)
        log_debug("workpool: cannot lower thread %d's priority by %d: %s", (int)tid, nice, strerror(errno));
}

static void *workpool_thread(void *arg)
{
    workpool *p = arg;
    if (p->nice > 0)
        workpool_lower_priority(p->nice);
    pthread_mutex_lock(&p->lock);
    for (;;) {
        while (queue_empty(&p->jobs) && !p->closing)
            pthread_cond_wait(&p->cond, &p->lock);
        queue_node *n = queue_pop(&p->jobs);
        if (!n)
            break; /* closing and drained */
        workpool_job *job = queue_data(n, workpool_job, link);
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

workpool *workpool_new(size_t n, size_t max_queue) { return workpool_new_niced(n, max_queue, 0); }

workpool *workpool_new_niced(size_t n, size_t max_queue, int nice)
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
    queue_init(&p->jobs);
    p->max_queue = max_queue;
    p->nice = nice;
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

void workpool_name_threads(workpool *p, const char *prefix)
{
    for (size_t i = 0; i < p->n_threads; i++) {
        char name[40];
        snprintf(name, sizeof name, "%.16s-%zu", prefix, i);
        name[15] = '\0'; /* the kernel keeps 15 bytes */
        (void)pthread_setname_np(p->threads[i], name);
    }
}

ragd_err workpool_submit(workpool *p, workpool_fn fn, workpool_fn cancel, void *arg)
{
    workpool_job *job = malloc(sizeof *job);
    if (!job)
        return RAGD_ENOMEM;
    job->fn = fn;
    job->cancel = cancel;
    job->arg = arg;
    ragd_err rc = RAGD_OK;
    pthread_mutex_lock(&p->lock);
    if (p->closing)
        rc = RAGD_ECLOSED;
    else if (p->queued >= p->max_queue)
        rc = RAGD_EBUSY;
    if (rc == RAGD_OK) {
        queue_insert_tail(&p->jobs, &job->link);
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
    queue_node cancelled;
    queue_init(&cancelled);
    pthread_mutex_lock(&p->lock);
    queue_node *n = p->jobs.next;
    while (n != &p->jobs) {
        queue_node *next = n->next;
        if (queue_data(n, workpool_job, link)->cancel) {
            queue_remove(n);
            queue_insert_tail(&cancelled, n);
            p->queued--;
        }
        n = next;
    }
    pthread_mutex_unlock(&p->lock);
    size_t count = 0;
    while ((n = queue_pop(&cancelled)) != NULL) { /* in their queue order, outside the lock */
        workpool_job *job = queue_data(n, workpool_job, link);
        job->cancel(job->arg);
        free(job);
        count++;
    }
    return count;
}

/* ---- workpool_for ---- */

/* Shared by the caller of workpool_for and its helpers; freed by whichever drops the last
 * reference (a helper may start long after the caller returned, and then only looks at
 * next, n and refs). */
typedef struct {
    pthread_mutex_t lock;
    pthread_cond_t idle; /* active fell to 0 */
    size_t next;         /* the next item to take; all taken when next == n */
    size_t n;
    size_t active; /* helpers running an item */
    size_t refs;   /* the caller + helpers not yet finished */
    workpool_each_fn fn;
    void *arg;
} workpool_for_state;

static void workpool_for_unref(workpool_for_state *s)
{
    bool last = --s->refs == 0;
    pthread_mutex_unlock(&s->lock);
    if (last) {
        pthread_cond_destroy(&s->idle);
        pthread_mutex_destroy(&s->lock);
        free(s);
    }
}

/* Takes and runs items until none is left; called and returns with s->lock held. */
static void workpool_for_take(workpool_for_state *s)
{
    while (s->next < s->n) {
        size_t i = s->next++;
        pthread_mutex_unlock(&s->lock);
        s->fn(s->arg, i);
        pthread_mutex_lock(&s->lock);
    }
}

static void workpool_for_help(void *arg)
{
    workpool_for_state *s = arg;
    pthread_mutex_lock(&s->lock);
    if (s->next < s->n) {
        s->active++;
        workpool_for_take(s);
        if (--s->active == 0)
            pthread_cond_signal(&s->idle);
    }
    workpool_for_unref(s);
}

/* A helper cancelled before it started (shutdown): only its reference goes. */
static void workpool_for_cancel(void *arg)
{
    workpool_for_state *s = arg;
    pthread_mutex_lock(&s->lock);
    workpool_for_unref(s);
}

ragd_err workpool_for(workpool *p, size_t n, workpool_each_fn fn, void *arg)
{
    if (n == 0)
        return RAGD_OK;
    workpool_for_state *s = calloc(1, sizeof *s);
    if (!s)
        return RAGD_ENOMEM;
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->idle, NULL);
    s->n = n;
    s->fn = fn;
    s->arg = arg;
    s->refs = 1;
    size_t helpers = p->n_threads > 1 ? p->n_threads - 1 : 0;
    if (helpers > n - 1)
        helpers = n - 1;
    for (size_t h = 0; h < helpers; h++) {
        pthread_mutex_lock(&s->lock);
        s->refs++;
        pthread_mutex_unlock(&s->lock);
        if (workpool_submit(p, workpool_for_help, workpool_for_cancel, s) != RAGD_OK) {
            pthread_mutex_lock(&s->lock);
            s->refs--;
            pthread_mutex_unlock(&s->lock);
            break;
        }
    }
    pthread_mutex_lock(&s->lock);
    workpool_for_take(s);
    while (s->active > 0)
        pthread_cond_wait(&s->idle, &s->lock);
    workpool_for_unref(s);
    return RAGD_OK;
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
