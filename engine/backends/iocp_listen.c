/*
 * iocp_listen.c - the IOCP backend's listeners: AcceptEx.
 *
 * IOCP_ACCEPTS_PER_LISTENER AcceptEx calls stay outstanding on each
 * listener, each into a socket made beforehand.  A completion re-arms its
 * accept before the connection is handed to the core, so that the kernel
 * keeps accepting while on_connection runs.  Stopping cancels them
 * (piocp_socket_shutdown_listener: CancelIoEx on the listener), and
 * closing the listener after the workers are gone aborts any re-armed
 * meanwhile; iocp_listeners_destroy waits for those before freeing the
 * OVERLAPPEDs the kernel would still write.
 */
#include "backends/iocp.h"

#include <stdlib.h>
#include <string.h>

typedef struct iocp_accept {
    iocp_io io;
    iocp_listen *owner;
    piocp_listener *listener;
    /* The socket AcceptEx accepts into: set before the call, under the
     * lock, since another worker may take the completion before AcceptEx
     * returns (it then waits for the lock). */
    SOCKET sock;
    bool pending;                  /* the kernel holds it */
    char addresses[2 * (sizeof(struct sockaddr_storage) + 16)];
} iocp_accept;

struct iocp_listen {
    piocp_mutex lock;              /* the accepts' sock and pending */
    int family;
    LPFN_ACCEPTEX accept_ex;
    LPFN_GETACCEPTEXSOCKADDRS get_addresses;
    iocp_accept accepts[IOCP_ACCEPTS_PER_LISTENER];
};

/* Starts AcceptEx on `a` (its listener's lock held).  false: not started
 * (the listener is closed or paused, or failed with an error it should not
 * retry now); resume_listener arms it again. */
