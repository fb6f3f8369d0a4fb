/*
 * serve_native.c - the native raw or HTTP file server (pyiocp.h's
 * piocp_raw_server / piocp_http_server) on an engine, as a program real
 * clients fetch from.  tests/c/check_serve_native.py runs it, natively and
 * (the Windows build) under Wine, and fetches files with curl and nc.
 *
 *   serve_native --root DIR --protocol raw|http [--port N] [--backend NAME]
 *                [--threads N] [--windows-transmit auto|transmitfile|read_send]
 *
 * Listens on 127.0.0.1 (port 0: any free one), prints "READY <port>", and
 * serves until its standard input ends or reads a line "quit".  Then it
 * stops the engine and prints what a test checks, one "name value" a line:
 * the backend, the answers sent, and the transmit counters that say which
 * path moved the file bytes (Windows: transmit_copied_bytes is 0 through
 * TransmitFile, all of transmit_file_bytes through ReadFile + WSASend).
 * Exit status: 0; 2 for a bad argument or a setup that failed; 77 when this
 * machine refuses the backend asked for (ctest's "skipped").
 *
 * Only the public API, and no POSIX header on Windows: it is built with
 * mingw-w64 too.
 */
#include "pyiocp.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <arpa/inet.h>
#include <netinet/in.h>
#endif

#define EXIT_SETUP 2
#define EXIT_SKIP 77
/* How long the stop lets answers under way finish: the clients have all
 * finished by then, so this only bounds a hung transmit. */
#define STOP_DRAIN_MS 5000

typedef struct options {
    const char *root;
    const char *protocol;
    const char *backend;
    const char *windows_transmit_name;
    int windows_transmit;
    int port;
    int threads;
} options;

/* The protocol's handler, whichever it is. */
typedef struct server {
    piocp_raw_server *raw;
    piocp_http_server *http;
} server;

static int usage(const char *why)
{
    fprintf(stderr,
            "serve_native: %s\n"
            "usage: serve_native --root DIR --protocol raw|http [--port N] [--backend NAME]\n"
            "                    [--threads N] [--windows-transmit auto|transmitfile|read_send]\n",
            why);
    return EXIT_SETUP;
}

/* A whole decimal number in [lo, hi], or -1. */
static int parse_int(const char *text, int lo, int hi)
{
    char *end;
    long v = strtol(text, &end, 10);
    if (end == text || *end != '\0' || v < lo || v > hi)
        return -1;
    return (int)v;
}

static int parse_windows_transmit(const char *name)
{
    if (strcmp(name, "auto") == 0)
        return PIOCP_WINDOWS_TRANSMIT_AUTO;
    if (strcmp(name, "transmitfile") == 0)
        return PIOCP_WINDOWS_TRANSMIT_FILE;
    if (strcmp(name, "read_send") == 0)
        return PIOCP_WINDOWS_TRANSMIT_READ_SEND;
    return -1;
}

/* 0, or the exit status after a message. */
static int parse_args(int argc, char **argv, options *o)
{
    *o = (options){.backend = "auto", .windows_transmit_name = "auto", .threads = 2};
    for (int i = 1; i < argc; i += 2) {
        const char *flag = argv[i];
        if (i + 1 >= argc)
            return usage("every option takes a value");
        const char *value = argv[i + 1];
        if (strcmp(flag, "--root") == 0) {
            o->root = value;
        } else if (strcmp(flag, "--protocol") == 0) {
            o->protocol = value;
        } else if (strcmp(flag, "--backend") == 0) {
            o->backend = value;
        } else if (strcmp(flag, "--port") == 0) {
            if ((o->port = parse_int(value, 0, 65535)) < 0)
                return usage("--port: expected 0..65535");
        } else if (strcmp(flag, "--threads") == 0) {
            if ((o->threads = parse_int(value, 1, PIOCP_MAX_THREADS)) < 0)
                return usage("--threads: expected 1..PIOCP_MAX_THREADS");
        } else if (strcmp(flag, "--windows-transmit") == 0) {
            o->windows_transmit_name = value;
            if ((o->windows_transmit = parse_windows_transmit(value)) < 0)
                return usage("--windows-transmit: expected auto, transmitfile or read_send");
        } else {
            return usage("unknown option");
        }
    }
    if (o->root == NULL)
        return usage("--root is required");
    if (o->protocol == NULL ||
        (strcmp(o->protocol, "raw") != 0 && strcmp(o->protocol, "http") != 0))
        return usage("--protocol: expected raw or http");
    return 0;
}

/* Whether `name` is compiled in but refused by this kernel (io_uring under
 * seccomp): the test is then skipped, not failed. */
