/*
 * iocp.c - Windows I/O completion ports: true completions.
 *
 * One completion port per engine, and every worker waits on it in
 * GetQueuedCompletionStatusEx, taking a batch of entries per wait.  That is
 * the classic IOCP server: the kernel hands each completion to one waiting
 * worker (the most recent waiter first, which keeps caches warm), so no
 * connection belongs to a worker (conn->owner stays -1) and a post made on
 * any thread lands on the global list and one wake-up packet.
 *
 * An entry with a NULL OVERLAPPED is a packet we posted ourselves
 * (PostQueuedCompletionStatus): its completion key says what it is, a
 * wake-up or the quit.  The others are I/O completions: AcceptEx
 * (iocp_listen.c), a connection's WSARecv, WSASend, TransmitFile or
 * ConnectEx (iocp_conn.c, iocp_transmit.c, iocp_connect.c).
 *
 * The idle sweep and the user timers need no timer of their own: worker 0
 * waits with the timeout the core asks for (core/loop.c), and a wait that
 * times out returns nothing.
 */
#include "backends/iocp.h"

#include <stdlib.h>

/* Entries one wait may take: a batch, as the core hands one to the binding. */
#define MAX_ENTRIES 64

/* Winsock must be started before any socket call: once per process (each
 * WSAStartup must be matched by a WSACleanup, so the count stays at one for
 * the process's life, as the binding's sockets need it too). */
static piocp_once wsa_once = PIOCP_ONCE_INIT;
static int wsa_error_at_start;

static void start_winsock(void)
{
    WSADATA data;
    int rc = WSAStartup(MAKEWORD(2, 2), &data);
    wsa_error_at_start = rc ? -piocp_error_from_win32((unsigned long)rc) : 0;
}

static int iocp_probe(void)
{
    piocp_once_run(&wsa_once, start_winsock);
    return wsa_error_at_start;
}

/* ------------------------------------------------------------ engine -- */

static void iocp_destroy(piocp_engine *e)
{
    iocp_backend *b = e->backend_data;
    if (b->port) {
        iocp_listeners_destroy(b);
        CloseHandle(b->port);
    }
    iocp_transmit_destroy(e, b);
    free(b);
    e->backend_data = NULL;
}

static int iocp_init(piocp_engine *e)
{
    int rc = iocp_probe();
    if (rc < 0)
        return rc;
    iocp_backend *b = calloc(1, sizeof *b);
    if (!b)
        return -PIOCP_ENOMEM;
    e->backend_data = b;
    rc = iocp_transmit_init(e, b);
    if (rc < 0) {
        iocp_destroy(e);
        return rc;
    }
    /* concurrency = our worker count: the kernel lets that many run at
     * once, and wakes another waiter when one blocks */
    b->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, (DWORD)e->threads);
    if (!b->port) {
        rc = -piocp_error_from_win32(GetLastError());
        b->port = NULL;
        iocp_destroy(e);
        return rc;
    }
    return 0;
}

static void post_packet(piocp_engine *e, ULONG_PTR key)
{
    iocp_backend *b = e->backend_data;
    /* fails only when the kernel is out of memory for the packet; the
     * sweeper's timeout then brings a worker round within a sweep period */
    PostQueuedCompletionStatus(b->port, 0, key, NULL);
}

/* the global list and user completions: any worker will do */
static void iocp_wake(piocp_engine *e) { post_packet(e, IOCP_KEY_WAKE); }

/* Connections have no owner here (the port gives any completion to any
 * worker), so the core never fills a worker's remote list; should it, a
 * wake-up of any worker that takes it is what there is. */
static void iocp_wake_worker(piocp_worker *w) { post_packet(w->engine, IOCP_KEY_WAKE); }

/* One quit packet, passed on by every worker that takes it: the port
 * cannot address a worker, and a worker that took two packets of one per
 * worker would leave another waiting for ever. */
static void iocp_post_quit(piocp_engine *e) { post_packet(e, IOCP_KEY_QUIT); }

/* ---------------------------------------------------------- handles -- */

