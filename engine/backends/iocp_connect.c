/*
 * iocp_connect.c - the IOCP backend's outbound connects: ConnectEx.
 *
 * A completion port only reports completions, never readiness, so the
 * core's way of connecting (a non-blocking connect(2), then waiting for the
 * socket to turn writable) has nothing to wait on here.  ConnectEx is the
 * overlapped connect: platform/windows/socket.c makes the socket and binds
 * it (ConnectEx wants a bound socket), add_conn associates it and starts
 * the ConnectEx on send_io (no send can be posted before the connection is
 * handed over), and its completion is recorded like a recv's or a send's
 * (iocp_on_conn_io).  The core's connect turn then asks connect_result.
 *
 * A timeout or a stop sets the connection's abort_error; the close then
 * cancels the ConnectEx (iocp_cancel: CancelIoEx) and closes the socket
 * only once its completion is in, and the core tells `done` once.
 */
#include "backends/iocp.h"

#include <string.h>

int iocp_start_connect(piocp_conn *c, iocp_conn *ic)
{
    /* looked up per connect: one WSAIoctl is nothing next to a TCP
     * handshake, and the provider is the socket's own */
    LPFN_CONNECTEX connect_ex = (LPFN_CONNECTEX)iocp_extension(c->fd, (GUID)WSAID_CONNECTEX);
    if (!connect_ex)
        return -PIOCP_EOPNOTSUPP;
    int injected = PIOCP_FAULT("connectex"); /* fails as Winsock would, not started */
    if (injected)
        return injected;
    ic->send_io.kind = IOCP_IO_CONNECT;
    memset(&ic->send_io.ov, 0, sizeof ic->send_io.ov);
    BOOL done = connect_ex(c->fd, (const struct sockaddr *)&c->peer, (int)c->peer_len, NULL, 0,
                           NULL, &ic->send_io.ov);
    if (!done && WSAGetLastError() != ERROR_IO_PENDING) {
        ic->send_io.kind = IOCP_IO_SEND;
        return iocp_wsa_error(); /* the core reports it to `done` */
    }
    ic->connect_pending = true;
    c->in_kernel++;
    if (done)
        iocp_finished_at_once_locked(c, &ic->send_io);
    return 0;
}

int iocp_connect_result(piocp_conn *c)
{
    iocp_conn *ic = piocp_conn_backend(c);
    if (ic->connect_pending || !ic->connect_result.ready)
        return -PIOCP_EINPROGRESS;
    iocp_result res = ic->connect_result;
    ic->connect_result.ready = false; /* read once: a failure closes it, a success hands it over */
    ic->send_io.kind = IOCP_IO_SEND;
    if (res.error < 0)
        return res.error; /* refused, unreachable...: the close tells `done` */
    /* A ConnectEx socket is not fully connected for the other calls until
     * this: without it getpeername and shutdown fail (WSAENOTCONN). */
    if (setsockopt(c->fd, SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0) == SOCKET_ERROR)
        return iocp_wsa_error();
    return 0;
}
