"""The CPUs this process may use (piocp_cpu_info_read, through
_core.cpu_info): the affinity mask, and the tightest cgroup CPU quota of
the process's cgroup and its ancestors (v2 cpu.max, v1 CFS files), read
from fake trees in tmp_path; the default thread count is twice that.
Anything missing or malformed is "no limit", never an error."""
from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pyiocp
from pyiocp import _core, cli

AFFINITY = len(os.sched_getaffinity(0))
PACKAGE_PARENT = str(Path(pyiocp.__file__).resolve().parent.parent)


class Tree:
    """A fake cgroup mount (root/sys) and /proc/self/cgroup (root/cgroup)."""

    def __init__(self, root: Path):
        self.root = root

    def put(self, rel: str, content: str) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)

    def cgroup(self, content: str) -> None:
        self.put("cgroup", content)

    def read(self) -> dict:
        return _core.cpu_info(self.root / "sys", self.root / "cgroup")


@pytest.fixture
def tree(tmp_path):
    return Tree(tmp_path)


def expect(info: dict, quota) -> None:
    """`quota` found (None: no limit), and usable derived from it and the
    real affinity."""
    usable = AFFINITY if quota is None else min(AFFINITY, math.ceil(quota))
    assert info == {"online": info["online"], "affinity": AFFINITY,
                    "quota_cpus": pytest.approx(quota) if quota is not None else None,
                    "usable": usable}
    assert info["online"] >= 1


# ------------------------------------------------------------ cgroup v2 --

@pytest.mark.parametrize("content, quota", [
    ("150000 100000\n", 1.5),
    ("50000 100000\n", 0.5),           # less than a CPU: still one thread's worth
    ("200000 100000", 2.0),            # no newline, exactly 2
    ("100000 50000\n", 2.0),           # another period
    ("100000000 100000\n", 1000.0),    # more than the machine: the affinity applies
    ("max 100000\n", None),
])
def test_v2_quota_in_the_leaf(tree, content, quota):
    tree.cgroup("0::/a/b\n")
    tree.put("sys/a/b/cpu.max", content)
    expect(tree.read(), quota)


def test_v2_quota_only_in_an_ancestor(tree):
    tree.cgroup("0::/a/b/c\n")
    tree.put("sys/a/b/cpu.max", "max 100000\n")
    tree.put("sys/a/cpu.max", "75000 100000\n")
    (tree.root / "sys/a/b/c").mkdir()                 # cpu not enabled below: no file
    expect(tree.read(), 0.75)
    tree.put("sys/a/b/c/cpu.max", "max 100000\n")
    expect(tree.read(), 0.75)


def test_v2_the_tightest_level_applies(tree):
    tree.cgroup("0::/a/b\n")
    tree.put("sys/a/b/cpu.max", "400000 100000\n")
    tree.put("sys/a/cpu.max", "100000 50000\n")
    expect(tree.read(), 2.0)                           # the ancestor's
    tree.put("sys/a/b/cpu.max", "25000 20000\n")
    expect(tree.read(), 1.25)                          # the leaf's
    tree.put("sys/cpu.max", "60000 100000\n")          # the mount's root counts too
    expect(tree.read(), 0.6)


def test_v2_no_limit_anywhere(tree):
    tree.cgroup("0::/a\n")
    tree.put("sys/a/cpu.max", "max 100000\n")
    expect(tree.read(), None)
    tree.cgroup("0::/\n")
    expect(tree.read(), None)


@pytest.mark.parametrize("content", [
    "", "\n", "max", "abc 100000\n", "150000\n", "150000 0\n", "0 100000\n", "-5 100000\n",
    " 150000 100000\n", "150000  100000\n", "150000\t100000\n", "150000 100000 7\n",
    "150000 100000\n\n", "1.5 1\n", "0x10 100000\n", "9" * 30 + " 100000\n",
    "150000 " + "9" * 30 + "\n", "150000 100000\nmax 100000\n", "1" * 4000,
    "\x00150000 100000\n", "150000 100000\x00\n",
])
def test_malformed_cpu_max_is_no_limit(tree, content):
    tree.cgroup("0::/a\n")
    tree.put("sys/a/cpu.max", content)
    expect(tree.read(), None)


def test_bad_lines_in_the_list_are_skipped(tree):
    tree.put("sys/a/cpu.max", "150000 100000\n")
    tree.cgroup("garbage\n7\n:\n0:\n0::relative\n0::/a/../a\n0::/./a\n\n0::/a\n")
    expect(tree.read(), 1.5)
    tree.cgroup("0::/a/../a\n")                        # never walks out of the mount
    expect(tree.read(), None)
    tree.cgroup("0::/a")                               # no final newline
    expect(tree.read(), 1.5)
    tree.cgroup("0::/a\n\x00")                          # not text: malformed
    expect(tree.read(), None)
    tree.cgroup("x" * (200 * 1024))                    # beyond the bound
    expect(tree.read(), None)


def test_missing_files_are_no_limit(tree):
    expect(tree.read(), None)                          # neither list nor mount
    tree.cgroup("0::/a\n")
    expect(tree.read(), None)                          # no mount
    tree.put("sys/a/cpu.max", "150000 100000\n")
    tree.cgroup("0::/elsewhere/deeper\n")
    expect(tree.read(), None)
    expect(_core.cpu_info(tree.root / "sys", "/dev/zero"), None)   # endless, not regular
    os.mkfifo(tree.root / "fifo")
    expect(_core.cpu_info(tree.root / "sys", tree.root / "fifo"), None)  # would block


# ------------------------------------------------------------ cgroup v1 --

