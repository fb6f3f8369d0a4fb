/*
 * scripted.c - a backend whose kernel is the test (C test builds only; see
 * scripted.h).  It is also the smallest complete backend: everything the
 * core asks of one (core/backend.h), with nothing kernel-specific around
 * it.  Workers wait on a condition variable; "accepting" takes connections
 * the test queued; a recv reads the input the test gave; a send step copies
 * into an output buffer the test drains.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "backends/scripted.h"
#include "core/backend.h"
#include "platform/platform.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct scripted_accept {
    struct scripted_accept *next;
    piocp_listener *listener;
    int fd;
} scripted_accept;

typedef struct scripted_backend {
    piocp_mutex lock;
    piocp_cond cond;
    unsigned wakeups;              /* wake-ups not yet taken by a worker */
    bool quit;
    scripted_accept *accepts;      /* connections the test queued (LIFO is fine) */
} scripted_backend;

typedef struct scripted_conn {
    size_t input_len, output_len;
    bool input_eof;
    bool output_shut;              /* the connection half-closed: the peer saw its FIN */
    int input_error, send_error;
    size_t send_limit;
    char input[PIOCP_SCRIPTED_BUFFER];
    char output[PIOCP_SCRIPTED_BUFFER];
} scripted_conn;

static int scripted_probe(void) { return 0; }

/* ------------------------------------------------------------ engine -- */

static void scripted_destroy(piocp_engine *e)
{
    scripted_backend *b = e->backend_data;
    while (b->accepts) {
        scripted_accept *a = b->accepts;
        b->accepts = a->next;
        close(a->fd);
        free(a);
    }
    piocp_mutex_destroy(&b->lock);
    piocp_cond_destroy(&b->cond);
    free(b);
    e->backend_data = NULL;
}

static int scripted_init(piocp_engine *e)
{
    scripted_backend *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    piocp_mutex_init(&b->lock);
    piocp_cond_init(&b->cond);
    e->backend_data = b;
    return 0;
}

static void scripted_wake(piocp_engine *e)
{
    scripted_backend *b = e->backend_data;
    piocp_mutex_lock(&b->lock);
    b->wakeups++;
    piocp_cond_signal(&b->cond);
    piocp_mutex_unlock(&b->lock);
}

static void scripted_wake_worker(piocp_worker *w) { scripted_wake(w->engine); }

static void scripted_post_quit(piocp_engine *e)
{
    scripted_backend *b = e->backend_data;
    piocp_mutex_lock(&b->lock);
    b->quit = true;
    piocp_cond_broadcast(&b->cond);
    piocp_mutex_unlock(&b->lock);
}

/* Waits for the test (a queued connection) or a wake-up, and hands queued
 * connections to their listeners. */
