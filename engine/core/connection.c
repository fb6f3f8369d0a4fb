/*
 * connection.c - connections: the pool of slots, references, ready lists
 * (which worker runs a connection next), posting requests, close/abort and
 * the idle-timeout sweep.  Backend-neutral.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/backend.h"
#include "errors.h"
#include "platform/platform.h"

#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- pool -- */

piocp_conn *piocp_pool_acquire(piocp_engine *e, piocp_socket fd, const struct sockaddr *peer,
                               socklen_t peer_len)
{
    piocp_mutex_lock(&e->pool_lock);
    uint32_t slot;
    if (e->free_count > 0) {
        slot = e->free_slots[--e->free_count];
    } else if (e->high_water < e->conn_capacity) {
        slot = e->high_water;
        piocp_mutex_init(&piocp_conn_at(e, slot)->lock);
        e->high_water++;
        atomic_store(&e->high_water_published, e->high_water);
    } else {
        piocp_mutex_unlock(&e->pool_lock);
        return NULL;
    }
    atomic_fetch_add(&e->open_conns, 1);
    piocp_mutex_unlock(&e->pool_lock);
    piocp_count(e, PIOCP_M_OPENED, 1);

    piocp_conn *c = piocp_conn_at(e, slot);
    piocp_mutex_lock(&c->lock);
    /* The idle sweep reads the atomics without the lock: store them, never
     * memset them.  Everything from `engine` on (and the backend's part) is
     * the lock's and starts from zero. */
    atomic_store(&c->refs, 1); /* the engine's, dropped after on_closed */
    atomic_store(&c->last_active_ms, piocp_now_ms());
    atomic_store(&c->deadline_ms, 0);
    atomic_store(&c->deadline_graceful, false);
    uint32_t generation = c->generation + 1;
    size_t reset_from = offsetof(piocp_conn, engine);
    memset((char *)c + reset_from, 0, e->conn_stride - reset_from);
    c->generation = generation;
    c->slot = slot;
    c->engine = e;
    c->state = CONN_OPEN;
    c->owner = -1; /* a backend with per-worker queues sets it in add_conn */
    c->fd = fd;
    /* Claimed like a turn from the start: a stop that began meanwhile
     * finds it open and kicks it, and its turn must not run (and close it)
     * before the caller has set it up and handed it over. */
    c->busy = true;
    /* socklen_t is an int on Windows: compare as sizes */
    if ((size_t)peer_len > sizeof c->peer)
        peer_len = (socklen_t)sizeof c->peer;
    memcpy(&c->peer, peer, peer_len);
    c->peer_len = peer_len;
    piocp_mutex_unlock(&c->lock);
    return c;
}

piocp_conn *piocp_conn_lock_tagged(piocp_engine *e, uint32_t slot, uint32_t generation,
                                   uint32_t generation_mask)
{
    if (slot >= atomic_load(&e->high_water_published))
        return NULL;
    piocp_conn *c = piocp_conn_at(e, slot);
    piocp_mutex_lock(&c->lock);
    if ((c->generation & generation_mask) != generation || c->state != CONN_OPEN) {
        piocp_mutex_unlock(&c->lock); /* stale: the connection it named is gone */
        return NULL;
    }
    return c;
}

void piocp_conn_retain(piocp_conn *c) { atomic_fetch_add(&c->refs, 1); }

void piocp_conn_release(piocp_conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    piocp_engine *e = c->engine;
    piocp_mutex_lock(&c->lock);
    c->state = CONN_FREE;
    piocp_mutex_unlock(&c->lock);
    piocp_mutex_lock(&e->pool_lock);
    e->free_slots[e->free_count++] = c->slot;
    piocp_mutex_unlock(&e->pool_lock);
}

void piocp_conn_set_callbacks(piocp_conn *c, piocp_closed_fn on_closed, void *user)
{
    piocp_mutex_lock(&c->lock);
    c->on_closed = on_closed;
    c->user = user;
    if (c->held) {
        c->held = false; /* adopted: handed over now (piocp_adopt) */
        piocp_conn_let_go_locked(c);
    }
    piocp_mutex_unlock(&c->lock);
}

void *piocp_conn_user(const piocp_conn *c) { return c->user; }
piocp_engine *piocp_conn_engine(const piocp_conn *c) { return c->engine; }

int piocp_conn_peer(const piocp_conn *c, struct sockaddr_storage *addr, socklen_t *addrlen)
{
    memcpy(addr, &c->peer, c->peer_len);
    *addrlen = c->peer_len;
    return 0;
}

