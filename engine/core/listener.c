/*
 * listener.c - listening sockets: opening them, the hand-off of accepted
 * connections, pausing when descriptors run out, and closing at stop.
 *
 * Backends read a listener's socket without a lock, so it is closed only
 * after the workers have been joined: closing it earlier could hand its
 * descriptor number to a new socket that a late accept would then use.
 * Stopping only marks it closed and shuts it down (which ends a ring's
 * pending accept and wakes epoll).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/backend.h"
#include "platform/platform.h"

#include <stdlib.h>
#include <string.h>

void piocp_listen_options_init(piocp_listen_options *o)
{
    memset(o, 0, sizeof *o);
    o->backlog = 1024;
    o->fd = PIOCP_INVALID_SOCKET;
}

int piocp_listen(piocp_engine *e, const struct sockaddr *addr, socklen_t addrlen, int backlog,
                 const piocp_listener_callbacks *callbacks, void *user, piocp_listener **out)
{
    piocp_listen_options options;
    piocp_listen_options_init(&options);
    options.addr = addr;
    options.addrlen = addrlen;
    options.backlog = backlog;
    return piocp_listen_ex(e, &options, callbacks, user, out);
}

/* Takes `fd` (listening) into the engine's table and the backend. */
static int add_listener(piocp_engine *e, piocp_socket fd, bool shared,
                        const piocp_listener_callbacks *callbacks, void *user,
                        piocp_listener **out)
{
    piocp_listener *l = calloc(1, sizeof *l);
    if (!l) {
        piocp_socket_close(fd, false);
        return -PIOCP_ENOMEM;
    }
    l->engine = e;
    l->fd = fd;
    l->shared = shared;
    l->callbacks = *callbacks;
    l->user = user;
    piocp_mutex_lock(&e->listeners_lock);
    if (e->listener_count >= PIOCP_MAX_LISTENERS || atomic_load(&e->stopping)) {
        int rc = atomic_load(&e->stopping) ? -PIOCP_ESHUTDOWN : -PIOCP_EMFILE;
        piocp_mutex_unlock(&e->listeners_lock);
        piocp_socket_close(fd, false);
        free(l);
        return rc;
    }
    l->index = e->listener_count++;
    atomic_store(&e->listeners[l->index], l);
    piocp_mutex_unlock(&e->listeners_lock);
    int rc = e->backend->add_listener(e, l);
    if (rc < 0) {
        /* it stays in the table (closed) so that its index is never reused */
        atomic_store(&l->closed, true);
        return rc;
    }
    if (out)
        *out = l;
    return 0;
}

int piocp_listen_ex(piocp_engine *e, const piocp_listen_options *options,
                    const piocp_listener_callbacks *callbacks, void *user, piocp_listener **out)
{
    bool adopting = options && options->fd != PIOCP_INVALID_SOCKET;
    int rc = -PIOCP_EINVAL;
    if (!options || !callbacks || !callbacks->on_connection ||
        (adopting ? options->addr != NULL : (options->addr == NULL || options->backlog < 1)))
        goto refuse;
    rc = -PIOCP_ESHUTDOWN;
    if (atomic_load(&e->stopping))
        goto refuse;
    piocp_socket fd = options->fd;
    rc = adopting ? piocp_socket_adopt_listener(fd)
                  : piocp_socket_listen_new(options->addr, options->addrlen, options->backlog,
                                            options->reuse_port, &fd);
    if (rc < 0)
        goto refuse;
    return add_listener(e, fd, adopting, callbacks, user, out);
refuse:
    /* an adopted socket is the engine's from the call on, as documented */
    if (adopting)
        piocp_socket_close(options->fd, false);
    return rc;
}

int piocp_listener_address(const piocp_listener *l, struct sockaddr_storage *addr,
                           socklen_t *addrlen)
{
    *addrlen = sizeof *addr;
    if (atomic_load(&l->closed))
        return -PIOCP_EBADF;
    return piocp_socket_local_address(l->fd, addr, addrlen);
}

uint64_t piocp_listener_refused(const piocp_listener *l) { return atomic_load(&l->refused); }

piocp_listener *piocp_listener_at(piocp_engine *e, uint32_t index)
{
    return index < PIOCP_MAX_LISTENERS ? atomic_load(&e->listeners[index]) : NULL;
}

bool piocp_listener_accepting(const piocp_listener *l)
{
    return !atomic_load(&l->closed) && !atomic_load(&l->paused);
}

/* ------------------------------------------------- the accept gate -- */

/* A listener's queue may be shared with other processes (a supervisor's
 * workers, a reload's new generation): a client whose connection this
 * engine takes off it while stopping expects an answer like any other, and
 * would get a reset if the stop dropped it.  So every accept runs inside a
 * gate: enter (refused once the listener is closed), take the socket, count
 * it open (piocp_accepted), leave.  Stop closes the listeners, then waits for
 * the gate to empty before it counts what is open and drains: each accept
 * either found the listener closed and took nothing, or its connection is
 * served through the drain (its first request read and answered).  Entering
 * counts first, then checks; stop closes first, then counts (both seq_cst):
 * one of the two sees the other. */
bool piocp_accept_enter(piocp_listener *l)
{
    atomic_fetch_add(&l->engine->accepts_under_way, 1);
    if (!atomic_load(&l->closed))
        return true;
    piocp_accept_leave(l);
    return false;
}

void piocp_accept_leave(piocp_listener *l)
{
    piocp_engine *e = l->engine;
    if (atomic_fetch_sub(&e->accepts_under_way, 1) == 1 && atomic_load(&l->closed)) {
        piocp_mutex_lock(&e->pool_lock);
        piocp_cond_broadcast(&e->idle_cond); /* a stop may wait for the gate */
        piocp_mutex_unlock(&e->pool_lock);
    }
}

