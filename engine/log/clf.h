/*
 * log_clf.h - access-log lines in the Common Log Format.
 *
 * Internal to the engine's native handlers; not part of the public API.
 */
#ifndef PIOCP_LOG_CLF_H
#define PIOCP_LOG_CLF_H

#include "pyiocp.h" /* struct sockaddr_storage, socklen_t on every platform */

#include <stddef.h>
#include <stdint.h>

/* Room for any line whose request line is at most n bytes (NUL included). */
#define PIOCP_CLF_LINE_MAX(n) (128 + 4 * (size_t)(n))

/*
 * Writes into out[0..cap) one NUL-terminated line
 *
 *   127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] "GET /a.html HTTP/1.1" 200 2326\n
 *
 * and returns its length without the NUL (0 when cap is 0).
 *
 * The host is the peer's address: dotted IPv4, or IPv6 text without
 * brackets (an IPv4-mapped IPv6 address is written as the IPv4 address);
 * "-" if `peer` is NULL, too short for its family, or not IPv4 or IPv6.
 * The time is unix_seconds in UTC, clamped to the years 0000-9999.  The
 * request line (request_line_len bytes; NULL allowed when 0) is escaped as
 * by piocp_log_escape: '"', '\\' and every byte that is not printable
 * ASCII become \xNN, so the line cannot be forged or split; an empty one
 * is logged as "-", as Apache does.  `bytes` 0 is written as "-".
 *
 * When the line does not fit, the request line is cut (never inside an
 * escape) so that the rest still does; with even less room the line is
 * cut at the end.  Either way it ends with '\n' whenever cap >= 2.
 * No allocation, no locale, thread-safe.
 */
size_t piocp_clf_line(char *out, size_t cap, const struct sockaddr_storage *peer,
                      socklen_t peer_len, int64_t unix_seconds, const char *request_line,
                      size_t request_line_len, int status, uint64_t bytes);

#endif /* PIOCP_LOG_CLF_H */
