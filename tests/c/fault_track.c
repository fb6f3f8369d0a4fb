/* fault_track.c - see fault_track.h.  Fixed pools, so that a check can
 * walk everything a run made, and nothing is freed while the engine may
 * still (wrongly) complete into it. */
#include "fault_track.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_CONNS 256
#define MAX_REQS 4096
#define MAX_CONNECTS 16

static tracked_conn conns[MAX_CONNS];
static tracked_req reqs[MAX_REQS];
static atomic_int conn_count, req_count;
static atomic_int connect_posted[MAX_CONNECTS], connect_done[MAX_CONNECTS];
static atomic_int overflow;

void track_reset(void)
{
    int n = atomic_load(&req_count);
    for (int i = 0; i < n && i < MAX_REQS; i++)
        free(reqs[i].buf);
    memset(conns, 0, sizeof conns);
    memset(reqs, 0, sizeof reqs);
    atomic_store(&conn_count, 0);
    atomic_store(&req_count, 0);
    atomic_store(&overflow, 0);
    for (int i = 0; i < MAX_CONNECTS; i++) {
        atomic_store(&connect_posted[i], 0);
        atomic_store(&connect_done[i], 0);
    }
}

tracked_conn *track_conn(piocp_conn *conn, void *user)
{
    int i = atomic_fetch_add(&conn_count, 1);
    if (i >= MAX_CONNS) {
        atomic_store(&overflow, 1);
        return NULL;
    }
    tracked_conn *tc = &conns[i];
    tc->conn = conn;
    tc->user = user;
    piocp_conn_set_callbacks(conn, track_on_closed, tc);
    return tc;
}

tracked_req *track_req(tracked_conn *tc, size_t len, const void *data,
                       void (*then)(tracked_req *, ssize_t))
{
    int i = atomic_fetch_add(&req_count, 1);
    char *buf = malloc(len ? len : 1);
    if (i >= MAX_REQS || !buf) {
        atomic_store(&overflow, 1);
        free(buf);
        return NULL;
    }
    tracked_req *tr = &reqs[i];
    tr->tc = tc;
    tr->then = then;
    tr->buf = buf;
    tr->len = len;
    if (data)
        memcpy(buf, data, len);
    return tr;
}

static void completed(piocp_request *req, ssize_t result)
{
    tracked_req *tr = (tracked_req *)req;
    atomic_fetch_add(&tr->completed, 1);
    if (atomic_load(&tr->tc->closed))
        atomic_fetch_add(&tr->tc->late, 1);
    atomic_fetch_sub(&tr->tc->in_flight, 1);
    if (tr->then)
        tr->then(tr, result);
}

/* Counted in flight before the post: the completion may run before the
 * post returns. */
static int posted(tracked_req *tr, int rc)
{
    if (rc == 0)
        atomic_store(&tr->posted, 1);
    else
        atomic_fetch_sub(&tr->tc->in_flight, 1);
    return rc;
}

int track_recv(tracked_req *tr)
{
    if (!tr)
        return -1;
    tr->req.complete = completed;
    atomic_fetch_add(&tr->tc->in_flight, 1);
    return posted(tr, piocp_recv(tr->tc->conn, &tr->req, tr->buf, tr->len));
}

int track_send(tracked_req *tr)
{
    if (!tr)
        return -1;
    tr->req.complete = completed;
    atomic_fetch_add(&tr->tc->in_flight, 1);
    return posted(tr, piocp_send(tr->tc->conn, &tr->req, tr->buf, tr->len));
}

int track_transmit(tracked_req *tr, piocp_file fd, uint64_t offset, uint64_t count)
{
    if (!tr)
        return -1;
    tr->req.complete = completed;
    atomic_fetch_add(&tr->tc->in_flight, 1);
    return posted(tr, piocp_transmit(tr->tc->conn, &tr->req, tr->buf, tr->len, fd, offset, count));
}

void track_on_closed(piocp_conn *conn, int error)
{
    (void)error;
    tracked_conn *tc = piocp_conn_user(conn);
    if (atomic_load(&tc->in_flight) > 0)
        atomic_fetch_add(&tc->early, 1);
    atomic_fetch_add(&tc->closed, 1);
}

void track_connect_posted(int index) { atomic_fetch_add(&connect_posted[index], 1); }
void track_connect_done(int index) { atomic_fetch_add(&connect_done[index], 1); }

int track_check(const char *label)
{
    int breaches = 0;
    if (atomic_load(&overflow)) {
        fprintf(stderr, "%s: the tracker ran out of slots\n", label);
        breaches++;
    }
    int nreq = atomic_load(&req_count);
    for (int i = 0; i < nreq && i < MAX_REQS; i++) {
        tracked_req *tr = &reqs[i];
        int want = atomic_load(&tr->posted), got = atomic_load(&tr->completed);
        if (got != want) {
            fprintf(stderr, "%s: request %d (op %d) posted %s completed %d times\n", label, i,
                    (int)tr->req.op, want ? "(0)" : "(refused)", got);
            breaches++;
        }
    }
    int nconn = atomic_load(&conn_count);
    for (int i = 0; i < nconn && i < MAX_CONNS; i++) {
        tracked_conn *tc = &conns[i];
        if (atomic_load(&tc->closed) != 1 || atomic_load(&tc->early) || atomic_load(&tc->late)) {
            fprintf(stderr,
                    "%s: connection %d: on_closed ran %d times, %d early (requests in flight), "
                    "%d completions after it\n",
                    label, i, atomic_load(&tc->closed), atomic_load(&tc->early),
                    atomic_load(&tc->late));
            breaches++;
        }
    }
    for (int i = 0; i < MAX_CONNECTS; i++) {
        if (atomic_load(&connect_posted[i]) != atomic_load(&connect_done[i])) {
            fprintf(stderr, "%s: connect %d: posted %d, done ran %d times\n", label, i,
                    atomic_load(&connect_posted[i]), atomic_load(&connect_done[i]));
            breaches++;
        }
    }
    return breaches;
}
