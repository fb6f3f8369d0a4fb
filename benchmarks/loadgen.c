/*
 * loadgen.c - closed-loop load client for the pyiocp benchmarks.
 *
 * One thread, one epoll instance, N nonblocking TCP connections.  Every
 * connection keeps exactly one request in flight (http: --pipeline K): it
 * sends a request, reads the whole answer, records the latency and sends the
 * next request.
 *
 *   raw  : request "NAME\n", answer exactly SIZE bytes (the file's bytes)
 *   echo : request MSG bytes, answer the same MSG bytes
 *   http : request "GET /NAME HTTP/1.1" on keep-alive connections, answer an
 *          HTTP/1.1 200 with Content-Length; --pipeline K keeps K requests in
 *          flight per connection (default 1)
 *
 * HTTP answers are parsed as a stream: a head (status line and headers, at
 * most HTTP_HEAD_MAX bytes, possibly split over several reads, several
 * answers possibly in one read), then exactly Content-Length body bytes.
 * Reads take up to 256 KiB; only head bytes are copied again; body bytes
 * are counted where recv() put them and compared only when content is
 * checked.  One connection reads at most HTTP_READS_PER_WAKE times in a row
 * before the others (and the clock) get a turn.  The status must be 200,
 * the version HTTP/1.1 and Content-Length present; Transfer-Encoding (chunked)
 * and "Connection: close" are errors (this client neither decodes chunks nor
 * reconnects).  Every answer must have the same length: --size or
 * --expect-file's, else the first answer's.  A byte that does not start a
 * valid head where one is due (a body longer than announced, an answer nobody
 * asked for) is an error, as is a connection closed while answers are due.
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
 * raw, echo: an answer is read with a buffer larger than what is left of
 * it, so bytes past its end (a wrong size) are seen and reported, not taken
 * for the next answer.
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

enum mode { MODE_RAW, MODE_ECHO, MODE_HTTP };
static const char *const mode_names[] = {"raw", "echo", "http"};

static struct {
    enum mode mode;
    const char *host;
    const char *port;
    int connections;
    double duration;
    double warmup;
    const char *name;
    long long size;           /* raw, http: expected answer (body) size */
    const char *expect_file;  /* raw, http: file whose bytes the answer (body) must equal */
    int pipeline;             /* http: requests in flight per connection */
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
    .pipeline = 1,
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
        "       loadgen --mode http --port P --name NAME [--size BYTES | --expect-file PATH]\n"
        "               [--pipeline K] [options]\n"
        "options:\n"
        "  --host H             server address (default 127.0.0.1); http: also the Host header\n"
        "  --port P             server port (required)\n"
        "  --connections N      concurrent connections, one request in flight each (http: K,\n"
        "                       see --pipeline) (default 50)\n"
        "  --duration S         measured window in seconds (default 5)\n"
        "  --warmup S           seconds of load before the window, not counted (default 1)\n"
        "  --name NAME          raw: file name to request; http: path to GET (\"/NAME\";\n"
        "                       a leading / is not doubled)\n"
        "  --size BYTES         raw: exact size of the answer; http: the Content-Length every\n"
        "                       answer must have (default: the first answer's)\n"
        "  --expect-file PATH   raw, http: the answer (http: its body) must equal this file's\n"
        "                       bytes (sets --size)\n"
        "  --pipeline K         http: requests in flight per connection (default 1)\n"
        "  --msg BYTES          echo: message size (default 1024)\n"
        "  --verify-every N     compare content of every Nth answer of each connection\n"
        "                       (default 1 = all; 0 = sizes only; the first is always checked\n"
        "                       when content is known)\n"
        "  --stall S            a request without progress for S seconds is an error (default 5)\n"
        "  --connect-timeout S  (default 5)\n"
        "http mode: keep-alive HTTP/1.1; an answer must be 200 with Content-Length (no chunked\n"
        "encoding, no \"Connection: close\"); any other status, a short body or a connection\n"
        "closed while answers are due is an error.  A request counts when its body's last byte\n"
        "is in; its latency runs from when it was queued for sending (with --pipeline, it may\n"
        "wait behind earlier requests).  mbytes_per_s counts body bytes, wire_mbytes_per_s\n"
        "heads too.  Answers are read 256 KiB at a time; body bytes are neither copied out of\n"
        "the read buffer nor compared unless content is checked.\n");
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

