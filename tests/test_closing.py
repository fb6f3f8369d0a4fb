"""How connections end: write_eof (half-close), eof_received's return value
(asyncio's rule), an orderly close reported as None even when the peer
lingers, the linger time, per-connection deadlines, and addresses."""
from __future__ import annotations

import socket
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
