/*
 * epoll.c - Linux epoll, with readiness turned into completions.
 *
 * Each worker waits on an epoll set of its own, and a connection is
 * registered in the set of the worker that owns it (the one that accepted
 * it, later the one that posts on it: see `move`), as io_uring gives each
 * worker a ring.  One set shared by every worker, like the classic IOCP
 * server's one port, woke any worker for any connection: with four workers
 * on one CPU a ping-pong paid a context switch per message and p99 reached
 * 8 ms.  Listeners are in every set, level-triggered with EPOLLEXCLUSIVE so
 * that a new connection wakes one worker, not all of them.
 *
 * Connections are registered once, edge-triggered: an event only records
 * that the socket became readable or writable and schedules the
 * connection; its turn (core/loop.c) then calls `run`, which performs the
 * pending recv/send/sendfile calls itself (partial sends and EAGAIN stay in
 * here).  Edge-triggered, because EPOLLONESHOT would cost an epoll_ctl to
 * re-arm after every single event: an echo takes three system calls per
 * message (epoll_wait, recv, send), as libuv's does.
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
#include "platform/posix/fault_calls.h"

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

/* A worker's own set and the eventfd that wakes it. */
typedef struct epoll_worker {
    int epfd;
    int wake_fd;   /* remote posts, the global list, user completions, quit */
} epoll_worker;

typedef struct epoll_backend {
    epoll_worker *workers;
    int count;
    /* Whether each listener is in the sets: pausing (out of descriptors)
     * takes it out, resuming puts it back, and both may race. */
    piocp_mutex listeners_lock;
    bool listening[PIOCP_MAX_LISTENERS];
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

/* EPOLLOUT is left out until a send first meets a full buffer: registering
 * it at once would wake a worker for every new connection for nothing. */
#define CONN_EVENTS (EPOLLIN | EPOLLRDHUP | EPOLLET)

/* A borrowed socket is read by its owner, never by us: its arriving bytes
 * must not wake a worker.  Errors and hang-ups are reported anyway. */
static uint32_t base_events(const piocp_conn *c) { return c->borrowed ? EPOLLET : CONN_EVENTS; }

static epoll_worker *owner_of(piocp_conn *c)
{
    epoll_backend *b = c->engine->backend_data;
    return &b->workers[c->owner];
}

static int watch_conn(epoll_worker *ew, piocp_conn *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.u64 = conn_tag(c)};
    return FAULT_CALL("epoll_ctl", epoll_ctl(ew->epfd, op, c->fd, &ev)) < 0 ? -errno : 0;
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
    for (int i = 0; i < b->count; i++) {
        if (b->workers[i].epfd >= 0)
            close(b->workers[i].epfd);
        if (b->workers[i].wake_fd >= 0)
            close(b->workers[i].wake_fd);
    }
    piocp_mutex_destroy(&b->listeners_lock);
    free(b->workers);
    free(b);
    e->backend_data = NULL;
}

static int epoll_init(piocp_engine *e)
{
    epoll_backend *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    int rc = piocp_mutex_init(&b->listeners_lock);
    if (rc < 0) {
        free(b);
        return rc;
    }
    e->backend_data = b;
    b->workers = calloc((size_t)e->threads, sizeof *b->workers);
    if (!b->workers) {
        epoll_destroy(e);
        return -ENOMEM;
    }
    b->count = e->threads;
    for (int i = 0; i < b->count; i++)
        b->workers[i].epfd = b->workers[i].wake_fd = -1;
    /* Made here, not in worker_init: listeners (listen may come before
     * start) and moving connections reach into every worker's set. */
    for (int i = 0; i < b->count && rc == 0; i++) {
        epoll_worker *ew = &b->workers[i];
        ew->epfd = FAULT_CALL("epoll_create", epoll_create1(EPOLL_CLOEXEC));
        ew->wake_fd = FAULT_CALL("eventfd", eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
        if (ew->epfd < 0 || ew->wake_fd < 0) {
            rc = -errno;
            break;
        }
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag(KIND_WAKE, 0)};
        if (FAULT_CALL("epoll_ctl", epoll_ctl(ew->epfd, EPOLL_CTL_ADD, ew->wake_fd, &ev)) < 0)
            rc = -errno;
        e->workers[i].backend = ew;
    }
    if (rc < 0)
        epoll_destroy(e);
    return rc;
}

