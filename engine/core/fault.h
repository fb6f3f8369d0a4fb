/*
 * fault.h - named fault-injection points, compiled into test builds only
 * (-DPIOCP_FAULT_INJECTION: CMake's C tests, the Wine build).  In every
 * other build each macro below is a constant or the plain value, and
 * nothing of fault.c or fault_alloc.c is compiled in.
 *
 * A point is a name ("recv", "cqe_send", "malloc"...) that code passes
 * through just before a system call or allocation.  A driver (a C test,
 * or the Python binding in a fault build) arms one point: "the nth pass
 * from now fails with -error" or "the nth pass is cut short".  The code
 * at the point then behaves exactly as if the kernel or the allocator had
 * done that.  One point is armed at a time; every function is thread-safe.
 *
 * A sweep (tests/c/fault_sweep.c) records which points a scenario passes
 * and how often, then reruns it once per (point, n).
 *
 * The API (names are stable; drivers in C and Cython use them):
 *
 *   piocp_fault_arm(point, nth, error)     nth pass fails with -error
 *   piocp_fault_arm_short(point, nth, keep)
 *                                          nth pass of a length-taking
 *                                          point is cut short
 *   piocp_fault_arm_spec(&spec)            either, repeated `times` passes
 *   piocp_fault_disarm()
 *   piocp_fault_fired()                    how many passes were faulted
 *   PIOCP_FAULT_FIRED_HERE()               ... on the calling thread, ever
 *   piocp_fault_passes()                   passes through the armed point
 *   piocp_fault_record(on)                 recording mode (clears on start)
 *   piocp_fault_recorded(sites, max)       what the recording saw
 *   piocp_fault_allocs()                   live engine allocations
 *   piocp_fault_points(names, max)         every point the engine has
 *   piocp_fault_point_errors(point, e, max)
 *                                          the errors its call can return
 *   PIOCP_FAULT(point)                     at a site: 0 or -error
 *   PIOCP_FAULT_SHORT(point, len)          at a length site: the length
 *                                          to use, or -error
 *
 * Allocations: a fault build force-includes core/fault_alloc.h into every
 * engine source (CMake: -include), which routes malloc, calloc, realloc and
 * free through counting wrappers; each allocation is a pass through the
 * point "malloc" (a failed one returns NULL with errno ENOMEM, whatever
 * error it was armed with).
 *
 * A fault build of the Python extension compiles every engine source with
 * -DPIOCP_FAULT_INJECTION -include <engine>/core/fault_alloc.h (as CMake's
 * pyiocp_count_allocations does).  Force-included into the binding's own C
 * as well, its allocations are counted and failable too; that stays exact
 * as long as each side frees only what it allocated (the engine frees
 * nothing of its callers').  A release build defines neither, and none of
 * these symbols exists in it.
 *
 * The points, with the errors a sweep tries at each, are listed in
 * core/fault_points.c; Linux's system calls are wrapped in
 * platform/posix/fault_calls.h, io_uring's SQ and CQE points are in
 * backends/io_uring.c, IOCP's in backends/iocp*.c.
 */
#ifndef PYIOCP_CORE_FAULT_H
#define PYIOCP_CORE_FAULT_H

#include <stddef.h>

#ifdef PIOCP_FAULT_INJECTION

/* What to do to a point.  `error` > 0: the faulted passes return -error.
 * `error` == 0: they are cut short to `keep` (clamped to 1..len-1; 0 keeps
 * half, at least 1); a pass whose length is below 2, or a PIOCP_FAULT
 * point (which has no length), cannot be cut short and is not faulted.
 * Passes nth..nth+times-1 are faulted (`times` 0 means 1; UINT_MAX means
 * every pass from nth on: a persistent fault). */
typedef struct piocp_fault_spec {
    const char *point;
    unsigned nth;
    unsigned times;
    int error;
    ptrdiff_t keep;
} piocp_fault_spec;

/* Arms `point` (replacing any armed one) and zeroes the pass and fired
 * counts; `point` is copied. */
void piocp_fault_arm_spec(const piocp_fault_spec *spec);
/* The nth pass through `point` (1-based, counted from now) returns -error;
 * earlier and later passes succeed. */
void piocp_fault_arm(const char *point, unsigned nth, int error);
/* The nth pass through the length-taking `point` gets a shorter length
 * (`keep`, or half when 0; see piocp_fault_spec). */
void piocp_fault_arm_short(const char *point, unsigned nth, ptrdiff_t keep);
/* Nothing armed; the counts stay readable until the next arm. */
void piocp_fault_disarm(void);
/* Passes faulted since the last arm (0: the fault did not fire, e.g. the
 * scenario never reached the nth pass or its length could not shrink). */
unsigned piocp_fault_fired(void);
/* Passes through the armed point since it was armed. */
unsigned piocp_fault_passes(void);
/* Passes faulted on the calling thread since it began (never reset): a
 * site that must model a side effect of the fault (the readiness edge the
 * kernel would raise for bytes that came just after an EAGAIN) compares it
 * before and after its calls.  Use the macro. */
unsigned piocp_fault_fired_here(void);
#define PIOCP_FAULT_FIRED_HERE() piocp_fault_fired_here()

/* Recording: while on, every pass through every point is counted by name.
 * Turning it on clears what was recorded; turning it off keeps it. */
typedef struct piocp_fault_site {
    char point[32];
    unsigned passes;
    int can_short; /* a PIOCP_FAULT_SHORT point: a length can be cut */
} piocp_fault_site;
void piocp_fault_record(int on);
/* Copies up to `max` recorded points (in the order first passed) to
 * `sites`; returns how many were recorded (may exceed `max`). */
size_t piocp_fault_recorded(piocp_fault_site *sites, size_t max);

/* The points the engine has (core/fault_points.c): copies up to `max`
 * names to `names`, returns how many there are.  Windows' and POSIX's are
 * both listed; a build passes only its own. */
size_t piocp_fault_points(const char **names, size_t max);
/* The errors (positive PIOCP_E* values) the real call at `point` can
 * return, those a sweep tries: copies up to `max`, returns how many there
 * are (0: the point can only be cut short), or -1 for an unknown point. */
int piocp_fault_point_errors(const char *point, int *errors, size_t max);

/* Engine allocations alive now (every malloc/calloc/realloc(NULL, ...)
 * that succeeded, less every free of a non-NULL pointer), counted since
 * the process started: compare before and after a run. */
long piocp_fault_allocs(void);

/* The sites' side (use the macros). */
int piocp_fault_check(const char *point);
ptrdiff_t piocp_fault_short(const char *point, ptrdiff_t len);

/* At a system call or allocation: 0, or the -error to fail this pass with
 * (without making the call). */
#define PIOCP_FAULT(point) piocp_fault_check(point)
/* At a call that takes or returns a length `len` (a count >= 0, or a
 * result that may already be -errno, such as a CQE's res): the length the
 * site must use (len itself, or a shorter one >= 1 on a pass armed short),
 * or -error on a pass armed to fail.  One pass either way. */
#define PIOCP_FAULT_SHORT(point, len) piocp_fault_short((point), (ptrdiff_t)(len))

#else

/* (void)(point): a site's name stays "used" for -Wextra; a string literal
 * costs nothing. */
#define PIOCP_FAULT(point) ((void)(point), 0)
#define PIOCP_FAULT_SHORT(point, len) ((void)(point), (ptrdiff_t)(len))
#define PIOCP_FAULT_FIRED_HERE() 0u

#endif

#endif
