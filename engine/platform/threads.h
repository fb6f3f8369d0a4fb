/*
 * threads.h - threads, mutexes, condition variables and once-init behind
 * names of our own.  The engine must build on Windows with the system's
 * own primitives (SRW locks, condition variables, _beginthreadex, one-time
 * initialisation), with MSVC for the wheels and mingw-w64 for the tests,
 * and neither should need a pthreads emulation (winpthreads is mingw's
 * alone, and a second layer under every lock).  So the core, the backends
 * and the binding's headers call only what is declared here: on POSIX each
 * function is a static inline wrapper over pthreads, costing nothing over
 * calling them directly; on Windows it is the native equivalent.  Timed
 * waits take a relative timeout in milliseconds, as Windows does, so no
 * caller builds an absolute deadline on a clock of its own.
 *
 *   piocp_mutex   non-recursive; init returns 0 or -errno
 *   piocp_cond    wait, timed wait, signal, broadcast; init returns 0 or -errno
 *   piocp_thread  start (every signal blocked, on POSIX), join
 *   piocp_once    runs a function once, whichever thread comes first
 *
 * The POSIX half needs POSIX.1-2008 (the builds define _GNU_SOURCE); under
 * strict ISO C with nothing asked for, it asks itself if it comes first.
 */
#ifndef PYIOCP_PLATFORM_THREADS_H
#define PYIOCP_PLATFORM_THREADS_H

/* strict ISO C (-std=c11) hides POSIX unless asked for */
#if !defined(_WIN32) && defined(__STRICT_ANSI__) && !defined(_POSIX_C_SOURCE) && \
    !defined(_XOPEN_SOURCE) && !defined(_GNU_SOURCE) && !defined(_DEFAULT_SOURCE)
#define _POSIX_C_SOURCE 200809L
#endif

#include <stdbool.h>

/* A thread-local variable: MSVC spells it its own way. */
#if defined(_MSC_VER) && !defined(__clang__)
#define PIOCP_THREAD_LOCAL __declspec(thread)
#else
#define PIOCP_THREAD_LOCAL _Thread_local
#endif

/* What a thread runs; its result is not kept (join does not return it). */
typedef void *(*piocp_thread_body)(void *arg);

#ifdef _WIN32
/* ------------------------------------------------------------ Windows -- */

#ifndef WIN32_LEAN_AND_MEAN
#define WIN32_LEAN_AND_MEAN /* and no winsock.h, which would clash with winsock2.h */
#endif
#include <windows.h>
#if _WIN32_WINNT < 0x0600
#error "platform/threads.h needs Windows Vista or later (SRW locks, condition variables)"
#endif
#include <errno.h>
#include <process.h>
#include <stdint.h>
#include <stdlib.h>

typedef struct piocp_mutex {
    SRWLOCK lock;              /* used exclusively only */
} piocp_mutex;
#define PIOCP_MUTEX_INITIALIZER {SRWLOCK_INIT}

typedef struct piocp_cond {
    CONDITION_VARIABLE cond;
} piocp_cond;

typedef struct piocp_thread {
    HANDLE handle;
} piocp_thread;

typedef struct piocp_once {
    INIT_ONCE once;
} piocp_once;
#define PIOCP_ONCE_INIT {INIT_ONCE_STATIC_INIT}

static inline int piocp_mutex_init(piocp_mutex *m)
{
    InitializeSRWLock(&m->lock);
    return 0;
}
static inline void piocp_mutex_destroy(piocp_mutex *m) { (void)m; /* nothing to free */ }
static inline void piocp_mutex_lock(piocp_mutex *m) { AcquireSRWLockExclusive(&m->lock); }
static inline void piocp_mutex_unlock(piocp_mutex *m) { ReleaseSRWLockExclusive(&m->lock); }

static inline int piocp_cond_init(piocp_cond *c)
{
    InitializeConditionVariable(&c->cond);
    return 0;
}
static inline void piocp_cond_destroy(piocp_cond *c) { (void)c; /* nothing to free */ }
static inline void piocp_cond_wait(piocp_cond *c, piocp_mutex *m)
{
    SleepConditionVariableSRW(&c->cond, &m->lock, INFINITE, 0);
}
/* true: `timeout_ms` passed (a wake-up, even a spurious one, is false). */
static inline bool piocp_cond_timedwait(piocp_cond *c, piocp_mutex *m, long long timeout_ms)
{
    DWORD ms = timeout_ms <= 0 ? 0
             : timeout_ms >= (long long)INFINITE ? INFINITE - 1 : (DWORD)timeout_ms;
    return !SleepConditionVariableSRW(&c->cond, &m->lock, ms, 0) &&
           GetLastError() == ERROR_TIMEOUT;
}
static inline void piocp_cond_signal(piocp_cond *c) { WakeConditionVariable(&c->cond); }
static inline void piocp_cond_broadcast(piocp_cond *c) { WakeAllConditionVariable(&c->cond); }

/* _beginthreadex passes one pointer to a function of its own signature. */
typedef struct piocp_thread_start_ {
    piocp_thread_body body;
    void *arg;
} piocp_thread_start_;

static inline unsigned __stdcall piocp_thread_trampoline_(void *p)
{
    piocp_thread_start_ start = *(piocp_thread_start_ *)p;
    free(p);
    start.body(start.arg);
    return 0;
}

/* Windows has no signals to block: console events reach a thread of their
 * own. */
