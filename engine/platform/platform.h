/*
 * platform.h - the operating-system pieces the core needs, behind names of
 * our own: sockets (close, reset, linger, Nagle), file size, clocks, CPU
 * count and limits, and (platform/threads.h) threads and locks.  One
 * implementation per platform (platform/posix/, with platform/linux/ for
 * what only Linux has; platform/windows/); the core has one code path.
 * Errors are -PIOCP_E* (errors.h): errno's values on POSIX, Python's
 * Winsock-based ones on Windows.
 */
#ifndef PYIOCP_PLATFORM_H
#define PYIOCP_PLATFORM_H

#include "errors.h"
#include "pyiocp.h"
#include "platform/threads.h"

#include <stdbool.h>
#include <stdint.h>

/* The text of error `err` (a positive PIOCP_E*) for a log line, in `buf`
 * or a constant string; never NULL, safe on any thread (strerror is not:
 * it may share one buffer).  POSIX: strerror_r.  Windows: the system's
 * message for Winsock numbers (FormatMessageA), the C runtime's for the
 * others (strerror_s); strerror would print "Unknown error" for the
 * Winsock ones the engine's socket errors are there. */
const char *piocp_error_text(int err, char *buf, size_t len);

/* Milliseconds of a monotonic clock, cheap enough to stamp every
 * completion (coarse: a few ms of resolution). */
long long piocp_now_ms(void);
/* Microseconds of the precise monotonic clock: for timers, which must not
 * fire before they are due (the coarse clock lags by a few ms). */
long long piocp_monotonic_us(void);
/* The calling process's id (shown beside its metrics). */
long piocp_process_id(void);
/* CPUs online. */
int piocp_online_cpus(void);
/* CPUs in the calling thread's affinity mask (a process's threads inherit
 * it: taskset, a container's cpuset); 0 where the platform cannot say. */
int piocp_affinity_cpus(void);
/* The tightest CPU quota imposed on this process, in CPUs (1.5), or 0 for
 * none; `*ceiling` gets it rounded up (2).  Linux: the cgroup v2 cpu.max or
 * v1 cpu.cfs_quota_us of the process's cgroup and its ancestors, read
 * under `cgroup_root` as `proc_self_cgroup` names them (NULL: the real
 * ones; see piocp_cpu_info_read).  Never fails: unreadable means none. */
double piocp_cpu_quota(const char *cgroup_root, const char *proc_self_cgroup, int *ceiling);

/* A new listening stream socket bound to `addr` (non-blocking on POSIX,
 * where backends accept until EAGAIN; overlapped on Windows, where AcceptEx
 * is).  `reuse_port`: several sockets may share the port (SO_REUSEPORT);
 * -PIOCP_EOPNOTSUPP where the platform has no such balancing.  0 or -errno. */
int piocp_socket_listen_new(const struct sockaddr *addr, socklen_t addrlen, int backlog,
                            bool reuse_port, piocp_socket *out);
/* Checks that `fd` is a listening stream socket handed to us, and readies it
 * as piocp_socket_listen_new would (non-blocking on POSIX).  0, or -EINVAL
 * (not one), or -errno. */
int piocp_socket_adopt_listener(piocp_socket fd);
/* The socket's own address (getsockname).  0 or -errno. */
int piocp_socket_local_address(piocp_socket fd, struct sockaddr_storage *addr,
                               socklen_t *addrlen);
/* Whether an accept error (-errno) concerns only the connection being
 * accepted (the next may be fine), rather than the listener or the process
 * (out of descriptors or memory). */
bool piocp_accept_error_is_transient(int error);

/* Closes a socket; `reset`: with an RST instead of a FIN (an aborted
 * connection must not pass a cut-off answer off as a whole one). */
void piocp_socket_close(piocp_socket fd, bool reset);
/* Small replies and echoes must not wait for Nagle + delayed ACK. */
void piocp_socket_set_nodelay(piocp_socket fd);
/* Sends the FIN after what is queued.  Returns 0 or -errno. */
int piocp_socket_shutdown_write(piocp_socket fd);
/* Whether `fd` is a connected stream socket: 0 and its peer, or -EINVAL. */
int piocp_socket_check_connected_stream(piocp_socket fd, struct sockaddr_storage *peer,
                                        socklen_t *peer_len);
/* 1 if `fd` is non-blocking, 0 if not, -errno if that cannot be read. */
int piocp_socket_is_nonblocking(piocp_socket fd);
/* Non-blocking and close-on-exec, as accepted sockets are.  0 or -errno. */
int piocp_socket_make_nonblocking(piocp_socket fd);
/* A non-blocking stream socket for `addr`, and its connect(2) started:
 * 0 (connected at once), -EINPROGRESS, or connect's -errno, with the socket
 * in `*out` in all three cases; socket(2)'s -errno with no socket.
 * Windows: the socket is only made and bound to the wildcard address of
 * its family (-EINPROGRESS); the IOCP backend connects it with ConnectEx,
 * which wants an unconnected, bound socket. */
int piocp_socket_connect_start(const struct sockaddr *addr, socklen_t addrlen, piocp_socket *out);
/* How a started connect is going: 0 connected, -EINPROGRESS not yet,
 * else its -errno (-ECONNREFUSED...). */
int piocp_socket_connect_result(piocp_socket fd);
/* Ends a listening socket's pending accepts without closing it (its
 * descriptor number must not be reused while workers may still use it). */
void piocp_socket_shutdown_listener(piocp_socket fd);
/* Reads and drops what the peer sent.  true: the peer closed (or the socket
 * failed), nothing more will come; false: it may send more. */
bool piocp_socket_drain(piocp_socket fd);

/* Sends what fits of `buf` now, never waiting: for a short refusal on a
 * socket about to be closed (an HTTP 503).  Best effort: the bytes sent or
 * -errno.  POSIX: MSG_DONTWAIT, and no SIGPIPE.  Windows: only when select
 * says the socket is writable (a fresh one is), since its blocking mode
 * cannot be read there. */
ssize_t piocp_socket_send_now(piocp_socket fd, const void *buf, size_t len);

/* POSIX only (readiness backends): one system call moving the request
 * forward by what `done` says it has sent: > 0 bytes moved, 0 the request
 * is complete, -errno (-EAGAIN: the socket is full).  A transmit whose
 * file ends early fails with -EIO instead of spinning. */
ssize_t piocp_socket_send_step(piocp_socket fd, const piocp_request *req);

/* The size of an open regular file; -errno if it is not one. */
int piocp_file_size(piocp_file fd, uint64_t *size);

#endif
