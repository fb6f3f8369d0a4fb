"""Flow control with asyncio's contract: set_write_buffer_limits /
get_write_buffer_size, pause_writing / resume_writing at the marks, and the
engine-wide max_write_buffer past which send() raises instead of growing."""
from __future__ import annotations

import os
import resource
import socket
import threading
import time


import pyiocp
from conftest import connect, recv_exactly

CHUNK = 64 * 1024


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.005)


def connect_small(address):
    """A client with a small receive buffer, set before connecting (the
    window is negotiated then), so that a peer that does not read fills up
    soon."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(20)
    sock.connect(address)
    return sock


def test_limits_follow_asyncio(make_engine):
    seen = {}

    class Probe(pyiocp.Handler):
        def connection_made(self, conn):
            seen["default"] = conn.get_write_buffer_limits()
            seen["size"] = conn.get_write_buffer_size()
            conn.set_write_buffer_limits(high=1000)
            seen["high only"] = conn.get_write_buffer_limits()
            conn.set_write_buffer_limits(low=100)
            seen["low only"] = conn.get_write_buffer_limits()
            conn.set_write_buffer_limits(high=0)
            seen["zero"] = conn.get_write_buffer_limits()
            for bad, error in (({"high": 10, "low": 20}, ValueError),
                               ({"high": -1}, ValueError),
                               ({"high": 1.5}, TypeError)):
                try:
                    conn.set_write_buffer_limits(**bad)
                except error:
                    seen.setdefault("errors", []).append(error)
            conn.close()

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Probe)
    engine.start()
    with connect(listener.address) as sock:
        assert sock.recv(1) == b""
    assert seen == {"default": (16384, 65536), "size": 0, "high only": (250, 1000),
                    "low only": (100, 400), "zero": (0, 0),
                    "errors": [ValueError, ValueError, TypeError]}


def test_a_peer_that_does_not_read_pauses_the_sender_and_resumes_it(make_engine):
    """The handler sends in a loop until paused; the peer reads nothing for
    a while (memory stays bounded: the loop stops at the high mark), then
    reads everything: resume_writing comes, the handler finishes, every
    byte arrives in order."""
    total_chunks = 200                       # 12.5 MiB in all
    state = {"sent": 0, "pauses": 0, "resumes": 0, "max_buffer": 0}
    paused_once = threading.Event()

    class Producer(pyiocp.Handler):
        def connection_made(self, conn):
            self.paused = False
            self.produce(conn)

        def produce(self, conn):
            while not self.paused and state["sent"] < total_chunks:
                conn.send(bytes([state["sent"] % 251]) * CHUNK)
                state["sent"] += 1
                state["max_buffer"] = max(state["max_buffer"], conn.get_write_buffer_size())
            if state["sent"] == total_chunks:
                conn.close()

        def pause_writing(self, conn):
            assert not self.paused
            self.paused = True
            state["pauses"] += 1
            paused_once.set()

        def resume_writing(self, conn):
            assert self.paused
            assert conn.get_write_buffer_size() <= conn.get_write_buffer_limits()[0]
            self.paused = False
            state["resumes"] += 1
            self.produce(conn)

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Producer)
    engine.start()
    with connect_small(listener.address) as sock:
        assert paused_once.wait(10)
        time.sleep(0.3)                      # nothing is read: the sender stays paused
        sent_while_stalled = state["sent"]
        assert sent_while_stalled < total_chunks
        # the socket buffers hold a few MiB at most; the rest waits in the producer
        assert state["max_buffer"] <= 65536 + CHUNK
        sock.settimeout(20)
        for i in range(total_chunks):
            assert recv_exactly(sock, CHUNK) == bytes([i % 251]) * CHUNK
        assert sock.recv(1) == b""
    assert state["pauses"] >= 1 and state["resumes"] == state["pauses"], state


def test_max_write_buffer_refuses_sends_past_the_cap(make_engine):
    """A handler that ignores pause_writing cannot grow memory: past the
    engine's cap send() raises BufferError, nothing is queued for it, and
    sending works again once the peer has read."""
    outcome = {}
    cap = 1 << 20

    class Greedy(pyiocp.Handler):
        def connection_made(self, conn):
            sent = 0
            try:
                while sent < 64 * cap:
                    conn.send(b"g" * CHUNK)
                    sent += CHUNK
            except BufferError as exc:
                outcome["error"] = str(exc)
            outcome["sent"] = sent
            outcome["used"] = conn.engine.write_buffer_used
            conn.recv()

        def data_received(self, conn, data):
            conn.send(b"!")                      # room again
            conn.close()

    engine = make_engine(max_write_buffer=cap)
    listener = engine.listen(("127.0.0.1", 0), Greedy)
    engine.start()
    with connect_small(listener.address) as sock:
        wait_for(lambda: "sent" in outcome)
        assert "max_write_buffer" in outcome["error"]
        assert outcome["used"] <= cap
        sock.settimeout(20)
        assert recv_exactly(sock, outcome["sent"]) == b"g" * outcome["sent"]
        sock.sendall(b"more")
        assert recv_exactly(sock, 1) == b"!"
    wait_for(lambda: engine.write_buffer_used == 0)


def test_transmits_count_their_file_bytes(make_engine, tmp_path):
    path = tmp_path / "big.bin"
    size = 4 << 20
    path.write_bytes(os.urandom(size))
    seen = {}

    class Sender(pyiocp.Handler):
        def connection_made(self, conn):
            conn.transmit_file(str(path), head=b"HEAD")
            seen["size"] = conn.get_write_buffer_size()
            seen["used"] = conn.engine.write_buffer_used   # the head only: files are not memory

        def pause_writing(self, conn):
            seen["paused"] = True

        def transmit_done(self, conn, nbytes):
            seen["after"] = conn.get_write_buffer_size()
            conn.close()

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Sender)
    engine.start()
    with connect(listener.address) as sock:
        sock.settimeout(20)
        assert recv_exactly(sock, 4 + size)[:4] == b"HEAD"
        assert sock.recv(1) == b""
    assert seen["paused"] and seen["after"] == 0
    assert 4 < seen["size"] <= 4 + size and seen["used"] <= 4


def test_transmit_file_refuses_what_is_not_a_regular_file(make_engine, tmp_path):
    errors = []

    class Sender(pyiocp.Handler):
        def connection_made(self, conn):
            for file, kwargs in ((str(tmp_path), {}), ("/dev/null", {}),
                                 (__file__, {"offset": -1}), (__file__, {"count": -5})):
                try:
                    conn.transmit_file(file, **kwargs)
                except (OSError, ValueError) as exc:
                    errors.append(type(exc))
            conn.send(b"still open")
            conn.close()

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Sender)
    engine.start()
    with connect(listener.address) as sock:
        assert recv_exactly(sock, 10) == b"still open"
    assert errors == [IsADirectoryError, OSError, ValueError, ValueError]


def test_rss_stays_bounded_when_the_peer_never_reads(make_engine):
    """Many connections whose peers never read, a handler that sends until
    paused on each: the process grows by about the socket buffers, not by
    what the handlers would like to send."""
    per_connection = 16 << 20                # what each handler would send if it could

    class Flood(pyiocp.Handler):
        def connection_made(self, conn):
            self.paused = False
            left = per_connection
            while left > 0 and not self.paused:
                conn.send(b"f" * CHUNK)
                left -= CHUNK

        def pause_writing(self, conn):
            self.paused = True

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Flood)
    engine.start()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    clients = []
    for _ in range(20):
        clients.append(connect_small(listener.address))
    wait_for(lambda: engine.connections == 20)
    time.sleep(0.3)
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    for sock in clients:
        sock.close()
    # 20 x 16 MiB = 320 MiB if the handlers were not paused
    assert grown_kib < 64 * 1024, grown_kib
