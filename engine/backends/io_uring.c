/*
 * io_uring.c - Linux io_uring: true completions.
 *
 * One ring per worker thread (a ring has one submitter: SINGLE_ISSUER).
 * Every worker arms a multishot accept on every listener, so the kernel
 * spreads new connections over the workers, and a connection belongs to
 * the worker that accepted it (conn->owner): its requests are submitted to
 * and completed from that worker's ring.  Posts made on other threads reach
 * the owner through its remote list and an eventfd its ring polls.
 *
 * recv and send are ring operations: the submission of the next requests
 * and the wait for completions are one io_uring_enter.  io_uring has no
 * sendfile; a transmit runs by direct send(head, MSG_MORE) + sendfile(2)
 * on the owner thread (measured fastest, see BENCHMARKS.md), with a ring
 * POLLOUT when the socket is full.  Closing cancels what is on the ring
 * (ASYNC_CANCEL by descriptor); the core closes the socket only once every
 * CQE came back (conn->in_kernel).  piocp_cancel cancels one SQE (the recv,
 * or the head's send or POLLOUT) by its user_data.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/backend.h"
#include "core/fault.h"
#include "backends/uring.h"
#include "platform/platform.h"
#include "platform/posix/fault_calls.h"

#if PIOCP_URING_SUPPORTED
#include <linux/io_uring.h>
#endif

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#if PIOCP_URING_SUPPORTED

#define RING_ENTRIES 256
#define MAX_CQES 128

/* user_data: kind (3 bits) | op (3 bits) | generation (26 bits) | slot (32) */
enum { KIND_CONN = 0, KIND_ACCEPT = 1, KIND_WAKE = 2, KIND_TIMER = 3, KIND_IGNORE = 4 };
enum { OP_RECV = 0, OP_SEND = 1, OP_POLLOUT = 2, OP_POLLIN = 3 };
#define KIND_SHIFT 61
#define OP_SHIFT 58
#define GEN_MASK 0x3ffffffu

typedef struct uring_worker {
    piocp_uring ring;
    bool ready;                /* ring created (in the worker's own thread) */
    int wake_fd;
    bool wake_armed;           /* its multishot poll is on the ring */
    bool armed[PIOCP_MAX_LISTENERS]; /* multishot accept armed per listener */
    bool arm_failed;           /* the SQ was full: a listener is still to arm */
    /* The wait's timeout (the sweeper's next sweep) as a ring timeout: one
     * in flight at most, re-armed only when it has fired. */
    struct __kernel_timespec timer;
    bool timer_armed;
    /* Fault builds: a multishot accept whose CQE an injected error ended
     * (see fault_cqe); its cancellation's CQE is not the kernel's to show. */
    bool accept_fault_cancel[PIOCP_MAX_LISTENERS];
} uring_worker;

typedef struct uring_backend {
    uring_worker *workers;
    int count;
} uring_backend;

/* What this connection has on its owner's ring. */
typedef struct uring_conn {
    bool recv_submitted, send_submitted, poll_submitted;
    bool cancel_submitted, recv_cancel_submitted;
    bool send_cancel_submitted;  /* piocp_cancel's, for the head's SQE */
    bool sqe_owed;               /* a cancel found the SQ full: park has the turn run again */
    unsigned send_op;            /* with send_submitted: OP_SEND or OP_POLLOUT */
} uring_conn;

static uint64_t conn_data(const piocp_conn *c, unsigned op)
{
    return ((uint64_t)KIND_CONN << KIND_SHIFT) | ((uint64_t)op << OP_SHIFT) |
           ((uint64_t)(c->generation & GEN_MASK) << 32) | c->slot;
}

static uint64_t kind_data(unsigned kind, uint64_t value) { return ((uint64_t)kind << KIND_SHIFT) | value; }

/* ------------------------------------------------------------ probe -- */

static piocp_once probe_once = PIOCP_ONCE_INIT;
static int probe_result;
static piocp_uring_features probe_features;

static void *probe_thread(void *arg)
{
    *(int *)arg = piocp_uring_probe(&probe_features);
    return NULL;
}

