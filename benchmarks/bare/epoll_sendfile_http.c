/*
 * epoll_sendfile_http.c - a bare epoll + sendfile() HTTP/1.1 file responder.
 *
 * A reference point for pyiocp's large-file HTTP transfers: how fast one
 * thread of plain C moves a file with the kernel's own tools, with nothing
 * in the way (no routing, no file cache, no logging, no threads).
 *
 *   epoll_sendfile_http --port P --file PATH [--path /NAME] [--host ADDR]
 *
 * It opens PATH once at start and answers "GET /NAME" (default: "/" and the
 * file's base name; a query string is ignored) with
 *
 *   HTTP/1.1 200 OK, Content-Length, Content-Type: application/octet-stream
 *
 * sent with send(MSG_MORE), then the whole file with sendfile() from the one
 * descriptor (each connection keeps its own offset).  HEAD gets the head
 * alone, another path 404, another method 405 (both with a short body).
 * Keep-alive is the default; "Connection: close" or HTTP/1.0 close the
 * connection after the answer.  A malformed request, one with a body
 * (Content-Length other than 0, Transfer-Encoding) or a head over 8 KiB gets
 * 400 (431) and the connection is closed.  Pipelined requests are answered in
 * order: the next request is parsed only when the previous answer is fully
 * handed to the kernel.
 *
 * One thread, one epoll instance, edge-triggered: a connection reads and
 * sends until EAGAIN, and resumes on the next EPOLLIN / EPOLLOUT edge.  The
 * listening socket binds ADDR (default 127.0.0.1).  It prints
 * "listening on ADDR:PORT" once it accepts, and exits 0 on SIGINT/SIGTERM.
 *
 * benchmarks/bare/ holds such bare reference servers, one self-contained C
 * file each, built with the system compiler:
 *
 *   cc -O2 -std=c11 -Wall -Wextra -o epoll_sendfile_http epoll_sendfile_http.c
 *
 * Linux only (epoll, sendfile, accept4, MSG_MORE).
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
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define IN_MAX 8192    /* largest request head */
#define OUT_MAX 512    /* largest answer head (with a short error body) */

struct conn {
    int fd;
    char in[IN_MAX];
    size_t in_len;
    char out[OUT_MAX];     /* answer head (and error body) not sent yet */
    size_t out_pos, out_len;
    off_t file_pos;        /* next file byte to send */
    off_t file_end;        /* file_pos == file_end: no file bytes to send */
    int close_after;       /* close once the current answer is out */
};

static int file_fd;
static off_t file_size;
static const char *url_path;
static volatile sig_atomic_t stop;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void conn_close(int ep, struct conn *c)
{
    epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    free(c);
}

static int lower(int ch)
{
    return ch >= 'A' && ch <= 'Z' ? ch + ('a' - 'A') : ch;
}

static int name_is(const char *p, size_t n, const char *name)
{
    size_t i = 0;
    for (; i < n && name[i]; i++)
        if (lower((unsigned char)p[i]) != name[i])
            return 0;
    return i == n && name[i] == '\0';
}

/* Is the token (lower case) in the comma-separated list [p, p+n)? */
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

/* Prepares an answer in c->out (and the file range when it has the file). */
static void answer(struct conn *c, int status, int head_only)
{
    const char *reason = status == 200 ? "OK" : status == 404 ? "Not Found" : status == 405 ? "Method Not Allowed"
                       : status == 431 ? "Request Header Fields Too Large" : "Bad Request";
    const char *conn_hdr = c->close_after ? "Connection: close\r\n" : "";
    int n;
    if (status == 200) {
        n = snprintf(c->out, OUT_MAX,
                     "HTTP/1.1 200 OK\r\nContent-Length: %lld\r\nContent-Type: application/octet-stream\r\n%s\r\n",
                     (long long)file_size, conn_hdr);
        c->file_pos = 0;
        c->file_end = head_only ? 0 : file_size;
    } else {
        char body[64];
        int bl = snprintf(body, sizeof body, "%d %s\n", status, reason);
        n = snprintf(c->out, OUT_MAX,
                     "HTTP/1.1 %d %s\r\nContent-Length: %d\r\nContent-Type: text/plain\r\n%s%s\r\n%s",
                     status, reason, bl, status == 405 ? "Allow: GET, HEAD\r\n" : "", conn_hdr,
                     head_only ? "" : body);
        c->file_pos = c->file_end = 0;
    }
    c->out_pos = 0;
    c->out_len = (size_t)n;
}

