/*
 * backend_io_uring.c - Linux io_uring: true completions.
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
 * POLLOUT when the socket is full.  Closing cancels what is on the ring (ASYNC_CANCEL
 * by descriptor) and closes the socket only after every CQE came back.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/internal.h"
#include "backends/uring.h"

#if PIOCP_URING_SUPPORTED
#include <linux/io_uring.h>
#endif

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#if PIOCP_URING_SUPPORTED

#define RING_ENTRIES 256
#define MAX_CQES 128
#define MAX_LISTENERS 64
#define TURN_BUDGET (4u << 20)

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
    bool wake_armed;
    bool armed[MAX_LISTENERS]; /* multishot accept armed per listener */
    struct __kernel_timespec sweep;
} uring_worker;

typedef struct uring_backend {
    uring_worker *workers;
    int count;
    pthread_mutex_t listeners_lock;
    piocp_listener *listeners[MAX_LISTENERS];
} uring_backend;

static uint64_t conn_data(const piocp_conn *c, unsigned op)
{
    return ((uint64_t)KIND_CONN << KIND_SHIFT) | ((uint64_t)op << OP_SHIFT) |
           ((uint64_t)(c->generation & GEN_MASK) << 32) | c->slot;
}

static uint64_t kind_data(unsigned kind, uint64_t value) { return ((uint64_t)kind << KIND_SHIFT) | value; }

/* ------------------------------------------------------------ probe -- */

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
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
    pthread_t thread;
    if (pthread_create(&thread, NULL, probe_thread, &rc) == 0)
        pthread_join(thread, NULL);
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
    pthread_once(&probe_once, run_probe);
    return probe_result;
}

const char *piocp_io_uring_describe(char *buf, size_t len)
{
    pthread_once(&probe_once, run_probe);
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
        piocp_uring_exit(&b->workers[i].ring);
        if (b->workers[i].wake_fd >= 0)
            close(b->workers[i].wake_fd);
    }
    pthread_mutex_destroy(&b->listeners_lock);
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
    pthread_mutex_init(&b->listeners_lock, NULL);
    b->count = e->threads;
    b->workers = calloc((size_t)b->count, sizeof *b->workers);
    if (!b->workers) {
        uring_destroy(e);
        return -ENOMEM;
    }
    for (int i = 0; i < b->count; i++) {
        b->workers[i].ring.fd = -1;
        b->workers[i].wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (b->workers[i].wake_fd < 0) {
            int rc = -errno;
            uring_destroy(e);
            return rc;
        }
        e->workers[i].backend_data = &b->workers[i];
    }
    return 0;
}

static void wake_fd(int fd)
{
    uint64_t one = 1;
    (void)!write(fd, &one, sizeof one);
}

static void uring_wake_worker(piocp_worker *w) { wake_fd(((uring_worker *)w->backend_data)->wake_fd); }

/* user completions and the like: any worker will do, the first one runs them */
static void uring_wake(piocp_engine *e) { uring_wake_worker(&e->workers[0]); }

static void uring_post_quit(piocp_engine *e)
{
    for (int i = 0; i < e->threads; i++)
        uring_wake_worker(&e->workers[i]);
}

static int uring_add_listener(piocp_engine *e, piocp_listener *l)
{
    uring_backend *b = e->backend_data;
    if (l->index >= MAX_LISTENERS)
        return -EMFILE;
    pthread_mutex_lock(&b->listeners_lock);
    b->listeners[l->index] = l;
    pthread_mutex_unlock(&b->listeners_lock);
    /* each worker arms its own accept when it wakes (rings are single-issuer) */
    for (int i = 0; i < e->threads; i++)
        uring_wake_worker(&e->workers[i]);
    return 0;
}

static int uring_add_conn(piocp_engine *e, piocp_conn *c)
{
    (void)e;
    piocp_worker *w = piocp_current_worker();
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->owner = w ? w->index : 0; /* accepted on this worker's ring */
    return 0;
}

/* An SQE, submitting what is queued first if the ring is full. */
static struct io_uring_sqe *get_sqe(uring_worker *uw)
{
    struct io_uring_sqe *sqe = piocp_uring_get_sqe(&uw->ring);
    if (!sqe) {
        piocp_uring_submit(&uw->ring);
        sqe = piocp_uring_get_sqe(&uw->ring);
    }
    return sqe;
}

