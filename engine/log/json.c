/*
 * log/json.c - access-log lines as JSON objects, one per line.
 *
 * Log shippers parse these without a format-specific regex, so the one
 * thing that must hold whatever a client sends is that each line is a
 * valid JSON object: every client byte goes through json_escape_cut,
 * which also keeps the output valid UTF-8 (entry.h says how).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif

#include "log/entry.h"
#include "log/format.h"

#include <stdbool.h>
#include <string.h>

#define METHOD_MAX 64
#define PROTOCOL_MAX 32

/* Bytes in the valid UTF-8 sequence of 2 to 4 bytes at s (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF), or 0. */
static size_t utf8_sequence(const unsigned char *s, size_t len)
{
    unsigned char c = s[0];
    size_t n;
    unsigned char lo = 0x80, hi = 0xbf; /* the second byte's range */
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3;
        if (c == 0xe0)
            lo = 0xa0; /* overlong below */
        else if (c == 0xed)
            hi = 0x9f; /* surrogates above */
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4;
        if (c == 0xf0)
            lo = 0x90;
        else if (c == 0xf4)
            hi = 0x8f; /* above U+10FFFF */
    } else {
        return 0;
    }
    if (len < n || s[1] < lo || s[1] > hi)
        return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return n;
}

size_t piocp_json_escape_cut(char *dst, size_t cap, const char *src, size_t len)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)src;
    size_t out = 0;
    for (size_t i = 0; i < len;) {
        unsigned char c = s[i];
        char esc[6];
        const char *piece = esc;
        size_t n, step = 1;
        if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
            esc[0] = (char)c;
            n = 1;
        } else if (c == '"' || c == '\\') {
            esc[0] = '\\';
            esc[1] = (char)c;
            n = 2;
        } else if (c >= 0x80 && (step = utf8_sequence(s + i, len - i)) != 0) {
            piece = src + i; /* a whole character, as sent */
            n = step;
        } else {
            /* a control character, DEL, or a byte that is not UTF-8 */
            memcpy(esc, "\\u00", 4);
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 15];
            n = 6;
            step = 1;
        }
        if (n > cap - out)
            break;
        memcpy(dst + out, piece, n);
        out += n;
        i += step;
    }
    return out;
}

/* A line being built: the fixed text's room is reserved up front
 * (FIXED_MAX), so only the client's strings are counted and cut. */
typedef struct line {
    char *p;
    size_t budget; /* bytes the variable strings may still take */
} line;

static void put(line *l, const char *text, size_t len)
{
    memcpy(l->p, text, len);
    l->p += len;
}

#define PUT_LITERAL(l, text) put((l), (text), sizeof(text) - 1)

/* A string value (quoted, escaped, cut at `max` or the budget), or null.
 * `reserved`: its `max` bytes were set aside with the fixed text, so it
 * takes nothing from the budget (the short fields, which a long target
 * must not crowd out). */
static void put_string(line *l, const char *value, size_t len, size_t max, bool reserved)
{
    if (value == NULL) {
        PUT_LITERAL(l, "null");
        return;
    }
    size_t cap = reserved || l->budget >= max ? max : l->budget;
    *l->p++ = '"';
    size_t n = piocp_json_escape_cut(l->p, cap, value, len);
    l->p += n;
    if (!reserved)
        l->budget -= n;
    *l->p++ = '"';
}

static void put_time(line *l, int64_t unix_seconds)
{
    piocp_log_time tm;
    piocp_log_utc(unix_seconds, &tm);
    char *p = l->p;
    *p++ = '"';
    p = piocp_log_put_digits(p, (unsigned)tm.year, 4);
    *p++ = '-';
    p = piocp_log_put_digits(p, (unsigned)tm.month, 2);
    *p++ = '-';
    p = piocp_log_put_digits(p, (unsigned)tm.day, 2);
    *p++ = 'T';
    p = piocp_log_put_digits(p, (unsigned)tm.hour, 2);
    *p++ = ':';
    p = piocp_log_put_digits(p, (unsigned)tm.minute, 2);
    *p++ = ':';
    p = piocp_log_put_digits(p, (unsigned)tm.second, 2);
    *p++ = 'Z';
    *p++ = '"';
    l->p = p;
}

static void put_int(line *l, int64_t v)
{
    if (v < 0) {
        *l->p++ = '-';
        l->p = piocp_log_put_u64(l->p, (uint64_t)0 - (uint64_t)v);
    } else {
        l->p = piocp_log_put_u64(l->p, (uint64_t)v);
    }
}

/* Fixed text of a line: keys, punctuation, quotes or null of each string,
 * the address, the time (22), status (<= 12), bytes (<= 20), duration
 * (<= 20): generous, since only the budget of the strings depends on it. */
#define FIXED_MAX 400

size_t piocp_json_line(char *out, size_t cap, const piocp_log_entry *e)
{
    if (cap < PIOCP_LOG_LINE_MIN) {
        if (cap > 0)
            out[0] = '\0';
        return 0;
    }
    /* The request line split at its first and last space. */
    const char *method = NULL, *target = NULL, *protocol = NULL;
    size_t method_len = 0, target_len = 0, protocol_len = 0;
    if (e->request_line != NULL && e->request_line_len > 0) {
        const char *rl = e->request_line, *end = rl + e->request_line_len;
        const char *first = memchr(rl, ' ', e->request_line_len);
        const char *last = end;
        while (last > rl && last[-1] != ' ')
            last--;
        if (first == NULL) {
            target = rl; /* not "METHOD target": keep it all */
            target_len = e->request_line_len;
        } else {
            method = rl;
            method_len = (size_t)(first - rl);
            target = first + 1;
            target_len = (size_t)(end - target);
            if (last - 1 > first) {
                target_len = (size_t)(last - 1 - target);
                protocol = last;
                protocol_len = (size_t)(end - last);
            }
        }
    }

    line l = {out, cap - 1 - FIXED_MAX - METHOD_MAX - PROTOCOL_MAX};
    PUT_LITERAL(&l, "{\"remote_addr\":\"");
    l.p += piocp_log_host(l.p, e->peer, e->peer_len);
    PUT_LITERAL(&l, "\",\"time\":");
    put_time(&l, e->unix_seconds);
    PUT_LITERAL(&l, ",\"method\":");
    put_string(&l, method, method_len, METHOD_MAX, true);
    PUT_LITERAL(&l, ",\"target\":");
    put_string(&l, target, target_len, PIOCP_LOG_REQUEST_MAX, false);
    PUT_LITERAL(&l, ",\"protocol\":");
    put_string(&l, protocol, protocol_len, PROTOCOL_MAX, true);
    PUT_LITERAL(&l, ",\"status\":");
    put_int(&l, e->status);
    PUT_LITERAL(&l, ",\"bytes\":");
    l.p = piocp_log_put_u64(l.p, e->bytes);
    PUT_LITERAL(&l, ",\"referer\":");
    put_string(&l, e->referer, e->referer_len, PIOCP_LOG_FIELD_MAX, false);
    PUT_LITERAL(&l, ",\"user_agent\":");
    put_string(&l, e->user_agent, e->user_agent_len, PIOCP_LOG_FIELD_MAX, false);
    PUT_LITERAL(&l, ",\"duration_us\":");
    if (e->duration_us < 0)
        PUT_LITERAL(&l, "null");
    else
        put_int(&l, e->duration_us);
    PUT_LITERAL(&l, "}\n");
    *l.p = '\0';
    return (size_t)(l.p - out);
}
