/*
 * raw_file_server.c - the native raw file protocol (see pyiocp.h).
 *
 * Each connection is a small state machine driven only by its own
 * completions, which the engine never runs concurrently: so the state needs
 * no lock.  One recv is outstanding at a time; every line read is answered
 * by its own send (error line) or transmit (file), posted in line order, and
 * the engine sends them in that order.
 *
 * Written against the public API alone.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "pyiocp.h"
#include "platform/platform.h"
#include "files/served_root.h"
#include "log/format.h"
#include "platform/atomics.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_NAME 1024
#define LIMIT_MAX_NAME PIOCP_RAW_MAX_NAME
#define MIN_RECV_BUFFER 4096
/* A client pipelining names faster than we send files would otherwise make
 * us open one file per name it wrote: stop reading at this many answers in
 * flight.  It also bounds the descriptors one connection holds. */
#define MAX_IN_FLIGHT 16

struct piocp_raw_server {
    piocp_served_root root;
    size_t max_name;
    _Atomic uint64_t requests;
};

typedef struct raw_conn raw_conn;

/* One answer: an error line or a file, alive until its completion. */
typedef struct raw_reply {
    piocp_request req;
    raw_conn *rc;
    struct raw_reply *next;
    const piocp_cached_file *file; /* the file being sent, or NULL for an error line */
    uint64_t expected;  /* bytes the request must move to have succeeded */
    const char *reason; /* error line: why (static text) */
    size_t line_len;    /* bytes sent from data[]: an error line or a small file */
    size_t name_len;    /* name bytes after them, kept for the access log */
    bool name_cut;      /* the name was longer than what is kept */
    bool sent_inline;   /* a small file sent from data[], not an error line */
    char data[];
} raw_reply;

struct raw_conn {
    piocp_raw_server *server;
    piocp_conn *conn;
    piocp_request recv_req;
    raw_reply *head, *tail; /* in-flight answers, in posting order */
    unsigned in_flight;
    bool recv_pending;
    bool peer_done;   /* the client half-closed: answer what is left, close */
    bool discarding;  /* inside an over-long line: skip to its '\n' */
    bool want_abort;  /* the byte stream can no longer be trusted */
    bool close_sent;
    bool abort_sent;
    size_t start;     /* unparsed bytes are buf[start, len) */
    size_t len;
    size_t cap;
    char peer[PIOCP_LOG_PEER_MAX];
    char buf[];
};

static void settle(raw_conn *rc);

/* ------------------------------------------------------ access log -- */

static void log_reply(raw_conn *rc, const raw_reply *reply, ssize_t result)
{
    char errbuf[128];
    char outcome[160];
    if (result >= 0 && (uint64_t)result == reply->expected) {
        if (reply->file || reply->sent_inline)
            snprintf(outcome, sizeof outcome, "ok");
        else
            snprintf(outcome, sizeof outcome, "error: %s", reply->reason);
    } else if (result >= 0) {
        snprintf(outcome, sizeof outcome, "failed: short transfer");
    } else {
        snprintf(outcome, sizeof outcome, "failed: %s",
                 piocp_error_text((int)-result, errbuf, sizeof errbuf));
    }
    /* On failure the request still says how far it got. */
    unsigned long long sent =
        result >= 0 ? (unsigned long long)result : (unsigned long long)reply->req.done;

    size_t size = strlen(rc->peer) + PIOCP_LOG_ESCAPED_MAX(reply->name_len) +
                  strlen(outcome) + 64;
    char *line = malloc(size);
    if (line == NULL)
        return;
    size_t n = (size_t)snprintf(line, size, "%s \"", rc->peer);
    n += piocp_log_escape(line + n, reply->data + reply->line_len, reply->name_len);
    n += (size_t)snprintf(line + n, size - n, "%s\" %llu %s\n", reply->name_cut ? "..." : "",
                          sent, outcome);
    piocp_access_log_write(rc->server->root.log, line, n);
    free(line);
}

/* --------------------------------------------------------- replies -- */

