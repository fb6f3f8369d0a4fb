/* fault_scenarios.c - see fault_scenarios.h.  Each scenario's client
 * judges what it got (fault_client.h); the contract itself is checked by
 * the driver through fault_track.h and the leak counts. */
#include "fault_scenarios.h"
#include "fault_track.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A client waits this long in silence before calling the server hung:
 * far above a lingering close or a paused accept (the sweep sets 200 ms
 * and the engine sweeps every 250 ms). */
#define CLIENT_TIMEOUT_MS 4000

static const char small_txt[] = "hello, world\n";
#define BIG_LEN (200 * 1024) /* past the file cache's small files: transmitted */
#define RANGE_FIRST 1000u
#define RANGE_COUNT 150000u
/* transmit's sockets: a send buffer this small fills many times over
 * during its range, so sends wait for room (EAGAIN, a ring POLLOUT) */
#define SMALL_SNDBUF 8192

/* ---------------------------------------------------------- fixture -- */

static void write_file(const char *dir, const char *name, const char *data, size_t len)
{
    char path[600];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, data, len) != (ssize_t)len) {
        perror(path);
        exit(2);
    }
    close(fd);
}

void fixture_make(fixture *f)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(f->root, sizeof f->root, "%s/pyiocp-faults-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(f->root)) {
        perror("mkdtemp");
        exit(2);
    }
    f->big_len = BIG_LEN;
    f->big = malloc(f->big_len);
    for (size_t i = 0; i < f->big_len; i++)
        f->big[i] = (char)('a' + (i * 7 + i / 251) % 26);
    char sub[600];
    snprintf(sub, sizeof sub, "%s/sub", f->root);
    mkdir(sub, 0755);
    write_file(f->root, "small.txt", small_txt, sizeof small_txt - 1);
    write_file(f->root, "big.bin", f->big, f->big_len);
    write_file(sub, "a.txt", "a\n", 2);
}

void fixture_remove(fixture *f)
{
    static const char *const names[] = {"sub/a.txt", "sub", "small.txt", "big.bin"};
    char path[600];
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        snprintf(path, sizeof path, "%s/%s", f->root, names[i]);
        remove(path);
    }
    remove(f->root);
    free(f->big);
}

/* ------------------------------------------------------------ shared -- */

static int listen_loopback(run_ctx *r, const piocp_listener_callbacks *callbacks, void *user)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    piocp_listener *l = NULL;
    int rc = piocp_listen(r->e, (struct sockaddr *)&addr, sizeof addr, 128, callbacks, user, &l);
    if (rc < 0)
        return rc;
    struct sockaddr_storage bound;
    socklen_t len;
    rc = piocp_listener_address(l, &bound, &len);
    if (rc == 0)
        r->port = ntohs(((struct sockaddr_in *)&bound)->sin_port);
    return rc;
}

/* A listening socket of our own, adopted (piocp_listen_ex's fd): its
 * accepted sockets inherit its small send buffer.  Adopted listeners are
 * shared ones for the engine (io_uring polls and accepts itself). */
static int listen_adopted(run_ctx *r, const piocp_listener_callbacks *callbacks, void *user,
                          int sndbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof addr;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf) < 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 128) < 0 ||
        getsockname(fd, (struct sockaddr *)&addr, &len) < 0) {
        perror("transmit scenario: listen");
        exit(2);
    }
    r->port = ntohs(addr.sin_port);
    piocp_listen_options options;
    piocp_listen_options_init(&options);
    options.fd = fd; /* the engine's from here on, even if it refuses it */
    return piocp_listen_ex(r->e, &options, callbacks, user, NULL);
}

static void say(run_ctx *r, verdict v, const char *why)
{
    r->v = v;
    snprintf(r->why, sizeof r->why, "%s", why);
}