static void epoll_wake_worker(piocp_worker *w)
{
    epoll_worker *ew = w->backend;
    uint64_t one = 1;
    /* can only fail with EAGAIN when the counter is saturated: awake anyway */
    (void)!write(ew->wake_fd, &one, sizeof one);
}

/* the global list and user completions: any worker will do, the first */
static void epoll_wake(piocp_engine *e) { epoll_wake_worker(&e->workers[0]); }

/* The quit completion: every worker's counter stays set (level-triggered)
 * until it has left. */
static void epoll_post_quit(piocp_engine *e)
{
    for (int i = 0; i < e->threads; i++)
        epoll_wake_worker(&e->workers[i]);
}

/* -------------------------------------------------------- listeners -- */

/* In every worker's set or in none, as `listen` says; under listeners_lock.
 * Level-triggered: a backlog left over raises the event again. */
static int listen_in_sets_locked(epoll_backend *b, piocp_listener *l, bool listen)
{
    if (b->listening[l->index] == listen)
        return 0;
    int rc = 0;
    for (int i = 0; i < b->count; i++) {
        /* EPOLLEXCLUSIVE wakes one waiting set per connection; a shared
         * socket's wake-up could go to a worker of a process that is
         * stopping and will not accept, and the connection would wait for
         * the next one to arrive.  Shared: every set hears of it. */
        struct epoll_event ev = {.events = EPOLLIN | (l->shared ? 0 : EPOLLEXCLUSIVE),
                                 .data.u64 = tag(KIND_LISTENER, l->index)};
        if (FAULT_CALL("epoll_ctl",
                       epoll_ctl(b->workers[i].epfd, listen ? EPOLL_CTL_ADD : EPOLL_CTL_DEL, l->fd,
                                 &ev)) < 0 &&
            rc == 0)
            rc = -errno;
    }
    b->listening[l->index] = listen;
    return rc;
}

/* Puts `l` in the sets if it accepts, takes it out if it does not
 * (paused, closed): the one place that decides, so that a pause and a
 * resume racing each other end as the listener's state says. */
static int sync_listener(piocp_engine *e, piocp_listener *l)
{
    epoll_backend *b = e->backend_data;
    piocp_mutex_lock(&b->listeners_lock);
    int rc = listen_in_sets_locked(b, l, piocp_listener_accepting(l));
    piocp_mutex_unlock(&b->listeners_lock);
    return rc;
}

static int epoll_add_listener(piocp_engine *e, piocp_listener *l) { return sync_listener(e, l); }

static void epoll_resume_listener(piocp_engine *e, piocp_listener *l) { sync_listener(e, l); }

/* closed: out of the sets */
static void epoll_stop_listener(piocp_engine *e, piocp_listener *l) { sync_listener(e, l); }

static void on_listener_event(piocp_engine *e, uint32_t index)
{
    piocp_listener *l = piocp_listener_at(e, index);
    if (!l)
        return;
    for (int i = 0; i < ACCEPTS_PER_EVENT && piocp_listener_accepting(l) && piocp_accept_enter(l);
         i++) {
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
        if (error == -EAGAIN || error == -EWOULDBLOCK)
            return; /* the backlog is empty: wait for the next event */
        if (!piocp_listener_accept_failed(l, error))
            break; /* paused or closed */
    }
    /* Paused or closed (a shut-down listener stays readable for ever):
     * out of the sets until resume_listener. */
    if (!piocp_listener_accepting(l))
        sync_listener(e, l);
}

/* ------------------------------------------------------ connections -- */

static int epoll_add_conn(piocp_worker *w, piocp_conn *c)
{
    epoll_conn *ec = piocp_conn_backend(c);
    c->owner = w ? w->index : 0; /* the worker that accepted it */
    /* optimistic: a client usually sends its request right after connecting */
    ec->readable = true;
    ec->writable = true;
    ec->watched_events = base_events(c);
    if (c->connecting) {
        /* an outbound connect ends with the socket turning writable (or
         * failing: EPOLLERR/EPOLLHUP, always reported) */
        ec->writable = false;
        ec->watched_events |= EPOLLOUT;
    }
    return watch_conn(owner_of(c), c, ec->watched_events, EPOLL_CTL_ADD);
}

/* Two epoll_ctl calls, against a wake-up of the owner (a context switch
 * when the workers share a CPU) for every later post. */
