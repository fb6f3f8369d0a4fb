/*
 * uring.h - a minimal io_uring wrapper: raw io_uring_setup/enter/register
 * system calls and the kernel ABI of <linux/io_uring.h>, no liburing.
 *
 * Everything returns 0 (or a count) on success and -errno on failure; errno
 * is never meant to be read by the caller.  A ring is used by one thread:
 * it is created with IORING_SETUP_SINGLE_ISSUER where the kernel has it,
 * which binds it to the *creating* thread (submitting or registering from
 * another thread fails with -EEXIST), so create it in the thread that will
 * drive it.  Other threads wake it with IORING_OP_MSG_RING from their own
 * ring (piocp_uring_prep_msg_ring) or through an eventfd the ring polls.
 *
 * Builds without io_uring: when <linux/io_uring.h> is missing or older than
 * 5.19 (e.g. manylinux2014's 3.10 headers), or with -DPIOCP_NO_IO_URING,
 * PIOCP_URING_SUPPORTED is 0, whatever would enter the kernel fails with
 * -ENOSYS (the probe reports "unavailable") and the inline SQE/CQE helpers
 * are not defined, so the wheel still builds everywhere.
 */
#ifndef PYIOCP_URING_H
#define PYIOCP_URING_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#if !defined(PIOCP_NO_IO_URING) && defined(__linux__) && defined(__has_include)
#if __has_include(<linux/io_uring.h>)
#include <linux/io_uring.h>
#endif
#endif

/* The io_uring system call numbers are 425..427 on every architecture
 * except alpha, ia64 and mips; older C libraries lack the names. */
#if !defined(__NR_io_uring_setup) && !defined(__alpha__) && !defined(__ia64__) && \
    !defined(__mips__)
#define __NR_io_uring_setup 425
#define __NR_io_uring_enter 426
#define __NR_io_uring_register 427
#endif

/* IORING_ACCEPT_MULTISHOT arrived with the 5.19 headers, together with
 * provided-buffer rings, COOP_TASKRUN and cancel-by-fd: the oldest ABI this
 * wrapper is written against. */
#if defined(IORING_ACCEPT_MULTISHOT) && defined(__NR_io_uring_setup) && \
    !defined(PIOCP_NO_IO_URING)
#define PIOCP_URING_SUPPORTED 1
/* Added in 6.0; defined here so 5.19 headers suffice. */
#ifndef IORING_SETUP_SINGLE_ISSUER
#define IORING_SETUP_SINGLE_ISSUER (1U << 12)
#endif
#ifndef IORING_RECV_MULTISHOT
#define IORING_RECV_MULTISHOT (1U << 1)
#endif
#else
#define PIOCP_URING_SUPPORTED 0
#endif

struct io_uring_sqe;
struct io_uring_cqe;
struct io_uring_buf_ring;
struct __kernel_timespec;

typedef struct piocp_uring {
    int fd;                 /* the ring, -1 when not initialised */
    unsigned setup_flags;   /* IORING_SETUP_* the kernel accepted */
    unsigned features;      /* IORING_FEAT_* from io_uring_params */
    struct {
        unsigned *khead, *ktail, *kflags, *kdropped, *array;
        unsigned mask, entries;
        unsigned sqe_tail;  /* next SQE to hand out; published at submit */
        struct io_uring_sqe *sqes;
    } sq;
    struct {
        unsigned *khead, *ktail, *koverflow;
        unsigned mask, entries;
        struct io_uring_cqe *cqes;
    } cq;
    void *sq_map, *cq_map, *sqe_map; /* cq_map == sq_map with SINGLE_MMAP */
    size_t sq_map_len, cq_map_len, sqe_map_len;
    /* CQ overflow episodes seen: times the kernel had to park completions
     * in its overflow list because the CQ ring was full (IORING_SQ_CQ_OVERFLOW
     * found set after having been clear).  Nothing is lost (FEAT_NODROP):
     * peek/submit flush the list back into the ring as it drains. */
    unsigned long long overflow_events;
    bool cq_overflowing;
} piocp_uring;

/* Creates a ring of `entries` SQEs (rounded up to a power of two by the
 * kernel) and a CQ four times larger, with SUBMIT_ALL, COOP_TASKRUN +
 * TASKRUN_FLAG and SINGLE_ISSUER where the kernel accepts them (each is
 * dropped on EINVAL).  `flags` are extra IORING_SETUP_* flags; SQPOLL,
 * IOPOLL, SQE128 and CQE32 are refused with -EINVAL. */
int piocp_uring_init(piocp_uring *ring, unsigned entries, unsigned flags);
/* Unmaps and closes; pending requests are cancelled by the kernel.  Safe
 * on a zeroed or already-exited ring. */
void piocp_uring_exit(piocp_uring *ring);

