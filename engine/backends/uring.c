/*
 * uring.c - see uring.h.  Written against the kernel ABI as documented in
 * io_uring_setup(2), io_uring_enter(2) and io_uring_register(2).
 *
 * Ring protocol in brief: the SQ ring holds indexes into the SQE array; we
 * map it 1:1 once (array[i] = i), hand out SQEs at our private sqe_tail and
 * publish them by storing the tail with release semantics before
 * io_uring_enter.  The kernel (no SQPOLL) consumes SQEs only inside
 * io_uring_enter, advancing the SQ head.  The CQ ring is the mirror image:
 * the kernel publishes CQEs by advancing the CQ tail; we read the tail with
 * acquire semantics and release consumed entries by storing the head.
 */
#include "backends/uring.h"
#include "platform/posix/fault_calls.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

/* Reads kernel.io_uring_disabled (6.6+): 0 enabled, 1 only for
 * io_uring_group / CAP_SYS_ADMIN, 2 disabled; -1 when absent. */
static int read_disabled_sysctl(void)
{
    int fd = open("/proc/sys/kernel/io_uring_disabled", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    char buf[16];
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n <= 0)
        return -1;
    buf[n] = '\0';
    return atoi(buf);
}

static const char *errno_name(int err)
{
    switch (err) {
    case EPERM: return "EPERM";
    case ENOSYS: return "ENOSYS";
    case ENOMEM: return "ENOMEM";
    case EINVAL: return "EINVAL";
    case EACCES: return "EACCES";
    case EMFILE: return "EMFILE";
    case ENFILE: return "ENFILE";
    case EFAULT: return "EFAULT";
    default: return NULL;
    }
}

#if PIOCP_URING_SUPPORTED

/* The opcode of IORING_OP_SEND_ZC (6.0), absent from 5.19 headers: opcode
 * numbers are fixed ABI, so the probe uses the number. */
#define PIOCP_OP_SEND_ZC 47
#ifdef IORING_SEND_ZC_REPORT_USAGE /* 6.1 headers carry the enum */
_Static_assert(IORING_OP_SEND_ZC == PIOCP_OP_SEND_ZC, "IORING_OP_SEND_ZC");
#endif

_Static_assert(sizeof(struct io_uring_sqe) == 64, "64-byte SQEs");
_Static_assert(sizeof(struct io_uring_cqe) == 16, "16-byte CQEs");
_Static_assert(sizeof(struct io_uring_buf) == 16, "16-byte provided-buffer entries");

static int sys_setup(unsigned entries, struct io_uring_params *p)
{
    long ret = syscall(__NR_io_uring_setup, entries, p);
    return ret < 0 ? -errno : (int)ret;
}

static int sys_enter(int fd, unsigned to_submit, unsigned min_complete, unsigned flags)
{
    /* No signal mask: its size argument is then ignored. */
    long ret = FAULT_CALL("uring_enter", syscall(__NR_io_uring_enter, fd, to_submit, min_complete,
                                                 flags, NULL, (size_t)0));
    return ret < 0 ? -errno : (int)ret;
}

static int sys_register(int fd, unsigned opcode, void *arg, unsigned nr_args)
{
    long ret = FAULT_CALL("uring_register", syscall(__NR_io_uring_register, fd, opcode, arg, nr_args));
    return ret < 0 ? -errno : (int)ret;
}

static inline unsigned load_acquire(const unsigned *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static inline void store_release(unsigned *p, unsigned v)
{
    __atomic_store_n(p, v, __ATOMIC_RELEASE);
}

/* ------------------------------------------------------------- setup -- */

static void *map_ring(int fd, size_t len, off_t offset)
{
    if (fault_errno("uring_mmap"))
        return NULL;
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, offset);
    return p == MAP_FAILED ? NULL : p;
}

