/*
 * http_parser.c - HTTP/1.1 request heads (RFC 9112) without allocation.
 *
 * One forward pass over the bytes, driven by a 256-entry character-class
 * table; the fields the server acts on are recognised by length and a
 * case-insensitive compare as each header line ends, so no second pass
 * over the headers is needed.  Framing is decided strictly (RFC 9112
 * section 6.3): anything a front end could read differently from us is a
 * 400, and the caller closes the connection after any error.
 *
 * Reading never goes past min(len, max_head): every loop that advances p
 * checks it against `end` first.
 */
#include "protocols/http/parser.h"

#include <limits.h>
#include <string.h>
#include <time.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* ------------------------------------------------------ char classes -- */

enum {
    C_TCHAR = 1,  /* token: ALPHA DIGIT !#$%&'*+-.^_`|~ */
    C_TARGET = 2, /* request-target: visible ASCII and obs-text */
    C_VALUE = 4,  /* field value: HT, SP, visible ASCII, obs-text */
    C_HOST = 8,   /* uri-host [":" port]: unreserved sub-delims ":[]%" */
};

static const unsigned char cclass[256] = {
    0,  0,  0,  0,  0,  0,  0,  0,  0,  4,  0,  0,  0,  0,  0,  0,  /* 0x00 */
    0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  /* 0x10 */
    4,  15, 6,  7,  15, 15, 15, 15, 14, 14, 15, 15, 14, 15, 15, 6,  /* 0x20 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 14, 6,  14, 6,  6,  /* 0x30 */
    6,  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x40 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 6,  14, 7,  15, /* 0x50 */
    7,  15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x60 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 6,  7,  6,  15, 0,  /* 0x70 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0x80 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0x90 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xa0 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xb0 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xc0 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xd0 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xe0 */
    6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  6,  /* 0xf0 */
};

#define IS(c, cls) ((cclass[(unsigned char)(c)] & (cls)) != 0)
#define IS_OWS(c) ((c) == ' ' || (c) == '\t')
#define IS_DIGIT(c) ((unsigned)((c) - '0') < 10u)

/* Case-insensitive (ASCII letters only) compare of n bytes against a
 * lowercase literal. */
static inline bool lit_ieq(const unsigned char *s, const char *lit, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        unsigned c = s[i];
        if (c - 'A' < 26u)
            c |= 0x20;
        if (c != (unsigned char)lit[i])
            return false;
    }
    return true;
}

/* The length of an "http://" or "https://" prefix (any case), else 0: an
 * absolute-form target's scheme. */
static inline size_t scheme_length(const unsigned char *s, size_t n)
{
    if (n >= 7 && lit_ieq(s, "http://", 7))
        return 7;
    if (n >= 8 && lit_ieq(s, "https://", 8))
        return 8;
    return 0;
}

/* ----------------------------------------------------- header parsing -- */

/* How many empty lines may precede the request line (RFC 9112 2.2). */
#define MAX_LEADING_EMPTY_LINES 4

enum {
    SEEN_HOST = 1,
    SEEN_CL = 2,
    SEEN_INM = 4,
    SEEN_IMS = 8,
    SEEN_IF_RANGE = 16,
    SEEN_RANGE = 32,
    DUP_IMS = 64,
    DUP_RANGE = 128, /* Range or If-Range repeated: drop both */
    TE_BAD = 256,    /* chunked followed by another coding, or empty element */
    TE_LAST_CHUNKED = 512,
};

/* Content-Length: 1*DIGIT, or a list of identical ones ("5, 5"). */
static int parse_content_length(const unsigned char *v, size_t n, int64_t *out)
{
    const unsigned char *p = v, *end = v + n;
    int64_t first = -1;
    for (;;) {
        while (p < end && IS_OWS(*p))
            p++;
        if (p == end || !IS_DIGIT(*p))
            return -1; /* empty value or empty list element */
        int64_t x = 0;
        do {
            int d = *p++ - '0';
            if (x > (INT64_MAX - d) / 10)
                return -1;
            x = x * 10 + d;
        } while (p < end && IS_DIGIT(*p));
        if (first >= 0 && x != first)
            return -1;
        first = x;
        while (p < end && IS_OWS(*p))
            p++;
        if (p == end)
            break;
        if (*p++ != ',')
            return -1;
    }
    *out = first;
    return 0;
}

/* Transfer-Encoding: #transfer-coding, folded into the TE_* state bits so
 * repeated fields read as one list. */
