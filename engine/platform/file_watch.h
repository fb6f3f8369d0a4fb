/*
 * file_watch.h - word from the kernel that something changed in a
 * directory, for the file cache (files/file_cache.h), which drops what it
 * holds from there instead of waiting for its validity period to run out.
 *
 * Linux: inotify, read by a thread of its own (platform/linux/file_watch.c).
 * Windows: none yet (platform/windows/file_watch.c): the cache then relies
 * on its time-based revalidation alone.  ReadDirectoryChangesW could do it
 * later, behind the same functions.
 */
#ifndef PYIOCP_PLATFORM_FILE_WATCH_H
#define PYIOCP_PLATFORM_FILE_WATCH_H

#include <stddef.h>

typedef struct piocp_file_watch piocp_file_watch;

/* Runs on the watcher's thread after a change in the directory of `watch`
 * (a value piocp_file_watch_add returned); -1: anything may have changed
 * (events were lost, or a watched directory went away). */
typedef void (*piocp_file_changed_fn)(void *user, int watch);

/* Starts watching beneath the directory `root_path` (resolved to its real
 * path once, here: the process may change directory later).  NULL when the
 * platform cannot tell (none here, limits, seccomp, no memory): callers
 * must not depend on it. */
piocp_file_watch *piocp_file_watch_start(const char *root_path, piocp_file_changed_fn changed,
                                         void *user);

/* Watches the directory `dir` (dir_len bytes relative to the root, '/'-
 * separated, "" for the root itself): the same directory gives the same
 * value each time.  The value, or -1 if it cannot be watched (w NULL too). */
int piocp_file_watch_add(piocp_file_watch *w, const char *dir, size_t dir_len);

/* Stops and joins the watcher's thread: `changed` never runs again.  NULL
 * is ignored. */
void piocp_file_watch_stop(piocp_file_watch *w);

#endif
