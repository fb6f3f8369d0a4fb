/*
 * errors.c (Windows) - Windows and Winsock error codes as the engine's
 * PIOCP_E* numbers (errors.h), once, where the backend reads them.
 *
 * Overlapped socket operations report NTSTATUS-derived system errors, not
 * only WSA codes: a connection reset by the peer completes with
 * ERROR_NETNAME_DELETED (64), an aborted one with ERROR_CONNECTION_ABORTED,
 * a cancelled request (CancelIoEx) with ERROR_OPERATION_ABORTED.  Each is
 * given the meaning a POSIX program would see for the same event.
 *
 * And the other way, for log lines: the text of a PIOCP_E* number
 * (piocp_error_text).
 */
#include "errors.h"

#define WIN32_LEAN_AND_MEAN
#include <winsock2.h>
#include <windows.h>

#include <stdio.h>
#include <string.h>

int piocp_error_from_win32(unsigned long code)
{
    switch (code) {
    case 0:
        return 0;
    /* Winsock's own: Python's errno numbers them so already */
    case WSAEWOULDBLOCK:
    case WSAEINPROGRESS:
    case WSAEALREADY:
    case WSAENOTSOCK:
    case WSAEMSGSIZE:
    case WSAEOPNOTSUPP:
    case WSAEAFNOSUPPORT:
    case WSAEADDRINUSE:
    case WSAEADDRNOTAVAIL:
    case WSAENETDOWN:
    case WSAENETUNREACH:
    case WSAECONNABORTED:
    case WSAECONNRESET:
    case WSAENOBUFS:
    case WSAENOTCONN:
    case WSAESHUTDOWN:
    case WSAETIMEDOUT:
    case WSAECONNREFUSED:
    case WSAELOOP:
    case WSAEHOSTUNREACH:
        return (int)code;
    case WSAENETRESET:
    case ERROR_NETNAME_DELETED:       /* the peer reset an overlapped recv/send */
    case ERROR_UNEXP_NET_ERR:
        return PIOCP_ECONNRESET;
    case ERROR_CONNECTION_ABORTED:
    case ERROR_REQUEST_ABORTED:
        return PIOCP_ECONNABORTED;
    case ERROR_CONNECTION_REFUSED:
    case ERROR_PORT_UNREACHABLE:      /* ConnectEx to a closed port */
        return PIOCP_ECONNREFUSED;
    case ERROR_SEM_TIMEOUT:
        return PIOCP_ETIMEDOUT;
    case ERROR_NETWORK_UNREACHABLE:
        return PIOCP_ENETUNREACH;
    case ERROR_HOST_UNREACHABLE:
        return PIOCP_EHOSTUNREACH;
    case ERROR_OPERATION_ABORTED:     /* CancelIoEx, or the socket closed under it */
        return PIOCP_ECANCELED;
    case WSAEINTR:
        return PIOCP_EINTR;
    case WSAEBADF:
    case ERROR_INVALID_HANDLE:        /* also WSA_INVALID_HANDLE */
        return PIOCP_EBADF;
    case WSAEACCES:
    case ERROR_ACCESS_DENIED:
    case ERROR_SHARING_VIOLATION:
    case ERROR_LOCK_VIOLATION:
        return PIOCP_EACCES;
    case WSAEFAULT:
    case WSAEINVAL:
    case ERROR_INVALID_PARAMETER:     /* also WSA_INVALID_PARAMETER */
    case ERROR_INVALID_NAME:
    case ERROR_BAD_PATHNAME:
        return PIOCP_EINVAL;
    case WSAEMFILE:
    case ERROR_TOO_MANY_OPEN_FILES:
        return PIOCP_EMFILE;
    case ERROR_NOT_ENOUGH_MEMORY:     /* also WSA_NOT_ENOUGH_MEMORY */
    case ERROR_OUTOFMEMORY:
    case ERROR_NO_SYSTEM_RESOURCES:
        return PIOCP_ENOMEM;
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
        return PIOCP_ENOENT;
    case ERROR_DIRECTORY:
        return PIOCP_ENOTDIR;
    case ERROR_FILENAME_EXCED_RANGE:
        return PIOCP_ENAMETOOLONG;
    case ERROR_FILE_EXISTS:
    case ERROR_ALREADY_EXISTS:
        return PIOCP_EEXIST;
    case ERROR_BROKEN_PIPE:
    case ERROR_NO_DATA:
        return PIOCP_EPIPE;
    case ERROR_NOT_SUPPORTED:
    case ERROR_CALL_NOT_IMPLEMENTED:
        return PIOCP_EOPNOTSUPP;
    case ERROR_DISK_FULL:
    case ERROR_HANDLE_DISK_FULL:
        return PIOCP_ENOSPC;
    case ERROR_BUSY:
        return PIOCP_EBUSY;
    default:
        return PIOCP_EIO;
    }
}

