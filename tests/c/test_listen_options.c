/*
 * test_listen_options.c - piocp_listen_ex: adopting a socket that is
 * already listening (as a pre-fork supervisor or systemd hands one over),
 * SO_REUSEPORT, and the errors.  `test_listen_options NAME [BACKEND]` runs
 * one case; each checks that no descriptor leaked.
 */
#include "pyiocp.h"
#include "test_util.h"

#include <fcntl.h>
#include <stdbool.h>

static const char *backend = "epoll";

/* ------------------------------------------- a one-message echo handler -- */

typedef struct echo_conn {
    piocp_request recv_req, send_req;
    char buf[256];
} echo_conn;

static atomic_int conns_closed;

static void echo_sent(piocp_request *req, ssize_t result)
{
    (void)result;
    piocp_close(req->conn);
}

static void echo_received(piocp_request *req, ssize_t result)
{
    echo_conn *ec = req->user;
    if (result <= 0 || piocp_send(req->conn, &ec->send_req, ec->buf, (size_t)result) < 0)
        piocp_close(req->conn);
}

static void echo_closed(piocp_conn *conn, int error)
{
    (void)error;
    free(piocp_conn_user(conn));
    atomic_fetch_add(&conns_closed, 1);
}

static void echo_on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    (void)user;
    echo_conn *ec = calloc(1, sizeof *ec);
    CHECK(ec != NULL);
    ec->recv_req = (piocp_request){.complete = echo_received, .user = ec};
    ec->send_req = (piocp_request){.complete = echo_sent, .user = ec};
    piocp_conn_set_callbacks(conn, echo_closed, ec);
    if (piocp_recv(conn, &ec->recv_req, ec->buf, sizeof ec->buf) < 0)
        piocp_close(conn);
}

static const piocp_listener_callbacks echo_callbacks = {.on_connection = echo_on_connection};

/* ------------------------------------------------------------ helpers -- */

static piocp_engine *new_engine(void)
{
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.threads = 2;
    cfg.backend = backend;
    piocp_engine *e = NULL;
    CHECK(piocp_engine_new(&e, &cfg) == 0);
    return e;
}

