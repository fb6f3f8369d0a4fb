"""The binding where an allocation fails (a fault build's points; see
tests/fault/sweep.py for the sweep): a call whose work was done must not
then raise MemoryError, and where nothing can raise (a stop, a helper
thread) the handler is still told.  Each test failed before its fix."""
from __future__ import annotations

import errno
import logging
import socket
import threading

import pytest

import pyiocp
from pyiocp import _core

pytestmark = pytest.mark.skipif(not _core._FAULT_INJECTION,
                                reason="needs the fault build (PYIOCP_FAULT_INJECTION=1)")


class Recorder(pyiocp.Handler):
    def __init__(self):
        self.made = threading.Event()
        self.lost = threading.Event()
        self.failed = []
        self.stopped = 0

    def connection_made(self, conn):
        self.made.set()
        conn.recv()

    def stopping(self, conn):
        self.stopped += 1

    def connection_failed(self, exc):
        self.failed.append(exc)
        self.lost.set()

    def connection_lost(self, conn, exc):
        self.lost.set()


@pytest.fixture
def armed():
    """Arms a point for the test; disarms it whatever happens."""
    yield lambda point, nth=1: _core._fault_arm(point, nth, errno.ENOMEM)
    _core._fault_disarm()


def test_adopt_does_not_raise_once_the_connection_is_taken_over(backend, armed):
    """adopt() used to post its wake-up with a call request it allocated
    after handing the socket to the engine: MemoryError then reached the
    caller of a connection that was served anyway."""
    ours, theirs = socket.socketpair()
    with pyiocp.Engine(threads=1, backend=backend) as engine:
        armed("py_call")
        handler = engine.adopt(ours, Recorder)
        assert handler.made.wait(5)
        theirs.close()
        assert handler.lost.wait(5)


def test_stopping_hooks_run_without_memory_for_a_posted_call(backend, armed, caplog):
    """stop() posted the stopping hooks' call with an allocated request: a
    failed allocation logged an internal error and skipped them."""
    engine = pyiocp.Engine(threads=1, backend=backend)
    handlers = []
    listener = engine.listen(("127.0.0.1", 0), lambda: handlers.append(Recorder()) or handlers[-1])
    engine.start()
    client = socket.create_connection(listener.address)
    try:
        client.sendall(b"x")
        while not handlers or not handlers[0].made.wait(0.05):
            pass
        armed("py_call")
        with caplog.at_level(logging.ERROR, logger="pyiocp"):
            engine.stop(1.0)
        assert not [r for r in caplog.records if "internal error" in r.getMessage()]
        assert handlers[0].stopped == 1
        assert handlers[0].lost.is_set()
    finally:
        client.close()


def test_a_failed_name_lookup_is_told_without_memory_for_a_posted_call(backend, armed):
    """connect() by name reports its failure from a helper thread through a
    posted call; without memory for it the MemoryError ended the thread and
    the handler never heard."""
    with pyiocp.Engine(threads=1, backend=backend) as engine:
        armed("py_call")
        # the deadline has passed once the name is resolved: TimeoutError
        handler = engine.connect(("localhost", 9), Recorder, timeout=1e-9)
        assert handler.lost.wait(10)
        assert len(handler.failed) == 1 and isinstance(handler.failed[0], TimeoutError)
