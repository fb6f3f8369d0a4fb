/*
 * binding_fault.h - the binding's allocations, as injection points of a
 * fault build (engine/core/fault.h; setup.py, PYIOCP_FAULT_INJECTION=1).
 *
 * Every malloc/calloc of the binding names its site ("py_send", ...), so
 * that a sweep can fail each one on its own, and every free goes through
 * binding_free, so that a run can check the binding's live allocations
 * came back to where they were (the Python suite runs without a leak
 * checker: CPython keeps memory until exit).  The engine counts its own
 * (fault_alloc.h, force-included into its sources only); this count is
 * the binding's.
 *
 * In a release build each is exactly the C library's call.
 */
#ifndef PYIOCP_BINDING_FAULT_H
#define PYIOCP_BINDING_FAULT_H

#include "core/fault.h" /* engine/ is on the include path */

#include <errno.h>
#include <stdlib.h>

#ifdef PIOCP_FAULT_INJECTION
#include "platform/atomics.h"

/* One translation unit (the extension's) includes this. */
static atomic_long binding_live;

/* NULL with errno ENOMEM on a faulted pass, as the allocator fails. */
static inline void *binding_malloc(const char *point, size_t size)
{
    if (PIOCP_FAULT(point) != 0) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = malloc(size);
    if (p)
        atomic_fetch_add(&binding_live, 1);
    return p;
}

static inline void *binding_calloc(const char *point, size_t count, size_t size)
{
    if (PIOCP_FAULT(point) != 0) {
        errno = ENOMEM;
        return NULL;
    }
    void *p = calloc(count, size);
    if (p)
        atomic_fetch_add(&binding_live, 1);
    return p;
}

static inline void binding_free(void *p)
{
    if (p)
        atomic_fetch_sub(&binding_live, 1);
    free(p);
}

static inline long binding_fault_allocs(void) { return atomic_load(&binding_live); }

#else

#define binding_malloc(point, size) ((void)(point), malloc(size))
#define binding_calloc(point, count, size) ((void)(point), calloc((count), (size)))
#define binding_free(p) free(p)

#endif

#endif