static void run_probe(void)
{
    /* In a thread of its own: tearing down the probe's ring leaves task
     * work for the thread that used it, which interrupts that thread's next
     * blocking call (EINTR from a socket read with a timeout).  That must
     * not be the caller's, often Python's main thread. */
    int rc = -EAGAIN;
    piocp_thread thread;
    if (piocp_thread_start(&thread, probe_thread, &rc) == 0)
        piocp_thread_join(&thread);
    else
        rc = piocp_uring_probe(&probe_features);
    if (rc == 0) {
        const piocp_uring_features *f = &probe_features;
        /* what this backend relies on (kernel 5.19+) */
        if (!f->op_accept || !f->op_recv || !f->op_send || !f->op_async_cancel ||
            !f->op_poll_add || !f->accept_multishot)
            rc = -EOPNOTSUPP;
    }
    probe_result = rc;
}

static int uring_probe(void)
{
    piocp_once_run(&probe_once, run_probe);
    return probe_result;
}

static const char *uring_describe(char *buf, size_t len)
{
    piocp_once_run(&probe_once, run_probe);
    piocp_uring_describe(&probe_features, buf, len);
    if (probe_result == -EOPNOTSUPP) {
        size_t used = strlen(buf);
        snprintf(buf + used, len - used, " (missing an operation this backend needs: "
                                         "multishot accept, recv, send, cancel or poll)");
    }
    return buf;
}

/* ------------------------------------------------------------ setup -- */

static void uring_destroy(piocp_engine *e)
{
    uring_backend *b = e->backend_data;
    for (int i = 0; i < b->count; i++) {
        piocp_uring_exit(&b->workers[i].ring); /* a worker that never ran */
        if (b->workers[i].wake_fd >= 0)
            close(b->workers[i].wake_fd);
    }
    free(b->workers);
    free(b);
    e->backend_data = NULL;
}

