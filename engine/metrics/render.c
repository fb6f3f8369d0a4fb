/*
 * render.c - the Prometheus text exposition format (version 0.0.4) of an
 * engine's counters, or of a metrics area's: each worker's series (with a
 * `worker` label) and their sum (without one).
 *
 * Families are contiguous runs of series (pyiocp.h's enum), so each gets
 * its HELP and TYPE once, with all its lines after them, as the format
 * asks.  Error series that are zero everywhere are left out: 128 lines of
 * zeros per worker would drown the ones that matter.
 */
#include "core/metrics.h"
#include "errors.h"

#include <assert.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A text builder that goes on counting past the end, as snprintf does. */
typedef struct text {
    char *buf;
    size_t cap, len;
} text;

static void put(text *t, const char *s, size_t n)
{
    if (t->len < t->cap) {
        size_t room = t->cap - t->len;
        memcpy(t->buf + t->len, s, n < room ? n : room);
    }
    t->len += n;
}

static void puts_(text *t, const char *s) { put(t, s, strlen(s)); }

/* For numbers and the names around them: HELP texts and label values go
 * through puts_ and put_label_value, whatever their length. */
static void printf_(text *t, const char *format, ...)
{
    char small[256];
    va_list ap;
    va_start(ap, format);
    int n = vsnprintf(small, sizeof small, format, ap);
    va_end(ap);
    assert(n >= 0 && (size_t)n < sizeof small);
    if (n > 0)
        put(t, small, (size_t)n < sizeof small ? (size_t)n : sizeof small - 1);
}

/* A label value, escaped as the format asks: \\, \" and \n. */
static void put_label_value(text *t, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            put(t, "\\", 1);
        if (*v == '\n')
            put(t, "\\n", 2);
        else
            put(t, v, 1);
    }
}

/* name{labels,worker="w"} value */
static void put_line(text *t, const char *name, const piocp_metric_desc *d, int worker,
                     uint64_t value)
{
    puts_(t, name);
    const char *sep = "{";
    for (int k = 0; k < 2 && d && d->label_name[k]; k++) {
        puts_(t, sep);
        puts_(t, d->label_name[k]);
        puts_(t, "=\"");
        put_label_value(t, d->label_value[k]);
        puts_(t, "\"");
        sep = ",";
    }
    if (worker >= 0) {
        puts_(t, sep);
        printf_(t, "worker=\"%d\"", worker);
        sep = ",";
    }
    if (*sep == ',')
        puts_(t, "}");
    printf_(t, " %llu\n", (unsigned long long)value);
}

static void put_family(text *t, const char *name, const char *help, const char *type)
{
    printf_(t, "# HELP %s ", name);
    puts_(t, help);
    printf_(t, "\n# TYPE %s %s\n", name, type);
}

/* What is rendered: the total, and (for an area) each slot's. */
typedef struct view {
    uint64_t sum[PIOCP_METRICS];
    uint32_t slots;                /* 0: an engine alone, no worker label */
    const uint64_t *slot_values;   /* [slots][PIOCP_METRICS] */
} view;

static void put_series(text *t, const view *v, int first, int last)
{
    piocp_metric_desc d;
    piocp_metric_describe(first, &d);
    put_family(t, d.name, d.help, "counter");
    bool errors = first == PIOCP_M_ERRORS;
    for (int i = first; i <= last; i++) {
        if ((errors && v->sum[i] == 0) || i == PIOCP_M_REQUESTS + PIOCP_METRIC_OP_ACCEPT)
            continue; /* an accept is no request: pyiocp_connections_accepted_total */
        piocp_metric_describe(i, &d);
        put_line(t, d.name, &d, -1, v->sum[i]);
        for (uint32_t s = 0; s < v->slots; s++)
            put_line(t, d.name, &d, (int)s, v->slot_values[(size_t)s * PIOCP_METRICS + i]);
    }
}

/* Opened minus closed.  The blocks are read one after the other while
 * connections come and go, so a close can be seen without its open: never
 * below zero. */
static uint64_t open_now(const uint64_t *values)
{
    uint64_t opened = values[PIOCP_M_OPENED], closed = values[PIOCP_M_CLOSED];
    return opened > closed ? opened - closed : 0;
}

static void put_open_connections(text *t, const view *v)
{
    static const char name[] = "pyiocp_connections_open";
    put_family(t, name, "Connections open now", "gauge");
    put_line(t, name, NULL, -1, open_now(v->sum));
    for (uint32_t s = 0; s < v->slots; s++)
        put_line(t, name, NULL, (int)s, open_now(v->slot_values + (size_t)s * PIOCP_METRICS));
}

