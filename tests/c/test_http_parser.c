/*
 * test_http_parser.c - engine/protocols/http/parser.c: request heads, paths, ranges,
 * entity-tags and dates.  `test_http_parser NAME` runs one case (ctest runs
 * each in its own process); `test_http_parser list` names them.
 *
 * Every request is parsed from a heap copy of exactly its length, so under
 * AddressSanitizer a read past `len` fails the test.
 */
#include "protocols/http/parser.h"
#include "test_check.h"

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A string literal and its length (embedded NULs included). */
#define S(lit) lit, sizeof(lit) - 1

#define BIG 65536

/* n bytes equal to the NUL-terminated lit; NULL only matches NULL. */
static bool eqs(const char *p, size_t n, const char *lit)
{
    if (lit == NULL || p == NULL)
        return lit == p;
    return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

static char *dup_exact(const char *s, size_t len)
{
    char *b = malloc(len ? len : 1);
    CHECK(b != NULL);
    memcpy(b, s, len);
    return b;
}

/* Parses a heap copy of exactly len bytes and checks that whatever the
 * parser stored points inside it. */
static int parse_in(const char *buf, size_t len, size_t max_line, size_t max_head,
                    http_request *r)
{
    int rc = http_parse_request(buf, len, max_line, max_head, r);
    if (rc > 0) {
        CHECK((size_t)rc <= len);
        const char *lo = buf, *hi = buf + rc;
        CHECK(r->method >= lo && r->method + r->method_len <= hi);
        CHECK(r->target >= lo && r->target + r->target_len <= hi);
        CHECK(r->header_count <= HTTP_MAX_HEADERS);
        for (size_t i = 0; i < r->header_count; i++) {
            const http_header *h = &r->headers[i];
            CHECK(h->name >= lo && h->name + h->name_len <= hi && h->name_len > 0);
            CHECK(h->value >= lo && h->value + h->value_len <= hi);
        }
        CHECK(r->host != NULL);
        CHECK(r->minor_version == 0 || r->minor_version == 1);
    }
    return rc;
}

static int parse_copy(const char *s, size_t len, size_t max_line, size_t max_head)
{
    char *b = dup_exact(s, len);
    http_request r;
    int rc = parse_in(b, len, max_line, max_head, &r);
    free(b);
    return rc;
}

/* ------------------------------------------------------------ valid -- */

typedef struct valid_case {
    const char *raw;
    size_t head_len; /* 0: the whole string is the head */
    const char *method, *target;
    int minor;
    size_t headers;
    int64_t content_length;
    bool chunked, close, keep_alive, expect;
    const char *host;
} valid_case;

#define CURL_REQ "GET /index.html HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"

static const valid_case valid_cases[] = {
    {CURL_REQ, 0, "GET", "/index.html", 1, 3, -1, false, false, false, false, "localhost:8080"},
    {"GET /file.tar.gz HTTP/1.1\r\nUser-Agent: Wget/1.21.3\r\nAccept: */*\r\n"
     "Accept-Encoding: identity\r\nHost: example.com\r\nConnection: Keep-Alive\r\n\r\n",
     0, "GET", "/file.tar.gz", 1, 5, -1, false, false, true, false, "example.com"},
    {"GET /docs/ HTTP/1.1\r\nHost: www.example.org\r\n"
     "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0\r\n"
     "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
     "Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
     "Connection: keep-alive\r\nUpgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\n"
     "Sec-Fetch-Mode: navigate\r\nSec-Fetch-Site: none\r\nSec-Fetch-User: ?1\r\n"
     "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nIf-None-Match: \"abc\"\r\n\r\n",
     0, "GET", "/docs/", 1, 13, -1, false, false, true, false, "www.example.org"},
    {"GET /static/app.js?v=3 HTTP/1.1\r\nHost: example.com\r\nConnection: keep-alive\r\n"
     "sec-ch-ua: \"Chromium\";v=\"124\", \"Not-A.Brand\";v=\"99\"\r\nsec-ch-ua-mobile: ?0\r\n"
     "User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
     "Chrome/124.0.0.0 Safari/537.36\r\nAccept: */*\r\nReferer: https://example.com/\r\n"
     "Accept-Encoding: gzip, deflate, br, zstd\r\nRange: bytes=0-\r\n\r\n",
     0, "GET", "/static/app.js?v=3", 1, 9, -1, false, false, true, false, "example.com"},
    /* HTTP/1.0 needs no Host */
    {"GET / HTTP/1.0\r\n\r\n", 0, "GET", "/", 0, 0, -1, false, false, false, false, ""},
    {"HEAD /x HTTP/1.0\r\nConnection: keep-alive\r\nHost: h\r\n\r\n", 0, "HEAD", "/x", 0, 2, -1,
     false, false, true, false, "h"},
    /* a body follows the head and is not consumed */
    {"POST /form HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello", 51, "POST", "/form", 1,
     2, 5, false, false, false, false, "h"},
    {"PUT /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
     0, "PUT", "/up", 1, 3, -1, true, false, false, true, "h"},
    {"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n", 0, "POST", "/x",
     1, 2, -1, true, false, false, false, "h"},
    {"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
     0, "POST", "/x", 1, 3, -1, true, false, false, false, "h"},
    /* transfer-parameters, with a quoted comma and an escaped quote */
    {"POST /x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip;q=\"a,\\\"\" , chunked\r\n\r\n", 0,
     "POST", "/x", 1, 2, -1, true, false, false, false, "h"},
    /* bare LF line ends */
    {"GET /lf HTTP/1.1\nHost: a\n\n", 0, "GET", "/lf", 1, 1, -1, false, false, false, false, "a"},
    {"GET /mix HTTP/1.1\r\nHost: a\n\r\n", 0, "GET", "/mix", 1, 1, -1, false, false, false, false,
     "a"},
    /* leading empty lines */
    {"\r\n\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, "GET", "/", 1, 1, -1, false, false, false,
     false, "a"},
    {"\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", 0, "GET", "/", 1, 1, -1, false, false,
     false, false, "a"},
    /* OWS trimmed, empty values, HT inside a value, obs-text */
    {"GET / HTTP/1.1\r\nHost: \t a \t\r\nX-Empty:\r\nX-Blank: \t \r\nX-Tab: a\tb\r\n"
     "X-Utf8: caf\xc3\xa9\r\n\r\n",
     0, "GET", "/", 1, 5, -1, false, false, false, false, "a"},
    /* case-insensitive names and tokens */
    {"GET / HTTP/1.1\r\nHOST: A\r\nconnection: Upgrade, CLOSE\r\nEXPECT: 100-Continue\r\n"
     "content-LENGTH: 0\r\n\r\n",
     0, "GET", "/", 1, 4, 0, false, true, false, true, "A"},
    {"GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nConnection: ,te, close ,\r\n\r\n", 0,
     "GET", "/", 1, 3, -1, false, true, true, false, "a"},
    /* identical duplicate Content-Length, also as a list; leading zeros */
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n", 0, "POST",
     "/", 1, 3, 5, false, false, false, false, "a"},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5,5\r\n\r\n", 0, "POST", "/", 1, 2, 5,
     false, false, false, false, "a"},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n", 0, "POST", "/", 1, 2, 7, false,
     false, false, false, "a"},
    {"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n", 0, "POST", "/",
     1, 2, INT64_MAX, false, false, false, false, "a"},
    /* absolute-form: the authority wins over Host */
    {"GET http://example.org:81/a?b HTTP/1.1\r\nHost: other\r\n\r\n", 0, "GET",
     "http://example.org:81/a?b", 1, 1, -1, false, false, false, false, "example.org:81"},
    {"GET HTTPS://[::1]:8443 HTTP/1.1\r\nHost: other\r\n\r\n", 0, "GET", "HTTPS://[::1]:8443", 1,
     1, -1, false, false, false, false, "[::1]:8443"},
    {"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", 0, "OPTIONS", "*", 1, 1, -1, false, false, false,
     false, "a"},
    /* odd but valid tokens and targets; raw obs-text in the target */
    {"M-SEARCH!#$%&'*+.^_`|~ /caf\xc3\xa9\"<>{} HTTP/1.1\r\nX-!#$%&'*+.^_`|~: v\r\nHost: a\r\n\r\n",
     0, "M-SEARCH!#$%&'*+.^_`|~", "/caf\xc3\xa9\"<>{}", 1, 2, -1, false, false, false, false, "a"},
    /* Expect is ignored in HTTP/1.0; empty Host allowed */
    {"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nHost:\r\n\r\n", 0, "PUT", "/", 0, 2, -1, false,
     false, false, false, ""},
};