int piocp_conn_sockname(piocp_conn *c, struct sockaddr_storage *addr, socklen_t *addrlen)
{
    /* under the lock: the socket may be closing on a worker right now */
    piocp_mutex_lock(&c->lock);
    int rc = -PIOCP_ENOTCONN;
    if (c->state == CONN_OPEN && c->fd != PIOCP_INVALID_SOCKET) {
        *addrlen = sizeof *addr;
        rc = piocp_socket_local_address(c->fd, addr, addrlen);
    }
    piocp_mutex_unlock(&c->lock);
    return rc;
}

/* ---------------------------------------------------- ready lists -- */

static void ready_push(ready_list *l, piocp_conn *c)
{
    c->ready_next = NULL;
    if (l->tail)
        l->tail->ready_next = c;
    else
        l->head = c;
    l->tail = c;
}

static piocp_conn *ready_pop(ready_list *l)
{
    piocp_conn *c = l->head;
    if (c) {
        l->head = c->ready_next;
        if (!l->head)
            l->tail = NULL;
    }
    return c;
}

/* Makes sure a worker will run this connection's requests.  Posts made on a
 * worker go to its local list (no lock, no system call); posts from other
 * threads go to the global list and wake one worker.  `may_move`: a
 * connection owned by another worker may move to this one.  `after_poll`:
 * not before its owner has polled again, even when this is the owner (its
 * local list is run to the end before it polls). */
static void schedule(piocp_conn *c, bool may_move, bool after_poll)
{
    if (c->busy) {
        c->again = true;
        return;
    }
    if (c->queued)
        return;
    c->queued = true;
    atomic_fetch_add(&c->refs, 1);
    piocp_engine *e = c->engine;
    piocp_worker *w = piocp_current_worker();
    if (w && w->engine != e)
        w = NULL;
    if (may_move && c->owner >= 0 && w && w->index != c->owner && c->in_kernel == 0 &&
        (!e->backend->move || e->backend->move(w, c))) {
        /* Nothing of it is on its owner's ring: it may move to this worker
         * (ring, epoll set) instead of waking the owner.  Python handlers
         * post from whichever worker dispatches, so their connections
         * gather on it: a cross-thread wake-up per post cost 15% of echo
         * throughput with two threads on one core. */
        c->owner = w->index;
    }
    if (c->owner >= 0) {
        /* its requests live on its owner's ring: only the owner may run it */
        piocp_worker *owner = &e->workers[c->owner];
        if (w == owner && !after_poll) {
            ready_push(&w->local, c);
            return;
        }
        piocp_mutex_lock(&owner->remote_lock);
        bool was_empty = owner->remote.head == NULL;
        ready_push(&owner->remote, c);
        piocp_mutex_unlock(&owner->remote_lock);
        if (was_empty)
            e->backend->wake_worker(owner);
        return;
    }
    if (w) {
        ready_push(&w->local, c);
        return;
    }
    piocp_mutex_lock(&e->ready_lock);
    bool was_empty = e->ready.head == NULL;
    ready_push(&e->ready, c);
    piocp_mutex_unlock(&e->ready_lock);
    if (was_empty)
        e->backend->wake(e);
}

void piocp_schedule_locked(piocp_conn *c) { schedule(c, true, false); }

void piocp_schedule_on_owner_locked(piocp_conn *c) { schedule(c, false, false); }

void piocp_schedule_after_poll_locked(piocp_conn *c) { schedule(c, false, true); }

void piocp_conn_let_go_locked(piocp_conn *c)
{
    c->busy = false;
    /* a stop that began meanwhile may not have kicked it: its turn closes it */
    if (c->again || atomic_load(&c->engine->draining)) {
        c->again = false;
        piocp_schedule_locked(c);
    }
}

void piocp_take_global(piocp_worker *w)
{
    piocp_engine *e = w->engine;
    piocp_mutex_lock(&e->ready_lock);
    while (e->ready.head)
        ready_push(&w->local, ready_pop(&e->ready));
    piocp_mutex_unlock(&e->ready_lock);
}

void piocp_take_remote(piocp_worker *w)
{
    piocp_mutex_lock(&w->remote_lock);
    while (w->remote.head)
        ready_push(&w->local, ready_pop(&w->remote));
    piocp_mutex_unlock(&w->remote_lock);
}

void piocp_run_local(piocp_worker *w)
{
    piocp_conn *c;
    while ((c = ready_pop(&w->local))) {
        piocp_mutex_lock(&c->lock);
        c->queued = false;
        bool run = c->state == CONN_OPEN;
        piocp_mutex_unlock(&c->lock);
        if (run)
            piocp_conn_process(w, c);
        piocp_conn_release(c);
    }
}