static bool backend_refused_here(const char *name)
{
    const char *names[16];
    int compiled = piocp_backend_names(names, 16), known = 0;
    for (int i = 0; i < compiled; i++)
        known |= strcmp(names[i], name) == 0;
    if (!known)
        return false;
    int available = piocp_backends_available(names, 16);
    for (int i = 0; i < available; i++)
        if (strcmp(names[i], name) == 0)
            return false;
    return true;
}

static int server_open(server *s, const options *o)
{
    if (strcmp(o->protocol, "raw") == 0)
        return piocp_raw_server_new(&s->raw, o->root, NULL);
    piocp_http_options http;
    piocp_http_options_init(&http);
    return piocp_http_server_new(&s->http, o->root, &http);
}

static void server_free(server *s)
{
    piocp_raw_server_free(s->raw);
    piocp_http_server_free(s->http);
}

static uint64_t server_requests(const server *s)
{
    return s->raw ? piocp_raw_server_requests(s->raw) : piocp_http_server_requests(s->http);
}

/* Listens on 127.0.0.1:port and returns the port bound, or -errno. */
static int listen_loopback(piocp_engine *engine, server *s, int port)
{
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const piocp_listener_callbacks *callbacks =
        s->raw ? &piocp_raw_server_callbacks : &piocp_http_server_callbacks;
    void *user = s->raw ? (void *)s->raw : (void *)s->http;
    piocp_listener *listener = NULL;
    int rc = piocp_listen(engine, (const struct sockaddr *)&addr, sizeof addr, 128, callbacks,
                          user, &listener);
    if (rc < 0)
        return rc;
    struct sockaddr_storage bound;
    socklen_t bound_len = sizeof bound;
    rc = piocp_listener_address(listener, &bound, &bound_len);
    if (rc < 0)
        return rc;
    return ntohs(((const struct sockaddr_in *)&bound)->sin_port);
}

/* Blocks until standard input ends or says "quit".  fgets, not a POSIX
 * read: under Wine this is the Windows C runtime reading a Linux pipe. */
static void wait_for_quit(void)
{
    char line[256];
    while (fgets(line, sizeof line, stdin) != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        if (strcmp(line, "quit") == 0)
            return;
    }
}

static void print_stats(const piocp_engine *engine, const server *s, const options *o)
{
    piocp_engine_stats stats;
    piocp_engine_get_stats(engine, &stats);
    printf("backend %s\n", piocp_engine_backend(engine));
    printf("windows_transmit %s\n", o->windows_transmit_name);
    printf("requests %llu\n", (unsigned long long)server_requests(s));
    printf("accepted %llu\n", (unsigned long long)stats.accepted);
    printf("transmit_file_bytes %llu\n", (unsigned long long)stats.transmit_file_bytes);
    printf("transmit_copied_bytes %llu\n", (unsigned long long)stats.transmit_copied_bytes);
    fflush(stdout);
}

/* Serves until told to quit; the exit status. */
static int serve(const options *o, server *s)
{
    piocp_config config;
    piocp_config_init(&config);
    config.threads = o->threads;
    config.backend = o->backend;
    config.windows_transmit = o->windows_transmit;
    piocp_engine *engine = NULL;
    int rc = piocp_engine_new(&engine, &config);
    if (rc < 0) {
        if (backend_refused_here(o->backend)) {
            fprintf(stderr, "serve_native: backend %s refused here: skipped\n", o->backend);
            return EXIT_SKIP;
        }
        fprintf(stderr, "serve_native: engine: error %d\n", rc);
        return EXIT_SETUP;
    }
    int port = listen_loopback(engine, s, o->port);
    if (port < 0 || (rc = piocp_engine_start(engine)) < 0) {
        fprintf(stderr, "serve_native: %s: error %d\n", port < 0 ? "listen" : "start",
                port < 0 ? port : rc);
        piocp_engine_free(engine);
        return EXIT_SETUP;
    }
    printf("READY %d\n", port);
    fflush(stdout);

    wait_for_quit();
    rc = piocp_engine_stop(engine, STOP_DRAIN_MS);
    print_stats(engine, s, o);
    piocp_engine_free(engine);
    if (rc < 0) {
        fprintf(stderr, "serve_native: stop: error %d\n", rc);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    options o;
    int rc = parse_args(argc, argv, &o);
    if (rc != 0)
        return rc;
    server s = {0};
    rc = server_open(&s, &o);
    if (rc < 0) {
        fprintf(stderr, "serve_native: cannot serve %s: error %d\n", o.root, rc);
        return EXIT_SETUP;
    }
    rc = serve(&o, &s);
    /* the handlers only after the engine using them has stopped */
    server_free(&s);
    return rc;
}