/* The client's whole answer: read to EOF and judged by `judge`. */
static void read_and_judge(run_ctx *r, int fd, verdict (*judge)(run_ctx *, const char *, size_t))
{
    char *got;
    bool hung;
    size_t len = client_read_all(fd, &got, CLIENT_TIMEOUT_MS, &hung);
    verdict v = judge(r, got, len);
    if (hung && v != V_CORRUPT)
        v = V_HUNG;
    char why[96];
    snprintf(why, sizeof why, "%zu bytes, then %s", len, hung ? "silence" : "EOF or reset");
    say(r, v, why);
    free(got);
}

static int connect_or_say(run_ctx *r)
{
    int fd = client_connect(r->port, CLIENT_TIMEOUT_MS);
    if (fd < 0) {
        say(r, V_LESS, "connect refused");
        atomic_store(&r->sent, 1);
    }
    return fd;
}

/* -------------------------------------------------------------- echo -- */

static void echo_recv(tracked_req *tr, ssize_t n);

static void echo_post_recv(tracked_conn *tc) { track_recv(track_req(tc, 65536, NULL, echo_recv)); }

static void echo_recv(tracked_req *tr, ssize_t n)
{
    if (n == 0)
        piocp_close(tr->tc->conn);
    if (n <= 0)
        return; /* an error ends the connection: the engine closes it */
    if (track_send(track_req(tr->tc, (size_t)n, tr->buf, NULL)) == 0)
        echo_post_recv(tr->tc);
}

static void echo_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l, (void)user;
    tracked_conn *tc = track_conn(conn, NULL);
    if (tc)
        echo_post_recv(tc);
}

static const piocp_listener_callbacks echo_callbacks = {.on_connection = echo_connection};

static int echo_setup(run_ctx *r) { return listen_loopback(r, &echo_callbacks, NULL); }

/* Three messages, each echoed whole before the next (one small, one a
 * segment, one past a socket buffer), then a half-close and EOF. */
static void echo_exchange(run_ctx *r)
{
    static const size_t sizes[] = {5, 3000, 100000};
    int fd = connect_or_say(r);
    if (fd < 0)
        return;
    say(r, V_OK, "echoed everything");
    char *want = malloc(100000), *got = malloc(100000);
    for (size_t m = 0; m < 3 && r->v == V_OK; m++) {
        for (size_t i = 0; i < sizes[m]; i++)
            want[i] = (char)('A' + (i + m) % 23);
        int sent = client_send_all(fd, want, sizes[m]);
        atomic_store(&r->sent, 1);
        if (sent < 0) {
            say(r, V_LESS, "send failed (reset)");
            break;
        }
        bool hung;
        size_t n = client_read_upto(fd, got, sizes[m], CLIENT_TIMEOUT_MS, &hung);
        verdict v = compare_stream(got, n, want, sizes[m]);
        if (v != V_OK) {
            char why[96];
            snprintf(why, sizeof why, "message %zu: %zu of %zu bytes, then %s", m, n, sizes[m],
                     hung ? "silence" : "EOF or reset");
            say(r, hung && v != V_CORRUPT ? V_HUNG : v, why);
        }
    }
    if (r->v == V_OK) {
        shutdown(fd, SHUT_WR);
        bool hung;
        size_t extra = client_read_upto(fd, got, 1, CLIENT_TIMEOUT_MS, &hung);
        if (extra || hung)
            say(r, extra ? V_CORRUPT : V_HUNG, extra ? "bytes after the echo" : "no EOF");
    }
    free(want);
    free(got);
    close(fd);
}

/* ------------------------------------------------------------ cancel -- */

#define BANNER_LEN 100000

/* The banner's bytes, the same on both sides. */
static void banner(char *out)
{
    for (size_t i = 0; i < BANNER_LEN; i++)
        out[i] = (char)('0' + i % 10);
}

static void cancel_sent(tracked_req *tr, ssize_t result)
{
    tracked_conn *tc = tr->tc;
    if (result < 0 && result != -ECANCELED)
        return; /* broken: the engine aborts it */
    size_t done = result >= 0 ? (size_t)result : tr->req.done;
    if (done < tr->len) {
        /* cancelled halfway: the rest follows straight after, so the
         * stream stays whole (piocp_cancel's contract) */
        if (track_send(track_req(tc, tr->len - done, tr->buf + done, NULL)) != 0)
            return;
    }
    echo_post_recv(tc);
}

