/* fault_client.c - see fault_client.h. */
#include "fault_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

const char *verdict_name(verdict v)
{
    static const char *const names[] = {"ok", "less", "corrupt", "hung"};
    return names[v];
}

int client_connect(int port, int timeout_ms) { return client_connect_small(port, timeout_ms, 0); }

int client_connect_small(int port, int timeout_ms, int rcvbuf)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -1;
    if (rcvbuf > 0) /* before connect: the window is offered then */
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                               .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    if (connect(fd, (struct sockaddr *)&addr, sizeof addr) < 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int client_send_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

size_t client_read_upto(int fd, char *buf, size_t n, int timeout_ms, bool *hung)
{
    size_t got = 0;
    *hung = false;
    while (got < n) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, timeout_ms);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready == 0) {
            *hung = true;
            break;
        }
        ssize_t k = recv(fd, buf + got, n - got, 0);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    return got;
}

size_t client_read_all(int fd, char **out, int timeout_ms, bool *hung)
{
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    *hung = false;
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int ready = poll(&p, 1, timeout_ms);
        if (ready < 0 && errno == EINTR)
            continue;
        if (ready == 0) {
            *hung = true;
            break;
        }
        if (len == cap) {
            cap *= 2;
            buf = realloc(buf, cap);
        }
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* EOF, or a reset */
        len += (size_t)n;
    }
    *out = buf;
    return len;
}

verdict compare_stream(const char *got, size_t len, const char *want, size_t want_len)
{
    if (len > want_len || memcmp(got, want, len) != 0)
        return V_CORRUPT;
    return len == want_len ? V_OK : V_LESS;
}

static verdict worse(verdict a, verdict b) { return a > b ? a : b; }

/* The value of header `name` in head[0, len), or -1. */
static long long header_number(const char *head, size_t len, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = head; p + n < head + len; p++) {
        if ((p == head || p[-1] == '\n') && strncasecmp(p, name, n) == 0)
            return strtoll(p + n, NULL, 10);
    }
    return -1;
}

static bool has_close(const char *head, size_t len)
{
    static const char close_header[] = "\r\nConnection: close\r\n";
    size_t n = sizeof close_header - 1;
    for (size_t k = 0; k + n <= len; k++)
        if (strncasecmp(head + k, close_header, n) == 0)
            return true;
    return false;
}

verdict check_http_stream(const char *got, size_t len, const http_expect *want, int count)
{
    verdict v = V_OK;
    size_t at = 0;
    for (int i = 0; i < count; i++) {
        const char *head = got + at;
        size_t left = len - at;
        if (left == 0)
            return V_LESS; /* the rest never came: a cut stream */
        if (left < 9 ? memcmp(head, "HTTP/1.1 ", left) != 0 : memcmp(head, "HTTP/1.1 ", 9) != 0)
            return V_CORRUPT;
        const char *end = NULL;
        for (size_t k = 0; k + 4 <= left; k++)
            if (memcmp(head + k, "\r\n\r\n", 4) == 0) {
                end = head + k + 4;
                break;
            }
        if (!end)
            return V_LESS; /* cut inside the head */
        size_t head_len = (size_t)(end - head);
        int status = atoi(head + 9);
        long long body = header_number(head, head_len, "Content-Length:");
        if (body < 0)
            return V_CORRUPT; /* every answer of this server has a length */
        if (want[i].head || status == 304)
            body = 0;
        if (status != want[i].status) {
            v = worse(v, V_LESS); /* an error answer in place of a file */
        } else if ((status == 200 || status == 206) && want[i].body &&
                   (size_t)body != want[i].body_len) {
            return V_CORRUPT;
        }
        size_t have = left - head_len < (size_t)body ? left - head_len : (size_t)body;
        if (status == want[i].status && (status == 200 || status == 206) && want[i].body &&
            memcmp(end, want[i].body, have) != 0)
            return V_CORRUPT;
        if (have < (size_t)body)
            return V_LESS;
        at += head_len + (size_t)body;
        if (has_close(head, head_len) && i + 1 < count)
            return worse(v, at == len ? V_LESS : V_CORRUPT); /* nothing may follow it */
    }
    return at == len ? v : V_CORRUPT; /* bytes nobody asked for */
}

verdict check_raw_stream(const char *got, size_t len, const raw_expect *want, int count)
{
    verdict v = V_OK;
    size_t at = 0;
    for (int i = 0; i < count; i++) {
        const char *p = got + at;
        size_t left = len - at;
        if (left == 0)
            return V_LESS;
        bool error_line = left >= 7 ? memcmp(p, "ERROR: ", 7) == 0 : memcmp(p, "ERROR: ", left) == 0;
        if (error_line && (!want[i].content || memcmp(want[i].content, "ERROR: ", 7) != 0)) {
            const char *nl = memchr(p, '\n', left);
            if (!nl)
                return V_LESS;
            if (want[i].content)
                v = worse(v, V_LESS); /* a failed open in place of a file */
            at += (size_t)(nl + 1 - p);
            continue;
        }
        if (!want[i].content)
            return V_CORRUPT;
        size_t have = left < want[i].len ? left : want[i].len;
        if (memcmp(p, want[i].content, have) != 0)
            return V_CORRUPT;
        if (have < want[i].len)
            return V_LESS;
        at += have;
    }
    return at == len ? v : V_CORRUPT;
}
