/*
 * fault_alloc.h - force-included (-include) into every engine source of a
 * fault build, and only there: the engine's malloc, calloc, realloc and
 * free become fault_alloc.c's counting wrappers, each allocation a pass
 * through the point "malloc" (see fault.h).  Never included by hand.
 *
 * The C library's headers come first, so that their own declarations (and
 * any inline code in them) keep the real functions; the macros are
 * function-like, so only calls are rerouted.  Memory the engine gets from
 * a C library function that allocates (strdup, realpath(p, NULL), getline)
 * would be freed through the wrapper without having been counted: the
 * engine has none (realpath writes into a buffer), and a new one must be
 * counted by hand (piocp_fault_adopt) or kept out.
 */
#ifndef PYIOCP_CORE_FAULT_ALLOC_H
#define PYIOCP_CORE_FAULT_ALLOC_H

#ifdef PIOCP_FAULT_INJECTION
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#ifdef _WIN32
#include <malloc.h>
#endif

void *piocp_fault_malloc(size_t size);
void *piocp_fault_calloc(size_t count, size_t size);
void *piocp_fault_realloc(void *p, size_t size);
void piocp_fault_free(void *p);
/* Counts memory the C library allocated for the engine (to be freed by
 * the engine's free) as an engine allocation. */
void piocp_fault_adopt(void *p);

#define malloc(size) piocp_fault_malloc(size)
#define calloc(count, size) piocp_fault_calloc(count, size)
#define realloc(p, size) piocp_fault_realloc(p, size)
#define free(p) piocp_fault_free(p)
#endif

#endif