void piocp_accepts_wait_out(piocp_engine *e)
{
    piocp_mutex_lock(&e->pool_lock);
    while (atomic_load(&e->accepts_under_way) > 0)
        piocp_cond_timedwait(&e->idle_cond, &e->pool_lock, 10);
    piocp_mutex_unlock(&e->pool_lock);
}

static void refuse(piocp_listener *l, piocp_socket fd, bool stopping)
{
    piocp_engine *e = l->engine;
    atomic_fetch_add(&l->refused, 1);
    piocp_count(e, stopping ? PIOCP_M_REFUSED_STOPPING : PIOCP_M_REFUSED_LIMIT, 1);
    if (l->callbacks.on_refused && !stopping)
        l->callbacks.on_refused(l, fd, l->user);
    piocp_socket_close(fd, false);
}

void piocp_accept_completed(piocp_listener *l, piocp_socket fd, const struct sockaddr *peer,
                            socklen_t peer_len)
{
    if (piocp_accept_enter(l))
        piocp_accepted(l, fd, peer, peer_len);
    else
        refuse(l, fd, true);
}

void piocp_accepted(piocp_listener *l, piocp_socket fd, const struct sockaddr *peer,
                    socklen_t peer_len)
{
    piocp_engine *e = l->engine;
    piocp_conn *c = piocp_pool_acquire(e, fd, peer, peer_len);
    piocp_accept_leave(l); /* counted open (or refused): the stop may count */
    if (!c) {
        refuse(l, fd, atomic_load(&l->closed));
        return;
    }
    piocp_socket_set_nodelay(fd);
    piocp_mutex_lock(&c->lock);
    c->unanswered = true;
    /* on_connection is the connection's first callback: no turn may run
     * (and close it) alongside it, so it stays claimed like a turn (see
     * piocp_pool_acquire).  What is posted or asked meanwhile (a stop, a
     * deadline) runs after it. */
    int rc = e->backend->add_conn(piocp_current_worker(), c);
    if (rc < 0)
        piocp_close_socket_locked(c, rc);
    piocp_mutex_unlock(&c->lock);
    if (rc < 0) {
        piocp_finish_closed(c);
        return;
    }
    piocp_count(e, PIOCP_M_ACCEPTED, 1);
    l->callbacks.on_connection(l, c, l->user);
    piocp_mutex_lock(&c->lock);
    piocp_conn_let_go_locked(c);
    piocp_mutex_unlock(&c->lock);
}

bool piocp_listener_accept_failed(piocp_listener *l, int error)
{
    piocp_engine *e = l->engine;
    /* a closed listener's pending accept ends with an error (io_uring's
     * with ECANCELED at every stop): its closing, not a failed accept */
    if (atomic_load(&l->closed))
        return false;
    piocp_count(e, PIOCP_M_ERRORS + PIOCP_METRIC_OP_ACCEPT * PIOCP_METRIC_ERRNOS +
                       piocp_metric_errno_index(error), 1);
    if (piocp_accept_error_is_transient(error))
        return true;
    /* Out of descriptors (EMFILE, ENFILE) or memory (ENOBUFS, ENOMEM), or a
     * listener error we do not know: the pending connection stays queued,
     * so accepting again at once fails again and spins.  Pause (as nginx
     * does) until a connection of ours closes or the next sweep; the
     * clients wait in the backlog instead of being dropped. */
    if (!atomic_exchange(&l->paused, true)) {
        atomic_fetch_add(&e->paused_listeners, 1);
        piocp_count(e, PIOCP_M_ACCEPT_PAUSES, 1);
    }
    return false;
}

void piocp_listeners_resume(piocp_engine *e)
{
    if (atomic_load(&e->paused_listeners) == 0)
        return;
    for (uint32_t i = 0; i < PIOCP_MAX_LISTENERS; i++) {
        piocp_listener *l = piocp_listener_at(e, i);
        if (!l || !atomic_exchange(&l->paused, false))
            continue;
        atomic_fetch_sub(&e->paused_listeners, 1);
        if (!atomic_load(&l->closed) && e->backend->resume_listener)
            e->backend->resume_listener(e, l);
    }
}

void piocp_listeners_stop(piocp_engine *e)
{
    piocp_mutex_lock(&e->listeners_lock);
    for (uint32_t i = 0; i < e->listener_count; i++) {
        piocp_listener *l = atomic_load(&e->listeners[i]);
        if (atomic_exchange(&l->closed, true))
            continue;
        if (!l->shared)
            piocp_socket_shutdown_listener(l->fd);
        else if (e->backend->stop_listener)
            e->backend->stop_listener(e, l);
    }
    piocp_mutex_unlock(&e->listeners_lock);
}

void piocp_listeners_close_sockets(piocp_engine *e)
{
    piocp_mutex_lock(&e->listeners_lock);
    for (uint32_t i = 0; i < e->listener_count; i++) {
        piocp_listener *l = atomic_load(&e->listeners[i]);
        atomic_store(&l->closed, true);
        if (!l->fd_closed) {
            piocp_socket_close(l->fd, false);
            l->fd_closed = true;
        }
    }
    piocp_mutex_unlock(&e->listeners_lock);
}

void piocp_listeners_free(piocp_engine *e)
{
    piocp_listeners_close_sockets(e);
    for (uint32_t i = 0; i < e->listener_count; i++) {
        free(atomic_load(&e->listeners[i]));
        atomic_store(&e->listeners[i], NULL);
    }
    e->listener_count = 0;
}