/* Parses one request from the head of c->in if a whole head is there.
 * Returns 1 (an answer is prepared), 0 (need more bytes). */
static int take_request(struct conn *c)
{
    char *end = memmem(c->in, c->in_len, "\r\n\r\n", 4);
    if (!end) {
        if (c->in_len == IN_MAX) {
            c->close_after = 1;
            answer(c, 431, 0);
            c->in_len = 0;
            return 1;
        }
        return 0;
    }
    size_t hlen = (size_t)(end - c->in) + 4;
    char *eol = memmem(c->in, hlen, "\r\n", 2);
    /* Request line: METHOD SP TARGET SP HTTP/1.x */
    char *sp1 = memchr(c->in, ' ', (size_t)(eol - c->in));
    char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    int bad = !sp1 || !sp2 || sp2 == sp1 + 1 || eol - sp2 != 9 || memcmp(sp2 + 1, "HTTP/1.", 7) != 0 ||
              (sp2[8] != '0' && sp2[8] != '1');
    int http10 = !bad && sp2[8] == '0';
    int keep_alive_10 = 0;
    c->close_after = http10;
    for (char *line = eol + 2; !bad && line < end; line = eol + 2) {
        eol = memmem(line, (size_t)(end + 2 - line), "\r\n", 2);
        size_t ll = (size_t)(eol - line);
        char *colon = memchr(line, ':', ll);
        if (!colon || colon == line || line[0] == ' ' || line[0] == '\t') {
            bad = 1;
            break;
        }
        size_t nl = (size_t)(colon - line);
        char *v = colon + 1;
        size_t vl = (size_t)(eol - v);
        while (vl && (*v == ' ' || *v == '\t'))
            v++, vl--;
        while (vl && (v[vl - 1] == ' ' || v[vl - 1] == '\t'))
            vl--;
        if (name_is(line, nl, "connection")) {
            if (has_token(v, vl, "close"))
                c->close_after = 1;
            if (has_token(v, vl, "keep-alive"))
                keep_alive_10 = 1;
        } else if (name_is(line, nl, "content-length")) {
            if (vl != 1 || v[0] != '0')
                bad = 1;  /* no request bodies here */
        } else if (name_is(line, nl, "transfer-encoding")) {
            bad = 1;
        }
    }
    if (http10 && keep_alive_10 && !bad)
        c->close_after = 0;
    if (bad) {
        c->close_after = 1;
        answer(c, 400, 0);
    } else {
        size_t ml = (size_t)(sp1 - c->in);
        int get = ml == 3 && memcmp(c->in, "GET", 3) == 0;
        int head = ml == 4 && memcmp(c->in, "HEAD", 4) == 0;
        char *target = sp1 + 1;
        size_t tl = (size_t)(sp2 - target);
        char *q = memchr(target, '?', tl);
        if (q)
            tl = (size_t)(q - target);
        if (!get && !head)
            answer(c, 405, 0);
        else if (tl == strlen(url_path) && memcmp(target, url_path, tl) == 0)
            answer(c, 200, head);
        else
            answer(c, 404, head);
    }
    memmove(c->in, c->in + hlen, c->in_len - hlen);
    c->in_len -= hlen;
    return 1;
}

/* Sends what is left of the current answer.  Returns 1 when it is all out,
 * 0 on EAGAIN (resume on EPOLLOUT), -1 when the connection is done for. */
