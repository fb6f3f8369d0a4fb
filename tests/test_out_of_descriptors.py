"""A server that ran out of descriptors (EMFILE) and recovered stops at
once on SIGTERM (issue 13's third break: about 20 s on io_uring and 5 s on
epoll "with nothing in flight").

What made those stops slow was not the descriptor limit but a connection
lingering when the SIGTERM came: one whose answer the server had sent and
closed (a FIN after it), read by a client that kept its socket open, as a
probe checking "does it serve again?" does.  Before 22e80e1 the stop did not
end a linger that had begun before it: epoll waited for the linger time
(5 s), and io_uring never closed the connection, so the stop waited out its
drain timeout (10 s) and the 10 s after the abort.  (Built at 1c3a768, the
scenario below takes 20.0 s and 4.6 s, with or without running out of
descriptors first.)  Each test runs that scenario after a real EMFILE, checked
in the server's own accept-pause counter, and asserts the stop takes well
under its drain timeout."""
from __future__ import annotations

import re
import resource
import signal
import socket
import subprocess
import sys
import time

import pytest

from test_cli import PACKAGE_PARENT, child_env

LIMIT = 64          # RLIMIT_NOFILE of the server: a few dozen connections
DRAIN = 10.0        # the servers' drain timeout (serve's default)

PYTHON_SERVER = """
import sys, pyiocp
class Answer(pyiocp.Handler):
    def data_received(self, conn, data):
        conn.send(b"ok")
        if b"q" in data:
            conn.close()      # answered and closed: lingers while the peer stays
        else:
            conn.recv()
engine = pyiocp.Engine(backend=sys.argv[1], threads=2)
listener = engine.listen(("127.0.0.1", 0), Answer)
print(f"serving on 127.0.0.1:{listener.address[1]} (backend)", flush=True)
engine.run(drain_timeout=%r)
print("accept pauses", engine.stats()["accept_pauses"], flush=True)
""" % DRAIN


def _low_descriptor_limit():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (LIMIT, hard))


class _Server:
    def __init__(self, kind, backend, tmp_path):
        self.kind = kind
        root = tmp_path / "root"
        root.mkdir()
        (root / "a.txt").write_bytes(b"hello\n")
        if kind == "python handler":
            args = ["-c", PYTHON_SERVER, backend]
        else:
            args = ["-m", "pyiocp", "serve", str(root), "--port", "0", "--backend", backend,
                    "--threads", "2", "--quiet", "--metrics", "127.0.0.1:0",
                    "--drain-timeout", str(DRAIN)]
            if kind == "serve --workers 2":
                args += ["--workers", "2"]
        self.proc = subprocess.Popen([sys.executable, *args], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     env=child_env(), cwd=PACKAGE_PARENT,
                                     preexec_fn=_low_descriptor_limit)
        self.port = self.metrics_port = None
        while self.port is None or (kind != "python handler" and self.metrics_port is None):
            line = self.proc.stdout.readline().decode()
            assert line, f"the server exited: {self.proc.stderr.read().decode()}"
            metrics = re.search(r"metrics at http://127\.0\.0\.1:(\d+)/metrics$", line.strip())
            serving = re.search(r"127\.0\.0\.1:(\d+) \(backend", line)
            if metrics:
                self.metrics_port = int(metrics.group(1))
            elif serving:
                self.port = int(serving.group(1))

    @property
    def http(self):
        return self.kind != "python handler"

    def request(self, close=False):
        if not self.http:
            return b"q" if close else b"x"
        return (b"GET /a.txt HTTP/1.1\r\nHost: test\r\n" +
                (b"Connection: close\r\n" if close else b"") + b"\r\n")

    def answered(self, data):
        return b"hello\n" in data if self.http else data.startswith(b"ok")

    def serves(self, timeout=1.0):
        """One request answered on a fresh connection (closed after)."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as sock:
                sock.sendall(self.request())
                data = b""
                while not self.answered(data):
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                return self.answered(data)
        except OSError:
            return False

    def lingering_probe(self):
        """A request the server answers and closes; its answer and FIN are
        read, but the socket stays open: the server's side lingers."""
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        sock.sendall(self.request(close=True))
        data = b""
        while chunk := sock.recv(4096):
            data += chunk
        assert self.answered(data), data
        return sock

    def accept_pauses(self):
        if not self.http:
            return None
        with socket.create_connection(("127.0.0.1", self.metrics_port), timeout=5) as sock:
            sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            text = b""
            while chunk := sock.recv(65536):
                text += chunk
        match = re.search(rb"^pyiocp_accept_pauses_total (\d+)", text, re.M)
        assert match, text[-2000:]
        return int(match.group(1))


