/*
 * backend.h - the contract between the core and a backend.
 *
 * The core owns the loop, as Redis ae.c (aeProcessEvents), libuv (uv_run)
 * and nginx (ngx_process_events_and_timers) own theirs:
 *
 *   worker loop (core/loop.c)         connection turn (core/loop.c)
 *   --------------------------        ---------------------------------------
 *   poll: wait for kernel events,     claim the connection (busy / again)
 *     translate them into core        stopping: end the pending recv
 *     calls (accepted, schedule)      closing: cancel what the kernel holds,
 *   take posts made elsewhere           fail the rest, linger, close
 *   run ready connections' turns      else: run - move requests forward
 *   sweep idle connections            complete outside the lock; again?
 *   hand the batch to the binding     park: wait on the kernel
 *
 * A backend only translates its kernel mechanism (epoll readiness,
 * io_uring completions, IOCP packets) into those calls.  Adding one: a file
 * that fills a piocp_backend_ops, a line in the table in core/engine.c, a
 * line in engine/sources.txt.  backends/scripted.c is the smallest example.
 */
#ifndef PYIOCP_CORE_BACKEND_H
#define PYIOCP_CORE_BACKEND_H

#include "core/internal.h"
#include "core/metrics.h"

/* What a wait reported, besides the events it translated. */
#define PIOCP_POLL_WOKEN 1 /* a wake-up: look at the global ready list and user posts */

/* One direct step on the head of the send queue: > 0 bytes moved, 0 the
 * request is complete, -errno (-EAGAIN: the socket is full). */
typedef ssize_t (*piocp_send_step_fn)(piocp_conn *conn, piocp_request *req);

struct piocp_backend_ops {
    const char *name;
    bool explicit_only;            /* never picked by "auto" (test backends) */
    size_t conn_size;              /* private bytes per connection (piocp_conn_backend) */

    int (*probe)(void);            /* 0 if this kernel allows it, else -errno */
    /* One line on what the kernel offers it (`pyiocp info`); NULL: the
     * probe's verdict. */
    const char *(*describe)(char *buf, size_t len);

    /* ------------------------------------------------------- engine -- */
    int (*init)(piocp_engine *engine);
    void (*destroy)(piocp_engine *engine);
    /* In the worker's own thread, before / after its loop (may be NULL).
     * A worker_init error fails piocp_engine_start. */
    int (*worker_init)(piocp_worker *worker);
    void (*worker_exit)(piocp_worker *worker);
    /* Waits up to timeout_ms (-1: until woken, 0: only look) and translates
     * what the kernel reports into core calls.  Returns PIOCP_POLL_* bits,
     * or -errno when the worker cannot go on. */
    int (*poll)(piocp_worker *worker, int timeout_ms);
    void (*wake)(piocp_engine *engine);            /* a worker must look at the global list */
    void (*wake_worker)(piocp_worker *worker);     /* that worker must look at its remote list */
    void (*post_quit)(piocp_engine *engine);       /* every worker must return from poll */

    /* ---------------------------------------------------- listeners -- */
    int (*add_listener)(piocp_engine *engine, piocp_listener *listener);
    /* Accepting was paused (out of descriptors) and may go on. */
    void (*resume_listener)(piocp_engine *engine, piocp_listener *listener);
    /* Optional: a shared listener was closed (not shut down, see
     * piocp_listener.shared); stop watching it now, so that no worker of
     * this engine is woken for a connection another process should take. */
    void (*stop_listener)(piocp_engine *engine, piocp_listener *listener);

