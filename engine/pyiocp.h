/*
 * pyiocp.h - the whole C API of the pyiocp completion engine.
 *
 * The model is the Windows I/O completion port: an operation is *posted*
 * and returns at once; it later *completes exactly once*, with a byte count
 * (>= 0) or a negative errno, on one of a small pool of worker threads that
 * all wait on one completion queue.  Backends turn a kernel mechanism into
 * that shape (epoll: readiness -> completions; io_uring and IOCP: native).
 *
 * Conventions (after liburing): functions return 0 or a count on success
 * and -errno on failure; they never rely on errno.  Requests are allocated
 * by the caller (after libuv's uv_write_t) and must stay valid, with the
 * buffers they name, until their completion callback has run.
 *
 * Threading: completion callbacks run on worker threads.  All callbacks of
 * one connection are serialised: two never run at once.  Posting is allowed
 * from any thread, including from inside a callback.
 *
 * Guarantees handlers rely on:
 *  - a post that returns an error never completes; one that returns 0
 *    completes exactly once;
 *  - on_closed never runs inside piocp_close/piocp_abort or while another
 *    callback of the same connection runs; it runs after every completion;
 *  - piocp_abort is allowed after piocp_close (it cuts the graceful close);
 *  - a failed send or transmit aborts the connection (the byte stream can
 *    no longer keep its order); `req->done` then says how far it got (one
 *    ended by piocp_cancel does not: the connection stays open);
 *  - an aborted connection is reset (RST), a closed one gets a FIN (a
 *    borrowed one neither: it goes back to its owner, see piocp_borrow);
 *  - a transmit of 0 bytes without head completes at once with 0.
 */
#ifndef PYIOCP_H
#define PYIOCP_H

#include <stddef.h>
#include <stdint.h>
#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h> /* socklen_t, sockaddr_storage */
#include <windows.h>
#include <basetsd.h>
#ifndef _SSIZE_T_DEFINED /* mingw has it; MSVC does not */
typedef SSIZE_T ssize_t;
#define _SSIZE_T_DEFINED
#endif
#else
#include <sys/types.h>
#include <sys/socket.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define PIOCP_VERSION "0.1.0"

/* A socket and an open file as the platform names them: descriptors on
 * POSIX, SOCKET and HANDLE on Windows.  The API takes these types, never a
 * bare int. */
#ifdef _WIN32
typedef SOCKET piocp_socket;
typedef HANDLE piocp_file;
#define PIOCP_INVALID_SOCKET INVALID_SOCKET
#define PIOCP_INVALID_FILE INVALID_HANDLE_VALUE
#else
typedef int piocp_socket;
typedef int piocp_file;
#define PIOCP_INVALID_SOCKET (-1)
#define PIOCP_INVALID_FILE (-1)
#endif

typedef struct piocp_engine piocp_engine;
typedef struct piocp_conn piocp_conn;
typedef struct piocp_listener piocp_listener;
typedef struct piocp_request piocp_request;

typedef enum piocp_op {
    PIOCP_OP_NONE = 0,
    PIOCP_OP_RECV,
    PIOCP_OP_SEND,
    PIOCP_OP_TRANSMIT,
    PIOCP_OP_USER,
    PIOCP_OP_SHUTDOWN,
    PIOCP_OP_TIMER
} piocp_op;

/* Called exactly once per posted request.  `result` is the number of bytes
 * moved (0 for a recv means the peer closed its side), or -errno.  A request
 * that could not run because its connection was closed completes with
 * -ECANCELED (or with the error that broke the connection). */
typedef void (*piocp_complete_fn)(piocp_request *req, ssize_t result);

/* transmit: send to the end of the file instead of an exact count. */
#define PIOCP_TRANSMIT_TO_EOF ((uint64_t)-1)

struct piocp_request {
    /* Set by the caller before posting. */
    piocp_complete_fn complete;
    void *user;
    /* Owned by the engine while the request is in flight. */
    piocp_op op;
    piocp_conn *conn;
    piocp_request *next;
    size_t done;    /* bytes moved so far (send/transmit) */
    ssize_t result; /* set just before `complete` runs */
    unsigned char cancelling; /* piocp_cancel asked for it to end */
    union {
        struct { void *buf; size_t len; } recv;
        struct { const void *buf; size_t len; } send;
        struct {
            const void *head; size_t head_len;
            piocp_file fd; uint64_t offset; uint64_t count;
        } transmit;
        struct { int64_t due_us; uint64_t sequence; size_t index; } timer;
    } u;
};

/* ------------------------------------------------------------ engine -- */

/* The most worker threads an engine may have. */
#define PIOCP_MAX_THREADS 1024

