/*
 * log_format.h - pieces of access-log lines shared by the native handlers.
 * Internal, not part of the public API.
 */
#ifndef PIOCP_LOG_FORMAT_H
#define PIOCP_LOG_FORMAT_H

#include "pyiocp.h" /* struct sockaddr_storage, socklen_t on every platform */

#include <stddef.h>
#include <stdint.h>

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

/* Like piocp_log_escape, into at most `cap` bytes, whole escapes only:
 * stops before the first byte whose escape does not fit.  Returns the
 * bytes written; *used (if not NULL) gets the input bytes consumed. */
size_t piocp_log_escape_cut(char *dst, size_t cap, const char *src, size_t len, size_t *used);

/* Room for the text of any address piocp_log_host writes (Windows'
 * INET6_ADDRSTRLEN is 65), no NUL. */
#define PIOCP_LOG_HOST_MAX 72

/* The peer's address without port, as the access-log formats show it:
 * dotted IPv4, or IPv6 text without brackets (an IPv4-mapped address as
 * the IPv4 one); "-" if `peer` is NULL, too short for its family, or not
 * IPv4 or IPv6.  Writes no NUL; returns the length. */
size_t piocp_log_host(char out[PIOCP_LOG_HOST_MAX], const struct sockaddr_storage *peer,
                      socklen_t peer_len);

/* A UTC civil time, for the formats' own date layouts. */
typedef struct piocp_log_time {
    int year, month, day, hour, minute, second;
} piocp_log_time;

/* unix_seconds in UTC on the proleptic Gregorian calendar, clamped to the
 * years 0000-9999 (so every field has a fixed width).  No time zone
 * database, no locale. */
void piocp_log_utc(int64_t unix_seconds, piocp_log_time *out);

/* `v` as exactly `width` decimal digits (the low ones); returns the end.
 * Inline, as they were in clf.c before the formats shared them: a
 * Common Log Format line makes eight of these calls. */
static inline char *piocp_log_put_digits(char *p, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

/* `v` in decimal, at most 20 digits; returns the end. */
static inline char *piocp_log_put_u64(char *p, uint64_t v)
{
    char tmp[20];
    int n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = tmp[--n];
    return p;
}

#endif /* PIOCP_LOG_FORMAT_H */
