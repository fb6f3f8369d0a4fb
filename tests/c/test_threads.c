/*
 * test_threads.c - engine/platform/threads.h on its own: threads, mutexes
 * (static and dynamic), condition variables (wait, timed wait both ways,
 * signal, broadcast), once-init and thread-local variables.
 *
 * It includes nothing of the engine but that header, so that the same file
 * builds natively (ctest) and for Windows, where it checks the Win32 half:
 *   x86_64-w64-mingw32-gcc -std=c11 -Wall -Wextra -Werror -I engine \
 *       tests/c/test_threads.c -o test_threads.exe && wine test_threads.exe
 * Exit code 0 and "ok" when every check held.
 */
#include "platform/threads.h"

#include <stdio.h>
#include <stdlib.h>
#ifndef _WIN32
#include <time.h>
#endif

#define CHECK(cond)                                                                    \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);   \
            exit(1);                                                                   \
        }                                                                              \
    } while (0)

static long long now_ms(void)
{
#ifdef _WIN32
    return (long long)GetTickCount64();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#endif
}

/* Starts two threads running `body` (arguments &args[0], &args[1]) and
 * joins them; each must hand its argument back through it. */
static void run_two(piocp_thread_body body, int args[2])
{
    piocp_thread threads[2];
    for (int i = 0; i < 2; i++)
        CHECK(piocp_thread_start(&threads[i], body, &args[i]) == 0);
    for (int i = 0; i < 2; i++)
        CHECK(piocp_thread_join(&threads[i]) == 0);
}

/* ------------------------------------------------------------- once -- */

static piocp_once once = PIOCP_ONCE_INIT;
static int once_runs; /* written by the once function only */

static void once_init(void) { once_runs++; }

static void *once_body(void *arg)
{
    for (int i = 0; i < 1000; i++)
        piocp_once_run(&once, once_init);
    CHECK(once_runs == 1); /* and what it wrote is visible to every caller */
    return arg;
}

static void test_once(void)
{
    int args[2] = {0, 1};
    run_two(once_body, args);
    piocp_once_run(&once, once_init);
    CHECK(once_runs == 1);
}

/* ----------------------------------------------- mutex, thread-local -- */

enum { INCREMENTS = 100000 };

static piocp_mutex static_lock = PIOCP_MUTEX_INITIALIZER;
static piocp_mutex lock;
static long static_counter, counter; /* plain: only the locks protect them */
static PIOCP_THREAD_LOCAL int thread_value;

static void *mutex_body(void *arg)
{
    int id = *(int *)arg;
    CHECK(thread_value == 0); /* a new thread's copy starts at 0 */
    thread_value = id;
    for (int i = 0; i < INCREMENTS; i++) {
        piocp_mutex_lock(&lock);
        counter++;
        piocp_mutex_unlock(&lock);
        piocp_mutex_lock(&static_lock);
        static_counter++;
        piocp_mutex_unlock(&static_lock);
    }
    CHECK(thread_value == id); /* the other thread's writes went to its own copy */
    *(int *)arg = -id;
    return arg;
}

static void test_mutex(void)
{
    CHECK(piocp_mutex_init(&lock) == 0);
    int args[2] = {1, 2};
    thread_value = 99;
    run_two(mutex_body, args);
    CHECK(args[0] == -1 && args[1] == -2); /* each thread got its own argument */
    CHECK(thread_value == 99);
    CHECK(counter == 2 * INCREMENTS);
    CHECK(static_counter == 2 * INCREMENTS);
    piocp_mutex_destroy(&lock);
}

/* ------------------------------------------- condition: ping-pong -- */

enum { ROUNDS = 2000 };

static piocp_mutex turn_lock;
static piocp_cond turn_cond;
static int turn; /* thread turn % 2 moves it on */

static void *ping_pong_body(void *arg)
{
    int id = *(int *)arg;
    piocp_mutex_lock(&turn_lock);
    for (;;) {
        while (turn < ROUNDS && turn % 2 != id)
            piocp_cond_wait(&turn_cond, &turn_lock);
        if (turn >= ROUNDS)
            break;
        turn++;
        if (turn % 4 < 2) /* both ways of waking the other thread */
            piocp_cond_signal(&turn_cond);
        else
            piocp_cond_broadcast(&turn_cond);
    }
    piocp_mutex_unlock(&turn_lock);
    return arg;
}

