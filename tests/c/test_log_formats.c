/* test_log_formats.c - the access log's combined and JSON formats against
 * hostile client bytes (no forged or split line, always valid JSON, bounded
 * length), and the access log's descriptor swap (reopen after rotation)
 * under concurrent writers.  Portable: it runs under Wine too. */
#include "log/access_log.h"
#include "log/clf.h"
#include "log/entry.h"
#include "platform/threads.h"
#include "test_check.h"

#ifdef _WIN32
#include <io.h>
#include <ws2tcpip.h>
#else
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#endif
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ fixtures -- */

static struct sockaddr_storage v4_peer(socklen_t *len)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof ss);
    struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
    sin->sin_family = AF_INET;
    sin->sin_port = htons(4242);
    sin->sin_addr.s_addr = htonl(0x7f000001);
    *len = (socklen_t)sizeof *sin;
    return ss;
}

/* Every byte a client could put in a header value that matters here:
 * quotes, backslashes, CR LF, NUL and other controls, DEL, bytes that are
 * not UTF-8 (stray continuation, overlong, surrogate, above U+10FFFF,
 * truncated), and valid UTF-8 of each length. */
static const char HOSTILE[] =
    "a\"b\\c\r\nd\n{\"forged\":1}\n\x01\x1f\x7f\x80\xc0\xaf\xed\xa0\x80\xf4\x90\x80\x80"
    "\xe2\x82 \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xff\"\\";
#define HOSTILE_LEN (sizeof HOSTILE - 1)

/* `n` bytes of HOSTILE over and over (malloc'd): a value far over the caps. */
static char *hostile_value(size_t n)
{
    char *value = malloc(n);
    CHECK(value);
    for (size_t i = 0; i < n; i++)
        value[i] = HOSTILE[i % HOSTILE_LEN];
    return value;
}

static piocp_log_entry entry(const struct sockaddr_storage *peer, socklen_t peer_len)
{
    static const char request[] = "GET /a.html HTTP/1.1";
    piocp_log_entry e = {
        .peer = peer,
        .peer_len = peer_len,
        .unix_seconds = 971186136, /* 2000-10-10T13:55:36Z */
        .request_line = request,
        .request_line_len = sizeof request - 1,
        .status = 200,
        .bytes = 2326,
        .duration_us = -1,
    };
    return e;
}

/* One line: ends in the only '\n', nothing else but printable ASCII (and,
 * in JSON, UTF-8), no NUL before its end. */
static void check_one_line(const char *line, size_t n, size_t cap, bool utf8_allowed)
{
    CHECK(n > 0 && n < cap && line[n] == '\0');
    CHECK(line[n - 1] == '\n');
    for (size_t i = 0; i + 1 < n; i++) {
        unsigned char c = (unsigned char)line[i];
        CHECK(c >= 0x20 && c != 0x7f);
        CHECK(utf8_allowed || c < 0x80);
    }
}

/* ---------------------------------------------------- combined checks -- */

/* The quoted fields of a combined line, unambiguous: `count` quotes that
 * no backslash escapes (the escaping writes \x22 for '"', so there is no
 * \" at all). */
static void check_combined(const char *line, size_t n, size_t cap)
{
    check_one_line(line, n, cap, false);
    int quotes = 0;
    for (size_t i = 0; i < n; i++)
        quotes += line[i] == '"';
    CHECK(quotes == 6);
    CHECK(strstr(line, "\\\"") == NULL);
    CHECK(n >= 2 && line[n - 2] == '"');
}

