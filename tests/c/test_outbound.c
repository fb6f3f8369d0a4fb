/*
 * test_outbound.c - connections the engine did not accept: an adopted
 * connected socket (piocp_adopt) and outbound connects (piocp_connect),
 * with real sockets on 127.0.0.1.  `test_outbound NAME BACKEND` runs one
 * case.  Checked throughout: `done` and on_closed run exactly once, every
 * request completes once, no descriptor leaks.
 */
#include "test_backend.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

static const char *backend = "epoll";

/* ------------------------------------------------ a small echo peer -- */

/* What the engine's side of one connection saw. */
typedef struct peer {
    piocp_request recv_req, send_req;
    char buf[256];
    const char *greeting;    /* sent first, if set */
    atomic_int recvs, sends, closed, closed_error;
    atomic_int received_len;
    char received[256];
} peer;

static void peer_recv_done(piocp_request *req, ssize_t result);

static void peer_send_done(piocp_request *req, ssize_t result)
{
    peer *p = req->user;
    atomic_fetch_add(&p->sends, 1);
    (void)result;
}

/* Echoes what arrives, and closes at the peer's EOF. */
static void peer_recv_done(piocp_request *req, ssize_t result)
{
    peer *p = req->user;
    atomic_fetch_add(&p->recvs, 1);
    if (result <= 0) {
        piocp_close(req->conn);
        return;
    }
    int have = atomic_load(&p->received_len);
    if ((size_t)(have + result) <= sizeof p->received) {
        memcpy(p->received + have, p->buf, (size_t)result);
        atomic_store(&p->received_len, have + (int)result);
    }
    if (piocp_send(req->conn, &p->send_req, p->buf, (size_t)result) == 0)
        CHECK(piocp_recv(req->conn, &p->recv_req, p->buf, sizeof p->buf) == 0);
}

static void peer_closed(piocp_conn *conn, int error)
{
    peer *p = piocp_conn_user(conn);
    atomic_store(&p->closed_error, error);
    atomic_fetch_add(&p->closed, 1);
}

/* Sets the connection up as an echo peer (after accept, adopt or connect). */
static void peer_start(peer *p, piocp_conn *conn)
{
    p->recv_req = (piocp_request){.complete = peer_recv_done, .user = p};
    p->send_req = (piocp_request){.complete = peer_send_done, .user = p};
    piocp_conn_set_callbacks(conn, peer_closed, p);
    if (p->greeting)
        CHECK(piocp_send(conn, &p->send_req, p->greeting, strlen(p->greeting)) == 0);
    else
        CHECK(piocp_recv(conn, &p->recv_req, p->buf, sizeof p->buf) == 0);
}

/* ------------------------------------------------------ raw sockets -- */