static void arm_listeners(piocp_engine *e, uring_worker *uw)
{
    uring_backend *b = e->backend_data;
    pthread_mutex_lock(&b->listeners_lock);
    for (uint32_t i = 0; i < MAX_LISTENERS; i++) {
        piocp_listener *l = b->listeners[i];
        if (!l || uw->armed[i] || atomic_load(&l->closed))
            continue;
        struct io_uring_sqe *sqe = get_sqe(uw);
        if (!sqe)
            break;
        piocp_uring_prep_accept_multishot(sqe, l->fd, SOCK_NONBLOCK | SOCK_CLOEXEC,
                                          kind_data(KIND_ACCEPT, i));
        uw->armed[i] = true;
    }
    pthread_mutex_unlock(&b->listeners_lock);
}

static void arm_wake(uring_worker *uw)
{
    struct io_uring_sqe *sqe = get_sqe(uw);
    if (sqe) {
        piocp_uring_prep_poll_multishot(sqe, uw->wake_fd, POLLIN, kind_data(KIND_WAKE, 0));
        uw->wake_armed = true;
    }
}

static void arm_sweep(piocp_engine *e, uring_worker *uw)
{
    long long period = piocp_sweep_period_ms(e);
    uw->sweep.tv_sec = period / 1000;
    uw->sweep.tv_nsec = (period % 1000) * 1000000;
    struct io_uring_sqe *sqe = get_sqe(uw);
    if (sqe)
        piocp_uring_prep_timeout(sqe, &uw->sweep, 0, 0, kind_data(KIND_TIMER, 0));
}

/* ------------------------------------------------------- connections -- */

static bool submit_recv(uring_worker *uw, piocp_conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(uw);
    if (!sqe)
        return false;
    piocp_request *r = c->recv_req;
    piocp_uring_prep_recv(sqe, c->fd, r->u.recv.buf, r->u.recv.len, 0, conn_data(c, OP_RECV));
    c->recv_submitted = true;
    c->inflight++;
    return true;
}

static bool submit_send(uring_worker *uw, piocp_conn *c, const void *buf, size_t len, int flags)
{
    struct io_uring_sqe *sqe = get_sqe(uw);
    if (!sqe)
        return false;
    piocp_uring_prep_send(sqe, c->fd, buf, len, MSG_NOSIGNAL | flags, conn_data(c, OP_SEND));
    c->send_submitted = true;
    c->inflight++;
    return true;
}

static bool submit_pollout(uring_worker *uw, piocp_conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(uw);
    if (!sqe)
        return false;
    piocp_uring_prep_poll_add(sqe, c->fd, POLLOUT, conn_data(c, OP_POLLOUT));
    c->send_submitted = true;
    c->inflight++;
    return true;
}

/* Lingering close: wake us when the peer sends more or closes. */
static bool submit_poll(uring_worker *uw, piocp_conn *c, unsigned events)
{
    struct io_uring_sqe *sqe = get_sqe(uw);
    if (!sqe)
        return false;
    piocp_uring_prep_poll_add(sqe, c->fd, events, conn_data(c, OP_POLLIN));
    c->inflight++;
    return true;
}

/* Puts the head of the send queue on its way: a ring send for sends and
 * transmit heads; direct sendfile for a transmit's file (POLLOUT when full).
 * Completes what finishes here.  Returns false when the budget ran out. */
static bool run_sends_locked(uring_worker *uw, piocp_conn *c, piocp_done_list *done, size_t *budget)
{
    while (c->send_head && !c->send_submitted && !c->abort_error) {
        piocp_request *r = c->send_head;
        if (r->op == PIOCP_OP_SEND) {
            if (r->done < r->u.send.len) {
                if (!submit_send(uw, c, (const char *)r->u.send.buf + r->done,
                                 r->u.send.len - r->done, 0))
                    c->abort_error = -EBUSY;
                return true;
            }
        } else {
            /* A transmit runs by direct send(head, MSG_MORE) + sendfile on
             * this (owner) thread.  Its head used to be a ring send: the
             * ring round trip between head and file cost 9% of CPU per
             * 64 KiB answer against epoll (BENCHMARKS.md). */
            if (*budget == 0)
                return false;
            ssize_t n = piocp_send_step(c, r);
            if (n == -EINTR)
                continue;
            if (n == -EAGAIN || n == -EWOULDBLOCK) {
                if (!submit_pollout(uw, c))
                    c->abort_error = -EBUSY;
                return true;
            }
            if (n < 0) {
                c->abort_error = (int)n;
                return true;
            }
            if (n > 0) {
                r->done += (size_t)n;
                *budget = (size_t)n >= *budget ? 0 : *budget - (size_t)n;
                piocp_touch(c);
                continue;
            }
        }
        c->send_head = r->next;
        if (!c->send_head)
            c->send_tail = NULL;
        piocp_done_push(done, r, (ssize_t)r->done);
    }
    return true;
}