static int uring_init(piocp_engine *e)
{
    uring_backend *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    e->backend_data = b;
    b->workers = calloc((size_t)e->threads, sizeof *b->workers);
    if (!b->workers) {
        uring_destroy(e);
        return -ENOMEM;
    }
    b->count = e->threads;
    for (int i = 0; i < b->count; i++) {
        b->workers[i].ring.fd = -1;
        b->workers[i].wake_fd = -1;
    }
    for (int i = 0; i < b->count; i++) {
        b->workers[i].wake_fd = FAULT_CALL("eventfd", eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
        if (b->workers[i].wake_fd < 0) {
            int rc = -errno;
            uring_destroy(e);
            return rc;
        }
        e->workers[i].backend = &b->workers[i];
    }
    return 0;
}

static void wake_fd(int fd)
{
    uint64_t one = 1;
    (void)!write(fd, &one, sizeof one);
}

static void uring_wake_worker(piocp_worker *w) { wake_fd(((uring_worker *)w->backend)->wake_fd); }

/* user completions and the like: any worker will do, the first one runs them */
static void uring_wake(piocp_engine *e) { uring_wake_worker(&e->workers[0]); }

static void uring_wake_all(piocp_engine *e)
{
    for (int i = 0; i < e->threads; i++)
        uring_wake_worker(&e->workers[i]);
}

/* An SQE, submitting what is queued first if the ring is full.  The point
 * "uring_sqe" fails it as a ring the kernel does not empty would. */
static struct io_uring_sqe *get_sqe(uring_worker *uw)
{
    if (PIOCP_FAULT("uring_sqe"))
        return NULL;
    struct io_uring_sqe *sqe = piocp_uring_get_sqe(&uw->ring);
    if (!sqe) {
        piocp_uring_submit(&uw->ring);
        sqe = piocp_uring_get_sqe(&uw->ring);
    }
    return sqe;
}

/* A shared listener's readiness poll: an accept kind with the POLLIN op. */
static uint64_t shared_accept_data(uint32_t index)
{
    return kind_data(KIND_ACCEPT, index) | ((uint64_t)OP_POLLIN << OP_SHIFT);
}

static bool is_shared_accept_data(uint64_t data)
{
    return ((data >> OP_SHIFT) & 7u) == OP_POLLIN;
}

/* Each worker arms its own accepts (rings are single-issuer): on start and
 * whenever it is woken, for the listeners that accept and are not armed. */
static void arm_listeners(piocp_engine *e, uring_worker *uw)
{
    for (uint32_t i = 0; i < PIOCP_MAX_LISTENERS; i++) {
        piocp_listener *l = piocp_listener_at(e, i);
        if (!l || uw->armed[i] || !piocp_listener_accepting(l))
            continue;
        struct io_uring_sqe *sqe = get_sqe(uw);
        if (!sqe) {
            uw->arm_failed = true; /* the next poll tries again */
            break;
        }
        if (l->shared)
            /* Other processes accept on it too.  A multishot accept that is
             * cancelled at stop may already have taken a connection off the
             * shared queue, which this stopping engine would then refuse:
             * wait for readiness and accept here, checking first. */
            piocp_uring_prep_poll_add(sqe, l->fd, POLLIN, shared_accept_data(i));
        else
            piocp_uring_prep_accept_multishot(sqe, l->fd, SOCK_NONBLOCK | SOCK_CLOEXEC,
                                              kind_data(KIND_ACCEPT, i));
        uw->armed[i] = true;
    }
}

/* Without an SQE (a ring the kernel does not empty) the wake-up is armed
 * again by the next uring_poll: a worker nobody can wake never stops. */
static void arm_wake(uring_worker *uw)
{
    struct io_uring_sqe *sqe = get_sqe(uw);
    if (sqe)
        piocp_uring_prep_poll_multishot(sqe, uw->wake_fd, POLLIN, kind_data(KIND_WAKE, 0));
    uw->wake_armed = sqe != NULL; /* else the next poll tries again */
}

/* What could not be armed for want of an SQE (the SQ full, the kernel
 * not taking more) is armed before each wait; until it is, the wait is
 * short, since without its wake-up poll nothing else would end it. */
static int arm_missing(piocp_engine *e, uring_worker *uw, int timeout_ms)
{
    if (!uw->wake_armed)
        arm_wake(uw);
    if (uw->arm_failed) {
        uw->arm_failed = false;
        arm_listeners(e, uw);
    }
    bool missing = !uw->wake_armed || uw->arm_failed;
    return missing && (timeout_ms < 0 || timeout_ms > 10) ? 10 : timeout_ms;
}

static void arm_timer(uring_worker *uw, int timeout_ms)
{
    if (uw->timer_armed)
        return; /* the sweeper's timeouts all end at its next sweep */
    struct io_uring_sqe *sqe = get_sqe(uw);
    if (!sqe)
        return;
    uw->timer.tv_sec = timeout_ms / 1000;
    uw->timer.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
    piocp_uring_prep_timeout(sqe, &uw->timer, 0, 0, kind_data(KIND_TIMER, 0));
    uw->timer_armed = true;
}

/* Created here, in the thread that will submit to it: SINGLE_ISSUER. */
static int uring_worker_init(piocp_worker *w)
{
    uring_worker *uw = w->backend;
    int rc = PIOCP_FAULT("uring_setup");
    if (rc == 0)
        rc = piocp_uring_init(&uw->ring, RING_ENTRIES, 0);
    if (rc < 0) {
        char text[128];
        fprintf(stderr, "pyiocp: worker %d could not create its io_uring ring: %s\n", w->index,
                piocp_error_text(-rc, text, sizeof text));
        return rc;
    }
    uw->ready = true;
    arm_wake(uw);
    arm_listeners(w->engine, uw);
    return 0;
}

/* Leaving: a connection the kernel accepted just before its listener was
 * shut down may still sit in the completion queue, its descriptor already
 * ours.  Close those, then the ring. */
static void uring_worker_exit(piocp_worker *w)
{
    uring_worker *uw = w->backend;
    if (!uw->ready)
        return;
    struct io_uring_cqe *cqes[MAX_CQES];
    int n;
    piocp_uring_submit_and_wait(&uw->ring, 0);
    while ((n = piocp_uring_peek_batch(&uw->ring, cqes, MAX_CQES)) > 0) {
        for (int i = 0; i < n; i++)
            if ((unsigned)(cqes[i]->user_data >> KIND_SHIFT) == KIND_ACCEPT && cqes[i]->res >= 0 &&
                !is_shared_accept_data(cqes[i]->user_data))
                close(cqes[i]->res);
        piocp_uring_cq_advance(&uw->ring, (unsigned)n);
    }
    piocp_uring_exit(&uw->ring);
}

static int uring_add_listener(piocp_engine *e, piocp_listener *l)
{
    (void)l;
    uring_wake_all(e); /* each worker arms its accept when it wakes */
    return 0;
}

static void uring_resume_listener(piocp_engine *e, piocp_listener *l)
{
    (void)l;
    uring_wake_all(e);
}

/* ------------------------------------------------------- connections -- */

static int uring_add_conn(piocp_worker *w, piocp_conn *c)
{
    c->owner = w ? w->index : 0; /* accepted on this worker's ring */
    return 0;
}

/* A ring recv's or send's length.  Fault builds cut it short here, not in
 * the CQE: the kernel then really moves fewer bytes and says so, whereas a
 * CQE whose count were lowered after the fact would lose received bytes or
 * send some twice, which no kernel does.  (An armed error is for the
 * CQE's points, cqe_recv and cqe_send.) */
static size_t sqe_len(const char *point, size_t len)
{
    ptrdiff_t n = PIOCP_FAULT_SHORT(point, len);
    return n < 0 ? len : (size_t)n;
}

static bool submit_conn_op(uring_worker *uw, piocp_conn *c, struct io_uring_sqe **out)
{
    *out = get_sqe(uw);
    if (!*out)
        return false;
    c->in_kernel++;
    return true;
}

static bool submit_recv(uring_worker *uw, piocp_conn *c, uring_conn *uc)
{
    struct io_uring_sqe *sqe;
    if (!submit_conn_op(uw, c, &sqe))
        return false;
    piocp_request *r = c->recv_req;
    piocp_uring_prep_recv(sqe, c->fd, r->u.recv.buf, sqe_len("sqe_recv", r->u.recv.len), 0,
                          conn_data(c, OP_RECV));
    uc->recv_submitted = true;
    return true;
}

static bool submit_send(uring_worker *uw, piocp_conn *c, uring_conn *uc)
{
    struct io_uring_sqe *sqe;
    if (!submit_conn_op(uw, c, &sqe))
        return false;
    piocp_request *r = c->send_head;
    piocp_uring_prep_send(sqe, c->fd, (const char *)r->u.send.buf + r->done,
                          sqe_len("sqe_send", r->u.send.len - r->done), MSG_NOSIGNAL,
                          conn_data(c, OP_SEND));
    uc->send_submitted = true;
    uc->send_op = OP_SEND;
    return true;
}

/* `op` OP_POLLOUT: the socket is full; OP_POLLIN: lingering, wake us when
 * the peer sends more or closes. */
static bool submit_poll(uring_worker *uw, piocp_conn *c, uring_conn *uc, unsigned op)
{
    struct io_uring_sqe *sqe;
    if (!submit_conn_op(uw, c, &sqe))
        return false;
    piocp_uring_prep_poll_add(sqe, c->fd, op == OP_POLLOUT ? POLLOUT : POLLIN, conn_data(c, op));
    if (op == OP_POLLOUT) {
        uc->send_submitted = true;
        uc->send_op = OP_POLLOUT;
    } else {
        uc->poll_submitted = true;
    }
    return true;
}

static ssize_t send_step(piocp_conn *c, piocp_request *r) { return piocp_socket_send_step(c->fd, r); }

/* A plain send goes on the ring; a transmit runs by direct send(head,
 * MSG_MORE) + sendfile on this (owner) thread.  Its head used to be a ring
 * send: the ring round trip between head and file cost 9% of CPU per
 * 64 KiB answer against epoll (BENCHMARKS.md). */
static bool uring_run(piocp_worker *w, piocp_conn *c, piocp_done_list *done, size_t *budget)
{
    uring_worker *uw = w->backend;
    uring_conn *uc = piocp_conn_backend(c);
    if (c->recv_req && !uc->recv_submitted && !submit_recv(uw, c, uc))
        c->abort_error = -EBUSY;
    if (uc->send_submitted)
        return true; /* the ring holds the head's send, or a POLLOUT */
    switch (piocp_run_sends_locked(c, done, budget, send_step, true)) {
    case PIOCP_SENDS_HANDOFF:
        if (!submit_send(uw, c, uc))
            c->abort_error = -EBUSY;
        break;
    case PIOCP_SENDS_BLOCKED:
        if (!submit_poll(uw, c, uc, OP_POLLOUT))
            c->abort_error = -EBUSY;
        break;
    case PIOCP_SENDS_BUDGET:
        return false;
    default:
        break;
    }
    return true;
}

static bool uring_cancel_recv(piocp_worker *w, piocp_conn *c)
{
    uring_conn *uc = piocp_conn_backend(c);
    if (!uc->recv_submitted)
        return false;
    if (!uc->recv_cancel_submitted) {
        struct io_uring_sqe *sqe = get_sqe(w->backend);
        if (sqe) {
            piocp_uring_prep_cancel(sqe, conn_data(c, OP_RECV), 0, kind_data(KIND_IGNORE, 0));
            uc->recv_cancel_submitted = true;
        } else {
            uc->sqe_owed = true;
        }
    }
    return true;
}

/* The head of the send queue is to end (piocp_cancel).  The ring may hold
 * its send, or the POLLOUT it waits on: cancel that one SQE by its
 * user_data (the other requests on the socket stay), and let the turn after
 * its CQE end the request with what was sent. */
static bool uring_cancel_send(piocp_worker *w, piocp_conn *c)
{
    uring_conn *uc = piocp_conn_backend(c);
    if (!uc->send_submitted)
        return false;
    if (!uc->send_cancel_submitted) {
        struct io_uring_sqe *sqe = get_sqe(w->backend);
        if (sqe) {
            piocp_uring_prep_cancel(sqe, conn_data(c, uc->send_op), 0, kind_data(KIND_IGNORE, 0));
            uc->send_cancel_submitted = true;
        } else {
            uc->sqe_owed = true;
        }
    }
    return true;
}

static void uring_cancel(piocp_worker *w, piocp_conn *c)
{
    uring_conn *uc = piocp_conn_backend(c);
    if (uc->cancel_submitted)
        return;
    struct io_uring_sqe *sqe = get_sqe(w->backend);
    if (sqe) {
        piocp_uring_prep_cancel_fd(sqe, c->fd, kind_data(KIND_IGNORE, 0));
        uc->cancel_submitted = true;
    } else {
        uc->sqe_owed = true;
    }
}

static int uring_park(piocp_worker *w, piocp_conn *c)
{
    uring_conn *uc = piocp_conn_backend(c);
    if (uc->sqe_owed) {
        /* a cancel is still to submit: nothing else would bring the
         * connection back, so its turn comes again after the next poll
         * (which gives the kernel the queued SQEs) */
        uc->sqe_owed = false;
        return 1;
    }
    if (c->lingering && !uc->poll_submitted && !submit_poll(w->backend, c, uc, OP_POLLIN))
        return -EBUSY;
    /* an outbound connect ends with the socket turning writable (or failing) */
    if (c->connecting && !uc->send_submitted && !submit_poll(w->backend, c, uc, OP_POLLOUT))
        return -EBUSY;
    return 0;
}

static void on_send_cqe(piocp_conn *c, int res, bool retry, piocp_done_list *done)
{
    piocp_request *r = c->send_head;
    if (res == -ECANCELED && r && r->cancelling)
        return; /* given back to piocp_cancel: the turn ends it, the stream is whole */
    if (res < 0 && !retry) {
        if (!c->abort_error)
            c->abort_error = res;
    } else if (r && res > 0) {
        piocp_sent_locked(c, r, (size_t)res);
        if (r->op == PIOCP_OP_SEND && r->done == r->u.send.len) {
            c->send_head = r->next;
            if (!c->send_head)
                c->send_tail = NULL;
            piocp_done_push(done, r, (ssize_t)r->done);
        }
    }
}

static void on_conn_cqe(piocp_engine *e, uint64_t data, int res)
{
    uint32_t generation = (uint32_t)(data >> 32) & GEN_MASK;
    unsigned op = (unsigned)(data >> OP_SHIFT) & 7;
    /* never stale: a socket closes only once all its CQEs are in */
    piocp_conn *c = piocp_conn_lock_tagged(e, (uint32_t)data, generation, GEN_MASK);
    if (!c)
        return;
    uring_conn *uc = piocp_conn_backend(c);
    piocp_done_list done = {0};
    c->in_kernel--;
    if (c->in_kernel == 0)
        uc->cancel_submitted = false; /* what is submitted later needs a cancel of its own */
    bool retry = res == -EAGAIN || res == -EINTR; /* rare: punted to io-wq on O_NONBLOCK */
    if (op == OP_RECV) {
        uc->recv_submitted = false;
        uc->recv_cancel_submitted = false;
        piocp_request *r = c->recv_req;
        if (r && !retry) {
            c->recv_req = NULL;
            if (res < 0 && res != -ECANCELED && !c->abort_error)
                c->abort_error = res;
            if (res > 0)
                piocp_touch(c);
            piocp_done_push(&done, r, res);
        }
    } else if (op == OP_SEND) {
        uc->send_submitted = false;
        uc->send_cancel_submitted = false;
        on_send_cqe(c, res, retry, &done);
    } else if (op == OP_POLLOUT) { /* writable again, failed, or cancelled */
        uc->send_submitted = false;
        uc->send_cancel_submitted = false;
        if (res < 0 && res != -ECANCELED && !c->abort_error)
            c->abort_error = res;
    } else { /* OP_POLLIN (lingering close): the turn drains and decides */
        uc->poll_submitted = false;
    }
    piocp_schedule_locked(c); /* resubmit, carry on, or finish closing */
    piocp_mutex_unlock(&c->lock);
    piocp_complete_list(c->engine, done.head);
}

/* ------------------------------------------------------------ worker -- */

/* Accepts what a shared listener has queued, as epoll does: checking
 * before each accept that this engine still accepts. */
static void accept_shared(piocp_listener *l)
{
    /* bounded, like epoll's ACCEPTS_PER_EVENT: the re-armed poll fires at
     * once if more are queued, and this worker's connections get a turn */
    for (int i = 0; i < 64 && piocp_listener_accepting(l) && piocp_accept_enter(l); i++) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        int fd = FAULT_CALL("accept", accept4(l->fd, (struct sockaddr *)&peer, &peer_len,
                                              SOCK_NONBLOCK | SOCK_CLOEXEC));
        if (fd >= 0) {
            piocp_accepted(l, fd, (struct sockaddr *)&peer, peer_len);
            continue;
        }
        int error = -errno;
        piocp_accept_leave(l);
        if (error == -EAGAIN || error == -EWOULDBLOCK || !piocp_listener_accept_failed(l, error))
            return; /* the queue is empty (another process may have taken it), or paused */
    }
}

