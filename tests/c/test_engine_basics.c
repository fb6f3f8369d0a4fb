/*
 * test_engine_basics.c - the engine's cases that need no socket, on every
 * platform and backend: user posts complete exactly once on a worker,
 * configuration errors, a failed start leaves a stoppable engine, the
 * worker hooks' order, start and stop.  They are the socket-free subset
 * of test_engine.c written without POSIX, so that they also run under
 * Wine on the IOCP backend (its wake-up and quit packets, its waits).
 * `test_engine_basics NAME BACKEND`; `test_engine_basics list`.
 */
#include "pyiocp.h"
#include "core/fault.h"
#include "errors.h"
#include "test_backend_arg.h"
#include "test_portable.h"

#ifndef _WIN32
#include <netinet/in.h> /* sockaddr_in; pyiocp.h brings Winsock's on Windows */
#endif
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static piocp_engine *new_engine_on(int threads, piocp_config *cfg)
{
    return engine_on_backend(threads, cfg);
}

/* -------------------------------------------------- user completions -- */

static atomic_int user_done, user_twice, user_off_worker;
static atomic_uchar *user_seen;

static void user_complete(piocp_request *req, ssize_t result)
{
    intptr_t i = (intptr_t)req->user;
    CHECK(result == (ssize_t)i);
    if (piocp_worker_index() < 0)
        atomic_fetch_add(&user_off_worker, 1);
    if (atomic_exchange(&user_seen[i], 1))
        atomic_fetch_add(&user_twice, 1);
    atomic_fetch_add(&user_done, 1);
}

/* Posts from the main thread wake the workers through the backend (one
 * packet per empty list on IOCP): each completes once, on a worker. */
static void test_user_post(void)
{
    piocp_config cfg;
    piocp_config_init(&cfg);
    piocp_engine *e = new_engine_on(3, &cfg);
    CHECK(piocp_engine_start(e) == 0);
    enum { N = 5000 };
    piocp_request *reqs = calloc(N, sizeof *reqs);
    user_seen = calloc(N, sizeof *user_seen);
    for (int i = 0; i < N; i++) {
        reqs[i].complete = user_complete;
        reqs[i].user = (void *)(intptr_t)i;
        CHECK(piocp_post(e, &reqs[i], i) == 0);
        if (i % 500 == 0)
            portable_sleep_ms(1); /* let the workers drain, so that wake-ups recur */
    }
    portable_wait_until(&user_done, N, 5000);
    CHECK(piocp_engine_stop(e, 0) == 0);
    CHECK(atomic_load(&user_done) == N);
    CHECK(atomic_load(&user_twice) == 0);
    CHECK(atomic_load(&user_off_worker) == 0);
    piocp_request late = {.complete = user_complete};
    CHECK(piocp_post(e, &late, 0) == -PIOCP_ESHUTDOWN);
    piocp_engine_free(e);
    free(reqs);
    free((void *)user_seen);
}

/* ------------------------------------------------------------ config -- */

static void never_complete(piocp_request *req, ssize_t result)
{
    (void)req;
    (void)result;
    CHECK(!"a refused post completed");
}

static void on_connection_unused(piocp_listener *l, piocp_conn *c, void *user)
{
    (void)l;
    (void)c;
    (void)user;
}

static void test_config_errors(void)
{
    piocp_engine *e = NULL;
    piocp_config bad_threads = {.threads = -1};
    CHECK(piocp_engine_new(&e, &bad_threads) == -PIOCP_EINVAL);
    piocp_config bad_backend = {.backend = "no-such-backend"};
    CHECK(piocp_engine_new(&e, &bad_backend) == -PIOCP_ENOENT);
    piocp_config bad_first_request = {.drain_first_request_ms = -1};
    CHECK(piocp_engine_new(&e, &bad_first_request) == -PIOCP_EINVAL);
    piocp_config cfg;
    piocp_config_init(&cfg);
    e = new_engine_on(1, &cfg);
    CHECK(strcmp(piocp_engine_backend(e), backend) == 0 || strcmp(backend, "auto") == 0);
    /* refused before any socket is made */
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    piocp_listener_callbacks callbacks = {.on_connection = on_connection_unused};
    CHECK(piocp_listen(e, (struct sockaddr *)&addr, sizeof addr, 0, &callbacks, NULL, NULL) ==
          -PIOCP_EINVAL);
    piocp_request req = {.complete = NULL};
    CHECK(piocp_post(e, &req, 0) == -PIOCP_EINVAL);
    piocp_engine_free(e); /* never started */
}

/* ------------------------------------------------------ worker hooks -- */

/* Per worker thread: 0 before worker_start, 1 while serving, 2 after
 * worker_stop.  batch_end may only run in state 1. */
static _Thread_local int hook_phase;
static atomic_int hook_starts, hook_stops, hook_batches, hook_misplaced;
static int hook_user_tag;

static void hook_worker_start(void *user)
{
    if (user != &hook_user_tag || hook_phase != 0 || piocp_worker_index() < 0)
        atomic_fetch_add(&hook_misplaced, 1);
    hook_phase = 1;
    atomic_fetch_add(&hook_starts, 1);
}

