/*
 * file_watch.c (Linux) - see platform/file_watch.h: inotify, read by a
 * thread that polls it together with an eventfd that stops it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform/file_watch.h"
#include "platform/threads.h"
#include "platform/posix/fault_calls.h"

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

#define WATCH_EVENTS (IN_MODIFY | IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | \
                      IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)

struct piocp_file_watch {
    int inotify_fd, stop_fd;
    piocp_thread thread;
    piocp_file_changed_fn changed;
    void *user;
    char root_path[PATH_MAX];
};

static void *watcher_main(void *arg)
{
    piocp_file_watch *w = arg;
    char buf[16384] __attribute__((aligned(__alignof__(struct inotify_event))));
    struct pollfd fds[2] = {{.fd = w->inotify_fd, .events = POLLIN},
                            {.fd = w->stop_fd, .events = POLLIN}};
    for (;;) {
        if (poll(fds, 2, -1) < 0) {
            if (errno == EINTR)
                continue;
            break;
        }
        if (fds[1].revents)
            break;
        ssize_t n = FAULT_CALL("inotify_read", read(w->inotify_fd, buf, sizeof buf));
        if (n <= 0)
            continue;
        for (char *p = buf; p < buf + n;) {
            const struct inotify_event *ev = (const struct inotify_event *)p;
            /* a lost event queue or a directory gone: trust nothing cached */
            bool all = ev->mask & (IN_Q_OVERFLOW | IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF);
            w->changed(w->user, all ? -1 : ev->wd);
            p += sizeof *ev + ev->len;
        }
    }
    return NULL;
}

piocp_file_watch *piocp_file_watch_start(const char *root_path, piocp_file_changed_fn changed,
                                         void *user)
{
    piocp_file_watch *w = calloc(1, sizeof *w);
    if (!w)
        return NULL;
    w->changed = changed;
    w->user = user;
    /* inotify watches need the real path, and one that still names the
     * root after the process changes directory */
    if (!realpath(root_path, w->root_path)) {
        free(w);
        return NULL;
    }
    w->inotify_fd = FAULT_CALL("inotify_init", inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
    w->stop_fd = FAULT_CALL("eventfd", eventfd(0, EFD_CLOEXEC));
    if (w->inotify_fd >= 0 && w->stop_fd >= 0 &&
        piocp_thread_start(&w->thread, watcher_main, w) == 0)
        return w;
    if (w->inotify_fd >= 0)
        close(w->inotify_fd);
    if (w->stop_fd >= 0)
        close(w->stop_fd);
    free(w);
    return NULL;
}

int piocp_file_watch_add(piocp_file_watch *w, const char *dir, size_t dir_len)
{
    if (!w)
        return -1;
    char path[PATH_MAX];
    int n = snprintf(path, sizeof path, "%s/%.*s", w->root_path, (int)dir_len, dir);
    if (n < 0 || (size_t)n >= sizeof path)
        return -1;
    /* the same directory returns the same watch: no table of our own */
    return FAULT_CALL("inotify_add_watch", inotify_add_watch(w->inotify_fd, path, WATCH_EVENTS));
}

void piocp_file_watch_stop(piocp_file_watch *w)
{
    if (!w)
        return;
    uint64_t one = 1;
    (void)!write(w->stop_fd, &one, sizeof one);
    piocp_thread_join(&w->thread);
    close(w->inotify_fd);
    close(w->stop_fd);
    free(w);
}
