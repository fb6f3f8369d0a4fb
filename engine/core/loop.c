/*
 * loop.c - the one process loop every backend runs under (see
 * core/backend.h): the worker loop, and a connection's turn.
 *
 * A worker waits in its backend's poll, which turns what the kernel
 * reports into core calls; then it takes the posts made on other threads,
 * runs the turns of the connections that became ready, sweeps idle
 * connections if it is the sweeper, and hands the batch to the binding.
 *
 * A connection's turn is claimed with `busy` (only one worker runs it; work
 * that arrives meanwhile sets `again`), moves its requests forward through
 * the backend, completes them outside the lock (callbacks may post more),
 * and closes the socket only once the kernel holds nothing of it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/backend.h"
#include "core/fault.h"
#include "errors.h"
#include "platform/platform.h"

#include <stdio.h>
#include <string.h>

/* Bytes one connection may move in one turn before others get theirs: a
 * fast reader of a 100 MiB file must not keep a worker to itself. */
#define TURN_BUDGET (4u << 20)

static PIOCP_THREAD_LOCAL piocp_worker *current_worker;

piocp_worker *piocp_current_worker(void) { return current_worker; }

int piocp_worker_index(void) { return current_worker ? current_worker->index : -1; }

void piocp_touch(piocp_conn *c)
{
    atomic_store_explicit(&c->last_active_ms, piocp_now_ms(), memory_order_relaxed);
}

/* ------------------------------------------------------------- sends -- */

void piocp_sent_locked(piocp_conn *c, piocp_request *r, size_t n)
{
    /* one step moves head bytes or file bytes, never both (send_step): the
     * bytes are the file's if the head was out before it */
    bool file = r->op == PIOCP_OP_TRANSMIT && r->done >= r->u.transmit.head_len;
    piocp_count(c->engine, file ? PIOCP_M_SENT_FILE_BYTES : PIOCP_M_SENT_BUFFER_BYTES, n);
    if (c->borrowed)
        piocp_count(c->engine, PIOCP_M_BORROWED_BYTES, n);
    r->done += n;
    piocp_touch(c);
}

piocp_sends piocp_run_sends_locked(piocp_conn *c, piocp_done_list *done, size_t *budget,
                                   piocp_send_step_fn step, bool transmits_only)
{
    while (c->send_head) {
        if (c->abort_error)
            return PIOCP_SENDS_BROKEN;
        piocp_request *r = c->send_head;
        if (r->op == PIOCP_OP_SHUTDOWN) {
            /* every byte posted before it is the kernel's now: the FIN
             * follows them */
            const piocp_backend_ops *ops = c->engine->backend;
            int rc = ops->shutdown_write ? ops->shutdown_write(c)
                                         : piocp_socket_shutdown_write(c->fd);
            c->send_head = r->next;
            if (!c->send_head)
                c->send_tail = NULL;
            piocp_done_push(done, r, rc);
            continue;
        }
        if (transmits_only && r->op == PIOCP_OP_SEND && r->done < r->u.send.len)
            return PIOCP_SENDS_HANDOFF;
        if (*budget == 0)
            return PIOCP_SENDS_BUDGET;
        ssize_t n = step(c, r);
        if (n == -PIOCP_EINTR)
            continue;
        if (n == -PIOCP_EAGAIN || n == -PIOCP_EWOULDBLOCK)
            return PIOCP_SENDS_BLOCKED;
        if (n < 0) {
            /* the byte stream is broken: later sends cannot keep their order */
            c->abort_error = (int)n;
            return PIOCP_SENDS_BROKEN;
        }
        if (n > 0) {
            piocp_sent_locked(c, r, (size_t)n);
            *budget = (size_t)n >= *budget ? 0 : *budget - (size_t)n;
            continue;
        }
        c->send_head = r->next;
        if (!c->send_head)
            c->send_tail = NULL;
        piocp_done_push(done, r, (ssize_t)r->done);
    }
    return PIOCP_SENDS_IDLE;
}

