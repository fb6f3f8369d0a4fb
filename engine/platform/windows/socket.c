/*
 * socket.c - Winsock sockets and Win32 files for the core (see
 * platform.h).  Errors come back as -PIOCP_E* through
 * piocp_error_from_win32, so the core compares them with the names it
 * uses on every platform.
 *
 * Blocking mode matters little here: the IOCP backend's own I/O is
 * overlapped, which ignores it.  It matters for the few plain calls the
 * core makes (drain, connect), which are written not to block either way.
 */
#include "platform/platform.h"
#include "core/fault.h"

#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <windows.h>

#include <limits.h>
#include <string.h>

static int wsa_error(void) { return -piocp_error_from_win32((unsigned long)WSAGetLastError()); }

/* Not inherited by child processes: Windows' close-on-exec. */
static void not_inherited(piocp_socket fd) { SetHandleInformation((HANDLE)fd, HANDLE_FLAG_INHERIT, 0); }

int piocp_socket_listen_new(const struct sockaddr *addr, socklen_t addrlen, int backlog,
                            bool reuse_port, piocp_socket *out)
{
    /* No load-balancing SO_REUSEPORT on Windows, and SO_REUSEADDR there
     * lets another process steal the port: say so rather than pretend. */
    if (reuse_port)
        return -PIOCP_EOPNOTSUPP;
    int injected = PIOCP_FAULT("socket");
    if (injected)
        return injected;
    SOCKET fd = WSASocketW(addr->sa_family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                           WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (fd == INVALID_SOCKET)
        return wsa_error();
    /* Nobody else may bind this port, not even with SO_REUSEADDR (the
     * Windows meaning of which is "take over a bound port").  A restarted
     * server still binds at once: TIME_WAIT does not block a listener on
     * Windows as it does on POSIX without SO_REUSEADDR. */
    BOOL one = TRUE;
    setsockopt(fd, SOL_SOCKET, SO_EXCLUSIVEADDRUSE, (const char *)&one, sizeof one);
    injected = PIOCP_FAULT("bind");
    if (!injected && bind(fd, addr, addrlen) == SOCKET_ERROR)
        injected = wsa_error();
    if (!injected && (injected = PIOCP_FAULT("listen")) == 0 &&
        listen(fd, backlog) == SOCKET_ERROR)
        injected = wsa_error();
    if (injected) {
        int rc = injected;
        closesocket(fd);
        return rc;
    }
    *out = fd;
    return 0;
}

int piocp_socket_adopt_listener(piocp_socket fd)
{
    int type = 0;
    BOOL accepting = FALSE;
    int len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, (char *)&type, &len) == SOCKET_ERROR) {
        int rc = wsa_error();
        return rc == -PIOCP_ENOTSOCK ? -PIOCP_EINVAL : rc;
    }
    len = sizeof accepting;
    if (type != SOCK_STREAM ||
        getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, (char *)&accepting, &len) == SOCKET_ERROR ||
        !accepting)
        return -PIOCP_EINVAL;
    not_inherited(fd);
    return 0;
}

int piocp_socket_local_address(piocp_socket fd, struct sockaddr_storage *addr,
                               socklen_t *addrlen)
{
    int len = (int)*addrlen;
    if (getsockname(fd, (struct sockaddr *)addr, &len) == SOCKET_ERROR)
        return wsa_error();
    *addrlen = len;
    return 0;
}

bool piocp_accept_error_is_transient(int error)
{
    switch (-error) {
    case PIOCP_EINTR:
    case PIOCP_EAGAIN:
    case PIOCP_EWOULDBLOCK:
    /* AcceptEx completes with ERROR_NETNAME_DELETED (ECONNRESET) when the
     * client reset before the accept finished: that client's problem only.
     * (asyncio's proactor stopped accepting for good on it, CPython
     * issue 93821.) */
    case PIOCP_ECONNRESET:
    case PIOCP_ECONNABORTED:
    case PIOCP_ETIMEDOUT:
    case PIOCP_ENETDOWN:
    case PIOCP_ENETUNREACH:
    case PIOCP_EHOSTUNREACH:
    case PIOCP_EOPNOTSUPP:
        return true;
    default:
        return false;
    }
}

void piocp_socket_close(piocp_socket fd, bool reset)
{
    if (reset) {
        /* SO_LINGER with a zero timeout: closesocket sends a RST */
        struct linger linger = {.l_onoff = 1, .l_linger = 0};
        setsockopt(fd, SOL_SOCKET, SO_LINGER, (const char *)&linger, sizeof linger);
    }
    closesocket(fd);
    /* a failed closesocket has nothing to undo here: the point only counts
     * the pass (its failure is ignored, as the real one's is) */
    (void)PIOCP_FAULT("close");
}

void piocp_socket_set_nodelay(piocp_socket fd)
{
    BOOL one = TRUE;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);
}

int piocp_socket_shutdown_write(piocp_socket fd)
{
    return shutdown(fd, SD_SEND) == SOCKET_ERROR ? wsa_error() : 0;
}

void piocp_socket_shutdown_listener(piocp_socket fd)
{
    /* shutdown() fails on a listening socket here (WSAENOTCONN).  What
     * must end are the pending AcceptEx calls: cancel every one, whichever
     * thread issued it; they complete with ERROR_OPERATION_ABORTED and the
     * backend sees the listener closed. */
    CancelIoEx((HANDLE)fd, NULL);
}

