/*
 * file_cache.h - open descriptors of served files, kept between requests
 * (nginx's open_file_cache): a hit costs no system call at all, instead of
 * openat2, fstat, fstat and close, which were most of a small file's
 * system calls.
 *
 * Internal to the native handlers.  Names are opened through
 * piocp_open_beneath, so everything cached was confined to the root when
 * it was opened, and every revalidation opens the name that way again.
 *
 * Revalidation.  On Linux an entry is dropped as soon as inotify reports a
 * change in its directory (a write, truncation, rename, deletion, symlink
 * swapped; platform/file_watch.h), but inotify tells us late: its thread
 * has to run after the change.  So an entry is also trusted for `valid_ms`
 * only (nginx's open_file_cache_valid,
 * h2o's file cache): the first hit after that re-opens the name and
 * compares device, file id (inode), size, mtime and ctime; the same file keeps its
 * descriptor and is trusted for another period, a different one replaces
 * it.  Within the period a hit makes no system call.  With `valid_ms` 0
 * every hit also re-reads the open file's info (what the raw protocol, which
 * carries no length, needs), and names are re-opened every
 * FILE_CACHE_VALID_MS.
 *
 * What that guarantees the HTTP server (README, "Files that change"):
 * answers are built from one entry, whose size gives Content-Length and
 * whose descriptor (or, for a small file, whose copy in memory) gives the
 * body, so
 *   - a file replaced by rename is always served as one complete version,
 *     old or new: the old inode is never written again;
 *   - a file written in place (rewritten, truncated) while an answer is
 *     read from it has no content guarantee: the answer may mix bytes of
 *     two versions, at their offsets.  Its framing holds: exactly
 *     Content-Length bytes, or a reset when the file became shorter than
 *     that (the transmit fails with EIO, the engine resets the connection);
 *     never more bytes, never an orderly close after a short body;
 *   - a request arriving more than `valid_ms` after a change is answered
 *     from the changed file, unless the change kept all five fields equal
 *     (an in-place rewrite of the same size within one timestamp tick),
 *     which only inotify catches.
 *
 * Windows has no change notices here (platform/windows/file_watch.c): the
 * validity period alone bounds staleness.  So there a request within
 * `valid_ms` of a change may still be answered from the previous version
 * (one complete version, framed as above), where Linux usually sees the
 * change within milliseconds; and an in-place rewrite that keeps size,
 * last-write time and ChangeTime (all in 100 ns steps) goes unseen until
 * the entry is evicted.  The five fields there are the volume serial
 * number, the file index, the size, the last write time and ChangeTime.
 * With `valid_ms` 0 (the raw protocol) both platforms check every hit.
 */
#ifndef PIOCP_FILE_CACHE_H
#define PIOCP_FILE_CACHE_H

#include "pyiocp.h"
#include "platform/file.h"

#include <stddef.h>
#include <stdint.h>

typedef struct piocp_file_cache piocp_file_cache;

/* Files up to this size also keep their bytes in memory: a small answer
 * then leaves in one send with its header instead of send + sendfile. */
#define FILE_CACHE_SMALL_FILE 16384

typedef struct piocp_cached_file {
    piocp_file fd;         /* open for reading; valid until released */
    piocp_file_info info;  /* as of opening: what answers promise (size, ETag) */
    const char *bytes;   /* the whole file if it is small, else NULL */
} piocp_cached_file;

/* The default validity period, and how often names are re-opened when
 * every hit is checked (valid_ms 0). */
#define FILE_CACHE_VALID_MS 1000

/* A capacity that leaves room for connections under RLIMIT_NOFILE. */
size_t piocp_file_cache_default_capacity(void);

/* root_path: the root directory's path (for change notices, file_watch.h),
 * root: the open root (piocp_dir_open_root).
 * capacity 0 disables caching (every open goes to the file system).
 * valid_ms: how long an entry is trusted without a system call (above);
 * 0: every hit re-reads the open file's info (fstat). */
int piocp_file_cache_new(piocp_file_cache **out, piocp_file root, const char *root_path,
                         size_t capacity, int valid_ms);
void piocp_file_cache_free(piocp_file_cache *cache);

/* Opens `name` beneath the root, through the cache.  On success returns 0 and
 * a referenced entry: release it once the transmit using its fd completed.
 * On failure returns -errno and a short reason (see piocp_open_beneath). */
int piocp_file_cache_open(piocp_file_cache *cache, const char *name, size_t name_len,
                          const piocp_cached_file **out, const char **reason);
void piocp_file_cache_release(piocp_file_cache *cache, const piocp_cached_file *file);

/* Hits and misses so far (for tests and `info`). */
void piocp_file_cache_stats(piocp_file_cache *cache, uint64_t *hits, uint64_t *misses);

#endif