    /* -------------------------- connections (called under conn->lock) -- */
    /* A connection was accepted on `worker` (NULL outside the workers):
     * watch it (epoll), pick its owner (per-worker queues)... */
    int (*add_conn)(piocp_worker *worker, piocp_conn *conn);
    /* Moves the pending requests forward as far as the kernel allows now:
     * completes what finishes (into `done`), starts what must wait (counted
     * in conn->in_kernel), sets conn->abort_error when the connection
     * broke.  Returns false when `budget` (bytes this turn may still move)
     * ran out with work left: the connection goes to the back of the line. */
    bool (*run)(piocp_worker *worker, piocp_conn *conn, piocp_done_list *done, size_t *budget);
    /* Stopping, or piocp_cancel: the pending recv must end.  true if the
     * kernel holds it and its cancellation is on its way (it completes
     * through the backend); false if it does not (the core completes it
     * now).  May be NULL. */
    bool (*cancel_recv)(piocp_worker *worker, piocp_conn *conn);
    /* piocp_cancel reached the head of the send queue: true if the kernel
     * holds it (a ring send, a ring wait for room) and the backend has
     * asked for it back (once; its completion reschedules the connection,
     * and a turn after that ends it); false if the kernel does not (the
     * core completes it now, with req->done as sent).  A completion that
     * comes back with bytes advances req->done first; one that finishes the
     * request completes it as usual.  May be NULL: nothing is held. */
    bool (*cancel_send)(piocp_worker *worker, piocp_conn *conn);
    /* Closing while conn->in_kernel > 0: have the kernel give those
     * operations back; their completions reschedule the connection and the
     * core closes it at 0.  Called on every turn until then: start it once.
     * May be NULL only if in_kernel is always 0. */
    void (*cancel)(piocp_worker *worker, piocp_conn *conn);
    /* A borrowed connection's socket goes back to its owner, open: forget
     * it (epoll: out of the set), so that nothing of ours is left on it.
     * conn->in_kernel is 0.  May be NULL: nothing to forget. */
    void (*remove_conn)(piocp_conn *conn);
    /* conn (owned by another worker, conn->in_kernel == 0, not running)
     * is about to move to `to`, the worker that posts on it: true if the
     * backend moved what it keeps per worker (epoll: the descriptor to
     * `to`'s set), false to leave it with its owner.  NULL: moving costs
     * nothing (io_uring: with nothing on the ring, nothing to move). */
    bool (*move)(piocp_worker *to, piocp_conn *conn);
    /* The turn is over and the connection waits on the kernel: arrange to
     * hear of it (epoll: the writable edge once a send met a full buffer;
     * io_uring: a poll while lingering).  -errno aborts it; 1: the backend
     * could not yet ask the kernel for what the turn needed (io_uring's SQ
     * was full), so the turn comes again after the worker's next poll.
     * May be NULL. */
    int (*park)(piocp_worker *worker, piocp_conn *conn);
    /* A connecting connection's turn: how its connect is going, 0
     * connected, -EINPROGRESS not yet, -errno failed.  NULL: the core looks
     * at the socket (piocp_socket_connect_result), which turns writable
     * when the connect ends; a backend that connects itself (IOCP's
     * ConnectEx, started in add_conn) answers from its completion. */
    int (*connect_result)(piocp_conn *conn);
    /* A queued shutdown reached the head of the send queue: send the FIN
     * now, returning 0 or -errno.  NULL: shutdown(2) on conn->fd (a
     * backend whose sockets are not the kernel's plays it itself). */
    int (*shutdown_write)(piocp_conn *conn);
};

/* The backend's private per-connection state (ops->conn_size bytes). */
static inline void *piocp_conn_backend(piocp_conn *conn) { return conn->backend_area; }

/* ------------------------------------------------- services for backends -- */

long long piocp_now_ms(void);
piocp_worker *piocp_current_worker(void);

/* An event named connection (slot, generation & mask): locked and OPEN, or
 * NULL if the event is stale (the slot was closed or reused since). */
piocp_conn *piocp_conn_lock_tagged(piocp_engine *engine, uint32_t slot, uint32_t generation,
                                   uint32_t generation_mask);
/* Makes sure a worker will run this connection's turn soon.  Called on a
 * worker that does not own it, the connection may move to that worker
 * (see `move`). */
