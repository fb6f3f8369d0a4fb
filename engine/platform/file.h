/*
 * file.h - the open-file pieces the native handlers need, behind names of
 * our own: what a file is (size, times, identity, kind), positioned reads,
 * writing a log, opening a served root.  One implementation per platform
 * (platform/posix/file.c, platform/windows/file.c), so that no handler
 * sees `struct stat`, `open` or `CreateFileW`.  Errors are -PIOCP_E*
 * (errors.h).
 */
#ifndef PYIOCP_PLATFORM_FILE_H
#define PYIOCP_PLATFORM_FILE_H

#include "errors.h"
#include "pyiocp.h"

#include <stddef.h>
#include <stdint.h>

typedef enum piocp_file_kind {
    PIOCP_FILE_REGULAR = 0,
    PIOCP_FILE_DIRECTORY,
    PIOCP_FILE_OTHER /* a FIFO, a device, a socket, a pipe, a console... */
} piocp_file_kind;

/* What the file cache compares to see a file replaced or rewritten, and
 * what validators (ETag, Last-Modified) are made of. */
typedef struct piocp_file_info {
    uint64_t size;
    /* Nanoseconds since 1970-01-01 UTC: POSIX st_mtim and st_ctim (computed
     * as sec * 10^9 + nsec in 64-bit unsigned arithmetic, so the bits are
     * those the ETag always used, even for dates outside 1678-2262 where
     * the value wraps); Windows' last write time and ChangeTime (the
     * metadata-or-content change time, the nearest to ctime; the last
     * write time where the file system has none), in 100 ns steps. */
    int64_t mtime_ns;
    int64_t ctime_ns;
    /* Together, which file this is, whatever its name: st_dev and st_ino;
     * on Windows the volume serial number and the file index. */
    uint64_t device;
    uint64_t file_id;
    piocp_file_kind kind;
} piocp_file_info;

/* The whole seconds of a time above (floor), for HTTP dates. */
static inline int64_t piocp_file_time_sec(int64_t ns)
{
    return ns / 1000000000 - (ns % 1000000000 < 0);
}

/* Fills `out` from an open file or directory.  0 or -errno. */
int piocp_file_get_info(piocp_file file, piocp_file_info *out);

/* Closes a file this layer (or path_confine.h) opened. */
void piocp_file_close(piocp_file file);

/* Reads up to `len` bytes at `offset` without moving any file position
 * (other threads may read the same file at once): the count, short only
 * at the end of the file (0 there), or -errno.  Windows: the handle may
 * be overlapped (the read is waited for). */
ssize_t piocp_file_pread(piocp_file file, void *buf, size_t len, uint64_t offset);

/* Writes all `len` bytes, waiting as long as the file makes it wait (a
 * non-blocking descriptor is polled; a full pipe blocks): returns how many
 * reached it, `len` unless it failed for good.  For the access log's own
 * thread.  Windows: a synchronous handle (files, pipes and consoles as the
 * C runtime and Python open them); an overlapped one fails. */
size_t piocp_file_write_all(piocp_file file, const void *buf, size_t len);

/* Opens the directory `path` (UTF-8 on Windows) to serve files beneath it
 * (path_confine.h).  0 or -errno (-ENOTDIR if it is not a directory). */
int piocp_dir_open_root(const char *path, piocp_file *out);

/* How many files this process may have open at once, or 0 for no limit
 * worth counting (RLIMIT_NOFILE on POSIX; Windows has none of that kind). */
uint64_t piocp_file_open_limit(void);

#endif