/* The name of a Winsock number errors.h uses, for a system without its
 * message (Wine's tables lack some: WSAETIMEDOUT, WSAESHUTDOWN). */
static const char *winsock_name(int err)
{
    switch (err) {
    case WSAEWOULDBLOCK: return "WSAEWOULDBLOCK";
    case WSAEINPROGRESS: return "WSAEINPROGRESS";
    case WSAEALREADY: return "WSAEALREADY";
    case WSAENOTSOCK: return "WSAENOTSOCK";
    case WSAEMSGSIZE: return "WSAEMSGSIZE";
    case WSAEOPNOTSUPP: return "WSAEOPNOTSUPP";
    case WSAEAFNOSUPPORT: return "WSAEAFNOSUPPORT";
    case WSAEADDRINUSE: return "WSAEADDRINUSE";
    case WSAEADDRNOTAVAIL: return "WSAEADDRNOTAVAIL";
    case WSAENETDOWN: return "WSAENETDOWN";
    case WSAENETUNREACH: return "WSAENETUNREACH";
    case WSAECONNABORTED: return "WSAECONNABORTED";
    case WSAECONNRESET: return "WSAECONNRESET";
    case WSAENOBUFS: return "WSAENOBUFS";
    case WSAENOTCONN: return "WSAENOTCONN";
    case WSAESHUTDOWN: return "WSAESHUTDOWN";
    case WSAETIMEDOUT: return "WSAETIMEDOUT";
    case WSAECONNREFUSED: return "WSAECONNREFUSED";
    case WSAELOOP: return "WSAELOOP";
    case WSAEHOSTUNREACH: return "WSAEHOSTUNREACH";
    default: return "Winsock error";
    }
}

const char *piocp_error_text(int err, char *buf, size_t len)
{
    if (!buf || len == 0)
        return "";
    if (err >= WSABASEERR) {
        /* The socket errors are Winsock numbers here (errors.h), which the
         * C runtime does not know; the system has their messages. */
        DWORD n = FormatMessageA(FORMAT_MESSAGE_FROM_SYSTEM | FORMAT_MESSAGE_IGNORE_INSERTS, NULL,
                                 (DWORD)err, MAKELANGID(LANG_NEUTRAL, SUBLANG_DEFAULT), buf,
                                 (DWORD)(len > 0xffff ? 0xffff : len), NULL);
        /* one line in a log: without the message's trailing ".\r\n" */
        while (n > 0 && (buf[n - 1] == '\r' || buf[n - 1] == '\n' || buf[n - 1] == '.' ||
                         buf[n - 1] == ' '))
            buf[--n] = '\0';
        if (n == 0)
            snprintf(buf, len, "%s (%d)", winsock_name(err), err);
        return buf;
    }
    /* POSIX numbers the classic C runtime (msvcrt) has no text for */
    if (err == PIOCP_ECANCELED)
        return "Operation canceled";
    if (err == PIOCP_ETIME)
        return "Timer expired";
    if (strerror_s(buf, len, err) != 0)
        snprintf(buf, len, "error %d", err);
    return buf;
}
