/*
 * engine.c - the engine's lifecycle: configuration, backend choice, worker
 * threads, the stop protocol and user completions.  It knows nothing about
 * any kernel mechanism (core/backend.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "core/backend.h"
#include "core/fault.h"
#include "core/metrics.h"
#include "errors.h"
#include "platform/platform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_MAX_CONNECTIONS 10000
/* How long a closing connection waits for the peer to close its side. */
#define DEFAULT_LINGER_MS 5000
#define DEFAULT_DRAIN_FIRST_REQUEST_MS 1000

/* Every backend this build has, in order of preference for "auto": true
 * completions first, readiness turned into completions where io_uring is
 * refused.  A new backend is one line here. */
static const piocp_backend_ops *const all_backends[] = {
#ifdef __linux__
    &piocp_backend_io_uring,
    &piocp_backend_epoll,
#endif
#ifdef _WIN32
    &piocp_backend_iocp,
#endif
#ifdef PIOCP_TEST_BACKENDS
    &piocp_backend_scripted,
#endif
};
#define BACKEND_COUNT (sizeof all_backends / sizeof all_backends[0])

int piocp_backends_available(const char **names, int max)
{
    int n = 0;
    for (size_t i = 0; i < BACKEND_COUNT && n < max; i++)
        if (!all_backends[i]->explicit_only && all_backends[i]->probe() == 0)
            names[n++] = all_backends[i]->name;
    return n;
}

int piocp_backend_names(const char **names, int max)
{
    int n = 0;
    for (size_t i = 0; i < BACKEND_COUNT && n < max; i++)
        if (!all_backends[i]->explicit_only)
            names[n++] = all_backends[i]->name;
    return n;
}

static const piocp_backend_ops *find_backend(const char *name)
{
    for (size_t i = 0; i < BACKEND_COUNT; i++)
        if (strcmp(name, all_backends[i]->name) == 0)
            return all_backends[i];
    return NULL;
}

const char *piocp_backend_describe(const char *name, char *buf, size_t len)
{
    const piocp_backend_ops *backend = find_backend(name);
    if (!backend) {
        snprintf(buf, len, "%s: unknown backend", name);
        return buf;
    }
    if (backend->describe)
        return backend->describe(buf, len);
    int rc = backend->probe();
    char text[128];
    snprintf(buf, len, "%s: %s", name,
             rc == 0 ? "available" : piocp_error_text(-rc, text, sizeof text));
    return buf;
}

/* "auto": the first backend this kernel allows; `note` says why a preferred
 * one was passed over.  A named backend must be allowed. */
static int choose_backend(const char *wanted, const piocp_backend_ops **out, char *note,
                          size_t note_len)
{
    bool automatic = !wanted || strcmp(wanted, "auto") == 0;
    note[0] = '\0';
    if (!automatic) {
        const piocp_backend_ops *backend = find_backend(wanted);
        if (!backend)
            return -PIOCP_ENOENT;
        int rc = backend->probe();
        if (rc < 0)
            return rc;
        *out = backend;
        return 0;
    }
    for (size_t i = 0; i < BACKEND_COUNT; i++) {
        if (all_backends[i]->explicit_only)
            continue;
        int rc = all_backends[i]->probe();
        if (rc == 0) {
            *out = all_backends[i];
            return 0;
        }
        char text[128];
        if (!note[0])
            snprintf(note, note_len, "%s refused: %s", all_backends[i]->name,
                     piocp_error_text(-rc, text, sizeof text));
    }
    return -PIOCP_ENOSYS;
}

/* --------------------------------------------------------- lifecycle -- */

void piocp_config_init(piocp_config *config)
{
    memset(config, 0, sizeof *config);
    config->backend = "auto";
    config->max_connections = DEFAULT_MAX_CONNECTIONS;
    config->linger_ms = DEFAULT_LINGER_MS;
    config->drain_first_request_ms = DEFAULT_DRAIN_FIRST_REQUEST_MS;
}