typedef struct piocp_config {
    int threads;              /* worker threads; 0 = piocp_default_threads() */
    const char *backend;      /* "auto" (or NULL), or one of piocp_backend_names() */
    int max_connections;      /* 0 = default (10000); also the pool size */
    int idle_timeout_ms;      /* 0 = never; otherwise peers silent this long are dropped */
    /* How long a graceful close (piocp_close, a close deadline) waits, after
     * its FIN, for the peer to close its side before closing the socket
     * anyway, in order (no reset) with on_closed reporting 0; 0 = default
     * (5000).  Meanwhile what the peer sends is read and dropped, so that
     * unread bytes do not make the kernel reset the connection. */
    int linger_ms;
    /* How long a stop keeps reading a connection that has not been answered
     * yet (accepted, nothing sent on it): its first request may already be
     * on the wire, sent by a client that connected just before the stop (a
     * reload racing its clients).  Such a connection is served as usual
     * until it sends, then drains like the others; one whose request does
     * not come within this time is closed in order.  0 = default (1000);
     * the drain's own limit still applies. */
    int drain_first_request_ms;
    /* Called on a worker after it has handled one batch of completions and
     * before it waits again: lets a binding dispatch the batch at once (one
     * GIL acquisition per batch instead of one per completion). */
    void (*batch_end)(void *user);
    /* Called on each worker thread once it is sure to serve (every worker
     * started) and once more after its last batch_end, on the same thread:
     * lets a binding give each worker per-thread state for its lifetime (a
     * Python thread state, made once instead of once per batch).  Not
     * called for a worker of an engine whose start failed. */
    void (*worker_start)(void *user);
    void (*worker_stop)(void *user);
    /* Called by piocp_engine_stop on the stopping thread, once listeners
     * accept no more and before pending recvs are cancelled: lets a binding
     * tell its handlers to finish what they started (say goodbye, close).
     * Connections still open afterwards are drained and closed as usual. */
    void (*stopping)(void *user);
    void *user;               /* passed to the hooks above */
    /* Windows only (ignored elsewhere): how transmits send the file, one of
     * piocp_windows_transmit.  Client editions of Windows run at most two
     * TransmitFile calls at once system-wide, the others wait their turn,
     * so there a buffered copy serves many clients better.  Which path
     * moved the bytes shows in piocp_engine_stats.transmit_copied_bytes. */
    int windows_transmit;
} piocp_config;

typedef enum piocp_windows_transmit {
    /* TransmitFile on server editions (IsWindowsServer()), read+send on
     * client editions (Wine says it is one) */
    PIOCP_WINDOWS_TRANSMIT_AUTO = 0,
    PIOCP_WINDOWS_TRANSMIT_FILE,       /* TransmitFile: zero-copy */
    PIOCP_WINDOWS_TRANSMIT_READ_SEND   /* ReadFile into a 64 KiB buffer, then WSASend */
} piocp_windows_transmit;

/* Fills `config` with the defaults (the values 0 stands for above): the one
 * place they are written down; bindings read them from here. */
void piocp_config_init(piocp_config *config);
/* The worker count an engine gets by default: twice the CPUs this process
 * may use (piocp_cpu_info.usable), as the classic IOCP server sized its
 * pool, and at most PIOCP_MAX_THREADS. */
int piocp_default_threads(void);

/* The CPUs this process may use, and what limits them.  Twice the online
 * CPUs is the wrong pool for a process pinned by taskset or a container's
 * cpuset, or held to 1.5 CPUs by a cgroup quota (docker --cpus, Kubernetes
 * limits, systemd CPUQuota=): the extra threads only contend. */
typedef struct piocp_cpu_info {
    int online;        /* CPUs online on the machine */
    int affinity;      /* CPUs in the affinity mask (taskset, cpuset); 0: unknown */
    double quota_cpus; /* the tightest cgroup CPU quota, in CPUs (1.5); 0: no limit */
    int usable;        /* min(affinity or else online, quota rounded up), at least 1 */
} piocp_cpu_info;

/* Fills `out`.  Never fails: whatever cannot be read, or reads malformed,
 * counts as no limit.  `cgroup_root` (the cgroup mount) and
 * `proc_self_cgroup` (the process's cgroup list) are NULL for the real
 * "/sys/fs/cgroup" and "/proc/self/cgroup"; tests point them at a fake
 * tree.  Reads a few small files: cheap, but not for a hot path. */
void piocp_cpu_info_read(piocp_cpu_info *out, const char *cgroup_root,
                         const char *proc_self_cgroup);
/* Creates the engine (queue, pool) but starts no thread.  `config` may be
 * NULL (defaults). */
int piocp_engine_new(piocp_engine **out, const piocp_config *config);
/* Starts the worker threads. */
int piocp_engine_start(piocp_engine *engine);
/* Graceful stop: close listeners, cancel pending recvs (no new requests are
 * read; a connection not answered yet still reads its first request, see
 * drain_first_request_ms), let sends and transmits finish for up to
 * `drain_ms`, then abort what is left, post the quit completion that wakes every worker, and join them.
 * Must not be called from a worker thread (-EDEADLK).  Idempotent. */
