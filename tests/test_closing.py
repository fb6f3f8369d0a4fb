"""How connections end: write_eof (half-close), eof_received's return value
(asyncio's rule), an orderly close reported as None even when the peer
lingers, the linger time, per-connection deadlines, and addresses."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import pyiocp
from conftest import connect, recv_exactly


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


def test_write_eof_half_closes_and_reading_goes_on(make_engine):
    got = []

    class HalfCloser(pyiocp.Handler):
        def connection_made(self, conn):
            assert conn.can_write_eof()
            conn.send(b"all of it")
            conn.write_eof()
            try:
                conn.send(b"more")
            except RuntimeError as exc:
                got.append(str(exc))
            conn.recv()

        def data_received(self, conn, data):
            got.append(data)
            conn.recv()

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), HalfCloser)
    engine.start()
    with connect(listener.address) as sock:
        assert recv_exactly(sock, 9) == b"all of it"
        assert sock.recv(1) == b""                   # the FIN, connection still open
        sock.sendall(b"still heard")
        wait_for(lambda: b"still heard" in got)
    assert got[0] == "send() after write_eof()"


@pytest.mark.parametrize("keep", [False, True])
def test_eof_received_return_value_follows_asyncio(make_engine, keep):
    lost = threading.Event()

    class Answerer(pyiocp.Handler):
        def eof_received(self, conn):
            if keep:
                conn.send(b"late answer")        # still allowed: kept open
                conn.close()
            return keep

        def connection_lost(self, conn, exc):
            lost.set()

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Answerer)
    engine.start()
    with connect(listener.address) as sock:
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(100):
            data += chunk
    assert data == (b"late answer" if keep else b"")
    assert lost.wait(5)


def test_close_is_orderly_even_when_the_peer_lingers(make_engine):
    """The handler sends and closes; the peer reads everything but keeps
    its side open past the linger time: connection_lost(None), no reset."""
    outcome = []

    class SendAndClose(pyiocp.Handler):
        def connection_made(self, conn):
            conn.send(b"x" * 100000)
            conn.close()

        def connection_lost(self, conn, exc):
            outcome.append(exc)

    engine = make_engine(linger_timeout=0.3)
    listener = engine.listen(("127.0.0.1", 0), SendAndClose)
    engine.start()
    with connect(listener.address) as sock:
        assert recv_exactly(sock, 100000) == b"x" * 100000
        wait_for(lambda: outcome, timeout=5)        # the linger ran out, we never closed
        assert sock.recv(1) == b""                  # a FIN, not a reset
    assert outcome == [None]


def test_linger_timeout_is_validated():
    with pytest.raises(ValueError):
        pyiocp.Engine(linger_timeout=0)
    with pytest.raises(TypeError):
        pyiocp.Engine(linger_timeout="5")


@pytest.mark.parametrize("graceful", [True, False])
def test_set_deadline(make_engine, graceful):
    outcome = []

    class Deadline(pyiocp.Handler):
        def connection_made(self, conn):
            assert conn.set_deadline(0.2, graceful=graceful)
            conn.recv()

        def connection_lost(self, conn, exc):
            outcome.append(exc)

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Deadline)
    engine.start()
    with connect(listener.address) as sock:
        sock.settimeout(5)
        if graceful:
            assert sock.recv(1) == b""
        else:
            with pytest.raises(ConnectionResetError):
                sock.recv(1)
    wait_for(lambda: outcome)
    if graceful:
        assert outcome == [None]
    else:
        assert isinstance(outcome[0], TimeoutError)


def test_addresses_and_extra_info(make_engine):
    seen = {}

    class Probe(pyiocp.Handler):
        def connection_made(self, conn):
            seen["sockname"] = conn.sockname
            seen["peername"] = conn.get_extra_info("peername")
            seen["extra sockname"] = conn.get_extra_info("sockname")
            seen["other"] = conn.get_extra_info("cipher", "none")
            conn.close()

        def connection_lost(self, conn, exc):
            seen["after"] = conn.get_extra_info("sockname", "gone")

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Probe)
    engine.start()
    with connect(listener.address) as sock:
        assert sock.recv(1) == b""
        client_address = sock.getsockname()
    wait_for(lambda: "after" in seen)
    assert seen["sockname"] == listener.address == seen["extra sockname"]
    assert seen["peername"] == client_address
    assert seen["other"] == "none"
    assert seen["after"] in ("gone", listener.address)


class _SendAndClose(pyiocp.Handler):
    """Sends `size` bytes and closes at once; records every callback."""
    size = 100000

    def __init__(self, events):
        self.events = events

    def connection_made(self, conn):
        self.events.append("made")
        conn.send(b"x" * self.size)
        conn.close()

    def data_received(self, conn, data):
        self.events.append("data")

    def eof_received(self, conn):
        self.events.append("eof")

    def send_done(self, conn, nbytes):
        self.events.append(("sent", nbytes))

    def stopping(self, conn):
        self.events.append("stopping")

    def connection_lost(self, conn, exc):
        self.events.append(("lost", exc))


def _check_lost_once_and_last(events, exc_type=type(None)):
    """connection_lost ran exactly once, after every other callback, and
    nothing came after it (not even once the stop has long returned)."""
    time.sleep(0.2)
    lost = [event for event in events if event[0] == "lost"]
    assert len(lost) == 1, events
    assert events[-1] is lost[0], events
    assert isinstance(lost[0][1], exc_type), events
    assert events[0] == "made", events


@pytest.mark.parametrize("threads", [1, 3])
@pytest.mark.parametrize("how", ["stop", "request_stop"])
def test_stop_while_lingering_calls_connection_lost_once(make_engine, threads, how):
    """Issue 13's first break: a handler sends and close()s, its peer reads
    everything (the FIN too) but keeps its side open, and the engine stops
    while the connection lingers, with a linger far longer than the drain
    timeout.  connection_lost(None) must run once, last, before stop (or
    run()) returns, and the stop must not wait for the linger or the drain
    timeout.  Before 22e80e1 io_uring never closed it (stop took the drain
    timeout plus 10 s, connection_lost never ran) and epoll's stop waited
    out the whole drain timeout."""
    events = []
    engine = make_engine(threads=threads, linger_timeout=60)
    listener = engine.listen(("127.0.0.1", 0), lambda: _SendAndClose(events))
    runner = None
    if how == "stop":
        engine.start()
    else:
        runner = threading.Thread(target=engine.run, kwargs={"drain_timeout": 5.0})
        runner.start()
    with connect(listener.address) as sock:
        assert recv_exactly(sock, 100000) == b"x" * 100000
        assert sock.recv(1) == b""                  # the FIN: it lingers now
        time.sleep(0.1)
        assert not [event for event in events if event[0] == "lost"]   # still lingering
        started = time.monotonic()
        if how == "stop":
            engine.stop(drain_timeout=5.0)
        else:
            engine.request_stop()
            runner.join(15)
            assert not runner.is_alive()
        elapsed = time.monotonic() - started
        assert ("lost", None) in events              # before stop / run() returned
    assert elapsed < 2.5, f"the stop took {elapsed:.2f} s with nothing to drain"
    assert ("sent", 100000) in events
    _check_lost_once_and_last(events)


@pytest.mark.parametrize("in_kernel", [True, False], ids=["sent", "unsent"])
def test_stop_with_a_big_send_the_peer_does_not_read(make_engine, in_kernel):
    """Sends then close(), the peer reads nothing.  Sent: the whole answer
    fits in the kernel's buffers (send_done has run), so the connection
    lingers; the stop closes it in order at once and the peer still reads
    every byte, then the FIN.  Unsent: 32 MiB cannot leave; the stop waits
    out its drain timeout, then resets it.  Either way connection_lost runs
    once, last, with None (a reset the engine chose, like asyncio's
    abort(), is no error of the connection's)."""
    size = 256 * 1024 if in_kernel else 32 << 20
    drain = 5.0 if in_kernel else 0.5
    events = []

    class Big(_SendAndClose):
        pass
    Big.size = size

    engine = make_engine(linger_timeout=60)
    listener = engine.listen(("127.0.0.1", 0), lambda: Big(events))
    engine.start()
    sock = socket.socket()
    try:
        if not in_kernel:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect(listener.address)
        if in_kernel:
            wait_for(lambda: ("sent", size) in events, timeout=5)
        else:
            wait_for(lambda: events, timeout=5)
        time.sleep(0.2)
        started = time.monotonic()
        engine.stop(drain_timeout=drain)
        elapsed = time.monotonic() - started
        assert ("lost", None) in events
        if in_kernel:
            assert recv_exactly(sock, size + 1) == b"x" * size   # all of it, then the FIN
        else:
            assert ("sent", size) not in events
            received = 0
            try:
                while chunk := sock.recv(1 << 20):
                    received += len(chunk)
            except ConnectionResetError:
                pass
            assert received < size
    finally:
        sock.close()
    assert elapsed < drain + 2.0, f"the stop took {elapsed:.2f} s (drain timeout {drain} s)"
    if in_kernel:
        assert elapsed < 2.5
    _check_lost_once_and_last(events)


def test_sigterm_while_lingering_calls_connection_lost_once(backend, tmp_path):
    """The same lingering connection, with run() in a process's main thread
    stopped by SIGTERM: connection_lost(None) once and last, and the process
    exits well within the drain timeout."""
    script = (
        "import sys, pyiocp\n"
        "events = []\n"
        "class SendAndClose(pyiocp.Handler):\n"
        "    def connection_made(self, conn):\n"
        "        events.append('made')\n"
        "        conn.send(b'x' * 100000)\n"
        "        conn.close()\n"
        "    def send_done(self, conn, nbytes):\n"
        "        events.append('sent')\n"
        "    def connection_lost(self, conn, exc):\n"
        "        events.append('lost ' + repr(exc))\n"
        f"engine = pyiocp.Engine(threads=2, backend={backend!r}, linger_timeout=60)\n"
        "listener = engine.listen(('127.0.0.1', 0), SendAndClose)\n"
        "print(listener.address[1], flush=True)\n"
        "engine.run(drain_timeout=5)\n"
        "print(' '.join(e.replace(' ', '_') for e in events), flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(pyiocp.__file__)))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path, env=env)
    try:
        port = int(proc.stdout.readline())
        with connect(("127.0.0.1", port)) as sock:
            assert recv_exactly(sock, 100000) == b"x" * 100000
            assert sock.recv(1) == b""              # lingering now
            time.sleep(0.1)
            started = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=15)
            elapsed = time.monotonic() - started
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out.split() == [b"made", b"sent", b"lost_None"]
    assert elapsed < 3.0, f"SIGTERM took {elapsed:.2f} s to stop a lingering connection"