/* The recv posted and cancelled at once ended: now a banner, cancelled
 * at once too, then an echo. */
static void cancel_received(tracked_req *tr, ssize_t n)
{
    tracked_conn *tc = tr->tc;
    if (n != -ECANCELED)
        return; /* the client sends nothing before the banner: an error */
    char *b = malloc(BANNER_LEN);
    banner(b);
    tracked_req *s = track_req(tc, BANNER_LEN, b, cancel_sent);
    free(b);
    if (track_send(s) == 0)
        piocp_cancel(tc->conn, &s->req);
}

static void cancel_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l, (void)user;
    tracked_conn *tc = track_conn(conn, NULL);
    if (!tc)
        return;
    tracked_req *r = track_req(tc, 64, NULL, cancel_received);
    if (track_recv(r) == 0)
        piocp_cancel(conn, &r->req);
}

static const piocp_listener_callbacks cancel_callbacks = {.on_connection = cancel_connection};

static int cancel_setup(run_ctx *r) { return listen_loopback(r, &cancel_callbacks, NULL); }

/* The banner whole (whatever the cancel cut), then an echo, then EOF. */
static void cancel_exchange(run_ctx *r)
{
    int fd = connect_or_say(r);
    if (fd < 0)
        return;
    atomic_store(&r->sent, 1);
    char *want = malloc(BANNER_LEN), *got = malloc(BANNER_LEN);
    banner(want);
    bool hung;
    size_t n = client_read_upto(fd, got, BANNER_LEN, CLIENT_TIMEOUT_MS, &hung);
    verdict v = compare_stream(got, n, want, BANNER_LEN);
    say(r, hung && v != V_CORRUPT ? V_HUNG : v, "banner");
    if (v == V_OK) {
        if (client_send_all(fd, "hello", 5) < 0) {
            say(r, V_LESS, "send failed (reset)");
        } else {
            n = client_read_upto(fd, got, 5, CLIENT_TIMEOUT_MS, &hung);
            v = compare_stream(got, n, "hello", 5);
            say(r, hung && v != V_CORRUPT ? V_HUNG : v, "banner, echo");
        }
    }
    if (r->v == V_OK) {
        shutdown(fd, SHUT_WR);
        size_t extra = client_read_upto(fd, got, 1, CLIENT_TIMEOUT_MS, &hung);
        if (extra || hung)
            say(r, extra ? V_CORRUPT : V_HUNG, extra ? "bytes after the echo" : "no EOF");
    }
    free(want);
    free(got);
    close(fd);
}

/* ---------------------------------------------------------- transmit -- */

static const char transmit_head[] = "TRANSMIT 1000+150000\n";

static void transmit_recv(tracked_req *tr, ssize_t n)
{
    if (n <= 0) {
        if (n == 0)
            piocp_close(tr->tc->conn);
        return;
    }
    run_ctx *r = tr->tc->user;
    tracked_req *t = track_req(tr->tc, sizeof transmit_head - 1, transmit_head, NULL);
    if (track_transmit(t, r->file, RANGE_FIRST, RANGE_COUNT) == 0)
        piocp_close(tr->tc->conn);
}

static void transmit_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    tracked_conn *tc = track_conn(conn, user);
    if (tc)
        track_recv(track_req(tc, 64, NULL, transmit_recv));
}

static const piocp_listener_callbacks transmit_callbacks = {.on_connection = transmit_connection};

static int transmit_setup(run_ctx *r)
{
    char path[600];
    snprintf(path, sizeof path, "%s/big.bin", r->fx->root);
    r->file = open(path, O_RDONLY | O_CLOEXEC);
    if (r->file < 0)
        return -errno;
    int rc = listen_adopted(r, &transmit_callbacks, r, SMALL_SNDBUF);
    if (rc < 0) {
        close(r->file);
        r->file = -1;
    }
    return rc;
}