/* A cleared SQE slot is not guaranteed: always fill it with a prep helper.
 * NULL when the SQ ring is full: submit, then retry. */
struct io_uring_sqe *piocp_uring_get_sqe(piocp_uring *ring);
/* Submits queued SQEs without waiting.  Returns how many the kernel took
 * (SQEs it did not take stay queued for the next call), or -errno:
 * -EBUSY/-EAGAIN mean "reap completions, then submit again". */
int piocp_uring_submit(piocp_uring *ring);
/* Submits and waits until at least `wait_nr` CQEs are ready.  Retries on
 * EINTR.  On EBUSY/EAGAIN (CQ full or overflowing, kernel short of memory)
 * returns 0 if completions are ready to reap (the unsubmitted SQEs stay
 * queued: reap, then call again), else the error.  -EBADR: the kernel had to
 * drop completions (out of memory even for its overflow list). */
int piocp_uring_submit_and_wait(piocp_uring *ring, unsigned wait_nr);
/* The same, but the wait ends after `timeout_ms` even if fewer than
 * `wait_nr` CQEs are ready: a timeout is not an error, the call returns as
 * if the wait had succeeded (0 when it submitted nothing) and the caller
 * finds fewer CQEs, or none, to reap.  `timeout_ms` < 0 waits without a
 * limit (piocp_uring_submit_and_wait); 0 does not wait at all (submits and
 * flushes overflowed CQEs and pending task work only).  A positive timeout
 * needs IORING_FEAT_EXT_ARG (5.11+): -EOPNOTSUPP without it, before
 * anything is submitted.  The return value counts SQEs submitted, as for
 * piocp_uring_submit_and_wait, so it can be > 0 after a timeout. */
int piocp_uring_submit_and_wait_timeout(piocp_uring *ring, unsigned wait_nr, int timeout_ms);
/* Stores up to `max` pointers to ready CQEs (oldest first) without
 * consuming them; returns the count.  When none are ready but the kernel
 * holds overflowed completions or pending task work, flushes them first.
 * Release the CQEs with piocp_uring_cq_advance() once read. */
int piocp_uring_peek_batch(piocp_uring *ring, struct io_uring_cqe **cqes, unsigned max);
void piocp_uring_cq_advance(piocp_uring *ring, unsigned n);
unsigned piocp_uring_cq_ready(const piocp_uring *ring);
/* Completions the kernel lost (its CQ overflow counter; 0 with NODROP
 * unless it ran out of memory). */
unsigned piocp_uring_cq_dropped(const piocp_uring *ring);

/* --- provided-buffer rings (IORING_REGISTER_PBUF_RING, 5.19+) ------------ */
typedef struct piocp_uring_buf_ring {
    struct io_uring_buf_ring *br; /* shared with the kernel */
    unsigned char *bufs;          /* entries * buf_size bytes, buffer b at b * buf_size */
    size_t buf_size;
    unsigned entries, mask;
    unsigned short bgid;
    unsigned short tail;          /* local tail, published by _advance */
    void *map;
    size_t map_len;
} piocp_uring_buf_ring;

/* Allocates (mmap, page-aligned) and registers a ring of `entries` (a power
 * of two, at most 32768) buffers of `buf_size` bytes as group `bgid`, with
 * every buffer handed to the kernel.  -EINVAL on kernels without PBUF_RING
 * (or bad arguments), -ENOSYS without io_uring. */
int piocp_uring_buf_ring_setup(piocp_uring *ring, unsigned short bgid, unsigned entries,
                               size_t buf_size, piocp_uring_buf_ring *out);
/* Unregisters and unmaps; requests still selecting from it then fail
 * with -ENOBUFS. */
int piocp_uring_buf_ring_free(piocp_uring *ring, piocp_uring_buf_ring *br);

/* --- helpers that only fill or read ring memory ------------------------- */
/* Like liburing's, these are static inline: a prep helper just fills SQE
 * fields, and a call per operation into another object file would cost
 * more than the stores (the same goes for reading a CQE's flags and for
 * handing a buffer back).  They use the kernel's structures, so they exist
 * only where io_uring does: a build without it never gets an SQE, a CQE or
 * a buffer ring to give them. */
#if PIOCP_URING_SUPPORTED

/* The kernel's cap on one transfer (MAX_RW_COUNT): longer lengths are
 * clamped, and the caller sees a short count as it would from send(2). */
#define PIOCP_URING_MAX_RW_COUNT 0x7ffff000u

static inline unsigned piocp_uring_clamp_len(size_t len)
{
    return len > PIOCP_URING_MAX_RW_COUNT ? PIOCP_URING_MAX_RW_COUNT : (unsigned)len;
}

/* The provided-buffer id of a CQE, or -1 if it carries none. */
static inline int piocp_uring_cqe_buffer_id(const struct io_uring_cqe *cqe)
{
    return cqe->flags & IORING_CQE_F_BUFFER ? (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT) : -1;
}

