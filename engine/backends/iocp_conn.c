/*
 * iocp_conn.c - the IOCP backend's connections: WSARecv, WSASend,
 * CancelIoEx, and the lingering close's zero-byte WSARecv (a transmit's
 * steps are iocp_transmit.c's, on the same send_io).
 *
 * The socket is associated with the port once (add_conn).  A recv is one
 * WSARecv, the head of the send queue one WSASend.  Their OVERLAPPEDs live
 * in the connection's slot, which outlives every completion (slots are not
 * freed before the engine, and a socket closes only once conn->in_kernel
 * is back to 0).
 *
 * A completion may come to any worker, also while another runs the
 * connection's turn: it only records its result under the lock and
 * schedules the connection, and the turn (`run`) completes the request.
 * So a connection's callbacks stay serialised, as on the other backends,
 * although the port hands completions to whichever worker waits.
 */
#include "backends/iocp.h"

#include <string.h>

/* WSABUF lengths are ULONGs: a larger request moves in several calls. */
static ULONG wsabuf_len(size_t len) { return (ULONG)(len > 0x7fffffff ? 0x7fffffff : len); }

int iocp_add_conn(piocp_worker *w, piocp_conn *c)
{
    (void)w;
    /* A handle joins one completion port for life, and a lent socket's
     * owner (asyncio's Proactor) has put it on its own port already: our
     * completions could never reach us.  Refused before anything is done
     * to it, so it goes back untouched (documented at piocp_borrow). */
    if (c->borrowed)
        return -PIOCP_EOPNOTSUPP;
    iocp_conn *ic = piocp_conn_backend(c);
    ic->recv_io.kind = IOCP_IO_RECV;
    ic->recv_io.conn = c;
    ic->send_io.kind = IOCP_IO_SEND;
    ic->send_io.conn = c;
    c->owner = -1; /* any worker: the port decides who gets a completion */
    /* an adopted socket already on another port fails here (EINVAL) */
    int rc = iocp_associate(c->engine, c->fd);
    if (rc == 0)
        ic->skip_port_on_success = iocp_skip_port_on_success(c->fd);
    if (rc == 0 && c->connecting)
        rc = iocp_start_connect(c, ic);
    return rc;
}

/* Fault builds: the points "wsarecv" and "wsasend" fail the call as
 * Winsock would, without making it (nothing is then pending); "wsarecv"
 * may also shrink the buffer, so the kernel really reads less. */
static void start_recv(piocp_conn *c, iocp_conn *ic, char *buf, size_t len, bool linger)
{
    ptrdiff_t use = PIOCP_FAULT_SHORT("wsarecv", len);
    if (use < 0) {
        if (!c->abort_error)
            c->abort_error = (int)use;
        return;
    }
    WSABUF wsabuf = {.len = wsabuf_len((size_t)use), .buf = buf};
    DWORD flags = 0;
    memset(&ic->recv_io.ov, 0, sizeof ic->recv_io.ov);
    int rc = WSARecv(c->fd, &wsabuf, 1, NULL, &flags, &ic->recv_io.ov, NULL);
    if (rc == 0 || WSAGetLastError() == WSA_IO_PENDING) {
        ic->recv_pending = true;
        ic->linger_recv = linger;
        c->in_kernel++;
        if (rc == 0)
            iocp_finished_at_once_locked(c, &ic->recv_io);
    } else if (!c->abort_error) {
        c->abort_error = iocp_wsa_error();
    }
}

void iocp_start_send(piocp_conn *c, iocp_conn *ic, WSABUF *bufs, DWORD count)
{
    int injected = PIOCP_FAULT("wsasend");
    if (injected) {
        if (!c->abort_error)
            c->abort_error = injected;
        return;
    }
    memset(&ic->send_io.ov, 0, sizeof ic->send_io.ov);
    int rc = WSASend(c->fd, bufs, count, NULL, 0, &ic->send_io.ov, NULL);
    if (rc == 0 || WSAGetLastError() == WSA_IO_PENDING) {
        ic->send_pending = true;
        c->in_kernel++;
        if (rc == 0)
            iocp_finished_at_once_locked(c, &ic->send_io);
    } else if (!c->abort_error) {
        c->abort_error = iocp_wsa_error();
    }
}