static int map_rings(piocp_uring *ring, const struct io_uring_params *p)
{
    ring->sq_map_len = p->sq_off.array + p->sq_entries * sizeof(unsigned);
    ring->cq_map_len = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);
    if (p->features & IORING_FEAT_SINGLE_MMAP) {
        /* One mapping covers both rings. */
        if (ring->cq_map_len > ring->sq_map_len)
            ring->sq_map_len = ring->cq_map_len;
        ring->cq_map_len = 0;
    }
    ring->sq_map = map_ring(ring->fd, ring->sq_map_len, IORING_OFF_SQ_RING);
    if (!ring->sq_map)
        return -errno;
    if (p->features & IORING_FEAT_SINGLE_MMAP) {
        ring->cq_map = ring->sq_map;
    } else {
        ring->cq_map = map_ring(ring->fd, ring->cq_map_len, IORING_OFF_CQ_RING);
        if (!ring->cq_map)
            return -errno;
    }
    ring->sqe_map_len = p->sq_entries * sizeof(struct io_uring_sqe);
    ring->sqe_map = map_ring(ring->fd, ring->sqe_map_len, IORING_OFF_SQES);
    if (!ring->sqe_map)
        return -errno;

    char *sq = ring->sq_map, *cq = ring->cq_map;
    ring->sq.khead = (unsigned *)(sq + p->sq_off.head);
    ring->sq.ktail = (unsigned *)(sq + p->sq_off.tail);
    ring->sq.kflags = (unsigned *)(sq + p->sq_off.flags);
    ring->sq.kdropped = (unsigned *)(sq + p->sq_off.dropped);
    ring->sq.array = (unsigned *)(sq + p->sq_off.array);
    ring->sq.mask = *(unsigned *)(sq + p->sq_off.ring_mask);
    ring->sq.entries = *(unsigned *)(sq + p->sq_off.ring_entries);
    ring->sq.sqes = ring->sqe_map;
    ring->sq.sqe_tail = *ring->sq.ktail;
    ring->cq.khead = (unsigned *)(cq + p->cq_off.head);
    ring->cq.ktail = (unsigned *)(cq + p->cq_off.tail);
    ring->cq.koverflow = (unsigned *)(cq + p->cq_off.overflow);
    ring->cq.mask = *(unsigned *)(cq + p->cq_off.ring_mask);
    ring->cq.entries = *(unsigned *)(cq + p->cq_off.ring_entries);
    ring->cq.cqes = (struct io_uring_cqe *)(cq + p->cq_off.cqes);
    /* SQ slot i always holds SQE i: SQEs are used in ring order. */
    for (unsigned i = 0; i < ring->sq.entries; i++)
        ring->sq.array[i] = i;
    return 0;
}

int piocp_uring_init(piocp_uring *ring, unsigned entries, unsigned flags)
{
    memset(ring, 0, sizeof *ring);
    ring->fd = -1;
    if (entries == 0 || (flags & (IORING_SETUP_SQPOLL | IORING_SETUP_IOPOLL |
                                  IORING_SETUP_SQE128 | IORING_SETUP_CQE32)))
        return -EINVAL;

    /* Optional flags, newest first: each retry drops the most recent one
     * (EINVAL is how a kernel refuses a flag it does not know). */
    static const unsigned optional[] = {
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG |
            IORING_SETUP_SINGLE_ISSUER,                                          /* 6.0 */
        IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG, /* 5.19 */
        IORING_SETUP_SUBMIT_ALL,                                                 /* 5.18 */
        0,
    };
    unsigned cq_entries = entries > UINT_MAX / 4 ? UINT_MAX : entries * 4;
    struct io_uring_params p;
    int fd = -EINVAL;
    for (size_t i = 0; i < sizeof optional / sizeof optional[0]; i++) {
        memset(&p, 0, sizeof p);
        p.flags = flags | optional[i] | IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
        p.cq_entries = cq_entries;
        fd = sys_setup(entries, &p);
        if (fd != -EINVAL)
            break;
    }
    if (fd == -EINVAL) { /* pre-5.6 kernels: no CQSIZE/CLAMP either */
        memset(&p, 0, sizeof p);
        p.flags = flags;
        fd = sys_setup(entries, &p);
    }
    if (fd < 0)
        return fd;
    ring->fd = fd;
    ring->setup_flags = p.flags;
    ring->features = p.features;
    int rc = map_rings(ring, &p);
    if (rc < 0) {
        piocp_uring_exit(ring);
        return rc;
    }
    return 0;
}