/* raw/echo connections alternate C_SENDING and C_RECEIVING; an http
 * connection sends and receives at once (pipelining) and stays C_OPEN. */
enum cstate { C_CONNECTING, C_SENDING, C_RECEIVING, C_OPEN, C_DEAD };

#define HTTP_HEAD_MAX 8192

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
    /* http */
    int outstanding;      /* requests queued whose answer is not complete */
    size_t unsent;        /* bytes of queued requests not sent yet */
    size_t send_pos;      /* offset in the request of the next byte to send */
    uint64_t *t_queued;   /* ring of --pipeline request start times */
    int q_head;           /* oldest outstanding request in t_queued */
    int in_body;          /* 0: reading an answer's head; 1: its body */
    char *head;           /* a head split over reads, HTTP_HEAD_MAX bytes */
    size_t head_len;
    uint64_t body_got;    /* body bytes of the current answer received */
    int again;            /* on the again list: stopped reading before EAGAIN */
    uint32_t again_events;
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
static uint64_t bytes_in_window;  /* answer bytes received in the window (http: body bytes) */
static uint64_t head_bytes_in_window;  /* http: head bytes received in the window */
static char *http_requests;       /* http: pipeline + 1 copies of the request, back to back */
static long long http_body_len = -1;   /* http: every answer's length, once known */
static size_t http_last_head;     /* http: size of the last head parsed */
/* http: connections that stopped reading at HTTP_READS_PER_WAKE reads with
 * bytes still waiting; with EPOLLET no new edge will call them back, so the
 * main loop does, after the next (non-blocking) epoll_wait. */
#define HTTP_READS_PER_WAKE 16
static struct conn **again_list;
static int again_count;
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

/* --------------------------------------------------------------- http -- */

static void http_send(struct conn *c, uint64_t now)
{
    while (c->unsent > 0) {
        /* send_pos < request_len and unsent <= pipeline * request_len, so
         * this stays inside the pipeline + 1 copies. */
        ssize_t n = send(c->fd, http_requests + c->send_pos, c->unsent, MSG_NOSIGNAL);
        if (n > 0) {
            c->unsent -= (size_t)n;
            c->send_pos = (c->send_pos + (size_t)n) % request_len;
            c->t_progress = now;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return; /* EPOLLOUT (edge-triggered) will come when there is room */
        fail_conn(c, "send: %s", n < 0 ? strerror(errno) : "returned 0");
        return;
    }
}

/* Queues one request (sent by the next http_send). */
static void http_queue(struct conn *c, uint64_t now)
{
    if (stopping)
        return;
    if (c->outstanding == 0)
        c->t_progress = now;
    c->t_queued[(c->q_head + c->outstanding) % opt.pipeline] = now;
    c->outstanding++;
    c->unsent += request_len;
}

static void http_begin(struct conn *c, uint64_t now)
{
    c->state = C_OPEN;
    for (int i = 0; i < opt.pipeline; i++)
        http_queue(c, now);
    http_send(c, now);
}

static void http_complete(struct conn *c, uint64_t now)
{
    uint64_t t0 = c->t_queued[c->q_head];
    c->q_head = (c->q_head + 1) % opt.pipeline;
    c->outstanding--;
    c->in_body = 0;
    c->answers++;
    if (measuring) {
        count_done++;
        c->in_window++;
        hist_add(now - t0);
    }
    http_queue(c, now);
}

static int lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch;
}

/* Does [p, p+n) equal the lower-case name, ignoring case? */
static int name_is(const char *p, size_t n, const char *name)
{
    size_t i = 0;
    for (; i < n && name[i]; i++)
        if (lower((unsigned char)p[i]) != name[i])
            return 0;
    return i == n && name[i] == '\0';
}

/* Does the comma-separated list [p, p+n) hold the token (lower case)? */
static int has_token(const char *p, size_t n, const char *token)
{
    size_t i = 0;
    while (i < n) {
        while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == ','))
            i++;
        size_t s = i;
        while (i < n && p[i] != ',')
            i++;
        size_t e = i;
        while (e > s && (p[e - 1] == ' ' || p[e - 1] == '\t'))
            e--;
        if (e > s && name_is(p + s, e - s, token))
            return 1;
    }
    return 0;
}

