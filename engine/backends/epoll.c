/*
 * backend_epoll.c - Linux epoll, with readiness turned into completions.
 *
 * One epoll instance is shared by all workers, like the one completion port
 * of the classic IOCP server.  Connections are registered once, edge-
 * triggered: an event only records that the socket became readable or
 * writable and hands the connection to a worker (the connection's `busy`
 * flag makes sure only one runs it); that worker performs the pending
 * recv/send/sendfile calls itself (partial sends and EAGAIN stay in here)
 * and completes the requests.  Edge-triggered, because EPOLLONESHOT would
 * cost an epoll_ctl to re-arm after every single event: with it an echo
 * took four system calls per message, now it takes three (epoll_wait, recv,
 * send), as libuv does.  The rare descriptors that several workers must
 * take turns on (listeners, the wake-up eventfd, the timer) stay ONESHOT.
 *
 * Event data carries a pool slot and its generation instead of a pointer:
 * an event harvested just before its connection closed finds a different
 * generation (or a closed state) and is dropped, the stale-event problem
 * nginx solves with its "instance" bit.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/internal.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/timerfd.h>
#include <unistd.h>

#define MAX_EVENTS 64
#define MAX_LISTENERS 64
#define ACCEPTS_PER_EVENT 64
/* Bytes one connection may move in one turn before others get theirs: a
 * fast reader of a 100 MiB file must not keep a worker to itself. */
#define TURN_BUDGET (4u << 20)

enum { KIND_CONN = 0, KIND_LISTENER = 1, KIND_WAKE = 2, KIND_TIMER = 3 };
#define KIND_SHIFT 62
#define GENERATION_MASK 0x3fffffffu

typedef struct epoll_backend {
    int epfd;
    int wake_fd;   /* eventfd: global ready list, user completions, quit */
    int timer_fd;  /* idle-timeout sweeps; -1 without an idle timeout */
    int spare_fd;  /* kept open to shed connections on EMFILE (libuv's trick) */
    pthread_mutex_t spare_lock;
    piocp_listener *listeners[MAX_LISTENERS];
} epoll_backend;

static uint64_t tag(unsigned kind, uint64_t value) { return ((uint64_t)kind << KIND_SHIFT) | value; }

static uint64_t conn_tag(const piocp_conn *c)
{
    return tag(KIND_CONN, ((uint64_t)(c->generation & GENERATION_MASK) << 32) | c->slot);
}

static int rearm(epoll_backend *b, int fd, uint64_t data, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events | EPOLLONESHOT, .data.u64 = data};
    return epoll_ctl(b->epfd, op, fd, &ev) < 0 ? -errno : 0;
}

/* EPOLLOUT is left out until a send first meets a full buffer: registering
 * it at once would wake a worker for every new connection for nothing. */
#define CONN_EVENTS (EPOLLIN | EPOLLRDHUP | EPOLLET)

static int watch_conn(epoll_backend *b, piocp_conn *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.u64 = conn_tag(c)};
    return epoll_ctl(b->epfd, op, c->fd, &ev) < 0 ? -errno : 0;
}

static int epoll_probe(void)
{
    int fd = epoll_create1(EPOLL_CLOEXEC);
    if (fd < 0)
        return -errno;
    close(fd);
    return 0;
}

static void epoll_destroy(piocp_engine *e)
{
    epoll_backend *b = e->backend_data;
    if (b->epfd >= 0)
        close(b->epfd);
    if (b->wake_fd >= 0)
        close(b->wake_fd);
    if (b->timer_fd >= 0)
        close(b->timer_fd);
    if (b->spare_fd >= 0)
        close(b->spare_fd);
    pthread_mutex_destroy(&b->spare_lock);
    free(b);
    e->backend_data = NULL;
}

static int epoll_init(piocp_engine *e)
{
    epoll_backend *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->epfd = b->wake_fd = b->timer_fd = b->spare_fd = -1;
    pthread_mutex_init(&b->spare_lock, NULL);
    e->backend_data = b;
    int rc = 0;
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    b->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    b->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (b->epfd < 0 || b->wake_fd < 0) {
        rc = -errno;
        goto fail;
    }
    rc = rearm(b, b->wake_fd, tag(KIND_WAKE, 0), EPOLLIN, EPOLL_CTL_ADD);
    if (rc < 0)
        goto fail;
    /* idle timeouts and per-connection deadlines are swept on a timer */
    b->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    if (b->timer_fd < 0) {
        rc = -errno;
        goto fail;
    }
    long long period = piocp_sweep_period_ms(e);
    struct itimerspec its = {
        .it_interval = {period / 1000, (period % 1000) * 1000000},
        .it_value = {period / 1000, (period % 1000) * 1000000},
    };
    if (timerfd_settime(b->timer_fd, 0, &its, NULL) < 0) {
        rc = -errno;
        goto fail;
    }
    rc = rearm(b, b->timer_fd, tag(KIND_TIMER, 0), EPOLLIN, EPOLL_CTL_ADD);
    if (rc < 0)
        goto fail;
    return 0;
fail:
    epoll_destroy(e);
    return rc;
}

