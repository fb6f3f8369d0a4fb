/*
 * log_format.c - the pieces every access-log format is made of: peer
 * addresses, escaped client bytes, UTC dates and numbers, written by hand
 * (no stdio on the per-line path, no locale, no time zone database).
 *
 * Client-supplied bytes are escaped before they reach the log so that a
 * name cannot forge extra lines or terminal escapes in it.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "log/format.h"

#ifdef _WIN32
#include <ws2tcpip.h> /* inet_ntop, IN6_IS_ADDR_V4MAPPED */
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#endif
#include <stdio.h>
#include <string.h>

void piocp_log_peer(const struct sockaddr_storage *addr, socklen_t addrlen,
                    char out[PIOCP_LOG_PEER_MAX])
{
    char ip[INET6_ADDRSTRLEN];

    if (addr->ss_family == AF_INET && addrlen >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *sin = (const struct sockaddr_in *)addr;
        if (inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof ip) != NULL) {
            snprintf(out, PIOCP_LOG_PEER_MAX, "%s:%u", ip, (unsigned)ntohs(sin->sin_port));
            return;
        }
    } else if (addr->ss_family == AF_INET6 &&
               addrlen >= (socklen_t)sizeof(struct sockaddr_in6)) {
        /* Brackets keep the port apart from the colons of the address. */
        const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)addr;
        if (inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof ip) != NULL) {
            snprintf(out, PIOCP_LOG_PEER_MAX, "[%s]:%u", ip, (unsigned)ntohs(sin6->sin6_port));
            return;
        }
    }
    strcpy(out, "-");
}

size_t piocp_log_escape(char *dst, const char *src, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    char *d = dst;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)src[i];
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            *d++ = (char)c;
        } else {
            *d++ = '\\';
            *d++ = 'x';
            *d++ = hex[c >> 4];
            *d++ = hex[c & 0xf];
        }
    }
    return (size_t)(d - dst);
}

size_t piocp_log_escape_cut(char *dst, size_t cap, const char *src, size_t len, size_t *used)
{
    size_t out = 0, i = 0;
    /* Whole input when it surely fits; byte by byte only near the edge. */
    if (len <= cap / PIOCP_LOG_ESCAPED_MAX(1)) {
        out = piocp_log_escape(dst, src, len);
        i = len;
    } else {
        for (; i < len; i++) {
            char esc[PIOCP_LOG_ESCAPED_MAX(1)];
            size_t n = piocp_log_escape(esc, src + i, 1);
            if (n > cap - out)
                break;
            memcpy(dst + out, esc, n);
            out += n;
        }
    }
    if (used)
        *used = i;
    return out;
}

size_t piocp_log_host(char out[PIOCP_LOG_HOST_MAX], const struct sockaddr_storage *peer,
                      socklen_t peer_len)
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

/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z. */
#define LOG_TIME_MIN INT64_C(-62167219200)
#define LOG_TIME_MAX INT64_C(253402300799)

/* Floor division for a positive divisor. */
static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

void piocp_log_utc(int64_t t, piocp_log_time *out)
{
    if (t < LOG_TIME_MIN)
        t = LOG_TIME_MIN;
    if (t > LOG_TIME_MAX)
        t = LOG_TIME_MAX;
    int64_t days = floor_div(t, 86400), secs = t - days * 86400;
    /* The proleptic Gregorian date `days` days after 1970-01-01, computed
     * in 400-year cycles that start on a 1 March (so the leap day ends a
     * year). */
    int64_t z = days + 719468;                 /* days since 0000-03-01 */
    int64_t cycle = floor_div(z, 146097);
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
