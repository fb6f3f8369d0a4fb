/*
 * served_root.h - a root folder served to clients: its descriptor, its
 * file cache, its access log.  What the raw and the HTTP file servers both
 * set up the same way; each embeds one.
 *
 * Internal to the native handlers; not part of the public API.
 */
#ifndef PIOCP_SERVED_ROOT_H
#define PIOCP_SERVED_ROOT_H

#include "pyiocp.h"
#include "files/file_cache.h"
#include "log/access_log.h"

typedef struct piocp_served_root {
    piocp_file dir;          /* the root, open as a directory: names are opened beneath it */
    piocp_file_cache *files; /* open files under dir, shared by every connection */
    piocp_access_log *log;   /* NULL: no access log */
} piocp_served_root;

/* Opens the directory `path` (UTF-8 on Windows), creates its file cache
 * (whose change notices resolve `path` to its real path once) with the
 * validity period `cache_valid_ms` (file_cache.h: 0 checks every hit) and,
 * unless access_log_fd is PIOCP_INVALID_FILE, an access log writing to it
 * (the descriptor stays the caller's; 0 is a valid one).  Returns 0, or
 * -errno with nothing left open. */
int piocp_served_root_open(piocp_served_root *root, const char *path, piocp_file access_log_fd,
                           int cache_valid_ms);

/* piocp_access_log_swap, or PIOCP_INVALID_FILE without an access log. */
piocp_file piocp_served_root_swap_log(piocp_served_root *root, piocp_file fd);

/* Writes out the access log, then frees the cache and closes the root.
 * Only once no connection uses them. */
void piocp_served_root_close(piocp_served_root *root);

#endif