/* pyiocp_info{...} 1: the version, and each counting engine's backend. */
static void put_info(text *t, const piocp_metrics_cell *cell, int worker)
{
    puts_(t, "pyiocp_info{version=\"" PIOCP_VERSION "\",backend=\"");
    put_label_value(t, cell->backend);
    puts_(t, "\"");
    if (cell->backend_note[0]) {
        puts_(t, ",backend_note=\"");
        put_label_value(t, cell->backend_note);
        puts_(t, "\"");
    }
    if (worker >= 0)
        printf_(t, ",worker=\"%d\",pid=\"%ld\"", worker, (long)atomic_load(&cell->pid));
    puts_(t, "} 1\n");
}

static void put_all(text *t, const view *v, const piocp_engine *engine,
                    const piocp_metrics_area *area)
{
    put_family(t, "pyiocp_info", "The version, and each engine's backend", "gauge");
    if (area) {
        for (uint32_t i = 0; i < area->cells; i++) {
            const piocp_metrics_cell *cell = piocp_metrics_area_cell_at(area, i);
            if (atomic_load(&cell->in_use) && atomic_load(&cell->pid))
                put_info(t, cell, cell->slot);
        }
    } else {
        put_info(t, piocp_engine_metrics_cell(engine), -1);
    }
    put_open_connections(t, v);
    piocp_metric_desc a, b;
    for (int first = 0; first < PIOCP_METRICS;) {
        piocp_metric_describe(first, &a);
        int last = first;
        while (last + 1 < PIOCP_METRICS && piocp_metric_describe(last + 1, &b) == 0 &&
               strcmp(a.name, b.name) == 0)
            last++;
        put_series(t, v, first, last);
        first = last + 1;
    }
}

/* Each slot's totals (retired + live cells) and their sum, read again if
 * a release moved counts meanwhile. */
static void read_area(const piocp_metrics_area *area, view *v, uint64_t *slot_values)
{
    for (int attempt = 0; attempt < 100; attempt++) {
        uint64_t before = atomic_load(&area->generation);
        memset(slot_values, 0, (size_t)area->slots * PIOCP_METRICS * sizeof *slot_values);
        for (uint32_t s = 0; s < area->slots; s++) {
            const piocp_metrics_block *retired = piocp_metrics_area_retired(area, s);
            for (int i = 0; i < PIOCP_METRICS; i++)
                slot_values[(size_t)s * PIOCP_METRICS + i] =
                    atomic_load_explicit(&retired->v[i], memory_order_relaxed);
        }
        for (uint32_t c = 0; c < area->cells; c++) {
            const piocp_metrics_cell *cell = piocp_metrics_area_cell_at(area, c);
            if (atomic_load(&cell->in_use) && cell->slot >= 0 && (uint32_t)cell->slot < area->slots)
                piocp_metrics_cell_add_to(cell, slot_values + (size_t)cell->slot * PIOCP_METRICS);
        }
        if (!(before & 1) && atomic_load(&area->generation) == before)
            break;
    }
    memset(v->sum, 0, sizeof v->sum);
    for (uint32_t s = 0; s < area->slots; s++)
        for (int i = 0; i < PIOCP_METRICS; i++)
            v->sum[i] += slot_values[(size_t)s * PIOCP_METRICS + i];
    v->slots = area->slots;
    v->slot_values = slot_values;
}

size_t piocp_metrics_render(const piocp_engine *engine, const void *area_memory, char *buf,
                            size_t cap)
{
    text t = {buf, cap, 0};
    if (cap > 0)
        buf[0] = '\0'; /* an empty string where there is nothing to render */
    const piocp_metrics_area *area = area_memory;
    view v = {0};
    uint64_t *slot_values = NULL;
    if (area) {
        if (piocp_metrics_area_check(area) < 0)
            return 0;
        slot_values = malloc((size_t)area->slots * PIOCP_METRICS * sizeof *slot_values);
        if (!slot_values)
            return 0;
        read_area(area, &v, slot_values);
    } else if (engine) {
        piocp_engine_read_metrics(engine, v.sum);
    } else {
        return 0;
    }
    put_all(&t, &v, engine, area);
    free(slot_values);
    if (cap > 0)
        buf[t.len < cap ? t.len : cap - 1] = '\0';
    return t.len;
}
