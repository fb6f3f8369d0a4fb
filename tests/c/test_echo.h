/* test_echo.h - an echo server on the engine for the portable tests: each
 * connection sends back what it receives and closes at EOF or on an
 * error; counters say what happened (every closed callback once). */
#ifndef PYIOCP_TEST_ECHO_H
#define PYIOCP_TEST_ECHO_H

#include "errors.h"
#include "pyiocp.h"
#include "test_check.h"

#include <stdatomic.h>
#include <stdlib.h>

static atomic_int conns_made, conns_closed, recv_done, recv_posted, send_done, cancelled,
    closed_twice;

typedef struct echo_conn {
    piocp_request recv_req, send_req, shut_req;
    char buf[4096];
    atomic_int closed;
} echo_conn;

static void echo_recv_done(piocp_request *req, ssize_t result);

static void echo_send_done(piocp_request *req, ssize_t result)
{
    echo_conn *ec = req->user;
    atomic_fetch_add(&send_done, 1);
    if (result < 0)
        return;
    int rc = piocp_recv(req->conn, &ec->recv_req, ec->buf, sizeof ec->buf);
    CHECK(rc == 0 || rc == -PIOCP_ENOTCONN);
    if (rc == 0)
        atomic_fetch_add(&recv_posted, 1);
}

static void echo_recv_done(piocp_request *req, ssize_t result)
{
    echo_conn *ec = req->user;
    atomic_fetch_add(&recv_done, 1);
    if (result == -PIOCP_ECANCELED)
        atomic_fetch_add(&cancelled, 1);
    if (result <= 0) {
        piocp_close(req->conn);
        return;
    }
    int rc = piocp_send(req->conn, &ec->send_req, ec->buf, (size_t)result);
    CHECK(rc == 0 || rc == -PIOCP_ENOTCONN);
}

static void echo_closed(piocp_conn *conn, int error)
{
    (void)error;
    echo_conn *ec = piocp_conn_user(conn);
    if (atomic_fetch_add(&ec->closed, 1))
        atomic_fetch_add(&closed_twice, 1);
    free(ec);
    atomic_fetch_add(&conns_closed, 1);
}

/* Makes `conn` an echo: its callbacks and its first recv. */
static void start_echo(piocp_conn *conn)
{
    echo_conn *ec = calloc(1, sizeof *ec);
    CHECK(ec != NULL);
    ec->recv_req.complete = echo_recv_done;
    ec->recv_req.user = ec;
    ec->send_req.complete = echo_send_done;
    ec->send_req.user = ec;
    piocp_conn_set_callbacks(conn, echo_closed, ec);
    atomic_fetch_add(&conns_made, 1);
    int rc = piocp_recv(conn, &ec->recv_req, ec->buf, sizeof ec->buf);
    CHECK(rc == 0 || rc == -PIOCP_ENOTCONN);
    if (rc == 0)
        atomic_fetch_add(&recv_posted, 1);
}

static void echo_on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    (void)user;
    start_echo(conn);
}

static const piocp_listener_callbacks echo_callbacks = {.on_connection = echo_on_connection};

#endif
