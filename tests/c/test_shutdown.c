/*
 * test_shutdown.c - half-close (piocp_shutdown) with real TCP clients on
 * 127.0.0.1: the FIN leaves after every byte posted before it, reading goes
 * on, later sends fail with -EPIPE.  `test_shutdown NAME BACKEND` runs one
 * case; every case checks exactly-once completion, one on_closed after the
 * last completion, and no descriptor leak.
 */
#include "test_backend.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

static const char *backend = "epoll";

enum { PAYLOAD = 1 << 20 };
static char payload[PAYLOAD];

/* The server's side of one connection, and what happened to it. */
typedef struct half_conn {
    piocp_request send_req, shutdown_req, recv_req, late_req;
    char buf[64];
    atomic_int rank;                 /* completions so far, to check their order */
    atomic_int send_rank, shutdown_rank;
    atomic_long send_result, shutdown_result;
    atomic_int send_completions, shutdown_completions, recv_completions;
    atomic_int late_send_rc, late_shutdown_rc;
    char received[64];
    atomic_int received_len;
    atomic_int closed, closed_error, completions_after_close;
    bool close_at_once;              /* piocp_close right after the shutdown */
} half_conn;

static half_conn server;

static void count_after_close(half_conn *h)
{
    if (atomic_load(&h->closed))
        atomic_fetch_add(&h->completions_after_close, 1);
}

static void send_done(piocp_request *req, ssize_t result)
{
    half_conn *h = req->user;
    count_after_close(h);
    atomic_store(&h->send_rank, atomic_fetch_add(&h->rank, 1));
    atomic_store(&h->send_result, result);
    atomic_fetch_add(&h->send_completions, 1);
}

static void shutdown_done(piocp_request *req, ssize_t result)
{
    half_conn *h = req->user;
    count_after_close(h);
    atomic_store(&h->shutdown_rank, atomic_fetch_add(&h->rank, 1));
    atomic_store(&h->shutdown_result, result);
    atomic_fetch_add(&h->shutdown_completions, 1);
}

static void never_completes(piocp_request *req, ssize_t result)
{
    (void)req;
    (void)result;
    CHECK(!"a post that returned an error completed");
}

static void recv_done(piocp_request *req, ssize_t result)
{
    half_conn *h = req->user;
    count_after_close(h);
    atomic_fetch_add(&h->recv_completions, 1);
    if (result <= 0) {
        piocp_close(req->conn); /* the peer closed its side too */
        return;
    }
    int have = atomic_load(&h->received_len);
    memcpy(h->received + have, h->buf, (size_t)result);
    atomic_store(&h->received_len, have + (int)result);
    /* our side is shut: more sending is refused at once, and never completes */
    h->late_req.complete = never_completes;
    atomic_store(&h->late_send_rc, piocp_send(req->conn, &h->late_req, "x", 1));
    atomic_store(&h->late_shutdown_rc, piocp_shutdown(req->conn, &h->late_req));
    CHECK(piocp_recv(req->conn, &h->recv_req, h->buf, sizeof h->buf) == 0);
}

static void on_closed(piocp_conn *conn, int error)
{
    half_conn *h = piocp_conn_user(conn);
    atomic_store(&h->closed_error, error);
    atomic_fetch_add(&h->closed, 1);
}

static void on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    half_conn *h = user;
    h->send_req = (piocp_request){.complete = send_done, .user = h};
    h->shutdown_req = (piocp_request){.complete = shutdown_done, .user = h};
    h->recv_req = (piocp_request){.complete = recv_done, .user = h};
    piocp_conn_set_callbacks(conn, on_closed, h);
    CHECK(piocp_send(conn, &h->send_req, payload, sizeof payload) == 0);
    CHECK(piocp_shutdown(conn, &h->shutdown_req) == 0);
    if (h->close_at_once) {
        CHECK(piocp_close(conn) == 0);
        return;
    }
    CHECK(piocp_recv(conn, &h->recv_req, h->buf, sizeof h->buf) == 0);
}

static const piocp_listener_callbacks callbacks = {.on_connection = on_connection};

static void fill_payload(void)
{
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (char)(i * 13 + 5);
}

/* Reads to the server's FIN; returns the byte count. */
static size_t read_to_eof(int fd)
{
    static char in[65536];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(fd, in, sizeof in);
        CHECK(n >= 0);
        if (n == 0)
            return got;
        CHECK(got + (size_t)n <= PAYLOAD);
        CHECK(memcmp(in, payload + got, (size_t)n) == 0);
        got += (size_t)n;
    }
}

static void check_send_then_fin(half_conn *h)
{
    CHECK(atomic_load(&h->send_completions) == 1);
    CHECK(atomic_load(&h->shutdown_completions) == 1);
    CHECK(atomic_load(&h->send_result) == PAYLOAD);
    CHECK(atomic_load(&h->shutdown_result) == 0);
    CHECK(atomic_load(&h->send_rank) < atomic_load(&h->shutdown_rank));
}

/* The server sends 1 MiB and half-closes; the client reads it all and the
 * FIN, then answers on the still-open other direction and closes. */
static void test_half_close(void)
{
    int fds = count_fds();
    fill_payload();
    piocp_engine *e = new_engine(backend, 2);
    int port = engine_listen_loopback(e, &callbacks, &server);
    CHECK(piocp_engine_start(e) == 0);
    int fd = connect_loopback(port);
    CHECK(read_to_eof(fd) == PAYLOAD);
    CHECK(write_all(fd, "bye", 3) == 0);
    shutdown(fd, SHUT_WR);
    wait_until(&server.closed, 1, 5000);
    CHECK(atomic_load(&server.closed) == 1);
    CHECK(atomic_load(&server.closed_error) == 0);
    check_send_then_fin(&server);
    CHECK(atomic_load(&server.received_len) == 3 && memcmp(server.received, "bye", 3) == 0);
    CHECK(atomic_load(&server.late_send_rc) == -EPIPE);
    CHECK(atomic_load(&server.late_shutdown_rc) == -EPIPE);
    CHECK(atomic_load(&server.recv_completions) == 2); /* "bye", then the EOF */
    CHECK(atomic_load(&server.completions_after_close) == 0);
    close(fd);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    CHECK(atomic_load(&server.closed) == 1);
    CHECK(count_fds() == fds);
}

/* Send, shutdown and close posted back to back: the close waits for both,
 * and its own FIN (lingering close) does not disturb the first. */
static void test_shutdown_then_close(void)
{
    int fds = count_fds();
    server.close_at_once = true;
    fill_payload();
    piocp_engine *e = new_engine(backend, 2);
    int port = engine_listen_loopback(e, &callbacks, &server);
    CHECK(piocp_engine_start(e) == 0);
    int fd = connect_loopback(port);
    CHECK(read_to_eof(fd) == PAYLOAD);
    close(fd);
    wait_until(&server.closed, 1, 5000);
    CHECK(atomic_load(&server.closed) == 1);
    CHECK(atomic_load(&server.closed_error) == 0);
    check_send_then_fin(&server);
    CHECK(atomic_load(&server.completions_after_close) == 0);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    CHECK(count_fds() == fds);
}

static const test_case cases[] = {
    {"half_close", test_half_close},
    {"shutdown_then_close", test_shutdown_then_close},
    {NULL, NULL},
};

int main(int argc, char **argv) { return run_backend_test_case(cases, argc, argv, &backend); }