static void hook_worker_stop(void *user)
{
    if (user != &hook_user_tag || hook_phase != 1 || piocp_worker_index() < 0)
        atomic_fetch_add(&hook_misplaced, 1);
    hook_phase = 2;
    atomic_fetch_add(&hook_stops, 1);
}

static void hook_batch_end(void *user)
{
    if (user != &hook_user_tag || hook_phase != 1)
        atomic_fetch_add(&hook_misplaced, 1);
    atomic_fetch_add(&hook_batches, 1);
}

static piocp_engine *engine_with_hooks(int threads)
{
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.batch_end = hook_batch_end;
    cfg.worker_start = hook_worker_start;
    cfg.worker_stop = hook_worker_stop;
    cfg.user = &hook_user_tag;
    return new_engine_on(threads, &cfg);
}

static atomic_int counted;
static void count_complete(piocp_request *req, ssize_t result)
{
    (void)req;
    (void)result;
    atomic_fetch_add(&counted, 1);
}

/* worker_start once on each worker before its first batch_end, worker_stop
 * once after its last, on the same thread; the quit reaches every worker
 * (IOCP: one packet passed on from worker to worker). */
static void test_worker_hooks(void)
{
    piocp_engine *e = engine_with_hooks(4);
    CHECK(piocp_engine_start(e) == 0);
    piocp_request reqs[20];
    for (int i = 0; i < 20; i++) {
        reqs[i] = (piocp_request){.complete = count_complete};
        CHECK(piocp_post(e, &reqs[i], 0) == 0);
        portable_sleep_ms(2);
    }
    portable_wait_until(&counted, 20, 5000);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    CHECK(atomic_load(&counted) == 20);
    CHECK(atomic_load(&hook_starts) == 4);
    CHECK(atomic_load(&hook_stops) == 4);
    CHECK(atomic_load(&hook_batches) > 0);
    CHECK(atomic_load(&hook_misplaced) == 0);
    piocp_engine_free(e);
}

/* ------------------------------------------------------- start, stop -- */

/* A worker that cannot start fails the start; the engine is then stopped,
 * refuses posts, and stops and frees cleanly. */
static void start_failure_case(const char *point, unsigned nth)
{
    atomic_store(&hook_starts, 0);
    atomic_store(&hook_stops, 0);
    piocp_engine *e = engine_with_hooks(3);
    piocp_fault_arm(point, nth, PIOCP_EAGAIN);
    int rc = piocp_engine_start(e);
    unsigned passes = piocp_fault_passes();
    piocp_fault_disarm();
    if (passes < nth) {
        CHECK(rc == 0); /* this backend has no such point */
    } else {
        CHECK(rc == -PIOCP_EAGAIN);
        CHECK(atomic_load(&hook_starts) == 0);
        CHECK(piocp_engine_start(e) == -PIOCP_EALREADY);
        piocp_request req = {.complete = never_complete};
        CHECK(piocp_post(e, &req, 0) == -PIOCP_ESHUTDOWN);
    }
    CHECK(piocp_engine_stop(e, 100) == 0);
    CHECK(piocp_engine_stop(e, 100) == 0); /* idempotent */
    piocp_engine_free(e);
}

static void test_start_failure(void)
{
    const char *points[] = {"thread_start", "worker_init"};
    for (size_t i = 0; i < sizeof points / sizeof points[0]; i++)
        for (unsigned nth = 1; nth <= 3; nth++)
            start_failure_case(points[i], nth);
}

/* Stop with idle workers waiting in the kernel (no timeout but the
 * sweeper's), many times: every worker hears the quit, and the stop
 * returns promptly.  Also a stop with no start, and a user post made
 * before the start, which completes once the workers run. */
static void test_start_stop(void)
{
    for (int round = 0; round < 20; round++) {
        piocp_config cfg;
        piocp_config_init(&cfg);
        piocp_engine *e = new_engine_on(1 + round % 4, &cfg);
        atomic_store(&counted, 0);
        piocp_request early = {.complete = count_complete};
        CHECK(piocp_post(e, &early, 0) == 0);
        if (round % 5 != 4) {
            CHECK(piocp_engine_start(e) == 0);
            portable_wait_until(&counted, 1, 5000);
            CHECK(atomic_load(&counted) == 1);
            portable_sleep_ms(round % 3); /* let the workers go to sleep */
        }
        long long t0 = portable_now_ms();
        CHECK(piocp_engine_stop(e, 1000) == 0);
        CHECK(portable_now_ms() - t0 < 1000);
        CHECK(atomic_load(&counted) == 1); /* never started: stop runs it */
        piocp_engine_free(e);
    }
}

static const test_case cases[] = {
    {"user_post", test_user_post},
    {"config_errors", test_config_errors},
    {"worker_hooks", test_worker_hooks},
    {"start_failure", test_start_failure},
    {"start_stop", test_start_stop},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return run_on_backend(argc, argv, cases);
}
