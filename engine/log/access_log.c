/*
 * access_log.c - bounded ring of log lines drained by one writer thread.
 *
 * The mutex is held only to copy bytes in or to move the ring's indices,
 * never across a write (piocp_file_write_all): a slow disk or a full pipe stalls only the writer
 * thread, and callers lose lines instead of time once the ring is full.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "log/access_log.h"
#include "platform/file.h"
#include "platform/threads.h"
#include "platform/atomics.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* Room for several thousand lines: enough to ride out a stalled disk for a
 * moment without making the log a memory hog. */
#define RING_CAPACITY ((size_t)1 << 20)

struct piocp_access_log {
    piocp_file fd;
    piocp_thread thread;
    piocp_mutex lock;
    piocp_cond wake;
    bool stop;
    /* A swap (piocp_access_log_swap): the writer sends `swap_left` more
     * bytes, the lines queued before it, to `fd`, then moves to `next_fd`
     * and signals `swapped`.  Producers append whole lines, so that point
     * is a line boundary even when the ring wraps inside a line. */
    bool swap_pending;
    size_t swap_left;
    piocp_file next_fd;
    piocp_cond swapped;
    uint64_t swaps; /* completed, so a waiter knows its own is done */
    /* Bytes [head, head + used) (modulo capacity) are queued.  The writer
     * thread reads them without the lock: producers only ever touch the
     * free part of the ring. */
    char *ring;
    size_t capacity;
    size_t head;
    size_t used;
    char *bounce; /* the writer's: a line that wraps around, in one piece */
    size_t bounce_cap;
    _Atomic uint64_t dropped;
};

static uint64_t count_lines(const char *p, size_t n)
{
    uint64_t lines = 0;
    const char *end = p + n;
    while ((p = memchr(p, '\n', (size_t)(end - p))) != NULL) {
        lines++;
        p++;
    }
    return lines;
}

/* The last '\n' in p[0..n), or NULL. */
static const char *last_newline(const char *p, size_t n)
{
    while (n > 0)
        if (p[--n] == '\n')
            return p + n;
    return NULL;
}

/*
 * What the next write() sends of the `limit` queued bytes at `start`, and
 * *n its length: never part of a line.  Several processes may append to
 * one file (`serve --workers`), and each write() lands whole (O_APPEND),
 * so a line cut in two writes could have another process's line in the
 * middle.  A run that reaches the end of the ring stops after its last
 * whole line; the one line that wraps around is copied into `bounce` and
 * written in one piece.  Without the lock: producers only ever touch the
 * free part of the ring.
 */
static const char *next_piece(piocp_access_log *log, size_t start, size_t limit, size_t *n)
{
    size_t contiguous = log->capacity - start;
    const char *run = log->ring + start;
    if (limit <= contiguous) {
        *n = limit;
        return run;
    }
    const char *nl = last_newline(run, contiguous);
    if (nl != NULL) {
        *n = (size_t)(nl + 1 - run);
        return run;
    }
    /* The run is the head of a line whose rest is at the ring's start. */
    const char *rest_nl = memchr(log->ring, '\n', limit - contiguous);
    size_t rest = rest_nl ? (size_t)(rest_nl + 1 - log->ring) : limit - contiguous;
    size_t whole = contiguous + rest;
    if (whole > log->bounce_cap) {
        char *bigger = realloc(log->bounce, whole);
        if (bigger == NULL) {
            *n = contiguous; /* no memory: the line goes out in two writes */
            return run;
        }
        log->bounce = bigger;
        log->bounce_cap = whole;
    }
    memcpy(log->bounce, run, contiguous);
    memcpy(log->bounce + contiguous, log->ring, rest);
    *n = whole;
    return log->bounce;
}