/* A complete head [h, h+len) (ending with CRLF CRLF): checks it and returns
 * the body's length, or -1 after failing the connection. */
static long long http_parse_head(struct conn *c, const char *h, size_t len)
{
    const char *end = h + len - 2;    /* the last CRLF: after the last header line */
    const char *eol = memmem(h, len, "\r\n", 2);
    size_t sl = (size_t)(eol - h);
    unsigned long long ans = (unsigned long long)c->answers + 1;
    if (sl < 12 || memcmp(h, "HTTP/1.", 7) != 0 || h[8] != ' ' ||
        h[9] < '0' || h[9] > '9' || h[10] < '0' || h[10] > '9' || h[11] < '0' || h[11] > '9' ||
        (sl > 12 && h[12] != ' ')) {
        fail_conn(c, "answer %llu: not an HTTP status line: \"%.*s\"", ans, (int)(sl > 80 ? 80 : sl), h);
        return -1;
    }
    if (h[7] != '1') {
        fail_conn(c, "answer %llu: \"%.*s\": HTTP/1.1 is needed for keep-alive", ans,
                  (int)(sl > 80 ? 80 : sl), h);
        return -1;
    }
    int status = (h[9] - '0') * 100 + (h[10] - '0') * 10 + (h[11] - '0');
    if (status != 200) {
        fail_conn(c, "answer %llu: status %d (\"%.*s\")", ans, status, (int)(sl > 80 ? 80 : sl), h);
        return -1;
    }
    long long clen = -1;
    for (const char *line = eol + 2; line < end; line = eol + 2) {
        eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        size_t ll = (size_t)(eol - line);
        const char *colon = memchr(line, ':', ll);
        if (!colon || colon == line || line[0] == ' ' || line[0] == '\t' ||
            colon[-1] == ' ' || colon[-1] == '\t') {
            fail_conn(c, "answer %llu: malformed header line \"%.*s\"", ans, (int)(ll > 80 ? 80 : ll), line);
            return -1;
        }
        size_t nl = (size_t)(colon - line);
        const char *v = colon + 1, *ve = eol;
        while (v < ve && (*v == ' ' || *v == '\t'))
            v++;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        size_t vl = (size_t)(ve - v);
        if (name_is(line, nl, "content-length")) {
            long long x = 0;
            size_t i = 0;
            for (; i < vl && v[i] >= '0' && v[i] <= '9' && i < 18; i++)
                x = x * 10 + (v[i] - '0');
            if (vl == 0 || i != vl) {
                fail_conn(c, "answer %llu: bad Content-Length \"%.*s\"", ans, (int)(vl > 40 ? 40 : vl), v);
                return -1;
            }
            if (clen >= 0 && clen != x) {
                fail_conn(c, "answer %llu: two different Content-Length headers", ans);
                return -1;
            }
            clen = x;
        } else if (name_is(line, nl, "transfer-encoding")) {
            fail_conn(c, "answer %llu: Transfer-Encoding \"%.*s\": only Content-Length bodies are supported",
                      ans, (int)(vl > 40 ? 40 : vl), v);
            return -1;
        } else if (name_is(line, nl, "connection") && has_token(v, vl, "close")) {
            fail_conn(c, "answer %llu: the server says \"Connection: close\" (keep-alive is required)", ans);
            return -1;
        }
    }
    if (clen < 0) {
        fail_conn(c, "answer %llu: no Content-Length", ans);
        return -1;
    }
    if (http_body_len >= 0 && clen != http_body_len) {
        fail_conn(c, "answer %llu: Content-Length %lld, expected %lld%s", ans, clen, http_body_len,
                  opt.size >= 0 ? "" : " (the first answer's)");
        return -1;
    }
    http_body_len = clen;
    return clen;
}

/* Fails the connection when the first n bytes of a head cannot start a
 * status line: a body longer than announced is caught at its first extra
 * byte, not when a head's worth of garbage has come in. */
static int http_bad_start(struct conn *c, const char *h, size_t n)
{
    if (memcmp(h, "HTTP/1.", n < 7 ? n : 7) == 0)
        return 0;
    fail_conn(c, "answer %llu: not an HTTP status line: \"%.*s\" (the previous answer longer than "
              "its Content-Length?)", (unsigned long long)c->answers + 1, (int)(n > 40 ? 40 : n), h);
    return 1;
}

