/*
 * test_engine.c - the engine through its public API, with real TCP clients
 * on 127.0.0.1.  `test_engine NAME [BACKEND]` runs one case (ctest runs each
 * in its own process under a timeout); `test_engine list` names them.
 * Every case checks that each request completed exactly once, that
 * on_closed ran once per connection and that no descriptor leaked.
 */
#include "pyiocp.h"
#include "core/fault.h"
#include "test_util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

static const char *backend = "epoll";

/* ---------------------------------------------------- echo handler -- */

typedef struct echo_conn {
    piocp_request recv_req;
    piocp_request send_req;
    char buf[4096];
    atomic_int recv_completions, send_completions;
} echo_conn;

static atomic_int conns_made, conns_closed, recv_done, send_done, cancelled;

static void echo_recv_done(piocp_request *req, ssize_t result);

static void echo_send_done(piocp_request *req, ssize_t result)
{
    echo_conn *ec = req->user;
    atomic_fetch_add(&send_done, 1);
    CHECK(atomic_fetch_add(&ec->send_completions, 1) == atomic_load(&ec->recv_completions) - 1);
    if (result < 0)
        return;
    int rc = piocp_recv(req->conn, &ec->recv_req, ec->buf, sizeof ec->buf);
    if (rc < 0)
        CHECK(rc == -ENOTCONN);
}

static void echo_recv_done(piocp_request *req, ssize_t result)
{
    echo_conn *ec = req->user;
    atomic_fetch_add(&recv_done, 1);
    atomic_fetch_add(&ec->recv_completions, 1);
    if (result == -ECANCELED)
        atomic_fetch_add(&cancelled, 1);
    if (result <= 0) {
        atomic_fetch_add(&ec->send_completions, 1); /* keeps the pairing check simple */
        piocp_close(req->conn);
        return;
    }
    int rc = piocp_send(req->conn, &ec->send_req, ec->buf, (size_t)result);
    if (rc < 0) {
        CHECK(rc == -ENOTCONN); /* the engine is stopping: it closes */
        atomic_fetch_add(&ec->send_completions, 1); /* keeps the pairing check simple */
    }
}

static void echo_closed(piocp_conn *conn, int error)
{
    (void)error;
    echo_conn *ec = piocp_conn_user(conn);
    CHECK(atomic_load(&ec->recv_completions) >= 1);
    free(ec);
    atomic_fetch_add(&conns_closed, 1);
}

static void echo_on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    (void)user;
    echo_conn *ec = calloc(1, sizeof *ec);
    CHECK(ec != NULL);
    ec->recv_req.complete = echo_recv_done;
    ec->recv_req.user = ec;
    ec->send_req.complete = echo_send_done;
    ec->send_req.user = ec;
    piocp_conn_set_callbacks(conn, echo_closed, ec);
    atomic_fetch_add(&conns_made, 1);
    int rc = piocp_recv(conn, &ec->recv_req, ec->buf, sizeof ec->buf);
    if (rc < 0) {
        CHECK(rc == -ENOTCONN); /* a stop ran out of drain time and aborts it */
        atomic_fetch_add(&ec->recv_completions, 1); /* for the check in echo_closed */
    }
}

static const piocp_listener_callbacks echo_callbacks = {.on_connection = echo_on_connection};

static piocp_engine *start_engine(int threads, int max_connections, int idle_ms)
{
    piocp_config cfg = {.threads = threads, .backend = backend,
                        .max_connections = max_connections, .idle_timeout_ms = idle_ms};
    piocp_engine *e = NULL;
    CHECK(piocp_engine_new(&e, &cfg) == 0);
    return e;
}

static int listen_on(piocp_engine *e, const piocp_listener_callbacks *cb, void *user)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    piocp_listener *l = NULL;
    CHECK(piocp_listen(e, (struct sockaddr *)&addr, sizeof addr, 128, cb, user, &l) == 0);
    struct sockaddr_storage bound;
    socklen_t len;
    CHECK(piocp_listener_address(l, &bound, &len) == 0);
    return ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

typedef struct client_args {
    int port, messages;
} client_args;

static void *echo_client(void *arg)
{
    client_args *a = arg;
    int fd = connect_loopback(a->port);
    for (int i = 0; i < a->messages; i++) {
        char out[777], in[777];
        for (size_t j = 0; j < sizeof out; j++)
            out[j] = (char)(i + j);
        CHECK(write_all(fd, out, sizeof out) == 0);
        CHECK(read_exact(fd, in, sizeof in) == 0);
        CHECK(memcmp(in, out, sizeof in) == 0);
    }
    close(fd);
    return NULL;
}

/* Runs `clients` echo clients of `messages` round trips each, at once,
 * and waits until every one is done. */
static void run_echo_clients(int port, int clients, int messages)
{
    pthread_t threads[64];
    CHECK(clients <= 64);
    client_args args = {.port = port, .messages = messages};
    for (int i = 0; i < clients; i++)
        pthread_create(&threads[i], NULL, echo_client, &args);
    for (int i = 0; i < clients; i++)
        pthread_join(threads[i], NULL);
}

