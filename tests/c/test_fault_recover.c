/*
 * test_fault_recover.c - a small fault sweep that runs everywhere, IOCP
 * under Wine included (tests/c/fault_sweep.c, the full one, forks and is
 * POSIX-only): an echo through a C handler is recorded, then rerun with
 * the first pass of each point it reached failing (the point's first
 * error) or cut short.  After each run: every post completed once, every
 * connection closed once, the engine's allocations are all freed, and the
 * same engine echoes for a fresh client once the fault is disarmed (or
 * the start failed with the injected error).  In one process: a run that
 * hangs is named on stderr before it starts.
 * `test_fault_recover echo BACKEND`.
 */
#include "pyiocp.h"
#include "core/fault.h"
#include "errors.h"
#include "test_backend_arg.h"
#include "test_net.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static atomic_int posted, completed, opened, closed, early;

typedef struct echo_conn {
    piocp_conn *conn;
    piocp_request recv, send;
    char buf[256];
    atomic_int in_flight;
} echo_conn;

static void echo_post_recv(echo_conn *ec);

static void count_done(echo_conn *ec)
{
    atomic_fetch_add(&completed, 1);
    atomic_fetch_sub(&ec->in_flight, 1);
}

static int post(echo_conn *ec, int rc)
{
    if (rc == 0)
        atomic_fetch_add(&posted, 1);
    else
        atomic_fetch_sub(&ec->in_flight, 1);
    return rc;
}

static void sent(piocp_request *req, ssize_t result)
{
    echo_conn *ec = req->user;
    count_done(ec);
    if (result >= 0)
        echo_post_recv(ec);
}

static void received(piocp_request *req, ssize_t n)
{
    echo_conn *ec = req->user;
    count_done(ec);
    if (n == 0)
        piocp_close(ec->conn);
    if (n <= 0)
        return;
    ec->send.complete = sent;
    ec->send.user = ec;
    atomic_fetch_add(&ec->in_flight, 1);
    post(ec, piocp_send(ec->conn, &ec->send, ec->buf, (size_t)n));
}

static void echo_post_recv(echo_conn *ec)
{
    ec->recv.complete = received;
    ec->recv.user = ec;
    atomic_fetch_add(&ec->in_flight, 1);
    post(ec, piocp_recv(ec->conn, &ec->recv, ec->buf, sizeof ec->buf));
}

static void on_closed(piocp_conn *conn, int error)
{
    (void)error;
    echo_conn *ec = piocp_conn_user(conn);
    if (atomic_load(&ec->in_flight) != 0)
        atomic_fetch_add(&early, 1);
    atomic_fetch_add(&closed, 1);
    /* freed with the test's allocator, after its last callback */
    free(ec);
}

static void on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l, (void)user;
    echo_conn *ec = calloc(1, sizeof *ec);
    CHECK(ec != NULL);
    ec->conn = conn;
    atomic_fetch_add(&opened, 1);
    piocp_conn_set_callbacks(conn, on_closed, ec);
    echo_post_recv(ec);
}

static const piocp_listener_callbacks callbacks = {.on_connection = on_connection};

/* One client: "ping" echoed back.  true if it was. */
static bool client_echo(int port)
{
    piocp_socket fd = net_connect_loopback(port);
    char got[4];
    bool ok = net_send_all(fd, "ping", 4) == 0 && net_recv_exact(fd, got, 4) == 0 &&
              memcmp(got, "ping", 4) == 0;
    net_close(fd);
    return ok;
}

/* The listen address, or -errno (a fault at bind or listen). */
static int listen_port(piocp_engine *e)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    piocp_listener *l = NULL;
    int rc = piocp_listen(e, (struct sockaddr *)&addr, sizeof addr, 16, &callbacks, NULL, &l);
    if (rc < 0)
        return rc;
    struct sockaddr_storage bound;
    socklen_t len;
    CHECK(piocp_listener_address(l, &bound, &len) == 0);
    return ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static int failures;

static void expect(bool ok, const char *what, const char *point, int error)
{
    if (!ok) {
        fprintf(stderr, "FAIL %s %s 1 %d: %s\n", backend, point, error, what);
        failures++;
    }
}

/* One run with `fault` armed (NULL: recording).  Startup may fail with
 * the injected error only. */
static void run(const piocp_fault_spec *fault)
{
    const char *point = fault ? fault->point : "(recording)";
    int error = fault ? fault->error : 0;
    fprintf(stderr, "run %s %s %s\n", backend, point, error ? "error" : fault ? "short" : "");
    long allocs = piocp_fault_allocs();
    atomic_store(&posted, 0);
    atomic_store(&completed, 0);
    atomic_store(&opened, 0);
    atomic_store(&closed, 0);
    atomic_store(&early, 0);
    if (fault)
        piocp_fault_arm_spec(fault);
    else
        piocp_fault_record(1);
    int want = fault && strcmp(point, "malloc") == 0 ? PIOCP_ENOMEM : error;
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.linger_ms = 200;
    piocp_engine *e = NULL;
    cfg.threads = 2;
    cfg.backend = backend;
    int rc = piocp_engine_new(&e, &cfg);
    int port = rc < 0 ? rc : listen_port(e);
    rc = port < 0 ? port : piocp_engine_start(e);
    if (rc < 0) {
        expect(piocp_fault_fired() > 0 && rc == -want, "startup failed otherwise", point, error);
    } else {
        client_echo(port); /* may fail: the fault */
        bool fired = piocp_fault_fired() > 0;
        piocp_fault_disarm();
        expect(client_echo(port) || !fired, "no echo once the fault was over", point, error);
    }
    piocp_fault_disarm();
    piocp_fault_record(0);
    if (e) {
        CHECK(piocp_engine_stop(e, 500) == 0);
        piocp_engine_free(e);
    }
    expect(atomic_load(&posted) == atomic_load(&completed), "a post did not complete once", point,
           error);
    expect(atomic_load(&opened) == atomic_load(&closed) && atomic_load(&early) == 0,
           "on_closed not once and last", point, error);
    expect(piocp_fault_allocs() == allocs, "engine allocations leaked", point, error);
}

static void test_echo(void)
{
    net_init();
    run(NULL);
    piocp_fault_site sites[64];
    size_t n = piocp_fault_recorded(sites, 64);
    CHECK(n <= 64);
    for (size_t i = 0; i < n; i++) {
        int errors[8];
        int count = piocp_fault_point_errors(sites[i].point, errors, 8);
        expect(count >= 0, "point not in engine/core/fault_points.c", sites[i].point, 0);
        piocp_fault_spec spec = {.point = sites[i].point, .nth = 1};
        if (count > 0) {
            spec.error = errors[0];
            run(&spec);
        }
        if (sites[i].can_short) {
            spec.error = 0;
            run(&spec);
        }
    }
    CHECK(failures == 0);
}

static const test_case cases[] = {
    {"echo", test_echo},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return run_on_backend(argc, argv, cases);
}
