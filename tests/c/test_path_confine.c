/*
 * test_path_confine.c - piocp_open_beneath against a tree of traps.
 *
 * Build and run:
 *   gcc -std=c11 -D_GNU_SOURCE -Wall -Wextra -fsanitize=address,undefined -g \
 *       -Iengine tests/c/test_path_confine.c engine/platform/posix/path_confine.c \
 *       engine/platform/posix/file.c engine/files/path_names.c -o /tmp/tpc
 *   /tmp/tpc
 *
 * Every case runs twice: with openat2 (where the kernel has it) and with
 * the fallback walk forced, where every symbolic link is refused.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "files/path_confine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int failures;

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static void make_file(int root, const char *name, const char *content)
{
    int fd = openat(root, name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0)
        die(name);
    size_t len = strlen(content);
    if (write(fd, content, len) != (ssize_t)len)
        die("write");
    close(fd);
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL: timed out (did opening the FIFO block?)\n";
    ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)n;
    _exit(1);
}

static int count_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        die("/proc/self/fd");
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

/* Expects success and that the descriptor reads `content`. */
static void expect_ok(int root, const char *name, size_t len, const char *content,
                      const char *mode)
{
    int fd = -2;
    const char *reason = "(unset)";
    int rc = piocp_open_beneath(root, name, len, &fd, &reason, NULL);
    if (rc != 0 || fd < 0) {
        fprintf(stderr, "FAIL [%s] %.*s: expected success, got %d (%s)\n", mode, (int)len,
                name, rc, reason);
        failures++;
        return;
    }
    char buf[64] = {0};
    ssize_t n = read(fd, buf, sizeof buf - 1);
    if (n < 0 || strcmp(buf, content) != 0) {
        fprintf(stderr, "FAIL [%s] %.*s: read \"%s\", expected \"%s\"\n", mode, (int)len, name,
                buf, content);
        failures++;
    }
    int flags = fcntl(fd, F_GETFD);
    if (flags < 0 || !(flags & FD_CLOEXEC)) {
        fprintf(stderr, "FAIL [%s] %.*s: descriptor lacks FD_CLOEXEC\n", mode, (int)len, name);
        failures++;
    }
    close(fd);
}

static void expect_err(int root, const char *name, size_t len, const char *want_reason,
                       const char *mode)
{
    int fd = -2;
    const char *reason = NULL;
    int rc = piocp_open_beneath(root, name, len, &fd, &reason, NULL);
    if (rc >= 0) {
        fprintf(stderr, "FAIL [%s] %.*s: expected \"%s\", but it opened\n", mode, (int)len, name,
                want_reason);
        failures++;
        if (fd >= 0)
            close(fd);
        return;
    }
    if (fd != -1) {
        fprintf(stderr, "FAIL [%s] %.*s: *out_fd is %d after failure, expected -1\n", mode,
                (int)len, name, fd);
        failures++;
    }
    if (reason == NULL || strcmp(reason, want_reason) != 0) {
        fprintf(stderr, "FAIL [%s] %.*s: reason \"%s\", expected \"%s\" (rc %d)\n", mode,
                (int)len, name, reason ? reason : "(null)", want_reason, rc);
        failures++;
    }
}

#define OK(name, content) expect_ok(root, name, strlen(name), content, mode)
#define ERR(name, why) expect_err(root, name, strlen(name), why, mode)

