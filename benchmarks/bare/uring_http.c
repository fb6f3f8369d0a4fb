/*
 * uring_http.c - the bare io_uring reference of the HTTP benchmarks: what a
 * single-threaded server that does nothing but answer one file from memory
 * costs, so that pyiocp's native HTTP server can be measured against the
 * floor its design allows rather than against other servers only.
 *
 *     uring_http --file PATH [--path /URL] [--host 127.0.0.1] [--port 8080]
 *                [--max-connections 1024]
 *     uring_http --check        exit 0 if this kernel lets us make a ring
 *
 * The file is read once at start.  GET (or HEAD) of its URL path (default
 * "/" + its base name; a query string is ignored) is answered with 200,
 * Date, Content-Type and Content-Length, head and body from one buffer in
 * ONE ring send; any other path gets 404.  Connections are HTTP/1.1
 * keep-alive; pipelined requests wait in the connection's buffer and are
 * answered one after the other, one send in flight per connection.
 * Malformed input, a request body, a head over 8 KiB or HTTP/1.0 get an
 * answer with "Connection: close" (400 for the bad ones), then a FIN and a
 * lingering read until the client closes.  No allocation per request or
 * per connection: connections live in a table made at start.
 *
 * It is a yardstick, not a server to expose: no timeouts (a client that
 * never closes keeps its slot), one thread, one file.
 *
 * The ring is ours (engine/backends/uring.c, raw system calls, no liburing),
 * so that the comparison is between designs, not ring libraries; the
 * benchmark runner compiles it with that file:
 *     cc -O2 -std=c11 -D_GNU_SOURCE -Iengine benchmarks/bare/uring_http.c \
 *        engine/backends/uring.c -o uring_http
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "backends/uring.h"

#if !PIOCP_URING_SUPPORTED
#error "uring_http needs <linux/io_uring.h> from Linux 5.19 or later"
#endif

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE 8192       /* a request head must fit (as pyiocp's default) */
#define SMALL_SIZE 512      /* error answers are formatted per connection */
#define RING_ENTRIES 1024
#define MAX_CQES 256
/* Copies of the 200 answer: the Date in one changes once a second, but
 * only in a copy no send is reading. */
#define ANSWER_COPIES 4

enum { OP_ACCEPT = 0, OP_RECV = 1, OP_SEND = 2 };
#define UD(index, op) (((uint64_t)(index) << 2) | (op))

typedef struct answer {
    char *data;          /* head, then the file */
    size_t head_len, len;
    size_t date_at;      /* where the 29 characters of the date are */
    unsigned readers;    /* sends in flight from this copy */
} answer;

typedef struct conn {
    int fd;              /* -1: a free slot */
    unsigned start, len; /* unread request bytes: buf[start, len) */
    const char *out;     /* the answer being sent */
    size_t out_len, out_done;
    int copy;            /* the answer copy `out` points into, or -1 */
    bool recv_armed, send_armed;
    bool close_after;    /* the answer being sent is the last */
    bool lingering;      /* FIN sent: reading until the client closes */
    bool peer_done;      /* the client sent EOF */
    bool dead;           /* closing: close(fd) once the ring gives both ops back */
    char small[SMALL_SIZE];
    char buf[BUF_SIZE];
} conn;

static piocp_uring ring;
static int listen_fd = -1;
static bool accept_paused; /* the multishot accept ended on EMFILE/ENFILE */
static conn *conns;
static int *free_slots, free_count, max_conns;
static answer answers[ANSWER_COPIES];
static int current_copy;
static char date_text[30] = "Thu, 01 Jan 1970 00:00:00 GMT";
static time_t date_second = -1;
static const char *url_path;
static size_t url_len;

static void die(const char *what, int err)
{
    fprintf(stderr, "uring_http: %s: %s\n", what, strerror(err < 0 ? -err : err));
    exit(1);
}

/* ------------------------------------------------------------ ring -- */