def test_http_answers_503_not_403_when_out_of_descriptors(backend, tmp_path):
    """A file the server cannot open for want of descriptors is the
    server's passing trouble (503), not a forbidden file (403); once
    descriptors are free again the same file is served."""
    server = _Server("serve", backend, tmp_path)
    names = [f"b{i}.txt" for i in range(20)]   # never opened yet: not in the file cache
    for name in names:
        (tmp_path / "root" / name).write_bytes(b"later\n")
    keep, clients = None, []
    try:
        keep = socket.create_connection(("127.0.0.1", server.port), timeout=5)
        keep.sendall(server.request())
        assert b"hello\n" in _read_answer(keep)
        for _ in range(LIMIT + 10):       # every descriptor the server may have
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            clients.append(sock)
        # the server accepts them as it can: ask for new files until one
        # cannot be opened
        for name in names:
            time.sleep(0.1)
            keep.sendall(f"GET /{name} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            answer = _read_answer(keep)
            if not answer.startswith(b"HTTP/1.1 200 "):
                break
        assert answer.startswith(b"HTTP/1.1 503 "), answer
        for sock in clients:
            sock.close()
        clients.clear()
        deadline = time.monotonic() + 10
        while True:
            keep.sendall(f"GET /{name} HTTP/1.1\r\nHost: test\r\n\r\n".encode())
            answer = _read_answer(keep)
            if answer.startswith(b"HTTP/1.1 200 "):
                break
            assert time.monotonic() < deadline, answer
            time.sleep(0.05)
        assert answer.endswith(b"later\n")
    finally:
        for sock in clients:
            sock.close()
        if keep is not None:
            keep.close()
        server.proc.kill()
        server.proc.wait()


def _read_answer(sock):
    """One HTTP answer with a Content-Length body, read whole."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"Content-Length: (\d+)", head, re.I).group(1))
    while len(body) < length:
        chunk = sock.recv(4096)
        assert chunk, data
        body += chunk
    return head + b"\r\n\r\n" + body


@pytest.mark.parametrize("kind", ["serve", "serve --workers 2", "python handler"])
def test_sigterm_after_running_out_of_descriptors_stops_at_once(backend, kind, tmp_path):
    server = _Server(kind, backend, tmp_path)
    clients, probe = [], None
    try:
        assert server.serves(timeout=5)
        # more connections than its descriptors: accepting pauses (EMFILE),
        # the rest wait in the backlog
        for _ in range((LIMIT + 30) * (2 if "workers" in kind else 1)):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
            clients.append(sock)
            sock.sendall(server.request())
        time.sleep(0.3)
        for sock in clients:
            sock.close()
        clients.clear()
        deadline = time.monotonic() + 15
        while not server.serves():
            assert time.monotonic() < deadline, "never served again"
            time.sleep(0.05)
        pauses = server.accept_pauses()
        assert pauses is None or pauses >= 1, "the server never ran out of descriptors"
        probe = server.lingering_probe()
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        try:
            out, err = server.proc.communicate(timeout=DRAIN + 25)
        except subprocess.TimeoutExpired:
            pytest.fail("SIGTERM did not stop the server")
        elapsed = time.monotonic() - started
    finally:
        for sock in clients:
            sock.close()
        if probe is not None:
            probe.close()
        if server.proc.poll() is None:
            server.proc.kill()
            server.proc.wait()
    assert server.proc.returncode == 0, err.decode()
    assert elapsed < 3.0, f"SIGTERM took {elapsed:.1f} s to stop it (drain timeout {DRAIN} s)"
    if not server.http:
        match = re.search(rb"accept pauses (\d+)", out)
        assert match and int(match.group(1)) >= 1, "the server never ran out of descriptors"
