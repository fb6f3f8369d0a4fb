/*
 * log_clf.c - Common Log Format lines, written by hand: no stdio, no
 * locale, no time zone database (the date comes from a civil-from-days
 * computation in UTC).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "log/clf.h"
#include "log/format.h"

#ifdef _WIN32
#include <ws2tcpip.h> /* inet_ntop, IN6_IS_ADDR_V4MAPPED */
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#endif
#include <string.h>

/* 0000-01-01T00:00:00Z and 9999-12-31T23:59:59Z. */
#define CLF_TIME_MIN INT64_C(-62167219200)
#define CLF_TIME_MAX INT64_C(253402300799)

/* "10/Oct/2000:13:55:36 +0000" */
#define CLF_DATE_LEN 26

static const char month_abbr[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* Floor division for a positive divisor. */
static int64_t floor_div(int64_t a, int64_t b)
{
    return a / b - (a % b < 0);
}

/* The proleptic Gregorian date `days` days after 1970-01-01, computed in
 * 400-year cycles that start on a 1 March (so the leap day ends a year). */
static void date_of_days(int64_t days, int64_t *year, int *month, int *day)
{
    int64_t z = days + 719468;                 /* days since 0000-03-01 */
    int64_t cycle = floor_div(z, 146097);
    int64_t doc = z - cycle * 146097;          /* day of cycle, [0, 146096] */
    int64_t yoc = (doc - doc / 1460 + doc / 36524 - doc / 146096) / 365; /* [0, 399] */
    int64_t doy = doc - (365 * yoc + yoc / 4 - yoc / 100); /* from 1 March, [0, 365] */
    int64_t mp = (5 * doy + 2) / 153;          /* month from March, [0, 11] */
    *day = (int)(doy - (153 * mp + 2) / 5 + 1);
    *month = (int)(mp < 10 ? mp + 3 : mp - 9);
    *year = yoc + cycle * 400 + (*month <= 2);
}

static char *put_digits(char *p, unsigned v, int width)
{
    for (int i = width - 1; i >= 0; i--) {
        p[i] = (char)('0' + v % 10);
        v /= 10;
    }
    return p + width;
}

static char *put_date(char *p, int64_t t)
{
    if (t < CLF_TIME_MIN)
        t = CLF_TIME_MIN;
    if (t > CLF_TIME_MAX)
        t = CLF_TIME_MAX;
    int64_t days = floor_div(t, 86400), secs = t - days * 86400;
    int64_t year;
    int month, day;
    date_of_days(days, &year, &month, &day);
    p = put_digits(p, (unsigned)day, 2);
    *p++ = '/';
    memcpy(p, month_abbr[month - 1], 3);
    p += 3;
    *p++ = '/';
    p = put_digits(p, (unsigned)year, 4);
    *p++ = ':';
    p = put_digits(p, (unsigned)(secs / 3600), 2);
    *p++ = ':';
    p = put_digits(p, (unsigned)(secs / 60 % 60), 2);
    *p++ = ':';
    p = put_digits(p, (unsigned)(secs % 60), 2);
    memcpy(p, " +0000", 6);
    return p + 6;
}

static char *put_u64(char *p, uint64_t v)
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

/* The peer's address as text, or "-"; returns its length. */
static size_t put_host(char *p, const struct sockaddr_storage *peer, socklen_t peer_len)
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
    if (text == NULL) {
        *p = '-';
        return 1;
    }
    size_t n = strlen(ip);
    memcpy(p, ip, n);
    return n;
}

size_t piocp_clf_line(char *out, size_t cap, const struct sockaddr_storage *peer,
                      socklen_t peer_len, int64_t unix_seconds, const char *request_line,
                      size_t request_line_len, int status, uint64_t bytes)
{
    if (cap == 0)
        return 0;

    /* Everything before the request line, and everything after it. */
    char head[INET6_ADDRSTRLEN + CLF_DATE_LEN + 16];
    char *h = head + put_host(head, peer, peer_len);
    memcpy(h, " - - [", 6);
    h = put_date(h + 6, unix_seconds);
    memcpy(h, "] \"", 3);
    h += 3;
    size_t head_len = (size_t)(h - head);

    char tail[48];
    char *t = tail;
    *t++ = '"';
    *t++ = ' ';
    if (status < 0) {
        *t++ = '-';
        t = put_u64(t, (uint64_t)(-(int64_t)status));
    } else {
        t = put_u64(t, (uint64_t)status);
    }
    *t++ = ' ';
    if (bytes == 0)
        *t++ = '-';
    else
        t = put_u64(t, bytes);
    *t++ = '\n';
    size_t tail_len = (size_t)(t - tail);

    size_t room = cap - 1; /* for the NUL */
    if (head_len + tail_len > room) {
        /* Not even the fixed fields fit: as much of them as does, then '\n'. */
        size_t n = 0;
        if (room > 0) {
            size_t keep = room - 1;
            size_t from_head = keep < head_len ? keep : head_len;
            memcpy(out, head, from_head);
            memcpy(out + from_head, tail, keep - from_head);
            out[keep] = '\n';
            n = room;
        }
        out[n] = '\0';
        return n;
    }

    char *p = out;
    memcpy(p, head, head_len);
    p += head_len;
    size_t budget = room - head_len - tail_len;
    if (request_line_len == 0 || request_line == NULL) {
        if (budget > 0)
            *p++ = '-';
    } else if (request_line_len <= budget / PIOCP_LOG_ESCAPED_MAX(1)) {
        p += piocp_log_escape(p, request_line, request_line_len);
    } else {
        /* Byte by byte, so the cut never falls inside an escape. */
        for (size_t i = 0; i < request_line_len; i++) {
            char esc[PIOCP_LOG_ESCAPED_MAX(1)];
            size_t n = piocp_log_escape(esc, request_line + i, 1);
            if (n > budget)
                break;
            memcpy(p, esc, n);
            p += n;
            budget -= n;
        }
    }
    memcpy(p, tail, tail_len);
    p += tail_len;
    *p = '\0';
    return (size_t)(p - out);
}