int piocp_engine_stop(piocp_engine *engine, int drain_ms);
/* Frees a stopped (or never started) engine. */
void piocp_engine_free(piocp_engine *engine);

const char *piocp_engine_backend(const piocp_engine *engine);
/* Why "auto" did not pick a preferred backend ("io_uring refused: ..."), or
 * "" if it did. */
const char *piocp_engine_backend_note(const piocp_engine *engine);
/* One line on what the kernel offers a backend (for `pyiocp info`). */
const char *piocp_backend_describe(const char *name, char *buf, size_t len);
int piocp_engine_threads(const piocp_engine *engine);
/* Connections open right now. */
int piocp_engine_connections(const piocp_engine *engine);
/* Which backends this build and kernel support, best first, as "epoll"
 * etc.; returns how many names were written to `names` (at most `max`). */
int piocp_backends_available(const char **names, int max);
/* Every backend compiled into this build, best first, whether or not this
 * kernel allows it: the names piocp_config.backend accepts besides "auto". */
int piocp_backend_names(const char **names, int max);
/* Counters kept by the engine, read without stopping it. */
typedef struct piocp_engine_stats {
    uint64_t accepted;        /* connections handed to a listener's handler */
    uint64_t refused;         /* closed at once: over max_connections, or stopping */
    uint64_t accept_errors;   /* accepts that failed (EMFILE, ECONNABORTED...) */
    uint64_t accept_pauses;   /* times accepting paused for want of descriptors */
    uint64_t connections;     /* open now */
    /* File bytes handed to the kernel by transmits, on every connection:
     * a head is not counted here. */
    uint64_t transmit_file_bytes;
    uint64_t borrowed;        /* connections borrowed so far (piocp_borrow) */
    uint64_t borrowed_bytes;  /* bytes sent on them: heads, buffers and file bytes */
    /* Of transmit_file_bytes, those read into a buffer and sent as a copy
     * instead of zero-copy (Windows' read+send path, see
     * piocp_config.windows_transmit); 0 on Linux. */
    uint64_t transmit_copied_bytes;
    /* Windows: operations that finished as they were posted and were
     * handled there, without a completion packet (sockets whose provider
     * allows FILE_SKIP_COMPLETION_PORT_ON_SUCCESS); 0 on Linux. */
    uint64_t completed_inline;
} piocp_engine_stats;
void piocp_engine_get_stats(const piocp_engine *engine, piocp_engine_stats *out);
/* Index of the calling worker thread in [0, threads), or -1 elsewhere. */
int piocp_worker_index(void);

/* Posts a user completion: `req->complete(req, result)` will run once on a
 * worker.  Used for wake-ups and cross-thread hand-offs. */
int piocp_post(piocp_engine *engine, piocp_request *req, ssize_t result);

/* A timer: `req->complete(req, 0)` runs once on a worker, at least
 * `delay_ms` from now (0: as soon as a worker looks; a few ms late at
 * most while the workers keep up).  Timers due at the same time fire in
 * posting order.  Pending timers complete with -ECANCELED when the engine
 * stops (after the drain, before the workers quit).  Errors: -EINVAL,
 * -ENOMEM, -ESHUTDOWN (the engine has stopped). */
int piocp_post_after(piocp_engine *engine, piocp_request *req, int64_t delay_ms);
/* Cancels a pending timer: it completes with -ECANCELED instead (on a
 * worker, soon) and this returns 0.  -ENOENT if it is not pending: it
 * fired or is firing, was cancelled, or was never posted.  Either way it
 * completes exactly once. */
int piocp_timer_cancel(piocp_engine *engine, piocp_request *req);

/* --------------------------------------------------------- listeners -- */

typedef struct piocp_listener_callbacks {
    /* A connection was accepted (runs on a worker).  The callee sets the
     * connection's callbacks and usually posts its first recv.  The engine
     * holds the only reference; take one with piocp_conn_retain to keep the
     * pointer past on_closed. */
    void (*on_connection)(piocp_listener *listener, piocp_conn *conn, void *user);
    /* Optional: a connection over max_connections is about to be closed; a
     * protocol may write a short refusal (e.g. an HTTP 503) to `fd` with a
     * non-blocking send.  The engine closes fd afterwards. */
    void (*on_refused)(piocp_listener *listener, piocp_socket fd, void *user);
} piocp_listener_callbacks;

/* Binds, listens and starts accepting (also before piocp_engine_start; the
 * first connections are then handled once the workers run).  The simple
 * form of piocp_listen_ex: `addr`, `backlog`, no other option. */
int piocp_listen(piocp_engine *engine, const struct sockaddr *addr, socklen_t addrlen,
                 int backlog, const piocp_listener_callbacks *callbacks, void *user,
                 piocp_listener **out);

