"""Engine.listen(sock=..., reuse_port=...): serving a socket made with the
socket module (as systemd or a pre-fork supervisor hands one over), two
engines on one port with SO_REUSEPORT, the errors for bad combinations,
and no descriptor left behind.  Every test runs on every backend."""
from __future__ import annotations

import errno
import socket

import pytest

import pyiocp
from conftest import connect, recv_exactly


class Echo(pyiocp.Handler):
    def connection_made(self, conn):
        conn.recv()

    def data_received(self, conn, data):
        conn.send(data)
        conn.recv()


class Tagged(pyiocp.Handler):
    """Answers each connection with its engine's tag, then closes."""
    tag = b""

    def connection_made(self, conn):
        conn.send(self.tag)
        conn.close()


def tagged(tag: bytes):
    return type("Tagged", (Tagged,), {"tag": tag})


def listening_socket(family=socket.AF_INET, host="127.0.0.1") -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.bind((host, 0))
    sock.listen(64)
    return sock


def echo_once(address, payload=b"ping"):
    with connect(address) as client:
        client.sendall(payload)
        assert recv_exactly(client, len(payload)) == payload


def test_serves_a_socket_made_elsewhere(make_engine):
    engine = make_engine()
    with listening_socket() as sock:
        listener = engine.listen(sock=sock, handler=Echo)
        assert listener.address == sock.getsockname()
        engine.start()
        for _ in range(10):
            echo_once(sock.getsockname())
        engine.stop(drain_timeout=1.0)
        # the engine served a dup: the caller's socket is intact and still listening
        assert sock.fileno() >= 0
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1


def test_serves_an_ipv6_socket(make_engine):
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        sock = listening_socket(socket.AF_INET6, "::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    with sock:
        engine = make_engine()
        engine.listen(sock=sock, handler=Echo)
        engine.start()
        echo_once(sock.getsockname()[:2])


def test_stopping_one_engine_leaves_the_shared_socket_to_the_other(make_engine):
    """Two engines on one socket (as pre-fork workers share theirs): the
    first one's stop must not shut the socket down under the second."""
    first, second = make_engine(), make_engine()
    with listening_socket() as sock:
        first.listen(sock=sock, handler=tagged(b"first"))
        second.listen(sock=sock, handler=tagged(b"second"))
        first.start()
        first.stop(drain_timeout=1.0)
        # queued while nobody accepts, then served by the second
        early = connect(sock.getsockname())
        second.start()
        with early:
            assert recv_exactly(early, 6) == b"second"
        with connect(sock.getsockname()) as client:
            assert recv_exactly(client, 6) == b"second"


def test_reuse_port_two_engines_both_accept(make_engine):
    first, second = make_engine(), make_engine()
    port = first.listen(("127.0.0.1", 0), tagged(b"A"), reuse_port=True).address[1]
    second.listen(("127.0.0.1", port), tagged(b"B"), reuse_port=True)
    first.start()
    second.start()
    seen = set()
    for _ in range(200):
        with connect(("127.0.0.1", port)) as client:
            seen.add(recv_exactly(client, 1))
        if seen == {b"A", b"B"}:
            break
    assert seen == {b"A", b"B"}


def test_same_port_without_reuse_port_is_refused(make_engine):
    first, second = make_engine(), make_engine()
    port = first.listen(("127.0.0.1", 0), Echo, reuse_port=True).address[1]
    with pytest.raises(OSError) as info:
        second.listen(("127.0.0.1", port), Echo)
    assert info.value.errno == errno.EADDRINUSE


@pytest.mark.parametrize("kwargs, error, message", [
    ({"address": ("127.0.0.1", 0), "sock": "SOCK"}, ValueError, "not both"),
    ({}, ValueError, "an address"),
    ({"sock": "SOCK", "backlog": 5}, ValueError, "backlog"),
    ({"sock": "SOCK", "reuse_port": True}, ValueError, "reuse_port"),
    ({"sock": 3}, TypeError, "socket.socket"),
])
def test_bad_combinations(make_engine, kwargs, error, message):
    engine = make_engine()
    with listening_socket() as sock:
        if kwargs.get("sock") == "SOCK":
            kwargs = dict(kwargs, sock=sock)
        with pytest.raises(error, match=message):
            engine.listen(handler=Echo, **kwargs)
    assert engine.listeners == []


def test_handler_is_required(make_engine):
    with listening_socket() as sock, pytest.raises(TypeError, match="handler"):
        make_engine().listen(sock=sock)


def test_a_socket_that_is_not_listening_is_refused(make_engine):
    engine = make_engine()
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        with pytest.raises(ValueError, match="not listening"):
            engine.listen(sock=sock, handler=Echo)


def test_a_datagram_socket_is_refused(make_engine):
    engine = make_engine()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        with pytest.raises(ValueError, match="stream"):
            engine.listen(sock=sock, handler=Echo)


def test_a_unix_socket_is_refused(make_engine, tmp_path):
    engine = make_engine()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(tmp_path / "s"))
        sock.listen()
        with pytest.raises(ValueError, match="IPv4 or IPv6"):
            engine.listen(sock=sock, handler=Echo)


def test_a_closed_socket_is_refused(make_engine):
    engine = make_engine()
    sock = listening_socket()
    sock.close()
    with pytest.raises(ValueError, match="closed"):
        engine.listen(sock=sock, handler=Echo)


def test_no_descriptor_left_after_many_adoptions(backend, no_fd_leak):
    """The engine's dup is closed when the engine is freed, also after
    refusals and when the engine never started."""
    with listening_socket() as sock:
        for started in (False, True):
            engine = pyiocp.Engine(threads=1, backend=backend)
            for _ in range(5):
                engine.listen(sock=sock, handler=Echo)
            with pytest.raises(TypeError):
                engine.listen(sock=sock, handler=42)
            if started:
                engine.start()
                echo_once(sock.getsockname())
            engine.stop(drain_timeout=1.0)