static void test_combined_basic(void)
{
    socklen_t len;
    struct sockaddr_storage peer = v4_peer(&len);
    piocp_log_entry e = entry(&peer, len);
    e.referer = "http://example.com/";
    e.referer_len = strlen(e.referer);
    e.user_agent = "curl/8.5.0";
    e.user_agent_len = strlen(e.user_agent);
    char line[PIOCP_LOG_LINE_MAX];
    size_t n = piocp_combined_line(line, sizeof line, &e);
    CHECK(strcmp(line, "127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"GET /a.html HTTP/1.1\" "
                       "200 2326 \"http://example.com/\" \"curl/8.5.0\"\n") == 0);
    CHECK(n == strlen(line));

    /* the part before the new fields is the Common Log Format line */
    char clf[2048];
    size_t clf_n = piocp_clf_line(clf, sizeof clf, &peer, len, e.unix_seconds, e.request_line,
                                  e.request_line_len, 200, 2326);
    CHECK(memcmp(line, clf, clf_n - 1) == 0);

    /* absent headers: "-"; present but empty: "" */
    e.referer = NULL;
    e.user_agent = "";
    e.user_agent_len = 0;
    piocp_combined_line(line, sizeof line, &e);
    CHECK(strstr(line, "2326 \"-\" \"\"\n") != NULL);
    e.request_line = NULL;
    e.request_line_len = 0;
    e.bytes = 0;
    e.status = 400;
    piocp_combined_line(line, sizeof line, &e);
    CHECK(strcmp(line, "127.0.0.1 - - [10/Oct/2000:13:55:36 +0000] \"-\" 400 - \"-\" \"\"\n") == 0);
}

static void test_combined_hostile(void)
{
    socklen_t len;
    struct sockaddr_storage peer = v4_peer(&len);
    piocp_log_entry e = entry(&peer, len);
    e.referer = HOSTILE;
    e.referer_len = HOSTILE_LEN;
    e.user_agent = HOSTILE;
    e.user_agent_len = HOSTILE_LEN;
    char line[PIOCP_LOG_LINE_MAX];
    size_t n = piocp_combined_line(line, sizeof line, &e);
    check_combined(line, n, sizeof line);
    CHECK(strstr(line, "\"a\\x22b\\x5cc\\x0d\\x0ad\\x0a{\\x22forged") != NULL);
    CHECK(strstr(line, "\\xc3\\xa9\\xe2\\x82\\xac") != NULL);
}

/* Values far over the caps, at every room from the least to the most: the
 * framing stays whole, the values are cut between escapes. */
static void test_combined_truncation(void)
{
    socklen_t len;
    struct sockaddr_storage peer = v4_peer(&len);
    size_t big = 20000;
    char *value = hostile_value(big), *request = malloc(big);
    CHECK(request);
    memcpy(request, "GET /", 5);
    for (size_t i = 5; i < big; i++)
        request[i] = (char)(i % 2 ? '"' : 'x');
    piocp_log_entry e = entry(&peer, len);
    e.request_line = request;
    e.request_line_len = big;
    e.referer = value;
    e.referer_len = big;
    e.user_agent = value;
    e.user_agent_len = big;
    char *line = malloc(PIOCP_LOG_LINE_MAX + 64);
    CHECK(line);
    size_t full = piocp_combined_line(line, PIOCP_LOG_LINE_MAX, &e);
    check_combined(line, full, PIOCP_LOG_LINE_MAX);
    for (size_t cap = 0; cap <= PIOCP_LOG_LINE_MAX + 64; cap++) {
        size_t n = piocp_combined_line(line, cap, &e);
        if (cap < PIOCP_LOG_LINE_MIN) {
            CHECK(n == 0);
            continue;
        }
        check_combined(line, n, cap);
        /* no escape is cut: every backslash starts a whole \xNN */
        for (size_t i = 0; i < n; i++)
            if (line[i] == '\\')
                CHECK(i + 3 < n && line[i + 1] == 'x');
    }
    free(line);
    free(request);
    free(value);
}

/* ------------------------------------------------------- JSON checks -- */

/* A small validator for the one shape the JSON lines have: an object of
 * string keys to strings, null or integers.  Strings must be valid UTF-8
 * with valid escapes and no raw control characters (RFC 8259). */
