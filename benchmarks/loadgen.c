/*
 * loadgen.c - closed-loop load client for the pyiocp benchmarks.
 *
 * One thread, one epoll instance, N nonblocking TCP connections.  Every
 * connection keeps exactly one request in flight: it sends a request, reads
 * the whole answer, records the latency and sends the next request.
 *
 *   raw  : request "NAME\n", answer exactly SIZE bytes (the file's bytes)
 *   echo : request MSG bytes, answer the same MSG bytes
 *
 * Phases: connect + warmup (not counted), then the measured window of
 * DURATION seconds.  Answers completed inside the window are counted and
 * their latencies (send of the request to the last byte of the answer) go
 * into a log-linear histogram (< 0.8 % relative error).
 *
 * Progress lines go to stderr ("loadgen: measuring", "loadgen: window end")
 * so that a driver can sample the server's CPU time at the window's edges;
 * the result is one JSON line on stdout.  Exit status: 0 when every
 * connection worked and every answer had the right size (and content, when
 * checked); 1 on any error; 2 on bad usage.
 *
 * An answer is read with a buffer larger than what is left of it, so bytes
 * past its end (a wrong size) are seen and reported, not taken for the next
 * answer.
 *
 * Build: cc -O2 -std=c11 -Wall -Wextra -o loadgen loadgen.c
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ options -- */

enum mode { MODE_RAW, MODE_ECHO };

static struct {
    enum mode mode;
    const char *host;
    const char *port;
    int connections;
    double duration;
    double warmup;
    const char *name;
    long long size;           /* raw: expected answer size */
    const char *expect_file;  /* raw: file whose bytes the answer must equal */
    long long msg;            /* echo: message size */
    long verify_every;        /* check content of every Nth answer per conn; 0 = never */
    double stall;             /* seconds without progress on a request = error */
    double connect_timeout;
} opt = {
    .mode = MODE_RAW,
    .host = "127.0.0.1",
    .port = NULL,
    .connections = 50,
    .duration = 5.0,
    .warmup = 1.0,
    .name = NULL,
    .size = -1,
    .expect_file = NULL,
    .msg = 1024,
    .verify_every = 1,
    .stall = 5.0,
    .connect_timeout = 5.0,
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: loadgen --mode raw  --port P --name NAME (--size BYTES | --expect-file PATH) [options]\n"
        "       loadgen --mode echo --port P [--msg BYTES] [options]\n"
        "options:\n"
        "  --host H             server address (default 127.0.0.1)\n"
        "  --port P             server port (required)\n"
        "  --connections N      concurrent connections, one request in flight each (default 50)\n"
        "  --duration S         measured window in seconds (default 5)\n"
        "  --warmup S           seconds of load before the window, not counted (default 1)\n"
        "  --name NAME          raw: file name to request\n"
        "  --size BYTES         raw: exact size of the answer\n"
        "  --expect-file PATH   raw: the answer must equal this file's bytes (sets --size)\n"
        "  --msg BYTES          echo: message size (default 1024)\n"
        "  --verify-every N     compare content of every Nth answer of each connection\n"
        "                       (default 1 = all; 0 = sizes only; the first is always checked\n"
        "                       when content is known)\n"
        "  --stall S            a request without progress for S seconds is an error (default 5)\n"
        "  --connect-timeout S  (default 5)\n");
}

/* ------------------------------------------------------------- timing -- */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

/* ---------------------------------------------------------- histogram -- */
/* Values in nanoseconds.  Below 2^SUB_BITS+1 exact; above, each power of
 * two is split in 2^SUB_BITS linear buckets. */

#define SUB_BITS 7
#define SUB (1u << SUB_BITS)
#define NBUCKETS (SUB * 60)

static uint64_t hist[NBUCKETS];
static uint64_t hist_count, hist_max, hist_min = UINT64_MAX;
static long double hist_sum;

static unsigned bucket_of(uint64_t v)
{
    if (v < 2 * SUB)
        return (unsigned)v;
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    unsigned e = msb - SUB_BITS;                 /* >= 1 */
    unsigned mant = (unsigned)(v >> e);          /* in [SUB, 2*SUB) */
    return SUB * (e + 1) + (mant - SUB);
}

