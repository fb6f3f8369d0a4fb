/*
 * test_timers.c - user timers (piocp_post_after, piocp_timer_cancel): each
 * completes exactly once, never before it is due, in due order; a cancel
 * and the firing never both win; a stop cancels what is pending.
 * `test_timers NAME BACKEND` runs one case.
 */
#include "test_backend.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

static const char *backend = "epoll";

static long long now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* One timer and what became of it. */
typedef struct timer {
    piocp_request req;
    long long posted_us, fired_us;
    int delay_ms;
    atomic_int completions;
    atomic_int rank;              /* firing order */
    ssize_t result;
    bool off_worker;
} timer;

static atomic_int fired, rank_counter;

static void timer_done(piocp_request *req, ssize_t result)
{
    timer *t = req->user;
    t->fired_us = now_us();
    t->result = result;
    t->off_worker = piocp_worker_index() < 0;
    atomic_store(&t->rank, atomic_fetch_add(&rank_counter, 1));
    atomic_fetch_add(&t->completions, 1);
    atomic_fetch_add(&fired, 1);
}

static int post_timer(piocp_engine *e, timer *t, int delay_ms)
{
    t->req = (piocp_request){.complete = timer_done, .user = t};
    t->delay_ms = delay_ms;
    t->posted_us = now_us();
    return piocp_post_after(e, &t->req, delay_ms);
}

/* Timers posted in a scrambled order of delays fire in due order, never
 * early, and (the same delay) in posting order. */
static void test_ordering(void)
{
    enum { N = 60 };
    piocp_engine *e = new_engine(backend, 3);
    CHECK(piocp_engine_start(e) == 0);
    static timer t[N];
    for (int i = 0; i < N; i++)
        CHECK(post_timer(e, &t[i], (i * 37) % 20 * 10) == 0); /* 0..190 ms, each 3 times */
    wait_until(&fired, N, 5000);
    CHECK(atomic_load(&fired) == N);
    for (int i = 0; i < N; i++) {
        CHECK(atomic_load(&t[i].completions) == 1);
        CHECK(t[i].result == 0 && !t[i].off_worker);
        long long waited_us = t[i].fired_us - t[i].posted_us;
        CHECK(waited_us >= t[i].delay_ms * 1000LL);
        CHECK(waited_us < t[i].delay_ms * 1000LL + 200000); /* the machine is shared */
        for (int j = 0; j < N; j++) {
            bool earlier = t[i].delay_ms < t[j].delay_ms ||
                           (t[i].delay_ms == t[j].delay_ms && i < j);
            /* posted within a few ms of each other: due order when the
             * delays differ by more than that */
            if (earlier && (t[j].delay_ms - t[i].delay_ms >= 10 || t[i].delay_ms == t[j].delay_ms))
                CHECK(atomic_load(&t[i].rank) < atomic_load(&t[j].rank));
        }
    }
    CHECK(piocp_engine_stop(e, 0) == 0);
    piocp_engine_free(e);
}

/* Worker 0 asleep until its next sweep (a quarter second away) is woken
 * by a nearer timer. */
static void test_wakes_the_sleeper(void)
{
    piocp_engine *e = new_engine(backend, 2);
    CHECK(piocp_engine_start(e) == 0);
    for (int round = 0; round < 5; round++) {
        struct timespec ts = {0, 30 * 1000000}; /* the workers are asleep */
        nanosleep(&ts, NULL);
        timer t = {0};
        int want = atomic_load(&fired) + 1;
        CHECK(post_timer(e, &t, 20) == 0);
        wait_until(&fired, want, 5000);
        long long waited_us = t.fired_us - t.posted_us;
        fprintf(stderr, "%s: a 20 ms timer fired after %lld us\n", backend, waited_us);
        CHECK(atomic_load(&t.completions) == 1);
        CHECK(waited_us >= 20000 && waited_us < 120000);
    }
    CHECK(piocp_engine_stop(e, 0) == 0);
    piocp_engine_free(e);
}

/* A pending timer cancelled completes with -ECANCELED, once; a fired one
 * cannot be cancelled. */
static void test_cancel(void)
{
    piocp_engine *e = new_engine(backend, 2);
    CHECK(piocp_engine_start(e) == 0);
    timer late = {0}, soon = {0};
    CHECK(post_timer(e, &late, 60000) == 0);
    CHECK(piocp_timer_cancel(e, &late.req) == 0);
    CHECK(piocp_timer_cancel(e, &late.req) == -ENOENT);
    wait_until(&fired, 1, 5000);
    CHECK(atomic_load(&late.completions) == 1 && late.result == -ECANCELED && !late.off_worker);
    CHECK(post_timer(e, &soon, 0) == 0);
    wait_until(&fired, 2, 5000);
    CHECK(atomic_load(&soon.completions) == 1 && soon.result == 0);
    CHECK(piocp_timer_cancel(e, &soon.req) == -ENOENT);
    timer never = {.req = {.complete = timer_done}};
    CHECK(piocp_timer_cancel(e, &never.req) == -ENOENT);
    CHECK(piocp_post_after(e, &never.req, -1) == -EINVAL);
    CHECK(piocp_engine_stop(e, 0) == 0);
    piocp_engine_free(e);
    CHECK(atomic_load(&fired) == 2);
}

