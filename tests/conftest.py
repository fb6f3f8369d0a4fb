"""Shared fixtures.  Every test that takes `backend` runs once per backend
this machine supports: a new backend only has to appear in
pyiocp.available_backends() to be tested."""
from __future__ import annotations

import gc
import os
import socket
import sysconfig
import time

import pytest

import pyiocp

BACKENDS = pyiocp.available_backends()


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "source_tree: reads the checkout beyond tests/ and examples/ (C sources and "
        "headers, pyproject.toml, benchmarks/); deselected where the installed package is "
        "tested from outside the source tree (.ci/test-installed.py)")
    if os.environ.get("PYIOCP_TEST_INSTALLED"):
        _require_installed_pyiocp()


def _require_installed_pyiocp():
    """Under .ci/test-installed.py the suite must test the installed
    package: a pyiocp imported from anywhere but this interpreter's
    site-packages (a checkout on sys.path) stops the run."""
    package = os.path.dirname(os.path.realpath(pyiocp.__file__))
    site = {os.path.realpath(sysconfig.get_paths()[key]) for key in ("purelib", "platlib")}
    if os.path.dirname(package) not in site:
        raise pytest.UsageError(f"pyiocp was imported from {package}, not from the installed "
                                f"package in {' or '.join(sorted(site))}")


def pytest_report_header(config):
    return (f"pyiocp {pyiocp.__version__} from {os.path.dirname(pyiocp.__file__)}; "
            f"backends under test: {', '.join(BACKENDS)}")


@pytest.fixture(params=BACKENDS)
def backend(request):
    return request.param


@pytest.fixture(params=["asyncio", "uvloop"])
def loop_kind(request):
    """The event loop a pyiocp.aio test runs on (aio_helpers.run)."""
    return request.param


@pytest.fixture(scope="module")
def uvloop_globals():
    """libuv makes a process-wide signal pipe with its first loop and keeps
    it: the pyiocp.aio tests make it before any test counts descriptors."""
    import uvloop

    async def nothing():
        pass
    uvloop.run(nothing())


def open_fds() -> set:
    return set(os.listdir("/proc/self/fd"))


@pytest.fixture
def no_fd_leak():
    """Fails the test if it leaves descriptors open (sockets, files, the
    engine's own)."""
    gc.collect()
    before = open_fds()
    yield
    gc.collect()
    deadline = time.monotonic() + 2.0
    while True:
        leaked = open_fds() - before
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
        gc.collect()
    details = {fd: _describe(fd) for fd in leaked}
    assert not leaked, f"descriptors leaked: {details}"


def _describe(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"


@pytest.fixture
def make_engine(backend, no_fd_leak):
    """Engines on the backend under test, stopped and freed after the test."""
    engines = []

    def make(**options):
        options.setdefault("threads", 2)
        engine = pyiocp.Engine(backend=backend, **options)
        engines.append(engine)
        return engine

    yield make
    for engine in engines:
        engine.stop(drain_timeout=1.0)
    engines.clear()
    gc.collect()


def connect(address, timeout=10.0) -> socket.socket:
    sock = socket.create_connection(address, timeout=timeout)
    return sock


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(min(size - got, 1 << 20))
        if not chunk:
            break
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def recv_until_eof(sock: socket.socket) -> bytes:
    chunks = []
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


def tool_env() -> dict:
    """The environment for external clients (curl, wget, nc).  The sanitizer
    CI stage preloads ASan's runtime for our Python processes; uninstrumented
    tools must not get it (curl and wget hang under it)."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    return env
