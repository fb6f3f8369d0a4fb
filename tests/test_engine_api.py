"""The Python API: Engine, Handler callbacks, Connection operations."""
from __future__ import annotations

import errno
import hashlib
import logging
import math
import os
import signal
import subprocess
import sys
import socket
import struct
import threading
import time

import pytest

import pyiocp
from pyiocp import _core
from conftest import connect, recv_exactly, recv_until_eof


class Echo(pyiocp.Handler):
    def data_received(self, conn, data):
        conn.send(data)
        conn.recv()


class Recorder(pyiocp.Handler):
    """Records every callback, for tests that check what was called."""

    events: list = []
    lost = threading.Event()

    def connection_made(self, conn):
        self.events.append(("made", conn.peername))
        conn.recv()

    def data_received(self, conn, data):
        self.events.append(("data", data))
        conn.recv()

    def connection_lost(self, conn, exc):
        self.events.append(("lost", exc))
        self.lost.set()


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# ------------------------------------------------------------- echo --

@pytest.mark.parametrize("size", [1, 1000, 16384, 16385, 300_000])
def test_echo_round_trip(make_engine, size):
    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Echo)
    engine.start()
    payload = os.urandom(size)
    with connect(listener.address) as sock:
        sock.sendall(payload)
        assert recv_exactly(sock, size) == payload


def test_echo_many_clients_many_messages(make_engine):
    engine = make_engine(threads=4)
    listener = engine.listen(("127.0.0.1", 0), Echo)
    engine.start()
    errors = []

    def client(seed):
        try:
            with connect(listener.address) as sock:
                for i in range(100):
                    msg = struct.pack("!II", seed, i) * 50
                    sock.sendall(msg)
                    assert recv_exactly(sock, len(msg)) == msg
        except Exception as exc:  # reported below, with the seed
            errors.append((seed, exc))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert wait_for(lambda: engine.connections == 0)


def test_send_accepts_bytes_like_objects(make_engine):
    sent = []

    class Sender(pyiocp.Handler):
        def connection_made(self, conn):
            conn.send(bytearray(b"ab"))
            conn.send(memoryview(b"xxcdxx")[2:4])
            conn.send(b"e" * 20000)           # above the copy limit: buffer held
            conn.close()

        def send_done(self, conn, nbytes):
            sent.append(nbytes)

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Sender)
    engine.start()
    with connect(listener.address) as sock:
        assert recv_until_eof(sock) == b"abcd" + b"e" * 20000
    assert wait_for(lambda: len(sent) == 3)
    assert sent == [2, 2, 20000]


def test_send_rejects_non_buffers(make_engine):
    failures = []

    class Bad(pyiocp.Handler):
        def connection_made(self, conn):
            for value in ("text", 12, None):
                try:
                    conn.send(value)
                except TypeError as exc:
                    failures.append(exc)
            conn.close()

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Bad)
    engine.start()
    with connect(listener.address) as sock:
        assert recv_until_eof(sock) == b""
    assert wait_for(lambda: len(failures) == 3)


def test_second_pending_recv_is_refused(make_engine):
    outcome = []

    class Twice(pyiocp.Handler):
        def connection_made(self, conn):
            conn.recv()
            try:
                conn.recv()
            except RuntimeError as exc:
                outcome.append(str(exc))
            conn.close()

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Twice)
    engine.start()
    with connect(listener.address) as sock:
        recv_until_eof(sock)
    assert wait_for(lambda: outcome)
    assert "already pending" in outcome[0]


