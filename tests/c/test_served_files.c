/*
 * test_served_files.c - the native handlers' file side, written portably
 * (test_files.h, test_net.h), so that it also runs under Wine:
 *   confine_names    piocp_open_beneath / piocp_open_dir_beneath with the
 *                    platform's name rules (Windows: '\\', ':', device
 *                    names, trailing dots and spaces, UTF-8 names, case)
 *   confine_escape   links out of the root refused once opened (TREE: a
 *                    tree with links, made by the ctest fixture, since
 *                    Wine cannot make links itself)
 *   file_cache       small (bytes kept) and big files, hits, a file
 *                    replaced by rename while cached, one rewritten in
 *                    place with every hit checked, a name gone
 *   listing          a directory's page from piocp_http_listing
 *   http_serve       the HTTP server on an engine: a small file, a big one
 *                    (transmit), a redirect, a listing, refusals, and its
 *                    access log written to a file
 *   raw_serve        the raw protocol server on an engine
 * `test_served_files CASE [BACKEND [PATH|TREE]]`; `test_served_files list`.
 * PATH (Windows): transmitfile or read_send, as test_engine_transmit.
 */
#include "pyiocp.h"
#include "errors.h"
#include "files/file_cache.h"
#include "files/path_confine.h"
#include "platform/file.h"
#include "protocols/http/listing.h"
#include "test_backend_arg.h"
#include "test_files.h"
#include "test_net.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int windows_transmit = PIOCP_WINDOWS_TRANSMIT_AUTO;
static const char *escape_tree; /* confine_escape's TREE */

#define BIG_SIZE (200 * 1024) /* past FILE_CACHE_SMALL_FILE: sent by transmit */

static char *big_content(void)
{
    char *data = malloc(BIG_SIZE);
    CHECK(data != NULL);
    for (size_t i = 0; i < BIG_SIZE; i++)
        data[i] = (char)('a' + (i * 7 + i / 251) % 26);
    return data;
}

static piocp_file open_root(const test_tree *t)
{
    piocp_file root = PIOCP_INVALID_FILE;
    CHECK(piocp_dir_open_root(t->root, &root) == 0);
    return root;
}

/* ------------------------------------------------------ confinement -- */

static int failures;

static void expect_ok(piocp_file root, const char *name, const char *content)
{
    piocp_file f = PIOCP_INVALID_FILE;
    const char *reason = "(unset)";
    piocp_file_info info;
    int rc = piocp_open_beneath(root, name, strlen(name), &f, &reason, &info);
    if (rc != 0) {
        fprintf(stderr, "FAIL %s: expected success, got %d (%s)\n", name, rc, reason);
        failures++;
        return;
    }
    char buf[64] = {0};
    ssize_t n = piocp_file_pread(f, buf, sizeof buf - 1, 0);
    if (n < 0 || strcmp(buf, content) != 0 || info.kind != PIOCP_FILE_REGULAR ||
        info.size != strlen(content)) {
        fprintf(stderr, "FAIL %s: read \"%s\" (size %llu), expected \"%s\"\n", name, buf,
                (unsigned long long)info.size, content);
        failures++;
    }
    piocp_file_close(f);
}

static void expect_err(piocp_file root, const char *name, size_t len, int want_rc,
                       const char *want_reason)
{
    piocp_file f = PIOCP_INVALID_FILE;
    const char *reason = NULL;
    int rc = piocp_open_beneath(root, name, len, &f, &reason, NULL);
    if (rc == 0)
        piocp_file_close(f);
    if (rc != want_rc || !reason || strcmp(reason, want_reason) != 0 ||
        (rc < 0 && f != PIOCP_INVALID_FILE)) {
        fprintf(stderr, "FAIL %.*s: got %d \"%s\", expected %d \"%s\"\n", (int)len, name, rc,
                reason ? reason : "(null)", want_rc, want_reason);
        failures++;
    }
}

#define ERR(name, rc, why) expect_err(root, name, strlen(name), rc, why)

static void expect_dir(piocp_file root, const char *name, int want_rc)
{
    piocp_file d = PIOCP_INVALID_FILE;
    const char *reason = NULL;
    int rc = piocp_open_dir_beneath(root, name, strlen(name), &d, &reason);
    if (rc == 0)
        piocp_file_close(d);
    if (rc != want_rc) {
        fprintf(stderr, "FAIL dir %s: got %d (%s), expected %d\n", name, rc,
                reason ? reason : "-", want_rc);
        failures++;
    }
}