/* A listening socket of the test's own on 127.0.0.1; `*port` gets its port. */
static int plain_listener(int backlog, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(fd >= 0 && bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK(listen(fd, backlog) == 0);
    socklen_t len = sizeof addr;
    CHECK(getsockname(fd, (struct sockaddr *)&addr, &len) == 0);
    *port = ntohs(addr.sin_port);
    return fd;
}

static struct sockaddr_in loopback(int port)
{
    return (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

/* A connected TCP pair: `*client` and the accepted `*server`. */
static void tcp_pair(int *client, int *server)
{
    int port;
    int l = plain_listener(1, &port);
    *client = connect_loopback(port);
    *server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    CHECK(*server >= 0);
    close(l);
}

static bool still_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

/* Connects non-blocking clients to `port` (a listener with backlog 0 that
 * never accepts) until one stays pending: the accept queue is full, and
 * the kernel drops further SYNs.  Returns how many `fds` it used. */
static int fill_backlog(int port, int *fds, int max)
{
    struct sockaddr_in addr = loopback(port);
    for (int n = 0; n < max; n++) {
        fds[n] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        CHECK(fds[n] >= 0);
        if (connect(fds[n], (struct sockaddr *)&addr, sizeof addr) == 0)
            continue;
        CHECK(errno == EINPROGRESS);
        struct pollfd pfd = {.fd = fds[n], .events = POLLOUT};
        if (poll(&pfd, 1, 200) == 0)
            return n + 1; /* this one hangs: the queue is full */
    }
    CHECK(!"the accept queue never filled");
    return max;
}

/* ------------------------------------------------------------- adopt -- */

/* An accepted socket handed over: served like an accepted connection. */
static void test_adopt_echo(void)
{
    int fds = count_fds();
    piocp_engine *e = new_engine(backend, 2);
    CHECK(piocp_engine_start(e) == 0);
    int client, server;
    tcp_pair(&client, &server);
    piocp_conn *conn = NULL;
    CHECK(piocp_adopt(e, server, &conn) == 0);
    CHECK(fcntl(server, F_GETFL) & O_NONBLOCK);
    int nodelay = 0;
    socklen_t len = sizeof nodelay;
    CHECK(getsockopt(server, IPPROTO_TCP, TCP_NODELAY, &nodelay, &len) == 0 && nodelay);
    struct sockaddr_storage peer_addr;
    CHECK(piocp_conn_peer(conn, &peer_addr, &len) == 0 && peer_addr.ss_family == AF_INET);
    peer p = {0};
    peer_start(&p, conn);
    CHECK(piocp_engine_connections(e) == 1);
    char in[4];
    CHECK(write_all(client, "ping", 4) == 0);
    CHECK(read_exact(client, in, 4) == 0 && memcmp(in, "ping", 4) == 0);
    close(client);
    wait_until(&p.closed, 1, 5000);
    CHECK(atomic_load(&p.closed) == 1 && atomic_load(&p.closed_error) == 0);
    CHECK(atomic_load(&p.recvs) == 2 && atomic_load(&p.sends) == 1);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    CHECK(atomic_load(&p.closed) == 1);
    CHECK(count_fds() == fds);
}

/* A Unix stream socket (one end of a socketpair) is a connected stream too. */
static void test_adopt_unix(void)
{
    int fds = count_fds();
    piocp_engine *e = new_engine(backend, 1);
    CHECK(piocp_engine_start(e) == 0);
    int pair[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    piocp_conn *conn = NULL;
    CHECK(piocp_adopt(e, pair[1], &conn) == 0);
    peer p = {0};
    peer_start(&p, conn);
    char in[5];
    CHECK(write_all(pair[0], "hello", 5) == 0);
    CHECK(read_exact(pair[0], in, 5) == 0 && memcmp(in, "hello", 5) == 0);
    close(pair[0]);
    wait_until(&p.closed, 1, 5000);
    CHECK(atomic_load(&p.closed) == 1);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    CHECK(count_fds() == fds);
}

/* Whatever adopt refuses stays the caller's, open. */
static void test_adopt_errors(void)
{
    int fds = count_fds();
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.threads = 1;
    cfg.backend = backend;
    cfg.max_connections = 1;
    piocp_engine *e = NULL;
    CHECK(piocp_engine_new(&e, &cfg) == 0);
    CHECK(piocp_engine_start(e) == 0);
    piocp_conn *conn = NULL;
    CHECK(piocp_adopt(e, -1, &conn) == -EINVAL);
    int file = open("/dev/null", O_RDONLY | O_CLOEXEC);
    int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int unconnected = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int port;
    int listening = plain_listener(4, &port);
    int refused[] = {file, udp, unconnected, listening};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        CHECK(piocp_adopt(e, refused[i], &conn) == -EINVAL);
        CHECK(still_open(refused[i]));
        close(refused[i]);
    }
    int client1, server1, client2, server2;
    tcp_pair(&client1, &server1);
    tcp_pair(&client2, &server2);
    CHECK(piocp_adopt(e, server1, &conn) == 0);
    peer p = {0};
    peer_start(&p, conn);
    piocp_conn *second = NULL;
    CHECK(piocp_adopt(e, server2, &second) == -ENOSPC); /* max_connections is 1 */
    CHECK(still_open(server2));
    CHECK(piocp_engine_stop(e, 1000) == 0);
    CHECK(atomic_load(&p.closed) == 1);
    CHECK(piocp_adopt(e, server2, &second) == -ESHUTDOWN);
    CHECK(still_open(server2));
    piocp_engine_free(e);
    close(server2);
    close(client1);
    close(client2);
    CHECK(count_fds() == fds);
}

/* ----------------------------------------------------------- connect -- */

/* What a connect's `done` saw. */
typedef struct outcome {
    atomic_int calls, error, on_worker;
    piocp_conn *_Atomic conn;
    peer *serve;             /* set: serve the connection with it */
} outcome;

static void connect_done(piocp_conn *conn, int error, void *user)
{
    outcome *o = user;
    atomic_store(&o->error, error);
    atomic_store(&o->on_worker, piocp_worker_index() >= 0);
    atomic_store(&o->conn, conn);
    CHECK((conn != NULL) == (error == 0));
    if (conn && o->serve)
        peer_start(o->serve, conn);
    atomic_fetch_add(&o->calls, 1);
}

static void test_connect_echo(void)
{
    int fds = count_fds();
    piocp_engine *e = new_engine(backend, 2);
    CHECK(piocp_engine_start(e) == 0);
    int port;
    int l = plain_listener(4, &port);
    peer p = {.greeting = "hi"};
    outcome o = {.serve = &p};
    struct sockaddr_in addr = loopback(port);
    CHECK(piocp_connect(e, (struct sockaddr *)&addr, sizeof addr, 5000, connect_done, &o) == 0);
    int server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    CHECK(server >= 0);
    char in[2];
    CHECK(read_exact(server, in, 2) == 0 && memcmp(in, "hi", 2) == 0);
    wait_until(&o.calls, 1, 5000);
    CHECK(atomic_load(&o.calls) == 1 && atomic_load(&o.error) == 0 && atomic_load(&o.on_worker));
    struct sockaddr_storage peer_addr;
    socklen_t len;
    CHECK(piocp_conn_peer(atomic_load(&o.conn), &peer_addr, &len) == 0);
    CHECK(((struct sockaddr_in *)&peer_addr)->sin_port == htons((uint16_t)port));
    close(server); /* the connection sees EOF (its greeting's recv is never posted: close) */
    CHECK(piocp_close(atomic_load(&o.conn)) == 0);
    wait_until(&p.closed, 1, 5000);
    CHECK(atomic_load(&p.closed) == 1 && atomic_load(&p.sends) == 1);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    close(l);
    CHECK(atomic_load(&o.calls) == 1 && atomic_load(&p.closed) == 1);
    CHECK(count_fds() == fds);
}

/* A port nobody listens on: -ECONNREFUSED, through `done`. */
static void test_connect_refused(void)
{
    int fds = count_fds();
    piocp_engine *e = new_engine(backend, 2);
    CHECK(piocp_engine_start(e) == 0);
    /* bound, not listening: the port is ours and refuses */
    int holder = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = loopback(0);
    socklen_t len = sizeof addr;
    CHECK(bind(holder, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK(getsockname(holder, (struct sockaddr *)&addr, &len) == 0);
    enum { TRIES = 20 };
    outcome o[TRIES];
    for (int i = 0; i < TRIES; i++) {
        o[i] = (outcome){0};
        CHECK(piocp_connect(e, (struct sockaddr *)&addr, sizeof addr, 0, connect_done, &o[i]) == 0);
    }
    for (int i = 0; i < TRIES; i++) {
        wait_until(&o[i].calls, 1, 5000);
        CHECK(atomic_load(&o[i].error) == -ECONNREFUSED && atomic_load(&o[i].on_worker));
    }
    CHECK(piocp_engine_connections(e) == 0);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    for (int i = 0; i < TRIES; i++)
        CHECK(atomic_load(&o[i].calls) == 1);
    close(holder);
    CHECK(count_fds() == fds);
}

/* A listener whose accept queue is full drops the SYN: the connect hangs
 * until timeout_ms, then `done` gets -ETIMEDOUT. */
static void test_connect_timeout(void)
{
    int fds = count_fds();
    piocp_engine *e = new_engine(backend, 2);
    CHECK(piocp_engine_start(e) == 0);
    int port;
    int l = plain_listener(0, &port);
    int clients[64];
    int filled = fill_backlog(port, clients, 64);
    outcome o = {0};
    struct sockaddr_in addr = loopback(port);
    long long t0 = now_ms();
    CHECK(piocp_connect(e, (struct sockaddr *)&addr, sizeof addr, 300, connect_done, &o) == 0);
    wait_until(&o.calls, 1, 5000);
    long long took = now_ms() - t0;
    fprintf(stderr, "%s: timed out after %lld ms\n", backend, took);
    CHECK(atomic_load(&o.calls) == 1 && atomic_load(&o.error) == -ETIMEDOUT);
    CHECK(took >= 290 && took < 2000);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    CHECK(atomic_load(&o.calls) == 1);
    for (int i = 0; i < filled; i++)
        close(clients[i]);
    close(l);
    CHECK(count_fds() == fds);
}

/* Stop with connects pending (no timeout): each `done` gets -ECANCELED,
 * once, before stop returns; a connect after that is refused at once. */
static void test_connect_stop(void)
{
    int fds = count_fds();
    piocp_engine *e = new_engine(backend, 2);
    CHECK(piocp_engine_start(e) == 0);
    int port;
    int l = plain_listener(0, &port);
    int clients[64];
    int filled = fill_backlog(port, clients, 64);
    enum { PENDING = 4 };
    outcome o[PENDING];
    struct sockaddr_in addr = loopback(port);
    for (int i = 0; i < PENDING; i++) {
        o[i] = (outcome){0};
        CHECK(piocp_connect(e, (struct sockaddr *)&addr, sizeof addr, 0, connect_done, &o[i]) == 0);
    }
    struct timespec ts = {0, 100 * 1000000}; /* they are waiting on the kernel */
    nanosleep(&ts, NULL);
    CHECK(piocp_engine_connections(e) == PENDING);
    long long t0 = now_ms();
    CHECK(piocp_engine_stop(e, 5000) == 0);
    CHECK(now_ms() - t0 < 2000); /* a connect is not a transfer to drain */
    for (int i = 0; i < PENDING; i++) {
        CHECK(atomic_load(&o[i].calls) == 1);
        CHECK(atomic_load(&o[i].error) == -ECANCELED);
    }
    outcome late = {0};
    CHECK(piocp_connect(e, (struct sockaddr *)&addr, sizeof addr, 0, connect_done, &late) ==
          -ESHUTDOWN);
    piocp_engine_free(e);
    CHECK(atomic_load(&late.calls) == 0);
    for (int i = 0; i < filled; i++)
        close(clients[i]);
    close(l);
    CHECK(count_fds() == fds);
}

/* Connects count against max_connections from the start. */
static void test_connect_errors(void)
{
    int fds = count_fds();
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.threads = 1;
    cfg.backend = backend;
    cfg.max_connections = 1;
    piocp_engine *e = NULL;
    CHECK(piocp_engine_new(&e, &cfg) == 0);
    CHECK(piocp_engine_start(e) == 0);
    int port;
    int l = plain_listener(0, &port);
    int clients[64];
    int filled = fill_backlog(port, clients, 64);
    struct sockaddr_in addr = loopback(port);
    outcome o = {0}, over = {0};
    CHECK(piocp_connect(e, (struct sockaddr *)&addr, sizeof addr, -1, connect_done, &o) == -EINVAL);
    CHECK(piocp_connect(e, (struct sockaddr *)&addr, sizeof addr, 0, NULL, &o) == -EINVAL);
    CHECK(piocp_connect(e, (struct sockaddr *)&addr, sizeof addr, 0, connect_done, &o) == 0);
    CHECK(piocp_connect(e, (struct sockaddr *)&addr, sizeof addr, 0, connect_done, &over) ==
          -ENOSPC);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    CHECK(atomic_load(&o.calls) == 1 && atomic_load(&o.error) == -ECANCELED);
    piocp_engine_free(e);
    CHECK(atomic_load(&over.calls) == 0);
    for (int i = 0; i < filled; i++)
        close(clients[i]);
    close(l);
    CHECK(count_fds() == fds);
}

/* Both from a callback on a worker (a proxy connects upstream from its
 * handler): the adopted and the connected connection echo. */
typedef struct from_worker {
    piocp_request req;
    piocp_engine *engine;
    struct sockaddr_in upstream;
    int adopt_fd;
    peer adopted, connected;
    outcome o;
    atomic_int posted;
} from_worker;

static void post_from_worker(piocp_request *req, ssize_t result)
{
    (void)result;
    from_worker *f = req->user;
    CHECK(piocp_worker_index() >= 0);
    CHECK(piocp_connect(f->engine, (struct sockaddr *)&f->upstream, sizeof f->upstream, 5000,
                        connect_done, &f->o) == 0);
    piocp_conn *conn = NULL;
    CHECK(piocp_adopt(f->engine, f->adopt_fd, &conn) == 0);
    peer_start(&f->adopted, conn);
    atomic_store(&f->posted, 1);
}

static void echo_once(int fd, const char *text)
{
    char in[16];
    size_t len = strlen(text);
    CHECK(write_all(fd, text, len) == 0);
    CHECK(read_exact(fd, in, len) == 0 && memcmp(in, text, len) == 0);
}

static void test_from_a_callback(void)
{
    int fds = count_fds();
    piocp_engine *e = new_engine(backend, 2);
    CHECK(piocp_engine_start(e) == 0);
    int port;
    int l = plain_listener(4, &port);
    int client, server;
    tcp_pair(&client, &server);
    static from_worker f;
    f = (from_worker){.engine = e, .upstream = loopback(port), .adopt_fd = server};
    f.o.serve = &f.connected;
    f.req = (piocp_request){.complete = post_from_worker, .user = &f};
    CHECK(piocp_post(e, &f.req, 0) == 0);
    int upstream = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    CHECK(upstream >= 0);
    wait_until(&f.posted, 1, 5000);
    wait_until(&f.o.calls, 1, 5000);
    CHECK(atomic_load(&f.o.calls) == 1 && atomic_load(&f.o.error) == 0);
    echo_once(upstream, "up");
    echo_once(client, "down");
    close(upstream);
    close(client);
    wait_until(&f.connected.closed, 1, 5000);
    wait_until(&f.adopted.closed, 1, 5000);
    CHECK(atomic_load(&f.connected.closed) == 1 && atomic_load(&f.adopted.closed) == 1);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    close(l);
    CHECK(count_fds() == fds);
}

static const test_case cases[] = {
    {"adopt_echo", test_adopt_echo},
    {"adopt_unix", test_adopt_unix},
    {"adopt_errors", test_adopt_errors},
    {"connect_echo", test_connect_echo},
    {"connect_refused", test_connect_refused},
    {"connect_timeout", test_connect_timeout},
    {"connect_stop", test_connect_stop},
    {"connect_errors", test_connect_errors},
    {"from_a_callback", test_from_a_callback},
    {NULL, NULL},
};

int main(int argc, char **argv) { return run_backend_test_case(cases, argc, argv, &backend); }
