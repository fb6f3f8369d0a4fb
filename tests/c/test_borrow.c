/*
 * test_borrow.c - sockets lent to the engine by their owner (piocp_borrow:
 * an asyncio loop lending a transport's socket for a zero-copy file
 * transmission) and per-request cancel (piocp_cancel), on accepted and on
 * borrowed connections, with real sockets (TCP on 127.0.0.1, Unix socket
 * pairs); the scripted_* cases use the scripted backend, where the test
 * plays the kernel, for exact partial sends.  `test_borrow NAME BACKEND`
 * runs one case.  Checked throughout: every request completes exactly
 * once, none after on_closed, on_closed once; the byte stream the peer
 * reads is exactly what the completions say was sent; a borrowed socket
 * comes back open, unchanged and usable; no descriptor leaks.
 */
#include "test_backend.h"
#include "backends/scripted.h"

#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/epoll.h>

static const char *backend = "epoll";

/* ----------------------------------------------- the engine's side -- */

/* One connection as the engine's callbacks saw it. */
typedef struct side {
    piocp_conn *_Atomic conn;
    atomic_int closed, closed_error;
    atomic_int completed; /* requests completed on it, all kinds */
} side;

/* A request and what its completion reported. */
typedef struct op {
    piocp_request req;
    side *side;
    atomic_int completions;
    atomic_long result;
    atomic_size_t done;     /* req->done as the completion saw it */
    /* Optional: runs inside the completion, on the worker. */
    void (*then)(struct op *op);
    void *arg;
} op;

static void op_done(piocp_request *req, ssize_t result)
{
    op *o = req->user;
    CHECK(atomic_load(&o->side->closed) == 0); /* on_closed comes last */
    CHECK(piocp_worker_index() >= 0);
    atomic_store(&o->done, req->done);
    atomic_store(&o->result, (long)result);
    if (o->then)
        o->then(o);
    atomic_fetch_add(&o->completions, 1);
    atomic_fetch_add(&o->side->completed, 1);
}

static void op_init(op *o, side *s)
{
    memset(o, 0, sizeof *o);
    o->side = s;
    o->req.complete = op_done;
    o->req.user = o;
}

/* Waits for `o` to complete, and checks it did so once. */
static void op_wait(op *o)
{
    wait_until(&o->completions, 1, 10000);
    CHECK(atomic_load(&o->completions) == 1);
}

static void side_closed(piocp_conn *conn, int error)
{
    side *s = piocp_conn_user(conn);
    atomic_store(&s->closed_error, error);
    atomic_fetch_add(&s->closed, 1);
}

static void on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    side *s = user;
    piocp_conn_retain(conn); /* the test uses it from its own thread */
    piocp_conn_set_callbacks(conn, side_closed, s);
    atomic_store(&s->conn, conn);
}

static const piocp_listener_callbacks callbacks = {.on_connection = on_connection};

/* An engine listening on 127.0.0.1, a client connected to it, and the
 * engine's side of that connection. */
typedef struct fixture {
    int fds;
    piocp_engine *engine;
    int client;
    side s;
    piocp_conn *conn;
} fixture;

static void fixture_open(fixture *f, int threads)
{
    memset(f, 0, sizeof *f);
    f->fds = count_fds();
    f->engine = new_engine(backend, threads);
    int port = engine_listen_loopback(f->engine, &callbacks, &f->s);
    CHECK(piocp_engine_start(f->engine) == 0);
    f->client = connect_loopback(port);
    long long deadline = now_ms() + 5000;
    while (!atomic_load(&f->s.conn) && now_ms() < deadline)
        sched_yield();
    f->conn = atomic_load(&f->s.conn);
    CHECK(f->conn != NULL);
}

/* Closes the connection in order (if the case has not), stops, and
 * checks the contract. */
static void fixture_close(fixture *f)
{
    int rc = piocp_close(f->conn);
    CHECK(rc == 0 || rc == -ENOTCONN);
    shutdown(f->client, SHUT_WR); /* the lingering close ends at our FIN */
    wait_until(&f->s.closed, 1, 10000);
    CHECK(atomic_load(&f->s.closed) == 1);
    CHECK(piocp_engine_stop(f->engine, 1000) == 0);
    CHECK(atomic_load(&f->s.closed) == 1);
    piocp_conn_release(f->conn);
    piocp_engine_free(f->engine);
    close(f->client);
    CHECK(count_fds() == f->fds);
}

/* ---------------------------------------------------------- data -- */

/* The byte at `i` of every pattern the tests send: readable positions. */
static char pattern_at(size_t i, unsigned seed) { return (char)((i * 131 + seed * 7 + (i >> 13)) & 0xff); }