/* ------------------------------------------------------- requests -- */

/* Counts a request completing: by operation, its error, bytes read. */
static void count_completion(piocp_engine *e, const piocp_request *r)
{
    int op = r->op > PIOCP_OP_NONE && r->op < PIOCP_METRIC_OP_CONNECT ? (int)r->op
                                                                       : PIOCP_OP_USER;
    piocp_count(e, PIOCP_M_REQUESTS + op, 1);
    if (r->result < 0)
        piocp_count(e, PIOCP_M_ERRORS + op * PIOCP_METRIC_ERRNOS +
                           piocp_metric_errno_index((int)r->result), 1);
    else if (op == PIOCP_OP_RECV)
        piocp_count(e, PIOCP_M_RECEIVED_BYTES, (uint64_t)r->result);
}

void piocp_complete_list(piocp_engine *e, piocp_request *list)
{
    while (list) {
        piocp_request *next = list->next;
        list->next = NULL;
        count_completion(e, list);
        list->complete(list, list->result);
        list = next;
    }
}

void piocp_done_push(piocp_done_list *done, piocp_request *r, ssize_t result)
{
    r->result = result;
    r->next = NULL;
    if (done->tail)
        done->tail->next = r;
    else
        done->head = r;
    done->tail = r;
}

void piocp_done_take(piocp_done_list *done, piocp_done_list *from)
{
    if (!from->head)
        return;
    if (done->tail)
        done->tail->next = from->head;
    else
        done->head = from->head;
    done->tail = from->tail;
    from->head = from->tail = NULL;
}

/* Fails every pending request with `error`, in posting order (those
 * cancelled already keep their -PIOCP_ECANCELED). */
void piocp_fail_all_locked(piocp_conn *c, int error, piocp_done_list *done)
{
    piocp_done_take(done, &c->cancelled);
    if (c->recv_req) {
        piocp_done_push(done, c->recv_req, error);
        c->recv_req = NULL;
    }
    for (piocp_request *r = c->send_head, *next; r; r = next) {
        next = r->next;
        piocp_done_push(done, r, error);
    }
    c->send_head = c->send_tail = NULL;
}

/* A borrowed socket goes back to its owner open and as it came: no close,
 * no shutdown, no SO_LINGER.  Only the backend's watch on it ends; the
 * kernel holds nothing of ours on it any more (in_kernel is 0). */
static void hand_back_locked(piocp_conn *c)
{
    const piocp_backend_ops *ops = c->engine->backend;
    if (c->fd != PIOCP_INVALID_SOCKET && ops->remove_conn)
        ops->remove_conn(c);
}

void piocp_close_socket_locked(piocp_conn *c, int error)
{
    if (c->borrowed)
        hand_back_locked(c);
    else if (c->fd != PIOCP_INVALID_SOCKET)
        /* an aborted connection ends with a reset, not a FIN: a client must
         * not take a cut-off file for a whole one */
        piocp_socket_close(c->fd, error != 0);
    c->fd = PIOCP_INVALID_SOCKET;
    c->state = CONN_CLOSED;
    /* A cancelled connection of our own closed as asked: 0.  A borrowed
     * socket's owner is told it came back cut short (its stream may end
     * mid-message), since it goes on using it. */
    c->closed_error = error == -PIOCP_ECANCELED && !c->borrowed ? 0 : error;
}

/* After the socket is closed and every request has completed. */
void piocp_finish_closed(piocp_conn *c)
{
    piocp_engine *e = c->engine;
    piocp_report_closed(c);
    piocp_count(e, PIOCP_M_CLOSED, 1); /* before a stop can see it gone */
    piocp_mutex_lock(&e->pool_lock);
    if (atomic_fetch_sub(&e->open_conns, 1) == 1)
        piocp_cond_broadcast(&e->idle_cond);
    piocp_mutex_unlock(&e->pool_lock);
    piocp_conn_release(c);
    /* a descriptor is free again: accepting paused for want of one resumes */
    if (atomic_load_explicit(&e->paused_listeners, memory_order_relaxed) > 0)
        piocp_listeners_resume(e);
}

static int post_check_locked(piocp_conn *c)
{
    if (c->state != CONN_OPEN || c->close_requested || c->abort_error)
        return -PIOCP_ENOTCONN;
    return 0;
}

