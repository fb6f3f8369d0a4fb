/*
 * http_server.c - static files over HTTP/1.1 as a native handler: the
 * connection side (reading, pipelining, timeouts, ordering of responses).
 * What a request is answered with is decided in http_respond.c.
 *
 * Callbacks of one connection never run concurrently (engine guarantee),
 * so a connection's state needs no lock.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "protocols/http/internal.h"
#include "platform/platform.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_HEAD 8192
#define DEFAULT_HEADER_TIMEOUT_MS 10000
#define DEFAULT_KEEPALIVE_TIMEOUT_MS 15000
#define DEFAULT_MAX_DISCARD (64 * 1024)
/* Answers queued on one connection before we stop reading its requests:
 * bounds the memory and descriptors a pipelining client can make us hold. */
#define MAX_PIPELINE 16

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

static void conn_recv_done(piocp_request *req, ssize_t result);
static void response_done(piocp_request *req, ssize_t result);

static void post_recv(http_conn *hc)
{
    if (hc->recv_pending || hc->closing || hc->peer_done || hc->in_flight >= MAX_PIPELINE ||
        hc->len >= hc->cap)
        return;
    if (piocp_recv(hc->conn, &hc->recv_req, hc->buf + hc->len, hc->cap - hc->len) == 0)
        hc->recv_pending = true;
}

/* Which timeout applies now: none while answers are being sent (the
 * engine's idle timeout covers a stalled reader), the header timeout from
 * the first byte of a request, the keep-alive timeout between requests. */
static void update_deadline(http_conn *hc, bool request_started)
{
    const piocp_http_server *s = hc->server;
    if (hc->in_flight > 0) {
        piocp_conn_set_deadline(hc->conn, 0);
        hc->body_deadline_set = false;
    } else if (hc->discard > 0) {
        /* a body being dropped must arrive within the header timeout, once:
         * trickling it byte by byte must not keep the connection forever */
        if (!hc->body_deadline_set)
            piocp_conn_set_deadline(hc->conn, s->header_timeout_ms);
        hc->body_deadline_set = true;
    } else if (hc->len == 0)
        piocp_conn_set_close_deadline(hc->conn, s->keepalive_timeout_ms);
    else if (request_started)
        piocp_conn_set_deadline(hc->conn, s->header_timeout_ms);
}

/* Closes once the queued answers are out (piocp_close is graceful). */
static void finish(http_conn *hc)
{
    if (!hc->closing) {
        hc->closing = true;
        piocp_close(hc->conn);
    }
}

/* Sends an answer after those already queued.  NULL (no memory for it):
 * the answers after it could not keep their place, so the connection goes. */
static void queue_response(http_conn *hc, http_response *r)
{
    if (!r) {
        piocp_abort(hc->conn);
        return;
    }
    r->req.complete = response_done;
    r->req.user = r;
    r->hc = hc;
    r->next = NULL;
    if (hc->tail)
        hc->tail->next = r;
    else
        hc->head = r;
    hc->tail = r;
    hc->in_flight++;
    atomic_fetch_add_explicit(&hc->server->requests, 1, memory_order_relaxed);
    if (r->status >= 100 && r->status < 600)
        piocp_metric_add(piocp_conn_engine(hc->conn), PIOCP_M_HTTP_RESPONSES + r->status / 100 - 1,
                         1);
    int rc;
    if (r->file && r->body_count > 0)
        rc = piocp_transmit(hc->conn, &r->req, r->data, r->head_len, r->file->fd, r->body_offset,
                            r->body_count);
    else
        rc = piocp_send(hc->conn, &r->req, r->data, r->head_len);
    if (rc < 0) {
        /* not posted, so it will not complete: the connection is going */
        hc->tail = NULL;
        for (http_response **p = &hc->head; *p; p = &(*p)->next) {
            if (*p == r) {
                *p = NULL;
                break;
            }
            hc->tail = *p;
        }
        hc->in_flight--;
        http_response_free(r);
        finish(hc);
        return;
    }
    if (r->close_after)
        finish(hc);
}