static int parse_transfer_encoding(const unsigned char *v, size_t n, unsigned *state)
{
    const unsigned char *p = v, *end = v + n;
    for (;;) {
        while (p < end && IS_OWS(*p))
            p++;
        const unsigned char *tok = p;
        while (p < end && IS(*p, C_TCHAR))
            p++;
        size_t tlen = (size_t)(p - tok);
        if (tlen == 0)
            return -1; /* empty element or garbage */
        while (p < end && IS_OWS(*p))
            p++;
        bool params = false;
        if (p < end && *p == ';') {
            /* transfer-parameters: skip to the next ',' outside quotes */
            params = true;
            bool quoted = false;
            while (p < end && (quoted || *p != ',')) {
                if (quoted && *p == '\\' && p + 1 < end)
                    p++;
                else if (*p == '"')
                    quoted = !quoted;
                p++;
            }
            if (quoted)
                return -1;
        }
        bool chunked = tlen == 7 && lit_ieq(tok, "chunked", 7);
        if (chunked && params)
            return -1; /* chunked takes no parameters */
        if (*state & TE_LAST_CHUNKED)
            *state |= TE_BAD; /* chunked applied before another coding */
        if (chunked)
            *state |= TE_LAST_CHUNKED;
        else
            *state &= ~(unsigned)TE_LAST_CHUNKED;
        if (p == end)
            return 0;
        if (*p++ != ',')
            return -1;
    }
}

/* Connection: #connection-option; unknown options are ignored. */
static void parse_connection(const unsigned char *v, size_t n, http_request *r)
{
    const unsigned char *p = v, *end = v + n;
    while (p < end) {
        while (p < end && (IS_OWS(*p) || *p == ','))
            p++;
        const unsigned char *tok = p;
        while (p < end && *p != ',' && !IS_OWS(*p))
            p++;
        size_t tlen = (size_t)(p - tok);
        if (tlen == 5 && lit_ieq(tok, "close", 5))
            r->connection_close = true;
        else if (tlen == 10 && lit_ieq(tok, "keep-alive", 10))
            r->connection_keep_alive = true;
    }
}

/* Acts on one header line; returns 0 or an HTTP_ERR_* code. */
static int on_header(http_request *r, unsigned *seen, const unsigned char *name, size_t nlen,
                     const unsigned char *v, size_t vlen)
{
    const char *value = (const char *)v;
    switch (nlen) {
    case 4:
        if (lit_ieq(name, "host", 4)) {
            if (*seen & SEEN_HOST)
                return HTTP_ERR_BAD_REQUEST;
            for (size_t i = 0; i < vlen; i++)
                if (!IS(v[i], C_HOST))
                    return HTTP_ERR_BAD_REQUEST;
            *seen |= SEEN_HOST;
            r->host = value;
            r->host_len = vlen;
        }
        break;
    case 5:
        if (lit_ieq(name, "range", 5)) {
            if (*seen & SEEN_RANGE)
                *seen |= DUP_RANGE;
            *seen |= SEEN_RANGE;
            r->range = value;
            r->range_len = vlen;
        }
        break;
    case 6:
        if (lit_ieq(name, "expect", 6) && vlen == 12 && lit_ieq(v, "100-continue", 12))
            r->expect_continue = true;
        break;
    case 8:
        if (lit_ieq(name, "if-range", 8)) {
            if (*seen & SEEN_IF_RANGE)
                *seen |= DUP_RANGE;
            *seen |= SEEN_IF_RANGE;
            r->if_range = value;
            r->if_range_len = vlen;
        }
        break;
    case 10:
        if (lit_ieq(name, "connection", 10))
            parse_connection(v, vlen, r);
        break;
    case 13:
        if (lit_ieq(name, "if-none-match", 13) && !(*seen & SEEN_INM)) {
            *seen |= SEEN_INM;
            r->if_none_match = value;
            r->if_none_match_len = vlen;
        }
        break;
    case 14:
        if (lit_ieq(name, "content-length", 14)) {
            int64_t cl;
            if (parse_content_length(v, vlen, &cl) < 0)
                return HTTP_ERR_BAD_REQUEST;
            if ((*seen & SEEN_CL) && cl != r->content_length)
                return HTTP_ERR_BAD_REQUEST;
            *seen |= SEEN_CL;
            r->content_length = cl;
        }
        break;
    case 17:
        if (lit_ieq(name, "transfer-encoding", 17)) {
            r->has_transfer_encoding = true;
            if (parse_transfer_encoding(v, vlen, seen) < 0)
                return HTTP_ERR_BAD_REQUEST;
        } else if (lit_ieq(name, "if-modified-since", 17)) {
            if (*seen & SEEN_IMS)
                *seen |= DUP_IMS;
            *seen |= SEEN_IMS;
            r->if_modified_since = value;
            r->if_modified_since_len = vlen;
        }
        break;
    default:
        break;
    }
    return 0;
}

