/*
 * fault_calls.h - the engine's POSIX system calls as injection points
 * (core/fault.h).  A site writes FAULT_CALL("recv", recv(...)) or calls a
 * length-taking wrapper; in a build without PIOCP_FAULT_INJECTION each is
 * exactly the plain call.
 *
 * A faulted call behaves as the kernel's failure would: it returns -1 with
 * errno set and has no effect (the call is not made), except where the
 * real call has one even when it fails (close: see fault_close).  A call
 * cut short is made, with the shorter length: the kernel really moves that
 * many bytes, so the byte stream stays whole, as with any partial send.
 */
#ifndef PYIOCP_PLATFORM_POSIX_FAULT_CALLS_H
#define PYIOCP_PLATFORM_POSIX_FAULT_CALLS_H

#include "core/fault.h"

#include <errno.h>
#include <sys/types.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

/* errno set to the armed error and true when this pass must fail. */
static inline int fault_errno(const char *point)
{
    int rc = PIOCP_FAULT(point);
    if (rc == 0)
        return 0;
    errno = -rc;
    return 1;
}

/* A call returning -1 and errno on failure. */
#define FAULT_CALL(point, call) (fault_errno(point) ? -1 : (call))

/* The length a length-taking call may use this pass, or -1 with errno. */
static inline ssize_t fault_len(const char *point, size_t len)
{
    ptrdiff_t n = PIOCP_FAULT_SHORT(point, len);
    if (n < 0) {
        errno = (int)-n;
        return -1;
    }
    return (ssize_t)n;
}

static inline ssize_t fault_recv(const char *point, int fd, void *buf, size_t len, int flags)
{
    ssize_t n = fault_len(point, len);
    return n < 0 ? -1 : recv(fd, buf, (size_t)n, flags);
}

static inline ssize_t fault_send(const char *point, int fd, const void *buf, size_t len,
                                 int flags)
{
    ssize_t n = fault_len(point, len);
    return n < 0 ? -1 : send(fd, buf, (size_t)n, flags);
}

static inline ssize_t fault_sendfile(const char *point, int out, int in, off_t *offset,
                                     size_t count)
{
    ssize_t n = fault_len(point, count);
    return n < 0 ? -1 : sendfile(out, in, offset, (size_t)n);
}

static inline ssize_t fault_pread(const char *point, int fd, void *buf, size_t len, off_t offset)
{
    ssize_t n = fault_len(point, len);
    return n < 0 ? -1 : pread(fd, buf, (size_t)n, offset);
}

static inline ssize_t fault_write(const char *point, int fd, const void *buf, size_t len)
{
    ssize_t n = fault_len(point, len);
    return n < 0 ? -1 : write(fd, buf, (size_t)n);
}

/* Linux's close releases the descriptor even when it reports an error
 * (EINTR, EIO: close(2), "Dealing with error returns"), and retrying it
 * could close a descriptor another thread just got: the descriptor is
 * closed, then the error reported. */
static inline int fault_close(const char *point, int fd)
{
    int rc = close(fd);
    return fault_errno(point) ? -1 : rc;
}

#endif
