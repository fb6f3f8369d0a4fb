/*
 * send_step.c - moving a send or transmit forward with plain system calls
 * (send, sendfile): epoll runs whole requests this way; io_uring, which has
 * no sendfile operation, runs a transmit this way straight after its ring
 * said the socket is writable.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform/platform.h"
#include "platform/posix/fault_calls.h"

#include <errno.h>
#include <stdbool.h>
#include <sys/sendfile.h>
#include <sys/socket.h>

/* sendfile moves at most about 2 GiB per call */
#define SENDFILE_CHUNK (1u << 30)

/* One system call for the head of the send queue: > 0 progress, 0 the
 * request is complete, < 0 -errno (-EAGAIN: wait for writability). */
ssize_t piocp_socket_send_step(piocp_socket fd, const piocp_request *r)
{
    if (r->op == PIOCP_OP_SEND) {
        if (r->done == r->u.send.len)
            return 0;
        ssize_t n = fault_send("send", fd, (const char *)r->u.send.buf + r->done,
                               r->u.send.len - r->done, MSG_NOSIGNAL);
        return n < 0 ? -errno : n;
    }
    size_t head_len = r->u.transmit.head_len;
    uint64_t count = r->u.transmit.count;
    if (r->done < head_len) {
        /* MSG_MORE: the head and the first file bytes leave in one segment */
        int flags = MSG_NOSIGNAL | (count ? MSG_MORE : 0);
        ssize_t n = fault_send("send", fd, (const char *)r->u.transmit.head + r->done,
                               head_len - r->done, flags);
        return n < 0 ? -errno : n;
    }
    uint64_t file_done = r->done - head_len;
    bool to_eof = count == PIOCP_TRANSMIT_TO_EOF;
    if (!to_eof && file_done >= count)
        return 0;
    uint64_t want = to_eof ? SENDFILE_CHUNK : count - file_done;
    if (want > SENDFILE_CHUNK)
        want = SENDFILE_CHUNK;
    off_t offset = (off_t)(r->u.transmit.offset + file_done);
    ssize_t n = fault_sendfile("sendfile", fd, r->u.transmit.fd, &offset, (size_t)want);
    if (n < 0)
        return -errno;
    if (n == 0)
        /* end of file: done if that was asked for; otherwise the file shrank
         * underneath us, and looping would spin forever */
        return to_eof ? 0 : -EIO;
    return n;
}
