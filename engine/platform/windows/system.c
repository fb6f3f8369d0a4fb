/*
 * system.c - Windows clocks and CPU count for the core (see platform.h;
 * threads: platform/threads.h).
 */
#include "platform/platform.h"

#include <windows.h>

long long piocp_now_ms(void)
{
    /* the tick count: a read of shared memory, cheap enough to stamp every
     * completion; its 10-16 ms resolution is what "coarse" promises */
    return (long long)GetTickCount64();
}

/* The performance counter's frequency is fixed at boot: read once (a
 * piocp_once, since workers and the binding may ask first at the same
 * time). */
static piocp_once frequency_once = PIOCP_ONCE_INIT;
static LONGLONG frequency;

static void read_frequency(void)
{
    LARGE_INTEGER f;
    QueryPerformanceFrequency(&f);
    frequency = f.QuadPart;
}

long long piocp_monotonic_us(void)
{
    /* the performance counter never goes back and has sub-microsecond
     * resolution */
    piocp_once_run(&frequency_once, read_frequency);
    LARGE_INTEGER now;
    QueryPerformanceCounter(&now);
    /* split, so that counter * 1e6 cannot overflow after long uptimes */
    LONGLONG seconds = now.QuadPart / frequency, rest = now.QuadPart % frequency;
    return (long long)(seconds * 1000000 + rest * 1000000 / frequency);
}

long piocp_process_id(void) { return (long)GetCurrentProcessId(); }

int piocp_online_cpus(void)
{
    /* every processor group: GetSystemInfo counts only the caller's (64) */
    DWORD n = GetActiveProcessorCount(ALL_PROCESSOR_GROUPS);
    return n > 0 ? (int)n : 1;
}

int piocp_affinity_cpus(void)
{
    /* The process mask covers its own processor group only; a process
     * spanning groups reports 0 here ("cannot say"), and the online count
     * is the limit. */
    DWORD_PTR process_mask = 0, system_mask = 0;
    if (!GetProcessAffinityMask(GetCurrentProcess(), &process_mask, &system_mask) ||
        !process_mask)
        return 0;
    int n = 0;
    for (; process_mask; process_mask &= process_mask - 1)
        n++;
    return n;
}

/* Job objects can cap CPU rate, but nothing here reads them yet: no quota
 * (the affinity mask and the online CPUs are the limit). */
double piocp_cpu_quota(const char *cgroup_root, const char *proc_self_cgroup, int *ceiling)
{
    (void)cgroup_root;
    (void)proc_self_cgroup;
    *ceiling = 0;
    return 0;
}
