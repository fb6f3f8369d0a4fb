/* test_path_names.c - the lexical rules for client-supplied file names
 * (files/path_names.c), POSIX's and Windows' alike, on both platforms (the
 * rules are text: the Windows ones are checked on Linux too). */
#include "errors.h"
#include "files/path_names.h"
#include "test_check.h"

#include <stdbool.h>
#include <string.h>

static int check(const char *name, bool windows_rules, const char **reason)
{
    *reason = NULL;
    return piocp_check_served_name(name, strlen(name), 4096, windows_rules, reason);
}

/* Accepted under both rule sets. */
static const char *const fine_everywhere[] = {
    "a", "index.html", "dir/file.txt", "./a", "a/./b", "a..b", ".hidden", "con",
};

static void test_accepted(void)
{
    const char *reason;
    for (size_t i = 0; i < sizeof fine_everywhere / sizeof fine_everywhere[0]; i++) {
        const char *n = fine_everywhere[i];
        bool win = strcmp(n, "con") != 0; /* "con" is a device on Windows */
        CHECK(check(n, false, &reason) == 0);
        if (win)
            CHECK(check(n, true, &reason) == 0);
    }
    /* names POSIX allows that Windows must refuse, fine without its rules */
    static const char *const posix_only[] = {"a:b", "a\\b", "name.", "name ", "...", "nul.txt",
                                             "sub/COM1.log", "LPT9", "AUX"};
    for (size_t i = 0; i < sizeof posix_only / sizeof posix_only[0]; i++)
        CHECK(check(posix_only[i], false, &reason) == 0);
}

static void test_refused_everywhere(void)
{
    const char *reason;
    for (int win = 0; win <= 1; win++) {
        CHECK(check("", win, &reason) == -PIOCP_EINVAL);
        CHECK(strcmp(reason, "invalid name") == 0);
        CHECK(piocp_check_served_name("a\0b", 3, 4096, win, &reason) == -PIOCP_EINVAL);
        CHECK(check("/etc/passwd", win, &reason) == -PIOCP_EPERM);
        CHECK(strcmp(reason, "absolute path not allowed") == 0);
        CHECK(check("..", win, &reason) == -PIOCP_EXDEV);
        CHECK(strcmp(reason, "path escapes root") == 0);
        CHECK(check("../x", win, &reason) == -PIOCP_EXDEV);
        CHECK(check("a/../a", win, &reason) == -PIOCP_EXDEV);
        CHECK(check("a/..", win, &reason) == -PIOCP_EXDEV);
        CHECK(check("dir/", win, &reason) == -PIOCP_EISDIR);
        char long_name[5000];
        memset(long_name, 'a', sizeof long_name - 1);
        long_name[sizeof long_name - 1] = '\0';
        CHECK(check(long_name, win, &reason) == -PIOCP_ENAMETOOLONG);
    }
}

static void test_windows_rules(void)
{
    const char *reason;
    /* other separators, drives, streams */
    CHECK(check("\\windows\\win.ini", true, &reason) == -PIOCP_EPERM);
    CHECK(check("a\\..\\..\\b", true, &reason) == -PIOCP_EINVAL);
    CHECK(check("C:/x", true, &reason) == -PIOCP_EINVAL);
    CHECK(check("C:x", true, &reason) == -PIOCP_EINVAL);
    CHECK(check("file.txt::$DATA", true, &reason) == -PIOCP_EINVAL);
    CHECK(check("dir/file:stream", true, &reason) == -PIOCP_EINVAL);
    CHECK(strcmp(reason, "invalid name") == 0);
    /* trailing dots and spaces, which Windows strips */
    CHECK(check("secret.txt.", true, &reason) == -PIOCP_EINVAL);
    CHECK(check("secret.txt ", true, &reason) == -PIOCP_EINVAL);
    CHECK(check("dir./a", true, &reason) == -PIOCP_EINVAL);
    CHECK(check("dir /a", true, &reason) == -PIOCP_EINVAL);
    CHECK(check("..../a", true, &reason) == -PIOCP_EINVAL);
    /* device names, any case, with or without an extension, anywhere */
    static const char *const devices[] = {"CON", "con", "PRN", "aux", "NUL", "nul.txt",
                                          "COM1", "com9.log", "LPT1", "lpt5.tar.gz",
                                          "dir/CON", "a/b/nul.x", "CON .txt"};
    for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++) {
        CHECK(check(devices[i], true, &reason) == -PIOCP_EPERM);
        CHECK(strcmp(reason, "not a regular file") == 0);
    }
    /* near misses are plain names */
    static const char *const plain[] = {"CONSOLE", "com", "COM0", "COM10", "LPT", "nulls.txt",
                                        "xcon", "console.log", "auxiliary"};
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        CHECK(check(plain[i], true, &reason) == 0);
}

static const test_case cases[] = {
    {"accepted", test_accepted},
    {"refused_everywhere", test_refused_everywhere},
    {"windows_rules", test_windows_rules},
    {NULL, NULL},
};

int main(int argc, char **argv) { return run_test_main(cases, argc, argv); }
