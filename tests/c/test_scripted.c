/*
 * test_scripted.c - the core's completion contract on the scripted backend
 * (engine/backends/scripted.c), where the test plays the kernel: partial
 * sends, a full socket, a reset or an EOF happen at exact points, so every
 * case is deterministic.  It also proves that the backend hooks suffice: the
 * scripted backend is one file and one line in the backend table.
 *
 * Checked in every case: each request completes exactly once, in posting
 * order for sends; on_closed runs once, after every completion; no
 * descriptor leaks.  `test_scripted NAME` runs one case; `list` names them.
 */
#include "pyiocp.h"
#include "backends/scripted.h"
#include "test_util.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

enum { MAX_REQUESTS = 8 };

/* One connection's record: what completed, in which order, how. */
typedef struct recorder {
    piocp_request reqs[MAX_REQUESTS];
    atomic_int completions[MAX_REQUESTS];
    ssize_t results[MAX_REQUESTS];
    atomic_int order[MAX_REQUESTS]; /* completion rank of each request */
    atomic_int completed;
    atomic_int closed, closed_error;
    atomic_int completions_after_close;
    char recv_buf[4096];
    piocp_conn *_Atomic conn;
    void (*on_accept)(struct recorder *r, piocp_conn *conn);
} recorder;

static void record(piocp_request *req, ssize_t result)
{
    recorder *r = req->user;
    int i = (int)(req - r->reqs);
    r->results[i] = result;
    atomic_store(&r->order[i], atomic_fetch_add(&r->completed, 1));
    atomic_fetch_add(&r->completions[i], 1);
    if (atomic_load(&r->closed))
        atomic_fetch_add(&r->completions_after_close, 1);
}

static void on_closed(piocp_conn *conn, int error)
{
    recorder *r = piocp_conn_user(conn);
    atomic_store(&r->closed_error, error);
    atomic_fetch_add(&r->closed, 1);
}

static void on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    recorder *r = user;
    for (int i = 0; i < MAX_REQUESTS; i++) {
        r->reqs[i].complete = record;
        r->reqs[i].user = r;
    }
    piocp_conn_retain(conn); /* the test uses it from its own thread */
    piocp_conn_set_callbacks(conn, on_closed, r);
    r->on_accept(r, conn);
    atomic_store(&r->conn, conn);
}

static const piocp_listener_callbacks callbacks = {.on_connection = on_connection};

typedef struct fixture {
    piocp_engine *engine;
    piocp_listener *listener;
    int fds;
} fixture;

static piocp_conn *open_one(fixture *f, recorder *r)
{
    f->fds = count_fds();
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.threads = 2;
    cfg.backend = "scripted";
    cfg.max_connections = 4;
    CHECK(piocp_engine_new(&f->engine, &cfg) == 0);
    struct sockaddr_in addr = {.sin_family = AF_INET};
    CHECK(piocp_listen(f->engine, (struct sockaddr *)&addr, sizeof addr, 8, &callbacks, r,
                       &f->listener) == 0);
    CHECK(piocp_engine_start(f->engine) == 0);
    CHECK(piocp_scripted_connect(f->listener) == 0);
    long long deadline = now_ms() + 5000;
    while (!atomic_load(&r->conn) && now_ms() < deadline)
        sched_yield();
    CHECK(atomic_load(&r->conn) != NULL);
    return r->conn;
}

static void wait_for(atomic_int *counter, int want)
{
    wait_until(counter, want, 5000);
    CHECK(atomic_load(counter) >= want);
}

/* Stops, checks the contract on `r` (each of the first `posted` requests
 * completed once, on_closed once and last), frees, counts descriptors. */
static void finish(fixture *f, recorder *r, int posted)
{
    CHECK(piocp_engine_stop(f->engine, 300) == 0);
    CHECK(atomic_load(&r->closed) == 1);
    CHECK(atomic_load(&r->completions_after_close) == 0);
    for (int i = 0; i < posted; i++)
        CHECK(atomic_load(&r->completions[i]) == 1);
    for (int i = posted; i < MAX_REQUESTS; i++)
        CHECK(atomic_load(&r->completions[i]) == 0);
    piocp_conn_release(r->conn);
    piocp_engine_free(f->engine);
    CHECK(count_fds() == f->fds);
}

/* Collects `want` output bytes, draining as the connection sends. */
static void collect(piocp_conn *conn, char *out, size_t want)
{
    size_t got = 0;
    long long deadline = now_ms() + 5000;
    while (got < want && now_ms() < deadline) {
        size_t n = piocp_scripted_output(conn, out + got, want - got);
        if (n == 0)
            sched_yield();
        got += n;
    }
    CHECK(got == want);
}

/* ---------------------------------------------------------------- echo -- */

static void post_recv(recorder *r, piocp_conn *conn)
{
    CHECK(piocp_recv(conn, &r->reqs[0], r->recv_buf, sizeof r->recv_buf) == 0);
}