typedef struct piocp_listen_options {
    /* Where to bind a new socket; NULL when `fd` is given. */
    const struct sockaddr *addr;
    socklen_t addrlen;
    int backlog;        /* for a new socket; an adopted one keeps its own */
    /* 1: SO_REUSEPORT on the new socket, so that several engines (processes)
     * bind the same port and the kernel spreads connections over them.
     * Connections queued on a socket when its engine stops are reset. */
    int reuse_port;
    /* A socket that is already listening (inherited from a supervisor or a
     * service manager: systemd's LISTEN_FDS), or PIOCP_INVALID_SOCKET to
     * bind `addr`.  The engine takes it over (makes it non-blocking, closes
     * it when freed, also on failure).  It may be shared with other
     * processes: stopping never shuts it down, which would reset the
     * connections queued for the others; it only stops accepting on it. */
    piocp_socket fd;
} piocp_listen_options;

/* Fills `options` with the defaults: no address, backlog 1024, no
 * SO_REUSEPORT, fd PIOCP_INVALID_SOCKET. */
void piocp_listen_options_init(piocp_listen_options *options);
/* Listens as `options` say: binds `addr`, or adopts `fd` (-EINVAL unless
 * it is a listening stream socket: SO_ACCEPTCONN; -EINVAL also for both or
 * neither of addr and fd). */
int piocp_listen_ex(piocp_engine *engine, const piocp_listen_options *options,
                    const piocp_listener_callbacks *callbacks, void *user,
                    piocp_listener **out);
/* The bound address (useful after binding port 0). */
int piocp_listener_address(const piocp_listener *listener, struct sockaddr_storage *addr,
                           socklen_t *addrlen);
/* Connections refused because max_connections was reached. */
uint64_t piocp_listener_refused(const piocp_listener *listener);

/* ------------------------------------------------------- connections -- */

/* Runs once per connection, after its socket is closed (a borrowed one:
 * handed back) and every request on it has completed.  `error` is 0 for an
 * orderly close, or -errno for the error that broke the connection
 * (-ETIMEDOUT for an idle timeout). */
typedef void (*piocp_closed_fn)(piocp_conn *conn, int error);

void piocp_conn_set_callbacks(piocp_conn *conn, piocp_closed_fn on_closed, void *user);
void *piocp_conn_user(const piocp_conn *conn);
piocp_engine *piocp_conn_engine(const piocp_conn *conn);
int piocp_conn_peer(const piocp_conn *conn, struct sockaddr_storage *addr, socklen_t *addrlen);
/* The connection's own address (getsockname); -ENOTCONN once it is closed. */
int piocp_conn_sockname(piocp_conn *conn, struct sockaddr_storage *addr, socklen_t *addrlen);
/* Drops the connection (on_closed gets -ETIMEDOUT) if it is still open
 * `timeout_ms` from now; 0 clears the deadline.  Checked a few times a
 * second: for request-head and keep-alive timeouts, which the idle timeout
 * (no progress) cannot express against a client that trickles bytes. */
int piocp_conn_set_deadline(piocp_conn *conn, int timeout_ms);
/* The same, but closing gracefully (pending recv cancelled, sends finished,
 * FIN, lingering close) instead of a reset: for idle keep-alive timeouts. */
int piocp_conn_set_close_deadline(piocp_conn *conn, int timeout_ms);
/* Adopts an already connected stream socket (TCP, or a Unix stream socket
 * from socketpair): the engine owns `fd` from then on, makes it
 * non-blocking (and sets TCP_NODELAY on TCP), and `*out` is a connection
 * like an accepted one, with the same reference rules.  It stays claimed,
 * as during on_connection, until the caller's piocp_conn_set_callbacks:
 * nothing runs on it and nothing closes it (a stop waits) before that, so
 * call it at once, then post.  Callable from any thread.  Errors, after
 * which the caller still owns `fd` (possibly made non-blocking): -EINVAL
 * (not a socket, not a stream, not connected), -ENOSPC (max_connections
 * are open), -ESHUTDOWN (the engine is stopping).  Windows (IOCP): the
 * socket joins the engine's completion port, and a handle belongs to one
 * port for life: a socket already on another (an event loop's, asyncio's
 * Proactor) fails with -EINVAL, left open and still the caller's; it must
 * have been made overlapped (socket() and accept() make them so). */
