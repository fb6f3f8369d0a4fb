/*
 * iocp_transmit.c - the IOCP backend's transmits: a head, then a range of
 * a file, as steps on the connection's send_io (iocp_conn.c harvests them
 * like sends, so cancel and close follow the same rules: one completion
 * per request, the socket closed after the last one).
 *
 * Two paths, chosen per engine (piocp_config.windows_transmit):
 *  - TransmitFile: the head as TRANSMIT_FILE_BUFFERS, the file range from
 *    the OVERLAPPED's offset, zero-copy.  Never TF_DISCONNECT: a response
 *    ends with shutdown or close, which also works under Wine (it ignores
 *    TF_DISCONNECT and TF_REUSE_SOCKET).
 *  - read+send: ReadFile into the connection's 64 KiB buffer, then one
 *    WSASend of head and buffer.  Client editions of Windows run only two
 *    TransmitFile calls at once system-wide; this path has no such limit.
 *
 * Either way a step that moves fewer file bytes than it asked for met the
 * end of the file: the transmit fails with -EIO after the bytes that exist
 * (a count to the end of a file whose size was unknown ends there instead),
 * as sendfile(2) returning 0 does on Linux.
 */
#include "backends/iocp.h"

#include <stdlib.h>
#include <string.h>
#include <versionhelpers.h>

/* TransmitFile moves at most 2^31 - 2 file bytes per call: a round chunk
 * well below it, as on Linux for sendfile. */
#define FILE_CHUNK ((uint64_t)1 << 30)
/* A head longer than a WSABUF can say goes out alone, in parts. */
#define HEAD_CHUNK ((size_t)1 << 30)
/* The read+send path's buffer: the chunk Wine's own TransmitFile uses. */
#define READ_CHUNK ((DWORD)64 * 1024)

int iocp_transmit_init(piocp_engine *e, iocp_backend *b)
{
    int path = e->config.windows_transmit;
    if (path == PIOCP_WINDOWS_TRANSMIT_AUTO)
        path = IsWindowsServer() ? PIOCP_WINDOWS_TRANSMIT_FILE : PIOCP_WINDOWS_TRANSMIT_READ_SEND;
    b->transmit_path = path;
    b->read_bufs = calloc(e->conn_capacity, sizeof *b->read_bufs);
    return b->read_bufs ? 0 : -PIOCP_ENOMEM;
}

void iocp_transmit_destroy(piocp_engine *e, iocp_backend *b)
{
    if (!b->read_bufs)
        return;
    for (uint32_t i = 0; i < e->conn_capacity; i++)
        free(b->read_bufs[i]);
    free(b->read_bufs);
    b->read_bufs = NULL;
}

/* The caller's file handle cannot join our port (a handle joins one port
 * for life, and it may be on another, or shared between connections), so
 * the read is waited for on the worker, as epoll's sendfile waits for the
 * disk.  The event is the worker's: one read at a time per thread. */
int iocp_transmit_worker_init(piocp_worker *w)
{
    HANDLE event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!event)
        return -piocp_error_from_win32(GetLastError());
    w->backend = event;
    return 0;
}

void iocp_transmit_worker_exit(piocp_worker *w)
{
    if (w->backend)
        CloseHandle(w->backend);
    w->backend = NULL;
}

static void set_offset(OVERLAPPED *ov, uint64_t offset)
{
    ov->Offset = (DWORD)offset;
    ov->OffsetHigh = (DWORD)(offset >> 32);
}

/* Reads up to `want` bytes at `offset`: the count (0 at the end of the
 * file), or -errno. */
static int64_t read_at(piocp_worker *w, HANDLE file, uint64_t offset, char *buf, DWORD want)
{
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    set_offset(&ov, offset);
    /* the low bit keeps the completion off any port the handle is on: we
     * wait for it here instead */
    ov.hEvent = (HANDLE)((ULONG_PTR)w->backend | 1);
    ResetEvent(w->backend);
    DWORD got = 0;
    ptrdiff_t use = PIOCP_FAULT_SHORT("readfile", want); /* as a short or failed read */
    if (use < 0)
        return use;
    want = (DWORD)use;
    if (!ReadFile(file, buf, want, &got, &ov)) {
        DWORD error = GetLastError();
        if (error == ERROR_IO_PENDING) {
            WaitForSingleObject(w->backend, INFINITE);
            if (!GetOverlappedResult(file, &ov, &got, FALSE))
                error = GetLastError();
            else
                error = 0;
        }
        if (error == ERROR_HANDLE_EOF)
            return 0; /* an overlapped handle's end of file */
        if (error)
            return -piocp_error_from_win32(error);
    }
    return got;
}

