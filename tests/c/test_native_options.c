/*
 * test_native_options.c - the native servers' options (pyiocp.h):
 * piocp_http_options_init and piocp_raw_options_init set the documented
 * defaults and "no access log" (PIOCP_INVALID_FILE, not 0); NULL options
 * mean the same; and descriptor 0 is a valid log target, as it is for a
 * log file opened under a service manager that closed stdin.
 *
 * `test_native_options CASE [BACKEND]` runs one case; the serving cases
 * run one request through a real engine on 127.0.0.1 with a pipe put on
 * descriptor 0, so that whatever the server logs there can be read back.
 */
#include "pyiocp.h"
#include "test_util.h"

#include <fcntl.h>
#include <ftw.h>
#include <stdbool.h>

static const char *backend = "auto";

/* ------------------------------------------------------------ defaults -- */

static void test_http_defaults(void)
{
    piocp_http_options o;
    memset(&o, 0x5a, sizeof o); /* init must set every field, not rely on zeroes */
    piocp_http_options_init(&o);
    CHECK(o.access_log_fd == PIOCP_INVALID_FILE);
    CHECK(o.listing == 1);
    CHECK(o.max_head == 8192);
    CHECK(o.header_timeout_ms == 10000);
    CHECK(o.keepalive_timeout_ms == 15000);
    CHECK(o.max_discard == 64 * 1024);
    CHECK(o.cache_valid_ms == 1000);
}

static void test_raw_defaults(void)
{
    piocp_raw_options o;
    memset(&o, 0x5a, sizeof o);
    piocp_raw_options_init(&o);
    CHECK(o.access_log_fd == PIOCP_INVALID_FILE);
    CHECK(o.max_name == 1024);
}

/* ------------------------------------------------------------- fixture -- */

#define FILE_NAME "hello.txt"
#define FILE_BYTES "hello"

static char root[] = "/tmp/pyiocp-options-XXXXXX";

