"""Helpers shared by test_http.py and test_http_cli.py: the served tree (the
raw tests' tree plus what HTTP needs: a directory with hostile names,
index.html, typed files, a file with a fixed mtime) and a small HTTP/1.1
client on raw sockets that reads pipelined responses in order.  Every
socket has a timeout and every loop is bounded."""
from __future__ import annotations

import email.utils
import hashlib
import os
import re
import select
import shutil
import socket
import time
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import List, Optional, Tuple

import pytest

from raw_helpers import MIB, SOCKET_TIMEOUT, Tree, get_tree

# Directory entries whose names need escaping in HTML and in URLs.
HOSTILE_NAMES = ["<script>", "a&b", '"q"', "100%", "sp ace", "it's", "h#sh", "qu?ery",
                 "caf\u00e9.txt"]
HOSTILE_DIR = "<b>&dir"          # a sub-directory (listed with a trailing slash)
COND_MTIME = 1_600_000_000       # Sun, 13 Sep 2020 12:26:40 GMT
TYPED = {                        # name -> the Content-Type it must be served with
    "a.txt": "text/plain; charset=utf-8",
    "b.html": "text/html; charset=utf-8",
    "c.css": "text/css; charset=utf-8",
    "d.json": "application/json; charset=utf-8",
    "e.js": "text/javascript; charset=utf-8",
    "f.png": "image/png",
    "UPPER.TXT": "text/plain; charset=utf-8",
    "noext": "application/octet-stream",
    "g.unknownext": "application/octet-stream",
}
_HTTP_READY = False


def http_date(seconds: float) -> str:
    return email.utils.formatdate(seconds, usegmt=True)


def get_http_tree(tmp_path_factory) -> Tree:
    """get_tree()'s tree (files of 0 B .. 100 MiB, sub/, fifo, device,
    links out of root) plus, once per session:

    root/listing/<HOSTILE_NAMES>, root/listing/<b>&dir/x.txt
    root/withindex/index.html, root/withindex/other.txt
    root/emptydir/
    root/types/<TYPED>
    root/cond.txt            mtime COND_MTIME
    """
    global _HTTP_READY
    tree = get_tree(tmp_path_factory)
    if _HTTP_READY:
        return tree
    root = tree.root

    def put(name: str, data: bytes) -> None:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        tree.data[name] = data
        tree.sizes[name] = len(data)
        tree.digests[name] = hashlib.sha256(data).hexdigest()

    for i, name in enumerate(HOSTILE_NAMES):
        put(f"listing/{name}", f"file {i}: {name}\n".encode() + os.urandom(32))
    put(f"listing/{HOSTILE_DIR}/x.txt", b"inside the hostile directory\n")
    put("withindex/index.html", b"<!DOCTYPE html><title>the index</title>\n")
    put("withindex/other.txt", b"other\n")
    (root / "emptydir").mkdir(exist_ok=True)
    for name in TYPED:
        put(f"types/{name}", f"{name}\n".encode())
    put("cond.txt", b"conditional requests\n" * 10)
    os.utime(root / "cond.txt", (COND_MTIME, COND_MTIME))
    _HTTP_READY = True
    return tree