static void test_confine_names(void)
{
    test_tree t;
    tree_init(&t, "confine");
    tree_dir(&t, "sub");
    tree_file(&t, "file", "top");
    tree_file(&t, "sub/file", "inner");
    tree_file(&t, "..dots", "dots");
    tree_file(&t, "caf\xc3\xa9.txt", "utf8"); /* café.txt */
    piocp_file root = open_root(&t);

    expect_ok(root, "file", "top");
    expect_ok(root, "./file", "top");
    expect_ok(root, "sub/file", "inner");
    expect_ok(root, "sub//file", "inner");
    expect_ok(root, "sub/./file", "inner");
    expect_ok(root, "..dots", "dots");
    expect_ok(root, "caf\xc3\xa9.txt", "utf8");

    ERR("../x", -PIOCP_EXDEV, "path escapes root");
    ERR("sub/../file", -PIOCP_EXDEV, "path escapes root");
    ERR("/etc/passwd", -PIOCP_EPERM, "absolute path not allowed");
    ERR("missing", -PIOCP_ENOENT, "file not found");
    ERR("sub/missing", -PIOCP_ENOENT, "file not found");
    ERR("sub", -PIOCP_EISDIR, "not a regular file");
    ERR(".", -PIOCP_EISDIR, "not a regular file");
    ERR("", -PIOCP_EINVAL, "invalid name");
    expect_err(root, "fi\0le", 5, -PIOCP_EINVAL, "invalid name");

#ifdef _WIN32
    /* Windows' own ways of naming something else than a file under root */
    ERR("sub\\file", -PIOCP_EINVAL, "invalid name");
    ERR("..\\file", -PIOCP_EINVAL, "invalid name");
    ERR("C:file", -PIOCP_EINVAL, "invalid name");
    ERR("C:/Windows/win.ini", -PIOCP_EINVAL, "invalid name");
    ERR("file::$DATA", -PIOCP_EINVAL, "invalid name");
    ERR("file.", -PIOCP_EINVAL, "invalid name");   /* would open "file" */
    ERR("file ", -PIOCP_EINVAL, "invalid name");
    ERR("sub./file", -PIOCP_EINVAL, "invalid name");
    ERR("CON", -PIOCP_EPERM, "not a regular file");
    ERR("nul.txt", -PIOCP_EPERM, "not a regular file");
    ERR("sub/COM1.log", -PIOCP_EPERM, "not a regular file");
    ERR("caf\xff.txt", -PIOCP_EINVAL, "invalid name"); /* not UTF-8 */
    ERR("a*b", -PIOCP_EINVAL, "invalid name");
    /* names are compared as the file system does: without case */
    expect_ok(root, "FILE", "top");
    expect_ok(root, "SUB/File", "inner");
    /* "file/x": a file used as a directory */
    ERR("file/x", -PIOCP_ENOENT, "file not found");
#else
    ERR("file/x", -PIOCP_ENOTDIR, "file not found");
#endif

    expect_dir(root, "", 0);
    expect_dir(root, "sub", 0);
    expect_dir(root, "file", -PIOCP_ENOTDIR);
    expect_dir(root, "missing", -PIOCP_ENOENT);
    expect_dir(root, "..", -PIOCP_EXDEV);

    piocp_file_close(root);
    tree_remove(&t);
    CHECK(failures == 0);
}

/* The tree (tests/c/make_escape_tree.cmake):
 *   root/file            "inside"
 *   root/link_in   ->    file               (stays inside)
 *   root/link_out  ->    ../outside.txt     (leaves)
 *   root/dir_out   ->    ..                 (leaves, a directory)
 *   outside.txt          "outside" */
static void test_confine_escape(void)
{
    if (!escape_tree) {
        fprintf(stderr, "confine_escape needs the tree's path\n");
        exit(2);
    }
    char path[2048];
    snprintf(path, sizeof path, "%s/root", escape_tree);
    piocp_file root = PIOCP_INVALID_FILE;
    CHECK(piocp_dir_open_root(path, &root) == 0);
#ifndef _WIN32
    if (!piocp_path_confine_uses_openat2()) {
        printf("no openat2: every link is refused (test_path_confine covers it)\n");
        piocp_file_close(root);
        exit(77);
    }
#endif
    expect_ok(root, "file", "inside");
    expect_ok(root, "link_in", "inside");
    ERR("link_out", -PIOCP_EXDEV, "path escapes root");
    ERR("dir_out/outside.txt", -PIOCP_EXDEV, "path escapes root");
    ERR("dir_out", -PIOCP_EXDEV, "path escapes root");
    expect_dir(root, "dir_out", -PIOCP_EXDEV);
    piocp_file_close(root);
    CHECK(failures == 0);
}