static void uring_process(piocp_worker *w, piocp_conn *c)
{
    uring_worker *uw = w->backend_data;
    size_t budget = TURN_BUDGET;
    bool closed = false, more = true;
    pthread_mutex_lock(&c->lock);
    if (c->busy || c->state != CONN_OPEN) {
        if (c->busy)
            c->again = true;
        pthread_mutex_unlock(&c->lock);
        return;
    }
    c->busy = true;
    do {
        c->again = false;
        piocp_done_list done = {0};
        if (atomic_load_explicit(&c->engine->draining, memory_order_relaxed)) {
            /* stopping: no new request is read; idle connections close */
            if (c->recv_req && !c->recv_submitted) {
                piocp_done_push(&done, c->recv_req, -ECANCELED);
                c->recv_req = NULL;
            } else if (c->recv_req && !c->recv_cancel_submitted) {
                struct io_uring_sqe *sqe = get_sqe(uw);
                if (sqe) {
                    piocp_uring_prep_cancel(sqe, conn_data(c, OP_RECV), 0, kind_data(KIND_IGNORE, 0));
                    c->recv_cancel_submitted = true;
                }
            }
            if (!c->send_head)
                c->close_requested = true;
        }
        if (c->abort_error || (c->close_requested && !c->send_head)) {
            if (c->inflight > 0) {
                /* the kernel still holds requests (and their buffers) on
                 * this socket: cancel them, close once their CQEs are in */
                if (!c->cancel_submitted) {
                    struct io_uring_sqe *sqe = get_sqe(uw);
                    if (sqe) {
                        piocp_uring_prep_cancel_fd(sqe, c->fd, kind_data(KIND_IGNORE, 0));
                        c->cancel_submitted = true;
                    }
                }
            } else {
                int error = c->abort_error ? c->abort_error : -ECANCELED;
                piocp_fail_all_locked(c, error, &done);
                if (c->abort_error || piocp_linger_locked(c)) {
                    piocp_close_socket_locked(c, c->abort_error);
                    closed = true;
                } else if (!submit_poll(uw, c, POLLIN)) {
                    c->abort_error = -EBUSY; /* cannot wait: reset it */
                    c->again = true;
                }
            }
        } else {
            if (c->recv_req && !c->recv_submitted && !submit_recv(uw, c))
                c->abort_error = -EBUSY;
            more = run_sends_locked(uw, c, &done, &budget);
            /* broken, or the last send before a requested close is done: go
             * round once more to start closing */
            if (c->abort_error || (c->close_requested && !c->send_head))
                c->again = true;
        }
        pthread_mutex_unlock(&c->lock);
        piocp_complete_list(done.head);
        pthread_mutex_lock(&c->lock);
    } while (!closed && more && c->again);
    c->busy = false;
    if (!closed && (!more || c->again))
        piocp_schedule_locked(c);
    pthread_mutex_unlock(&c->lock);
    if (closed)
        piocp_finish_closed(c);
}

static void on_conn_cqe(piocp_worker *w, uint64_t data, int res)
{
    uint32_t slot = (uint32_t)data;
    uint32_t generation = (uint32_t)(data >> 32) & GEN_MASK;
    unsigned op = (unsigned)(data >> OP_SHIFT) & 7;
    piocp_conn *c = piocp_conn_from_slot(w->engine, slot);
    if (!c)
        return;
    piocp_done_list done = {0};
    pthread_mutex_lock(&c->lock);
    if ((c->generation & GEN_MASK) != generation || c->state != CONN_OPEN) {
        pthread_mutex_unlock(&c->lock); /* cannot happen: a socket closes after its CQEs */
        return;
    }
    c->inflight--;
    bool retry = res == -EAGAIN || res == -EINTR; /* rare: punted to io-wq on O_NONBLOCK */
    if (op == OP_RECV) {
        c->recv_submitted = false;
        c->recv_cancel_submitted = false;
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
        c->send_submitted = false;
        piocp_request *r = c->send_head;
        if (res < 0 && !retry) {
            if (!c->abort_error)
                c->abort_error = res == -ECANCELED ? -ECANCELED : res;
        } else if (r && res > 0) {
            r->done += (size_t)res;
            piocp_touch(c);
            if (r->op == PIOCP_OP_SEND && r->done == r->u.send.len) {
                c->send_head = r->next;
                if (!c->send_head)
                    c->send_tail = NULL;
                piocp_done_push(&done, r, (ssize_t)r->done);
            }
        }
    } else if (op == OP_POLLOUT) { /* writable again, or failed */
        c->send_submitted = false;
        if (res < 0 && res != -ECANCELED && !c->abort_error)
            c->abort_error = res;
    }
    /* OP_POLLIN (lingering close): process drains and decides */
    piocp_schedule_locked(c); /* resubmit, carry on, or finish closing */
    pthread_mutex_unlock(&c->lock);
    piocp_complete_list(done.head);
}

