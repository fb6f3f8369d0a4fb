/*
 * fault_points.c - every injection point the engine has, with the errors
 * its real call can return (see fault.h): what a sweep tries at each point.
 * A point missing here is a test failure (tests/c/test_fault.c records the
 * points a run passes and looks each one up), so a new site comes with its
 * line.  Errors a call returns only when the program is wrong (EBADF,
 * EFAULT, EINVAL) are left out: they would test the test.
 */
#include "core/fault.h"

#ifdef PIOCP_FAULT_INJECTION
#include "errors.h"

#include <string.h>

#define MAX_ERRORS 8

typedef struct point_errors {
    const char *point;
    int errors[MAX_ERRORS]; /* 0-terminated; none: only cut short */
} point_errors;

static const point_errors table[] = {
    /* every build */
    {"malloc", {PIOCP_ENOMEM}},
    {"thread_start", {PIOCP_EAGAIN}},
    {"worker_init", {PIOCP_EAGAIN, PIOCP_ENOMEM}},
    /* POSIX sockets (platform/posix, backends) */
    {"socket", {PIOCP_EMFILE, PIOCP_ENFILE, PIOCP_ENOBUFS, PIOCP_ENOMEM}},
    {"bind", {PIOCP_EADDRINUSE, PIOCP_EACCES}},
    {"listen", {PIOCP_EADDRINUSE}},
    {"connect", {PIOCP_ECONNREFUSED, PIOCP_ENETUNREACH, PIOCP_EAGAIN, PIOCP_EINTR,
                 PIOCP_EADDRNOTAVAIL}},
    {"getsockopt", {PIOCP_ENOBUFS}},
    {"accept", {PIOCP_EAGAIN, PIOCP_EINTR, PIOCP_ECONNABORTED, PIOCP_EMFILE, PIOCP_ENFILE,
                PIOCP_ENOBUFS, PIOCP_ENOMEM, PIOCP_EPERM}},
    {"recv", {PIOCP_EAGAIN, PIOCP_EINTR, PIOCP_ECONNRESET, PIOCP_ETIMEDOUT, PIOCP_ENOMEM}},
    {"recv_drain", {PIOCP_EAGAIN, PIOCP_EINTR, PIOCP_ECONNRESET}},
    {"send", {PIOCP_EAGAIN, PIOCP_EINTR, PIOCP_EPIPE, PIOCP_ECONNRESET, PIOCP_ENOBUFS,
              PIOCP_ENOMEM}},
    {"send_now", {PIOCP_EAGAIN, PIOCP_EPIPE, PIOCP_ECONNRESET}},
    {"sendfile", {PIOCP_EAGAIN, PIOCP_EINTR, PIOCP_EIO, PIOCP_EPIPE, PIOCP_ECONNRESET,
                  PIOCP_ENOMEM}},
    {"shutdown", {PIOCP_ENOTCONN, PIOCP_ENOBUFS}},
    {"close", {PIOCP_EINTR, PIOCP_EIO}},
    /* epoll */
    {"epoll_create", {PIOCP_EMFILE, PIOCP_ENFILE, PIOCP_ENOMEM}},
    {"epoll_ctl", {PIOCP_ENOMEM, PIOCP_ENOSPC}},
    {"epoll_wait", {PIOCP_EINTR}},
    {"eventfd", {PIOCP_EMFILE, PIOCP_ENFILE, PIOCP_ENOMEM}},
    /* io_uring: the calls, the ring's SQ, lengths cut at submission, and
     * completion results (errors that end the operation: a transient one
     * on a CQE that moved bytes is something no kernel reports) */
    {"uring_setup", {PIOCP_ENOMEM, PIOCP_EMFILE, PIOCP_ENFILE, PIOCP_EPERM}},
    {"uring_mmap", {PIOCP_ENOMEM}},
    {"uring_enter", {PIOCP_EINTR, PIOCP_EAGAIN, PIOCP_EBUSY}},
    {"uring_register", {PIOCP_ENOMEM}},
    {"uring_sqe", {PIOCP_EBUSY}},
    {"sqe_recv", {0}},
    {"sqe_send", {0}},
    {"cqe_recv", {PIOCP_ECONNRESET, PIOCP_ETIMEDOUT, PIOCP_ENOMEM}},
    {"cqe_send", {PIOCP_EPIPE, PIOCP_ECONNRESET, PIOCP_ENOBUFS, PIOCP_ENOMEM}},
    {"cqe_pollout", {PIOCP_ENOMEM}},
    {"cqe_pollin", {PIOCP_ENOMEM}},
    {"cqe_accept", {PIOCP_ECONNABORTED, PIOCP_EMFILE, PIOCP_ENFILE, PIOCP_ENOBUFS, PIOCP_ENOMEM,
                    PIOCP_EPERM}},
    /* files (platform/posix, platform/linux) */
    {"openat2", {PIOCP_EAGAIN, PIOCP_EINTR, PIOCP_EMFILE, PIOCP_ENFILE, PIOCP_ENOMEM,
                 PIOCP_EACCES, PIOCP_EPERM}},
    {"openat", {PIOCP_EMFILE, PIOCP_ENFILE, PIOCP_ENOMEM, PIOCP_EACCES}},
    {"open", {PIOCP_EMFILE, PIOCP_ENFILE, PIOCP_EACCES}},
    {"fstat", {PIOCP_EIO, PIOCP_ENOMEM}},
    {"fdopendir", {PIOCP_ENOMEM}},
    {"pread", {PIOCP_EIO, PIOCP_EINTR, PIOCP_ENOMEM}},
    {"write", {PIOCP_EINTR, PIOCP_EAGAIN, PIOCP_EIO, PIOCP_ENOSPC, PIOCP_EPIPE}},
    {"inotify_init", {PIOCP_EMFILE, PIOCP_ENFILE, PIOCP_ENOMEM}},
    {"inotify_add_watch", {PIOCP_ENOSPC, PIOCP_ENOMEM, PIOCP_EACCES}},
    {"inotify_read", {PIOCP_EINTR, PIOCP_EAGAIN}},
    /* Windows IOCP (backends/iocp*.c), as the Winsock errors come out of
     * piocp_error_from_win32 */
    {"wsarecv", {PIOCP_ECONNRESET, PIOCP_ENOBUFS}},
    {"wsasend", {PIOCP_ECONNRESET, PIOCP_ENOBUFS}},
    {"transmitfile", {PIOCP_ECONNRESET, PIOCP_ENOBUFS}},
    {"readfile", {PIOCP_EIO, PIOCP_ENOMEM}},
    {"acceptex", {PIOCP_ENOBUFS, PIOCP_ECONNRESET}},
    {"connectex", {PIOCP_ENOBUFS, PIOCP_EADDRNOTAVAIL}},
    {"iocp_associate", {PIOCP_ENOMEM}},
};
#define POINTS (sizeof table / sizeof table[0])

size_t piocp_fault_points(const char **names, size_t max)
{
    for (size_t i = 0; i < POINTS && i < max; i++)
        names[i] = table[i].point;
    return POINTS;
}

int piocp_fault_point_errors(const char *point, int *errors, size_t max)
{
    for (size_t i = 0; i < POINTS; i++) {
        if (strcmp(table[i].point, point) != 0)
            continue;
        size_t n = 0;
        while (n < MAX_ERRORS && table[i].errors[n])
            n++;
        for (size_t k = 0; k < n && k < max; k++)
            errors[k] = table[i].errors[k];
        return (int)n;
    }
    return -1;
}
#else
/* ISO C wants a translation unit to declare something. */
typedef int piocp_fault_points_unused;
#endif