ssize_t piocp_socket_send_now(piocp_socket fd, const void *buf, size_t len)
{
    fd_set writable;
    FD_ZERO(&writable);
    FD_SET(fd, &writable);
    struct timeval now = {0, 0};
    int ready = select(0, NULL, &writable, NULL, &now);
    if (ready == SOCKET_ERROR)
        return wsa_error();
    if (ready == 0)
        return -PIOCP_EWOULDBLOCK;
    int n = send(fd, buf, len > INT_MAX ? INT_MAX : (int)len, 0);
    return n == SOCKET_ERROR ? wsa_error() : n;
}

bool piocp_socket_drain(piocp_socket fd)
{
    char scratch[4096];
    for (;;) {
        /* Only recv what is there, or when select says a recv will not
         * block (the FIN, an error): this works whatever the socket's
         * blocking mode (Windows cannot even tell which it is). */
        u_long available = 0;
        if (ioctlsocket(fd, FIONREAD, &available) == SOCKET_ERROR)
            return true;
        if (available == 0) {
            fd_set readable;
            FD_ZERO(&readable);
            FD_SET(fd, &readable);
            struct timeval now = {0, 0};
            int n = select(0, &readable, NULL, NULL, &now);
            if (n == 0)
                return false; /* nothing yet: more may come, or the FIN */
            if (n == SOCKET_ERROR)
                return true;
        }
        int want = available > 0 && available < sizeof scratch ? (int)available : (int)sizeof scratch;
        int n = recv(fd, scratch, want, 0);
        if (n > 0)
            continue;
        if (n == SOCKET_ERROR && WSAGetLastError() == WSAEWOULDBLOCK)
            return false;
        return true; /* 0: the peer closed; an error: nothing more will come */
    }
}

int piocp_socket_check_connected_stream(piocp_socket fd, struct sockaddr_storage *peer,
                                        socklen_t *peer_len)
{
    int type = 0;
    int len = sizeof type;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, (char *)&type, &len) == SOCKET_ERROR ||
        type != SOCK_STREAM)
        return -PIOCP_EINVAL;
    len = sizeof *peer;
    if (getpeername(fd, (struct sockaddr *)peer, &len) == SOCKET_ERROR)
        return -PIOCP_EINVAL;
    *peer_len = len;
    return 0;
}

int piocp_socket_is_nonblocking(piocp_socket fd)
{
    /* Windows has no call that reads the mode back.  The engine's own I/O
     * on it is overlapped, which never blocks whatever the mode: as far as
     * the engine is concerned it is non-blocking. */
    (void)fd;
    return 1;
}

int piocp_socket_make_nonblocking(piocp_socket fd)
{
    u_long one = 1;
    if (ioctlsocket(fd, FIONBIO, &one) == SOCKET_ERROR)
        return wsa_error();
    not_inherited(fd);
    return 0;
}

int piocp_socket_connect_start(const struct sockaddr *addr, socklen_t addrlen, piocp_socket *out)
{
    /* ConnectEx (TCP only) wants a bound socket: the wildcard address and
     * port 0 of the peer's family, as connect(2) would pick implicitly */
    struct sockaddr_storage local;
    memset(&local, 0, sizeof local);
    int local_len;
    if (addr->sa_family == AF_INET && addrlen >= (socklen_t)sizeof(struct sockaddr_in)) {
        ((struct sockaddr_in *)&local)->sin_family = AF_INET; /* INADDR_ANY, port 0 */
        local_len = sizeof(struct sockaddr_in);
    } else if (addr->sa_family == AF_INET6 && addrlen >= (socklen_t)sizeof(struct sockaddr_in6)) {
        ((struct sockaddr_in6 *)&local)->sin6_family = AF_INET6; /* in6addr_any, port 0 */
        local_len = sizeof(struct sockaddr_in6);
    } else {
        *out = PIOCP_INVALID_SOCKET;
        return -PIOCP_EAFNOSUPPORT;
    }
    int injected = PIOCP_FAULT("socket");
    *out = injected ? INVALID_SOCKET
                    : WSASocketW(addr->sa_family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                                 WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (*out == INVALID_SOCKET) {
        *out = PIOCP_INVALID_SOCKET;
        return injected ? injected : wsa_error();
    }
    /* non-blocking as an accepted socket is: the core's drain reads it */
    u_long one = 1;
    if (ioctlsocket(*out, FIONBIO, &one) == SOCKET_ERROR)
        return wsa_error();
    if (bind(*out, (struct sockaddr *)&local, local_len) == SOCKET_ERROR)
        return wsa_error();
    return -PIOCP_EINPROGRESS; /* the backend's ConnectEx connects it */
}

int piocp_socket_connect_result(piocp_socket fd)
{
    int error = 0;
    int len = sizeof error;
    if (getsockopt(fd, SOL_SOCKET, SO_ERROR, (char *)&error, &len) == SOCKET_ERROR)
        return wsa_error();
    if (error)
        return -piocp_error_from_win32((unsigned long)error);
    struct sockaddr_storage peer;
    len = sizeof peer;
    if (getpeername(fd, (struct sockaddr *)&peer, &len) == 0)
        return 0;
    int rc = wsa_error();
    return rc == -PIOCP_ENOTCONN ? -PIOCP_EINPROGRESS : rc;
}

int piocp_file_size(piocp_file fd, uint64_t *size)
{
    /* a disk file only: a pipe or a console has no size to transmit to */
    if (GetFileType(fd) != FILE_TYPE_DISK)
        return -PIOCP_EINVAL;
    LARGE_INTEGER n;
    if (!GetFileSizeEx(fd, &n))
        return -piocp_error_from_win32(GetLastError());
    *size = (uint64_t)n.QuadPart;
    return 0;
}