static struct sockaddr_in loopback(int port)
{
    return (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
}

/* A listening socket on 127.0.0.1 made the way a supervisor makes it
 * (blocking, like Python's socket module); its port in *port. */
static int make_listening_socket(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in addr = loopback(0);
    socklen_t len = sizeof addr;
    CHECK(fd >= 0);
    CHECK(bind(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK(listen(fd, 64) == 0);
    CHECK(getsockname(fd, (struct sockaddr *)&addr, &len) == 0);
    *port = ntohs(addr.sin_port);
    return fd;
}

static int adopt(piocp_engine *e, int fd)
{
    piocp_listen_options options;
    piocp_listen_options_init(&options);
    options.fd = fd;
    return piocp_listen_ex(e, &options, &echo_callbacks, NULL, NULL);
}

static void echo_once(int port)
{
    int fd = connect_loopback(port);
    char in[5];
    CHECK(write_all(fd, "hello", 5) == 0);
    CHECK(read_exact(fd, in, 5) == 0);
    CHECK(memcmp(in, "hello", 5) == 0);
    close(fd);
}

static bool is_listening(int fd)
{
    int accepting = 0;
    socklen_t len = sizeof accepting;
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) == 0 && accepting;
}

/* -------------------------------------------------------------- cases -- */

static void test_adopt(void)
{
    int fds = count_fds();
    int port;
    int fd = make_listening_socket(&port);
    piocp_engine *e = new_engine();
    CHECK(adopt(e, fd) == 0);
    CHECK(fcntl(fd, F_GETFL) & O_NONBLOCK);
    CHECK(piocp_engine_start(e) == 0);
    for (int i = 0; i < 20; i++)
        echo_once(port);
    wait_until(&conns_closed, 20, 5000);
    CHECK(atomic_load(&conns_closed) == 20);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    CHECK(count_fds() == fds); /* the engine closed the socket it took */
}

/* Stopping an engine must leave a shared socket listening for the others,
 * with what is queued on it: shutting it down would reset every process's
 * pending connections. */
static void test_shared_survives_stop(void)
{
    int fds = count_fds();
    int port;
    int fd = make_listening_socket(&port);
    piocp_engine *first = new_engine(), *second = new_engine();
    CHECK(adopt(first, dup(fd)) == 0);
    CHECK(adopt(second, dup(fd)) == 0);
    CHECK(piocp_engine_start(first) == 0);
    echo_once(port);
    CHECK(piocp_engine_stop(first, 1000) == 0);
    piocp_engine_free(first);
    CHECK(is_listening(fd));
    /* queued while no engine accepts, served once the second one runs */
    int early = connect_loopback(port);
    CHECK(write_all(early, "early", 5) == 0);
    CHECK(piocp_engine_start(second) == 0);
    char in[5];
    CHECK(read_exact(early, in, 5) == 0 && memcmp(in, "early", 5) == 0);
    close(early);
    echo_once(port);
    CHECK(piocp_engine_stop(second, 1000) == 0);
    piocp_engine_free(second);
    CHECK(is_listening(fd));
    close(fd);
    CHECK(count_fds() == fds);
}

static int listen_reuse_port(piocp_engine *e, int port, int reuse_port)
{
    struct sockaddr_in addr = loopback(port);
    piocp_listen_options options;
    piocp_listen_options_init(&options);
    options.addr = (struct sockaddr *)&addr;
    options.addrlen = sizeof addr;
    options.reuse_port = reuse_port;
    piocp_listener *l = NULL;
    int rc = piocp_listen_ex(e, &options, &echo_callbacks, NULL, &l);
    if (rc < 0)
        return rc;
    struct sockaddr_storage bound;
    socklen_t len;
    CHECK(piocp_listener_address(l, &bound, &len) == 0);
    return ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

static void test_reuse_port(void)
{
    int fds = count_fds();
    piocp_engine *first = new_engine(), *second = new_engine(), *third = new_engine();
    int port = listen_reuse_port(first, 0, 1);
    CHECK(port > 0);
    CHECK(listen_reuse_port(second, port, 1) == port);
    CHECK(listen_reuse_port(third, port, 0) == -EADDRINUSE);
    CHECK(piocp_engine_start(first) == 0);
    CHECK(piocp_engine_start(second) == 0);
    for (int i = 0; i < 20; i++)
        echo_once(port);
    piocp_engine_stop(first, 1000);
    piocp_engine_free(first);
    for (int i = 0; i < 5; i++)
        echo_once(port); /* the second socket takes them all now */
    piocp_engine_free(second);
    piocp_engine_free(third);
    CHECK(count_fds() == fds);
}

/* Every refusal closes what it was given: the caller handed it over. */
static void test_adopt_errors(void)
{
    int fds = count_fds();
    piocp_engine *e = new_engine();
    int pipe_fds[2];
    CHECK(pipe(pipe_fds) == 0);
    CHECK(adopt(e, pipe_fds[0]) == -EINVAL);
    close(pipe_fds[1]);
    CHECK(adopt(e, socket(AF_INET, SOCK_STREAM, 0)) == -EINVAL);  /* not listening */
    CHECK(adopt(e, socket(AF_INET, SOCK_DGRAM, 0)) == -EINVAL);   /* not a stream */
    CHECK(adopt(e, 1000) == -EBADF);                              /* not open */

    int port;
    struct sockaddr_in addr = loopback(0);
    piocp_listen_options options;
    piocp_listen_options_init(&options);
    options.addr = (struct sockaddr *)&addr; /* and an fd: one or the other */
    options.addrlen = sizeof addr;
    options.fd = make_listening_socket(&port);
    CHECK(piocp_listen_ex(e, &options, &echo_callbacks, NULL, NULL) == -EINVAL);
    piocp_listen_options_init(&options);     /* neither */
    CHECK(piocp_listen_ex(e, &options, &echo_callbacks, NULL, NULL) == -EINVAL);
    piocp_engine_free(e);
    CHECK(count_fds() == fds);
}

static const test_case cases[] = {
    {"adopt", test_adopt},
    {"shared_survives_stop", test_shared_survives_stop},
    {"reuse_port", test_reuse_port},
    {"adopt_errors", test_adopt_errors},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    if (argc > 2)
        backend = argv[2];
    if (argc > 1 && strcmp(argv[1], "list") != 0) {
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