static const char *json_string(const char *p, const char *end)
{
    CHECK(p < end && *p == '"');
    p++;
    while (p < end && *p != '"') {
        unsigned char c = (unsigned char)*p;
        CHECK(c >= 0x20);
        if (c == '\\') {
            CHECK(p + 1 < end);
            char k = p[1];
            if (k == 'u') {
                CHECK(p + 5 < end);
                for (int i = 2; i < 6; i++)
                    CHECK(strchr("0123456789abcdefABCDEF", p[i]) != NULL && p[i] != '\0');
                p += 6;
            } else {
                CHECK(strchr("\"\\/bfnrt", k) != NULL && k != '\0');
                p += 2;
            }
        } else if (c < 0x80) {
            p++;
        } else {
            /* as strict as the writer: RFC 3629 */
            size_t n = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
            CHECK(c >= 0xc2 && c <= 0xf4 && p + n <= end);
            uint32_t cp = c & (n == 2 ? 0x1f : n == 3 ? 0x0f : 0x07);
            for (size_t i = 1; i < n; i++) {
                CHECK(((unsigned char)p[i] & 0xc0) == 0x80);
                cp = cp << 6 | ((unsigned char)p[i] & 0x3f);
            }
            CHECK(cp >= (n == 2 ? 0x80u : n == 3 ? 0x800u : 0x10000u) && cp <= 0x10ffff);
            CHECK(cp < 0xd800 || cp > 0xdfff);
            p += n;
        }
    }
    CHECK(p < end);
    return p + 1;
}

static void check_json(const char *line, size_t n, size_t cap)
{
    check_one_line(line, n, cap, true);
    const char *p = line, *end = line + n - 1; /* without '\n' */
    static const char *keys[] = {"remote_addr", "time", "method", "target", "protocol",
                                 "status", "bytes", "referer", "user_agent", "duration_us"};
    CHECK(*p++ == '{');
    for (size_t k = 0; k < sizeof keys / sizeof *keys; k++) {
        if (k)
            CHECK(*p++ == ',');
        const char *key = p;
        p = json_string(p, end);
        CHECK((size_t)(p - key) == strlen(keys[k]) + 2 && memcmp(key + 1, keys[k], strlen(keys[k])) == 0);
        CHECK(*p++ == ':');
        if (*p == '"') {
            p = json_string(p, end);
        } else if (*p == 'n') {
            CHECK(end - p >= 4 && memcmp(p, "null", 4) == 0);
            p += 4;
        } else {
            if (*p == '-')
                p++;
            CHECK(*p >= '0' && *p <= '9');
            while (*p >= '0' && *p <= '9')
                p++;
        }
    }
    CHECK(*p++ == '}');
    CHECK(p == end);
}

static void test_json_basic(void)
{
    socklen_t len;
    struct sockaddr_storage peer = v4_peer(&len);
    piocp_log_entry e = entry(&peer, len);
    e.user_agent = "curl/8.5.0";
    e.user_agent_len = strlen(e.user_agent);
    e.duration_us = 412;
    char line[PIOCP_LOG_LINE_MAX];
    size_t n = piocp_json_line(line, sizeof line, &e);
    CHECK(strcmp(line, "{\"remote_addr\":\"127.0.0.1\",\"time\":\"2000-10-10T13:55:36Z\","
                       "\"method\":\"GET\",\"target\":\"/a.html\",\"protocol\":\"HTTP/1.1\","
                       "\"status\":200,\"bytes\":2326,\"referer\":null,"
                       "\"user_agent\":\"curl/8.5.0\",\"duration_us\":412}\n") == 0);
    check_json(line, n, sizeof line);

    /* no request line (a request that could not be read), no duration */
    e.request_line = NULL;
    e.request_line_len = 0;
    e.duration_us = -1;
    e.bytes = 0;
    e.peer = NULL;
    n = piocp_json_line(line, sizeof line, &e);
    check_json(line, n, sizeof line);
    CHECK(strstr(line, "{\"remote_addr\":\"-\",") == line);
    CHECK(strstr(line, "\"method\":null,\"target\":null,\"protocol\":null,") != NULL);
    CHECK(strstr(line, "\"bytes\":0,") != NULL);
    CHECK(strstr(line, "\"duration_us\":null}\n") != NULL);

    /* a request line without spaces is all target */
    e.request_line = "garbage";
    e.request_line_len = 7;
    piocp_json_line(line, sizeof line, &e);
    CHECK(strstr(line, "\"method\":null,\"target\":\"garbage\",\"protocol\":null,") != NULL);

    /* the dates at the clamps */
    e.unix_seconds = INT64_MIN;
    piocp_json_line(line, sizeof line, &e);
    CHECK(strstr(line, "\"time\":\"0000-01-01T00:00:00Z\"") != NULL);
    e.unix_seconds = INT64_MAX;
    piocp_json_line(line, sizeof line, &e);
    CHECK(strstr(line, "\"time\":\"9999-12-31T23:59:59Z\"") != NULL);
}

