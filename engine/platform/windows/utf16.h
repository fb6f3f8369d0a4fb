/*
 * utf16.h (Windows) - UTF-8, the engine's text, to and from UTF-16, the
 * Win32 API's: file names go through the W functions, never the A ones,
 * whose code page cannot say every name.  Internal to platform/windows/.
 */
#ifndef PYIOCP_PLATFORM_WINDOWS_UTF16_H
#define PYIOCP_PLATFORM_WINDOWS_UTF16_H

#include <stddef.h>
#include <wchar.h>

/* Converts `len` bytes of UTF-8 (need not be NUL-terminated) into out[0..cap)
 * and NUL-terminates it: the wide characters written without the NUL, or
 * -EINVAL (not valid UTF-8), -ENAMETOOLONG (does not fit). */
int piocp_utf8_to_utf16(const char *s, size_t len, wchar_t *out, size_t cap);

/* Converts `len` wide characters into out[0..cap), NUL-terminated: the
 * bytes written without the NUL, or -EINVAL (an unpaired surrogate, which
 * no UTF-8 can say), -ENAMETOOLONG. */
int piocp_utf16_to_utf8(const wchar_t *s, size_t len, char *out, size_t cap);

#endif