def require_tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` not found: these tests need it (apt-get install curl wget)")
    return path


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(MIB), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------ requests --


def req(method: str, target: str, *headers: str, version: str = "HTTP/1.1",
        host: Optional[str] = "test", body: bytes = b"") -> bytes:
    """One request head (and body) as bytes; headers as "Name: value"."""
    lines = [f"{method} {target} {version}"]
    if host is not None:
        lines.append(f"Host: {host}")
    lines.extend(headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def get(target: str, *headers: str, **kw) -> bytes:
    return req("GET", target, *headers, **kw)


def head(target: str, *headers: str, **kw) -> bytes:
    return req("HEAD", target, *headers, **kw)


# ----------------------------------------------------------- responses --

STATUS_LINE = re.compile(rb"^HTTP/1\.1 (\d{3}) ([^\r\n]*)\r\n$")
BIG_BODY = 4 * MIB   # bodies above this are hashed, not kept


@dataclass
class Response:
    status: int
    reason: str
    headers: List[Tuple[str, str]]
    body: Optional[bytes] = b""          # None if only hashed (big)
    length: int = 0                      # body bytes read
    digest: str = ""                     # sha256 of the body
    raw_head: bytes = b""

    def all(self, name: str) -> List[str]:
        name = name.lower()
        return [v for n, v in self.headers if n.lower() == name]

    def get(self, name: str) -> Optional[str]:
        values = self.all(name)
        assert len(values) <= 1, f"{name} appears {len(values)} times: {self.raw_head!r}"
        return values[0] if values else None

    def __getitem__(self, name: str) -> str:
        value = self.get(name)
        assert value is not None, f"no {name} header in {self.raw_head!r}"
        return value

    def has_token(self, name: str, token: str) -> bool:
        return any(token.lower() == t.strip().lower()
                   for v in self.all(name) for t in v.split(","))


class HttpConn:
    """A client connection with its own read buffer, so that pipelined
    responses are read one after the other without losing bytes."""

    def __init__(self, address, timeout: float = SOCKET_TIMEOUT, rcvbuf: Optional[int] = None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        try:
            self.sock.connect(tuple(address[:2]))
        except BaseException:
            self.sock.close()
            raise
        self.buf = bytearray()
        self.eof = False

    def __enter__(self) -> "HttpConn":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _fill(self, want: int = 65536) -> bool:
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(max(want, 65536))
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_head(self, limit: int = 65536) -> Tuple[int, str, List[Tuple[str, str]], bytes]:
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > limit:
                raise AssertionError(f"no end of head within {limit} bytes: {bytes(self.buf[:300])!r}")
            if not self._fill():
                raise AssertionError(f"connection closed before a complete response head; "
                                     f"got {bytes(self.buf[:300])!r}")
        end = self.buf.index(b"\r\n\r\n") + 4
        raw = bytes(self.buf[:end])
        del self.buf[:end]
        first, _, rest = raw.partition(b"\r\n")
        match = STATUS_LINE.match(first + b"\r\n")
        assert match, f"bad status line {first!r}"
        headers = []
        for line in rest[:-4].split(b"\r\n") if rest[:-4] else []:
            name, colon, value = line.partition(b":")
            assert colon and name and name == name.strip(), f"bad header line {line!r}"
            headers.append((name.decode("latin-1"), value.strip().decode("latin-1")))
        return int(match.group(1)), match.group(2).decode("latin-1"), headers, raw

    def read_response(self, head_request: bool = False) -> Response:
        status, reason, headers, raw = self.read_head()
        r = Response(status, reason, headers, raw_head=raw)
        assert r.get("Transfer-Encoding") is None, f"unexpected Transfer-Encoding: {raw!r}"
        if head_request or status == 304 or 100 <= status < 200 or status == 204:
            r.digest = sha256(b"")
            return r
        length = r.get("Content-Length")
        assert length is not None and length.isdigit(), f"no usable Content-Length: {raw!r}"
        r.length = int(length)
        digest = hashlib.sha256()
        keep = r.length <= BIG_BODY
        parts = []
        left = r.length
        while left:
            if not self.buf and not self._fill(min(left, MIB)):
                raise AssertionError(f"closed after {r.length - left} of {r.length} body bytes "
                                     f"of {raw[:80]!r}")
            take = bytes(self.buf[:left])
            del self.buf[:len(take)]
            left -= len(take)
            digest.update(take)
            if keep:
                parts.append(take)
        r.digest = digest.hexdigest()
        r.body = b"".join(parts) if keep else None
        return r

    def exchange(self, data: bytes, head_request: Optional[bool] = None) -> Response:
        self.send(data)
        if head_request is None:
            head_request = data.startswith(b"HEAD ")
        return self.read_response(head_request)

    def closed_by_server(self, timeout: float = 3.0) -> str:
        """Waits for the server to close ("eof" or "reset"); fails if it
        sends anything more or keeps the connection open."""
        assert not self.buf, f"unexpected bytes after the response: {bytes(self.buf[:200])!r}"
        if self.eof:
            return "eof"
        deadline = time.monotonic() + timeout
        old = self.sock.gettimeout()
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"the server did not close the connection within {timeout} s")
                self.sock.settimeout(left)
                try:
                    chunk = self.sock.recv(4096)
                except ConnectionResetError:
                    return "reset"
                except socket.timeout:
                    continue
                if not chunk:
                    self.eof = True
                    return "eof"
                raise AssertionError(f"unexpected bytes instead of a close: {chunk[:200]!r}")
        finally:
            self.sock.settimeout(old)

    def still_open(self, wait: float = 0.2) -> bool:
        """True if, after `wait` seconds, the server has neither closed nor
        sent anything."""
        if self.eof or self.buf:
            return False
        readable, _, _ = select.select([self.sock], [], [], wait)
        return not readable


def exchange(address, data: bytes, head_request: Optional[bool] = None,
             timeout: float = SOCKET_TIMEOUT) -> Response:
    """One request on a fresh connection."""
    with HttpConn(address, timeout=timeout) as conn:
        return conn.exchange(data, head_request)


def assert_served(address, tree: Tree, name: str = "1k.bin") -> None:
    """A fresh connection still gets a file: the server is still serving."""
    r = exchange(address, get("/" + name))
    assert r.status == 200, r.raw_head
    assert r.digest == tree.digests[name]


# ------------------------------------------------------------- listing --


class LinkParser(HTMLParser):
    """(href, text) of every <a>, and the <title>, entities decoded."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links: List[Tuple[str, str]] = []
        self.title = ""
        self._href: Optional[str] = None
        self._text: List[str] = []
        self._in_title = False

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self._href = dict(attrs).get("href")
            self._text = []
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag):
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text)))
            self._href = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._href is not None:
            self._text.append(data)
        if self._in_title:
            self.title += data


def parse_listing(html: bytes) -> LinkParser:
    parser = LinkParser()
    parser.feed(html.decode("utf-8"))
    parser.close()
    return parser
