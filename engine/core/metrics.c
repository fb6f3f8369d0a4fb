/*
 * metrics.c - the engine's counters: what each series means, counting into
 * a cell, reading it back, and areas of cells shared by a pre-fork
 * server's processes.  Rendering them is metrics/render.c's.
 */
#include "core/metrics.h"
#include "core/backend.h"
#include "errors.h"
#include "platform/platform.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------ descriptions -- */

static const char *const op_names[PIOCP_METRIC_OPS] = {
    "accept", "recv", "send", "transmit", "user", "shutdown", "timer", "connect",
};

/* The errors worth telling apart on a dashboard: peers leaving, limits
 * reached, cancellations at close; the rest are "other". */
static const struct {
    int error;
    const char *name;
} counted_errors[PIOCP_METRIC_ERRNOS - 1] = {
    {PIOCP_ECONNRESET, "ECONNRESET"},     {PIOCP_EPIPE, "EPIPE"},
    {PIOCP_ETIMEDOUT, "ETIMEDOUT"},       {PIOCP_ECANCELED, "ECANCELED"},
    {PIOCP_ECONNABORTED, "ECONNABORTED"}, {PIOCP_ECONNREFUSED, "ECONNREFUSED"},
    {PIOCP_EMFILE, "EMFILE"},             {PIOCP_ENFILE, "ENFILE"},
    {PIOCP_ENOBUFS, "ENOBUFS"},           {PIOCP_ENOMEM, "ENOMEM"},
    {PIOCP_EHOSTUNREACH, "EHOSTUNREACH"}, {PIOCP_ENETUNREACH, "ENETUNREACH"},
    {PIOCP_ESHUTDOWN, "ESHUTDOWN"},       {PIOCP_EINVAL, "EINVAL"},
    {PIOCP_EBADF, "EBADF"},
};

int piocp_metric_errno_index(int error)
{
    if (error < 0)
        error = -error;
    for (int i = 0; i < PIOCP_METRIC_ERRNOS - 1; i++)
        if (counted_errors[i].error == error)
            return i;
    return PIOCP_METRIC_ERRNOS - 1;
}

static const char *const status_classes[5] = {"1xx", "2xx", "3xx", "4xx", "5xx"};

static void plain(piocp_metric_desc *d, const char *name, const char *help)
{
    d->name = name;
    d->help = help;
}

static void labelled(piocp_metric_desc *d, const char *name, const char *help,
                     const char *label, const char *value)
{
    plain(d, name, help);
    d->label_name[0] = label;
    d->label_value[0] = value;
}