/* The recv's recorded completion, if any: completes the recv request (a
 * cancelled one with -ECANCELED, or with the bytes it got first). */
static void harvest_recv(piocp_conn *c, iocp_conn *ic, piocp_done_list *done)
{
    if (!ic->recv_result.ready)
        return;
    iocp_result res = ic->recv_result;
    ic->recv_result.ready = false;
    piocp_request *r = c->recv_req;
    if (!r)
        return;
    if (res.error == 0 || res.error == -PIOCP_ECANCELED) {
        c->recv_req = NULL;
        if (res.error == 0 && res.bytes > 0)
            piocp_touch(c);
        piocp_done_push(done, r, res.error ? res.error : (ssize_t)res.bytes);
    } else if (!c->abort_error) {
        c->abort_error = res.error; /* the close fails the recv with it */
    }
}

/* The head send's recorded completion: its bytes count as sent, and a
 * failure breaks the stream (unless piocp_cancel asked for it).  Returns
 * the head if the completion finished it (it is still the head). */
static piocp_request *take_send_result(piocp_conn *c, iocp_conn *ic)
{
    if (!ic->send_result.ready)
        return NULL;
    iocp_result res = ic->send_result;
    ic->send_result.ready = false;
    piocp_request *r = c->send_head;
    if (!r)
        return NULL;
    bool finished;
    if (r->op == PIOCP_OP_TRANSMIT) {
        finished = iocp_transmit_took(c, ic, r, res.bytes, res.error == 0);
    } else {
        if (res.bytes > 0)
            piocp_sent_locked(c, r, res.bytes);
        finished = r->op == PIOCP_OP_SEND && r->done == r->u.send.len;
    }
    if (res.error < 0) {
        if (!(res.error == -PIOCP_ECANCELED && r->cancelling) && !c->abort_error)
            c->abort_error = res.error;
        return NULL;
    }
    return finished ? r : NULL;
}

static void pop_send_head(piocp_conn *c, piocp_done_list *done, ssize_t result)
{
    piocp_request *r = c->send_head;
    c->send_head = r->next;
    if (!c->send_head)
        c->send_tail = NULL;
    piocp_done_push(done, r, result);
}

/* Starts the next sends: shutdowns and empty sends complete here, the
 * first send with bytes left goes to the kernel. */
static void run_sends(piocp_worker *w, piocp_conn *c, iocp_conn *ic, piocp_done_list *done)
{
    while (c->send_head && !ic->send_pending && !c->abort_error) {
        piocp_request *r = c->send_head;
        if (r->cancelling)
            return; /* the next turn's resolve_cancels ends it */
        if (r->op == PIOCP_OP_SEND && r->done < r->u.send.len) {
            WSABUF wsabuf = {.len = wsabuf_len(r->u.send.len - r->done),
                             .buf = (char *)r->u.send.buf + r->done};
            iocp_start_send(c, ic, &wsabuf, 1);
            return;
        }
        if (r->op == PIOCP_OP_TRANSMIT && !iocp_transmit_step(w, c, ic, r))
            return; /* a step went to the kernel, or the transmit failed */
        ssize_t result = (ssize_t)r->done;
        if (r->op == PIOCP_OP_SHUTDOWN)
            result = piocp_socket_shutdown_write(c->fd); /* after every byte before it */
        pop_send_head(c, done, result);
    }
}

bool iocp_run(piocp_worker *w, piocp_conn *c, piocp_done_list *done, size_t *budget)
{
    (void)budget; /* the kernel moves the bytes: a turn only starts operations */
    iocp_conn *ic = piocp_conn_backend(c);
    harvest_recv(c, ic, done);
    piocp_request *sent = take_send_result(c, ic);
    if (sent)
        pop_send_head(c, done, (ssize_t)sent->done);
    if (c->recv_req && !ic->recv_pending && !c->recv_req->cancelling && !c->abort_error)
        start_recv(c, ic, c->recv_req->u.recv.buf, c->recv_req->u.recv.len, false);
    run_sends(w, c, ic, done);
    return true;
}

