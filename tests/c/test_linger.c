/*
 * test_linger.c - the lingering close: after piocp_close the engine sends
 * its FIN and reads until the peer closes, at most piocp_config.linger_ms;
 * a peer still there then gets an orderly close (no reset: what was sent
 * is still delivered) and on_closed reports 0.  A stop cuts the linger
 * short, and every lingering connection still gets on_closed exactly once.
 * `test_linger NAME BACKEND` runs one case, with real clients on 127.0.0.1.
 */
#include "test_backend.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

static const char *backend = "epoll";

typedef struct closer {
    piocp_request send_req, recv_req;
    char buf[64];
    bool recv_first;        /* a recv is pending when the close comes (the kernel holds it) */
    atomic_int send_completions, recv_completions;
    atomic_int closed, closed_error, completions_after_close;
    atomic_llong closed_at_ms;
} closer;

static void counted(closer *c, atomic_int *counter)
{
    if (atomic_load(&c->closed))
        atomic_fetch_add(&c->completions_after_close, 1);
    atomic_fetch_add(counter, 1);
}

static void send_done(piocp_request *req, ssize_t result)
{
    closer *c = req->user;
    CHECK(result == 5);
    counted(c, &c->send_completions);
}

static void recv_done(piocp_request *req, ssize_t result)
{
    closer *c = req->user;
    CHECK(result == -ECANCELED); /* the close ended it */
    counted(c, &c->recv_completions);
}

static void on_closed(piocp_conn *conn, int error)
{
    closer *c = piocp_conn_user(conn);
    atomic_store(&c->closed_error, error);
    atomic_store(&c->closed_at_ms, now_ms());
    atomic_fetch_add(&c->closed, 1);
}

/* Says hello and closes at once, the way a server ends a keep-alive
 * connection. */
static void on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    closer *c = user;
    c->send_req = (piocp_request){.complete = send_done, .user = c};
    c->recv_req = (piocp_request){.complete = recv_done, .user = c};
    piocp_conn_set_callbacks(conn, on_closed, c);
    if (c->recv_first)
        CHECK(piocp_recv(conn, &c->recv_req, c->buf, sizeof c->buf) == 0);
    CHECK(piocp_send(conn, &c->send_req, "hello", 5) == 0);
    CHECK(piocp_close(conn) == 0);
}

static const piocp_listener_callbacks callbacks = {.on_connection = on_connection};

static piocp_engine *engine_with_linger(int linger_ms)
{
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.threads = 2;
    cfg.backend = backend;
    cfg.linger_ms = linger_ms;
    piocp_engine *e = NULL;
    CHECK(piocp_engine_new(&e, &cfg) == 0);
    return e;
}

/* The client's view: "hello", then the FIN; never a reset. */
static void expect_hello_then_eof(int fd)
{
    char in[16];
    CHECK(read_exact(fd, in, 5) == 0 && memcmp(in, "hello", 5) == 0);
    CHECK(read(fd, in, sizeof in) == 0);
}

static void check_closed_once(closer *c)
{
    CHECK(atomic_load(&c->closed) == 1);
    CHECK(atomic_load(&c->send_completions) == 1);
    CHECK(atomic_load(&c->recv_completions) == (c->recv_first ? 1 : 0));
    CHECK(atomic_load(&c->completions_after_close) == 0);
}

/* A peer that never closes: after linger_ms the socket is closed in order
 * and on_closed says 0.  The peer wrote after the close (the lingering
 * close reads and drops it) and still sees a clean end, not a reset. */
static void linger_runs_out(bool recv_first)
{
    int fds = count_fds();
    closer c = {.recv_first = recv_first};
    piocp_engine *e = engine_with_linger(300);
    int port = engine_listen_loopback(e, &callbacks, &c);
    CHECK(piocp_engine_start(e) == 0);
    long long t0 = now_ms();
    int fd = connect_loopback(port);
    expect_hello_then_eof(fd);
    CHECK(write_all(fd, "stray bytes", 11) == 0);
    wait_until(&c.closed, 1, 5000);
    long long took = atomic_load(&c.closed_at_ms) - t0;
    fprintf(stderr, "%s: on_closed(%d) %lld ms after connecting\n", backend,
            atomic_load(&c.closed_error), took);
    check_closed_once(&c);
    CHECK(atomic_load(&c.closed_error) == 0);
    CHECK(took >= 250 && took < 3000);
    char in[16];
    ssize_t n = read(fd, in, sizeof in);
    CHECK(n == 0); /* still the FIN: no reset followed it */
    close(fd);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    check_closed_once(&c);
    CHECK(count_fds() == fds);
}

static void test_linger_runs_out(void) { linger_runs_out(false); }
/* The same after a pending recv was cancelled by the close: the kernel
 * held it (io_uring), and the cancellation must not leave the linger's
 * poll behind when the time runs out. */
static void test_linger_runs_out_after_recv(void) { linger_runs_out(true); }

/* The peer closes during the linger: closed at once, not at its end. */
static void test_peer_closes_first(void)
{
    int fds = count_fds();
    closer c = {0};
    piocp_engine *e = engine_with_linger(10000);
    int port = engine_listen_loopback(e, &callbacks, &c);
    CHECK(piocp_engine_start(e) == 0);
    int fd = connect_loopback(port);
    expect_hello_then_eof(fd);
    long long t0 = now_ms();
    close(fd);
    wait_until(&c.closed, 1, 5000);
    check_closed_once(&c);
    CHECK(atomic_load(&c.closed_error) == 0);
    CHECK(atomic_load(&c.closed_at_ms) - t0 < 2000);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    CHECK(count_fds() == fds);
}