static void test_echo(void)
{
    int fds = count_fds();
    piocp_engine *e = start_engine(4, 0, 0);
    int port = listen_on(e, &echo_callbacks, NULL);
    CHECK(piocp_engine_start(e) == 0);
    enum { CLIENTS = 20 };
    run_echo_clients(port, CLIENTS, 200);
    wait_until(&conns_closed, CLIENTS, 5000);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    CHECK(atomic_load(&conns_made) == CLIENTS);
    CHECK(atomic_load(&conns_closed) == CLIENTS);
    CHECK(atomic_load(&recv_done) == CLIENTS * 201); /* 200 messages + EOF */
    CHECK(atomic_load(&send_done) == CLIENTS * 200);
    CHECK(count_fds() == fds);
}

/* Stop with idle connections: their recvs are cancelled exactly once. */
static void test_stop_cancels_recv(void)
{
    int fds = count_fds();
    piocp_engine *e = start_engine(2, 0, 0);
    int port = listen_on(e, &echo_callbacks, NULL);
    CHECK(piocp_engine_start(e) == 0);
    int clients[5];
    for (int i = 0; i < 5; i++)
        clients[i] = connect_loopback(port);
    wait_until(&conns_made, 5, 5000);
    CHECK(piocp_engine_stop(e, 2000) == 0);
    CHECK(atomic_load(&conns_closed) == 5);
    CHECK(atomic_load(&cancelled) == 5);
    CHECK(atomic_load(&recv_done) == 5);
    for (int i = 0; i < 5; i++) {
        char c;
        CHECK(read(clients[i], &c, 1) == 0); /* the server closed: EOF */
        close(clients[i]);
    }
    piocp_engine_free(e);
    CHECK(count_fds() == fds);
}

static void test_idle_timeout(void)
{
    piocp_engine *e = start_engine(1, 0, 200);
    int port = listen_on(e, &echo_callbacks, NULL);
    CHECK(piocp_engine_start(e) == 0);
    int fd = connect_loopback(port);
    long long t0 = now_ms();
    char c;
    CHECK(read(fd, &c, 1) < 0 && errno == ECONNRESET); /* dropped with a reset */
    long long waited = now_ms() - t0;
    CHECK(waited >= 150 && waited < 3000);
    close(fd);
    wait_until(&conns_closed, 1, 2000);
    piocp_engine_stop(e, 0);
    piocp_engine_free(e);
}

static void test_max_connections(void)
{
    piocp_engine *e = start_engine(1, 2, 0);
    piocp_listener *l;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(piocp_listen(e, (struct sockaddr *)&addr, sizeof addr, 16, &echo_callbacks, NULL, &l) == 0);
    struct sockaddr_storage bound;
    socklen_t len;
    piocp_listener_address(l, &bound, &len);
    int port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    CHECK(piocp_engine_start(e) == 0);
    int a = connect_loopback(port), b = connect_loopback(port);
    wait_until(&conns_made, 2, 2000);
    int c = connect_loopback(port);
    char ch;
    CHECK(read(c, &ch, 1) == 0); /* refused: closed at once */
    CHECK(piocp_listener_refused(l) == 1);
    CHECK(piocp_engine_connections(e) == 2);
    close(a);
    close(b);
    close(c);
    piocp_engine_stop(e, 1000);
    piocp_engine_free(e);
}

/* ------------------------------------------------------- transmit -- */

typedef struct transmit_case {
    int file_fd;
    uint64_t count;
    const char *head;
    piocp_request req;
    atomic_llong result;
    atomic_int completions;
} transmit_case;

static void transmit_done(piocp_request *req, ssize_t result)
{
    transmit_case *tc = req->user;
    atomic_store(&tc->result, result);
    atomic_fetch_add(&tc->completions, 1);
    piocp_close(req->conn);
}

static void closed_count(piocp_conn *conn, int error)
{
    (void)conn;
    (void)error;
    atomic_fetch_add(&conns_closed, 1);
}

static void transmit_on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    transmit_case *tc = user;
    piocp_conn_set_callbacks(conn, closed_count, NULL);
    tc->req.complete = transmit_done;
    tc->req.user = tc;
    CHECK(piocp_transmit(conn, &tc->req, tc->head, strlen(tc->head), tc->file_fd, 100, tc->count) == 0);
}

static const piocp_listener_callbacks transmit_callbacks = {.on_connection = transmit_on_connection};

