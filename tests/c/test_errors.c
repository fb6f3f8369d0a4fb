/* test_errors.c - the engine's error numbers (engine/errors.h) are the
 * values Python's errno module has on each platform: errno's own on POSIX;
 * on Windows the Winsock numbers for the socket errors (as CPython's
 * Modules/errnomodule.c chooses them) and the C runtime's for the rest.
 * Windows: Windows and Winsock codes map onto them once
 * (piocp_error_from_win32). */
#include "errors.h"
#include "pyiocp.h" /* builds on both platforms: its handle types below */
#include "platform/platform.h" /* piocp_error_text */
#include "test_check.h"

#include <ctype.h>

#include <stdbool.h>

#ifdef _WIN32
#define WIN32_LEAN_AND_MEAN
#include <winsock2.h>
#include <windows.h>
#endif

/* Every value the engine may return, each distinct and positive. */
static const int all_errors[] = {
    PIOCP_EPERM, PIOCP_ENOENT, PIOCP_EINTR, PIOCP_EIO, PIOCP_EBADF, PIOCP_EAGAIN,
    PIOCP_ENOMEM, PIOCP_EACCES, PIOCP_EBUSY, PIOCP_EEXIST, PIOCP_ENOTDIR, PIOCP_EISDIR,
    PIOCP_EINVAL, PIOCP_EMFILE, PIOCP_ENOSPC, PIOCP_EPIPE, PIOCP_EDEADLK, PIOCP_ENAMETOOLONG,
    PIOCP_ENOSYS, PIOCP_ECANCELED, PIOCP_ETIME, PIOCP_EXDEV, PIOCP_EINPROGRESS, PIOCP_EALREADY,
    PIOCP_ENOTSOCK, PIOCP_EMSGSIZE, PIOCP_EOPNOTSUPP, PIOCP_EAFNOSUPPORT, PIOCP_EADDRINUSE,
    PIOCP_EADDRNOTAVAIL, PIOCP_ENETDOWN, PIOCP_ENETUNREACH, PIOCP_ECONNABORTED,
    PIOCP_ECONNRESET, PIOCP_ENOBUFS, PIOCP_ENOTCONN, PIOCP_ESHUTDOWN, PIOCP_ETIMEDOUT,
    PIOCP_ECONNREFUSED, PIOCP_ELOOP, PIOCP_EHOSTUNREACH,
};

static void test_distinct(void)
{
    size_t n = sizeof all_errors / sizeof all_errors[0];
    for (size_t i = 0; i < n; i++) {
        CHECK(all_errors[i] > 0);
        for (size_t j = i + 1; j < n; j++)
            CHECK(all_errors[i] != all_errors[j]);
    }
}

static void test_python_values(void)
{
#ifdef _WIN32
    /* pyiocp.h's handles are Windows' own */
    CHECK(sizeof(piocp_socket) == sizeof(SOCKET) && PIOCP_INVALID_SOCKET == INVALID_SOCKET);
    CHECK(sizeof(piocp_file) == sizeof(HANDLE) && PIOCP_INVALID_FILE == INVALID_HANDLE_VALUE);
    /* what CPython's errno module says on Windows */
    CHECK(PIOCP_ECONNRESET == WSAECONNRESET && PIOCP_ECONNRESET == 10054);
    CHECK(PIOCP_ECONNABORTED == WSAECONNABORTED);
    CHECK(PIOCP_ECONNREFUSED == WSAECONNREFUSED);
    CHECK(PIOCP_ETIMEDOUT == WSAETIMEDOUT);
    CHECK(PIOCP_ENOTCONN == WSAENOTCONN);
    CHECK(PIOCP_ESHUTDOWN == WSAESHUTDOWN);
    CHECK(PIOCP_EINPROGRESS == WSAEINPROGRESS);
    CHECK(PIOCP_EALREADY == WSAEALREADY);
    CHECK(PIOCP_EWOULDBLOCK == WSAEWOULDBLOCK);
    CHECK(PIOCP_EADDRINUSE == WSAEADDRINUSE);
    CHECK(PIOCP_EADDRNOTAVAIL == WSAEADDRNOTAVAIL);
    CHECK(PIOCP_EAFNOSUPPORT == WSAEAFNOSUPPORT);
    CHECK(PIOCP_ENOTSOCK == WSAENOTSOCK);
    CHECK(PIOCP_EOPNOTSUPP == WSAEOPNOTSUPP);
    CHECK(PIOCP_ENOBUFS == WSAENOBUFS);
    CHECK(PIOCP_EHOSTUNREACH == WSAEHOSTUNREACH);
    CHECK(PIOCP_ENETUNREACH == WSAENETUNREACH);
    CHECK(PIOCP_ELOOP == WSAELOOP);
    CHECK(PIOCP_EMSGSIZE == WSAEMSGSIZE);
    CHECK(PIOCP_ENETDOWN == WSAENETDOWN);
    /* the C runtime's, which Python keeps */
    CHECK(PIOCP_EINVAL == 22 && PIOCP_ENOMEM == 12 && PIOCP_EPIPE == 32);
    CHECK(PIOCP_EAGAIN == 11 && PIOCP_ENOENT == 2 && PIOCP_EMFILE == 24);
    CHECK(PIOCP_ECANCELED == 105 && PIOCP_ETIME == 137); /* the C runtime's since VS2010 */
#else
    CHECK(PIOCP_ECONNRESET == ECONNRESET);
    CHECK(PIOCP_ESHUTDOWN == ESHUTDOWN);
    CHECK(PIOCP_ECANCELED == ECANCELED);
    CHECK(PIOCP_ETIMEDOUT == ETIMEDOUT);
    CHECK(PIOCP_EAGAIN == EAGAIN);
#endif
}