/* Midpoint of a bucket's range. */
static double bucket_value(unsigned b)
{
    if (b < 2 * SUB)
        return (double)b;
    unsigned e = b / SUB - 1;
    uint64_t mant = SUB + b % SUB;
    uint64_t lo = mant << e;
    uint64_t width = 1ull << e;
    return (double)lo + (double)(width - 1) / 2.0;
}

static void hist_add(uint64_t v)
{
    unsigned b = bucket_of(v);
    if (b >= NBUCKETS)
        b = NBUCKETS - 1;
    hist[b]++;
    hist_count++;
    hist_sum += v;
    if (v > hist_max)
        hist_max = v;
    if (v < hist_min)
        hist_min = v;
}

static void hist_reset(void)
{
    memset(hist, 0, sizeof hist);
    hist_count = 0;
    hist_max = 0;
    hist_min = UINT64_MAX;
    hist_sum = 0;
}

/* Percentile in microseconds. */
static double hist_pct(double p)
{
    if (hist_count == 0)
        return 0.0;
    uint64_t rank = (uint64_t)(p / 100.0 * (double)hist_count + 0.5);
    if (rank < 1)
        rank = 1;
    if (rank > hist_count)
        rank = hist_count;
    uint64_t seen = 0;
    for (unsigned b = 0; b < NBUCKETS; b++) {
        seen += hist[b];
        if (seen >= rank) {
            double v = bucket_value(b);
            if (v > (double)hist_max)
                v = (double)hist_max;
            if (v < (double)hist_min)
                v = (double)hist_min;
            return v / 1000.0;
        }
    }
    return (double)hist_max / 1000.0;
}

/* -------------------------------------------------------- connections -- */

enum cstate { C_CONNECTING, C_SENDING, C_RECEIVING, C_DEAD };

struct conn {
    int fd;
    int index;
    enum cstate state;
    size_t sent;          /* bytes of the request sent */
    size_t got;           /* bytes of the answer received */
    uint64_t t_start;     /* request start */
    uint64_t t_progress;  /* last byte moved */
    uint64_t answers;     /* answers completed (all phases) */
    uint64_t in_window;   /* answers completed in the measured window */
    int verify;           /* check the content of the current answer */
};

static struct conn *conns;
static int live;

static const char *request;   /* bytes to send for each request */
static size_t request_len;
static const unsigned char *expected;  /* expected answer content or NULL */
static size_t answer_len;
static unsigned char *scratch;
static size_t scratch_len;

static int epfd;
static int measuring;
static uint64_t count_done;       /* answers completed in the window */
static uint64_t bytes_in_window;  /* answer bytes received in the window */
static uint64_t errors;
static uint64_t connect_errors;
static int stopping;

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
    (void)sig;
    interrupted = 1;
}

static void fail_conn(struct conn *c, const char *fmt, ...)
{
    va_list ap;
    if (c->state == C_DEAD)
        return;
    fprintf(stderr, "loadgen: ERROR connection %d: ", c->index);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    if (c->state == C_CONNECTING)
        connect_errors++;
    errors++;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->state = C_DEAD;
    live--;
}

static void start_request(struct conn *c, uint64_t now);

