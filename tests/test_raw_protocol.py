"""The raw file protocol served in-process by pyiocp.RawFileServer: exact
bytes, framing on one connection, confinement to ROOT, concurrency,
clients that vanish mid-transfer, and no leaked descriptors.  Every test
runs on each available backend (the `backend` fixture via make_engine)."""
from __future__ import annotations

import os
import socket
import threading
import time
from types import SimpleNamespace

import pytest

import pyiocp
from raw_helpers import (BIG, BIG_SIZE, DEFAULT_MAX_NAME, MIB, SIZES, Workers, abandon,
                         assert_clean_end, assert_error_line, connect, download, fetch,
                         get_tree, read_line, recv_digest, wait_for)


@pytest.fixture(scope="session")
def tree(tmp_path_factory):
    return get_tree(tmp_path_factory)


@pytest.fixture
def start_server(make_engine, tree):
    """start_server(**RawFileServer options) -> started engine serving
    tree.root.  The returned namespaces are emptied at teardown: pytest
    keeps fixture values alive until after no_fd_leak has looked, and the
    RawFileServer holds the root directory open."""
    made = []

    def start(engine_options=None, root=None, **server_options):
        engine = make_engine(**(engine_options or {}))
        server = pyiocp.RawFileServer(tree.root if root is None else root, **server_options)
        listener = engine.listen(("127.0.0.1", 0), server)
        engine.start()
        made.append(SimpleNamespace(engine=engine, server=server, address=listener.address))
        return made[-1]

    yield start
    for namespace in made:
        namespace.__dict__.clear()


@pytest.fixture
def served(start_server):
    return start_server()


def wait_no_connections(engine, timeout=5.0):
    assert wait_for(lambda: engine.connections == 0, timeout), \
        f"engine.connections stuck at {engine.connections}"


# ------------------------------------------------------- exact bytes --


@pytest.mark.parametrize("name", list(SIZES))
def test_file_byte_for_byte(served, tree, name):
    # kept-open connection: exactly the file, nothing after it
    with connect(served.address) as sock:
        fetch(sock, tree, name)
        assert_clean_end(sock)
    # one request + half-close, read to EOF: the server closes after the file
    got, digest = download(served.address, name)
    assert (got, digest) == (tree.sizes[name], tree.digests[name])
    wait_no_connections(served.engine)


def test_several_names_on_one_connection(served, tree):
    names = ["1k.bin", "empty.bin", "1m.bin", "sub/inner.bin", "1k.bin", "empty.bin"]
    with connect(served.address) as sock:
        for name in names:
            fetch(sock, tree, name)
        for name in names:
            fetch(sock, tree, name, ending=b"\r\n")
        assert_clean_end(sock)
    assert served.server.requests == 2 * len(names)


def test_name_split_across_writes(served, tree):
    with connect(served.address) as sock:
        for piece in (b"1", b"k.b", b"in\r", b"\n"):
            sock.sendall(piece)
            time.sleep(0.05)
        got, digest = recv_digest(sock, tree.sizes["1k.bin"])
        assert (got, digest) == (tree.sizes["1k.bin"], tree.digests["1k.bin"])
        assert_clean_end(sock)


def test_pipelined_names_in_one_write(served, tree):
    """More names than the server keeps in flight, files and errors mixed,
    "\\n" and "\\r\\n" mixed, all in one write: answers come in order."""
    pattern = ["1k.bin", "empty.bin", "missing.bin", "1m.bin", "../x", "sub/inner.bin", "fifo"]
    names = pattern * 6
    request = b"".join(n.encode() + (b"\r\n" if i % 2 else b"\n") for i, n in enumerate(names))
    with connect(served.address) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)
        stream = bytearray()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            stream += chunk
        else:
            pytest.fail("server did not close after answering a half-closed pipeline")
    pos = 0
    for i, name in enumerate(names):
        if name in tree.data:
            data = tree.data[name]
            assert stream[pos:pos + len(data)] == data, f"answer {i} ({name}) differs"
            pos += len(data)
        else:
            end = stream.find(b"\r\n", pos)
            assert end >= 0, f"answer {i} ({name}): no error line"
            assert_error_line(bytes(stream[pos:end + 2]))
            pos = end + 2
    assert pos == len(stream), f"{len(stream) - pos} unexpected trailing bytes"


