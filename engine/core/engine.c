/*
 * engine.c - the loop core: configuration, backend choice, worker threads,
 * the stop protocol and user completions.  It knows nothing about any
 * kernel mechanism; the backend files do the I/O.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/internal.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_MAX_CONNECTIONS 10000

/* In order of preference for "auto": true completions first, readiness
 * turned into completions where io_uring is refused. */
static const piocp_backend_ops *const all_backends[] = {
    &piocp_backend_io_uring,
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

int piocp_backend_names(const char **names, int max)
{
    int n = 0;
    for (size_t i = 0; i < sizeof all_backends / sizeof all_backends[0] && n < max; i++)
        names[n++] = all_backends[i]->name;
    return n;
}

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* --------------------------------------------------------- lifecycle -- */

void piocp_config_init(piocp_config *config)
{
    memset(config, 0, sizeof *config);
    config->backend = "auto";
    config->max_connections = DEFAULT_MAX_CONNECTIONS;
}

int piocp_engine_new(piocp_engine **out, const piocp_config *config)
{
    piocp_config cfg;
    piocp_config_init(&cfg);
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
    char note[256] = "";
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
        if (!note[0]) /* why the preferred backend was passed over */
            snprintf(note, sizeof note, "%s refused: %s", all_backends[i]->name, strerror(-rc));
    }
    if (!backend)
        return automatic ? -ENOSYS : -ENOENT;

    piocp_engine *e = calloc(1, sizeof *e);
    if (!e)
        return -ENOMEM;
    e->backend = backend;
    memcpy(e->backend_note, note, sizeof note);
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
        pthread_mutex_init(&e->workers[i].remote_lock, NULL);
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
            /* shutdown first: a ring's pending (multishot) accept holds the
             * file open past close() and would keep accepting; shutdown ends
             * it.  Closing also drops the fd from epoll; a stale event finds
             * `closed` set. */
            shutdown(l->fd, SHUT_RDWR);
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
            for_each_open(e, piocp_abort_locked);
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
    for (int i = 0; i < e->threads; i++)
        pthread_mutex_destroy(&e->workers[i].remote_lock);
    free(e->conns);
    free(e->free_slots);
    free(e->workers);
    free(e);
}

const char *piocp_engine_backend(const piocp_engine *e) { return e->backend->name; }
const char *piocp_engine_backend_note(const piocp_engine *e) { return e->backend_note; }

const char *piocp_backend_describe(const char *name, char *buf, size_t len)
{
    if (strcmp(name, "io_uring") == 0)
        return piocp_io_uring_describe(buf, len);
    for (size_t i = 0; i < sizeof all_backends / sizeof all_backends[0]; i++) {
        if (strcmp(name, all_backends[i]->name) == 0) {
            int rc = all_backends[i]->probe();
            snprintf(buf, len, "%s: %s", name, rc == 0 ? "available" : strerror(-rc));
            return buf;
        }
    }
    snprintf(buf, len, "%s: unknown backend", name);
    return buf;
}
int piocp_engine_threads(const piocp_engine *e) { return e->threads; }
int piocp_engine_connections(const piocp_engine *e) { return atomic_load(&e->open_conns); }

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