static int scripted_poll(piocp_worker *w, int timeout_ms)
{
    scripted_backend *b = w->engine->backend_data;
    long long deadline_us = timeout_ms > 0 ? piocp_monotonic_us() + timeout_ms * 1000LL : 0;
    piocp_mutex_lock(&b->lock);
    while (timeout_ms != 0 && !b->wakeups && !b->accepts && !b->quit) {
        if (timeout_ms < 0) {
            piocp_cond_wait(&b->cond, &b->lock);
            continue;
        }
        /* what is left of the timeout after wake-ups that found nothing */
        long long left_us = deadline_us - piocp_monotonic_us();
        if (left_us <= 0 || piocp_cond_timedwait(&b->cond, &b->lock, (left_us + 999) / 1000))
            break;
    }
    int result = 0;
    if (b->quit) {
        result = PIOCP_POLL_WOKEN;
    } else if (b->wakeups) {
        b->wakeups--;
        result = PIOCP_POLL_WOKEN;
    }
    scripted_accept *accepts = b->accepts;
    b->accepts = NULL;
    piocp_mutex_unlock(&b->lock);
    while (accepts) {
        scripted_accept *a = accepts;
        accepts = a->next;
        struct sockaddr_in peer = {.sin_family = AF_INET, .sin_port = htons(40000),
                                   .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        piocp_accept_completed(a->listener, a->fd, (struct sockaddr *)&peer, sizeof peer);
        free(a);
    }
    return result;
}

static int scripted_add_listener(piocp_engine *e, piocp_listener *l)
{
    (void)e;
    (void)l;
    return 0;
}

/* ------------------------------------------------------ connections -- */

static int scripted_add_conn(piocp_worker *w, piocp_conn *c)
{
    (void)w;
    (void)c;
    return 0;
}

/* Like piocp_socket_send_step, into the output buffer: a full buffer is a
 * full socket (-EAGAIN). */
static ssize_t scripted_step(piocp_conn *c, piocp_request *r)
{
    scripted_conn *sc = piocp_conn_backend(c);
    if (sc->send_error) {
        int error = sc->send_error;
        sc->send_error = 0;
        return error;
    }
    size_t room = sizeof sc->output - sc->output_len;
    if (sc->send_limit && room > sc->send_limit)
        room = sc->send_limit;
    char *out = sc->output + sc->output_len;
    const char *bytes = NULL;
    size_t left = 0;
    if (r->op == PIOCP_OP_SEND) {
        bytes = (const char *)r->u.send.buf + r->done;
        left = r->u.send.len - r->done;
    } else if (r->done < r->u.transmit.head_len) {
        bytes = (const char *)r->u.transmit.head + r->done;
        left = r->u.transmit.head_len - r->done;
    }
    if (bytes || r->op == PIOCP_OP_SEND) {
        if (left == 0)
            return 0;
        if (room == 0)
            return -EAGAIN;
        size_t n = left < room ? left : room;
        memcpy(out, bytes, n);
        sc->output_len += n;
        return (ssize_t)n;
    }
    uint64_t file_done = r->done - r->u.transmit.head_len;
    uint64_t count = r->u.transmit.count;
    bool to_eof = count == PIOCP_TRANSMIT_TO_EOF;
    if (!to_eof && file_done >= count)
        return 0;
    if (room == 0)
        return -EAGAIN;
    if (!to_eof && count - file_done < room)
        room = (size_t)(count - file_done);
    ssize_t n = pread(r->u.transmit.fd, out, room, (off_t)(r->u.transmit.offset + file_done));
    if (n < 0)
        return -errno;
    if (n == 0)
        return to_eof ? 0 : -EIO; /* the file ended before its count */
    sc->output_len += (size_t)n;
    return n;
}

static int scripted_shutdown_write(piocp_conn *c)
{
    scripted_conn *sc = piocp_conn_backend(c);
    sc->output_shut = true;
    return 0;
}

static void read_input_locked(piocp_conn *c, scripted_conn *sc, piocp_done_list *done)
{
    piocp_request *r = c->recv_req;
    if (!r || c->abort_error)
        return;
    if (sc->input_len > 0) {
        size_t n = r->u.recv.len < sc->input_len ? r->u.recv.len : sc->input_len;
        memcpy(r->u.recv.buf, sc->input, n);
        memmove(sc->input, sc->input + n, sc->input_len - n);
        sc->input_len -= n;
        c->recv_req = NULL;
        piocp_touch(c);
        piocp_done_push(done, r, (ssize_t)n);
    } else if (sc->input_error) {
        c->abort_error = sc->input_error; /* the recv fails with it as the socket closes */
    } else if (sc->input_eof) {
        c->recv_req = NULL;
        piocp_done_push(done, r, 0);
    }
}

static bool scripted_run(piocp_worker *w, piocp_conn *c, piocp_done_list *done, size_t *budget)
{
    (void)w;
    read_input_locked(c, piocp_conn_backend(c), done);
    return piocp_run_sends_locked(c, done, budget, scripted_step, false) != PIOCP_SENDS_BUDGET;
}

const piocp_backend_ops piocp_backend_scripted = {
    .name = "scripted",
    .explicit_only = true,
    .conn_size = sizeof(scripted_conn),
    .probe = scripted_probe,
    .init = scripted_init,
    .destroy = scripted_destroy,
    .poll = scripted_poll,
    .wake = scripted_wake,
    .wake_worker = scripted_wake_worker,
    .post_quit = scripted_post_quit,
    .add_listener = scripted_add_listener,
    .add_conn = scripted_add_conn,
    .run = scripted_run,
    .shutdown_write = scripted_shutdown_write,
};

/* ---------------------------------------------------- the test's side -- */

int piocp_scripted_connect(piocp_listener *l)
{
    scripted_backend *b = l->engine->backend_data;
    scripted_accept *a = malloc(sizeof *a);
    if (!a)
        return -ENOMEM;
    a->listener = l;
    a->fd = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (a->fd < 0) {
        int rc = -errno;
        free(a);
        return rc;
    }
    piocp_mutex_lock(&b->lock);
    a->next = b->accepts;
    b->accepts = a;
    piocp_cond_signal(&b->cond);
    piocp_mutex_unlock(&b->lock);
    return 0;
}

/* Runs `change` on an open connection's script and schedules its turn. */
static scripted_conn *lock_open(piocp_conn *c)
{
    piocp_mutex_lock(&c->lock);
    if (c->state == CONN_OPEN)
        return piocp_conn_backend(c);
    piocp_mutex_unlock(&c->lock);
    return NULL;
}

static void schedule_and_unlock(piocp_conn *c)
{
    piocp_schedule_locked(c);
    piocp_mutex_unlock(&c->lock);
}

size_t piocp_scripted_input(piocp_conn *c, const void *data, size_t len)
{
    scripted_conn *sc = lock_open(c);
    if (!sc)
        return 0;
    size_t room = sizeof sc->input - sc->input_len;
    size_t n = len < room ? len : room;
    memcpy(sc->input + sc->input_len, data, n);
    sc->input_len += n;
    schedule_and_unlock(c);
    return n;
}

void piocp_scripted_input_eof(piocp_conn *c)
{
    scripted_conn *sc = lock_open(c);
    if (sc) {
        sc->input_eof = true;
        schedule_and_unlock(c);
    }
}

void piocp_scripted_input_error(piocp_conn *c, int error)
{
    scripted_conn *sc = lock_open(c);
    if (sc) {
        sc->input_error = error;
        schedule_and_unlock(c);
    }
}

void piocp_scripted_send_limit(piocp_conn *c, size_t limit)
{
    scripted_conn *sc = lock_open(c);
    if (sc) {
        sc->send_limit = limit;
        schedule_and_unlock(c);
    }
}

void piocp_scripted_send_error(piocp_conn *c, int error)
{
    scripted_conn *sc = lock_open(c);
    if (sc) {
        sc->send_error = error;
        schedule_and_unlock(c);
    }
}

size_t piocp_scripted_output_pending(piocp_conn *c)
{
    piocp_mutex_lock(&c->lock);
    size_t n = ((scripted_conn *)piocp_conn_backend(c))->output_len;
    piocp_mutex_unlock(&c->lock);
    return n;
}

bool piocp_scripted_output_shut(piocp_conn *c)
{
    piocp_mutex_lock(&c->lock);
    bool shut = ((scripted_conn *)piocp_conn_backend(c))->output_shut;
    piocp_mutex_unlock(&c->lock);
    return shut;
}

size_t piocp_scripted_output(piocp_conn *c, void *buf, size_t cap)
{
    /* also after close: what was sent before stays readable until reuse */
    piocp_mutex_lock(&c->lock);
    scripted_conn *sc = piocp_conn_backend(c);
    size_t n = cap < sc->output_len ? cap : sc->output_len;
    memcpy(buf, sc->output, n);
    memmove(sc->output, sc->output + n, sc->output_len - n);
    sc->output_len -= n;
    if (c->state == CONN_OPEN && n > 0)
        piocp_schedule_locked(c); /* room again: blocked sends go on */
    piocp_mutex_unlock(&c->lock);
    return n;
}