/* Cancels racing the firing: whichever wins, each timer completes once,
 * and the cancel's answer says which. */
static void test_cancel_race(void)
{
    enum { N = 2000 };
    piocp_engine *e = new_engine(backend, 2);
    CHECK(piocp_engine_start(e) == 0);
    static timer t[N];
    static int cancel_rc[N];
    for (int i = 0; i < N; i++)
        CHECK(post_timer(e, &t[i], i % 5) == 0);
    struct timespec ts = {0, 2 * 1000000}; /* some are due, some firing, some not yet */
    nanosleep(&ts, NULL);
    for (int i = 0; i < N; i++)
        cancel_rc[i] = piocp_timer_cancel(e, &t[i].req);
    wait_until(&fired, N, 5000);
    CHECK(piocp_engine_stop(e, 0) == 0);
    piocp_engine_free(e);
    int cancelled = 0;
    for (int i = 0; i < N; i++) {
        CHECK(atomic_load(&t[i].completions) == 1);
        CHECK(cancel_rc[i] == 0 || cancel_rc[i] == -ENOENT);
        CHECK(t[i].result == (cancel_rc[i] == 0 ? -ECANCELED : 0));
        cancelled += cancel_rc[i] == 0;
    }
    fprintf(stderr, "%s: %d of %d cancelled before they fired\n", backend, cancelled, N);
}

/* Many timers, posted from two threads and re-posted from their own
 * callbacks (on the workers). */
typedef struct chain {
    piocp_request req;
    piocp_engine *engine;
    int hops;
} chain;

static atomic_int chain_done;

static void chain_step(piocp_request *req, ssize_t result)
{
    chain *c = req->user;
    CHECK(result == 0);
    if (--c->hops > 0)
        CHECK(piocp_post_after(c->engine, req, c->hops % 3) == 0);
    else
        atomic_fetch_add(&chain_done, 1);
}

enum { CHAINS = 5000, HOPS = 4 };
static chain chains[CHAINS];

static void *post_chains(void *arg)
{
    int first = *(int *)arg;
    for (int i = first; i < CHAINS; i += 2)
        CHECK(piocp_post_after(chains[i].engine, &chains[i].req, i % 50) == 0);
    return NULL;
}

static void test_many(void)
{
    piocp_engine *e = new_engine(backend, 3);
    CHECK(piocp_engine_start(e) == 0);
    for (int i = 0; i < CHAINS; i++)
        chains[i] = (chain){.req = {.complete = chain_step, .user = &chains[i]}, .engine = e,
                            .hops = HOPS};
    pthread_t threads[2];
    int firsts[2] = {0, 1};
    for (int i = 0; i < 2; i++)
        pthread_create(&threads[i], NULL, post_chains, &firsts[i]);
    for (int i = 0; i < 2; i++)
        pthread_join(threads[i], NULL);
    wait_until(&chain_done, CHAINS, 10000);
    CHECK(atomic_load(&chain_done) == CHAINS);
    CHECK(piocp_engine_stop(e, 0) == 0);
    piocp_engine_free(e);
}

/* Stop with timers pending: each completes with -ECANCELED, once, before
 * stop returns; later ones are refused.  The same for an engine that never
 * ran. */
static void test_stop_pending(void)
{
    enum { N = 100 };
    static timer t[N];
    for (int started = 1; started >= 0; started--) {
        atomic_store(&fired, 0);
        piocp_engine *e = new_engine(backend, 2);
        if (started)
            CHECK(piocp_engine_start(e) == 0);
        for (int i = 0; i < N; i++) {
            t[i] = (timer){0};
            CHECK(post_timer(e, &t[i], 60000 + i) == 0);
        }
        CHECK(piocp_engine_stop(e, 0) == 0);
        CHECK(atomic_load(&fired) == N);
        for (int i = 0; i < N; i++)
            CHECK(atomic_load(&t[i].completions) == 1 && t[i].result == -ECANCELED);
        timer late = {0};
        CHECK(post_timer(e, &late, 0) == -ESHUTDOWN);
        piocp_engine_free(e);
        CHECK(atomic_load(&fired) == N);
    }
}

static const test_case cases[] = {
    {"ordering", test_ordering},
    {"wakes_the_sleeper", test_wakes_the_sleeper},
    {"cancel", test_cancel},
    {"cancel_race", test_cancel_race},
    {"many", test_many},
    {"stop_pending", test_stop_pending},
    {NULL, NULL},
};

int main(int argc, char **argv) { return run_backend_test_case(cases, argc, argv, &backend); }
