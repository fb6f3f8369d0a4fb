/*
 * server.c - the metrics endpoint: GET /metrics answered with the
 * Prometheus text of an engine's or an area's counters, rendered in C on a
 * worker, so a scrape costs no Python and works while Python is busy.
 *
 * One request per connection, answered with "Connection: close": a scrape
 * every few seconds gains nothing from keep-alive, and a connection that
 * carries one answer needs no pipelining state.  The request head is
 * bounded (HEAD_MAX) and must arrive within HEAD_TIMEOUT_MS; anything else
 * gets a short error answer.
 */
#include "pyiocp.h"
#include "core/metrics.h"
#include "errors.h"
#include "protocols/http/parser.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD_MAX 4096
#define HEAD_TIMEOUT_MS 10000
#define CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

struct piocp_metrics_server {
    const piocp_engine *engine;
    const void *area;
};

typedef struct metrics_conn {
    piocp_conn *conn;
    const piocp_metrics_server *server;
    piocp_request recv_req, send_req;
    char *answer;                  /* head and body, sent once */
    size_t len;
    char head[HEAD_MAX];
} metrics_conn;

static void send_done(piocp_request *req, ssize_t result)
{
    (void)result; /* a failed send aborts the connection; on_closed frees */
    metrics_conn *mc = req->user;
    piocp_close(mc->conn);
}

/* Sends `status` with `body` (len bytes; HEAD: only its length), then
 * closes. */
static void answer(metrics_conn *mc, int status, const char *reason, const char *extra,
                   const char *body, size_t body_len, bool head_only)
{
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                     "Connection: close\r\n\r\n",
                     status, reason, status == 200 ? CONTENT_TYPE : "text/plain", body_len,
                     extra);
    size_t send_body = head_only ? 0 : body_len;
    mc->answer = malloc((size_t)n + send_body);
    if (n < 0 || !mc->answer) {
        piocp_abort(mc->conn);
        return;
    }
    memcpy(mc->answer, head, (size_t)n);
    if (send_body)
        memcpy(mc->answer + n, body, send_body);
    mc->send_req.complete = send_done;
    mc->send_req.user = mc;
    if (piocp_send(mc->conn, &mc->send_req, mc->answer, (size_t)n + send_body) < 0)
        piocp_abort(mc->conn);
}

static void answer_text(metrics_conn *mc, int status, const char *reason, const char *extra,
                        bool head_only)
{
    char body[64];
    int n = snprintf(body, sizeof body, "%d %s\n", status, reason);
    answer(mc, status, reason, extra, body, (size_t)n, head_only);
}

static void answer_metrics(metrics_conn *mc, bool head_only)
{
    const piocp_metrics_server *s = mc->server;
    /* counters grow while rendering: leave room, and render again if a
     * digit more did not fit */
    size_t cap = piocp_metrics_render(s->engine, s->area, NULL, 0) + 1024;
    for (int attempt = 0; attempt < 4; attempt++) {
        char *body = malloc(cap);
        if (!body)
            break;
        size_t len = piocp_metrics_render(s->engine, s->area, body, cap);
        if (len > 0 && len < cap) {
            answer(mc, 200, "OK", "", body, len, head_only);
            free(body);
            return;
        }
        free(body);
        if (len == 0)
            break;
        cap = len + 1024;
    }
    answer_text(mc, 500, "Internal Server Error", "", head_only);
}

static bool is(const char *s, size_t len, const char *word)
{
    return len == strlen(word) && memcmp(s, word, len) == 0;
}

static void route(metrics_conn *mc, const http_request *req)
{
    bool get = is(req->method, req->method_len, "GET");
    bool head = is(req->method, req->method_len, "HEAD");
    size_t path_len = 0;
    while (path_len < req->target_len && req->target[path_len] != '?')
        path_len++;
    if (!is(req->target, path_len, "/metrics"))
        answer_text(mc, 404, "Not Found", "", head);
    else if (!get && !head)
        answer_text(mc, 405, "Method Not Allowed", "Allow: GET, HEAD\r\n", false);
    else
        answer_metrics(mc, head);
}

static void recv_done(piocp_request *req, ssize_t result)
{
    metrics_conn *mc = req->user;
    if (result <= 0) {
        piocp_close(mc->conn); /* the peer left, or the read failed */
        return;
    }
    mc->len += (size_t)result;
    http_request parsed;
    int rc = http_parse_request(mc->head, mc->len, HEAD_MAX, HEAD_MAX, &parsed);
    if (rc > 0) {
        piocp_conn_set_deadline(mc->conn, 0);
        route(mc, &parsed);
    } else if (rc == HTTP_INCOMPLETE && mc->len < sizeof mc->head) {
        if (piocp_recv(mc->conn, &mc->recv_req, mc->head + mc->len, sizeof mc->head - mc->len) < 0)
            piocp_abort(mc->conn);
    } else if (rc == HTTP_INCOMPLETE || rc == HTTP_ERR_HEADERS_TOO_LARGE) {
        answer_text(mc, 431, "Request Header Fields Too Large", "", false);
    } else {
        answer_text(mc, 400, "Bad Request", "", false);
    }
}

static void on_closed(piocp_conn *conn, int error)
{
    (void)error;
    metrics_conn *mc = piocp_conn_user(conn);
    if (mc) {
        free(mc->answer);
        free(mc);
    }
}

static void on_connection(piocp_listener *listener, piocp_conn *conn, void *user)
{
    (void)listener;
    metrics_conn *mc = calloc(1, sizeof *mc);
    piocp_conn_set_callbacks(conn, on_closed, mc);
    if (!mc) {
        piocp_abort(conn);
        return;
    }
    mc->conn = conn;
    mc->server = user;
    mc->recv_req.complete = recv_done;
    mc->recv_req.user = mc;
    piocp_conn_set_deadline(conn, HEAD_TIMEOUT_MS);
    if (piocp_recv(conn, &mc->recv_req, mc->head, sizeof mc->head) < 0)
        piocp_abort(conn);
}

const piocp_listener_callbacks piocp_metrics_server_callbacks = {
    .on_connection = on_connection,
};

int piocp_metrics_server_new(piocp_metrics_server **out, const piocp_engine *engine,
                             const void *area)
{
    if (!out || (!engine && !area) || (area && piocp_metrics_area_check(area) < 0))
        return -PIOCP_EINVAL;
    piocp_metrics_server *s = calloc(1, sizeof *s);
    if (!s)
        return -PIOCP_ENOMEM;
    s->engine = engine;
    s->area = area;
    *out = s;
    return 0;
}

void piocp_metrics_server_free(piocp_metrics_server *server) { free(server); }
