"""auto prefers io_uring and falls back to epoll, for real: the server runs
in a child process whose io_uring_setup(2) a seccomp filter refuses with
EPERM, as Docker's default profile does."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

import pyiocp
from conftest import connect, recv_until_eof

HERE = os.path.dirname(os.path.abspath(__file__))
DENY = os.path.join(HERE, "deny_io_uring.py")
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(pyiocp.__file__)))


def under_filter(*args, **kwargs):
    env = dict(os.environ, PYTHONPATH=PACKAGE_PARENT)
    return subprocess.Popen([sys.executable, DENY, "-m", "pyiocp", *args], cwd=PACKAGE_PARENT,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_auto_prefers_io_uring_where_the_kernel_allows_it():
    backends = pyiocp.available_backends()
    assert "epoll" in backends
    if "io_uring" not in backends:
        pytest.fail("this kernel refuses io_uring: the suite expects it here "
                    f"({pyiocp._core.describe_backend('io_uring')})")
    assert backends[0] == "io_uring"
    engine = pyiocp.Engine(threads=1)
    assert engine.backend == "io_uring"
    engine.stop()


def test_seccomp_denied_io_uring_serves_over_epoll_and_says_why(tmp_path):
    (tmp_path / "f.txt").write_bytes(b"served over the fallback\n")
    proc = under_filter("serve", str(tmp_path), "--port", "0", "--protocol", "raw", "--quiet")
    try:
        line = proc.stdout.readline().decode()
        assert "(backend epoll," in line, line
        port = int(line.split(" on ")[1].split(" ")[0].rsplit(":", 1)[1])
        with connect(("127.0.0.1", port)) as sock:
            sock.sendall(b"f.txt\n")
            sock.shutdown(1)
            assert recv_until_eof(sock) == b"served over the fallback\n"
        proc.terminate()
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0
    assert "using the epoll backend (io_uring refused: Operation not permitted)" in err.decode()


def test_seccomp_denied_io_uring_explicit_backend_fails_clearly(tmp_path):
    proc = under_filter("serve", str(tmp_path), "--port", "0", "--backend", "io_uring")
    out, err = proc.communicate(timeout=10)
    assert proc.returncode == 1
    assert "backend 'io_uring' is not available: Operation not permitted" in err.decode()


def test_info_reports_the_probe_under_seccomp():
    proc = under_filter("info")
    out, err = proc.communicate(timeout=10)
    text = out.decode()
    assert proc.returncode == 0, err
    assert "auto picks: epoll" in text
    assert "io_uring: unavailable (EPERM" in text