static struct io_uring_sqe *sqe_get(void)
{
    struct io_uring_sqe *sqe = piocp_uring_get_sqe(&ring);
    while (!sqe) {
        /* the SQ is full: hand what is queued to the kernel, then retry */
        int rc = piocp_uring_submit(&ring);
        if (rc < 0 && rc != -EBUSY && rc != -EAGAIN)
            die("io_uring_enter", rc);
        sqe = piocp_uring_get_sqe(&ring);
    }
    return sqe;
}

static void arm_accept(void)
{
    piocp_uring_prep_accept_multishot(sqe_get(), listen_fd, SOCK_NONBLOCK | SOCK_CLOEXEC,
                                      UD(0, OP_ACCEPT));
}

/* ------------------------------------------------------------ date -- */

static void tick_date(void)
{
    time_t now = time(NULL);
    if (now == date_second)
        return;
    date_second = now;
    struct tm tm;
    gmtime_r(&now, &tm);
    strftime(date_text, sizeof date_text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    /* a copy no send reads gets the new date and becomes the current one;
     * if every copy is being read, the date lags a second */
    for (int i = 1; i < ANSWER_COPIES; i++) {
        answer *a = &answers[(current_copy + i) % ANSWER_COPIES];
        if (a->readers == 0) {
            memcpy(a->data + a->date_at, date_text, 29);
            current_copy = (current_copy + i) % ANSWER_COPIES;
            return;
        }
    }
}

static void make_answers(const char *file_path)
{
    int fd = open(file_path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0)
        die(file_path, errno);
    size_t size = (size_t)st.st_size;
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nServer: uring_http\r\nDate: %s\r\n"
                     "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n\r\n",
                     date_text, size);
    const char *date = strstr(head, "Date: ") + 6;
    for (int i = 0; i < ANSWER_COPIES; i++) {
        answer *a = &answers[i];
        a->head_len = (size_t)n;
        a->len = (size_t)n + size;
        a->date_at = (size_t)(date - head);
        a->data = malloc(a->len);
        if (!a->data)
            die("malloc", ENOMEM);
        memcpy(a->data, head, (size_t)n);
        if (pread(fd, a->data + n, size, 0) != (ssize_t)size)
            die(file_path, errno ? errno : EIO);
    }
    close(fd);
}

/* ---------------------------------------------------- connections -- */

static void arm_recv(conn *c, int index)
{
    if (c->recv_armed || c->dead || c->peer_done)
        return;
    if (c->start > 0) {
        /* no recv is writing into the buffer now: move what is left forward */
        memmove(c->buf, c->buf + c->start, c->len - c->start);
        c->len -= c->start;
        c->start = 0;
    }
    if (c->len == BUF_SIZE)
        return;
    piocp_uring_prep_recv(sqe_get(), c->fd, c->buf + c->len, BUF_SIZE - c->len, 0,
                          UD(index, OP_RECV));
    c->recv_armed = true;
}

static void post_send(conn *c, int index)
{
    piocp_uring_prep_send(sqe_get(), c->fd, c->out + c->out_done, c->out_len - c->out_done,
                          MSG_NOSIGNAL, UD(index, OP_SEND));
    c->send_armed = true;
}

/* Frees the slot once the ring holds nothing of the connection. */
static void reap(conn *c, int index)
{
    if (!c->dead || c->recv_armed || c->send_armed)
        return;
    close(c->fd);
    c->fd = -1;
    free_slots[free_count++] = index;
    if (accept_paused) {
        accept_paused = false;
        arm_accept();
    }
}

static void kill_conn(conn *c, int index)
{
    if (!c->dead) {
        c->dead = true;
        /* wakes an armed recv (it completes with 0) and fails an armed send */
        if (c->recv_armed || c->send_armed)
            shutdown(c->fd, SHUT_RDWR);
    }
    reap(c, index);
}

static void release_copy(conn *c)
{
    if (c->copy >= 0)
        answers[c->copy].readers--;
    c->copy = -1;
}

/* ---------------------------------------------------------- parsing -- */

typedef struct request {
    bool bad, head_only, close, has_body, found;
} request;

