/*
 * send_in_place.h - the first bytes of a file send, on the caller's thread.
 *
 * pyiocp.aio lends an asyncio transport's socket to the engine to move a
 * file.  The lending costs two thread hand-offs (loop -> worker -> loop),
 * a dup of the file and a few checks: more than a 1 KiB file costs to send.
 * So the bytes go out here first, the way asyncio's own native sendfile
 * does it: one non-blocking send of the head and one sendfile, which hand
 * a small file to the kernel at once.  Only what the socket does not take
 * now (EAGAIN) or what lies beyond `limit` is lent.  Never waits; called
 * with the GIL released.
 */
#ifndef PYIOCP_SEND_IN_PLACE_H
#define PYIOCP_SEND_IN_PLACE_H

#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct send_in_place_result {
    size_t head_sent;   /* bytes of the head handed to the kernel */
    uint64_t file_sent; /* bytes of the file handed to the kernel */
    int finished;       /* all of the head, and count bytes or up to the file's end */
    int error;          /* errno of a failure (the connection's), else 0 */
} send_in_place_result;

#ifdef __linux__
#include <sys/sendfile.h>
#include <sys/socket.h>

/* `count` UINT64_MAX: to the file's end.  A file that supports no
 * sendfile (EINVAL, ENOSYS) is not a failure here: the engine's transmit
 * has its own way for it. */
static inline void send_in_place(int sock, const char *head, size_t head_len, int file_fd,
                                 uint64_t offset, uint64_t count, uint64_t limit,
                                 send_in_place_result *r)
{
    r->head_sent = 0;
    r->file_sent = 0;
    r->finished = 0;
    r->error = 0;
    while (r->head_sent < head_len) {
        ssize_t n = send(sock, head + r->head_sent, head_len - r->head_sent,
                         MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                r->error = errno;
            return;
        }
        r->head_sent += (size_t)n;
    }
    uint64_t budget = count < limit ? count : limit;
    while (r->file_sent < budget) {
        uint64_t want = budget - r->file_sent;
        if (want > ((uint64_t)1 << 30))
            want = (uint64_t)1 << 30;
        off_t at = (off_t)(offset + r->file_sent);
        ssize_t n = sendfile(sock, file_fd, &at, (size_t)want);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINVAL && errno != ENOSYS)
                r->error = errno;
            return;
        }
        if (n == 0) { /* the file's end */
            r->finished = 1;
            return;
        }
        r->file_sent += (uint64_t)n;
    }
    r->finished = r->file_sent == count;
}

#else /* no sendfile(2) here: everything is lent */

static inline void send_in_place(int sock, const char *head, size_t head_len, int file_fd,
                                 uint64_t offset, uint64_t count, uint64_t limit,
                                 send_in_place_result *r)
{
    (void)sock; (void)head; (void)head_len; (void)file_fd;
    (void)offset; (void)count; (void)limit;
    r->head_sent = 0;
    r->file_sent = 0;
    r->finished = 0;
    r->error = 0;
}
#endif

#endif