/* Whether the request behind a CQE stays armed (multishot). */
static inline bool piocp_uring_cqe_more(const struct io_uring_cqe *cqe)
{
    return (cqe->flags & IORING_CQE_F_MORE) != 0;
}

/* prep helpers: each clears the SQE, then sets its fields. */
static inline void piocp_uring_prep_rw(struct io_uring_sqe *sqe, unsigned char op, int fd,
                                       uint64_t addr, unsigned len, uint64_t off,
                                       uint64_t user_data)
{
    memset(sqe, 0, sizeof *sqe);
    sqe->opcode = op;
    sqe->fd = fd;
    sqe->addr = addr;
    sqe->len = len;
    sqe->off = off;
    sqe->user_data = user_data;
}

/* Completes at once with res 0: a completion that involves no descriptor
 * (the tests use it to fill and overflow the CQ). */
static inline void piocp_uring_prep_nop(struct io_uring_sqe *sqe, uint64_t user_data)
{
    piocp_uring_prep_rw(sqe, IORING_OP_NOP, -1, 0, 0, 0, user_data);
}

/* `addr`/`addrlen` may be NULL; `flags` are accept4() flags. */
static inline void piocp_uring_prep_accept(struct io_uring_sqe *sqe, int fd,
                                           struct sockaddr *addr, socklen_t *addrlen, int flags,
                                           uint64_t user_data)
{
    piocp_uring_prep_rw(sqe, IORING_OP_ACCEPT, fd, (uintptr_t)addr, 0, (uintptr_t)addrlen,
                        user_data);
    sqe->accept_flags = (unsigned)flags;
}

/* One CQE per connection (IORING_CQE_F_MORE while armed). */
static inline void piocp_uring_prep_accept_multishot(struct io_uring_sqe *sqe, int fd, int flags,
                                                     uint64_t user_data)
{
    piocp_uring_prep_accept(sqe, fd, NULL, NULL, flags, user_data);
    sqe->ioprio = IORING_ACCEPT_MULTISHOT;
}

static inline void piocp_uring_prep_recv(struct io_uring_sqe *sqe, int fd, void *buf, size_t len,
                                         int flags, uint64_t user_data)
{
    piocp_uring_prep_rw(sqe, IORING_OP_RECV, fd, (uintptr_t)buf, piocp_uring_clamp_len(len), 0,
                        user_data);
    sqe->msg_flags = (unsigned)flags;
}

/* Receive into a buffer picked from provided-buffer group `bgid`; `len` 0
 * means the whole buffer. */
static inline void piocp_uring_prep_recv_select(struct io_uring_sqe *sqe, int fd, size_t len,
                                                unsigned short bgid, int flags,
                                                uint64_t user_data)
{
    piocp_uring_prep_recv(sqe, fd, NULL, len, flags, user_data);
    sqe->flags = IOSQE_BUFFER_SELECT;
    sqe->buf_group = bgid;
}

/* One CQE per received chunk, each in a buffer from group `bgid`. */
static inline void piocp_uring_prep_recv_multishot(struct io_uring_sqe *sqe, int fd,
                                                   unsigned short bgid, int flags,
                                                   uint64_t user_data)
{
    piocp_uring_prep_recv_select(sqe, fd, 0, bgid, flags, user_data);
    sqe->ioprio = IORING_RECV_MULTISHOT;
}

/* `flags` e.g. MSG_NOSIGNAL | MSG_WAITALL. */
static inline void piocp_uring_prep_send(struct io_uring_sqe *sqe, int fd, const void *buf,
                                         size_t len, int flags, uint64_t user_data)
{
    piocp_uring_prep_rw(sqe, IORING_OP_SEND, fd, (uintptr_t)buf, piocp_uring_clamp_len(len), 0,
                        user_data);
    sqe->msg_flags = (unsigned)flags;
}

/* Cancels the request submitted with `target` as its user_data (`flags`:
 * IORING_ASYNC_CANCEL_* such as ALL; 0 for the first match). */
static inline void piocp_uring_prep_cancel(struct io_uring_sqe *sqe, uint64_t target,
                                           unsigned flags, uint64_t user_data)
{
    piocp_uring_prep_rw(sqe, IORING_OP_ASYNC_CANCEL, -1, target, 0, 0, user_data);
    sqe->cancel_flags = flags;
}

/* Cancels every request on descriptor `fd` (CANCEL_FD | CANCEL_ALL); the
 * CQE's res is how many were found. */
static inline void piocp_uring_prep_cancel_fd(struct io_uring_sqe *sqe, int fd,
                                              uint64_t user_data)
{
    piocp_uring_prep_rw(sqe, IORING_OP_ASYNC_CANCEL, fd, 0, 0, 0, user_data);
    sqe->cancel_flags = IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL;
}