/* Takes bytes of an answer's head from [p, p+avail).  Returns 1 when the
 * head is complete (and checked), 0 when more bytes are needed, -1 after
 * failing the connection; *used says how many bytes were taken. */
static int http_head(struct conn *c, const char *p, size_t avail, size_t *used, long long *clen)
{
    const char *h;
    size_t hlen;
    if (c->head_len == 0) {
        /* Usual case: the whole head is in this read; parse it in place. */
        const char *e = memmem(p, avail < HTTP_HEAD_MAX ? avail : HTTP_HEAD_MAX, "\r\n\r\n", 4);
        if (!e) {
            if (http_bad_start(c, p, avail))
                return -1;
            if (avail >= HTTP_HEAD_MAX)
                goto too_long;
            memcpy(c->head, p, avail);
            c->head_len = avail;
            *used = avail;
            return 0;
        }
        h = p;
        hlen = (size_t)(e - p) + 4;
        *used = hlen;
    } else {
        size_t old = c->head_len;
        size_t take = avail < HTTP_HEAD_MAX - old ? avail : HTTP_HEAD_MAX - old;
        memcpy(c->head + old, p, take);
        c->head_len += take;
        size_t from = old >= 3 ? old - 3 : 0;
        const char *e = memmem(c->head + from, c->head_len - from, "\r\n\r\n", 4);
        if (!e) {
            if (old < 7 && http_bad_start(c, c->head, c->head_len))
                return -1;
            if (c->head_len >= HTTP_HEAD_MAX)
                goto too_long;
            *used = take;
            return 0;
        }
        h = c->head;
        hlen = (size_t)(e - c->head) + 4;
        *used = hlen - old;
    }
    c->head_len = 0;
    http_last_head = hlen;
    if (measuring)
        head_bytes_in_window += hlen;
    *clen = http_parse_head(c, h, hlen);
    return *clen < 0 ? -1 : 1;
too_long:
    fail_conn(c, "answer %llu: head longer than %d bytes (or not HTTP: \"%.40s\")",
              (unsigned long long)c->answers + 1, HTTP_HEAD_MAX, c->head_len ? c->head : p);
    return -1;
}

/* Consumes n bytes read from the connection.  Returns -1 after failing it. */
static int http_consume(struct conn *c, const unsigned char *data, size_t n, uint64_t now)
{
    size_t off = 0;
    while (off < n) {
        if (c->in_body) {
            uint64_t left = (uint64_t)http_body_len - c->body_got;
            size_t take = n - off < left ? n - off : (size_t)left;
            if (c->verify && memcmp(data + off, expected + c->body_got, take) != 0) {
                size_t i = 0;
                while (i < take && data[off + i] == expected[c->body_got + i])
                    i++;
                fail_conn(c, "answer %llu: body differs at byte %llu (got 0x%02x, expected 0x%02x)",
                          (unsigned long long)c->answers + 1, (unsigned long long)(c->body_got + i),
                          data[off + i], expected[c->body_got + i]);
                return -1;
            }
            c->body_got += take;
            off += take;
            if (measuring)
                bytes_in_window += take;
            if (c->body_got == (uint64_t)http_body_len)
                http_complete(c, now);
            continue;
        }
        if (c->outstanding == 0) {
            fail_conn(c, "%zu bytes came that no request asked for: \"%.*s\"", n - off,
                      (int)(n - off > 40 ? 40 : n - off), (const char *)data + off);
            return -1;
        }
        size_t used;
        long long clen;
        int r = http_head(c, (const char *)data + off, n - off, &used, &clen);
        if (r < 0)
            return -1;
        off += used;
        if (r == 0)
            break;
        c->body_got = 0;
        c->verify = expected != NULL &&
                    (c->answers == 0 || (opt.verify_every > 0 && c->answers % (uint64_t)opt.verify_every == 0));
        if (clen == 0)
            http_complete(c, now);
        else
            c->in_body = 1;
    }
    return 0;
}

