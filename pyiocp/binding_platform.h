/*
 * binding_platform.h - what the Cython binding asks of the system, for
 * POSIX and for Windows, in one place: the .pyx files make no POSIX-only
 * call and include no POSIX-only header (issue 11).  Every function returns
 * 0 (or a count) or -PIOCP_E* (engine/errors.h: the numbers Python's errno
 * module has on that platform, so os_error() turns them into the right
 * OSError subclass on both).
 *
 * The Windows half is written against Microsoft's documentation and builds
 * with mingw-w64, but the binding has not run on Windows yet (README,
 * "Windows").  File paths arrive as os.fsencode() gives them: UTF-8 on
 * Windows (PEP 529), converted to UTF-16 for CreateFileW.
 */
#ifndef PYIOCP_BINDING_PLATFORM_H
#define PYIOCP_BINDING_PLATFORM_H

#include "pyiocp.h"
#include "errors.h"
#include "platform/platform.h" /* piocp_error_text */

#include <stdint.h>
#include <stdlib.h>

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>
#include <io.h>
#else
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

/* piocp_file binding_file_from_os_handle(intptr_t handle): the file behind
 * the number the system knows it by, borrowed: a descriptor on POSIX, a
 * HANDLE on Windows, where Python's file descriptors are the C runtime's
 * and the binding converts them with msvcrt.get_osfhandle first (asking
 * the C runtime here would meet its invalid-parameter handler, which ends
 * the process on a bad descriptor; Python's call suppresses it). */

/* What binding_file_info finds behind a handle. */
enum { BINDING_FILE_REGULAR = 0, BINDING_FILE_DIRECTORY = 1, BINDING_FILE_OTHER = 2 };

#ifdef _WIN32

/* Opens `path` (UTF-8) for reading, shared so that the file can be
 * replaced or deleted while it is sent (as on POSIX), for overlapped reads
 * (the IOCP backend's read + WSASend path). */
static inline int binding_open_file(const char *path, piocp_file *out)
{
    int wide_len = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, NULL, 0);
    if (wide_len <= 0)
        return -PIOCP_EINVAL;
    wchar_t *wide = malloc((size_t)wide_len * sizeof *wide);
    if (!wide)
        return -PIOCP_ENOMEM;
    MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, path, -1, wide, wide_len);
    /* FILE_FLAG_BACKUP_SEMANTICS: a directory opens too, so that the caller
     * can say "is a directory" as on POSIX rather than "access denied" */
    HANDLE h = CreateFileW(wide, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                           NULL, OPEN_EXISTING, FILE_FLAG_OVERLAPPED | FILE_FLAG_BACKUP_SEMANTICS,
                           NULL);
    DWORD code = GetLastError();
    free(wide);
    if (h == INVALID_HANDLE_VALUE)
        return -piocp_error_from_win32(code);
    *out = h;
    return 0;
}

static inline piocp_file binding_file_from_os_handle(intptr_t handle) { return (HANDLE)handle; }

static inline int binding_file_info(piocp_file f, int *kind, uint64_t *size)
{
    BY_HANDLE_FILE_INFORMATION info;
    if (GetFileType(f) != FILE_TYPE_DISK) {
        *kind = BINDING_FILE_OTHER; /* a pipe, a console, a socket */
        *size = 0;
        return 0;
    }
    if (!GetFileInformationByHandle(f, &info))
        return -piocp_error_from_win32(GetLastError());
    *kind = (info.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY) ? BINDING_FILE_DIRECTORY
                                                                : BINDING_FILE_REGULAR;
    *size = ((uint64_t)info.nFileSizeHigh << 32) | info.nFileSizeLow;
    return 0;
}

/* 1 if `f` may be read from, 0 if not, or -PIOCP_E*.  Windows: 1 (a handle
 * does not say cheaply; a handle without read access fails the transmit's
 * first read instead). */
static inline int binding_file_readable(piocp_file f)
{
    (void)f;
    return 1;
}

static inline void binding_close_file(piocp_file f) { CloseHandle(f); }

static inline int binding_dup_file(piocp_file f, piocp_file *out)
{
    HANDLE process = GetCurrentProcess();
    if (!DuplicateHandle(process, f, process, out, 0, FALSE, DUPLICATE_SAME_ACCESS))
        return -piocp_error_from_win32(GetLastError());
    return 0;
}

/* Winsock cannot tell whether a socket is non-blocking (there is no
 * FIONBIO query): the callers that need to know (send_in_place, which has
 * no sendfile to use on Windows anyway) are refused. */
static inline int binding_socket_is_nonblocking(piocp_socket s)
{
    (void)s;
    return -PIOCP_EOPNOTSUPP;
}

/* Waits until `s` is readable (run()'s wake-up: a socket pair on Windows,
 * since WSAPoll and signal.set_wakeup_fd take sockets only). */
static inline int binding_wait_readable(piocp_socket s)
{
    WSAPOLLFD pfd = {.fd = s, .events = POLLRDNORM};
    if (WSAPoll(&pfd, 1, -1) == SOCKET_ERROR)
        return -piocp_error_from_win32((unsigned long)WSAGetLastError());
    return 0;
}

#else /* POSIX */

static inline int binding_open_file(const char *path, piocp_file *out)
{
    /* O_NONBLOCK: a FIFO must not block the opening thread; the caller
     * refuses anything but a regular file right after */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (fd < 0)
        return -errno;
    *out = fd;
    return 0;
}

static inline piocp_file binding_file_from_os_handle(intptr_t handle) { return (int)handle; }

static inline int binding_file_info(piocp_file f, int *kind, uint64_t *size)
{
    struct stat st;
    if (fstat(f, &st) < 0)
        return -errno;
    *kind = S_ISREG(st.st_mode)   ? BINDING_FILE_REGULAR
            : S_ISDIR(st.st_mode) ? BINDING_FILE_DIRECTORY
                                  : BINDING_FILE_OTHER;
    *size = (uint64_t)st.st_size;
    return 0;
}

/* 1 if `f` may be read from, 0 if not (opened write-only, or O_PATH: a
 * sendfile from it fails with EBADF), or -PIOCP_E*. */
static inline int binding_file_readable(piocp_file f)
{
    int flags = fcntl(f, F_GETFL);
    if (flags < 0)
        return -errno;
#ifdef O_PATH
    if (flags & O_PATH)
        return 0;
#endif
    return (flags & O_ACCMODE) != O_WRONLY;
}

static inline void binding_close_file(piocp_file f) { close(f); }

static inline int binding_dup_file(piocp_file f, piocp_file *out)
{
    int fd = fcntl(f, F_DUPFD_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    *out = fd;
    return 0;
}

static inline int binding_socket_is_nonblocking(piocp_socket s)
{
    int flags = fcntl(s, F_GETFL);
    if (flags < 0)
        return -errno;
    return (flags & O_NONBLOCK) != 0;
}

static inline int binding_wait_readable(piocp_socket s)
{
    struct pollfd pfd = {.fd = s, .events = POLLIN};
    if (poll(&pfd, 1, -1) < 0)
        return -errno; /* EINTR: a signal, which run() checks next */
    return 0;
}

#endif

#endif /* PYIOCP_BINDING_PLATFORM_H */
