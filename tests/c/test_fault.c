/*
 * test_fault.c - the fault-injection API itself (engine/core/fault.h):
 * arming, cutting short, repeated faults, recording, the allocation count
 * and the "malloc" point, with an engine that starts and stops.  Portable:
 * runs under Wine too.  `test_fault CASE`; `test_fault list`.
 */
#include "pyiocp.h"
#include "core/fault.h"
#include "errors.h"
#include "test_check.h"

#include <limits.h>
#include <string.h>

static void test_arm(void)
{
    piocp_fault_arm("p", 2, PIOCP_EINTR);
    CHECK(PIOCP_FAULT("other") == 0);
    CHECK(PIOCP_FAULT("p") == 0);
    CHECK(piocp_fault_fired() == 0);
    CHECK(PIOCP_FAULT("p") == -PIOCP_EINTR);
    CHECK(PIOCP_FAULT("p") == 0);
    CHECK(piocp_fault_passes() == 3);
    CHECK(piocp_fault_fired() == 1);
    /* an error on a length point replaces the length */
    piocp_fault_arm("len", 1, PIOCP_EAGAIN);
    CHECK(PIOCP_FAULT_SHORT("len", 100) == -PIOCP_EAGAIN);
    CHECK(PIOCP_FAULT_SHORT("len", 100) == 100);
    piocp_fault_disarm();
    CHECK(piocp_fault_fired() == 1); /* readable until the next arm */
    CHECK(PIOCP_FAULT("p") == 0);
}

static void test_short(void)
{
    piocp_fault_arm_short("len", 1, 0);
    CHECK(PIOCP_FAULT_SHORT("len", 10) == 5);
    CHECK(PIOCP_FAULT_SHORT("len", 10) == 10);
    piocp_fault_arm_short("len", 1, 0);
    CHECK(PIOCP_FAULT_SHORT("len", 3) == 1);
    piocp_fault_arm_short("len", 1, 7);
    CHECK(PIOCP_FAULT_SHORT("len", 5) == 4); /* keep clamped below len */
    CHECK(piocp_fault_fired() == 1);
    /* a length below 2, a negative result or a point without a length
     * cannot be cut short: not faulted */
    piocp_fault_arm_short("len", 1, 0);
    CHECK(PIOCP_FAULT_SHORT("len", 1) == 1);
    piocp_fault_arm_short("len", 1, 0);
    CHECK(PIOCP_FAULT_SHORT("len", -PIOCP_EPIPE) == -PIOCP_EPIPE);
    piocp_fault_arm_short("len", 1, 0);
    CHECK(PIOCP_FAULT("len") == 0);
    CHECK(piocp_fault_fired() == 0);
    piocp_fault_disarm();
}

static void test_times(void)
{
    piocp_fault_spec spec = {.point = "p", .nth = 2, .times = 2, .error = PIOCP_EIO};
    piocp_fault_arm_spec(&spec);
    CHECK(PIOCP_FAULT("p") == 0);
    CHECK(PIOCP_FAULT("p") == -PIOCP_EIO);
    CHECK(PIOCP_FAULT("p") == -PIOCP_EIO);
    CHECK(PIOCP_FAULT("p") == 0);
    spec.times = UINT_MAX; /* persistent */
    piocp_fault_arm_spec(&spec);
    for (int i = 0; i < 100; i++)
        CHECK(PIOCP_FAULT("p") == (i == 0 ? 0 : -PIOCP_EIO));
    CHECK(piocp_fault_fired() == 99);
    piocp_fault_disarm();
}

static void test_record(void)
{
    piocp_fault_record(1);
    CHECK(PIOCP_FAULT("a") == 0);
    CHECK(PIOCP_FAULT_SHORT("b", 9) == 9);
    CHECK(PIOCP_FAULT("a") == 0);
    piocp_fault_record(0);
    CHECK(PIOCP_FAULT("c") == 0); /* not recording */
    piocp_fault_site sites[4];
    CHECK(piocp_fault_recorded(sites, 4) == 2);
    CHECK(strcmp(sites[0].point, "a") == 0 && sites[0].passes == 2 && !sites[0].can_short);
    CHECK(strcmp(sites[1].point, "b") == 0 && sites[1].passes == 1 && sites[1].can_short);
    piocp_fault_record(1); /* cleared */
    piocp_fault_record(0);
    CHECK(piocp_fault_recorded(sites, 4) == 0);
}

/* An engine's life allocates and frees: the live count returns to where
 * it was, and recording sees the allocations as the point "malloc". */
static void test_allocs(void)
{
    long before = piocp_fault_allocs();
    piocp_fault_record(1);
    piocp_config cfg;
    piocp_config_init(&cfg);
    cfg.threads = 2;
    piocp_engine *e = NULL;
    CHECK(piocp_engine_new(&e, &cfg) == 0);
    CHECK(piocp_fault_allocs() > before);
    CHECK(piocp_engine_start(e) == 0);
    CHECK(piocp_engine_stop(e, 100) == 0);
    piocp_engine_free(e);
    piocp_fault_record(0);
    CHECK(piocp_fault_allocs() == before);
    piocp_fault_site sites[64];
    size_t n = piocp_fault_recorded(sites, 64);
    unsigned mallocs = 0;
    for (size_t i = 0; i < n && i < 64; i++)
        if (strcmp(sites[i].point, "malloc") == 0)
            mallocs = sites[i].passes;
    CHECK(mallocs > 0);
    /* each allocation failing in turn: new fails with ENOMEM and leaks
     * nothing, or succeeds (the allocation was not on its path) */
    for (unsigned nth = 1; nth <= mallocs; nth++) {
        piocp_fault_arm("malloc", nth, PIOCP_ENOMEM);
        e = NULL;
        int rc = piocp_engine_new(&e, &cfg);
        if (rc == 0) {
            rc = piocp_engine_start(e);
            CHECK(rc == 0 || rc == -PIOCP_ENOMEM);
            CHECK(piocp_engine_stop(e, 100) == 0);
            piocp_engine_free(e);
        } else {
            CHECK(rc == -PIOCP_ENOMEM);
            CHECK(e == NULL);
        }
        CHECK((rc == 0) == (piocp_fault_fired() == 0));
        piocp_fault_disarm();
        CHECK(piocp_fault_allocs() == before);
    }
}

static const test_case cases[] = {
    {"arm", test_arm},
    {"short", test_short},
    {"times", test_times},
    {"record", test_record},
    {"allocs", test_allocs},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return run_test_main(cases, argc, argv);
}