int piocp_metric_describe(int i, piocp_metric_desc *d)
{
    memset(d, 0, sizeof *d);
    if (i < 0 || i >= PIOCP_METRICS)
        return -PIOCP_EINVAL;
    static const char refused[] = "pyiocp_connections_refused_total";
    static const char refused_help[] = "Connections accepted, then closed at once";
    static const char sent[] = "pyiocp_sent_bytes_total";
    static const char sent_help[] = "Bytes handed to the kernel to send, by where they came from";
    if (i >= PIOCP_M_REQUESTS && i < PIOCP_M_ERRORS) {
        labelled(d, "pyiocp_requests_total", "Requests completed, by operation", "op",
                 op_names[i - PIOCP_M_REQUESTS]);
        return 0;
    }
    if (i >= PIOCP_M_ERRORS && i < PIOCP_M_RECEIVED_BYTES) {
        int k = i - PIOCP_M_ERRORS;
        int e = k % PIOCP_METRIC_ERRNOS;
        labelled(d, "pyiocp_errors_total",
                 "Requests, accepts and connects that failed, by operation and error", "op",
                 op_names[k / PIOCP_METRIC_ERRNOS]);
        d->label_name[1] = "errno";
        d->label_value[1] = e < PIOCP_METRIC_ERRNOS - 1 ? counted_errors[e].name : "other";
        return 0;
    }
    if (i >= PIOCP_M_HTTP_RESPONSES) {
        labelled(d, "pyiocp_http_responses_total",
                 "Answers of the native HTTP server, by status class", "class",
                 status_classes[i - PIOCP_M_HTTP_RESPONSES]);
        return 0;
    }
    switch (i) {
    case PIOCP_M_ACCEPTED:
        plain(d, "pyiocp_connections_accepted_total", "Connections accepted and handed to a handler");
        break;
    case PIOCP_M_REFUSED_LIMIT:
        labelled(d, refused, refused_help, "reason", "max_connections");
        break;
    case PIOCP_M_REFUSED_STOPPING:
        labelled(d, refused, refused_help, "reason", "stopping");
        break;
    case PIOCP_M_ACCEPT_PAUSES:
        plain(d, "pyiocp_accept_pauses_total",
              "Times accepting paused for want of descriptors or memory");
        break;
    case PIOCP_M_OPENED:
        plain(d, "pyiocp_connections_opened_total",
              "Connections opened (accepted, connected, adopted or borrowed)");
        break;
    case PIOCP_M_CLOSED:
        plain(d, "pyiocp_connections_closed_total", "Connections closed");
        break;
    case PIOCP_M_RECEIVED_BYTES:
        plain(d, "pyiocp_received_bytes_total", "Bytes received by completed recvs");
        break;
    case PIOCP_M_SENT_BUFFER_BYTES:
        labelled(d, sent, sent_help, "source", "memory");
        break;
    case PIOCP_M_SENT_FILE_BYTES:
        labelled(d, sent, sent_help, "source", "file");
        break;
    case PIOCP_M_SENT_COPIED_BYTES:
        plain(d, "pyiocp_sent_file_copied_bytes_total",
              "Of the file bytes sent, those read into memory first instead of zero-copy");
        break;
    case PIOCP_M_BORROWED:
        plain(d, "pyiocp_borrowed_total", "Sockets lent to the engine for sending");
        break;
    case PIOCP_M_BORROWED_BYTES:
        plain(d, "pyiocp_borrowed_sent_bytes_total", "Bytes sent on borrowed sockets");
        break;
    case PIOCP_M_COMPLETED_INLINE:
        plain(d, "pyiocp_completed_inline_total",
              "Operations handled as they were posted, without a completion packet (IOCP)");
        break;
    case PIOCP_M_DISPATCHED:
        plain(d, "pyiocp_python_completions_total", "Completions handed to Python");
        break;
    case PIOCP_M_BATCHES:
        plain(d, "pyiocp_python_batches_total",
              "Batches those completions were handed over in (one GIL acquisition each)");
        break;
    }
    return 0;
}

/* ---------------------------------------------------------- counting -- */

void piocp_count(piocp_engine *e, int index, uint64_t n)
{
    piocp_metrics_cell *cell = piocp_engine_metrics_cell(e);
    piocp_worker *w = piocp_current_worker();
    if (w && w->engine == e) {
        /* only this thread writes its block: no read-modify-write needed */
        atomic_uint_fast64_t *v = &cell->block[1 + w->index].v[index];
        atomic_store_explicit(v, atomic_load_explicit(v, memory_order_relaxed) + n,
                              memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&cell->block[0].v[index], n, memory_order_relaxed);
    }
}

void piocp_metric_add(piocp_engine *e, int index, uint64_t n)
{
    if (e && index >= 0 && index < PIOCP_METRICS)
        piocp_count(e, index, n);
}

void piocp_metrics_cell_add_to(const piocp_metrics_cell *cell, uint64_t *values)
{
    for (uint32_t b = 0; b < cell->blocks; b++)
        for (int i = 0; i < PIOCP_METRICS; i++)
            values[i] += atomic_load_explicit(&cell->block[b].v[i], memory_order_relaxed);
}

void piocp_engine_read_metrics(const piocp_engine *e, uint64_t *values)
{
    memset(values, 0, PIOCP_METRICS * sizeof *values);
    piocp_metrics_cell_add_to(piocp_engine_metrics_cell(e), values);
}

