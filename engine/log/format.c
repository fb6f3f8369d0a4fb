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
