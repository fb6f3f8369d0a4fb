/*
 * cpus.c - how many CPUs this process may use (piocp_cpu_info_read in
 * pyiocp.h): the rule, written once; the platform says what limits it
 * (platform.h).
 */
#include "platform/platform.h"

void piocp_cpu_info_read(piocp_cpu_info *out, const char *cgroup_root,
                         const char *proc_self_cgroup)
{
    out->online = piocp_online_cpus();
    out->affinity = piocp_affinity_cpus();
    int ceiling = 0;
    out->quota_cpus = piocp_cpu_quota(cgroup_root, proc_self_cgroup, &ceiling);
    /* the mask holds only CPUs that are up; without one, every online CPU */
    int usable = out->affinity > 0 ? out->affinity : out->online;
    /* 1.5 CPUs of quota keep two threads busy half the time each: round
     * up, a short pool would leave quota unused */
    if (out->quota_cpus > 0 && ceiling > 0 && ceiling < usable)
        usable = ceiling;
    out->usable = usable > 0 ? usable : 1;
}
