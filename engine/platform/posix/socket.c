/*
 * socket.c - POSIX sockets and files for the core (see platform.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform/platform.h"
#include "platform/posix/fault_calls.h"

#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

int piocp_socket_listen_new(const struct sockaddr *addr, socklen_t addrlen, int backlog,
                            bool reuse_port, piocp_socket *out)
{
    int fd = FAULT_CALL("socket", socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if ((reuse_port && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) ||
        FAULT_CALL("bind", bind(fd, addr, addrlen)) < 0 ||
        FAULT_CALL("listen", listen(fd, backlog)) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

/* Its blocking mode is the open file's: a supervisor that shares it sees
 * the change, which is harmless for a socket it only hands on. */
int piocp_socket_adopt_listener(piocp_socket fd)
{
    int type = 0, accepting = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
        return errno == ENOTSOCK ? -EINVAL : -errno;
    len = sizeof accepting;
    if (type != SOCK_STREAM ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) < 0 || !accepting)
        return -EINVAL;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -errno;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    return 0;
}

int piocp_socket_local_address(piocp_socket fd, struct sockaddr_storage *addr,
                               socklen_t *addrlen)
{
    return getsockname(fd, (struct sockaddr *)addr, addrlen) < 0 ? -errno : 0;
}

bool piocp_accept_error_is_transient(int error)
{
    switch (-error) {
    case EINTR:
    case EAGAIN:
    case ECONNABORTED:
    case EPROTO:
    case EPERM:      /* a firewall rule refused this peer */
    case ENETDOWN:
    case ENETUNREACH:
    case EHOSTDOWN:
    case EHOSTUNREACH:
#ifdef ENONET
    case ENONET:
#endif
    case ENOPROTOOPT:
    case EOPNOTSUPP:
        return true;
    default:
        return false;
    }
}

void piocp_socket_close(piocp_socket fd, bool reset)
{
    if (reset) {
        struct linger linger = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, sizeof linger);
    }
    (void)fault_close("close", fd); /* nothing to do about a failure: the descriptor is gone */
}

void piocp_socket_set_nodelay(piocp_socket fd)
{
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

int piocp_socket_shutdown_write(piocp_socket fd)
{
    return FAULT_CALL("shutdown", shutdown(fd, SHUT_WR)) < 0 ? -errno : 0;
}

void piocp_socket_shutdown_listener(piocp_socket fd)
{
    /* A ring's pending (multishot) accept holds the file past close() and
     * would keep accepting; shutdown ends it, and wakes epoll waiters. */
    shutdown(fd, SHUT_RDWR);
}

ssize_t piocp_socket_send_now(piocp_socket fd, const void *buf, size_t len)
{
    ssize_t n = fault_send("send_now", fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
    return n < 0 ? -errno : n;
}

bool piocp_socket_drain(piocp_socket fd)
{
    char scratch[4096];
    for (;;) {
        ssize_t n = fault_recv("recv_drain", fd, scratch, sizeof scratch, MSG_DONTWAIT);
        if (n > 0)
            continue;
        if (n < 0 && errno == EINTR)
            continue;
        /* EAGAIN: more may come (or the FIN); 0 or an error: done */
        return !(n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
    }
}

int piocp_socket_check_connected_stream(piocp_socket fd, struct sockaddr_storage *peer,
                                        socklen_t *peer_len)
{
    int type = 0;
    socklen_t len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
        return -EINVAL; /* not a socket (ENOTSOCK, EBADF), or datagrams */
    *peer_len = sizeof *peer;
    if (getpeername(fd, (struct sockaddr *)peer, peer_len) < 0)
        return -EINVAL; /* listening, or not connected (yet) */
    return 0;
}

int piocp_socket_is_nonblocking(piocp_socket fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0)
        return -errno;
    return (flags & O_NONBLOCK) != 0;
}

int piocp_socket_make_nonblocking(piocp_socket fd)
{
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
        return -errno;
    int fd_flags = fcntl(fd, F_GETFD);
    if (fd_flags < 0 || fcntl(fd, F_SETFD, fd_flags | FD_CLOEXEC) < 0)
        return -errno;
    return 0;
}

int piocp_socket_connect_start(const struct sockaddr *addr, socklen_t addrlen, piocp_socket *out)
{
    *out = FAULT_CALL("socket", socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (*out < 0) {
        *out = PIOCP_INVALID_SOCKET;
        return -errno;
    }
    if (FAULT_CALL("connect", connect(*out, addr, addrlen)) == 0)
        return 0;
    /* interrupted, a non-blocking connect still goes on in the background */
    return errno == EINTR ? -EINPROGRESS : -errno;
}

int piocp_socket_connect_result(piocp_socket fd)
{
    int error = 0;
    socklen_t len = sizeof error;
    if (FAULT_CALL("getsockopt", getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len)) < 0)
        return -errno;
    if (error)
        return -error;
    /* SO_ERROR is 0 both while connecting and once connected */
    struct sockaddr_storage peer;
    len = sizeof peer;
    if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0)
        return 0;
    return errno == ENOTCONN ? -EINPROGRESS : -errno;
}

int piocp_file_size(piocp_file fd, uint64_t *size)
{
    struct stat st;
    if (FAULT_CALL("fstat", fstat(fd, &st)) < 0)
        return -errno;
    if (!S_ISREG(st.st_mode))
        return -EINVAL;
    *size = (uint64_t)st.st_size;
    return 0;
}