bool iocp_cancel_recv(piocp_worker *w, piocp_conn *c)
{
    (void)w;
    iocp_conn *ic = piocp_conn_backend(c);
    /* Came back already, not yet taken: this turn's run completes it with
     * what it got (bytes the socket gave up must not be lost), or a close
     * fails it. */
    if (ic->recv_result.ready)
        return true;
    if (!ic->recv_pending)
        return false;
    if (!ic->recv_cancel_started) {
        ic->recv_cancel_started = true;
        CancelIoEx((HANDLE)c->fd, &ic->recv_io.ov);
    }
    return true;
}

bool iocp_cancel_send(piocp_worker *w, piocp_conn *c)
{
    (void)w;
    iocp_conn *ic = piocp_conn_backend(c);
    if (!ic->send_pending) {
        /* what came back counts as sent before the core ends it */
        (void)take_send_result(c, ic);
        return false;
    }
    if (!ic->send_cancel_started) {
        ic->send_cancel_started = true;
        CancelIoEx((HANDLE)c->fd, &ic->send_io.ov);
    }
    return true;
}

/* Closing with operations pending: every one of them, once; they come back
 * aborted (or done), and the core closes the socket at in_kernel 0. */
void iocp_cancel(piocp_worker *w, piocp_conn *c)
{
    (void)w;
    iocp_conn *ic = piocp_conn_backend(c);
    if (ic->cancel_started)
        return;
    ic->cancel_started = true;
    CancelIoEx((HANDLE)c->fd, NULL);
}

/* Lingering: a zero-byte WSARecv completes when the peer sends or closes,
 * without taking any byte (the turn drains them). */
int iocp_park(piocp_worker *w, piocp_conn *c)
{
    (void)w;
    iocp_conn *ic = piocp_conn_backend(c);
    if (c->lingering && !ic->recv_pending && c->fd != PIOCP_INVALID_SOCKET) {
        static char nothing[1];
        start_recv(c, ic, nothing, 0, true);
        if (c->abort_error)
            return c->abort_error;
    }
    return 0;
}

/* Records a completion for the connection's turn and schedules it. */
static void completed_locked(piocp_conn *c, iocp_io *io, DWORD bytes, bool ok)
{
    iocp_conn *ic = piocp_conn_backend(c);
    iocp_result res = {.ready = true, .bytes = bytes, .error = 0};
    if (!ok)
        res.error = iocp_overlapped_error(c->fd, &io->ov);
    if (io->kind == IOCP_IO_CONNECT) {
        ic->connect_pending = false;
        ic->connect_result = res; /* the connect's turn reads it */
    } else if (io->kind == IOCP_IO_RECV) {
        ic->recv_pending = false;
        ic->recv_cancel_started = false;
        if (!ic->linger_recv)
            ic->recv_result = res; /* the lingering close's: the turn drains */
        ic->linger_recv = false;
    } else {
        ic->send_pending = false;
        ic->send_cancel_started = false;
        ic->send_result = res;
    }
    if (--c->in_kernel == 0)
        ic->cancel_started = false; /* what starts later needs a cancel of its own */
    piocp_schedule_on_owner_locked(c);
}

void iocp_on_conn_io(iocp_io *io, DWORD bytes, bool ok)
{
    piocp_conn *c = io->conn;
    /* never stale: the socket closes only once every completion is in, so
     * the slot still holds this connection (and its socket is open) */
    piocp_mutex_lock(&c->lock);
    completed_locked(c, io, bytes, ok);
    piocp_mutex_unlock(&c->lock);
}

void iocp_finished_at_once_locked(piocp_conn *c, iocp_io *io)
{
    iocp_conn *ic = piocp_conn_backend(c);
    if (!ic->skip_port_on_success)
        return; /* the packet comes anyway: one path for both */
    piocp_count(c->engine, PIOCP_M_COMPLETED_INLINE, 1);
    /* InternalHigh: the bytes moved, set when the request completed */
    completed_locked(c, io, (DWORD)io->ov.InternalHigh, true);
}