/* Skips bytes of class `cls` from p, stopping at end; returns the first
 * byte not in the class (or end). */
static inline const unsigned char *skip_class(const unsigned char *p, const unsigned char *end,
                                              unsigned cls)
{
    while (end - p >= 4) {
        if (!IS(p[0], cls))
            return p;
        if (!IS(p[1], cls))
            return p + 1;
        if (!IS(p[2], cls))
            return p + 2;
        if (!IS(p[3], cls))
            return p + 3;
        p += 4;
    }
    while (p < end && IS(*p, cls))
        p++;
    return p;
}

/* Field values and request-targets: the long runs.  With SSE2, 16 bytes at
 * a time are checked for anything below 0x21 (0x20 for values) or DEL;
 * the byte-wise loop then handles the exception (HT in a value, the end of
 * the run).  Loads stay within [p, end). */
static inline const unsigned char *skip_run(const unsigned char *p, const unsigned char *end,
                                            unsigned cls)
{
#if defined(__SSE2__)
    const __m128i lo = _mm_set1_epi8((char)(cls == C_VALUE ? 0x20 : 0x21));
    const __m128i del = _mm_set1_epi8(0x7f);
    while (end - p >= 16) {
        __m128i x = _mm_loadu_si128((const __m128i *)(const void *)p);
        /* x >= lo (unsigned) <=> max(x, lo) == x */
        __m128i ok = _mm_cmpeq_epi8(_mm_max_epu8(x, lo), x);
        __m128i bad = _mm_or_si128(_mm_andnot_si128(ok, _mm_set1_epi8(-1)),
                                   _mm_cmpeq_epi8(x, del));
        int mask = _mm_movemask_epi8(bad);
        if (mask != 0)
            return skip_class(p + __builtin_ctz((unsigned)mask), end, cls);
        p += 16;
    }
#endif
    return skip_class(p, end, cls);
}

/* The fields a head sets, back to "absent" (a caller may reuse *r). */
static void request_reset(http_request *r)
{
    r->header_count = 0;
    r->content_length = -1;
    r->chunked = r->has_transfer_encoding = false;
    r->connection_close = r->connection_keep_alive = r->expect_continue = false;
    r->host = NULL;
    r->host_len = 0;
    r->if_none_match = r->if_modified_since = r->if_range = r->range = NULL;
    r->if_none_match_len = r->if_modified_since_len = r->if_range_len = r->range_len = 0;
}

/* The CRLF (or bare LF, RFC 9112 2.2) at *pp: consumed, or HTTP_INCOMPLETE
 * with *pp left on it, or a 400 for anything else there. */
static inline int take_line_end(const unsigned char **pp, const unsigned char *end)
{
    const unsigned char *p = *pp;
    if (p == end)
        return HTTP_INCOMPLETE;
    if (*p == '\n') {
        *pp = p + 1;
        return 0;
    }
    if (*p != '\r')
        return HTTP_ERR_BAD_REQUEST;
    if (end - p < 2)
        return HTTP_INCOMPLETE;
    if (p[1] != '\n')
        return HTTP_ERR_BAD_REQUEST;
    *pp = p + 2;
    return 0;
}

/* Empty lines before the request line (a client's stray CRLF after a
 * body) are skipped, a few of them. */
static int skip_empty_lines(const unsigned char **pp, const unsigned char *end)
{
    for (int n = 0;; n++) {
        if (*pp == end)
            return HTTP_INCOMPLETE;
        if (**pp != '\n' && **pp != '\r')
            return 0;
        int rc = take_line_end(pp, end);
        if (rc < 0)
            return rc;
        if (n == MAX_LEADING_EMPTY_LINES)
            return HTTP_ERR_BAD_REQUEST;
    }
}

/* The word [first, *pp) must be non-empty and end in SP: stores it and
 * moves *pp past the SP. */
static inline int end_word(const unsigned char *first, const unsigned char **pp,
                           const unsigned char *end, const char **word, size_t *word_len)
{
    const unsigned char *p = *pp;
    if (p == end)
        return HTTP_INCOMPLETE;
    if (*p != ' ' || p == first)
        return HTTP_ERR_BAD_REQUEST;
    *word = (const char *)first;
    *word_len = (size_t)(p - first);
    *pp = p + 1;
    return 0;
}

static int parse_method(const unsigned char **pp, const unsigned char *end, http_request *r)
{
    const unsigned char *const first = *pp;
    *pp = skip_class(first, end, C_TCHAR);
    return end_word(first, pp, end, &r->method, &r->method_len);
}