int piocp_adopt(piocp_engine *engine, piocp_socket fd, piocp_conn **out);
/* Borrows a connected stream socket from its owner (an asyncio event loop
 * lending a transport's socket for a zero-copy file transmission) and
 * gives it back untouched.  The engine changes no socket option and no
 * file flag: `fd` must be non-blocking already.  It never reads from it,
 * shuts it down, resets or closes it, and sets no SO_LINGER.  Only
 * piocp_send and piocp_transmit may be posted on it (piocp_recv and
 * piocp_shutdown fail with -EINVAL); piocp_cancel works as anywhere.  As
 * with piocp_adopt, `*out` is claimed until piocp_conn_set_callbacks and
 * counts against max_connections; callable from any thread.
 *
 * The socket goes back to its owner, open, as on_closed(conn, error) runs:
 * nothing of the engine is left on it by then (epoll: out of the engine's
 * set; io_uring: no request of ours in a ring), and the owner has it again
 * from then on.  It goes back:
 *  - at piocp_close, once every request posted has completed: error 0 (no
 *    FIN, no lingering);
 *  - at piocp_abort: the pending requests complete with -ECANCELED, and so
 *    does on_closed (the owner's stream may end mid-message);
 *  - when a send fails (the peer reset: -ECONNRESET, -EPIPE): the pending
 *    requests fail with that error, and so does on_closed;
 *  - at a deadline: piocp_conn_set_deadline's with -ETIMEDOUT, the close
 *    deadline's as piocp_close.  The engine's idle_timeout does not apply:
 *    the owner keeps its own timeouts;
 *  - at engine stop: with nothing to send at once (0); otherwise its sends
 *    drain like any, and what is left at the drain deadline is aborted as
 *    above (-ECANCELED).
 * Meanwhile the owner may keep the socket in its own epoll set (that is
 * another registration) and may read from it, but must not write to it,
 * shut it down or close it.  Errors, after which `fd` is the caller's as it
 * was: -EINVAL (not a socket, not a stream, not connected, blocking),
 * -ENOSPC (max_connections are open), -ESHUTDOWN (the engine is stopping).
 *
 * Windows (IOCP): not supported, -EOPNOTSUPP with `fd` untouched.  The
 * engine would have to put the socket on its completion port, which a
 * handle joins only once for life; the lender's sockets (asyncio's
 * Proactor) are on its own port already, and one lent for a while could
 * not go back to it. */
int piocp_borrow(piocp_engine *engine, piocp_socket fd, piocp_conn **out);

/* How an outbound connect ended: `conn` is the new connection (error 0),
 * or NULL with -errno: -ECONNREFUSED, -ETIMEDOUT (timeout_ms passed), or
 * -ECANCELED (the engine stopped first), or what connect(2) reported
 * (Windows: ConnectEx, the same PIOCP_E* codes). */
typedef void (*piocp_connect_fn)(piocp_conn *conn, int error, void *user);

/* Connects to `addr` (a numeric address: no name lookup here) without
 * blocking; `done` then runs exactly once on a worker.  With a connection
 * it is that connection's first callback, as on_connection is: the callee
 * sets its callbacks and posts, and the engine holds the only reference.
 * `timeout_ms` 0: no limit but the kernel's (checked a few times a second,
 * like deadlines).  The connection counts against max_connections from
 * the start.  Returns 0 (`done` will run), or -errno and `done` never runs:
 * -EINVAL, -ENOSPC (max_connections are open), -ESHUTDOWN (stopping), or
 * socket(2)'s error (-EAFNOSUPPORT, -EMFILE...). */
int piocp_connect(piocp_engine *engine, const struct sockaddr *addr, socklen_t addrlen,
                  int timeout_ms, piocp_connect_fn done, void *user);

/* Extra references keep the connection's memory valid (not its socket). */
void piocp_conn_retain(piocp_conn *conn);
void piocp_conn_release(piocp_conn *conn);

/* At most one recv may be pending on a connection (-EBUSY otherwise). */
int piocp_recv(piocp_conn *conn, piocp_request *req, void *buf, size_t len);
/* Sends and transmits complete in the order they were posted; a send
 * completes once every byte is handed to the kernel. */
int piocp_send(piocp_conn *conn, piocp_request *req, const void *buf, size_t len);
/* Sends `head` (may be NULL/0), then `count` bytes of `fd` from `offset`
 * (PIOCP_TRANSMIT_TO_EOF: to the end of the file), with zero-copy file
 * transmission, as one operation.  If the file ends before `count` bytes the
 * request completes with -EIO.  The engine does not close `fd`. */
int piocp_transmit(piocp_conn *conn, piocp_request *req, const void *head, size_t head_len,
                   piocp_file fd, uint64_t offset, uint64_t count);
/* Half-close: once every send and transmit posted before it has been
 * handed to the kernel, sends the FIN (shutdown(SHUT_WR)) and completes once
 * with 0 or -errno.  Receiving goes on: the peer may keep sending until it
 * closes its side (a recv then completes with 0).  A send, transmit or
 * shutdown posted after it fails at once with -EPIPE (a closed connection
 * still says -ENOTCONN). */