static void epoll_wake(piocp_engine *e)
{
    epoll_backend *b = e->backend_data;
    uint64_t one = 1;
    /* can only fail with EAGAIN when the counter is saturated: awake anyway */
    (void)!write(b->wake_fd, &one, sizeof one);
}

static int epoll_add_listener(piocp_engine *e, piocp_listener *l)
{
    epoll_backend *b = e->backend_data;
    if (l->index >= MAX_LISTENERS)
        return -EMFILE;
    b->listeners[l->index] = l;
    return rearm(b, l->fd, tag(KIND_LISTENER, l->index), EPOLLIN, EPOLL_CTL_ADD);
}

static int epoll_add_conn(piocp_engine *e, piocp_conn *c)
{
    int one = 1;
    /* small replies and echoes must not wait for Nagle + delayed ACK */
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->watched_events = CONN_EVENTS;
    return watch_conn(e->backend_data, c, CONN_EVENTS, EPOLL_CTL_ADD);
}

/* ---------------------------------------------------------- accept -- */

static void shed_one_connection(epoll_backend *b, int listen_fd)
{
    /* Out of descriptors: the pending connection would keep the listener
     * readable forever.  Free the spare, accept and close it, take the spare
     * back, so the client sees a close instead of a hang. */
    pthread_mutex_lock(&b->spare_lock);
    if (b->spare_fd >= 0) {
        close(b->spare_fd);
        int fd = accept4(listen_fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd >= 0)
            close(fd);
        b->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    pthread_mutex_unlock(&b->spare_lock);
}

static void on_listener_event(piocp_engine *e, epoll_backend *b, uint32_t index)
{
    piocp_listener *l = index < MAX_LISTENERS ? b->listeners[index] : NULL;
    if (!l || atomic_load(&l->closed))
        return;
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno == EMFILE || errno == ENFILE)
                shed_one_connection(b, l->fd);
            break; /* EAGAIN or a listener error */
        }
        piocp_accepted(l, fd, (struct sockaddr *)&peer, peer_len);
    }
    pthread_mutex_lock(&e->listeners_lock);
    if (!atomic_load(&l->closed))
        rearm(b, l->fd, tag(KIND_LISTENER, index), EPOLLIN, EPOLL_CTL_MOD);
    pthread_mutex_unlock(&e->listeners_lock);
}

/* --------------------------------------------------- request steps -- */

/* Runs what can run now.  Returns false when the turn budget ran out with
 * work left. */
static bool run_requests_locked(piocp_conn *c, piocp_done_list *done, size_t *budget)
{
    if (atomic_load_explicit(&c->engine->draining, memory_order_relaxed)) {
        /* stopping: read no new request; a connection with nothing left to
         * send is not a running transfer and closes now */
        if (c->recv_req) {
            piocp_done_push(done, c->recv_req, -ECANCELED);
            c->recv_req = NULL;
        }
        if (!c->send_head)
            c->close_requested = true;
    }
    while (c->recv_req && c->readable && !c->abort_error) {
        piocp_request *r = c->recv_req;
        ssize_t n = recv(c->fd, r->u.recv.buf, r->u.recv.len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            c->readable = false;
            break;
        }
        if (n < 0) {
            c->abort_error = -errno;
            break;
        }
        /* a short read emptied the socket's queue, so more data will raise
         * a new edge: wait for it rather than pay for a recv that returns
         * EAGAIN.  Not after the peer's FIN (or an error): its edge may have
         * come with the data just read, and no other will follow, so the
         * next recv must go ahead and see EOF. */
        if ((size_t)n < r->u.recv.len && !c->peer_closed)
            c->readable = false;
        c->recv_req = NULL;
        piocp_touch(c);
        piocp_done_push(done, r, n);
    }
    while (c->send_head && c->writable && !c->abort_error) {
        if (*budget == 0)
            return false;
        piocp_request *r = c->send_head;
        ssize_t n = piocp_send_step(c, r);
        if (n == -EINTR)
            continue;
        if (n == -EAGAIN || n == -EWOULDBLOCK) {
            c->writable = false;
            break;
        }
        if (n < 0) {
            /* the byte stream is broken: later sends cannot keep their order */
            c->abort_error = (int)n;
            break;
        }
        if (n > 0) {
            r->done += (size_t)n;
            *budget = (size_t)n >= *budget ? 0 : *budget - (size_t)n;
            piocp_touch(c);
            continue;
        }
        c->send_head = r->next;
        if (!c->send_head)
            c->send_tail = NULL;
        piocp_done_push(done, r, (ssize_t)r->done);
    }
    return true;
}

/* A send met a full buffer: from now on the edge that says it drained must
 * reach us.  Once per connection at most. */
