/*
 * cpus.c - what Linux lets this process use of the machine's CPUs: its
 * affinity mask and its cgroup's CPU quota (see platform.h).
 *
 * The cgroup files are written by container runtimes and service managers
 * (and by tests, through the injectable paths), so they are read as
 * untrusted input: every read is bounded, every number checked, and
 * whatever is missing, unreadable or malformed counts as "no limit".  A
 * default pool that is too big costs a few idle threads; failing here
 * would cost the engine.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "platform/platform.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEFAULT_CGROUP_ROOT "/sys/fs/cgroup"
#define DEFAULT_PROC_SELF_CGROUP "/proc/self/cgroup"

/* The largest affinity mask asked for, in CPUs (Linux builds for at most
 * 8192 today). */
#define MAX_AFFINITY_CPUS (1 << 20)
/* /proc/self/cgroup: a line per hierarchy (a dozen at most), each path
 * shorter than PATH_MAX. */
#define MAX_CGROUP_LIST (64 * 1024)
/* cpu.max, cpu.cfs_quota_us, cpu.cfs_period_us: one or two numbers. */
#define MAX_VALUE_FILE 64
/* Quotas and periods are microseconds, which the kernel bounds far below
 * this; above it a value is malformed, and runtime + period cannot
 * overflow. */
#define MAX_VALUE ((uint64_t)1 << 53)

int piocp_affinity_cpus(void)
{
    /* Sized at run time, growing until the kernel's mask fits: a fixed
     * cpu_set_t holds 1024 CPUs, and sched_getaffinity refuses a buffer
     * smaller than the kernel's mask with EINVAL. */
    for (int cpus = 1024; cpus <= MAX_AFFINITY_CPUS; cpus *= 2) {
        cpu_set_t *set = CPU_ALLOC(cpus);
        if (!set)
            return 0;
        size_t size = CPU_ALLOC_SIZE(cpus);
        int count = sched_getaffinity(0, size, set) == 0 ? CPU_COUNT_S(size, set) : -errno;
        CPU_FREE(set);
        if (count != -EINVAL)
            return count > 0 ? count : 0;
    }
    return 0;
}

/* ------------------------------------------------------ reading files -- */

/* Reads a whole small text file into `buf` (NUL-terminated).  Returns its
 * length, or -1 if it cannot be opened, is not a regular file (a FIFO would
 * block, /dev/zero never end), holds a NUL byte or does not fit in `cap` - 1
 * bytes.  cgroupfs and procfs files are regular files. */
static ssize_t read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return -1;
    struct stat st;
    ssize_t len = -1;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode)) {
        size_t got = 0;
        for (;;) {
            ssize_t n = read(fd, buf + got, cap - got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0)
                break;
            if (n == 0) {
                /* text only: a NUL inside would end the parse early and
                 * pass off a truncated value as the whole */
                if (!memchr(buf, '\0', got)) {
                    buf[got] = '\0';
                    len = (ssize_t)got;
                }
                break;
            }
            got += (size_t)n;
            if (got == cap) /* no room left for the NUL: too long */
                break;
        }
    }
    close(fd);
    return len;
}

/* A decimal number in [1, MAX_VALUE] at *p; moves *p past it.  "-1" and
 * "max" (no limit) are refused like anything malformed. */
static bool parse_value(const char **p, uint64_t *out)
{
    const char *s = *p;
    uint64_t value = 0;
    if (*s < '0' || *s > '9')
        return false;
    for (; *s >= '0' && *s <= '9'; s++) {
        value = value * 10 + (uint64_t)(*s - '0');
        if (value > MAX_VALUE)
            return false;
    }
    if (value == 0)
        return false;
    *out = value;
    *p = s;
    return true;
}

/* The end of a value file: nothing, or one newline. */
static bool at_end(const char *p)
{
    if (*p == '\n')
        p++;
    return *p == '\0';
}

/* ----------------------------------------------------------- quotas -- */

/* `runtime` microseconds of CPU time per `period`; period 0: no limit. */
typedef struct quota {
    uint64_t runtime, period;
} quota;

static void keep_tighter(quota *best, uint64_t runtime, uint64_t period)
{
    if (best->period == 0 ||
        (double)runtime / (double)period < (double)best->runtime / (double)best->period) {
        best->runtime = runtime;
        best->period = period;
    }
}

static bool join(char *out, size_t cap, const char *dir, const char *name)
{
    int n = snprintf(out, cap, "%s/%s", dir, name);
    return n > 0 && (size_t)n < cap;
}

/* One number in a file of its own (cgroup v1). */
static bool read_value_file(const char *dir, const char *name, uint64_t *out)
{
    char path[PATH_MAX], buf[MAX_VALUE_FILE];
    if (!join(path, sizeof path, dir, name) || read_small_file(path, buf, sizeof buf) < 0)
        return false;
    const char *p = buf;
    return parse_value(&p, out) && at_end(p);
}

/* cgroup v2: cpu.max is "150000 100000" (1.5 CPUs) or "max 100000". */
static void read_cpu_max(const char *dir, quota *best)
{
    char path[PATH_MAX], buf[MAX_VALUE_FILE];
    if (!join(path, sizeof path, dir, "cpu.max") || read_small_file(path, buf, sizeof buf) < 0)
        return;
    const char *p = buf;
    uint64_t runtime, period;
    if (parse_value(&p, &runtime) && *p++ == ' ' && parse_value(&p, &period) && at_end(p))
        keep_tighter(best, runtime, period);
}

