/*
 * dir.c (POSIX) - see platform/dir.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform/dir.h"
#include "platform/atomics.h"
#include "platform/posix/fault_calls.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static atomic_int force_stat;

void piocp_dir_list_force_stat(int force)
{
    atomic_store_explicit(&force_stat, force != 0, memory_order_relaxed);
}

static bool entry_is_dir(DIR *d, const struct dirent *de)
{
    if (de->d_type != DT_UNKNOWN && !atomic_load_explicit(&force_stat, memory_order_relaxed))
        return de->d_type == DT_DIR;
    /* Not following a symbolic link: it is listed as what it is. */
    struct stat st;
    return fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
           S_ISDIR(st.st_mode);
}

int piocp_dir_list(piocp_file dir, piocp_dir_entry_fn each, void *user)
{
    /* A descriptor of its own (not a dup, which would share the caller's
     * file offset with every other thread listing the same directory). */
    int fd = FAULT_CALL("openat", openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (fd < 0)
        return -errno;
    DIR *d = fault_errno("fdopendir") ? NULL : fdopendir(fd);
    if (d == NULL) {
        int err = errno;
        close(fd);
        return -err;
    }
    int rc = 0;
    for (;;) {
        errno = 0;
        struct dirent *de = readdir(d);
        if (de == NULL) {
            rc = errno ? -errno : 0;
            break;
        }
        const char *n = de->d_name;
        if (n[0] == '.' && (n[1] == '\0' || (n[1] == '.' && n[2] == '\0')))
            continue;
        rc = each(user, n, strlen(n), entry_is_dir(d, de));
        if (rc != 0)
            break;
    }
    closedir(d); /* closes fd */
    return rc;
}