static void http_recv(struct conn *c, uint32_t events, uint64_t now)
{
    /* With EPOLLET a read shorter than the buffer drained the socket, and
     * new bytes bring a new edge, so we stop there (one recv per wake-up
     * for small answers) - except when the peer's FIN is already in: it
     * brings no further edge, so read on until recv says 0. */
    int drain = (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) != 0;
    for (int reads = 0;; reads++) {
        if (reads == HTTP_READS_PER_WAKE) {
            /* A fast stream (a big body) could keep this loop going for
             * long: let the others (and the clock) have a turn. */
            if (!c->again) {
                c->again = 1;
                c->again_events = events;
                again_list[again_count++] = c;
            }
            return;
        }
        ssize_t n = recv(c->fd, scratch, scratch_len, 0);
        if (n > 0) {
            c->t_progress = now;
            if (http_consume(c, scratch, (size_t)n, now) < 0)
                return;
            if (c->unsent > 0) {
                http_send(c, now);  /* the requests that replace the completed ones */
                if (c->state == C_DEAD)
                    return;
            }
            if ((size_t)n < scratch_len && !drain)
                return;
            continue;
        }
        if (n == 0) {
            if (c->in_body)
                fail_conn(c, "server closed the connection after %llu of %lld body bytes of answer %llu",
                          (unsigned long long)c->body_got, http_body_len,
                          (unsigned long long)c->answers + 1);
            else if (c->head_len)
                fail_conn(c, "server closed the connection in the head of answer %llu (%zu bytes in)",
                          (unsigned long long)c->answers + 1, c->head_len);
            else
                fail_conn(c, "server closed the connection with %d request(s) unanswered", c->outstanding);
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
        if (opt.mode == MODE_HTTP)
            http_begin(c, now);
        else
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
        if (opt.mode == MODE_HTTP) {
            http_begin(c, now);
            if (c->state == C_DEAD)
                return;
        } else {
            start_request(c, now);
            if (c->state != C_RECEIVING)
                return;
        }
        events |= EPOLLIN; /* harmless: recv says EAGAIN if nothing is there */
    }
    if (c->state == C_OPEN) {
        if (c->unsent > 0 && (events & EPOLLOUT))
            http_send(c, now);
        if (c->state == C_OPEN && (events & (EPOLLIN | EPOLLERR | EPOLLHUP | EPOLLRDHUP)))
            http_recv(c, events, now);
        if (c->state == C_OPEN && (events & EPOLLERR)) {
            int err = 0;
            socklen_t elen = sizeof err;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen);
            fail_conn(c, "socket error: %s", err ? strerror(err) : "EPOLLERR");
        }
        return;
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
        {"pipeline", required_argument, NULL, 'P'},
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
            else if (strcmp(optarg, "http") == 0)
                opt.mode = MODE_HTTP;
            else {
                fprintf(stderr, "loadgen: --mode must be raw, echo or http\n");
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
        case 'P': opt.pipeline = (int)parse_ll(optarg, "--pipeline"); break;
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
    if (opt.pipeline < 1 || opt.pipeline > 1024 || (opt.pipeline > 1 && opt.mode != MODE_HTTP)) {
        fprintf(stderr, "loadgen: --pipeline must be 1 to 1024, and above 1 only with --mode http\n");
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
    } else if (opt.mode == MODE_HTTP) {
        if (!opt.name || !*opt.name) {
            fprintf(stderr, "loadgen: http mode needs --name (the path to GET)\n");
            return 2;
        }
        for (const char *q = opt.name; *q; q++)
            if ((unsigned char)*q <= ' ' || *q == 0x7f) {
                fprintf(stderr, "loadgen: --name must not hold spaces or control characters "
                                "(percent-encode them)\n");
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
        http_body_len = opt.size;  /* -1: the first answer sets it */
        const char *slash = opt.name[0] == '/' ? "" : "/";
        const char *lb = strchr(opt.host, ':') ? "[" : "", *rb = *lb ? "]" : "";
        int len = snprintf(NULL, 0, "GET %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\n\r\n",
                           slash, opt.name, lb, opt.host, rb, opt.port);
        req_buf = malloc((size_t)len + 1);
        if (!req_buf)
            return 1;
        snprintf(req_buf, (size_t)len + 1, "GET %s%s HTTP/1.1\r\nHost: %s%s%s:%s\r\n\r\n",
                 slash, opt.name, lb, opt.host, rb, opt.port);
        request = req_buf;
        request_len = (size_t)len;
        http_requests = malloc(request_len * (size_t)(opt.pipeline + 1));
        if (!http_requests)
            return 1;
        for (int i = 0; i <= opt.pipeline; i++)
            memcpy(http_requests + request_len * (size_t)i, request, request_len);
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
    if (opt.mode == MODE_HTTP)
        scratch_len = 256u << 10;  /* answers are parsed as a stream: no size limit */
    else if (scratch_len <= answer_len)
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
    /* A pass over the list can append the ones it has just served behind
     * those it has yet to serve: at most twice the connections. */
    again_list = calloc(2 * (size_t)opt.connections, sizeof *again_list);
    if (!conns || !again_list)
        return 1;

    const uint64_t t0 = now_ns();
    const uint64_t warm_end = t0 + (uint64_t)(opt.warmup * 1e9);
    uint64_t win_start = 0, win_end = 0;
    const uint64_t stall_ns = (uint64_t)(opt.stall * 1e9);
    const uint64_t connect_ns = (uint64_t)(opt.connect_timeout * 1e9);
    double cpu_start = 0.0, cpu_end = 0.0;

    for (int i = 0; i < opt.connections; i++) {
        conns[i].index = i;
        if (opt.mode == MODE_HTTP) {
            conns[i].t_queued = calloc((size_t)opt.pipeline, sizeof *conns[i].t_queued);
            conns[i].head = malloc(HTTP_HEAD_MAX);
            if (!conns[i].t_queued || !conns[i].head) {
                fprintf(stderr, "loadgen: out of memory\n");
                return 1;
            }
        }
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
            head_bytes_in_window = 0;
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
                else if (c->state == C_OPEN && c->outstanding > 0 && now - c->t_progress > stall_ns)
                    fail_conn(c, "stalled: no progress for %.1f s (%d request(s) in flight, %zu bytes "
                              "of them unsent; %s %llu of %lld body bytes)", opt.stall, c->outstanding,
                              c->unsent, c->in_body ? "in the body," : "waiting for a head; last answer",
                              (unsigned long long)c->body_got, http_body_len);
            }
        }
        uint64_t deadline = measuring ? win_end : warm_end;
        if (next_check < deadline)
            deadline = next_check;
        int timeout_ms = deadline > now ? (int)((deadline - now + 999999) / 1000000) : 0;
        if (again_count > 0)
            timeout_ms = 0;
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
        /* Connections that still had bytes to read; those that came back
         * in this epoll_wait's events already had their turn (and their
         * reads may have put them on the list again: they stay there). */
        int pending = again_count;
        for (int i = 0; i < pending; i++) {
            struct conn *c = again_list[i];
            c->again = 0;
            if (c->state == C_OPEN)
                http_recv(c, c->again_events, now);
        }
        /* Keep those that were put back during this pass. */
        memmove(again_list, again_list + pending, (size_t)(again_count - pending) * sizeof *again_list);
        again_count -= pending;
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
        else if (c->state == C_OPEN)
            in_flight += c->outstanding;
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
           "\"verify_every\": %ld, \"content_checked\": %s",
           mode_names[opt.mode], opt.connections, live,
           request_len, opt.mode == MODE_HTTP ? (size_t)(http_body_len > 0 ? http_body_len : 0) : answer_len,
           (unsigned long long)count_done, seconds,
           seconds > 0 ? (double)count_done / seconds : 0.0,
           seconds > 0 ? (double)bytes_in_window / seconds / 1e6 : 0.0,
           (unsigned long long)errors, (unsigned long long)connect_errors, in_flight,
           hist_pct(50), hist_pct(90), hist_pct(99), hist_pct(99.9),
           hist_count ? (double)hist_max / 1000.0 : 0.0,
           hist_count ? (double)(hist_sum / hist_count) / 1000.0 : 0.0,
           cpu_end - cpu_start, (unsigned long long)per_min, (unsigned long long)per_max, fairness,
           opt.verify_every, expected ? "true" : "false");
    if (opt.mode == MODE_HTTP)
        printf(", \"pipeline\": %d, \"head_bytes\": %zu, \"wire_mbytes_per_s\": %.2f",
               opt.pipeline, http_last_head,
               seconds > 0 ? (double)(bytes_in_window + head_bytes_in_window) / seconds / 1e6 : 0.0);
    printf("}\n");
    fflush(stdout);
    for (int i = 0; i < opt.connections; i++)
        if (conns[i].fd >= 0 && conns[i].state != C_DEAD)
            close(conns[i].fd);
    return errors ? 1 : 0;
}