static void run_transmit(uint64_t count, size_t file_size, ssize_t expect_result, size_t expect_bytes)
{
    int fds = count_fds();
    char path[] = "/tmp/pyiocp-transmit-XXXXXX";
    int file_fd = mkstemp(path);
    CHECK(file_fd >= 0);
    unlink(path);
    char *data = malloc(file_size);
    for (size_t i = 0; i < file_size; i++)
        data[i] = (char)(i * 7 + 3);
    CHECK(write_all(file_fd, data, file_size) == 0);
    transmit_case tc = {.file_fd = file_fd, .count = count, .head = "HEAD\r\n"};
    atomic_store(&conns_closed, 0);
    piocp_engine *e = start_engine(2, 0, 0);
    int port = listen_on(e, &transmit_callbacks, &tc);
    CHECK(piocp_engine_start(e) == 0);
    int fd = connect_loopback(port);
    size_t cap = file_size + 64, got = 0;
    char *in = malloc(cap);
    bool reset = false;
    for (;;) {
        ssize_t n = read(fd, in + got, cap - got);
        if (n < 0 && errno == ECONNRESET) {
            reset = true;
            break;
        }
        CHECK(n >= 0);
        if (n == 0)
            break;
        got += (size_t)n;
    }
    CHECK(reset == (expect_result < 0)); /* a failed transmit resets the connection */
    wait_until(&conns_closed, 1, 5000);
    CHECK(atomic_load(&tc.completions) == 1);
    CHECK(atomic_load(&tc.result) == expect_result);
    CHECK(got == expect_bytes);
    CHECK(memcmp(in, "HEAD\r\n", 6) == 0);
    CHECK(memcmp(in + 6, data + 100, got - 6) == 0);
    piocp_engine_stats stats; /* the file's bytes, not the head's */
    piocp_engine_get_stats(e, &stats);
    CHECK(stats.transmit_file_bytes == got - 6);
    close(fd);
    piocp_engine_stop(e, 1000);
    piocp_engine_free(e);
    close(file_fd);
    free(in);
    free(data);
    CHECK(count_fds() == fds);
}

static void test_transmit_exact(void) { run_transmit(3u << 20, (3u << 20) + 500, 6 + (3 << 20), 6 + (3u << 20)); }
static void test_transmit_to_eof(void) { run_transmit(PIOCP_TRANSMIT_TO_EOF, 200000, 6 + 199900, 6 + 199900); }
/* asking for more than the file has: must fail with EIO, not spin */
static void test_transmit_short_file(void) { run_transmit(1u << 20, 5000, -EIO, 6 + 4900); }

/* -------------------------------------------------- user completions -- */

static atomic_int user_done;
static void user_complete(piocp_request *req, ssize_t result)
{
    CHECK(result == (ssize_t)(intptr_t)req->user);
    CHECK(piocp_worker_index() >= 0);
    atomic_fetch_add(&user_done, 1);
}

static void test_user_post(void)
{
    piocp_engine *e = start_engine(3, 0, 0);
    CHECK(piocp_engine_start(e) == 0);
    enum { N = 5000 };
    piocp_request *reqs = calloc(N, sizeof *reqs);
    for (int i = 0; i < N; i++) {
        reqs[i].complete = user_complete;
        reqs[i].user = (void *)(intptr_t)i;
        CHECK(piocp_post(e, &reqs[i], i) == 0);
    }
    wait_until(&user_done, N, 5000);
    piocp_engine_stop(e, 0);
    CHECK(atomic_load(&user_done) == N);
    piocp_engine_free(e);
    free(reqs);
}

static void test_config_errors(void)
{
    piocp_engine *e = NULL;
    piocp_config bad_threads = {.threads = -1};
    CHECK(piocp_engine_new(&e, &bad_threads) == -EINVAL);
    piocp_config bad_backend = {.backend = "no-such-backend"};
    CHECK(piocp_engine_new(&e, &bad_backend) == -ENOENT);
    piocp_config bad_first_request = {.drain_first_request_ms = -1};
    CHECK(piocp_engine_new(&e, &bad_first_request) == -EINVAL);
    e = start_engine(1, 0, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(piocp_listen(e, (struct sockaddr *)&addr, sizeof addr, 0, &echo_callbacks, NULL, NULL) == -EINVAL);
    piocp_engine_free(e); /* never started */
}


/* ------------------------------------------------ moving connections -- */

/* Every post on a connection is made from a user completion, i.e. from the
 * worker that runs user completions (worker 0), whichever worker accepted
 * it: the connection moves to worker 0 (its epoll set or its ring) on the
 * first post, and from then on its completions arrive there.  The messages
 * must all come back, in order, on every backend. */
typedef struct hop_conn {
    piocp_request recv_req, send_req, hop_req;
    piocp_conn *conn;
    piocp_engine *engine;
    char buf[4096];
    ssize_t got;
} hop_conn;

static atomic_int hop_recvs, hop_recvs_elsewhere;

static void hop_post(piocp_request *req, ssize_t result)
{
    (void)result;
    hop_conn *hc = req->user;
    if (hc->got <= 0) {
        piocp_close(hc->conn);
        return;
    }
    if (piocp_send(hc->conn, &hc->send_req, hc->buf, (size_t)hc->got) < 0)
        piocp_close(hc->conn);
}

static void hop_send_done(piocp_request *req, ssize_t result)
{
    hop_conn *hc = req->user;
    if (result < 0)
        return;
    if (piocp_recv(hc->conn, &hc->recv_req, hc->buf, sizeof hc->buf) < 0)
        piocp_close(hc->conn);
}

static void hop_recv_done(piocp_request *req, ssize_t result)
{
    hop_conn *hc = req->user;
    int n = atomic_fetch_add(&hop_recvs, 1);
    /* after the first hop, the connection lives on worker 0 */
    if (n > 0 && result > 0 && piocp_worker_index() != 0)
        atomic_fetch_add(&hop_recvs_elsewhere, 1);
    hc->got = result;
    CHECK(piocp_post(hc->engine, &hc->hop_req, 0) == 0 || result <= 0);
}

static void hop_closed(piocp_conn *conn, int error)
{
    (void)error;
    free(piocp_conn_user(conn));
    atomic_fetch_add(&conns_closed, 1);
}

static void hop_on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    hop_conn *hc = calloc(1, sizeof *hc);
    CHECK(hc != NULL);
    hc->conn = conn;
    hc->engine = user;
    hc->recv_req = (piocp_request){.complete = hop_recv_done, .user = hc};
    hc->send_req = (piocp_request){.complete = hop_send_done, .user = hc};
    hc->hop_req = (piocp_request){.complete = hop_post, .user = hc};
    piocp_conn_set_callbacks(conn, hop_closed, hc);
    if (piocp_recv(conn, &hc->recv_req, hc->buf, sizeof hc->buf) < 0)
        piocp_close(conn);
}

