/*
 * iocp.h - what the IOCP backend's files share (backends/iocp.c: the
 * port, the workers' waits; iocp_listen.c: AcceptEx; iocp_conn.c: a
 * connection's recv, sends, cancels and lingering close).  Private to the
 * backend.
 */
#ifndef PYIOCP_BACKENDS_IOCP_H
#define PYIOCP_BACKENDS_IOCP_H

#include "core/backend.h"
#include "core/fault.h"
#include "platform/platform.h"

#include <winsock2.h>
#include <ws2tcpip.h>
#include <mswsock.h>
#include <windows.h>

/* AcceptEx calls kept outstanding per listener: a burst of clients does not
 * wait for one accept to be re-armed after the other. */
#define IOCP_ACCEPTS_PER_LISTENER 8
/* AcceptEx wants room for each address plus 16 bytes. */
#define IOCP_ACCEPT_ADDRESS_LEN ((DWORD)sizeof(struct sockaddr_storage) + 16)

/* Completion keys: the packets we post ourselves (OVERLAPPED NULL), and
 * every handle we associate (its I/O carries an iocp_io). */
enum { IOCP_KEY_IO = 1, IOCP_KEY_WAKE = 2, IOCP_KEY_QUIT = 3 };

/* IOCP_IO_CONNECT: a connecting connection's ConnectEx, on send_io (no
 * send can be posted before the connection is handed over). */
typedef enum iocp_io_kind {
    IOCP_IO_RECV,
    IOCP_IO_SEND,
    IOCP_IO_ACCEPT,
    IOCP_IO_CONNECT
} iocp_io_kind;

struct iocp_accept;

/* One overlapped operation.  The OVERLAPPED comes first, so the pointer a
 * completion carries is the iocp_io. */
typedef struct iocp_io {
    OVERLAPPED ov;
    iocp_io_kind kind;
    piocp_conn *conn;              /* IOCP_IO_RECV, IOCP_IO_SEND, IOCP_IO_CONNECT */
    struct iocp_accept *accept;    /* IOCP_IO_ACCEPT */
} iocp_io;

typedef struct iocp_listen iocp_listen;

typedef struct iocp_backend {
    HANDLE port;
    /* PIOCP_WINDOWS_TRANSMIT_FILE or _READ_SEND: "auto" resolved at init */
    int transmit_path;
    /* The read+send path's buffers, by connection slot: made on a slot's
     * first such transmit and kept for the engine's life (a slot's backend
     * part is zeroed when it is reused, so it cannot hold them). */
    char **read_bufs;
    /* Written by add_listener before its first AcceptEx; read by the
     * workers only through completions of that listener's accepts. */
    iocp_listen *listeners[PIOCP_MAX_LISTENERS];
} iocp_backend;

/* -PIOCP_E* of the calling thread's last Winsock error. */
static inline int iocp_wsa_error(void)
{
    return -piocp_error_from_win32((unsigned long)WSAGetLastError());
}

/* The error of a failed overlapped operation on `s` (open: a connection's
 * socket closes only after its completions, a listener's only after the
 * workers are gone). */
int iocp_overlapped_error(SOCKET s, OVERLAPPED *ov);

/* A Winsock extension function (AcceptEx, ConnectEx...) of `s`'s
 * provider, or NULL. */
void *iocp_extension(SOCKET s, GUID guid);

/* Associates `s` with the engine's port (once for the handle's life). */
int iocp_associate(piocp_engine *e, SOCKET s);
/* Asks that an operation on `s` that succeeds at once queue no completion
 * packet (FILE_SKIP_COMPLETION_PORT_ON_SUCCESS), where that is safe: only
 * if the socket's provider is an IFS one.  true if it is set. */
bool iocp_skip_port_on_success(SOCKET s);

/* iocp_listen.c */
int iocp_add_listener(piocp_engine *e, piocp_listener *l);
void iocp_resume_listener(piocp_engine *e, piocp_listener *l);
void iocp_stop_listener(piocp_engine *e, piocp_listener *l);
/* An AcceptEx came back (`ok`: it succeeded). */
void iocp_on_accept(piocp_engine *e, iocp_io *io, bool ok);
/* The engine goes: waits for the accepts still held by the kernel (their
 * listeners are closed, so they come back aborted) and frees the state. */