void piocp_uring_exit(piocp_uring *ring)
{
    if (ring->sqe_map)
        munmap(ring->sqe_map, ring->sqe_map_len);
    if (ring->cq_map && ring->cq_map != ring->sq_map)
        munmap(ring->cq_map, ring->cq_map_len);
    if (ring->sq_map)
        munmap(ring->sq_map, ring->sq_map_len);
    if (ring->fd >= 0)
        close(ring->fd);
    memset(ring, 0, sizeof *ring);
    ring->fd = -1;
}

/* -------------------------------------------------------- submission -- */

struct io_uring_sqe *piocp_uring_get_sqe(piocp_uring *ring)
{
    if (!ring->sq.sqes)
        return NULL;
    /* Without SQPOLL the head moves only inside our own io_uring_enter. */
    unsigned head = load_acquire(ring->sq.khead);
    if (ring->sq.sqe_tail - head >= ring->sq.entries)
        return NULL;
    return &ring->sq.sqes[ring->sq.sqe_tail++ & ring->sq.mask];
}

/* Publishes the SQEs handed out so far; returns how many the kernel has
 * yet to consume (including any it left over from an earlier call). */
static unsigned flush_sq(piocp_uring *ring)
{
    store_release(ring->sq.ktail, ring->sq.sqe_tail);
    return ring->sq.sqe_tail - load_acquire(ring->sq.khead);
}

static unsigned sq_flags(const piocp_uring *ring)
{
    return __atomic_load_n(ring->sq.kflags, __ATOMIC_RELAXED);
}

/* True when the kernel holds completions we can only get by entering it:
 * overflowed CQEs, or task work deferred by COOP_TASKRUN.  Every caller
 * then enters with IORING_ENTER_GETEVENTS, which flushes the overflow list
 * into the CQ ring (as much as fits).  Counts each overflow episode once:
 * the kernel keeps IORING_SQ_CQ_OVERFLOW set until its list is drained. */
static bool cq_needs_enter(piocp_uring *ring)
{
    unsigned f = sq_flags(ring);
    bool overflowing = (f & IORING_SQ_CQ_OVERFLOW) != 0;
    if (overflowing && !ring->cq_overflowing)
        ring->overflow_events++;
    ring->cq_overflowing = overflowing;
    return overflowing || (f & IORING_SQ_TASKRUN);
}

unsigned piocp_uring_cq_ready(const piocp_uring *ring)
{
    if (!ring->cq.cqes)
        return 0;
    return load_acquire(ring->cq.ktail) - *ring->cq.khead;
}

int piocp_uring_submit(piocp_uring *ring)
{
    if (ring->fd < 0)
        return -EBADF;
    for (;;) {
        unsigned to_submit = flush_sq(ring);
        unsigned flags = cq_needs_enter(ring) ? IORING_ENTER_GETEVENTS : 0;
        if (to_submit == 0 && flags == 0)
            return 0;
        int ret = sys_enter(ring->fd, to_submit, 0, flags);
        if (ret != -EINTR)
            return ret;
    }
}

/* io_uring_enter with a relative timeout for the wait (IORING_ENTER_EXT_ARG,
 * 5.11+): the kernel then returns -ETIME when it expires with fewer than
 * min_complete CQEs ready and nothing submitted. */
static int sys_enter_timeout(int fd, unsigned to_submit, unsigned min_complete, unsigned flags,
                             const struct __kernel_timespec *ts)
{
    struct io_uring_getevents_arg arg;
    memset(&arg, 0, sizeof arg); /* no signal mask */
    arg.ts = (uintptr_t)ts;
    long ret = FAULT_CALL("uring_enter", syscall(__NR_io_uring_enter, fd, to_submit, min_complete,
                                                 flags | IORING_ENTER_EXT_ARG, &arg, sizeof arg));
    return ret < 0 ? -errno : (int)ret;
}