/* Drops request body bytes we decided to read and ignore. */
static void discard_body(http_conn *hc)
{
    size_t drop = hc->discard < hc->len ? (size_t)hc->discard : hc->len;
    memmove(hc->buf, hc->buf + drop, hc->len - drop);
    hc->len -= drop;
    hc->discard -= drop;
}

/* Answers every complete request in the buffer, in order. */
static void process_buffer(http_conn *hc)
{
    const piocp_http_server *s = hc->server;
    while (!hc->closing && hc->in_flight < MAX_PIPELINE) {
        if (hc->discard)
            discard_body(hc);
        if (hc->len == 0 || hc->discard)
            break;
        http_request req;
        /* a request line filling the whole head is "URI too long" (414),
         * not "headers too large" (431): give the line one byte less */
        int rc = http_parse_request(hc->buf, hc->len, s->max_head - 1, s->max_head, &req);
        if (rc == HTTP_INCOMPLETE)
            break;
        if (rc < 0) {
            queue_response(hc, http_respond_error(http_error_status(rc)));
            hc->len = 0;
            break;
        }
        /* a body on GET/HEAD means nothing to us: read and drop a little,
         * refuse more; chunked bodies are refused (no length to skip) */
        bool too_big = req.has_transfer_encoding ||
                       (req.content_length > 0 && (uint64_t)req.content_length > s->max_discard);
        if (too_big) {
            queue_response(hc, http_respond_error(413));
            hc->len = 0;
            break;
        }
        http_response *r = http_respond(s, &req);
        /* One test of a flag in the server's own cache line is all the
         * Common Log Format pays: the header copy is for combined/json. */
        if (s->log_fields && r)
            r = http_keep_log_fields(r, &req, s->log_format == PIOCP_LOG_JSON);
        queue_response(hc, r);
        memmove(hc->buf, hc->buf + rc, hc->len - (size_t)rc);
        hc->len -= (size_t)rc;
        if (req.content_length > 0)
            hc->discard = (uint64_t)req.content_length;
    }
}

static void conn_recv_done(piocp_request *req, ssize_t result)
{
    http_conn *hc = req->user;
    hc->recv_pending = false;
    if (hc->closing)
        return;
    if (result < 0) {
        finish(hc); /* cancelled (stopping) or broken: on_closed follows */
        return;
    }
    if (result == 0) {
        /* the client has sent all it will: answer what is complete, then
         * close once those answers are out */
        hc->peer_done = true;
        process_buffer(hc);
        if (hc->in_flight == 0)
            finish(hc);
        return;
    }
    bool was_empty = hc->len == 0;
    hc->len += (size_t)result;
    process_buffer(hc);
    update_deadline(hc, was_empty && hc->len > 0);
    post_recv(hc);
}

/* Runs when an answer has been handed to the kernel (or failed). */
static void response_done(piocp_request *req, ssize_t result)
{
    http_response *r = req->user;
    http_conn *hc = r->hc;
    http_log_response(hc->server, hc->conn, r, result);
    hc->head = r->next; /* the engine completes in posting order */
    if (!hc->head)
        hc->tail = NULL;
    hc->in_flight--;
    http_response_free(r);
    if (result < 0 || hc->closing)
        return;
    if (hc->peer_done) {
        if (hc->in_flight == 0)
            finish(hc);
        return;
    }
    process_buffer(hc);
    update_deadline(hc, hc->len > 0);
    post_recv(hc);
}

static void conn_closed(piocp_conn *conn, int error)
{
    (void)error;
    http_conn *hc = piocp_conn_user(conn);
    /* every request has completed: nothing is left in flight */
    free(hc->buf);
    free(hc);
}

