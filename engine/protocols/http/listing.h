/*
 * http_listing.h - the HTML page listing a served directory.
 *
 * Internal to the engine's native handlers; not part of the public API.
 */
#ifndef PIOCP_HTTP_LISTING_H
#define PIOCP_HTTP_LISTING_H

#include "pyiocp.h"

#include <stddef.h>

/* At most this many entries are listed (then the page says so). */
#define PIOCP_HTTP_LISTING_MAX 10000

/*
 * Builds an HTML5 page listing the directory open at `dir`, which stays
 * the caller's: it is neither closed nor moved (platform/dir.h re-opens it
 * for an enumeration position of its own, so any number of threads may
 * list the same directory at once; an O_PATH descriptor will do).  `url_path` (url_path_len bytes, need not be NUL-terminated) is the
 * decoded URL path of the directory, starting and ending with '/'; the
 * page is titled "Index of " + url_path.
 *
 * Entries are sorted by name in byte order; "." is left out, and "../" is
 * listed first unless url_path is "/".  Directories get a trailing '/' in
 * their text and link; a symbolic link is listed by its own name, without
 * one.  Links are relative, and every byte of a name except A-Z a-z 0-9
 * - . _ ~ is percent-encoded in them.  In the text, & < > " ' become
 * character references, and control characters and bytes that are not
 * valid UTF-8 become U+FFFD, so that the page is valid UTF-8 whatever the
 * names hold.  A directory of more than PIOCP_HTTP_LISTING_MAX entries
 * lists the first PIOCP_HTTP_LISTING_MAX read (sorted) and says
 * "(listing truncated)".
 *
 * Returns 0 and stores in *out a malloc'd, NUL-terminated page (the caller
 * frees it) and in *out_len its length without the NUL; or returns -errno
 * (-EINVAL for a url_path that does not start and end with '/', -ENOMEM,
 * or what the directory walk failed with) and stores NULL and 0.  Thread-safe.
 */
int piocp_http_listing(piocp_file dir, const char *url_path, size_t url_path_len, char **out,
                       size_t *out_len);

/* Test hook (POSIX): non-zero makes every entry's type come from fstatat,
 * as when the file system reports DT_UNKNOWN; zero restores d_type
 * (piocp_dir_list_force_stat). */
void piocp_http_listing_force_stat(int force);

#endif /* PIOCP_HTTP_LISTING_H */
