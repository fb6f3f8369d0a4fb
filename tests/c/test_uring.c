/*
 * test_uring.c - engine/backends/uring.c, the raw io_uring wrapper, against the
 * running kernel.  `test_uring NAME` runs one case (ctest runs each in its
 * own process); `test_uring list` names them.  A case exits 77 (ctest:
 * skipped) when the kernel refuses io_uring altogether; every case checks
 * that no descriptor leaked.
 *
 * Built with -DPIOCP_NO_IO_URING (as on a system without
 * <linux/io_uring.h>), only the `stub` case exists.
 */
#include "test_util.h"
#include "backends/uring.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#if PIOCP_URING_SUPPORTED

#include <linux/filter.h>
#include <linux/seccomp.h>

#define SKIP 77
#define UD(kind, idx) (((uint64_t)(kind) << 32) | (uint32_t)(idx))
#define UD_KIND(ud) ((unsigned)((ud) >> 32))
#define UD_IDX(ud) ((unsigned)((ud) & 0xffffffffu))

typedef struct cqe_copy {
    uint64_t user_data;
    int res;
    unsigned flags;
} cqe_copy;

static void watchdog(void)
{
    alarm(30); /* a hang fails the case quickly (SIGALRM terminates) */
}

static void ring_init(piocp_uring *ring, unsigned entries)
{
    int rc = piocp_uring_init(ring, entries, 0);
    if (rc == -ENOSYS || rc == -EPERM) {
        printf("skip: io_uring_setup refused (%d)\n", rc);
        exit(SKIP);
    }
    CHECK(rc == 0);
}

static struct io_uring_sqe *sqe_of(piocp_uring *ring)
{
    struct io_uring_sqe *sqe = piocp_uring_get_sqe(ring);
    if (!sqe) {
        CHECK(piocp_uring_submit(ring) >= 0);
        sqe = piocp_uring_get_sqe(ring);
    }
    CHECK(sqe != NULL);
    return sqe;
}

/* The next completion, waiting (and submitting what is queued) as needed. */
static cqe_copy next_cqe(piocp_uring *ring)
{
    for (;;) {
        struct io_uring_cqe *c;
        if (piocp_uring_peek_batch(ring, &c, 1) == 1) {
            cqe_copy out = {c->user_data, c->res, c->flags};
            piocp_uring_cq_advance(ring, 1);
            return out;
        }
        int rc = piocp_uring_submit_and_wait(ring, 1);
        CHECK(rc >= 0);
    }
}

static void collect(piocp_uring *ring, cqe_copy *out, int n)
{
    for (int i = 0; i < n; i++)
        out[i] = next_cqe(ring);
}

static const cqe_copy *find(const cqe_copy *c, int n, uint64_t ud)
{
    const cqe_copy *hit = NULL;
    for (int i = 0; i < n; i++) {
        if (c[i].user_data == ud) {
            CHECK(hit == NULL); /* exactly once */
            hit = &c[i];
        }
    }
    CHECK(hit != NULL);
    return hit;
}

