/*
 * test_engine_outbound.c - connections the engine did not accept, written
 * portably (test_net.h) so that they also run under Wine on the IOCP
 * backend (ConnectEx, an adopted socket on the port): an outbound connect
 * to a listener of the same engine with an echo through it, a refused
 * connect, a connect timing out, a stop while connects are pending (each
 * `done` runs once, with an error), an adopted socket echoing, and on IOCP
 * a socket already on another completion port refused at adoption.
 * `test_engine_outbound NAME BACKEND`; `test_engine_outbound list`.
 */
#include "pyiocp.h"
#include "errors.h"
#include "test_backend_arg.h"
#include "test_echo.h"
#include "test_net.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------- helpers -- */

static piocp_engine *new_engine(int threads) { return engine_on_backend(threads, NULL); }

static struct sockaddr_in loopback(int port)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

static int local_port(piocp_socket fd)
{
    struct sockaddr_in addr;
    socklen_t len = sizeof addr;
    CHECK(getsockname(fd, (struct sockaddr *)&addr, &len) == 0);
    return ntohs(addr.sin_port);
}

/* A plain listening socket of the test's own on 127.0.0.1 (not the
 * engine's); `backlog` 0 and nobody accepting: later connects hang. */
static piocp_socket plain_listener(int backlog, int *port)
{
    piocp_socket fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd != PIOCP_INVALID_SOCKET);
    struct sockaddr_in addr = loopback(0);
    CHECK(bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK(listen(fd, backlog) == 0);
    *port = local_port(fd);
    return fd;
}

/* ------------------------------------------------- the connect side -- */

/* What one connect's `done` saw. */
typedef struct outcome {
    atomic_int calls, error;
    piocp_request send_req, recv_req;
    char in[16];
    atomic_int echoed, closed;
} outcome;

static void client_recv_done(piocp_request *req, ssize_t result)
{
    outcome *o = req->user;
    if (result == 5 && memcmp(o->in, "hello", 5) == 0)
        atomic_store(&o->echoed, 1);
    piocp_close(req->conn);
}

static void client_send_done(piocp_request *req, ssize_t result) { CHECK(result == 5); (void)req; }

static void client_closed(piocp_conn *conn, int error)
{
    (void)error;
    outcome *o = piocp_conn_user(conn);
    atomic_fetch_add(&o->closed, 1);
}

/* Records the outcome; a connection says hello and waits for its echo. */
static void connect_done(piocp_conn *conn, int error, void *user)
{
    outcome *o = user;
    atomic_store(&o->error, error);
    CHECK((error == 0) == (conn != NULL));
    if (conn) {
        o->send_req.complete = client_send_done;
        o->send_req.user = o;
        o->recv_req.complete = client_recv_done;
        o->recv_req.user = o;
        piocp_conn_set_callbacks(conn, client_closed, o);
        CHECK(piocp_send(conn, &o->send_req, "hello", 5) == 0);
        CHECK(piocp_recv(conn, &o->recv_req, o->in, sizeof o->in) == 0);
    }
    atomic_fetch_add(&o->calls, 1); /* last: the test reads the rest after it */
}

/* Connects the engine to a listener of its own and echoes through it. */
static void test_connect_echo(void)
{
    piocp_engine *e = new_engine(2);
    struct sockaddr_in addr = loopback(0);
    piocp_listener *l = NULL;
    CHECK(piocp_listen(e, (struct sockaddr *)&addr, sizeof addr, 16, &echo_callbacks, NULL, &l) == 0);
    struct sockaddr_storage bound;
    socklen_t len;
    CHECK(piocp_listener_address(l, &bound, &len) == 0);
    CHECK(piocp_engine_start(e) == 0);
    static outcome o;
    CHECK(piocp_connect(e, (struct sockaddr *)&bound, len, 5000, connect_done, &o) == 0);
    portable_wait_until(&o.closed, 1, 5000);
    portable_wait_until(&conns_closed, 1, 5000);
    CHECK(atomic_load(&o.calls) == 1);
    CHECK(atomic_load(&o.error) == 0);
    CHECK(atomic_load(&o.echoed) == 1);
    CHECK(atomic_load(&o.closed) == 1);
    CHECK(atomic_load(&conns_closed) == 1); /* the listener's side saw the EOF */
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    CHECK(atomic_load(&o.calls) == 1);
    CHECK(atomic_load(&closed_twice) == 0);
}

/* A port nobody listens on (bound, then closed): -ECONNREFUSED, once. */
static void test_connect_refused(void)
{
    piocp_socket fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd != PIOCP_INVALID_SOCKET);
    struct sockaddr_in addr = loopback(0);
    CHECK(bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    addr = loopback(local_port(fd));
    net_close(fd);
    piocp_engine *e = new_engine(2);
    CHECK(piocp_engine_start(e) == 0);
    static outcome o;
    CHECK(piocp_connect(e, (struct sockaddr *)&addr, sizeof addr, 10000, connect_done, &o) == 0);
    portable_wait_until(&o.calls, 1, 8000);
    portable_sleep_ms(50); /* a second call would come now */
    CHECK(atomic_load(&o.calls) == 1);
    CHECK(atomic_load(&o.error) == -PIOCP_ECONNREFUSED);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    CHECK(atomic_load(&o.calls) == 1);
}

