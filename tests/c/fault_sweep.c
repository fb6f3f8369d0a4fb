/*
 * fault_sweep.c - the completion contract under every fault (issue 13):
 * each scenario (tests/c/fault_scenarios.c: echo through a C handler; a
 * recv and a send cancelled as soon as posted; a transmit with head and
 * range to a socket whose buffer fills; the native HTTP server with six
 * pipelined requests, one a range; the raw protocol server; an outbound
 * connect) and its variant stopped in the middle runs once recording which
 * injection points it passes (engine/core/fault.h), then once per point
 * and pass n, the nth pass failing with one of the errors its real call
 * can return (engine/core/fault_points.c), or cut short.  After each run:
 *   - every request a C handler posted completed exactly once, none after
 *     its connection's on_closed, which ran once per connection, last;
 *   - an outbound connect's done ran exactly once;
 *   - no descriptor leaked (/proc/self/fd) and no engine allocation
 *     (piocp_fault_allocs), and under ASan LeakSanitizer finds nothing;
 *   - no crash, no hang (a watchdog ends the run and names the fault);
 *     a client got no wrong byte and was never left waiting, and one
 *     that got less than everything did so only once the fault fired;
 *   - the engine then serves a fresh client (the same engine when the
 *     fault did not stop it, else a new one); a fault at startup fails
 *     piocp_engine_new/start, the listen or the server with that error;
 *   - its stop takes no longer than its drain.
 * Each run is a child process: a crash or hang is reported with its fault
 * and the sweep goes on.
 *
 * The bounded sweep (ctest: one entry per backend and scenario, each with
 * its stop-in-the-middle variant; the first 3 passes of every point, 24
 * of "malloc"):
 *   fault_sweep sweep io_uring echo
 * The long randomised sweep, by hand (random scenario, point, pass,
 * error or short, and repeated faults; the seed is printed first, and the
 * same seed replays the same runs; FAULT_SWEEP_SEED works too):
 *   fault_sweep random epoll all 2000 [SEED]
 * The faults that found defects, each replayed (ctest, every backend):
 *   fault_sweep regressions io_uring all
 * What each scenario reaches (and what none does):
 *   fault_sweep points epoll all
 * One run, as a failure prints it:
 *   fault_sweep replay io_uring http+stop cqe_send 2 ECONNRESET [TIMES|always]
 *   fault_sweep replay epoll echo send 1 short
 */
#include "core/fault.h"
#include "errors.h"
#include "fault_scenarios.h"
#include "fault_track.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define SWEEP_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SWEEP_LSAN 1
#endif
#endif
#ifdef SWEEP_LSAN
int __lsan_do_recoverable_leak_check(void);
#endif

#define FIRST_PASSES 3       /* bounded sweep: passes 1..3 of each point */
#define FIRST_MALLOCS 24     /* ... and of "malloc" */
#define WATCHDOG_S 25        /* one run, inside the child */
#define DRAIN_MS 300
#define MAX_SITES 160

static fixture fx;
static const char *backend;
static char label[256]; /* the run, for every message and the watchdog */

/* -------------------------------------------------------- errno names -- */

static const struct { int value; const char *name; } errnos[] = {
    {PIOCP_EPERM, "EPERM"}, {PIOCP_EINTR, "EINTR"}, {PIOCP_EIO, "EIO"},
    {PIOCP_EAGAIN, "EAGAIN"}, {PIOCP_ENOMEM, "ENOMEM"}, {PIOCP_EACCES, "EACCES"},
    {PIOCP_EBUSY, "EBUSY"}, {PIOCP_EMFILE, "EMFILE"}, {PIOCP_ENFILE, "ENFILE"},
    {PIOCP_ENOSPC, "ENOSPC"}, {PIOCP_EPIPE, "EPIPE"}, {PIOCP_EADDRINUSE, "EADDRINUSE"},
    {PIOCP_EADDRNOTAVAIL, "EADDRNOTAVAIL"}, {PIOCP_ENETUNREACH, "ENETUNREACH"},
    {PIOCP_ECONNABORTED, "ECONNABORTED"}, {PIOCP_ECONNRESET, "ECONNRESET"},
    {PIOCP_ENOBUFS, "ENOBUFS"}, {PIOCP_ENOTCONN, "ENOTCONN"}, {PIOCP_ETIMEDOUT, "ETIMEDOUT"},
    {PIOCP_ECONNREFUSED, "ECONNREFUSED"},
};