def test_recv_completed_but_not_yet_dispatched_is_still_pending(make_engine):
    """A recv() posted after the first one completed in C, but before its
    data_received ran, would read into the same buffer and overwrite the
    unread bytes: it must be refused like a double post.  A posted callback
    holds the dispatcher (the other workers keep completing I/O and queue
    it), so the first recv can complete while data_received cannot run.
    (On epoll another worker always completes it meanwhile; on io_uring the
    connection may sit on the held worker's ring, and the recv is then still
    pending in the engine: refused either way.)"""
    made = threading.Event()
    holding = threading.Event()
    release = threading.Event()
    received = []
    connections = []

    class Reader(pyiocp.Handler):
        def connection_made(self, conn):
            connections.append(conn)
            conn.recv()
            made.set()

        def data_received(self, conn, data):
            received.append(data)
            conn.recv()

    def hold_the_dispatcher():
        holding.set()
        release.wait(10)

    engine = make_engine(threads=2)
    listener = engine.listen(("127.0.0.1", 0), Reader)
    engine.start()
    with connect(listener.address) as sock:
        assert made.wait(5)
        engine.post(hold_the_dispatcher)
        try:
            assert holding.wait(5)
            sock.sendall(b"first")
            time.sleep(0.3)               # the recv completes; its dispatch waits
            with pytest.raises(RuntimeError, match="already pending"):
                connections[0].recv()     # from this (non-worker) thread
            sock.sendall(b"second")
            time.sleep(0.1)
        finally:
            release.set()
        # an overwritten buffer would show as b"seconsecond"
        assert wait_for(lambda: b"".join(received) == b"firstsecond"), received


# -------------------------------------------------------- callbacks --

def test_callbacks_order_and_orderly_close(make_engine):
    Recorder.events = []
    Recorder.lost = threading.Event()
    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Recorder)
    engine.start()
    with connect(listener.address) as sock:
        sock.sendall(b"hello")
        assert wait_for(lambda: ("data", b"hello") in Recorder.events)
        sock.shutdown(socket.SHUT_WR)   # EOF: default eof_received closes
        assert recv_until_eof(sock) == b""
    assert Recorder.lost.wait(5)
    kinds = [event[0] for event in Recorder.events]
    assert kinds == ["made", "data", "lost"]
    assert Recorder.events[0][1][0] == "127.0.0.1"
    assert Recorder.events[-1] == ("lost", None)


def test_peer_reset_reaches_connection_lost(make_engine):
    Recorder.events = []
    Recorder.lost = threading.Event()
    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Recorder)
    engine.start()
    sock = connect(listener.address)
    assert wait_for(lambda: Recorder.events)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()                         # RST
    assert Recorder.lost.wait(5)
    exc = Recorder.events[-1][1]
    assert isinstance(exc, ConnectionResetError)
    assert exc.errno == errno.ECONNRESET


def test_handler_exception_is_logged_and_closes_only_its_connection(make_engine, caplog):
    class Fragile(Echo):
        def data_received(self, conn, data):
            if data == b"boom":
                raise ValueError("handler failure on purpose")
            super().data_received(conn, data)

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Fragile)
    engine.start()
    with caplog.at_level(logging.ERROR, logger="pyiocp"):
        with connect(listener.address) as good, connect(listener.address) as bad:
            good.sendall(b"one")
            assert recv_exactly(good, 3) == b"one"
            bad.sendall(b"boom")
            with pytest.raises(ConnectionResetError):
                recv_until_eof(bad)      # aborted: reset, not served
            good.sendall(b"two")
            assert recv_exactly(good, 3) == b"two"
    assert "handler failure on purpose" in caplog.text
    assert "Traceback" in caplog.text
    assert "data_received" in caplog.text


def test_factory_exception_is_logged(make_engine, caplog):
    def factory():
        raise RuntimeError("no handler today")

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), factory)
    engine.start()
    with caplog.at_level(logging.ERROR, logger="pyiocp"):
        # The reset often beats connect() back: socket.create_connection
        # with a timeout connects without blocking, and a reset that arrives
        # before it checks the result is what connect() reports (here the
        # worker holds the GIL while the factory fails, so this client
        # thread is late).  Either way the connection must end in a reset.
        with pytest.raises(ConnectionResetError):
            with connect(listener.address) as sock:
                recv_until_eof(sock)
    assert "no handler today" in caplog.text