static long long monotonic_ns(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (long long)now.tv_sec * 1000000000LL + now.tv_nsec;
}

/* Submits and waits for `wait_nr` CQEs; until `deadline_ns` (CLOCK_MONOTONIC)
 * at the latest when it is >= 0 (the caller checked IORING_FEAT_EXT_ARG). */
static int submit_and_wait_until(piocp_uring *ring, unsigned wait_nr, long long deadline_ns)
{
    if (ring->fd < 0)
        return -EBADF;
    for (;;) {
        unsigned to_submit = flush_sq(ring);
        bool flush = cq_needs_enter(ring);
        unsigned flags = wait_nr || flush ? IORING_ENTER_GETEVENTS : 0;
        if (to_submit == 0 && flags == 0)
            return 0;
        int ret;
        if (deadline_ns >= 0 && wait_nr) {
            /* Relative, recomputed on every retry so EINTR cannot stretch it. */
            long long left = deadline_ns - monotonic_ns();
            if (left < 0)
                left = 0;
            struct __kernel_timespec ts = {.tv_sec = left / 1000000000LL,
                                           .tv_nsec = left % 1000000000LL};
            ret = sys_enter_timeout(ring->fd, to_submit, wait_nr, flags, &ts);
            if (ret == -ETIME) /* timed out; nothing was submitted */
                return 0;
        } else {
            ret = sys_enter(ring->fd, to_submit, wait_nr, flags);
        }
        if (ret >= 0)
            return ret;
        if (ret == -EINTR) /* nothing was consumed: the SQEs are still queued */
            continue;
        if (ret == -EBUSY || ret == -EAGAIN) {
            if (piocp_uring_cq_ready(ring))
                return 0; /* reap first; the SQEs stay queued for the next call */
            /* Nothing visible to reap: move overflowed CQEs into the ring. */
            if (sys_enter(ring->fd, 0, 0, IORING_ENTER_GETEVENTS) >= 0 &&
                piocp_uring_cq_ready(ring))
                return 0;
        }
        return ret;
    }
}

int piocp_uring_submit_and_wait(piocp_uring *ring, unsigned wait_nr)
{
    return submit_and_wait_until(ring, wait_nr, -1);
}

int piocp_uring_submit_and_wait_timeout(piocp_uring *ring, unsigned wait_nr, int timeout_ms)
{
    if (timeout_ms < 0)
        return submit_and_wait_until(ring, wait_nr, -1);
    if (timeout_ms == 0) /* submit, flush overflow and task work; no wait */
        return submit_and_wait_until(ring, 0, -1);
    if (ring->fd >= 0 && !(ring->features & IORING_FEAT_EXT_ARG))
        return -EOPNOTSUPP;
    return submit_and_wait_until(ring, wait_nr, monotonic_ns() + timeout_ms * 1000000LL);
}

/* ------------------------------------------------------- completions -- */

int piocp_uring_peek_batch(piocp_uring *ring, struct io_uring_cqe **cqes, unsigned max)
{
    if (!ring->cq.cqes)
        return 0;
    unsigned ready = piocp_uring_cq_ready(ring);
    if (ready == 0 && cq_needs_enter(ring)) {
        sys_enter(ring->fd, 0, 0, IORING_ENTER_GETEVENTS);
        ready = piocp_uring_cq_ready(ring);
    }
    unsigned n = ready < max ? ready : max;
    unsigned head = *ring->cq.khead;
    for (unsigned i = 0; i < n; i++)
        cqes[i] = &ring->cq.cqes[(head + i) & ring->cq.mask];
    return (int)n;
}

void piocp_uring_cq_advance(piocp_uring *ring, unsigned n)
{
    if (n)
        store_release(ring->cq.khead, *ring->cq.khead + n);
}