static const char *errno_name(int e)
{
    if (e == 0)
        return "short";
    for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
        if (errnos[i].value == e)
            return errnos[i].name;
    return "E?";
}

static int errno_value(const char *name)
{
    if (strcmp(name, "short") == 0)
        return 0;
    for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
        if (strcmp(errnos[i].name, name) == 0)
            return errnos[i].value;
    return atoi(name);
}

/* --------------------------------------------------------- one run -- */

typedef struct run_spec {
    const scenario *s;
    bool stop;           /* stop the engine while the client is under way */
    bool record;         /* the recording run: nothing armed */
    piocp_fault_spec fault;
} run_spec;

static int failures_here;

static void fail(const char *what)
{
    fprintf(stderr, "FAIL %s: %s\n", label, what);
    failures_here++;
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL (hang: the watchdog ended the run) ";
    (void)!write(2, msg, sizeof msg - 1);
    (void)!write(2, label, strlen(label));
    (void)!write(2, "\n", 1);
    _exit(3);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    struct dirent *ent;
    while ((ent = readdir(d)))
        n += ent->d_name[0] != '.';
    closedir(d);
    return n - 1;
}

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* run_ctx and its scenario, for the thread. */
typedef struct exchange_arg {
    run_ctx r;
    const scenario *s;
} exchange_arg;

static void *exchange_thread(void *arg)
{
    exchange_arg *x = arg;
    x->r.v = V_OK;
    x->r.why[0] = '\0';
    x->s->exchange(&x->r);
    atomic_store(&x->r.sent, 1);
    return NULL;
}

/* One client exchange; `stop`: the engine is stopped once the client's
 * first request is out.  Returns the client's verdict. */
static verdict exchange(exchange_arg *x, bool stop)
{
    atomic_store(&x->r.sent, 0);
    pthread_t t;
    pthread_create(&t, NULL, exchange_thread, x);
    if (stop) {
        long long until = now_ms() + 5000;
        while (!atomic_load(&x->r.sent) && now_ms() < until)
            usleep(1000);
        piocp_engine_stop(x->r.e, DRAIN_MS);
    }
    pthread_join(t, NULL);
    return x->r.v;
}

/* A persistent fault ("always") is armed: the kernel refuses for good what
 * the engine needs, so a client may wait and a stop may run to its end;
 * once it is disarmed everything must be as without it. */
static bool starving;

/* The client's verdict: wrong bytes are always failures, silence unless a
 * persistent fault starves the engine, less than everything only when
 * nothing was faulted (strict). */
static void judge(exchange_arg *x, verdict v, bool strict, const char *which)
{
    char what[320];
    if (v == V_CORRUPT || (v == V_HUNG && !starving) || (strict && v != V_OK)) {
        snprintf(what, sizeof what, "%s client: %s (%s)", which, verdict_name(v), x->r.why);
        fail(what);
    }
}

/* A startup step failed with `rc`: only the fault may do that, and only
 * with its own error. */
static void startup_failed(const run_spec *rs, const char *step, int rc)
{
    int want = rs->record ? 0 : strcmp(rs->fault.point, "malloc") == 0 ? PIOCP_ENOMEM
                                                                        : rs->fault.error;
    if (piocp_fault_fired() == 0 || rc != -want) {
        char what[160];
        snprintf(what, sizeof what, "%s failed with %d (%s)%s", step, rc, strerror(-rc),
                 piocp_fault_fired() ? "" : ", and nothing was faulted");
        fail(what);
    }
}

/* Engine, scenario, start, one exchange (or two), stop, free.  Returns
 * true if the engine served (false: it failed to start, or was stopped in
 * the middle); *strict_after: a strict exchange ran after the fault. */
