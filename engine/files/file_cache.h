/*
 * file_cache.h - open descriptors of served files, kept between requests
 * (nginx's open_file_cache): a hit costs one fstat instead of openat2,
 * fstat, fstat and close, which were most of a small file's system calls.
 *
 * Internal to the native handlers.  Names are opened through
 * piocp_open_beneath, so everything cached was confined to the root when
 * it was opened.  Every hit re-checks size and mtime with one fstat of the
 * open descriptor (so a file rewritten in place never goes out with a
 * stale length); an entry is dropped when inotify reports a change in its
 * directory (renames, deletions, symlinks swapped), and in any case re-
 * opened by name and compared once it is older than the maximum age, which
 * covers file systems where inotify says nothing.
 */
#ifndef PIOCP_FILE_CACHE_H
#define PIOCP_FILE_CACHE_H

#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

typedef struct piocp_file_cache piocp_file_cache;

/* Files up to this size also keep their bytes in memory: a small answer
 * then leaves in one send with its header instead of send + sendfile. */
#define FILE_CACHE_SMALL_FILE 16384

typedef struct piocp_cached_file {
    int fd;              /* open for reading; valid until released */
    struct stat st;      /* as of opening (re-checked on every hit) */
    const char *bytes;   /* the whole file if it is small, else NULL */
} piocp_cached_file;

#define FILE_CACHE_MAX_AGE_MS 1000

/* A capacity that leaves room for connections under RLIMIT_NOFILE. */
size_t piocp_file_cache_default_capacity(void);

/* root_path: the root directory's path (for inotify), root_fd: the open root.
 * capacity 0 disables caching (every open goes to the file system). */
int piocp_file_cache_new(piocp_file_cache **out, int root_fd, const char *root_path,
                         size_t capacity, int max_age_ms);
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