# ---------------------------------------------------------- transmit --

@pytest.fixture
def data_file(tmp_path):
    data = os.urandom(3 * 1024 * 1024 + 17)
    path = tmp_path / "data.bin"
    path.write_bytes(data)
    return path, data


@pytest.mark.parametrize("offset,count", [(0, None), (0, 0), (5, 1000), (1 << 20, None)])
def test_transmit_file_path_with_head(make_engine, data_file, offset, count):
    path, data = data_file
    done = []

    class Transmitter(pyiocp.Handler):
        def connection_made(self, conn):
            conn.transmit_file(path, offset=offset, count=count, head=b"HEAD\n")
            conn.close()

        def transmit_done(self, conn, nbytes):
            done.append(nbytes)

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Transmitter)
    engine.start()
    expected = b"HEAD\n" + (data[offset:] if count is None else data[offset:offset + count])
    with connect(listener.address) as sock:
        got = recv_until_eof(sock)
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(expected).hexdigest()
    assert wait_for(lambda: done)
    assert done == [len(expected)]
    # every file byte went zero-copy: Linux has no copying path, nor
    # Windows' completions handled without a packet
    stats = engine.stats()
    assert stats["transmit_file_bytes"] == len(expected) - len(b"HEAD\n")
    assert stats["transmit_copied_bytes"] == 0 and stats["completed_inline"] == 0


def test_transmit_file_descriptor_stays_callers(make_engine, data_file):
    path, data = data_file
    fd = os.open(path, os.O_RDONLY)
    try:
        class Transmitter(pyiocp.Handler):
            def connection_made(self, conn):
                conn.transmit_file(fd, offset=10, count=100)
                conn.close()

        engine = make_engine()
        listener = engine.listen(("127.0.0.1", 0), Transmitter)
        engine.start()
        with connect(listener.address) as sock:
            assert recv_until_eof(sock) == data[10:110]
        os.fstat(fd)                     # still open: the engine did not close it
    finally:
        os.close(fd)


def test_transmit_missing_file_raises_file_not_found(make_engine, tmp_path):
    raised = []

    class Missing(pyiocp.Handler):
        def connection_made(self, conn):
            try:
                conn.transmit_file(tmp_path / "absent")
            except FileNotFoundError as exc:
                raised.append(exc)
            except BaseException as exc:   # reported by the assertion below
                raised.append(exc)
            conn.close()

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Missing)
    engine.start()
    with connect(listener.address) as sock:
        recv_until_eof(sock)
    assert wait_for(lambda: raised)
    assert isinstance(raised[0], FileNotFoundError), raised
    assert (raised[0].errno, raised[0].strerror, raised[0].filename) == \
        (errno.ENOENT, os.strerror(errno.ENOENT), str(tmp_path / "absent"))


def test_transmit_beyond_end_of_file_resets(make_engine, data_file):
    path, data = data_file
    lost = []

    class TooMuch(pyiocp.Handler):
        def connection_made(self, conn):
            conn.transmit_file(path, count=len(data) + 100)

        def connection_lost(self, conn, exc):
            lost.append(exc)

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), TooMuch)
    engine.start()
    received = bytearray()
    # the reset may even beat connect() back to a busy client thread
    with pytest.raises(ConnectionResetError):
        with connect(listener.address) as sock:
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    break
                received += chunk
    assert wait_for(lambda: lost)
    assert isinstance(lost[0], OSError) and lost[0].errno == errno.EIO
    assert len(received) <= len(data)