unsigned piocp_uring_cq_dropped(const piocp_uring *ring)
{
    return ring->cq.koverflow ? __atomic_load_n(ring->cq.koverflow, __ATOMIC_RELAXED) : 0;
}

/* -------------------------------------------- provided-buffer rings -- */

int piocp_uring_buf_ring_setup(piocp_uring *ring, unsigned short bgid, unsigned entries,
                               size_t buf_size, piocp_uring_buf_ring *out)
{
    memset(out, 0, sizeof *out);
    if (ring->fd < 0)
        return -EBADF;
    if (entries == 0 || entries > 32768 || (entries & (entries - 1)) || buf_size == 0 ||
        buf_size > UINT32_MAX || buf_size > (SIZE_MAX / 2) / entries)
        return -EINVAL;
    long page = sysconf(_SC_PAGESIZE);
    size_t pg = page > 0 ? (size_t)page : 4096;
    size_t ring_len = (entries * sizeof(struct io_uring_buf) + pg - 1) / pg * pg;
    size_t data_len = (entries * buf_size + pg - 1) / pg * pg;
    /* One anonymous mapping: the ring (page-aligned, as the kernel
     * requires) followed by the buffers. */
    void *map = mmap(NULL, ring_len + data_len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED)
        return -errno;
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uintptr_t)map;
    reg.ring_entries = entries;
    reg.bgid = bgid;
    int rc = sys_register(ring->fd, IORING_REGISTER_PBUF_RING, &reg, 1);
    if (rc < 0) {
        munmap(map, ring_len + data_len);
        return rc;
    }
    out->br = map;
    out->bufs = (unsigned char *)map + ring_len;
    out->buf_size = buf_size;
    out->entries = entries;
    out->mask = entries - 1;
    out->bgid = bgid;
    out->tail = 0; /* the kernel's view of the tail starts at 0 too (fresh mapping) */
    out->map = map;
    out->map_len = ring_len + data_len;
    for (unsigned b = 0; b < entries; b++)
        piocp_uring_buf_ring_add(out, (unsigned short)b, b);
    piocp_uring_buf_ring_advance(out, entries);
    return 0;
}

int piocp_uring_buf_ring_free(piocp_uring *ring, piocp_uring_buf_ring *br)
{
    int rc = 0;
    if (!br->map)
        return 0;
    if (ring->fd >= 0) {
        struct io_uring_buf_reg reg;
        memset(&reg, 0, sizeof reg);
        reg.bgid = br->bgid;
        rc = sys_register(ring->fd, IORING_UNREGISTER_PBUF_RING, &reg, 1);
    }
    /* After a failed unregister the kernel may still use the ring: keep
     * the memory mapped (a leak beats a use-after-free). */
    if (rc == 0)
        munmap(br->map, br->map_len);
    memset(br, 0, sizeof *br);
    return rc;
}

/* ------------------------------------------------------------ probe -- */

#define PROBE_GUARD UINT64_C(0xffffffffffffff00)

/* Waits until every user_data in want[] produced its final CQE (one
 * without IORING_CQE_F_MORE), storing its res in res[]; a 1 s guard timer
 * bounds the wait.  Returns 0, or -ETIME if the guard fired first. */
