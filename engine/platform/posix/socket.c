/*
 * socket.c - POSIX sockets and files for the core (see platform.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform/platform.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

void piocp_socket_close(piocp_socket fd, bool reset)
{
    if (reset) {
        struct linger linger = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof linger);
    }
    close(fd);
}

void piocp_socket_set_nodelay(piocp_socket fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int piocp_socket_shutdown_write(piocp_socket fd) { return shutdown(fd, SHUT_WR) < 0 ? -errno : 0; }

void piocp_socket_shutdown_listener(piocp_socket fd)
{
    /* A ring's pending (multishot) accept holds the file past close() and
     * would keep accepting; shutdown ends it, and wakes epoll waiters. */
    shutdown(fd, SHUT_RDWR);
}

bool piocp_socket_drain(piocp_socket fd)
{
    char scratch[4096];
    for (;;) {
        ssize_t n = recv(fd, scratch, sizeof scratch, MSG_DONTWAIT);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        /* EAGAIN: more may come (or the FIN); 0 or an error: done */
        return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
}

int piocp_file_size(piocp_file fd, uint64_t *size)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    *size = (uint64_t)st.st_size;
    return 0;
}
