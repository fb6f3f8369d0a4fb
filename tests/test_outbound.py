"""Engine.connect (outbound connections through the engine) and
Engine.adopt (connected sockets made elsewhere)."""
from __future__ import annotations

import socket
import threading
import time

import pytest

import pyiocp
from conftest import open_fds


class Recorder(pyiocp.Handler):
    """Says hello once connected, records what comes back."""

    def __init__(self):
        self.events = []
        self.done = threading.Event()
        self.thread = None

    def connection_made(self, conn):
        self.thread = threading.get_ident()
        self.events.append(("made", conn.peername, conn.sockname))
        conn.send(b"hello")
        conn.recv()

    def data_received(self, conn, data):
        self.events.append(("data", data))
        conn.close()

    def connection_failed(self, exc):
        self.events.append(("failed", type(exc)))
        self.done.set()

    def connection_lost(self, conn, exc):
        self.events.append(("lost", exc))
        self.done.set()


@pytest.fixture
def echo_server():
    """A plain blocking echo server in a thread: one answer per connection."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                client, _ = server.accept()
            except socket.timeout:
                continue
            with client:
                client.settimeout(5)
                data = client.recv(100)
                client.sendall(data.upper())
                client.recv(100)              # until the engine closes

    thread = threading.Thread(target=serve)
    thread.start()
    yield server.getsockname()
    stop.set()
    thread.join()
    server.close()


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_connect_then_talk(make_engine, echo_server, host):
    engine = make_engine()
    engine.start()
    handler = engine.connect((host, echo_server[1]), Recorder, timeout=5)
    assert isinstance(handler, Recorder)
    assert handler.done.wait(10)
    kind, peer, sock = handler.events[0]
    assert kind == "made" and peer[1] == echo_server[1] and sock[0] in ("127.0.0.1", "::1")
    assert handler.events[1:] == [("data", b"HELLO"), ("lost", None)]
    assert handler.thread != threading.get_ident()      # on a worker


def test_connect_refused_reports_the_error(make_engine):
    with socket.socket() as probe:                      # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = make_engine()
    engine.start()
    handlers = [engine.connect(("127.0.0.1", port), Recorder) for _ in range(5)]
    for handler in handlers:
        assert handler.done.wait(10)
        assert handler.events == [("failed", ConnectionRefusedError)]
    assert engine.connections == 0


def test_connect_timeout(make_engine):
    """A listener whose accept queue is full drops the SYN: the connect
    never completes, the timeout ends it with TimeoutError."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = []
    try:
        for _ in range(4):                              # fill the queue
            filler = socket.socket()
            filler.setblocking(False)
            try:
                filler.connect(server.getsockname())
            except BlockingIOError:
                pass
            fillers.append(filler)
        time.sleep(0.2)
        engine = make_engine()
        engine.start()
        start = time.monotonic()
        handler = engine.connect(server.getsockname(), Recorder, timeout=0.5)
        assert handler.done.wait(10)
        assert handler.events == [("failed", TimeoutError)]
        assert 0.45 <= time.monotonic() - start < 5
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def test_connect_errors(make_engine):
    engine = make_engine()
    engine.start()
    with pytest.raises(TypeError):
        engine.connect("127.0.0.1:80", Recorder)
    with pytest.raises(ValueError):
        engine.connect(("127.0.0.1", 0), Recorder)
    with pytest.raises(ValueError):
        engine.connect(("127.0.0.1", 1), Recorder, timeout=-1)
    handler = engine.connect(("no-such-host.invalid", 80), Recorder, timeout=5)
    assert handler.done.wait(10)
    assert handler.events[0][0] == "failed" and issubclass(handler.events[0][1], OSError)
    engine.stop()
    with pytest.raises(RuntimeError):
        engine.connect(("127.0.0.1", 80), Recorder)


def test_stop_while_connecting_fails_the_connect_once(make_engine):
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    fillers = [socket.socket() for _ in range(4)]
    try:
        for filler in fillers:
            filler.setblocking(False)
            try:
                filler.connect(server.getsockname())
            except BlockingIOError:
                pass
        time.sleep(0.2)
        engine = make_engine()
        engine.start()
        handler = engine.connect(server.getsockname(), Recorder)
        time.sleep(0.1)
        engine.stop(drain_timeout=0.5)
        assert handler.done.wait(5)
        assert handler.events == [("failed", OSError)]   # ECANCELED, exactly once
    finally:
        for filler in fillers:
            filler.close()
        server.close()


def test_adopt_a_socketpair(make_engine):
    class Echo(pyiocp.Handler):
        def data_received(self, conn, data):
            conn.send(data[::-1])
            conn.recv()

    engine = make_engine()
    engine.start()
    ours, theirs = socket.socketpair()
    with theirs:
        handler = engine.adopt(ours, Echo)
        assert isinstance(handler, Echo)
        assert ours.fileno() == -1                      # the engine owns it now
        theirs.settimeout(5)
        theirs.sendall(b"abc")
        assert theirs.recv(10) == b"cba"
    deadline = time.monotonic() + 5
    while engine.connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert engine.connections == 0


def test_adopt_refuses_what_it_cannot_serve(make_engine):
    engine = make_engine()
    before = len(open_fds())
    with pytest.raises(TypeError):
        engine.adopt(3, pyiocp.Handler)
    with socket.socket() as unconnected:
        with pytest.raises(ValueError, match="not connected"):
            engine.adopt(unconnected, pyiocp.Handler)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as datagram:
        with pytest.raises(ValueError, match="stream"):
            engine.adopt(datagram, pyiocp.Handler)
    assert len(open_fds()) == before