/* Posts a CQE {user_data = target_data, res = res} on the ring `ring_fd`. */
static inline void piocp_uring_prep_msg_ring(struct io_uring_sqe *sqe, int ring_fd, unsigned res,
                                             uint64_t target_data, uint64_t user_data)
{
    /* addr 0 is IORING_MSG_DATA (named only since the 6.0 headers): len
     * becomes the target CQE's res, off its user_data. */
    piocp_uring_prep_rw(sqe, IORING_OP_MSG_RING, ring_fd, 0, res, target_data, user_data);
}

/* `events` are poll(2) bits; res is the ready mask. */
static inline void piocp_uring_prep_poll_add(struct io_uring_sqe *sqe, int fd, unsigned events,
                                             uint64_t user_data)
{
    piocp_uring_prep_rw(sqe, IORING_OP_POLL_ADD, fd, 0, 0, 0, user_data);
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    events = (events << 16) | (events >> 16); /* the kernel swaps 16-bit halves back */
#endif
    sqe->poll32_events = events;
}

/* One CQE per readiness edge (IORING_CQE_F_MORE while armed). */
static inline void piocp_uring_prep_poll_multishot(struct io_uring_sqe *sqe, int fd,
                                                   unsigned events, uint64_t user_data)
{
    piocp_uring_prep_poll_add(sqe, fd, events, user_data);
    sqe->len = IORING_POLL_ADD_MULTI;
}

/* Completes with -ETIME after `ts` (which must stay valid until submitted),
 * or with 0 once `count` other completions happened (0: pure timer).
 * `flags`: IORING_TIMEOUT_*. */
static inline void piocp_uring_prep_timeout(struct io_uring_sqe *sqe,
                                            struct __kernel_timespec *ts, unsigned count,
                                            unsigned flags, uint64_t user_data)
{
    piocp_uring_prep_rw(sqe, IORING_OP_TIMEOUT, -1, (uintptr_t)ts, 1, count, user_data);
    sqe->timeout_flags = flags;
}

/* Provided-buffer rings: queues buffer `bid` at position tail + `offset`;
 * visible to the kernel after piocp_uring_buf_ring_advance(). */
static inline void piocp_uring_buf_ring_add(piocp_uring_buf_ring *br, unsigned short bid,
                                            unsigned offset)
{
    struct io_uring_buf *b = &br->br->bufs[(br->tail + offset) & br->mask];
    b->addr = (uintptr_t)(br->bufs + (size_t)bid * br->buf_size);
    b->len = (uint32_t)br->buf_size;
    b->bid = bid;
}

static inline void piocp_uring_buf_ring_advance(piocp_uring_buf_ring *br, unsigned count)
{
    br->tail = (unsigned short)(br->tail + count);
    /* The entries written by _add must be visible before the new tail. */
    __atomic_store_n(&br->br->tail, br->tail, __ATOMIC_RELEASE);
}

/* Gives a consumed buffer back to the kernel (add + advance by one). */
static inline void piocp_uring_buf_ring_recycle(piocp_uring_buf_ring *br, unsigned short bid)
{
    piocp_uring_buf_ring_add(br, bid, 0);
    piocp_uring_buf_ring_advance(br, 1);
}

static inline void *piocp_uring_buf_ring_buf(const piocp_uring_buf_ring *br, unsigned short bid)
{
    return br->bufs + (size_t)(bid & br->mask) * br->buf_size;
}

#endif /* PIOCP_URING_SUPPORTED */

/* --- feature probe ------------------------------------------------------- */
typedef struct piocp_uring_features {
    bool available;        /* a ring could be created and mapped */
    int setup_error;       /* -errno from io_uring_setup/mmap when not available */
    unsigned features;     /* IORING_FEAT_* */
    bool op_accept, op_recv, op_send, op_async_cancel, op_msg_ring, op_poll_add, op_send_zc;
    bool accept_multishot, recv_multishot, buf_ring, single_issuer, coop_taskrun, submit_all;
    /* IORING_FEAT_EXT_ARG: waits with a timeout
     * (piocp_uring_submit_and_wait_timeout) */
    bool ext_arg;
    /* Not in the original sketch: the kernel.io_uring_disabled sysctl (-1
     * when the file does not exist) and the setup flags accepted. */
    int disabled_sysctl;
    unsigned setup_flags;
} piocp_uring_features;

/* Fills `out`; returns 0 if io_uring is available, else out->setup_error.
 * Creates (and destroys) a small ring, a socketpair and a listening AF_UNIX
 * socket; never blocks for more than a second. */
int piocp_uring_probe(piocp_uring_features *out);
/* One line for `pyiocp info`; returns `buf`. */
const char *piocp_uring_describe(const piocp_uring_features *f, char *buf, size_t len);

#endif
