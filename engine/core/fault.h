/*
 * fault.h - named fault-injection points, compiled into test builds only
 * (-DPIOCP_FAULT_INJECTION; CMake's C tests).  In every other build
 * PIOCP_FAULT(point) is the constant 0 and costs nothing.
 *
 * A test arms a point: "fail the nth pass through `point` with -error".
 * Code at an injection point asks PIOCP_FAULT("point") and, when it gets an
 * error, behaves exactly as if the system call or allocation there had
 * failed with it.
 */
#ifndef PYIOCP_CORE_FAULT_H
#define PYIOCP_CORE_FAULT_H

#ifdef PIOCP_FAULT_INJECTION
/* Arms `point`: its `nth` pass (1-based) from now returns -error; earlier
 * and later passes succeed.  Thread-safe; one armed point at a time. */
void piocp_fault_arm(const char *point, unsigned nth, int error);
void piocp_fault_disarm(void);
/* -error if this pass through `point` must fail, else 0. */
int piocp_fault_check(const char *point);
/* Passes through `point` since it was armed (all points count while one
 * is armed; 0 for the others). */
unsigned piocp_fault_passes(void);
#define PIOCP_FAULT(point) piocp_fault_check(point)
#else
#define PIOCP_FAULT(point) 0
#endif

#endif