/* cgroup v1: cpu.cfs_quota_us ("-1": no limit) per cpu.cfs_period_us. */
static void read_cfs_quota(const char *dir, quota *best)
{
    uint64_t runtime, period;
    if (read_value_file(dir, "cpu.cfs_quota_us", &runtime) &&
        read_value_file(dir, "cpu.cfs_period_us", &period))
        keep_tighter(best, runtime, period);
}

/* Reads the quota of the cgroup `path` (as /proc/self/cgroup names it)
 * under the mount `base`, and of each ancestor up to `base` itself: a quota
 * binds the whole subtree, so the tightest on the way applies.  Where the
 * mount starts below the hierarchy's root (a container without its own
 * cgroup namespace sees its cgroup as the mount's root, while
 * /proc/self/cgroup shows the host's path), the levels missing under
 * `base` are skipped and `base` itself is that cgroup. */
static void walk_up(const char *base, const char *path, void (*read_level)(const char *, quota *),
                    quota *best)
{
    char dir[PATH_MAX];
    size_t len = strlen(path);
    for (;;) {
        while (len > 0 && path[len - 1] == '/') /* "/a/b/" -> "/a/b", "/" -> "" */
            len--;
        int n = snprintf(dir, sizeof dir, "%s%.*s", base, (int)len, path);
        if (n > 0 && (size_t)n < sizeof dir)
            read_level(dir, best);
        if (len == 0)
            return;
        while (len > 0 && path[len - 1] != '/') /* up one level */
            len--;
    }
}

/* An absolute path without "." or ".." components: the kernel writes no
 * other, and a fake one must not lead the walk out of the mount. */
static bool plausible_cgroup_path(const char *path)
{
    if (path[0] != '/' || strlen(path) >= PATH_MAX)
        return false;
    for (const char *c = path; c; c = strchr(c + 1, '/')) {
        const char *name = c + 1;
        size_t n = strcspn(name, "/");
        if ((n == 1 && name[0] == '.') || (n == 2 && name[0] == '.' && name[1] == '.'))
            return false;
    }
    return true;
}

/* Whether the comma-separated list `controllers` names `want`. */
static bool has_controller(const char *controllers, const char *want)
{
    size_t want_len = strlen(want);
    for (const char *c = controllers; *c;) {
        size_t n = strcspn(c, ",");
        if (n == want_len && memcmp(c, want, n) == 0)
            return true;
        c += n;
        if (*c == ',')
            c++;
    }
    return false;
}

static bool is_dir(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Where a cgroup v1 hierarchy holding the cpu controller is mounted: named
 * after its controllers ("cpu,cpuacct"), with "cpu" usually a symbolic
 * link to it. */
static bool v1_cpu_mount(const char *root, const char *controllers, char *out, size_t cap)
{
    const char *names[] = {controllers, "cpu", "cpu,cpuacct"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (strchr(names[i], '/') || strcmp(names[i], ".") == 0 || strcmp(names[i], "..") == 0)
            continue;
        if (join(out, cap, root, names[i]) && is_dir(out))
            return true;
    }
    return false;
}

/* One line of /proc/self/cgroup: "0::/path" for cgroup v2 (one hierarchy,
 * mounted at the root), "4:cpu,cpuacct:/path" for a v1 hierarchy.  A
 * machine may have both (hybrid): the cpu controller is in one of them,
 * so reading both and keeping the tighter finds it wherever it is. */
static void line_quota(const char *root, char *line, quota *best)
{
    char *controllers = strchr(line, ':');
    if (!controllers)
        return;
    *controllers++ = '\0'; /* `line` is now the hierarchy's number */
    char *path = strchr(controllers, ':');
    if (!path)
        return;
    *path++ = '\0'; /* the path may itself hold colons: split twice only */
    if (!plausible_cgroup_path(path))
        return;
    if (strcmp(line, "0") == 0 && controllers[0] == '\0') {
        walk_up(root, path, read_cpu_max, best);
    } else if (has_controller(controllers, "cpu")) {
        char base[PATH_MAX];
        if (v1_cpu_mount(root, controllers, base, sizeof base))
            walk_up(base, path, read_cfs_quota, best);
    }
}

double piocp_cpu_quota(const char *cgroup_root, const char *proc_self_cgroup, int *ceiling)
{
    *ceiling = 0;
    if (!cgroup_root)
        cgroup_root = DEFAULT_CGROUP_ROOT;
    if (!proc_self_cgroup)
        proc_self_cgroup = DEFAULT_PROC_SELF_CGROUP;
    char *list = malloc(MAX_CGROUP_LIST);
    if (!list)
        return 0;
    quota best = {0, 0};
    ssize_t len = read_small_file(proc_self_cgroup, list, MAX_CGROUP_LIST);
    /* line by line, empty ones included */
    for (char *line = list, *end = list + (len > 0 ? len : 0); line < end;) {
        char *next = line + strcspn(line, "\n");
        if (*next)
            *next++ = '\0';
        line_quota(cgroup_root, line, &best);
        line = next;
    }
    free(list);
    if (best.period == 0)
        return 0;
    uint64_t up = (best.runtime + best.period - 1) / best.period;
    *ceiling = up < INT_MAX ? (int)up : INT_MAX;
    return (double)best.runtime / (double)best.period;
}