static void transmit_teardown(run_ctx *r)
{
    if (r->file >= 0)
        close(r->file);
    r->file = -1;
}

static verdict judge_transmit(run_ctx *r, const char *got, size_t len)
{
    size_t head = sizeof transmit_head - 1, want_len = head + RANGE_COUNT;
    char *want = malloc(want_len);
    memcpy(want, transmit_head, head);
    memcpy(want + head, r->fx->big + RANGE_FIRST, RANGE_COUNT);
    verdict v = compare_stream(got, len, want, want_len);
    free(want);
    return v;
}

/* A slow reader too: a small receive buffer, read after a pause. */
static void transmit_exchange(run_ctx *r)
{
    int fd = client_connect_small(r->port, CLIENT_TIMEOUT_MS, 4096);
    if (fd < 0) {
        say(r, V_LESS, "connect refused");
        atomic_store(&r->sent, 1);
        return;
    }
    int sent = client_send_all(fd, "go\n", 3);
    atomic_store(&r->sent, 1);
    usleep(5000);
    if (sent < 0)
        say(r, V_LESS, "send failed (reset)");
    else
        read_and_judge(r, fd, judge_transmit);
    close(fd);
}

/* ---------------------------------------------- the native servers -- */

/* The access log, a file of the run's own (the point "write"). */
static piocp_file open_log(run_ctx *r)
{
    char path[600];
    snprintf(path, sizeof path, "%s/access-%ld.log", r->fx->root, (long)getpid());
    return open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

static void close_log(run_ctx *r)
{
    if (r->file < 0)
        return;
    close(r->file);
    r->file = -1;
    char path[600];
    snprintf(path, sizeof path, "%s/access-%ld.log", r->fx->root, (long)getpid());
    remove(path);
}

static int http_setup(run_ctx *r)
{
    piocp_http_options options;
    piocp_http_options_init(&options);
    r->file = open_log(r);
    options.access_log_fd = r->file;
    piocp_http_server *s = NULL;
    int rc = piocp_http_server_new(&s, r->fx->root, &options);
    if (rc == 0) {
        r->server = s;
        rc = listen_loopback(r, &piocp_http_server_callbacks, s);
    }
    return rc;
}

static void http_teardown(run_ctx *r)
{
    piocp_http_server_free(r->server);
    r->server = NULL;
    close_log(r);
}

static const char http_requests[] =
    "GET /small.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    "GET /big.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-150999\r\n\r\n"
    "HEAD /big.bin HTTP/1.1\r\nHost: x\r\n\r\n"
    "GET /sub/ HTTP/1.1\r\nHost: x\r\n\r\n"
    "GET /missing.txt HTTP/1.1\r\nHost: x\r\n\r\n"
    "GET /big.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";

static verdict judge_http(run_ctx *r, const char *got, size_t len)
{
    const char *big = r->fx->big;
    const http_expect want[] = {
        {200, false, small_txt, sizeof small_txt - 1},
        {206, false, big + RANGE_FIRST, RANGE_COUNT},
        {200, true, NULL, 0},
        {200, false, NULL, 0},
        {404, false, NULL, 0},
        {200, false, big, r->fx->big_len},
    };
    return check_http_stream(got, len, want, (int)(sizeof want / sizeof want[0]));
}

/* Six pipelined requests in one write: a cached small file, a range of a
 * big one (transmit), a HEAD, a listing, a 404, the whole big file. */
static void http_exchange(run_ctx *r)
{
    int fd = connect_or_say(r);
    if (fd < 0)
        return;
    int sent = client_send_all(fd, http_requests, sizeof http_requests - 1);
    atomic_store(&r->sent, 1);
    if (sent < 0)
        say(r, V_LESS, "send failed (reset)");
    else
        read_and_judge(r, fd, judge_http);
    close(fd);
}

static int raw_setup(run_ctx *r)
{
    piocp_raw_options options;
    piocp_raw_options_init(&options);
    r->file = open_log(r);
    options.access_log_fd = r->file;
    piocp_raw_server *s = NULL;
    int rc = piocp_raw_server_new(&s, r->fx->root, &options);
    if (rc == 0) {
        r->server = s;
        rc = listen_loopback(r, &piocp_raw_server_callbacks, s);
    }
    return rc;
}

static void raw_teardown(run_ctx *r)
{
    piocp_raw_server_free(r->server);
    r->server = NULL;
    close_log(r);
}

static verdict judge_raw(run_ctx *r, const char *got, size_t len)
{
    const raw_expect want[] = {
        {small_txt, sizeof small_txt - 1},
        {r->fx->big, r->fx->big_len},
        {NULL, 0},
    };
    return check_raw_stream(got, len, want, 3);
}

/* Three names at once, the last missing, then a half-close: the server
 * answers each and closes. */
static void raw_exchange(run_ctx *r)
{
    int fd = connect_or_say(r);
    if (fd < 0)
        return;
    static const char names[] = "small.txt\nbig.bin\nmissing.txt\n";
    int sent = client_send_all(fd, names, sizeof names - 1);
    atomic_store(&r->sent, 1);
    if (sent < 0) {
        say(r, V_LESS, "send failed (reset)");
    } else {
        shutdown(fd, SHUT_WR);
        read_and_judge(r, fd, judge_raw);
    }
    close(fd);
}

/* One connection at a time: of two clients at once, one is refused with
 * a 503 (on_refused: a non-blocking send) while the other is served.
 * Which one depends on when the last run's connection closed (a lingering
 * close): each may get either answer. */
static void refuse_configure(piocp_config *cfg) { cfg->max_connections = 1; }

static verdict judge_either(run_ctx *r, const char *got, size_t len)
{
    (void)r;
    const http_expect served[] = {{200, false, small_txt, sizeof small_txt - 1}};
    const http_expect refused[] = {{503, false, NULL, 0}};
    bool is_503 = len >= 12 && memcmp(got, "HTTP/1.1 503", 12) == 0;
    return check_http_stream(got, len, is_503 ? refused : served, 1);
}

static void refuse_exchange(run_ctx *r)
{
    static const char get[] = "GET /small.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    int fds[2];
    for (int i = 0; i < 2; i++) {
        fds[i] = connect_or_say(r);
        if (fds[i] < 0 || client_send_all(fds[i], get, sizeof get - 1) < 0) {
            if (fds[i] >= 0)
                say(r, V_LESS, "send failed (reset)");
            atomic_store(&r->sent, 1);
            if (i == 1)
                close(fds[0]);
            if (fds[i] >= 0)
                close(fds[i]);
            return;
        }
    }
    atomic_store(&r->sent, 1);
    verdict worst = V_OK;
    char why[64] = "";
    for (int i = 0; i < 2; i++) {
        read_and_judge(r, fds[i], judge_either);
        if (r->v > worst) {
            worst = r->v;
            snprintf(why, sizeof why, "client %d: %.50s", i, r->why);
        }
        close(fds[i]);
    }
    say(r, worst, why[0] ? why : "one served, one refused (or both served)");
}

/* ----------------------------------------------------------- connect -- */

typedef struct connect_state {
    run_ctx *r;
    int index;
    atomic_int pong;      /* the engine side read the answer */
    atomic_int failed;    /* done ran with an error */
} connect_state;

static void connect_recv(tracked_req *tr, ssize_t n)
{
    connect_state *cs = tr->tc->user;
    if (n == 4 && memcmp(tr->buf, "pong", 4) == 0)
        atomic_store(&cs->pong, 1);
    if (n >= 0)
        piocp_close(tr->tc->conn);
}

static void connect_done(piocp_conn *conn, int error, void *user)
{
    connect_state *cs = user;
    track_connect_done(cs->index);
    if (error || !conn) {
        atomic_store(&cs->failed, 1);
        return;
    }
    tracked_conn *tc = track_conn(conn, cs);
    if (!tc)
        return;
    if (track_send(track_req(tc, 4, "ping", NULL)) == 0)
        track_recv(track_req(tc, 4, NULL, connect_recv));
}

/* The states of a run's connects (one per exchange): they outlive every
 * callback, so they are freed only after the engine (teardown). */
static connect_state connect_states[8];

static int connect_setup(run_ctx *r)
{
    (void)r;
    memset(connect_states, 0, sizeof connect_states);
    return 0; /* the peer is the client's own listening socket */
}

/* piocp_connect to a socket of ours: the engine sends "ping", we answer
 * "pong", the engine closes. */
static void connect_exchange(run_ctx *r)
{
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t alen = sizeof addr;
    if (lfd < 0 || bind(lfd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(lfd, 4) < 0 ||
        getsockname(lfd, (struct sockaddr *)&addr, &alen) < 0) {
        perror("connect scenario: listen");
        exit(2);
    }
    int index = atomic_fetch_add(&r->connects, 1);
    if (index >= (int)(sizeof connect_states / sizeof connect_states[0])) {
        fprintf(stderr, "connect scenario: too many connects in one run\n");
        exit(2);
    }
    connect_state *cs = &connect_states[index];
    cs->r = r;
    cs->index = index;
    track_connect_posted(cs->index);
    int rc = piocp_connect(r->e, (struct sockaddr *)&addr, sizeof addr, 3000, connect_done, cs);
    atomic_store(&r->sent, 1);
    if (rc < 0) {
        track_connect_done(cs->index); /* refused at once: done never runs */
        say(r, V_LESS, "piocp_connect refused");
        close(lfd);
        return;
    }
    /* the connection comes, or done says why not */
    struct pollfd p = {.fd = lfd, .events = POLLIN};
    int waited = 0, ready = 0;
    while (waited < CLIENT_TIMEOUT_MS && !(ready = poll(&p, 1, 20)) && !atomic_load(&cs->failed))
        waited += 20;
    if (ready <= 0) {
        say(r, atomic_load(&cs->failed) ? V_LESS : V_HUNG,
            "no connection came, and done did not say why");
        close(lfd);
        return;
    }
    int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
    close(lfd);
    char ping[4];
    bool hung;
    size_t n = fd < 0 ? 0 : client_read_upto(fd, ping, 4, CLIENT_TIMEOUT_MS, &hung);
    if (n < 4 || memcmp(ping, "ping", 4) != 0 || client_send_all(fd, "pong", 4) < 0) {
        verdict v = compare_stream(ping, n, "ping", 4);
        say(r, v == V_CORRUPT ? V_CORRUPT : V_LESS, v == V_OK ? "ping, then no pong went" : "no ping");
    } else {
        char rest[1];
        size_t extra = client_read_upto(fd, rest, 1, CLIENT_TIMEOUT_MS, &hung);
        /* the engine reads the pong before it closes, so EOF means it has */
        verdict v = extra ? V_CORRUPT : hung ? V_HUNG : atomic_load(&cs->pong) ? V_OK : V_LESS;
        say(r, v, "ping, pong, EOF");
    }
    if (fd >= 0)
        close(fd);
}

/* --------------------------------------------------------------------- */

const scenario scenarios[] = {
    {"echo", NULL, echo_setup, echo_exchange, NULL},
    {"cancel", NULL, cancel_setup, cancel_exchange, NULL},
    {"transmit", NULL, transmit_setup, transmit_exchange, transmit_teardown},
    {"http", NULL, http_setup, http_exchange, http_teardown},
    {"refuse", refuse_configure, http_setup, refuse_exchange, http_teardown},
    {"raw", NULL, raw_setup, raw_exchange, raw_teardown},
    {"connect", NULL, connect_setup, connect_exchange, NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

const scenario *scenario_find(const char *name)
{
    for (const scenario *s = scenarios; s->name; s++)
        if (strcmp(s->name, name) == 0)
            return s;
    return NULL;
}
