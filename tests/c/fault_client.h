/* fault_client.h - the blocking clients of tests/c/fault_sweep.c and what
 * they conclude about the bytes they got.  Under a fault a client may get
 * less than it asked for (a reset, an error answer), but never wrong bytes
 * and never silence: a byte stream that is cut is a prefix of the right
 * one, and the server ends or answers every connection in bounded time. */
#ifndef PYIOCP_TESTS_FAULT_CLIENT_H
#define PYIOCP_TESTS_FAULT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

typedef enum verdict {
    V_OK = 0,   /* everything, exactly as without a fault */
    V_LESS,     /* a right prefix, or well-formed error answers: a fault may do that */
    V_CORRUPT,  /* bytes that are not the right ones */
    V_HUNG      /* the server neither answered nor ended the connection in time */
} verdict;

const char *verdict_name(verdict v);

/* A TCP connection to 127.0.0.1:port with a receive timeout; -1 if even
 * connect failed (a refused connect is a hang's opposite: V_LESS). */
int client_connect(int port, int timeout_ms);
/* The same with a receive buffer of `rcvbuf` bytes (a slow reader). */
int client_connect_small(int port, int timeout_ms, int rcvbuf);
int client_send_all(int fd, const void *buf, size_t len);

/* Reads up to `n` bytes into buf: fewer on EOF, an error or `timeout_ms`
 * of silence (*hung then set).  Returns how many. */
size_t client_read_upto(int fd, char *buf, size_t n, int timeout_ms, bool *hung);

/* Reads until EOF, an error (a reset) or `timeout_ms` of silence, into a
 * growing buffer (*out, freed by the caller).  Returns the length;
 * *hung is set when it stopped on the timeout. */
size_t client_read_all(int fd, char **out, int timeout_ms, bool *hung);

/* got[0, len) against want[0, want_len): V_OK if equal, V_LESS if a
 * prefix, else V_CORRUPT. */
verdict compare_stream(const char *got, size_t len, const char *want, size_t want_len);

/* One HTTP/1.1 response expected in a pipelined stream. */
typedef struct http_expect {
    int status;
    bool head;         /* a HEAD: no body whatever Content-Length says */
    const char *body;  /* compared when status is 200 or 206; NULL: not compared */
    size_t body_len;
} http_expect;

/* Walks `count` responses through got[0, len): each must be a well-formed
 * HTTP/1.1 response; a 200 or 206 must carry its expected body; another
 * status than expected (a 500 for a failed open) is V_LESS, as is a cut
 * stream. */
verdict check_http_stream(const char *got, size_t len, const http_expect *want, int count);

/* One answer expected from the raw protocol: a file's bytes, or an error
 * line when `content` is NULL. */
typedef struct raw_expect {
    const char *content;
    size_t len;
} raw_expect;
verdict check_raw_stream(const char *got, size_t len, const raw_expect *want, int count);

#endif
