#ifndef RAGD_UTIL_QUEUE_H
#define RAGD_UTIL_QUEUE_H

/* An intrusive, circular, doubly-linked list (libuv's queue.h idea, written as inline
 * functions): the one list and FIFO of the code base. A list is a `queue_node` head whose
 * links point at itself when empty; an element embeds a `queue_node` and is found back with
 * `queue_data`. Nothing here allocates, and nothing here locks: a list shared between
 * threads is guarded by its owner's mutex.
 *
 * A node that is not in any list is "unlinked": its links point at itself after
 * queue_node_init or queue_remove, so queue_linked() tells where it is and removing it
 * twice is harmless. A zeroed node (calloc) counts as unlinked too. */
#include <stdbool.h>
#include <stddef.h>

typedef struct queue_node {
    struct queue_node *next;
    struct queue_node *prev;
} queue_node;

/* The element of type `type` whose member `field` is the node `n`. */
#define queue_data(n, type, field) ((type *)((char *)(n) - offsetof(type, field)))

/* Walks a list whose elements are not removed during the walk. */
#define queue_foreach(n, head) for ((n) = (head)->next; (n) != (head); (n) = (n)->next)

static inline void queue_init(queue_node *head) { head->next = head->prev = head; }
static inline void queue_node_init(queue_node *n) { n->next = n->prev = n; }

static inline bool queue_empty(const queue_node *head) { return head->next == head; }

/* Whether n is in a list (false for an unlinked or zeroed node). */
static inline bool queue_linked(const queue_node *n) { return n->next != NULL && n->next != n; }

/* The first element's node, or NULL when the list is empty. */
static inline queue_node *queue_first(const queue_node *head) { return queue_empty(head) ? NULL : head->next; }

static inline void queue_insert_tail(queue_node *head, queue_node *n)
{
    n->next = head;
    n->prev = head->prev;
    n->prev->next = n;
    head->prev = n;
}

static inline void queue_insert_head(queue_node *head, queue_node *n)
{
    n->next = head->next;
    n->prev = head;
    n->next->prev = n;
    head->next = n;
}

/* Unlinks n from its list; a no-op for a node that is not linked. */
static inline void queue_remove(queue_node *n)
{
    if (!queue_linked(n))
        return;
    n->prev->next = n->next;
    n->next->prev = n->prev;
    queue_node_init(n);
}

/* Unlinks and returns the first element's node, or NULL when the list is empty. The way to
 * drain a list whose callbacks may add or remove elements: take one, then call out. */
static inline queue_node *queue_pop(queue_node *head)
{
    queue_node *n = queue_first(head);
    if (n)
        queue_remove(n);
    return n;
}

/* Moves every element of `from` to the end of `to`; `from` is left empty. */
static inline void queue_move(queue_node *from, queue_node *to)
{
    if (queue_empty(from))
        return;
    queue_node *first = from->next, *last = from->prev;
    first->prev = to->prev;
    to->prev->next = first;
    last->next = to;
    to->prev = last;
    queue_init(from);
}

#endif