static bool arm_accept_locked(iocp_listen *il, iocp_accept *a)
{
    piocp_listener *l = a->listener;
    while (piocp_listener_accepting(l)) {
        int rc = PIOCP_FAULT("socket");
        SOCKET s = rc ? INVALID_SOCKET
                      : WSASocketW(il->family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                                   WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
        if (rc == 0 && s == INVALID_SOCKET)
            rc = iocp_wsa_error();
        if (rc == 0) {
            memset(&a->io.ov, 0, sizeof a->io.ov);
            a->sock = s;
            a->pending = true;
            DWORD bytes = 0;
            rc = PIOCP_FAULT("acceptex"); /* fails as Winsock would, not started */
            if (rc == 0 && (il->accept_ex(l->fd, s, a->addresses, 0, IOCP_ACCEPT_ADDRESS_LEN,
                                          IOCP_ACCEPT_ADDRESS_LEN, &bytes, &a->io.ov) ||
                            WSAGetLastError() == ERROR_IO_PENDING))
                return true; /* done at once or not, the completion comes through the port */
            if (rc == 0)
                rc = iocp_wsa_error();
            a->pending = false;
            a->sock = INVALID_SOCKET;
            closesocket(s);
        }
        /* a transient error concerned one client: try again */
        if (!piocp_listener_accept_failed(l, rc))
            return false;
    }
    return false;
}

static void arm_idle_accepts(iocp_listen *il)
{
    piocp_mutex_lock(&il->lock);
    for (int i = 0; i < IOCP_ACCEPTS_PER_LISTENER; i++)
        if (!il->accepts[i].pending && !arm_accept_locked(il, &il->accepts[i]))
            break;
    piocp_mutex_unlock(&il->lock);
}

int iocp_add_listener(piocp_engine *e, piocp_listener *l)
{
    iocp_backend *b = e->backend_data;
    WSAPROTOCOL_INFOW info;
    int len = sizeof info;
    if (getsockopt(l->fd, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&info, &len) == SOCKET_ERROR)
        return iocp_wsa_error();
    iocp_listen *il = calloc(1, sizeof *il);
    if (!il)
        return -PIOCP_ENOMEM;
    il->family = info.iAddressFamily;
    il->accept_ex = (LPFN_ACCEPTEX)iocp_extension(l->fd, (GUID)WSAID_ACCEPTEX);
    il->get_addresses =
        (LPFN_GETACCEPTEXSOCKADDRS)iocp_extension(l->fd, (GUID)WSAID_GETACCEPTEXSOCKADDRS);
    int rc = il->accept_ex && il->get_addresses ? iocp_associate(e, l->fd) : -PIOCP_EOPNOTSUPP;
    if (rc < 0) {
        free(il);
        return rc;
    }
    piocp_mutex_init(&il->lock);
    for (int i = 0; i < IOCP_ACCEPTS_PER_LISTENER; i++) {
        iocp_accept *a = &il->accepts[i];
        a->io.kind = IOCP_IO_ACCEPT;
        a->io.accept = a;
        a->owner = il;
        a->listener = l;
        a->sock = INVALID_SOCKET;
    }
    b->listeners[l->index] = il;
    arm_idle_accepts(il);
    return 0;
}

void iocp_resume_listener(piocp_engine *e, piocp_listener *l)
{
    iocp_backend *b = e->backend_data;
    if (b->listeners[l->index])
        arm_idle_accepts(b->listeners[l->index]);
}

/* A shared listener closed: its pending accepts end (aborted) without
 * shutting the socket down for the other processes. */
void iocp_stop_listener(piocp_engine *e, piocp_listener *l)
{
    (void)e;
    CancelIoEx((HANDLE)l->fd, NULL);
}

/* The peer's address from AcceptEx's buffer, copied out of it (the buffer
 * is reused by the next accept). */
static socklen_t peer_address(iocp_listen *il, iocp_accept *a, struct sockaddr_storage *out)
{
    struct sockaddr *local = NULL, *peer = NULL;
    int local_len = 0, peer_len = 0;
    il->get_addresses(a->addresses, 0, IOCP_ACCEPT_ADDRESS_LEN, IOCP_ACCEPT_ADDRESS_LEN, &local,
                      &local_len, &peer, &peer_len);
    memset(out, 0, sizeof *out);
    if (!peer || peer_len <= 0 || (size_t)peer_len > sizeof *out)
        return 0;
    memcpy(out, peer, (size_t)peer_len);
    return peer_len;
}

void iocp_on_accept(piocp_engine *e, iocp_io *io, bool ok)
{
    (void)e;
    iocp_accept *a = io->accept;
    iocp_listen *il = a->owner;
    piocp_listener *l = a->listener;
    int error = ok ? 0 : iocp_overlapped_error(l->fd, &io->ov);
    piocp_mutex_lock(&il->lock);
    SOCKET s = a->sock;
    a->sock = INVALID_SOCKET;
    a->pending = false;
    struct sockaddr_storage peer;
    socklen_t peer_len = error == 0 ? peer_address(il, a, &peer) : 0;
    /* without it getpeername, shutdown... fail on the accepted socket */
    if (error == 0 && setsockopt(s, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (const char *)&l->fd,
                                 sizeof l->fd) == SOCKET_ERROR)
        error = iocp_wsa_error();
    if (error < 0)
        closesocket(s);
    /* One client's failure (it reset before the accept finished:
     * ERROR_NETNAME_DELETED) is not the listener's: it goes on.  Re-armed
     * before the hand-off, to keep the accepts outstanding. */
    if (error == 0 || (!atomic_load(&l->closed) && piocp_listener_accept_failed(l, error)))
        arm_accept_locked(il, a);
    piocp_mutex_unlock(&il->lock);
    if (error == 0)
        piocp_accept_completed(l, s, (struct sockaddr *)&peer, peer_len);
}

void iocp_listeners_destroy(iocp_backend *b)
{
    /* The listeners' sockets are closed by now (the core closes them
     * before the backend goes): what the kernel still holds comes back
     * aborted, shortly.  Bounded, in case a port never delivers. */
    long long give_up = piocp_now_ms() + 2000;
    for (;;) {
        int held = 0;
        for (int i = 0; i < PIOCP_MAX_LISTENERS; i++)
            for (int j = 0; b->listeners[i] && j < IOCP_ACCEPTS_PER_LISTENER; j++)
                held += b->listeners[i]->accepts[j].pending;
        if (held == 0 || piocp_now_ms() >= give_up)
            break;
        OVERLAPPED_ENTRY entries[16];
        ULONG n = 0;
        if (!GetQueuedCompletionStatusEx(b->port, entries, 16, &n, 100, FALSE))
            continue;
        for (ULONG k = 0; k < n; k++) {
            iocp_io *io = (iocp_io *)entries[k].lpOverlapped;
            if (io && io->kind == IOCP_IO_ACCEPT)
                io->accept->pending = false; /* its socket is closed below */
        }
    }
    for (int i = 0; i < PIOCP_MAX_LISTENERS; i++) {
        iocp_listen *il = b->listeners[i];
        if (!il)
            continue;
        for (int j = 0; j < IOCP_ACCEPTS_PER_LISTENER; j++)
            if (il->accepts[j].sock != INVALID_SOCKET)
                closesocket(il->accepts[j].sock);
        piocp_mutex_destroy(&il->lock);
        free(il);
        b->listeners[i] = NULL;
    }
}