/* ---------------------------------------------------------- closing -- */

/* Graceful close after the last send: FIN, then drop what the peer still
 * sends.  true: the socket may be closed now; false: wait until readable.
 *
 * Lingering close (RFC 9112 9.6, nginx's lingering_close): close(2) with
 * unread bytes in the receive queue sends a RST and drops what of the
 * answer is still in the send buffer, so a client that wrote anything after
 * its last request (a pipelined request, a stray CRLF) would get a cut
 * answer.  Send the FIN after the data, then read and drop until the peer
 * closes too, or linger_ms.
 *
 * A peer still there at the end is not an error: every byte was handed to
 * the kernel, which goes on delivering it after an ordinary close(2) (a
 * reset would throw away what is still queued).  So the socket is closed
 * in order and on_closed says 0.  Emptied right before, the receive queue
 * holds nothing that would make the kernel reset it anyway. */
static bool linger_locked(piocp_conn *c)
{
    piocp_engine *e = c->engine;
    if (!c->lingering) {
        c->lingering = true;
        (void)piocp_socket_shutdown_write(c->fd); /* a failure shows in the drain */
        c->linger_until_ms = piocp_now_ms() + e->config.linger_ms;
    }
    bool peer_closed = piocp_socket_drain(c->fd);
    /* no waiting while the engine stops, also for a connection that began
     * lingering before the stop */
    bool over = peer_closed || atomic_load_explicit(&e->draining, memory_order_relaxed) ||
                piocp_now_ms() >= c->linger_until_ms;
    if (!over) /* the sweep brings the connection back then (piocp_scan_idle) */
        atomic_store_explicit(&c->deadline_ms, c->linger_until_ms, memory_order_relaxed);
    return over;
}

static bool closing_locked(const piocp_conn *c)
{
    return c->abort_error || (c->close_requested && !c->send_head);
}

/* Returns true once the socket is closed. */
static bool close_step_locked(piocp_worker *w, piocp_conn *c, piocp_done_list *done)
{
    if (c->in_kernel > 0) {
        /* the kernel still holds requests (and their buffers) on this
         * socket: have them cancelled, close once they are back */
        w->engine->backend->cancel(w, c);
        return false;
    }
    piocp_fail_all_locked(c, c->abort_error ? c->abort_error : -PIOCP_ECANCELED, done);
    /* a borrowed socket goes back as it is: no FIN, nothing read */
    if (c->abort_error || c->borrowed || linger_locked(c)) {
        piocp_close_socket_locked(c, c->abort_error);
        return true;
    }
    return false; /* lingering: park arranges to hear from the peer */
}

/* Stopping, on a connection not answered yet: true while it may still read
 * its first request.  A client that connected just before the stop (or a
 * reload) has sent it, or is about to, and would otherwise get a closed
 * connection for a request it cannot know was never read; nginx serves a
 * connection's first request through a graceful shutdown for the same
 * reason.  The wait is bounded: a close deadline ends it in order. */
static bool first_request_may_come_locked(piocp_conn *c)
{
    long long now = piocp_now_ms();
    if (!c->first_request_until_ms) {
        long long until = now + c->engine->config.drain_first_request_ms;
        c->first_request_until_ms = until;
        long long deadline = atomic_load_explicit(&c->deadline_ms, memory_order_relaxed);
        if (!deadline || deadline > until) {
            atomic_store_explicit(&c->deadline_graceful, true, memory_order_relaxed);
            atomic_store_explicit(&c->deadline_ms, until, memory_order_relaxed);
        }
    }
    if (now < c->first_request_until_ms)
        return true;
    c->unanswered = false;
    return false;
}

/* Stopping: read no new request; a connection with nothing left to send is
 * not a running transfer and closes now. */
static void stop_reading_locked(piocp_worker *w, piocp_conn *c, piocp_done_list *done)
{
    const piocp_backend_ops *ops = w->engine->backend;
    if (c->unanswered && first_request_may_come_locked(c))
        return;
    if (c->recv_req && !(ops->cancel_recv && ops->cancel_recv(w, c))) {
        piocp_done_push(done, c->recv_req, -PIOCP_ECANCELED);
        c->recv_req = NULL;
    }
    if (!c->send_head)
        c->close_requested = true;
}