static inline int piocp_thread_start(piocp_thread *t, piocp_thread_body body, void *arg)
{
    piocp_thread_start_ *start = malloc(sizeof *start);
    if (!start)
        return -ENOMEM;
    start->body = body;
    start->arg = arg;
    /* _beginthreadex, not CreateThread: the C runtime sets itself up for
     * the thread */
    uintptr_t handle = _beginthreadex(NULL, 0, piocp_thread_trampoline_, start, 0, NULL);
    if (handle == 0) {
        int rc = errno ? -errno : -EAGAIN;
        free(start);
        return rc;
    }
    t->handle = (HANDLE)handle;
    return 0;
}
static inline int piocp_thread_join(piocp_thread *t)
{
    if (WaitForSingleObject(t->handle, INFINITE) != WAIT_OBJECT_0)
        return -EINVAL;
    CloseHandle(t->handle);
    t->handle = NULL;
    return 0;
}

/* InitOnceExecuteOnce passes one pointer: the function, boxed (a function
 * pointer does not convert to void * in ISO C). */
typedef struct piocp_once_fn_ {
    void (*fn)(void);
} piocp_once_fn_;

static inline BOOL CALLBACK piocp_once_trampoline_(PINIT_ONCE once, PVOID param, PVOID *context)
{
    (void)once;
    (void)context;
    ((piocp_once_fn_ *)param)->fn();
    return TRUE;
}

static inline void piocp_once_run(piocp_once *once, void (*fn)(void))
{
    piocp_once_fn_ box = {fn};
    InitOnceExecuteOnce(&once->once, piocp_once_trampoline_, &box, NULL);
}

#else
/* -------------------------------------------------------------- POSIX -- */

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <time.h>

typedef struct piocp_mutex {
    pthread_mutex_t mutex;
} piocp_mutex;
#define PIOCP_MUTEX_INITIALIZER {PTHREAD_MUTEX_INITIALIZER}

typedef struct piocp_cond {
    pthread_cond_t cond;
} piocp_cond;

typedef struct piocp_thread {
    pthread_t thread;
} piocp_thread;

typedef struct piocp_once {
    pthread_once_t once;
} piocp_once;
#define PIOCP_ONCE_INIT {PTHREAD_ONCE_INIT}

/* Timed waits measure on the monotonic clock, which setting the time of
 * day does not move (macOS cannot choose: the realtime clock there). */
#ifdef __APPLE__
#define PIOCP_COND_CLOCK_ CLOCK_REALTIME
#else
#define PIOCP_COND_CLOCK_ CLOCK_MONOTONIC
#endif

static inline int piocp_mutex_init(piocp_mutex *m) { return -pthread_mutex_init(&m->mutex, NULL); }
static inline void piocp_mutex_destroy(piocp_mutex *m) { pthread_mutex_destroy(&m->mutex); }
static inline void piocp_mutex_lock(piocp_mutex *m) { pthread_mutex_lock(&m->mutex); }
static inline void piocp_mutex_unlock(piocp_mutex *m) { pthread_mutex_unlock(&m->mutex); }

static inline int piocp_cond_init(piocp_cond *c)
{
#ifdef __APPLE__
    return -pthread_cond_init(&c->cond, NULL);
#else
    pthread_condattr_t attr;
    int rc = pthread_condattr_init(&attr);
    if (rc != 0)
        return -rc;
    rc = pthread_condattr_setclock(&attr, PIOCP_COND_CLOCK_);
    if (rc == 0)
        rc = pthread_cond_init(&c->cond, &attr);
    pthread_condattr_destroy(&attr);
    return -rc;
#endif
}
static inline void piocp_cond_destroy(piocp_cond *c) { pthread_cond_destroy(&c->cond); }
static inline void piocp_cond_wait(piocp_cond *c, piocp_mutex *m)
{
    pthread_cond_wait(&c->cond, &m->mutex);
}
/* true: `timeout_ms` passed (a wake-up, even a spurious one, is false). */
static inline bool piocp_cond_timedwait(piocp_cond *c, piocp_mutex *m, long long timeout_ms)
{
    if (timeout_ms < 0)
        timeout_ms = 0;
    struct timespec deadline;
    clock_gettime(PIOCP_COND_CLOCK_, &deadline);
    deadline.tv_sec += (time_t)(timeout_ms / 1000);
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (deadline.tv_nsec >= 1000000000L) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000L;
    }
    return pthread_cond_timedwait(&c->cond, &m->mutex, &deadline) == ETIMEDOUT;
}
static inline void piocp_cond_signal(piocp_cond *c) { pthread_cond_signal(&c->cond); }
static inline void piocp_cond_broadcast(piocp_cond *c) { pthread_cond_broadcast(&c->cond); }

/* Starts a thread with every signal blocked: signals must reach the thread
 * that owns the engine (Python's main thread) and interrupt its wait, and a
 * write to a closed pipe fails with EPIPE instead of raising SIGPIPE.
 * Returns 0 or -errno. */
static inline int piocp_thread_start(piocp_thread *t, piocp_thread_body body, void *arg)
{
    /* the new thread inherits the mask in force while it is created */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&t->thread, NULL, body, arg);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return -rc;
}
/* Waits for the thread to end.  Returns 0 or -errno. */
static inline int piocp_thread_join(piocp_thread *t) { return -pthread_join(t->thread, NULL); }

static inline void piocp_once_run(piocp_once *once, void (*fn)(void))
{
    pthread_once(&once->once, fn);
}

#endif

#endif
