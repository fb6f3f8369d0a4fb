/*
 * http_server_internal.h - what http_server.c (connections) and
 * http_respond.c (answers) share.  The calls go one way: the server asks
 * respond.c for an answer and sends it.
 */
#ifndef PIOCP_HTTP_SERVER_INTERNAL_H
#define PIOCP_HTTP_SERVER_INTERNAL_H

#include "pyiocp.h"
#include "files/served_root.h"
#include "protocols/http/parser.h"
#include "platform/atomics.h"

#include <stdbool.h>

struct piocp_http_server {
    piocp_served_root root;
    bool listing;
    size_t max_head;
    int header_timeout_ms, keepalive_timeout_ms;
    uint64_t max_discard;
    int log_format;   /* piocp_log_format */
    /* An access log whose format shows Referer and User-Agent: only then
     * does a request pay for keeping them (http_keep_log_fields). */
    bool log_fields;
    _Atomic uint64_t requests;
};

typedef struct http_conn http_conn; /* server.c's: one client connection */

/* One answer, alive until its completion: head bytes (and, for error
 * pages and listings, the body) in data[], then the request line kept for
 * the access log.  respond.c builds it; server.c queues and sends it. */
typedef struct http_response {
    piocp_request req;
    http_conn *hc;                 /* set when queued */
    struct http_response *next;
    const piocp_cached_file *file; /* body from a file, or NULL */
    piocp_file_cache *file_cache;  /* where `file` is released to */
    uint64_t body_offset, body_count;
    size_t head_len;               /* bytes of data[] to send before the file */
    uint64_t body_bytes;           /* for the log: body bytes this answer carries */
    size_t request_line_len;       /* after head_len bytes in data[] */
    int status;
    bool close_after;
    /* http_keep_log_fields put an http_log_fields after the request line.
     * In what was padding: the Common Log Format's answers are not one
     * byte bigger, nor their zeroing one store longer. */
    bool has_log_fields;
    char data[];
} http_response;

/* What combined and JSON lines show beyond the request line, kept after it
 * in data[] (unaligned: copied in and out), followed by the Referer's and
 * the User-Agent's bytes (lengths capped at what a line can show). */
typedef struct http_log_fields {
    size_t referer_len, user_agent_len;
    bool has_referer, has_user_agent;
    long long started_us; /* piocp_monotonic_us when the request was read; 0: not timed */
} http_log_fields;

/* respond.c: answers, built and handed back (NULL: out of memory). */
http_response *http_respond(const piocp_http_server *server, const http_request *req);
/* An error page for a request that could not be read; the connection
 * closes after it. */
http_response *http_respond_error(int status);
void http_response_free(http_response *r);
/* For the formats that show them (combined, json): keeps the request's
 * Referer and User-Agent with its answer, and with `timed` when it was
 * read.  Returns the answer, moved (realloc); if memory runs out, `r` as
 * it was, logged without them. */
http_response *http_keep_log_fields(http_response *r, const http_request *req, bool timed);
/* Body bytes an answer got out (head excluded, never more than the body),
 * from its completion: the count, or for a failed one req.done. */
uint64_t http_response_body_sent(const http_response *r, ssize_t result);
/* The access log line of a completed answer (nothing without a log). */
void http_log_response(const piocp_http_server *server, piocp_conn *conn,
                       const http_response *r, ssize_t result);

#endif
