/*
 * engine_internal.h - what the loop core (engine.c) shares with the backend
 * files.  Not installed; the public API is pyiocp.h alone.
 */
#ifndef PYIOCP_ENGINE_INTERNAL_H
#define PYIOCP_ENGINE_INTERNAL_H

#include "pyiocp.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

typedef enum conn_state {
    CONN_FREE = 0,  /* slot unused */
    CONN_OPEN,      /* socket open, requests may be posted */
    CONN_CLOSED     /* socket closed, on_closed has run or is about to */
} conn_state;

typedef struct piocp_worker piocp_worker;

struct piocp_conn {
    pthread_mutex_t lock;      /* guards everything below but refs/last_active */
    piocp_engine *engine;
    uint32_t slot;
    uint32_t generation;       /* bumped on every reuse: stale events carry the old one */
    atomic_int refs;
    atomic_llong last_active_ms;
    atomic_llong deadline_ms;  /* 0: none; else dropped (-ETIMEDOUT) once past */
    atomic_bool deadline_graceful; /* ... or closed gracefully (FIN) instead */

    conn_state state;
    int fd;
    int owner;                 /* worker that must run it (one ring per worker), -1: any */
    bool busy;                 /* a worker is running this connection's requests */
    bool again;                /* work arrived while busy: the worker must look again */
    bool queued;               /* sits in a ready list (holds a reference) */
    bool close_requested;      /* graceful close: finish sends, then close */
    bool lingering;            /* FIN sent; reading until the peer closes */
    int abort_error;           /* != 0: fail everything with this and close */
    int closed_error;          /* what on_closed reports */

    /* backend state (epoll: readiness hints and the watched event mask) */
    bool readable, writable;
    bool peer_closed;          /* FIN or error seen: reads must go on to see it */
    uint32_t watched_events;
    /* backend state (io_uring: what is on the ring for this connection) */
    int inflight;              /* SQEs whose CQE has not come back */
    bool recv_submitted, send_submitted, cancel_submitted, recv_cancel_submitted;

    piocp_request *recv_req;
    piocp_request *send_head, *send_tail;

    piocp_closed_fn on_closed;
    void *user;
    struct sockaddr_storage peer;
    socklen_t peer_len;

    piocp_conn *ready_next;
};

struct piocp_listener {
    piocp_engine *engine;
    piocp_listener *next;
    int fd;
    uint32_t index;
    atomic_bool closed;
    piocp_listener_callbacks callbacks;
    void *user;
    atomic_uint_fast64_t refused;
};

/* A FIFO of connections waiting for a worker to run their requests. */
typedef struct ready_list {
    piocp_conn *head, *tail;
} ready_list;

struct piocp_worker {
    piocp_engine *engine;
    pthread_t thread;
    int index;
    ready_list local;          /* filled by posts made on this worker: no lock, no wake-up */
    /* Connections owned by this worker (backends with one ring per worker)
     * that another thread posted on: taken into `local` by the owner. */
    pthread_mutex_t remote_lock;
    ready_list remote;
    void *backend_data;        /* the backend's per-worker state (a ring) */
};

typedef struct piocp_backend_ops {
    const char *name;
    int (*probe)(void);                               /* 0 if this kernel allows it */
    int (*init)(piocp_engine *engine);
    void (*destroy)(piocp_engine *engine);
    int (*add_listener)(piocp_engine *engine, piocp_listener *listener);
    int (*add_conn)(piocp_engine *engine, piocp_conn *conn);
    void (*run_worker)(piocp_worker *worker);         /* until the quit completion */
    void (*wake)(piocp_engine *engine);               /* the global ready list has work */
    void (*wake_worker)(piocp_worker *worker);        /* its remote list has work (may be NULL
                                                         for backends without owners) */
    void (*post_quit)(piocp_engine *engine);          /* wake every worker for good */
    void (*process)(piocp_worker *worker, piocp_conn *conn); /* run a claimed connection */
} piocp_backend_ops;

struct piocp_engine {
    const piocp_backend_ops *backend;
    char backend_note[256];    /* why "auto" passed over a preferred backend */
    void *backend_data;
    piocp_config config;
    int threads;

    /* connection pool: slots are never freed before the engine, so a stale
     * event can always lock its slot and compare generations */
    piocp_conn *conns;
    uint32_t conn_capacity;
    uint32_t high_water;       /* slots [0, high_water) have been used */
    _Atomic uint32_t high_water_published; /* same, readable without pool_lock */
    uint32_t *free_slots;
    uint32_t free_count;
    atomic_int open_conns;
    pthread_mutex_t pool_lock;
    pthread_cond_t idle_cond;  /* signalled when open_conns drops to 0 */

    pthread_mutex_t listeners_lock;
    piocp_listener *listeners;
    uint32_t listener_count;

    pthread_mutex_t ready_lock;
    ready_list ready;          /* posts from non-worker threads */
    pthread_mutex_t user_lock;
    piocp_request *user_head, *user_tail; /* posted user completions */

    piocp_worker *workers;
    atomic_bool started, stopping, draining, quit;
    pthread_mutex_t stop_lock;
};

/* engine.c services for the backends */
long long piocp_now_ms(void);
piocp_worker *piocp_current_worker(void);
void piocp_worker_enter(piocp_worker *worker);
piocp_conn *piocp_conn_from_slot(piocp_engine *engine, uint32_t slot);
piocp_conn *piocp_pool_acquire(piocp_engine *engine, int fd, const struct sockaddr *peer,
                               socklen_t peer_len);
void piocp_accepted(piocp_listener *listener, int fd, const struct sockaddr *peer,
                    socklen_t peer_len);
void piocp_schedule_locked(piocp_conn *conn);
void piocp_abort_locked(piocp_conn *conn); /* abort with -ECANCELED unless already failing */
void piocp_run_local(piocp_worker *worker);
void piocp_take_global(piocp_worker *worker);
void piocp_take_remote(piocp_worker *worker);
void piocp_run_user_completions(piocp_engine *engine);
/* completions collected under a connection's lock, run after unlocking */
typedef struct piocp_done_list {
    piocp_request *head, *tail;
} piocp_done_list;
void piocp_done_push(piocp_done_list *done, piocp_request *req, ssize_t result);
void piocp_complete_list(piocp_request *list);
void piocp_fail_all_locked(piocp_conn *conn, int error, piocp_done_list *done);
void piocp_close_socket_locked(piocp_conn *conn, int error);
void piocp_finish_closed(piocp_conn *conn);
void piocp_scan_idle(piocp_engine *engine);
int piocp_sweep_period_ms(const piocp_engine *engine);
void piocp_batch_end(piocp_engine *engine);

/* send_step.c: one system call for the head of the send queue: > 0
 * progress, 0 the request is complete, < 0 -errno (-EAGAIN: wait until
 * writable).  `piocp_touch` records progress for the idle timeout. */
ssize_t piocp_send_step(piocp_conn *conn, piocp_request *req);
/* Graceful close after the last send: FIN, then drop what the peer still
 * sends.  true: the socket may be closed now; false: wait until readable. */
bool piocp_linger_locked(piocp_conn *conn);
void piocp_touch(piocp_conn *conn);

extern const piocp_backend_ops piocp_backend_epoll;
extern const piocp_backend_ops piocp_backend_io_uring;
const char *piocp_io_uring_describe(char *buf, size_t len);

#endif
