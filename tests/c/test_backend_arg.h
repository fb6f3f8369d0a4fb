/* test_backend_arg.h - the command line of the portable engine tests,
 * `test_x CASE [BACKEND]` (ctest runs one case per backend), and an engine
 * on that backend.  No POSIX headers: these tests also run under Wine. */
#ifndef PYIOCP_TEST_BACKEND_ARG_H
#define PYIOCP_TEST_BACKEND_ARG_H

#include "pyiocp.h"
#include "test_check.h"

#include <string.h>

/* The backend named on the command line; "auto" without one. */
static const char *backend = "auto";

/* An engine on `backend` with `threads` workers and `cfg`'s other settings
 * (NULL: the defaults). */
static inline piocp_engine *engine_on_backend(int threads, piocp_config *cfg)
{
    piocp_config defaults;
    if (!cfg) {
        piocp_config_init(&defaults);
        cfg = &defaults;
    }
    cfg->threads = threads;
    cfg->backend = backend;
    piocp_engine *e = NULL;
    CHECK(piocp_engine_new(&e, cfg) == 0);
    return e;
}

/* Runs the case argv[1] on the backend argv[2]: 77 (ctest's "skipped")
 * where this machine refuses that backend (io_uring under seccomp). */
static inline int run_on_backend(int argc, char **argv, const test_case *cases)
{
    if (argc > 2)
        backend = argv[2];
    if (argc > 1 && strcmp(argv[1], "list") != 0) {
        piocp_config probe = {.threads = 1, .backend = backend};
        piocp_engine *e = NULL;
        if (piocp_engine_new(&e, &probe) < 0)
            return 77;
        piocp_engine_free(e);
    }
    return run_test_case(cases, argc > 1 ? argv[1] : "list");
}

#endif
