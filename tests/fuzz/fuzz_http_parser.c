/*
 * fuzz_http_parser.c - libFuzzer target for engine/protocols/http/parser.c.
 *
 * The input is parsed as a request head with small limits, and fed raw to
 * every helper; each result is checked against the invariants the static
 * file handler relies on.  A broken invariant aborts.
 *
 *   tests/fuzz/run-fuzz.sh 60            # build with clang and fuzz 60 s
 *
 * Built with -DPYIOCP_FUZZ_REPLAY_MAIN (any compiler) it gets a main() that
 * runs the same checks over files and directories named on the command
 * line: ctest replays the seed corpus that way.
 */
#include "protocols/http/parser.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_LINE 256
#define MAX_HEAD 1024

#define ASSERT(cond)                                                                   \
    do {                                                                               \
        if (!(cond)) {                                                                 \
            fprintf(stderr, "%s:%d: invariant broken: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                   \
        }                                                                              \
    } while (0)

static bool inside(const char *p, size_t n, const char *lo, const char *hi)
{
    return p != NULL && p >= lo && p <= hi && n <= (size_t)(hi - p);
}

static bool is_ows(char c)
{
    return c == ' ' || c == '\t';
}

static void check_request(const char *buf, size_t len, int rc, const http_request *r)
{
    if (rc <= 0) {
        ASSERT(rc == HTTP_INCOMPLETE || rc == HTTP_ERR_BAD_REQUEST ||
               rc == HTTP_ERR_URI_TOO_LONG || rc == HTTP_ERR_HEADERS_TOO_LARGE ||
               rc == HTTP_ERR_NOT_IMPLEMENTED || rc == HTTP_ERR_VERSION);
        ASSERT(rc == HTTP_INCOMPLETE || http_error_status(rc) == -rc);
        if (len >= MAX_HEAD)
            ASSERT(rc != HTTP_INCOMPLETE); /* never wait past max_head */
        return;
    }
    const char *lo = buf, *hi = buf + rc;
    ASSERT((size_t)rc <= len && rc <= MAX_HEAD);
    ASSERT(inside(r->method, r->method_len, lo, hi) && r->method_len > 0);
    ASSERT(inside(r->target, r->target_len, lo, hi) && r->target_len > 0);
    ASSERT(r->method_len + 1 + r->target_len + 1 + 8 <= MAX_LINE);
    ASSERT(r->minor_version == 0 || r->minor_version == 1);
    ASSERT(r->header_count <= HTTP_MAX_HEADERS);
    for (size_t i = 0; i < r->target_len; i++)
        ASSERT((unsigned char)r->target[i] > 0x20 && r->target[i] != 0x7f);
    for (size_t i = 0; i < r->header_count; i++) {
        const http_header *h = &r->headers[i];
        ASSERT(inside(h->name, h->name_len, lo, hi) && h->name_len > 0);
        ASSERT(inside(h->value, h->value_len, lo, hi));
        ASSERT(h->value >= h->name + h->name_len + 1);
        for (size_t j = 0; j < h->name_len; j++)
            ASSERT((unsigned char)h->name[j] > 0x20 && h->name[j] != ':');
        for (size_t j = 0; j < h->value_len; j++) {
            unsigned char c = (unsigned char)h->value[j];
            ASSERT(c == '\t' || (c >= 0x20 && c != 0x7f));
        }
        if (h->value_len > 0)
            ASSERT(!is_ows(h->value[0]) && !is_ows(h->value[h->value_len - 1]));
    }
    ASSERT(r->content_length >= -1);
    if (r->chunked)
        ASSERT(r->has_transfer_encoding && r->content_length == -1 && r->minor_version == 1);
    ASSERT(!r->has_transfer_encoding || r->chunked); /* otherwise 400 or 501 */
    ASSERT(r->host != NULL);
    if (r->host_len > 0)
        ASSERT(inside(r->host, r->host_len, lo, hi));
    const char *cond[4] = {r->if_none_match, r->if_modified_since, r->if_range, r->range};
    size_t cond_len[4] = {r->if_none_match_len, r->if_modified_since_len, r->if_range_len,
                          r->range_len};
    for (int i = 0; i < 4; i++)
        ASSERT(cond[i] == NULL ? cond_len[i] == 0 : inside(cond[i], cond_len[i], lo, hi));
    if (r->minor_version == 0)
        ASSERT(!r->expect_continue);
}

static void check_path(const char *target, size_t len)
{
    char out[128];
    size_t n = 777;
    bool ts = true;
    int rc = http_decode_path(target, len, out, sizeof out, &n, &ts);
    ASSERT(rc == 0 || rc == HTTP_ERR_BAD_REQUEST || rc == HTTP_ERR_FORBIDDEN ||
           rc == HTTP_ERR_URI_TOO_LONG);
    if (rc != 0) {
        ASSERT(n == 0 && !ts);
        return;
    }
    ASSERT(n < sizeof out && out[n] == '\0');
    /* segments: non-empty, never "." or "..", no NUL, backslash or control */
    size_t seg = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n) {
            unsigned char c = (unsigned char)out[i];
            ASSERT(c >= 0x20 && c != 0x7f && c != '\\');
            if (c != '/')
                continue;
        }
        size_t sl = i - seg;
        if (n > 0)
            ASSERT(sl > 0);
        ASSERT(!(sl == 1 && out[seg] == '.'));
        ASSERT(!(sl == 2 && out[seg] == '.' && out[seg + 1] == '.'));
        seg = i + 1;
    }
    ASSERT(strstr(out, "/../") == NULL && strncmp(out, "../", 3) != 0 && strcmp(out, "..") != 0);
    /* decoding is idempotent on its own output, seen as a path */
    if (n + 2 < sizeof out) {
        char again[sizeof out + 1], back[sizeof out];
        again[0] = '/';
        memcpy(again + 1, out, n);
        size_t m;
        bool ts2;
        /* '%' in the output would be decoded again: only check without */
        if (memchr(out, '%', n) == NULL && memchr(out, '?', n) == NULL &&
            memchr(out, '#', n) == NULL) {
            ASSERT(http_decode_path(again, n + 1, back, sizeof back, &m, &ts2) == 0);
            ASSERT(m == n && memcmp(back, out, n) == 0);
        }
    }
}

static void check_range(const char *v, size_t len, uint64_t size)
{
    uint64_t s = 1, e = 0;
    int rc = http_parse_range(v, len, size, &s, &e);
    ASSERT(rc == -1 || rc == 0 || rc == 1);
    if (rc == 1)
        ASSERT(s <= e && e < size);
}

static void check_etag(const char *v, size_t len)
{
    bool strong = http_etag_matches(v, len, "\"abc\"", 5);
    bool weak = http_etag_matches(v, len, "W/\"abc\"", 7);
    ASSERT(strong == weak); /* weak comparison ignores W/ */
    (void)http_etag_matches(v, len, v, len);
    (void)http_etag_matches(v, len, "", 0);
}

static void check_date(const char *s, size_t len)
{
    int64_t t = 0;
    if (http_parse_date(s, len, &t) != 0)
        return;
    ASSERT(t >= -62167219200LL && t <= 253402300800LL);
    char out[30], out2[30];
    ASSERT(http_format_date(t, out) == HTTP_DATE_LEN && out[HTTP_DATE_LEN] == '\0');
    int64_t back = 0;
    ASSERT(http_parse_date(out, HTTP_DATE_LEN, &back) == 0);
    if (t <= 253402300799LL)
        ASSERT(back == t);
    http_format_date(back, out2);
    ASSERT(memcmp(out, out2, sizeof out) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *buf = (const char *)data;
    static http_request r; /* 2 KB: keep it off the fuzzer's stack */

    int rc = http_parse_request(buf, size, MAX_LINE, MAX_HEAD, &r);
    check_request(buf, size, rc, &r);
    if (rc > 0) {
        /* the head alone parses the same, and every prefix of it is
         * incomplete (checked at a few points, not all: speed) */
        http_request r2;
        ASSERT(http_parse_request(buf, (size_t)rc, MAX_LINE, MAX_HEAD, &r2) == rc);
        ASSERT(r2.header_count == r.header_count && r2.content_length == r.content_length);
        size_t cuts[3] = {(size_t)rc - 1, (size_t)rc / 2, (size_t)rc / 3};
        for (int i = 0; i < 3; i++)
            ASSERT(http_parse_request(buf, cuts[i], MAX_LINE, MAX_HEAD, &r2) == HTTP_INCOMPLETE);
        ASSERT(http_parse_request(buf, size, MAX_LINE, (size_t)rc, &r2) == rc);

        check_path(r.target, r.target_len);
        if (r.range) {
            check_range(r.range, r.range_len, 0);
            check_range(r.range, r.range_len, 1000);
            check_range(r.range, r.range_len, UINT64_MAX);
        }
        if (r.if_none_match)
            check_etag(r.if_none_match, r.if_none_match_len);
        if (r.if_modified_since)
            check_date(r.if_modified_since, r.if_modified_since_len);
    }

    /* every helper on the raw bytes too */
    check_path(buf, size);
    check_range(buf, size, 0);
    check_range(buf, size, 1);
    check_range(buf, size, 1000);
    check_range(buf, size, UINT64_MAX);
    check_etag(buf, size);
    check_date(buf, size);
    return 0;
}

#ifdef PYIOCP_FUZZ_REPLAY_MAIN
#include <dirent.h>
#include <sys/stat.h>

static int replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    static uint8_t data[1 << 20];
    size_t n = fread(data, 1, sizeof data, f);
    fclose(f);
    /* an exact-size copy, so a sanitizer sees any read past the end */
    uint8_t *copy = malloc(n ? n : 1);
    if (copy == NULL)
        return -1;
    memcpy(copy, data, n);
    LLVMFuzzerTestOneInput(copy, n);
    free(copy);
    return 0;
}

int main(int argc, char **argv)
{
    int files = 0;
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            perror(argv[i]);
            return 2;
        }
        if (!S_ISDIR(st.st_mode)) {
            if (replay_file(argv[i]) != 0)
                return 2;
            files++;
            continue;
        }
        DIR *d = opendir(argv[i]);
        if (d == NULL) {
            perror(argv[i]);
            return 2;
        }
        struct dirent *ent;
        while ((ent = readdir(d)) != NULL) {
            if (ent->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], ent->d_name);
            if (replay_file(path) != 0) {
                closedir(d);
                return 2;
            }
            files++;
        }
        closedir(d);
    }
    printf("replayed %d inputs\n", files);
    return files > 0 ? 0 : 1;
}
#endif