static void check_escape(const char *in, size_t len, const char *want)
{
    char out[256];
    size_t n = piocp_json_escape_cut(out, sizeof out, in, len);
    out[n] = '\0';
    if (strcmp(out, want) != 0) {
        fprintf(stderr, "escaped to %s, not %s\n", out, want);
        CHECK(0);
    }
}

static void test_json_escape(void)
{
    check_escape("plain /a?b=c", 12, "plain /a?b=c");
    check_escape("\"\\", 2, "\\\"\\\\");
    check_escape("\r\n\t\0\x1f\x7f", 6, "\\u000d\\u000a\\u0009\\u0000\\u001f\\u007f");
    check_escape("\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80", 9, "\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80");
    check_escape("\xef\xbf\xbf\xf4\x8f\xbf\xbf", 7, "\xef\xbf\xbf\xf4\x8f\xbf\xbf");
    check_escape("\x80", 1, "\\u0080");             /* stray continuation */
    check_escape("\xc0\xaf", 2, "\\u00c0\\u00af");  /* overlong '/' */
    check_escape("\xe0\x80\xaf", 3, "\\u00e0\\u0080\\u00af");
    check_escape("\xed\xa0\x80", 3, "\\u00ed\\u00a0\\u0080"); /* a surrogate */
    check_escape("\xf4\x90\x80\x80", 4, "\\u00f4\\u0090\\u0080\\u0080"); /* > U+10FFFF */
    check_escape("\xe2\x82", 2, "\\u00e2\\u0082");  /* truncated */
    check_escape("\xe2\x82x", 3, "\\u00e2\\u0082x");
    check_escape("\xff\xfe", 2, "\\u00ff\\u00fe");

    /* cut between characters, never inside an escape or a sequence */
    char out[16];
    CHECK(piocp_json_escape_cut(out, 5, "\n", 1) == 0);
    CHECK(piocp_json_escape_cut(out, 6, "\n", 1) == 6);
    CHECK(piocp_json_escape_cut(out, 3, "a\xe2\x82\xac", 4) == 1);
    CHECK(piocp_json_escape_cut(out, 4, "a\xe2\x82\xac", 4) == 4);
    CHECK(piocp_json_escape_cut(out, 1, "\"", 1) == 0);
}

static void test_json_hostile(void)
{
    socklen_t len;
    struct sockaddr_storage peer = v4_peer(&len);
    piocp_log_entry e = entry(&peer, len);
    static const char request[] = "G\"T /\xff\n\"x\" HTTP/1.1";
    e.request_line = request;
    e.request_line_len = sizeof request - 1;
    e.referer = HOSTILE;
    e.referer_len = HOSTILE_LEN;
    e.user_agent = HOSTILE;
    e.user_agent_len = HOSTILE_LEN;
    char line[PIOCP_LOG_LINE_MAX];
    size_t n = piocp_json_line(line, sizeof line, &e);
    check_json(line, n, sizeof line);
    CHECK(strstr(line, "\"method\":\"G\\\"T\",\"target\":\"/\\u00ff\\u000a\\\"x\\\"\","
                       "\"protocol\":\"HTTP/1.1\"") != NULL);
    CHECK(strstr(line, "\"referer\":\"a\\\"b\\\\c\\u000d\\u000ad\\u000a{\\\"forged\\\":1}") != NULL);
}