static int probe_collect(piocp_uring *ring, const uint64_t *want, int *res, bool *done, int n)
{
    struct __kernel_timespec ts = {.tv_sec = 1};
    struct io_uring_sqe *sqe = piocp_uring_get_sqe(ring);
    if (!sqe)
        return -EBUSY;
    piocp_uring_prep_timeout(sqe, &ts, 0, 0, PROBE_GUARD);
    int remaining = n;
    while (remaining > 0) {
        int rc = piocp_uring_submit_and_wait(ring, 1);
        if (rc < 0)
            return rc;
        struct io_uring_cqe *cqes[8];
        int got = piocp_uring_peek_batch(ring, cqes, 8);
        bool expired = false;
        for (int i = 0; i < got; i++) {
            const struct io_uring_cqe *c = cqes[i];
            if (c->user_data == PROBE_GUARD) {
                expired = true;
                continue;
            }
            for (int k = 0; k < n; k++) {
                if (c->user_data != want[k] || done[k])
                    continue;
                if (c->flags & IORING_CQE_F_MORE) {
                    if (c->res >= 0 && want[k] == 1)
                        close(c->res); /* a stray connection to the probe socket */
                } else {
                    res[k] = c->res;
                    done[k] = true;
                    remaining--;
                }
            }
        }
        piocp_uring_cq_advance(ring, (unsigned)got);
        if (expired && remaining > 0)
            return -ETIME;
    }
    return 0;
}

/* Multishot accept and recv have no feature bit: submit each for real and
 * see whether the kernel refuses its ioprio flag with -EINVAL.  The accept
 * waits on a listening AF_UNIX socket nobody connects to; the recv waits on
 * one end of a socketpair nobody writes to (or fails with -ENOBUFS, from a
 * buffer group that does not exist: also an "I understood" answer).  Both
 * are then cancelled. */
static void probe_multishot(piocp_uring *ring, piocp_uring_features *out)
{
    int lfd = -1, sp[2] = {-1, -1};
    if (out->op_accept && out->op_async_cancel) {
        lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        struct sockaddr_un sun = {.sun_family = AF_UNIX};
        /* Binding just the family autobinds an abstract address. */
        if (lfd >= 0 && (bind(lfd, (struct sockaddr *)&sun, sizeof(sa_family_t)) < 0 ||
                         listen(lfd, 1) < 0)) {
            close(lfd);
            lfd = -1;
        }
    }
    if (out->op_recv && out->op_async_cancel &&
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sp) < 0)
        sp[0] = sp[1] = -1;

    /* user_data: 1 accept, 2 recv, 3/4 their cancels. */
    uint64_t want[4];
    int res[4] = {0}, n = 0;
    bool done[4] = {false};
    struct io_uring_sqe *sqe;
    if (lfd >= 0 && (sqe = piocp_uring_get_sqe(ring))) {
        piocp_uring_prep_accept_multishot(sqe, lfd, SOCK_CLOEXEC, 1);
        want[n++] = 1;
    }
    if (sp[0] >= 0 && (sqe = piocp_uring_get_sqe(ring))) {
        piocp_uring_prep_recv_multishot(sqe, sp[0], 0xfffe, 0, 2);
        want[n++] = 2;
    }
    /* Submitted on their own, so that a refused one cannot stop the cancels
     * from being consumed on kernels without SUBMIT_ALL. */
    int submitted = 0;
    while (submitted < n) { /* a refused SQE still counts as consumed */
        int rc = piocp_uring_submit(ring);
        if (rc <= 0)
            break;
        submitted += rc;
    }
    if (n > 0 && submitted == n) {
        int ops = n;
        for (int k = 0; k < ops; k++) {
            if ((sqe = piocp_uring_get_sqe(ring))) {
                piocp_uring_prep_cancel(sqe, want[k], 0, want[k] + 2);
                want[n++] = want[k] + 2;
            }
        }
        if (probe_collect(ring, want, res, done, n) == 0) {
            for (int k = 0; k < n; k++) {
                if (want[k] == 1)
                    out->accept_multishot = res[k] != -EINVAL;
                /* Kernels before 5.19 ignored ioprio on recv, so a refusal
                 * proves nothing there: also require a 6.0 kernel (the
                 * release that added multishot recv, SEND_ZC and
                 * SINGLE_ISSUER). */
                if (want[k] == 2)
                    out->recv_multishot =
                        res[k] != -EINVAL && out->buf_ring && (out->op_send_zc || out->single_issuer);
            }
        }
    }
    if (lfd >= 0)
        close(lfd);
    if (sp[0] >= 0) {
        close(sp[0]);
        close(sp[1]);
    }
}