static size_t head_len_of(const valid_case *vc)
{
    return vc->head_len ? vc->head_len : strlen(vc->raw);
}

static void test_valid_requests(void)
{
    for (size_t i = 0; i < sizeof valid_cases / sizeof valid_cases[0]; i++) {
        const valid_case *vc = &valid_cases[i];
        size_t len = strlen(vc->raw), head = head_len_of(vc);
        char *b = dup_exact(vc->raw, len);
        http_request r;
        int rc = parse_in(b, len, 8192, BIG, &r);
        if (rc != (int)head)
            fprintf(stderr, "case %zu: rc %d, want %zu\n", i, rc, head);
        CHECK(rc == (int)head);
        CHECK(eqs(r.method, r.method_len, vc->method));
        CHECK(eqs(r.target, r.target_len, vc->target));
        CHECK(r.minor_version == vc->minor);
        CHECK(r.header_count == vc->headers);
        CHECK(r.content_length == vc->content_length);
        CHECK(r.chunked == vc->chunked);
        CHECK(r.has_transfer_encoding == vc->chunked);
        CHECK(r.connection_close == vc->close);
        CHECK(r.connection_keep_alive == vc->keep_alive);
        CHECK(r.expect_continue == vc->expect);
        CHECK(eqs(r.host, r.host_len, vc->host));
        free(b);
    }
}

static void test_header_values(void)
{
    static const char req[] = "GET / HTTP/1.1\r\nHost: \t a \t\r\nX-Empty:\r\nX-Blank: \t \r\n"
                              "X-Tab: a\tb\r\nX-Inner:  a  b  \r\n\r\n";
    char *b = dup_exact(req, sizeof req - 1);
    http_request r;
    CHECK(parse_in(b, sizeof req - 1, 8192, BIG, &r) == (int)(sizeof req - 1));
    CHECK(r.header_count == 5);
    CHECK(eqs(r.headers[0].name, r.headers[0].name_len, "Host"));
    CHECK(eqs(r.headers[0].value, r.headers[0].value_len, "a"));
    CHECK(eqs(r.headers[1].name, r.headers[1].name_len, "X-Empty"));
    CHECK(r.headers[1].value_len == 0);
    CHECK(r.headers[2].value_len == 0);
    CHECK(eqs(r.headers[3].value, r.headers[3].value_len, "a\tb"));
    CHECK(eqs(r.headers[4].value, r.headers[4].value_len, "a  b"));
    CHECK(r.if_none_match == NULL && r.if_modified_since == NULL && r.range == NULL &&
          r.if_range == NULL);
    free(b);

    /* conditional and range headers, raw */
    static const char cond[] =
        "GET /f HTTP/1.1\r\nHost: h\r\nIf-None-Match: W/\"x\", \"y\"\r\n"
        "if-modified-since: Sun, 06 Nov 1994 08:49:37 GMT\r\nRANGE: bytes=0-9\r\n"
        "If-Range: \"y\"\r\n\r\n";
    b = dup_exact(cond, sizeof cond - 1);
    CHECK(parse_in(b, sizeof cond - 1, 8192, BIG, &r) == (int)(sizeof cond - 1));
    CHECK(eqs(r.if_none_match, r.if_none_match_len, "W/\"x\", \"y\""));
    CHECK(eqs(r.if_modified_since, r.if_modified_since_len, "Sun, 06 Nov 1994 08:49:37 GMT"));
    CHECK(eqs(r.range, r.range_len, "bytes=0-9"));
    CHECK(eqs(r.if_range, r.if_range_len, "\"y\""));
    free(b);

    /* repeats: first If-None-Match kept; repeated IMS, Range, If-Range dropped */
    static const char dups[] = "GET /f HTTP/1.1\r\nHost: h\r\nIf-None-Match: \"a\"\r\n"
                               "If-None-Match: \"b\"\r\nIf-Modified-Since: x\r\n"
                               "If-Modified-Since: y\r\nRange: bytes=0-1\r\nRange: bytes=2-3\r\n\r\n";
    b = dup_exact(dups, sizeof dups - 1);
    CHECK(parse_in(b, sizeof dups - 1, 8192, BIG, &r) > 0);
    CHECK(eqs(r.if_none_match, r.if_none_match_len, "\"a\""));
    CHECK(r.if_modified_since == NULL && r.if_modified_since_len == 0);
    CHECK(r.range == NULL && r.range_len == 0);
    free(b);
    static const char dup_ir[] = "GET /f HTTP/1.1\r\nHost: h\r\nRange: bytes=0-1\r\n"
                                 "If-Range: \"a\"\r\nIf-Range: \"b\"\r\n\r\n";
    b = dup_exact(dup_ir, sizeof dup_ir - 1);
    CHECK(parse_in(b, sizeof dup_ir - 1, 8192, BIG, &r) > 0);
    CHECK(r.range == NULL && r.if_range == NULL);
    free(b);

    /* the struct is fully reset between calls */
    static const char plain[] = "GET / HTTP/1.1\r\nHost: z\r\n\r\n";
    CHECK(http_parse_request(cond, sizeof cond - 1, 8192, BIG, &r) > 0);
    CHECK(http_parse_request(plain, sizeof plain - 1, 8192, BIG, &r) > 0);
    CHECK(r.header_count == 1 && r.if_none_match == NULL && r.range == NULL &&
          r.if_range == NULL && r.if_modified_since == NULL && r.content_length == -1);
}

