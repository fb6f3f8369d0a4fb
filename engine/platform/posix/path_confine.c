/*
 * path_confine.c (POSIX) - open a client-supplied name strictly inside a
 * root (files/path_confine.h).
 *
 * The kernel does the confinement (openat2 RESOLVE_BENEATH) rather than a
 * string check, because only the kernel can see symbolic links and renames
 * at the moment of the lookup.  Where openat2 is missing we walk the name
 * one component at a time refusing every symbolic link, which is stricter
 * but needs no knowledge of where a link points.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* O_PATH, O_NOFOLLOW, syscall() */
#endif

#include "files/path_confine.h"
#include "files/path_names.h"
#include "platform/atomics.h"
#include "platform/posix/fault_calls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifdef SYS_openat2
#include <linux/openat2.h>
#endif

/* O_NONBLOCK: opening a FIFO must never park a worker thread waiting for a
 * writer.  O_NOCTTY: a terminal in the tree must not become ours.
 * O_LARGEFILE: the raw syscall does not add it for 32-bit callers as
 * glibc's open() does (it is 0 where it does not matter). */
#define FINAL_FLAGS (O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY | O_LARGEFILE)

/* openat2 with RESOLVE_BENEATH reports EAGAIN when a concurrent rename or
 * mount might have let the lookup escape; the kernel asks us to retry. */
#define OPENAT2_RETRIES 8

enum { OPENAT2_UNKNOWN = 0, OPENAT2_WORKS, OPENAT2_MISSING };

static atomic_int openat2_state = OPENAT2_UNKNOWN;
static atomic_int force_fallback = 0;

static int fail(int err, const char *why, const char **reason)
{
    *reason = why;
    return -err;
}

/* Reason for an errno of the kernel's lookup/open. */
static const char *reason_for(int err)
{
    switch (err) {
    case ENOENT:
    case ENOTDIR:
        return "file not found";
    case EXDEV:
        return "path escapes root";
    case EACCES:
    case EPERM:
        return "permission denied";
    case ENAMETOOLONG:
        return "name too long";
    case ELOOP:
        return "symbolic link loop";
    case ENXIO:  /* a socket, or a device without a driver */
    case ENODEV:
        return "not a regular file";
    case EMFILE:
    case ENFILE:
    case ENOMEM:
        return "server out of resources";
    default:
        return "cannot open file";
    }
}

/* Rejects what the kernel would accept but the protocol must not: the
 * checks any resolver needs (files/path_names.c), done once before either
 * one runs. */
static int check_name(const char *name, size_t name_len, const char **reason)
{
    return piocp_check_served_name(name, name_len, PATH_MAX, PIOCP_WINDOWS_NAME_RULES, reason);
}

#ifdef SYS_openat2
static int sys_openat2(int dirfd, const char *path, uint64_t flags)
{
    struct open_how how;
    memset(&how, 0, sizeof how);
    how.flags = flags;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;

    long fd;
    int tries = 0;
    do {
        fd = FAULT_CALL("openat2", syscall(SYS_openat2, dirfd, path, &how, sizeof how));
    } while (fd < 0 && (errno == EINTR || (errno == EAGAIN && ++tries < OPENAT2_RETRIES)));
    return fd < 0 ? -errno : (int)fd;
}

/* ENOSYS (old kernel) and EPERM (a seccomp filter that predates openat2)
 * both mean "not available" -- but EPERM may also be a real answer about
 * the file, so ask again about the root itself, which we can surely open. */
static bool openat2_missing(int dirfd, int err)
{
    if (err == ENOSYS)
        return true;
    if (err != EPERM)
        return false;
    int fd = sys_openat2(dirfd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        close(fd);
        return false;
    }
    return fd == -ENOSYS || fd == -EPERM;
}
#endif

/* Walks `path` (a writable, NUL-terminated copy) one component at a time.
 * O_NOFOLLOW at every step means no symbolic link is ever followed, so no
 * lookup can leave the root ("..", the only other exit, was refused). */
static int walk_open(int root_fd, char *path, int *out_fd, const char **reason)
{
    int dir = root_fd;
    char *p = path;

    for (;;) {
        while (*p == '/')
            p++;
        char *slash = strchr(p, '/');
        if (slash == NULL)
            break;
        *slash = '\0';

        /* O_PATH + fstat instead of O_DIRECTORY so that a symbolic link
         * and a plain file give different, honest reasons. */
        int fd = FAULT_CALL("openat", openat(dir, p, O_PATH | O_NOFOLLOW | O_CLOEXEC));
        int err = errno;
        if (dir != root_fd)
            close(dir);
        if (fd < 0)
            return fail(err, reason_for(err), reason);

        struct stat st;
        if (FAULT_CALL("fstat", fstat(fd, &st)) < 0) {
            err = errno;
            close(fd);
            return fail(err, reason_for(err), reason);
        }
        if (S_ISLNK(st.st_mode)) {
            close(fd);
            return fail(ELOOP, "symbolic link not allowed", reason);
        }
        if (!S_ISDIR(st.st_mode)) {
            close(fd);
            return fail(ENOTDIR, "file not found", reason);
        }
        dir = fd;
        p = slash + 1;
    }

    int fd = FAULT_CALL("openat", openat(dir, p, FINAL_FLAGS | O_NOFOLLOW));
    int err = errno;
    if (dir != root_fd)
        close(dir);
    if (fd < 0) {
        /* With O_NOFOLLOW, ELOOP means exactly "the last component is a
         * symbolic link". */
        if (err == ELOOP)
            return fail(ELOOP, "symbolic link not allowed", reason);
        return fail(err, reason_for(err), reason);
    }
    *out_fd = fd;
    return 0;
}