static const piocp_listener_callbacks hop_callbacks = {.on_connection = hop_on_connection};

static void test_move_between_workers(void)
{
    int fds = count_fds();
    piocp_engine *e = start_engine(4, 0, 0);
    int port = listen_on(e, &hop_callbacks, e);
    CHECK(piocp_engine_start(e) == 0);
    enum { CLIENTS = 8 };
    run_echo_clients(port, CLIENTS, 100);
    wait_until(&conns_closed, CLIENTS, 5000);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    CHECK(atomic_load(&conns_closed) == CLIENTS);
    /* The first recv of each connection may complete on the worker that
     * accepted it, and a post that finds the connection's turn still
     * running leaves it where it is for one more round; the rest complete
     * on worker 0, where the connections moved (0 to 15 of 808 did not in
     * 16 runs on a quiet machine; over 80 once in 40 runs with the machine
     * busy building, when turns run longer).  Without moving, about 3 in 4
     * would complete elsewhere (4 workers): a quarter still tells the two
     * apart without depending on the machine's load. */
    CHECK(atomic_load(&hop_recvs_elsewhere) * 4 <= atomic_load(&hop_recvs));
    CHECK(count_fds() == fds);
}

/* ------------------------------------------------------ worker hooks -- */

/* Per worker thread: 0 before worker_start, 1 while serving, 2 after
 * worker_stop.  batch_end may only run in state 1. */
static _Thread_local int hook_phase;
static atomic_int hook_starts, hook_stops, hook_batches, hook_misplaced;
static int hook_user_tag;

static void hook_worker_start(void *user)
{
    if (user != &hook_user_tag || hook_phase != 0 || piocp_worker_index() < 0)
        atomic_fetch_add(&hook_misplaced, 1);
    hook_phase = 1;
    atomic_fetch_add(&hook_starts, 1);
}

static void hook_worker_stop(void *user)
{
    if (user != &hook_user_tag || hook_phase != 1 || piocp_worker_index() < 0)
        atomic_fetch_add(&hook_misplaced, 1);
    hook_phase = 2;
    atomic_fetch_add(&hook_stops, 1);
}

static void hook_batch_end(void *user)
{
    if (user != &hook_user_tag || hook_phase != 1)
        atomic_fetch_add(&hook_misplaced, 1);
    atomic_fetch_add(&hook_batches, 1);
}

static piocp_engine *start_engine_with_hooks(int threads)
{
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.threads = threads;
    cfg.backend = backend;
    cfg.batch_end = hook_batch_end;
    cfg.worker_start = hook_worker_start;
    cfg.worker_stop = hook_worker_stop;
    cfg.user = &hook_user_tag;
    piocp_engine *e = NULL;
    CHECK(piocp_engine_new(&e, &cfg) == 0);
    return e;
}

/* worker_start runs once on each worker before its first batch_end, and
 * worker_stop once after its last, on the same thread: what a binding
 * needs to keep one thread state per worker. */
static void test_worker_hooks(void)
{
    int fds = count_fds();
    piocp_engine *e = start_engine_with_hooks(3);
    int port = listen_on(e, &echo_callbacks, NULL);
    CHECK(piocp_engine_start(e) == 0);
    run_echo_clients(port, 4, 50);
    wait_until(&conns_closed, 4, 5000);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    CHECK(atomic_load(&hook_starts) == 3);
    CHECK(atomic_load(&hook_stops) == 3);
    CHECK(atomic_load(&hook_batches) > 0);
    CHECK(atomic_load(&hook_misplaced) == 0);
    piocp_engine_free(e);
    CHECK(count_fds() == fds);
}

/* --------------------------------------------------- stopping hook -- */

/* The connection the stopping hook says goodbye on. */
static _Atomic(piocp_conn *) bye_conn; /* published by the worker, read by main */
static piocp_request bye_recv_req, bye_send_req;
static char bye_buf[64];
static atomic_int bye_hook_calls, bye_hook_misplaced, bye_recv_result, bye_closed;

static void bye_recv_done(piocp_request *req, ssize_t result)
{
    atomic_store(&bye_recv_result, (int)result);
    piocp_close(req->conn);
}

