/*
 * file.c (Windows) - see platform/file.h.
 */
#include "platform/file.h"
#include "platform/windows/utf16.h"

#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#include <stdlib.h>
#include <string.h>

/* 100 ns ticks from 1601-01-01 to 1970-01-01. */
#define EPOCH_DIFFERENCE_TICKS 116444736000000000LL

static int64_t ticks_to_unix_ns(int64_t ticks)
{
    return (ticks - EPOCH_DIFFERENCE_TICKS) * 100;
}

static int64_t filetime_to_unix_ns(FILETIME t)
{
    return ticks_to_unix_ns((int64_t)(((uint64_t)t.dwHighDateTime << 32) | t.dwLowDateTime));
}

static int last_error(void)
{
    return -piocp_error_from_win32(GetLastError());
}

int piocp_file_get_info(piocp_file file, piocp_file_info *out)
{
    BY_HANDLE_FILE_INFORMATION by_handle;
    if (!GetFileInformationByHandle(file, &by_handle))
        return last_error();
    out->size = ((uint64_t)by_handle.nFileSizeHigh << 32) | by_handle.nFileSizeLow;
    out->mtime_ns = filetime_to_unix_ns(by_handle.ftLastWriteTime);
    /* ChangeTime moves with metadata changes as ctime does, which the last
     * write time (settable by anyone who may write) does not; where the
     * file system does not keep one, the write time stands in. */
    FILE_BASIC_INFO basic;
    if (GetFileInformationByHandleEx(file, FileBasicInfo, &basic, sizeof basic) &&
        basic.ChangeTime.QuadPart != 0)
        out->ctime_ns = ticks_to_unix_ns(basic.ChangeTime.QuadPart);
    else
        out->ctime_ns = out->mtime_ns;
    out->device = by_handle.dwVolumeSerialNumber;
    out->file_id = ((uint64_t)by_handle.nFileIndexHigh << 32) | by_handle.nFileIndexLow;
    if (GetFileType(file) != FILE_TYPE_DISK)
        out->kind = PIOCP_FILE_OTHER;
    else if (by_handle.dwFileAttributes & FILE_ATTRIBUTE_DIRECTORY)
        out->kind = PIOCP_FILE_DIRECTORY;
    else
        out->kind = PIOCP_FILE_REGULAR;
    return 0;
}

void piocp_file_close(piocp_file file)
{
    CloseHandle(file);
}

ssize_t piocp_file_pread(piocp_file file, void *buf, size_t len, uint64_t offset)
{
    /* One ReadFile says at most a DWORD; callers read small files whole. */
    DWORD want = len > ((DWORD)1 << 30) ? ((DWORD)1 << 30) : (DWORD)len;
    /* An OVERLAPPED read works on synchronous and overlapped handles alike,
     * reads at its own offset and moves no shared file position. */
    HANDLE event = CreateEventW(NULL, TRUE, FALSE, NULL);
    if (!event)
        return last_error();
    OVERLAPPED ov;
    memset(&ov, 0, sizeof ov);
    ov.Offset = (DWORD)offset;
    ov.OffsetHigh = (DWORD)(offset >> 32);
    /* the low bit keeps the completion off any port the handle is on */
    ov.hEvent = (HANDLE)((ULONG_PTR)event | 1);
    DWORD got = 0;
    DWORD error = 0;
    if (!ReadFile(file, buf, want, &got, &ov)) {
        error = GetLastError();
        if (error == ERROR_IO_PENDING) {
            WaitForSingleObject(event, INFINITE);
            error = GetOverlappedResult(file, &ov, &got, FALSE) ? 0 : GetLastError();
        }
    }
    CloseHandle(event);
    if (error == ERROR_HANDLE_EOF)
        return 0;
    if (error)
        return -piocp_error_from_win32(error);
    return (ssize_t)got;
}

size_t piocp_file_write_all(piocp_file file, const void *buf, size_t len)
{
    const char *p = buf;
    size_t done = 0;
    while (done < len) {
        size_t left = len - done;
        DWORD chunk = left > ((DWORD)1 << 30) ? ((DWORD)1 << 30) : (DWORD)left;
        DWORD wrote = 0;
        if (!WriteFile(file, p + done, chunk, &wrote, NULL) || wrote == 0)
            break;
        done += wrote;
    }
    return done;
}

int piocp_dir_open_root(const char *path, piocp_file *out)
{
    size_t len = strlen(path);
    /* a path as long as the API allows (with "\\?\"): 32767 characters */
    size_t cap = len + 1 < 32768 ? len + 1 : 32768;
    wchar_t *wide = malloc(cap * sizeof *wide);
    if (!wide)
        return -PIOCP_ENOMEM;
    int rc = piocp_utf8_to_utf16(path, len, wide, cap);
    if (rc < 0) {
        free(wide);
        return rc;
    }
    /* FILE_FLAG_BACKUP_SEMANTICS: the only way to open a directory.  Others
     * may rename or delete it meanwhile (FILE_SHARE_DELETE), as on POSIX:
     * names are resolved from the handle's final path, which follows. */
    HANDLE h = CreateFileW(wide, FILE_LIST_DIRECTORY | FILE_READ_ATTRIBUTES | SYNCHRONIZE,
                           FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE, NULL,
                           OPEN_EXISTING, FILE_FLAG_BACKUP_SEMANTICS, NULL);
    free(wide);
    if (h == INVALID_HANDLE_VALUE)
        return last_error();
    piocp_file_info info;
    rc = piocp_file_get_info(h, &info);
    if (rc == 0 && info.kind != PIOCP_FILE_DIRECTORY)
        rc = -PIOCP_ENOTDIR;
    if (rc < 0) {
        CloseHandle(h);
        return rc;
    }
    *out = h;
    return 0;
}

uint64_t piocp_file_open_limit(void)
{
    return 0; /* handles are bounded by memory only (~16 million) */
}