static void on_accept_cqe(piocp_engine *e, uring_worker *uw, uint64_t data, int res, bool more)
{
    uint32_t index = (uint32_t)data;
    piocp_listener *l = piocp_listener_at(e, index);
    if (index < PIOCP_MAX_LISTENERS && !more)
        uw->armed[index] = false;
    if (!l)
        return;
    if (is_shared_accept_data(data)) {
        if (res >= 0)
            accept_shared(l);
        else if (res != -ECANCELED)
            piocp_listener_accept_failed(l, res);
    } else if (res >= 0) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        if (getpeername(res, (struct sockaddr *)&peer, &peer_len) < 0)
            peer_len = 0;
        piocp_accept_completed(l, res, (struct sockaddr *)&peer, peer_len);
    } else if (!piocp_listener_accept_failed(l, res)) {
        return; /* paused (out of descriptors) or closed: no re-arm until resumed */
    }
    if (!uw->armed[index])
        arm_listeners(e, uw);
}

static int on_wake_cqe(piocp_engine *e, uring_worker *uw, bool more)
{
    uint64_t value;
    (void)!read(uw->wake_fd, &value, sizeof value);
    if (!more)
        arm_wake(uw); /* ended (cancelled, or an error): armed again */
    arm_listeners(e, uw);
    return PIOCP_POLL_WOKEN;
}