/* The target is the long run of the line: the SIMD scan. */
static int parse_target(const unsigned char **pp, const unsigned char *end, http_request *r)
{
    const unsigned char *const first = *pp;
    *pp = skip_run(first, end, C_TARGET);
    return end_word(first, pp, end, &r->target, &r->target_len);
}

/* HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive.  A prefix of
 * that shape is incomplete (*pp moves to the end); any other shape is a
 * 400. */
static int parse_version(const unsigned char **pp, const unsigned char *end, http_request *r)
{
    static const char shape[] = "HTTP/0.0";
    const unsigned char *p = *pp;
    size_t avail = (size_t)(end - p), n = avail < 8 ? avail : 8;
    if (n == 8 && memcmp(p, "HTTP/1.1", 8) == 0) {
        r->minor_version = 1;
        *pp = p + 8;
        return 0;
    }
    for (size_t i = 0; i < n; i++) {
        bool ok = shape[i] == '0' ? IS_DIGIT(p[i]) : p[i] == (unsigned char)shape[i];
        if (!ok)
            return HTTP_ERR_BAD_REQUEST;
    }
    if (n < 8) {
        *pp = end;
        return HTTP_INCOMPLETE;
    }
    /* Well-formed; only 1.0 and 1.1 are served (HTTP/1.2 included: there
     * is none, so whoever sends it is not a real client). */
    if (p[5] != '1' || p[7] > '1')
        return HTTP_ERR_VERSION;
    r->minor_version = p[7] - '0';
    *pp = p + 8;
    return 0;
}

/* request-line = method SP request-target SP HTTP-version CRLF.  Longer
 * than max_line (CRLF not counted) is a 414, also while still incomplete. */
static int parse_request_line(const unsigned char **pp, const unsigned char *end,
                              size_t max_line, http_request *r)
{
    const unsigned char *const line = *pp;
    const unsigned char *p = line;
    int rc = parse_method(&p, end, r);
    if (rc == 0)
        rc = parse_target(&p, end, r);
    if (rc == 0)
        rc = parse_version(&p, end, r);
    const unsigned char *const eol = p;
    if (rc == 0)
        rc = take_line_end(&p, end);
    if (rc == HTTP_INCOMPLETE && (size_t)(p - line) > max_line)
        return HTTP_ERR_URI_TOO_LONG;
    if (rc < 0)
        return rc;
    if ((size_t)(eol - line) > max_line)
        return HTTP_ERR_URI_TOO_LONG;
    *pp = p;
    return 0;
}

/* field-name ":" OWS field-value OWS CRLF, recorded in r->headers and
 * acted on.  A line starting with SP or HT (obs-fold) and whitespace
 * before the colon both land on the "not a token" check. */
static int parse_field_line(const unsigned char **pp, const unsigned char *end, http_request *r,
                            unsigned *seen)
{
    const unsigned char *const name = *pp;
    const unsigned char *p = skip_class(name, end, C_TCHAR);
    if (p == end)
        return HTTP_INCOMPLETE;
    if (*p != ':' || p == name)
        return HTTP_ERR_BAD_REQUEST;
    size_t name_len = (size_t)(p - name);
    p++;
    while (p < end && IS_OWS(*p))
        p++;
    const unsigned char *const value = p;
    p = skip_run(p, end, C_VALUE);
    const unsigned char *vend = p;
    int rc = take_line_end(&p, end); /* a 400 here: a control character, NUL, DEL */
    if (rc < 0)
        return rc;
    while (vend > value && IS_OWS(vend[-1]))
        vend--;
    if (r->header_count == HTTP_MAX_HEADERS)
        return HTTP_ERR_HEADERS_TOO_LARGE;
    http_header *h = &r->headers[r->header_count++];
    h->name = (const char *)name;
    h->name_len = name_len;
    h->value = (const char *)value;
    h->value_len = (size_t)(vend - value);
    *pp = p;
    return on_header(r, seen, name, name_len, value, h->value_len);
}

/* *( field-line CRLF ) CRLF */
static int parse_headers(const unsigned char **pp, const unsigned char *end, http_request *r,
                         unsigned *seen)
{
    for (;;) {
        if (*pp == end)
            return HTTP_INCOMPLETE;
        if (**pp == '\n' || **pp == '\r')
            return take_line_end(pp, end);
        int rc = parse_field_line(pp, end, r, seen);
        if (rc != 0)
            return rc;
    }
}