static bool engine_run(const run_spec *rs, bool stop, bool *strict_after)
{
    exchange_arg x;
    memset(&x, 0, sizeof x);
    x.s = rs->s;
    x.r.fx = &fx;
    x.r.file = -1;
    *strict_after = false;
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.threads = 2;
    cfg.backend = backend;
    cfg.linger_ms = 200;
    cfg.drain_first_request_ms = 200;
    if (rs->s->configure)
        rs->s->configure(&cfg);
    int rc = piocp_engine_new(&x.r.e, &cfg);
    if (rc < 0) {
        startup_failed(rs, "piocp_engine_new", rc);
        return false;
    }
    bool served = false;
    rc = rs->s->setup(&x.r);
    if (rc < 0)
        startup_failed(rs, "the scenario's setup (server, listen)", rc);
    if (rc == 0) {
        rc = piocp_engine_start(x.r.e);
        if (rc < 0)
            startup_failed(rs, "piocp_engine_start", rc);
    }
    if (rc == 0) {
        long long t1 = now_ms();
        verdict v = exchange(&x, stop);
        if (getenv("FAULT_SWEEP_VERBOSE"))
            fprintf(stderr, "  first exchange: %s after %lld ms\n", verdict_name(v), now_ms() - t1);
        judge(&x, v, !stop && piocp_fault_fired() == 0, stop ? "stopped" : "first");
        served = !stop;
        if (served) {
            /* the same engine goes on serving: strictly once the fault has
             * fired (it is disarmed first); otherwise the fault may still
             * fire in this exchange */
            bool fired = piocp_fault_fired() > 0;
            if (fired) {
                piocp_fault_disarm();
                starving = false;
            }
            v = exchange(&x, false);
            judge(&x, v, fired || piocp_fault_fired() == 0, "second");
            *strict_after = fired;
        }
    }
    long long t0 = now_ms();
    piocp_engine_stop(x.r.e, DRAIN_MS);
    long long took = now_ms() - t0;
    if (getenv("FAULT_SWEEP_VERBOSE"))
        fprintf(stderr, "  stop took %lld ms%s\n", took, starving ? " (starving)" : "");
    /* nothing is in flight by now but what a fault left: a stop must not
     * wait out anything but its drain (issue 13's 20 s stops) */
    if (took > DRAIN_MS + 2000 && !starving) {
        char what[96];
        snprintf(what, sizeof what, "piocp_engine_stop took %lld ms (drain %d)", took, DRAIN_MS);
        fail(what);
    }
    piocp_engine_free(x.r.e);
    if (rs->s->teardown)
        rs->s->teardown(&x.r);
    return served;
}

static void check_leaks(int fds0, long allocs0, const char *when)
{
    char what[160];
    int fds = count_fds();
    long allocs = piocp_fault_allocs();
    if (fds != fds0) {
        snprintf(what, sizeof what, "%s: %d descriptors leaked", when, fds - fds0);
        fail(what);
    }
    if (allocs != allocs0) {
        snprintf(what, sizeof what, "%s: %ld engine allocations leaked", when, allocs - allocs0);
        fail(what);
    }
    if (track_check(label) > 0)
        failures_here++;
#ifdef SWEEP_LSAN
    if (__lsan_do_recoverable_leak_check()) {
        snprintf(what, sizeof what, "%s: LeakSanitizer found leaks (above)", when);
        fail(what);
    }
#endif
}

/* The child: one run, then its verdict as the exit status (0 passed, 1
 * failed, 3 hung); the recording goes to `record_fd`. */
static int child_run(const run_spec *rs, int record_fd)
{
    signal(SIGPIPE, SIG_IGN);
    signal(SIGALRM, on_alarm);
    alarm(WATCHDOG_S);
    int fds0 = count_fds();
    long allocs0 = piocp_fault_allocs();
    track_reset();
    if (rs->record)
        piocp_fault_record(1);
    else
        piocp_fault_arm_spec(&rs->fault);
    starving = !rs->record && rs->fault.times == UINT_MAX;
    bool strict_after;
    bool served = engine_run(rs, rs->stop, &strict_after);
    unsigned fired = piocp_fault_fired();
    starving = false;
    if (getenv("FAULT_SWEEP_VERBOSE"))
        fprintf(stderr, "run %s: fired %u, %s\n", label, fired, served ? "served" : "not served");
    piocp_fault_disarm();
    piocp_fault_record(0);
    if (rs->record) {
        piocp_fault_site sites[MAX_SITES];
        size_t n = piocp_fault_recorded(sites, MAX_SITES);
        if (n > MAX_SITES)
            fail("more points than the recording holds");
        for (size_t i = 0; i < n && i < MAX_SITES; i++)
            dprintf(record_fd, "%s %u %d\n", sites[i].point, sites[i].passes, sites[i].can_short);
    }
    check_leaks(fds0, allocs0, "after the run");
    /* a fresh engine serves a fresh client when the faulted one could not
     * show that it recovered */
    if (fired && (!served || !strict_after)) {
        track_reset();
        run_spec fresh = *rs;
        fresh.record = true; /* nothing armed: any failure is one */
        fresh.stop = false;
        engine_run(&fresh, false, &strict_after);
        check_leaks(fds0, allocs0, "after a fresh engine");
    }
    return failures_here ? 1 : 0;
}