void iocp_listeners_destroy(iocp_backend *b);

/* iocp_conn.c */
/* A connection's completion, recorded for its turn to act on. */
typedef struct iocp_result {
    bool ready;
    DWORD bytes;
    int error;                     /* 0 or -PIOCP_E* */
} iocp_result;

/* A connection's part (piocp_conn_backend): its two operations. */
typedef struct iocp_conn {
    iocp_io recv_io, send_io;
    /* The transmit step send_io holds: what it asked for of the head and of
     * the file, to split its byte count and to tell the file's end (fewer
     * file bytes than asked); whether the file bytes are a copy (read+send). */
    size_t step_head;
    uint64_t step_file;
    bool step_copied;
    TRANSMIT_FILE_BUFFERS step_buffers; /* TransmitFile's head: valid until it completes */
    bool recv_pending, send_pending;  /* the kernel holds it */
    bool linger_recv;                 /* the pending recv is the lingering close's */
    bool cancel_started;              /* CancelIoEx for the close went out */
    bool send_cancel_started, recv_cancel_started;
    bool connect_pending;             /* the ConnectEx on send_io */
    bool skip_port_on_success;        /* an operation done at once queues no packet */
    iocp_result recv_result, send_result, connect_result;
} iocp_conn;

int iocp_add_conn(piocp_worker *w, piocp_conn *c);
bool iocp_run(piocp_worker *w, piocp_conn *c, piocp_done_list *done, size_t *budget);
bool iocp_cancel_recv(piocp_worker *w, piocp_conn *c);
bool iocp_cancel_send(piocp_worker *w, piocp_conn *c);
void iocp_cancel(piocp_worker *w, piocp_conn *c);
int iocp_park(piocp_worker *w, piocp_conn *c);
/* A connection's WSARecv or WSASend came back (any worker may get it). */
void iocp_on_conn_io(iocp_io *io, DWORD bytes, bool ok);
/* An operation on `io` was just started (its pending flag set, in_kernel
 * counted) and its call returned success at once: on a socket that skips
 * the port on success no packet will come, so it completes here, as the
 * packet would have.  Elsewhere nothing happens: the packet comes. */
void iocp_finished_at_once_locked(piocp_conn *c, iocp_io *io);
/* Starts a WSASend of `bufs` on send_io; a failure sets c->abort_error. */
void iocp_start_send(piocp_conn *c, iocp_conn *ic, WSABUF *bufs, DWORD count);

/* iocp_connect.c */
/* Starts ConnectEx on a connecting connection's bound socket (add_conn):
 * 0, or -PIOCP_E* if it could not start. */
int iocp_start_connect(piocp_conn *c, iocp_conn *ic);
/* ops->connect_result: 0 connected, -PIOCP_EINPROGRESS, or the error. */
int iocp_connect_result(piocp_conn *c);

/* iocp_transmit.c */
/* Resolves piocp_config.windows_transmit and makes the buffer table. */
int iocp_transmit_init(piocp_engine *e, iocp_backend *b);
void iocp_transmit_destroy(piocp_engine *e, iocp_backend *b);
/* A worker's event for waiting on a file read (w->backend). */
int iocp_transmit_worker_init(piocp_worker *w);
void iocp_transmit_worker_exit(piocp_worker *w);
/* Moves the transmit at the head of the send queue on: starts its next
 * step on send_io and returns false, or returns true when nothing is left
 * to send (the caller completes it).  A failure sets c->abort_error. */
bool iocp_transmit_step(piocp_worker *w, piocp_conn *c, iocp_conn *ic, piocp_request *r);
/* The step came back with `bytes` (also a failed or cancelled one: what it
 * moved counts).  Returns true when `r` is complete; sets c->abort_error
 * (-EIO) when the file ended before the count. */
bool iocp_transmit_took(piocp_conn *c, iocp_conn *ic, piocp_request *r, DWORD bytes, bool ok);

#endif
