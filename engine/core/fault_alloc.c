/*
 * fault_alloc.c - the counting allocation wrappers of fault builds (see
 * fault_alloc.h): the live count a driver compares before and after a run
 * (piocp_fault_allocs) and the injection point "malloc".
 */
#include "core/fault_alloc.h"
#include "core/fault.h"

#ifdef PIOCP_FAULT_INJECTION
/* The real functions, here (the build force-included the macros). */
#undef malloc
#undef calloc
#undef realloc
#undef free
#include "platform/atomics.h"

#include <errno.h>

static atomic_long live;

long piocp_fault_allocs(void)
{
    return atomic_load(&live);
}

/* A failed allocation is what the allocator does: NULL and ENOMEM,
 * whatever error the point was armed with. */
static int refused(void)
{
    if (PIOCP_FAULT("malloc") == 0)
        return 0;
    errno = ENOMEM;
    return 1;
}

void *piocp_fault_malloc(size_t size)
{
    if (refused())
        return NULL;
    void *p = malloc(size);
    if (p)
        atomic_fetch_add(&live, 1);
    return p;
}

void *piocp_fault_calloc(size_t count, size_t size)
{
    if (refused())
        return NULL;
    void *p = calloc(count, size);
    if (p)
        atomic_fetch_add(&live, 1);
    return p;
}

/* realloc(p, 0) is not counted as a free: what it does is the C library's
 * choice (the engine never asks for 0 bytes). */
void *piocp_fault_realloc(void *p, size_t size)
{
    if (refused())
        return NULL; /* p stays allocated, as with the real failure */
    void *q = realloc(p, size);
    if (q && !p)
        atomic_fetch_add(&live, 1);
    return q;
}

void piocp_fault_free(void *p)
{
    if (p)
        atomic_fetch_sub(&live, 1);
    free(p);
}

void piocp_fault_adopt(void *p)
{
    if (p)
        atomic_fetch_add(&live, 1);
}
#else
/* ISO C wants a translation unit to declare something. */
typedef int piocp_fault_alloc_unused;
#endif