int piocp_shutdown(piocp_conn *conn, piocp_request *req);
/* Graceful close: a pending recv is cancelled, queued sends are finished,
 * then the FIN goes out and what the peer still sends is read and dropped
 * until it closes too, or for at most piocp_config.linger_ms; then the
 * socket is closed (in order: on_closed gets 0) and on_closed runs. */
int piocp_close(piocp_conn *conn);
/* Immediate close: every pending request completes with -ECANCELED. */
int piocp_abort(piocp_conn *conn);
/* Ends one pending request of `conn` early and leaves the connection open
 * (any connection: accepted, adopted, connected or borrowed).  Callable
 * from any thread, also from a completion callback.  Returns 0 when the
 * cancel is taken; the request then completes exactly once, on a worker,
 * as soon as it has stopped:
 *  - not started yet (a queued send, transmit or shutdown; a recv): with
 *    -ECANCELED and `req->done` 0;
 *  - a send or transmit under way: it stops where it is and completes with
 *    -ECANCELED, `req->done` counting the bytes (head, then file) handed
 *    to the kernel, which the peer will get: the file's next byte to send
 *    is offset + done - head_len;
 *  - one the kernel holds (an io_uring send, a wait for room in the
 *    socket): the kernel is asked to give it back, and it completes when
 *    it has, `done` counting what the kernel took;
 *  - one that finished first completes as it would have: with success.
 * It may complete before requests posted earlier; the requests after it go
 * on.  A send or transmit cancelled halfway leaves the peer with part of a
 * message, and the next bytes follow straight after: making sense of the
 * stream (closing it, or sending the rest) is the caller's business.  A
 * shutdown cancelled before it ran sends no FIN, and sends may follow.
 * Errors: -ENOENT, `req` is not pending on `conn` (it completed, is
 * completing, or was never posted on it); -EINVAL, a NULL argument. */
int piocp_cancel(piocp_conn *conn, piocp_request *req);


/* ------------------------------------------ native raw file protocol -- */
/*
 * The classic IOCP file server's protocol, served in C with no Python per
 * request: the client sends a file name ending in "\n" (or "\r\n"); the
 * server sends the file's bytes; the connection stays open for the next
 * name, and is closed once the answers are sent if the client half-closed.
 * A name that is missing, escapes the root, is not a regular file or is too
 * long gets one line "ERROR: <reason>\r\n" and the connection stays usable.
 */
typedef struct piocp_raw_server piocp_raw_server;

/* The longest name max_name may allow: longer ones can never be opened
 * (PATH_MAX), and the receive buffer is sized from it. */
#define PIOCP_RAW_MAX_NAME 4095

typedef struct piocp_raw_options {
    size_t max_name;      /* longest accepted name in bytes; 0 = 1024 */
    piocp_file access_log_fd; /* where access lines go; PIOCP_INVALID_FILE = none */
} piocp_raw_options;

/* Fills `options` with the defaults: no access log (PIOCP_INVALID_FILE, not
 * 0: descriptor 0 is a valid log target under a service manager that closed
 * stdin).  Start from this, then set what differs. */
void piocp_raw_options_init(piocp_raw_options *options);

/* Opens `root` (a directory) and prepares the handler; `options` NULL means
 * the defaults.  Errors: -ENOENT, -ENOTDIR, -EACCES... as for opening the
 * directory. */
int piocp_raw_server_new(piocp_raw_server **out, const char *root, const piocp_raw_options *options);
/* Frees the handler; only after the engine using it has stopped. */
void piocp_raw_server_free(piocp_raw_server *server);
/* Pass to piocp_listen together with the server as `user`. */
extern const piocp_listener_callbacks piocp_raw_server_callbacks;
/* Transfers answered so far (files sent + error lines), for tests/stats. */
uint64_t piocp_raw_server_requests(const piocp_raw_server *server);
/* As piocp_http_server_swap_access_log. */
piocp_file piocp_raw_server_swap_access_log(piocp_raw_server *server, piocp_file fd);

/* ------------------------------------------ native HTTP/1.1 file server -- */
/*
 * Static files over HTTP/1.1 (RFC 9110/9112), served in C with no Python
 * per request: GET and HEAD, persistent and pipelined connections, ETag and
 * Last-Modified validators, conditional requests, single byte ranges,
 * index.html or a directory listing.  Headers and file go out as one
 * zero-copy transmit.  Paths are confined to the root like the raw
 * protocol's.
 */
typedef struct piocp_http_server piocp_http_server;

/* The native HTTP server's access-log formats.  No client byte can forge
 * or split a line in any of them (each escapes quotes, backslashes,
 * control and non-ASCII bytes), and a line is bounded: long fields are
 * cut, never the framing. */
