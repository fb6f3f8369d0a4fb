"""The benchmark tools written in C: benchmarks/loadgen.c (here its http mode)
and the bare reference server benchmarks/bare/epoll_sendfile_http.c.

Both are built with the system C compiler (skipped when there is none), as
benchmarks/run_load.py builds loadgen.  loadgen runs for about a second per
case: against the bare server it must count answers and see no error; against
small Python servers that misbehave on purpose (a body cut short, chunked
encoding, no Content-Length, a longer body than announced) it must report
errors and exit 1; and answers split at odd places or arriving several in one
read must still parse, byte for byte.
"""
from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import socket
import subprocess
import threading
import time

import pytest

# Builds benchmarks/ from the checkout (not part of the package).
pytestmark = pytest.mark.source_tree

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(REPO, "benchmarks")
CFLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra"]


def _compiler():
    cc = os.environ.get("CC") or "cc"
    return shutil.which(cc)


@pytest.fixture(scope="module")
def tools(tmp_path_factory):
    cc = _compiler()
    if not cc:
        pytest.skip("no C compiler (cc) to build the benchmark tools")
    out = tmp_path_factory.mktemp("bench-tools")
    built = {}
    for name, src in (("loadgen", "loadgen.c"), ("bare", os.path.join("bare", "epoll_sendfile_http.c"))):
        exe = str(out / name)
        r = subprocess.run([cc, *CFLAGS, "-o", exe, os.path.join(BENCH, src)], capture_output=True, text=True)
        assert r.returncode == 0, f"compiling {src} failed:\n{r.stderr}"
        assert not r.stderr.strip(), f"compiler warnings for {src}:\n{r.stderr}"
        built[name] = exe
    return built


@pytest.fixture
def small_file(tmp_path):
    path = tmp_path / "small.bin"
    path.write_bytes(random.Random(7).randbytes(3000))
    return path