/* ----------------------------------------------------------- cancel -- */

/* Ends what piocp_cancel asked to end (connection.c decides what is
 * pending).  Requests that never started were set aside and complete now.
 * The recv and the send queue's head may be held by the kernel: the
 * backend then asks for them back and they end on a later turn (or in the
 * recv's own completion); otherwise they end here, a send or transmit with
 * req->done as sent.  Runs before `run` in the same locked stretch, so a
 * cancelled head is never stepped again. */
static void resolve_cancels_locked(piocp_worker *w, piocp_conn *c, piocp_done_list *done)
{
    const piocp_backend_ops *ops = w->engine->backend;
    piocp_done_take(done, &c->cancelled);
    piocp_request *r = c->recv_req;
    if (r && r->cancelling && !(ops->cancel_recv && ops->cancel_recv(w, c))) {
        c->recv_req = NULL;
        piocp_done_push(done, r, -PIOCP_ECANCELED);
    }
    r = c->send_head;
    if (r && r->cancelling && !(ops->cancel_send && ops->cancel_send(w, c))) {
        c->send_head = r->next;
        if (!c->send_head)
            c->send_tail = NULL;
        if (r->op == PIOCP_OP_SHUTDOWN)
            c->write_shut = false; /* its FIN did not go out */
        piocp_done_push(done, r, -PIOCP_ECANCELED);
    }
}

/* -------------------------------------------------------------- turn -- */

void piocp_conn_process(piocp_worker *w, piocp_conn *c)
{
    const piocp_backend_ops *ops = w->engine->backend;
    size_t budget = TURN_BUDGET;
    bool closed = false, more = true;
    piocp_mutex_lock(&c->lock);
    if (c->busy || c->state != CONN_OPEN) {
        if (c->busy)
            c->again = true;
        piocp_mutex_unlock(&c->lock);
        return;
    }
    c->busy = true;
    do {
        c->again = false;
        piocp_done_list done = {0};
        bool connected = false;
        if (atomic_load_explicit(&c->engine->draining, memory_order_relaxed))
            stop_reading_locked(w, c, &done);
        if (c->connecting && c->close_requested && !c->abort_error)
            c->abort_error = -PIOCP_ECANCELED; /* stopping: a connect is not waited for */
        if (closing_locked(c)) {
            closed = close_step_locked(w, c, &done);
        } else if (c->connecting) {
            connected = piocp_connect_step_locked(c);
            if (c->abort_error)
                c->again = true; /* failed: close it, and tell `done` */
        } else {
            resolve_cancels_locked(w, c, &done);
            more = ops->run(w, c, &done, &budget);
            /* a send that just finished may have been the last thing a
             * stop was waiting for: nothing else would bring us back */
            if (atomic_load_explicit(&c->engine->draining, memory_order_relaxed))
                stop_reading_locked(w, c, &done);
            if (closing_locked(c))
                c->again = true; /* broken, or the last send before a close is out */
        }
        piocp_connect_fn connect_done = c->connect_done;
        void *connect_user = c->connect_user;
        piocp_mutex_unlock(&c->lock);
        piocp_complete_list(c->engine, done.head);
        if (connected) { /* its first callback, in its turn as on_connection is */
            piocp_count(c->engine, PIOCP_M_REQUESTS + PIOCP_METRIC_OP_CONNECT, 1);
            connect_done(c, 0, connect_user);
        }
        piocp_mutex_lock(&c->lock);
    } while (!closed && more && c->again);
    c->busy = false;
    if (!closed) {
        if (!more || c->again) {
            piocp_schedule_locked(c); /* out of budget: back of the line */
        } else if (ops->park) {
            int rc = ops->park(w, c);
            if (rc < 0) {
                if (!c->abort_error)
                    c->abort_error = rc; /* cannot wait on it: fail it rather than hang */
                piocp_schedule_locked(c);
            } else if (rc > 0) {
                /* not on the local list, which this worker runs to the end
                 * before it polls: what the turn needs comes from the poll */
                piocp_schedule_after_poll_locked(c);
            }
        }
    }
    piocp_mutex_unlock(&c->lock);
    if (closed)
        piocp_finish_closed(c);
}

