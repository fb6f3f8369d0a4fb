/*
 * test_metrics.c - the engine's metrics (pyiocp.h, "metrics"), written
 * portably (test_net.h, test_files.h), so that it also runs under Wine on
 * the IOCP backend:
 *   counts        an echo server's traffic read back exactly: accepted,
 *                 opened and closed, requests and errors by operation and
 *                 errno, bytes received and sent; piocp_engine_get_stats
 *                 agrees; piocp_metric_add from any thread adds up
 *   http_classes  the native HTTP server's answers by status class, and
 *                 the file bytes its transmits sent
 *   render        piocp_metrics_render's length contract (as snprintf's)
 *                 and the Prometheus text format, line by line; label
 *                 values escaped (a hostile backend_note in an area cell)
 *   area          a metrics area shared by two engines: claims, cells
 *                 handed over before start only, each worker's series and
 *                 their sum, a released cell's counts kept as retired
 *   server        the native /metrics handler: 200, HEAD, 404, 405, 431,
 *                 400, and the same handler serving an area.  Not tested:
 *                 a client that sends nothing is closed after the head
 *                 timeout, which is 10 s and not configurable.
 * `test_metrics CASE [BACKEND [PATH]]`; `test_metrics list`.  PATH
 * (Windows): transmitfile or read_send, as test_engine_transmit.
 */
#include "pyiocp.h"
#include "core/metrics.h" /* the cell's layout: render's hostile backend_note */
#include "errors.h"
#include "platform/threads.h"
#include "test_backend_arg.h"
#include "test_echo.h"
#include "test_files.h"
#include "test_net.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int windows_transmit = PIOCP_WINDOWS_TRANSMIT_AUTO;

#define MESSAGE 777 /* bytes per echo message: not a power of two */

static uint64_t metric(const piocp_engine *e, int index)
{
    uint64_t m[PIOCP_METRICS];
    piocp_engine_read_metrics(e, m);
    return m[index];
}

static int error_index(int op, int error)
{
    return PIOCP_M_ERRORS + op * PIOCP_METRIC_ERRNOS + piocp_metric_errno_index(error);
}

/* Every error series of operation `op`, summed. */
static uint64_t errors_of(const uint64_t *m, int op)
{
    uint64_t sum = 0;
    for (int k = 0; k < PIOCP_METRIC_ERRNOS; k++)
        sum += m[PIOCP_M_ERRORS + op * PIOCP_METRIC_ERRNOS + k];
    return sum;
}

/* Waits (bounded) for a series to reach `want`: on_closed runs before
 * the close is counted, so a test that saw the callback may be early. */
static void wait_metric(const piocp_engine *e, int index, uint64_t want)
{
    long long deadline = portable_now_ms() + 5000;
    while (metric(e, index) < want && portable_now_ms() < deadline)
        portable_sleep_ms(1);
}

static long own_pid(void)
{
#ifdef _WIN32
    return (long)GetCurrentProcessId();
#else
    return (long)getpid();
#endif
}

/* ------------------------------------------------------ echo clients -- */

/* `clients` echo clients at once, each on its own thread. */
static void run_echo_clients(int port, int clients, int messages)
{
    piocp_thread t[8];
    CHECK(clients <= 8);
    net_echo_client args = {.port = port, .messages = messages, .size = MESSAGE};
    for (int i = 0; i < clients; i++)
        CHECK(piocp_thread_start(&t[i], net_echo_client_run, &args) == 0);
    for (int i = 0; i < clients; i++)
        piocp_thread_join(&t[i]);
}

/* A client that gets one byte echoed and then stays silent: its next recv
 * is pending when the engine stops, which cancels it (ECANCELED).  Returns
 * once that recv is posted.  `posted_before`: recv_posted until now. */
static piocp_socket idle_client(int port, int posted_before)
{
    piocp_socket fd = net_connect_loopback(port);
    char c = 'i';
    CHECK(net_send_all(fd, &c, 1) == 0);
    CHECK(net_recv_exact(fd, &c, 1) == 0 && c == 'i');
    /* the echo may arrive before the send's completion posted the next
     * recv (IOCP: it goes through the port first) */
    portable_wait_until(&recv_posted, posted_before + 2, 5000);
    CHECK(atomic_load(&recv_posted) == posted_before + 2);
    return fd;
}

/* ------------------------------------------------------------ counts -- */

static atomic_int worker_adds_done;

static void add_on_worker(piocp_request *req, ssize_t result)
{
    (void)result;
    CHECK(piocp_worker_index() >= 0);
    piocp_metric_add(req->user, PIOCP_M_DISPATCHED, 2);
    atomic_fetch_add(&worker_adds_done, 1);
}

#define ADDERS 4
#define ADDS 100000

static void *add_many(void *arg)
{
    for (int i = 0; i < ADDS; i++)
        piocp_metric_add(arg, PIOCP_M_BATCHES, 1);
    return NULL;
}

/* piocp_metric_add from the main thread, from a worker and from several
 * threads at once (non-workers share one block, with atomic adds): every
 * add counted, none lost.  PIOCP_M_DISPATCHED and PIOCP_M_BATCHES are the
 * binding's: the engine never counts them itself. */