size_t piocp_metrics_cell_size(int threads)
{
    if (threads < 1 || threads > PIOCP_MAX_THREADS)
        return 0;
    return sizeof(piocp_metrics_cell) + (size_t)(threads + 1) * sizeof(piocp_metrics_block);
}

/* Lays out a cell for `threads` workers in zeroed memory. */
static void cell_init(piocp_metrics_cell *cell, int threads, int slot)
{
    cell->magic = PIOCP_METRICS_CELL_MAGIC;
    cell->blocks = (uint32_t)threads + 1;
    cell->slot = slot;
}

/* Names the engine in its cell, for a reader in another process. */
static void cell_describe(piocp_metrics_cell *cell, const piocp_engine *e)
{
    snprintf(cell->backend, sizeof cell->backend, "%s", piocp_engine_backend(e));
    snprintf(cell->backend_note, sizeof cell->backend_note, "%s", piocp_engine_backend_note(e));
    atomic_store(&cell->pid, piocp_process_id());
}

int piocp_engine_metrics_init(piocp_engine *e)
{
    size_t size = piocp_metrics_cell_size(e->threads);
    /* aligned by hand: aligned_alloc is not in MSVC's C runtime */
    e->metrics_memory = calloc(1, size + 64);
    if (!e->metrics_memory)
        return -PIOCP_ENOMEM;
    uintptr_t at = ((uintptr_t)e->metrics_memory + 63) & ~(uintptr_t)63;
    e->metrics = (piocp_metrics_cell *)at;
    cell_init(e->metrics, e->threads, -1);
    cell_describe(e->metrics, e);
    return 0;
}

piocp_metrics_cell *piocp_engine_metrics_cell(const piocp_engine *e) { return e->metrics; }

int piocp_engine_use_metrics_cell(piocp_engine *e, void *memory, size_t size)
{
    piocp_metrics_cell *cell = memory;
    if (!e || !cell || ((uintptr_t)cell & 63) || size < piocp_metrics_cell_size(e->threads) ||
        cell->magic != PIOCP_METRICS_CELL_MAGIC || cell->blocks < (uint32_t)e->threads + 1)
        return -PIOCP_EINVAL;
    if (atomic_load(&e->started))
        return -PIOCP_EBUSY;
    /* what was counted before (nothing, usually) moves with the engine */
    uint64_t before[PIOCP_METRICS] = {0};
    piocp_metrics_cell_add_to(e->metrics, before);
    for (int i = 0; i < PIOCP_METRICS; i++)
        atomic_fetch_add_explicit(&cell->block[0].v[i], before[i], memory_order_relaxed);
    cell_describe(cell, e);
    e->metrics = cell;
    return 0;
}

/* -------------------------------------------------------------- areas -- */

/* A slot's worker, a reload's old one draining beside its new one, and a
 * restart of the old one if the reload is given up meanwhile: each counts
 * into its own cell until its process is reaped. */
#define CELLS_PER_SLOT 3

static size_t area_header_size(uint32_t slots)
{
    return sizeof(piocp_metrics_area) + (size_t)slots * sizeof(piocp_metrics_block);
}

size_t piocp_metrics_area_size(int slots, int threads)
{
    size_t cell = piocp_metrics_cell_size(threads);
    if (slots < 1 || slots > 4096 || !cell)
        return 0;
    return area_header_size((uint32_t)slots) + CELLS_PER_SLOT * (size_t)slots * cell;
}

int piocp_metrics_area_init(void *memory, size_t size, int slots, int threads)
{
    size_t needed = piocp_metrics_area_size(slots, threads);
    if (!memory || ((uintptr_t)memory & 63) || !needed || size < needed)
        return -PIOCP_EINVAL;
    piocp_metrics_area *a = memory;
    a->slots = (uint32_t)slots;
    a->cells = CELLS_PER_SLOT * (uint32_t)slots;
    a->threads = (uint32_t)threads;
    a->cell_size = piocp_metrics_cell_size(threads);
    for (uint32_t i = 0; i < a->cells; i++)
        cell_init(piocp_metrics_area_cell_at(a, i), threads, -1);
    a->magic = PIOCP_METRICS_AREA_MAGIC;
    return 0;
}