static void test_recv_and_eof(void)
{
    fixture f;
    recorder r = {.on_accept = post_recv};
    piocp_conn *conn = open_one(&f, &r);
    CHECK(piocp_scripted_input(conn, "hello", 5) == 5);
    wait_for(&r.completions[0], 1);
    CHECK(r.results[0] == 5 && memcmp(r.recv_buf, "hello", 5) == 0);
    /* a second recv sees the peer's EOF: 0, then the handler closes */
    CHECK(piocp_recv(conn, &r.reqs[1], r.recv_buf, sizeof r.recv_buf) == 0);
    CHECK(piocp_recv(conn, &r.reqs[2], r.recv_buf, sizeof r.recv_buf) == -EBUSY);
    piocp_scripted_input_eof(conn);
    wait_for(&r.completions[1], 1);
    CHECK(r.results[1] == 0);
    CHECK(piocp_close(conn) == 0);
    wait_for(&r.closed, 1);
    CHECK(r.closed_error == 0);
    CHECK(piocp_send(conn, &r.reqs[3], "x", 1) == -ENOTCONN);
    finish(&f, &r, 2);
}

/* ---------------------------------------------------- sends in order -- */

static char big_a[10000], big_b[70000];
static char file_path[] = "/tmp/pyiocp-scripted-XXXXXX";
static int file_fd = -1;
static char file_bytes[100000];

static void make_file(void)
{
    for (size_t i = 0; i < sizeof file_bytes; i++)
        file_bytes[i] = (char)(i * 31 + 7);
    file_fd = mkstemp(file_path);
    CHECK(file_fd >= 0);
    unlink(file_path);
    CHECK(write_all(file_fd, file_bytes, sizeof file_bytes) == 0);
}

static void post_sends(recorder *r, piocp_conn *conn)
{
    memset(big_a, 'a', sizeof big_a);
    memset(big_b, 'b', sizeof big_b);
    CHECK(piocp_send(conn, &r->reqs[0], big_a, sizeof big_a) == 0);
    CHECK(piocp_transmit(conn, &r->reqs[1], "HEAD", 4, file_fd, 1000, 50000) == 0);
    CHECK(piocp_send(conn, &r->reqs[2], big_b, sizeof big_b) == 0);
    CHECK(piocp_send(conn, &r->reqs[3], "", 0) == 0);
    CHECK(piocp_transmit(conn, &r->reqs[4], NULL, 0, file_fd, 99990, PIOCP_TRANSMIT_TO_EOF) == 0);
}

/* Sends and transmits leave whole and in order through a socket that takes
 * 777 bytes a step and is full until the test reads. */
static void test_sends_in_order(void)
{
    make_file();
    fixture f;
    recorder r = {.on_accept = post_sends};
    piocp_conn *conn = open_one(&f, &r);
    piocp_scripted_send_limit(conn, 777);
    size_t total = sizeof big_a + 4 + 50000 + sizeof big_b + 10;
    char *out = malloc(total);
    collect(conn, out, total);
    wait_for(&r.completed, 5);
    CHECK(memcmp(out, big_a, sizeof big_a) == 0);
    CHECK(memcmp(out + sizeof big_a, "HEAD", 4) == 0);
    CHECK(memcmp(out + sizeof big_a + 4, file_bytes + 1000, 50000) == 0);
    CHECK(memcmp(out + sizeof big_a + 50004, big_b, sizeof big_b) == 0);
    CHECK(memcmp(out + total - 10, file_bytes + 99990, 10) == 0);
    ssize_t expect[] = {sizeof big_a, 50004, sizeof big_b, 0, 10};
    for (int i = 0; i < 5; i++) {
        CHECK(r.results[i] == expect[i]);
        CHECK(atomic_load(&r.order[i]) == i);
    }
    CHECK(piocp_close(conn) == 0);
    wait_for(&r.closed, 1);
    CHECK(r.closed_error == 0);
    finish(&f, &r, 5);
    free(out);
    close(file_fd);
}

/* ---------------------------------------------------------- half-close -- */

static void post_send_and_shutdown(recorder *r, piocp_conn *conn)
{
    memset(big_b, 'b', sizeof big_b);
    post_recv(r, conn); /* reqs[0] */
    CHECK(piocp_send(conn, &r->reqs[1], big_b, sizeof big_b) == 0);
    CHECK(piocp_shutdown(conn, &r->reqs[2]) == 0);
}

/* The FIN waits for the send before it, held up by a full socket; reading
 * goes on after it; later sends are refused. */
