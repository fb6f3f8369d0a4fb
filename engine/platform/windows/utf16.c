/*
 * utf16.c (Windows) - see utf16.h.
 */
#include "platform/windows/utf16.h"
#include "errors.h"

#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#include <limits.h>

int piocp_utf8_to_utf16(const char *s, size_t len, wchar_t *out, size_t cap)
{
    if (cap == 0 || len > INT_MAX || cap - 1 > INT_MAX)
        return -PIOCP_ENAMETOOLONG;
    if (len == 0) {
        out[0] = L'\0';
        return 0;
    }
    /* MB_ERR_INVALID_CHARS: a stray byte is refused, not turned into
     * U+FFFD, which would name another file than the client asked for */
    int n = MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, (int)len, out, (int)cap - 1);
    if (n <= 0)
        return GetLastError() == ERROR_INSUFFICIENT_BUFFER ? -PIOCP_ENAMETOOLONG : -PIOCP_EINVAL;
    out[n] = L'\0';
    return n;
}

int piocp_utf16_to_utf8(const wchar_t *s, size_t len, char *out, size_t cap)
{
    if (cap == 0 || len > INT_MAX || cap - 1 > INT_MAX)
        return -PIOCP_ENAMETOOLONG;
    if (len == 0) {
        out[0] = '\0';
        return 0;
    }
    int n = WideCharToMultiByte(CP_UTF8, WC_ERR_INVALID_CHARS, s, (int)len, out, (int)cap - 1,
                                NULL, NULL);
    if (n <= 0)
        return GetLastError() == ERROR_INSUFFICIENT_BUFFER ? -PIOCP_ENAMETOOLONG : -PIOCP_EINVAL;
    out[n] = '\0';
    return n;
}