int piocp_metrics_area_check(const void *memory)
{
    const piocp_metrics_area *a = memory;
    return a && a->magic == PIOCP_METRICS_AREA_MAGIC ? 0 : -PIOCP_EINVAL;
}

piocp_metrics_block *piocp_metrics_area_retired(const piocp_metrics_area *a, uint32_t slot)
{
    return (piocp_metrics_block *)((char *)a + sizeof *a) + slot;
}

piocp_metrics_cell *piocp_metrics_area_cell_at(const piocp_metrics_area *a, uint32_t index)
{
    return (piocp_metrics_cell *)((char *)a + area_header_size(a->slots) + index * a->cell_size);
}

int piocp_metrics_area_claim(void *memory, int slot, void **cell_out, size_t *size_out)
{
    piocp_metrics_area *a = memory;
    if (piocp_metrics_area_check(a) < 0 || slot < 0 || (uint32_t)slot >= a->slots)
        return -PIOCP_EINVAL;
    /* the slot's own cells: a slot that restarts without its cells being
     * released must not take another slot's */
    for (uint32_t i = CELLS_PER_SLOT * (uint32_t)slot; i < CELLS_PER_SLOT * ((uint32_t)slot + 1);
         i++) {
        piocp_metrics_cell *cell = piocp_metrics_area_cell_at(a, i);
        int free_cell = 0;
        if (!atomic_compare_exchange_strong(&cell->in_use, &free_cell, 1))
            continue;
        /* its counts are zero: new, or emptied by its release */
        atomic_store(&cell->pid, 0);
        memset(cell->backend, 0, sizeof cell->backend);
        memset(cell->backend_note, 0, sizeof cell->backend_note);
        cell->slot = slot;
        *cell_out = cell;
        *size_out = (size_t)a->cell_size;
        return (int)i;
    }
    return -PIOCP_EBUSY;
}

static void zero_blocks(piocp_metrics_cell *cell)
{
    for (uint32_t b = 0; b < cell->blocks; b++)
        for (int k = 0; k < PIOCP_METRICS; k++)
            atomic_store_explicit(&cell->block[b].v[k], 0, memory_order_relaxed);
}

int piocp_metrics_area_release(void *memory, int index)
{
    piocp_metrics_area *a = memory;
    if (piocp_metrics_area_check(a) < 0 || index < 0 || (uint32_t)index >= a->cells)
        return -PIOCP_EINVAL;
    piocp_metrics_cell *cell = piocp_metrics_area_cell_at(a, (uint32_t)index);
    if (!atomic_load(&cell->in_use))
        return -PIOCP_EINVAL;
    uint64_t counts[PIOCP_METRICS] = {0};
    piocp_metrics_cell_add_to(cell, counts);
    /* its process is gone, and every connection it had with it */
    counts[PIOCP_M_CLOSED] = counts[PIOCP_M_OPENED];
    piocp_metrics_block *retired = piocp_metrics_area_retired(a, (uint32_t)cell->slot);
    atomic_fetch_add(&a->generation, 1);          /* odd: readers read again */
    for (int i = 0; i < PIOCP_METRICS; i++)
        atomic_fetch_add_explicit(&retired->v[i], counts[i], memory_order_relaxed);
    /* emptied here, while readers would retry, not at the next claim: a
     * claimed cell is counted at once, and must not show old counts */
    zero_blocks(cell);
    atomic_store(&cell->in_use, 0);
    atomic_fetch_add(&a->generation, 1);          /* even: done */
    return 0;
}

int piocp_metrics_area_cell(void *memory, int index, void **cell_out, size_t *size_out)
{
    piocp_metrics_area *a = memory;
    if (piocp_metrics_area_check(a) < 0 || index < 0 || (uint32_t)index >= a->cells)
        return -PIOCP_EINVAL;
    *cell_out = piocp_metrics_area_cell_at(a, (uint32_t)index);
    *size_out = (size_t)a->cell_size;
    return 0;
}