static char *pattern(size_t len, unsigned seed)
{
    char *p = malloc(len);
    CHECK(p != NULL);
    for (size_t i = 0; i < len; i++)
        p[i] = pattern_at(i, seed);
    return p;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Reads exactly `len` bytes and compares them with `want`. */
static void expect_bytes(int fd, const char *want, size_t len)
{
    char *got = malloc(len ? len : 1);
    CHECK(read_exact(fd, got, len) == 0);
    CHECK(memcmp(got, want, len) == 0);
    free(got);
}

/* Nothing more to read right now (within `ms`). */
static void expect_quiet(int fd, int ms)
{
    sleep_ms(ms);
    char c;
    CHECK(recv(fd, &c, 1, MSG_DONTWAIT) < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
}

/* ------------------------------------------- cancel on accepted conns -- */

/* A recv cancelled before anything came: -ECANCELED; the connection goes
 * on (a new recv reads, a send arrives); cancelling it again, or a request
 * that completed, is -ENOENT. */
static void test_conn_cancel_recv(void)
{
    fixture f;
    fixture_open(&f, 2);
    op r1, r2, s1;
    op_init(&r1, &f.s);
    op_init(&r2, &f.s);
    op_init(&s1, &f.s);
    char buf[16];
    CHECK(piocp_recv(f.conn, &r1.req, buf, sizeof buf) == 0);
    sleep_ms(20); /* on io_uring, the ring holds it by now */
    CHECK(piocp_cancel(f.conn, &r1.req) == 0);
    op_wait(&r1);
    CHECK(atomic_load(&r1.result) == -ECANCELED);
    CHECK(piocp_cancel(f.conn, &r1.req) == -ENOENT);
    CHECK(piocp_cancel(NULL, &r1.req) == -EINVAL);
    CHECK(piocp_cancel(f.conn, NULL) == -EINVAL);
    CHECK(piocp_cancel(f.conn, &r2.req) == -ENOENT); /* never posted */

    CHECK(piocp_recv(f.conn, &r2.req, buf, sizeof buf) == 0);
    CHECK(write_all(f.client, "ping", 4) == 0);
    op_wait(&r2);
    CHECK(atomic_load(&r2.result) == 4 && memcmp(buf, "ping", 4) == 0);
    CHECK(piocp_send(f.conn, &s1.req, "pong", 4) == 0);
    op_wait(&s1);
    CHECK(atomic_load(&s1.result) == 4);
    expect_bytes(f.client, "pong", 4);
    CHECK(piocp_cancel(f.conn, &s1.req) == -ENOENT);
    fixture_close(&f);
}

/* A send the peer stops reading stalls halfway; a send queued behind it is
 * cancelled first (-ECANCELED, nothing sent), then the stalled one
 * (-ECANCELED, done = what the peer then reads); the send after them goes
 * out right behind the cut. */
static void test_conn_cancel_send(void)
{
    fixture f;
    fixture_open(&f, 2);
    enum { BIG = 32 << 20 };
    char *big = pattern(BIG, 1);
    op a, b, c;
    op_init(&a, &f.s);
    op_init(&b, &f.s);
    op_init(&c, &f.s);
    CHECK(piocp_send(f.conn, &a.req, big, BIG) == 0);
    CHECK(piocp_send(f.conn, &b.req, big, BIG) == 0);
    CHECK(piocp_send(f.conn, &c.req, "after", 5) == 0);
    sleep_ms(200); /* the socket fills: `a` waits for room */
    CHECK(atomic_load(&f.s.completed) == 0);
    CHECK(piocp_cancel(f.conn, &b.req) == 0);
    op_wait(&b);
    CHECK(atomic_load(&b.result) == -ECANCELED && atomic_load(&b.done) == 0);
    CHECK(atomic_load(&a.completions) == 0); /* still stalled */
    CHECK(piocp_cancel(f.conn, &a.req) == 0);
    op_wait(&a);
    size_t sent = atomic_load(&a.done);
    fprintf(stderr, "%s: cancelled after %zu of %d bytes\n", backend, sent, BIG);
    CHECK(atomic_load(&a.result) == -ECANCELED);
    CHECK(sent > 0 && sent < BIG);
    /* the socket is still full: `c` goes out as the peer reads */
    expect_bytes(f.client, big, sent);
    expect_bytes(f.client, "after", 5);
    op_wait(&c);
    CHECK(atomic_load(&c.result) == 5);
    expect_quiet(f.client, 50);
    free(big);
    fixture_close(&f);
}

/* Small sends cancelled as they go, from the test's thread and from
 * completions on the workers: each completes exactly once, as a success or
 * -ECANCELED, and the peer reads exactly the bytes the completions say
 * were sent, in posting order.  With a file, every other request is a
 * transmit of the same bytes (a head and the rest from the file). */
enum { RACE_SENDS = 3000, RACE_LEN = 100, RACE_HEAD = 10 };

typedef struct race {
    piocp_conn *conn;
    int peer;
    int file;
    op ops[RACE_SENDS];
    char payload[RACE_SENDS][RACE_LEN];
    atomic_int posted;
    atomic_int enoent, taken;
} race;

/* From a completion: cancel the request posted right after this one. */
static void cancel_next(op *o)
{
    race *r = o->arg;
    int i = (int)(o - r->ops);
    if (i + 1 < atomic_load(&r->posted)) {
        int rc = piocp_cancel(r->conn, &r->ops[i + 1].req);
        CHECK(rc == 0 || rc == -ENOENT);
        atomic_fetch_add(rc == 0 ? &r->taken : &r->enoent, 1);
    }
}

static void *race_reader(void *arg)
{
    race *r = arg;
    size_t cap = (size_t)RACE_SENDS * RACE_LEN, got = 0;
    char *in = malloc(cap + 1);
    for (;;) {
        ssize_t n = read(r->peer, in + got, cap + 1 - got);
        if (n < 0 && errno == EINTR)
            continue;
        CHECK(n >= 0);
        if (n == 0)
            break;
        got += (size_t)n;
    }
    /* the stream is each payload cut where its request ended */
    size_t at = 0;
    for (int i = 0; i < RACE_SENDS; i++) {
        size_t done = atomic_load(&r->ops[i].done);
        CHECK(at + done <= got);
        CHECK(memcmp(in + at, r->payload[i], done) == 0);
        at += done;
    }
    CHECK(at == got);
    free(in);
    return NULL;
}

static int post_race_request(race *r, int i)
{
    if (r->file >= 0 && i % 2 == 1)
        return piocp_transmit(r->conn, &r->ops[i].req, r->payload[i], RACE_HEAD, r->file,
                              (uint64_t)i * (RACE_LEN - RACE_HEAD), RACE_LEN - RACE_HEAD);
    return piocp_send(r->conn, &r->ops[i].req, r->payload[i], RACE_LEN);
}

/* Runs the race on `conn`, whose peer socket is `peer`; `file` (or -1)
 * gets the transmits' file bytes.  Ends with the peer's stream read to the
 * end: the caller makes it end (ends_stream: closes `conn`). */
static void run_race(piocp_conn *conn, side *s, int peer, int file, void (*ends_stream)(piocp_conn *))
{
    race *r = calloc(1, sizeof *r);
    r->conn = conn;
    r->peer = peer;
    r->file = file;
    for (int i = 0; i < RACE_SENDS; i++) {
        op_init(&r->ops[i], s);
        r->ops[i].arg = r;
        if (i % 3 == 1)
            r->ops[i].then = cancel_next;
        memset(r->payload[i], 'A' + i % 26, RACE_LEN);
        memcpy(r->payload[i], &i, sizeof i);
        if (file >= 0) {
            off_t at = (off_t)i * (RACE_LEN - RACE_HEAD);
            CHECK(pwrite(file, r->payload[i] + RACE_HEAD, RACE_LEN - RACE_HEAD, at) ==
                  RACE_LEN - RACE_HEAD);
        }
    }
    int before = atomic_load(&s->completed);
    for (int i = 0; i < RACE_SENDS; i++) {
        CHECK(post_race_request(r, i) == 0);
        atomic_store(&r->posted, i + 1);
        if (i % 2 == 0) {
            int target = i - (i % 7); /* itself, or one a little older */
            int rc = piocp_cancel(conn, &r->ops[target].req);
            CHECK(rc == 0 || rc == -ENOENT);
            atomic_fetch_add(rc == 0 ? &r->taken : &r->enoent, 1);
        }
    }
    wait_until(&s->completed, before + RACE_SENDS, 20000);
    CHECK(atomic_load(&s->completed) == before + RACE_SENDS);
    int cancelled = 0, whole = 0, cut = 0;
    for (int i = 0; i < RACE_SENDS; i++) {
        op *o = &r->ops[i];
        CHECK(atomic_load(&o->completions) == 1);
        long result = atomic_load(&o->result);
        size_t done = atomic_load(&o->done);
        if (result == -ECANCELED) {
            cancelled++;
            cut += done > 0;
            CHECK(done < RACE_LEN);
        } else {
            whole++;
            CHECK(result == RACE_LEN && done == RACE_LEN);
        }
    }
    fprintf(stderr, "%s: %d cancels taken, %d too late; %d cancelled (%d cut), %d whole\n",
            backend, atomic_load(&r->taken), atomic_load(&r->enoent), cancelled, cut, whole);
    CHECK(cancelled > 0 && cancelled <= atomic_load(&r->taken));
    pthread_t reader;
    CHECK(pthread_create(&reader, NULL, race_reader, r) == 0);
    ends_stream(conn);
    CHECK(pthread_join(reader, NULL) == 0);
    free(r);
}

/* A graceful close: the FIN ends the reader's stream. */
static void close_conn(piocp_conn *conn) { CHECK(piocp_close(conn) == 0); }

static void test_cancel_race(void)
{
    fixture f;
    fixture_open(&f, 3);
    run_race(f.conn, &f.s, f.client, -1, close_conn);
    fixture_close(&f);
}

/* ------------------------------------------------------- borrowed -- */

static bool still_open(int fd) { return fcntl(fd, F_GETFD) >= 0; }

/* What the engine must not change on a borrowed socket. */
typedef struct sock_state {
    int file_flags, fd_flags;
    bool tcp;
    int nodelay;
    struct linger linger;
} sock_state;

static sock_state state_of(int fd)
{
    sock_state st;
    memset(&st, 0, sizeof st);
    st.file_flags = fcntl(fd, F_GETFL);
    st.fd_flags = fcntl(fd, F_GETFD);
    CHECK(st.file_flags >= 0 && st.fd_flags >= 0);
    int domain = 0;
    socklen_t len = sizeof domain;
    CHECK(getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0);
    st.tcp = domain == AF_INET;
    len = sizeof st.nodelay;
    if (st.tcp)
        CHECK(getsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &st.nodelay, &len) == 0);
    len = sizeof st.linger;
    CHECK(getsockopt(fd, SOL_SOCKET, SO_LINGER, &st.linger, &len) == 0);
    return st;
}

static void same_state(int fd, const sock_state *before)
{
    sock_state now = state_of(fd);
    CHECK(now.file_flags == before->file_flags);
    CHECK(now.fd_flags == before->fd_flags);
    CHECK(now.nodelay == before->nodelay);
    CHECK(now.linger.l_onoff == before->linger.l_onoff);
    CHECK(now.linger.l_linger == before->linger.l_linger);
}

/* Whether an epoll set of this process other than `except` watches `fd`:
 * /proc/self/fdinfo of each eventpoll descriptor lists its "tfd:" lines. */
static bool watched_by_epoll(int fd, int except)
{
    DIR *d = opendir("/proc/self/fd");
    CHECK(d != NULL);
    bool found = false;
    struct dirent *ent;
    while (!found && (ent = readdir(d))) {
        if (ent->d_name[0] == '.' || atoi(ent->d_name) == except)
            continue;
        char path[300], target[64];
        snprintf(path, sizeof path, "/proc/self/fd/%s", ent->d_name);
        ssize_t n = readlink(path, target, sizeof target - 1);
        if (n < 0)
            continue;
        target[n] = '\0';
        if (strcmp(target, "anon_inode:[eventpoll]") != 0)
            continue;
        snprintf(path, sizeof path, "/proc/self/fdinfo/%s", ent->d_name);
        FILE *info = fopen(path, "r");
        if (!info)
            continue;
        char line[256];
        while (!found && fgets(line, sizeof line, info)) {
            int tfd;
            if (sscanf(line, "tfd: %d", &tfd) == 1 && tfd == fd)
                found = true;
        }
        fclose(info);
    }
    closedir(d);
    return found;
}

/* Both ends of a connected stream: `sock` is lent to the engine, `peer` is
 * the test's.  TCP: the accepted end (as an asyncio server's transport),
 * else a Unix socket pair.  `sock` is made non-blocking (the owner's
 * business), and reads on `peer` time out rather than hang. */
static void stream_pair(bool tcp, int *sock, int *peer)
{
    if (tcp) {
        int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t len = sizeof addr;
        CHECK(l >= 0 && bind(l, (struct sockaddr *)&addr, sizeof addr) == 0 && listen(l, 1) == 0);
        CHECK(getsockname(l, (struct sockaddr *)&addr, &len) == 0);
        *peer = connect_loopback(ntohs(addr.sin_port));
        *sock = accept4(l, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
        CHECK(*sock >= 0);
        close(l);
        return;
    }
    int pair[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
    *peer = pair[0];
    *sock = pair[1];
    CHECK(fcntl(*sock, F_SETFL, fcntl(*sock, F_GETFL) | O_NONBLOCK) == 0);
    struct timeval tv = {10, 0};
    setsockopt(*peer, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/* One lent socket and what the engine's callbacks saw of it. */
typedef struct lent {
    int sock, peer;
    sock_state before;
    side s;
    piocp_conn *conn;
} lent;

static void lend(piocp_engine *e, bool tcp, lent *l)
{
    memset(l, 0, sizeof *l);
    stream_pair(tcp, &l->sock, &l->peer);
    l->before = state_of(l->sock);
    CHECK(piocp_borrow(e, l->sock, &l->conn) == 0);
    piocp_conn_retain(l->conn); /* the test uses it from its own thread */
    piocp_conn_set_callbacks(l->conn, side_closed, &l->s);
}

/* Waits for the hand-back: on_closed once with `error`, and the socket
 * open, as it was, watched by no epoll set of the engine (`except`: one
 * of the test's own), with `peer` still able to read what the engine sent
 * (so no reset came). */
static void handed_back(lent *l, int error, int except)
{
    wait_until(&l->s.closed, 1, 10000);
    CHECK(atomic_load(&l->s.closed) == 1);
    CHECK(atomic_load(&l->s.closed_error) == error);
    CHECK(still_open(l->sock));
    same_state(l->sock, &l->before);
    CHECK(!watched_by_epoll(l->sock, except));
}

/* The socket is the owner's again: bytes go both ways, untouched by the
 * engine.  The peer must have read everything the engine sent. */
static void usable_both_ways(lent *l)
{
    CHECK(send(l->sock, "back", 4, MSG_NOSIGNAL) == 4);
    expect_bytes(l->peer, "back", 4);
    CHECK(write_all(l->peer, "fwd", 3) == 0);
    struct pollfd pfd = {.fd = l->sock, .events = POLLIN};
    CHECK(poll(&pfd, 1, 5000) == 1);
    char in[8];
    CHECK(recv(l->sock, in, sizeof in, 0) == 3 && memcmp(in, "fwd", 3) == 0);
}

/* The test's reference goes before the engine is freed (with its pool). */
static void let_go(lent *l) { piocp_conn_release(l->conn); }

static void unlend(lent *l)
{
    close(l->sock);
    close(l->peer);
}

/* A file of `len` pattern bytes (seed 2), and the same bytes in memory. */
typedef struct test_file {
    int fd;
    char *data;
    size_t len;
} test_file;

static test_file make_file(size_t len)
{
    test_file f = {.data = pattern(len, 2), .len = len};
    char path[] = "/tmp/pyiocp-borrow-XXXXXX";
    f.fd = mkstemp(path);
    CHECK(f.fd >= 0);
    unlink(path);
    CHECK(write_all(f.fd, f.data, len) == 0);
    return f;
}

static void drop_file(test_file *f)
{
    close(f->fd);
    free(f->data);
}

/* `head` then `count` file bytes from `offset`: what a transmit sends. */
static char *transmit_bytes(const char *head, const test_file *f, size_t offset, size_t count)
{
    size_t head_len = strlen(head);
    char *b = malloc(head_len + count);
    memcpy(b, head, head_len);
    memcpy(b + head_len, f->data + offset, count);
    return b;
}

/* A reader that takes its time: `len` bytes in small reads with pauses,
 * compared with `want` as they come. */
typedef struct slow_reader {
    int fd;
    const char *want;
    size_t len;
    pthread_t thread;
} slow_reader;

static void *slow_read(void *arg)
{
    slow_reader *r = arg;
    char buf[65536];
    size_t got = 0;
    while (got < r->len) {
        size_t want = r->len - got < sizeof buf ? r->len - got : sizeof buf;
        ssize_t n = read(r->fd, buf, want);
        if (n < 0 && errno == EINTR)
            continue;
        CHECK(n > 0);
        CHECK(memcmp(buf, r->want + got, (size_t)n) == 0);
        got += (size_t)n;
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

static piocp_engine_stats stats_of(piocp_engine *e)
{
    piocp_engine_stats st;
    piocp_engine_get_stats(e, &st);
    return st;
}

enum { BIG_FILE = 32 << 20, OFFSET = 1000 };
static const char HEAD[] = "HEAD 200 OK\r\n\r\n";

/* A head and 32 MiB of file to a slow reader, then a send: byte-exact, in
 * order; piocp_close hands the socket back once they completed.  The
 * socket also sits in an epoll set of the test's own, as an asyncio loop
 * keeps it: that registration stays, the engine's goes. */
static void run_borrow_transmit(bool tcp)
{
    int fds = count_fds();
    test_file file = make_file(BIG_FILE);
    size_t count = BIG_FILE - 3000;
    size_t total = strlen(HEAD) + count;
    char *want = transmit_bytes(HEAD, &file, OFFSET, count);
    want = realloc(want, total + 4);
    memcpy(want + total, "TAIL", 4);
    piocp_engine *e = new_engine(backend, 2);
    CHECK(piocp_engine_start(e) == 0);
    piocp_engine_stats st0 = stats_of(e);
    int loop = epoll_create1(EPOLL_CLOEXEC); /* the owner's event loop */
    lent l;
    memset(&l, 0, sizeof l);
    stream_pair(tcp, &l.sock, &l.peer);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = l.sock};
    CHECK(epoll_ctl(loop, EPOLL_CTL_ADD, l.sock, &ev) == 0);
    l.before = state_of(l.sock);
    CHECK(piocp_borrow(e, l.sock, &l.conn) == 0);
    piocp_conn_retain(l.conn);
    piocp_conn_set_callbacks(l.conn, side_closed, &l.s);
    CHECK(piocp_engine_connections(e) == 1);
    if (strcmp(backend, "epoll") == 0)
        CHECK(watched_by_epoll(l.sock, loop));
    op t, tail;
    op_init(&t, &l.s);
    op_init(&tail, &l.s);
    CHECK(piocp_transmit(l.conn, &t.req, HEAD, strlen(HEAD), file.fd, OFFSET, count) == 0);
    CHECK(piocp_send(l.conn, &tail.req, "TAIL", 4) == 0);
    slow_reader reader = {.fd = l.peer, .want = want, .len = total + 4};
    CHECK(pthread_create(&reader.thread, NULL, slow_read, &reader) == 0);
    op_wait(&t);
    op_wait(&tail);
    CHECK(atomic_load(&t.result) == (long)total && atomic_load(&t.done) == total);
    CHECK(atomic_load(&tail.result) == 4);
    CHECK(pthread_join(reader.thread, NULL) == 0);
    CHECK(atomic_load(&l.s.closed) == 0); /* nothing hands it back but close */
    CHECK(piocp_close(l.conn) == 0);
    handed_back(&l, 0, loop);
    CHECK(piocp_engine_connections(e) == 0);
    CHECK(piocp_close(l.conn) == -ENOTCONN);
    expect_quiet(l.peer, 20); /* no FIN */
    usable_both_ways(&l);
    /* the owner's registration is intact: it hears the peer */
    CHECK(epoll_ctl(loop, EPOLL_CTL_MOD, l.sock, &ev) == 0);
    CHECK(write_all(l.peer, "x", 1) == 0);
    struct epoll_event got;
    CHECK(epoll_wait(loop, &got, 1, 5000) == 1 && got.data.fd == l.sock);
    piocp_engine_stats st1 = stats_of(e);
    CHECK(st1.borrowed - st0.borrowed == 1);
    CHECK(st1.borrowed_bytes - st0.borrowed_bytes == total + 4);
    CHECK(st1.transmit_file_bytes - st0.transmit_file_bytes == count);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    CHECK(atomic_load(&l.s.closed) == 1);
    let_go(&l);
    piocp_engine_free(e);
    close(loop);
    unlend(&l);
    drop_file(&file);
    free(want);
    CHECK(count_fds() == fds);
}

static void test_borrow_transmit_tcp(void) { run_borrow_transmit(true); }
static void test_borrow_transmit_unix(void) { run_borrow_transmit(false); }

/* From a thread of its own, as an event loop would. */
typedef struct cancel_call {
    piocp_conn *conn;
    piocp_request *req;
    int rc;
} cancel_call;

static void *cancel_thread(void *arg)
{
    cancel_call *c = arg;
    c->rc = piocp_cancel(c->conn, c->req);
    return NULL;
}

static int cancel_from_thread(piocp_conn *conn, piocp_request *req)
{
    cancel_call call = {.conn = conn, .req = req};
    pthread_t thread;
    CHECK(pthread_create(&thread, NULL, cancel_thread, &call) == 0);
    CHECK(pthread_join(thread, NULL) == 0);
    return call.rc;
}

/* The peer stops reading: the transmit stalls.  A transmit queued behind
 * it is cancelled (nothing sent), then the stalled one (done = what the
 * peer then reads, head and file); a send after them goes out behind the
 * cut, and the socket goes back whole. */
static void test_borrow_cancel(void)
{
    int fds = count_fds();
    test_file file = make_file(BIG_FILE);
    size_t count = BIG_FILE - OFFSET;
    char *want = transmit_bytes(HEAD, &file, OFFSET, count);
    piocp_engine *e = new_engine(backend, 2);
    CHECK(piocp_engine_start(e) == 0);
    piocp_engine_stats st0 = stats_of(e);
    lent l;
    lend(e, true, &l);
    op t1, t2, after;
    op_init(&t1, &l.s);
    op_init(&t2, &l.s);
    op_init(&after, &l.s);
    CHECK(piocp_transmit(l.conn, &t1.req, HEAD, strlen(HEAD), file.fd, OFFSET, count) == 0);
    CHECK(piocp_transmit(l.conn, &t2.req, HEAD, strlen(HEAD), file.fd, 0, 1000) == 0);
    CHECK(piocp_send(l.conn, &after.req, "after", 5) == 0);
    sleep_ms(200);
    CHECK(atomic_load(&l.s.completed) == 0);
    CHECK(cancel_from_thread(l.conn, &t2.req) == 0);
    op_wait(&t2);
    CHECK(atomic_load(&t2.result) == -ECANCELED && atomic_load(&t2.done) == 0);
    CHECK(cancel_from_thread(l.conn, &t1.req) == 0);
    op_wait(&t1);
    size_t sent = atomic_load(&t1.done);
    fprintf(stderr, "%s: transmit cancelled after %zu bytes\n", backend, sent);
    CHECK(atomic_load(&t1.result) == -ECANCELED);
    CHECK(sent > strlen(HEAD) && sent < strlen(HEAD) + count);
    CHECK(piocp_cancel(l.conn, &t1.req) == -ENOENT);
    expect_bytes(l.peer, want, sent); /* the file resumes at OFFSET + sent - head */
    expect_bytes(l.peer, "after", 5);
    op_wait(&after);
    CHECK(atomic_load(&after.result) == 5);
    CHECK(piocp_cancel(l.conn, &after.req) == -ENOENT);
    expect_quiet(l.peer, 20);
    CHECK(piocp_close(l.conn) == 0);
    handed_back(&l, 0, -1);
    usable_both_ways(&l);
    piocp_engine_stats st1 = stats_of(e);
    CHECK(st1.borrowed_bytes - st0.borrowed_bytes == sent + 5);
    CHECK(st1.transmit_file_bytes - st0.transmit_file_bytes == sent - strlen(HEAD));
    CHECK(piocp_engine_stop(e, 1000) == 0);
    let_go(&l);
    piocp_engine_free(e);
    unlend(&l);
    drop_file(&file);
    free(want);
    CHECK(count_fds() == fds);
}

/* The cancel race on a borrowed socket, sends and transmits mixed; then
 * piocp_close hands it back, and the owner ends the stream. */
static lent race_lent;

static void shut_after_hand_back(piocp_conn *conn)
{
    CHECK(piocp_close(conn) == 0);
    wait_until(&race_lent.s.closed, 1, 10000);
    CHECK(atomic_load(&race_lent.s.closed) == 1);
    CHECK(shutdown(race_lent.sock, SHUT_WR) == 0); /* the owner's FIN */
}

static void test_borrow_cancel_race(void)
{
    int fds = count_fds();
    char path[] = "/tmp/pyiocp-borrow-race-XXXXXX";
    int file = mkstemp(path);
    CHECK(file >= 0);
    unlink(path);
    piocp_engine *e = new_engine(backend, 3);
    CHECK(piocp_engine_start(e) == 0);
    lend(e, true, &race_lent);
    run_race(race_lent.conn, &race_lent.s, race_lent.peer, file, shut_after_hand_back);
    handed_back(&race_lent, 0, -1);
    CHECK(still_open(race_lent.sock));
    CHECK(piocp_engine_stop(e, 1000) == 0);
    let_go(&race_lent);
    piocp_engine_free(e);
    unlend(&race_lent);
    close(file);
    CHECK(count_fds() == fds);
}

/* The peer resets mid-transfer: the transmit and the send behind it fail
 * with the reset, on_closed reports it, and the socket comes back open
 * (the test closes it). */
static void test_borrow_peer_reset(void)
{
    int fds = count_fds();
    test_file file = make_file(BIG_FILE);
    char *want = transmit_bytes(HEAD, &file, 0, 1 << 20);
    piocp_engine *e = new_engine(backend, 2);
    CHECK(piocp_engine_start(e) == 0);
    lent l;
    lend(e, true, &l);
    op t, s;
    op_init(&t, &l.s);
    op_init(&s, &l.s);
    CHECK(piocp_transmit(l.conn, &t.req, HEAD, strlen(HEAD), file.fd, 0, BIG_FILE) == 0);
    CHECK(piocp_send(l.conn, &s.req, "never", 5) == 0);
    expect_bytes(l.peer, want, 1 << 20);
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    CHECK(setsockopt(l.peer, SOL_SOCKET, SO_LINGER, &reset, sizeof reset) == 0);
    close(l.peer);
    l.peer = -1;
    op_wait(&t);
    op_wait(&s);
    long error = atomic_load(&t.result);
    fprintf(stderr, "%s: the transmit failed with %s after %zu bytes\n", backend,
            strerror((int)-error), atomic_load(&t.done));
    CHECK(error == -ECONNRESET || error == -EPIPE);
    CHECK(atomic_load(&s.result) == error);
    handed_back(&l, (int)error, -1);
    CHECK(send(l.sock, "x", 1, MSG_NOSIGNAL) < 0); /* the same broken socket, still ours */
    CHECK(piocp_engine_stop(e, 1000) == 0);
    let_go(&l);
    piocp_engine_free(e);
    close(l.sock);
    drop_file(&file);
    free(want);
    CHECK(count_fds() == fds);
}

/* Reads what is there now, up to `cap`, without waiting: the count. */
static size_t read_available(int fd, char *buf, size_t cap)
{
    size_t got = 0;
    for (;;) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (got == cap || poll(&pfd, 1, 100) != 1)
            return got;
        ssize_t n = read(fd, buf + got, cap - got);
        CHECK(n > 0); /* data, not EOF, not a reset */
        got += (size_t)n;
    }
}

/* Stop with a borrowed transmit the peer does not read: past the drain it
 * is aborted, and the socket goes back (-ECANCELED), not reset; the peer
 * reads every byte that was sent and no more.  A borrowed socket with
 * nothing to send goes back at once (0). */
static void test_borrow_stop(void)
{
    int fds = count_fds();
    test_file file = make_file(BIG_FILE);
    char *want = transmit_bytes(HEAD, &file, 0, BIG_FILE);
    size_t total = strlen(HEAD) + BIG_FILE;
    piocp_engine *e = new_engine(backend, 2);
    CHECK(piocp_engine_start(e) == 0);
    lent busy, idle;
    lend(e, true, &busy);
    lend(e, false, &idle);
    op t;
    op_init(&t, &busy.s);
    CHECK(piocp_transmit(busy.conn, &t.req, HEAD, strlen(HEAD), file.fd, 0, BIG_FILE) == 0);
    expect_bytes(busy.peer, want, 1 << 20);
    sleep_ms(100); /* stalled again */
    long long t0 = now_ms();
    CHECK(piocp_engine_stop(e, 300) == 0);
    CHECK(now_ms() - t0 >= 250);
    CHECK(atomic_load(&t.completions) == 1 && atomic_load(&t.result) == -ECANCELED);
    size_t sent = atomic_load(&t.done);
    CHECK(sent > (1 << 20) && sent < total);
    handed_back(&busy, -ECANCELED, -1);
    handed_back(&idle, 0, -1);
    char *rest = malloc(total);
    size_t got = read_available(busy.peer, rest, total);
    fprintf(stderr, "%s: %zu bytes sent before the stop, the peer read them all: %s\n", backend,
            sent, got == sent - (1 << 20) ? "yes" : "no");
    CHECK(got == sent - (1 << 20));
    CHECK(memcmp(rest, want + (1 << 20), got) == 0);
    usable_both_ways(&busy);
    usable_both_ways(&idle);
    piocp_conn *again = NULL;
    CHECK(piocp_borrow(e, idle.sock, &again) == -ESHUTDOWN && again == NULL);
    let_go(&busy);
    let_go(&idle);
    piocp_engine_free(e);
    unlend(&busy);
    unlend(&idle);
    free(rest);
    drop_file(&file);
    free(want);
    CHECK(count_fds() == fds);
}

/* The engine's idle timeout does not apply to a borrowed socket; a
 * deadline does, and hands it back (-ETIMEDOUT) rather than resetting. */
static void test_borrow_deadline(void)
{
    int fds = count_fds();
    test_file file = make_file(BIG_FILE);
    char *want = transmit_bytes(HEAD, &file, 0, BIG_FILE);
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.threads = 2;
    cfg.backend = backend;
    cfg.idle_timeout_ms = 100;
    piocp_engine *e = NULL;
    CHECK(piocp_engine_new(&e, &cfg) == 0);
    CHECK(piocp_engine_start(e) == 0);
    lent l;
    lend(e, true, &l);
    sleep_ms(600); /* six idle timeouts */
    CHECK(atomic_load(&l.s.closed) == 0 && piocp_engine_connections(e) == 1);
    op t;
    op_init(&t, &l.s);
    CHECK(piocp_transmit(l.conn, &t.req, HEAD, strlen(HEAD), file.fd, 0, BIG_FILE) == 0);
    sleep_ms(100);
    CHECK(piocp_conn_set_deadline(l.conn, 200) == 0);
    op_wait(&t);
    CHECK(atomic_load(&t.result) == -ETIMEDOUT);
    handed_back(&l, -ETIMEDOUT, -1);
    size_t sent = atomic_load(&t.done);
    char *got = malloc(sent + 1);
    CHECK(read_available(l.peer, got, sent + 1) == sent);
    CHECK(memcmp(got, want, sent) == 0);
    usable_both_ways(&l);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    let_go(&l);
    piocp_engine_free(e);
    unlend(&l);
    free(got);
    drop_file(&file);
    free(want);
    CHECK(count_fds() == fds);
}

/* What borrow refuses stays the caller's, as it was; a borrowed socket
 * takes sends and transmits only. */
static void test_borrow_errors(void)
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
    CHECK(piocp_borrow(NULL, 0, &conn) == -EINVAL);
    CHECK(piocp_borrow(e, -1, &conn) == -EINVAL);
    int blocking, blocking_peer;
    stream_pair(true, &blocking, &blocking_peer);
    CHECK(fcntl(blocking, F_SETFL, fcntl(blocking, F_GETFL) & ~O_NONBLOCK) == 0);
    sock_state before = state_of(blocking);
    CHECK(piocp_borrow(e, blocking, &conn) == -EINVAL); /* not made non-blocking for it */
    same_state(blocking, &before);
    int file = open("/dev/null", O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    int udp = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int unconnected = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int refused[] = {file, udp, unconnected};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        CHECK(piocp_borrow(e, refused[i], &conn) == -EINVAL);
        CHECK(still_open(refused[i]));
        close(refused[i]);
    }
    lent l;
    lend(e, true, &l);
    int other, other_peer;
    stream_pair(true, &other, &other_peer);
    CHECK(piocp_borrow(e, other, &conn) == -ENOSPC); /* max_connections is 1 */
    op r;
    op_init(&r, &l.s);
    char buf[8];
    CHECK(piocp_recv(l.conn, &r.req, buf, sizeof buf) == -EINVAL);
    CHECK(piocp_shutdown(l.conn, &r.req) == -EINVAL);
    CHECK(write_all(l.peer, "in", 2) == 0); /* the owner's to read: the engine does not */
    sleep_ms(50);
    CHECK(piocp_close(l.conn) == 0);
    handed_back(&l, 0, -1);
    CHECK(atomic_load(&r.completions) == 0);
    CHECK(recv(l.sock, buf, sizeof buf, 0) == 2 && memcmp(buf, "in", 2) == 0);
    usable_both_ways(&l);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    CHECK(piocp_borrow(e, other, &conn) == -ESHUTDOWN);
    CHECK(still_open(other));
    let_go(&l);
    piocp_engine_free(e);
    unlend(&l);
    close(other);
    close(other_peer);
    close(blocking);
    close(blocking_peer);
    CHECK(count_fds() == fds);
}

/* piocp_abort hands it back too: pending requests -ECANCELED, on_closed
 * -ECANCELED, no reset. */
static void test_borrow_abort(void)
{
    int fds = count_fds();
    test_file file = make_file(BIG_FILE);
    char *want = transmit_bytes(HEAD, &file, 0, BIG_FILE);
    piocp_engine *e = new_engine(backend, 2);
    CHECK(piocp_engine_start(e) == 0);
    lent l;
    lend(e, false, &l);
    op t, s;
    op_init(&t, &l.s);
    op_init(&s, &l.s);
    CHECK(piocp_transmit(l.conn, &t.req, HEAD, strlen(HEAD), file.fd, 0, BIG_FILE) == 0);
    CHECK(piocp_send(l.conn, &s.req, "queued", 6) == 0);
    sleep_ms(100);
    CHECK(piocp_abort(l.conn) == 0);
    op_wait(&t);
    op_wait(&s);
    CHECK(atomic_load(&t.result) == -ECANCELED && atomic_load(&s.result) == -ECANCELED);
    CHECK(atomic_load(&s.done) == 0);
    handed_back(&l, -ECANCELED, -1);
    size_t sent = atomic_load(&t.done);
    char *got = malloc(sent + 1);
    CHECK(read_available(l.peer, got, sent + 1) == sent);
    CHECK(memcmp(got, want, sent) == 0);
    usable_both_ways(&l);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    let_go(&l);
    piocp_engine_free(e);
    unlend(&l);
    free(got);
    drop_file(&file);
    free(want);
    CHECK(count_fds() == fds);
}

/* ------------------------------------------- scripted: exact counts -- */

/* On the scripted backend the test is the kernel: a socket takes at most
 * `STEP` bytes a step and holds PIOCP_SCRIPTED_BUFFER until the test reads
 * (piocp_scripted_output), so a transmit stops at an exact byte.  The
 * borrowed socket is a real Unix pair: the engine must leave it alone. */
enum { STEP = 1000, FULL = PIOCP_SCRIPTED_BUFFER };

static void wait_pending(piocp_conn *conn, size_t want)
{
    long long deadline = now_ms() + 5000;
    while (piocp_scripted_output_pending(conn) < want && now_ms() < deadline)
        sched_yield();
    CHECK(piocp_scripted_output_pending(conn) == want);
}

/* Takes exactly `len` bytes the connection sent and compares them. */
static void collect_bytes(piocp_conn *conn, const char *want, size_t len)
{
    char *got = malloc(len ? len : 1);
    size_t n = 0;
    long long deadline = now_ms() + 5000;
    while (n < len && now_ms() < deadline) {
        size_t k = piocp_scripted_output(conn, got + n, len - n);
        if (k == 0)
            sched_yield();
        n += k;
    }
    CHECK(n == len && memcmp(got, want, len) == 0);
    free(got);
}

typedef struct scripted_case {
    int fds;
    piocp_engine *engine;
    test_file file;
    char *want;   /* what the transmit sends: HEAD, then the whole file */
    lent l;
    op t, queued;
    piocp_engine_stats st0;
} scripted_case;

/* A borrowed socket with a transmit that filled the socket (FULL bytes
 * out) and a send queued behind it. */
static void scripted_start(scripted_case *c)
{
    c->fds = count_fds();
    c->file = make_file(200000);
    c->want = transmit_bytes(HEAD, &c->file, 0, c->file.len);
    c->engine = new_engine("scripted", 2);
    CHECK(piocp_engine_start(c->engine) == 0);
    c->st0 = stats_of(c->engine);
    lend(c->engine, false, &c->l);
    piocp_scripted_send_limit(c->l.conn, STEP);
    op_init(&c->t, &c->l.s);
    op_init(&c->queued, &c->l.s);
    CHECK(piocp_transmit(c->l.conn, &c->t.req, HEAD, strlen(HEAD), c->file.fd, 0,
                         c->file.len) == 0);
    CHECK(piocp_send(c->l.conn, &c->queued.req, "queued", 6) == 0);
    wait_pending(c->l.conn, FULL);
}

/* The real socket saw nothing of it all, and is the owner's again. */
static void scripted_finish(scripted_case *c)
{
    expect_quiet(c->l.peer, 20);
    usable_both_ways(&c->l);
    CHECK(piocp_engine_stop(c->engine, 1000) == 0);
    let_go(&c->l);
    piocp_engine_free(c->engine);
    unlend(&c->l);
    drop_file(&c->file);
    free(c->want);
    CHECK(count_fds() == c->fds);
}

/* The peer reads 10000 bytes and stops; the socket fills again; cancel:
 * done is exactly what went out, the queued send follows the cut, the
 * counters agree. */
static void test_scripted_cancel(void)
{
    scripted_case c;
    scripted_start(&c);
    collect_bytes(c.l.conn, c.want, 10000);
    wait_pending(c.l.conn, FULL);
    CHECK(cancel_from_thread(c.l.conn, &c.t.req) == 0);
    op_wait(&c.t);
    CHECK(atomic_load(&c.t.result) == -ECANCELED);
    CHECK(atomic_load(&c.t.done) == 10000 + FULL);
    collect_bytes(c.l.conn, c.want + 10000, FULL);
    collect_bytes(c.l.conn, "queued", 6);
    op_wait(&c.queued);
    CHECK(atomic_load(&c.queued.result) == 6);
    CHECK(piocp_scripted_output_pending(c.l.conn) == 0);
    CHECK(piocp_close(c.l.conn) == 0);
    handed_back(&c.l, 0, -1);
    piocp_engine_stats st1 = stats_of(c.engine);
    CHECK(st1.borrowed - c.st0.borrowed == 1);
    CHECK(st1.borrowed_bytes - c.st0.borrowed_bytes == 10000 + FULL + 6);
    CHECK(st1.transmit_file_bytes - c.st0.transmit_file_bytes == 10000 + FULL - strlen(HEAD));
    scripted_finish(&c);
}

/* The queued send is cancelled first (nothing sent), then the transmit;
 * a cancelled request is -ENOENT afterwards. */
static void test_scripted_cancel_queued(void)
{
    scripted_case c;
    scripted_start(&c);
    CHECK(piocp_cancel(c.l.conn, &c.queued.req) == 0);
    int again = piocp_cancel(c.l.conn, &c.queued.req); /* taken still, or completing */
    CHECK(again == 0 || again == -ENOENT);
    op_wait(&c.queued);
    CHECK(atomic_load(&c.queued.result) == -ECANCELED && atomic_load(&c.queued.done) == 0);
    CHECK(piocp_cancel(c.l.conn, &c.queued.req) == -ENOENT);
    CHECK(atomic_load(&c.t.completions) == 0);
    CHECK(piocp_cancel(c.l.conn, &c.t.req) == 0);
    op_wait(&c.t);
    CHECK(atomic_load(&c.t.result) == -ECANCELED && atomic_load(&c.t.done) == FULL);
    collect_bytes(c.l.conn, c.want, FULL);
    sleep_ms(20);
    CHECK(piocp_scripted_output_pending(c.l.conn) == 0);
    CHECK(piocp_close(c.l.conn) == 0);
    handed_back(&c.l, 0, -1);
    scripted_finish(&c);
}

/* The next step fails (the peer is gone): the transmit says how far it
 * got, the queued send fails too, on_closed reports the error, and the
 * socket comes back open. */
static void test_scripted_peer_error(void)
{
    scripted_case c;
    scripted_start(&c);
    piocp_scripted_send_error(c.l.conn, -EPIPE);
    collect_bytes(c.l.conn, c.want, STEP); /* room: the next step runs, and fails */
    op_wait(&c.t);
    op_wait(&c.queued);
    CHECK(atomic_load(&c.t.result) == -EPIPE && atomic_load(&c.t.done) == FULL);
    CHECK(atomic_load(&c.queued.result) == -EPIPE);
    handed_back(&c.l, -EPIPE, -1);
    scripted_finish(&c);
}

/* A stop whose drain runs out: aborted, -ECANCELED, handed back. */
static void test_scripted_stop(void)
{
    scripted_case c;
    scripted_start(&c);
    long long t0 = now_ms();
    CHECK(piocp_engine_stop(c.engine, 200) == 0);
    CHECK(now_ms() - t0 >= 150);
    CHECK(atomic_load(&c.t.completions) == 1 && atomic_load(&c.queued.completions) == 1);
    CHECK(atomic_load(&c.t.result) == -ECANCELED && atomic_load(&c.t.done) == FULL);
    CHECK(atomic_load(&c.queued.result) == -ECANCELED);
    handed_back(&c.l, -ECANCELED, -1);
    scripted_finish(&c);
}

static const test_case cases[] = {
    {"conn_cancel_recv", test_conn_cancel_recv},
    {"conn_cancel_send", test_conn_cancel_send},
    {"cancel_race", test_cancel_race},
    {"borrow_transmit_tcp", test_borrow_transmit_tcp},
    {"borrow_transmit_unix", test_borrow_transmit_unix},
    {"borrow_cancel", test_borrow_cancel},
    {"borrow_cancel_race", test_borrow_cancel_race},
    {"borrow_peer_reset", test_borrow_peer_reset},
    {"borrow_stop", test_borrow_stop},
    {"borrow_deadline", test_borrow_deadline},
    {"borrow_errors", test_borrow_errors},
    {"borrow_abort", test_borrow_abort},
    {"scripted_cancel", test_scripted_cancel},
    {"scripted_cancel_queued", test_scripted_cancel_queued},
    {"scripted_peer_error", test_scripted_peer_error},
    {"scripted_stop", test_scripted_stop},
    {NULL, NULL},
};

int main(int argc, char **argv) { return run_backend_test_case(cases, argc, argv, &backend); }