static void check_metric_add(piocp_engine *e)
{
    /* out of range, or no engine: ignored */
    uint64_t before[PIOCP_METRICS], after[PIOCP_METRICS];
    piocp_engine_read_metrics(e, before);
    piocp_metric_add(e, -1, 1);
    piocp_metric_add(e, PIOCP_METRICS, 1);
    piocp_metric_add(NULL, PIOCP_M_ACCEPTED, 1);
    piocp_engine_read_metrics(e, after);
    CHECK(memcmp(before, after, sizeof before) == 0);

    piocp_metric_add(e, PIOCP_M_DISPATCHED, 5);
    piocp_request req = {.complete = add_on_worker, .user = e};
    CHECK(piocp_post(e, &req, 0) == 0);
    portable_wait_until(&worker_adds_done, 1, 5000);
    CHECK(metric(e, PIOCP_M_DISPATCHED) == 7);

    piocp_thread t[ADDERS];
    for (int i = 0; i < ADDERS; i++)
        CHECK(piocp_thread_start(&t[i], add_many, e) == 0);
    for (int i = 0; i < ADDERS; i++)
        piocp_thread_join(&t[i]);
    CHECK(metric(e, PIOCP_M_BATCHES) == (uint64_t)ADDERS * ADDS);
}

static void test_counts(void)
{
    enum { CLIENTS = 4, MESSAGES = 50 };
    piocp_engine *e = engine_on_backend(4, NULL);
    int port = engine_listen_loopback(e, &echo_callbacks, NULL);
    CHECK(piocp_engine_start(e) == 0);
    check_metric_add(e);

    run_echo_clients(port, CLIENTS, MESSAGES);
    portable_wait_until(&conns_closed, CLIENTS, 5000);
    wait_metric(e, PIOCP_M_CLOSED, CLIENTS);
    /* recvs: a first one, one after each echo */
    int posted = CLIENTS * (MESSAGES + 1);
    CHECK(atomic_load(&recv_posted) == posted);
    piocp_socket idle = idle_client(port, posted);

    /* while running: the closed ones are counted, the idle one is open */
    uint64_t m[PIOCP_METRICS];
    piocp_engine_read_metrics(e, m);
    CHECK(m[PIOCP_M_ACCEPTED] == CLIENTS + 1);
    CHECK(m[PIOCP_M_OPENED] == CLIENTS + 1);
    CHECK(m[PIOCP_M_CLOSED] == CLIENTS);
    CHECK(piocp_engine_connections(e) == 1);

    CHECK(piocp_engine_stop(e, 1000) == 0);
    CHECK(atomic_load(&cancelled) == 1);
    net_close(idle);

    piocp_engine_read_metrics(e, m);
    /* connections */
    CHECK(m[PIOCP_M_ACCEPTED] == CLIENTS + 1);
    CHECK(m[PIOCP_M_OPENED] == CLIENTS + 1);
    CHECK(m[PIOCP_M_CLOSED] == m[PIOCP_M_OPENED]);
    CHECK(m[PIOCP_M_REFUSED_LIMIT] == 0 && m[PIOCP_M_REFUSED_STOPPING] == 0);
    CHECK(m[PIOCP_M_ACCEPT_PAUSES] == 0);
    /* requests: every completion the handler saw, by operation */
    CHECK(m[PIOCP_M_REQUESTS + PIOCP_OP_RECV] == (uint64_t)atomic_load(&recv_done));
    CHECK(m[PIOCP_M_REQUESTS + PIOCP_OP_RECV] >= (uint64_t)CLIENTS * MESSAGES);
    CHECK(m[PIOCP_M_REQUESTS + PIOCP_OP_SEND] == (uint64_t)atomic_load(&send_done));
    CHECK(m[PIOCP_M_REQUESTS + PIOCP_OP_SEND] == (uint64_t)CLIENTS * MESSAGES + 1);
    CHECK(m[PIOCP_M_REQUESTS + PIOCP_OP_USER] >= 1); /* check_metric_add's post */
    CHECK(m[PIOCP_M_REQUESTS + PIOCP_OP_TRANSMIT] == 0);
    /* errors: the idle client's recv, cancelled by the stop, and nothing else */
    CHECK(m[error_index(PIOCP_OP_RECV, -PIOCP_ECANCELED)] == 1);
    CHECK(errors_of(m, PIOCP_OP_RECV) == 1);
    CHECK(errors_of(m, PIOCP_OP_SEND) == 0);
    /* the stop ends the listener's pending accepts: no accept failed */
    CHECK(errors_of(m, PIOCP_METRIC_OP_ACCEPT) == 0);
    /* bytes: what the clients sent, echoed from memory */
    uint64_t sent = (uint64_t)CLIENTS * MESSAGES * MESSAGE + 1;
    CHECK(m[PIOCP_M_RECEIVED_BYTES] == sent);
    CHECK(m[PIOCP_M_SENT_BUFFER_BYTES] == sent);
    CHECK(m[PIOCP_M_SENT_FILE_BYTES] == 0 && m[PIOCP_M_SENT_COPIED_BYTES] == 0);
    CHECK(m[PIOCP_M_BORROWED] == 0 && m[PIOCP_M_BORROWED_BYTES] == 0);
    CHECK(m[PIOCP_M_HTTP_RESPONSES + 1] == 0);

    /* piocp_engine_get_stats is derived from the same counters */
    piocp_engine_stats stats;
    piocp_engine_get_stats(e, &stats);
    CHECK(stats.accepted == m[PIOCP_M_ACCEPTED]);
    CHECK(stats.refused == 0);
    CHECK(stats.accept_errors == errors_of(m, PIOCP_METRIC_OP_ACCEPT));
    CHECK(stats.accept_pauses == 0);
    CHECK(stats.connections == 0);
    CHECK(stats.transmit_file_bytes == m[PIOCP_M_SENT_FILE_BYTES]);
    CHECK(stats.completed_inline == m[PIOCP_M_COMPLETED_INLINE]);
    piocp_engine_free(e);
}