def run_loadgen(tools, port, *extra, timeout=30):
    cmd = [tools["loadgen"], "--mode", "http", "--host", "127.0.0.1", "--port", str(port),
           "--duration", "1", "--warmup", "0.2", "--connections", "2", *map(str, extra)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    lines = r.stdout.strip().splitlines()
    assert lines, f"loadgen printed no result (exit {r.returncode}):\n{r.stderr}"
    result = json.loads(lines[-1])
    return r.returncode, result, r.stderr


@contextlib.contextmanager
def bare_server(tools, path, *extra):
    port = _free_port()
    proc = subprocess.Popen([tools["bare"], "--port", str(port), "--file", str(path), *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        line = proc.stdout.readline()          # printed once it listens
        assert line.startswith("listening on"), f"bare server: {line!r} (exit {proc.poll()})"
        yield port
    finally:
        proc.terminate()
        rc = proc.wait(timeout=10)
    assert rc == 0, f"bare server exited {rc} after SIGTERM"


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ScriptedServer:
    """Answers every complete request head it receives with respond(index), the
    answers to the requests of one read sent together; then send(sock, data)
    puts the bytes on the wire (all at once by default)."""

    def __init__(self, respond, send=None):
        self.respond = respond
        self.send = send or (lambda sock, data: sock.sendall(data))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)       # close() does not wake a blocked accept()
        self.port = self.listener.getsockname()[1]
        self.stopping = False
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        while not self.stopping:
            try:
                sock, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            sock.settimeout(10)
            t = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, sock):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        buf, answered = b"", 0
        with sock:
            try:
                while not self.stopping:
                    data = sock.recv(65536)
                    if not data:
                        return
                    buf += data
                    out = b""
                    while b"\r\n\r\n" in buf:
                        head, buf = buf.split(b"\r\n\r\n", 1)
                        assert head.startswith(b"GET /small.bin HTTP/1.1\r\nHost: 127.0.0.1:"), head
                        answer = self.respond(answered)
                        answered += 1
                        if answer is None:          # close now
                            self.send(sock, out)
                            return
                        out += answer
                    if out:
                        self.send(sock, out)
            except OSError:
                return

    def close(self):
        self.stopping = True
        self.listener.close()
        for t in self.threads:
            t.join(timeout=5)


@contextlib.contextmanager
def scripted_server(respond, send=None):
    server = ScriptedServer(respond, send)
    try:
        yield server.port
    finally:
        server.close()


def ok_answer(body):
    return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(body) + body


# ------------------------------------------------------------ bare server --

def test_http_mode_against_the_bare_server(tools, small_file):
    with bare_server(tools, small_file) as port:
        rc, r, err = run_loadgen(tools, port, "--name", "small.bin", "--verify-every", "1",
                                 "--expect-file", small_file)
    assert rc == 0 and r["errors"] == 0, err
    assert r["mode"] == "http" and r["requests"] > 0 and r["content_checked"] is True
    assert r["answer_bytes"] == 3000 and r["pipeline"] == 1
    assert r["mbytes_per_s"] > 0 and r["wire_mbytes_per_s"] > r["mbytes_per_s"]
    assert r["p50_us"] > 0 and r["max_us"] >= r["p99_us"] >= r["p50_us"]


def test_http_mode_pipelined_against_the_bare_server(tools, small_file):
    with bare_server(tools, small_file, "--path", "/x/small") as port:
        rc, r, err = run_loadgen(tools, port, "--name", "/x/small", "--pipeline", "4", "--verify-every", "1",
                                 "--expect-file", small_file)
    assert rc == 0 and r["errors"] == 0, err
    assert r["requests"] > 0 and r["pipeline"] == 4


def test_http_mode_counts_a_404_as_an_error(tools, small_file):
    with bare_server(tools, small_file) as port:
        rc, r, err = run_loadgen(tools, port, "--name", "missing.bin")
    assert rc == 1 and r["errors"] > 0 and r["requests"] == 0
    assert "status 404" in err


# --------------------------------------------------- misbehaving servers --

BODY = random.Random(11).randbytes(1000)


@pytest.mark.parametrize("answer, message", [
    # Content-Length 1000, 100 bytes, then the connection is closed.
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + BODY[:100],
     "server closed the connection after 100 of 1000 body bytes"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n" + BODY + b"\r\n0\r\n\r\n",
     "Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\n" + BODY, "no Content-Length"),
    (ok_answer(BODY) + b"!", "not an HTTP status line"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\nConnection: close\r\n\r\n" + BODY, "Connection: close"),
], ids=["closed-mid-body", "chunked", "no-length", "body-too-long", "connection-close"])
def test_http_mode_reports_a_bad_server(tools, small_file, answer, message):
    def respond(i):
        return answer if i == 0 else None

    def send_then_close(sock, data):
        # One answer per connection, then EOF.  Corked, the bytes and the FIN
        # leave in one segment: loadgen sees them in one wake-up and must read
        # on to the EOF (no later edge would tell it about the close).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_CORK, 1)
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)

    with scripted_server(respond, send_then_close) as port:
        rc, r, err = run_loadgen(tools, port, "--name", "small.bin")
    assert rc == 1 and r["errors"] > 0, err
    assert r["requests"] == 0
    assert message in err, err


def test_http_mode_parses_split_and_coalesced_answers(tools, tmp_path):
    """Answers cut at random places (heads too, one byte at a time at
    times), and with --pipeline several answers in one read, mixed-case and
    padded header names and values: every body must still match."""
    expect = tmp_path / "body.bin"
    expect.write_bytes(BODY)
    heads = [b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
             b"HTTP/1.1 200 Fine\r\ncontent-length:1000\r\nX-Pad: " + b"p" * 3000 + b"\r\n\r\n",
             b"HTTP/1.1 200 OK\r\nServer: t\r\nCONTENT-LENGTH: \t1000 \r\nConnection: keep-alive\r\n\r\n"]
    rng = random.Random(5)

    def respond(i):
        return heads[i % len(heads)] + BODY

    def send_in_pieces(sock, data):
        if rng.random() < 0.3:
            sock.sendall(data)                  # several answers in one segment
            return
        pos = 0
        while pos < len(data):
            n = rng.choice((1, 2, 3, 17, 200, 1500, 4000))
            sock.sendall(data[pos:pos + n])
            pos += n
            time.sleep(0.0005)

    with scripted_server(respond, send_in_pieces) as port:
        rc, r, err = run_loadgen(tools, port, "--name", "small.bin", "--pipeline", "3", "--verify-every", "1",
                                 "--expect-file", expect)
    assert rc == 0 and r["errors"] == 0, err
    assert r["requests"] > 0 and r["content_checked"] is True


def test_http_mode_refuses_a_different_length(tools, small_file):
    with bare_server(tools, small_file) as port:
        rc, r, err = run_loadgen(tools, port, "--name", "small.bin", "--size", "2999")
    assert rc == 1 and r["errors"] > 0
    assert "Content-Length 3000, expected 2999" in err