static bool is_tchar(unsigned char ch)
{
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
           (ch && strchr("!#$%&'*+-.^_`|~", ch));
}

/* Whether a comma-separated header value holds `token` (any case). */
static bool has_token(const char *v, size_t n, const char *token)
{
    size_t tlen = strlen(token);
    for (size_t i = 0; i < n;) {
        while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
            i++;
        size_t j = i;
        while (j < n && v[j] != ',')
            j++;
        size_t k = j;
        while (k > i && (v[k - 1] == ' ' || v[k - 1] == '\t'))
            k--;
        if (k - i == tlen && strncasecmp(v + i, token, tlen) == 0)
            return true;
        i = j;
    }
    return false;
}

/* Reads one request head, p[0, n) ending in CRLF CRLF (RFC 9112 sections 3
 * and 5, strictly: CRLF line ends, no whitespace before a colon, no
 * obs-fold). */
static request parse(const char *p, size_t n)
{
    request r = {0};
    const char *end = p + n;
    const char *s = p;
    while (s < end && is_tchar((unsigned char)*s))
        s++;
    size_t method_len = (size_t)(s - p);
    if (method_len == 0 || s >= end || *s != ' ')
        return (request){.bad = true};
    bool get = method_len == 3 && memcmp(p, "GET", 3) == 0;
    r.head_only = method_len == 4 && memcmp(p, "HEAD", 4) == 0;
    const char *target = ++s;
    while (s < end && (unsigned char)*s > ' ' && *s != 0x7f)
        s++;
    size_t target_len = (size_t)(s - target);
    if (target_len == 0 || s >= end || *s != ' ')
        return (request){.bad = true};
    s++;
    if (end - s < 10 || memcmp(s, "HTTP/1.", 7) != 0 || (s[7] != '0' && s[7] != '1') ||
        s[8] != '\r' || s[9] != '\n')
        return (request){.bad = true};
    bool http10 = s[7] == '0';
    s += 10;
    while (!(s[0] == '\r' && s[1] == '\n')) { /* the head ends in CRLF CRLF */
        const char *name = s;
        while (is_tchar((unsigned char)*s))
            s++;
        size_t name_len = (size_t)(s - name);
        if (name_len == 0 || *s != ':')
            return (request){.bad = true};
        s++;
        while (*s == ' ' || *s == '\t')
            s++;
        const char *value = s;
        while (*s != '\r') {
            unsigned char ch = (unsigned char)*s;
            if ((ch < ' ' && ch != '\t') || ch == 0x7f)
                return (request){.bad = true};
            s++;
        }
        if (s[1] != '\n')
            return (request){.bad = true};
        size_t value_len = (size_t)(s - value);
        s += 2;
        if (name_len == 14 && strncasecmp(name, "content-length", 14) == 0) {
            for (size_t i = 0; i < value_len; i++)
                if (value[i] < '0' || value[i] > '9')
                    return (request){.bad = true};
            for (size_t i = 0; i < value_len; i++)
                if (value[i] != '0')
                    r.has_body = true;
        } else if (name_len == 17 && strncasecmp(name, "transfer-encoding", 17) == 0) {
            r.has_body = true;
        } else if (name_len == 10 && strncasecmp(name, "connection", 10) == 0) {
            if (has_token(value, value_len, "close"))
                r.close = true;
        }
    }
    /* HTTP/1.0 clients get their answer and a close: keep-alive for them
     * would need a header of its own, and no benchmark client uses it */
    if (http10)
        r.close = true;
    if (!get && !r.head_only)
        return (request){.bad = true, .close = true};
    size_t path_len = 0;
    while (path_len < target_len && target[path_len] != '?')
        path_len++;
    r.found = path_len == url_len && memcmp(target, url_path, url_len) == 0;
    return r;
}

/* ------------------------------------------------------------ answers -- */