#ifdef PIOCP_FAULT_INJECTION
/* Fault builds: a CQE's result replaced by an armed error, one point per
 * kind of operation (cqe_recv, cqe_send, cqe_pollout, cqe_pollin,
 * cqe_accept), as if the kernel had failed the operation:
 *  - a recv or send that moved bytes reports the error instead: the
 *    connection then ends, so no byte is read or sent twice;
 *  - an accept that brought a socket closes it (the peer sees what
 *    ECONNABORTED would leave it with), and, as any failed multishot
 *    accept does, ends the multishot: it is cancelled on the ring, and
 *    that cancellation's own CQE is dropped (the kernel would send none).
 * Short counts are made at submission (sqe_len). */
static int fault_cqe(uring_worker *uw, uint64_t data, int res, bool *more)
{
    unsigned kind = (unsigned)(data >> KIND_SHIFT);
    unsigned op = (unsigned)(data >> OP_SHIFT) & 7u;
    if (kind == KIND_ACCEPT) {
        uint32_t index = (uint32_t)data;
        if (is_shared_accept_data(data) || index >= PIOCP_MAX_LISTENERS)
            return res;
        if (uw->accept_fault_cancel[index] && res == -ECANCELED && !*more) {
            uw->accept_fault_cancel[index] = false;
            return INT_MIN; /* not the kernel's: drop it */
        }
        int rc = PIOCP_FAULT("cqe_accept");
        if (rc == 0)
            return res;
        if (res >= 0)
            close(res);
        if (*more) {
            struct io_uring_sqe *sqe = piocp_uring_get_sqe(&uw->ring);
            if (!sqe)
                return res >= 0 ? -ECONNABORTED : res; /* cannot end it: a transient error */
            piocp_uring_prep_cancel(sqe, data, 0, kind_data(KIND_IGNORE, 0));
            uw->accept_fault_cancel[index] = true;
            *more = false;
        }
        return rc;
    }
    if (kind != KIND_CONN)
        return res;
    static const char *const points[] = {"cqe_recv", "cqe_send", "cqe_pollout", "cqe_pollin"};
    int rc = op < 4 ? PIOCP_FAULT(points[op]) : 0;
    return rc ? rc : res;
}
#else
static int fault_cqe(uring_worker *uw, uint64_t data, int res, bool *more)
{
    (void)uw, (void)data, (void)more;
    return res;
}
#endif