static void test_ping_pong(void)
{
    CHECK(piocp_mutex_init(&turn_lock) == 0);
    CHECK(piocp_cond_init(&turn_cond) == 0);
    int args[2] = {0, 1};
    run_two(ping_pong_body, args);
    CHECK(turn == ROUNDS);
    piocp_cond_destroy(&turn_cond);
    piocp_mutex_destroy(&turn_lock);
}

/* ------------------------------------------ condition: timed waits -- */

static piocp_mutex wait_lock;
static piocp_cond wait_cond;
static int woken; /* under wait_lock */

static void *waker_body(void *arg)
{
    piocp_mutex_lock(&wait_lock); /* only once the waiter waits */
    woken = 1;
    piocp_cond_signal(&wait_cond);
    piocp_mutex_unlock(&wait_lock);
    return arg;
}

static void test_timed_wait(void)
{
    CHECK(piocp_mutex_init(&wait_lock) == 0);
    CHECK(piocp_cond_init(&wait_cond) == 0);
    piocp_mutex_lock(&wait_lock);

    /* nobody signals: it times out, and not before its time (100 ms,
     * 50 allowed for Windows' timer ticks) */
    long long start = now_ms();
    bool timed_out = false;
    while (!timed_out && now_ms() - start < 1000)
        timed_out = piocp_cond_timedwait(&wait_cond, &wait_lock, 100);
    long long waited = now_ms() - start;
    CHECK(timed_out);
    CHECK(waited >= 50);

    /* no time at all, or less than none: at once */
    start = now_ms();
    CHECK(piocp_cond_timedwait(&wait_cond, &wait_lock, 0));
    CHECK(piocp_cond_timedwait(&wait_cond, &wait_lock, -5));
    CHECK(now_ms() - start < 1000);

    /* signalled: it returns false, long before its timeout */
    piocp_thread waker;
    int arg = 0;
    CHECK(piocp_thread_start(&waker, waker_body, &arg) == 0);
    start = now_ms();
    timed_out = false;
    while (!woken && !timed_out)
        timed_out = piocp_cond_timedwait(&wait_cond, &wait_lock, 10000);
    CHECK(woken && !timed_out);
    CHECK(now_ms() - start < 5000);
    piocp_mutex_unlock(&wait_lock);
    CHECK(piocp_thread_join(&waker) == 0);

    piocp_cond_destroy(&wait_cond);
    piocp_mutex_destroy(&wait_lock);
}

/* --------------------------------------------- signals (POSIX only) -- */

#ifndef _WIN32
static void *mask_body(void *arg)
{
    sigset_t mask;
    pthread_sigmask(SIG_BLOCK, NULL, &mask);
    *(int *)arg = sigismember(&mask, SIGINT) == 1 && sigismember(&mask, SIGTERM) == 1 &&
                  sigismember(&mask, SIGPIPE) == 1 && sigismember(&mask, SIGUSR1) == 1;
    return arg;
}

/* piocp_thread_start's thread blocks every signal; the caller's mask is
 * left as it was. */
static void test_signals_blocked(void)
{
    sigset_t before, after;
    pthread_sigmask(SIG_BLOCK, NULL, &before);
    piocp_thread thread;
    int all_blocked = -1;
    CHECK(piocp_thread_start(&thread, mask_body, &all_blocked) == 0);
    CHECK(piocp_thread_join(&thread) == 0);
    CHECK(all_blocked == 1);
    pthread_sigmask(SIG_BLOCK, NULL, &after);
    CHECK(sigismember(&before, SIGUSR1) == sigismember(&after, SIGUSR1));
    CHECK(sigismember(&before, SIGINT) == sigismember(&after, SIGINT));
}
#endif

int main(void)
{
    test_once();
    test_mutex();
    test_ping_pong();
    test_timed_wait();
#ifndef _WIN32
    test_signals_blocked();
#endif
    puts("ok");
    return 0;
}
