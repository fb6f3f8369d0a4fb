"""examples/tcp_proxy.py, run as a process on each backend, in front of
small upstream servers made here (plain sockets in threads): bytes both
ways, half-close both ways, errors, an upstream that refuses, data sent
before the upstream is connected, and bounded memory against a client that
does not read."""
from __future__ import annotations

import hashlib
import os
import socket
import struct
import threading
import time

import pytest

from conftest import recv_exactly, recv_until_eof
from example_process import ExampleProcess, stalled

TIMEOUT = 20.0


class Upstream:
    """A listening socket on 127.0.0.1; each connection accepted is served
    by `serve(sock)` in its own thread.  What the threads raise is kept and
    re-raised by check()."""

    def __init__(self, serve, backlog: int = 16):
        self.listener = socket.create_server(("127.0.0.1", 0), backlog=backlog)
        self.address = self.listener.getsockname()
        self.serve = serve
        self.errors: list = []
        self.threads: list = []     # one per connection
        self.acceptor: "threading.Thread | None" = None

    def start(self) -> "Upstream":
        self.acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self.acceptor.start()
        return self

    def accept_one(self) -> None:
        sock, _ = self.listener.accept()
        self._spawn(sock)

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return              # closed
            self._spawn(sock)

    def _spawn(self, sock: socket.socket) -> None:
        sock.settimeout(TIMEOUT)

        def run() -> None:
            try:
                with sock:
                    self.serve(sock)
            except BaseException as exc:
                self.errors.append(exc)
        thread = threading.Thread(target=run, daemon=True)
        self.threads.append(thread)   # before it runs: check() must see it
        thread.start()

    def check(self) -> None:
        """Every connection served to its end, without an error."""
        for thread in self.threads:
            thread.join(TIMEOUT)
            assert not thread.is_alive(), "an upstream connection is still being served"
        if self.errors:
            raise self.errors[0]

    def close(self) -> None:
        # close() alone does not wake a thread blocked in accept(): the
        # shutdown does, and the accept loop then ends instead of lingering
        # into interpreter exit
        try:
            self.listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.listener.close()
        if self.acceptor is not None:
            self.acceptor.join(TIMEOUT)


@pytest.fixture
def start_proxy(backend, tmp_path):
    made = []

    def start(upstream_address, *args: str, measure_memory: bool = False) -> ExampleProcess:
        proxy = ExampleProcess("tcp_proxy.py", "--listen", "127.0.0.1:0",
                               "--upstream", "%s:%d" % upstream_address[:2],
                               "--threads", "2", "--backend", backend, *args,
                               stderr_path=str(tmp_path / f"proxy{len(made)}.err"),
                               measure_memory=measure_memory)
        made.append(proxy)
        return proxy

    yield start
    for proxy in made:
        status = proxy.stop()
        assert status == 0, f"exit status {status}: {proxy.stderr()}"


@pytest.fixture
def upstreams():
    made = []

    def make(serve, **options) -> Upstream:
        upstream = Upstream(serve, **options)
        made.append(upstream)
        return upstream

    yield make
    for upstream in made:
        upstream.close()


def connect(proxy: ExampleProcess, rcvbuf: int = 0) -> socket.socket:
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.settimeout(TIMEOUT)
    sock.connect(proxy.address)
    return sock


def echo(sock: socket.socket) -> None:
    """Echoes until the end of stream, then ends its own."""
    while True:
        data = sock.recv(1 << 16)
        if not data:
            sock.shutdown(socket.SHUT_WR)
            return
        sock.sendall(data)


def test_echo_through_the_proxy(start_proxy, upstreams):
    upstream = upstreams(echo).start()
    proxy = start_proxy(upstream.address)
    with connect(proxy) as client:
        for message in (b"hello", b"x" * 100_000, b"bye"):
            client.sendall(message)
            assert recv_exactly(client, len(message)) == message
        client.shutdown(socket.SHUT_WR)
        assert client.recv(1) == b""
    upstream.check()