/* ------------------------------------------------------ HTTP classes -- */

#define BIG_SIZE (100 * 1024) /* past FILE_CACHE_SMALL_FILE: sent by transmit */


static char *ask(int port, const char *request, size_t *got)
{
    return net_exchange(port, request, strlen(request), BIG_SIZE + 64 * 1024, got);
}

/* The body of an HTTP answer (after the blank line). */
static const char *body_of(const char *answer)
{
    const char *p = strstr(answer, "\r\n\r\n");
    CHECK(p != NULL);
    return p + 4;
}

static bool starts_with(const char *s, const char *prefix)
{
    return strncmp(s, prefix, strlen(prefix)) == 0;
}

static void test_http_classes(void)
{
    test_tree t;
    tree_init(&t, "metrics-http");
    char *big = malloc(BIG_SIZE);
    CHECK(big != NULL);
    for (size_t i = 0; i < BIG_SIZE; i++)
        big[i] = (char)('a' + i % 26);
    tree_write(&t, "big.bin", big, BIG_SIZE);

    piocp_http_server *server;
    CHECK(piocp_http_server_new(&server, t.root, NULL) == 0);
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.windows_transmit = windows_transmit;
    piocp_engine *e = engine_on_backend(2, &cfg);
    int port = engine_listen_loopback(e, &piocp_http_server_callbacks, server);
    CHECK(piocp_engine_start(e) == 0);

    uint64_t received = 0; /* every byte the clients got */
    size_t len;
    char *a = ask(port, "GET /big.bin HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &len);
    CHECK(starts_with(a, "HTTP/1.1 200 OK\r\n"));
    CHECK(len - (size_t)(body_of(a) - a) == BIG_SIZE);
    received += len;
    free(a);

    a = ask(port, "GET /missing.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", &len);
    CHECK(starts_with(a, "HTTP/1.1 404 "));
    received += len;
    free(a);

    a = ask(port, "GET /big.bin HTTP/1.1\r\nHost: t\r\nRange: bytes=100-1099\r\n"
                  "Connection: close\r\n\r\n", &len);
    CHECK(starts_with(a, "HTTP/1.1 206 "));
    CHECK(len - (size_t)(body_of(a) - a) == 1000 && memcmp(body_of(a), big + 100, 1000) == 0);
    received += len;
    free(a);

    a = ask(port, "GET /big.bin HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n", &len);
    CHECK(starts_with(a, "HTTP/1.1 400 "));
    received += len;
    free(a);

    CHECK(piocp_engine_stop(e, 1000) == 0);
    uint64_t m[PIOCP_METRICS];
    piocp_engine_read_metrics(e, m);
    CHECK(m[PIOCP_M_HTTP_RESPONSES + 0] == 0); /* 1xx */
    CHECK(m[PIOCP_M_HTTP_RESPONSES + 1] == 2); /* 200, 206 */
    CHECK(m[PIOCP_M_HTTP_RESPONSES + 2] == 0);
    CHECK(m[PIOCP_M_HTTP_RESPONSES + 3] == 2); /* 404, 400 */
    CHECK(m[PIOCP_M_HTTP_RESPONSES + 4] == 0);
    CHECK(piocp_http_server_requests(server) == 4);
    /* the file's bytes went out by transmit, the heads and error pages
     * from memory: together, what the clients got */
    CHECK(m[PIOCP_M_SENT_FILE_BYTES] == BIG_SIZE + 1000);
    CHECK(m[PIOCP_M_SENT_BUFFER_BYTES] + m[PIOCP_M_SENT_FILE_BYTES] == received);
    CHECK(m[PIOCP_M_REQUESTS + PIOCP_OP_TRANSMIT] == 2);
    CHECK(m[PIOCP_M_ACCEPTED] == 4 && m[PIOCP_M_CLOSED] == 4);
    /* Windows' read+send path copies every file byte; the others none */
    if (windows_transmit == PIOCP_WINDOWS_TRANSMIT_READ_SEND)
        CHECK(m[PIOCP_M_SENT_COPIED_BYTES] == m[PIOCP_M_SENT_FILE_BYTES]);
    else if (windows_transmit == PIOCP_WINDOWS_TRANSMIT_FILE ||
             strcmp(piocp_engine_backend(e), "iocp") != 0)
        CHECK(m[PIOCP_M_SENT_COPIED_BYTES] == 0);
    piocp_engine_stats stats;
    piocp_engine_get_stats(e, &stats);
    CHECK(stats.transmit_file_bytes == m[PIOCP_M_SENT_FILE_BYTES]);
    CHECK(stats.transmit_copied_bytes == m[PIOCP_M_SENT_COPIED_BYTES]);

    piocp_engine_free(e);
    piocp_http_server_free(server);
    free(big);
    tree_remove(&t);
}

/* ---------------------------------------- the Prometheus text format -- */

static bool name_start(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
}

static bool name_char(char c) { return name_start(c) || (c >= '0' && c <= '9'); }

/* A metric or label name at `p`: its length (0: none). */
static size_t name_len(const char *p)
{
    size_t n = 0;
    if (!name_start(p[0]))
        return 0;
    while (name_char(p[n]))
        n++;
    return n;
}

/* `{label="value",...}` at `p`, values escaped as the format asks (only
 * \\, \" and \n; no raw quote or newline): the characters it takes. */
static size_t labels_len(const char *p)
{
    const char *q = p;
    CHECK(*q++ == '{');
    for (;;) {
        size_t n = name_len(q);
        CHECK(n > 0 && q[n] != ':');
        q += n;
        CHECK(*q++ == '=');
        CHECK(*q++ == '"');
        while (*q != '"') {
            CHECK(*q != '\n' && *q != '\0');
            if (*q == '\\') {
                q++;
                CHECK(*q == '\\' || *q == '"' || *q == 'n');
            }
            q++;
        }
        q++;
        if (*q == '}')
            return (size_t)(q + 1 - p);
        CHECK(*q++ == ',');
    }
}

#define MAX_FAMILIES 64
#define MAX_SAMPLES 2048

/* Checks `text` line by line against the text exposition format 0.0.4:
 * every line `# HELP name text`, `# TYPE name counter|gauge` or
 * `name[{labels}] value`; each family's HELP then TYPE before its samples,
 * each family once, each sample once.  Returns the number of samples. */
static int check_exposition(const char *text)
{
    static char families[MAX_FAMILIES][80];
    static const char *samples[MAX_SAMPLES];
    static size_t sample_len[MAX_SAMPLES];
    int nfamilies = 0, nsamples = 0;
    char family[80] = "";
    bool typed = false;
    CHECK(*text != '\0');
    for (const char *line = text; *line;) {
        const char *end = strchr(line, '\n');
        CHECK(end != NULL); /* the last line ends too */
        if (starts_with(line, "# HELP ")) {
            const char *name = line + 7;
            size_t n = name_len(name);
            CHECK(n > 0 && n < sizeof family && name[n] == ' ' && name + n + 1 < end);
            memcpy(family, name, n);
            family[n] = '\0';
            for (int i = 0; i < nfamilies; i++)
                CHECK(strcmp(families[i], family) != 0); /* once */
            CHECK(nfamilies < MAX_FAMILIES);
            strcpy(families[nfamilies++], family);
            typed = false;
        } else if (starts_with(line, "# TYPE ")) {
            const char *name = line + 7;
            size_t n = name_len(name);
            CHECK(!typed && n == strlen(family) && memcmp(name, family, n) == 0);
            CHECK(name[n] == ' ');
            const char *type = name + n + 1;
            CHECK((end - type == 7 && starts_with(type, "counter")) ||
                  (end - type == 5 && starts_with(type, "gauge")));
            typed = true;
        } else {
            CHECK(line[0] != '#'); /* no other comment */
            size_t n = name_len(line);
            CHECK(typed && n == strlen(family) && memcmp(line, family, n) == 0);
            const char *p = line + n;
            if (*p == '{')
                p += labels_len(p);
            size_t key = (size_t)(p - line);
            CHECK(*p++ == ' ');
            CHECK(p < end);
            for (; p < end; p++)
                CHECK(*p >= '0' && *p <= '9');
            for (int i = 0; i < nsamples; i++)
                CHECK(sample_len[i] != key || memcmp(samples[i], line, key) != 0);
            CHECK(nsamples < MAX_SAMPLES);
            samples[nsamples] = line;
            sample_len[nsamples++] = key;
        }
        line = end + 1;
    }
    return nsamples;
}

/* The value of the sample `key` (name and labels, exactly as rendered). */
static bool sample_value(const char *text, const char *key, uint64_t *value)
{
    size_t n = strlen(key);
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        if (strncmp(line, key, n) == 0 && line[n] == ' ') {
            *value = strtoull(line + n + 1, NULL, 10);
            return true;
        }
    }
    return false;
}

