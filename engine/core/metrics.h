/*
 * metrics.h - how the engine counts (see "metrics" in pyiocp.h), and the
 * layout of a metrics cell, which core/metrics.c and metrics/render.c share.
 *
 * A cell is a header and blocks of counters: block 0 for threads that are
 * not the engine's workers (atomic adds), block 1 + i for worker i, which
 * only that worker writes.  A worker's add is then a plain load and store
 * of its own cache lines: no locked instruction, no line bouncing between
 * workers on the hot path.  Readers sum the blocks with relaxed loads; a
 * counter may lag a moment behind, never tear (64-bit atomics).
 *
 * The cell may live in memory shared with other processes (an area), so
 * it holds no pointer: only counts, and the names a reader shows.
 */
#ifndef PYIOCP_CORE_METRICS_H
#define PYIOCP_CORE_METRICS_H

#include "pyiocp.h"
#include "platform/atomics.h"

#include <stdalign.h>
#include <stdint.h>

typedef struct piocp_metrics_block {
    alignas(64) atomic_uint_fast64_t v[PIOCP_METRICS];
} piocp_metrics_block;

#define PIOCP_METRICS_CELL_MAGIC 0x70696f6d6365u  /* "piomce" */

typedef struct piocp_metrics_cell {
    alignas(64) uint64_t magic;
    uint32_t blocks;               /* threads + 1 */
    int32_t slot;                  /* in an area: the worker slot; else -1 */
    atomic_int in_use;             /* in an area: claimed (1) or free (0) */
    atomic_long pid;               /* the process counting into it, once it does */
    char backend[16];              /* the engine's backend, once it counts */
    char backend_note[160];        /* why "auto" passed a preferred backend */
    piocp_metrics_block block[];   /* `blocks` of them */
} piocp_metrics_cell;

/* Adds n to series `index` from the calling thread. */
void piocp_count(piocp_engine *engine, int index, uint64_t n);
/* The engine's cell (its own, or the one given it). */
piocp_metrics_cell *piocp_engine_metrics_cell(const piocp_engine *engine);
/* Sums a cell's blocks into values[PIOCP_METRICS] (adding to them). */
void piocp_metrics_cell_add_to(const piocp_metrics_cell *cell, uint64_t *values);

/* A metrics area: a header, the retired totals of each slot (what its
 * freed cells counted), then the cells. */
#define PIOCP_METRICS_AREA_MAGIC 0x70696f6d6172u  /* "piomar" */
typedef struct piocp_metrics_area {
    alignas(64) uint64_t magic;
    uint32_t slots, cells, threads;
    uint64_t cell_size;
    /* Odd while a release moves a cell's counts to its slot's retired
     * totals: a reader that sees it change reads again, so it never counts
     * them twice or not at all (a dip would read as a counter reset). */
    atomic_uint_fast64_t generation;
} piocp_metrics_area;

/* The area's parts, for the renderer. */
piocp_metrics_block *piocp_metrics_area_retired(const piocp_metrics_area *area, uint32_t slot);
piocp_metrics_cell *piocp_metrics_area_cell_at(const piocp_metrics_area *area, uint32_t index);
/* Checks a pointer names a laid-out area. */
int piocp_metrics_area_check(const void *area);

#endif
