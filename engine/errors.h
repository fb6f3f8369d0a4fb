/*
 * errors.h - the engine's error numbers: the values Python's errno module
 * has on the platform the engine runs on.
 *
 * The C API returns 0 or -PIOCP_E*.  On POSIX these are errno's own values.
 * On Windows they are not the C runtime's: CPython's errno module gives
 * the socket errors the Winsock numbers (errno.ECONNRESET is WSAECONNRESET,
 * 10054; the C runtime's own ECONNRESET, 108, is left out on purpose), and
 * the C runtime has no ESHUTDOWN at all (Python uses WSAESHUTDOWN).  With
 * these values the binding hands any engine error to OSError(errno, ...)
 * and gets the right subclass (ConnectionResetError, TimeoutError...) on
 * both platforms, with no table of its own.
 *
 * Windows and Winsock codes become these once, in the backend
 * (piocp_error_from_win32), which keeps the raw code where it is useful.
 */
#ifndef PYIOCP_ERRORS_H
#define PYIOCP_ERRORS_H

#include <errno.h>

/* errno's numbers on every platform: on Windows the C runtime's, which
 * Python's errno module keeps (ECANCELED and ETIME since VS2010). */
#define PIOCP_EPERM EPERM
#define PIOCP_ENOENT ENOENT
#define PIOCP_EINTR EINTR
#define PIOCP_EIO EIO
#define PIOCP_EBADF EBADF
#define PIOCP_EAGAIN EAGAIN
#define PIOCP_ENOMEM ENOMEM
#define PIOCP_EACCES EACCES
#define PIOCP_EBUSY EBUSY
#define PIOCP_EEXIST EEXIST
#define PIOCP_ENOTDIR ENOTDIR
#define PIOCP_EISDIR EISDIR
#define PIOCP_EINVAL EINVAL
#define PIOCP_EMFILE EMFILE
#define PIOCP_ENFILE ENFILE
#define PIOCP_ENOSPC ENOSPC
#define PIOCP_EPIPE EPIPE
#define PIOCP_EDEADLK EDEADLK
#define PIOCP_ENAMETOOLONG ENAMETOOLONG
#define PIOCP_EXDEV EXDEV
#define PIOCP_ENOSYS ENOSYS
#define PIOCP_ECANCELED ECANCELED
#define PIOCP_ETIME ETIME

/* The socket errors: on Windows Winsock's numbers, which Python's errno
 * module uses instead of the C runtime's. */
#ifdef _WIN32

#define PIOCP_EWOULDBLOCK 10035     /* WSAEWOULDBLOCK */
#define PIOCP_EINPROGRESS 10036     /* WSAEINPROGRESS */
#define PIOCP_EALREADY 10037        /* WSAEALREADY */
#define PIOCP_ENOTSOCK 10038        /* WSAENOTSOCK */
#define PIOCP_EMSGSIZE 10040        /* WSAEMSGSIZE */
#define PIOCP_EOPNOTSUPP 10045      /* WSAEOPNOTSUPP */
#define PIOCP_EAFNOSUPPORT 10047    /* WSAEAFNOSUPPORT */
#define PIOCP_EADDRINUSE 10048      /* WSAEADDRINUSE */
#define PIOCP_EADDRNOTAVAIL 10049   /* WSAEADDRNOTAVAIL */
#define PIOCP_ENETDOWN 10050        /* WSAENETDOWN */
#define PIOCP_ENETUNREACH 10051     /* WSAENETUNREACH */
#define PIOCP_ECONNABORTED 10053    /* WSAECONNABORTED */
#define PIOCP_ECONNRESET 10054      /* WSAECONNRESET */
#define PIOCP_ENOBUFS 10055         /* WSAENOBUFS */
#define PIOCP_ENOTCONN 10057        /* WSAENOTCONN */
#define PIOCP_ESHUTDOWN 10058       /* WSAESHUTDOWN: the C runtime has none */
#define PIOCP_ETIMEDOUT 10060       /* WSAETIMEDOUT */
#define PIOCP_ECONNREFUSED 10061    /* WSAECONNREFUSED */
#define PIOCP_ELOOP 10062           /* WSAELOOP */
#define PIOCP_EHOSTUNREACH 10065    /* WSAEHOSTUNREACH */

/* A Windows system error (GetLastError) or Winsock error
 * (WSAGetLastError) as a positive PIOCP_E* value.  Codes with no closer
 * meaning become PIOCP_EIO; 0 stays 0. */
int piocp_error_from_win32(unsigned long code);

#else

#define PIOCP_EWOULDBLOCK EWOULDBLOCK
#define PIOCP_EINPROGRESS EINPROGRESS
#define PIOCP_EALREADY EALREADY
#define PIOCP_ENOTSOCK ENOTSOCK
#define PIOCP_EMSGSIZE EMSGSIZE
#define PIOCP_EOPNOTSUPP EOPNOTSUPP
#define PIOCP_EAFNOSUPPORT EAFNOSUPPORT
#define PIOCP_EADDRINUSE EADDRINUSE
#define PIOCP_EADDRNOTAVAIL EADDRNOTAVAIL
#define PIOCP_ENETDOWN ENETDOWN
#define PIOCP_ENETUNREACH ENETUNREACH
#define PIOCP_ECONNABORTED ECONNABORTED
#define PIOCP_ECONNRESET ECONNRESET
#define PIOCP_ENOBUFS ENOBUFS
#define PIOCP_ENOTCONN ENOTCONN
#define PIOCP_ESHUTDOWN ESHUTDOWN
#define PIOCP_ETIMEDOUT ETIMEDOUT
#define PIOCP_ECONNREFUSED ECONNREFUSED
#define PIOCP_ELOOP ELOOP
#define PIOCP_EHOSTUNREACH EHOSTUNREACH

#endif

#endif