/* absolute-form: the target's authority overrides Host (RFC 9112 3.2.2). */
static int host_from_absolute_form(http_request *r)
{
    const unsigned char *target = (const unsigned char *)r->target;
    size_t skip = scheme_length(target, r->target_len);
    if (skip == 0)
        return 0;
    const unsigned char *a = target + skip, *tend = target + r->target_len, *q = a;
    while (q < tend && *q != '/' && *q != '?' && *q != '#') {
        if (!IS(*q, C_HOST))
            return HTTP_ERR_BAD_REQUEST; /* userinfo, or worse */
        q++;
    }
    if (q == a)
        return HTTP_ERR_BAD_REQUEST;
    r->host = (const char *)a;
    r->host_len = (size_t)(q - a);
    return 0;
}

/* The head is complete: decide the framing (RFC 9112 6.1, 6.3), the host,
 * and which repeated conditional fields to ignore. */
static int finish_request(http_request *r, unsigned seen)
{
    if (r->has_transfer_encoding) {
        if (r->minor_version == 0 || (seen & (SEEN_CL | TE_BAD)))
            return HTTP_ERR_BAD_REQUEST;
        if (!(seen & TE_LAST_CHUNKED))
            return HTTP_ERR_NOT_IMPLEMENTED;
        r->chunked = true;
    }
    if (!(seen & SEEN_HOST)) {
        if (r->minor_version == 1)
            return HTTP_ERR_BAD_REQUEST;
        r->host = "";
    }
    int rc = host_from_absolute_form(r);
    if (rc < 0)
        return rc;
    if (r->minor_version == 0)
        r->expect_continue = false; /* RFC 9110 10.1.1 */
    if (seen & DUP_IMS) {
        r->if_modified_since = NULL;
        r->if_modified_since_len = 0;
    }
    if (seen & DUP_RANGE) {
        r->range = r->if_range = NULL;
        r->range_len = r->if_range_len = 0;
    }
    return 0;
}

int http_parse_request(const char *buf, size_t len, size_t max_line, size_t max_head,
                       http_request *r)
{
    if (max_head > INT_MAX)
        max_head = INT_MAX; /* the return value is an int */
    const unsigned char *const start = (const unsigned char *)buf;
    const unsigned char *p = start;
    const unsigned char *const end = start + (len < max_head ? len : max_head);
    unsigned seen = 0;

    request_reset(r);
    int rc = skip_empty_lines(&p, end);
    if (rc == 0)
        rc = parse_request_line(&p, end, max_line, r);
    if (rc == 0)
        rc = parse_headers(&p, end, r, &seen);
    if (rc == 0)
        rc = finish_request(r, seen);
    /* Out of bytes before the head ended: the head is longer than what we
     * have, so if that already reaches max_head it is too large. */
    if (rc == HTTP_INCOMPLETE && len >= max_head)
        return HTTP_ERR_HEADERS_TOO_LARGE;
    return rc < 0 ? rc : (int)(p - start);
}

int http_error_status(int code)
{
    switch (code) {
    case HTTP_ERR_BAD_REQUEST:
    case HTTP_ERR_FORBIDDEN:
    case HTTP_ERR_URI_TOO_LONG:
    case HTTP_ERR_HEADERS_TOO_LARGE:
    case HTTP_ERR_NOT_IMPLEMENTED:
    case HTTP_ERR_VERSION:
        return -code;
    default:
        return 0;
    }
}

/* -------------------------------------------------------------- paths -- */