/* -------------------------------------------------------- the parent -- */

typedef struct site {
    char point[32];
    unsigned passes;
    int can_short;
} site;

static int total_runs, total_failures;

static void describe(char *out, size_t cap, const run_spec *rs)
{
    if (rs->record) {
        snprintf(out, cap, "%s %s%s (recording)", backend, rs->s->name, rs->stop ? "+stop" : "");
        return;
    }
    char times[24] = "";
    if (rs->fault.times == UINT_MAX)
        snprintf(times, sizeof times, " always");
    else if (rs->fault.times > 1)
        snprintf(times, sizeof times, " %u", rs->fault.times);
    snprintf(out, cap, "%s %s%s %s %u %s%s", backend, rs->s->name, rs->stop ? "+stop" : "",
             rs->fault.point, rs->fault.nth, errno_name(rs->fault.error), times);
}

/* Forks one run; fills `sites` from a recording.  Returns true if it
 * passed. */
static bool run_one(const run_spec *rs, site *sites, size_t *nsites)
{
    describe(label, sizeof label, rs);
    int pipefd[2];
    if (pipe(pipefd) < 0) {
        perror("pipe");
        exit(2);
    }
    fflush(NULL);
    long long started = now_ms();
    pid_t pid = fork();
    if (pid == 0) {
        close(pipefd[0]);
        int rc = child_run(rs, pipefd[1]);
        fflush(NULL);
        _exit(rc); /* no atexit leak check: the run did its own */
    }
    close(pipefd[1]);
    FILE *in = fdopen(pipefd[0], "r");
    char point[32];
    unsigned passes;
    int can_short;
    size_t n = 0;
    while (fscanf(in, "%31s %u %d", point, &passes, &can_short) == 3) {
        if (sites && n < MAX_SITES) {
            memcpy(sites[n].point, point, sizeof point);
            sites[n].passes = passes;
            sites[n].can_short = can_short;
            n++;
        }
    }
    fclose(in);
    if (nsites)
        *nsites = n;
    int status;
    long long deadline = now_ms() + (WATCHDOG_S + 15) * 1000LL;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (now_ms() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            fprintf(stderr, "FAIL (killed: no end) %s\n", label);
            break;
        }
        usleep(2000);
    }
    total_runs++;
    if (getenv("FAULT_SWEEP_VERBOSE"))
        fprintf(stderr, "  %s took %lld ms\n", label, now_ms() - started);
    bool ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) {
        if (WIFSIGNALED(status))
            fprintf(stderr, "FAIL (crash: signal %d) %s\n", WTERMSIG(status), label);
        fprintf(stderr, "  replay: fault_sweep replay %s\n", label);
        total_failures++;
    }
    return ok;
}

/* The recording of (scenario, stop): its sites, or 0 if it failed. */
static size_t record(const scenario *s, bool stop, site *sites)
{
    run_spec rs = {.s = s, .stop = stop, .record = true};
    size_t n = 0;
    if (!run_one(&rs, sites, &n))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (piocp_fault_point_errors(sites[i].point, NULL, 0) < 0) {
            fprintf(stderr, "FAIL %s: point %s is not in engine/core/fault_points.c\n", label,
                    sites[i].point);
            total_failures++;
        }
    }
    return n;
}

static void sweep_scenario(const scenario *s, bool stop)
{
    site sites[MAX_SITES];
    size_t n = record(s, stop, sites);
    for (size_t i = 0; i < n; i++) {
        int errors[8];
        int count = piocp_fault_point_errors(sites[i].point, errors, 8);
        unsigned bound = strcmp(sites[i].point, "malloc") == 0 ? FIRST_MALLOCS : FIRST_PASSES;
        for (unsigned nth = 1; nth <= sites[i].passes && nth <= bound; nth++) {
            run_spec rs = {.s = s, .stop = stop};
            rs.fault.point = sites[i].point;
            rs.fault.nth = nth;
            if (count > 0) {
                /* a different error on each pass: over the first passes,
                 * several of what the call can return */
                rs.fault.error = errors[(nth - 1) % (unsigned)count];
                run_one(&rs, NULL, NULL);
            }
            if (sites[i].can_short) {
                rs.fault.error = 0;
                run_one(&rs, NULL, NULL);
            }
        }
    }
}