int piocp_recv(piocp_conn *c, piocp_request *req, void *buf, size_t len)
{
    if (!req || !req->complete || (!buf && len))
        return -PIOCP_EINVAL;
    piocp_mutex_lock(&c->lock);
    int rc = c->borrowed ? -PIOCP_EINVAL : post_check_locked(c); /* its owner reads it */
    if (rc == 0 && c->recv_req)
        rc = -PIOCP_EBUSY;
    if (rc == 0) {
        req->op = PIOCP_OP_RECV;
        req->conn = c;
        req->next = NULL;
        req->done = 0;
        req->cancelling = 0;
        req->u.recv.buf = buf;
        req->u.recv.len = len;
        c->recv_req = req;
        piocp_schedule_locked(c);
    }
    piocp_mutex_unlock(&c->lock);
    return rc;
}

static int queue_send(piocp_conn *c, piocp_request *req)
{
    piocp_mutex_lock(&c->lock);
    int rc = post_check_locked(c);
    if (req->op == PIOCP_OP_SHUTDOWN && c->borrowed)
        rc = -PIOCP_EINVAL; /* a FIN is its owner's to send */
    if (rc == 0 && c->write_shut)
        rc = -PIOCP_EPIPE; /* after our FIN, as send(2) says */
    if (rc == 0) {
        if (req->op == PIOCP_OP_SHUTDOWN)
            c->write_shut = true;
        c->unanswered = false;
        req->conn = c;
        req->next = NULL;
        req->done = 0;
        req->cancelling = 0;
        if (c->send_tail)
            c->send_tail->next = req;
        else
            c->send_head = req;
        c->send_tail = req;
        piocp_schedule_locked(c);
    }
    piocp_mutex_unlock(&c->lock);
    return rc;
}

int piocp_send(piocp_conn *c, piocp_request *req, const void *buf, size_t len)
{
    if (!req || !req->complete || (!buf && len))
        return -PIOCP_EINVAL;
    req->op = PIOCP_OP_SEND;
    req->u.send.buf = buf;
    req->u.send.len = len;
    return queue_send(c, req);
}

int piocp_transmit(piocp_conn *c, piocp_request *req, const void *head, size_t head_len,
                   piocp_file fd, uint64_t offset, uint64_t count)
{
    if (!req || !req->complete || (!head && head_len) || fd == PIOCP_INVALID_FILE ||
        (count != PIOCP_TRANSMIT_TO_EOF && offset + count < offset))
        return -PIOCP_EINVAL;
    uint64_t size;
    if (count == PIOCP_TRANSMIT_TO_EOF && piocp_file_size(fd, &size) == 0) {
        /* fix the length now: an exact count lets the head go out with
         * MSG_MORE and turns a file shrinking underneath into an error */
        count = size > offset ? size - offset : 0;
    }
    req->op = PIOCP_OP_TRANSMIT;
    req->u.transmit.head = head;
    req->u.transmit.head_len = head_len;
    req->u.transmit.fd = fd;
    req->u.transmit.offset = offset;
    req->u.transmit.count = count;
    return queue_send(c, req);
}

int piocp_shutdown(piocp_conn *c, piocp_request *req)
{
    if (!req || !req->complete)
        return -PIOCP_EINVAL;
    req->op = PIOCP_OP_SHUTDOWN;
    return queue_send(c, req);
}

int piocp_close(piocp_conn *c)
{
    piocp_mutex_lock(&c->lock);
    int rc = c->state == CONN_OPEN ? 0 : -PIOCP_ENOTCONN;
    if (rc == 0 && !c->close_requested) {
        c->close_requested = true;
        piocp_schedule_locked(c);
    }
    piocp_mutex_unlock(&c->lock);
    return rc;
}

int piocp_abort(piocp_conn *c)
{
    piocp_mutex_lock(&c->lock);
    int rc = c->state == CONN_OPEN ? 0 : -PIOCP_ENOTCONN;
    if (rc == 0) {
        if (!c->abort_error)
            c->abort_error = -PIOCP_ECANCELED;
        piocp_schedule_locked(c);
    }
    piocp_mutex_unlock(&c->lock);
    return rc;
}

/* --------------------------------------------------------- cancel -- */

/* Takes `req` out of the send queue if it waits there behind the head (so
 * has not started: only the head moves).  true if it did. */
static bool unlink_queued_locked(piocp_conn *c, piocp_request *req)
{
    for (piocp_request *prev = c->send_head; prev && prev->next; prev = prev->next) {
        if (prev->next != req)
            continue;
        prev->next = req->next;
        if (c->send_tail == req)
            c->send_tail = prev;
        return true;
    }
    return false;
}

static bool listed(const piocp_done_list *list, const piocp_request *req)
{
    for (const piocp_request *r = list->head; r; r = r->next)
        if (r == req)
            return true;
    return false;
}