static void test_json_truncation(void)
{
    socklen_t len;
    struct sockaddr_storage peer = v4_peer(&len);
    size_t big = 20000;
    char *value = hostile_value(big), *request = malloc(big);
    CHECK(request);
    memcpy(request, "GET /", 5);
    for (size_t i = 5; i < big; i++)
        request[i] = HOSTILE[i % HOSTILE_LEN] == ' ' ? 'x' : HOSTILE[i % HOSTILE_LEN];
    memcpy(request + big - 9, " HTTP/1.1", 9);
    piocp_log_entry e = entry(&peer, len);
    e.request_line = request;
    e.request_line_len = big;
    e.referer = value;
    e.referer_len = big;
    e.user_agent = value;
    e.user_agent_len = big;
    e.duration_us = INT64_MAX;
    e.status = -1;
    e.bytes = UINT64_MAX;
    char *line = malloc(PIOCP_LOG_LINE_MAX + 64);
    CHECK(line);
    for (size_t cap = 0; cap <= PIOCP_LOG_LINE_MAX + 64; cap++) {
        size_t n = piocp_json_line(line, cap, &e);
        if (cap < PIOCP_LOG_LINE_MIN) {
            CHECK(n == 0);
            continue;
        }
        check_json(line, n, cap);
        CHECK(strstr(line, "\"protocol\":\"HTTP/1.1\"") != NULL);
    }
    free(line);
    free(request);
    free(value);
}

/* ---------------------------------------------------------- the swap -- */

#ifdef _WIN32
#define test_fileno _fileno
static piocp_file file_of(FILE *f) { return (piocp_file)_get_osfhandle(test_fileno(f)); }
#else
#define test_fileno fileno
static piocp_file file_of(FILE *f) { return (piocp_file)test_fileno(f); }
#endif

#define WRITERS 3
#define LINES_EACH 8000
#define FILES 4

typedef struct writer {
    piocp_access_log *log;
    int id;
} writer;

/* Lines of varied lengths (up to ~200 bytes), so the ring wraps inside
 * lines: "w<id> <seq> <filler>\n". */
static size_t make_line(char *buf, int id, int seq)
{
    int n = snprintf(buf, 256, "w%d %d ", id, seq);
    int filler = (seq * 37 + id * 11) % 190;
    memset(buf + n, 'a' + seq % 26, (size_t)filler);
    buf[n + filler] = '\n';
    return (size_t)n + (size_t)filler + 1;
}

static void *writer_main(void *arg)
{
    writer *w = arg;
    char buf[256];
    for (int seq = 0; seq < LINES_EACH; seq++)
        piocp_access_log_write(w->log, buf, make_line(buf, w->id, seq));
    return NULL;
}

