/*
 * log_format.h - pieces of access-log lines shared by the native handlers.
 * Internal, not part of the public API.
 */
#ifndef PIOCP_LOG_FORMAT_H
#define PIOCP_LOG_FORMAT_H

#include "pyiocp.h" /* struct sockaddr_storage, socklen_t on every platform */

#ifdef _WIN32
#include <ws2tcpip.h> /* inet_ntop, IN6_IS_ADDR_V4MAPPED */
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#endif
#include <stddef.h>
#include <stdint.h>
#include <string.h>

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
 * IPv4 or IPv6.  Writes no NUL; returns the length.  Inline, as the
 * helpers below: every Common Log Format line is written with them, and
 * they were static in clf.c before the formats shared them. */
static inline size_t piocp_log_host(char out[PIOCP_LOG_HOST_MAX],
                                    const struct sockaddr_storage *peer, socklen_t peer_len)
{
    char ip[INET6_ADDRSTRLEN] = "";
    const char *text = NULL;
    if (peer == NULL) {
        /* "-" */
    } else if (peer_len >= (socklen_t)sizeof(struct sockaddr_in) &&
               peer->ss_family == AF_INET) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)peer;
        text = inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip);
    } else if (peer_len >= (socklen_t)sizeof(struct sockaddr_in6) &&
               peer->ss_family == AF_INET6) {
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)peer;
        if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr))
            text = inet_ntop(AF_INET, &sin6->sin6_addr.s6_addr[12], ip, sizeof ip);
        else
            text = inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip);
    }
    size_t n = text ? strlen(ip) : 0;
    if (n == 0 || n > PIOCP_LOG_HOST_MAX) {
        out[0] = '-';
        return 1;
    }
    memcpy(out, ip, n);
    return n;
}

/* A UTC civil time, for the formats' own date layouts. */
typedef struct piocp_log_time {
    int year, month, day, hour, minute, second;
} piocp_log_time;

/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z. */
#define PIOCP_LOG_TIME_MIN INT64_C(-62167219200)
#define PIOCP_LOG_TIME_MAX INT64_C(253402300799)

/* Floor division for a positive divisor. */
static inline int64_t piocp_log_floor_div_(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

/* unix_seconds in UTC on the proleptic Gregorian calendar, clamped to the
 * years 0000-9999 (so every field has a fixed width).  No time zone
 * database, no locale. */
static inline void piocp_log_utc(int64_t t, piocp_log_time *out)
{
    if (t < PIOCP_LOG_TIME_MIN)
        t = PIOCP_LOG_TIME_MIN;
    if (t > PIOCP_LOG_TIME_MAX)
        t = PIOCP_LOG_TIME_MAX;
    int64_t days = piocp_log_floor_div_(t, 86400), secs = t - days * 86400;
    /* The proleptic Gregorian date `days` days after 1970-01-01, computed
     * in 400-year cycles that start on a 1 March (so the leap day ends a
     * year). */
    int64_t z = days + 719468;                 /* days since 0000-03-01 */
    int64_t cycle = piocp_log_floor_div_(z, 146097);
    int64_t doc = z - cycle * 146097;          /* day of cycle, [0, 146096] */
    int64_t yoc = (doc - doc / 1460 + doc / 36524 - doc / 146096) / 365; /* [0, 399] */
    int64_t doy = doc - (365 * yoc + yoc / 4 - yoc / 100); /* from 1 March, [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;          /* month from March, [0, 11] */
    out->day = (int)(doy - (153 * mp + 2) / 5 + 1);
    out->month = (int)(mp < 10 ? mp + 3 : mp - 9);
    out->year = (int)(yoc + cycle * 400 + (out->month <= 2));
    out->hour = (int)(secs / 3600);
    out->minute = (int)(secs / 60 % 60);
    out->second = (int)(secs % 60);
}

/* `v` as exactly `width` decimal digits (the low ones); returns the end. */
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
