"""Connections no worker ever served: made on an engine that was never
started (or left open by a stop that gave up on them, which the fault
sweep found under io_uring with no SQE to cancel their requests).  The
engine closes them as it is freed; their handlers must still hear of it,
once, and nothing of the binding may be left (a fault build counts its
allocations)."""
from __future__ import annotations

import gc
import socket

import pyiocp
from pyiocp import _core


class Logged(pyiocp.Handler):
    def __init__(self):
        self.events = []

    def connection_made(self, conn):
        self.events.append("made")

    def connection_failed(self, exc):
        self.events.append(("failed", type(exc)))

    def connection_lost(self, conn, exc):
        self.events.append(("lost", exc))


def allocations():
    """The live allocations (a fault build): after a collection, so that
    an engine an earlier test dropped is not freed in the middle."""
    gc.collect()
    return _core._fault_allocs() if _core._FAULT_INJECTION else None


def test_adopted_on_an_engine_never_started(backend):
    before = allocations()
    ours, theirs = socket.socketpair()
    engine = pyiocp.Engine(threads=1, backend=backend)
    handler = engine.adopt(ours, Logged)
    engine.stop()
    del engine
    gc.collect()
    theirs.close()
    assert handler.events == ["made", ("lost", None)]
    assert allocations() == before


def test_connecting_on_an_engine_never_started(backend):
    before = allocations()
    with socket.create_server(("127.0.0.1", 0)) as listening:
        engine = pyiocp.Engine(threads=1, backend=backend)
        handler = engine.connect(listening.getsockname(), Logged)
        engine.stop()
    del engine
    gc.collect()
    assert handler.events == [("failed", OSError)]
    assert allocations() == before