static void make_root(void)
{
    strcpy(root + sizeof root - 7, "XXXXXX"); /* a fresh name each time */
    CHECK(mkdtemp(root) != NULL);
    char path[sizeof root + sizeof FILE_NAME + 1];
    snprintf(path, sizeof path, "%s/%s", root, FILE_NAME);
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    CHECK(write_all(fd, FILE_BYTES, strlen(FILE_BYTES)) == 0);
    close(fd);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_root(void)
{
    CHECK(nftw(root, remove_entry, 8, FTW_DEPTH | FTW_PHYS) == 0);
}

/* Puts the write end of a new pipe on descriptor 0 and returns the read
 * end (non-blocking, so that "nothing was logged" can be checked). */
static int pipe_on_stdin(void)
{
    int p[2];
    CHECK(pipe(p) == 0);
    CHECK(dup2(p[1], 0) == 0);
    close(p[1]);
    CHECK(fcntl(p[0], F_SETFL, O_NONBLOCK) == 0);
    return p[0];
}

/* Reads until end of file (a socket) or until nothing is left (the
 * non-blocking pipe, once the log has been written out); NUL-terminates. */
static size_t read_all(int fd, char *buf, size_t cap)
{
    size_t len = 0;
    ssize_t n;
    while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    buf[len] = '\0';
    return len;
}

/* Listens with `callbacks`/`user` on 127.0.0.1, sends `request` on one
 * connection (then half-closes it), and returns the whole answer in
 * `answer`; the engine is stopped and freed before returning, so that no
 * more log lines can come. */
static void serve_one(const piocp_listener_callbacks *callbacks, void *user, const char *request,
                      char *answer, size_t answer_cap)
{
    piocp_config config;
    piocp_config_init(&config);
    config.threads = 2;
    config.backend = backend;
    piocp_engine *engine;
    CHECK(piocp_engine_new(&engine, &config) == 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    piocp_listener *listener;
    CHECK(piocp_listen(engine, (struct sockaddr *)&addr, sizeof addr, 16, callbacks, user,
                       &listener) == 0);
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    CHECK(piocp_listener_address(listener, &bound, &bound_len) == 0);
    CHECK(piocp_engine_start(engine) == 0);

    int fd = connect_loopback(ntohs(((struct sockaddr_in *)&bound)->sin_port));
    CHECK(write_all(fd, request, strlen(request)) == 0);
    CHECK(shutdown(fd, SHUT_WR) == 0);
    read_all(fd, answer, answer_cap);
    close(fd);
    CHECK(piocp_engine_stop(engine, 1000) == 0);
    piocp_engine_free(engine);
}

/* ------------------------------------------------------ HTTP and raw -- */

static const char http_request_text[] = "GET /" FILE_NAME " HTTP/1.1\r\nHost: test\r\n\r\n";
static const char http_log_entry[] = "\"GET /" FILE_NAME " HTTP/1.1\" 200 5\n";
static const char raw_request_text[] = FILE_NAME "\n";
static const char raw_log_entry[] = "\"" FILE_NAME "\" 5 ok\n";

static bool ends_with(const char *s, const char *tail)
{
    size_t n = strlen(s), t = strlen(tail);
    return n >= t && memcmp(s + n - t, tail, t) == 0;
}

/* options NULL: the defaults.  Returns what the server wrote to fd 0. */
static void http_serve(const piocp_http_options *options, char *logged, size_t cap)
{
    int log_reader = pipe_on_stdin();
    make_root();
    piocp_http_server *server;
    CHECK(piocp_http_server_new(&server, root, options) == 0);
    char answer[1024];
    serve_one(&piocp_http_server_callbacks, server, http_request_text, answer, sizeof answer);
    CHECK(strncmp(answer, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(ends_with(answer, "\r\n\r\n" FILE_BYTES));
    piocp_http_server_free(server); /* writes out the access log */
    read_all(log_reader, logged, cap);
    close(log_reader);
    remove_root();
}

static void raw_serve(const piocp_raw_options *options, char *logged, size_t cap)
{
    int log_reader = pipe_on_stdin();
    make_root();
    piocp_raw_server *server;
    CHECK(piocp_raw_server_new(&server, root, options) == 0);
    char answer[1024];
    serve_one(&piocp_raw_server_callbacks, server, raw_request_text, answer, sizeof answer);
    CHECK(strcmp(answer, FILE_BYTES) == 0);
    piocp_raw_server_free(server);
    read_all(log_reader, logged, cap);
    close(log_reader);
    remove_root();
}

static void test_http_no_log_by_default(void)
{
    char logged[4096];
    http_serve(NULL, logged, sizeof logged);
    CHECK(logged[0] == '\0');
    piocp_http_options o;
    piocp_http_options_init(&o);
    http_serve(&o, logged, sizeof logged);
    CHECK(logged[0] == '\0');
}

static void test_http_log_on_fd0(void)
{
    piocp_http_options o;
    piocp_http_options_init(&o);
    o.access_log_fd = 0;
    char logged[4096];
    http_serve(&o, logged, sizeof logged);
    CHECK(strncmp(logged, "127.0.0.1 - - [", 15) == 0);
    CHECK(ends_with(logged, http_log_entry));
    CHECK(strchr(logged, '\n') == logged + strlen(logged) - 1); /* one line */
}

static void test_raw_no_log_by_default(void)
{
    char logged[4096];
    raw_serve(NULL, logged, sizeof logged);
    CHECK(logged[0] == '\0');
    piocp_raw_options o;
    piocp_raw_options_init(&o);
    raw_serve(&o, logged, sizeof logged);
    CHECK(logged[0] == '\0');
}

static void test_raw_log_on_fd0(void)
{
    piocp_raw_options o;
    piocp_raw_options_init(&o);
    o.access_log_fd = 0;
    char logged[4096];
    raw_serve(&o, logged, sizeof logged);
    CHECK(strncmp(logged, "127.0.0.1:", 10) == 0);
    CHECK(ends_with(logged, raw_log_entry));
    CHECK(strchr(logged, '\n') == logged + strlen(logged) - 1);
}

static const test_case cases[] = {
    {"http_defaults", test_http_defaults},
    {"raw_defaults", test_raw_defaults},
    {"http_no_log_by_default", test_http_no_log_by_default},
    {"http_log_on_fd0", test_http_log_on_fd0},
    {"raw_no_log_by_default", test_raw_no_log_by_default},
    {"raw_log_on_fd0", test_raw_log_on_fd0},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    if (argc > 2) {
        backend = argv[2];
        /* a backend this kernel refuses (io_uring under seccomp) is skipped */
        piocp_config probe;
        piocp_config_init(&probe);
        probe.threads = 1;
        probe.backend = backend;
        piocp_engine *e = NULL;
        int rc = piocp_engine_new(&e, &probe);
        if (rc < 0) {
            fprintf(stderr, "backend %s unavailable here: %s\n", backend, strerror(-rc));
            return 77;
        }
        piocp_engine_free(e);
    }
    return run_test_case(cases, argc > 1 ? argv[1] : "list");
}