static void fifo_push(raw_conn *rc, raw_reply *reply)
{
    reply->next = NULL;
    if (rc->tail)
        rc->tail->next = reply;
    else
        rc->head = reply;
    rc->tail = reply;
    rc->in_flight++;
}

static void fifo_remove(raw_conn *rc, raw_reply *reply)
{
    /* Completions come in posting order, so this is normally the head; the
     * walk is for the tail, taken back after a post that failed. */
    raw_reply **link = &rc->head, *prev = NULL;
    while (*link && *link != reply) {
        prev = *link;
        link = &(*link)->next;
    }
    if (*link == NULL)
        return;
    *link = reply->next;
    if (rc->tail == reply)
        rc->tail = prev;
    rc->in_flight--;
}

static void reply_done(piocp_request *req, ssize_t result);

/* `reason` NULL: a file answer.  The name is kept only for the log. */
/* `inline_bytes`: a small file's cached bytes, sent from data[] in one send
 * (reason NULL), instead of a transmit. */
static raw_reply *reply_new(raw_conn *rc, const char *name, size_t name_len, const char *reason,
                            const char *inline_bytes, size_t inline_len)
{
    size_t keep = 0;
    bool cut = false;
    if (rc->server->root.log) {
        keep = name_len;
        if (keep > rc->server->max_name) {
            keep = rc->server->max_name;
            cut = true;
        }
    }
    size_t line_len = reason ? strlen("ERROR: ") + strlen(reason) + 2 : inline_len;

    raw_reply *reply = malloc(sizeof *reply + line_len + keep);
    if (reply == NULL)
        return NULL;
    memset(&reply->req, 0, sizeof reply->req);
    reply->req.complete = reply_done;
    reply->req.user = reply;
    reply->rc = rc;
    reply->next = NULL;
    reply->file = NULL;
    reply->expected = line_len;
    reply->reason = reason;
    reply->line_len = line_len;
    reply->name_len = keep;
    reply->name_cut = cut;
    reply->sent_inline = false;
    if (inline_bytes)
        memcpy(reply->data, inline_bytes, inline_len);
    if (reason) {
        char *p = reply->data;
        memcpy(p, "ERROR: ", 7);
        memcpy(p + 7, reason, line_len - 9);
        memcpy(p + line_len - 2, "\r\n", 2);
    }
    memcpy(reply->data + line_len, name, keep);
    return reply;
}

static void reply_free(raw_reply *reply)
{
    if (reply->file)
        piocp_file_cache_release(reply->rc->server->root.files, reply->file);
    free(reply);
}

/* Hands the reply to the engine.  Counted as answered before the post: a
 * client that has read the answer must find it counted. */
static void reply_post(raw_conn *rc, raw_reply *reply)
{
    fifo_push(rc, reply);
    atomic_fetch_add_explicit(&rc->server->requests, 1, memory_order_relaxed);

    int r;
    if (reply->file)
        r = piocp_transmit(rc->conn, &reply->req, NULL, 0, reply->file->fd, 0, reply->expected);
    else
        r = piocp_send(rc->conn, &reply->req, reply->data, reply->line_len);
    if (r < 0) {
        /* Not posted, so it will not complete: undo it here.  Later
         * answers could not keep their place in the stream: give up. */
        atomic_fetch_sub_explicit(&rc->server->requests, 1, memory_order_relaxed);
        fifo_remove(rc, reply);
        reply_free(reply);
        rc->want_abort = true;
    }
}

static void answer_error(raw_conn *rc, const char *name, size_t name_len, const char *reason)
{
    raw_reply *reply = reply_new(rc, name, name_len, reason, NULL, 0);
    if (reply == NULL) {
        rc->want_abort = true; /* an unanswered name would desynchronise the client */
        return;
    }
    reply_post(rc, reply);
}