static char *slurp(const char *name, size_t *len)
{
    FILE *f = fopen(name, "rb");
    CHECK(f);
    size_t cap = 1 << 16, n = 0;
    char *data = malloc(cap);
    CHECK(data);
    size_t got;
    while ((got = fread(data + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            cap *= 2;
            data = realloc(data, cap);
            CHECK(data);
        }
    }
    fclose(f);
    *len = n;
    return data;
}

static void test_swap(void)
{
    char names[FILES][64];
    FILE *files[FILES];
    for (int i = 0; i < FILES; i++) {
        snprintf(names[i], sizeof names[i], "log_formats_swap.%d", i);
        remove(names[i]);
        files[i] = fopen(names[i], "ab");
        CHECK(files[i]);
    }
    piocp_access_log *log = piocp_access_log_new(file_of(files[0]));
    CHECK(log);

    /* Lines written before a swap are in the previous file, after it in
     * the next. */
    piocp_access_log_write(log, "before\n", 7);
    CHECK(piocp_access_log_swap(log, file_of(files[1])) == file_of(files[0]));
    piocp_access_log_write(log, "after\n", 6);

    /* Swaps while writers fill the ring (it wraps inside lines). */
    writer w[WRITERS];
    piocp_thread threads[WRITERS];
    for (int i = 0; i < WRITERS; i++) {
        w[i].log = log;
        w[i].id = i;
        CHECK(piocp_thread_start(&threads[i], writer_main, &w[i]) == 0);
    }
    for (int i = 2; i < FILES; i++)
        CHECK(piocp_access_log_swap(log, file_of(files[i])) == file_of(files[i - 1]));
    for (int i = 0; i < WRITERS; i++)
        piocp_thread_join(&threads[i]);
    uint64_t dropped = piocp_access_log_dropped(log);
    piocp_access_log_free(log);
    for (int i = 0; i < FILES; i++)
        CHECK(fclose(files[i]) == 0);

    size_t len;
    char *data = slurp(names[0], &len);
    CHECK(len == 7 && memcmp(data, "before\n", 7) == 0);
    free(data);
    data = slurp(names[1], &len);
    CHECK(len >= 6 && memcmp(data, "after\n", 6) == 0);
    free(data);

    /* Every line whole, once, each writer's in order across the files. */
    int next[WRITERS] = {0};
    uint64_t seen = 0;
    for (int i = 1; i < FILES; i++) {
        data = slurp(names[i], &len);
        CHECK(len == 0 || data[len - 1] == '\n');
        size_t at = i == 1 ? 6 : 0;
        while (at < len) {
            char *eol = memchr(data + at, '\n', len - at);
            CHECK(eol);
            int id, seq, consumed = 0;
            *eol = '\0';
            CHECK(sscanf(data + at, "w%d %d %n", &id, &seq, &consumed) == 2);
            CHECK(id >= 0 && id < WRITERS && seq >= next[id] && seq < LINES_EACH);
            char want[256];
            size_t want_len = make_line(want, id, seq);
            CHECK((size_t)(eol + 1 - (data + at)) == want_len);
            CHECK(memcmp(data + at, want, want_len - 1) == 0);
            next[id] = seq + 1;
            seen++;
            at = (size_t)(eol + 1 - data);
        }
        free(data);
        remove(names[i]);
    }
    remove(names[0]);
    CHECK(seen + dropped == (uint64_t)WRITERS * LINES_EACH);
    printf("lines %llu, dropped %llu\n", (unsigned long long)seen, (unsigned long long)dropped);
}

/* Each write() holds whole lines, also where a line wraps around the end
 * of the ring: on a datagram socket each write is one datagram, so the
 * reader sees the writes' boundaries.  POSIX only (no AF_UNIX datagrams
 * on Windows); there the case passes without running. */
static void test_whole_lines_per_write(void)
{
#ifndef _WIN32
    int sv[2];
    CHECK(socketpair(AF_UNIX, SOCK_DGRAM, 0, sv) == 0);
    piocp_access_log *log = piocp_access_log_new(sv[0]);
    CHECK(log);
    size_t total = 0, received = 0;
    int seq = 0, wraps_expected = 3;
    char buf[256], got[1 << 16];
    /* Batches small enough for one datagram, until the ring has wrapped
     * several times (its capacity is 1 MiB). */
    while (total < (size_t)wraps_expected << 20) {
        size_t batch = 0;
        for (int i = 0; i < 10; i++, seq++) {
            size_t n = make_line(buf, 0, seq);
            piocp_access_log_write(log, buf, n);
            batch += n;
        }
        total += batch;
        while (received < total) {
            ssize_t n = recv(sv[1], got, sizeof got, 0);
            CHECK(n > 0);
            CHECK(got[n - 1] == '\n');
            /* it starts a line: "w0 <seq> " */
            int id, s2;
            CHECK(sscanf(got, "w%d %d ", &id, &s2) == 2 && id == 0);
            received += (size_t)n;
        }
    }
    CHECK(received == total && piocp_access_log_dropped(log) == 0);
    piocp_access_log_free(log);
    close(sv[0]);
    close(sv[1]);
#endif
}

static const test_case cases[] = {
    {"combined_basic", test_combined_basic},
    {"combined_hostile", test_combined_hostile},
    {"combined_truncation", test_combined_truncation},
    {"json_basic", test_json_basic},
    {"json_escape", test_json_escape},
    {"json_hostile", test_json_hostile},
    {"json_truncation", test_json_truncation},
    {"swap", test_swap},
    {"whole_lines_per_write", test_whole_lines_per_write},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return run_test_main(cases, argc, argv);
}