static void start_transmit_file(piocp_conn *c, iocp_conn *ic, piocp_request *r, const char *head,
                                size_t head_part, uint64_t offset, uint64_t file_part)
{
    ic->step_buffers.Head = (void *)head;
    ic->step_buffers.HeadLength = (DWORD)head_part;
    ic->step_buffers.Tail = NULL;
    ic->step_buffers.TailLength = 0;
    int injected = PIOCP_FAULT("transmitfile"); /* fails as Winsock would, not started */
    if (injected) {
        if (!c->abort_error)
            c->abort_error = injected;
        return;
    }
    memset(&ic->send_io.ov, 0, sizeof ic->send_io.ov);
    set_offset(&ic->send_io.ov, offset);
    BOOL done = TransmitFile(c->fd, r->u.transmit.fd, (DWORD)file_part, 0, &ic->send_io.ov,
                             head_part ? &ic->step_buffers : NULL, 0);
    if (done || WSAGetLastError() == WSA_IO_PENDING) {
        ic->send_pending = true;
        c->in_kernel++;
        if (done)
            iocp_finished_at_once_locked(c, &ic->send_io); /* as for WSASend */
    } else if (!c->abort_error) {
        c->abort_error = iocp_wsa_error();
    }
}

bool iocp_transmit_step(piocp_worker *w, piocp_conn *c, iocp_conn *ic, piocp_request *r)
{
    iocp_backend *b = c->engine->backend_data;
    size_t head_len = r->u.transmit.head_len;
    size_t head_part = r->done < head_len ? head_len - r->done : 0;
    uint64_t file_done = head_part ? 0 : r->done - head_len;
    uint64_t count = r->u.transmit.count;
    /* a count still PIOCP_TRANSMIT_TO_EOF: the size was unknown at post
     * time, so the file's end ends the transmit */
    uint64_t file_part = count == PIOCP_TRANSMIT_TO_EOF ? FILE_CHUNK : count - file_done;
    if (file_part > FILE_CHUNK)
        file_part = FILE_CHUNK;
    if (head_part > HEAD_CHUNK) {
        head_part = HEAD_CHUNK;
        file_part = 0; /* the rest of the head first */
    }
    if (head_part == 0 && file_part == 0)
        return true;
    const char *head = (const char *)r->u.transmit.head + r->done;
    uint64_t offset = r->u.transmit.offset + file_done;
    bool copy = b->transmit_path == PIOCP_WINDOWS_TRANSMIT_READ_SEND;
    ic->step_head = head_part;
    ic->step_file = file_part;
    ic->step_copied = copy && file_part > 0;
    if (file_part > 0 && !copy) {
        start_transmit_file(c, ic, r, head, head_part, offset, file_part);
        return false;
    }
    /* WSASend: the read+send path, and a head alone (TransmitFile would
     * take a file count of 0 for the whole file) */
    WSABUF bufs[2];
    DWORD n = 0;
    if (head_part)
        bufs[n++] = (WSABUF){.len = (ULONG)head_part, .buf = (char *)head};
    if (file_part) {
        char **buf = &b->read_bufs[c->slot];
        if (!*buf && !(*buf = malloc(READ_CHUNK))) {
            c->abort_error = -PIOCP_ENOMEM;
            return false;
        }
        DWORD want = file_part > READ_CHUNK ? READ_CHUNK : (DWORD)file_part;
        ic->step_file = want;
        int64_t got = read_at(w, r->u.transmit.fd, offset, *buf, want);
        if (got < 0) {
            c->abort_error = (int)got;
            return false;
        }
        if (got == 0 && !head_part) {
            /* the end of the file, and nothing to send: decided here */
            return iocp_transmit_took(c, ic, r, 0, true);
        }
        if (got > 0)
            bufs[n++] = (WSABUF){.len = (ULONG)got, .buf = *buf};
    }
    iocp_start_send(c, ic, bufs, n);
    return false;
}

bool iocp_transmit_took(piocp_conn *c, iocp_conn *ic, piocp_request *r, DWORD bytes, bool ok)
{
    /* the head leaves first: split the count, so that the file's bytes are
     * counted as such (piocp_sent_locked looks at what was out before) */
    size_t head = bytes < ic->step_head ? bytes : ic->step_head;
    uint64_t file = bytes - head;
    if (head)
        piocp_sent_locked(c, r, head);
    if (file) {
        piocp_sent_locked(c, r, (size_t)file);
        if (ic->step_copied)
            piocp_count(c->engine, PIOCP_M_SENT_COPIED_BYTES, file);
    }
    if (!ok)
        return false; /* the caller records the error */
    uint64_t count = r->u.transmit.count;
    if (head == ic->step_head && file < ic->step_file) {
        /* Fewer file bytes than asked: the file ended, or the step came
         * back short without an error.  Windows' TransmitFile does not do
         * that, but Wine's (pread + send in 64 KiB pieces) can under load:
         * CI saw a client get 65536 bytes of a 1 MiB file, then a reset.
         * The file's size tells which; a short step is simply continued. */
        uint64_t size, at = r->u.transmit.offset + (r->done - r->u.transmit.head_len);
        if (piocp_file_size(r->u.transmit.fd, &size) == 0 && at < size &&
            (count == PIOCP_TRANSMIT_TO_EOF || r->done - r->u.transmit.head_len < count))
            return false; /* not finished, no error: the next step sends the rest */
        if (count == PIOCP_TRANSMIT_TO_EOF)
            return true;
        if (!c->abort_error)
            c->abort_error = -PIOCP_EIO;
        return false;
    }
    return count != PIOCP_TRANSMIT_TO_EOF && r->done >= r->u.transmit.head_len &&
           r->done - r->u.transmit.head_len == count;
}