static int open_resolved(int root_fd, char *path, int *out_fd, const char **reason)
{
#ifdef SYS_openat2
    if (!atomic_load_explicit(&force_fallback, memory_order_relaxed) &&
        atomic_load_explicit(&openat2_state, memory_order_relaxed) != OPENAT2_MISSING) {
        int fd = sys_openat2(root_fd, path, FINAL_FLAGS);
        if (fd >= 0) {
            atomic_store_explicit(&openat2_state, OPENAT2_WORKS, memory_order_relaxed);
            *out_fd = fd;
            return 0;
        }
        if (!openat2_missing(root_fd, -fd)) {
            atomic_store_explicit(&openat2_state, OPENAT2_WORKS, memory_order_relaxed);
            return fail(-fd, reason_for(-fd), reason);
        }
        atomic_store_explicit(&openat2_state, OPENAT2_MISSING, memory_order_relaxed);
    }
#endif
    return walk_open(root_fd, path, out_fd, reason);
}

/* Checks the name, opens it beneath the root and reads its info: the part
 * both public openers share.  The kind of file is checked on the open
 * descriptor, not the name, so nothing can be swapped in between. */
static int open_and_stat(int root_fd, const char *name, size_t name_len, int *out_fd,
                         const char **reason, piocp_file_info *info)
{
    *out_fd = -1;
    int rc = check_name(name, name_len, reason);
    if (rc < 0)
        return rc;
    char path[PATH_MAX];
    memcpy(path, name, name_len);
    path[name_len] = '\0';
    int fd = -1;
    rc = open_resolved(root_fd, path, &fd, reason);
    if (rc < 0)
        return rc;
    rc = piocp_file_get_info(fd, info);
    if (rc < 0) {
        close(fd);
        return fail(-rc, reason_for(-rc), reason);
    }
    *out_fd = fd;
    return 0;
}

int piocp_open_beneath(piocp_file root_fd, const char *name, size_t name_len, piocp_file *out_fd,
                       const char **reason, piocp_file_info *info_out)
{
    *out_fd = -1;
    piocp_file_info info;
    int fd;
    int rc = open_and_stat(root_fd, name, name_len, &fd, reason, &info);
    if (rc < 0)
        return rc;
    if (info.kind != PIOCP_FILE_REGULAR) {
        close(fd);
        return fail(info.kind == PIOCP_FILE_DIRECTORY ? EISDIR : EINVAL, "not a regular file",
                    reason);
    }
    *out_fd = fd;
    if (info_out)
        *info_out = info;
    return 0;
}

int piocp_open_dir_beneath(piocp_file root_fd, const char *name, size_t name_len,
                           piocp_file *out_fd, const char **reason)
{
    *out_fd = -1;
    if (name_len == 0) {
        int fd = FAULT_CALL("openat", openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
        if (fd < 0)
            return fail(errno, reason_for(errno), reason);
        *out_fd = fd;
        return 0;
    }
    piocp_file_info info;
    int fd;
    int rc = open_and_stat(root_fd, name, name_len, &fd, reason, &info);
    if (rc < 0)
        return rc;
    if (info.kind != PIOCP_FILE_DIRECTORY) {
        close(fd);
        return fail(ENOTDIR, "not a directory", reason);
    }
    *out_fd = fd;
    return 0;
}

int piocp_path_confine_uses_openat2(void)
{
    if (atomic_load_explicit(&force_fallback, memory_order_relaxed))
        return 0;
#ifdef SYS_openat2
    int state = atomic_load_explicit(&openat2_state, memory_order_relaxed);
    if (state == OPENAT2_UNKNOWN) {
        int fd = sys_openat2(AT_FDCWD, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0)
            close(fd);
        state = (fd >= 0 || !openat2_missing(AT_FDCWD, -fd)) ? OPENAT2_WORKS : OPENAT2_MISSING;
        atomic_store_explicit(&openat2_state, state, memory_order_relaxed);
    }
    return state == OPENAT2_WORKS;
#else
    return 0;
#endif
}

void piocp_path_confine_force_fallback(int force)
{
    atomic_store_explicit(&force_fallback, force != 0, memory_order_relaxed);
}