/* ------------------------------------------------------- file cache -- */

static void check_cached(piocp_file_cache *cache, const char *name, const char *want)
{
    const piocp_cached_file *f;
    const char *reason;
    int rc = piocp_file_cache_open(cache, name, strlen(name), &f, &reason);
    if (rc != 0)
        fprintf(stderr, "%s: %d %s\n", name, rc, reason);
    CHECK(rc == 0);
    size_t len = strlen(want);
    CHECK(f->info.size == len && f->info.kind == PIOCP_FILE_REGULAR);
    CHECK(f->bytes != NULL && memcmp(f->bytes, want, len) == 0);
    char buf[64] = {0};
    CHECK(piocp_file_pread(f->fd, buf, sizeof buf - 1, 0) == (ssize_t)len);
    CHECK(memcmp(buf, want, len) == 0);
    piocp_file_cache_release(cache, f);
}

static void test_file_cache(void)
{
    test_tree t;
    tree_init(&t, "cache");
    tree_dir(&t, "d");
    tree_file(&t, "d/small.txt", "version one");
    char *big = big_content();
    tree_write(&t, "big.bin", big, BIG_SIZE);
    piocp_file root = open_root(&t);

    /* trusted for 300 ms; on Linux inotify may drop entries sooner */
    piocp_file_cache *cache;
    CHECK(piocp_file_cache_new(&cache, root, t.root, 16, 300) == 0);
    check_cached(cache, "d/small.txt", "version one");
    check_cached(cache, "d/small.txt", "version one");
    uint64_t hits, misses;
    piocp_file_cache_stats(cache, &hits, &misses);
    CHECK(misses == 1 && hits == 1);

    /* a big file: no bytes kept, read through the handle at an offset */
    const piocp_cached_file *f;
    const char *reason;
    CHECK(piocp_file_cache_open(cache, "big.bin", 7, &f, &reason) == 0);
    CHECK(f->bytes == NULL && f->info.size == BIG_SIZE);
    char buf[4096];
    CHECK(piocp_file_pread(f->fd, buf, sizeof buf, BIG_SIZE - 1000) == 1000);
    CHECK(memcmp(buf, big + BIG_SIZE - 1000, 1000) == 0);
    CHECK(piocp_file_pread(f->fd, buf, sizeof buf, BIG_SIZE) == 0);

    /* replaced by rename while the cache (and this reference) holds the
     * old one open: the replace must succeed (share modes), the old handle
     * keep its bytes, and the name give the new file after the period */
    const piocp_cached_file *old;
    CHECK(piocp_file_cache_open(cache, "d/small.txt", 11, &old, &reason) == 0);
    tree_replace(&t, "d/small.txt", "version two!");
    portable_sleep_ms(400);
    check_cached(cache, "d/small.txt", "version two!");
    CHECK(memcmp(old->bytes, "version one", 11) == 0);
    piocp_file_cache_release(cache, old);
    piocp_file_cache_release(cache, f);

    /* a name gone: refused, and nothing cached answers for it */
    CHECK(piocp_file_cache_open(cache, "gone.txt", 8, &f, &reason) == -PIOCP_ENOENT);
    piocp_file_cache_free(cache);

    /* every hit checked (valid_ms 0, the raw server's): a rewrite in
     * place of another size is seen by the very next open */
    CHECK(piocp_file_cache_new(&cache, root, t.root, 16, 0) == 0);
    check_cached(cache, "d/small.txt", "version two!");
    tree_file(&t, "d/small.txt", "v3");
    check_cached(cache, "d/small.txt", "v3");
    piocp_file_cache_free(cache);

    free(big);
    piocp_file_close(root);
    tree_remove(&t);
}

/* ---------------------------------------------------------- listing -- */

static bool contains(const char *hay, const char *needle)
{
    return strstr(hay, needle) != NULL;
}