static void send_small(conn *c, int index, int status, const char *reason, bool head_only)
{
    char body[64];
    int body_len = snprintf(body, sizeof body, "%d %s\n", status, reason);
    int n = snprintf(c->small, sizeof c->small,
                     "HTTP/1.1 %d %s\r\nServer: uring_http\r\nDate: %s\r\n"
                     "Content-Type: text/plain\r\nContent-Length: %d\r\n%s\r\n%s",
                     status, reason, date_text, body_len,
                     c->close_after ? "Connection: close\r\n" : "", head_only ? "" : body);
    c->out = c->small;
    c->out_len = (size_t)n;
    c->out_done = 0;
    post_send(c, index);
}

/* Answers the next complete request in the buffer, if no answer is being
 * sent: one send in flight per connection keeps the answers in order. */
static void process(conn *c, int index)
{
    if (c->send_armed || c->dead || c->lingering)
        return;
    /* RFC 9112 2.2: empty lines before a request line are ignored */
    while (c->len - c->start >= 2 && c->buf[c->start] == '\r' && c->buf[c->start + 1] == '\n')
        c->start += 2;
    const char *p = c->buf + c->start;
    size_t avail = c->len - c->start;
    const char *end = memmem(p, avail, "\r\n\r\n", 4);
    if (!end) {
        if (c->peer_done) {
            kill_conn(c, index); /* nothing more will come */
        } else if (avail == BUF_SIZE) {
            c->close_after = true;
            send_small(c, index, 431, "Request Header Fields Too Large", false);
        }
        return; /* else wait for more bytes */
    }
    size_t head_len = (size_t)(end - p) + 4;
    request r = parse(p, head_len);
    c->start += (unsigned)head_len;
    c->close_after = r.close || r.bad || r.has_body;
    if (r.bad || r.has_body) {
        send_small(c, index, 400, "Bad Request", false);
    } else if (!r.found) {
        send_small(c, index, 404, "Not Found", r.head_only);
    } else {
        /* the fast path: the shared answer, head and file, one send */
        answer *a = &answers[current_copy];
        a->readers++;
        c->copy = current_copy;
        c->out = a->data;
        c->out_len = r.head_only ? a->head_len : a->len;
        c->out_done = 0;
        post_send(c, index);
    }
}

/* ------------------------------------------------------ completions -- */

static void on_accept(const struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE)) {
        /* the multishot accept ended; out of descriptors, re-arming would
         * fail again at once: the clients wait in the backlog until a
         * connection of ours closes (reap) */
        if (cqe->res == -EMFILE || cqe->res == -ENFILE)
            accept_paused = true;
        else
            arm_accept();
    }
    if (cqe->res < 0)
        return;
    int fd = cqe->res;
    if (free_count == 0) {
        close(fd);
        return;
    }
    int index = free_slots[--free_count];
    conn *c = &conns[index];
    c->fd = fd;
    c->start = c->len = 0;
    c->copy = -1;
    c->recv_armed = c->send_armed = c->close_after = c->lingering = c->peer_done = c->dead =
        false;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    arm_recv(c, index);
}

static void on_recv(conn *c, int index, int res)
{
    c->recv_armed = false;
    if (c->dead || res < 0) {
        kill_conn(c, index);
        return;
    }
    if (c->lingering) {
        /* after our FIN: drop what the client still sends until it closes */
        if (res == 0) {
            kill_conn(c, index);
            return;
        }
        c->start = c->len = 0;
        arm_recv(c, index);
        return;
    }
    if (res == 0) {
        c->peer_done = true;
        process(c, index); /* answers what is complete, else closes */
        return;
    }
    c->len += (unsigned)res;
    process(c, index);
    arm_recv(c, index);
}

static void on_send(conn *c, int index, int res)
{
    c->send_armed = false;
    if (c->dead || res < 0) {
        release_copy(c);
        kill_conn(c, index);
        return;
    }
    c->out_done += (size_t)res;
    if (c->out_done < c->out_len) {
        post_send(c, index); /* the socket took part of it */
        return;
    }
    release_copy(c);
    if (c->close_after) {
        /* FIN after the answer, then read until the client closes: closing
         * with unread bytes would reset and could destroy the answer */
        shutdown(c->fd, SHUT_WR);
        if (c->peer_done) {
            kill_conn(c, index); /* its FIN came first: nothing left to read */
            return;
        }
        c->lingering = true;
        c->start = c->len = 0;
        arm_recv(c, index);
        return;
    }
    process(c, index);
    arm_recv(c, index);
}

