/*
 * path_names.h - the lexical rules a client-supplied file name must pass
 * before any file system sees it, on every platform.
 *
 * Internal to the engine's native handlers.  Both resolvers (openat2 and
 * the component walk on Linux, CreateFileW on Windows) run these first.
 */
#ifndef PIOCP_PATH_NAMES_H
#define PIOCP_PATH_NAMES_H

#include <stdbool.h>
#include <stddef.h>

/* Windows' rules apply where the engine is built for Windows. */
#ifdef _WIN32
#define PIOCP_WINDOWS_NAME_RULES true
#else
#define PIOCP_WINDOWS_NAME_RULES false
#endif

/* The longest client name the handlers look at, in bytes with the NUL, on
 * every platform: Linux's PATH_MAX (mingw's is 260, Windows' own limit
 * with "\\?\" is 32767 UTF-16 units). */
#define PIOCP_SERVED_NAME_MAX 4096

/*
 * 0 if `name` (name_len bytes, '/'-separated, relative to the served root)
 * may be looked up, else -errno with a short static text for the client in
 * *reason:
 *   - empty, or with a NUL: -EINVAL "invalid name";
 *   - too long: -ENAMETOOLONG; absolute: -EPERM; ending in '/': -EISDIR;
 *   - any ".." component: -EXDEV "path escapes root" (even one that would
 *     stay inside: the protocols never need one, and a blanket rule is
 *     easier to trust than counting depth).
 * With `windows_rules` (see PIOCP_WINDOWS_NAME_RULES), also what Windows
 * would read as something else than a file under the root:
 *   - '\\' (a second separator), ':' (a drive letter, an alternate data
 *     stream): -EINVAL;
 *   - a component ending in '.' or ' ' (Windows strips them, so "a.txt."
 *     would open "a.txt"): -EINVAL;
 *   - a reserved device name as a component, with or without an extension
 *     ("CON", "nul.txt", "COM1.log", "LPT9"...), in any case: -EPERM
 *     "not a regular file".
 */
int piocp_check_served_name(const char *name, size_t name_len, size_t max_len,
                            bool windows_rules, const char **reason);

#endif
