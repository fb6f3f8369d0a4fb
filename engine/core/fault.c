/*
 * fault.c - the fault-injection points of test builds (see fault.h).
 */
#include "core/fault.h"

#ifdef PIOCP_FAULT_INJECTION
#include "platform/threads.h"
#include "platform/atomics.h"

#include <stdbool.h>
#include <string.h>

static piocp_mutex lock = PIOCP_MUTEX_INITIALIZER;
static char armed_point[64];
static unsigned armed_nth, passes;
static int armed_error;
static atomic_bool any_armed; /* the common case costs no lock */

void piocp_fault_arm(const char *point, unsigned nth, int error)
{
    piocp_mutex_lock(&lock);
    strncpy(armed_point, point, sizeof armed_point - 1);
    armed_point[sizeof armed_point - 1] = '\0';
    armed_nth = nth;
    armed_error = error;
    passes = 0;
    atomic_store(&any_armed, true);
    piocp_mutex_unlock(&lock);
}

void piocp_fault_disarm(void)
{
    piocp_mutex_lock(&lock);
    armed_point[0] = '\0';
    atomic_store(&any_armed, false);
    piocp_mutex_unlock(&lock);
}

int piocp_fault_check(const char *point)
{
    if (!atomic_load_explicit(&any_armed, memory_order_relaxed))
        return 0;
    int rc = 0;
    piocp_mutex_lock(&lock);
    if (armed_point[0] && strcmp(point, armed_point) == 0 && ++passes == armed_nth)
        rc = -armed_error;
    piocp_mutex_unlock(&lock);
    return rc;
}

unsigned piocp_fault_passes(void)
{
    piocp_mutex_lock(&lock);
    unsigned n = passes;
    piocp_mutex_unlock(&lock);
    return n;
}
#else
/* ISO C wants a translation unit to declare something. */
typedef int piocp_fault_unused;
#endif