int iocp_associate(piocp_engine *e, SOCKET s)
{
    iocp_backend *b = e->backend_data;
    int injected = PIOCP_FAULT("iocp_associate");
    if (injected)
        return injected;
    /* a handle belongs to one port for life: one already on another port
     * (an event loop's) is refused here */
    if (!CreateIoCompletionPort((HANDLE)s, b->port, IOCP_KEY_IO, 0))
        return -piocp_error_from_win32(GetLastError());
    return 0;
}

bool iocp_skip_port_on_success(SOCKET s)
{
    /* A non-IFS layered provider (an old firewall's or antivirus' LSP)
     * completes through its own path, and with this mode set its
     * completions can be lost: libuv and .NET check the same flag. */
    WSAPROTOCOL_INFOW info;
    int len = sizeof info;
    if (getsockopt(s, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&info, &len) == SOCKET_ERROR ||
        !(info.dwServiceFlags1 & XP1_IFS_HANDLES))
        return false;
    return SetFileCompletionNotificationModes(
               (HANDLE)s, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS | FILE_SKIP_SET_EVENT_ON_HANDLE) != 0;
}

void *iocp_extension(SOCKET s, GUID guid)
{
    void *fn = NULL;
    DWORD bytes = 0;
    if (WSAIoctl(s, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof guid, &fn, sizeof fn,
                 &bytes, NULL, NULL) == SOCKET_ERROR)
        return NULL;
    return fn;
}

int iocp_overlapped_error(SOCKET s, OVERLAPPED *ov)
{
    /* WSAGetOverlappedResult turns the NTSTATUS the kernel left in the
     * OVERLAPPED into the Winsock error a synchronous call would give */
    DWORD bytes = 0, flags = 0;
    if (WSAGetOverlappedResult(s, ov, &bytes, FALSE, &flags))
        return -PIOCP_EIO; /* a failure it calls a success: should not happen */
    return iocp_wsa_error();
}

/* ------------------------------------------------------------ worker -- */

static int iocp_poll(piocp_worker *w, int timeout_ms)
{
    piocp_engine *e = w->engine;
    iocp_backend *b = e->backend_data;
    OVERLAPPED_ENTRY entries[MAX_ENTRIES];
    ULONG n = 0;
    DWORD wait = timeout_ms < 0 ? INFINITE : (DWORD)timeout_ms;
    if (!GetQueuedCompletionStatusEx(b->port, entries, MAX_ENTRIES, &n, wait, FALSE)) {
        DWORD error = GetLastError();
        return error == WAIT_TIMEOUT ? 0 : -piocp_error_from_win32(error);
    }
    int result = 0;
    for (ULONG i = 0; i < n; i++) {
        OVERLAPPED *ov = entries[i].lpOverlapped;
        if (ov) {
            /* I/O, failed or not: Internal holds its NTSTATUS, negative for
             * an error (what HasOverlappedIoCompleted reads too) */
            iocp_io *io = (iocp_io *)ov;
            bool ok = (LONG)ov->Internal >= 0;
            if (io->kind == IOCP_IO_ACCEPT)
                iocp_on_accept(e, io, ok);
            else
                iocp_on_conn_io(io, entries[i].dwNumberOfBytesTransferred, ok);
            continue;
        }
        if (entries[i].lpCompletionKey == IOCP_KEY_QUIT)
            post_packet(e, IOCP_KEY_QUIT); /* for the next worker: see iocp_post_quit */
        result |= PIOCP_POLL_WOKEN;
    }
    return result;
}

const piocp_backend_ops piocp_backend_iocp = {
    .name = "iocp",
    .conn_size = sizeof(iocp_conn),
    .probe = iocp_probe,
    .init = iocp_init,
    .destroy = iocp_destroy,
    .worker_init = iocp_transmit_worker_init,
    .worker_exit = iocp_transmit_worker_exit,
    .poll = iocp_poll,
    .wake = iocp_wake,
    .wake_worker = iocp_wake_worker,
    .post_quit = iocp_post_quit,
    .add_listener = iocp_add_listener,
    .resume_listener = iocp_resume_listener,
    .stop_listener = iocp_stop_listener,
    .add_conn = iocp_add_conn,
    .run = iocp_run,
    .cancel_recv = iocp_cancel_recv,
    .cancel_send = iocp_cancel_send,
    .cancel = iocp_cancel,
    .park = iocp_park,
    .connect_result = iocp_connect_result,
};
