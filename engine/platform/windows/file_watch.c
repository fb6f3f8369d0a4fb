/*
 * file_watch.c (Windows) - see platform/file_watch.h: no change
 * notifications yet, so the file cache revalidates by time alone
 * (files/file_cache.h says what that guarantees).
 */
#include "platform/file_watch.h"

piocp_file_watch *piocp_file_watch_start(const char *root_path, piocp_file_changed_fn changed,
                                         void *user)
{
    (void)root_path;
    (void)changed;
    (void)user;
    return NULL;
}

int piocp_file_watch_add(piocp_file_watch *w, const char *dir, size_t dir_len)
{
    (void)w;
    (void)dir;
    (void)dir_len;
    return -1;
}

void piocp_file_watch_stop(piocp_file_watch *w)
{
    (void)w;
}