static int flush_answer(struct conn *c)
{
    while (c->out_pos < c->out_len) {
        int more = c->file_pos < c->file_end ? MSG_MORE : 0;  /* the head goes out with the body */
        ssize_t n = send(c->fd, c->out + c->out_pos, c->out_len - c->out_pos, MSG_NOSIGNAL | more);
        if (n > 0) {
            c->out_pos += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -1;
    }
    while (c->file_pos < c->file_end) {
        ssize_t n = sendfile(c->fd, file_fd, &c->file_pos, (size_t)(c->file_end - c->file_pos));
        if (n > 0)
            continue;  /* sendfile moved file_pos */
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        if (n == 0)
            fprintf(stderr, "epoll_sendfile_http: the file shrank while being sent\n");
        return -1;
    }
    c->out_len = c->out_pos = 0;
    return 1;
}

/* Runs a connection as far as it can go without blocking. */
static void conn_run(int ep, struct conn *c)
{
    for (;;) {
        if (c->out_len > 0 || c->file_pos < c->file_end) {
            int r = flush_answer(c);
            if (r < 0 || (r > 0 && c->close_after)) {
                conn_close(ep, c);
                return;
            }
            if (r == 0)
                return;  /* EPOLLOUT will bring us back; unread requests wait in the kernel */
        }
        if (take_request(c))
            continue;
        /* take_request answers 431 to a full buffer, so there is room. */
        ssize_t n = recv(c->fd, c->in + c->in_len, IN_MAX - c->in_len, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        conn_close(ep, c);  /* peer closed (between answers: nothing pending) or error */
        return;
    }
}

static void usage(FILE *f)
{
    fprintf(f, "usage: epoll_sendfile_http --port P --file PATH [--path /NAME] [--host ADDR]\n");
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"port", required_argument, NULL, 'p'},
        {"file", required_argument, NULL, 'f'},
        {"path", required_argument, NULL, 'u'},
        {"host", required_argument, NULL, 'H'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *port = NULL, *path = NULL, *host = "127.0.0.1";
    int ch;
    while ((ch = getopt_long(argc, argv, "", longopts, NULL)) != -1) {
        switch (ch) {
        case 'p': port = optarg; break;
        case 'f': path = optarg; break;
        case 'u': url_path = optarg; break;
        case 'H': host = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || !port || !path) {
        usage(stderr);
        return 2;
    }

    file_fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (file_fd < 0 || fstat(file_fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        fprintf(stderr, "epoll_sendfile_http: %s: %s\n", path, file_fd < 0 ? strerror(errno) : "not a regular file");
        return 2;
    }
    file_size = st.st_size;
    char *default_path = NULL;
    if (!url_path) {
        const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
        default_path = malloc(strlen(base) + 2);
        if (!default_path)
            return 1;
        default_path[0] = '/';
        strcpy(default_path + 1, base);
        url_path = default_path;
    }
    if (url_path[0] != '/') {
        fprintf(stderr, "epoll_sendfile_http: --path must start with /\n");
        return 2;
    }

    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        fprintf(stderr, "epoll_sendfile_http: %s:%s: %s\n", host, port, gai_strerror(rc));
        return 2;
    }
    int lfd = socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(lfd, res->ai_addr, res->ai_addrlen) < 0 || listen(lfd, 1024) < 0) {
        fprintf(stderr, "epoll_sendfile_http: listen on %s:%s: %s\n", host, port, strerror(errno));
        return 1;
    }
    freeaddrinfo(res);

    /* No SA_RESTART: a signal interrupts epoll_wait, and the loop sees `stop`. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.ptr = NULL};  /* NULL: the listener */
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) {
        fprintf(stderr, "epoll_sendfile_http: epoll: %s\n", strerror(errno));
        return 1;
    }
    printf("listening on %s:%s, %s -> %s (%lld bytes)\n", host, port, url_path, path, (long long)file_size);
    fflush(stdout);

    struct epoll_event events[256];
    while (!stop) {
        int n = epoll_wait(ep, events, 256, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            fprintf(stderr, "epoll_sendfile_http: epoll_wait: %s\n", strerror(errno));
            return 1;
        }
        for (int i = 0; i < n; i++) {
            struct conn *c = events[i].data.ptr;
            if (c) {
                conn_run(ep, c);
                continue;
            }
            for (;;) {
                int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
                if (fd < 0) {
                    if (errno == EINTR || errno == ECONNABORTED)
                        continue;
                    if (errno != EAGAIN && errno != EWOULDBLOCK)
                        fprintf(stderr, "epoll_sendfile_http: accept: %s\n", strerror(errno));
                    break;  /* EAGAIN; or EMFILE and such: the next connection retries */
                }
                setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                c = calloc(1, sizeof *c);
                if (!c) {
                    close(fd);
                    continue;
                }
                c->fd = fd;
                struct epoll_event cev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET, .data.ptr = c};
                if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &cev) < 0) {
                    close(fd);
                    free(c);
                    continue;
                }
                conn_run(ep, c);
            }
        }
    }
    close(ep);
    close(lfd);
    close(file_fd);
    free(default_path);
    return 0;
}
