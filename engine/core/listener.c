/*
 * listener.c - listening sockets and the hand-off of accepted connections.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/internal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <sys/socket.h>

/* ------------------------------------------------------- listeners -- */

int piocp_listen(piocp_engine *e, const struct sockaddr *addr, socklen_t addrlen, int backlog,
                 const piocp_listener_callbacks *callbacks, void *user, piocp_listener **out)
{
    if (!addr || !callbacks || !callbacks->on_connection || backlog < 1)
        return -EINVAL;
    if (atomic_load(&e->stopping))
        return -ESHUTDOWN;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, addr, addrlen) < 0 || listen(fd, backlog) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    piocp_listener *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return -ENOMEM;
    }
    l->engine = e;
    l->fd = fd;
    l->callbacks = *callbacks;
    l->user = user;
    pthread_mutex_lock(&e->listeners_lock);
    l->index = e->listener_count++;
    l->next = e->listeners;
    e->listeners = l;
    pthread_mutex_unlock(&e->listeners_lock);
    int rc = e->backend->add_listener(e, l);
    if (rc < 0) {
        atomic_store(&l->closed, true);
        close(fd);
        l->fd = -1;
        return rc;
    }
    if (out)
        *out = l;
    return 0;
}

int piocp_listener_address(const piocp_listener *l, struct sockaddr_storage *addr,
                           socklen_t *addrlen)
{
    *addrlen = sizeof *addr;
    if (l->fd < 0)
        return -EBADF;
    return getsockname(l->fd, (struct sockaddr *)addr, addrlen) < 0 ? -errno : 0;
}

uint64_t piocp_listener_refused(const piocp_listener *l) { return atomic_load(&l->refused); }

/* A backend accepted `fd`: give it a slot or refuse it. */
void piocp_accepted(piocp_listener *l, int fd, const struct sockaddr *peer, socklen_t peer_len)
{
    piocp_engine *e = l->engine;
    piocp_conn *c = atomic_load(&e->stopping) ? NULL : piocp_pool_acquire(e, fd, peer, peer_len);
    if (!c) {
        atomic_fetch_add(&l->refused, 1);
        if (l->callbacks.on_refused && !atomic_load(&e->stopping))
            l->callbacks.on_refused(l, fd, l->user);
        close(fd);
        return;
    }
    if (e->backend->add_conn(e, c) < 0) {
        pthread_mutex_lock(&c->lock);
        piocp_close_socket_locked(c, -ENOMEM);
        pthread_mutex_unlock(&c->lock);
        piocp_finish_closed(c);
        return;
    }
    l->callbacks.on_connection(l, c, l->user);
}