def send_then_end(sock: socket.socket, data: bytes) -> None:
    sock.sendall(data)
    sock.shutdown(socket.SHUT_WR)


def test_20_mib_each_way_byte_exact(start_proxy, upstreams):
    """20 MiB up while the upstream sends 20 MiB of its own down, at the
    same time; each side checks every byte."""
    up_data, down_data = os.urandom(20 << 20), os.urandom(20 << 20)
    received_up = []

    def serve(sock: socket.socket) -> None:
        sender = threading.Thread(target=send_then_end, args=(sock, down_data))
        sender.start()
        received_up.append(recv_until_eof(sock))
        sender.join(TIMEOUT)

    upstream = upstreams(serve).start()
    proxy = start_proxy(upstream.address)
    with connect(proxy) as client:
        sender = threading.Thread(target=send_then_end, args=(client, up_data))
        sender.start()
        got = recv_until_eof(client)
        sender.join(TIMEOUT)
    upstream.check()
    assert len(got) == len(down_data) and got == down_data
    assert len(received_up[0]) == len(up_data) and received_up[0] == up_data


def test_client_half_close_reaches_upstream_and_the_answer_comes_back(start_proxy, upstreams):
    """The upstream answers only once it has seen the end of the request:
    the client's shutdown(SHUT_WR) must travel, and the answer still reach
    the half-closed client, followed by the end of stream."""

    def serve(sock: socket.socket) -> None:
        request = recv_until_eof(sock)
        sock.sendall(b"got %d bytes, sha256 %s" % (len(request),
                                                    hashlib.sha256(request).hexdigest().encode()))

    upstream = upstreams(serve).start()
    proxy = start_proxy(upstream.address)
    request = os.urandom(300_000)
    with connect(proxy) as client:
        client.sendall(request)
        client.shutdown(socket.SHUT_WR)
        answer = recv_until_eof(client)
    assert answer == b"got 300000 bytes, sha256 %s" % hashlib.sha256(request).hexdigest().encode()
    upstream.check()


def test_upstream_half_close_reaches_the_client_which_can_still_send(start_proxy, upstreams):
    late = []

    def serve(sock: socket.socket) -> None:
        sock.sendall(b"greeting")
        sock.shutdown(socket.SHUT_WR)
        late.append(recv_until_eof(sock))

    upstream = upstreams(serve).start()
    proxy = start_proxy(upstream.address)
    with connect(proxy) as client:
        assert recv_until_eof(client) == b"greeting"
        client.sendall(b"sent after the upstream's end")
        client.shutdown(socket.SHUT_WR)
        upstream.check()
    assert late == [b"sent after the upstream's end"]


