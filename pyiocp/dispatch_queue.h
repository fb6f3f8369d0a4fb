/*
 * dispatch_queue.h - completions waiting for Python, in completion order.
 *
 * Workers push without the GIL.  At the end of its batch a worker tries to
 * become *the* dispatcher: it takes everything queued and runs it under one
 * GIL acquisition.  A worker that finds a dispatcher already at work goes
 * back to the kernel instead of queueing for the GIL, so adding threads
 * adds I/O parallelism without adding GIL contention (Twisted's IOCP
 * reactor took the GIL once per completion; this takes it once per batch).
 *
 * The queue is intrusive: every struct that can be queued embeds a node
 * for each kind of completion it can have queued at the same time (a
 * connection's accept, recv and close; a send; a posted call), so a push
 * allocates nothing and cannot fail.  The binding guarantees that a node
 * is never pushed again before it was claimed (one recv outstanding per
 * connection; the other completions happen once).
 *
 * A fault build (binding_fault.h) has injection points here.  A push and a
 * claim cannot fail, so what they inject is what other threads can do to
 * them: "py_dispatch_push" cut short is a pushing thread preempted just
 * before its push; "py_dispatch_claim" cut short takes only the oldest
 * nodes, as if the others had been pushed just after the claim (they wait
 * for the next one).  "py_dispatch_init" fails the mutex's creation.
 */
#ifndef PYIOCP_DISPATCH_QUEUE_H
#define PYIOCP_DISPATCH_QUEUE_H

#include "platform/threads.h" /* engine/ is on the include path */
#include "platform/atomics.h"

#include "binding_fault.h"

#include <errno.h>
#include <stddef.h>
#include <sys/types.h>

#ifdef PIOCP_FAULT_INJECTION
#ifdef _WIN32
#include <windows.h>
#else
#include <time.h>
#endif

/* A few milliseconds off the CPU, as a preempted thread is. */
static inline void dispatch_fault_preempt(void)
{
#ifdef _WIN32
    Sleep(2);
#else
    struct timespec pause = {0, 2000000};
    nanosleep(&pause, NULL);
#endif
}
#endif

typedef struct dispatch_node {
    struct dispatch_node *next; /* the queue's, or the claimed batch's */
    int kind;                   /* what `owner` is: set once, by the owner */
    void *owner;                /* the struct that embeds this node */
    ssize_t result;             /* the completion's, set by the push */
} dispatch_node;

typedef struct dispatch_queue {
    piocp_mutex lock;
    dispatch_node *head, *tail; /* where workers push, oldest first */
    int dispatching;
    atomic_int pending;         /* head != NULL, readable without the lock */
} dispatch_queue;

static inline void dispatch_node_init(dispatch_node *node, int kind, void *owner)
{
    node->next = NULL;
    node->kind = kind;
    node->owner = owner;
    node->result = 0;
}

/* Allocates nothing: the only way to fail is the mutex (-errno). */
static inline int dispatch_queue_init(dispatch_queue *q)
{
    int rc = PIOCP_FAULT("py_dispatch_init");
    if (rc < 0)
        return rc;
    q->head = q->tail = NULL;
    q->dispatching = 0;
    atomic_init(&q->pending, 0);
    return piocp_mutex_init(&q->lock);
}

static inline void dispatch_queue_destroy(dispatch_queue *q)
{
    piocp_mutex_destroy(&q->lock);
}

/* Appends `node`, which must not be queued or in an unfinished batch. */
static inline void dispatch_queue_push(dispatch_queue *q, dispatch_node *node, ssize_t result)
{
#ifdef PIOCP_FAULT_INJECTION
    if (PIOCP_FAULT_SHORT("py_dispatch_push", 2) < 2)
        dispatch_fault_preempt();
#endif
    node->result = result;
    node->next = NULL;
    piocp_mutex_lock(&q->lock);
    if (q->tail)
        q->tail->next = node;
    else
        q->head = node;
    q->tail = node;
    atomic_store_explicit(&q->pending, 1, memory_order_relaxed);
    piocp_mutex_unlock(&q->lock);
}

/* Whether anything is queued (a hint, without the lock). */
static inline int dispatch_queue_pending(dispatch_queue *q)
{
    return atomic_load_explicit(&q->pending, memory_order_relaxed);
}

#ifdef PIOCP_FAULT_INJECTION
/* Under the lock: a claim cut short keeps the batch's oldest nodes and
 * leaves the rest queued, in order. */
static inline void dispatch_fault_claim_short(dispatch_queue *q, dispatch_node *batch)
{
    ptrdiff_t count = 0;
    for (dispatch_node *n = batch; n; n = n->next)
        count++;
    ptrdiff_t keep = PIOCP_FAULT_SHORT("py_dispatch_claim", count);
    if (keep <= 0 || keep >= count)
        return;
    dispatch_node *last = batch;
    while (--keep > 0)
        last = last->next;
    q->head = last->next;
    for (q->tail = q->head; q->tail->next;)
        q->tail = q->tail->next;
    last->next = NULL;
    atomic_store_explicit(&q->pending, 1, memory_order_relaxed);
}
#endif

/* Claims the dispatcher role and takes every queued node, oldest first.
 * Returns NULL when there is nothing to do or another thread is
 * dispatching.  The caller walks the batch by `next`, reading it before
 * running a node (a node that has run may be pushed again at once), then
 * calls dispatch_queue_release. */
static inline dispatch_node *dispatch_queue_claim(dispatch_queue *q)
{
    if (!dispatch_queue_pending(q))
        return NULL; /* the common idle case costs no lock */
    dispatch_node *batch = NULL;
    piocp_mutex_lock(&q->lock);
    if (!q->dispatching && q->head) {
        q->dispatching = 1;
        batch = q->head;
        q->head = q->tail = NULL;
        atomic_store_explicit(&q->pending, 0, memory_order_relaxed);
#ifdef PIOCP_FAULT_INJECTION
        dispatch_fault_claim_short(q, batch);
#endif
    }
    piocp_mutex_unlock(&q->lock);
    return batch;
}

static inline void dispatch_queue_release(dispatch_queue *q)
{
    piocp_mutex_lock(&q->lock);
    q->dispatching = 0;
    piocp_mutex_unlock(&q->lock);
}

#endif
