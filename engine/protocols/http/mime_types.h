/*
 * mime_types.h - the Content-Type of a served file, by its extension.
 *
 * Internal to the engine's native handlers; not part of the public API.
 */
#ifndef PIOCP_MIME_TYPES_H
#define PIOCP_MIME_TYPES_H

#include <stddef.h>

/* What piocp_mime_type returns for a name it has no type for. */
#define PIOCP_MIME_DEFAULT "application/octet-stream"

/*
 * Returns the Content-Type for the file name `name` (name_len bytes, need
 * not be NUL-terminated; NULL is allowed when name_len is 0), a static
 * string.  The extension is what follows the last '.' of the last path
 * segment (after the last '/'), compared without regard to ASCII case.
 * As with Python's os.path.splitext, the leading dots of a segment do not
 * start an extension: ".bashrc" and ".html" have none.  A name without an
 * extension, or with one that is not known, gets PIOCP_MIME_DEFAULT.
 * Text types carry "; charset=utf-8".
 *
 * No allocation, no locale, thread-safe: a binary search over a static
 * table.
 */
const char *piocp_mime_type(const char *name, size_t name_len);

/* Test hook: 0 if the table is strictly sorted and every entry in it is
 * found by piocp_mime_type, else the 1-based index of the first bad entry. */
size_t piocp_mime_table_check(void);

#endif /* PIOCP_MIME_TYPES_H */
