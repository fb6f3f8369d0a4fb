/* test_backend.h - the main() of C tests whose cases run on one backend
 * (header-only): `test_x NAME BACKEND` runs one case on BACKEND, `test_x
 * list` names the cases.  A backend this kernel refuses (io_uring under
 * seccomp) exits 77, which ctest reports as skipped. */
#ifndef PYIOCP_TEST_BACKEND_H
#define PYIOCP_TEST_BACKEND_H

#include "pyiocp.h"
#include "test_net.h"
#include "test_util.h"

static inline int run_backend_test_case(const test_case *cases, int argc, char **argv,
                                        const char **backend)
{
    if (argc > 2)
        *backend = argv[2];
    if (argc > 1 && strcmp(argv[1], "list") != 0) {
        piocp_config probe;
        piocp_config_init(&probe);
        probe.threads = 1;
        probe.backend = *backend;
        piocp_engine *e = NULL;
        int rc = piocp_engine_new(&e, &probe);
        if (rc < 0) {
            fprintf(stderr, "backend %s unavailable here: %s\n", *backend, strerror(-rc));
            return 77;
        }
        piocp_engine_free(e);
    }
    return run_test_case(cases, argc > 1 ? argv[1] : "list");
}

/* An engine on `backend` with `threads` workers and the other defaults. */
static inline piocp_engine *new_engine(const char *backend, int threads)
{
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.threads = threads;
    cfg.backend = backend;
    piocp_engine *e = NULL;
    CHECK(piocp_engine_new(&e, &cfg) == 0);
    return e;
}

#endif