static int kernel_at_least(int major, int minor)
{
    struct utsname u;
    int ma = 0, mi = 0;
    if (uname(&u) != 0 || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
        return 0;
    return ma > major || (ma == major && mi >= minor);
}

/* ------------------------------------------------------------- probe -- */

static void test_probe(void)
{
    int fds = count_fds();
    piocp_uring_features f;
    int rc = piocp_uring_probe(&f);
    char line[512];
    printf("%s\n", piocp_uring_describe(&f, line, sizeof line));
    printf("setup_error=%d features=0x%x setup_flags=0x%x io_uring_disabled=%d\n",
           f.setup_error, f.features, f.setup_flags, f.disabled_sysctl);
    CHECK(count_fds() == fds);
    CHECK(strncmp(line, "io_uring: ", 10) == 0);
    CHECK(!f.available || strstr(line, f.ext_arg ? "timed waits yes" : "timed waits no"));

    /* describe() truncates safely. */
    char tiny[8];
    memset(tiny, 'x', sizeof tiny);
    piocp_uring_describe(&f, tiny, sizeof tiny);
    CHECK(strlen(tiny) == sizeof tiny - 1);
    piocp_uring_features refused = {.setup_error = -EPERM, .disabled_sysctl = 2};
    CHECK(strstr(piocp_uring_describe(&refused, line, sizeof line), "io_uring_disabled=2"));
    refused.disabled_sysctl = 0;
    CHECK(strstr(piocp_uring_describe(&refused, line, sizeof line), "seccomp"));
    refused.setup_error = -ENOSYS;
    CHECK(strstr(piocp_uring_describe(&refused, line, sizeof line), "ENOSYS"));

    if (!f.available) {
        CHECK(rc < 0 && rc == f.setup_error);
        printf("skip: io_uring unavailable here\n");
        exit(SKIP);
    }
    CHECK(rc == 0 && f.setup_error == 0);
    CHECK(f.features & IORING_FEAT_SINGLE_MMAP);
    CHECK(f.features & IORING_FEAT_NODROP);
    CHECK(f.ext_arg == ((f.features & IORING_FEAT_EXT_ARG) != 0));
    if (kernel_at_least(6, 1)) { /* everything this wrapper uses exists by 6.1 */
        CHECK(f.op_accept && f.op_recv && f.op_send && f.op_async_cancel);
        CHECK(f.op_msg_ring && f.op_poll_add && f.op_send_zc);
        CHECK(f.accept_multishot && f.recv_multishot && f.buf_ring);
        CHECK(f.single_issuer && f.coop_taskrun && f.submit_all && f.ext_arg);
    }
}

/* ------------------------------------------------------------ basics -- */

static void test_basics(void)
{
    watchdog();
    int fds = count_fds();
    piocp_uring ring;
    CHECK(piocp_uring_init(&ring, 0, 0) == -EINVAL);
    CHECK(ring.fd == -1);
    CHECK(piocp_uring_init(&ring, 8, IORING_SETUP_SQPOLL) == -EINVAL);
    piocp_uring_exit(&ring); /* harmless on a ring that never opened */
    CHECK(piocp_uring_submit(&ring) == -EBADF);

    ring_init(&ring, 4);
    CHECK(ring.fd >= 0);
    CHECK(ring.sq.entries == 4);
    CHECK(ring.cq.entries == 16); /* CQSIZE: four times the SQ */
    CHECK(ring.setup_flags & IORING_SETUP_CQSIZE);
    struct io_uring_cqe *cq[4];
    CHECK(piocp_uring_peek_batch(&ring, cq, 4) == 0);
    CHECK(piocp_uring_submit(&ring) == 0); /* nothing queued */

    /* The SQ ring holds four SQEs, then get_sqe reports it full. */
    for (int i = 0; i < 4; i++)
        piocp_uring_prep_nop(piocp_uring_get_sqe(&ring), 100 + (uint64_t)i);
    CHECK(piocp_uring_get_sqe(&ring) == NULL);
    CHECK(piocp_uring_submit(&ring) == 4);
    piocp_uring_prep_nop(piocp_uring_get_sqe(&ring), 104);
    CHECK(piocp_uring_submit_and_wait(&ring, 5) == 1);
    CHECK(piocp_uring_cq_ready(&ring) == 5);
    CHECK(piocp_uring_peek_batch(&ring, cq, 4) == 4); /* bounded by max */
    for (int i = 0; i < 4; i++) {
        CHECK(cq[i]->user_data == 100 + (uint64_t)i);
        CHECK(cq[i]->res == 0);
        CHECK(piocp_uring_cqe_buffer_id(cq[i]) == -1 && !piocp_uring_cqe_more(cq[i]));
    }
    piocp_uring_cq_advance(&ring, 4);
    cqe_copy last = next_cqe(&ring);
    CHECK(last.user_data == 104 && last.res == 0);

    /* A pure timer completes with -ETIME. */
    struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 20 * 1000000};
    long long t0 = now_ms();
    piocp_uring_prep_timeout(sqe_of(&ring), &ts, 0, 0, 7);
    cqe_copy t = next_cqe(&ring);
    CHECK(t.user_data == 7 && t.res == -ETIME);
    CHECK(now_ms() - t0 >= 15);
    /* A timeout with a count completes with 0 once that many others did. */
    struct __kernel_timespec long_ts = {.tv_sec = 10};
    piocp_uring_prep_timeout(sqe_of(&ring), &long_ts, 1, 0, 8);
    piocp_uring_prep_nop(sqe_of(&ring), 9);
    cqe_copy c[2];
    collect(&ring, c, 2);
    CHECK(find(c, 2, 9)->res == 0);
    CHECK(find(c, 2, 8)->res == 0);

    CHECK(piocp_uring_cq_dropped(&ring) == 0);
    CHECK(ring.overflow_events == 0);
    piocp_uring_exit(&ring);
    piocp_uring_exit(&ring);
    CHECK(count_fds() == fds);
}

/* -------------------------------------------------------------- echo -- */

enum { K_ACCEPT = 1, K_RECV, K_SEND, K_CANCEL };