static void bye_send_done(piocp_request *req, ssize_t result)
{
    (void)req;
    CHECK(result == 3);
}

static void bye_on_closed(piocp_conn *conn, int error)
{
    CHECK(error == 0);
    atomic_fetch_add(&bye_closed, 1);
    (void)conn;
}

static void bye_on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    (void)user;
    piocp_conn_retain(conn);
    piocp_conn_set_callbacks(conn, bye_on_closed, NULL);
    bye_recv_req.complete = bye_recv_done;
    CHECK(piocp_recv(conn, &bye_recv_req, bye_buf, sizeof bye_buf) == 0);
    atomic_store(&bye_conn, conn);
}

static const piocp_listener_callbacks bye_callbacks = {.on_connection = bye_on_connection};

/* Runs on the stopping thread while the recv is still pending: a post made
 * here is still accepted and goes out before the connection closes. */
static void bye_stopping(void *user)
{
    if (user != &hook_user_tag || piocp_worker_index() >= 0 ||
        atomic_load(&bye_recv_result) != 1)
        atomic_fetch_add(&bye_hook_misplaced, 1);
    atomic_fetch_add(&bye_hook_calls, 1);
    bye_send_req.complete = bye_send_done;
    CHECK(piocp_send(atomic_load(&bye_conn), &bye_send_req, "bye", 3) == 0);
}

static void test_stopping_hook(void)
{
    int fds = count_fds();
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.threads = 2;
    cfg.backend = backend;
    cfg.stopping = bye_stopping;
    cfg.user = &hook_user_tag;
    piocp_engine *e = NULL;
    CHECK(piocp_engine_new(&e, &cfg) == 0);
    atomic_store(&bye_recv_result, 1); /* "still pending" until it completes */
    int port = listen_on(e, &bye_callbacks, NULL);
    CHECK(piocp_engine_start(e) == 0);
    int client = connect_loopback(port);
    for (int i = 0; i < 500 && !atomic_load(&bye_conn); i++)
        usleep(10000);
    CHECK(atomic_load(&bye_conn) != NULL);
    CHECK(piocp_engine_stop(e, 2000) == 0);
    CHECK(atomic_load(&bye_hook_calls) == 1);
    CHECK(atomic_load(&bye_hook_misplaced) == 0);
    CHECK(atomic_load(&bye_recv_result) == -ECANCELED);
    CHECK(atomic_load(&bye_closed) == 1);
    char got[8] = {0};
    CHECK(read(client, got, sizeof got) == 3 && memcmp(got, "bye", 3) == 0);
    CHECK(read(client, got, sizeof got) == 0); /* then an orderly close */
    close(client);
    piocp_conn_release(atomic_load(&bye_conn));
    piocp_engine_free(e);
    CHECK(count_fds() == fds);
}

/* ------------------------------------------- first request at a stop -- */

/* A connection accepted just before a stop whose request arrives after it
 * began (a reload racing a client): it is read and answered, then closed in
 * order.  One that never sends is closed in order once
 * drain_first_request_ms has passed, without waiting out the drain. */
static piocp_request first_recv_req, first_send_req;
static char first_buf[64];
static atomic_int first_made, first_recv_result, first_closed, first_close_error;
static atomic_int first_stopping;

static void first_send_done(piocp_request *req, ssize_t result)
{
    (void)req;
    CHECK(result == 3);
}

static void first_recv_done(piocp_request *req, ssize_t result)
{
    atomic_store(&first_recv_result, (int)result);
    if (result > 0) {
        first_send_req.complete = first_send_done;
        CHECK(piocp_send(req->conn, &first_send_req, "ok\n", 3) == 0);
    }
    piocp_close(req->conn);
}

static void first_on_closed(piocp_conn *conn, int error)
{
    (void)conn;
    atomic_store(&first_close_error, error);
    atomic_fetch_add(&first_closed, 1);
}

static void first_on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    (void)user;
    piocp_conn_set_callbacks(conn, first_on_closed, NULL);
    first_recv_req.complete = first_recv_done;
    CHECK(piocp_recv(conn, &first_recv_req, first_buf, sizeof first_buf) == 0);
    atomic_fetch_add(&first_made, 1);
}

static const piocp_listener_callbacks first_callbacks = {.on_connection = first_on_connection};

static void first_stopping_hook(void *user)
{
    (void)user;
    atomic_store(&first_stopping, 1);
}

typedef struct stop_args {
    piocp_engine *e;
    int drain_ms;
    long long took_ms;
} stop_args;

static void *stop_thread(void *arg)
{
    stop_args *a = arg;
    long long t0 = now_ms();
    CHECK(piocp_engine_stop(a->e, a->drain_ms) == 0);
    a->took_ms = now_ms() - t0;
    return NULL;
}

static piocp_engine *first_request_engine(int first_request_ms, int *port)
{
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.threads = 2;
    cfg.backend = backend;
    cfg.drain_first_request_ms = first_request_ms;
    cfg.stopping = first_stopping_hook;
    piocp_engine *e = NULL;
    CHECK(piocp_engine_new(&e, &cfg) == 0);
    *port = listen_on(e, &first_callbacks, NULL);
    CHECK(piocp_engine_start(e) == 0);
    return e;
}