def test_v1_layout(tree):
    tree.cgroup("12:pids:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/x\n0::/x\n")
    for level in ("", "/docker", "/docker/abc"):
        tree.put(f"sys/cpu,cpuacct{level}/cpu.cfs_quota_us", "-1\n")
        tree.put(f"sys/cpu,cpuacct{level}/cpu.cfs_period_us", "100000\n")
    expect(tree.read(), None)
    tree.put("sys/cpu,cpuacct/docker/abc/cpu.cfs_quota_us", "150000\n")
    expect(tree.read(), 1.5)
    tree.put("sys/cpu,cpuacct/docker/cpu.cfs_quota_us", "50000\n")
    expect(tree.read(), 0.5)                           # the tighter ancestor
    tree.put("sys/cpu,cpuacct/docker/cpu.cfs_period_us", "garbage\n")
    expect(tree.read(), 1.5)                           # a malformed level is skipped


def test_v1_cpu_mount_and_container_root(tree):
    tree.cgroup("3:cpuacct,cpu:/a\n")                  # found through the "cpu" name
    tree.put("sys/cpu/a/cpu.cfs_quota_us", "250000\n")
    tree.put("sys/cpu/a/cpu.cfs_period_us", "100000\n")
    expect(tree.read(), 2.5)
    tree.cgroup("3:cpuacct:/a\n")                      # not the cpu controller
    expect(tree.read(), None)
    # a container without its own cgroup namespace: the list names the
    # host's path, the mount starts at the container's cgroup
    tree.cgroup("3:cpu:/docker/0123abcd\n")
    tree.put("sys/cpu/cpu.cfs_quota_us", "200000\n")
    tree.put("sys/cpu/cpu.cfs_period_us", "100000\n")
    expect(tree.read(), 2.0)


def test_hybrid_v1_and_v2(tree):
    tree.cgroup("4:cpu,cpuacct:/svc\n0::/svc\n")
    (tree.root / "sys/unified/svc").mkdir(parents=True)
    tree.put("sys/cpu,cpuacct/svc/cpu.cfs_quota_us", "120000\n")
    tree.put("sys/cpu,cpuacct/svc/cpu.cfs_period_us", "100000\n")
    expect(tree.read(), 1.2)
    tree.put("sys/svc/cpu.max", "60000 100000\n")
    expect(tree.read(), 0.6)


# --------------------------------------------------- the real process --

def test_paths_are_checked():
    with pytest.raises(ValueError, match="null"):
        _core.cpu_info("/sys/fs\0/cgroup")
    with pytest.raises(ValueError, match="null"):
        _core.cpu_info(None, b"/proc/self\0/cgroup")
    with pytest.raises(TypeError):
        _core.cpu_info(42)


def test_this_process_and_the_default_threads():
    info = pyiocp.cpu_info()
    assert info == _core.cpu_info() == _core.cpu_info("/sys/fs/cgroup", "/proc/self/cgroup")
    assert info["affinity"] == AFFINITY
    assert 1 <= info["usable"] <= AFFINITY <= info["online"]
    if info["quota_cpus"] is None:
        assert info["usable"] == AFFINITY
    else:
        assert info["usable"] == min(AFFINITY, math.ceil(info["quota_cpus"]))
    assert pyiocp.default_threads() == min(2 * info["usable"], _core.MAX_THREADS)
    assert "cpu_info" in pyiocp.__all__


def run_pinned(prefix, code):
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT)
    done = subprocess.run([*prefix, sys.executable, "-c", code], capture_output=True,
                          env=env, cwd=PACKAGE_PARENT, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout.decode()


def test_taskset_one_cpu_gives_two_threads():
    taskset = shutil.which("taskset")
    if taskset is None:
        pytest.skip("taskset is not installed")
    cpu = min(os.sched_getaffinity(0))
    out = run_pinned([taskset, "-c", str(cpu)],
                     "import pyiocp; print(pyiocp.default_threads())")
    assert out.strip() == "2"
    out = run_pinned([taskset, "-c", str(cpu)],
                     "import pyiocp; e = pyiocp.Engine(); print(e.threads, pyiocp.cpu_info()); "
                     "e.stop()")
    threads, _, rest = out.partition(" ")
    assert threads == "2" and "'affinity': 1" in rest and "'usable': 1" in rest


def test_sched_setaffinity_is_seen_at_once():
    # no taskset needed: the default follows the mask when it is read
    cpu = min(os.sched_getaffinity(0))
    out = run_pinned([], "import os, pyiocp\n"
                         f"os.sched_setaffinity(0, {{{cpu}}})\n"
                         "print(pyiocp.default_threads())")
    assert out.strip() == "2"


def test_info_describes_the_cpus():
    line = cli.describe_cpus({"online": 8, "affinity": 2, "quota_cpus": 1.5, "usable": 2}, 4)
    assert line == ("CPUs: 8 online, 2 usable by this process (affinity 2, cgroup quota 1.5) "
                    "-> default threads 4")
    line = cli.describe_cpus({"online": 4, "affinity": 0, "quota_cpus": None, "usable": 4}, 8)
    assert line == ("CPUs: 4 online, 4 usable by this process (affinity unknown, "
                    "no cgroup quota) -> default threads 8")
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT)
    done = subprocess.run([sys.executable, "-m", "pyiocp", "info"], capture_output=True,
                          env=env, cwd=PACKAGE_PARENT, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    assert cli.describe_cpus(pyiocp.cpu_info(), pyiocp.default_threads()) in \
        done.stdout.decode().splitlines()


def test_threads_help_says_what_the_default_is(capsys):
    with pytest.raises(SystemExit):
        cli.build_parser().parse_args(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert f"twice the CPUs this process may use, here {pyiocp.default_threads()}" in text
