/*
 * internal.h - the core's own structures: connections, listeners, workers,
 * the engine.  Backends see them through core/backend.h; nothing here is
 * installed (the public API is pyiocp.h alone).
 */
#ifndef PYIOCP_CORE_INTERNAL_H
#define PYIOCP_CORE_INTERNAL_H

#include "pyiocp.h"
#include "platform/threads.h"
#include "platform/atomics.h"

#include <stdalign.h>
#include <stdbool.h>
#include <stddef.h>

/* Listeners one engine may have (they are tagged by index in events). */
#define PIOCP_MAX_LISTENERS 64

typedef enum conn_state {
    CONN_FREE = 0,  /* slot unused */
    CONN_OPEN,      /* socket open, requests may be posted */
    CONN_CLOSED     /* socket closed, on_closed has run or is about to */
} conn_state;

typedef struct piocp_worker piocp_worker;
typedef struct piocp_backend_ops piocp_backend_ops;

/* A FIFO of connections waiting for a worker to run their requests. */
typedef struct ready_list {
    piocp_conn *head, *tail;
} ready_list;

/* Completions collected under a connection's lock, run after unlocking. */
typedef struct piocp_done_list {
    piocp_request *head, *tail;
} piocp_done_list;

struct piocp_conn {
    piocp_mutex lock;          /* guards everything below but the atomics */

    /* Read without the lock (the idle sweep, references): only ever
     * written with atomic stores, also when a slot is reused. */
    atomic_int refs;
    atomic_llong last_active_ms;
    atomic_llong deadline_ms;  /* 0: none; else dropped (-ETIMEDOUT) once past */
    atomic_bool deadline_graceful; /* ... or closed gracefully (FIN) instead */

    /* From here on, reset when a slot is reused (under the lock). */
    piocp_engine *engine;
    uint32_t slot;
    uint32_t generation;       /* bumped on every reuse: stale events carry the old one */
    conn_state state;
    piocp_socket fd;
    int owner;                 /* worker that must run it (per-worker queues), -1: any */
    int in_kernel;             /* operations the kernel holds on this socket (ring
                                  entries, overlapped I/O): it closes only at 0 and
                                  may change owner only at 0 */
    bool busy;                 /* a worker is running this connection's turn */
    bool again;                /* work arrived while busy: the worker must look again */
    bool queued;               /* sits in a ready list (holds a reference) */
    bool close_requested;      /* graceful close: finish sends, then close */
    bool lingering;            /* FIN sent; reading until the peer closes */
    long long linger_until_ms; /* ... or until then: closed in order anyway */
    bool write_shut;           /* a shutdown is queued or done: sends fail (-EPIPE) */
    bool unanswered;           /* accepted, nothing posted to send yet: a stop
                                  still reads its first request */
    long long first_request_until_ms; /* stopping: ... until then (0: not yet set) */
    bool held;                 /* adopted: claimed until its callbacks are set */
    /* Lent by its owner (piocp_borrow): sends only, no lingering, no idle
     * timeout, and closing hands the socket back instead of closing it. */
    bool borrowed;
    bool connecting;           /* outbound: connect(2) not finished yet */
    piocp_connect_fn connect_done; /* outbound: runs once, connected or not */
    void *connect_user;
    int abort_error;           /* != 0: fail everything with this and close */
    int closed_error;          /* what on_closed reports */

    piocp_request *recv_req;
    piocp_request *send_head, *send_tail;
    /* Cancelled before they started (piocp_cancel), results set: the next
     * turn completes them. */
    piocp_done_list cancelled;

    piocp_closed_fn on_closed;
    void *user;
    struct sockaddr_storage peer;
    socklen_t peer_len;

    piocp_conn *ready_next;
    /* The backend's private state follows, ops->conn_size bytes (see
     * piocp_conn_backend): a new backend never edits this struct. */
    alignas(max_align_t) unsigned char backend_area[];
};

struct piocp_listener {
    piocp_engine *engine;
    piocp_socket fd;           /* open until the workers are joined */
    uint32_t index;            /* in engine->listeners; events name it */
    atomic_bool closed;        /* stopping: accept nothing more */
    atomic_bool paused;        /* out of descriptors: accepting resumes later */
    bool fd_closed;            /* its socket is closed (after the workers left) */
    /* Adopted: other processes may accept on the same socket (a pre-fork
     * supervisor's), so stopping must not shut it down, and a worker must
     * not take a wake-up it will not act on (no EPOLLEXCLUSIVE). */
    bool shared;
    piocp_listener_callbacks callbacks;
    void *user;
    atomic_uint_fast64_t refused;
};

struct piocp_worker {
    piocp_engine *engine;
    piocp_thread thread;
    int index;
    ready_list local;          /* filled by posts made on this worker: no lock, no wake-up */
    /* Connections owned by this worker (per-worker queues) that another
     * thread posted on: taken into `local` by the owner. */
    piocp_mutex remote_lock;
    ready_list remote;
    void *backend;             /* the backend's per-worker state (a ring) */
    long long next_sweep_ms;   /* the sweeping worker's next idle sweep */
};

/* Pending user timers (core/timers.c): a min-heap by due time. */
typedef struct piocp_timer_heap {
    piocp_mutex lock;
    piocp_request **items;
    size_t count, capacity;
    uint64_t sequence;         /* posting order, for timers due together */
    /* The nearest due time (LLONG_MAX: none), readable without the lock:
     * worker 0 looks at it on every round of its loop. */
    atomic_llong nearest_us;
    bool closed;               /* stopping: they were cancelled, no new ones */
} piocp_timer_heap;

struct piocp_engine {
    const piocp_backend_ops *backend;
    char backend_note[256];    /* why "auto" passed over a preferred backend */
    void *backend_data;
    piocp_config config;
    int threads;

