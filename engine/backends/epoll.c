/*
 * epoll.c - Linux epoll, with readiness turned into completions.
 *
 * One epoll instance is shared by all workers, like the one completion port
 * of the classic IOCP server.  Connections are registered once, edge-
 * triggered: an event only records that the socket became readable or
 * writable and schedules the connection; its turn (core/loop.c) then calls
 * `run`, which performs the pending recv/send/sendfile calls itself (partial
 * sends and EAGAIN stay in here).  Edge-triggered, because EPOLLONESHOT
 * would cost an epoll_ctl to re-arm after every single event: with it an
 * echo took four system calls per message, now it takes three (epoll_wait,
 * recv, send), as libuv does.  The descriptors that several workers must
 * take turns on (listeners, the wake-up eventfd) stay ONESHOT.
 *
 * Event data carries a pool slot and its generation instead of a pointer:
 * an event harvested just before its connection closed finds a different
 * generation (or a closed state) and is dropped, the stale-event problem
 * nginx solves with its "instance" bit.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/backend.h"
#include "platform/platform.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS 64
#define ACCEPTS_PER_EVENT 64

enum { KIND_CONN = 0, KIND_LISTENER = 1, KIND_WAKE = 2 };
#define KIND_SHIFT 62
#define GENERATION_MASK 0x3fffffffu

typedef struct epoll_backend {
    int epfd;
    int wake_fd;   /* eventfd: global ready list, user completions, quit */
} epoll_backend;

/* What a connection's socket is known to allow; kept per connection. */
typedef struct epoll_conn {
    bool readable, writable;
    bool peer_closed;          /* FIN or error seen: reads must go on to see it */
    uint32_t watched_events;
} epoll_conn;

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

/* ------------------------------------------------------------ engine -- */

static void epoll_destroy(piocp_engine *e)
{
    epoll_backend *b = e->backend_data;
    if (b->epfd >= 0)
        close(b->epfd);
    if (b->wake_fd >= 0)
        close(b->wake_fd);
    free(b);
    e->backend_data = NULL;
}