static void test_shutdown_after_send(void)
{
    fixture f;
    recorder r = {.on_accept = post_send_and_shutdown};
    piocp_conn *conn = open_one(&f, &r);
    long long deadline = now_ms() + 5000;
    while (piocp_scripted_output_pending(conn) < PIOCP_SCRIPTED_BUFFER && now_ms() < deadline)
        sched_yield();
    CHECK(!piocp_scripted_output_shut(conn));
    CHECK(atomic_load(&r.completed) == 0);
    static char out[sizeof big_b];
    collect(conn, out, sizeof out);
    wait_for(&r.completions[2], 1);
    CHECK(piocp_scripted_output_shut(conn));
    CHECK(r.results[1] == (ssize_t)sizeof big_b && r.results[2] == 0);
    CHECK(atomic_load(&r.order[1]) == 0 && atomic_load(&r.order[2]) == 1);
    CHECK(piocp_send(conn, &r.reqs[3], "x", 1) == -EPIPE);
    CHECK(piocp_scripted_input(conn, "more", 4) == 4);
    wait_for(&r.completions[0], 1);
    CHECK(r.results[0] == 4 && memcmp(r.recv_buf, "more", 4) == 0);
    CHECK(piocp_close(conn) == 0);
    wait_for(&r.closed, 1);
    CHECK(r.closed_error == 0);
    finish(&f, &r, 3);
}

/* ------------------------------------------------------------ failures -- */

static void post_three_sends(recorder *r, piocp_conn *conn)
{
    memset(big_b, 'b', sizeof big_b);
    for (int i = 0; i < 3; i++)
        CHECK(piocp_send(conn, &r->reqs[i], big_b, sizeof big_b) == 0);
}

/* A send that fails breaks the byte stream: it and every later request
 * fail, in order, and the connection is reset with that error; the failed
 * request says how far it got. */
static void test_send_error_aborts(void)
{
    fixture f;
    recorder r = {.on_accept = post_three_sends};
    piocp_conn *conn = open_one(&f, &r);
    /* the first send fills the peer's buffer and waits there */
    long long deadline = now_ms() + 5000;
    while (piocp_scripted_output_pending(conn) < PIOCP_SCRIPTED_BUFFER && now_ms() < deadline)
        sched_yield();
    piocp_scripted_send_error(conn, -ECONNRESET);
    char out[PIOCP_SCRIPTED_BUFFER];
    collect(conn, out, sizeof out); /* room: the next step runs, and fails */
    wait_for(&r.closed, 1);
    CHECK(r.closed_error == -ECONNRESET);
    for (int i = 0; i < 3; i++) {
        CHECK(r.results[i] == -ECONNRESET);
        CHECK(atomic_load(&r.order[i]) == i);
    }
    CHECK(r.reqs[0].done == PIOCP_SCRIPTED_BUFFER);
    finish(&f, &r, 3);
}

static void test_recv_error(void)
{
    fixture f;
    recorder r = {.on_accept = post_recv};
    piocp_conn *conn = open_one(&f, &r);
    piocp_scripted_input_error(conn, -ECONNRESET);
    wait_for(&r.closed, 1);
    CHECK(r.results[0] == -ECONNRESET);
    CHECK(r.closed_error == -ECONNRESET);
    finish(&f, &r, 1);
}

static void post_short_transmit(recorder *r, piocp_conn *conn)
{
    /* 20 bytes asked, 10 in the file past the offset: -EIO, not a spin */
    CHECK(piocp_transmit(conn, &r->reqs[0], "H", 1, file_fd, 99990, 20) == 0);
}

static void test_transmit_short_file(void)
{
    make_file();
    fixture f;
    recorder r = {.on_accept = post_short_transmit};
    open_one(&f, &r);
    wait_for(&r.closed, 1);
    CHECK(r.results[0] == -EIO);
    CHECK(r.closed_error == -EIO);
    finish(&f, &r, 1);
    close(file_fd);
}

/* -------------------------------------------------------------- stop -- */

static void post_recv_and_big_send(recorder *r, piocp_conn *conn)
{
    post_recv(r, conn);
    CHECK(piocp_send(conn, &r->reqs[1], big_b, sizeof big_b) == 0);
}

/* Stop: the pending recv is cancelled at once; a send that cannot finish
 * (nobody reads) is aborted at the drain deadline; each completes once. */
static void test_stop_drains_then_aborts(void)
{
    fixture f;
    recorder r = {.on_accept = post_recv_and_big_send};
    open_one(&f, &r);
    long long t0 = now_ms();
    CHECK(piocp_engine_stop(f.engine, 300) == 0);
    CHECK(now_ms() - t0 >= 250);
    CHECK(r.results[0] == -ECANCELED);
    CHECK(r.results[1] == -ECANCELED);
    CHECK(atomic_load(&r.order[0]) == 0); /* the recv ended first, at once */
    finish(&f, &r, 2);
}

static const test_case cases[] = {
    {"recv_and_eof", test_recv_and_eof},
    {"sends_in_order", test_sends_in_order},
    {"send_error_aborts", test_send_error_aborts},
    {"shutdown_after_send", test_shutdown_after_send},
    {"recv_error", test_recv_error},
    {"transmit_short_file", test_transmit_short_file},
    {"stop_drains_then_aborts", test_stop_drains_then_aborts},
    {NULL, NULL},
};

int main(int argc, char **argv) { return run_test_case(cases, argc > 1 ? argv[1] : "list"); }