/* Connects the kernel holds (a listener with a full backlog drops their
 * SYNs): with a timeout they end with -ETIMEDOUT; with none, the stop ends
 * them with -ECANCELED.  A few may get through the backlog: those are
 * ordinary connections.  Every `done` runs once. */
#define HELD 6

static void run_held_connects(int timeout_ms, int want_error)
{
    int port;
    piocp_socket lfd = plain_listener(0, &port);
    struct sockaddr_in addr = loopback(port);
    piocp_engine *e = new_engine(2);
    CHECK(piocp_engine_start(e) == 0);
    static outcome o[HELD];
    memset(o, 0, sizeof o);
    for (int i = 0; i < HELD; i++)
        CHECK(piocp_connect(e, (struct sockaddr *)&addr, sizeof addr, timeout_ms, connect_done,
                            &o[i]) == 0);
    if (timeout_ms) {
        for (int i = 0; i < HELD; i++)
            portable_wait_until(&o[i].calls, 1, 5000);
    } else {
        portable_sleep_ms(300); /* the ones that get through are through */
    }
    CHECK(piocp_engine_stop(e, 2000) == 0);
    int failed = 0;
    for (int i = 0; i < HELD; i++) {
        CHECK(atomic_load(&o[i].calls) == 1);
        int error = atomic_load(&o[i].error);
        CHECK(error == 0 || error == want_error);
        failed += error == want_error;
    }
    CHECK(failed >= HELD - 2);
    piocp_engine_free(e);
    for (int i = 0; i < HELD; i++)
        CHECK(atomic_load(&o[i].calls) == 1);
    net_close(lfd);
}

static void test_connect_timeout(void) { run_held_connects(300, -PIOCP_ETIMEDOUT); }

static void test_connect_stop(void) { run_held_connects(0, -PIOCP_ECANCELED); }

/* ------------------------------------------------------------ adopt -- */

/* A connected pair of the test's own: `*client`, and the accepted side. */
static piocp_socket connected_pair(piocp_socket *client)
{
    int port;
    piocp_socket lfd = plain_listener(1, &port);
    *client = net_connect_loopback(port);
    piocp_socket server = accept(lfd, NULL, NULL);
    CHECK(server != PIOCP_INVALID_SOCKET);
    net_close(lfd);
    return server;
}

/* The accepted side handed to the engine echoes what the client sends.  On
 * IOCP, borrowing it first is refused (its owner's port would get the
 * completions) and leaves it as it was, adoptable. */
static void test_adopt_echo(void)
{
    piocp_engine *e = new_engine(2);
    CHECK(piocp_engine_start(e) == 0);
    piocp_socket client;
    piocp_socket server = connected_pair(&client);
    piocp_conn *conn = NULL;
    if (strcmp(backend, "iocp") == 0)
        CHECK(piocp_borrow(e, server, &conn) == -PIOCP_EOPNOTSUPP);
    CHECK(piocp_adopt(e, server, &conn) == 0);
    start_echo(conn);
    for (int i = 0; i < 20; i++) {
        char out[300], in[300];
        for (size_t j = 0; j < sizeof out; j++)
            out[j] = (char)(i * 7 + j);
        CHECK(net_send_all(client, out, sizeof out) == 0);
        CHECK(net_recv_exact(client, in, sizeof in) == 0);
        CHECK(memcmp(in, out, sizeof in) == 0);
    }
    net_close(client);
    portable_wait_until(&conns_closed, 1, 5000);
    CHECK(atomic_load(&conns_closed) == 1);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    CHECK(atomic_load(&closed_twice) == 0);
}

/* A socket already on another completion port cannot join the engine's (a
 * handle belongs to one port for life): -EINVAL, and it stays the
 * caller's.  IOCP only. */
static void test_adopt_foreign_port(void)
{
#ifdef _WIN32
    piocp_engine *e = new_engine(1);
    CHECK(piocp_engine_start(e) == 0);
    piocp_socket client;
    piocp_socket server = connected_pair(&client);
    HANDLE other = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
    CHECK(other != NULL);
    CHECK(CreateIoCompletionPort((HANDLE)server, other, 1, 0) == other);
    piocp_conn *conn = NULL;
    CHECK(piocp_adopt(e, server, &conn) == -PIOCP_EINVAL);
    CHECK(piocp_engine_connections(e) == 0);
    CHECK(net_send_all(server, "still mine", 10) == 0); /* not closed by the refusal */
    char in[10];
    CHECK(net_recv_exact(client, in, sizeof in) == 0 && memcmp(in, "still mine", 10) == 0);
    net_close(server);
    net_close(client);
    CloseHandle(other);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
#endif
}

static const test_case cases[] = {
    {"connect_echo", test_connect_echo},
    {"connect_refused", test_connect_refused},
    {"connect_timeout", test_connect_timeout},
    {"connect_stop", test_connect_stop},
    {"adopt_echo", test_adopt_echo},
    {"adopt_foreign_port", test_adopt_foreign_port},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    net_init();
#ifndef _WIN32
    if (argc > 1 && strcmp(argv[1], "adopt_foreign_port") == 0)
        return 77; /* completion ports only */
#endif
    return run_on_backend(argc, argv, cases);
}