def reset(sock: socket.socket) -> None:
    """Closes with a reset (RST) instead of a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def ends_with_reset(sock: socket.socket) -> bool:
    """Reads until the stream ends: True for a reset, False for an orderly
    end of stream."""
    while True:
        try:
            if not sock.recv(1 << 16):
                return False
        except ConnectionResetError:
            return True


def test_upstream_reset_resets_the_client(start_proxy, upstreams):
    """A reset must not reach the client as an orderly end: the client
    could take a cut stream for a complete one."""

    def serve(sock: socket.socket) -> None:
        sock.sendall(b"partial")
        assert sock.recv(4) == b"more"
        reset(sock)

    upstream = upstreams(serve).start()
    proxy = start_proxy(upstream.address)
    with connect(proxy) as client:
        assert recv_exactly(client, 7) == b"partial"
        client.sendall(b"more")
        assert ends_with_reset(client)
    upstream.check()


def test_client_reset_resets_the_upstream(start_proxy, upstreams):
    outcome = []

    def serve(sock: socket.socket) -> None:
        sock.sendall(b"ready")
        outcome.append(ends_with_reset(sock))

    upstream = upstreams(serve).start()
    proxy = start_proxy(upstream.address)
    client = connect(proxy)
    assert recv_exactly(client, 5) == b"ready"
    reset(client)
    upstream.check()
    assert outcome == [True]


def test_refused_upstream_resets_the_client(start_proxy):
    # a bound socket that does not listen: connecting to it is refused
    with socket.socket() as closed_port:
        closed_port.bind(("127.0.0.1", 0))
        proxy = start_proxy(closed_port.getsockname())
        start = time.monotonic()
        try:
            client = connect(proxy)
        except ConnectionResetError:
            client = None    # reset before connect() could even return
        if client is not None:
            with client:
                try:
                    client.sendall(b"anyone there?")
                    reset_seen = ends_with_reset(client)
                except (BrokenPipeError, ConnectionResetError):
                    reset_seen = True
                assert reset_seen, "an orderly end instead of a reset"
        assert time.monotonic() - start < 10
    assert "upstream: [Errno 111]" in proxy.stderr()


def test_data_sent_before_the_upstream_is_connected_is_kept_bounded(start_proxy, upstreams):
    """The upstream's accept queue is full (backlog 0, one connection
    waiting), so the kernel drops the proxy's connection request until it
    is accepted.  Meanwhile the client sends 32 MiB: the proxy keeps
    --buffer bytes and stops reading, so its memory stays bounded; once
    the upstream accepts, everything arrives in order."""
    data = os.urandom(32 << 20)
    received = []

    def serve(sock: socket.socket) -> None:
        received.append(recv_until_eof(sock))

    upstream = upstreams(serve, backlog=0)
    filler = socket.create_connection(upstream.address, timeout=TIMEOUT)
    try:
        # the kernel retries the connection request after 1, 3, 7, 15 s
        proxy = start_proxy(upstream.address, "--buffer", str(64 * 1024),
                            "--connect-timeout", "60", measure_memory=True)
        baseline = proxy.rss_kib()
        with connect(proxy) as client:
            sent = [0]

            def send_all() -> None:
                view = memoryview(data)
                while view:
                    n = client.send(view[:1 << 16])
                    sent[0] += n
                    view = view[n:]
                client.shutdown(socket.SHUT_WR)
            sender = threading.Thread(target=send_all, daemon=True)
            sender.start()
            assert stalled(lambda: sent[0]), "the client's sends never stalled"
            assert sent[0] < len(data), "the proxy took everything before connecting"
            growth = proxy.rss_kib() - baseline
            assert growth < 12 * 1024, f"RSS grew by {growth} KiB"
            upstream.accept_one()    # the filler: room in the queue
            filler.close()
            upstream.accept_one()    # the proxy's connection, on its next try
            sender.join(TIMEOUT)
            assert not sender.is_alive()
            assert recv_until_eof(client) == b""
            upstream.check()
    finally:
        filler.close()
    # the filler's (nothing) and the client's, in either order
    got = max(received, key=len)
    assert sorted(map(len, received)) == [0, len(data)]
    assert got == data


def test_a_client_that_does_not_read_holds_the_upstream_back(start_proxy, upstreams):
    """The upstream sends 64 MiB to a client that reads nothing for a
    while: the proxy stops reading the upstream (whose sends stall) instead
    of buffering, and its memory stays bounded; then every byte arrives."""
    data = os.urandom(64 << 20)
    sent = [0]

    def serve(sock: socket.socket) -> None:
        view = memoryview(data)
        while view:
            n = sock.send(view[:1 << 16])
            sent[0] += n
            view = view[n:]
        sock.shutdown(socket.SHUT_WR)
        recv_until_eof(sock)

    upstream = upstreams(serve).start()
    proxy = start_proxy(upstream.address, measure_memory=True)
    baseline = proxy.rss_kib()
    with connect(proxy, rcvbuf=4096) as client:
        assert stalled(lambda: sent[0]), "the upstream's sends never stalled"
        assert sent[0] < len(data) // 2, f"{sent[0]} bytes went before the upstream stalled"
        growth = proxy.rss_kib() - baseline
        assert growth < 12 * 1024, f"RSS grew by {growth} KiB (from {baseline} KiB)"
        got = recv_until_eof(client)
        client.shutdown(socket.SHUT_WR)
        upstream.check()
    assert len(got) == len(data) and got == data
