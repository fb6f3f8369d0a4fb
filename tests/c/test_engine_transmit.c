/*
 * test_engine_transmit.c - piocp_transmit with a real TCP client on
 * 127.0.0.1, written portably (test_net.h), so that it also runs under
 * Wine on the IOCP backend: a head and a file range byte-exact at the
 * client, to the end of the file, a file shorter than the count (-EIO
 * after the bytes that exist), a count of 0 with a head (and one with
 * nothing at all), and a transmit cancelled halfway (the client gets
 * exactly what req->done says).
 * `test_engine_transmit NAME BACKEND [PATH]`; `test_engine_transmit list`.
 * PATH (Windows): transmitfile or read_send, forced through
 * piocp_config.windows_transmit, and checked through the stats
 * (transmit_copied_bytes); elsewhere it is ignored and nothing is copied.
 */
#include "pyiocp.h"
#include "errors.h"
#include "test_backend_arg.h"
#include "test_net.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <unistd.h>
#endif

static int windows_transmit = PIOCP_WINDOWS_TRANSMIT_AUTO;
static int copies; /* 1: the path copies file bytes (read_send on Windows) */

static const char HEAD[] = "HEAD\r\n";
#define HEAD_LEN (sizeof HEAD - 1)

/* ------------------------------------------------------- temp files -- */

static bool on_real_windows(void)
{
#ifdef _WIN32
    /* Wine runs on Linux sockets, which keep unread bytes on a reset */
    return !GetProcAddress(GetModuleHandleA("ntdll.dll"), "wine_get_version");
#else
    return false;
#endif
}

/* A file of `len` bytes of `data` in the temporary directory, gone once
 * closed (or at once, on POSIX). */