static void answer_name(raw_conn *rc, const char *name, size_t name_len)
{
    const piocp_cached_file *file;
    const char *reason;
    if (piocp_file_cache_open(rc->server->root.files, name, name_len, &file, &reason) < 0) {
        answer_error(rc, name, name_len, reason);
        return;
    }
    bool small = file->bytes != NULL;
    raw_reply *reply = reply_new(rc, name, name_len, NULL, file->bytes,
                                 small ? (size_t)file->info.size : 0);
    if (reply == NULL) {
        piocp_file_cache_release(rc->server->root.files, file);
        rc->want_abort = true;
        return;
    }
    if (small) {
        /* the bytes are in the reply: one send, no file descriptor held */
        piocp_file_cache_release(rc->server->root.files, file);
        reply->sent_inline = true;
        reply_post(rc, reply);
        return;
    }
    /* An exact count, fixed now: the protocol carries no length, so a file
     * that shrank while being sent would look complete to the client.  With
     * a count the transmit fails instead, and the connection is aborted. */
    reply->file = file;
    reply->expected = file->info.size;
    reply_post(rc, reply);
}

static void reply_done(piocp_request *req, ssize_t result)
{
    raw_reply *reply = req->user;
    raw_conn *rc = reply->rc;

    fifo_remove(rc, reply);
    if (rc->server->root.log)
        log_reply(rc, reply, result);
    /* -ECANCELED: the connection is already going away.  Anything else
     * short (a file that shrank, a broken socket) leaves the client unable
     * to tell where this answer ends. */
    if (result != -ECANCELED && (result < 0 || (uint64_t)result != reply->expected))
        rc->want_abort = true;
    reply_free(reply);
    settle(rc);
}

/* ----------------------------------------------------------- lines -- */

/* Answers complete lines until the buffer has none or enough answers are
 * in flight. */
static void process_lines(raw_conn *rc)
{
    size_t max_name = rc->server->max_name;

    while (rc->in_flight < MAX_IN_FLIGHT && !rc->want_abort) {
        char *p = rc->buf + rc->start;
        size_t avail = rc->len - rc->start;
        char *nl = memchr(p, '\n', avail);

        if (nl == NULL) {
            if (rc->discarding) {
                rc->start = rc->len;
            } else if (avail > max_name + 1) {
                /* Too long even if a '\r' comes next: answer now, once,
                 * rather than let it fill the buffer. */
                answer_error(rc, p, avail, "name too long");
                rc->discarding = true;
                rc->start = rc->len;
            }
            return;
        }

        size_t line = (size_t)(nl - p);
        rc->start += line + 1;
        if (rc->discarding) {
            rc->discarding = false; /* the end of a line already answered */
            continue;
        }
        if (line > 0 && p[line - 1] == '\r')
            line--;
        if (line > max_name)
            answer_error(rc, p, line, "name too long");
        else
            answer_name(rc, p, line);
    }
}

/* ------------------------------------------------------ connection -- */

static void recv_done(piocp_request *req, ssize_t result);

static void post_recv(raw_conn *rc)
{
    /* Keep the partial line at the front so a whole line always fits. */
    if (rc->start > 0) {
        memmove(rc->buf, rc->buf + rc->start, rc->len - rc->start);
        rc->len -= rc->start;
        rc->start = 0;
    }
    rc->recv_pending = true;
    if (piocp_recv(rc->conn, &rc->recv_req, rc->buf + rc->len, rc->cap - rc->len) < 0) {
        rc->recv_pending = false;
        rc->abort_sent = true;
        piocp_abort(rc->conn);
    }
}

/* Decides the connection's next step; the last thing every callback does.
 * close/abort come last in it because on_closed may free `rc` as soon as
 * this callback returns. */
static void settle(raw_conn *rc)
{
    if (rc->abort_sent)
        return;
    if (!rc->want_abort && !rc->close_sent)
        process_lines(rc);
    if (rc->want_abort) {
        rc->abort_sent = true;
        piocp_abort(rc->conn);
        return;
    }
    if (rc->close_sent || rc->in_flight >= MAX_IN_FLIGHT)
        return;
    /* Below the limit, every complete line has been answered. */
    if (rc->peer_done) {
        /* Waiting for the last answer, though close would let it finish,
         * keeps "closed once the answers are sent" independent of how
         * close drains. */
        if (rc->in_flight == 0) {
            rc->close_sent = true;
            piocp_close(rc->conn);
        }
        return;
    }
    if (!rc->recv_pending)
        post_recv(rc);
}

