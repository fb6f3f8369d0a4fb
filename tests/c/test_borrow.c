/*
 * test_borrow.c - per-request cancel (piocp_cancel) on accepted
 * connections, with real sockets on 127.0.0.1.  `test_borrow NAME BACKEND`
 * runs one case.  Checked throughout: every request completes exactly
 * once, none after on_closed, on_closed once; the byte stream the peer
 * reads is exactly what the completions say was sent; no descriptor leaks.
 */
#include "test_backend.h"

#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

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
    int port = listen_loopback(f->engine, &callbacks, &f->s);
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
 * were sent, in posting order. */
enum { RACE_SENDS = 3000, RACE_LEN = 100 };

typedef struct race {
    fixture *f;
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
        int rc = piocp_cancel(r->f->conn, &r->ops[i + 1].req);
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
        ssize_t n = read(r->f->client, in + got, cap + 1 - got);
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

static void test_cancel_race(void)
{
    fixture f;
    fixture_open(&f, 3);
    race *r = calloc(1, sizeof *r);
    r->f = &f;
    for (int i = 0; i < RACE_SENDS; i++) {
        op_init(&r->ops[i], &f.s);
        r->ops[i].arg = r;
        if (i % 3 == 1)
            r->ops[i].then = cancel_next;
        memset(r->payload[i], 'A' + i % 26, RACE_LEN);
        memcpy(r->payload[i], &i, sizeof i);
    }
    for (int i = 0; i < RACE_SENDS; i++) {
        CHECK(piocp_send(f.conn, &r->ops[i].req, r->payload[i], RACE_LEN) == 0);
        atomic_store(&r->posted, i + 1);
        if (i % 2 == 0) {
            int target = i - (i % 7); /* itself, or one a little older */
            int rc = piocp_cancel(f.conn, &r->ops[target].req);
            CHECK(rc == 0 || rc == -ENOENT);
            atomic_fetch_add(rc == 0 ? &r->taken : &r->enoent, 1);
        }
    }
    wait_until(&f.s.completed, RACE_SENDS, 20000);
    CHECK(atomic_load(&f.s.completed) == RACE_SENDS);
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
    CHECK(piocp_close(f.conn) == 0); /* the FIN ends the reader's stream */
    CHECK(pthread_join(reader, NULL) == 0);
    fixture_close(&f);
    free(r);
}

static const test_case cases[] = {
    {"conn_cancel_recv", test_conn_cancel_recv},
    {"conn_cancel_send", test_conn_cancel_send},
    {"cancel_race", test_cancel_race},
    {NULL, NULL},
};

int main(int argc, char **argv) { return run_backend_test_case(cases, argc, argv, &backend); }