static bool epoll_move(piocp_worker *to, piocp_conn *c)
{
    epoll_conn *ec = piocp_conn_backend(c);
    if (c->fd == PIOCP_INVALID_SOCKET)
        return false;
    epoll_worker *from = owner_of(c);
    if (FAULT_CALL("epoll_ctl", epoll_ctl(from->epfd, EPOLL_CTL_DEL, c->fd, NULL)) < 0)
        return false;
    /* ADD reports the socket's present state: no edge is lost */
    if (watch_conn(to->backend, c, ec->watched_events, EPOLL_CTL_ADD) == 0)
        return true;
    int rc = watch_conn(from, c, ec->watched_events, EPOLL_CTL_ADD);
    if (rc < 0 && !c->abort_error)
        c->abort_error = rc; /* watched by no set: fail it rather than hang */
    return false;
}

/* A borrowed socket goes back to its owner: out of our set, since the
 * descriptor stays open (the owner may watch it in an epoll set of its
 * own; that registration is another, and stays). */
static void epoll_remove_conn(piocp_conn *c)
{
    (void)epoll_ctl(owner_of(c)->epfd, EPOLL_CTL_DEL, c->fd, NULL);
}

static ssize_t send_step(piocp_conn *c, piocp_request *r) { return piocp_socket_send_step(c->fd, r); }

static void read_ready_locked(piocp_conn *c, epoll_conn *ec, piocp_done_list *done)
{
    while (c->recv_req && ec->readable && !c->abort_error) {
        piocp_request *r = c->recv_req;
        ssize_t n = fault_recv("recv", c->fd, r->u.recv.buf, r->u.recv.len, 0);
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

/* Fault builds: an injected EAGAIN or short recv/send stands for bytes (or
 * room) that came just after the call, and the kernel raises an edge for
 * those.  Without one the connection would wait for an edge no kernel
 * withholds: MOD re-reports the socket's present state. */
static void fault_edge(piocp_conn *c, unsigned fired_before)
{
    epoll_conn *ec = piocp_conn_backend(c);
    if (PIOCP_FAULT_FIRED_HERE() != fired_before && c->fd != PIOCP_INVALID_SOCKET)
        (void)watch_conn(owner_of(c), c, ec->watched_events, EPOLL_CTL_MOD);
}

static bool epoll_run(piocp_worker *w, piocp_conn *c, piocp_done_list *done, size_t *budget)
{
    (void)w;
    epoll_conn *ec = piocp_conn_backend(c);
    unsigned fired = PIOCP_FAULT_FIRED_HERE();
    read_ready_locked(c, ec, done);
    piocp_sends sends = PIOCP_SENDS_IDLE;
    if (ec->writable) {
        sends = piocp_run_sends_locked(c, done, budget, send_step, false);
        if (sends == PIOCP_SENDS_BLOCKED)
            ec->writable = false;
    }
    fault_edge(c, fired);
    return sends != PIOCP_SENDS_BUDGET;
}

/* A send met a full buffer: from now on the edge that says it drained must
 * reach us.  Once per connection at most. */
static int epoll_park(piocp_worker *w, piocp_conn *c)
{
    epoll_conn *ec = piocp_conn_backend(c);
    if (!c->send_head || ec->writable || (ec->watched_events & EPOLLOUT))
        return 0;
    (void)w;
    int rc = watch_conn(owner_of(c), c, base_events(c) | EPOLLOUT, EPOLL_CTL_MOD);
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
    /* harvested before the connection moved to another worker: the state
     * above is still the socket's, the turn is its new owner's */
    piocp_schedule_on_owner_locked(c);
    piocp_mutex_unlock(&c->lock);
}

/* ------------------------------------------------------------ worker -- */

static int on_wake_event(piocp_engine *e, epoll_worker *ew)
{
    /* at quit the counter stays set: every later wait returns at once */
    if (!atomic_load(&e->quit)) {
        uint64_t value;
        (void)!read(ew->wake_fd, &value, sizeof value);
    }
    return PIOCP_POLL_WOKEN;
}

static int epoll_poll(piocp_worker *w, int timeout_ms)
{
    piocp_engine *e = w->engine;
    epoll_worker *ew = w->backend;
    struct epoll_event events[MAX_EVENTS];
    int n = FAULT_CALL("epoll_wait", epoll_wait(ew->epfd, events, MAX_EVENTS, timeout_ms));
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
            on_listener_event(e, (uint32_t)value);
        else
            result |= on_wake_event(e, ew);
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
    .stop_listener = epoll_stop_listener,
    .add_conn = epoll_add_conn,
    .remove_conn = epoll_remove_conn,
    .move = epoll_move,
    .run = epoll_run,
    .park = epoll_park,
};