# What transmit_file refuses at the call (issue 13's second break: a
# directory was accepted, then reset the connection with EINVAL; a negative
# offset raised OverflowError).  Fixed in 6571b1b; each case must raise
# there, at once, and leave the connection usable.
_REFUSED = {
    "directory": (lambda d: str(d), {}, IsADirectoryError, errno.EISDIR),
    "directory fd": (lambda d: d.fd("."), {}, IsADirectoryError, errno.EISDIR),
    # nobody writes to it: opening it must not wait for a writer
    "fifo": (lambda d: str(d.fifo()), {}, OSError, errno.EINVAL),
    "fifo fd": (lambda d: d.fd(d.fifo(), os.O_RDONLY | os.O_NONBLOCK), {}, OSError, errno.EINVAL),
    "/dev/zero": (lambda d: "/dev/zero", {}, OSError, errno.EINVAL),
    "/dev/null fd": (lambda d: d.fd("/dev/null"), {}, OSError, errno.EINVAL),
    "socket file": (lambda d: str(d.unix_socket()), {}, OSError, errno.ENXIO),
    "socket fd": (lambda d: d.unix_socket_fd(), {}, OSError, errno.EINVAL),
    # a regular file the descriptor cannot read: sendfile would fail (EBADF)
    "write-only fd": (lambda d: d.fd(__file__, os.O_WRONLY | os.O_APPEND), {}, OSError,
                      errno.EBADF),
    "O_PATH fd": (lambda d: d.fd(__file__, os.O_PATH), {}, OSError, errno.EBADF),
    "negative offset": (lambda d: __file__, {"offset": -1}, ValueError, None),
    "very negative offset": (lambda d: __file__, {"offset": -(1 << 70)}, ValueError, None),
    "negative count": (lambda d: __file__, {"count": -1}, ValueError, None),
    "bool offset": (lambda d: __file__, {"offset": True}, TypeError, None),
    "float offset": (lambda d: __file__, {"offset": 1.0}, TypeError, None),
    "bool count": (lambda d: __file__, {"count": False}, TypeError, None),
    "float count": (lambda d: __file__, {"count": 2.0}, TypeError, None),
}


class _Files:
    """The odd files one refused case needs, all closed by the test."""

    def __init__(self, root):
        self.root = root
        self.fds, self.socks, self.fifos = [], [], []

    def __str__(self):
        return str(self.root)

    def fd(self, name, flags=os.O_RDONLY):
        self.fds.append(os.open(self.root / name, flags))
        return self.fds[-1]

    def fifo(self):
        path = self.root / "fifo"
        os.mkfifo(path)
        self.fifos.append(path)
        return path

    def unix_socket(self):
        path = self.root / "sock"
        sock = socket.socket(socket.AF_UNIX)
        sock.bind(str(path))
        self.socks.append(sock)
        return path

    def unix_socket_fd(self):
        self.unix_socket()
        return self.socks[-1].fileno()

    def close(self):
        for path in self.fifos:
            # were a worker stuck opening it for reading, a writer frees it
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            except OSError:
                pass
        for fd in self.fds:
            os.close(fd)
        for sock in self.socks:
            sock.close()


@pytest.mark.parametrize("case", list(_REFUSED))
def test_transmit_file_refuses_at_the_call(make_engine, tmp_path, case):
    make_file, kwargs, exc_type, code = _REFUSED[case]
    if case == "O_PATH fd" and not hasattr(os, "O_PATH"):
        pytest.skip("no O_PATH here")
    files = _Files(tmp_path)
    events = []

    class Sender(pyiocp.Handler):
        def connection_made(self, conn):
            started = time.monotonic()
            try:
                events.append(("returned", conn.transmit_file(file, head=b"HEAD", **kwargs)))
            except BaseException as exc:
                events.append(("raised", exc))
            events.append(("took", time.monotonic() - started))
            conn.send(b"still open")
            conn.close()

        def transmit_done(self, conn, nbytes):
            events.append(("transmitted", nbytes))

        def connection_lost(self, conn, exc):
            events.append(("lost", exc))

    try:
        file = make_file(files)
        engine = make_engine()
        listener = engine.listen(("127.0.0.1", 0), Sender)
        engine.start()
        with connect(listener.address, timeout=5) as sock:
            assert recv_until_eof(sock) == b"still open"
        assert wait_for(lambda: events and events[-1][0] == "lost")
    finally:
        files.close()
    (outcome, exc), (_, took), lost = events
    assert outcome == "raised", events
    assert type(exc) is exc_type, events            # not a subclass: OverflowError is not ValueError
    if code is not None:
        assert exc.errno == code, events
    assert took < 1.0
    assert lost == ("lost", None)