static void test_echo(void)
{
    watchdog();
    int fds = count_fds();
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    CHECK(lfd >= 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    CHECK(bind(lfd, (struct sockaddr *)&addr, sizeof addr) == 0);
    CHECK(listen(lfd, 16) == 0);
    socklen_t alen = sizeof addr;
    CHECK(getsockname(lfd, (struct sockaddr *)&addr, &alen) == 0);
    int port = ntohs(addr.sin_port);

    piocp_uring ring;
    ring_init(&ring, 32);
    piocp_uring_prep_accept_multishot(sqe_of(&ring), lfd, SOCK_CLOEXEC, UD(K_ACCEPT, 0));
    CHECK(piocp_uring_submit(&ring) == 1);

    enum { N = 3 };
    int clients[N];
    char msgs[N][32];
    size_t total = 0;
    for (int i = 0; i < N; i++) {
        clients[i] = connect_loopback(port);
        snprintf(msgs[i], sizeof msgs[i], "hello from client %d", i);
        CHECK(write_all(clients[i], msgs[i], strlen(msgs[i])) == 0);
        total += strlen(msgs[i]);
    }

    struct {
        int fd;
        char buf[256];
        int pending_send;
    } conns[N];
    int accepted = 0;
    size_t echoed = 0;
    while (echoed < total) {
        cqe_copy c = next_cqe(&ring);
        unsigned i = UD_IDX(c.user_data);
        switch (UD_KIND(c.user_data)) {
        case K_ACCEPT:
            CHECK(c.res >= 0);
            CHECK(c.flags & IORING_CQE_F_MORE); /* still armed */
            CHECK(accepted < N);
            conns[accepted].fd = c.res;
            CHECK(fcntl(c.res, F_GETFD) & FD_CLOEXEC); /* accept4 flags applied */
            piocp_uring_prep_recv(sqe_of(&ring), c.res, conns[accepted].buf,
                                  sizeof conns[accepted].buf, 0, UD(K_RECV, accepted));
            accepted++;
            break;
        case K_RECV:
            CHECK(i < (unsigned)accepted);
            CHECK(c.res > 0);
            conns[i].pending_send = c.res;
            piocp_uring_prep_send(sqe_of(&ring), conns[i].fd, conns[i].buf, (size_t)c.res,
                                  MSG_NOSIGNAL | MSG_WAITALL, UD(K_SEND, i));
            break;
        case K_SEND:
            CHECK(c.res == conns[i].pending_send);
            echoed += (size_t)c.res;
            piocp_uring_prep_recv(sqe_of(&ring), conns[i].fd, conns[i].buf,
                                  sizeof conns[i].buf, 0, UD(K_RECV, i));
            break;
        default:
            CHECK(!"unexpected completion");
        }
    }
    CHECK(accepted == N);
    for (int i = 0; i < N; i++) {
        char back[32] = {0};
        CHECK(read_exact(clients[i], back, strlen(msgs[i])) == 0);
        CHECK(memcmp(back, msgs[i], strlen(msgs[i])) == 0);
    }

    /* Stop accepting: the multishot accept ends with -ECANCELED. */
    piocp_uring_prep_cancel(sqe_of(&ring), UD(K_ACCEPT, 0), 0, UD(K_CANCEL, 0));
    cqe_copy c[2];
    collect(&ring, c, 2);
    const cqe_copy *acc = find(c, 2, UD(K_ACCEPT, 0));
    CHECK(acc->res == -ECANCELED && !(acc->flags & IORING_CQE_F_MORE));
    CHECK(find(c, 2, UD(K_CANCEL, 0))->res == 0);

    /* Clients hang up: every armed recv sees EOF. */
    for (int i = 0; i < N; i++)
        close(clients[i]);
    cqe_copy eof[N];
    collect(&ring, eof, N);
    for (int i = 0; i < N; i++)
        CHECK(find(eof, N, UD(K_RECV, i))->res == 0);
    for (int i = 0; i < N; i++)
        close(conns[i].fd);

    CHECK(piocp_uring_cq_ready(&ring) == 0);
    piocp_uring_exit(&ring);
    close(lfd);
    CHECK(count_fds() == fds);
}

/* ---------------------------------------------------------- buf_ring -- */

static void test_buf_ring(void)
{
    watchdog();
    int fds = count_fds();
    int sp[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
    piocp_uring ring;
    ring_init(&ring, 16);
    piocp_uring_buf_ring br, bad;
    CHECK(piocp_uring_buf_ring_setup(&ring, 9, 3, 64, &bad) == -EINVAL); /* not a power of 2 */
    CHECK(piocp_uring_buf_ring_setup(&ring, 9, 0, 64, &bad) == -EINVAL);
    CHECK(piocp_uring_buf_ring_setup(&ring, 9, 4, 0, &bad) == -EINVAL);
    int rc = piocp_uring_buf_ring_setup(&ring, 7, 4, 64, &br);
    if (rc == -EINVAL) {
        printf("skip: no provided-buffer rings (kernel < 5.19)\n");
        exit(SKIP);
    }
    CHECK(rc == 0);
    CHECK(br.entries == 4 && br.bgid == 7 && br.buf_size == 64);
    CHECK(((uintptr_t)br.br & 4095) == 0);
    CHECK(piocp_uring_buf_ring_setup(&ring, 7, 4, 64, &bad) < 0); /* group taken */

    /* Single-shot receive into a selected buffer. */
    CHECK(write_all(sp[1], "first", 5) == 0);
    piocp_uring_prep_recv_select(sqe_of(&ring), sp[0], 0, 7, 0, 1);
    cqe_copy c = next_cqe(&ring);
    CHECK(c.user_data == 1 && c.res == 5);
    struct io_uring_cqe as_cqe = {.user_data = c.user_data, .res = c.res, .flags = c.flags};
    int bid = piocp_uring_cqe_buffer_id(&as_cqe);
    CHECK(bid >= 0 && bid < 4);
    CHECK(memcmp(piocp_uring_buf_ring_buf(&br, (unsigned short)bid), "first", 5) == 0);
    piocp_uring_buf_ring_recycle(&br, (unsigned short)bid);

    /* Multishot receive: one CQE per message, buffers recycled, so far more
     * messages than buffers go through. */
    piocp_uring_prep_recv_multishot(sqe_of(&ring), sp[0], 7, 0, 2);
    CHECK(piocp_uring_submit(&ring) == 1);
    unsigned seen_bids = 0;
    for (int i = 0; i < 12; i++) {
        char msg[32];
        int len = snprintf(msg, sizeof msg, "message %d", i);
        CHECK(write_all(sp[1], msg, (size_t)len) == 0);
        c = next_cqe(&ring);
        CHECK(c.user_data == 2 && c.res == len);
        CHECK(c.flags & IORING_CQE_F_MORE);
        CHECK(c.flags & IORING_CQE_F_BUFFER);
        bid = (int)(c.flags >> IORING_CQE_BUFFER_SHIFT);
        CHECK(bid >= 0 && bid < 4);
        seen_bids |= 1u << bid;
        CHECK(memcmp(piocp_uring_buf_ring_buf(&br, (unsigned short)bid), msg, (size_t)len) == 0);
        piocp_uring_buf_ring_recycle(&br, (unsigned short)bid);
    }
    CHECK(seen_bids == 0xf); /* every buffer was used */

    /* Without recycling, the group runs dry: the multishot recv ends with
     * -ENOBUFS after using the four buffers. */
    int held[4], nheld = 0;
    for (int i = 0; i < 5; i++) {
        CHECK(write_all(sp[1], "dry", 3) == 0);
        c = next_cqe(&ring);
        CHECK(c.user_data == 2);
        if (c.res == -ENOBUFS) {
            CHECK(!(c.flags & IORING_CQE_F_MORE));
            break;
        }
        CHECK(c.res == 3 && (c.flags & IORING_CQE_F_MORE));
        held[nheld++] = (int)(c.flags >> IORING_CQE_BUFFER_SHIFT);
    }
    CHECK(nheld == 4);
    for (int i = 0; i < nheld; i++)
        piocp_uring_buf_ring_add(&br, (unsigned short)held[i], (unsigned)i);
    piocp_uring_buf_ring_advance(&br, (unsigned)nheld);

    /* Re-armed, it picks up the data left in the socket, then sees EOF. */
    piocp_uring_prep_recv_multishot(sqe_of(&ring), sp[0], 7, 0, 3);
    c = next_cqe(&ring);
    CHECK(c.user_data == 3 && c.res == 3 && (c.flags & IORING_CQE_F_MORE));
    piocp_uring_buf_ring_recycle(&br, (unsigned short)(c.flags >> IORING_CQE_BUFFER_SHIFT));
    close(sp[1]);
    c = next_cqe(&ring);
    CHECK(c.user_data == 3 && c.res == 0 && !(c.flags & IORING_CQE_F_MORE));

    CHECK(piocp_uring_buf_ring_free(&ring, &br) == 0);
    CHECK(br.map == NULL);
    piocp_uring_exit(&ring);
    close(sp[0]);
    CHECK(count_fds() == fds);
}

/* ------------------------------------------------------------ cancel -- */

static void test_cancel(void)
{
    watchdog();
    int fds = count_fds();
    int sp[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
    piocp_uring ring;
    ring_init(&ring, 16);
    char buf[3][64];

    /* By user_data. */
    piocp_uring_prep_recv(sqe_of(&ring), sp[0], buf[0], sizeof buf[0], 0, 1);
    CHECK(piocp_uring_submit(&ring) == 1);
    CHECK(piocp_uring_cq_ready(&ring) == 0); /* pending: nothing to read */
    piocp_uring_prep_cancel(sqe_of(&ring), 1, 0, 2);
    cqe_copy c[4];
    collect(&ring, c, 2);
    CHECK(find(c, 2, 1)->res == -ECANCELED);
    CHECK(find(c, 2, 2)->res == 0);

    /* Nothing left to cancel. */
    piocp_uring_prep_cancel(sqe_of(&ring), 1, 0, 3);
    CHECK(next_cqe(&ring).res == -ENOENT);

    /* Everything on one descriptor at once. */
    piocp_uring_prep_recv(sqe_of(&ring), sp[0], buf[1], sizeof buf[1], 0, 4);
    piocp_uring_prep_recv(sqe_of(&ring), sp[0], buf[2], sizeof buf[2], 0, 5);
    piocp_uring_prep_poll_add(sqe_of(&ring), sp[0], POLLIN, 6);
    CHECK(piocp_uring_submit(&ring) == 3);
    piocp_uring_prep_cancel_fd(sqe_of(&ring), sp[0], 7);
    collect(&ring, c, 4);
    CHECK(find(c, 4, 4)->res == -ECANCELED);
    CHECK(find(c, 4, 5)->res == -ECANCELED);
    CHECK(find(c, 4, 6)->res == -ECANCELED);
    CHECK(find(c, 4, 7)->res == 3); /* how many it cancelled */

    /* Nothing is left armed: data arriving now produces no completion. */
    CHECK(write_all(sp[1], "late", 4) == 0);
    piocp_uring_prep_nop(sqe_of(&ring), 8);
    CHECK(next_cqe(&ring).user_data == 8);
    CHECK(piocp_uring_cq_ready(&ring) == 0);

    piocp_uring_exit(&ring);
    close(sp[0]);
    close(sp[1]);
    CHECK(count_fds() == fds);
}

/* ---------------------------------------------------------- msg_ring -- */

#define MSG_WAKE UINT64_C(0xbeef)
#define MSG_REPLY UINT64_C(0xcafe)
#define GUARD UINT64_C(0x6a7d)

typedef struct msg_shared {
    int fd_a;
    atomic_int fd_b;       /* published once ring B exists */
    atomic_int woken;
    int res_b, reply_res;
    long long woke_ms;
} msg_shared;

static void *ring_b_main(void *arg)
{
    msg_shared *s = arg;
    piocp_uring rb;
    ring_init(&rb, 8); /* created here: SINGLE_ISSUER binds it to this thread */
    struct __kernel_timespec guard = {.tv_sec = 10};
    piocp_uring_prep_timeout(sqe_of(&rb), &guard, 0, 0, GUARD);
    CHECK(piocp_uring_submit(&rb) == 1);
    atomic_store(&s->fd_b, rb.fd);
    /* Blocks in io_uring_enter until ring A's message lands. */
    cqe_copy c = next_cqe(&rb);
    CHECK(c.user_data == MSG_WAKE); /* not the guard timer */
    s->woke_ms = now_ms();
    s->res_b = c.res;
    atomic_store(&s->woken, 1);
    /* Answer on ring A. */
    piocp_uring_prep_msg_ring(sqe_of(&rb), s->fd_a, 43, MSG_REPLY, 5);
    c = next_cqe(&rb);
    CHECK(c.user_data == 5);
    s->reply_res = c.res;
    piocp_uring_exit(&rb);
    return NULL;
}

static void test_msg_ring(void)
{
    watchdog();
    int fds = count_fds();
    piocp_uring ra;
    ring_init(&ra, 8);
    msg_shared s = {.fd_a = ra.fd};
    atomic_init(&s.fd_b, -1);
    atomic_init(&s.woken, 0);
    pthread_t t;
    CHECK(pthread_create(&t, NULL, ring_b_main, &s) == 0);
    long long deadline = now_ms() + 5000;
    while (atomic_load(&s.fd_b) < 0 && now_ms() < deadline)
        usleep(1000);
    CHECK(atomic_load(&s.fd_b) >= 0);
    usleep(50 * 1000); /* let B block in the kernel */
    CHECK(atomic_load(&s.woken) == 0);

    long long sent = now_ms();
    piocp_uring_prep_msg_ring(sqe_of(&ra), atomic_load(&s.fd_b), 42, MSG_WAKE, 1);
    cqe_copy c[2];
    collect(&ra, c, 2); /* our send's completion and B's reply */
    CHECK(find(c, 2, 1)->res == 0);
    CHECK(find(c, 2, MSG_REPLY)->res == 43);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(s.res_b == 42);
    CHECK(s.reply_res == 0);
    CHECK(s.woke_ms - sent < 2000);
    printf("ring B woke %lld ms after the message\n", s.woke_ms - sent);
    piocp_uring_exit(&ra);
    CHECK(count_fds() == fds);
}

/* ------------------------------------------------------ single_issuer -- */

static void *submit_from_other_thread(void *arg)
{
    piocp_uring *ring = arg;
    piocp_uring_prep_nop(piocp_uring_get_sqe(ring), 11);
    return (void *)(intptr_t)piocp_uring_submit(ring);
}

static void test_single_issuer(void)
{
    watchdog();
    int fds = count_fds();
    piocp_uring ring;
    ring_init(&ring, 8);
    if (!(ring.setup_flags & IORING_SETUP_SINGLE_ISSUER)) {
        printf("skip: kernel without IORING_SETUP_SINGLE_ISSUER\n");
        piocp_uring_exit(&ring);
        exit(SKIP);
    }
    pthread_t t;
    void *ret;
    CHECK(pthread_create(&t, NULL, submit_from_other_thread, &ring) == 0);
    CHECK(pthread_join(t, &ret) == 0);
    /* Only the creating thread may submit; the SQE stays queued. */
    CHECK((intptr_t)ret == -EEXIST);
    cqe_copy c = next_cqe(&ring);
    CHECK(c.user_data == 11 && c.res == 0);
    piocp_uring_exit(&ring);
    CHECK(count_fds() == fds);
}

/* ---------------------------------------------------------- overflow -- */

static void test_overflow(void)
{
    watchdog();
    int fds = count_fds();
    piocp_uring ring;
    ring_init(&ring, 8);
    CHECK(ring.cq.entries == 32);
    if (!(ring.features & IORING_FEAT_NODROP)) {
        printf("skip: kernel without IORING_FEAT_NODROP\n");
        piocp_uring_exit(&ring);
        exit(SKIP);
    }
    enum { TOTAL = 200 }; /* > 6 x the CQ ring */
    unsigned queued = 0;
    while (queued < TOTAL) {
        struct io_uring_sqe *sqe;
        while (queued < TOTAL && (sqe = piocp_uring_get_sqe(&ring)))
            piocp_uring_prep_nop(sqe, queued++);
        int rc = piocp_uring_submit(&ring);
        CHECK(rc > 0); /* EBUSY would be a pre-5.10-style kernel */
    }
    /* Nothing reaped yet: the ring is full and the kernel parked the rest. */
    CHECK(piocp_uring_cq_ready(&ring) == ring.cq.entries);
    CHECK(*ring.sq.kflags & IORING_SQ_CQ_OVERFLOW);

    /* Reap everything: in order, each exactly once, nothing dropped. */
    unsigned seen = 0, empty_peeks = 0;
    while (seen < TOTAL) {
        struct io_uring_cqe *cqes[64];
        int n = piocp_uring_peek_batch(&ring, cqes, 64);
        if (n == 0) {
            CHECK(++empty_peeks < 3);
            continue;
        }
        for (int i = 0; i < n; i++) {
            CHECK(cqes[i]->user_data == seen);
            CHECK(cqes[i]->res == 0);
            seen++;
        }
        piocp_uring_cq_advance(&ring, (unsigned)n);
    }
    CHECK(seen == TOTAL);
    CHECK(piocp_uring_cq_ready(&ring) == 0);
    CHECK(!(*ring.sq.kflags & IORING_SQ_CQ_OVERFLOW));
    CHECK(ring.overflow_events == 1); /* one episode */
    CHECK(piocp_uring_cq_dropped(&ring) == 0);
    printf("%u completions through a %u-entry CQ; %llu overflow episode(s), %u dropped\n", seen,
           ring.cq.entries, ring.overflow_events, piocp_uring_cq_dropped(&ring));

    /* The same through submit_and_wait, which flushes as part of waiting. */
    queued = 0;
    while (queued < TOTAL) {
        struct io_uring_sqe *sqe;
        while (queued < TOTAL && (sqe = piocp_uring_get_sqe(&ring)))
            piocp_uring_prep_nop(sqe, 1000 + queued++);
        CHECK(piocp_uring_submit(&ring) > 0);
    }
    for (seen = 0; seen < TOTAL; seen++) {
        cqe_copy c = next_cqe(&ring);
        CHECK(c.user_data == 1000 + seen);
    }
    CHECK(ring.overflow_events == 2);
    CHECK(piocp_uring_cq_dropped(&ring) == 0);
    piocp_uring_exit(&ring);
    CHECK(count_fds() == fds);
}

/* -------------------------------------------------------------- poll -- */

static void test_poll(void)
{
    watchdog();
    int fds = count_fds();
    piocp_uring ring;
    ring_init(&ring, 16);
    int efd = eventfd(0, EFD_CLOEXEC);
    CHECK(efd >= 0);

    /* Single-shot: pending until the eventfd is signalled, then done. */
    piocp_uring_prep_poll_add(sqe_of(&ring), efd, POLLIN, 1);
    CHECK(piocp_uring_submit(&ring) == 1);
    CHECK(piocp_uring_cq_ready(&ring) == 0);
    CHECK(eventfd_write(efd, 5) == 0);
    cqe_copy c = next_cqe(&ring);
    CHECK(c.user_data == 1 && (c.res & POLLIN) && !(c.flags & IORING_CQE_F_MORE));
    eventfd_t drained;
    CHECK(eventfd_read(efd, &drained) == 0 && drained == 5);

    /* Multishot poll: a CQE per readiness edge, until cancelled. */
    piocp_uring_prep_poll_multishot(sqe_of(&ring), efd, POLLIN, 2);
    CHECK(piocp_uring_submit(&ring) == 1);
    for (int i = 0; i < 2; i++) {
        CHECK(eventfd_write(efd, 1) == 0);
        c = next_cqe(&ring);
        CHECK(c.user_data == 2 && (c.res & POLLIN) && (c.flags & IORING_CQE_F_MORE));
        CHECK(eventfd_read(efd, &drained) == 0);
    }
    piocp_uring_prep_cancel(sqe_of(&ring), 2, 0, 3);
    int ended = 0, cancel_res = 1;
    while (!ended || cancel_res == 1) {
        c = next_cqe(&ring);
        if (c.user_data == 3)
            cancel_res = c.res;
        else if (c.user_data == 2 && !(c.flags & IORING_CQE_F_MORE))
            ended = c.res == -ECANCELED;
        else
            CHECK(c.user_data == 2);
    }
    CHECK(cancel_res == 0);

    piocp_uring_exit(&ring);
    close(efd);
    CHECK(count_fds() == fds);
}

/* ------------------------------------------------------ wait_timeout -- */

typedef struct delayed {
    int fd;          /* write 4 bytes here, or -1 */
    pthread_t target; /* else signal this thread */
    int delay_ms;
} delayed;

static void *act_later(void *arg)
{
    const delayed *d = arg;
    usleep((useconds_t)d->delay_ms * 1000);
    if (d->fd >= 0)
        CHECK(write_all(d->fd, "late", 4) == 0);
    else
        CHECK(pthread_kill(d->target, SIGUSR1) == 0);
    return NULL;
}

static atomic_int signals_seen;

static void count_signal(int sig)
{
    (void)sig;
    atomic_fetch_add(&signals_seen, 1);
}

/* Submits what is queued, waits up to `timeout_ms` for `wait_nr` CQEs and
 * checks the return value; returns how long the call took (ms). */
static long long timed_wait(piocp_uring *ring, unsigned wait_nr, int timeout_ms, int expect_rc)
{
    long long t0 = now_ms();
    int rc = piocp_uring_submit_and_wait_timeout(ring, wait_nr, timeout_ms);
    long long took = now_ms() - t0;
    if (rc != expect_rc)
        fprintf(stderr, "submit_and_wait_timeout(%u, %d ms) = %d after %lld ms, not %d\n",
                wait_nr, timeout_ms, rc, took, expect_rc);
    CHECK(rc == expect_rc);
    return took;
}

static void test_wait_timeout(void)
{
    watchdog();
    int fds = count_fds();
    piocp_uring ring;
    ring_init(&ring, 16);
    if (!(ring.features & IORING_FEAT_EXT_ARG)) {
        CHECK(piocp_uring_submit_and_wait_timeout(&ring, 1, 10) == -EOPNOTSUPP);
        piocp_uring_exit(&ring);
        printf("skip: kernel without IORING_FEAT_EXT_ARG (5.11)\n");
        exit(SKIP);
    }
    int sp[2];
    CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp) == 0);
    char buf[64];

    /* Nothing queued, nothing pending: returns 0 once the timeout passed. */
    long long took = timed_wait(&ring, 1, 100, 0);
    CHECK(took >= 90 && took < 2000);
    CHECK(piocp_uring_cq_ready(&ring) == 0);

    /* A recv nobody answers, submitted by the call itself: the call says it
     * submitted one SQE, and still returns after the timeout. */
    piocp_uring_prep_recv(sqe_of(&ring), sp[0], buf, sizeof buf, 0, 1);
    took = timed_wait(&ring, 1, 100, 1);
    CHECK(took >= 90 && took < 2000);
    CHECK(piocp_uring_cq_ready(&ring) == 0);

    /* 0 polls: no wait at all while the recv is pending... */
    long long t0 = now_ms();
    for (int i = 0; i < 20; i++)
        timed_wait(&ring, 1, 0, 0);
    CHECK(now_ms() - t0 < 1000);
    CHECK(piocp_uring_cq_ready(&ring) == 0);
    /* ...and once the data is there, polling brings its CQE out (entering
     * the kernel runs the task work that posts it, under COOP_TASKRUN). */
    CHECK(write_all(sp[1], "now", 3) == 0);
    for (int polls = 0; polls < 100 && piocp_uring_cq_ready(&ring) == 0; polls++) {
        timed_wait(&ring, 1, 0, 0);
        if (piocp_uring_cq_ready(&ring) == 0)
            usleep(1000);
    }
    CHECK(piocp_uring_cq_ready(&ring) == 1);
    cqe_copy c = next_cqe(&ring);
    CHECK(c.user_data == 1 && c.res == 3);

    /* A completion arriving during a long wait ends it early. */
    piocp_uring_prep_recv(sqe_of(&ring), sp[0], buf, sizeof buf, 0, 2);
    CHECK(piocp_uring_submit(&ring) == 1);
    delayed writer = {.fd = sp[1], .delay_ms = 50};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, act_later, &writer) == 0);
    took = timed_wait(&ring, 1, 10000, 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(took >= 20 && took < 5000);
    CHECK(piocp_uring_cq_ready(&ring) == 1);
    c = next_cqe(&ring);
    CHECK(c.user_data == 2 && c.res == 4 && memcmp(buf, "late", 4) == 0);

    /* wait_nr counts: with two wanted and one there, the wait runs out and
     * leaves the one to reap. */
    piocp_uring_prep_nop(sqe_of(&ring), 3);
    took = timed_wait(&ring, 2, 100, 1);
    CHECK(took >= 90 && took < 2000);
    CHECK(piocp_uring_cq_ready(&ring) == 1);
    CHECK(next_cqe(&ring).user_data == 3);

    /* A signal (no SA_RESTART) interrupts the wait: it resumes with the
     * time left, so it neither ends early nor starts the timeout over. */
    struct sigaction sa = {.sa_handler = count_signal}, old;
    sigemptyset(&sa.sa_mask);
    CHECK(sigaction(SIGUSR1, &sa, &old) == 0);
    delayed signaller = {.fd = -1, .target = pthread_self(), .delay_ms = 150};
    CHECK(pthread_create(&t, NULL, act_later, &signaller) == 0);
    took = timed_wait(&ring, 1, 300, 0);
    CHECK(pthread_join(t, NULL) == 0);
    CHECK(atomic_load(&signals_seen) == 1);
    CHECK(took >= 290 && took < 420); /* starting over would take 450 ms */
    CHECK(sigaction(SIGUSR1, &old, NULL) == 0);

    /* timeout < 0 waits without a limit, like submit_and_wait. */
    piocp_uring_prep_nop(sqe_of(&ring), 4);
    timed_wait(&ring, 1, -1, 1);
    CHECK(next_cqe(&ring).user_data == 4);

    /* Without IORING_FEAT_EXT_ARG (kernels before 5.11) a positive timeout
     * is refused before anything is submitted; 0 and < 0 still work. */
    unsigned features = ring.features;
    ring.features &= ~IORING_FEAT_EXT_ARG;
    piocp_uring_prep_nop(sqe_of(&ring), 5);
    timed_wait(&ring, 1, 100, -EOPNOTSUPP);
    CHECK(*ring.sq.khead == *ring.sq.ktail); /* the nop was not published */
    timed_wait(&ring, 1, 0, 1);
    CHECK(next_cqe(&ring).user_data == 5);
    ring.features = features;

    piocp_uring_exit(&ring);
    CHECK(piocp_uring_submit_and_wait_timeout(&ring, 1, 100) == -EBADF);
    close(sp[0]);
    close(sp[1]);
    CHECK(count_fds() == fds);
}