static void watch_writable_locked(epoll_backend *b, piocp_conn *c)
{
    if (!c->send_head || c->writable || (c->watched_events & EPOLLOUT))
        return;
    int rc = watch_conn(b, c, CONN_EVENTS | EPOLLOUT, EPOLL_CTL_MOD);
    if (rc < 0) {
        c->abort_error = rc; /* cannot wait on it: fail it rather than hang */
        piocp_schedule_locked(c);
        return;
    }
    c->watched_events |= EPOLLOUT;
}

/* Runs a connection: claims it, runs its requests, completes them outside
 * the lock (callbacks may post more), and closes it when asked or broken.
 * What still waits on the kernel resumes on the next edge event. */
static void epoll_process(piocp_worker *w, piocp_conn *c)
{
    epoll_backend *b = w->engine->backend_data;
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
        more = run_requests_locked(c, &done, &budget);
        if (c->abort_error || (c->close_requested && !c->send_head)) {
            int error = c->abort_error ? c->abort_error : -ECANCELED;
            piocp_fail_all_locked(c, error, &done);
            /* graceful: linger until the peer closes (the next readable
             * edge brings us back here) */
            if (c->abort_error || piocp_linger_locked(c)) {
                piocp_close_socket_locked(c, c->abort_error);
                closed = true;
            }
        }
        pthread_mutex_unlock(&c->lock);
        piocp_complete_list(done.head);
        pthread_mutex_lock(&c->lock);
    } while (!closed && more && c->again);
    c->busy = false;
    if (!closed) {
        if (!more || c->again)
            piocp_schedule_locked(c); /* out of budget: back of the line */
        else
            watch_writable_locked(b, c);
    }
    pthread_mutex_unlock(&c->lock);
    if (closed)
        piocp_finish_closed(c);
}

static void on_conn_event(piocp_worker *w, uint64_t data, uint32_t events)
{
    uint32_t slot = (uint32_t)data;
    uint32_t generation = (uint32_t)(data >> 32) & GENERATION_MASK;
    piocp_conn *c = piocp_conn_from_slot(w->engine, slot);
    if (!c)
        return;
    pthread_mutex_lock(&c->lock);
    if ((c->generation & GENERATION_MASK) != generation || c->state != CONN_OPEN) {
        pthread_mutex_unlock(&c->lock); /* stale: the connection it named is gone */
        return;
    }
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->readable = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->peer_closed = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        c->writable = true;
    piocp_schedule_locked(c);
    pthread_mutex_unlock(&c->lock);
}

/* ----------------------------------------------------------- worker -- */

static void epoll_post_quit(piocp_engine *e) { epoll_wake(e); }

/* Returns true when this worker must leave. */
static bool on_wake_event(piocp_worker *w, epoll_backend *b)
{
    piocp_engine *e = w->engine;
    if (atomic_load(&e->quit)) {
        /* leave the counter set and re-arm: the next worker gets the same
         * quit completion, until every worker has seen it */
        rearm(b, b->wake_fd, tag(KIND_WAKE, 0), EPOLLIN, EPOLL_CTL_MOD);
        return true;
    }
    uint64_t value;
    (void)!read(b->wake_fd, &value, sizeof value);
    rearm(b, b->wake_fd, tag(KIND_WAKE, 0), EPOLLIN, EPOLL_CTL_MOD);
    piocp_take_global(w);
    piocp_run_user_completions(e);
    return false;
}

static void on_timer_event(piocp_engine *e, epoll_backend *b)
{
    uint64_t expirations;
    (void)!read(b->timer_fd, &expirations, sizeof expirations);
    rearm(b, b->timer_fd, tag(KIND_TIMER, 0), EPOLLIN, EPOLL_CTL_MOD);
    piocp_scan_idle(e);
}

static void epoll_run_worker(piocp_worker *w)
{
    piocp_engine *e = w->engine;
    epoll_backend *b = e->backend_data;
    struct epoll_event events[MAX_EVENTS];
    bool leave = false;
    while (!leave) {
        /* work of our own pending: only look, do not sleep */
        int n = epoll_wait(b->epfd, events, MAX_EVENTS, w->local.head ? 0 : -1);
        if (n < 0 && errno != EINTR)
            break;
        for (int i = 0; i < n; i++) {
            uint64_t data = events[i].data.u64;
            unsigned kind = (unsigned)(data >> KIND_SHIFT);
            uint64_t value = data & ~((uint64_t)3 << KIND_SHIFT);
            if (kind == KIND_CONN)
                on_conn_event(w, value, events[i].events);
            else if (kind == KIND_LISTENER)
                on_listener_event(e, b, (uint32_t)value);
            else if (kind == KIND_WAKE)
                leave |= on_wake_event(w, b);
            else
                on_timer_event(e, b);
        }
        piocp_run_local(w);
        piocp_batch_end(e);
    }
}

const piocp_backend_ops piocp_backend_epoll = {
    .name = "epoll",
    .probe = epoll_probe,
    .init = epoll_init,
    .destroy = epoll_destroy,
    .add_listener = epoll_add_listener,
    .add_conn = epoll_add_conn,
    .run_worker = epoll_run_worker,
    .wake = epoll_wake,
    .post_quit = epoll_post_quit,
    .process = epoll_process,
};
