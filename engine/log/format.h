/*
 * log_format.h - pieces of access-log lines shared by the native handlers.
 * Internal, not part of the public API.
 */
#ifndef PIOCP_LOG_FORMAT_H
#define PIOCP_LOG_FORMAT_H

#include "pyiocp.h" /* struct sockaddr_storage, socklen_t on every platform */

#include <stddef.h>

/* "[" + IPv6 text + "]:" + port, NUL included, with room to spare. */
#define PIOCP_LOG_PEER_MAX 64

/* Writes "a.b.c.d:port", "[v6]:port", or "-" for other families. */
void piocp_log_peer(const struct sockaddr_storage *addr, socklen_t addrlen,
                    char out[PIOCP_LOG_PEER_MAX]);

/* Worst-case output size of piocp_log_escape for `len` input bytes. */
#define PIOCP_LOG_ESCAPED_MAX(len) ((len) * 4)

/* Copies printable ASCII as is and writes every other byte, and '"' and
 * '\\' (so a quoted field stays unambiguous), as \xNN.  `dst` needs
 * PIOCP_LOG_ESCAPED_MAX(len) bytes; returns the bytes written (no NUL). */
size_t piocp_log_escape(char *dst, const char *src, size_t len);

#endif /* PIOCP_LOG_FORMAT_H */
