/*
 * fault.c - the fault-injection points of test builds (see fault.h): the
 * armed point and the recording.  Allocation counting is fault_alloc.c.
 */
#include "core/fault.h"

#ifdef PIOCP_FAULT_INJECTION
#include "platform/threads.h"
#include "platform/atomics.h"

#include <limits.h>
#include <stdbool.h>
#include <string.h>

/* One lock for all of it: a fault build is for tests, and the common case
 * (nothing armed, not recording) takes no lock at all. */
static piocp_mutex lock = PIOCP_MUTEX_INITIALIZER;
static atomic_bool active;

static char armed_point[32];
static unsigned armed_first, armed_last, passes, fired;
static int armed_error;
static ptrdiff_t armed_keep;
static PIOCP_THREAD_LOCAL unsigned fired_here;

/* Enough for every point of the engine and the binding: a sweep that
 * sees the table full knows it missed some (recorded() returns more). */
#define MAX_SITES 160
static bool recording;
static piocp_fault_site sites[MAX_SITES];
static size_t site_count;

static void update_active(void)
{
    atomic_store(&active, recording || armed_point[0] != '\0');
}

void piocp_fault_arm_spec(const piocp_fault_spec *spec)
{
    piocp_mutex_lock(&lock);
    strncpy(armed_point, spec->point, sizeof armed_point - 1);
    armed_point[sizeof armed_point - 1] = '\0';
    unsigned times = spec->times ? spec->times : 1;
    armed_first = spec->nth;
    armed_last = times > UINT_MAX - spec->nth ? UINT_MAX : spec->nth + times - 1;
    armed_error = spec->error;
    armed_keep = spec->keep;
    passes = fired = 0;
    update_active();
    piocp_mutex_unlock(&lock);
}

void piocp_fault_arm(const char *point, unsigned nth, int error)
{
    piocp_fault_spec spec = {.point = point, .nth = nth, .error = error};
    piocp_fault_arm_spec(&spec);
}

void piocp_fault_arm_short(const char *point, unsigned nth, ptrdiff_t keep)
{
    piocp_fault_spec spec = {.point = point, .nth = nth, .keep = keep};
    piocp_fault_arm_spec(&spec);
}

void piocp_fault_disarm(void)
{
    piocp_mutex_lock(&lock);
    armed_point[0] = '\0';
    update_active();
    piocp_mutex_unlock(&lock);
}

unsigned piocp_fault_fired(void)
{
    piocp_mutex_lock(&lock);
    unsigned n = fired;
    piocp_mutex_unlock(&lock);
    return n;
}

unsigned piocp_fault_fired_here(void) { return fired_here; }

unsigned piocp_fault_passes(void)
{
    piocp_mutex_lock(&lock);
    unsigned n = passes;
    piocp_mutex_unlock(&lock);
    return n;
}

void piocp_fault_record(int on)
{
    piocp_mutex_lock(&lock);
    if (on && !recording)
        site_count = 0;
    recording = on != 0;
    update_active();
    piocp_mutex_unlock(&lock);
}

size_t piocp_fault_recorded(piocp_fault_site *out, size_t max)
{
    piocp_mutex_lock(&lock);
    size_t n = site_count;
    for (size_t i = 0; i < n && i < max; i++)
        out[i] = sites[i];
    piocp_mutex_unlock(&lock);
    return n;
}

/* Under the lock. */
static void record(const char *point, bool can_short)
{
    for (size_t i = 0; i < site_count && i < MAX_SITES; i++) {
        if (strcmp(sites[i].point, point) == 0) {
            sites[i].passes++;
            sites[i].can_short |= can_short;
            return;
        }
    }
    if (site_count < MAX_SITES) {
        piocp_fault_site *s = &sites[site_count];
        strncpy(s->point, point, sizeof s->point - 1);
        s->point[sizeof s->point - 1] = '\0';
        s->passes = 1;
        s->can_short = can_short;
    }
    site_count++; /* past MAX_SITES: counted, so recorded() says so */
}

/* One pass through `point`, which has a length (`len`) or not (`has_len`
 * false).  Returns the length to use or -error. */
static ptrdiff_t pass(const char *point, bool has_len, ptrdiff_t len)
{
    if (!atomic_load_explicit(&active, memory_order_relaxed))
        return len;
    ptrdiff_t rc = len;
    piocp_mutex_lock(&lock);
    if (recording)
        record(point, has_len);
    if (armed_point[0] && strcmp(point, armed_point) == 0) {
        unsigned n = ++passes;
        if (n >= armed_first && n <= armed_last) {
            if (armed_error > 0) {
                rc = -armed_error;
                fired++;
                fired_here++;
            } else if (has_len && len >= 2) {
                ptrdiff_t keep = armed_keep > 0 ? armed_keep : len / 2;
                rc = keep >= len ? len - 1 : keep;
                fired++;
                fired_here++;
            }
        }
    }
    piocp_mutex_unlock(&lock);
    return rc;
}

int piocp_fault_check(const char *point)
{
    return (int)pass(point, false, 0);
}

ptrdiff_t piocp_fault_short(const char *point, ptrdiff_t len)
{
    return pass(point, true, len);
}
#else
/* ISO C wants a translation unit to declare something. */
typedef int piocp_fault_unused;
#endif
