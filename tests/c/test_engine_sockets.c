/*
 * test_engine_sockets.c - the engine with real TCP clients on 127.0.0.1,
 * written portably (test_net.h), so that it also runs under Wine on the
 * IOCP backend: echo (WSARecv/WSASend, AcceptEx with several accepts
 * outstanding), many clients at once, a stop cancelling pending recvs
 * exactly once (CancelIoEx, the socket closed after the last completion),
 * half-close (a shutdown after the sends, then reading on).
 * `test_engine_sockets NAME BACKEND`; `test_engine_sockets list`.
 */
#include "pyiocp.h"
#include "errors.h"
#include "platform/threads.h"
#include "test_backend_arg.h"
#include "test_echo.h"
#include "test_net.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static piocp_engine *start_engine(int threads) { return engine_on_backend(threads, NULL); }

static void run_echo(int threads, int clients, int messages)
{
    piocp_engine *e = start_engine(threads);
    int port = engine_listen_loopback(e, &echo_callbacks, NULL);
    CHECK(piocp_engine_start(e) == 0);
    piocp_thread *t = calloc((size_t)clients, sizeof *t);
    net_echo_client args = {.port = port, .messages = messages, .size = 777};
    for (int i = 0; i < clients; i++)
        CHECK(piocp_thread_start(&t[i], net_echo_client_run, &args) == 0);
    for (int i = 0; i < clients; i++)
        piocp_thread_join(&t[i]);
    free(t);
    portable_wait_until(&conns_closed, clients, 5000);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    /* IOCP with an IFS provider (Wine's, Windows' own): most sends and some
     * recvs finish as posted and are handled without a packet; elsewhere
     * there is no such thing */
    piocp_engine_stats stats;
    piocp_engine_get_stats(e, &stats);
    if (strcmp(piocp_engine_backend(e), "iocp") == 0)
        CHECK(stats.completed_inline > 0);
    else
        CHECK(stats.completed_inline == 0);
    piocp_engine_free(e);
    CHECK(atomic_load(&conns_made) == clients);
    CHECK(atomic_load(&conns_closed) == clients);
    CHECK(atomic_load(&closed_twice) == 0);
    CHECK(atomic_load(&recv_done) == clients * (messages + 1)); /* + EOF */
    CHECK(atomic_load(&send_done) == clients * messages);
}

static void test_echo(void) { run_echo(4, 8, 200); }

/* More clients at once than accepts are kept outstanding. */
static void test_many_clients(void) { run_echo(3, 50, 20); }

/* Stop with idle connections: their recvs are cancelled exactly once, and
 * the clients see the connection end. */
static void test_stop_cancels_recv(void)
{
    piocp_engine *e = start_engine(2);
    int port = engine_listen_loopback(e, &echo_callbacks, NULL);
    CHECK(piocp_engine_start(e) == 0);
    piocp_socket clients[5];
    for (int i = 0; i < 5; i++)
        clients[i] = net_connect_loopback(port);
    portable_wait_until(&conns_made, 5, 5000);
    /* answered once each, so that a stop does not wait for a first request */
    for (int i = 0; i < 5; i++) {
        char c = 'x';
        CHECK(net_send_all(clients[i], &c, 1) == 0);
        CHECK(net_recv_exact(clients[i], &c, 1) == 0 && c == 'x');
    }
    /* The client may see its echo before the server's send completion has
     * run and posted the next recv (IOCP: the completion goes through the
     * port first): wait for those recvs, which the stop must cancel. */
    portable_wait_until(&recv_posted, 10, 5000);
    CHECK(piocp_engine_stop(e, 2000) == 0);
    CHECK(atomic_load(&conns_closed) == 5);
    CHECK(atomic_load(&cancelled) == 5);
    CHECK(atomic_load(&recv_done) == 10);
    for (int i = 0; i < 5; i++) {
        char c;
        CHECK(net_recv_some(clients[i], &c, 1) <= 0); /* the server closed */
        net_close(clients[i]);
    }
    piocp_engine_free(e);
}

/* ------------------------------------------------------- half-close -- */

/* The server answers, shuts its side down (a queued shutdown after the
 * send), and reads on: the client sees the answer then EOF, and what it
 * sends afterwards still arrives. */
static atomic_int half_shut_result = 1, half_second_recv = -1000, half_closed;

static void half_second_done(piocp_request *req, ssize_t result)
{
    atomic_store(&half_second_recv, (int)result);
    piocp_close(req->conn);
}

static void half_shut_done(piocp_request *req, ssize_t result)
{
    echo_conn *ec = req->user;
    atomic_store(&half_shut_result, (int)result);
    ec->recv_req.complete = half_second_done;
    CHECK(piocp_recv(req->conn, &ec->recv_req, ec->buf, sizeof ec->buf) == 0);
}

static void half_send_done(piocp_request *req, ssize_t result) { CHECK(result == 5); (void)req; }

static void half_first_done(piocp_request *req, ssize_t result)
{
    echo_conn *ec = req->user;
    CHECK(result == 5);
    ec->send_req.complete = half_send_done;
    ec->shut_req.complete = half_shut_done;
    ec->shut_req.user = ec;
    CHECK(piocp_send(req->conn, &ec->send_req, "hello", 5) == 0);
    CHECK(piocp_shutdown(req->conn, &ec->shut_req) == 0);
    /* its own request: piocp_send fills in the request before refusing */
    static piocp_request late = {.complete = half_send_done};
    CHECK(piocp_send(req->conn, &late, "late", 4) == -PIOCP_EPIPE);
}

static void half_on_closed(piocp_conn *conn, int error)
{
    CHECK(error == 0);
    free(piocp_conn_user(conn));
    atomic_fetch_add(&half_closed, 1);
}

static void half_on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    (void)user;
    echo_conn *ec = calloc(1, sizeof *ec);
    ec->recv_req.complete = half_first_done;
    ec->recv_req.user = ec;
    piocp_conn_set_callbacks(conn, half_on_closed, ec);
    CHECK(piocp_recv(conn, &ec->recv_req, ec->buf, sizeof ec->buf) == 0);
}

static void test_half_close(void)
{
    static const piocp_listener_callbacks callbacks = {.on_connection = half_on_connection};
    piocp_engine *e = start_engine(2);
    int port = engine_listen_loopback(e, &callbacks, NULL);
    CHECK(piocp_engine_start(e) == 0);
    piocp_socket fd = net_connect_loopback(port);
    CHECK(net_send_all(fd, "first", 5) == 0);
    char in[16];
    CHECK(net_recv_exact(fd, in, 5) == 0 && memcmp(in, "hello", 5) == 0);
    CHECK(net_recv_some(fd, in, sizeof in) == 0); /* the server's FIN */
    CHECK(net_send_all(fd, "after", 5) == 0);     /* our side is still open */
    long long deadline = portable_now_ms() + 5000;
    while (atomic_load(&half_second_recv) == -1000 && portable_now_ms() < deadline)
        portable_sleep_ms(1);
    CHECK(atomic_load(&half_shut_result) == 0);
    CHECK(atomic_load(&half_second_recv) == 5);
    net_close(fd); /* ends the server's lingering close at once */
    portable_wait_until(&half_closed, 1, 5000);
    CHECK(atomic_load(&half_closed) == 1);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
}

static const test_case cases[] = {
    {"echo", test_echo},
    {"many_clients", test_many_clients},
    {"stop_cancels_recv", test_stop_cancels_recv},
    {"half_close", test_half_close},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    net_init();
    return run_on_backend(argc, argv, cases);
}