/* Stop while connections linger (the default 5 s, peers that never
 * close): stop does not wait for the linger, and each connection gets
 * on_closed exactly once before stop returns.  The drain timeout is longer
 * than the linger: a stop that let the lingers run out (epoll before
 * 22e80e1: 5 s), or that reached its abort only after the drain timeout
 * (hiding that), must fail here (issue 13). */
static void stop_while_lingering(bool recv_first)
{
    int fds = count_fds();
    enum { CONNS = 3 };
    closer c[CONNS];
    int clients[CONNS];
    piocp_engine *e = engine_with_linger(0);
    int ports[CONNS];
    for (int i = 0; i < CONNS; i++) {
        c[i] = (closer){.recv_first = recv_first};
        ports[i] = engine_listen_loopback(e, &callbacks, &c[i]);
    }
    CHECK(piocp_engine_start(e) == 0);
    for (int i = 0; i < CONNS; i++) {
        clients[i] = connect_loopback(ports[i]);
        expect_hello_then_eof(clients[i]);
    }
    long long t0 = now_ms();
    CHECK(piocp_engine_stop(e, 10000) == 0);
    long long took = now_ms() - t0;
    fprintf(stderr, "%s: stop took %lld ms\n", backend, took);
    for (int i = 0; i < CONNS; i++) {
        check_closed_once(&c[i]);
        CHECK(atomic_load(&c[i].closed_error) == 0);
    }
    CHECK(took < 2000);
    piocp_engine_free(e);
    for (int i = 0; i < CONNS; i++) {
        check_closed_once(&c[i]);
        close(clients[i]);
    }
    CHECK(count_fds() == fds);
}

static void test_stop_while_lingering(void) { stop_while_lingering(false); }
static void test_stop_while_lingering_after_recv(void) { stop_while_lingering(true); }

/* Deadlines: a close deadline ends in a lingering close, in order (0); a
 * hard deadline still resets, and says -ETIMEDOUT. */
typedef struct waiter {
    piocp_request recv_req;
    char buf[64];
    bool graceful;
    atomic_int recv_completions, closed, closed_error;
} waiter;

static void waiter_recv_done(piocp_request *req, ssize_t result)
{
    waiter *w = req->user;
    CHECK(result < 0); /* the peer never sends: the deadline ends it */
    atomic_fetch_add(&w->recv_completions, 1);
}

static void waiter_closed(piocp_conn *conn, int error)
{
    waiter *w = piocp_conn_user(conn);
    atomic_store(&w->closed_error, error);
    atomic_fetch_add(&w->closed, 1);
}

static void waiter_on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    waiter *w = user;
    w->recv_req = (piocp_request){.complete = waiter_recv_done, .user = w};
    piocp_conn_set_callbacks(conn, waiter_closed, w);
    CHECK(piocp_recv(conn, &w->recv_req, w->buf, sizeof w->buf) == 0);
    if (w->graceful)
        CHECK(piocp_conn_set_close_deadline(conn, 100) == 0);
    else
        CHECK(piocp_conn_set_deadline(conn, 100) == 0);
}

static const piocp_listener_callbacks waiter_callbacks = {.on_connection = waiter_on_connection};

static void deadline_case(bool graceful)
{
    int fds = count_fds();
    waiter w = {.graceful = graceful};
    piocp_engine *e = engine_with_linger(300);
    int port = engine_listen_loopback(e, &waiter_callbacks, &w);
    CHECK(piocp_engine_start(e) == 0);
    int fd = connect_loopback(port);
    char in[4];
    ssize_t n = read(fd, in, sizeof in);
    CHECK(graceful ? n == 0 : (n < 0 && errno == ECONNRESET));
    wait_until(&w.closed, 1, 5000);
    CHECK(atomic_load(&w.closed) == 1 && atomic_load(&w.recv_completions) == 1);
    CHECK(atomic_load(&w.closed_error) == (graceful ? 0 : -ETIMEDOUT));
    if (graceful)
        CHECK(read(fd, in, sizeof in) == 0); /* the linger ran out: still no reset */
    close(fd);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    CHECK(atomic_load(&w.closed) == 1);
    CHECK(count_fds() == fds);
}

static void test_close_deadline_lingers(void) { deadline_case(true); }
static void test_hard_deadline_resets(void) { deadline_case(false); }

static void test_config(void)
{
    piocp_config cfg;
    piocp_config_init(&cfg);
    CHECK(cfg.linger_ms == 5000);
    cfg.linger_ms = -1;
    cfg.backend = backend;
    piocp_engine *e = NULL;
    CHECK(piocp_engine_new(&e, &cfg) == -EINVAL);
}

static const test_case cases[] = {
    {"linger_runs_out", test_linger_runs_out},
    {"linger_runs_out_after_recv", test_linger_runs_out_after_recv},
    {"peer_closes_first", test_peer_closes_first},
    {"stop_while_lingering", test_stop_while_lingering},
    {"stop_while_lingering_after_recv", test_stop_while_lingering_after_recv},
    {"close_deadline_lingers", test_close_deadline_lingers},
    {"hard_deadline_resets", test_hard_deadline_resets},
    {"config", test_config},
    {NULL, NULL},
};

int main(int argc, char **argv) { return run_backend_test_case(cases, argc, argv, &backend); }
