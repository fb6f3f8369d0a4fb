/*
 * path_confine.c (Windows) - open a client-supplied name strictly inside a
 * root (files/path_confine.h), without openat2.
 *
 * Windows has no "open beneath this handle" that refuses to leave it, so
 * the confinement is in two layers:
 *  - lexical, before any file system sees the name (files/path_names.c with
 *    Windows' rules): no "..", no '\\', no ':' (drive letters, alternate
 *    data streams), no reserved device names, no component ending in a dot
 *    or a space (Windows would strip it and open another name);
 *  - after the open, on the handle: its final path (GetFinalPathNameByHandleW,
 *    every symbolic link, junction and mount point resolved) must lie under
 *    the root's final path, compared without regard to case as the file
 *    system compares names, and it must be a disk file.  A link that leads
 *    out of the root is refused once opened, whatever it pointed to when
 *    the name was looked up: the handle is what gets served.
 * The name is joined to the root's final path behind "\\?\", which turns
 * off Win32's rewriting of names (no '.' or '..' folding, no trailing-dot
 * stripping, no MAX_PATH), so the file system gets exactly the checked
 * components.
 */
#include "files/path_confine.h"
#include "files/path_names.h"
#include "platform/windows/utf16.h"

#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* The longest path the W functions take with "\\?\", in wide characters. */
#define WIDE_PATH_MAX 32768

/* Others may read, write, rename and delete a served file while it is
 * open, as on POSIX: the file cache holds handles for a while, and that
 * must not lock files against being updated. */
#define SHARE_ALL (FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE)

static int fail(int err, const char *why, const char **reason)
{
    *reason = why;
    return -err;
}

/* Reason for a Win32 error of CreateFileW. */
static int fail_win32(DWORD code, const char **reason)
{
    switch (code) {
    case ERROR_FILE_NOT_FOUND:
    case ERROR_PATH_NOT_FOUND:
    case ERROR_DIRECTORY:         /* a file used as a directory: "file/x" */
    case ERROR_BAD_NETPATH:
        return fail(PIOCP_ENOENT, "file not found", reason);
    case ERROR_INVALID_NAME:      /* characters Windows refuses: <>"|?* and controls */
    case ERROR_BAD_PATHNAME:
        return fail(PIOCP_EINVAL, "invalid name", reason);
    case ERROR_FILENAME_EXCED_RANGE:
        return fail(PIOCP_ENAMETOOLONG, "name too long", reason);
    case ERROR_ACCESS_DENIED:
    case ERROR_SHARING_VIOLATION: /* opened by someone who shares nothing */
    case ERROR_LOCK_VIOLATION:
        return fail(PIOCP_EACCES, "permission denied", reason);
    case ERROR_CANT_RESOLVE_FILENAME: /* a loop of symbolic links */
        return fail(PIOCP_ELOOP, "symbolic link loop", reason);
    case ERROR_TOO_MANY_OPEN_FILES:
    case ERROR_NOT_ENOUGH_MEMORY:
    case ERROR_OUTOFMEMORY:
    case ERROR_NO_SYSTEM_RESOURCES:
        return fail(piocp_error_from_win32(code), "server out of resources", reason);
    default:
        return fail(piocp_error_from_win32(code), "cannot open file", reason);
    }
}

/* The final path of an open file or directory ("\\?\C:\dir\file"), without
 * a trailing '\\' (a drive's root has one): its length, or 0 on failure. */
static size_t final_path(HANDLE h, wchar_t *out, size_t cap)
{
    DWORD n = GetFinalPathNameByHandleW(h, out, (DWORD)cap, FILE_NAME_NORMALIZED | VOLUME_NAME_DOS);
    if (n == 0 || n >= cap)
        return 0;
    while (n > 0 && out[n - 1] == L'\\')
        n--;
    out[n] = L'\0';
    return n;
}

/* Whether `path` (len) is `root` (root_len) or lies under it.  Ordinal and
 * case-insensitive, as NTFS compares names (its upcase table), so that
 * "C:\Srv" and "c:\srv\x" agree. */
static bool is_beneath(const wchar_t *path, size_t len, const wchar_t *root, size_t root_len)
{
    if (len < root_len)
        return false;
    if (CompareStringOrdinal(path, (int)root_len, root, (int)root_len, TRUE) != CSTR_EQUAL)
        return false;
    return len == root_len || path[root_len] == L'\\';
}

/* Appends the name's components to the root's path in `path` (which holds
 * root_len characters), '\\'-separated, leaving out empty and "."
 * components (POSIX folds them; "\\?\" would hand them to the file
 * system).  The name passed check_name.  Returns the new length or -errno. */
static int join_name(wchar_t *path, size_t root_len, const char *name, size_t name_len)
{
    size_t len = root_len;
    size_t i = 0;
    while (i < name_len) {
        size_t end = i;
        while (end < name_len && name[end] != '/')
            end++;
        size_t part = end - i;
        if (part > 0 && !(part == 1 && name[i] == '.')) {
            if (len + 2 >= WIDE_PATH_MAX)
                return -PIOCP_ENAMETOOLONG;
            path[len++] = L'\\';
            int n = piocp_utf8_to_utf16(name + i, part, path + len, WIDE_PATH_MAX - len);
            if (n < 0)
                return n;
            len += (size_t)n;
        }
        i = end + 1;
    }
    path[len] = L'\0';
    return (int)len;
}

/* Opens `name` under `root` with CreateFileW (`access`, `flags`), checks
 * that the handle stayed under the root and is a disk file, and reads its
 * info.  The two paths (64 KiB each) are on the heap: workers' stacks are
 * not made for that. */
