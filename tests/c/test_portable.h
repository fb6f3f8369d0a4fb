/* test_portable.h - the clock and waiting helpers of test_util.h for the
 * tests that run on every platform (under Wine too): no POSIX headers. */
#ifndef PYIOCP_TEST_PORTABLE_H
#define PYIOCP_TEST_PORTABLE_H

#include "test_check.h"

#include <stdatomic.h>
#ifdef _WIN32
#include <windows.h>
#else
#include <time.h>
#endif

static inline long long portable_now_ms(void)
{
#ifdef _WIN32
    return (long long)GetTickCount64();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
#endif
}

static inline void portable_sleep_ms(int ms)
{
#ifdef _WIN32
    Sleep((DWORD)ms);
#else
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
#endif
}

/* Waits (bounded) for a counter to reach `want`; the check that follows
 * reports a failure if it did not. */
static inline void portable_wait_until(atomic_int *counter, int want, int timeout_ms)
{
    long long deadline = portable_now_ms() + timeout_ms;
    while (atomic_load(counter) < want && portable_now_ms() < deadline)
        portable_sleep_ms(1);
}

#endif