static uint64_t sample(const char *text, const char *key)
{
    uint64_t value = 0;
    if (!sample_value(text, key, &value)) {
        fprintf(stderr, "no sample %s in:\n%s", key, text);
        CHECK(false);
    }
    return value;
}

/* `key` with the worker label added, as render.c writes it: last. */
static void worker_key(const char *key, int worker, char *out, size_t cap)
{
    size_t n = strlen(key);
    if (n && key[n - 1] == '}')
        snprintf(out, cap, "%.*s,worker=\"%d\"}", (int)(n - 1), key, worker);
    else
        snprintf(out, cap, "%s{worker=\"%d\"}", key, worker);
}

/* An area's rendering: every series has one sample per slot (worker
 * label) and one without, their sum (pyiocp_info aside: one per counting
 * engine, no sum). */
static void check_worker_sums(const char *text, int slots)
{
    int unlabelled = 0, labelled = 0;
    for (const char *line = text; *line; line = strchr(line, '\n') + 1) {
        if (line[0] == '#' || starts_with(line, "pyiocp_info{"))
            continue;
        const char *end = strchr(line, '\n');
        const char *space = end;
        while (*space != ' ')
            space--;
        char key[256];
        CHECK((size_t)(space - line) < sizeof key);
        memcpy(key, line, (size_t)(space - line));
        key[space - line] = '\0';
        if (strstr(key, "worker=\"")) {
            labelled++;
            continue;
        }
        unlabelled++;
        uint64_t sum = 0;
        for (int s = 0; s < slots; s++) {
            char with[300];
            worker_key(key, s, with, sizeof with);
            sum += sample(text, with);
        }
        if (sum != sample(text, key))
            fprintf(stderr, "%s: %llu, its workers' sum %llu\n", key,
                    (unsigned long long)sample(text, key), (unsigned long long)sum);
        CHECK(sum == sample(text, key));
    }
    CHECK(unlabelled > 0 && labelled == unlabelled * slots);
}

