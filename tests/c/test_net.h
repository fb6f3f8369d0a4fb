/* test_net.h - blocking TCP clients on 127.0.0.1 for the C tests that run
 * on every platform (Winsock under Wine, BSD sockets elsewhere), over
 * test_portable.h.  Client threads use the engine's own platform/threads.h. */
#ifndef PYIOCP_TEST_NET_H
#define PYIOCP_TEST_NET_H

#include "pyiocp.h"
#include "test_check.h"
#include "test_portable.h"

#ifdef _WIN32
#include <winsock2.h>
#include <ws2tcpip.h>
#define net_close closesocket
#define NET_SHUT_WR SD_SEND
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#define net_close close
#define NET_SHUT_WR SHUT_WR
#endif

static inline void net_init(void)
{
#ifdef _WIN32
    WSADATA data;
    CHECK(WSAStartup(MAKEWORD(2, 2), &data) == 0);
#endif
}

static inline piocp_socket net_connect_loopback(int port)
{
    piocp_socket fd = socket(AF_INET, SOCK_STREAM, 0);
    CHECK(fd != PIOCP_INVALID_SOCKET);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    CHECK(connect(fd, (struct sockaddr *)&addr, sizeof addr) == 0);
    /* a hung server fails the test, not the CI */
#ifdef _WIN32
    DWORD timeout = 10000;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, (const char *)&timeout, sizeof timeout);
#else
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
#endif
    return fd;
}

static inline int net_send_all(piocp_socket fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        int n = (int)send(fd, p, (int)len, 0);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* 0 with `len` bytes, -1 on EOF or an error first. */
static inline int net_recv_exact(piocp_socket fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        int n = (int)recv(fd, p, (int)len, 0);
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Listens with `e` on 127.0.0.1 (any port); returns the port. */
static inline int engine_listen_loopback(piocp_engine *e, const piocp_listener_callbacks *callbacks,
                                         void *user)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    piocp_listener *l = NULL;
    CHECK(piocp_listen(e, (struct sockaddr *)&addr, sizeof addr, 128, callbacks, user, &l) == 0);
    struct sockaddr_storage bound;
    socklen_t len;
    CHECK(piocp_listener_address(l, &bound, &len) == 0);
    return ntohs(((struct sockaddr_in *)&bound)->sin_port);
}

/* What one recv returns: > 0 bytes, 0 EOF, < 0 an error (a reset). */
static inline int net_recv_some(piocp_socket fd, void *buf, size_t len)
{
    return (int)recv(fd, buf, (int)len, 0);
}

/* Sends `request` on a new connection and reads until the server closes:
 * the bytes (malloc'd, NUL-terminated; fewer than `cap`) and their count. */
static inline char *net_exchange(int port, const void *request, size_t request_len, size_t cap,
                                 size_t *got)
{
    piocp_socket s = net_connect_loopback(port);
    CHECK(net_send_all(s, request, request_len) == 0);
    size_t len = 0;
    char *in = malloc(cap + 1);
    CHECK(in != NULL);
    for (;;) {
        int n = net_recv_some(s, in + len, cap - len);
        if (n <= 0)
            break;
        len += (size_t)n;
        CHECK(len < cap);
    }
    net_close(s);
    in[len] = '\0';
    *got = len;
    return in;
}

/* An echo client, for a client thread (piocp_thread_start): `messages`
 * messages of `size` bytes (at most 4096), each read back and compared
 * before the next, so the byte counts are exact; then it closes. */
typedef struct net_echo_client {
    int port, messages;
    size_t size;
} net_echo_client;

static inline void *net_echo_client_run(void *arg)
{
    const net_echo_client *a = arg;
    char out[4096], in[4096];
    CHECK(a->size <= sizeof out);
    piocp_socket fd = net_connect_loopback(a->port);
    for (int i = 0; i < a->messages; i++) {
        for (size_t j = 0; j < a->size; j++)
            out[j] = (char)(i + j);
        CHECK(net_send_all(fd, out, a->size) == 0);
        CHECK(net_recv_exact(fd, in, a->size) == 0);
        CHECK(memcmp(in, out, a->size) == 0);
    }
    net_close(fd);
    return NULL;
}

#endif