void piocp_schedule_locked(piocp_conn *conn);
/* The same, but the connection stays with its owner: for kernel events a
 * worker harvested for a connection that has moved away meanwhile. */
void piocp_schedule_on_owner_locked(piocp_conn *conn);
/* The same, but its turn comes only after its owner (a per-worker queue:
 * owner >= 0) has polled again: through the owner's remote list, with a
 * wake-up so that the poll does not sleep. */
void piocp_schedule_after_poll_locked(piocp_conn *conn);
void piocp_done_push(piocp_done_list *done, piocp_request *req, ssize_t result);
void piocp_complete_list(piocp_engine *engine, piocp_request *list);
/* piocp_post, completing as `op` (a cancelled timer is counted as one). */
int piocp_post_as(piocp_engine *engine, piocp_request *req, ssize_t result, piocp_op op);
/* Progress for the idle timeout. */
void piocp_touch(piocp_conn *conn);
/* `n` more bytes of `req`, the head of the send queue, were handed to the
 * kernel: advances req->done, the idle clock and the engine's counters.
 * Every backend reports a send's progress through here. */
void piocp_sent_locked(piocp_conn *conn, piocp_request *req, size_t n);

typedef enum piocp_sends {
    PIOCP_SENDS_IDLE,     /* nothing left to send */
    PIOCP_SENDS_BLOCKED,  /* the socket is full: wait until writable */
    PIOCP_SENDS_HANDOFF,  /* the head is a plain send, and only transmits were asked */
    PIOCP_SENDS_BUDGET,   /* this turn's budget ran out */
    PIOCP_SENDS_BROKEN    /* failed: conn->abort_error is set */
} piocp_sends;
/* Runs the send queue's head by direct steps while the kernel takes bytes,
 * completing what finishes into `done` and charging `budget`.  With
 * `transmits_only`, stops at a plain send with bytes left (io_uring sends
 * those through its ring). */
piocp_sends piocp_run_sends_locked(piocp_conn *conn, piocp_done_list *done, size_t *budget,
                                   piocp_send_step_fn step, bool transmits_only);

/* Listeners, by the index their events carry: NULL if none. */
piocp_listener *piocp_listener_at(piocp_engine *engine, uint32_t index);
/* Whether a backend should accept on it now (not closed, not paused). */
bool piocp_listener_accepting(const piocp_listener *listener);
/* The accept gate (see listener.c).  A backend that takes sockets off the
 * queue itself (accept until EAGAIN) enters before each accept: false, the
 * listener is closed and nothing may be taken.  After entering it calls
 * piocp_accepted with the socket it took, or piocp_accept_leave if it took
 * none. */
bool piocp_accept_enter(piocp_listener *listener);
void piocp_accept_leave(piocp_listener *listener);
/* Inside the gate, the backend took `fd`: the core gives it a slot (or
 * refuses it: max_connections) and leaves the gate. */
void piocp_accepted(piocp_listener *listener, piocp_socket fd, const struct sockaddr *peer,
                    socklen_t peer_len);
/* A completion brought `fd`, taken before the gate could be asked (a ring's
 * multishot accept, AcceptEx): served if the listener still accepts,
 * refused (closed) if the stop came first. */
void piocp_accept_completed(piocp_listener *listener, piocp_socket fd,
                            const struct sockaddr *peer, socklen_t peer_len);
/* An accept failed with `error` (-errno).  true: go on accepting; false:
 * stop accepting on it until resume_listener (out of descriptors: retrying
 * at once would spin), or for good (closed). */
bool piocp_listener_accept_failed(piocp_listener *listener, int error);

/* Every backend compiled in. */
extern const piocp_backend_ops piocp_backend_epoll;
extern const piocp_backend_ops piocp_backend_io_uring;
extern const piocp_backend_ops piocp_backend_iocp;
extern const piocp_backend_ops piocp_backend_scripted;

#endif