static inline int hexval(unsigned char c)
{
    if (IS_DIGIT(c))
        return c - '0';
    c |= 0x20;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* absolute-form: drops "http(s)://authority"; anything else ("*",
 * authority-form, other schemes) names no file. */
static int skip_scheme_and_authority(const unsigned char **pp, const unsigned char *end)
{
    const unsigned char *p = *pp;
    size_t skip = scheme_length(p, (size_t)(end - p));
    if (skip == 0)
        return HTTP_ERR_BAD_REQUEST;
    p += skip;
    const unsigned char *const authority = p;
    while (p < end && *p != '/' && *p != '?' && *p != '#')
        p++;
    if (p == authority)
        return HTTP_ERR_BAD_REQUEST; /* no host */
    *pp = p;
    return 0;
}

/* The next byte of the path at *pp, percent-decoded, into *out; refuses
 * what no file name may hold. */
static inline int next_path_byte(const unsigned char **pp, const unsigned char *end,
                                 unsigned *out)
{
    const unsigned char *p = *pp;
    unsigned c = *p;
    if (c == '%') {
        int hi, lo;
        if (end - p < 3 || (hi = hexval(p[1])) < 0 || (lo = hexval(p[2])) < 0)
            return HTTP_ERR_BAD_REQUEST;
        c = (unsigned)(hi << 4 | lo);
        p += 3;
    } else {
        p++;
    }
    if (c < 0x20 || c == 0x7f)
        return HTTP_ERR_BAD_REQUEST; /* NUL, CR, LF... never a file name */
    if (c == '\\')
        return HTTP_ERR_FORBIDDEN;
    *pp = p;
    *out = c;
    return 0;
}

/* The decoded path being written: segments are appended as "seg" or
 * "/seg"; `base` is where the current one started (its separator
 * included), `seg` where its text starts. */
typedef struct path_writer {
    char *out;
    size_t cap, len, base, seg;
    bool in_segment;
} path_writer;

/* One byte of a segment; the first of a segment writes its separator.
 * Room for the final NUL is always kept. */
static inline int path_put(path_writer *w, unsigned char c)
{
    if (!w->in_segment) {
        w->base = w->len;
        if (w->len > 0) {
            if (w->len + 1 >= w->cap)
                return HTTP_ERR_URI_TOO_LONG;
            w->out[w->len++] = '/';
        }
        w->seg = w->len;
        w->in_segment = true;
    }
    if (w->len + 1 >= w->cap)
        return HTTP_ERR_URI_TOO_LONG;
    w->out[w->len++] = (char)c;
    return 0;
}

/* Ends the current segment, if any: "." is taken back out (returns 1),
 * ".." is refused, anything else stays (returns 0). */
static inline int path_end_segment(path_writer *w)
{
    if (!w->in_segment)
        return 0;
    w->in_segment = false;
    size_t n = w->len - w->seg;
    const char *text = w->out + w->seg;
    if (n == 1 && text[0] == '.') {
        w->len = w->base;
        return 1;
    }
    if (n == 2 && text[0] == '.' && text[1] == '.')
        return HTTP_ERR_FORBIDDEN;
    return 0;
}

int http_decode_path(const char *target, size_t len, char *out, size_t out_cap, size_t *out_len,
                     bool *trailing_slash)
{
    const unsigned char *p = (const unsigned char *)target, *const end = p + len;
    *out_len = 0;
    *trailing_slash = false;
    if (out_cap > 0)
        out[0] = '\0';
    if (len == 0)
        return HTTP_ERR_BAD_REQUEST;
    if (*p != '/' && skip_scheme_and_authority(&p, end) < 0)
        return HTTP_ERR_BAD_REQUEST;

    path_writer w = {.out = out, .cap = out_cap};
    bool slash = true; /* the last thing read was a separator */
    while (p < end && *p != '?' && *p != '#') {
        unsigned c;
        int rc = next_path_byte(&p, end, &c);
        if (rc == 0 && c == '/') {
            rc = path_end_segment(&w);
            slash = true;
        } else if (rc == 0) {
            rc = path_put(&w, (unsigned char)c);
            slash = false;
        }
        if (rc < 0)
            return rc;
    }
    int last = path_end_segment(&w);
    if (last < 0)
        return last;
    if (w.len >= out_cap)
        return HTTP_ERR_URI_TOO_LONG;
    out[w.len] = '\0';
    *out_len = w.len;
    *trailing_slash = slash || last == 1;
    return 0;
}

/* ------------------------------------------------------------- ranges -- */

/* 1*DIGIT, saturating at UINT64_MAX; false if no digit. */
static bool parse_u64(const unsigned char **pp, const unsigned char *end, uint64_t *out)
{
    const unsigned char *p = *pp;
    uint64_t x = 0;
    if (p == end || !IS_DIGIT(*p))
        return false;
    do {
        unsigned d = (unsigned)(*p++ - '0');
        x = x > (UINT64_MAX - d) / 10 ? UINT64_MAX : x * 10 + d;
    } while (p < end && IS_DIGIT(*p));
    *pp = p;
    *out = x;
    return true;
}

int http_parse_range(const char *value, size_t len, uint64_t size, uint64_t *start,
                     uint64_t *end_inclusive)
{
    const unsigned char *p = (const unsigned char *)value, *end = p + len;
    while (p < end && IS_OWS(*p))
        p++;
    while (end > p && IS_OWS(end[-1]))
        end--;
    if (end - p < 6 || !lit_ieq(p, "bytes", 5) || p[5] != '=')
        return 0;
    p += 6;
    while (p < end && IS_OWS(*p))
        p++;
    uint64_t first = 0, last = 0;
    bool suffix = false, open = false;
    if (p < end && *p == '-') {
        p++;
        if (!parse_u64(&p, end, &last))
            return 0;
        suffix = true;
    } else {
        if (!parse_u64(&p, end, &first) || p == end || *p++ != '-')
            return 0;
        if (p < end && IS_DIGIT(*p))
            parse_u64(&p, end, &last);
        else
            open = true;
    }
    while (p < end && IS_OWS(*p))
        p++;
    if (p != end)
        return 0; /* several ranges, or trailing garbage */

    if (suffix) {
        if (last == 0 || size == 0)
            return -1;
        *start = last >= size ? 0 : size - last;
        *end_inclusive = size - 1;
        return 1;
    }
    if (!open && last < first)
        return 0; /* invalid range-spec: the whole header is ignored */
    if (first >= size)
        return -1;
    *start = first;
    *end_inclusive = open || last >= size ? size - 1 : last;
    return 1;
}

/* -------------------------------------------------------------- etags -- */

/* Strips W/ and the quotes: the opaque text a weak comparison looks at. */
static void etag_opaque(const unsigned char **p, size_t *n)
{
    if (*n >= 2 && (*p)[0] == 'W' && (*p)[1] == '/') {
        *p += 2;
        *n -= 2;
    }
    if (*n >= 2 && (*p)[0] == '"' && (*p)[*n - 1] == '"') {
        *p += 1;
        *n -= 2;
    }
}

bool http_etag_matches(const char *if_none_match, size_t len, const char *etag, size_t etag_len)
{
    const unsigned char *p = (const unsigned char *)if_none_match, *end = p + len;
    const unsigned char *want = (const unsigned char *)etag;
    size_t want_len = etag_len;
    etag_opaque(&want, &want_len);

    while (p < end && IS_OWS(*p))
        p++;
    while (end > p && IS_OWS(end[-1]))
        end--;
    if (end - p == 1 && *p == '*')
        return true;

    bool match = false, any = false;
    for (;;) {
        while (p < end && (IS_OWS(*p) || *p == ','))
            p++; /* empty list elements are allowed */
        if (p == end)
            break;
        if (end - p >= 2 && p[0] == 'W' && p[1] == '/')
            p += 2;
        if (p == end || *p != '"')
            return false;
        const unsigned char *tag = ++p;
        /* etagc = %x21 / %x23-7E / obs-text */
        while (p < end && *p != '"') {
            if (*p <= 0x20 || *p == 0x7f)
                return false;
            p++;
        }
        if (p == end)
            return false;
        size_t n = (size_t)(p - tag);
        p++;
        if (n == want_len && memcmp(tag, want, n) == 0)
            match = true;
        any = true;
        while (p < end && IS_OWS(*p))
            p++;
        if (p < end && *p != ',')
            return false;
    }
    return any && match;
}

/* -------------------------------------------------------------- dates -- */

static const char wkday_names[7][10] = {"sunday",   "monday", "tuesday", "wednesday",
                                        "thursday", "friday", "saturday"};
static const char month_names[12][4] = {"jan", "feb", "mar", "apr", "may", "jun",
                                        "jul", "aug", "sep", "oct", "nov", "dec"};

/* Days since 1970-01-01 of a proleptic Gregorian date (month 1-12). */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;                               /* [0, 399] */
    int64_t doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1; /* [0, 365] */
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;       /* [0, 146096] */
    return era * 146097 + doe - 719468;
}

