/*
 * file.c (POSIX) - see platform/file.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform/file.h"
#include "platform/posix/fault_calls.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

/* Unsigned, so that no date overflows: the ETag has always hashed exactly
 * these bits (files/file_cache.h, protocols/http/respond.c). */
static int64_t time_ns(const struct timespec *t)
{
    return (int64_t)((uint64_t)t->tv_sec * 1000000000u + (uint64_t)t->tv_nsec);
}

int piocp_file_get_info(piocp_file file, piocp_file_info *out)
{
    struct stat st;
    if (FAULT_CALL("fstat", fstat(file, &st)) < 0)
        return -errno;
    out->size = (uint64_t)st.st_size;
    out->mtime_ns = time_ns(&st.st_mtim);
    out->ctime_ns = time_ns(&st.st_ctim);
    out->device = (uint64_t)st.st_dev;
    out->file_id = (uint64_t)st.st_ino;
    out->kind = S_ISREG(st.st_mode)   ? PIOCP_FILE_REGULAR
                : S_ISDIR(st.st_mode) ? PIOCP_FILE_DIRECTORY
                                      : PIOCP_FILE_OTHER;
    return 0;
}

void piocp_file_close(piocp_file file)
{
    (void)fault_close("close", file); /* the descriptor is gone either way */
}

ssize_t piocp_file_pread(piocp_file file, void *buf, size_t len, uint64_t offset)
{
    for (;;) {
        ssize_t n = fault_pread("pread", file, buf, len, (off_t)offset);
        if (n >= 0)
            return n;
        if (errno != EINTR)
            return -errno;
    }
}

size_t piocp_file_write_all(piocp_file file, const void *buf, size_t len)
{
    const char *p = buf;
    size_t done = 0;
    while (done < len) {
        ssize_t w = fault_write("write", file, p + done, len - done);
        if (w > 0) {
            done += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* We were handed a non-blocking descriptor; the caller is a
             * thread of its own, so waiting here costs nobody else. */
            struct pollfd pfd = {.fd = file, .events = POLLOUT};
            if (poll(&pfd, 1, -1) < 0 && errno != EINTR)
                break;
        } else {
            break;
        }
    }
    return done;
}

int piocp_dir_open_root(const char *path, piocp_file *out)
{
    int fd = FAULT_CALL("open", open(path, O_DIRECTORY | O_RDONLY | O_CLOEXEC));
    if (fd < 0)
        return -errno;
    *out = fd;
    return 0;
}

uint64_t piocp_file_open_limit(void)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY)
        return 0;
    return (uint64_t)limit.rlim_cur;
}
