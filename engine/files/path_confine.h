/*
 * path_confine.h - open a client-supplied file name without leaving a root.
 *
 * Internal to the engine's native handlers; not part of the public API.
 */
#ifndef PIOCP_PATH_CONFINE_H
#define PIOCP_PATH_CONFINE_H

#include <stddef.h>
#include <sys/stat.h>

/*
 * Opens `name` (name_len bytes, need not be NUL-terminated) for reading,
 * strictly inside the directory `root_fd`.  On success returns 0 and stores
 * a descriptor of a regular file (O_CLOEXEC, O_NONBLOCK) in *out_fd.  On
 * failure returns -errno and stores in *reason a short static text fit to
 * send to the client: "invalid name", "absolute path not allowed",
 * "path escapes root", "name too long", "file not found",
 * "not a regular file", "symbolic link not allowed", "permission denied"...
 *
 * Any ".." component is refused, even one that would stay inside the root.
 * With openat2(2) symbolic links are followed only while they stay beneath
 * the root; without it (old kernel, seccomp) every symbolic link is refused.
 * `st` (may be NULL) receives the file's fstat, which the check needed
 * anyway: callers need not pay for a second one.  Thread-safe.
 */
int piocp_open_beneath(int root_fd, const char *name, size_t name_len, int *out_fd,
                       const char **reason, struct stat *st);

/* The same confinement for a directory (for listings); an empty name is
 * the root itself. */
int piocp_open_dir_beneath(int root_fd, const char *name, size_t name_len, int *out_fd,
                           const char **reason);

/* 1 if names are resolved with openat2(2), 0 if with the stricter
 * component-by-component walk. */
int piocp_path_confine_uses_openat2(void);

/* Test hook: non-zero forces the fallback walk, zero restores detection. */
void piocp_path_confine_force_fallback(int force);

#endif /* PIOCP_PATH_CONFINE_H */