static int open_checked(HANDLE root, const char *name, size_t name_len, DWORD access, DWORD flags,
                        HANDLE *out, piocp_file_info *info, const char **reason)
{
    *out = INVALID_HANDLE_VALUE;
    wchar_t *root_path = malloc(2 * WIDE_PATH_MAX * sizeof(wchar_t));
    if (!root_path)
        return fail(PIOCP_ENOMEM, "server out of resources", reason);
    wchar_t *path = root_path + WIDE_PATH_MAX;
    int rc = 0;
    /* The root's path now, from its handle: a root renamed while served is
     * followed, as a POSIX directory descriptor would be. */
    size_t root_len = final_path(root, root_path, WIDE_PATH_MAX);
    if (root_len == 0) {
        rc = fail_win32(GetLastError() ? GetLastError() : ERROR_PATH_NOT_FOUND, reason);
        goto done;
    }
    memcpy(path, root_path, root_len * sizeof(wchar_t));
    int len = join_name(path, root_len, name, name_len);
    if (len < 0) {
        rc = fail(-len, len == -PIOCP_ENAMETOOLONG ? "name too long" : "invalid name", reason);
        goto done;
    }
    HANDLE h = CreateFileW(path, access, SHARE_ALL, NULL, OPEN_EXISTING, flags, NULL);
    if (h == INVALID_HANDLE_VALUE) {
        rc = fail_win32(GetLastError(), reason);
        goto done;
    }
    /* `path` is free again: it takes the handle's final path */
    size_t got = final_path(h, path, WIDE_PATH_MAX);
    if (got == 0) {
        rc = fail_win32(GetLastError(), reason);
    } else if (!is_beneath(path, got, root_path, root_len)) {
        rc = fail(PIOCP_EXDEV, "path escapes root", reason);
    } else if (GetFileType(h) != FILE_TYPE_DISK) {
        rc = fail(PIOCP_EINVAL, "not a regular file", reason);
    } else if ((rc = piocp_file_get_info(h, info)) < 0) {
        rc = fail(-rc, "cannot open file", reason);
    }
    if (rc < 0)
        CloseHandle(h);
    else
        *out = h;
done:
    free(root_path);
    return rc;
}

static int check_name(const char *name, size_t name_len, const char **reason)
{
    return piocp_check_served_name(name, name_len, PIOCP_SERVED_NAME_MAX, PIOCP_WINDOWS_NAME_RULES,
                                   reason);
}

int piocp_open_beneath(piocp_file root, const char *name, size_t name_len, piocp_file *out,
                       const char **reason, piocp_file_info *info_out)
{
    *out = PIOCP_INVALID_FILE;
    int rc = check_name(name, name_len, reason);
    if (rc < 0)
        return rc;
    piocp_file_info info;
    HANDLE h;
    /* No FILE_FLAG_BACKUP_SEMANTICS: a directory does not open.
     * FILE_FLAG_OVERLAPPED: the cache shares one handle between
     * connections, and a synchronous handle would serialise their reads
     * (the transmit reads at its own offsets either way). */
    rc = open_checked(root, name, name_len, GENERIC_READ, FILE_FLAG_OVERLAPPED, &h, &info,
                      reason);
    if (rc == -PIOCP_EACCES) {
        /* A directory refuses a plain open with "access denied": look
         * again with the directory flag and no data access, confined the
         * same way, to tell the two apart (HTTP redirects "/dir" to
         * "/dir/"). */
        const char *why;
        piocp_file_info probe_info;
        HANDLE probe;
        if (open_checked(root, name, name_len, FILE_READ_ATTRIBUTES, FILE_FLAG_BACKUP_SEMANTICS,
                         &probe, &probe_info, &why) == 0) {
            CloseHandle(probe);
            if (probe_info.kind == PIOCP_FILE_DIRECTORY)
                return fail(PIOCP_EISDIR, "not a regular file", reason);
        } else if (strcmp(why, "path escapes root") == 0) {
            return fail(PIOCP_EXDEV, why, reason);
        }
    }
    if (rc < 0)
        return rc;
    if (info.kind != PIOCP_FILE_REGULAR) {
        CloseHandle(h);
        return fail(info.kind == PIOCP_FILE_DIRECTORY ? PIOCP_EISDIR : PIOCP_EINVAL,
                    "not a regular file", reason);
    }
    *out = h;
    if (info_out)
        *info_out = info;
    return 0;
}

int piocp_open_dir_beneath(piocp_file root, const char *name, size_t name_len, piocp_file *out,
                           const char **reason)
{
    *out = PIOCP_INVALID_FILE;
    if (name_len > 0) {
        int rc = check_name(name, name_len, reason);
        if (rc < 0)
            return rc;
    }
    piocp_file_info info;
    HANDLE h;
    /* The directory flag, and a synchronous handle: enumerating it
     * (platform/windows/dir.c) waits for each batch of names. */
    int rc = open_checked(root, name, name_len, FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES |
                          SYNCHRONIZE, FILE_FLAG_BACKUP_SEMANTICS, &h, &info, reason);
    if (rc < 0)
        return rc;
    if (info.kind != PIOCP_FILE_DIRECTORY) {
        CloseHandle(h);
        return fail(PIOCP_ENOTDIR, "not a directory", reason);
    }
    *out = h;
    return 0;
}

int piocp_path_confine_uses_openat2(void)
{
    return 0;
}

void piocp_path_confine_force_fallback(int force)
{
    (void)force;
}
