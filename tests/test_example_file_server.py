"""examples/file_server.py, served in-process: answers, errors, and flow
control against a client that pipelines names without reading."""
from __future__ import annotations

import importlib.util
import os
import socket
import time

import pytest

from conftest import open_fds, recv_exactly

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "examples", "file_server.py")


@pytest.fixture
def file_server(make_engine, tmp_path):
    spec = importlib.util.spec_from_file_location("file_server_example", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(1 << 20))
    (root / "small.txt").write_bytes(b"hello\n")

    class Server(module.FileServer):
        pass

    Server.root = os.path.realpath(root)
    Server.root_fd = os.open(Server.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Server)
    engine.start()
    yield listener.address, root
    os.close(Server.root_fd)


def test_answers_files_and_errors_in_order(file_server):
    address, root = file_server
    with socket.create_connection(address, timeout=10) as sock:
        sock.sendall(b"small.txt\nmissing\n../etc/passwd\nsmall.txt\n")
        sock.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data == (b"hello\n" + b"ERROR: file not found\r\n"
                    + b"ERROR: path escapes root\r\n" + b"hello\n")


def test_pipelined_names_without_reading_hold_few_descriptors(file_server):
    """500 names of a 1 MiB file, answers not read for a while: the server
    pauses at its high mark and opens only a few files, instead of one
    descriptor and one queued transmit per name; then all 500 arrive."""
    address, root = file_server
    expected = (root / "big.bin").read_bytes()
    before = len(open_fds())
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(address)
    with sock:
        sock.sendall(b"big.bin\n" * 500)
        time.sleep(0.5)
        held = len(open_fds()) - before - 1        # minus the client socket
        assert held <= 4, held
        for _ in range(500):
            assert recv_exactly(sock, len(expected)) == expected


def test_names_then_half_close_are_all_answered(file_server):
    """The client pipelines 20 names of a 1 MiB file and half-closes at
    once, before the server could answer them (it pauses at its high mark):
    every answer still comes, then the end of stream."""
    address, root = file_server
    expected = (root / "big.bin").read_bytes()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(30)
    sock.connect(address)
    with sock:
        sock.sendall(b"big.bin\n" * 20)
        sock.shutdown(socket.SHUT_WR)
        for index in range(20):
            assert recv_exactly(sock, len(expected)) == expected, f"answer {index}"
        assert sock.recv(1) == b""