static void init_locks(piocp_engine *e)
{
    piocp_mutex_init(&e->pool_lock);
    piocp_cond_init(&e->idle_cond);
    piocp_mutex_init(&e->listeners_lock);
    piocp_mutex_init(&e->ready_lock);
    piocp_mutex_init(&e->user_lock);
    piocp_mutex_init(&e->stop_lock);
    piocp_mutex_init(&e->start_lock);
    piocp_cond_init(&e->start_cond);
    piocp_timers_init(e);
    for (int i = 0; i < e->threads; i++) {
        e->workers[i].engine = e;
        e->workers[i].index = i;
        piocp_mutex_init(&e->workers[i].remote_lock);
    }
}

static void destroy_locks(piocp_engine *e)
{
    piocp_mutex_destroy(&e->pool_lock);
    piocp_cond_destroy(&e->idle_cond);
    piocp_mutex_destroy(&e->listeners_lock);
    piocp_mutex_destroy(&e->ready_lock);
    piocp_mutex_destroy(&e->user_lock);
    piocp_mutex_destroy(&e->stop_lock);
    piocp_mutex_destroy(&e->start_lock);
    piocp_cond_destroy(&e->start_cond);
    piocp_timers_destroy(e);
    for (int i = 0; i < e->threads; i++)
        piocp_mutex_destroy(&e->workers[i].remote_lock);
}

int piocp_default_threads(void)
{
    piocp_cpu_info cpus;
    piocp_cpu_info_read(&cpus, NULL, NULL);
    /* usable <= online, itself an int: halve the cap instead of doubling */
    return cpus.usable < PIOCP_MAX_THREADS / 2 ? 2 * cpus.usable : PIOCP_MAX_THREADS;
}

int piocp_engine_new(piocp_engine **out, const piocp_config *config)
{
    piocp_config cfg;
    piocp_config_init(&cfg);
    if (config)
        cfg = *config;
    if (cfg.threads < 0 || cfg.threads > PIOCP_MAX_THREADS || cfg.max_connections < 0 ||
        cfg.idle_timeout_ms < 0 || cfg.linger_ms < 0 ||
        cfg.drain_first_request_ms < 0 || cfg.windows_transmit < PIOCP_WINDOWS_TRANSMIT_AUTO ||
        cfg.windows_transmit > PIOCP_WINDOWS_TRANSMIT_READ_SEND)
        return -PIOCP_EINVAL;
    if (cfg.threads == 0)
        cfg.threads = piocp_default_threads();
    if (cfg.max_connections == 0)
        cfg.max_connections = DEFAULT_MAX_CONNECTIONS;
    if (cfg.linger_ms == 0)
        cfg.linger_ms = DEFAULT_LINGER_MS;
    if (cfg.drain_first_request_ms == 0)
        cfg.drain_first_request_ms = DEFAULT_DRAIN_FIRST_REQUEST_MS;

    const piocp_backend_ops *backend = NULL;
    char note[256];
    int rc = choose_backend(cfg.backend, &backend, note, sizeof note);
    if (rc < 0)
        return rc;

    piocp_engine *e = calloc(1, sizeof *e);
    if (!e)
        return -PIOCP_ENOMEM;
    e->backend = backend;
    memcpy(e->backend_note, note, sizeof note);
    e->config = cfg;
    e->config.backend = backend->name;
    e->threads = cfg.threads;
    e->conn_capacity = (uint32_t)cfg.max_connections;
    /* a slot is the core's part, then the backend's, aligned for both */
    size_t align = alignof(max_align_t);
    e->conn_stride = (offsetof(piocp_conn, backend_area) + backend->conn_size + align - 1) /
                     align * align;
    /* calloc'd, so untouched slots cost address space, not memory */
    e->conn_area = calloc(e->conn_capacity, e->conn_stride);
    e->free_slots = malloc(e->conn_capacity * sizeof *e->free_slots);
    e->workers = calloc((size_t)e->threads, sizeof *e->workers);
    if (!e->conn_area || !e->free_slots || !e->workers) {
        free(e->conn_area);
        free(e->free_slots);
        free(e->workers);
        free(e);
        return -PIOCP_ENOMEM;
    }
    init_locks(e);
    rc = piocp_engine_metrics_init(e);
    if (rc == 0)
        rc = backend->init(e);
    if (rc < 0) {
        piocp_engine_free(e);
        return rc;
    }
    *out = e;
    return 0;
}

static int start_thread(piocp_worker *w)
{
    int rc = PIOCP_FAULT("thread_start");
    return rc < 0 ? rc : piocp_thread_start(&w->thread, piocp_worker_main, w);
}