/* Faults that found a defect (each fixed with it), replayed as they were
 * found.  A range of passes where the order of passes between workers
 * varies from run to run; a point the backend does not have passes as a
 * run without a fault. */
typedef struct regression {
    const char *scenario; /* "+stop" for the stop variant */
    const char *point;
    unsigned first, last;
    int error;            /* 0: short */
    unsigned times;       /* consecutive passes faulted (0: 1) */
} regression;

static const regression regressions[] = {
    /* io_uring: an SQ with no room for a worker's wake-up poll or a
     * listener's accept left it unarmed for good (a hang) */
    {"echo", "uring_sqe", 1, 6, PIOCP_EBUSY, 1},
    /* io_uring: a cancel that found the SQ full (closing a connection
     * whose send could not be submitted) was never retried: the
     * connection stayed open, its recv on the ring, its client waiting */
    {"echo", "uring_sqe", 14, 22, PIOCP_EBUSY, 2},
    /* io_uring: ... and retried on the worker's local list, which the
     * worker runs to its end before it polls: with the SQ full for good,
     * the worker spun there, never polled, never left (the stop hung) */
    {"echo+stop", "uring_sqe", 5, 13, PIOCP_EBUSY, UINT_MAX},
};

static void replay_regressions(const scenario *only)
{
    for (size_t i = 0; i < sizeof regressions / sizeof regressions[0]; i++) {
        const regression *g = &regressions[i];
        char name[64];
        snprintf(name, sizeof name, "%s", g->scenario);
        char *plus = strchr(name, '+');
        if (plus)
            *plus = '\0';
        const scenario *s = scenario_find(name);
        if (!s || (only && s != only))
            continue;
        for (unsigned nth = g->first; nth <= g->last; nth++) {
            run_spec rs = {.s = s, .stop = plus != NULL};
            rs.fault.point = g->point;
            rs.fault.nth = nth;
            rs.fault.error = g->error;
            rs.fault.times = g->times;
            run_one(&rs, NULL, NULL);
        }
    }
}

/* xorshift64*: the same seed, the same runs, on every machine. */
static uint64_t rng_state;
static uint64_t rng(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 2685821657736338717ULL;
}

static void random_sweep(const scenario *only, long runs, uint64_t seed)
{
    printf("fault_sweep random %s %s %ld %llu\n", backend, only ? only->name : "all", runs,
           (unsigned long long)seed);
    rng_state = seed ? seed : 1;
    /* every (scenario, stop) recorded once, in order: the seed alone
     * decides the rest */
    static site sites[16][MAX_SITES];
    size_t counts[16] = {0};
    const scenario *list[16];
    int kinds = 0;
    for (const scenario *s = scenarios; s->name && kinds < 16; s++) {
        if (only && s != only)
            continue;
        for (int stop = 0; stop < 2 && kinds < 16; stop++) {
            list[kinds] = s;
            counts[kinds] = record(s, stop, sites[kinds]);
            kinds++;
        }
    }
    for (long i = 0; i < runs; i++) {
        int k = (int)(rng() % (uint64_t)kinds);
        if (counts[k] == 0)
            continue;
        const site *st = &sites[k][rng() % counts[k]];
        run_spec rs = {.s = list[k], .stop = (k % 2) == 1};
        rs.fault.point = st->point;
        rs.fault.nth = 1 + (unsigned)(rng() % st->passes);
        int errors[8];
        int count = piocp_fault_point_errors(st->point, errors, 8);
        bool cut = st->can_short && (count <= 0 || rng() % 3 == 0);
        rs.fault.error = cut ? 0 : count > 0 ? errors[rng() % (unsigned)count] : 0;
        /* now and then a run of faults, or a persistent one (until the
         * first client is done: the engine must then recover) */
        uint64_t dice = rng() % 8;
        rs.fault.times = dice == 0 ? UINT_MAX : dice < 3 ? 1 + (unsigned)(rng() % 3) : 1;
        /* a signal interrupts a call once: EINTR for ever is no kernel's,
         * and every caller rightly retries it at once */
        if (rs.fault.error == PIOCP_EINTR && rs.fault.times == UINT_MAX)
            rs.fault.times = 3;
        if (count <= 0 && !cut)
            continue;
        run_one(&rs, NULL, NULL);
    }
}