/* Sends what is left of the request; moves to C_RECEIVING when done. */
static void do_send(struct conn *c, uint64_t now)
{
    while (c->sent < request_len) {
        ssize_t n = send(c->fd, request + c->sent, request_len - c->sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
            c->t_progress = now;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return; /* wait for EPOLLOUT */
        fail_conn(c, "send: %s", n < 0 ? strerror(errno) : "returned 0");
        return;
    }
    c->state = C_RECEIVING;
}

static void complete_answer(struct conn *c, uint64_t now)
{
    c->answers++;
    if (measuring) {
        count_done++;
        c->in_window++;
        hist_add(now - c->t_start);
    }
    start_request(c, now);
}

/* Reads the answer; more bytes than the answer has is an error. */
static void do_recv(struct conn *c, uint64_t now)
{
    while (c->state == C_RECEIVING) {
        /* Ask for more than is left: the request/answer exchange is strictly
         * alternating, so any byte past the answer's end is a wrong size. */
        size_t left = answer_len - c->got;
        ssize_t n = recv(c->fd, scratch, scratch_len, 0);
        if (n > 0 && (size_t)n > left) {
            fail_conn(c, "answer %llu is longer than the expected %zu bytes (%zu bytes more at least)",
                      (unsigned long long)c->answers + 1, answer_len, (size_t)n - left);
            return;
        }
        if (n > 0) {
            if (c->verify && expected && memcmp(scratch, expected + c->got, (size_t)n) != 0) {
                size_t i = 0;
                while (i < (size_t)n && scratch[i] == expected[c->got + i])
                    i++;
                fail_conn(c, "answer %llu: content differs at byte %zu (got 0x%02x, expected 0x%02x)%s",
                          (unsigned long long)c->answers + 1, c->got + i, scratch[i],
                          expected[c->got + i],
                          (c->got == 0 && n >= 6 && memcmp(scratch, "ERROR:", 6) == 0)
                              ? " - the server answered with an ERROR line" : "");
                return;
            }
            if (!expected && c->got == 0 && n >= 6 && memcmp(scratch, "ERROR:", 6) == 0 &&
                opt.mode == MODE_RAW) {
                fail_conn(c, "server answered: %.*s", (int)(n > 200 ? 200 : n), (const char *)scratch);
                return;
            }
            c->got += (size_t)n;
            c->t_progress = now;
            if (measuring)
                bytes_in_window += (uint64_t)n;
            if (c->got == answer_len) {
                /* The next request goes out now; its answer is new data and
                 * brings a new EPOLLIN edge, so don't spend a recv on it. */
                complete_answer(c, now);
                return;
            }
            continue;
        }
        if (n == 0) {
            fail_conn(c, "server closed the connection after %zu of %zu answer bytes",
                      c->got, answer_len);
            return;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            return;
        fail_conn(c, "recv: %s", strerror(errno));
        return;
    }
}

static void start_request(struct conn *c, uint64_t now)
{
    if (stopping)
        return;
    c->sent = 0;
    c->got = 0;
    c->t_start = now;
    c->t_progress = now;
    c->verify = expected != NULL &&
                (c->answers == 0 || (opt.verify_every > 0 && c->answers % (uint64_t)opt.verify_every == 0));
    c->state = C_SENDING;
    do_send(c, now);
    /* The answer cannot be there yet; wait for EPOLLIN (edge-triggered:
     * the server's reply is new data, so an edge will come). */
}

static int resolve(struct sockaddr_storage *ss, socklen_t *len)
{
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    int rc = getaddrinfo(opt.host, opt.port, &hints, &res);
    if (rc != 0 || !res) {
        fprintf(stderr, "loadgen: cannot resolve %s:%s: %s\n", opt.host, opt.port, gai_strerror(rc));
        return -1;
    }
    memcpy(ss, res->ai_addr, res->ai_addrlen);
    *len = res->ai_addrlen;
    freeaddrinfo(res);
    return 0;
}

static void open_conn(struct conn *c, const struct sockaddr_storage *ss, socklen_t len, uint64_t now)
{
    c->state = C_CONNECTING;
    c->t_start = now;
    c->t_progress = now;
    c->fd = socket(ss->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        fprintf(stderr, "loadgen: socket: %s\n", strerror(errno));
        exit(1);
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct epoll_event ev;
    memset(&ev, 0, sizeof ev);
    ev.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    ev.data.ptr = c;
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        fprintf(stderr, "loadgen: epoll_ctl: %s\n", strerror(errno));
        exit(1);
    }
    live++;
    if (connect(c->fd, (const struct sockaddr *)ss, len) == 0) {
        start_request(c, now);
        return;
    }
    if (errno != EINPROGRESS)
        fail_conn(c, "connect to %s:%s: %s", opt.host, opt.port, strerror(errno));
}

static void on_event(struct conn *c, uint32_t events, uint64_t now)
{
    if (c->state == C_DEAD)
        return;
    if (c->state == C_CONNECTING) {
        int err = 0;
        socklen_t elen = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
            err = errno;
        if (err != 0) {
            fail_conn(c, "connect to %s:%s: %s", opt.host, opt.port, strerror(err));
            return;
        }
        if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            return;
        start_request(c, now);
        if (c->state != C_RECEIVING)
            return;
        events |= EPOLLIN; /* harmless: recv says EAGAIN if nothing is there */
    }
    if (c->state == C_SENDING && (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
        do_send(c, now);
    if (c->state == C_RECEIVING && (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)))
        do_recv(c, now);
    if (c->state != C_DEAD && (events & EPOLLERR)) {
        int err = 0;
        socklen_t elen = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
        fail_conn(c, "socket error: %s", err ? strerror(err) : "EPOLLERR");
    } else if (c->state == C_SENDING && (events & (EPOLLHUP | EPOLLRDHUP)) && !(events & EPOLLOUT)) {
        fail_conn(c, "server hung up while the request was being sent");
    }
}

/* ----------------------------------------------------------- helpers -- */

static double parse_double(const char *s, const char *what)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || *end || end == s || v < 0) {
        fprintf(stderr, "loadgen: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

static long long parse_ll(const char *s, const char *what)
{
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || end == s || v < 0) {
        fprintf(stderr, "loadgen: bad %s: %s\n", what, s);
        exit(2);
    }
    return v;
}

static unsigned char *read_file(const char *path, size_t *len)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "loadgen: cannot open %s: %s\n", path, strerror(errno));
        exit(2);
    }
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "loadgen: %s is not a regular file\n", path);
        exit(2);
    }
    size_t n = (size_t)st.st_size;
    unsigned char *buf = malloc(n ? n : 1);
    if (!buf) {
        fprintf(stderr, "loadgen: out of memory\n");
        exit(1);
    }
    size_t off = 0;
    while (off < n) {
        ssize_t r = read(fd, buf + off, n - off);
        if (r <= 0) {
            fprintf(stderr, "loadgen: read %s: %s\n", path, r < 0 ? strerror(errno) : "short file");
            exit(2);
        }
        off += (size_t)r;
    }
    close(fd);
    *len = n;
    return buf;
}

