/*
 * engine.c - the loop core: configuration, worker threads, the connection
 * pool, ready lists, request queues and the close/stop protocol.  It knows
 * nothing about any kernel mechanism; the backend files do the I/O.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "engine_internal.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_CONNECTIONS 10000

static const piocp_backend_ops *const all_backends[] = {
    &piocp_backend_epoll,
};

static _Thread_local piocp_worker *current_worker;

long long piocp_now_ms(void)
{
    struct timespec ts;
    /* COARSE: a vDSO read, cheap enough to stamp every completion */
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

piocp_worker *piocp_current_worker(void) { return current_worker; }
void piocp_worker_enter(piocp_worker *worker) { current_worker = worker; }

int piocp_worker_index(void) { return current_worker ? current_worker->index : -1; }

int piocp_backends_available(const char **names, int max)
{
    int n = 0;
    for (size_t i = 0; i < sizeof all_backends / sizeof all_backends[0]; i++)
        if (all_backends[i]->probe() == 0 && n < max)
            names[n++] = all_backends[i]->name;
    return n;
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* --------------------------------------------------------- lifecycle -- */

int piocp_engine_new(piocp_engine **out, const piocp_config *config)
{
    piocp_config cfg = {0};
    if (config)
        cfg = *config;
    if (cfg.threads < 0 || cfg.threads > 1024 || cfg.max_connections < 0 ||
        cfg.idle_timeout_ms < 0)
        return -EINVAL;
    if (cfg.threads == 0)
        cfg.threads = 2 * online_cpus();
    if (cfg.max_connections == 0)
        cfg.max_connections = DEFAULT_MAX_CONNECTIONS;

    const piocp_backend_ops *backend = NULL;
    bool automatic = !cfg.backend || strcmp(cfg.backend, "auto") == 0;
    for (size_t i = 0; i < sizeof all_backends / sizeof all_backends[0]; i++) {
        if (!automatic && strcmp(cfg.backend, all_backends[i]->name) != 0)
            continue;
        int rc = all_backends[i]->probe();
        if (rc == 0) {
            backend = all_backends[i];
            break;
        }
        if (!automatic)
            return rc;
    }
    if (!backend)
        return automatic ? -ENOSYS : -ENOENT;

    piocp_engine *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->backend = backend;
    e->config = cfg;
    e->config.backend = backend->name;
    e->threads = cfg.threads;
    e->conn_capacity = (uint32_t)cfg.max_connections;
    /* calloc'd, so untouched slots cost address space, not memory */
    e->conns = calloc(e->conn_capacity, sizeof *e->conns);
    e->free_slots = malloc(e->conn_capacity * sizeof *e->free_slots);
    e->workers = calloc((size_t)e->threads, sizeof *e->workers);
    if (!e->conns || !e->free_slots || !e->workers) {
        free(e->conns);
        free(e->free_slots);
        free(e->workers);
        free(e);
        return -ENOMEM;
    }
    pthread_mutex_init(&e->pool_lock, NULL);
    pthread_cond_init(&e->idle_cond, NULL);
    pthread_mutex_init(&e->listeners_lock, NULL);
    pthread_mutex_init(&e->ready_lock, NULL);
    pthread_mutex_init(&e->user_lock, NULL);
    pthread_mutex_init(&e->stop_lock, NULL);
    for (int i = 0; i < e->threads; i++) {
        e->workers[i].engine = e;
        e->workers[i].index = i;
    }
    int rc = backend->init(e);
    if (rc < 0) {
        piocp_engine_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

static void *worker_main(void *arg)
{
    piocp_worker *w = arg;
    current_worker = w;
    w->engine->backend->run_worker(w);
    current_worker = NULL;
    return NULL;
}

int piocp_engine_start(piocp_engine *e)
{
    if (atomic_exchange(&e->started, true))
        return -EALREADY;
    /* Workers block every signal so that SIGINT/SIGTERM reach the thread
     * that owns the engine (Python's main thread) and interrupt its wait. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = 0, started = 0;
    for (; started < e->threads; started++) {
        rc = -pthread_create(&e->workers[started].thread, NULL, worker_main, &e->workers[started]);
        if (rc < 0)
            break;
    }
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc < 0) {
        atomic_store(&e->quit, true);
        e->backend->post_quit(e);
        for (int i = 0; i < started; i++)
            pthread_join(e->workers[i].thread, NULL);
        return rc;
    }
    return 0;
}

static void close_listeners(piocp_engine *e)
{
    pthread_mutex_lock(&e->listeners_lock);
    for (piocp_listener *l = e->listeners; l; l = l->next) {
        if (!atomic_exchange(&l->closed, true)) {
            /* closing the fd also removes it from the kernel's interest set;
             * a stale event finds `closed` set */
            close(l->fd);
            l->fd = -1;
        }
    }
    pthread_mutex_unlock(&e->listeners_lock);
}

/* Runs `fn` on every open connection, under its lock. */
static void for_each_open(piocp_engine *e, void (*fn)(piocp_conn *))
{
    pthread_mutex_lock(&e->pool_lock);
    uint32_t high = e->high_water;
    pthread_mutex_unlock(&e->pool_lock);
    for (uint32_t i = 0; i < high; i++) {
        piocp_conn *c = &e->conns[i];
        pthread_mutex_lock(&c->lock);
        if (c->state == CONN_OPEN)
            fn(c);
        pthread_mutex_unlock(&c->lock);
    }
}

/* Draining cancels pending recvs: no new request is read. */
static void kick(piocp_conn *c) { piocp_schedule_locked(c); }
static void abort_cancel(piocp_conn *c)
{
    if (!c->abort_error)
        c->abort_error = -ECANCELED;
    piocp_schedule_locked(c);
}

static bool wait_idle(piocp_engine *e, long long deadline_ms)
{
    pthread_mutex_lock(&e->pool_lock);
    while (atomic_load(&e->open_conns) > 0) {
        long long left = deadline_ms - piocp_now_ms();
        if (left <= 0)
            break;
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        if (left > 50)
            left = 50; /* COARSE clock and realtime differ; re-check often */
        ts.tv_nsec += left * 1000000;
        ts.tv_sec += ts.tv_nsec / 1000000000;
        ts.tv_nsec %= 1000000000;
        pthread_cond_timedwait(&e->idle_cond, &e->pool_lock, &ts);
    }
    bool idle = atomic_load(&e->open_conns) == 0;
    pthread_mutex_unlock(&e->pool_lock);
    return idle;
}

int piocp_engine_stop(piocp_engine *e, int drain_ms)
{
    if (current_worker && current_worker->engine == e)
        return -EDEADLK;
    pthread_mutex_lock(&e->stop_lock);
    if (atomic_exchange(&e->stopping, true)) {
        pthread_mutex_unlock(&e->stop_lock);
        return 0;
    }
    close_listeners(e);
    if (atomic_load(&e->started)) {
        atomic_store(&e->draining, true);
        for_each_open(e, kick);
        if (!wait_idle(e, piocp_now_ms() + (drain_ms > 0 ? drain_ms : 0))) {
            for_each_open(e, abort_cancel);
            wait_idle(e, piocp_now_ms() + 10000);
        }
        atomic_store(&e->quit, true);
        e->backend->post_quit(e);
        for (int i = 0; i < e->threads; i++)
            pthread_join(e->workers[i].thread, NULL);
        /* user completions posted after the workers left still complete once */
        piocp_run_user_completions(e);
    }
    pthread_mutex_unlock(&e->stop_lock);
    return 0;
}

void piocp_engine_free(piocp_engine *e)
{
    if (!e)
        return;
    if (atomic_load(&e->started) && !atomic_load(&e->quit))
        piocp_engine_stop(e, 0);
    close_listeners(e);
    /* connections that never reached a worker (engine never started) */
    for (uint32_t i = 0; i < e->high_water; i++) {
        piocp_conn *c = &e->conns[i];
        if (c->state == CONN_OPEN) {
            piocp_done_list done = {0};
            piocp_fail_all_locked(c, -ECANCELED, &done);
            piocp_close_socket_locked(c, -ECANCELED);
            piocp_complete_list(done.head);
            if (c->on_closed)
                c->on_closed(c, c->closed_error);
        }
        pthread_mutex_destroy(&c->lock);
    }
    while (e->listeners) {
        piocp_listener *next = e->listeners->next;
        free(e->listeners);
        e->listeners = next;
    }
    if (e->backend_data)
        e->backend->destroy(e);
    pthread_mutex_destroy(&e->pool_lock);
    pthread_cond_destroy(&e->idle_cond);
    pthread_mutex_destroy(&e->listeners_lock);
    pthread_mutex_destroy(&e->ready_lock);
    pthread_mutex_destroy(&e->user_lock);
    pthread_mutex_destroy(&e->stop_lock);
    free(e->conns);
    free(e->free_slots);
    free(e->workers);
    free(e);
}

const char *piocp_engine_backend(const piocp_engine *e) { return e->backend->name; }
int piocp_engine_threads(const piocp_engine *e) { return e->threads; }
int piocp_engine_connections(const piocp_engine *e) { return atomic_load(&e->open_conns); }

/* ---------------------------------------------------------- pool -- */

piocp_conn *piocp_pool_acquire(piocp_engine *e, int fd, const struct sockaddr *peer,
                               socklen_t peer_len)
{
    pthread_mutex_lock(&e->pool_lock);
    uint32_t slot;
    if (e->free_count > 0) {
        slot = e->free_slots[--e->free_count];
    } else if (e->high_water < e->conn_capacity) {
        slot = e->high_water;
        pthread_mutex_init(&e->conns[slot].lock, NULL);
        e->high_water++;
        atomic_store(&e->high_water_published, e->high_water);
    } else {
        pthread_mutex_unlock(&e->pool_lock);
        return NULL;
    }
    atomic_fetch_add(&e->open_conns, 1);
    pthread_mutex_unlock(&e->pool_lock);

    piocp_conn *c = &e->conns[slot];
    pthread_mutex_lock(&c->lock);
    /* `lock` is the first member and stays; everything after it is reset */
    uint32_t generation = c->generation + 1;
    memset((char *)c + sizeof c->lock, 0, sizeof *c - sizeof c->lock);
    c->generation = generation;
    c->slot = slot;
    c->engine = e;
    atomic_store(&c->refs, 1); /* the engine's, dropped after on_closed */
    atomic_store(&c->last_active_ms, piocp_now_ms());
    c->state = CONN_OPEN;
    c->fd = fd;
    /* optimistic: a client usually sends its request right after connecting */
    c->readable = true;
    c->writable = true;
    if (peer_len > sizeof c->peer)
        peer_len = sizeof c->peer;
    memcpy(&c->peer, peer, peer_len);
    c->peer_len = peer_len;
    pthread_mutex_unlock(&c->lock);
    return c;
}

piocp_conn *piocp_conn_from_slot(piocp_engine *e, uint32_t slot)
{
    /* the caller compares the generation under the slot's lock */
    return slot < e->high_water_published ? &e->conns[slot] : NULL;
}

void piocp_conn_retain(piocp_conn *c) { atomic_fetch_add(&c->refs, 1); }

void piocp_conn_release(piocp_conn *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    piocp_engine *e = c->engine;
    pthread_mutex_lock(&c->lock);
    c->state = CONN_FREE;
    pthread_mutex_unlock(&c->lock);
    pthread_mutex_lock(&e->pool_lock);
    e->free_slots[e->free_count++] = c->slot;
    pthread_mutex_unlock(&e->pool_lock);
}

void piocp_conn_set_callbacks(piocp_conn *c, piocp_closed_fn on_closed, void *user)
{
    pthread_mutex_lock(&c->lock);
    c->on_closed = on_closed;
    c->user = user;
    pthread_mutex_unlock(&c->lock);
}

void *piocp_conn_user(const piocp_conn *c) { return c->user; }
piocp_engine *piocp_conn_engine(const piocp_conn *c) { return c->engine; }

int piocp_conn_peer(const piocp_conn *c, struct sockaddr_storage *addr, socklen_t *addrlen)
{
    memcpy(addr, &c->peer, c->peer_len);
    *addrlen = c->peer_len;
    return 0;
}

/* ---------------------------------------------------- ready lists -- */

static void ready_push(ready_list *l, piocp_conn *c)
{
    c->ready_next = NULL;
    if (l->tail)
        l->tail->ready_next = c;
    else
        l->head = c;
    l->tail = c;
}

static piocp_conn *ready_pop(ready_list *l)
{
    piocp_conn *c = l->head;
    if (c) {
        l->head = c->ready_next;
        if (!l->head)
            l->tail = NULL;
    }
    return c;
}

/* Makes sure a worker will run this connection's requests.  Posts made on a
 * worker go to its local list (no lock, no system call); posts from other
 * threads go to the global list and wake one worker. */
void piocp_schedule_locked(piocp_conn *c)
{
    if (c->busy) {
        c->again = true;
        return;
    }
    if (c->queued)
        return;
    c->queued = true;
    atomic_fetch_add(&c->refs, 1);
    piocp_engine *e = c->engine;
    piocp_worker *w = current_worker;
    if (w && w->engine == e) {
        ready_push(&w->local, c);
        return;
    }
    pthread_mutex_lock(&e->ready_lock);
    bool was_empty = e->ready.head == NULL;
    ready_push(&e->ready, c);
    pthread_mutex_unlock(&e->ready_lock);
    if (was_empty)
        e->backend->wake(e);
}

void piocp_take_global(piocp_worker *w)
{
    piocp_engine *e = w->engine;
    pthread_mutex_lock(&e->ready_lock);
    while (e->ready.head)
        ready_push(&w->local, ready_pop(&e->ready));
    pthread_mutex_unlock(&e->ready_lock);
}

void piocp_run_local(piocp_worker *w)
{
    piocp_conn *c;
    while ((c = ready_pop(&w->local))) {
        pthread_mutex_lock(&c->lock);
        c->queued = false;
        bool run = c->state == CONN_OPEN;
        pthread_mutex_unlock(&c->lock);
        if (run)
            w->engine->backend->process(w, c);
        piocp_conn_release(c);
    }
}

/* ------------------------------------------------------- requests -- */

void piocp_complete_list(piocp_request *list)
{
    while (list) {
        piocp_request *next = list->next;
        list->next = NULL;
        list->complete(list, list->result);
        list = next;
    }
}

void piocp_done_push(piocp_done_list *done, piocp_request *r, ssize_t result)
{
    r->result = result;
    r->next = NULL;
    if (done->tail)
        done->tail->next = r;
    else
        done->head = r;
    done->tail = r;
}

/* Fails every pending request with `error`, in posting order. */
void piocp_fail_all_locked(piocp_conn *c, int error, piocp_done_list *done)
{
    if (c->recv_req) {
        piocp_done_push(done, c->recv_req, error);
        c->recv_req = NULL;
    }
    for (piocp_request *r = c->send_head, *next; r; r = next) {
        next = r->next;
        piocp_done_push(done, r, error);
    }
    c->send_head = c->send_tail = NULL;
}

void piocp_close_socket_locked(piocp_conn *c, int error)
{
    if (c->fd >= 0 && error) {
        /* an aborted connection ends with a reset, not a FIN: a client must
         * not take a cut-off file for a whole one */
        struct linger reset = {.l_onoff = 1, .l_linger = 0};
        setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = CONN_CLOSED;
    c->closed_error = error == -ECANCELED ? 0 : error;
}

/* After the socket is closed and every request has completed. */
void piocp_finish_closed(piocp_conn *c)
{
    piocp_engine *e = c->engine;
    if (c->on_closed)
        c->on_closed(c, c->closed_error);
    pthread_mutex_lock(&e->pool_lock);
    if (atomic_fetch_sub(&e->open_conns, 1) == 1)
        pthread_cond_broadcast(&e->idle_cond);
    pthread_mutex_unlock(&e->pool_lock);
    piocp_conn_release(c);
}

static int post_check_locked(piocp_conn *c)
{
    if (c->state != CONN_OPEN || c->close_requested || c->abort_error)
        return -ENOTCONN;
    return 0;
}

int piocp_recv(piocp_conn *c, piocp_request *req, void *buf, size_t len)
{
    if (!req || !req->complete || (!buf && len))
        return -EINVAL;
    pthread_mutex_lock(&c->lock);
    int rc = post_check_locked(c);
    if (rc == 0 && c->recv_req)
        rc = -EBUSY;
    if (rc == 0) {
        req->op = PIOCP_OP_RECV;
        req->conn = c;
        req->next = NULL;
        req->done = 0;
        req->u.recv.buf = buf;
        req->u.recv.len = len;
        c->recv_req = req;
        piocp_schedule_locked(c);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

static int queue_send(piocp_conn *c, piocp_request *req)
{
    pthread_mutex_lock(&c->lock);
    int rc = post_check_locked(c);
    if (rc == 0) {
        req->conn = c;
        req->next = NULL;
        req->done = 0;
        if (c->send_tail)
            c->send_tail->next = req;
        else
            c->send_head = req;
        c->send_tail = req;
        piocp_schedule_locked(c);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int piocp_send(piocp_conn *c, piocp_request *req, const void *buf, size_t len)
{
    if (!req || !req->complete || (!buf && len))
        return -EINVAL;
    req->op = PIOCP_OP_SEND;
    req->u.send.buf = buf;
    req->u.send.len = len;
    return queue_send(c, req);
}

int piocp_transmit(piocp_conn *c, piocp_request *req, const void *head, size_t head_len,
                   int fd, uint64_t offset, uint64_t count)
{
    if (!req || !req->complete || (!head && head_len) || fd < 0 ||
        (count != PIOCP_TRANSMIT_TO_EOF && offset + count < offset))
        return -EINVAL;
    if (count == PIOCP_TRANSMIT_TO_EOF) {
        /* fix the length now: an exact count lets the head go out with
         * MSG_MORE and turns a file shrinking underneath into an error */
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode))
            count = (uint64_t)st.st_size > offset ? (uint64_t)st.st_size - offset : 0;
    }
    req->op = PIOCP_OP_TRANSMIT;
    req->u.transmit.head = head;
    req->u.transmit.head_len = head_len;
    req->u.transmit.fd = fd;
    req->u.transmit.offset = offset;
    req->u.transmit.count = count;
    return queue_send(c, req);
}

int piocp_close(piocp_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int rc = c->state == CONN_OPEN ? 0 : -ENOTCONN;
    if (rc == 0 && !c->close_requested) {
        c->close_requested = true;
        piocp_schedule_locked(c);
    }
    pthread_mutex_unlock(&c->lock);
    return rc;
}

int piocp_abort(piocp_conn *c)
{
    pthread_mutex_lock(&c->lock);
    int rc = c->state == CONN_OPEN ? 0 : -ENOTCONN;
    if (rc == 0)
        abort_cancel(c);
    pthread_mutex_unlock(&c->lock);
    return rc;
}

/* ------------------------------------------------ user completions -- */

int piocp_post(piocp_engine *e, piocp_request *req, ssize_t result)
{
    if (!req || !req->complete)
        return -EINVAL;
    if (atomic_load(&e->quit))
        return -ESHUTDOWN;
    req->op = PIOCP_OP_USER;
    req->conn = NULL;
    req->result = result;
    req->next = NULL;
    pthread_mutex_lock(&e->user_lock);
    bool was_empty = e->user_head == NULL;
    if (e->user_tail)
        e->user_tail->next = req;
    else
        e->user_head = req;
    e->user_tail = req;
    pthread_mutex_unlock(&e->user_lock);
    if (was_empty)
        e->backend->wake(e);
    return 0;
}

void piocp_run_user_completions(piocp_engine *e)
{
    pthread_mutex_lock(&e->user_lock);
    piocp_request *list = e->user_head;
    e->user_head = e->user_tail = NULL;
    pthread_mutex_unlock(&e->user_lock);
    piocp_complete_list(list);
}

void piocp_batch_end(piocp_engine *e)
{
    if (e->config.batch_end)
        e->config.batch_end(e->config.batch_user);
}

/* ------------------------------------------------------- listeners -- */

int piocp_listen(piocp_engine *e, const struct sockaddr *addr, socklen_t addrlen, int backlog,
                 const piocp_listener_callbacks *callbacks, void *user, piocp_listener **out)
{
    if (!addr || !callbacks || !callbacks->on_connection || backlog < 1)
        return -EINVAL;
    if (atomic_load(&e->stopping))
        return -ESHUTDOWN;
    int fd = socket(addr->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, addr, addrlen) < 0 || listen(fd, backlog) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    piocp_listener *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return -ENOMEM;
    }
    l->engine = e;
    l->fd = fd;
    l->callbacks = *callbacks;
    l->user = user;
    pthread_mutex_lock(&e->listeners_lock);
    l->index = e->listener_count++;
    l->next = e->listeners;
    e->listeners = l;
    pthread_mutex_unlock(&e->listeners_lock);
    int rc = e->backend->add_listener(e, l);
    if (rc < 0) {
        atomic_store(&l->closed, true);
        close(fd);
        l->fd = -1;
        return rc;
    }
    if (out)
        *out = l;
    return 0;
}

int piocp_listener_address(const piocp_listener *l, struct sockaddr_storage *addr,
                           socklen_t *addrlen)
{
    *addrlen = sizeof *addr;
    if (l->fd < 0)
        return -EBADF;
    return getsockname(l->fd, (struct sockaddr *)addr, addrlen) < 0 ? -errno : 0;
}

uint64_t piocp_listener_refused(const piocp_listener *l) { return atomic_load(&l->refused); }

/* A backend accepted `fd`: give it a slot or refuse it. */
void piocp_accepted(piocp_listener *l, int fd, const struct sockaddr *peer, socklen_t peer_len)
{
    piocp_engine *e = l->engine;
    piocp_conn *c = atomic_load(&e->stopping) ? NULL : piocp_pool_acquire(e, fd, peer, peer_len);
    if (!c) {
        atomic_fetch_add(&l->refused, 1);
        close(fd);
        return;
    }
    if (e->backend->add_conn(e, c) < 0) {
        pthread_mutex_lock(&c->lock);
        piocp_close_socket_locked(c, -ENOMEM);
        pthread_mutex_unlock(&c->lock);
        piocp_finish_closed(c);
        return;
    }
    l->callbacks.on_connection(l, c, l->user);
}

/* ------------------------------------------------------ idle timeout -- */

void piocp_scan_idle(piocp_engine *e)
{
    long long limit = e->config.idle_timeout_ms;
    if (limit <= 0)
        return;
    long long now = piocp_now_ms();
    pthread_mutex_lock(&e->pool_lock);
    uint32_t high = e->high_water;
    pthread_mutex_unlock(&e->pool_lock);
    for (uint32_t i = 0; i < high; i++) {
        piocp_conn *c = &e->conns[i];
        if (now - atomic_load(&c->last_active_ms) < limit)
            continue;
        pthread_mutex_lock(&c->lock);
        if (c->state == CONN_OPEN && !c->abort_error &&
            now - atomic_load(&c->last_active_ms) >= limit) {
            c->abort_error = -ETIMEDOUT;
            piocp_schedule_locked(c);
        }
        pthread_mutex_unlock(&c->lock);
    }
}
