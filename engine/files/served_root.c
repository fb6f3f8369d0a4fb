/*
 * served_root.c - see served_root.h.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "files/served_root.h"
#include "platform/file.h"

#include <errno.h>
#include <stdlib.h>

int piocp_served_root_open(piocp_served_root *root, const char *path, piocp_file access_log_fd,
                           int cache_valid_ms)
{
    root->files = NULL;
    root->log = NULL;
    root->dir = PIOCP_INVALID_FILE;
    int rc = piocp_dir_open_root(path, &root->dir);
    if (rc < 0)
        return rc;
    rc = piocp_file_cache_new(&root->files, root->dir, path, piocp_file_cache_default_capacity(),
                              cache_valid_ms);
    if (rc == 0 && access_log_fd != PIOCP_INVALID_FILE &&
        (root->log = piocp_access_log_new(access_log_fd)) == NULL)
        rc = -ENOMEM;
    if (rc < 0)
        piocp_served_root_close(root);
    return rc;
}

piocp_file piocp_served_root_swap_log(piocp_served_root *root, piocp_file fd)
{
    return root->log ? piocp_access_log_swap(root->log, fd) : PIOCP_INVALID_FILE;
}

void piocp_served_root_close(piocp_served_root *root)
{
    piocp_access_log_free(root->log); /* writes out what is queued */
    root->log = NULL;
    piocp_file_cache_free(root->files);
    root->files = NULL;
    if (root->dir != PIOCP_INVALID_FILE)
        piocp_file_close(root->dir);
    root->dir = PIOCP_INVALID_FILE;
}