/* --------------------------------------------------------------- main -- */

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"mode", required_argument, NULL, 'm'},
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"connections", required_argument, NULL, 'c'},
        {"duration", required_argument, NULL, 'd'},
        {"warmup", required_argument, NULL, 'w'},
        {"name", required_argument, NULL, 'n'},
        {"size", required_argument, NULL, 's'},
        {"expect-file", required_argument, NULL, 'f'},
        {"msg", required_argument, NULL, 'M'},
        {"verify-every", required_argument, NULL, 'v'},
        {"stall", required_argument, NULL, 'S'},
        {"connect-timeout", required_argument, NULL, 'T'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'm':
            if (strcmp(optarg, "raw") == 0)
                opt.mode = MODE_RAW;
            else if (strcmp(optarg, "echo") == 0)
                opt.mode = MODE_ECHO;
            else {
                fprintf(stderr, "loadgen: --mode must be raw or echo\n");
                return 2;
            }
            break;
        case 'H': opt.host = optarg; break;
        case 'p': opt.port = optarg; break;
        case 'c': opt.connections = (int)parse_ll(optarg, "--connections"); break;
        case 'd': opt.duration = parse_double(optarg, "--duration"); break;
        case 'w': opt.warmup = parse_double(optarg, "--warmup"); break;
        case 'n': opt.name = optarg; break;
        case 's': opt.size = parse_ll(optarg, "--size"); break;
        case 'f': opt.expect_file = optarg; break;
        case 'M': opt.msg = parse_ll(optarg, "--msg"); break;
        case 'v': opt.verify_every = (long)parse_ll(optarg, "--verify-every"); break;
        case 'S': opt.stall = parse_double(optarg, "--stall"); break;
        case 'T': opt.connect_timeout = parse_double(optarg, "--connect-timeout"); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || !opt.port || opt.connections < 1 || opt.duration <= 0) {
        usage(stderr);
        return 2;
    }

    /* Build the request and the expected answer. */
    char *req_buf = NULL;
    if (opt.mode == MODE_RAW) {
        if (!opt.name || !*opt.name || strchr(opt.name, '\n')) {
            fprintf(stderr, "loadgen: raw mode needs --name (without newlines)\n");
            return 2;
        }
        if (opt.expect_file) {
            size_t flen;
            expected = read_file(opt.expect_file, &flen);
            if (opt.size >= 0 && (size_t)opt.size != flen) {
                fprintf(stderr, "loadgen: --size %lld disagrees with %s (%zu bytes)\n",
                        opt.size, opt.expect_file, flen);
                return 2;
            }
            opt.size = (long long)flen;
        }
        if (opt.size <= 0) {
            fprintf(stderr, "loadgen: raw mode needs --size > 0 or --expect-file\n");
            return 2;
        }
        size_t nlen = strlen(opt.name);
        req_buf = malloc(nlen + 2);
        if (!req_buf)
            return 1;
        memcpy(req_buf, opt.name, nlen);
        req_buf[nlen] = '\n';
        request = req_buf;
        request_len = nlen + 1;
        answer_len = (size_t)opt.size;
    } else {
        if (opt.msg <= 0) {
            fprintf(stderr, "loadgen: --msg must be > 0\n");
            return 2;
        }
        size_t m = (size_t)opt.msg;
        req_buf = malloc(m);
        if (!req_buf)
            return 1;
        for (size_t i = 0; i < m; i++)
            req_buf[i] = (char)('a' + (i * 7 + i / 26) % 26);
        request = req_buf;
        request_len = m;
        answer_len = m;
        expected = (const unsigned char *)req_buf;
    }
    scratch_len = (256u << 10) + 1;
    if (scratch_len <= answer_len)
        scratch_len = answer_len + 1;
    scratch = malloc(scratch_len);
    if (!scratch)
        return 1;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)opt.connections + 16) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    struct sockaddr_storage ss;
    socklen_t sslen;
    if (resolve(&ss, &sslen) < 0)
        return 1;

    epfd = epoll_create1(EPOLL_CLOEXEC);
    if (epfd < 0) {
        fprintf(stderr, "loadgen: epoll_create1: %s\n", strerror(errno));
        return 1;
    }
    conns = calloc((size_t)opt.connections, sizeof *conns);
    if (!conns)
        return 1;

    const uint64_t t0 = now_ns();
    const uint64_t warm_end = t0 + (uint64_t)(opt.warmup * 1e9);
    uint64_t win_start = 0, win_end = 0;
    const uint64_t stall_ns = (uint64_t)(opt.stall * 1e9);
    const uint64_t connect_ns = (uint64_t)(opt.connect_timeout * 1e9);
    double cpu_start = 0.0, cpu_end = 0.0;

    for (int i = 0; i < opt.connections; i++) {
        conns[i].index = i;
        open_conn(&conns[i], &ss, sslen, t0);
    }

    struct epoll_event events[512];
    uint64_t next_check = t0 + 100000000ull;
    uint64_t now = t0;
    if (opt.warmup <= 0) {
        measuring = 1;
        win_start = t0;
        win_end = t0 + (uint64_t)(opt.duration * 1e9);
        cpu_start = cpu_seconds();
        fprintf(stderr, "loadgen: measuring\n");
    }

    for (;;) {
        now = now_ns();
        if (!measuring && now >= warm_end) {
            hist_reset();
            count_done = 0;
            bytes_in_window = 0;
            for (int i = 0; i < opt.connections; i++)
                conns[i].in_window = 0;
            measuring = 1;
            win_start = now;
            win_end = now + (uint64_t)(opt.duration * 1e9);
            cpu_start = cpu_seconds();
            fprintf(stderr, "loadgen: measuring\n");
        }
        if (measuring && now >= win_end)
            break;
        if (interrupted) {
            fprintf(stderr, "loadgen: interrupted\n");
            errors++;
            break;
        }
        if (live == 0) {
            fprintf(stderr, "loadgen: ERROR no connection left\n");
            break;
        }
        if (now >= next_check) {
            next_check = now + 100000000ull;
            for (int i = 0; i < opt.connections; i++) {
                struct conn *c = &conns[i];
                if (c->state == C_CONNECTING && now - c->t_start > connect_ns)
                    fail_conn(c, "connect timed out after %.1f s", opt.connect_timeout);
                else if ((c->state == C_SENDING || c->state == C_RECEIVING) &&
                         now - c->t_progress > stall_ns)
                    fail_conn(c, "stalled: no progress for %.1f s (%s; %zu of %zu answer bytes)",
                              opt.stall, c->state == C_SENDING ? "sending" : "receiving",
                              c->got, answer_len);
            }
        }
        uint64_t deadline = measuring ? win_end : warm_end;
        if (next_check < deadline)
            deadline = next_check;
        int timeout_ms = deadline > now ? (int)((deadline - now + 999999) / 1000000) : 0;
        int n = epoll_wait(epfd, events, (int)(sizeof events / sizeof events[0]), timeout_ms);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "loadgen: epoll_wait: %s\n", strerror(errno));
            return 1;
        }
        now = now_ns();
        for (int i = 0; i < n; i++)
            on_event((struct conn *)events[i].data.ptr, events[i].events, now);
    }

    stopping = 1;
    uint64_t t_end = now_ns();
    if (measuring)
        cpu_end = cpu_seconds();
    fprintf(stderr, "loadgen: window end\n");

    double seconds = measuring ? (double)(t_end - win_start) / 1e9 : 0.0;
    int in_flight = 0;
    uint64_t per_min = UINT64_MAX, per_max = 0;
    double sum = 0.0, sumsq = 0.0;
    for (int i = 0; i < opt.connections; i++) {
        const struct conn *c = &conns[i];
        if (c->state == C_SENDING || c->state == C_RECEIVING)
            in_flight++;
        if (c->in_window < per_min)
            per_min = c->in_window;
        if (c->in_window > per_max)
            per_max = c->in_window;
        sum += (double)c->in_window;
        sumsq += (double)c->in_window * (double)c->in_window;
    }
    /* Jain's fairness index over connections: 1 = all served alike, 1/N = one served. */
    double fairness = sumsq > 0 ? sum * sum / ((double)opt.connections * sumsq) : 0.0;
    if (!measuring) {
        fprintf(stderr, "loadgen: ERROR stopped before the measured window began\n");
        errors++;
    } else if (count_done == 0) {
        fprintf(stderr, "loadgen: ERROR no answer completed in the measured window\n");
        errors++;
    }

    printf("{\"mode\": \"%s\", \"connections\": %d, \"live_connections\": %d, "
           "\"request_bytes\": %zu, \"answer_bytes\": %zu, "
           "\"requests\": %llu, \"seconds\": %.6f, \"rate\": %.1f, \"mbytes_per_s\": %.2f, "
           "\"errors\": %llu, \"connect_errors\": %llu, \"in_flight_at_end\": %d, "
           "\"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
           "\"max_us\": %.1f, \"mean_us\": %.1f, \"client_cpu_s\": %.3f, "
           "\"per_conn_min\": %llu, \"per_conn_max\": %llu, \"fairness\": %.4f, "
           "\"verify_every\": %ld, \"content_checked\": %s}\n",
           opt.mode == MODE_RAW ? "raw" : "echo", opt.connections, live,
           request_len, answer_len,
           (unsigned long long)count_done, seconds,
           seconds > 0 ? (double)count_done / seconds : 0.0,
           seconds > 0 ? (double)bytes_in_window / seconds / 1e6 : 0.0,
           (unsigned long long)errors, (unsigned long long)connect_errors, in_flight,
           hist_pct(50), hist_pct(90), hist_pct(99), hist_pct(99.9),
           hist_count ? (double)hist_max / 1000.0 : 0.0,
           hist_count ? (double)(hist_sum / hist_count) / 1000.0 : 0.0,
           cpu_end - cpu_start, (unsigned long long)per_min, (unsigned long long)per_max, fairness,
           opt.verify_every, expected ? "true" : "false");
    fflush(stdout);
    for (int i = 0; i < opt.connections; i++)
        if (conns[i].fd >= 0 && conns[i].state != C_DEAD)
            close(conns[i].fd);
    return errors ? 1 : 0;
}