static void test_listing(void)
{
    test_tree t;
    tree_init(&t, "listing");
    tree_dir(&t, "docs");
    tree_dir(&t, "docs/sub dir");
    tree_file(&t, "docs/a.txt", "a");
    tree_file(&t, "docs/caf\xc3\xa9 & co.txt", "b"); /* '<' is no name on Windows */
    piocp_file root = open_root(&t);
    piocp_file dir;
    const char *reason;
    CHECK(piocp_open_dir_beneath(root, "docs", 4, &dir, &reason) == 0);
    char *page = NULL;
    size_t len = 0;
    CHECK(piocp_http_listing(dir, "/docs/", 6, &page, &len) == 0);
    CHECK(strlen(page) == len);
    CHECK(contains(page, "<title>Index of /docs/</title>"));
    CHECK(contains(page, "<li><a href=\"../\">../</a></li>"));
    CHECK(contains(page, "<li><a href=\"a.txt\">a.txt</a></li>"));
    CHECK(contains(page, "<li><a href=\"sub%20dir/\">sub dir/</a></li>"));
    CHECK(contains(page, "<li><a href=\"caf%C3%A9%20%26%20co.txt\">"
                         "caf\xc3\xa9 &amp; co.txt</a></li>"));
    /* sorted by name: a.txt, caf..., sub dir */
    CHECK(strstr(page, "a.txt") < strstr(page, "caf"));
    CHECK(strstr(page, "caf") < strstr(page, "sub dir"));
    /* twice on the same handle: each listing has its own position */
    char *again = NULL;
    size_t again_len = 0;
    CHECK(piocp_http_listing(dir, "/docs/", 6, &again, &again_len) == 0);
    CHECK(again_len == len && memcmp(again, page, len) == 0);
    free(again);
    free(page);
    piocp_file_close(dir);
    piocp_file_close(root);
    tree_remove(&t);
}

/* ---------------------------------------------------------- serving -- */

static piocp_engine *start_engine(void)
{
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.windows_transmit = windows_transmit;
    return engine_on_backend(2, &cfg);
}


/* The body of an HTTP answer (after the blank line). */
static const char *body_of(const char *answer)
{
    const char *p = strstr(answer, "\r\n\r\n");
    CHECK(p != NULL);
    return p + 4;
}

static char *get(int port, const char *target, size_t *got)
{
    char request[512];
    snprintf(request, sizeof request, "GET %s HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
             target);
    return net_exchange(port, request, strlen(request), BIG_SIZE + 4096, got);
}

