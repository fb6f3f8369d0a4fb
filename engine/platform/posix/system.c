/*
 * system.c - POSIX clocks and CPU count for the core (see platform.h;
 * threads: platform/threads.h).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform/platform.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

const char *piocp_error_text(int err, char *buf, size_t len)
{
    if (!buf || len == 0)
        return "";
#if defined(__GLIBC__) && defined(_GNU_SOURCE)
    /* glibc's GNU variant: returns the text, in `buf` or a constant */
    return strerror_r(err, buf, len);
#else
    /* the XSI variant (musl, the BSDs, macOS): 0 or an error number */
    if (strerror_r(err, buf, len) != 0)
        snprintf(buf, len, "error %d", err);
    return buf;
#endif
}

long long piocp_now_ms(void)
{
    struct timespec ts;
    /* COARSE: a vDSO read, cheap enough to stamp every completion */
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

long long piocp_monotonic_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

long piocp_process_id(void) { return (long)getpid(); }

int piocp_online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

#ifndef __linux__
/* Other POSIX systems: no affinity mask in this form and no cgroups
 * (Linux: platform/linux/cpus.c).  The online CPUs are the limit. */
int piocp_affinity_cpus(void) { return 0; }

double piocp_cpu_quota(const char *cgroup_root, const char *proc_self_cgroup, int *ceiling)
{
    (void)cgroup_root;
    (void)proc_self_cgroup;
    *ceiling = 0;
    return 0;
}
#endif