    /* connection pool: slots are never freed before the engine, so a stale
     * event can always lock its slot and compare generations.  A slot is
     * conn_stride bytes: the core's piocp_conn, then the backend's part. */
    unsigned char *conn_area;
    size_t conn_stride;
    uint32_t conn_capacity;
    uint32_t high_water;       /* slots [0, high_water) have been used */
    _Atomic uint32_t high_water_published; /* same, readable without pool_lock */
    uint32_t *free_slots;
    uint32_t free_count;
    atomic_int open_conns;
    piocp_mutex pool_lock;
    piocp_cond idle_cond;      /* signalled when open_conns drops to 0 */

    piocp_mutex listeners_lock;
    piocp_listener *_Atomic listeners[PIOCP_MAX_LISTENERS];
    uint32_t listener_count;
    atomic_int paused_listeners;
    atomic_int accepts_under_way; /* inside the accept gate (listener.c) */

    piocp_mutex ready_lock;
    ready_list ready;          /* posts from non-worker threads */
    piocp_mutex user_lock;
    piocp_request *user_head, *user_tail; /* posted user completions */
    piocp_timer_heap timers;

    piocp_worker *workers;
    int threads_joinable;      /* worker threads created and not yet joined */
    piocp_mutex start_lock;
    piocp_cond start_cond;     /* a worker reported how its start went */
    int workers_reported;
    int start_error;           /* the first failure to start a worker, or 0 */
    bool start_decided;        /* every worker reported: they may go (or leave) */
    atomic_bool started, stopping, draining, quit;
    piocp_mutex stop_lock;

    /* Counters (core/metrics.h): the engine's own cell, or one in an area
     * shared with other processes; metrics_memory is ours to free. */
    struct piocp_metrics_cell *metrics;
    void *metrics_memory;
};

/* ---------------------------------------------------- core/metrics.c -- */

/* Gives a new engine its own metrics cell. */
int piocp_engine_metrics_init(piocp_engine *engine);

/* ------------------------------------------------- core/connection.c -- */

static inline piocp_conn *piocp_conn_at(const piocp_engine *e, uint32_t slot)
{
    return (piocp_conn *)(e->conn_area + (size_t)slot * e->conn_stride);
}
/* A free slot for `fd`, counted open and claimed (busy) for the caller,
 * who sets it up and hands it over (on_connection...) before letting go
 * with piocp_conn_let_go_locked.  NULL: max_connections are open. */
piocp_conn *piocp_pool_acquire(piocp_engine *engine, piocp_socket fd,
                               const struct sockaddr *peer, socklen_t peer_len);
/* Ends the claim: what was posted or asked meanwhile (a stop) runs now. */
void piocp_conn_let_go_locked(piocp_conn *conn);
void piocp_take_global(piocp_worker *worker);
void piocp_take_remote(piocp_worker *worker);
void piocp_run_local(piocp_worker *worker);
void piocp_run_user_completions(piocp_engine *engine);
/* Moves every request of `from` to the end of `done`. */
void piocp_done_take(piocp_done_list *done, piocp_done_list *from);
void piocp_fail_all_locked(piocp_conn *conn, int error, piocp_done_list *done);
/* Ends the connection's hold on its socket: closes it (reset if `error`),
 * or hands a borrowed one back; on_closed will report `error`. */
void piocp_close_socket_locked(piocp_conn *conn, int error);
void piocp_finish_closed(piocp_conn *conn);
void piocp_scan_idle(piocp_engine *engine);
int piocp_sweep_period_ms(const piocp_engine *engine);
void piocp_batch_end(piocp_engine *engine);

/* ------------------------------------------------------- core/loop.c -- */

/* A connection's turn: runs its requests (see loop.c). */
void piocp_conn_process(piocp_worker *worker, piocp_conn *conn);
/* A worker thread's body: started by piocp_engine_start. */
void *piocp_worker_main(void *worker);

/* --------------------------------------------------- core/outbound.c -- */

/* A connecting connection's turn: looks whether connect(2) finished.
 * true: it is connected, and `done` must run (outside the lock, still
 * claimed); a failure sets abort_error (the close reports it to `done`). */
bool piocp_connect_step_locked(piocp_conn *conn);
/* The connection's last callback: on_closed, or for a connect that never
 * finished, its `done` with the error. */
void piocp_report_closed(piocp_conn *conn);

/* ----------------------------------------------------- core/timers.c -- */

/* How long worker 0 may wait before the nearest timer is due: -1 none. */
int piocp_timers_wait_ms(piocp_engine *engine);
/* Completes the timers that are due (worker 0, each turn of its loop). */
void piocp_timers_fire_due(piocp_engine *engine);
/* Stopping: every pending timer completes with -ECANCELED (as a user
 * completion), and no new one is taken. */
void piocp_timers_cancel_all(piocp_engine *engine);
void piocp_timers_init(piocp_engine *engine);
void piocp_timers_destroy(piocp_engine *engine);

/* --------------------------------------------------- core/listener.c -- */

/* Closes every listener's socket: only once no worker can touch it. */
void piocp_listeners_close_sockets(piocp_engine *engine);
/* Stops accepting on every listener (their sockets stay open). */
void piocp_listeners_stop(piocp_engine *engine);
/* Waits until no accept is inside the gate: after piocp_listeners_stop,
 * every connection this engine will ever take is counted open. */
void piocp_accepts_wait_out(piocp_engine *engine);
/* Lets paused listeners accept again (descriptors may have been freed). */
void piocp_listeners_resume(piocp_engine *engine);
void piocp_listeners_free(piocp_engine *engine);

#endif