static void test_pipelined(void)
{
    static const char two[] = "GET /a HTTP/1.1\r\nHost: h\r\n\r\n"
                              "GET /b HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n";
    const size_t first = strlen("GET /a HTTP/1.1\r\nHost: h\r\n\r\n");
    char *b = dup_exact(two, sizeof two - 1);
    http_request r;
    CHECK(parse_in(b, sizeof two - 1, 8192, BIG, &r) == (int)first);
    CHECK(eqs(r.target, r.target_len, "/a") && !r.connection_close);
    CHECK(parse_in(b + first, sizeof two - 1 - first, 8192, BIG, &r) ==
          (int)(sizeof two - 1 - first));
    CHECK(eqs(r.target, r.target_len, "/b") && r.connection_close);
    /* the second one may be partial, and longer than max_head: irrelevant */
    CHECK(parse_in(b, first + 5, 8192, BIG, &r) == (int)first);
    CHECK(parse_in(b, sizeof two - 1, 8192, first, &r) == (int)first);
    free(b);

    /* a body, then the next request */
    static const char body[] = "POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
                               "GET /n HTTP/1.1\r\nHost: h\r\n\r\n";
    b = dup_exact(body, sizeof body - 1);
    int rc = parse_in(b, sizeof body - 1, 8192, BIG, &r);
    CHECK(rc > 0 && r.content_length == 3);
    CHECK(memcmp(b + rc, "abc", 3) == 0);
    size_t next = (size_t)rc + 3;
    CHECK(parse_in(b + next, sizeof body - 1 - next, 8192, BIG, &r) ==
          (int)(sizeof body - 1 - next));
    CHECK(eqs(r.target, r.target_len, "/n"));
    free(b);
}

static void test_incomplete_prefixes(void)
{
    for (size_t i = 0; i < sizeof valid_cases / sizeof valid_cases[0]; i++) {
        const valid_case *vc = &valid_cases[i];
        size_t head = head_len_of(vc);
        for (size_t n = 0; n < head; n++) {
            int rc = parse_copy(vc->raw, n, 8192, BIG);
            if (rc != HTTP_INCOMPLETE)
                fprintf(stderr, "case %zu prefix %zu: rc %d\n", i, n, rc);
            CHECK(rc == HTTP_INCOMPLETE);
        }
        CHECK(parse_copy(vc->raw, head, 8192, BIG) == (int)head);
    }
    /* prefixes that stop exactly on the interesting bytes */
    static const char *const partial[] = {
        "",
        "\r",
        "\r\n",
        "G",
        "GET",
        "GET ",
        "GET /",
        "GET / ",
        "GET / H",
        "GET / HTTP/",
        "GET / HTTP/1",
        "GET / HTTP/1.",
        "GET / HTTP/2.", /* the version is only known with all its bytes */
        "GET / HTTP/1.1",
        "GET / HTTP/1.1\r",
        "GET / HTTP/1.1\r\n",
        "GET / HTTP/1.1\r\nHost",
        "GET / HTTP/1.1\r\nHost:",
        "GET / HTTP/1.1\r\nHost: a",
        "GET / HTTP/1.1\r\nHost: a\r",
        "GET / HTTP/1.1\r\nHost: a\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n\r",
        "GET / HTTP/1.1\nHost: a\n",
    };
    for (size_t i = 0; i < sizeof partial / sizeof partial[0]; i++)
        CHECK(parse_copy(partial[i], strlen(partial[i]), 8192, BIG) == HTTP_INCOMPLETE);
    CHECK(parse_copy("GET / HTTP/2.0", 14, 8192, BIG) == HTTP_ERR_VERSION);

    /* byte by byte, as a slow client would send it */
    for (size_t i = 0; i < sizeof valid_cases / sizeof valid_cases[0]; i++) {
        const char *raw = valid_cases[i].raw;
        size_t n = 0, len = strlen(raw);
        int rc;
        while ((rc = parse_copy(raw, n, 8192, BIG)) == HTTP_INCOMPLETE && n < len)
            n++;
        CHECK(rc == (int)head_len_of(&valid_cases[i]) && (size_t)rc == n);
    }
}

/* -------------------------------------------------------------- bad -- */

typedef struct bad_case {
    const char *raw;
    size_t len;
    int code;
} bad_case;

#define H11 "GET / HTTP/1.1\r\nHost: a\r\n"