typedef enum piocp_log_format {
    /* Common Log Format, as Apache's "common":
     *   127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /a HTTP/1.1" 200 2326 */
    PIOCP_LOG_COMMON = 0,
    /* nginx's default "combined": common + ` "Referer" "User-Agent"`,
     * "-" for a header that was not sent. */
    PIOCP_LOG_COMBINED = 1,
    /* One JSON object per line: remote_addr, time (RFC 3339, UTC), method,
     * target, protocol, status, bytes, referer, user_agent, duration_us
     * (from the complete request head to the answer's last byte handed to
     * the kernel).  Invalid UTF-8 bytes are written as \u00XX of the byte. */
    PIOCP_LOG_JSON = 2,
} piocp_log_format;

typedef struct piocp_http_options {
    int listing;               /* 1: list directories without index.html; 0: 403 */
    size_t max_head;           /* request line + headers, bytes; 0 = 8192 */
    int header_timeout_ms;     /* a request head must arrive within this; 0 = 10 s */
    int keepalive_timeout_ms;  /* idle time between requests; 0 = 15 s */
    uint64_t max_discard;      /* request body bytes read and dropped on GET/HEAD; 0 = 64 KiB */
    /* Access lines go here, in `log_format`; PIOCP_INVALID_FILE = none.
     * Windows: a synchronous handle (as _get_osfhandle gives for a C
     * runtime file). */
    piocp_file access_log_fd;
    /* How long a cached open file is trusted without a system call, in ms:
     * inotify drops it on a change (Linux; Windows has no such notice, so
     * there this period alone bounds staleness), and at most this long
     * after its last check the name is opened again and compared.  0: every request also
     * checks the open file with fstat; < 0: the default (1000). */
    int cache_valid_ms;
    /* A piocp_log_format: how each access line is written. */
    int log_format;
} piocp_http_options;

/* Fills `options` with the defaults (listing on, the limits above, no
 * access log).  Start from this, then set what differs. */
void piocp_http_options_init(piocp_http_options *options);

int piocp_http_server_new(piocp_http_server **out, const char *root,
                          const piocp_http_options *options);
void piocp_http_server_free(piocp_http_server *server);
extern const piocp_listener_callbacks piocp_http_server_callbacks;
/* Responses sent so far (any status). */
uint64_t piocp_http_server_requests(const piocp_http_server *server);
/* Hands the access log a new descriptor (the log file opened again after
 * logrotate moved it away) and returns the previous one, which the server
 * no longer uses, for the caller to close.  Lines logged before the call
 * go to the previous descriptor, later ones to `fd`; none is lost or
 * split.  Waits until the earlier lines are written.  From any thread
 * while the server exists.  Without an access log: returns
 * PIOCP_INVALID_FILE and `fd` is not used. */
piocp_file piocp_http_server_swap_access_log(piocp_http_server *server, piocp_file fd);


/* ----------------------------------------------------------- metrics -- */
/*
 * Counters for operators: what the engine and its native handlers did,
 * read while they run.  Each worker thread adds to its own block of a
 * metrics "cell" (no shared cache line on the hot path); a reader sums
 * the blocks.  A cell is the engine's own memory, or one handed to it
 * (piocp_engine_use_metrics_cell) from a metrics area shared by several
 * processes: a pre-fork server's workers count into one area, and any of
 * them can render all of it (each worker's series and their sum).
 *
 * Every series is a uint64 counter at a fixed index, < PIOCP_METRICS.
 */

/* The operations requests and errors are counted by (piocp_op's values;
 * accept and connect, which are not requests, take the remaining ones). */
#define PIOCP_METRIC_OP_ACCEPT 0  /* in place of PIOCP_OP_NONE */
#define PIOCP_METRIC_OP_CONNECT 7
#define PIOCP_METRIC_OPS 8
/* The errors counted by name; the others count as "other" (the last). */
#define PIOCP_METRIC_ERRNOS 16

typedef enum piocp_metric {
    PIOCP_M_ACCEPTED = 0,          /* connections accepted and handed to a handler */
    PIOCP_M_REFUSED_LIMIT,         /* closed at once: over max_connections */
    PIOCP_M_REFUSED_STOPPING,      /* closed at once: the engine was stopping */
    PIOCP_M_ACCEPT_PAUSES,         /* accepting paused for want of descriptors or memory */
    PIOCP_M_OPENED,                /* connections opened: accepted, adopted, connected */
    PIOCP_M_CLOSED,                /* ... and closed (open now: the difference) */
    PIOCP_M_REQUESTS,              /* + op: requests completed, by operation (accept:
                                      unused, see PIOCP_M_ACCEPTED) */
    PIOCP_M_ERRORS = PIOCP_M_REQUESTS + PIOCP_METRIC_OPS,
                                   /* + op * PIOCP_METRIC_ERRNOS + error index */
    PIOCP_M_RECEIVED_BYTES = PIOCP_M_ERRORS + PIOCP_METRIC_OPS * PIOCP_METRIC_ERRNOS,
    PIOCP_M_SENT_BUFFER_BYTES,     /* bytes sent from memory (sends, transmit heads) */
    PIOCP_M_SENT_FILE_BYTES,       /* file bytes sent by transmits */
    PIOCP_M_SENT_COPIED_BYTES,     /* of those, read into a buffer and sent as a copy
                                      instead of zero-copy (Windows' read+send path) */
    PIOCP_M_BORROWED,              /* sockets lent to the engine (piocp_borrow) */
    PIOCP_M_BORROWED_BYTES,        /* bytes sent on them */
    PIOCP_M_COMPLETED_INLINE,      /* IOCP: finished as posted, without a packet */
    PIOCP_M_DISPATCHED,            /* completions handed to Python (the binding counts) */
    PIOCP_M_BATCHES,               /* ... in this many batches */
    PIOCP_M_HTTP_RESPONSES,        /* + class - 1: native HTTP answers, 1xx..5xx */
    PIOCP_METRICS = PIOCP_M_HTTP_RESPONSES + 5
} piocp_metric;