/* ----------------------------------------------------------- worker -- */

static void on_accept_cqe(piocp_engine *e, uring_worker *uw, uint32_t index, int res, bool more)
{
    uring_backend *b = e->backend_data;
    if (index >= MAX_LISTENERS)
        return;
    piocp_listener *l = b->listeners[index];
    if (!more)
        uw->armed[index] = false; /* re-armed below unless the listener closed */
    if (!l)
        return;
    if (res >= 0) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        if (getpeername(res, (struct sockaddr *)&peer, &peer_len) < 0)
            peer_len = 0;
        if (atomic_load(&l->closed))
            close(res);
        else
            piocp_accepted(l, res, (struct sockaddr *)&peer, peer_len);
    }
    if (!uw->armed[index] && !atomic_load(&l->closed))
        arm_listeners(e, uw);
}

static bool on_wake_cqe(piocp_worker *w, uring_worker *uw, bool more)
{
    piocp_engine *e = w->engine;
    uint64_t value;
    (void)!read(uw->wake_fd, &value, sizeof value);
    if (!more)
        arm_wake(uw);
    if (atomic_load(&e->quit))
        return true;
    piocp_take_remote(w);
    if (w->index == 0) {
        piocp_take_global(w);
        piocp_run_user_completions(e);
    }
    arm_listeners(e, uw);
    return false;
}

static void uring_run_worker(piocp_worker *w)
{
    piocp_engine *e = w->engine;
    uring_worker *uw = w->backend_data;
    /* created here, in the thread that will submit to it: SINGLE_ISSUER */
    if (piocp_uring_init(&uw->ring, RING_ENTRIES, 0) < 0) {
        fprintf(stderr, "pyiocp: worker %d could not create its io_uring ring\n", w->index);
        return;
    }
    uw->ready = true;
    arm_wake(uw);
    arm_listeners(e, uw);
    if (w->index == 0)
        arm_sweep(e, uw);
    struct io_uring_cqe *cqes[MAX_CQES];
    bool leave = atomic_load(&e->quit);
    while (!leave) {
        int rc = piocp_uring_submit_and_wait(&uw->ring, w->local.head ? 0 : 1);
        if (rc < 0 && rc != -EINTR && rc != -EBUSY && rc != -EAGAIN)
            break;
        int n = piocp_uring_peek_batch(&uw->ring, cqes, MAX_CQES);
        for (int i = 0; i < n; i++) {
            uint64_t data = cqes[i]->user_data;
            int res = cqes[i]->res;
            bool more = piocp_uring_cqe_more(cqes[i]);
            unsigned kind = (unsigned)(data >> KIND_SHIFT);
            if (kind == KIND_CONN)
                on_conn_cqe(w, data, res);
            else if (kind == KIND_ACCEPT)
                on_accept_cqe(e, uw, (uint32_t)data, res, more);
            else if (kind == KIND_WAKE)
                leave |= on_wake_cqe(w, uw, more);
            else if (kind == KIND_TIMER) {
                piocp_scan_idle(e);
                arm_sweep(e, uw);
            }
        }
        piocp_uring_cq_advance(&uw->ring, (unsigned)n);
        piocp_take_remote(w);
        piocp_run_local(w);
        piocp_batch_end(e);
        leave |= atomic_load(&e->quit);
    }
}

const piocp_backend_ops piocp_backend_io_uring = {
    .name = "io_uring",
    .probe = uring_probe,
    .init = uring_init,
    .destroy = uring_destroy,
    .add_listener = uring_add_listener,
    .add_conn = uring_add_conn,
    .run_worker = uring_run_worker,
    .wake = uring_wake,
    .wake_worker = uring_wake_worker,
    .post_quit = uring_post_quit,
    .process = uring_process,
};

#else /* no <linux/io_uring.h>: the backend exists and always declines */

static int uring_unavailable(void) { return -ENOSYS; }

const char *piocp_io_uring_describe(char *buf, size_t len)
{
    snprintf(buf, len, "io_uring: not built (no <linux/io_uring.h>)");
    return buf;
}

const piocp_backend_ops piocp_backend_io_uring = {
    .name = "io_uring",
    .probe = uring_unavailable,
};

#endif