static int uring_poll(piocp_worker *w, int timeout_ms)
{
    piocp_engine *e = w->engine;
    uring_worker *uw = w->backend;
    int rc;
    timeout_ms = arm_missing(e, uw, timeout_ms);
    if (timeout_ms > 0 && (uw->ring.features & IORING_FEAT_EXT_ARG)) {
        /* The wait's own timeout (5.11+): a shorter one can be asked on
         * every call, when a user timer comes before the next sweep. */
        rc = piocp_uring_submit_and_wait_timeout(&uw->ring, 1, timeout_ms);
    } else {
        if (timeout_ms > 0)
            arm_timer(uw, timeout_ms); /* timers may then fire as late as the next sweep */
        rc = piocp_uring_submit_and_wait(&uw->ring, timeout_ms == 0 ? 0 : 1);
    }
    if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
        return rc;
    struct io_uring_cqe *cqes[MAX_CQES];
    int n = piocp_uring_peek_batch(&uw->ring, cqes, MAX_CQES);
    int result = 0;
    for (int i = 0; i < n; i++) {
        uint64_t data = cqes[i]->user_data;
        bool more = piocp_uring_cqe_more(cqes[i]);
        int res = fault_cqe(uw, data, cqes[i]->res, &more);
        if (res == INT_MIN)
            continue;
        unsigned kind = (unsigned)(data >> KIND_SHIFT);
        if (kind == KIND_CONN)
            on_conn_cqe(e, data, res);
        else if (kind == KIND_ACCEPT)
            on_accept_cqe(e, uw, data, res, more);
        else if (kind == KIND_WAKE)
            result |= on_wake_cqe(e, uw, more);
        else if (kind == KIND_TIMER)
            uw->timer_armed = false;
    }
    piocp_uring_cq_advance(&uw->ring, (unsigned)n);
    return result;
}

const piocp_backend_ops piocp_backend_io_uring = {
    .name = "io_uring",
    .conn_size = sizeof(uring_conn),
    .probe = uring_probe,
    .describe = uring_describe,
    .init = uring_init,
    .destroy = uring_destroy,
    .worker_init = uring_worker_init,
    .worker_exit = uring_worker_exit,
    .poll = uring_poll,
    .wake = uring_wake,
    .wake_worker = uring_wake_worker,
    .post_quit = uring_wake_all,
    .add_listener = uring_add_listener,
    .resume_listener = uring_resume_listener,
    .add_conn = uring_add_conn,
    .run = uring_run,
    .cancel_recv = uring_cancel_recv,
    .cancel_send = uring_cancel_send,
    .cancel = uring_cancel,
    .park = uring_park,
};

#else /* no <linux/io_uring.h>: the backend exists and always declines */

static int uring_unavailable(void) { return -ENOSYS; }

static const char *uring_describe(char *buf, size_t len)
{
    snprintf(buf, len, "io_uring: not built (no <linux/io_uring.h>)");
    return buf;
}

const piocp_backend_ops piocp_backend_io_uring = {
    .name = "io_uring",
    .probe = uring_unavailable,
    .describe = uring_describe,
};

#endif
