/* test_files.h - a temporary tree of files for the C tests that run on
 * every platform (under Wine too): names in UTF-8 with '/' everywhere,
 * CreateFileW and friends on Windows, POSIX calls elsewhere.  What a case
 * makes is removed again by tree_remove, newest first. */
#ifndef PYIOCP_TEST_FILES_H
#define PYIOCP_TEST_FILES_H

#include "pyiocp.h"
#include "test_check.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#ifdef _WIN32
#include <windows.h>
#else
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>
#endif

#define TREE_MAX 64

typedef struct test_tree {
    char root[1024];             /* UTF-8, the platform's separators */
    char made[TREE_MAX][256];    /* relative names, '/'-separated */
    bool is_dir[TREE_MAX];
    int count;
} test_tree;

/* root + '/' + rel in the platform's form. */
static inline void tree_path(const test_tree *t, const char *rel, char *out, size_t cap)
{
    int n = snprintf(out, cap, "%s/%s", t->root, rel);
    CHECK(n > 0 && (size_t)n < cap);
#ifdef _WIN32
    for (char *p = out; *p; p++)
        if (*p == '/')
            *p = '\\';
#endif
}

#ifdef _WIN32
static inline void to_wide(const char *s, wchar_t *out, int cap)
{
    CHECK(MultiByteToWideChar(CP_UTF8, MB_ERR_INVALID_CHARS, s, -1, out, cap) > 0);
}
#endif

/* A new empty directory under the system's temporary one. */
static inline void tree_init(test_tree *t, const char *tag)
{
    memset(t, 0, sizeof *t);
#ifdef _WIN32
    wchar_t dir[MAX_PATH + 1];
    CHECK(GetTempPathW(MAX_PATH + 1, dir) > 0);
    char base[MAX_PATH * 3];
    CHECK(WideCharToMultiByte(CP_UTF8, 0, dir, -1, base, sizeof base, NULL, NULL) > 0);
    size_t len = strlen(base);
    if (len && base[len - 1] == '\\')
        base[len - 1] = '\0';
    snprintf(t->root, sizeof t->root, "%s\\pyiocp-%s-%lu-%lu", base, tag,
             (unsigned long)GetCurrentProcessId(), (unsigned long)GetTickCount());
    wchar_t wroot[1024];
    to_wide(t->root, wroot, 1024);
    CHECK(CreateDirectoryW(wroot, NULL));
#else
    const char *dir = getenv("TMPDIR");
    snprintf(t->root, sizeof t->root, "%s/pyiocp-%s-XXXXXX", dir && *dir ? dir : "/tmp", tag);
    CHECK(mkdtemp(t->root) != NULL);
#endif
}

static inline void tree_note(test_tree *t, const char *rel, bool is_dir)
{
    for (int i = 0; i < t->count; i++)
        if (strcmp(t->made[i], rel) == 0)
            return;
    CHECK(t->count < TREE_MAX && strlen(rel) < sizeof t->made[0]);
    strcpy(t->made[t->count], rel);
    t->is_dir[t->count++] = is_dir;
}

static inline void tree_dir(test_tree *t, const char *rel)
{
    char path[2048];
    tree_path(t, rel, path, sizeof path);
#ifdef _WIN32
    wchar_t w[2048];
    to_wide(path, w, 2048);
    CHECK(CreateDirectoryW(w, NULL));
#else
    CHECK(mkdir(path, 0755) == 0);
#endif
    tree_note(t, rel, true);
}

/* Writes `len` bytes to the file `rel`, creating or truncating it in place
 * (the same file, not a new one). */
