/*
 * outbound.c - connections the engine did not accept: sockets handed over
 * already connected (piocp_adopt), sockets lent for a while (piocp_borrow),
 * and outbound connects (piocp_connect).
 * Each takes a pool slot claimed (core/connection.c), registers the socket
 * with the backend and hands it over, like piocp_accepted.  Backend-neutral:
 * a connect's turn looks at the socket (platform), and a backend only has
 * to wake it when the socket turns writable, as for a full send buffer.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/backend.h"
#include "errors.h"
#include "platform/platform.h"


/* A slot was taken but the connection cannot go on: gives the slot back
 * without a callback.  `close_socket`: the socket is ours to close. */
static void give_back(piocp_conn *c, bool close_socket)
{
    piocp_mutex_lock(&c->lock);
    if (!close_socket)
        c->fd = PIOCP_INVALID_SOCKET; /* the caller's again */
    piocp_close_socket_locked(c, 0);
    piocp_mutex_unlock(&c->lock);
    piocp_finish_closed(c);
}

/* ------------------------------------------------------ adopt, borrow -- */

/* A connected stream socket that the caller hands over (adopt) or lends
 * (borrow): a slot, the backend's watch, held until its callbacks are set.
 * A lent socket is only looked at: it must be non-blocking already. */
static int take_connected(piocp_engine *e, piocp_socket fd, bool borrowed, piocp_conn **out)
{
    if (!e || !out || fd == PIOCP_INVALID_SOCKET)
        return -PIOCP_EINVAL;
    struct sockaddr_storage peer;
    socklen_t peer_len;
    int rc = piocp_socket_check_connected_stream(fd, &peer, &peer_len);
    if (rc == 0 && borrowed) {
        rc = piocp_socket_is_nonblocking(fd);
        rc = rc == 1 ? 0 : rc == 0 ? -PIOCP_EINVAL : rc;
    }
    if (rc < 0)
        return rc;
    if (atomic_load(&e->stopping))
        return -PIOCP_ESHUTDOWN;
    piocp_conn *c = piocp_pool_acquire(e, fd, (struct sockaddr *)&peer, peer_len);
    if (!c)
        return -PIOCP_ENOSPC;
    /* Counted open first, then checked, as in piocp_accepted: either the
     * stop waits for this connection or it is refused here. */
    if (atomic_load(&e->stopping)) {
        give_back(c, false);
        return -PIOCP_ESHUTDOWN;
    }
    rc = borrowed ? 0 : piocp_socket_make_nonblocking(fd);
    piocp_mutex_lock(&c->lock);
    c->borrowed = borrowed; /* before add_conn: epoll watches it differently */
    if (rc == 0)
        rc = e->backend->add_conn(piocp_current_worker(), c);
    if (rc == 0)
        c->held = true; /* claimed until piocp_conn_set_callbacks */
    piocp_mutex_unlock(&c->lock);
    if (rc < 0) {
        give_back(c, false);
        return rc;
    }
    *out = c;
    return 0;
}

int piocp_adopt(piocp_engine *e, piocp_socket fd, piocp_conn **out)
{
    int rc = take_connected(e, fd, false, out);
    if (rc == 0)
        piocp_socket_set_nodelay(fd); /* fails harmlessly where it is not TCP */
    return rc;
}

int piocp_borrow(piocp_engine *e, piocp_socket fd, piocp_conn **out)
{
    int rc = take_connected(e, fd, true, out);
    if (rc == 0)
        piocp_count(e, PIOCP_M_BORROWED, 1);
    return rc;
}

/* ----------------------------------------------------------- connect -- */

int piocp_connect(piocp_engine *e, const struct sockaddr *addr, socklen_t addrlen,
                  int timeout_ms, piocp_connect_fn done, void *user)
{
    if (!e || !addr || !done || timeout_ms < 0)
        return -PIOCP_EINVAL;
    if (atomic_load(&e->stopping))
        return -PIOCP_ESHUTDOWN;
    piocp_socket fd;
    int started = piocp_socket_connect_start(addr, addrlen, &fd);
    if (fd == PIOCP_INVALID_SOCKET)
        return started; /* no socket: nothing to report later */
    piocp_conn *c = piocp_pool_acquire(e, fd, addr, addrlen);
    if (!c) {
        piocp_socket_close(fd, true);
        return -PIOCP_ENOSPC;
    }
    if (atomic_load(&e->stopping)) {
        give_back(c, true);
        return -PIOCP_ESHUTDOWN;
    }
    piocp_mutex_lock(&c->lock);
    c->connecting = true;
    c->connect_done = done;
    c->connect_user = user;
    int rc = started == -PIOCP_EINPROGRESS ? 0 : started;
    if (rc == 0)
        rc = e->backend->add_conn(piocp_current_worker(), c);
    if (rc < 0)
        c->abort_error = rc; /* refused at once: `done` hears it from the first turn */
    else
        piocp_socket_set_nodelay(fd);
    if (timeout_ms > 0)
        piocp_conn_set_deadline(c, timeout_ms); /* the sweep fails it with -PIOCP_ETIMEDOUT */
    c->again = true; /* the first turn looks at the socket: it may be connected already */
    piocp_conn_let_go_locked(c);
    piocp_mutex_unlock(&c->lock);
    return 0;
}

bool piocp_connect_step_locked(piocp_conn *c)
{
    const piocp_backend_ops *ops = c->engine->backend;
    int rc = ops->connect_result ? ops->connect_result(c) : piocp_socket_connect_result(c->fd);
    if (rc == -PIOCP_EINPROGRESS)
        return false; /* not yet: park waits for writability */
    if (rc < 0) {
        c->abort_error = rc;
        return false;
    }
    c->connecting = false;
    atomic_store_explicit(&c->deadline_ms, 0, memory_order_relaxed);
    piocp_touch(c);
    return true;
}

void piocp_report_closed(piocp_conn *c)
{
    if (c->connecting) {
        /* never connected: the caller never saw it; `done` hears why */
        int error = c->abort_error ? c->abort_error : -PIOCP_ECANCELED;
        piocp_count(c->engine, PIOCP_M_REQUESTS + PIOCP_METRIC_OP_CONNECT, 1);
        piocp_count(c->engine, PIOCP_M_ERRORS + PIOCP_METRIC_OP_CONNECT * PIOCP_METRIC_ERRNOS +
                                   piocp_metric_errno_index(error), 1);
        if (c->connect_done)
            c->connect_done(NULL, error, c->connect_user);
    } else if (c->on_closed) {
        c->on_closed(c, c->closed_error);
    }
}
