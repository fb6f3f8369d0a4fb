/*
 * dir.c (Windows) - see platform/dir.h.
 *
 * The names come from the open handle (GetFileInformationByHandleEx,
 * FileFullDirectoryInfo), not from FindFirstFileW on a path: the handle is
 * the directory path confinement checked, while a path could have been
 * swapped for a junction to elsewhere in between.
 */
#include "platform/dir.h"

#define WIN32_LEAN_AND_MEAN
#include <windows.h>

#include <stdlib.h>

/* Names come in batches of this many bytes (a few hundred entries). */
#define BATCH_BYTES (64 * 1024)
/* A name is at most 255 UTF-16 units: at most 3 bytes each in UTF-8. */
#define NAME_BYTES (3 * 256 + 1)

void piocp_dir_list_force_stat(int force)
{
    (void)force; /* the type always comes with the name */
}

/* Hands one entry to `each`, unless it is "." or "..". */
static int visit(const FILE_FULL_DIR_INFO *info, piocp_dir_entry_fn each, void *user)
{
    const wchar_t *w = info->FileName;
    int units = (int)(info->FileNameLength / sizeof(wchar_t));
    if ((units == 1 && w[0] == L'.') || (units == 2 && w[0] == L'.' && w[1] == L'.'))
        return 0;
    char name[NAME_BYTES];
    /* flags 0: an unpaired surrogate (legal in NTFS names) becomes U+FFFD
     * instead of hiding the entry */
    int n = units ? WideCharToMultiByte(CP_UTF8, 0, w, units, name, NAME_BYTES - 1, NULL, NULL)
                  : 0;
    if (n <= 0)
        return 0; /* longer than Windows allows: not listable */
    name[n] = '\0';
    DWORD attributes = info->FileAttributes;
    bool is_dir = (attributes & FILE_ATTRIBUTE_DIRECTORY) &&
                  !(attributes & FILE_ATTRIBUTE_REPARSE_POINT);
    return each(user, name, (size_t)n, is_dir);
}

int piocp_dir_list(piocp_file dir, piocp_dir_entry_fn each, void *user)
{
    /* The enumeration position lives in the handle: a handle of our own,
     * re-opened from the caller's (same directory, no name looked up). */
    HANDLE h = ReOpenFile(dir, FILE_LIST_DIRECTORY | SYNCHRONIZE,
                          FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                          FILE_FLAG_BACKUP_SEMANTICS);
    if (h == INVALID_HANDLE_VALUE)
        return -piocp_error_from_win32(GetLastError());
    char *batch = malloc(BATCH_BYTES); /* malloc's alignment suits the records */
    if (!batch) {
        CloseHandle(h);
        return -PIOCP_ENOMEM;
    }
    int rc = 0;
    FILE_INFO_BY_HANDLE_CLASS class = FileFullDirectoryRestartInfo;
    while (rc == 0) {
        if (!GetFileInformationByHandleEx(h, class, batch, BATCH_BYTES)) {
            DWORD error = GetLastError();
            if (error != ERROR_NO_MORE_FILES)
                rc = error == ERROR_INVALID_PARAMETER ? -PIOCP_ENOTDIR
                                                      : -piocp_error_from_win32(error);
            break;
        }
        class = FileFullDirectoryInfo;
        const char *p = batch;
        for (;;) {
            const FILE_FULL_DIR_INFO *info = (const FILE_FULL_DIR_INFO *)p;
            rc = visit(info, each, user);
            if (rc != 0 || info->NextEntryOffset == 0)
                break;
            p += info->NextEntryOffset;
        }
    }
    free(batch);
    CloseHandle(h);
    return rc;
}