static void join_workers(piocp_engine *e)
{
    for (int i = 0; i < e->threads_joinable; i++)
        piocp_thread_join(&e->workers[i].thread);
    e->threads_joinable = 0;
}

/* Starts every worker, or none: a worker that cannot start (no thread, no
 * ring) fails the start, and the engine is left stopped, safe to stop and
 * free. */
int piocp_engine_start(piocp_engine *e)
{
    if (atomic_exchange(&e->started, true))
        return -PIOCP_EALREADY;
    piocp_mutex_lock(&e->start_lock);
    int create_error = 0;
    for (int i = 0; i < e->threads && create_error == 0; i++) {
        create_error = start_thread(&e->workers[i]);
        if (create_error == 0)
            e->threads_joinable++;
    }
    while (e->workers_reported < e->threads_joinable)
        piocp_cond_wait(&e->start_cond, &e->start_lock);
    if (create_error < 0 && e->start_error == 0)
        e->start_error = create_error;
    int rc = e->start_error;
    e->start_decided = true;
    piocp_cond_broadcast(&e->start_cond);
    piocp_mutex_unlock(&e->start_lock);
    if (rc < 0) {
        /* the workers that did start leave without serving */
        atomic_store(&e->quit, true);
        join_workers(e);
    }
    return rc;
}

/* Runs `fn` on every open connection, under its lock. */
static void for_each_open(piocp_engine *e, void (*fn)(piocp_conn *))
{
    uint32_t high = atomic_load(&e->high_water_published);
    for (uint32_t i = 0; i < high; i++) {
        piocp_conn *c = piocp_conn_at(e, i);
        piocp_mutex_lock(&c->lock);
        if (c->state == CONN_OPEN)
            fn(c);
        piocp_mutex_unlock(&c->lock);
    }
}

/* Draining cancels pending recvs: no new request is read. */
static void kick(piocp_conn *c) { piocp_schedule_locked(c); }

static void abort_conn(piocp_conn *c)
{
    if (!c->abort_error)
        c->abort_error = -PIOCP_ECANCELED;
    piocp_schedule_locked(c);
}

static bool wait_idle(piocp_engine *e, long long deadline_ms)
{
    piocp_mutex_lock(&e->pool_lock);
    while (atomic_load(&e->open_conns) > 0) {
        long long left = deadline_ms - piocp_now_ms();
        if (left <= 0)
            break;
        if (left > 50)
            left = 50; /* the COARSE clock and the wait's differ; re-check often */
        piocp_cond_timedwait(&e->idle_cond, &e->pool_lock, left);
    }
    bool idle = atomic_load(&e->open_conns) == 0;
    piocp_mutex_unlock(&e->pool_lock);
    return idle;
}

int piocp_engine_stop(piocp_engine *e, int drain_ms)
{
    piocp_worker *w = piocp_current_worker();
    if (w && w->engine == e)
        return -PIOCP_EDEADLK;
    piocp_mutex_lock(&e->stop_lock);
    if (atomic_exchange(&e->stopping, true)) {
        piocp_mutex_unlock(&e->stop_lock);
        return 0;
    }
    piocp_listeners_stop(e);
    piocp_accepts_wait_out(e);
    if (e->threads_joinable > 0) {
        if (e->config.stopping)
            e->config.stopping(e->config.user);
        atomic_store(&e->draining, true);
        for_each_open(e, kick);
        if (!wait_idle(e, piocp_now_ms() + (drain_ms > 0 ? drain_ms : 0))) {
            for_each_open(e, abort_conn);
            wait_idle(e, piocp_now_ms() + 10000);
        }
        piocp_timers_cancel_all(e); /* completed by the workers, or just below */
        atomic_store(&e->quit, true);
        e->backend->post_quit(e);
        join_workers(e);
    }
    piocp_timers_cancel_all(e); /* an engine that never ran has its timers too */
    atomic_store(&e->quit, true);
    /* user completions posted after the workers left (or with no worker
     * ever) still complete once */
    piocp_run_user_completions(e);
    /* no worker can touch a listening socket any more: its number may go */
    piocp_listeners_close_sockets(e);
    piocp_mutex_unlock(&e->stop_lock);
    return 0;
}

