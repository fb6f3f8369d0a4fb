"""Connection and Engine methods from any thread, at any time: nothing a
Python program does through the API may crash the interpreter, reach a
connection other than the one it names, or change bytes already sent."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time

import pytest

import pyiocp
from conftest import connect, recv_exactly

HERE = os.path.dirname(os.path.abspath(__file__))


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


def test_thread_pool_posting_while_clients_come_go_and_reset(backend):
    """tests/stress/any_thread.py: a handler that answers from a thread pool
    (send, mutate the buffer, recv, close, abort, poke closed connections)
    while clients connect, talk and leave with resets, then a stop while the
    pool still posts.  In a subprocess: a crash fails this test, not pytest.
    Before generation-safe posting this died with SIGSEGV in most runs."""
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(pyiocp.__file__)))
    for _ in range(2):
        proc = subprocess.run([sys.executable, os.path.join(HERE, "stress", "any_thread.py"),
                               backend, "2"], capture_output=True, env=env, timeout=120)
        assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-3000:])
        counts = json.loads(proc.stdout.decode().splitlines()[-1])
        assert counts["corrupt"] == 0 and counts["echoes"] > 0, counts


@pytest.mark.parametrize("size", [10, 16384, 16385, 1 << 20])
def test_a_buffer_changed_after_send_changes_nothing_sent(make_engine, size):
    """The same at every size: the bytes as they were at the call."""
    original = bytes(range(256)) * (size // 256) + bytes(size % 256)

    class Sender(pyiocp.Handler):
        def connection_made(self, conn):
            buffer = bytearray(original)
            conn.send(buffer)
            buffer[:] = b"\xff" * size          # while the send may still be queued
            view = memoryview(bytearray(original))
            conn.send(view)
            view[:] = b"\xee" * size

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Sender)
    engine.start()
    with connect(listener.address) as sock:
        assert recv_exactly(sock, 2 * size) == original * 2


def test_a_closed_connection_never_reaches_the_one_in_its_slot(make_engine):
    """After connection_lost, every post on the old object returns False,
    from any thread, and its close/abort do nothing, even once a new
    connection has taken over its pool slot."""
    made, lost = [], threading.Event()

    class Keep(pyiocp.Handler):
        def connection_made(self, conn):
            made.append(conn)
            conn.recv()

        def connection_lost(self, conn, exc):
            lost.set()

    engine = make_engine(max_connections=1)     # one slot: the next one reuses it
    listener = engine.listen(("127.0.0.1", 0), Keep)
    engine.start()
    first = connect(listener.address)
    wait_for(lambda: len(made) == 1)
    first.close()
    assert lost.wait(5)
    old = made[0]
    assert old.closed
    with connect(listener.address) as second:
        wait_for(lambda: len(made) == 2)
        results = []

        def poke():
            results.extend([old.send(b"not for you"), old.recv(),
                            old.transmit_file(__file__)])
            old.close()
            old.abort()

        thread = threading.Thread(target=poke)
        thread.start()
        thread.join()
        assert results == [False, False, False]
        assert made[1].send(b"yours") is True
        assert recv_exactly(second, 5) == b"yours"
        second.settimeout(0.2)
        with pytest.raises(socket.timeout):
            second.recv(1)                       # nothing else arrived
        assert not made[1].closed


def test_stop_from_another_thread_while_run_polls(backend, no_fd_leak):
    """run() is polling its wake-up pipe: a stop() from another thread stops
    the engine, run() returns without an error, and the pipe is closed once."""
    engine = pyiocp.Engine(backend=backend, threads=2)
    listener = engine.listen(("127.0.0.1", 0), pyiocp.Handler)
    errors = []

    def serve():
        try:
            engine.run()
        except BaseException as exc:             # pragma: no cover - the failure
            errors.append(exc)

    thread = threading.Thread(target=serve)
    thread.start()
    wait_for(lambda: engine.started)
    with connect(listener.address):
        engine.stop()
    thread.join(10)
    assert not thread.is_alive() and errors == []
    with pytest.raises(RuntimeError):
        engine.run()                             # stopped: make a new one


@pytest.mark.parametrize("how", ["stop", "request_stop"])
def test_a_handler_stops_an_engine_started_with_start(backend, no_fd_leak, how):
    stopped_from = []

    class Stopper(pyiocp.Handler):
        def data_received(self, conn, data):
            stopped_from.append(threading.get_ident())
            getattr(conn.engine, how)()

    engine = pyiocp.Engine(backend=backend, threads=2)
    listener = engine.listen(("127.0.0.1", 0), Stopper)
    address = listener.address
    engine.start()
    with connect(address) as sock:
        sock.sendall(b"stop")
        sock.settimeout(10)
        assert sock.recv(1) == b""               # closed by the stop
    wait_for(lambda: _refused(address))
    engine.stop()                                # waits for the stopping thread; no-op after
    assert stopped_from


def _refused(address):
    try:
        socket.create_connection(address, timeout=1).close()
    except ConnectionRefusedError:
        return True
    return False


def test_stopping_hook_lets_handlers_finish(make_engine):
    """Handler.stopping runs once per open connection when stop() begins,
    before the pending recv is cancelled: a last message goes out, then the
    orderly close."""
    calls = []
    made = []

    class Polite(pyiocp.Handler):
        def connection_made(self, conn):
            made.append(conn)

        def stopping(self, conn):
            calls.append(threading.get_ident())
            conn.send(b"goodbye\n")
            conn.close()

        def connection_lost(self, conn, exc):
            calls.append(exc)

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Polite)
    engine.start()
    clients = [connect(listener.address) for _ in range(3)]
    # connection_made has run for each (engine.connections counts them
    # already when C has accepted them, before Python heard of them)
    wait_for(lambda: len(made) == 3)
    engine.stop(drain_timeout=2.0)
    for sock in clients:
        assert recv_exactly(sock, 8) == b"goodbye\n"
        assert sock.recv(1) == b""
        sock.close()
    assert len(calls) == 6 and calls.count(None) == 3, calls
