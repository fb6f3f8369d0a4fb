/*
 * write_flow.h - a connection's write buffer accounting, for asyncio-style
 * flow control (pause_writing / resume_writing), kept in C so that a plain
 * send costs no extra Python call and a completion needs no GIL.
 *
 * `queued` counts the bytes posted (send payloads, transmit heads and the
 * file bytes of transmits) and not yet completed.  The thread that posts
 * adds; the worker that completes subtracts.  Pausing happens in the
 * posting thread, under the GIL, inside the send() that crossed the high
 * mark (as asyncio's transport.write() calls pause_writing()).  Resuming is
 * decided by the completion that brings `queued` down to the low mark: it
 * queues one resume item for the dispatcher, which calls resume_writing().
 *
 * The hand-over between the two is a flag the pauser sets *before* looking
 * at `queued` again, and that a completion clears *after* subtracting
 * (both sequentially consistent): whatever the interleaving, either the
 * pauser sees the drained buffer or the completion sees the flag, so no
 * resume is lost, and the exchange makes sure there is only one.
 */
#ifndef PYIOCP_WRITE_FLOW_H
#define PYIOCP_WRITE_FLOW_H

#include "platform/atomics.h" /* engine/ is on the include path */

#include <stddef.h>

typedef struct write_flow {
    atomic_size_t queued;      /* bytes posted, not yet completed */
    atomic_size_t low;         /* resume once queued <= low (set under the GIL) */
    atomic_int resume_armed;   /* paused: the completion reaching low must resume */
    atomic_int resume_queued;  /* the resume item waits in the dispatch queue */
} write_flow;

static inline void write_flow_init(write_flow *f, size_t low)
{
    atomic_init(&f->queued, 0);
    atomic_init(&f->low, low);
    atomic_init(&f->resume_armed, 0);
    atomic_init(&f->resume_queued, 0);
}

static inline void write_flow_set_low(write_flow *f, size_t low) { atomic_store(&f->low, low); }

/* Counts `n` more bytes posted; returns the new total. */
static inline size_t write_flow_add(write_flow *f, size_t n)
{
    return atomic_fetch_add(&f->queued, n) + n;
}

static inline size_t write_flow_queued(write_flow *f) { return atomic_load(&f->queued); }

/* Disarms a pending resume if the buffer is at or below the low mark:
 * returns 1 if the caller must now arrange the resume (queue the item, or
 * resume directly when it holds the GIL in dispatch). */
static inline int write_flow_take_resume(write_flow *f)
{
    if (atomic_load(&f->queued) > atomic_load(&f->low))
        return 0;
    return atomic_exchange(&f->resume_armed, 0) != 0;
}

/* The pauser: arms the resume, then looks again (see the top). Returns 1
 * if the buffer drained meanwhile and the caller must arrange the resume. */
static inline int write_flow_arm_resume(write_flow *f)
{
    atomic_store(&f->resume_armed, 1);
    return write_flow_take_resume(f);
}

/* Claims the right to push the resume item: 0 if it is already queued
 * (that one will look at the buffer when it runs). */
static inline int write_flow_claim_resume_item(write_flow *f)
{
    return atomic_exchange(&f->resume_queued, 1) == 0;
}

static inline void write_flow_resume_item_ran(write_flow *f)
{
    atomic_store(&f->resume_queued, 0);
}

/* Takes back bytes counted for a post that failed (it never completes). */
static inline void write_flow_undo(write_flow *f, size_t n)
{
    if (n)
        atomic_fetch_sub(&f->queued, n);
}

/* A completion of `n` counted bytes: returns 1 if the caller must push the
 * resume item. */
static inline int write_flow_done(write_flow *f, size_t n)
{
    if (n)
        atomic_fetch_sub(&f->queued, n);
    return write_flow_take_resume(f) && write_flow_claim_resume_item(f);
}

/* The engine's budget: bytes held in memory for sends, across all of its
 * connections (Engine(max_write_buffer=...)), so that no peer, and no
 * handler that ignores pause_writing, can grow memory without bound. */
typedef struct write_budget {
    atomic_size_t used;
    size_t cap;                /* set before any send */
} write_budget;

static inline void write_budget_init(write_budget *b, size_t cap)
{
    atomic_init(&b->used, 0);
    b->cap = cap;
}

/* Takes `n` bytes from the budget: 0 (and nothing taken) if that would
 * exceed the cap. */
static inline int write_budget_take(write_budget *b, size_t n)
{
    size_t now = atomic_fetch_add(&b->used, n) + n;
    if (now > b->cap && n) {
        atomic_fetch_sub(&b->used, n);
        return 0;
    }
    return 1;
}

static inline void write_budget_give(write_budget *b, size_t n)
{
    if (n)
        atomic_fetch_sub(&b->used, n);
}

static inline size_t write_budget_used(write_budget *b) { return atomic_load(&b->used); }

#endif