/* Connections that never reached a worker (the engine never ran). */
static void close_unserved(piocp_engine *e)
{
    for (uint32_t i = 0; i < e->high_water; i++) {
        piocp_conn *c = piocp_conn_at(e, i);
        piocp_mutex_lock(&c->lock);
        bool open = c->state == CONN_OPEN;
        piocp_done_list done = {0};
        if (open) {
            piocp_fail_all_locked(c, -PIOCP_ECANCELED, &done);
            piocp_close_socket_locked(c, -PIOCP_ECANCELED);
        }
        piocp_mutex_unlock(&c->lock);
        piocp_complete_list(e, done.head);
        if (open)
            piocp_report_closed(c);
        piocp_mutex_destroy(&c->lock);
    }
}

void piocp_engine_free(piocp_engine *e)
{
    if (!e)
        return;
    piocp_engine_stop(e, 0);
    close_unserved(e);
    piocp_listeners_free(e);
    if (e->backend_data)
        e->backend->destroy(e);
    destroy_locks(e);
    free(e->conn_area);
    free(e->free_slots);
    free(e->workers);
    free(e->metrics_memory);
    free(e);
}

const char *piocp_engine_backend(const piocp_engine *e) { return e->backend->name; }
const char *piocp_engine_backend_note(const piocp_engine *e) { return e->backend_note; }
int piocp_engine_threads(const piocp_engine *e) { return e->threads; }
int piocp_engine_connections(const piocp_engine *e) { return atomic_load(&e->open_conns); }

void piocp_engine_get_stats(const piocp_engine *e, piocp_engine_stats *out)
{
    uint64_t m[PIOCP_METRICS];
    piocp_engine_read_metrics(e, m);
    memset(out, 0, sizeof *out);
    out->accepted = m[PIOCP_M_ACCEPTED];
    out->refused = m[PIOCP_M_REFUSED_LIMIT] + m[PIOCP_M_REFUSED_STOPPING];
    for (int i = 0; i < PIOCP_METRIC_ERRNOS; i++)
        out->accept_errors += m[PIOCP_M_ERRORS + PIOCP_METRIC_OP_ACCEPT * PIOCP_METRIC_ERRNOS + i];
    out->accept_pauses = m[PIOCP_M_ACCEPT_PAUSES];
    out->transmit_file_bytes = m[PIOCP_M_SENT_FILE_BYTES];
    out->borrowed = m[PIOCP_M_BORROWED];
    out->borrowed_bytes = m[PIOCP_M_BORROWED_BYTES];
    out->transmit_copied_bytes = m[PIOCP_M_SENT_COPIED_BYTES];
    out->completed_inline = m[PIOCP_M_COMPLETED_INLINE];
    out->connections = (uint64_t)atomic_load(&e->open_conns);
}

/* ------------------------------------------------ user completions -- */

int piocp_post(piocp_engine *e, piocp_request *req, ssize_t result)
{
    return piocp_post_as(e, req, result, PIOCP_OP_USER);
}

int piocp_post_as(piocp_engine *e, piocp_request *req, ssize_t result, piocp_op op)
{
    if (!req || !req->complete)
        return -PIOCP_EINVAL;
    req->op = op;
    req->conn = NULL;
    req->result = result;
    req->next = NULL;
    piocp_mutex_lock(&e->user_lock);
    /* checked under the lock: stop's last run of user completions takes it
     * after setting quit, so a post is either refused or run, never lost */
    if (atomic_load(&e->quit)) {
        piocp_mutex_unlock(&e->user_lock);
        return -PIOCP_ESHUTDOWN;
    }
    bool was_empty = e->user_head == NULL;
    if (e->user_tail)
        e->user_tail->next = req;
    else
        e->user_head = req;
    e->user_tail = req;
    piocp_mutex_unlock(&e->user_lock);
    if (was_empty)
        e->backend->wake(e);
    return 0;
}

void piocp_run_user_completions(piocp_engine *e)
{
    piocp_mutex_lock(&e->user_lock);
    piocp_request *list = e->user_head;
    e->user_head = e->user_tail = NULL;
    piocp_mutex_unlock(&e->user_lock);
    piocp_complete_list(e, list);
}

void piocp_batch_end(piocp_engine *e)
{
    if (e->config.batch_end)
        e->config.batch_end(e->config.user);
}