/* What each scenario reaches, and the points none of them does. */
static void list_points(const scenario *only)
{
    const char *all[MAX_SITES];
    size_t total = piocp_fault_points(all, MAX_SITES);
    bool reached[MAX_SITES] = {false};
    for (const scenario *s = scenarios; s->name; s++) {
        if (only && s != only)
            continue;
        for (int stop = 0; stop < 2; stop++) {
            site sites[MAX_SITES];
            size_t n = record(s, stop, sites);
            printf("%s%s:", s->name, stop ? "+stop" : "");
            for (size_t i = 0; i < n; i++) {
                printf(" %s(%u%s)", sites[i].point, sites[i].passes, sites[i].can_short ? ",short" : "");
                for (size_t k = 0; k < total && k < MAX_SITES; k++)
                    if (strcmp(all[k], sites[i].point) == 0)
                        reached[k] = true;
            }
            printf("\n");
        }
    }
    printf("not reached on %s:", backend);
    for (size_t k = 0; k < total && k < MAX_SITES; k++)
        if (!reached[k])
            printf(" %s", all[k]);
    printf("\n");
}

static int usage(void)
{
    fprintf(stderr, "usage: fault_sweep sweep|regressions BACKEND SCENARIO|all\n"
                    "       fault_sweep random BACKEND SCENARIO|all RUNS [SEED]\n"
                    "       fault_sweep replay BACKEND SCENARIO[+stop] POINT N ERROR|short [TIMES]\n");
    return 2;
}

int main(int argc, char **argv)
{
    if (argc < 4)
        return usage();
    backend = argv[2];
    const char *mode = argv[1];
    char name[64];
    snprintf(name, sizeof name, "%s", argv[3]);
    bool stop = false;
    char *plus = strchr(name, '+');
    if (plus && strcmp(plus, "+stop") == 0) {
        *plus = '\0';
        stop = true;
    }
    const scenario *only = strcmp(name, "all") == 0 ? NULL : scenario_find(name);
    if (!only && strcmp(name, "all") != 0)
        return usage();
    /* the backend must exist here (io_uring may be refused: skipped) */
    piocp_config probe;
    piocp_config_init(&probe);
    probe.threads = 1;
    probe.backend = backend;
    piocp_engine *e = NULL;
    if (piocp_engine_new(&e, &probe) < 0) {
        fprintf(stderr, "backend %s unavailable here\n", backend);
        return 77;
    }
    piocp_engine_free(e);
    fixture_make(&fx);
    long long t0 = now_ms();
    if (strcmp(mode, "sweep") == 0) {
        for (const scenario *s = scenarios; s->name; s++) {
            if (only && s != only)
                continue;
            sweep_scenario(s, false);
            sweep_scenario(s, true);
        }
    } else if (strcmp(mode, "points") == 0) {
        list_points(only);
    } else if (strcmp(mode, "regressions") == 0) {
        replay_regressions(only);
    } else if (strcmp(mode, "random") == 0 && argc >= 5) {
        const char *env = getenv("FAULT_SWEEP_SEED");
        uint64_t seed = argc >= 6   ? strtoull(argv[5], NULL, 0)
                        : env       ? strtoull(env, NULL, 0)
                                    : (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        random_sweep(only, atol(argv[4]), seed);
    } else if (strcmp(mode, "replay") == 0 && argc >= 7 && only) {
        run_spec rs = {.s = only, .stop = stop};
        rs.fault.point = argv[4];
        rs.fault.nth = (unsigned)atoi(argv[5]);
        rs.fault.error = errno_value(argv[6]);
        rs.fault.times = argc < 8 ? 1 : strcmp(argv[7], "always") == 0 ? UINT_MAX
                                                                       : (unsigned)atoi(argv[7]);
        run_one(&rs, NULL, NULL);
    } else {
        fixture_remove(&fx);
        return usage();
    }
    fixture_remove(&fx);
    printf("%s %s %s: %d runs, %d failed, %.1f s\n", mode, backend, name, total_runs,
           total_failures, (double)(now_ms() - t0) / 1000);
    return total_failures ? 1 : 0;
}