static void probe_ops(piocp_uring *ring, piocp_uring_features *out)
{
    enum { NOPS = 256 };
    struct io_uring_probe *pr =
        calloc(1, sizeof *pr + NOPS * sizeof(struct io_uring_probe_op));
    if (!pr)
        return;
    /* Pre-5.6 kernels have no probe: every op_* stays false. */
    if (sys_register(ring->fd, IORING_REGISTER_PROBE, pr, NOPS) >= 0) {
#define OP(op) ((op) < pr->ops_len && (pr->ops[(op)].flags & IO_URING_OP_SUPPORTED))
        out->op_accept = OP(IORING_OP_ACCEPT);
        out->op_recv = OP(IORING_OP_RECV);
        out->op_send = OP(IORING_OP_SEND);
        out->op_async_cancel = OP(IORING_OP_ASYNC_CANCEL);
        out->op_msg_ring = OP(IORING_OP_MSG_RING);
        out->op_poll_add = OP(IORING_OP_POLL_ADD);
        out->op_send_zc = OP(PIOCP_OP_SEND_ZC);
#undef OP
    }
    free(pr);
}

int piocp_uring_probe(piocp_uring_features *out)
{
    memset(out, 0, sizeof *out);
    out->disabled_sysctl = read_disabled_sysctl();
    piocp_uring ring;
    int rc = piocp_uring_init(&ring, 8, 0);
    if (rc < 0) {
        out->setup_error = rc;
        return rc;
    }
    out->available = true;
    out->features = ring.features;
    out->setup_flags = ring.setup_flags;
    out->single_issuer = (ring.setup_flags & IORING_SETUP_SINGLE_ISSUER) != 0;
    out->coop_taskrun = (ring.setup_flags & IORING_SETUP_COOP_TASKRUN) != 0;
    out->submit_all = (ring.setup_flags & IORING_SETUP_SUBMIT_ALL) != 0;
    out->ext_arg = (ring.features & IORING_FEAT_EXT_ARG) != 0;
    probe_ops(&ring, out);

    piocp_uring_buf_ring br;
    if (piocp_uring_buf_ring_setup(&ring, 0xffff, 1, 64, &br) == 0) {
        out->buf_ring = true;
        piocp_uring_buf_ring_free(&ring, &br);
    }
    probe_multishot(&ring, out);
    piocp_uring_exit(&ring);
    return 0;
}

#else /* !PIOCP_URING_SUPPORTED: built without usable io_uring headers */

int piocp_uring_init(piocp_uring *ring, unsigned entries, unsigned flags)
{
    (void)entries;
    (void)flags;
    memset(ring, 0, sizeof *ring);
    ring->fd = -1;
    return -ENOSYS;
}

void piocp_uring_exit(piocp_uring *ring)
{
    memset(ring, 0, sizeof *ring);
    ring->fd = -1;
}

struct io_uring_sqe *piocp_uring_get_sqe(piocp_uring *ring)
{
    (void)ring;
    return NULL;
}

int piocp_uring_submit(piocp_uring *ring)
{
    (void)ring;
    return -ENOSYS;
}

int piocp_uring_submit_and_wait(piocp_uring *ring, unsigned wait_nr)
{
    (void)ring;
    (void)wait_nr;
    return -ENOSYS;
}

int piocp_uring_submit_and_wait_timeout(piocp_uring *ring, unsigned wait_nr, int timeout_ms)
{
    (void)ring;
    (void)wait_nr;
    (void)timeout_ms;
    return -ENOSYS;
}

int piocp_uring_peek_batch(piocp_uring *ring, struct io_uring_cqe **cqes, unsigned max)
{
    (void)ring;
    (void)cqes;
    (void)max;
    return 0;
}

void piocp_uring_cq_advance(piocp_uring *ring, unsigned n)
{
    (void)ring;
    (void)n;
}

unsigned piocp_uring_cq_ready(const piocp_uring *ring)
{
    (void)ring;
    return 0;
}