static void test_stop_reads_first_request(void)
{
    int fds = count_fds(), port;
    piocp_engine *e = first_request_engine(0 /* the default */, &port);
    int client = connect_loopback(port);
    wait_until(&first_made, 1, 5000);
    stop_args stop = {.e = e, .drain_ms = 5000};
    pthread_t thread;
    pthread_create(&thread, NULL, stop_thread, &stop);
    wait_until(&first_stopping, 1, 5000);
    usleep(50000); /* the stop's kick has run this connection's turn */
    CHECK(atomic_load(&first_closed) == 0);
    CHECK(write_all(client, "hi\n", 3) == 0);
    char got[8] = {0};
    CHECK(read_exact(client, got, 3) == 0 && memcmp(got, "ok\n", 3) == 0);
    CHECK(read(client, got, sizeof got) == 0); /* then an orderly close */
    pthread_join(thread, NULL);
    fprintf(stderr, "%s: stop took %lld ms\n", backend, stop.took_ms);
    CHECK(atomic_load(&first_recv_result) == 3);
    CHECK(atomic_load(&first_closed) == 1 && atomic_load(&first_close_error) == 0);
    CHECK(stop.took_ms < 1000); /* answered: no waiting for the first-request time */
    close(client);
    piocp_engine_free(e);
    CHECK(count_fds() == fds);
}

static void test_stop_closes_silent_connection(void)
{
    int fds = count_fds(), port;
    piocp_engine *e = first_request_engine(300, &port);
    int client = connect_loopback(port);
    wait_until(&first_made, 1, 5000);
    stop_args stop = {.e = e, .drain_ms = 10000};
    pthread_t thread;
    pthread_create(&thread, NULL, stop_thread, &stop);
    char c;
    CHECK(read(client, &c, 1) == 0); /* closed in order, not reset */
    pthread_join(thread, NULL);
    fprintf(stderr, "%s: stop took %lld ms\n", backend, stop.took_ms);
    CHECK(stop.took_ms >= 250 && stop.took_ms < 3000); /* 300 ms + a sweep, not the drain */
    CHECK(atomic_load(&first_recv_result) == -ECANCELED);
    CHECK(atomic_load(&first_closed) == 1 && atomic_load(&first_close_error) == 0);
    close(client);
    piocp_engine_free(e);
    CHECK(count_fds() == fds);
}

/* ------------------------------------------------------ start faults -- */

static void noop_complete(piocp_request *req, ssize_t result)
{
    (void)req;
    (void)result;
}

/* A worker that cannot start (no thread, no ring) fails the start; the
 * engine is then stopped, refuses posts, and stops and frees cleanly (the
 * old engine joined threads it never created, and reported success while a
 * worker without a ring had silently left). */
static void start_failure_case(const char *point, unsigned nth)
{
    int fds = count_fds();
    atomic_store(&hook_starts, 0);
    atomic_store(&hook_stops, 0);
    piocp_engine *e = start_engine_with_hooks(3);
    listen_on(e, &echo_callbacks, NULL);
    piocp_fault_arm(point, nth, EAGAIN);
    int rc = piocp_engine_start(e);
    unsigned passes = piocp_fault_passes();
    piocp_fault_disarm();
    if (passes < nth) {
        /* this backend has no such point (e.g. epoll makes no ring) */
        CHECK(rc == 0);
    } else {
        CHECK(rc == -EAGAIN);
        CHECK(atomic_load(&hook_starts) == 0); /* no worker served, none was set up */
        CHECK(piocp_engine_start(e) == -EALREADY);
        piocp_request req = {.complete = noop_complete};
        CHECK(piocp_post(e, &req, 0) == -ESHUTDOWN);
    }
    CHECK(piocp_engine_stop(e, 100) == 0);
    CHECK(piocp_engine_stop(e, 100) == 0); /* idempotent */
    piocp_engine_free(e);
    CHECK(count_fds() == fds);
}

static void test_start_failure(void)
{
    const char *points[] = {"thread_start", "worker_init", "uring_setup"};
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++)
        for (unsigned nth = 1; nth <= 3; nth++)
            start_failure_case(points[i], nth);
}

/* ---------------------------------------------------- out of descriptors -- */

static void echo_round_trip(int fd)
{
    char out[100], in[100];
    memset(out, 'x', sizeof out);
    CHECK(write_all(fd, out, sizeof out) == 0);
    CHECK(read_exact(fd, in, sizeof in) == 0);
    CHECK(memcmp(in, out, sizeof in) == 0);
}