@pytest.mark.parametrize("offset,count", [(10, None), (25, None), (10, 0), (25, 0)])
def test_transmit_file_at_or_past_the_end(make_engine, tmp_path, offset, count):
    """To the end from the end or past it: only the head goes out, and
    transmit_done says so; a count of 0 anywhere is the same.  (An explicit
    count the file cannot fill resets the connection with EIO:
    test_transmit_beyond_end_of_file_resets.)"""
    path = tmp_path / "ten"
    path.write_bytes(b"0123456789")
    events = []

    class Sender(pyiocp.Handler):
        def connection_made(self, conn):
            events.append(("returned", conn.transmit_file(path, offset=offset, count=count,
                                                          head=b"HEAD")))
            conn.close()

        def transmit_done(self, conn, nbytes):
            events.append(("transmitted", nbytes))

        def connection_lost(self, conn, exc):
            events.append(("lost", exc))

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Sender)
    engine.start()
    with connect(listener.address, timeout=5) as sock:
        assert recv_until_eof(sock) == b"HEAD"
    assert wait_for(lambda: events and events[-1][0] == "lost")
    assert events == [("returned", True), ("transmitted", 4), ("lost", None)]


# ------------------------------------------------ lifecycle and config --

def test_post_runs_callback_on_a_worker(make_engine):
    engine = make_engine()
    engine.start()
    seen = []
    done = threading.Event()

    def callback():
        seen.append(threading.get_ident())
        done.set()

    engine.post(callback)
    assert done.wait(5)
    assert seen[0] != threading.get_ident()


def test_context_manager_and_stop_is_idempotent(backend, no_fd_leak):
    with pyiocp.Engine(threads=1, backend=backend) as engine:
        listener = engine.listen(("127.0.0.1", 0), Echo)
        with connect(listener.address) as sock:
            sock.sendall(b"x")
            assert recv_exactly(sock, 1) == b"x"
    engine.stop()
    with pytest.raises(RuntimeError):
        engine.start()
    with pytest.raises(RuntimeError):
        engine.listen(("127.0.0.1", 0), Echo)


def test_run_in_thread_until_request_stop(backend, no_fd_leak):
    engine = pyiocp.Engine(threads=2, backend=backend)
    listener = engine.listen(("127.0.0.1", 0), Echo)
    runner = threading.Thread(target=engine.run)
    runner.start()
    with connect(listener.address) as sock:
        sock.sendall(b"ping")
        assert recv_exactly(sock, 4) == b"ping"
        engine.request_stop()
        runner.join(10)
        assert not runner.is_alive()
        assert recv_until_eof(sock) == b""   # its pending recv was cancelled: closed


def test_stop_from_inside_a_handler_requests_it(backend, no_fd_leak):
    posted = []

    class Stopper(pyiocp.Handler):
        def data_received(self, conn, data):
            conn.engine.stop()            # on a worker: must not deadlock
            # run() may already be stopping and have closed this idle
            # connection: then the post says so (False) and nothing is sent
            posted.append(conn.send(data))

    engine = pyiocp.Engine(threads=2, backend=backend)
    listener = engine.listen(("127.0.0.1", 0), Stopper)
    runner = threading.Thread(target=engine.run)
    runner.start()
    with connect(listener.address) as sock:
        sock.sendall(b"bye")
        got = recv_exactly(sock, 3)      # b"" if the stop closed it first
    runner.join(10)
    assert not runner.is_alive()
    assert posted in ([True], [False])
    # a send the engine accepted is drained by the stop, never dropped
    assert got == (b"bye" if posted[0] else b"")