static void civil_from_days(int64_t z, int64_t *y, int *m, int *d)
{
    z += 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    int64_t doe = z - era * 146097;
    int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    int64_t mp = (5 * doy + 2) / 153;
    *d = (int)(doy - (153 * mp + 2) / 5 + 1);
    *m = (int)(mp < 10 ? mp + 3 : mp - 9);
    *y = yoe + era * 400 + (*m <= 2);
}

static int days_in_month(int64_t y, int m)
{
    static const unsigned char dim[12] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    bool leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    return dim[m - 1] + (m == 2 && leap);
}

static int digits(const unsigned char *s, int n)
{
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (!IS_DIGIT(s[i]))
            return -1;
        x = x * 10 + (s[i] - '0');
    }
    return x;
}

static int month_of(const unsigned char *s)
{
    for (int i = 0; i < 12; i++)
        if (lit_ieq(s, month_names[i], 3))
            return i + 1;
    return -1;
}

/* A 3-letter (full == false) or full day name of exactly n bytes. */
static bool is_wkday(const unsigned char *s, size_t n, bool full)
{
    for (int i = 0; i < 7; i++) {
        size_t wl = full ? strlen(wkday_names[i]) : 3;
        if (n == wl && lit_ieq(s, wkday_names[i], wl))
            return true;
    }
    return false;
}

/* "HH:MM:SS" */
static int64_t time_of_day(const unsigned char *s)
{
    if (s[2] != ':' || s[5] != ':')
        return -1;
    int h = digits(s, 2), mi = digits(s + 3, 2), se = digits(s + 6, 2);
    if (h < 0 || h > 23 || mi < 0 || mi > 59 || se < 0 || se > 60)
        return -1; /* 60: a leap second, read as the next second */
    return h * 3600 + mi * 60 + se;
}