/* The whole rendering, malloc'd; checked to be whole and NUL-terminated. */
static char *render(const piocp_engine *e, const void *area)
{
    size_t n = piocp_metrics_render(e, area, NULL, 0);
    CHECK(n > 0);
    char *text = malloc(n + 1);
    CHECK(text != NULL);
    CHECK(piocp_metrics_render(e, area, text, n + 1) == n);
    CHECK(strlen(text) == n);
    return text;
}

/* Memory for an area, 64-byte aligned by hand (aligned_alloc is not in
 * MSVC's C runtime): the aligned start; free `*block`. */
static void *aligned_area(size_t size, void **block)
{
    *block = calloc(1, size + 64);
    CHECK(*block != NULL);
    return (void *)(((uintptr_t)*block + 63) & ~(uintptr_t)63);
}

static void test_render(void)
{
    /* a little traffic, an error among it, then stopped: a text that no
     * longer changes */
    piocp_engine *e = engine_on_backend(2, NULL);
    int port = engine_listen_loopback(e, &echo_callbacks, NULL);
    CHECK(piocp_engine_start(e) == 0);
    run_echo_clients(port, 1, 3);
    portable_wait_until(&conns_closed, 1, 5000);
    wait_metric(e, PIOCP_M_CLOSED, 1);
    piocp_socket idle = idle_client(port, 4);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    net_close(idle);

    /* the length contract, as snprintf's */
    size_t n = piocp_metrics_render(e, NULL, NULL, 0);
    CHECK(n > 0);
    char *full = malloc(n + 1);
    CHECK(full != NULL);
    memset(full, 'x', n + 1);
    CHECK(piocp_metrics_render(e, NULL, full, n + 1) == n);
    CHECK(full[n] == '\0' && strlen(full) == n);
    size_t caps[] = {n, n / 2, 1};
    for (size_t i = 0; i < sizeof caps / sizeof caps[0]; i++) {
        size_t cap = caps[i];
        char *cut = malloc(cap + 1);
        CHECK(cut != NULL);
        memset(cut, 'x', cap + 1);
        CHECK(piocp_metrics_render(e, NULL, cut, cap) == n); /* unchanged */
        CHECK(cut[cap - 1] == '\0' && memcmp(cut, full, cap - 1) == 0);
        CHECK(cut[cap] == 'x'); /* not a byte past cap */
        free(cut);
    }
    /* nothing to render: 0, and an empty string */
    char empty[8];
    memset(empty, 'x', sizeof empty);
    CHECK(piocp_metrics_render(NULL, NULL, empty, sizeof empty) == 0 && empty[0] == '\0');
    void *zeros_block;
    void *zeros = aligned_area(4096, &zeros_block); /* not laid out as an area */
    memset(empty, 'x', sizeof empty);
    CHECK(piocp_metrics_render(e, zeros, empty, sizeof empty) == 0 && empty[0] == '\0');
    free(zeros_block);

    /* the format, and what it says */
    CHECK(check_exposition(full) > 0);
    char info[128];
    snprintf(info, sizeof info, "pyiocp_info{version=\"%s\",backend=\"%s\"", PIOCP_VERSION,
             piocp_engine_backend(e));
    CHECK(strstr(full, info) != NULL);
    CHECK(sample(full, "pyiocp_connections_accepted_total") == 2);
    CHECK(sample(full, "pyiocp_connections_open") == 0);
    CHECK(sample(full, "pyiocp_received_bytes_total") == 3 * MESSAGE + 1);
    CHECK(sample(full, "pyiocp_sent_bytes_total{source=\"memory\"}") == 3 * MESSAGE + 1);
    CHECK(sample(full, "pyiocp_requests_total{op=\"send\"}") == 4);
    CHECK(sample(full, "pyiocp_errors_total{op=\"recv\",errno=\"ECANCELED\"}") == 1);
    /* error series at zero are left out; the others are all there */
    uint64_t v;
    CHECK(!sample_value(full, "pyiocp_errors_total{op=\"send\",errno=\"EPIPE\"}", &v));
    CHECK(sample(full, "pyiocp_http_responses_total{class=\"5xx\"}") == 0);
    CHECK(strstr(full, "worker=") == NULL); /* an engine alone: no worker label */

    /* what a series is */
    piocp_metric_desc d;
    CHECK(piocp_metric_describe(error_index(PIOCP_OP_RECV, -PIOCP_ECANCELED), &d) == 0);
    CHECK(strcmp(d.name, "pyiocp_errors_total") == 0);
    CHECK(strcmp(d.label_name[0], "op") == 0 && strcmp(d.label_value[0], "recv") == 0);
    CHECK(strcmp(d.label_name[1], "errno") == 0 && strcmp(d.label_value[1], "ECANCELED") == 0);
    CHECK(piocp_metric_errno_index(PIOCP_ECANCELED) == piocp_metric_errno_index(-PIOCP_ECANCELED));
    CHECK(piocp_metric_errno_index(-PIOCP_ENOENT) == PIOCP_METRIC_ERRNOS - 1); /* "other" */
    CHECK(piocp_metric_describe(PIOCP_METRICS, &d) == -PIOCP_EINVAL);
    CHECK(piocp_metric_describe(-1, &d) == -PIOCP_EINVAL);
    free(full);
    piocp_engine_free(e);

    /* Label values escaped: a backend_note with a quote, a backslash and a
     * newline that would start a line of its own.  No engine's note has
     * such bytes, but a cell in an area is plain memory a reader renders
     * as it finds it, so one is written there. */
    size_t size = piocp_metrics_area_size(1, 1);
    void *block;
    void *area = aligned_area(size, &block);
    CHECK(piocp_metrics_area_init(area, size, 1, 1) == 0);
    void *cell;
    size_t cell_size;
    CHECK(piocp_metrics_area_claim(area, 0, &cell, &cell_size) == 0);
    e = engine_on_backend(1, NULL);
    CHECK(piocp_engine_use_metrics_cell(e, cell, cell_size) == 0);
    piocp_metrics_cell *c = cell;
    snprintf(c->backend_note, sizeof c->backend_note, "say \"hi\" C:\\dir\n# HELP fake_total x");
    char *text = render(NULL, area);
    CHECK(check_exposition(text) > 0);
    CHECK(strstr(text, ",backend_note=\"say \\\"hi\\\" C:\\\\dir\\n# HELP fake_total x\","
                       "worker=\"0\"") != NULL);
    free(text);
    piocp_engine_free(e);
    free(block);
}

