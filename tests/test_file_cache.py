"""The native handlers keep served files open between requests (a hit costs
no openat2/fstat): a file that changes must be served as it is now."""
from __future__ import annotations

import os
import socket
import time

import pytest

import pyiocp
from conftest import connect, recv_until_eof


def fetch(address, name: bytes) -> bytes:
    """The whole answer: half-closing makes the server close once it is sent.
    A reset (the file changed size under a transmit) reads as None."""
    with connect(address) as sock:
        sock.sendall(name + b"\n")
        sock.shutdown(socket.SHUT_WR)
        try:
            return recv_until_eof(sock)
        except ConnectionResetError:
            return None


@pytest.fixture
def served(make_engine, tmp_path):
    engine = make_engine()
    server = pyiocp.RawFileServer(tmp_path)
    listener = engine.listen(("127.0.0.1", 0), server)
    engine.start()
    yield tmp_path, listener.address
    del server


def eventually(check, timeout=0.5):
    """inotify invalidates asynchronously: allow it a moment, but less than
    the cache's maximum age (1 s), so that only the invalidation can pass."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.01)


def test_rewritten_file_is_served_new(served):
    root, address = served
    (root / "f.txt").write_bytes(b"first version\n")
    assert fetch(address, b"f.txt") == b"first version\n"
    assert fetch(address, b"f.txt") == b"first version\n"   # now cached
    (root / "f.txt").write_bytes(b"second, longer version\n")
    assert eventually(lambda: fetch(address, b"f.txt") == b"second, longer version\n")


def test_replaced_by_rename_is_served_new(served):
    root, address = served
    (root / "g.txt").write_bytes(b"old")
    assert fetch(address, b"g.txt") == b"old"
    (root / "g.tmp").write_bytes(b"new!")
    os.replace(root / "g.tmp", root / "g.txt")
    assert eventually(lambda: fetch(address, b"g.txt") == b"new!")


def test_deleted_file_is_not_found(served):
    root, address = served
    (root / "h.txt").write_bytes(b"here")
    assert fetch(address, b"h.txt") == b"here"
    os.unlink(root / "h.txt")
    assert eventually(lambda: fetch(address, b"h.txt") == b"ERROR: file not found\r\n")


def test_file_in_subdirectory_replaced_by_symlink_out_of_root(served, tmp_path_factory):
    root, address = served
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret").write_bytes(b"SECRET")
    (root / "sub").mkdir()
    (root / "sub" / "f").write_bytes(b"inside")
    assert fetch(address, b"sub/f") == b"inside"
    os.unlink(root / "sub" / "f")
    os.symlink(outside / "secret", root / "sub" / "f")
    assert eventually(lambda: fetch(address, b"sub/f") == b"ERROR: path escapes root\r\n")