static int finish_date(int64_t y, int m, int d, int64_t tod, int64_t *out)
{
    if (y < 0 || m < 1 || d < 1 || d > days_in_month(y, m) || tod < 0)
        return -1;
    *out = days_from_civil(y, m, d) * 86400 + tod;
    return 0;
}

int http_parse_date(const char *str, size_t len, int64_t *unix_seconds)
{
    const unsigned char *s = (const unsigned char *)str, *end = s + len;
    while (s < end && IS_OWS(*s))
        s++;
    while (end > s && IS_OWS(end[-1]))
        end--;
    size_t n = (size_t)(end - s);
    if (n < 4)
        return -1;

    if (s[3] == ',') {
        /* IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT" */
        if (n != 29 || !is_wkday(s, 3, false) || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' ||
            s[16] != ' ' || memcmp(s + 25, " GMT", 4) != 0)
            return -1;
        int d = digits(s + 5, 2), m = month_of(s + 8), y = digits(s + 12, 4);
        if (d < 0 || m < 0 || y < 0)
            return -1;
        return finish_date(y, m, d, time_of_day(s + 17), unix_seconds);
    }
    if (s[3] == ' ') {
        /* asctime: "Sun Nov  6 08:49:37 1994" */
        if (n != 24 || !is_wkday(s, 3, false) || s[7] != ' ' || s[10] != ' ' || s[19] != ' ')
            return -1;
        int m = month_of(s + 4);
        int d = s[8] == ' ' ? digits(s + 9, 1) : digits(s + 8, 2);
        int y = digits(s + 20, 4);
        if (m < 0 || d < 0 || y < 0)
            return -1;
        return finish_date(y, m, d, time_of_day(s + 11), unix_seconds);
    }
    /* RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT" */
    const unsigned char *comma = memchr(s, ',', n);
    if (comma == NULL || !is_wkday(s, (size_t)(comma - s), true))
        return -1;
    const unsigned char *r = comma + 1;
    if (end - r != 23 || r[0] != ' ' || r[3] != '-' || r[7] != '-' || r[10] != ' ' ||
        memcmp(r + 19, " GMT", 4) != 0)
        return -1;
    int d = digits(r + 1, 2), m = month_of(r + 4), yy = digits(r + 8, 2);
    if (d < 0 || m < 0 || yy < 0)
        return -1;
    /* RFC 9110 5.6.7: a year more than 50 years ahead is the most recent
     * past year with those two digits. */
    int64_t now_y;
    int now_m, now_d;
    civil_from_days((int64_t)time(NULL) / 86400, &now_y, &now_m, &now_d);
    int64_t y = now_y - now_y % 100 + yy;
    if (y > now_y + 50)
        y -= 100;
    else if (y <= now_y - 50)
        y += 100;
    return finish_date(y, m, d, time_of_day(r + 11), unix_seconds);
}

size_t http_format_date(int64_t t, char out[30])
{
    static const char wk[7][4] = {"Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"};
    static const char mo[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    const int64_t lo = -62167219200LL;  /* 0000-01-01T00:00:00Z */
    const int64_t hi = 253402300799LL;  /* 9999-12-31T23:59:59Z */
    if (t < lo)
        t = lo;
    if (t > hi)
        t = hi;
    int64_t days = t / 86400, secs = t % 86400;
    if (secs < 0) {
        secs += 86400;
        days--;
    }
    int64_t y;
    int m, d;
    civil_from_days(days, &y, &m, &d);
    int w = (int)(((days % 7) + 7) % 7); /* 1970-01-01 was a Thursday */
    int h = (int)(secs / 3600), mi = (int)(secs / 60 % 60), s = (int)(secs % 60);
    memcpy(out, wk[w], 3);
    out[3] = ',';
    out[4] = ' ';
    out[5] = (char)('0' + d / 10);
    out[6] = (char)('0' + d % 10);
    out[7] = ' ';
    memcpy(out + 8, mo[m - 1], 3);
    out[11] = ' ';
    out[12] = (char)('0' + y / 1000);
    out[13] = (char)('0' + y / 100 % 10);
    out[14] = (char)('0' + y / 10 % 10);
    out[15] = (char)('0' + y % 10);
    out[16] = ' ';
    out[17] = (char)('0' + h / 10);
    out[18] = (char)('0' + h % 10);
    out[19] = ':';
    out[20] = (char)('0' + mi / 10);
    out[21] = (char)('0' + mi % 10);
    out[22] = ':';
    out[23] = (char)('0' + s / 10);
    out[24] = (char)('0' + s % 10);
    memcpy(out + 25, " GMT", 5);
    return HTTP_DATE_LEN;
}
