/*
 * dispatch_queue.h - completions waiting for Python, in completion order.
 *
 * Workers push without the GIL.  At the end of its batch a worker tries to
 * become *the* dispatcher: it takes everything queued and runs it under one
 * GIL acquisition.  A worker that finds a dispatcher already at work goes
 * back to the kernel instead of queueing for the GIL, so adding threads
 * adds I/O parallelism without adding GIL contention (Twisted's IOCP
 * reactor took the GIL once per completion; this takes it once per batch).
 */
#ifndef PYIOCP_DISPATCH_QUEUE_H
#define PYIOCP_DISPATCH_QUEUE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/types.h>

typedef struct dispatch_item {
    int kind;
    void *ptr;
    ssize_t result;
} dispatch_item;

typedef struct dispatch_queue {
    pthread_mutex_t lock;
    dispatch_item *items;      /* where workers push */
    size_t count, capacity;
    dispatch_item *spare;      /* the dispatcher's batch, swapped with items */
    size_t spare_capacity;
    int dispatching;
    atomic_size_t pending; /* == count, readable without the lock */
} dispatch_queue;

static inline int dispatch_queue_init(dispatch_queue *q)
{
    q->count = 0;
    q->capacity = 256;
    q->dispatching = 0;
    atomic_store(&q->pending, 0);
    q->spare_capacity = 256;
    q->items = malloc(q->capacity * sizeof *q->items);
    q->spare = malloc(q->spare_capacity * sizeof *q->spare);
    if (!q->items || !q->spare)
        return -1;
    return pthread_mutex_init(&q->lock, NULL) == 0 ? 0 : -1;
}

static inline void dispatch_queue_destroy(dispatch_queue *q)
{
    free(q->items);
    free(q->spare);
    q->items = q->spare = NULL;
    pthread_mutex_destroy(&q->lock);
}

/* Returns -1 only if memory ran out; the caller then handles the item
 * without Python (drops the buffer) rather than losing the completion. */
static inline int dispatch_queue_push(dispatch_queue *q, int kind, void *ptr, ssize_t result)
{
    pthread_mutex_lock(&q->lock);
    if (q->count == q->capacity) {
        dispatch_item *grown = realloc(q->items, 2 * q->capacity * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&q->lock);
            return -1;
        }
        q->items = grown;
        q->capacity *= 2;
    }
    q->items[q->count++] = (dispatch_item){kind, ptr, result};
    atomic_store_explicit(&q->pending, q->count, memory_order_relaxed);
    pthread_mutex_unlock(&q->lock);
    return 0;
}

/* Claims the dispatcher role and takes every queued item (swapping arrays,
 * no copy): `*batch` is valid until dispatch_queue_release.  Returns the
 * item count, or 0 when there is nothing to do or another thread is
 * dispatching. */
static inline size_t dispatch_queue_claim(dispatch_queue *q, dispatch_item **batch)
{
    if (atomic_load_explicit(&q->pending, memory_order_relaxed) == 0)
        return 0; /* the common idle case costs no lock */
    pthread_mutex_lock(&q->lock);
    size_t n = 0;
    if (!q->dispatching && q->count > 0) {
        q->dispatching = 1;
        dispatch_item *items = q->items;
        size_t capacity = q->capacity;
        n = q->count;
        q->items = q->spare;
        q->capacity = q->spare_capacity;
        q->spare = items;
        q->spare_capacity = capacity;
        q->count = 0;
        atomic_store_explicit(&q->pending, 0, memory_order_relaxed);
        *batch = items;
    }
    pthread_mutex_unlock(&q->lock);
    return n;
}

static inline void dispatch_queue_release(dispatch_queue *q)
{
    pthread_mutex_lock(&q->lock);
    q->dispatching = 0;
    pthread_mutex_unlock(&q->lock);
}

#endif