def test_request_then_half_close_always_closes(served, tree):
    """`printf 'name\\n' | nc -N`: the name and the FIN often arrive
    together, before the server reads; it must still close after the
    answer, every time."""
    hung, wrong = 0, []
    for _ in range(4):
        socks = []
        try:
            for _ in range(50):
                sock = connect(served.address, timeout=5)
                socks.append(sock)
                sock.sendall(b"1k.bin\n")
                sock.shutdown(socket.SHUT_WR)
            deadline = time.monotonic() + 3
            for sock in socks:
                sock.settimeout(max(0.05, deadline - time.monotonic()))
                try:
                    got = recv_digest(sock, 2 * MIB)
                except socket.timeout:
                    hung += 1
                    continue
                if got != (1024, tree.digests["1k.bin"]):
                    wrong.append(got[0])
        finally:
            for sock in socks:
                sock.close()
    assert not wrong, f"wrong answers (sizes {wrong})"
    assert hung == 0, f"{hung} of 200 half-closed connections were never closed by the server"


def test_half_close_without_request_closes(served):
    with connect(served.address) as sock:
        sock.shutdown(socket.SHUT_WR)
        assert sock.recv(100) == b""
    wait_no_connections(served.engine)


# -------------------------------------------------- refused names --

LONG = "a" * (DEFAULT_MAX_NAME + 1)

# (id, raw request line without its "\n", what the reason must contain or None)
REFUSED = [
    ("dotdot", b"../x", None),
    ("dotdot-passwd", b"../../etc/passwd", None),
    ("absolute", b"/etc/passwd", None),
    ("sub-dotdot", b"sub/../../x", None),
    ("dotdot-alone", b"..", None),
    ("dot-dotdot", b"./../x", None),
    ("symlink-to-file-outside", b"link_file", None),
    ("symlink-to-dir-outside", b"link_dir/secret.txt", None),
    ("symlink-dir-itself", b"link_dir", None),
    ("symlink-to-device", b"link_devnull", None),
    ("fifo", b"fifo", None),
    ("device", b"devnull", None),
    ("directory", b"sub", None),
    ("directory-slash", b"sub/", None),
    ("root-itself", b".", None),
    ("missing", b"missing.bin", None),
    ("too-long", LONG.encode(), "too long"),
    ("too-long-crlf", LONG.encode() + b"\r", "too long"),
    ("huge-name", b"b" * 100_000, "too long"),
    ("empty-line", b"", None),
    ("empty-line-crlf", b"\r", None),
    ("nul-after", b"1k.bin\x00", None),
    ("nul-inside", b"sub\x00/inner.bin", None),
    ("nul-first", b"\x001k.bin", None),
]


