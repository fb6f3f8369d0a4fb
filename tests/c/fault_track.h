/* fault_track.h - the completion contract, counted (tests/c/fault_sweep.c):
 * every request a scenario's C handler posts and every connection it is
 * given is tracked, so that after the engine is freed the sweep can check
 * that each post that returned 0 completed exactly once, none completed
 * after its connection's on_closed, and on_closed ran exactly once per
 * connection, after all of that connection's completions.  The native
 * servers' own requests are not visible here: their leaks show in the
 * allocation count instead. */
#ifndef PYIOCP_TESTS_FAULT_TRACK_H
#define PYIOCP_TESTS_FAULT_TRACK_H

#include "pyiocp.h"

#include <stdatomic.h>
#include <stdbool.h>

typedef struct tracked_conn {
    piocp_conn *conn;
    atomic_int closed;    /* on_closed calls */
    atomic_int in_flight; /* posted, not completed */
    atomic_int early;     /* on_closed with requests still in flight */
    atomic_int late;      /* completions after on_closed */
    void *user;           /* the scenario's own state */
} tracked_conn;

typedef struct tracked_req {
    piocp_request req;    /* first: the completion gets this back */
    tracked_conn *tc;
    atomic_int posted;    /* 1: the post returned 0 */
    atomic_int completed;
    void (*then)(struct tracked_req *tr, ssize_t result); /* the scenario's callback */
    char *buf;            /* what it reads into or sends from (owned) */
    size_t len;
} tracked_req;

/* Forgets everything tracked (before a run). */
void track_reset(void);
/* A connection to track; its on_closed is track_on_closed. */
tracked_conn *track_conn(piocp_conn *conn, void *user);
/* A request slot for `tc` with a buffer of `len` bytes (copied from
 * `data` when it is not NULL), completing into `then`. */
tracked_req *track_req(tracked_conn *tc, size_t len, const void *data,
                       void (*then)(tracked_req *, ssize_t));
/* Posts: piocp_recv / piocp_send / piocp_transmit through the tracker.
 * Each returns the post's result; a post that fails is not counted. */
int track_recv(tracked_req *tr);
int track_send(tracked_req *tr);
int track_transmit(tracked_req *tr, piocp_file fd, uint64_t offset, uint64_t count);
void track_on_closed(piocp_conn *conn, int error);
/* An outbound connect's done callback ran (exactly once is checked). */
void track_connect_done(int index);
void track_connect_posted(int index);

/* After the engine is freed: prints each breach (prefixed by `label`)
 * and returns how many there were. */
int track_check(const char *label);

#endif