/* ------------------------------------------------------------ worker -- */

/* Tells piocp_engine_start how this worker's start went, and waits for its
 * verdict on all of them: no worker serves unless every one could start. */
static bool report_start(piocp_worker *w, int rc)
{
    piocp_engine *e = w->engine;
    piocp_mutex_lock(&e->start_lock);
    if (rc < 0 && e->start_error == 0)
        e->start_error = rc;
    e->workers_reported++;
    piocp_cond_broadcast(&e->start_cond);
    while (!e->start_decided)
        piocp_cond_wait(&e->start_cond, &e->start_lock);
    bool go = e->start_error == 0;
    piocp_mutex_unlock(&e->start_lock);
    return go;
}

/* How many times a worker runs the work its own batch_end posted before it
 * looks at the kernel again. */
enum { LOCAL_ROUNDS = 2 };

static void worker_loop(piocp_worker *w)
{
    piocp_engine *e = w->engine;
    const piocp_backend_ops *ops = e->backend;
    /* idle timeouts and deadlines a few times a second, and user timers */
    bool sweeper = w->index == 0;
    int period = piocp_sweep_period_ms(e);
    w->next_sweep_ms = piocp_now_ms() + period;
    while (!atomic_load(&e->quit)) {
        int timeout = -1;
        if (w->local.head) {
            timeout = 0; /* work of our own pending: only look, do not sleep */
        } else if (sweeper) {
            long long left = w->next_sweep_ms - piocp_now_ms();
            timeout = left > 0 ? (int)left : 0;
            int timer = piocp_timers_wait_ms(e); /* the nearest timer may come first */
            if (timer >= 0 && timer < timeout)
                timeout = timer;
        }
        int events = ops->poll(w, timeout);
        if (events < 0) {
            char text[128];
            fprintf(stderr, "pyiocp: worker %d cannot wait on the %s backend: %s\n", w->index,
                    ops->name, piocp_error_text(-events, text, sizeof text));
            break;
        }
        if (events & PIOCP_POLL_WOKEN) {
            piocp_take_global(w);
            piocp_run_user_completions(e);
        }
        piocp_take_remote(w);
        if (sweeper)
            piocp_timers_fire_due(e);
        if (sweeper && piocp_now_ms() >= w->next_sweep_ms) {
            w->next_sweep_ms = piocp_now_ms() + period;
            piocp_scan_idle(e);
            piocp_listeners_resume(e);
        }
        piocp_run_local(w);
        piocp_batch_end(e);
        /* What the binding posted in batch_end (a Python handler's send and
         * next recv) is ours to run: run it now.  Looking at the kernel
         * first found nothing new in a ping-pong and cost epoll one
         * epoll_wait per message.  Bounded: the kernel is looked at again
         * after a few rounds. */
        for (int round = 0; w->local.head && round < LOCAL_ROUNDS; round++) {
            piocp_run_local(w);
            piocp_batch_end(e);
        }
    }
}

void *piocp_worker_main(void *arg)
{
    piocp_worker *w = arg;
    const piocp_backend_ops *ops = w->engine->backend;
    current_worker = w;
    int rc = PIOCP_FAULT("worker_init");
    if (rc == 0 && ops->worker_init)
        rc = ops->worker_init(w);
    if (report_start(w, rc)) {
        const piocp_config *config = &w->engine->config;
        if (config->worker_start)
            config->worker_start(config->user);
        worker_loop(w);
        if (config->worker_stop)
            config->worker_stop(config->user);
    }
    if (ops->worker_exit)
        ops->worker_exit(w);
    current_worker = NULL;
    return NULL;
}