/* ----------------------------------------------------------- seccomp -- */

/* In a child: refuse io_uring_setup with `err` through a seccomp filter
 * (as Docker's default profile does with EPERM), then probe.  The filter
 * matches the syscall number only; it does not check the architecture,
 * which a real sandbox must, but is enough to stand in for one here. */
static int seccomp_child(int err)
{
    struct sock_filter filter[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_io_uring_setup, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((unsigned)err & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof filter / sizeof filter[0], .filter = filter};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
        return SKIP;
    if (syscall(__NR_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0)
        return SKIP;
    int fds = count_fds();
    piocp_uring_features f;
    int rc = piocp_uring_probe(&f);
    char line[512];
    printf("under seccomp (%s): %s\n", err == EPERM ? "EPERM" : "ENOSYS",
           piocp_uring_describe(&f, line, sizeof line));
    fflush(stdout);
    if (rc != -err || f.available || f.setup_error != -err)
        return 1;
    if (f.op_accept || f.buf_ring || f.accept_multishot || f.features)
        return 2;
    if (err == EPERM && f.disabled_sysctl <= 0 && !strstr(line, "seccomp"))
        return 3;
    piocp_uring ring;
    if (piocp_uring_init(&ring, 8, 0) != -err || ring.fd != -1)
        return 4;
    piocp_uring_exit(&ring);
    if (piocp_uring_get_sqe(&ring) != NULL || piocp_uring_submit(&ring) != -EBADF)
        return 5;
    if (count_fds() != fds)
        return 6;
    return 0;
}

static void test_seccomp(void)
{
    watchdog();
    int fds = count_fds();
    const int errs[] = {EPERM, ENOSYS};
    for (size_t i = 0; i < sizeof errs / sizeof errs[0]; i++) {
        fflush(stdout);
        pid_t pid = fork();
        CHECK(pid >= 0);
        if (pid == 0)
            _exit(seccomp_child(errs[i]));
        int status;
        CHECK(waitpid(pid, &status, 0) == pid);
        CHECK(WIFEXITED(status)); /* no crash */
        if (WEXITSTATUS(status) == SKIP) {
            printf("skip: cannot install a seccomp filter here\n");
            exit(SKIP);
        }
        if (WEXITSTATUS(status) != 0)
            fprintf(stderr, "seccomp child (errno %d) failed check %d\n", errs[i],
                    WEXITSTATUS(status));
        CHECK(WEXITSTATUS(status) == 0);
    }
    CHECK(count_fds() == fds);
}

static const test_case cases[] = {
    {"probe", test_probe},
    {"basics", test_basics},
    {"echo", test_echo},
    {"buf_ring", test_buf_ring},
    {"cancel", test_cancel},
    {"msg_ring", test_msg_ring},
    {"single_issuer", test_single_issuer},
    {"overflow", test_overflow},
    {"poll", test_poll},
    {"wait_timeout", test_wait_timeout},
    {"seccomp", test_seccomp},
    {NULL, NULL},
};

#else /* !PIOCP_URING_SUPPORTED */

/* Built without io_uring: everything reports ENOSYS, nothing crashes. */
static void test_stub(void)
{
    int fds = count_fds();
    piocp_uring ring;
    CHECK(piocp_uring_init(&ring, 8, 0) == -ENOSYS);
    CHECK(ring.fd == -1);
    CHECK(piocp_uring_get_sqe(&ring) == NULL);
    CHECK(piocp_uring_submit(&ring) == -ENOSYS);
    CHECK(piocp_uring_submit_and_wait(&ring, 1) == -ENOSYS);
    CHECK(piocp_uring_submit_and_wait_timeout(&ring, 1, 10) == -ENOSYS);
    CHECK(piocp_uring_submit_and_wait_timeout(&ring, 1, 0) == -ENOSYS);
    CHECK(piocp_uring_submit_and_wait_timeout(&ring, 1, -1) == -ENOSYS);
    struct io_uring_cqe *cqe;
    CHECK(piocp_uring_peek_batch(&ring, &cqe, 1) == 0);
    piocp_uring_buf_ring br;
    CHECK(piocp_uring_buf_ring_setup(&ring, 1, 4, 64, &br) == -ENOSYS);
    CHECK(piocp_uring_buf_ring_free(&ring, &br) == 0);
    piocp_uring_exit(&ring);
    piocp_uring_features f;
    CHECK(piocp_uring_probe(&f) == -ENOSYS);
    CHECK(!f.available && f.setup_error == -ENOSYS && !f.ext_arg);
    char line[256];
    printf("%s\n", piocp_uring_describe(&f, line, sizeof line));
    CHECK(strstr(line, "unavailable") && strstr(line, "no io_uring support"));
    CHECK(count_fds() == fds);
}

static const test_case cases[] = {
    {"stub", test_stub},
    {NULL, NULL},
};

#endif

int main(int argc, char **argv)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    return run_test_case(cases, argc > 1 ? argv[1] : "list");
}