def test_stop_while_transmits_run_respects_the_deadline(make_engine, data_file):
    path, data = data_file

    class Big(pyiocp.Handler):
        def connection_made(self, conn):
            for _ in range(40):          # ~120 MiB queued to a reader that stalls
                conn.transmit_file(path)

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Big)
    engine.start()
    socks = [connect(listener.address) for _ in range(3)]
    for sock in socks:
        sock.recv(1000)
    started = time.monotonic()
    engine.stop(drain_timeout=0.5)
    assert time.monotonic() - started < 5
    assert engine.connections == 0
    for sock in socks:
        sock.close()


def test_idle_timeout_drops_silent_peers(make_engine):
    Recorder.events = []
    Recorder.lost = threading.Event()
    engine = make_engine(idle_timeout=0.3)
    listener = engine.listen(("127.0.0.1", 0), Recorder)
    engine.start()
    with connect(listener.address) as sock:
        started = time.monotonic()
        assert Recorder.lost.wait(5)
        assert 0.25 <= time.monotonic() - started < 3
        with pytest.raises(ConnectionResetError):
            recv_until_eof(sock)
    assert isinstance(Recorder.events[-1][1], TimeoutError)


def test_max_connections_refuses_the_extra_one(make_engine):
    engine = make_engine(max_connections=2)
    listener = engine.listen(("127.0.0.1", 0), Echo)
    engine.start()
    with connect(listener.address) as a, connect(listener.address) as b:
        a.sendall(b"a")
        b.sendall(b"b")
        assert recv_exactly(a, 1) == b"a" and recv_exactly(b, 1) == b"b"
        with connect(listener.address) as c:
            assert recv_until_eof(c) == b""
        assert listener.refused == 1


def test_listen_errors(make_engine):
    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Echo)
    with pytest.raises(OSError) as info:
        engine.listen(listener.address, Echo)
    assert info.value.errno == errno.EADDRINUSE
    assert info.value.strerror == f"cannot listen on {listener.address!r}: " \
                                  f"{os.strerror(errno.EADDRINUSE)}"
    with pytest.raises(TypeError):
        engine.listen("127.0.0.1:80", Echo)
    with pytest.raises(ValueError):
        engine.listen(("127.0.0.1", 70000), Echo)
    with pytest.raises(TypeError):
        engine.listen(("127.0.0.1", 0), "not a handler")
    with pytest.raises(TypeError, match="not a usable native handler"):
        engine.listen(("127.0.0.1", 0), pyiocp.NativeHandler())   # has no C server


