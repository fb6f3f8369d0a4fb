/*
 * access_log.h - an append-only log that never makes its callers wait on I/O.
 *
 * Callers (worker threads) copy whole lines into a bounded in-memory ring;
 * one dedicated thread writes the ring to the descriptor, whole lines per
 * write() (so processes appending to one file never interleave inside a
 * line).  When the ring is full a line is dropped and counted rather than
 * stalling the caller.
 * Shared by the native protocol handlers; internal, not part of the
 * public API.
 */
#ifndef PIOCP_ACCESS_LOG_H
#define PIOCP_ACCESS_LOG_H

#include "pyiocp.h"

#include <stddef.h>
#include <stdint.h>

typedef struct piocp_access_log piocp_access_log;

/* Starts the writer thread for `fd`.  The descriptor stays the caller's:
 * it is not closed by piocp_access_log_free.  Windows: a synchronous
 * handle (platform/file.h, piocp_file_write_all).  Returns NULL if memory or the
 * thread cannot be had. */
piocp_access_log *piocp_access_log_new(piocp_file fd);

/* Queues `len` bytes (normally one line ending in '\n') as one unit: all of
 * it is written, or none of it and the line is counted as dropped.
 * Thread-safe; never blocks on the descriptor. */
void piocp_access_log_write(piocp_access_log *log, const char *line, size_t len);

/* Hands the writer a new descriptor (the log file opened again after
 * logrotate renamed it, say) and returns the previous one, no longer used,
 * for the caller to close.  Every line queued before the call goes to the
 * previous descriptor, every later one to `fd`: lines are never split
 * between the two, and none is lost by the swap.  Waits until the writer
 * has written the earlier lines (as long as the previous descriptor makes
 * it wait).  Thread-safe; not from the writer thread, nor after
 * piocp_access_log_free. */
piocp_file piocp_access_log_swap(piocp_access_log *log, piocp_file fd);

/* Lines dropped so far: ring full, or the descriptor refused the bytes. */
uint64_t piocp_access_log_dropped(const piocp_access_log *log);

/* Writes out everything queued, stops and joins the writer thread, frees.
 * Blocks as long as the descriptor does (a pipe nobody reads stalls it).
 * No other thread may be writing to the log any more.  NULL is ignored. */
void piocp_access_log_free(piocp_access_log *log);

#endif /* PIOCP_ACCESS_LOG_H */