static void on_connection(piocp_listener *listener, piocp_conn *conn, void *user)
{
    (void)listener;
    piocp_http_server *s = user;
    http_conn *hc = calloc(1, sizeof *hc);
    char *buf = hc ? malloc(s->max_head) : NULL;
    if (!buf) {
        free(hc);
        piocp_conn_set_callbacks(conn, NULL, NULL);
        piocp_abort(conn);
        return;
    }
    hc->conn = conn;
    hc->server = s;
    hc->buf = buf;
    hc->cap = s->max_head;
    hc->recv_req.complete = conn_recv_done;
    hc->recv_req.user = hc;
    piocp_conn_set_callbacks(conn, conn_closed, hc);
    piocp_conn_set_deadline(conn, s->header_timeout_ms);
    post_recv(hc);
}

/* Over max_connections: say so (503) instead of a bare close. */
static void on_refused(piocp_listener *listener, piocp_socket fd, void *user)
{
    (void)listener;
    (void)user;
    static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
                               "Content-Type: text/plain; charset=utf-8\r\n"
                               "Content-Length: 20\r\nRetry-After: 1\r\nConnection: close\r\n\r\n"
                               "503 server is busy\r\n";
    /* best effort: a fresh socket's buffer takes this without blocking */
    (void)piocp_socket_send_now(fd, busy, sizeof busy - 1);
}

const piocp_listener_callbacks piocp_http_server_callbacks = {
    .on_connection = on_connection,
    .on_refused = on_refused,
};

void piocp_http_options_init(piocp_http_options *options)
{
    memset(options, 0, sizeof *options);
    options->listing = 1;
    options->max_head = DEFAULT_MAX_HEAD;
    options->header_timeout_ms = DEFAULT_HEADER_TIMEOUT_MS;
    options->keepalive_timeout_ms = DEFAULT_KEEPALIVE_TIMEOUT_MS;
    options->max_discard = DEFAULT_MAX_DISCARD;
    options->cache_valid_ms = FILE_CACHE_VALID_MS;
    options->access_log_fd = PIOCP_INVALID_FILE;
}

int piocp_http_server_new(piocp_http_server **out, const char *root,
                          const piocp_http_options *options)
{
    if (!out || !root)
        return -EINVAL;
    piocp_http_options o;
    piocp_http_options_init(&o);
    if (options)
        o = *options;
    piocp_http_server *s = calloc(1, sizeof *s);
    if (!s)
        return -ENOMEM;
    s->listing = o.listing != 0;
    s->max_head = o.max_head ? o.max_head : DEFAULT_MAX_HEAD;
    s->header_timeout_ms = o.header_timeout_ms > 0 ? o.header_timeout_ms : DEFAULT_HEADER_TIMEOUT_MS;
    s->keepalive_timeout_ms =
        o.keepalive_timeout_ms > 0 ? o.keepalive_timeout_ms : DEFAULT_KEEPALIVE_TIMEOUT_MS;
    s->max_discard = o.max_discard ? o.max_discard : DEFAULT_MAX_DISCARD;
    if (o.log_format != PIOCP_LOG_COMMON && o.log_format != PIOCP_LOG_COMBINED &&
        o.log_format != PIOCP_LOG_JSON) {
        free(s);
        return -EINVAL;
    }
    s->log_format = o.log_format;
    s->log_fields = o.access_log_fd != PIOCP_INVALID_FILE && o.log_format != PIOCP_LOG_COMMON;
    /* Content-Length frames every answer, so a cached file may be trusted
     * for a while (file_cache.h says what that guarantees) */
    int rc = piocp_served_root_open(&s->root, root, o.access_log_fd,
                                    o.cache_valid_ms >= 0 ? o.cache_valid_ms : FILE_CACHE_VALID_MS);
    if (rc < 0) {
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void piocp_http_server_free(piocp_http_server *s)
{
    if (!s)
        return;
    piocp_served_root_close(&s->root);
    free(s);
}

uint64_t piocp_http_server_requests(const piocp_http_server *s)
{
    return atomic_load_explicit(&s->requests, memory_order_relaxed);
}

piocp_file piocp_http_server_swap_access_log(piocp_http_server *s, piocp_file fd)
{
    return piocp_served_root_swap_log(&s->root, fd);
}