static const bad_case bad_cases[] = {
    /* version */
    {S("GET / HTTP/2.0\r\nHost: a\r\n\r\n"), HTTP_ERR_VERSION},
    {S("GET / HTTP/0.9\r\n\r\n"), HTTP_ERR_VERSION},
    {S("GET / HTTP/1.2\r\nHost: a\r\n\r\n"), HTTP_ERR_VERSION},
    {S("GET / HTTP/3.0\r\n"), HTTP_ERR_VERSION},
    {S("GET / HTTP/2\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / http/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.1x\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.10\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/11.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.1 \r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1,1\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTXP"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/a"), HTTP_ERR_BAD_REQUEST},
    /* request line */
    {S("GET /\r\n\r\n"), HTTP_ERR_BAD_REQUEST}, /* HTTP/0.9 */
    {S("GET  / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET /  HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(" GET / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET /\tHTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("G(T / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET /\x7f HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET /\0 HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("G\0T / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("\0GET / HTTP/1.1\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.1\0\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.1\r\0"), HTTP_ERR_BAD_REQUEST},
    {S("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("\r\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    /* bare CR */
    {S("GET / HTTP/1.1\rHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.1\r\nHost: a\r\n\rX"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.1\r\nHost: a\r\n\r\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.1\r\nX: a\rb\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    /* field lines */
    {S(H11 "X-A : b\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "X-A\t: b\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.1\r\n Host: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "X-A: b\r\n c\r\n\r\n"), HTTP_ERR_BAD_REQUEST}, /* obs-fold */
    {S(H11 "X-A: b\r\n\tc\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "X-A b\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 ": b\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "X(A): b\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "X\0A: b\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "X-A: b\0c\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "X-A: \0\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "X-A: b\x01\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "X-A: b\x1b[31m\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "X-A: b\x7f\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "X-A: b\x0b\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "\0\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    /* Host */
    {S("GET / HTTP/1.1\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.1\r\nHost: a b\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.1\r\nHost: a/b\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.1\r\nHost: user@a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET / HTTP/1.1\r\nHost: a\"b\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET http://user@a/ HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET http:///x HTTP/1.1\r\nHost: a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("GET http://a/ HTTP/1.1\r\n\r\n"), HTTP_ERR_BAD_REQUEST}, /* Host still required */
    /* Content-Length */
    {S(H11 "Content-Length: 5\r\nContent-Length: 6\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Content-Length: 5, 6\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Content-Length: 5\r\nContent-Length: 5, 6\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Content-Length: -1\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Content-Length: +5\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Content-Length: 5a\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Content-Length: 0x10\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Content-Length: 1 2\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Content-Length: 5,\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Content-Length: ,5\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Content-Length:\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Content-Length: \"5\"\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Content-Length: 9223372036854775808\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Content-Length: 99999999999999999999999999\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    /* Transfer-Encoding */
    {S(H11 "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Content-Length: 0\r\nTransfer-Encoding: gzip\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Transfer-Encoding: gzip\r\n\r\n"), HTTP_ERR_NOT_IMPLEMENTED},
    {S(H11 "Transfer-Encoding: identity\r\n\r\n"), HTTP_ERR_NOT_IMPLEMENTED},
    {S(H11 "Transfer-Encoding: chunkedx\r\n\r\n"), HTTP_ERR_NOT_IMPLEMENTED},
    {S(H11 "Transfer-Encoding: gzip;q=\"a,b\"\r\n\r\n"), HTTP_ERR_NOT_IMPLEMENTED},
    {S(H11 "Transfer-Encoding: chunked, gzip\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Transfer-Encoding: chunked, chunked\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n"),
     HTTP_ERR_BAD_REQUEST},
    {S(H11 "Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n"),
     HTTP_ERR_BAD_REQUEST},
    {S(H11 "Transfer-Encoding: chunked;x=y\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Transfer-Encoding: chunked x\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Transfer-Encoding: \r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Transfer-Encoding: , chunked\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Transfer-Encoding: chunked,\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Transfer-Encoding: \"chunked\"\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S(H11 "Transfer-Encoding: gzip;q=\"1\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
    {S("POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n"), HTTP_ERR_BAD_REQUEST},
};

static void test_bad_requests(void)
{
    for (size_t i = 0; i < sizeof bad_cases / sizeof bad_cases[0]; i++) {
        const bad_case *bc = &bad_cases[i];
        int rc = parse_copy(bc->raw, bc->len, 8192, BIG);
        if (rc != bc->code)
            fprintf(stderr, "bad case %zu: rc %d, want %d\n", i, rc, bc->code);
        CHECK(rc == bc->code);
        CHECK(http_error_status(rc) == -bc->code);
        /* an error is never turned back into "incomplete" by more bytes:
         * each prefix is either incomplete or the same error */
        for (size_t n = 0; n < bc->len; n++) {
            int prc = parse_copy(bc->raw, n, 8192, BIG);
            CHECK(prc == HTTP_INCOMPLETE || prc == bc->code);
        }
    }
}

static void test_limits(void)
{
    static const char req[] = "GET /aaaa HTTP/1.1\r\nHost: a\r\n\r\n";
    const size_t len = sizeof req - 1, line = strlen("GET /aaaa HTTP/1.1");
    /* the request line, CRLF excluded, may be exactly max_line bytes */
    CHECK(parse_copy(req, len, line, BIG) == (int)len);
    CHECK(parse_copy(req, len, line - 1, BIG) == HTTP_ERR_URI_TOO_LONG);
    static const char lf[] = "GET /aaaa HTTP/1.1\nHost: a\n\n";
    CHECK(parse_copy(lf, sizeof lf - 1, line, BIG) == (int)(sizeof lf - 1));
    CHECK(parse_copy(lf, sizeof lf - 1, line - 1, BIG) == HTTP_ERR_URI_TOO_LONG);
    /* a line already too long is refused before it ends */
    CHECK(parse_copy(req, 12, 10, BIG) == HTTP_ERR_URI_TOO_LONG);
    CHECK(parse_copy(req, 10, 10, BIG) == HTTP_INCOMPLETE);
    CHECK(parse_copy(req, 11, 10, BIG) == HTTP_ERR_URI_TOO_LONG);
    /* ...and while the line is only incomplete, it is the version that ends it */
    CHECK(parse_copy(req, line, line, BIG) == HTTP_INCOMPLETE);
    CHECK(parse_copy(req, line + 1, line, BIG) == HTTP_INCOMPLETE); /* the CR */

    /* the head may be exactly max_head bytes */
    CHECK(parse_copy(req, len, 8192, len) == (int)len);
    CHECK(parse_copy(req, len, 8192, len - 1) == HTTP_ERR_HEADERS_TOO_LARGE);
    /* incomplete: 431 as soon as max_head bytes are there without an end */
    CHECK(parse_copy(req, len - 1, 8192, len - 1) == HTTP_ERR_HEADERS_TOO_LARGE);
    CHECK(parse_copy(req, len - 2, 8192, len - 1) == HTTP_INCOMPLETE);
    CHECK(parse_copy(req, 5, 8192, 5) == HTTP_ERR_HEADERS_TOO_LARGE);
    CHECK(parse_copy(req, 0, 8192, 0) == HTTP_ERR_HEADERS_TOO_LARGE);
    /* a head that never ends: endless header lines */
    char *big = malloc(100000);
    CHECK(big != NULL);
    size_t n = (size_t)sprintf(big, "GET / HTTP/1.1\r\nHost: a\r\n");
    while (n + 20 < 100000)
        n += (size_t)sprintf(big + n, "X-Pad: 0123456789\r\n");
    CHECK(parse_copy(big, n, 8192, 8192) == HTTP_ERR_HEADERS_TOO_LARGE);
    CHECK(parse_copy(big, 8191, 8192, 8192) == HTTP_ERR_HEADERS_TOO_LARGE); /* > 64 headers */
    /* one endless header value */
    n = (size_t)sprintf(big, "GET / HTTP/1.1\r\nHost: a\r\nX: ");
    memset(big + n, 'v', 100000 - n);
    CHECK(parse_copy(big, 100000, 8192, 8192) == HTTP_ERR_HEADERS_TOO_LARGE);
    CHECK(parse_copy(big, 8191, 8192, 8192) == HTTP_INCOMPLETE);
    /* one endless request line: 414, unless max_head is the smaller limit */
    memcpy(big, "GET /", 5);
    memset(big + 5, 'a', 100000 - 5);
    CHECK(parse_copy(big, 100000, 4096, 8192) == HTTP_ERR_URI_TOO_LONG);
    CHECK(parse_copy(big, 4097, 4096, 8192) == HTTP_ERR_URI_TOO_LONG);
    CHECK(parse_copy(big, 4096, 4096, 8192) == HTTP_INCOMPLETE);
    CHECK(parse_copy(big, 100000, 8192, 8192) == HTTP_ERR_HEADERS_TOO_LARGE);
    CHECK(parse_copy(big, 100000, 8192, 4096) == HTTP_ERR_HEADERS_TOO_LARGE);
    free(big);

    /* HTTP_MAX_HEADERS fields are fine, one more is 431 */
    char buf[4096];
    n = (size_t)sprintf(buf, "GET / HTTP/1.1\r\nHost: a\r\n");
    for (int i = 1; i < HTTP_MAX_HEADERS; i++)
        n += (size_t)sprintf(buf + n, "X-%d: v\r\n", i);
    memcpy(buf + n, "\r\n", 2);
    CHECK(parse_copy(buf, n + 2, 8192, BIG) == (int)(n + 2));
    n += (size_t)sprintf(buf + n, "X-last: v\r\n\r\n");
    CHECK(parse_copy(buf, n, 8192, BIG) == HTTP_ERR_HEADERS_TOO_LARGE);

    /* huge limits are clamped, not trusted */
    CHECK(parse_copy(req, len, SIZE_MAX, SIZE_MAX) == (int)len);
}

static void test_error_status(void)
{
    CHECK(http_error_status(HTTP_ERR_BAD_REQUEST) == 400);
    CHECK(http_error_status(HTTP_ERR_FORBIDDEN) == 403);
    CHECK(http_error_status(HTTP_ERR_URI_TOO_LONG) == 414);
    CHECK(http_error_status(HTTP_ERR_HEADERS_TOO_LARGE) == 431);
    CHECK(http_error_status(HTTP_ERR_NOT_IMPLEMENTED) == 501);
    CHECK(http_error_status(HTTP_ERR_VERSION) == 505);
    CHECK(http_error_status(HTTP_INCOMPLETE) == 0);
    CHECK(http_error_status(0) == 0);
    CHECK(http_error_status(100) == 0);
    CHECK(http_error_status(-1) == 0);
}

/* ------------------------------------------------------------- paths -- */

typedef struct path_case {
    const char *target;
    size_t len;
    int rc;
    const char *out;
    bool trailing;
} path_case;

static const path_case path_cases[] = {
    {S("/"), 0, "", true},
    {S("/index.html"), 0, "index.html", false},
    {S("/a/b/"), 0, "a/b", true},
    {S("/a/./b//c"), 0, "a/b/c", false},
    {S("//a///b"), 0, "a/b", false},
    {S("/a/b/."), 0, "a/b", true},
    {S("/a/./"), 0, "a", true},
    {S("/./"), 0, "", true},
    {S("/."), 0, "", true},
    {S("//"), 0, "", true},
    {S("/%2e"), 0, "", true},
    {S("/a/%2E/b"), 0, "a/b", false},
    {S("/.hidden"), 0, ".hidden", false},
    {S("/..."), 0, "...", false},
    {S("/..a/b.."), 0, "..a/b..", false},
    {S("/a%20b"), 0, "a b", false},
    {S("/caf%C3%A9"), 0, "caf\xc3\xa9", false},
    {S("/caf\xc3\xa9"), 0, "caf\xc3\xa9", false},
    {S("/a%2Fb"), 0, "a/b", false},
    {S("/a%2fb%2F"), 0, "a/b", true},
    {S("/a%2f%2f%2fb"), 0, "a/b", false},
    {S("/%2Fetc/passwd"), 0, "etc/passwd", false},
    {S("/a/%3F"), 0, "a/?", false},
    {S("/a%23b"), 0, "a#b", false},
    {S("/a%25"), 0, "a%", false},
    {S("/a?b=../..&c=\\"), 0, "a", false},
    {S("/a/?x"), 0, "a", true},
    {S("/a#frag/../.."), 0, "a", false},
    {S("/?"), 0, "", true},
    /* absolute-form */
    {S("http://example.com/a/b?x"), 0, "a/b", false},
    {S("HTTP://example.com"), 0, "", true},
    {S("http://example.com?q"), 0, "", true},
    {S("https://h:8443/x/"), 0, "x", true},
    {S("http://h//x/./y"), 0, "x/y", false},
    /* traversal and backslashes: 403 */
    {S("/.."), HTTP_ERR_FORBIDDEN, "", false},
    {S("/../etc/passwd"), HTTP_ERR_FORBIDDEN, "", false},
    {S("/a/../b"), HTTP_ERR_FORBIDDEN, "", false},
    {S("/a/.."), HTTP_ERR_FORBIDDEN, "", false},
    {S("/a/../"), HTTP_ERR_FORBIDDEN, "", false},
    {S("/%2e%2e/etc/passwd"), HTTP_ERR_FORBIDDEN, "", false},
    {S("/%2E%2E"), HTTP_ERR_FORBIDDEN, "", false},
    {S("/.%2e/"), HTTP_ERR_FORBIDDEN, "", false},
    {S("/%2e./"), HTTP_ERR_FORBIDDEN, "", false},
    {S("/..%2f"), HTTP_ERR_FORBIDDEN, "", false},
    {S("/..%2fetc"), HTTP_ERR_FORBIDDEN, "", false},
    {S("/a%2f..%2fb"), HTTP_ERR_FORBIDDEN, "", false},
    {S("/a%2F%2E%2E"), HTTP_ERR_FORBIDDEN, "", false},
    {S("http://h/../x"), HTTP_ERR_FORBIDDEN, "", false},
    {S("/a\\b"), HTTP_ERR_FORBIDDEN, "", false},
    {S("/..\\x"), HTTP_ERR_FORBIDDEN, "", false},
    {S("/a%5cb"), HTTP_ERR_FORBIDDEN, "", false},
    {S("/%5C..%5C"), HTTP_ERR_FORBIDDEN, "", false},
    /* bad escapes, NUL and control characters: 400 */
    {S("/a%00b"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("/a%00"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("/a\0b"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("/%"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("/%2"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("/%zz"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("/%g0"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("/%0g"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("/%%30"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("/a%0d%0aSet-Cookie:x"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("/a%7f"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("/a\tb"), HTTP_ERR_BAD_REQUEST, "", false},
    /* not a path */
    {S(""), HTTP_ERR_BAD_REQUEST, "", false},
    {S("*"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("a/b"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("example.com:443"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("ftp://h/a"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("http:///a"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("http://"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("http:/a"), HTTP_ERR_BAD_REQUEST, "", false},
    {S("%2Fa"), HTTP_ERR_BAD_REQUEST, "", false},
};

static void test_decode_path(void)
{
    for (size_t i = 0; i < sizeof path_cases / sizeof path_cases[0]; i++) {
        const path_case *pc = &path_cases[i];
        char *t = dup_exact(pc->target, pc->len);
        char out[256];
        size_t out_len = 12345;
        bool trailing = !pc->trailing;
        int rc = http_decode_path(t, pc->len, out, sizeof out, &out_len, &trailing);
        if (rc != pc->rc || (rc == 0 && (!eqs(out, out_len, pc->out) || trailing != pc->trailing)))
            fprintf(stderr, "path case %zu (%s): rc %d out '%.*s' trailing %d\n", i, pc->target,
                    rc, (int)out_len, out, trailing);
        CHECK(rc == pc->rc);
        if (rc == 0) {
            CHECK(eqs(out, out_len, pc->out));
            CHECK(out[out_len] == '\0');
            CHECK(trailing == pc->trailing);
        } else {
            CHECK(out_len == 0 && !trailing);
        }
        free(t);
    }

    /* the output must fit, NUL included */
    char out[8];
    size_t n;
    bool ts;
    CHECK(http_decode_path("/abcdefg", 8, out, 8, &n, &ts) == 0 && n == 7);
    CHECK(strcmp(out, "abcdefg") == 0);
    CHECK(http_decode_path("/abcdefgh", 9, out, 8, &n, &ts) == HTTP_ERR_URI_TOO_LONG);
    CHECK(http_decode_path("/abc/defg", 9, out, 8, &n, &ts) == HTTP_ERR_URI_TOO_LONG);
    CHECK(http_decode_path("/abc/./de/", 10, out, 8, &n, &ts) == 0 && n == 6 && ts);
    CHECK(http_decode_path("/", 1, out, 1, &n, &ts) == 0 && n == 0 && out[0] == '\0');
    CHECK(http_decode_path("/", 1, out, 0, &n, &ts) == HTTP_ERR_URI_TOO_LONG);
    CHECK(http_decode_path("/a", 2, out, 1, &n, &ts) == HTTP_ERR_URI_TOO_LONG);
    CHECK(http_decode_path("/abc/d", 6, out, 4, &n, &ts) == HTTP_ERR_URI_TOO_LONG);
    CHECK(http_decode_path("/abc/d", 6, out, 6, &n, &ts) == 0 && n == 5);
    /* the target need not be NUL-terminated: only len bytes count */
    CHECK(http_decode_path("/ab/../", 3, out, sizeof out, &n, &ts) == 0 && n == 2 && !ts);
}

/* ------------------------------------------------------------ ranges -- */

typedef struct range_case {
    const char *value;
    uint64_t size;
    int rc;
    uint64_t start, end;
} range_case;

static const range_case range_cases[] = {
    {"bytes=0-499", 1000, 1, 0, 499},
    {"bytes=500-999", 1000, 1, 500, 999},
    {"bytes=500-", 1000, 1, 500, 999},
    {"bytes=-500", 1000, 1, 500, 999},
    {"bytes=-1", 1000, 1, 999, 999},
    {"bytes=-1000", 1000, 1, 0, 999},
    {"bytes=-1500", 1000, 1, 0, 999},
    {"bytes=0-0", 1, 1, 0, 0},
    {"bytes=0-", 1, 1, 0, 0},
    {"bytes=0-5000", 1000, 1, 0, 999},
    {"bytes=999-999", 1000, 1, 999, 999},
    {"bytes=999-", 1000, 1, 999, 999},
    {"bytes=0-99999999999999999999999", 1000, 1, 0, 999},
    {"bytes=-99999999999999999999999", 1000, 1, 0, 999},
    {"bytes=0-18446744073709551615", UINT64_MAX, 1, 0, UINT64_MAX - 1},
    {"bytes=-18446744073709551615", UINT64_MAX, 1, 0, UINT64_MAX - 1},
    {"Bytes=0-1", 1000, 1, 0, 1},
    {"BYTES=2-3", 1000, 1, 2, 3},
    {" bytes=0-1 \t", 1000, 1, 0, 1},
    {"bytes= 0-1", 1000, 1, 0, 1},
    {"bytes=007-008", 1000, 1, 7, 8},
    /* unsatisfiable */
    {"bytes=1000-", 1000, -1, 0, 0},
    {"bytes=1000-2000", 1000, -1, 0, 0},
    {"bytes=1000-1000", 1000, -1, 0, 0},
    {"bytes=-0", 1000, -1, 0, 0},
    {"bytes=-000", 1000, -1, 0, 0},
    {"bytes=0-", 0, -1, 0, 0},
    {"bytes=0-0", 0, -1, 0, 0},
    {"bytes=-5", 0, -1, 0, 0},
    {"bytes=99999999999999999999999-", 1000, -1, 0, 0},
    {"bytes=18446744073709551615-", UINT64_MAX, -1, 0, 0},
    /* ignored: serve the whole thing */
    {"bytes=5-4", 1000, 0, 0, 0},
    {"bytes=5-4", 0, 0, 0, 0},
    {"bytes=0-1,5-6", 1000, 0, 0, 0},
    {"bytes=0-1, 5-6", 1000, 0, 0, 0},
    {"bytes=0-1,", 1000, 0, 0, 0},
    {"bytes=,0-1", 1000, 0, 0, 0},
    {"items=0-5", 1000, 0, 0, 0},
    {"bytes 0-5", 1000, 0, 0, 0},
    {"bytes = 0-5", 1000, 0, 0, 0},
    {"byte=0-5", 1000, 0, 0, 0},
    {"bytesx=0-5", 1000, 0, 0, 0},
    {"bytes=", 1000, 0, 0, 0},
    {"bytes=-", 1000, 0, 0, 0},
    {"bytes=a-b", 1000, 0, 0, 0},
    {"bytes=1", 1000, 0, 0, 0},
    {"bytes=1-2-3", 1000, 0, 0, 0},
    {"bytes=--5", 1000, 0, 0, 0},
    {"bytes=-5-", 1000, 0, 0, 0},
    {"bytes=+1-2", 1000, 0, 0, 0},
    {"bytes=1-+2", 1000, 0, 0, 0},
    {"bytes=0x1-2", 1000, 0, 0, 0},
    {"bytes=1 -2", 1000, 0, 0, 0},
    {"", 1000, 0, 0, 0},
    {"bytes", 1000, 0, 0, 0},
};

static void test_ranges(void)
{
    for (size_t i = 0; i < sizeof range_cases / sizeof range_cases[0]; i++) {
        const range_case *rc = &range_cases[i];
        size_t len = strlen(rc->value);
        char *v = dup_exact(rc->value, len);
        uint64_t s = 42, e = 43;
        int got = http_parse_range(v, len, rc->size, &s, &e);
        if (got != rc->rc)
            fprintf(stderr, "range case %zu (%s): rc %d\n", i, rc->value, got);
        CHECK(got == rc->rc);
        if (got == 1) {
            CHECK(s == rc->start && e == rc->end);
            CHECK(s <= e && e < rc->size);
        }
        free(v);
    }
}

/* ------------------------------------------------------------- etags -- */

typedef struct etag_case {
    const char *inm, *etag;
    bool match;
} etag_case;

static const etag_case etag_cases[] = {
    {"\"abc\"", "\"abc\"", true},
    {"W/\"abc\"", "\"abc\"", true},
    {"\"abc\"", "W/\"abc\"", true},
    {"W/\"abc\"", "W/\"abc\"", true},
    {"\"abc\"", "\"abd\"", false},
    {"\"abc\"", "\"ab\"", false},
    {"\"ab\"", "\"abc\"", false},
    {"\"x\", \"abc\"", "\"abc\"", true},
    {"\"x\",W/\"abc\",\"y\"", "\"abc\"", true},
    {"\"x\",\"y\"", "\"abc\"", false},
    {"\"abc\" ,, \"d\" ,", "\"d\"", true},
    {" \t\"abc\"\t ", "\"abc\"", true},
    {"*", "\"abc\"", true},
    {" * ", "\"abc\"", true},
    {"\"\"", "\"\"", true},
    {"\"\"", "\"a\"", false},
    {"\"abc\"", "abc", true}, /* the caller's tag unquoted: tolerated */
    {"\"ABC\"", "\"abc\"", false},
    {"\"a,b\"", "\"a,b\"", true},
    {"\"caf\xc3\xa9\"", "\"caf\xc3\xa9\"", true},
    /* malformed lists match nothing */
    {"", "\"abc\"", false},
    {",", "\"abc\"", false},
    {"abc", "\"abc\"", false},
    {"abc", "abc", false},
    {"\"abc", "\"abc\"", false},
    {"\"a\" \"abc\"", "\"abc\"", false},
    {"\"abc\", bogus", "\"abc\"", false},
    {"*, \"abc\"", "\"abc\"", false},
    {"**", "\"abc\"", false},
    {"w/\"abc\"", "\"abc\"", false},
    {"W/ \"abc\"", "\"abc\"", false},
    {"W/abc", "\"abc\"", false},
    {"\"ab c\"", "\"ab c\"", false},
    {"\"ab\x01\"", "\"ab\x01\"", false},
};

static void test_etags(void)
{
    for (size_t i = 0; i < sizeof etag_cases / sizeof etag_cases[0]; i++) {
        const etag_case *ec = &etag_cases[i];
        size_t il = strlen(ec->inm), el = strlen(ec->etag);
        char *inm = dup_exact(ec->inm, il), *etag = dup_exact(ec->etag, el);
        bool got = http_etag_matches(inm, il, etag, el);
        if (got != ec->match)
            fprintf(stderr, "etag case %zu (%s vs %s): %d\n", i, ec->inm, ec->etag, got);
        CHECK(got == ec->match);
        free(inm);
        free(etag);
    }
}

/* ------------------------------------------------------------- dates -- */

typedef struct date_case {
    const char *s;
    int rc;
    int64_t t;
} date_case;

static const date_case date_cases[] = {
    {"Sun, 06 Nov 1994 08:49:37 GMT", 0, 784111777},
    {"Sunday, 06-Nov-94 08:49:37 GMT", 0, 784111777},
    {"Sun Nov  6 08:49:37 1994", 0, 784111777},
    {"Sun Nov 06 08:49:37 1994", 0, 784111777},
    {" Sun, 06 Nov 1994 08:49:37 GMT ", 0, 784111777},
    {"sun, 06 nov 1994 08:49:37 GMT", 0, 784111777},
    {"Thu, 01 Jan 1970 00:00:00 GMT", 0, 0},
    {"Wed, 31 Dec 1969 23:59:59 GMT", 0, -1},
    {"Tue, 29 Feb 2000 12:00:00 GMT", 0, 951825600},
    {"Thu, 29 Feb 2024 00:00:00 GMT", 0, 1709164800},
    {"Tue, 19 Jan 2038 03:14:08 GMT", 0, 2147483648LL},
    {"Fri, 31 Dec 9999 23:59:59 GMT", 0, 253402300799LL},
    {"Sat, 01 Jan 0000 00:00:00 GMT", 0, -62167219200LL},
    {"Sun, 06 Nov 1994 08:49:60 GMT", 0, 784111800}, /* leap second */
    {"Monday, 01-Jan-01 00:00:00 GMT", 0, 978307200},
    {"Thursday, 01-Jan-98 00:00:00 GMT", 0, 883612800},
    {"Wed Feb 29 12:00:00 2012", 0, 1330516800},
    /* invalid */
    {"", -1, 0},
    {"Sun,", -1, 0},
    {"Sun, 06 Nov 1994 08:49:37", -1, 0},
    {"Sun, 06 Nov 1994 08:49:37 UTC", -1, 0},
    {"Sun, 06 Nov 1994 08:49:37 gmt", -1, 0},
    {"Sun, 6 Nov 1994 08:49:37 GMT", -1, 0},
    {"Sun, 06 Nov 94 08:49:37 GMT", -1, 0},
    {"Sun,  06 Nov 1994 08:49:37 GMT", -1, 0},
    {"Sun, 06-Nov-1994 08:49:37 GMT", -1, 0},
    {"Foo, 06 Nov 1994 08:49:37 GMT", -1, 0},
    {"Sun, 06 Xyz 1994 08:49:37 GMT", -1, 0},
    {"Sun, 00 Nov 1994 08:49:37 GMT", -1, 0},
    {"Sun, 31 Nov 1994 08:49:37 GMT", -1, 0},
    {"Sun, 32 Dec 1994 08:49:37 GMT", -1, 0},
    {"Sat, 29 Feb 1900 00:00:00 GMT", -1, 0},
    {"Fri, 29 Feb 2019 00:00:00 GMT", -1, 0},
    {"Sun, 06 Nov 1994 24:00:00 GMT", -1, 0},
    {"Sun, 06 Nov 1994 08:60:00 GMT", -1, 0},
    {"Sun, 06 Nov 1994 08:49:61 GMT", -1, 0},
    {"Sun, 06 Nov 1994 08-49-37 GMT", -1, 0},
    {"Sun, 06 Nov 1994 8:49:37 GMT ", -1, 0},
    {"Sun, 0x Nov 1994 08:49:37 GMT", -1, 0},
    {"Sun, 06 Nov 19a4 08:49:37 GMT", -1, 0},
    {"Sun, 06 Nov 1994 08:49:3x GMT", -1, 0},
    {"Sun, 06 Nov -994 08:49:37 GMT", -1, 0},
    {"Sun, 06 Nov 1994 08:49:37 GMTX", -1, 0},
    {"Sun, 06 Nov 1994 08:49:37\0GMT", -1, 0},
    {"Sun, 06-Nov-94 08:49:37 GMT", -1, 0},
    {"Sundy, 06-Nov-94 08:49:37 GMT", -1, 0},
    {"Sunday, 0x-Nov-94 08:49:37 GMT", -1, 0},
    {"Sunday, 06-Nov-9x 08:49:37 GMT", -1, 0},
    {"Sunday, 06-Nov-94 08:49:37", -1, 0},
    {"Sunday, 06 Nov 94 08:49:37 GMT", -1, 0},
    {"Sunday, 31-Apr-94 08:49:37 GMT", -1, 0},
    {"Sunday,06-Nov-94 08:49:37 GMT", -1, 0},
    {"Sun Nov 6 08:49:37 1994", -1, 0},
    {"Sun Nov  6 08:49:37 94", -1, 0},
    {"Sun Nov  6 08:49:37 1994 GMT", -1, 0},
    {"Sun Nov  0 08:49:37 1994", -1, 0},
    {"Sun Nov x6 08:49:37 1994", -1, 0},
    {"1994-11-06T08:49:37Z", -1, 0},
    {"784111777", -1, 0},
};

/* gmtime_r; on Windows gmtime_s, which refuses times before 1970 (the
 * callers skip those there: the C library cannot be the reference). */
static bool utc_time(time_t t, struct tm *out)
{
#ifdef _WIN32
    return gmtime_s(out, &t) == 0;
#else
    return gmtime_r(&t, out) != NULL;
#endif
}

static void test_parse_date(void)
{
    for (size_t i = 0; i < sizeof date_cases / sizeof date_cases[0]; i++) {
        const date_case *dc = &date_cases[i];
        size_t len = strlen(dc->s);
        char *s = dup_exact(dc->s, len);
        int64_t t = 777;
        int rc = http_parse_date(s, len, &t);
        if (rc != dc->rc || (rc == 0 && t != dc->t))
            fprintf(stderr, "date case %zu (%s): rc %d t %lld\n", i, dc->s, rc, (long long)t);
        CHECK(rc == dc->rc);
        if (rc == 0)
            CHECK(t == dc->t);
        free(s);
    }
    /* an embedded NUL with the length given */
    int64_t t;
    CHECK(http_parse_date("Sun, 06 Nov 1994 08:49:37\0GMT", 29, &t) == -1);

    /* RFC 850 two-digit years: at most 50 years ahead of now */
    time_t now = time(NULL);
    struct tm tm;
    CHECK(utc_time(now, &tm));
    int year = tm.tm_year + 1900;
    for (int ahead = -49; ahead <= 50; ahead++) {
        int y = year + ahead;
        char buf[64];
        int n = snprintf(buf, sizeof buf, "Friday, 01-Jan-%02d 00:00:00 GMT", y % 100);
        CHECK(http_parse_date(buf, (size_t)n, &t) == 0);
        char fmt[30];
        http_format_date(t, fmt);
        char want[16];
        snprintf(want, sizeof want, "%04d", y % 10000);
        CHECK(memcmp(fmt + 12, want, 4) == 0);
    }
}

static void test_format_date(void)
{
    static const struct {
        int64_t t;
        const char *s;
    } cases[] = {
        {784111777, "Sun, 06 Nov 1994 08:49:37 GMT"},
        {0, "Thu, 01 Jan 1970 00:00:00 GMT"},
        {-1, "Wed, 31 Dec 1969 23:59:59 GMT"},
        {-86400, "Wed, 31 Dec 1969 00:00:00 GMT"},
        {-86401, "Tue, 30 Dec 1969 23:59:59 GMT"},
        {951825600, "Tue, 29 Feb 2000 12:00:00 GMT"},
        {2147483648LL, "Tue, 19 Jan 2038 03:14:08 GMT"},
        {253402300799LL, "Fri, 31 Dec 9999 23:59:59 GMT"},
        {253402300800LL, "Fri, 31 Dec 9999 23:59:59 GMT"},
        {INT64_MAX, "Fri, 31 Dec 9999 23:59:59 GMT"},
        {-62167219200LL, "Sat, 01 Jan 0000 00:00:00 GMT"},
        {INT64_MIN, "Sat, 01 Jan 0000 00:00:00 GMT"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char out[30];
        memset(out, 'x', sizeof out);
        CHECK(http_format_date(cases[i].t, out) == HTTP_DATE_LEN);
        if (strcmp(out, cases[i].s) != 0)
            fprintf(stderr, "format %lld: %s\n", (long long)cases[i].t, out);
        CHECK(strcmp(out, cases[i].s) == 0);
    }

    /* against the C library, and back through all three parsed forms */
    for (int64_t t = -2208988800LL; t < 4102444800LL; t += 7777777 + (t & 0xffff)) {
#ifdef _WIN32
        if (t < 0)
            continue;
#endif
        struct tm tm;
        CHECK(utc_time((time_t)t, &tm));
        char want[64], got[30];
        strftime(want, sizeof want, "%a, %d %b %Y %H:%M:%S GMT", &tm); /* "C" locale */
        CHECK(http_format_date(t, got) == 29);
        CHECK(strcmp(want, got) == 0);
        int64_t back;
        CHECK(http_parse_date(got, 29, &back) == 0 && back == t);
        /* asctime's form, "%a %b %e %H:%M:%S %Y" (Windows' strftime has no %e) */
        char day_month[16], clock_year[32], asc[64];
        strftime(day_month, sizeof day_month, "%a %b", &tm);
        strftime(clock_year, sizeof clock_year, "%H:%M:%S %Y", &tm);
        int n = snprintf(asc, sizeof asc, "%s %2d %s", day_month, tm.tm_mday, clock_year);
        CHECK(http_parse_date(asc, (size_t)n, &back) == 0 && back == t);
    }
}

static const test_case cases[] = {
    {"valid_requests", test_valid_requests},
    {"header_values", test_header_values},
    {"pipelined", test_pipelined},
    {"incomplete_prefixes", test_incomplete_prefixes},
    {"bad_requests", test_bad_requests},
    {"limits", test_limits},
    {"error_status", test_error_status},
    {"decode_path", test_decode_path},
    {"ranges", test_ranges},
    {"etags", test_etags},
    {"parse_date", test_parse_date},
    {"format_date", test_format_date},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return run_test_case(cases, argc > 1 ? argv[1] : "list");
}