@pytest.mark.parametrize("line, reason_part", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_refused_name_gets_one_error_line(served, tree, line, reason_part):
    with connect(served.address) as sock:
        sock.sendall(line + b"\n")
        reason = assert_error_line(read_line(sock))
        if reason_part:
            assert reason_part in reason
        # the connection is still usable, and nothing else was sent in between
        fetch(sock, tree, "1k.bin")
        fetch(sock, tree, "sub/inner.bin", ending=b"\r\n")
        assert_clean_end(sock)


def test_fifo_with_a_waiting_writer_never_blocks(served, tree):
    """Many FIFO requests at once, from several clients, while files are
    being fetched: all answered with an error line, nobody waits."""
    def client(i):
        with connect(served.address, timeout=5) as sock:
            for _ in range(10):
                sock.sendall(b"fifo\n")
                assert_error_line(read_line(sock))
                fetch(sock, tree, "1k.bin")
    Workers(8, client).start().join(30)


def test_max_name_boundary(start_server, tree):
    served = start_server(max_name=len("sub/inner.bin"))
    with connect(served.address) as sock:
        fetch(sock, tree, "sub/inner.bin")
        sock.sendall(b"sub/inner.binx\n")
        assert "too long" in assert_error_line(read_line(sock))
        # the '\r' of a name exactly at the limit arrives alone
        sock.sendall(b"sub/inner.bin\r")
        time.sleep(0.05)
        sock.sendall(b"\n")
        got, digest = recv_digest(sock, tree.sizes["sub/inner.bin"])
        assert digest == tree.digests["sub/inner.bin"]
        assert_clean_end(sock)


def test_default_max_name_is_1024(served, tree):
    at_limit = "./" * 509 + "1k.bin"
    over = "./" * 509 + "/1k.bin"
    assert (len(at_limit), len(over)) == (1024, 1025)
    with connect(served.address) as sock:
        fetch(sock, tree, "1k.bin")
        sock.sendall(at_limit.encode() + b"\n")
        got, digest = recv_digest(sock, tree.sizes["1k.bin"])
        assert digest == tree.digests["1k.bin"], "a 1024-byte name must be accepted"
        sock.sendall(over.encode() + b"\n")
        assert "too long" in assert_error_line(read_line(sock))
        fetch(sock, tree, "1k.bin")
        assert_clean_end(sock)


# ---------------------------------------------------- concurrency --


def test_fifty_concurrent_clients(served, tree):
    start = threading.Barrier(50, timeout=20)
    plan = ["1m.bin", "1k.bin", "empty.bin", "sub/inner.bin", "1m.bin"]

    def client(i):
        with connect(served.address) as sock:
            start.wait()
            for name in plan[i % len(plan):] + plan[:i % len(plan)]:
                fetch(sock, tree, name, ending=b"\r\n" if i % 2 else b"\n")
            sock.sendall(b"missing.bin\n")
            assert_error_line(read_line(sock))
            assert_clean_end(sock)

    Workers(50, client).start().join(60)
    wait_no_connections(served.engine)
    assert served.server.requests == 50 * (len(plan) + 1)


@pytest.mark.parametrize("reset", [False, True], ids=["close", "reset"])
def test_client_vanishing_mid_transfer(served, tree, reset):
    """Clients that drop a 100 MiB transfer (FIN with unread data, or an RST
    via SO_LINGER 0) must not disturb the others or leak anything."""
    stop = threading.Event()
    served_ok = []

    def steady_client(i):
        with connect(served.address) as sock:
            while not stop.is_set() and len(served_ok) < 100_000:
                fetch(sock, tree, "1m.bin")
                fetch(sock, tree, "1k.bin")
                served_ok.append(i)
            assert_clean_end(sock)

    steady = Workers(3, steady_client).start()
    try:
        for i in range(6):
            abandon(served.address, BIG, read=(i + 1) * 64 * 1024, reset=reset)
        # one that asks and leaves at once, one that leaves with a name half sent
        with connect(served.address) as sock:
            sock.sendall(BIG.encode() + b"\n")
        with connect(served.address) as sock:
            sock.sendall(b"100m")
        # a complete 100 MiB download still works meanwhile
        assert download(served.address, BIG, timeout=60) == (BIG_SIZE, tree.digests[BIG])
    finally:
        stop.set()
        steady.join(60)
    assert served_ok, "steady clients were not served"
    wait_no_connections(served.engine)


def test_slow_reader_of_big_file_gets_it_all(served, tree):
    """A reader slower than the server (the socket buffer fills and the
    transmit has to wait) still gets exactly the file."""
    with connect(served.address, timeout=30) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        sock.sendall(b"1m.bin\n" * 4 + b"1k.bin\n")
        for _ in range(4):
            got, digest = recv_digest(sock, MIB, on_chunk=lambda n: time.sleep(0.001))
            assert (got, digest) == (MIB, tree.digests["1m.bin"])
        assert recv_digest(sock, 1024) == (1024, tree.digests["1k.bin"])
        assert_clean_end(sock)


def test_file_rewritten_in_place_is_served_with_its_new_bytes(start_server, tmp_path):
    """A file rewritten in place (same inode, new size) between two requests
    on one connection: the next answer must be exactly its new bytes, not
    its new bytes cut (or padded) to the size it had before.  Each answer
    is framed by an error line for a missing name, so a wrong length shows
    as wrong bytes instead of a hang."""
    root = tmp_path / "root"
    root.mkdir()
    path = root / "f.bin"
    path.write_bytes(b"v" * 1000)
    served = start_server(root=root)
    sock = connect(served.address, timeout=5)
    problems = []
    try:
        for i in range(200):
            content = os.urandom(1000 + (i % 50) * 37)
            with open(path, "r+b") as f:
                f.truncate(0)
                f.write(content)
            try:
                sock.sendall(b"f.bin\nnot-there\n")
                answer = bytearray()
                while not (answer.endswith(b"\r\n") and b"ERROR: " in answer[-80:]):
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionResetError("EOF")
                    answer += chunk
                    assert len(answer) < 1 << 20, "runaway answer"
                body = bytes(answer[:answer.rindex(b"ERROR: ")])
                if body != content:
                    problems.append(f"#{i}: {len(body)} bytes served, file has {len(content)}")
            except (ConnectionResetError, socket.timeout) as exc:
                problems.append(f"#{i}: {exc!r}")
                sock.close()
                sock = connect(served.address, timeout=5)
    finally:
        sock.close()
    assert not problems, f"{len(problems)} of 200 answers wrong: {problems[:5]}"
