/*
 * timers.c - user timers (piocp_post_after): a min-heap of requests by due
 * time under one lock, fired by worker 0, which already wakes a few times
 * a second for the idle sweep: its wait ends at the nearest timer instead
 * when that comes first, and a timer that becomes the nearest wakes it.
 * Cancelled and stopped timers complete as user completions.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/backend.h"
#include "errors.h"
#include "platform/platform.h"

#include <limits.h>
#include <stdlib.h>

/* Earlier due time first; the same due time in posting order. */
static bool before(const piocp_request *a, const piocp_request *b)
{
    if (a->u.timer.due_us != b->u.timer.due_us)
        return a->u.timer.due_us < b->u.timer.due_us;
    return a->u.timer.sequence < b->u.timer.sequence;
}

static void place(piocp_timer_heap *h, size_t i, piocp_request *r)
{
    h->items[i] = r;
    r->u.timer.index = i;
}

static void sift_up(piocp_timer_heap *h, size_t i)
{
    piocp_request *r = h->items[i];
    while (i > 0 && before(r, h->items[(i - 1) / 2])) {
        place(h, i, h->items[(i - 1) / 2]);
        i = (i - 1) / 2;
    }
    place(h, i, r);
}

static void sift_down(piocp_timer_heap *h, size_t i)
{
    piocp_request *r = h->items[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->count)
            break;
        if (child + 1 < h->count && before(h->items[child + 1], h->items[child]))
            child++;
        if (!before(h->items[child], r))
            break;
        place(h, i, h->items[child]);
        i = child;
    }
    place(h, i, r);
}

static void remove_at(piocp_timer_heap *h, size_t i)
{
    piocp_request *last = h->items[--h->count];
    if (i == h->count)
        return;
    place(h, i, last);
    sift_down(h, i);
    sift_up(h, last->u.timer.index);
}

/* After every change of the heap, under its lock. */
static void publish_nearest(piocp_timer_heap *h)
{
    atomic_store_explicit(&h->nearest_us, h->count ? h->items[0]->u.timer.due_us : LLONG_MAX,
                          memory_order_relaxed);
}

/* Whether `r` is a pending timer of this heap (its memory is the
 * caller's, valid whatever it holds): the heap slot it names holds it.
 * A fired or cancelled timer keeps its op, but no slot holds it. */
static bool pending(const piocp_timer_heap *h, const piocp_request *r)
{
    return r->op == PIOCP_OP_TIMER && r->u.timer.index < h->count &&
           h->items[r->u.timer.index] == r;
}

int piocp_post_after(piocp_engine *e, piocp_request *req, int64_t delay_ms)
{
    if (!e || !req || !req->complete || delay_ms < 0 || delay_ms > INT64_MAX / 1000 / 2)
        return -PIOCP_EINVAL;
    piocp_timer_heap *h = &e->timers;
    piocp_mutex_lock(&h->lock);
    if (h->closed) {
        piocp_mutex_unlock(&h->lock);
        return -PIOCP_ESHUTDOWN;
    }
    if (h->count == h->capacity) {
        size_t capacity = h->capacity ? 2 * h->capacity : 64;
        piocp_request **items = realloc(h->items, capacity * sizeof *items);
        if (!items) {
            piocp_mutex_unlock(&h->lock);
            return -PIOCP_ENOMEM;
        }
        h->items = items;
        h->capacity = capacity;
    }
    req->op = PIOCP_OP_TIMER;
    req->conn = NULL;
    req->next = NULL;
    req->u.timer.due_us = piocp_monotonic_us() + delay_ms * 1000;
    req->u.timer.sequence = h->sequence++;
    h->items[h->count++] = req;
    sift_up(h, h->count - 1);
    publish_nearest(h);
    bool nearest = h->items[0] == req;
    piocp_mutex_unlock(&h->lock);
    if (nearest) /* worker 0 may be asleep past it */
        e->backend->wake_worker(&e->workers[0]);
    return 0;
}

int piocp_timer_cancel(piocp_engine *e, piocp_request *req)
{
    if (!e || !req)
        return -PIOCP_EINVAL;
    piocp_timer_heap *h = &e->timers;
    piocp_mutex_lock(&h->lock);
    bool found = pending(h, req);
    if (found) {
        remove_at(h, req->u.timer.index);
        publish_nearest(h);
    }
    piocp_mutex_unlock(&h->lock);
    if (!found)
        return -PIOCP_ENOENT; /* fired, firing, cancelled, or never posted */
    /* Completes on a worker, like every completion.  Timers are cancelled
     * all together before the workers quit, so this is not refused. */
    return piocp_post_as(e, req, -PIOCP_ECANCELED, PIOCP_OP_TIMER) == 0 ? 0 : -PIOCP_ENOENT;
}

int piocp_timers_wait_ms(piocp_engine *e)
{
    long long due = atomic_load_explicit(&e->timers.nearest_us, memory_order_relaxed);
    if (due == LLONG_MAX)
        return -1;
    long long left_us = due - piocp_monotonic_us();
    if (left_us <= 0)
        return 0;
    long long left_ms = (left_us + 999) / 1000; /* never wake before it is due */
    return left_ms > INT32_MAX ? INT32_MAX : (int)left_ms;
}

void piocp_timers_fire_due(piocp_engine *e)
{
    piocp_timer_heap *h = &e->timers;
    piocp_request *head = NULL, **tail = &head;
    if (atomic_load_explicit(&h->nearest_us, memory_order_relaxed) == LLONG_MAX)
        return; /* no timer: no clock read, no lock */
    long long now = piocp_monotonic_us();
    if (atomic_load_explicit(&h->nearest_us, memory_order_relaxed) > now)
        return;
    piocp_mutex_lock(&h->lock);
    while (h->count && h->items[0]->u.timer.due_us <= now) {
        piocp_request *r = h->items[0];
        remove_at(h, 0);
        /* out of the heap, so no longer pending (see pending()): a cancel
         * now finds nothing; op stays, for the counters */
        r->result = 0;
        r->next = NULL;
        *tail = r;
        tail = &r->next;
    }
    publish_nearest(h);
    piocp_mutex_unlock(&h->lock);
    piocp_complete_list(e, head); /* in due order */
}

void piocp_timers_cancel_all(piocp_engine *e)
{
    piocp_timer_heap *h = &e->timers;
    piocp_mutex_lock(&h->lock);
    h->closed = true;
    /* in due order, as they would have fired */
    while (h->count) {
        piocp_request *r = h->items[0];
        remove_at(h, 0);
        publish_nearest(h);
        piocp_mutex_unlock(&h->lock);
        piocp_post_as(e, r, -PIOCP_ECANCELED, PIOCP_OP_TIMER);
        piocp_mutex_lock(&h->lock);
    }
    piocp_mutex_unlock(&h->lock);
}

void piocp_timers_init(piocp_engine *e)
{
    piocp_mutex_init(&e->timers.lock);
    atomic_store(&e->timers.nearest_us, LLONG_MAX);
}

void piocp_timers_destroy(piocp_engine *e)
{
    piocp_mutex_destroy(&e->timers.lock);
    free(e->timers.items);
}
