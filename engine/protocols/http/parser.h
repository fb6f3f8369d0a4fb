/*
 * http_parser.h - a zero-allocation HTTP/1.1 request-head parser (RFC 9112)
 * and the helpers a static-file handler needs: path decoding, byte ranges,
 * entity-tag matching and HTTP dates.
 *
 * Internal to the engine's native handlers; not part of the public API.
 * Every function is reentrant and thread-safe: no allocation, no global
 * mutable state, no locale.  Nothing reads outside the bytes it is given.
 */
#ifndef PIOCP_HTTP_PARSER_H
#define PIOCP_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HTTP_MAX_HEADERS 64

/* Return codes.  Every error is the negated status it maps to, so
 * http_error_status(code) == -code; HTTP_INCOMPLETE is not an error. */
#define HTTP_INCOMPLETE (-2)
#define HTTP_ERR_BAD_REQUEST (-400)
#define HTTP_ERR_FORBIDDEN (-403)          /* http_decode_path only */
#define HTTP_ERR_URI_TOO_LONG (-414)
#define HTTP_ERR_HEADERS_TOO_LARGE (-431)
#define HTTP_ERR_NOT_IMPLEMENTED (-501)
#define HTTP_ERR_VERSION (-505)

typedef struct http_header {
    const char *name;
    size_t name_len;
    const char *value; /* surrounding OWS trimmed; may be empty */
    size_t value_len;
} http_header;

typedef struct http_request {
    const char *method;
    size_t method_len;
    const char *target; /* request-target as sent (origin-form or absolute-form) */
    size_t target_len;
    int minor_version; /* HTTP/1.x: 0 or 1 */
    http_header headers[HTTP_MAX_HEADERS];
    size_t header_count;
    /* facts the server needs, extracted while parsing: */
    int64_t content_length; /* -1 if absent */
    bool chunked;           /* Transfer-Encoding: chunked (final coding) */
    bool has_transfer_encoding;
    bool connection_close, connection_keep_alive;
    bool expect_continue; /* "Expect: 100-continue" on an HTTP/1.1 request */
    /* The Host header; for an absolute-form target, the target's authority
     * instead (RFC 9112 section 3.2.2).  Never NULL after a successful
     * parse (empty if the Host field was empty). */
    const char *host;
    size_t host_len;
    /* Conditional and range headers, raw values (NULL if absent).  A second
     * If-None-Match is ignored (the first alone can only cause a 200 where a
     * 304 was possible, never the reverse); a repeated If-Modified-Since,
     * Range or If-Range makes the field (and, for If-Range, Range too) NULL
     * so the full representation is served. */
    const char *if_none_match, *if_modified_since, *if_range, *range;
    size_t if_none_match_len, if_modified_since_len, if_range_len, range_len;
} http_request;

/*
 * Parses the request head at the start of buf[0..len).  Returns:
 *   > 0  the bytes consumed by the head, through the blank line (any body
 *        or pipelined request follows);
 *   HTTP_INCOMPLETE  every byte so far is valid, call again with more;
 *   a negative HTTP_ERR_* code: 400 bad syntax or framing, 414 request
 *        line longer than max_line bytes (CRLF not counted), 431 head
 *        longer than max_head bytes (reported as soon as len reaches
 *        max_head without a complete head) or more than HTTP_MAX_HEADERS
 *        fields, 501 a Transfer-Encoding whose final coding is not chunked,
 *        505 a version other than HTTP/1.0 and HTTP/1.1.
 * After any error the connection should be closed.  Each call parses from
 * the start; *out is valid only after a positive return (entries past
 * header_count are left as they were).  All pointers point into buf.
 */
int http_parse_request(const char *buf, size_t len, size_t max_line, size_t max_head,
                       http_request *out);

/* The status number for an HTTP_ERR_* code; 0 for anything else. */
int http_error_status(int code);

/*
 * Percent-decodes and normalises the path of a request-target for a file
 * lookup: origin-form ("/a/b?q"), or absolute-form ("http://host/a/b")
 * whose scheme and authority are dropped.  The query and fragment are
 * ignored.  Repeated '/' and "." segments are collapsed; the result has no
 * leading '/' ("" is the root directory), is NUL-terminated in out and its
 * length (without the NUL) stored in *out_len.  *trailing_slash tells
 * whether the path named a directory explicitly (ended with '/' or "/.").
 * A decoded '/' (%2F) separates segments like a literal one: the result is
 * what the file system will see.
 * Returns 0, HTTP_ERR_BAD_REQUEST (not origin- or http(s) absolute-form,
 * "*", a bad %-escape, a decoded NUL or other control character),
 * HTTP_ERR_FORBIDDEN (a ".." segment or a backslash, after decoding) or
 * HTTP_ERR_URI_TOO_LONG (the result and its NUL do not fit in out_cap).
 */
int http_decode_path(const char *target, size_t len, char *out, size_t out_cap, size_t *out_len,
                     bool *trailing_slash);

/*
 * Evaluates a Range header value against a representation of `size` bytes.
 * Only a single "bytes=first-last", "bytes=first-" or "bytes=-suffix" is
 * honoured.  Returns 1 with *start <= *end_inclusive < size set; 0 to
 * ignore the header and send the whole representation (another unit,
 * several ranges, bad syntax, last < first); -1 if unsatisfiable (416:
 * first >= size, a zero suffix, or any range of an empty representation).
 */
int http_parse_range(const char *value, size_t len, uint64_t size, uint64_t *start,
                     uint64_t *end_inclusive);

/*
 * true if an If-None-Match value ("*" or a list of entity-tags) matches
 * `etag` (as sent in the ETag field, e.g. "\"5f3-1a\"" or "W/\"5f3-1a\"")
 * under the weak comparison (W/ ignored on both sides).  A malformed list
 * matches nothing.
 */
bool http_etag_matches(const char *if_none_match, size_t len, const char *etag,
                       size_t etag_len);

/*
 * Parses an HTTP-date: IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"), or
 * the obsolete RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT", two-digit year
 * read as at most 50 years ahead of now) and asctime ("Sun Nov  6 08:49:37
 * 1994") forms.  Returns 0 with *unix_seconds set, or -1.
 */
int http_parse_date(const char *s, size_t len, int64_t *unix_seconds);

/* Writes the IMF-fixdate for unix_seconds (clamped to years 0000-9999)
 * and a NUL into out; returns 29, the length without the NUL. */
#define HTTP_DATE_LEN 29
size_t http_format_date(int64_t unix_seconds, char out[30]);

#endif /* PIOCP_HTTP_PARSER_H */