static void on_cqe(const struct io_uring_cqe *cqe)
{
    int op = (int)(cqe->user_data & 3);
    int index = (int)(cqe->user_data >> 2);
    if (op == OP_ACCEPT)
        on_accept(cqe);
    else if (op == OP_RECV)
        on_recv(&conns[index], index, cqe->res);
    else
        on_send(&conns[index], index, cqe->res);
}

/* ------------------------------------------------------------- main -- */

static void on_signal(int signum)
{
    (void)signum;
    _exit(0); /* nothing to write out: the benchmark runner expects status 0 */
}

static int open_listener(const char *host, const char *port)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICHOST | AI_NUMERICSERV};
    struct addrinfo *ai;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "uring_http: %s:%s: %s\n", host, port, gai_strerror(rc));
        exit(2);
    }
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0)
        die("listen", errno);
    freeaddrinfo(ai);
    return fd;
}

static void usage(void)
{
    fprintf(stderr, "usage: uring_http --file PATH [--path /URL] [--host H] [--port P] "
                    "[--max-connections N]\n       uring_http --check\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1", *port = "8080", *file = NULL;
    max_conns = 1024;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--check") == 0) {
            int rc = piocp_uring_init(&ring, 8, 0);
            if (rc < 0)
                die("io_uring_setup", rc);
            puts("uring_http: io_uring is available");
            return 0;
        }
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--file") == 0)
            file = argv[++i];
        else if (strcmp(argv[i], "--path") == 0)
            url_path = argv[++i];
        else if (strcmp(argv[i], "--host") == 0)
            host = argv[++i];
        else if (strcmp(argv[i], "--port") == 0)
            port = argv[++i];
        else if (strcmp(argv[i], "--max-connections") == 0)
            max_conns = atoi(argv[++i]);
        else
            usage();
    }
    if (!file || max_conns < 1)
        usage();
    if (!url_path) {
        /* "/" + the file's base name */
        const char *base = strrchr(file, '/') ? strrchr(file, '/') + 1 : file;
        char *p = malloc(strlen(base) + 2);
        if (!p)
            die("malloc", ENOMEM);
        p[0] = '/';
        strcpy(p + 1, base);
        url_path = p;
    }
    url_len = strlen(url_path);

    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    make_answers(file);
    tick_date();
    conns = calloc((size_t)max_conns, sizeof *conns);
    free_slots = calloc((size_t)max_conns, sizeof *free_slots);
    if (!conns || !free_slots)
        die("calloc", ENOMEM);
    for (int i = max_conns - 1; i >= 0; i--) {
        conns[i].fd = -1;
        free_slots[free_count++] = i;
    }
    listen_fd = open_listener(host, port);
    int rc = piocp_uring_init(&ring, RING_ENTRIES, 0);
    if (rc < 0)
        die("io_uring_setup", rc);
    arm_accept();
    printf("uring_http: serving %s as %s on %s:%s\n", file, url_path, host, port);
    fflush(stdout);

    struct io_uring_cqe *cqes[MAX_CQES];
    for (;;) {
        /* one io_uring_enter hands every queued send and recv to the kernel
         * and waits for the next completions */
        rc = piocp_uring_submit_and_wait(&ring, 1);
        if (rc < 0 && rc != -EBUSY && rc != -EAGAIN)
            die("io_uring_enter", rc);
        tick_date();
        int n;
        while ((n = piocp_uring_peek_batch(&ring, cqes, MAX_CQES)) > 0) {
            for (int i = 0; i < n; i++)
                on_cqe(cqes[i]);
            piocp_uring_cq_advance(&ring, (unsigned)n);
        }
    }
}