static inline void tree_write(test_tree *t, const char *rel, const void *data, size_t len)
{
    char path[2048];
    tree_path(t, rel, path, sizeof path);
#ifdef _WIN32
    wchar_t w[2048];
    to_wide(path, w, 2048);
    /* shared like the server's handles, so writing in place works while
     * the server holds the file open */
    HANDLE h = CreateFileW(w, GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                           NULL, OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    CHECK(h != INVALID_HANDLE_VALUE);
    CHECK(SetEndOfFile(h));
    DWORD n = 0;
    CHECK(len == 0 || (WriteFile(h, data, (DWORD)len, &n, NULL) && n == len));
    CloseHandle(h);
#else
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    CHECK(len == 0 || write(fd, data, len) == (ssize_t)len);
    close(fd);
#endif
    tree_note(t, rel, false);
}

static inline void tree_file(test_tree *t, const char *rel, const char *text)
{
    tree_write(t, rel, text, strlen(text));
}

/* Replaces `rel` by a new file (written aside, then renamed over it), as
 * deployments do: the old file lives on for whoever holds it open. */
static inline void tree_replace(test_tree *t, const char *rel, const char *text)
{
    char aside[300];
    snprintf(aside, sizeof aside, "%s.new", rel);
    tree_file(t, aside, text);
    char from[2048], to[2048];
    tree_path(t, aside, from, sizeof from);
    tree_path(t, rel, to, sizeof to);
#ifdef _WIN32
    wchar_t wf[2048], wt[2048];
    to_wide(from, wf, 2048);
    to_wide(to, wt, 2048);
    if (!MoveFileExW(wf, wt, MOVEFILE_REPLACE_EXISTING)) {
        /* Without POSIX rename semantics (Windows before 10, Wine) a file
         * open anywhere cannot be renamed over, even shared for delete;
         * it can still be renamed away first. */
        fprintf(stderr, "note: MoveFileExW over an open file: error %lu; moving it away first\n",
                (unsigned long)GetLastError());
        char old[2048];
        snprintf(old, sizeof old, "%s.old", to);
        wchar_t wo[2048];
        to_wide(old, wo, 2048);
        CHECK(MoveFileExW(wt, wo, MOVEFILE_REPLACE_EXISTING));
        CHECK(MoveFileExW(wf, wt, 0));
        char rel_old[300];
        snprintf(rel_old, sizeof rel_old, "%s.old", rel);
        tree_note(t, rel_old, false);
    }
#else
    CHECK(rename(from, to) == 0);
#endif
    tree_note(t, rel, false);
}

/* A new empty file `rel` open for writing, as a log target: a synchronous
 * handle on Windows (what the access log wants), a descriptor elsewhere. */
static inline piocp_file tree_open_log(test_tree *t, const char *rel)
{
    char path[2048];
    tree_path(t, rel, path, sizeof path);
    tree_note(t, rel, false);
#ifdef _WIN32
    wchar_t w[2048];
    to_wide(path, w, 2048);
    HANDLE h = CreateFileW(w, GENERIC_WRITE, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                           NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
    CHECK(h != INVALID_HANDLE_VALUE);
    return h;
#else
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    return fd;
#endif
}

static inline void tree_close_log(piocp_file f)
{
#ifdef _WIN32
    CloseHandle(f);
#else
    close(f);
#endif
}

/* Reads the file `rel` (at most cap - 1 bytes), NUL-terminated: its length. */
static inline size_t tree_read(const test_tree *t, const char *rel, char *buf, size_t cap)
{
    char path[2048];
    tree_path(t, rel, path, sizeof path);
    size_t len = 0;
#ifdef _WIN32
    wchar_t w[2048];
    to_wide(path, w, 2048);
    HANDLE h = CreateFileW(w, GENERIC_READ, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                           NULL, OPEN_EXISTING, FILE_ATTRIBUTE_NORMAL, NULL);
    CHECK(h != INVALID_HANDLE_VALUE);
    DWORD n = 0;
    while (len + 1 < cap && ReadFile(h, buf + len, (DWORD)(cap - 1 - len), &n, NULL) && n > 0)
        len += n;
    CloseHandle(h);
#else
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    CHECK(fd >= 0);
    ssize_t n;
    while (len + 1 < cap && (n = read(fd, buf + len, cap - 1 - len)) > 0)
        len += (size_t)n;
    close(fd);
#endif
    buf[len] = '\0';
    return len;
}

/* Removes what the case made, newest first, then the root. */
static inline void tree_remove(test_tree *t)
{
    for (int i = t->count - 1; i >= 0; i--) {
        char path[2048];
        tree_path(t, t->made[i], path, sizeof path);
#ifdef _WIN32
        wchar_t w[2048];
        to_wide(path, w, 2048);
        if (t->is_dir[i])
            RemoveDirectoryW(w);
        else
            DeleteFileW(w);
#else
        if (t->is_dir[i])
            rmdir(path);
        else
            unlink(path);
#endif
    }
#ifdef _WIN32
    wchar_t w[1024];
    to_wide(t->root, w, 1024);
    RemoveDirectoryW(w);
#else
    rmdir(t->root);
#endif
}

#endif
