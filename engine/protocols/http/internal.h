/*
 * http_server_internal.h - what http_server.c (connections) and
 * http_respond.c (answers) share.
 */
#ifndef PIOCP_HTTP_SERVER_INTERNAL_H
#define PIOCP_HTTP_SERVER_INTERNAL_H

#include "pyiocp.h"
#include "files/served_root.h"
#include "protocols/http/parser.h"

#include <stdatomic.h>
#include <stdbool.h>

struct piocp_http_server {
    piocp_served_root root;
    bool listing;
    size_t max_head;
    int header_timeout_ms, keepalive_timeout_ms;
    uint64_t max_discard;
    _Atomic uint64_t requests;
};

typedef struct http_conn http_conn;

/* One answer, alive until its completion: head bytes (and, for error
 * pages and listings, the body) in data[], then the request line kept for
 * the access log. */
typedef struct http_response {
    piocp_request req;
    http_conn *hc;
    struct http_response *next;
    const piocp_cached_file *file; /* body from a file, or NULL */
    uint64_t body_offset, body_count;
    size_t head_len;               /* bytes of data[] to send before the file */
    uint64_t body_bytes;           /* for the log: body bytes this answer carries */
    size_t request_line_len;       /* after head_len bytes in data[] */
    int status;
    bool close_after;
    char data[];
} http_response;

struct http_conn {
    piocp_conn *conn;
    piocp_http_server *server;
    piocp_request recv_req;
    char *buf;
    size_t len, cap;
    uint64_t discard;              /* request body bytes still to drop */
    http_response *head, *tail;    /* answers in flight, in order */
    int in_flight;
    bool recv_pending, closing, peer_done;
    bool body_deadline_set;        /* the deadline for a dropped body runs */
};

/* http_server.c */
void http_queue_response(http_conn *hc, http_response *r);
void http_response_done(piocp_request *req, ssize_t result);

/* http_respond.c */
void http_respond(http_conn *hc, const http_request *req);
/* An error page for a request that could not be read; the connection
 * closes after it. */
void http_respond_error(http_conn *hc, int status);
void http_response_free(http_response *r);
/* Body bytes an answer got out (head excluded, never more than the body),
 * from its completion: the count, or for a failed one req.done. */
uint64_t http_response_body_sent(const http_response *r, ssize_t result);
void http_log_response(http_conn *hc, const http_response *r, ssize_t result);

#endif