def test_native_handlers_share_one_base(make_engine, tmp_path):
    (tmp_path / "f.txt").write_bytes(b"native")
    engine = make_engine()
    raw, http = pyiocp.RawFileServer(tmp_path), pyiocp.StaticFiles(tmp_path)
    assert isinstance(raw, pyiocp.NativeHandler) and isinstance(http, pyiocp.NativeHandler)
    raw_listener = engine.listen(("127.0.0.1", 0), raw)
    http_listener = engine.listen(("127.0.0.1", 0), http)
    assert raw_listener.native is raw and raw_listener.handler_factory is None
    assert http_listener.native is http
    engine.start()
    with connect(raw_listener.address) as sock:
        sock.sendall(b"f.txt\n")
        sock.shutdown(socket.SHUT_WR)
        assert recv_until_eof(sock) == b"native"
    with connect(http_listener.address) as sock:
        sock.sendall(b"GET /f.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        answer = recv_until_eof(sock)
    assert answer.startswith(b"HTTP/1.1 200 ") and answer.endswith(b"\r\n\r\nnative")


@pytest.mark.parametrize("make", [pyiocp.RawFileServer, pyiocp.StaticFiles])
def test_native_handler_root_errors_name_the_root(tmp_path, make):
    """One conversion for every error: OSError(errno, strerror, filename),
    so CPython picks the subclass and the message names the path."""
    missing = tmp_path / "missing"
    with pytest.raises(FileNotFoundError) as info:
        make(missing)
    assert (info.value.errno, info.value.strerror, info.value.filename) == \
        (errno.ENOENT, os.strerror(errno.ENOENT), str(missing))
    a_file = tmp_path / "file"
    a_file.write_bytes(b"x")
    with pytest.raises(NotADirectoryError) as info:
        make(a_file)
    assert info.value.filename == str(a_file)


def test_ipv6_loopback(make_engine):
    if not socket.has_ipv6:
        pytest.fail("this machine has no IPv6 loopback; the test needs ::1")
    engine = make_engine()
    listener = engine.listen(("::1", 0), Echo)
    engine.start()
    assert listener.address[0] == "::1"
    with socket.create_connection(listener.address[:2], timeout=10) as sock:
        sock.sendall(b"six")
        assert recv_exactly(sock, 3) == b"six"


@pytest.mark.parametrize("options,error", [
    ({"threads": 0}, ValueError),
    ({"threads": 2000}, ValueError),
    ({"threads": "4"}, TypeError),
    ({"threads": True}, TypeError),
    ({"backend": "kqueue"}, ValueError),
    ({"backlog": 0}, ValueError),
    ({"recv_buffer_size": 0}, ValueError),
    ({"max_connections": 0}, ValueError),
    ({"idle_timeout": 0}, ValueError),
    ({"idle_timeout": -1.5}, ValueError),
    ({"idle_timeout": "soon"}, TypeError),
])
def test_configuration_is_validated(options, error):
    with pytest.raises(error) as info:
        pyiocp.Engine(**options)
    assert next(iter(options)) in str(info.value)


def test_engine_init_runs_once(backend, no_fd_leak):
    engine = pyiocp.Engine(threads=1, backend=backend)
    try:
        with pytest.raises(RuntimeError, match="already initialised"):
            pyiocp.Engine.__init__(engine, threads=1, backend=backend)
        with engine:                     # the first engine is intact
            listener = engine.listen(("127.0.0.1", 0), Echo)
            with connect(listener.address) as sock:
                sock.sendall(b"one")
                assert recv_exactly(sock, 3) == b"one"
    finally:
        engine.stop()


def test_defaults():
    engine = pyiocp.Engine()
    # twice the CPUs this process may use: its affinity mask (taskset, a
    # cpuset), rounded-up cgroup quota if tighter; not os.cpu_count()
    usable = len(os.sched_getaffinity(0))
    quota = pyiocp.cpu_info()["quota_cpus"]
    if quota is not None:
        usable = min(usable, math.ceil(quota))
    assert engine.threads == min(2 * usable, _core.MAX_THREADS)
    assert engine.backend in pyiocp.available_backends()
    assert engine.config.max_connections == 10_000
    engine.stop()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_run_stops_gracefully_on_sigterm_and_sigint(backend, signum, tmp_path):
    script = (
        "import signal, sys, pyiocp\n"
        # Ctrl-C as in a terminal, even when this test runs in a background
        # job of a script, whose children start with SIGINT ignored
        "signal.signal(signal.SIGINT, signal.default_int_handler)\n"
        f"engine = pyiocp.Engine(threads=2, backend={backend!r})\n"
        "class Echo(pyiocp.Handler):\n"
        "    def data_received(self, conn, data):\n"
        "        conn.send(data)\n"
        "listener = engine.listen(('127.0.0.1', 0), Echo)\n"
        "print(listener.address[1], flush=True)\n"
        "engine.run()\n"
        "print('returned', flush=True)\n"
    )
    env = dict(os.environ, PYTHONPATH=os.path.dirname(os.path.dirname(pyiocp.__file__)))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, cwd=tmp_path, env=env)
    try:
        port = int(proc.stdout.readline())
        with connect(("127.0.0.1", port)) as sock:
            sock.sendall(b"up?")                # answered: run() is serving
            assert recv_exactly(sock, 3) == b"up?"
            proc.send_signal(signum)
            out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, err.decode()
    assert out.strip() == b"returned"