/* -------------------------------------------------------------- area -- */

/* The sample `key` of worker `w` in `text`. */
static uint64_t worker_sample(const char *text, const char *key, int w)
{
    char with[300];
    worker_key(key, w, with, sizeof with);
    return sample(text, with);
}

/* The info line of worker `w` counting with engine `e` (of this process)
 * in an area's rendering. */
static const char *worker_info(const piocp_engine *e, int w, char *out, size_t cap)
{
    snprintf(out, cap, "pyiocp_info{version=\"%s\",backend=\"%s\",worker=\"%d\",pid=\"%ld\"} 1\n",
             PIOCP_VERSION, piocp_engine_backend(e), w, own_pid());
    return out;
}

static void test_area(void)
{
    enum { SLOTS = 2, THREADS = 2 };
    /* sizes and layout refused */
    CHECK(piocp_metrics_area_size(0, THREADS) == 0);
    CHECK(piocp_metrics_area_size(SLOTS, 0) == 0);
    size_t size = piocp_metrics_area_size(SLOTS, THREADS);
    CHECK(size > 0);
    void *block;
    void *area = aligned_area(size, &block);
    CHECK(piocp_metrics_area_init((char *)area + 8, size, SLOTS, THREADS) == -PIOCP_EINVAL);
    CHECK(piocp_metrics_area_init(area, size - 1, SLOTS, THREADS) == -PIOCP_EINVAL);
    CHECK(piocp_metrics_area_init(area, size, SLOTS, THREADS) == 0);

    /* a cell for each slot */
    void *cell[SLOTS];
    size_t cell_size[SLOTS];
    int index[SLOTS];
    for (int s = 0; s < SLOTS; s++) {
        index[s] = piocp_metrics_area_claim(area, s, &cell[s], &cell_size[s]);
        CHECK(index[s] >= 0);
        CHECK(((uintptr_t)cell[s] & 63) == 0);
    }
    CHECK(index[0] != index[1]);
    void *other;
    size_t other_size;
    CHECK(piocp_metrics_area_claim(area, SLOTS, &other, &other_size) == -PIOCP_EINVAL);
    CHECK(piocp_metrics_area_claim(area, -1, &other, &other_size) == -PIOCP_EINVAL);
    CHECK(piocp_metrics_area_release(area, -1) == -PIOCP_EINVAL);
    CHECK(piocp_metrics_area_release(area, 3 * SLOTS) == -PIOCP_EINVAL); /* past the last cell */
    CHECK(piocp_metrics_area_release(area, 2 * SLOTS) == -PIOCP_EINVAL);

    /* handed to an engine: only laid out, aligned, big enough cells, and
     * only before it starts */
    piocp_engine *e[SLOTS];
    for (int s = 0; s < SLOTS; s++)
        e[s] = engine_on_backend(THREADS, NULL);
    piocp_engine *more_threads = engine_on_backend(THREADS + 1, NULL);
    CHECK(piocp_engine_use_metrics_cell(more_threads, cell[0], cell_size[0]) == -PIOCP_EINVAL);
    piocp_engine_free(more_threads);
    CHECK(piocp_engine_use_metrics_cell(e[0], cell[0], cell_size[0] - 1) == -PIOCP_EINVAL);
    CHECK(piocp_engine_use_metrics_cell(e[0], (char *)cell[0] + 8, cell_size[0]) ==
          -PIOCP_EINVAL);
    CHECK(piocp_engine_use_metrics_cell(e[0], area, cell_size[0]) == -PIOCP_EINVAL); /* no cell */
    int port[SLOTS];
    for (int s = 0; s < SLOTS; s++) {
        CHECK(piocp_engine_use_metrics_cell(e[s], cell[s], cell_size[s]) == 0);
        port[s] = engine_listen_loopback(e[s], &echo_callbacks, NULL);
        CHECK(piocp_engine_start(e[s]) == 0);
        CHECK(piocp_engine_use_metrics_cell(e[s], cell[s], cell_size[s]) == -PIOCP_EBUSY);
    }

    /* traffic: 1 client with 3 messages on slot 0, 2 with 5 on slot 1 */
    run_echo_clients(port[0], 1, 3);
    run_echo_clients(port[1], 2, 5);
    portable_wait_until(&conns_closed, 3, 5000);
    wait_metric(e[0], PIOCP_M_CLOSED, 1);
    wait_metric(e[1], PIOCP_M_CLOSED, 2);

    char *text = render(e[0], area);
    check_exposition(text);
    check_worker_sums(text, SLOTS);
    CHECK(worker_sample(text, "pyiocp_connections_accepted_total", 0) == 1);
    CHECK(worker_sample(text, "pyiocp_connections_accepted_total", 1) == 2);
    CHECK(sample(text, "pyiocp_connections_accepted_total") == 3);
    CHECK(worker_sample(text, "pyiocp_received_bytes_total", 0) == 3 * MESSAGE);
    CHECK(worker_sample(text, "pyiocp_received_bytes_total", 1) == 2 * 5 * MESSAGE);
    /* each engine reads its own cell: the same as its worker's series */
    for (int s = 0; s < SLOTS; s++) {
        CHECK(metric(e[s], PIOCP_M_ACCEPTED) ==
              worker_sample(text, "pyiocp_connections_accepted_total", s));
        char info[160];
        CHECK(strstr(text, worker_info(e[s], s, info, sizeof info)) != NULL);
    }
    free(text);

    /* Slot 1's process goes away with 3 connections still counted open
     * (as one that crashed would leave them) and its cell is released:
     * its counts stay, as retired, and those connections count as
     * closed. */
    piocp_metric_add(e[1], PIOCP_M_OPENED, 3);
    CHECK(piocp_engine_stop(e[1], 1000) == 0);
    piocp_engine_free(e[1]);
    char *before = render(NULL, area);
    CHECK(worker_sample(before, "pyiocp_connections_open", 1) == 3);
    CHECK(piocp_metrics_area_release(area, index[1]) == 0);
    CHECK(piocp_metrics_area_release(area, index[1]) == -PIOCP_EINVAL); /* free already */
    char *after = render(NULL, area);
    check_exposition(after);
    check_worker_sums(after, SLOTS);
    CHECK(worker_sample(after, "pyiocp_connections_open", 1) == 0);
    CHECK(worker_sample(after, "pyiocp_connections_closed_total", 1) ==
          worker_sample(before, "pyiocp_connections_opened_total", 1));
    static const char *const kept[] = {
        "pyiocp_connections_accepted_total", "pyiocp_connections_opened_total",
        "pyiocp_received_bytes_total", "pyiocp_sent_bytes_total{source=\"memory\"}",
        "pyiocp_requests_total{op=\"recv\"}", "pyiocp_requests_total{op=\"send\"}",
    };
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
        CHECK(worker_sample(after, kept[i], 1) == worker_sample(before, kept[i], 1));
    CHECK(worker_sample(after, "pyiocp_connections_accepted_total", 1) == 2);
    /* no engine counts for slot 1 now: no info line for it */
    CHECK(strstr(after, "worker=\"1\",pid=") == NULL);
    CHECK(strstr(after, "worker=\"0\",pid=") != NULL);

    /* Slot 1's next worker gets a cell (the one freed: the first free one)
     * with nothing in it: the retired counts are the slot's, not the
     * cell's. */
    void *again;
    size_t again_size;
    CHECK(piocp_metrics_area_claim(area, 1, &again, &again_size) == index[1]);
    piocp_engine *next = engine_on_backend(THREADS, NULL);
    CHECK(piocp_engine_use_metrics_cell(next, again, again_size) == 0);
    uint64_t m[PIOCP_METRICS];
    piocp_engine_read_metrics(next, m);
    for (int i = 0; i < PIOCP_METRICS; i++)
        CHECK(m[i] == 0);
    char *reclaimed = render(NULL, area);
    check_worker_sums(reclaimed, SLOTS);
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
        CHECK(worker_sample(reclaimed, kept[i], 1) == worker_sample(after, kept[i], 1));
    CHECK(strstr(reclaimed, "worker=\"1\",pid=") != NULL);

    /* three cells a slot (a worker, a reload's old one draining, and a
     * restart while the reload is given up): a fourth is refused */
    for (int k = 0; k < 2; k++)
        CHECK(piocp_metrics_area_claim(area, 1, &other, &other_size) >= 0);
    CHECK(piocp_metrics_area_claim(area, 1, &other, &other_size) == -PIOCP_EBUSY);
    /* ... whatever the other slots have left */
    for (int k = 0; k < 2; k++)
        CHECK(piocp_metrics_area_claim(area, 0, &other, &other_size) >= 0);
    CHECK(piocp_metrics_area_claim(area, 0, &other, &other_size) == -PIOCP_EBUSY);

    free(before);
    free(after);
    free(reclaimed);
    piocp_engine_free(next);
    CHECK(piocp_engine_stop(e[0], 1000) == 0);
    piocp_engine_free(e[0]);
    free(block);
}

