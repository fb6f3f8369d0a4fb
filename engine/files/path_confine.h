/*
 * path_confine.h - open a client-supplied file name without leaving a root.
 *
 * Internal to the engine's native handlers; not part of the public API.
 */
#ifndef PIOCP_PATH_CONFINE_H
#define PIOCP_PATH_CONFINE_H

#include "pyiocp.h"
#include "platform/file.h"

#include <stddef.h>

/*
 * Opens `name` (name_len bytes, '/'-separated, UTF-8 on Windows, need not
 * be NUL-terminated) for reading, strictly inside the directory `root`
 * (piocp_dir_open_root).  On success returns 0 and stores an open regular
 * file in *out.  On failure returns -errno, stores PIOCP_INVALID_FILE in
 * *out and in *reason a short static text fit to send to the client:
 * "invalid name", "absolute path not allowed", "path escapes root",
 * "name too long", "file not found", "not a regular file",
 * "symbolic link not allowed", "permission denied"...
 *
 * The name first passes files/path_names.c (with Windows' rules there).
 * Any ".." component is refused, even one that would stay inside the root.
 *
 * POSIX (platform/posix/path_confine.c): a descriptor with O_CLOEXEC and
 * O_NONBLOCK.  With openat2(2) symbolic links are followed only while they
 * stay beneath the root; without it (old kernel, seccomp) every symbolic
 * link is refused.
 *
 * Windows (platform/windows/path_confine.c): an overlapped handle from
 * CreateFileW, shared for reading, writing and deleting (a served file can
 * still be replaced or removed), not inheritable.  Symbolic links and
 * junctions are followed, and the file reached is kept only if its final
 * path (GetFinalPathNameByHandleW) lies under the root's, compared without
 * regard to case; a handle that is not a disk file is refused.
 *
 * `info` (may be NULL) receives the file's piocp_file_get_info, which the
 * check needed anyway: callers need not pay for a second one.  Thread-safe.
 */
int piocp_open_beneath(piocp_file root, const char *name, size_t name_len, piocp_file *out,
                       const char **reason, piocp_file_info *info);

/* The same confinement for a directory (for listings); an empty name is
 * the root itself.  Windows: a synchronous handle (directory enumeration
 * wants one). */
int piocp_open_dir_beneath(piocp_file root, const char *name, size_t name_len, piocp_file *out,
                           const char **reason);

/* 1 if names are resolved with openat2(2), 0 if with the stricter
 * component-by-component walk (and always 0 on Windows). */
int piocp_path_confine_uses_openat2(void);

/* Test hook: non-zero forces the fallback walk, zero restores detection
 * (nothing on Windows). */
void piocp_path_confine_force_fallback(int force);

#endif /* PIOCP_PATH_CONFINE_H */
