/* fault_scenarios.h - what tests/c/fault_sweep.c runs under each fault:
 * a server side on an engine (a C handler or a native server) and the
 * client side that talks to it and judges the bytes it gets. */
#ifndef PYIOCP_TESTS_FAULT_SCENARIOS_H
#define PYIOCP_TESTS_FAULT_SCENARIOS_H

#include "fault_client.h"
#include "pyiocp.h"

#include <stdatomic.h>
#include <stdbool.h>

/* The files every scenario serves, made once per sweep. */
typedef struct fixture {
    char root[512];
    char *big;          /* big.bin's bytes */
    size_t big_len;
} fixture;

void fixture_make(fixture *f);
void fixture_remove(fixture *f);

typedef struct run_ctx {
    const fixture *fx;
    piocp_engine *e;
    int port;
    void *server;         /* the scenario's handler state */
    piocp_file file;      /* transmit's file, the access log... */
    atomic_int sent;      /* the client has sent its first request */
    atomic_int connects;  /* outbound connects posted (their tracking index) */
    verdict v;
    char why[160];        /* what the client saw, for a failure report */
} run_ctx;

typedef struct scenario {
    const char *name;
    /* The engine's settings beyond the sweep's own (NULL: none). */
    void (*configure)(piocp_config *cfg);
    /* After piocp_engine_new, before start: handler state and listener.
     * < 0: a startup failure (-errno), everything made so far undone. */
    int (*setup)(run_ctx *r);
    /* The client side, on its own thread: sets r->v (and r->sent once its
     * first request is out). */
    void (*exchange)(run_ctx *r);
    /* After the engine is freed. */
    void (*teardown)(run_ctx *r);
} scenario;

extern const scenario scenarios[];
const scenario *scenario_find(const char *name);

#endif