/* ------------------------------------------------- the /metrics handler -- */

/* The value of header `name` ("Content-Length: ") in an answer's head. */
static const char *header(const char *answer, const char *name)
{
    const char *h = strstr(answer, name);
    CHECK(h != NULL && h < body_of(answer));
    return h + strlen(name);
}

static char *get_metrics(int port, const char *method, const char *target, size_t *len)
{
    char request[256];
    snprintf(request, sizeof request, "%s %s HTTP/1.1\r\nHost: t\r\n\r\n", method, target);
    return ask(port, request, len);
}

static void test_server(void)
{
    piocp_metrics_server *server;
    CHECK(piocp_metrics_server_new(NULL, NULL, NULL) == -PIOCP_EINVAL);
    CHECK(piocp_metrics_server_new(&server, NULL, NULL) == -PIOCP_EINVAL);
    void *block;
    void *not_area = aligned_area(4096, &block);
    CHECK(piocp_metrics_server_new(&server, NULL, not_area) == -PIOCP_EINVAL);
    free(block);

    piocp_engine *e = engine_on_backend(2, NULL);
    CHECK(piocp_metrics_server_new(&server, e, NULL) == 0);
    int port = engine_listen_loopback(e, &piocp_metrics_server_callbacks, server);
    CHECK(piocp_engine_start(e) == 0);

    size_t len;
    char *a = get_metrics(port, "GET", "/metrics", &len);
    CHECK(starts_with(a, "HTTP/1.1 200 OK\r\n"));
    CHECK(starts_with(header(a, "Content-Type: "), "text/plain; version=0.0.4; charset=utf-8\r\n"));
    CHECK(starts_with(header(a, "Connection: "), "close\r\n"));
    const char *body = body_of(a);
    size_t body_len = len - (size_t)(body - a);
    CHECK(strtoull(header(a, "Content-Length: "), NULL, 10) == body_len);
    check_exposition(body);
    CHECK(sample(body, "pyiocp_connections_accepted_total") == 1); /* this one */
    free(a);

    a = get_metrics(port, "GET", "/metrics?name[]=x", &len); /* the query is not the path */
    CHECK(starts_with(a, "HTTP/1.1 200 OK\r\n"));
    CHECK(sample(body_of(a), "pyiocp_connections_accepted_total") == 2);
    free(a);

    a = get_metrics(port, "HEAD", "/metrics", &len);
    CHECK(starts_with(a, "HTTP/1.1 200 OK\r\n"));
    CHECK(strtoull(header(a, "Content-Length: "), NULL, 10) > 0);
    CHECK(*body_of(a) == '\0');
    free(a);

    a = get_metrics(port, "GET", "/other", &len);
    CHECK(starts_with(a, "HTTP/1.1 404 Not Found\r\n"));
    CHECK(strcmp(body_of(a), "404 Not Found\n") == 0);
    free(a);

    a = get_metrics(port, "POST", "/metrics", &len);
    CHECK(starts_with(a, "HTTP/1.1 405 Method Not Allowed\r\n"));
    CHECK(starts_with(header(a, "Allow: "), "GET, HEAD\r\n"));
    free(a);

    /* a head past 4096 bytes without its blank line */
    static char big[5000];
    memset(big, 'a', sizeof big);
    static const char start[] = "GET /metrics HTTP/1.1\r\nHost: t\r\nX-Long: ";
    memcpy(big, start, sizeof start - 1);
    a = net_exchange(port, big, sizeof big, BIG_SIZE + 64 * 1024, &len);
    CHECK(starts_with(a, "HTTP/1.1 431 "));
    free(a);

    a = ask(port, "\x01\x02 not http at all\r\n\r\n", &len);
    CHECK(starts_with(a, "HTTP/1.1 400 Bad Request\r\n"));
    free(a);

    CHECK(piocp_engine_stop(e, 1000) == 0);
    /* each answer went out before its connection closed */
    CHECK(metric(e, PIOCP_M_ACCEPTED) == 7 && metric(e, PIOCP_M_CLOSED) == 7);
    piocp_engine_free(e);
    piocp_metrics_server_free(server);

    /* The same handler serving an area: a pre-fork worker answering for
     * all of them.  Here the one slot's counting engine serves it. */
    size_t size = piocp_metrics_area_size(1, 2);
    void *area = aligned_area(size, &block);
    CHECK(piocp_metrics_area_init(area, size, 1, 2) == 0);
    void *cell;
    size_t cell_size;
    CHECK(piocp_metrics_area_claim(area, 0, &cell, &cell_size) == 0);
    e = engine_on_backend(2, NULL);
    CHECK(piocp_engine_use_metrics_cell(e, cell, cell_size) == 0);
    CHECK(piocp_metrics_server_new(&server, e, area) == 0);
    port = engine_listen_loopback(e, &piocp_metrics_server_callbacks, server);
    CHECK(piocp_engine_start(e) == 0);
    a = get_metrics(port, "GET", "/metrics", &len);
    CHECK(starts_with(a, "HTTP/1.1 200 OK\r\n"));
    body = body_of(a);
    check_exposition(body);
    check_worker_sums(body, 1);
    CHECK(sample(body, "pyiocp_connections_accepted_total{worker=\"0\"}") == 1);
    char info[160];
    CHECK(strstr(body, worker_info(e, 0, info, sizeof info)) != NULL);
    free(a);
    CHECK(piocp_engine_stop(e, 1000) == 0);
    piocp_engine_free(e);
    piocp_metrics_server_free(server);
    free(block);
}

static const test_case cases[] = {
    {"counts", test_counts},
    {"http_classes", test_http_classes},
    {"render", test_render},
    {"area", test_area},
    {"server", test_server},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    if (argc > 3) {
        if (strcmp(argv[3], "transmitfile") == 0)
            windows_transmit = PIOCP_WINDOWS_TRANSMIT_FILE;
        else if (strcmp(argv[3], "read_send") == 0)
            windows_transmit = PIOCP_WINDOWS_TRANSMIT_READ_SEND;
    }
    net_init();
    return run_on_backend(argc, argv, cases);
}
