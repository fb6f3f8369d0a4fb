"""Helpers shared by test_raw_protocol.py and test_cli.py: the served tree
(built once per session) and small raw-protocol client functions.  Every
socket made here has a timeout and every loop is bounded."""
from __future__ import annotations

import hashlib
import os
import socket
import stat
import struct
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Optional, Tuple

KIB = 1024
MIB = 1024 * KIB
BIG = "100m.bin"
BIG_SIZE = 100 * MIB
SIZES = {"empty.bin": 0, "1k.bin": KIB, "1m.bin": MIB, BIG: BIG_SIZE}
SECRET = b"SECRET-OUTSIDE-ROOT\n"
# Longest name a server with the default max_name accepts.
DEFAULT_MAX_NAME = 1024
SOCKET_TIMEOUT = 10.0


@dataclass
class Tree:
    base: Path          # parent of root: holds things that must stay unreachable
    root: Path          # what the server serves
    sizes: Dict[str, int] = field(default_factory=dict)
    digests: Dict[str, str] = field(default_factory=dict)
    data: Dict[str, bytes] = field(default_factory=dict)   # files up to 1 MiB
    device_is_node: bool = False

    def path(self, name: str) -> Path:
        return self.root / name


_TREE: Optional[Tree] = None


def _write_big(path: Path, size: int) -> str:
    """size bytes of random data, 1 MiB blocks made unique by a counter
    header (so a repeated or skipped block changes the digest); fast."""
    block = os.urandom(MIB)
    digest = hashlib.sha256()
    with open(path, "wb") as f:
        for i in range(size // MIB):
            chunk = i.to_bytes(8, "big") + block[8:]
            f.write(chunk)
            digest.update(chunk)
        rest = os.urandom(size % MIB)
        f.write(rest)
        digest.update(rest)
    return digest.hexdigest()


def get_tree(tmp_path_factory) -> Tree:
    """The served tree, built once per session (both test modules use it):

    root/empty.bin 1k.bin 1m.bin 100m.bin   files of 0 B, 1 KiB, 1 MiB, 100 MiB
    root/sub/inner.bin                      a file in a sub-directory
    root/fifo                               a named pipe
    root/devnull                            a char device (1,3) if mknod works
    root/link_file -> base/outside/secret.txt
    root/link_dir  -> base/outside
    root/link_devnull -> /dev/null
    base/x, base/outside/secret.txt         must never be served
    """
    global _TREE
    if _TREE is not None:
        return _TREE
    base = tmp_path_factory.mktemp("raw-tree")
    root = base / "root"
    outside = base / "outside"
    root.mkdir()
    outside.mkdir()
    (base / "x").write_bytes(SECRET)
    (outside / "secret.txt").write_bytes(SECRET)
    (outside / "x").write_bytes(SECRET)
    tree = Tree(base=base, root=root)
    for name, size in SIZES.items():
        if size > MIB:
            tree.digests[name] = _write_big(root / name, size)
        else:
            data = os.urandom(size)
            (root / name).write_bytes(data)
            tree.data[name] = data
            tree.digests[name] = hashlib.sha256(data).hexdigest()
        tree.sizes[name] = size
    (root / "sub").mkdir()
    inner = os.urandom(3000)
    (root / "sub" / "inner.bin").write_bytes(inner)
    tree.data["sub/inner.bin"] = inner
    tree.sizes["sub/inner.bin"] = len(inner)
    tree.digests["sub/inner.bin"] = hashlib.sha256(inner).hexdigest()
    os.mkfifo(root / "fifo")
    try:
        os.mknod(root / "devnull", stat.S_IFCHR | 0o600, os.makedev(1, 3))
        tree.device_is_node = True
    except PermissionError:
        # not root: a symbolic link to the device (refused anyway, as escaping)
        os.symlink("/dev/null", root / "devnull")
    os.symlink(outside / "secret.txt", root / "link_file")
    os.symlink(outside, root / "link_dir")
    os.symlink("/dev/null", root / "link_devnull")
    _TREE = tree
    return tree


# ------------------------------------------------------------- client --


def connect(address, timeout: float = SOCKET_TIMEOUT) -> socket.socket:
    return socket.create_connection(address[:2], timeout=timeout)


def recv_digest(sock: socket.socket, size: int, on_chunk: Optional[Callable[[int], None]] = None
                ) -> Tuple[int, str]:
    """Reads up to `size` bytes (less if the peer closes first); returns
    (bytes read, sha256 hex).  Bounded by the socket timeout per recv."""
    digest = hashlib.sha256()
    buf = bytearray(1 * MIB)
    view = memoryview(buf)
    got = 0
    while got < size:
        n = sock.recv_into(view, min(size - got, len(buf)))
        if n == 0:
            break
        digest.update(view[:n])
        got += n
        if on_chunk:
            on_chunk(got)
    return got, digest.hexdigest()


def read_line(sock: socket.socket, limit: int = 4096) -> bytes:
    """Reads one "\\r\\n"-terminated line without reading past it."""
    line = bytearray()
    while not line.endswith(b"\r\n"):
        if len(line) >= limit:
            raise AssertionError(f"no line end within {limit} bytes: {bytes(line[:200])!r}...")
        byte = sock.recv(1)
        if not byte:
            raise AssertionError(f"connection closed in the middle of a line: {bytes(line)!r}")
        line += byte
    return bytes(line)


def assert_error_line(line: bytes) -> str:
    assert line.startswith(b"ERROR: ") and line.endswith(b"\r\n"), line
    reason = line[len(b"ERROR: "):-2]
    assert reason and b"\r" not in reason and b"\n" not in reason, line
    assert SECRET.strip() not in line, line
    return reason.decode("ascii", "replace")


def fetch(sock: socket.socket, tree: Tree, name: str, ending: bytes = b"\n") -> None:
    """Asks for `name` on an open connection and checks the exact bytes."""
    sock.sendall(name.encode() + ending)
    size = tree.sizes[name]
    got, digest = recv_digest(sock, size)
    assert got == size, f"{name}: got {got} of {size} bytes"
    assert digest == tree.digests[name], f"{name}: sha256 differs"


def assert_clean_end(sock: socket.socket) -> None:
    """Half-closes; the server must then close without sending anything
    more (so no stray bytes followed the answers)."""
    sock.shutdown(socket.SHUT_WR)
    rest = bytearray()
    deadline = time.monotonic() + SOCKET_TIMEOUT
    while time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    else:
        raise AssertionError("server did not close after the half-close")
    assert bytes(rest) == b"", f"unexpected trailing bytes: {bytes(rest[:200])!r}"


def download(address, name: str, timeout: float = 10.0) -> Tuple[int, str]:
    """One request with a half-close, read to EOF: (bytes, sha256 hex)."""
    with connect(address, timeout=timeout) as sock:
        sock.sendall(name.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        return recv_digest(sock, 2 * BIG_SIZE)   # bounded: more than any served file


def abandon(address, name: str = BIG, read: int = 256 * KIB, reset: bool = False) -> None:
    """Starts a download, reads a little, then closes (reset: with
    SO_LINGER 0, so the peer gets an RST)."""
    sock = connect(address)
    try:
        sock.sendall(name.encode() + b"\n")
        got = 0
        while got < read:
            chunk = sock.recv(min(65536, read - got))
            if not chunk:
                raise AssertionError(f"server closed after {got} bytes of {name}")
            got += len(chunk)
        if reset:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    finally:
        sock.close()


def wait_for(predicate: Callable[[], bool], timeout: float, interval: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class Workers:
    """Runs fn(i) in n threads; join() re-raises the first failure and
    fails if a thread does not finish in time."""

    def __init__(self, n: int, fn: Callable[[int], None]):
        self.errors = []
        self.threads = [threading.Thread(target=self._run, args=(fn, i), daemon=True)
                        for i in range(n)]

    def _run(self, fn, i):
        try:
            fn(i)
        except BaseException as exc:  # reported by join()
            self.errors.append((i, exc))

    def start(self) -> "Workers":
        for t in self.threads:
            t.start()
        return self

    def join(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for t in self.threads:
            t.join(max(0.0, deadline - time.monotonic()))
        alive = [t.name for t in self.threads if t.is_alive()]
        assert not alive, f"{len(alive)} client threads still running after {timeout} s"
        if self.errors:
            i, exc = self.errors[0]
            raise AssertionError(f"{len(self.errors)} client(s) failed; client {i}: {exc!r}") from exc