static void test_from_win32(void)
{
#ifdef _WIN32
    CHECK(piocp_error_from_win32(0) == 0);
    CHECK(piocp_error_from_win32(WSAECONNRESET) == PIOCP_ECONNRESET);
    CHECK(piocp_error_from_win32(ERROR_NETNAME_DELETED) == PIOCP_ECONNRESET);
    CHECK(piocp_error_from_win32(WSAENETRESET) == PIOCP_ECONNRESET);
    CHECK(piocp_error_from_win32(ERROR_CONNECTION_ABORTED) == PIOCP_ECONNABORTED);
    CHECK(piocp_error_from_win32(ERROR_OPERATION_ABORTED) == PIOCP_ECANCELED);
    CHECK(piocp_error_from_win32(ERROR_CONNECTION_REFUSED) == PIOCP_ECONNREFUSED);
    CHECK(piocp_error_from_win32(ERROR_PORT_UNREACHABLE) == PIOCP_ECONNREFUSED);
    CHECK(piocp_error_from_win32(ERROR_SEM_TIMEOUT) == PIOCP_ETIMEDOUT);
    CHECK(piocp_error_from_win32(WSAETIMEDOUT) == PIOCP_ETIMEDOUT);
    CHECK(piocp_error_from_win32(WSAESHUTDOWN) == PIOCP_ESHUTDOWN);
    CHECK(piocp_error_from_win32(ERROR_FILE_NOT_FOUND) == PIOCP_ENOENT);
    CHECK(piocp_error_from_win32(ERROR_PATH_NOT_FOUND) == PIOCP_ENOENT);
    CHECK(piocp_error_from_win32(ERROR_ACCESS_DENIED) == PIOCP_EACCES);
    CHECK(piocp_error_from_win32(ERROR_NOT_ENOUGH_MEMORY) == PIOCP_ENOMEM);
    CHECK(piocp_error_from_win32(WSAEMFILE) == PIOCP_EMFILE);
    CHECK(piocp_error_from_win32(WSAEINVAL) == PIOCP_EINVAL);
    CHECK(piocp_error_from_win32(ERROR_BROKEN_PIPE) == PIOCP_EPIPE);
    CHECK(piocp_error_from_win32(ERROR_GEN_FAILURE) == PIOCP_EIO); /* no closer meaning */
    /* every result is one of the engine's numbers */
    size_t n = sizeof all_errors / sizeof all_errors[0];
    for (unsigned long code = 1; code < 12000; code++) {
        int e = piocp_error_from_win32(code);
        bool known = e == PIOCP_EWOULDBLOCK; /* EAGAIN's twin on POSIX: not in the list */
        for (size_t i = 0; i < n && !known; i++)
            known = e == all_errors[i];
        CHECK(known);
    }
#else
    printf("(Windows only)\n");
#endif
}

/* Whether `text` contains `word`, ignoring case. */
static bool mentions(const char *text, const char *word)
{
    for (const char *t = text; *t; t++) {
        size_t i = 0;
        while (word[i] && t[i] && tolower((unsigned char)t[i]) == tolower((unsigned char)word[i]))
            i++;
        if (!word[i])
            return true;
    }
    return false;
}

/* piocp_error_text: a message for every engine number, on one line, not
 * the C runtime's "Unknown error" for the Winsock ones (Windows); and
 * small or empty buffers are safe. */
static void test_text(void)
{
    size_t n = sizeof all_errors / sizeof all_errors[0];
    for (size_t i = 0; i < n; i++) {
        char buf[128];
        const char *text = piocp_error_text(all_errors[i], buf, sizeof buf);
        CHECK(text != NULL && text[0] != '\0');
        CHECK(!mentions(text, "unknown error"));
        CHECK(strchr(text, '\n') == NULL && strchr(text, '\r') == NULL);
    }
    char buf[128];
    CHECK(mentions(piocp_error_text(PIOCP_ECONNREFUSED, buf, sizeof buf), "refused"));
    CHECK(mentions(piocp_error_text(PIOCP_ECONNRESET, buf, sizeof buf), "reset"));
    CHECK(mentions(piocp_error_text(PIOCP_ENOENT, buf, sizeof buf), "no such file"));
    CHECK(mentions(piocp_error_text(PIOCP_ECANCELED, buf, sizeof buf), "cancel"));
    char tiny[4];
    CHECK(piocp_error_text(PIOCP_ECONNREFUSED, tiny, sizeof tiny) != NULL);
    CHECK(piocp_error_text(PIOCP_EINVAL, tiny, sizeof tiny) != NULL);
    CHECK(strcmp(piocp_error_text(PIOCP_EINVAL, buf, 0), "") == 0);
}

static const test_case cases[] = {
    {"distinct", test_distinct},
    {"python_values", test_python_values},
    {"from_win32", test_from_win32},
    {"text", test_text},
    {NULL, NULL},
};

int main(int argc, char **argv) { return run_test_main(cases, argc, argv); }