static long long cpu_ms(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000LL +
           (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
}

/* Over RLIMIT_NOFILE, accepting must not spin (io_uring re-armed a failing
 * multishot accept at once and burned two CPUs): it pauses, open
 * connections keep being served, and the waiting clients are accepted once
 * descriptors free up.  Asserted on counts, not on time. */
static void test_emfile(void)
{
    enum { WAITING = 3, HOLD_MS = 1000, LIMIT = 64 };
    /* low before the engine starts: io_uring takes the limit a (multishot)
     * accept checks when the accept is submitted */
    struct rlimit saved;
    CHECK(getrlimit(RLIMIT_NOFILE, &saved) == 0);
    struct rlimit tight = {.rlim_cur = LIMIT, .rlim_max = saved.rlim_max};
    CHECK(count_fds() < LIMIT - 16 && setrlimit(RLIMIT_NOFILE, &tight) == 0);
    piocp_engine *e = start_engine(2, 0, 0);
    int port = listen_on(e, &echo_callbacks, NULL);
    CHECK(piocp_engine_start(e) == 0);
    int open_conn = connect_loopback(port);
    echo_round_trip(open_conn);
    wait_until(&conns_made, 1, 5000);

    int clients[WAITING];
    for (int i = 0; i < WAITING; i++)
        CHECK((clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
    int fillers[LIMIT], filled = 0; /* no descriptor left to accept with */
    while ((fillers[filled] = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        filled++;
    CHECK(errno == EMFILE);

    piocp_engine_stats before, during;
    piocp_engine_get_stats(e, &before);
    long long cpu0 = cpu_ms();
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < WAITING; i++)
        CHECK(connect(clients[i], (struct sockaddr *)&addr, sizeof addr) == 0);
    long long until = now_ms() + HOLD_MS;
    while (now_ms() < until) {
        echo_round_trip(open_conn); /* the open connection is still served */
        struct timespec ts = {0, 50 * 1000000};
        nanosleep(&ts, NULL);
    }
    piocp_engine_get_stats(e, &during);
    long long cpu = cpu_ms() - cpu0;
    uint64_t errors = during.accept_errors - before.accept_errors;
    fprintf(stderr, "%s: over the limit for %d ms: %llu failed accepts, %llu pauses, %lld ms CPU\n",
            backend, HOLD_MS, (unsigned long long)errors,
            (unsigned long long)(during.accept_pauses - before.accept_pauses), cpu);
    CHECK(during.accept_pauses > before.accept_pauses);
    /* at most a retry per worker per sweep (4 a second) and per close */
    CHECK(errors >= 1 && errors <= 40);
    CHECK(during.accepted == before.accepted);
    CHECK(piocp_engine_connections(e) == 1);

    for (int i = 0; i < filled; i++)
        close(fillers[i]);
    CHECK(setrlimit(RLIMIT_NOFILE, &saved) == 0);
    for (int i = 0; i < WAITING; i++) {
        struct timeval tv = {10, 0};
        setsockopt(clients[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        echo_round_trip(clients[i]); /* accepted once descriptors were free */
        close(clients[i]);
    }
    close(open_conn);
    wait_until(&conns_closed, 1 + WAITING, 5000);
    CHECK(atomic_load(&conns_made) == 1 + WAITING);
    /* recovered, nothing open: the stop has nothing to drain and must not
     * wait for its drain timeout (issue 13) */
    long long t0 = now_ms();
    CHECK(piocp_engine_stop(e, 10000) == 0);
    long long took = now_ms() - t0;
    fprintf(stderr, "%s: stop after the recovery took %lld ms\n", backend, took);
    CHECK(took < 2000);
    piocp_engine_free(e);
}

/* ----------------------------------------------------- stop and churn -- */

typedef struct churn_args {
    int port;
    atomic_bool stop;
    atomic_int connected;
} churn_args;

static void *churn_client(void *arg)
{
    churn_args *a = arg;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)a->port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    while (!atomic_load(&a->stop)) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        CHECK(fd >= 0);
        if (connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0) {
            atomic_fetch_add(&a->connected, 1);
            (void)!write(fd, "ping", 4);
        }
        close(fd);
    }
    return NULL;
}

/* Stopping while clients keep connecting: the listener's socket must not be
 * closed (and its number reused) while a worker may still accept on it, and
 * every accepted connection is closed exactly once (ThreadSanitizer checks
 * the races; this checks the counts and descriptors). */
static void test_stop_while_accepting(void)
{
    int fds = count_fds();
    for (int round = 0; round < 10; round++) {
        atomic_store(&conns_made, 0);
        atomic_store(&conns_closed, 0);
        piocp_engine *e = start_engine(2, 0, 0);
        churn_args args = {.port = listen_on(e, &echo_callbacks, NULL)};
        CHECK(piocp_engine_start(e) == 0);
        pthread_t clients[2];
        for (int i = 0; i < 2; i++)
            pthread_create(&clients[i], NULL, churn_client, &args);
        while (atomic_load(&args.connected) < 20)
            sched_yield();
        CHECK(piocp_engine_stop(e, 200) == 0);
        CHECK(atomic_load(&conns_closed) == atomic_load(&conns_made));
        atomic_store(&args.stop, true);
        for (int i = 0; i < 2; i++)
            pthread_join(clients[i], NULL);
        piocp_engine_free(e);
    }
    CHECK(count_fds() == fds);
}

/* Connections come and go while the idle sweep reads every slot (a 40 ms
 * idle timeout sweeps every 10 ms): reusing a slot must not race with it
 * (ThreadSanitizer sees what this cannot: the slot's atomics used to be
 * zeroed with memset while the sweep read them). */
static void test_churn_with_sweeps(void)
{
    int fds = count_fds();
    piocp_engine *e = start_engine(2, 8, 40);
    churn_args args = {.port = listen_on(e, &echo_callbacks, NULL)};
    CHECK(piocp_engine_start(e) == 0);
    pthread_t clients[2];
    for (int i = 0; i < 2; i++)
        pthread_create(&clients[i], NULL, churn_client, &args);
    long long until = now_ms() + 500;
    while (now_ms() < until)
        sched_yield();
    atomic_store(&args.stop, true);
    for (int i = 0; i < 2; i++)
        pthread_join(clients[i], NULL);
    CHECK(atomic_load(&args.connected) > 50);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    CHECK(atomic_load(&conns_closed) == atomic_load(&conns_made));
    piocp_engine_free(e);
    CHECK(count_fds() == fds);
}

/* ------------------------------------------------- stop finishes sends -- */

enum { BIG_SEND = 8 << 20 };
static char *big_payload;
static piocp_request big_req;
static atomic_int big_sent;

static void big_send_done(piocp_request *req, ssize_t result)
{
    atomic_store(&big_sent, result == BIG_SEND ? 1 : -1);
    (void)req;
}

static void big_on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    (void)user;
    piocp_conn_set_callbacks(conn, closed_count, NULL);
    big_req.complete = big_send_done;
    atomic_fetch_add(&conns_made, 1);
    CHECK(piocp_send(conn, &big_req, big_payload, BIG_SEND) == 0);
}

static const piocp_listener_callbacks big_callbacks = {.on_connection = big_on_connection};

typedef struct reader_args {
    int fd;
    size_t got;
    int end; /* 0: EOF, else the errno that ended the reading */
} reader_args;

static void *read_to_end(void *arg)
{
    reader_args *a = arg;
    char buf[65536];
    struct timespec ts = {0, 200 * 1000000}; /* the stop starts meanwhile */
    nanosleep(&ts, NULL);
    for (;;) {
        ssize_t n = read(a->fd, buf, sizeof buf);
        if (n <= 0) {
            a->end = n == 0 ? 0 : errno;
            return NULL;
        }
        a->got += (size_t)n;
    }
}

/* Stop lets a running send finish, then closes with a FIN as soon as it is
 * out: it does not wait for the drain deadline and reset (epoll did, until
 * the turn checked again after its sends). */
static void test_stop_finishes_sends(void)
{
    big_payload = calloc(1, BIG_SEND);
    piocp_engine *e = start_engine(2, 0, 0);
    int port = listen_on(e, &big_callbacks, NULL);
    CHECK(piocp_engine_start(e) == 0);
    reader_args reader = {.fd = connect_loopback(port)};
    wait_until(&conns_made, 1, 5000);
    pthread_t thread;
    pthread_create(&thread, NULL, read_to_end, &reader);
    long long t0 = now_ms();
    CHECK(piocp_engine_stop(e, 10000) == 0);
    long long took = now_ms() - t0;
    pthread_join(thread, NULL);
    fprintf(stderr, "%s: stop took %lld ms; the client read %zu bytes, then %s\n", backend, took,
            reader.got, reader.end ? strerror(reader.end) : "EOF");
    CHECK(atomic_load(&big_sent) == 1);
    CHECK(reader.got == BIG_SEND && reader.end == 0);
    CHECK(took < 5000);
    close(reader.fd);
    piocp_engine_free(e);
    free(big_payload);
}

static const test_case cases[] = {
    {"echo", test_echo},
    {"stop_cancels_recv", test_stop_cancels_recv},
    {"idle_timeout", test_idle_timeout},
    {"max_connections", test_max_connections},
    {"transmit_exact", test_transmit_exact},
    {"transmit_to_eof", test_transmit_to_eof},
    {"transmit_short_file", test_transmit_short_file},
    {"user_post", test_user_post},
    {"config_errors", test_config_errors},
    {"start_failure", test_start_failure},
    {"emfile", test_emfile},
    {"stop_while_accepting", test_stop_while_accepting},
    {"churn_with_sweeps", test_churn_with_sweeps},
    {"stop_finishes_sends", test_stop_finishes_sends},
    {"worker_hooks", test_worker_hooks},
    {"move_between_workers", test_move_between_workers},
    {"stopping_hook", test_stopping_hook},
    {"stop_reads_first_request", test_stop_reads_first_request},
    {"stop_closes_silent_connection", test_stop_closes_silent_connection},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    if (argc > 2)
        backend = argv[2];
    if (argc > 1 && strcmp(argv[1], "list") != 0) {
        /* a backend this kernel refuses (io_uring under seccomp) is skipped,
         * and ctest says so; "auto" still runs everything on the fallback */
        piocp_config probe = {.threads = 1, .backend = backend};
        piocp_engine *e = NULL;
        int rc = piocp_engine_new(&e, &probe);
        if (rc < 0) {
            fprintf(stderr, "backend %s unavailable here: %s\n", backend, strerror(-rc));
            return 77;
        }
        piocp_engine_free(e);
    }
    return run_test_case(cases, argc > 1 ? argv[1] : "list");
}