/* Whether a request is pending is decided here, under the lock, where every
 * completion is decided too: a request is in exactly one of the
 * connection's lists until a turn or a kernel completion takes it out to
 * complete it.  Completing always happens on a worker in the connection's
 * turn (or its kernel completion), never here: callbacks stay serialised,
 * and a cancel from any thread cannot race a turn that is running. */
int piocp_cancel(piocp_conn *c, piocp_request *req)
{
    if (!c || !req)
        return -PIOCP_EINVAL;
    piocp_mutex_lock(&c->lock);
    int rc = 0;
    if (c->state != CONN_OPEN) {
        rc = -PIOCP_ENOENT; /* closed: everything it had has completed */
    } else if (req == c->recv_req || req == c->send_head) {
        /* may be under way, or held by the kernel: the turn decides (see
         * resolve_cancels_locked in loop.c) */
        req->cancelling = 1;
    } else if (unlink_queued_locked(c, req)) {
        req->cancelling = 1;
        if (req->op == PIOCP_OP_SHUTDOWN)
            c->write_shut = false; /* its FIN will not go out */
        piocp_done_push(&c->cancelled, req, -PIOCP_ECANCELED);
    } else if (!listed(&c->cancelled, req)) {
        rc = -PIOCP_ENOENT;
    }
    if (rc == 0)
        piocp_schedule_locked(c);
    piocp_mutex_unlock(&c->lock);
    return rc;
}

/* ------------------------------------------------------ idle timeout -- */

int piocp_sweep_period_ms(const piocp_engine *e)
{
    /* four sweeps per idle timeout (a peer is dropped within 1.25 x), and
     * at least four a second for per-connection deadlines */
    int period = 250;
    if (e->config.idle_timeout_ms > 0 && e->config.idle_timeout_ms / 4 < period)
        period = e->config.idle_timeout_ms / 4;
    return period < 10 ? 10 : period;
}

static int set_deadline(piocp_conn *c, int timeout_ms, bool graceful)
{
    if (timeout_ms < 0)
        return -PIOCP_EINVAL;
    atomic_store_explicit(&c->deadline_graceful, graceful, memory_order_relaxed);
    atomic_store_explicit(&c->deadline_ms, timeout_ms ? piocp_now_ms() + timeout_ms : 0,
                          memory_order_relaxed);
    return 0;
}

int piocp_conn_set_deadline(piocp_conn *c, int timeout_ms) { return set_deadline(c, timeout_ms, false); }

int piocp_conn_set_close_deadline(piocp_conn *c, int timeout_ms)
{
    return set_deadline(c, timeout_ms, true);
}

static bool expired(const piocp_conn *c, long long now, long long idle_limit)
{
    long long deadline = atomic_load_explicit(&c->deadline_ms, memory_order_relaxed);
    if (deadline && now >= deadline)
        return true;
    return idle_limit > 0 &&
           now - atomic_load_explicit(&c->last_active_ms, memory_order_relaxed) >= idle_limit;
}

void piocp_scan_idle(piocp_engine *e)
{
    long long limit = e->config.idle_timeout_ms;
    long long now = piocp_now_ms();
    uint32_t high = atomic_load(&e->high_water_published);
    for (uint32_t i = 0; i < high; i++) {
        piocp_conn *c = piocp_conn_at(e, i);
        if (!expired(c, now, limit))
            continue;
        piocp_mutex_lock(&c->lock);
        if (c->state == CONN_OPEN && c->lingering) {
            /* closing already: only its linger time counts, and its turn
             * closes it in order (an idle peer is what lingering waits out) */
            long long deadline = atomic_load_explicit(&c->deadline_ms, memory_order_relaxed);
            if (deadline && now >= deadline) {
                atomic_store_explicit(&c->deadline_ms, 0, memory_order_relaxed);
                piocp_schedule_locked(c);
            }
        } else if (c->state == CONN_OPEN && !c->abort_error &&
                   /* a borrowed socket's owner keeps its own timeouts */
                   expired(c, now, c->borrowed ? 0 : limit)) {
            long long deadline = atomic_load_explicit(&c->deadline_ms, memory_order_relaxed);
            bool graceful = deadline && now >= deadline &&
                            atomic_load_explicit(&c->deadline_graceful, memory_order_relaxed);
            if (graceful) {
                /* an idle keep-alive connection ends with a FIN (lingering
                 * close), so a client may safely retry on a fresh one */
                atomic_store_explicit(&c->deadline_ms, 0, memory_order_relaxed);
                c->close_requested = true;
            } else {
                c->abort_error = -PIOCP_ETIMEDOUT;
            }
            piocp_schedule_locked(c);
        }
        piocp_mutex_unlock(&c->lock);
    }
}
