"""Micro-benchmarks of the pyiocp binding (pytest-benchmark).

    pytest benchmarks/ --benchmark-only

Not part of the normal test suite.  Each benchmark drives an echo server in a
child process (benchmarks/servers/pyiocp_echo.py: a Python Handler whose
data_received sends the data back and posts the next recv) from blocking
Python sockets in this process:

  test_roundtrip_64            one 64-byte round trip: one recv completion
                               dispatched to Python, one conn.send posted
                               from Python, and their trip through the engine.
  test_pipelined_1000_stream   1000 pipelined 64-byte messages on one
                               connection per round (time / 1000 = cost per
                               message).  TCP coalesces them, so the server
                               sees far fewer than 1000 recv completions: this
                               is the streaming cost per message, not per
                               completion.
  test_completions_1000        1000 completions per round that cannot be
                               coalesced: 100 connections x 10 waves, each
                               connection with exactly one 64-byte message in
                               flight per wave (time / 1000 = cost per
                               dispatched completion, with the batching the
                               engine does when many are ready at once).

The same benchmarks run against asyncio and uvloop echo servers
(benchmarks/servers/asyncio_echo.py) for scale; uvloop's are skipped, with
the reason shown, when uvloop is not installed.  pyiocp itself must be
importable: this module fails at import otherwise.

Placement (PYIOCP_BENCH_PIN): "same" (default) pins the server and this
process to CPU 0, so a round trip costs the CPU work of both sides plus two
context switches; "split" pins the server to CPU 0 and this process to the
other CPUs, which on a virtual machine mostly adds the latency of waking an
idle vCPU (about 30-90 us per round trip on the 2-vCPU KVM guest this was
written on, against about 25 us on one CPU); "none" leaves placement to the
kernel.  PYIOCP_BENCH_THREADS sets the pyiocp server's worker threads
(default 1).
"""
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import pyiocp  # noqa: F401  (no pyiocp, no benchmarks: fail here, loudly)

HERE = os.path.dirname(os.path.abspath(__file__))
SERVERS = os.path.join(HERE, "servers")
HOST = "127.0.0.1"
MSG = b"0123456789abcdef" * 4  # 64 bytes
assert len(MSG) == 64
PIPELINED = 1000
CONNS = 100
WAVES = 10
THREADS = int(os.environ.get("PYIOCP_BENCH_THREADS", "1"))
PIN = os.environ.get("PYIOCP_BENCH_PIN", "same")
if PIN not in ("same", "split", "none"):
    raise ValueError(f"PYIOCP_BENCH_PIN must be same, split or none, not {PIN!r}")


def _free_port():
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _child_env():
    env = dict(os.environ)
    # The child must import the very pyiocp this process imported.
    pkg_parent = os.path.dirname(os.path.dirname(os.path.abspath(pyiocp.__file__)))
    env["PYTHONPATH"] = pkg_parent + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    return env


def _server_argv(kind, port):
    if kind == "pyiocp":
        return [sys.executable, os.path.join(SERVERS, "pyiocp_echo.py"), "--host", HOST,
                "--port", str(port), "--threads", str(THREADS), "--quiet"]
    argv = [sys.executable, os.path.join(SERVERS, "asyncio_echo.py"), "--host", HOST,
            "--port", str(port), "--quiet"]
    if kind == "uvloop":
        argv.append("--uvloop")
    return argv


def _recv_exact(sock, view):
    n = len(view)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            raise ConnectionError(f"server closed the connection after {got} of {n} bytes")
        got += k


def _connect(port):
    s = socket.create_connection((HOST, port), timeout=10)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    return s


@pytest.fixture(scope="module", params=["pyiocp", "asyncio", "uvloop"])
def echo_server(request):
    kind = request.param
    if kind == "uvloop" and importlib.util.find_spec("uvloop") is None:
        pytest.skip("uvloop is not installed (pip install uvloop): uvloop baseline not run")
    port = _free_port()
    argv = _server_argv(kind, port)
    ncpu = os.cpu_count() or 1
    old_affinity = os.sched_getaffinity(0)
    pin = PIN if ncpu >= 2 or PIN == "none" else "same"
    if pin != "none":
        argv = ["taskset", "-c", "0"] + argv
    proc = subprocess.Popen(argv, env=_child_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        if pin == "split":
            os.sched_setaffinity(0, set(range(1, ncpu)))
        elif pin == "same":
            os.sched_setaffinity(0, {0})
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                out = proc.stdout.read().decode(errors="replace")
                pytest.fail(f"{kind} echo server exited with status {proc.returncode}:\n{out}")
            try:
                socket.create_connection((HOST, port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"{kind} echo server did not listen on {HOST}:{port} within 20 s")
                time.sleep(0.05)
        yield kind, port
    finally:
        os.sched_setaffinity(0, old_affinity)
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                pytest.fail(f"{kind} echo server did not exit within 10 s of SIGTERM")
        proc.stdout.close()


def _per_op(benchmark, n, key):
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        benchmark.extra_info[key] = round(stats.stats.mean / n * 1e6, 3)


def test_roundtrip_64(benchmark, echo_server):
    kind, port = echo_server
    benchmark.extra_info["placement"] = PIN
    benchmark.group = "round trip of one 64-byte message"
    sock = _connect(port)
    buf = bytearray(64)
    view = memoryview(buf)

    def roundtrip():
        sock.sendall(MSG)
        _recv_exact(sock, view)

    try:
        roundtrip()
        assert bytes(buf) == MSG
        benchmark(roundtrip)
        assert bytes(buf) == MSG
    finally:
        sock.close()
    _per_op(benchmark, 1, "us_per_roundtrip")


def test_pipelined_1000_stream(benchmark, echo_server):
    kind, port = echo_server
    benchmark.group = f"{PIPELINED} pipelined 64-byte messages, one connection"
    sock = _connect(port)
    payload = MSG * PIPELINED
    buf = bytearray(len(payload))
    view = memoryview(buf)

    def burst():
        sock.sendall(payload)
        _recv_exact(sock, view)

    try:
        burst()
        assert bytes(buf) == payload
        benchmark(burst)
        assert bytes(buf) == payload
    finally:
        sock.close()
    _per_op(benchmark, PIPELINED, "us_per_message")


def test_completions_1000(benchmark, echo_server):
    kind, port = echo_server
    benchmark.group = f"{CONNS * WAVES} completions: {CONNS} connections x {WAVES} waves of one 64-byte message"
    socks = [_connect(port) for _ in range(CONNS)]
    buf = bytearray(64)
    view = memoryview(buf)

    def waves():
        for _ in range(WAVES):
            for s in socks:
                s.sendall(MSG)
            for s in socks:
                _recv_exact(s, view)

    try:
        waves()
        assert bytes(buf) == MSG
        benchmark(waves)
        assert bytes(buf) == MSG
    finally:
        for s in socks:
            s.close()
    _per_op(benchmark, CONNS * WAVES, "us_per_completion")