static void test_http_serve(void)
{
    net_init();
    test_tree t;
    tree_init(&t, "http");
    tree_dir(&t, "sub");
    tree_file(&t, "hello.txt", "hello, world\n");
    tree_file(&t, "sub/inner.html", "<p>inner</p>");
    char *big = big_content();
    tree_write(&t, "big.bin", big, BIG_SIZE);

    piocp_http_server *server;
    piocp_http_options options;
    piocp_http_options_init(&options);
    options.access_log_fd = tree_open_log(&t, "access.log");
    CHECK(piocp_http_server_new(&server, t.root, &options) == 0);
    piocp_engine *e = start_engine();
    int port = engine_listen_loopback(e, &piocp_http_server_callbacks, server);
    CHECK(piocp_engine_start(e) == 0);

    size_t len;
    char *a = get(port, "/hello.txt", &len);
    CHECK(strncmp(a, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(contains(a, "Content-Length: 13\r\n") && contains(a, "ETag: \""));
    CHECK(contains(a, "Content-Type: text/plain; charset=utf-8\r\n"));
    CHECK(strcmp(body_of(a), "hello, world\n") == 0);
    /* the validator it gave makes a conditional request a 304 */
    const char *etag = strstr(a, "ETag: ") + 6;
    char request[512];
    snprintf(request, sizeof request,
             "GET /hello.txt HTTP/1.1\r\nHost: t\r\nIf-None-Match: %.*s\r\n"
             "Connection: close\r\n\r\n", (int)(strchr(etag, '\r') - etag), etag);
    free(a);
    a = net_exchange(port, request, strlen(request), BIG_SIZE + 4096, &len);
    CHECK(strncmp(a, "HTTP/1.1 304 ", 13) == 0 && *body_of(a) == '\0');
    free(a);

    a = get(port, "/big.bin", &len);
    CHECK(strncmp(a, "HTTP/1.1 200 OK\r\n", 17) == 0);
    const char *body = body_of(a);
    CHECK(len - (size_t)(body - a) == BIG_SIZE && memcmp(body, big, BIG_SIZE) == 0);
    free(a);

    a = get(port, "/big.bin", &len); /* a cache hit, same bytes */
    body = body_of(a);
    CHECK(len - (size_t)(body - a) == BIG_SIZE && memcmp(body, big, BIG_SIZE) == 0);
    free(a);

    a = get(port, "/sub", &len);
    CHECK(strncmp(a, "HTTP/1.1 301 ", 13) == 0 && contains(a, "Location: /sub/\r\n"));
    free(a);

    a = get(port, "/", &len);
    CHECK(strncmp(a, "HTTP/1.1 200 OK\r\n", 17) == 0);
    CHECK(contains(a, "<a href=\"hello.txt\">hello.txt</a>"));
    CHECK(contains(a, "<a href=\"sub/\">sub/</a>"));
    free(a);

    a = get(port, "/sub/inner.html", &len);
    CHECK(strncmp(a, "HTTP/1.1 200 OK\r\n", 17) == 0 && strcmp(body_of(a), "<p>inner</p>") == 0);
    free(a);

    a = get(port, "/missing.txt", &len);
    CHECK(strncmp(a, "HTTP/1.1 404 ", 13) == 0);
    free(a);

    a = get(port, "/%2e%2e/hello.txt", &len);
    CHECK(strncmp(a, "HTTP/1.1 4", 10) == 0);
    free(a);
#ifdef _WIN32
    a = get(port, "/CON", &len);
    CHECK(strncmp(a, "HTTP/1.1 403 ", 13) == 0);
    free(a);
    a = get(port, "/hello.txt::$DATA", &len);
    CHECK(strncmp(a, "HTTP/1.1 403 ", 13) == 0);
    free(a);
    a = get(port, "/HELLO.TXT", &len); /* names without case, as NTFS */
    CHECK(strncmp(a, "HTTP/1.1 200 OK\r\n", 17) == 0);
    free(a);
#endif

    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    CHECK(piocp_http_server_requests(server) >= 9);
    piocp_http_server_free(server); /* writes out the access log */
    tree_close_log(options.access_log_fd);
    char log[8192];
    tree_read(&t, "access.log", log, sizeof log);
    CHECK(contains(log, "127.0.0.1 - - ["));
    CHECK(contains(log, " +0000] \"GET /hello.txt HTTP/1.1\" 200 13\n"));
    CHECK(contains(log, "\"GET /missing.txt HTTP/1.1\" 404 "));
    free(big);
    tree_remove(&t);
}

static void test_raw_serve(void)
{
    net_init();
    test_tree t;
    tree_init(&t, "raw");
    tree_file(&t, "hello.txt", "hello, world\n");
    char *big = big_content();
    tree_write(&t, "big.bin", big, BIG_SIZE);

    piocp_raw_server *server;
    piocp_raw_options options;
    piocp_raw_options_init(&options);
    CHECK(piocp_raw_server_new(&server, t.root, &options) == 0);
    piocp_engine *e = start_engine();
    int port = engine_listen_loopback(e, &piocp_raw_server_callbacks, server);
    CHECK(piocp_engine_start(e) == 0);

    piocp_socket s = net_connect_loopback(port);
    const char names[] = "hello.txt\nmissing\n../x\nbig.bin\n";
    CHECK(net_send_all(s, names, sizeof names - 1) == 0);
    char buf[256];
    CHECK(net_recv_exact(s, buf, 13) == 0 && memcmp(buf, "hello, world\n", 13) == 0);
    static const char missing[] = "ERROR: file not found\r\n";
    CHECK(net_recv_exact(s, buf, sizeof missing - 1) == 0);
    CHECK(memcmp(buf, missing, sizeof missing - 1) == 0);
    static const char escapes[] = "ERROR: path escapes root\r\n";
    CHECK(net_recv_exact(s, buf, sizeof escapes - 1) == 0);
    CHECK(memcmp(buf, escapes, sizeof escapes - 1) == 0);
    char *in = malloc(BIG_SIZE);
    CHECK(in != NULL);
    CHECK(net_recv_exact(s, in, BIG_SIZE) == 0 && memcmp(in, big, BIG_SIZE) == 0);
    free(in);
    net_close(s);

    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    piocp_raw_server_free(server);
    free(big);
    tree_remove(&t);
}

static const test_case cases[] = {
    {"confine_names", test_confine_names},
    {"confine_escape", test_confine_escape},
    {"file_cache", test_file_cache},
    {"listing", test_listing},
    {"http_serve", test_http_serve},
    {"raw_serve", test_raw_serve},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    if (argc > 3) {
        if (strcmp(argv[3], "transmitfile") == 0)
            windows_transmit = PIOCP_WINDOWS_TRANSMIT_FILE;
        else if (strcmp(argv[3], "read_send") == 0)
            windows_transmit = PIOCP_WINDOWS_TRANSMIT_READ_SEND;
        else
            escape_tree = argv[3];
    }
    return run_on_backend(argc, argv, cases);
}
