/*
 * log_clf.c - Common Log Format lines, written by hand: no stdio, no
 * locale, no time zone database (format.c's pieces).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "log/clf.h"
#include "log/format.h"

#include <string.h>

/* "10/Oct/2000:13:55:36 +0000" */
#define CLF_DATE_LEN 26

static const char month_abbr[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

static char *put_date(char *p, int64_t t)
{
    piocp_log_time tm;
    piocp_log_utc(t, &tm);
    p = piocp_log_put_digits(p, (unsigned)tm.day, 2);
    *p++ = '/';
    memcpy(p, month_abbr[tm.month - 1], 3);
    p += 3;
    *p++ = '/';
    p = piocp_log_put_digits(p, (unsigned)tm.year, 4);
    *p++ = ':';
    p = piocp_log_put_digits(p, (unsigned)tm.hour, 2);
    *p++ = ':';
    p = piocp_log_put_digits(p, (unsigned)tm.minute, 2);
    *p++ = ':';
    p = piocp_log_put_digits(p, (unsigned)tm.second, 2);
    memcpy(p, " +0000", 6);
    return p + 6;
}

size_t piocp_clf_line(char *out, size_t cap, const struct sockaddr_storage *peer,
                      socklen_t peer_len, int64_t unix_seconds, const char *request_line,
                      size_t request_line_len, int status, uint64_t bytes)
{
    if (cap == 0)
        return 0;

    /* Everything before the request line, and everything after it. */
    char head[PIOCP_LOG_HOST_MAX + CLF_DATE_LEN + 16];
    char *h = head + piocp_log_host(head, peer, peer_len);
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
        t = piocp_log_put_u64(t, (uint64_t)(-(int64_t)status));
    } else {
        t = piocp_log_put_u64(t, (uint64_t)status);
    }
    *t++ = ' ';
    if (bytes == 0)
        *t++ = '-';
    else
        t = piocp_log_put_u64(t, bytes);
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