static int epoll_init(piocp_engine *e)
{
    epoll_backend *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    e->backend_data = b;
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    b->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int rc = b->epfd < 0 || b->wake_fd < 0 ? -errno : 0;
    if (rc == 0)
        rc = rearm(b, b->wake_fd, tag(KIND_WAKE, 0), EPOLLIN, EPOLL_CTL_ADD);
    if (rc < 0)
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

static void epoll_wake_worker(piocp_worker *w) { epoll_wake(w->engine); }

/* The quit completion: the counter stays set and each worker that sees it
 * re-arms it for the next, until every worker has left. */
static void epoll_post_quit(piocp_engine *e) { epoll_wake(e); }

/* -------------------------------------------------------- listeners -- */

static int epoll_add_listener(piocp_engine *e, piocp_listener *l)
{
    return rearm(e->backend_data, l->fd, tag(KIND_LISTENER, l->index), EPOLLIN, EPOLL_CTL_ADD);
}

static void epoll_resume_listener(piocp_engine *e, piocp_listener *l)
{
    rearm(e->backend_data, l->fd, tag(KIND_LISTENER, l->index), EPOLLIN, EPOLL_CTL_MOD);
}

static void on_listener_event(piocp_engine *e, epoll_backend *b, uint32_t index)
{
    piocp_listener *l = piocp_listener_at(e, index);
    if (!l || !piocp_listener_accepting(l))
        return;
    for (int i = 0; i < ACCEPTS_PER_EVENT; i++) {
        struct sockaddr_storage peer;
        socklen_t peer_len = sizeof peer;
        int fd = accept4(l->fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            piocp_accepted(l, fd, (struct sockaddr *)&peer, peer_len);
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break; /* the backlog is empty: wait for the next event */
        if (!piocp_listener_accept_failed(l, -errno))
            return; /* paused or closed: resume_listener re-arms it */
    }
    rearm(b, l->fd, tag(KIND_LISTENER, index), EPOLLIN, EPOLL_CTL_MOD);
}

/* ------------------------------------------------------ connections -- */

static int epoll_add_conn(piocp_worker *w, piocp_conn *c)
{
    (void)w;
    epoll_conn *ec = piocp_conn_backend(c);
    /* optimistic: a client usually sends its request right after connecting */
    ec->readable = true;
    ec->writable = true;
    ec->watched_events = CONN_EVENTS;
    return watch_conn(c->engine->backend_data, c, CONN_EVENTS, EPOLL_CTL_ADD);
}

static ssize_t send_step(piocp_conn *c, piocp_request *r) { return piocp_socket_send_step(c->fd, r); }

static void read_ready_locked(piocp_conn *c, epoll_conn *ec, piocp_done_list *done)
{
    while (c->recv_req && ec->readable && !c->abort_error) {
        piocp_request *r = c->recv_req;
        ssize_t n = recv(c->fd, r->u.recv.buf, r->u.recv.len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            ec->readable = false;
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
        if ((size_t)n < r->u.recv.len && !ec->peer_closed)
            ec->readable = false;
        c->recv_req = NULL;
        piocp_touch(c);
        piocp_done_push(done, r, n);
    }
}

static bool epoll_run(piocp_worker *w, piocp_conn *c, piocp_done_list *done, size_t *budget)
{
    (void)w;
    epoll_conn *ec = piocp_conn_backend(c);
    read_ready_locked(c, ec, done);
    if (!ec->writable)
        return true;
    piocp_sends sends = piocp_run_sends_locked(c, done, budget, send_step, false);
    if (sends == PIOCP_SENDS_BLOCKED)
        ec->writable = false;
    return sends != PIOCP_SENDS_BUDGET;
}

/* A send met a full buffer: from now on the edge that says it drained must
 * reach us.  Once per connection at most. */
static int epoll_park(piocp_worker *w, piocp_conn *c)
{
    epoll_conn *ec = piocp_conn_backend(c);
    if (!c->send_head || ec->writable || (ec->watched_events & EPOLLOUT))
        return 0;
    int rc = watch_conn(w->engine->backend_data, c, CONN_EVENTS | EPOLLOUT, EPOLL_CTL_MOD);
    if (rc == 0)
        ec->watched_events |= EPOLLOUT;
    return rc;
}

static void on_conn_event(piocp_engine *e, uint64_t data, uint32_t events)
{
    uint32_t generation = (uint32_t)(data >> 32) & GENERATION_MASK;
    piocp_conn *c = piocp_conn_lock_tagged(e, (uint32_t)data, generation, GENERATION_MASK);
    if (!c)
        return;
    epoll_conn *ec = piocp_conn_backend(c);
    if (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        ec->readable = true;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        ec->peer_closed = true;
    if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR))
        ec->writable = true;
    piocp_schedule_locked(c);
    pthread_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------ worker -- */

static int on_wake_event(piocp_engine *e, epoll_backend *b)
{
    if (!atomic_load(&e->quit)) {
        uint64_t value;
        (void)!read(b->wake_fd, &value, sizeof value);
    }
    /* at quit the counter stays set: re-armed, it wakes the next worker */
    rearm(b, b->wake_fd, tag(KIND_WAKE, 0), EPOLLIN, EPOLL_CTL_MOD);
    return PIOCP_POLL_WOKEN;
}

static int epoll_poll(piocp_worker *w, int timeout_ms)
{
    piocp_engine *e = w->engine;
    epoll_backend *b = e->backend_data;
    struct epoll_event events[MAX_EVENTS];
    int n = epoll_wait(b->epfd, events, MAX_EVENTS, timeout_ms);
    if (n < 0)
        return errno == EINTR ? 0 : -errno;
    int result = 0;
    for (int i = 0; i < n; i++) {
        uint64_t data = events[i].data.u64;
        unsigned kind = (unsigned)(data >> KIND_SHIFT);
        uint64_t value = data & ~((uint64_t)3 << KIND_SHIFT);
        if (kind == KIND_CONN)
            on_conn_event(e, value, events[i].events);
        else if (kind == KIND_LISTENER)
            on_listener_event(e, b, (uint32_t)value);
        else
            result |= on_wake_event(e, b);
    }
    return result;
}

const piocp_backend_ops piocp_backend_epoll = {
    .name = "epoll",
    .conn_size = sizeof(epoll_conn),
    .probe = epoll_probe,
    .init = epoll_init,
    .destroy = epoll_destroy,
    .poll = epoll_poll,
    .wake = epoll_wake,
    .wake_worker = epoll_wake_worker,
    .post_quit = epoll_post_quit,
    .add_listener = epoll_add_listener,
    .resume_listener = epoll_resume_listener,
    .add_conn = epoll_add_conn,
    .run = epoll_run,
    .park = epoll_park,
};