/* What a series is, for rendering: its family's name and help, and up to
 * two labels (NULL names when fewer). */
typedef struct piocp_metric_desc {
    const char *name;              /* Prometheus family name, "pyiocp_..._total" */
    const char *help;
    const char *label_name[2];
    const char *label_value[2];
} piocp_metric_desc;
/* Describes series `index` (< PIOCP_METRICS); -EINVAL outside. */
int piocp_metric_describe(int index, piocp_metric_desc *out);
/* The error index (< PIOCP_METRIC_ERRNOS) an error (-PIOCP_E* or PIOCP_E*)
 * is counted under. */
int piocp_metric_errno_index(int error);

/* The engine's counters, summed: values[PIOCP_METRICS]. */
void piocp_engine_read_metrics(const piocp_engine *engine, uint64_t *values);
/* Adds `n` to series `index` of `engine` (from any thread): for bindings
 * and handlers counting what the engine cannot see (PIOCP_M_DISPATCHED). */
void piocp_metric_add(piocp_engine *engine, int index, uint64_t n);

/* Bytes a cell needs for an engine of `threads` workers. */
size_t piocp_metrics_cell_size(int threads);
/* Makes the engine count into `cell` (`size` bytes, from a metrics area)
 * from now on; what it counted so far moves there.  Only before
 * piocp_engine_start (-EBUSY after); -EINVAL if `size` is too small. */
int piocp_engine_use_metrics_cell(piocp_engine *engine, void *cell, size_t size);

/* A metrics area: `slots` workers' cells in memory several processes share
 * (mmap MAP_SHARED before fork), each worker's `threads` threads.  A
 * restarted or reloaded worker takes a fresh cell for its slot; a freed
 * cell's counts stay in its slot's series, so no series goes back. */
size_t piocp_metrics_area_size(int slots, int threads);
/* Lays out `size` bytes (zeroed) as an area; -EINVAL if too small. */
int piocp_metrics_area_init(void *area, size_t size, int slots, int threads);
/* Takes a free cell for `slot` and zeroes it: its index, -EBUSY if none is
 * free (three per slot: a worker, a reload's old one still draining, and
 * a restart while a reload is given up), -EINVAL for a bad slot.  `*cell`, `*cell_size`: what to give piocp_engine_use_metrics_cell. */
int piocp_metrics_area_claim(void *area, int slot, void **cell, size_t *cell_size);
/* Cell `index` (as claim returned it) of an area, for a process that
 * inherited the area and its claim (a forked worker). */
int piocp_metrics_area_cell(void *area, int index, void **cell, size_t *cell_size);
/* Frees cell `index` once its process has exited: its counts go to its
 * slot's retired totals (connections it left open count as closed). */
int piocp_metrics_area_release(void *area, int index);

/* The Prometheus text exposition (version 0.0.4) of an engine's counters
 * (`area` NULL), or of every slot of an area (a `worker` label) and their
 * sum (no worker label).  Writes at most `cap` bytes (NUL-terminated when
 * cap > 0) and returns the length the whole text needs, as snprintf does. */
size_t piocp_metrics_render(const piocp_engine *engine, const void *area, char *buf, size_t cap);

/* A native handler answering GET /metrics with piocp_metrics_render of
 * `engine` and `area` (as above), and 404 to other paths: pass to
 * piocp_listen with the server as `user`.  `engine` is the engine that
 * serves it. */
typedef struct piocp_metrics_server piocp_metrics_server;
int piocp_metrics_server_new(piocp_metrics_server **out, const piocp_engine *engine,
                             const void *area);
void piocp_metrics_server_free(piocp_metrics_server *server);
extern const piocp_listener_callbacks piocp_metrics_server_callbacks;

#ifdef __cplusplus
}
#endif
#endif /* PYIOCP_H */