static void recv_done(piocp_request *req, ssize_t result)
{
    raw_conn *rc = req->user;
    rc->recv_pending = false;

    if (result < 0) {
        /* Broken, timed out or being stopped: the engine reports the
         * error in on_closed; answers already queued may still go out. */
        if (!rc->close_sent && !rc->abort_sent) {
            rc->close_sent = true;
            piocp_close(rc->conn);
        }
        return;
    }
    if (result == 0)
        rc->peer_done = true; /* a trailing name without '\n' is ignored */
    else
        rc->len += (size_t)result;
    settle(rc);
}

static void on_closed(piocp_conn *conn, int error)
{
    (void)error;
    /* Every request has completed by now, so no reply is left. */
    free(piocp_conn_user(conn));
}

static void on_connection(piocp_listener *listener, piocp_conn *conn, void *user)
{
    (void)listener;
    piocp_raw_server *server = user;

    size_t cap = 2 * (server->max_name + 2);
    if (cap < MIN_RECV_BUFFER)
        cap = MIN_RECV_BUFFER;
    raw_conn *rc = calloc(1, sizeof *rc + cap);
    if (rc == NULL) {
        piocp_conn_set_callbacks(conn, on_closed, NULL);
        piocp_abort(conn);
        return;
    }
    rc->server = server;
    rc->conn = conn;
    rc->cap = cap;
    rc->recv_req.complete = recv_done;
    rc->recv_req.user = rc;
    if (server->root.log) {
        struct sockaddr_storage addr;
        socklen_t addrlen = sizeof addr;
        if (piocp_conn_peer(conn, &addr, &addrlen) == 0)
            piocp_log_peer(&addr, addrlen, rc->peer);
        else
            strcpy(rc->peer, "-");
    }
    piocp_conn_set_callbacks(conn, on_closed, rc);
    settle(rc);
}

const piocp_listener_callbacks piocp_raw_server_callbacks = {
    .on_connection = on_connection,
};

/* ---------------------------------------------------------- server -- */

void piocp_raw_options_init(piocp_raw_options *options)
{
    memset(options, 0, sizeof *options);
    options->max_name = DEFAULT_MAX_NAME;
    options->access_log_fd = PIOCP_INVALID_FILE;
}

int piocp_raw_server_new(piocp_raw_server **out, const char *root, const piocp_raw_options *options)
{
    piocp_raw_options defaults;
    if (!options) {
        piocp_raw_options_init(&defaults);
        options = &defaults;
    }
    if (out == NULL || root == NULL)
        return -EINVAL;
    *out = NULL;

    piocp_raw_server *server = calloc(1, sizeof *server);
    if (server == NULL)
        return -ENOMEM;
    atomic_init(&server->requests, 0);
    server->max_name = options->max_name ? options->max_name : DEFAULT_MAX_NAME;
    if (server->max_name > LIMIT_MAX_NAME)
        server->max_name = LIMIT_MAX_NAME;
    /* The protocol carries no length: the client knows a file's size from
     * elsewhere and reads that many bytes, so an answer of a file's
     * previous size would desynchronise it.  Every hit is checked (the
     * open file's info read again), so that a file changed before its request is served as it
     * is now. */
    int rc = piocp_served_root_open(&server->root, root, options->access_log_fd, 0);
    if (rc < 0) {
        free(server);
        return rc;
    }
    *out = server;
    return 0;
}

void piocp_raw_server_free(piocp_raw_server *server)
{
    if (server == NULL)
        return;
    piocp_served_root_close(&server->root);
    free(server);
}

uint64_t piocp_raw_server_requests(const piocp_raw_server *server)
{
    return atomic_load_explicit(&server->requests, memory_order_relaxed);
}

piocp_file piocp_raw_server_swap_access_log(piocp_raw_server *server, piocp_file fd)
{
    return piocp_served_root_swap_log(&server->root, fd);
}
