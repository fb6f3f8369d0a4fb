/*
 * test_cpus.c - piocp_cpu_info_read against fake cgroup trees: the CPUs
 * this process may use (affinity, cgroup v2 cpu.max and v1 CFS quotas of
 * the process's cgroup and its ancestors), and that anything missing or
 * malformed reads as "no limit" without failing.
 *
 * Each case builds its tree in a fresh directory under $TMPDIR (or /tmp)
 * and removes it afterwards.  Run one: test_cpus <case>; list: test_cpus.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pyiocp.h"
#include "test_util.h"

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <math.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>

static char root[PATH_MAX]; /* the fake tree of the running case */

/* snprintf into a PATH_MAX buffer, failing the test if it does not fit. */
#define FORMAT_PATH(buf, ...) CHECK((size_t)snprintf(buf, PATH_MAX, __VA_ARGS__) < PATH_MAX)

static void make_root(void)
{
    const char *tmp = getenv("TMPDIR");
    FORMAT_PATH(root, "%s/piocp-cpus-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    CHECK(mkdtemp(root) != NULL);
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st, (void)flag, (void)ftw;
    return remove(path);
}

static void remove_root(void) { CHECK(nftw(root, remove_entry, 16, FTW_DEPTH | FTW_PHYS) == 0); }

/* Makes root/<rel> and the directories on the way. */
static void put_dir(const char *rel)
{
    char path[PATH_MAX];
    FORMAT_PATH(path, "%s/%s/", root, rel);
    for (char *slash = strchr(path + strlen(root) + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        CHECK(mkdir(path, 0755) == 0 || errno == EEXIST);
        *slash = '/';
    }
}

/* Writes root/<rel> with `len` bytes of `content`, making its directory. */
static void put_bytes(const char *rel, const char *content, size_t len)
{
    char path[PATH_MAX];
    FORMAT_PATH(path, "%s", rel);
    char *slash = strrchr(path, '/');
    if (slash) {
        *slash = '\0';
        put_dir(path);
    }
    FORMAT_PATH(path, "%s/%s", root, rel);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    CHECK(fd >= 0);
    CHECK(write_all(fd, content, len) == 0);
    close(fd);
}

static void put(const char *rel, const char *content) { put_bytes(rel, content, strlen(content)); }

static void drop(const char *rel)
{
    char path[PATH_MAX];
    FORMAT_PATH(path, "%s/%s", root, rel);
    CHECK(unlink(path) == 0);
}

/* The CPUs sched_getaffinity reports, counted here independently. */
static int affinity_count(void)
{
    cpu_set_t *set = CPU_ALLOC(1 << 16);
    size_t size = CPU_ALLOC_SIZE(1 << 16);
    CHECK(set && sched_getaffinity(0, size, set) == 0);
    int n = CPU_COUNT_S(size, set);
    CPU_FREE(set);
    return n;
}

/* Reads the fake tree: root/sys is the cgroup mount, root/cgroup the
 * process's cgroup list. */
static piocp_cpu_info read_fake(void)
{
    char mount[PATH_MAX], list[PATH_MAX];
    FORMAT_PATH(mount, "%s/sys", root);
    FORMAT_PATH(list, "%s/cgroup", root);
    piocp_cpu_info info;
    memset(&info, 0xff, sizeof info); /* every field must be written */
    piocp_cpu_info_read(&info, mount, list);
    return info;
}

/* Checks a read of the fake tree: the quota found (0: none) and usable
 * derived from it and the real affinity. */
static void expect_quota(double quota, const char *what)
{
    piocp_cpu_info info = read_fake();
    int affinity = affinity_count();
    int usable = affinity;
    if (quota > 0 && (int)ceil(quota) < usable)
        usable = (int)ceil(quota);
    if (fabs(info.quota_cpus - quota) > 1e-9 || info.usable != usable ||
        info.affinity != affinity || info.online < 1) {
        fprintf(stderr, "%s: quota %g usable %d affinity %d online %d; want quota %g usable %d\n",
                what, info.quota_cpus, info.usable, info.affinity, info.online, quota, usable);
        CHECK(0);
    }
}

/* ------------------------------------------------------------ cases -- */

static void v2_leaf(void)
{
    make_root();
    put("cgroup", "0::/a/b\n");
    put("sys/a/b/cpu.max", "150000 100000\n");
    expect_quota(1.5, "leaf 1.5");
    put("sys/a/b/cpu.max", "50000 100000\n");
    expect_quota(0.5, "leaf 0.5 (rounds up to 1 CPU)");
    put("sys/a/b/cpu.max", "200000 100000"); /* no newline; exactly 2 */
    expect_quota(2.0, "leaf 2.0");
    put("sys/a/b/cpu.max", "100000000 100000\n");
    expect_quota(1000.0, "a quota above the CPUs leaves the affinity");
    remove_root();
}

static void v2_ancestor(void)
{
    make_root();
    put("cgroup", "0::/a/b/c\n");
    put("sys/a/b/c/cpu.max", "max 100000\n");
    put("sys/a/b/cpu.max", "max 100000\n");
    put("sys/a/cpu.max", "75000 100000\n");
    expect_quota(0.75, "only an ancestor limits");
    /* the leaf need not have the file at all (cpu not enabled below) */
    drop("sys/a/b/c/cpu.max");
    expect_quota(0.75, "leaf without cpu.max");
    /* the mount's root counts too (a container's own cgroup namespace) */
    put("sys/a/cpu.max", "max 100000\n");
    put("sys/cpu.max", "300000 100000\n");
    expect_quota(3.0, "the mount's root");
    remove_root();
}

static void v2_tightest(void)
{
    make_root();
    put("cgroup", "0::/a/b\n");
    put("sys/a/b/cpu.max", "400000 100000\n");
    put("sys/a/cpu.max", "100000 50000\n"); /* 2 CPUs, other period */
    expect_quota(2.0, "tighter ancestor");
    put("sys/a/b/cpu.max", "25000 20000\n"); /* 1.25 */
    expect_quota(1.25, "tighter leaf");
    remove_root();
}

static void v2_no_limit(void)
{
    make_root();
    put("cgroup", "0::/a/b\n");
    put("sys/a/b/cpu.max", "max 100000\n");
    put("sys/a/cpu.max", "max 100000\n");
    expect_quota(0, "max everywhere");
    put("cgroup", "0::/\n");
    expect_quota(0, "the root cgroup, which has no cpu.max");
    remove_root();
}

static void malformed(void)
{
    static const char *const bad[] = {
        "", "\n", "max", "abc 100000\n", "150000\n", "150000 0\n", "0 100000\n",
        "-5 100000\n", " 150000 100000\n", "150000  100000\n", "150000\t100000\n",
        "150000 100000 7\n", "150000 100000\n\n", "1.5 1\n", "0x10 100000\n",
        "99999999999999999999999 100000\n", "150000 99999999999999999999999\n",
        "9007199254740993 1\n", /* just over the bound on values */
        "150000 100000\nmax 100000\n",
        "1500000000000000000000000000000000000000000000000000000000000000000000000 100000\n",
    };
    make_root();
    put("cgroup", "0::/a\n");
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        put("sys/a/cpu.max", bad[i]);
        expect_quota(0, bad[i]);
    }
    /* a NUL byte would hide what follows it */
    put_bytes("sys/a/cpu.max", "150000 100000\0garbage\n", 22);
    expect_quota(0, "a NUL inside cpu.max");
    put("sys/a/cpu.max", "150000 100000\n");
    put_bytes("cgroup", "0::/a\n\0", 7);
    expect_quota(0, "a NUL inside the list");
    /* a bad line or path in the list is skipped, the good one still read */
    put("sys/a/cpu.max", "150000 100000\n");
    put("cgroup", "garbage\n7\n:\n0:\n0::relative\n0::/a/../a\n0::/./a\n\n0::/a\n");
    expect_quota(1.5, "bad lines around a good one");
    put("cgroup", "0::/a/../a\n");
    expect_quota(0, "a path with ..");
    put("cgroup", "");
    expect_quota(0, "an empty list");
    put("cgroup", "0::/a"); /* no final newline */
    expect_quota(1.5, "a list without its last newline");
    remove_root();
}

static void missing_files(void)
{
    make_root();
    expect_quota(0, "no list, no mount");
    put("cgroup", "0::/a\n");
    expect_quota(0, "no mount");
    put("sys/a/cpu.max", "150000 100000\n");
    put("cgroup", "1:cpu:/a\n2:memory:/a\n");
    expect_quota(0, "no v2 line and no v1 mount");
    put("cgroup", "0::/nowhere/deeper\n");
    expect_quota(0, "a cgroup missing from the mount");
    remove_root();
}

static void v1_layout(void)
{
    make_root();
    put("cgroup", "12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n0::/x\n");
    put("sys/cpu,cpuacct/cpu.cfs_quota_us", "-1\n");
    put("sys/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    put("sys/cpu,cpuacct/docker/cpu.cfs_quota_us", "-1\n");
    put("sys/cpu,cpuacct/docker/cpu.cfs_period_us", "100000\n");
    put("sys/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "150000\n");
    put("sys/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "100000\n");
    expect_quota(1.5, "v1 leaf");
    put("sys/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "-1\n");
    expect_quota(0, "v1 -1 everywhere");
    put("sys/cpu,cpuacct/docker/cpu.cfs_quota_us", "50000\n");
    expect_quota(0.5, "v1 ancestor");
    put("sys/cpu,cpuacct/docker/abc/cpu.cfs_period_us", "garbage\n");
    expect_quota(0.5, "v1 leaf with a malformed period");
    remove_root();

    /* "cpu" alone, as a v1 mount of its own; the period file missing */
    make_root();
    put("cgroup", "3:cpu:/a\n");
    put("sys/cpu/a/cpu.cfs_quota_us", "250000\n");
    put("sys/cpu/a/cpu.cfs_period_us", "100000\n");
    expect_quota(2.5, "v1 cpu mount");
    put("cgroup", "3:cpuacct,cpu:/a\n"); /* found through the "cpu" name */
    expect_quota(2.5, "v1 controllers in another order");
    put("cgroup", "3:cpuacct:/a\n");
    expect_quota(0, "v1 without the cpu controller");
    put("cgroup", "3:cpu:/a\n");
    drop("sys/cpu/a/cpu.cfs_period_us");
    expect_quota(0, "v1 period missing");
    remove_root();

    /* A container without a cgroup namespace: the list shows the host's
     * path, the mount starts at the container's own cgroup. */
    make_root();
    put("cgroup", "4:cpu,cpuacct:/docker/0123abcd\n");
    put("sys/cpu,cpuacct/cpu.cfs_quota_us", "200000\n");
    put("sys/cpu,cpuacct/cpu.cfs_period_us", "100000\n");
    expect_quota(2.0, "v1 mount rooted at the container's cgroup");
    remove_root();
}

static void hybrid(void)
{
    /* cgroup v1 and v2 mounted together: the quota is where the cpu
     * controller is, and a v2 tree without cpu.max changes nothing */
    make_root();
    put("cgroup", "4:cpu,cpuacct:/svc\n0::/svc\n");
    put_dir("sys/unified/svc");
    put("sys/cpu,cpuacct/svc/cpu.cfs_quota_us", "120000\n");
    put("sys/cpu,cpuacct/svc/cpu.cfs_period_us", "100000\n");
    expect_quota(1.2, "v1 quota next to a v2 line");
    put("sys/svc/cpu.max", "60000 100000\n");
    expect_quota(0.6, "the tighter of v1 and v2");
    remove_root();
}

static void on_alarm(int sig)
{
    (void)sig;
    static const char msg[] = "FAIL: timed out (a FIFO or endless file was read)\n";
    ssize_t n = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)n;
    _exit(1);
}

static void hostile_files(void)
{
    signal(SIGALRM, on_alarm);
    alarm(20);
    make_root();
    char path[PATH_MAX], list[PATH_MAX];
    put("cgroup", "0::/a\n");
    put_dir("sys/a");
    /* a FIFO would block an ordinary open or read */
    FORMAT_PATH(path, "%s/sys/a/cpu.max", root);
    CHECK(mkfifo(path, 0644) == 0);
    expect_quota(0, "cpu.max is a FIFO");
    /* a directory where a file should be */
    CHECK(unlink(path) == 0);
    CHECK(mkdir(path, 0755) == 0);
    expect_quota(0, "cpu.max is a directory");
    CHECK(rmdir(path) == 0);
    /* a file longer than any value */
    char big[4096];
    memset(big, '1', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    put("sys/a/cpu.max", big);
    expect_quota(0, "cpu.max too long");
    /* a list longer than the bound, and one that never ends */
    char *huge = malloc(200 * 1024);
    CHECK(huge);
    memset(huge, 'x', 200 * 1024 - 1);
    huge[200 * 1024 - 1] = '\0';
    put("cgroup", huge);
    expect_quota(0, "list too long");
    free(huge);
    FORMAT_PATH(list, "%s/sys", root);
    piocp_cpu_info info;
    piocp_cpu_info_read(&info, list, "/dev/zero");
    CHECK(info.quota_cpus == 0 && info.usable >= 1);
    /* a path longer than PATH_MAX */
    char *deep = malloc(2 * PATH_MAX);
    CHECK(deep);
    strcpy(deep, "0::");
    for (size_t i = 3; i < 2 * PATH_MAX - 4; i += 2)
        memcpy(deep + i, "/a", 2);
    deep[2 * PATH_MAX - 4] = '\0';
    put("cgroup", deep);
    expect_quota(0, "a path beyond PATH_MAX");
    free(deep);
    alarm(0);
    remove_root();
}

static void the_real_machine(void)
{
    piocp_cpu_info info;
    piocp_cpu_info_read(&info, NULL, NULL);
    printf("online %d affinity %d quota %g usable %d\n", info.online, info.affinity,
           info.quota_cpus, info.usable);
    CHECK(info.online >= 1);
    CHECK(info.affinity == affinity_count());
    CHECK(info.quota_cpus >= 0);
    CHECK(info.usable >= 1 && info.usable <= info.affinity);
    if (info.quota_cpus == 0)
        CHECK(info.usable == info.affinity);
    else
        CHECK(info.usable == (int)fmin(info.affinity, ceil(info.quota_cpus)));
    int twice = 2 * info.usable;
    CHECK(piocp_default_threads() == (twice < PIOCP_MAX_THREADS ? twice : PIOCP_MAX_THREADS));
}

static void one_cpu_affinity(void)
{
    /* as `taskset -c <cpu>` would start the process */
    cpu_set_t *set = CPU_ALLOC(1 << 16);
    size_t size = CPU_ALLOC_SIZE(1 << 16);
    CHECK(set && sched_getaffinity(0, size, set) == 0);
    int cpu = 0;
    while (!CPU_ISSET_S(cpu, size, set))
        cpu++;
    CPU_ZERO_S(size, set);
    CPU_SET_S(cpu, size, set);
    CHECK(sched_setaffinity(0, size, set) == 0);
    CPU_FREE(set);
    piocp_cpu_info info;
    piocp_cpu_info_read(&info, NULL, NULL);
    CHECK(info.affinity == 1 && info.usable == 1);
    CHECK(piocp_default_threads() == 2);
    /* the engine's pool follows */
    piocp_engine *engine;
    CHECK(piocp_engine_new(&engine, NULL) == 0);
    CHECK(piocp_engine_threads(engine) == 2);
    piocp_engine_free(engine);
}

static const test_case cases[] = {
    {"v2_leaf", v2_leaf},
    {"v2_ancestor", v2_ancestor},
    {"v2_tightest", v2_tightest},
    {"v2_no_limit", v2_no_limit},
    {"malformed", malformed},
    {"missing_files", missing_files},
    {"v1_layout", v1_layout},
    {"hybrid", hybrid},
    {"hostile_files", hostile_files},
    {"the_real_machine", the_real_machine},
    {"one_cpu_affinity", one_cpu_affinity},
    {NULL, NULL},
};

int main(int argc, char **argv)
{
    return run_test_case(cases, argc > 1 ? argv[1] : "list");
}