static void run_cases(int root, int openat2_mode)
{
    const char *mode = openat2_mode ? "openat2" : "fallback";
    const char *link_refused = "symbolic link not allowed";

    OK("file", "top");
    OK("./file", "top");
    OK("sub/file", "inner");
    OK("sub//file", "inner");
    OK("..dots", "dots"); /* looks like ".." but is a plain name */
    expect_ok(root, "fileXYZ", 4, "top", mode); /* name_len is honoured */

    if (openat2_mode) {
        OK("link_in", "top");
        OK("sublink/file", "inner");
        ERR("link_out", "path escapes root");
        ERR("sublink_out/passwd", "path escapes root");
    } else {
        ERR("link_in", link_refused);
        ERR("sublink/file", link_refused);
        ERR("link_out", link_refused);
        ERR("sublink_out/passwd", link_refused);
    }

    ERR("../x", "path escapes root");
    ERR("..", "path escapes root");
    ERR("a/../../x", "path escapes root");
    ERR("sub/../file", "path escapes root");
    ERR("sub/..", "path escapes root");
    ERR("/etc/passwd", "absolute path not allowed");

    ERR("fifo", "not a regular file"); /* would block without O_NONBLOCK */
    ERR("sub", "not a regular file");
    ERR("sub/", "not a regular file");
    ERR(".", "not a regular file");

    ERR("missing", "file not found");
    ERR("sub/missing", "file not found");
    ERR("file/x", "file not found");

    ERR("", "invalid name");
    expect_err(root, "fi\0le", 5, "invalid name", mode);

    static char longname[PATH_MAX + 10];
    memset(longname, 'a', sizeof longname - 1);
    ERR(longname, "name too long");
    longname[300] = '\0'; /* fits PATH_MAX, but not NAME_MAX */
    ERR(longname, "name too long");
}

int main(void)
{
    /* A FIFO opened without O_NONBLOCK would hang forever; turn that into
     * a visible failure. */
    signal(SIGALRM, on_alarm);
    alarm(20);

    char tmpl[] = "/tmp/test_path_confine.XXXXXX";
    if (mkdtemp(tmpl) == NULL)
        die("mkdtemp");
    int root = open(tmpl, O_DIRECTORY | O_RDONLY | O_CLOEXEC);
    if (root < 0)
        die(tmpl);

    if (mkdirat(root, "sub", 0755) < 0)
        die("mkdir sub");
    make_file(root, "file", "top");
    make_file(root, "sub/file", "inner");
    make_file(root, "..dots", "dots");
    if (symlinkat("file", root, "link_in") < 0 || symlinkat("sub", root, "sublink") < 0 ||
        symlinkat("/etc/passwd", root, "link_out") < 0 ||
        symlinkat("/etc", root, "sublink_out") < 0)
        die("symlink");
    if (mkfifoat(root, "fifo", 0644) < 0)
        die("mkfifo");

    int fds_before = count_fds();

    int have_openat2 = piocp_path_confine_uses_openat2();
    if (have_openat2)
        run_cases(root, 1);
    else
        printf("openat2 unavailable here: only the fallback walk is tested\n");

    piocp_path_confine_force_fallback(1);
    if (piocp_path_confine_uses_openat2()) {
        fprintf(stderr, "FAIL: force_fallback(1) still reports openat2\n");
        failures++;
    }
    run_cases(root, 0);
    piocp_path_confine_force_fallback(0);
    if (piocp_path_confine_uses_openat2() != have_openat2) {
        fprintf(stderr, "FAIL: force_fallback(0) did not restore detection\n");
        failures++;
    }

    int fds_after = count_fds();
    if (fds_after != fds_before) {
        fprintf(stderr, "FAIL: %d descriptors before, %d after: leak\n", fds_before, fds_after);
        failures++;
    }

    /* Clean up the tree (best effort). */
    const char *entries[] = {"sub/file", "file", "..dots", "link_in", "sublink",
                             "link_out", "sublink_out", "fifo"};
    for (size_t i = 0; i < sizeof entries / sizeof entries[0]; i++)
        unlinkat(root, entries[i], 0);
    unlinkat(root, "sub", AT_REMOVEDIR);
    close(root);
    rmdir(tmpl);

    if (failures) {
        fprintf(stderr, "test_path_confine: %d failure(s)\n", failures);
        return 1;
    }
    printf("test_path_confine: ok (openat2 %s)\n", have_openat2 ? "tested" : "not available");
    return 0;
}