unsigned piocp_uring_cq_dropped(const piocp_uring *ring)
{
    (void)ring;
    return 0;
}

int piocp_uring_buf_ring_setup(piocp_uring *ring, unsigned short bgid, unsigned entries,
                               size_t buf_size, piocp_uring_buf_ring *out)
{
    (void)ring;
    (void)bgid;
    (void)entries;
    (void)buf_size;
    memset(out, 0, sizeof *out);
    return -ENOSYS;
}

int piocp_uring_buf_ring_free(piocp_uring *ring, piocp_uring_buf_ring *br)
{
    (void)ring;
    memset(br, 0, sizeof *br);
    return 0;
}

int piocp_uring_probe(piocp_uring_features *out)
{
    memset(out, 0, sizeof *out);
    out->disabled_sysctl = read_disabled_sysctl();
    out->setup_error = -ENOSYS;
    return -ENOSYS;
}

#endif /* PIOCP_URING_SUPPORTED */

/* --------------------------------------------------------- describe -- */

static const char *unavailable_reason(const piocp_uring_features *f)
{
    if (!PIOCP_URING_SUPPORTED)
        return "this build has no io_uring support (compiled without <linux/io_uring.h> >= 5.19)";
    switch (-f->setup_error) {
    case EPERM:
    case EACCES:
        if (f->disabled_sysctl == 2)
            return "disabled by the sysctl kernel.io_uring_disabled=2";
        if (f->disabled_sysctl == 1)
            return "restricted by kernel.io_uring_disabled=1 to CAP_SYS_ADMIN and "
                   "kernel.io_uring_group";
        return "refused by a seccomp filter (e.g. Docker's or another container runtime's "
               "default profile)";
    case ENOSYS:
        return "kernel without io_uring (older than 5.1 or CONFIG_IO_URING=n), or the "
               "system call is filtered";
    case ENOMEM:
        return "cannot allocate the rings (RLIMIT_MEMLOCK too low on kernels before 5.12?)";
    case EMFILE:
    case ENFILE:
        return "out of file descriptors";
    default:
        return "io_uring_setup failed";
    }
}

const char *piocp_uring_describe(const piocp_uring_features *f, char *buf, size_t len)
{
    if (len == 0)
        return buf;
    if (!f->available) {
        const char *name = errno_name(-f->setup_error);
        char num[24];
        if (!name) {
            snprintf(num, sizeof num, "errno %d", -f->setup_error);
            name = num;
        }
        snprintf(buf, len, "io_uring: unavailable (%s: %s)", name, unavailable_reason(f));
        return buf;
    }
    struct {
        bool have;
        const char *name;
    } ops[] = {
        {f->op_accept, "accept"},   {f->op_recv, "recv"},
        {f->op_send, "send"},       {f->op_async_cancel, "async_cancel"},
        {f->op_msg_ring, "msg_ring"}, {f->op_poll_add, "poll_add"},
    };
    char missing[160] = "";
    size_t m = 0;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        if (!ops[i].have && m < sizeof missing) {
            int w = snprintf(missing + m, sizeof missing - m, " %s", ops[i].name);
            if (w > 0)
                m += (size_t)w;
        }
    }
    snprintf(buf, len,
             "io_uring: available (features 0x%x; setup%s%s%s%s; multishot accept %s, "
             "multishot recv %s, buffer rings %s, timed waits %s, send_zc %s; %s%s)",
             f->features, f->single_issuer ? " single_issuer" : "",
             f->coop_taskrun ? " coop_taskrun" : "", f->submit_all ? " submit_all" : "",
             f->single_issuer || f->coop_taskrun || f->submit_all ? "" : " basic",
             f->accept_multishot ? "yes" : "no", f->recv_multishot ? "yes" : "no",
             f->buf_ring ? "yes" : "no", f->ext_arg ? "yes" : "no",
             f->op_send_zc ? "yes" : "no",
             m ? "missing ops:" : "all needed ops", m ? missing : "");
    return buf;
}
