/*
 * log/combined.c - nginx's "combined" access-log format: the Common Log
 * Format line with the Referer and User-Agent appended.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "log/entry.h"
#include "log/clf.h"
#include "log/format.h"

#include <string.h>

/* ` "` + `" "` + `"` + '\n' around the two values. */
#define EXTRA_FRAMING 7

/* One quoted header value, or "-": at least 1 byte of `budget` is
 * assumed, the value cut to what is left of it. */
static char *put_field(char *p, const char *value, size_t len, size_t budget)
{
    if (value == NULL) {
        *p++ = '-';
        return p;
    }
    size_t cap = budget < PIOCP_LOG_FIELD_MAX ? budget : PIOCP_LOG_FIELD_MAX;
    return p + piocp_log_escape_cut(p, cap, value, len, NULL);
}

size_t piocp_combined_line(char *out, size_t cap, const piocp_log_entry *e)
{
    if (cap < PIOCP_LOG_LINE_MIN) {
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    size_t room = cap - 1; /* for the NUL */
    /* The CLF part first, leaving each value at least one byte ("-"). */
    size_t clf_cap = room - EXTRA_FRAMING - 2 + 1; /* + 1: its own NUL */
    if (clf_cap > PIOCP_LOG_REQUEST_MAX + 1 + 160)
        clf_cap = PIOCP_LOG_REQUEST_MAX + 1 + 160; /* 160: the fixed fields, with room */
    size_t n = piocp_clf_line(out, clf_cap, e->peer, e->peer_len, e->unix_seconds,
                              e->request_line, e->request_line_len, e->status, e->bytes);
    char *p = out + n - 1; /* over its '\n' */
    size_t budget = room - (n - 1) - EXTRA_FRAMING; /* >= 2 */

    memcpy(p, " \"", 2);
    p += 2;
    char *field = p;
    p = put_field(p, e->referer, e->referer_len, budget - 1);
    budget -= (size_t)(p - field);
    memcpy(p, "\" \"", 3);
    p += 3;
    p = put_field(p, e->user_agent, e->user_agent_len, budget);
    memcpy(p, "\"\n", 2);
    p += 2;
    *p = '\0';
    return (size_t)(p - out);
}