static piocp_file temp_file(const char *data, size_t len)
{
#ifdef _WIN32
    wchar_t dir[MAX_PATH + 1], path[MAX_PATH + 1];
    CHECK(GetTempPathW(MAX_PATH + 1, dir) > 0);
    CHECK(GetTempFileNameW(dir, L"pio", 0, path) != 0);
    HANDLE h = CreateFileW(path, GENERIC_READ | GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_DELETE,
                           NULL, CREATE_ALWAYS,
                           FILE_ATTRIBUTE_TEMPORARY | FILE_FLAG_DELETE_ON_CLOSE, NULL);
    CHECK(h != INVALID_HANDLE_VALUE);
    while (len) {
        DWORD n = 0;
        CHECK(WriteFile(h, data, len > (1u << 20) ? (1u << 20) : (DWORD)len, &n, NULL) && n > 0);
        data += n;
        len -= n;
    }
    return h;
#else
    const char *dir = getenv("TMPDIR");
    char path[4096];
    snprintf(path, sizeof path, "%s/pyiocp-transmit-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkstemp(path);
    CHECK(fd >= 0);
    unlink(path);
    while (len) {
        ssize_t n = write(fd, data, len);
        CHECK(n > 0);
        data += n;
        len -= (size_t)n;
    }
    return fd;
#endif
}

static void temp_file_close(piocp_file f)
{
#ifdef _WIN32
    CloseHandle(f);
#else
    close(f);
#endif
}

/* ------------------------------------------------------------ server -- */

/* One connection per case: the transmit is posted as it is accepted. */
static struct {
    piocp_file file;
    uint64_t offset, count;
    bool empty_first; /* a transmit of nothing at all before it */
    piocp_request req, empty_req;
    piocp_conn *_Atomic conn;
    atomic_int completions, empty_completions, closed;
    atomic_llong result, done;
} S;

static void transmit_done(piocp_request *req, ssize_t result)
{
    atomic_store(&S.result, (long long)result);
    atomic_store(&S.done, (long long)req->done);
    atomic_fetch_add(&S.completions, 1);
    /* an answered or cancelled transmit: FIN after what went out (a failed
     * one has aborted the connection already) */
    piocp_close(req->conn);
}

static void empty_done(piocp_request *req, ssize_t result)
{
    CHECK(result == 0 && req->done == 0);
    atomic_fetch_add(&S.empty_completions, 1);
}

static void on_closed(piocp_conn *conn, int error)
{
    (void)conn;
    (void)error;
    atomic_fetch_add(&S.closed, 1);
}

static void on_connection(piocp_listener *l, piocp_conn *conn, void *user)
{
    (void)l;
    (void)user;
    piocp_conn_set_callbacks(conn, on_closed, NULL);
    piocp_conn_retain(conn); /* the test thread cancels through it */
    atomic_store(&S.conn, conn);
    if (S.empty_first) {
        S.empty_req.complete = empty_done;
        CHECK(piocp_transmit(conn, &S.empty_req, NULL, 0, S.file, 0, 0) == 0);
    }
    S.req.complete = transmit_done;
    CHECK(piocp_transmit(conn, &S.req, HEAD, HEAD_LEN, S.file, S.offset, S.count) == 0);
}

static const piocp_listener_callbacks callbacks = {.on_connection = on_connection};

static piocp_engine *start_engine(void)
{
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.windows_transmit = windows_transmit;
    return engine_on_backend(2, &cfg);
}

/* -------------------------------------------------------------- run -- */

typedef struct tx_case {
    size_t file_size;
    uint64_t offset, count;
    bool empty_first;
    bool cancel;              /* the client waits, the test cancels, then it reads */
    long long expect_result;  /* cancel: ignored (-ECANCELED) */
    long long expect_done;    /* cancel: ignored (what req->done says) */
} tx_case;

/* Reads until EOF or an error (a reset): the bytes got. */
static size_t read_all(piocp_socket fd, char *in, size_t cap)
{
    size_t got = 0;
    while (got < cap) {
        int n = net_recv_some(fd, in + got, cap - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    return got;
}

static void run_case(const tx_case *t)
{
    memset(&S, 0, sizeof S);
    char *data = malloc(t->file_size + 1);
    CHECK(data != NULL);
    for (size_t i = 0; i < t->file_size; i++)
        data[i] = (char)(i * 7 + 3);
    S.file = temp_file(data, t->file_size);
    S.offset = t->offset;
    S.count = t->count;
    S.empty_first = t->empty_first;
    piocp_engine *e = start_engine();
    int port = engine_listen_loopback(e, &callbacks, NULL);
    CHECK(piocp_engine_start(e) == 0);
    piocp_socket fd = net_connect_loopback(port);

    if (t->cancel) {
        /* the client reads nothing: the transmit fills the socket and
         * stops there, under way, until cancelled */
        long long deadline = portable_now_ms() + 5000;
        while (!atomic_load(&S.conn) && portable_now_ms() < deadline)
            portable_sleep_ms(1);
        CHECK(atomic_load(&S.conn) != NULL);
        portable_sleep_ms(300);
        CHECK(piocp_cancel(atomic_load(&S.conn), &S.req) == 0);
        portable_wait_until(&S.completions, 1, 5000);
        CHECK(atomic_load(&S.result) == -PIOCP_ECANCELED);
        CHECK((uint64_t)atomic_load(&S.done) < HEAD_LEN + t->count);
        printf("cancelled after %lld bytes\n", atomic_load(&S.done));
    }

    size_t cap = HEAD_LEN + t->file_size + 64;
    char *in = malloc(cap);
    CHECK(in != NULL);
    size_t got = read_all(fd, in, cap);
    net_close(fd); /* ends the server's lingering close at once */
    portable_wait_until(&S.closed, 1, 5000);
    CHECK(atomic_load(&S.completions) == 1);
    CHECK(atomic_load(&S.closed) == 1);
    CHECK(atomic_load(&S.empty_completions) == (t->empty_first ? 1 : 0));
    long long result = atomic_load(&S.result);
    long long done = atomic_load(&S.done);
    if (!t->cancel) {
        CHECK(result == t->expect_result);
        CHECK(done == t->expect_done);
    }
    /* a failed transmit resets the connection: real Windows may drop what
     * the client had not read yet, Linux (and Wine on it) keeps it */
    if (result < 0 && result != -PIOCP_ECANCELED && on_real_windows())
        CHECK(got <= (size_t)done);
    else
        CHECK(got == (size_t)done);
    /* byte-exact: the head, then the file from the offset */
    CHECK(memcmp(in, HEAD, got < HEAD_LEN ? got : HEAD_LEN) == 0);
    if (got > HEAD_LEN)
        CHECK(memcmp(in + HEAD_LEN, data + t->offset, got - HEAD_LEN) == 0);

    /* the file's bytes, not the head's; copied ones only on read+send */
    piocp_engine_stats stats;
    piocp_engine_get_stats(e, &stats);
    uint64_t file_bytes = (uint64_t)done > HEAD_LEN ? (uint64_t)done - HEAD_LEN : 0;
    CHECK(stats.transmit_file_bytes == file_bytes);
    CHECK(stats.transmit_copied_bytes == (copies ? file_bytes : 0));

    piocp_conn_release(atomic_load(&S.conn));
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    temp_file_close(S.file);
    free(in);
    free(data);
}

/* ------------------------------------------------------------ cases -- */

/* A head and a range inside the file: more than one read+send buffer. */
static void test_transmit_exact(void)
{
    tx_case t = {.file_size = (3u << 20) + 500, .offset = 100, .count = 3u << 20,
                 .expect_result = HEAD_LEN + (3 << 20), .expect_done = HEAD_LEN + (3u << 20)};
    run_case(&t);
}

static void test_transmit_to_eof(void)
{
    tx_case t = {.file_size = 200000, .offset = 100, .count = PIOCP_TRANSMIT_TO_EOF,
                 .expect_result = HEAD_LEN + 199900, .expect_done = HEAD_LEN + 199900};
    run_case(&t);
}

/* Asking for more than the file has: -EIO after the bytes that exist, not
 * a spin, not a hang. */
static void test_transmit_short_file(void)
{
    tx_case t = {.file_size = 5000, .offset = 100, .count = 1u << 20,
                 .expect_result = -PIOCP_EIO, .expect_done = HEAD_LEN + 4900};
    run_case(&t);
}

/* A count of 0 sends the head only (TransmitFile would take 0 for the
 * whole file); a transmit of nothing at all completes with 0 first. */
static void test_transmit_zero_count_with_head(void)
{
    piocp_config bad;
    piocp_config_init(&bad);
    bad.windows_transmit = PIOCP_WINDOWS_TRANSMIT_READ_SEND + 1;
    piocp_engine *e = NULL;
    CHECK(piocp_engine_new(&e, &bad) == -PIOCP_EINVAL);
    tx_case t = {.file_size = 1000, .offset = 10, .count = 0, .empty_first = true,
                 .expect_result = HEAD_LEN, .expect_done = HEAD_LEN};
    run_case(&t);
}

/* Cancelled while the socket is full: the client then gets exactly the
 * bytes req->done counts, and the connection stays usable for the FIN. */
static void test_transmit_cancel(void)
{
    tx_case t = {.file_size = 64u << 20, .offset = 0, .count = 64u << 20, .cancel = true};
    run_case(&t);
}

static const test_case cases[] = {
    {"transmit_exact", test_transmit_exact},
    {"transmit_to_eof", test_transmit_to_eof},
    {"transmit_short_file", test_transmit_short_file},
    {"transmit_zero_count_with_head", test_transmit_zero_count_with_head},
    {"transmit_cancel", test_transmit_cancel},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    if (argc > 3) {
#ifdef _WIN32
        if (strcmp(argv[3], "transmitfile") == 0) {
            windows_transmit = PIOCP_WINDOWS_TRANSMIT_FILE;
        } else if (strcmp(argv[3], "read_send") == 0) {
            windows_transmit = PIOCP_WINDOWS_TRANSMIT_READ_SEND;
            copies = 1;
        } else {
            fprintf(stderr, "unknown path %s\n", argv[3]);
            return 2;
        }
#endif
    }
    net_init();
    return run_on_backend(argc, argv, cases);
}