static void *writer_main(void *arg)
{
    piocp_access_log *log = arg;

    piocp_mutex_lock(&log->lock);
    for (;;) {
        if (log->swap_pending && log->swap_left == 0) {
            log->fd = log->next_fd;
            log->swap_pending = false;
            log->swaps++;
            piocp_cond_broadcast(&log->swapped);
        }
        while (log->used == 0 && !log->stop && !log->swap_pending)
            piocp_cond_wait(&log->wake, &log->lock);
        if (log->used == 0 && !log->swap_pending)
            break; /* stopping, and everything is out */
        if (log->used == 0)
            continue; /* a swap with nothing before it */

        /* Up to the whole backlog per write(), so lines go out in batches;
         * up to the swap point when a swap waits. */
        size_t start = log->head;
        size_t limit = log->swap_pending ? log->swap_left : log->used;
        piocp_file fd = log->fd; /* only this thread changes it */
        piocp_mutex_unlock(&log->lock);

        size_t n;
        const char *bytes = next_piece(log, start, limit, &n);
        size_t written = piocp_file_write_all(fd, bytes, n);
        if (written < n) {
            /* Counting newlines in what is thrown away keeps the figure in
             * lines. */
            atomic_fetch_add_explicit(&log->dropped, count_lines(bytes + written, n - written),
                                      memory_order_relaxed);
        }

        piocp_mutex_lock(&log->lock);
        log->head = (start + n) % log->capacity;
        log->used -= n;
        if (log->swap_pending)
            log->swap_left -= n;
    }
    piocp_mutex_unlock(&log->lock);
    return NULL;
}

piocp_access_log *piocp_access_log_new(piocp_file fd)
{
    piocp_access_log *log = calloc(1, sizeof *log);
    if (log == NULL)
        return NULL;
    log->fd = fd;
    log->capacity = RING_CAPACITY;
    log->ring = malloc(log->capacity);
    if (log->ring == NULL)
        goto fail_ring;
    atomic_init(&log->dropped, 0);
    if (piocp_mutex_init(&log->lock) != 0)
        goto fail_mutex;
    if (piocp_cond_init(&log->wake) != 0)
        goto fail_cond;
    if (piocp_cond_init(&log->swapped) != 0)
        goto fail_swapped;

    /* The writer thread blocks every signal (piocp_thread_start):
     * asynchronous signals belong to the application's own threads (Python
     * handles them on its main thread), and a write to a closed pipe then
     * fails with EPIPE instead of killing the process with SIGPIPE. */
    if (piocp_thread_start(&log->thread, writer_main, log) != 0)
        goto fail_thread;
    return log;

fail_thread:
    piocp_cond_destroy(&log->swapped);
fail_swapped:
    piocp_cond_destroy(&log->wake);
fail_cond:
    piocp_mutex_destroy(&log->lock);
fail_mutex:
    free(log->ring);
fail_ring:
    free(log);
    return NULL;
}

void piocp_access_log_write(piocp_access_log *log, const char *line, size_t len)
{
    if (len == 0)
        return;

    piocp_mutex_lock(&log->lock);
    if (log->stop || len > log->capacity - log->used) {
        piocp_mutex_unlock(&log->lock);
        atomic_fetch_add_explicit(&log->dropped, 1, memory_order_relaxed);
        return;
    }
    size_t tail = (log->head + log->used) % log->capacity;
    size_t first = len < log->capacity - tail ? len : log->capacity - tail;
    memcpy(log->ring + tail, line, first);
    memcpy(log->ring, line + first, len - first);
    log->used += len;
    piocp_cond_signal(&log->wake);
    piocp_mutex_unlock(&log->lock);
}

piocp_file piocp_access_log_swap(piocp_access_log *log, piocp_file fd)
{
    piocp_mutex_lock(&log->lock);
    /* One swap at a time: a second caller waits for the first's. */
    while (log->swap_pending)
        piocp_cond_wait(&log->swapped, &log->lock);
    piocp_file old = log->fd;
    log->swap_pending = true;
    log->swap_left = log->used;
    log->next_fd = fd;
    uint64_t mine = log->swaps + 1;
    piocp_cond_signal(&log->wake);
    while (log->swaps < mine)
        piocp_cond_wait(&log->swapped, &log->lock);
    piocp_mutex_unlock(&log->lock);
    return old;
}

uint64_t piocp_access_log_dropped(const piocp_access_log *log)
{
    return atomic_load_explicit(&log->dropped, memory_order_relaxed);
}

void piocp_access_log_free(piocp_access_log *log)
{
    if (log == NULL)
        return;
    piocp_mutex_lock(&log->lock);
    log->stop = true;
    piocp_cond_signal(&log->wake);
    piocp_mutex_unlock(&log->lock);
    piocp_thread_join(&log->thread);

    piocp_cond_destroy(&log->swapped);
    piocp_cond_destroy(&log->wake);
    piocp_mutex_destroy(&log->lock);
    free(log->bounce);
    free(log->ring);
    free(log);
}
