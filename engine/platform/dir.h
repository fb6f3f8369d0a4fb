/*
 * dir.h - the names in an open directory, for listings: readdir on POSIX
 * (platform/posix/dir.c), the handle's own enumeration on Windows
 * (platform/windows/dir.c), both as UTF-8 names.
 */
#ifndef PYIOCP_PLATFORM_DIR_H
#define PYIOCP_PLATFORM_DIR_H

#include "errors.h"
#include "pyiocp.h"

#include <stdbool.h>
#include <stddef.h>

/* One entry: its name (NUL-terminated, `len` bytes: any byte but '/' and
 * NUL on POSIX; UTF-8 on Windows, U+FFFD for an unpaired surrogate) and
 * whether it is a directory (a symbolic link, or on Windows any reparse
 * point, is not: it is listed as what it is).  Non-zero stops the walk. */
typedef int (*piocp_dir_entry_fn)(void *user, const char *name, size_t len, bool is_dir);

/* Calls `each` for every entry of the directory `dir` but "." and "..", in
 * the file system's order, until it returns non-zero.  Returns that value,
 * 0 at the end, or -errno (-ENOTDIR: `dir` is not a directory).  The
 * directory is re-opened for an enumeration position of its own, so `dir`
 * is left as it was and any number of threads may list it at once (an
 * O_PATH descriptor will do).  Thread-safe. */
int piocp_dir_list(piocp_file dir, piocp_dir_entry_fn each, void *user);

/* Test hook (POSIX): non-zero makes every entry's type come from fstatat,
 * as when the file system reports DT_UNKNOWN; zero restores d_type.
 * Nothing on Windows, where the type always comes with the name. */
void piocp_dir_list_force_stat(int force);

#endif
