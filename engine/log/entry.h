/*
 * log/entry.h - one access-log entry, and the formats beyond the Common
 * Log Format (clf.h) that write it: nginx's "combined" and JSON lines.
 *
 * Internal to the engine's native handlers; not part of the public API.
 */
#ifndef PIOCP_LOG_ENTRY_H
#define PIOCP_LOG_ENTRY_H

#include "pyiocp.h" /* struct sockaddr_storage, socklen_t on every platform */

#include <stddef.h>
#include <stdint.h>

/* What a request's line in the access log is made of.  Every string is
 * the client's bytes, unescaped, with its length; NULL means absent (a
 * request that could not be read has no request line; a header that was
 * not sent). */
typedef struct piocp_log_entry {
    const struct sockaddr_storage *peer; /* NULL: unknown, logged as "-" */
    socklen_t peer_len;
    int64_t unix_seconds;
    const char *request_line; /* "METHOD target HTTP/1.x" */
    size_t request_line_len;
    int status;
    uint64_t bytes;           /* body bytes sent */
    const char *referer, *user_agent;
    size_t referer_len, user_agent_len;
    int64_t duration_us;      /* < 0: not measured */
} piocp_log_entry;

/* The buffer a line of any format is written into: a line never needs
 * more (long fields are cut to the caps below), so the framing (quotes,
 * braces, the final '\n') always fits. */
#define PIOCP_LOG_LINE_MAX 4608
/* Below this a formatter writes nothing (returns 0): too small for the
 * framing and fixed fields. */
#define PIOCP_LOG_LINE_MIN 512
/* Most bytes a request line (escaped) takes in a combined or JSON line:
 * the room the Common Log Format line has always had. */
#define PIOCP_LOG_REQUEST_MAX 2048
/* Most bytes a header value (escaped) takes in a line. */
#define PIOCP_LOG_FIELD_MAX 1024

/*
 * nginx's default "combined" format: the Common Log Format line (exactly
 * as piocp_clf_line writes it, its request line cut at
 * PIOCP_LOG_REQUEST_MAX) followed by
 *
 *   "referer" "user-agent"
 *
 * each escaped as the request line is ('"', '\\' and every byte that is
 * not printable ASCII become \xNN, as nginx does), "-" when the header
 * was absent.  A value is cut (between escapes) at PIOCP_LOG_FIELD_MAX
 * bytes or where the room left in `cap` ends.
 *
 * Writes one NUL-terminated line ending in '\n' into out[0..cap) and
 * returns its length without the NUL; 0 (and nothing written but a NUL)
 * when cap < PIOCP_LOG_LINE_MIN.  No allocation, no locale, thread-safe.
 */
size_t piocp_combined_line(char *out, size_t cap, const piocp_log_entry *entry);

/*
 * One JSON object per line, keys always present and in this order:
 *
 *   {"remote_addr":"127.0.0.1","time":"2000-10-10T13:55:36Z",
 *    "method":"GET","target":"/a.html","protocol":"HTTP/1.1",
 *    "status":200,"bytes":2326,"referer":null,"user_agent":"curl/8.5.0",
 *    "duration_us":412}
 *
 * (on one line).  time: RFC 3339 in UTC, whole seconds.  method, target
 * and protocol: the request line split at its first and last space; null
 * without a request line.  referer, user_agent: null when absent.
 * duration_us: null when not measured.  bytes: body bytes sent.
 *
 * Strings: valid UTF-8 is kept as is; '"' and '\\' are escaped as \" and
 * \\; control characters (0x00-0x1f) and DEL as \u00XX; every byte that is
 * not part of a valid UTF-8 sequence (overlong forms, surrogates, above
 * U+10FFFF, stray or truncated) as \u00XX of its value, that is read as
 * Latin-1: the line is always valid JSON and a JSON parser returns the
 * bytes that were sent whenever they were UTF-8.  A string is cut between
 * characters, never inside an escape or a UTF-8 sequence: method at 64
 * bytes, target at PIOCP_LOG_REQUEST_MAX, protocol at 32, referer and
 * user_agent at PIOCP_LOG_FIELD_MAX, or where the room in `cap` ends.
 *
 * Returns as piocp_combined_line.
 */
size_t piocp_json_line(char *out, size_t cap, const piocp_log_entry *entry);

/* JSON-escapes src (as above, without quotes) into at most `cap` bytes,
 * whole characters only; returns the bytes written.  At most 6 bytes of
 * output per input byte. */
size_t piocp_json_escape_cut(char *dst, size_t cap, const char *src, size_t len);

#endif /* PIOCP_LOG_ENTRY_H */
