"""The launcher serving HTTP (`python -m pyiocp serve ROOT`, http being the
default protocol) as a real process: startup line, access log in Common
Log Format, --quiet, --no-listing, the timeouts, --max-connections, SIGTERM
during a download, and the server's descriptors after a burst."""
from __future__ import annotations

import calendar
import hashlib
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

import pytest

import pyiocp
from conftest import tool_env
from http_helpers import HttpConn, exchange, get, get_http_tree, head, require_tool
from raw_helpers import BIG, BIG_SIZE, KIB, MIB, Workers, wait_for
from test_cli import PACKAGE_PARENT, Server, child_env, run_pyiocp

STARTUP = re.compile(r"^pyiocp (\S+): serving (.+) over (\S+) on 127\.0\.0\.1:(\d+) "
                     r"\(backend (\S+), (\d+) threads?\)$")
CLF = re.compile(rb'^(\S+) - - \[(\d\d)/([A-Z][a-z]{2})/(\d{4}):(\d\d):(\d\d):(\d\d) \+0000\] '
                 rb'"((?:[^"\\]|\\.)*)" (\d{3}) (\d+|-)$')
MONTHS = {m: i for i, m in enumerate(["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug",
                                      "Sep", "Oct", "Nov", "Dec"], 1)}


@pytest.fixture(scope="session")
def tree(tmp_path_factory):
    return get_http_tree(tmp_path_factory)


class HttpServer(Server):
    """test_cli.Server (output readers, fds, kill...) for
    `python -m pyiocp serve ROOT --port 0 ARGS`, with no --protocol unless
    ARGS has one: http must be the default."""

    def __init__(self, root, *args):
        self.args = [sys.executable, "-m", "pyiocp", "serve", str(root), "--port", "0", *args]
        self.proc = subprocess.Popen(self.args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=child_env(), cwd=PACKAGE_PARENT)
        self.pid = self.proc.pid
        self.out, self.err = [], []
        self.changed = threading.Condition()
        self.readers = [threading.Thread(target=self._read, args=(self.proc.stdout, self.out),
                                         daemon=True),
                        threading.Thread(target=self._read, args=(self.proc.stderr, self.err),
                                         daemon=True)]
        for reader in self.readers:
            reader.start()
        self.startup = None
        self.port = None

    def wait_startup(self, timeout=15.0):
        line = self.wait_line(lambda l: True, timeout)
        if line is None:
            raise AssertionError(f"no startup line within {timeout} s (exit code "
                                 f"{self.proc.poll()}); stderr: {self.stderr()!r}")
        text = line.decode().rstrip("\n")
        match = STARTUP.match(text)
        assert match, f"unexpected startup line: {text!r}"
        self.startup = match
        self.port = int(match.group(4))
        return self

    def access_lines(self):
        return [l.rstrip(b"\n") for l in self.stdout_lines()[1:]]


@pytest.fixture
def cli(tree):
    """cli(*ARGS) -> a started HttpServer on tree.root; all killed at teardown."""
    servers = []

    def start(*args, root=None):
        server = HttpServer(tree.root if root is None else root, *args)
        servers.append(server)
        return server.wait_startup()

    yield start
    for server in servers:
        server.kill()


# ------------------------------------------------------------- startup --


def test_startup_line_and_http_is_the_default(cli, tree):
    server = cli("--quiet")
    version, root, protocol, _, backend, threads = server.startup.groups()
    assert (version, root, protocol) == (pyiocp.__version__, str(tree.root), "http")
    assert backend in pyiocp.available_backends() and int(threads) == pyiocp.default_threads()
    done = subprocess.run([require_tool("curl"), "-sS", "--noproxy", "*", "--max-time", "20",
                           f"http://127.0.0.1:{server.port}/1m.bin"], capture_output=True, timeout=30,
                          env=tool_env())
    assert done.returncode == 0, done.stderr
    assert hashlib.sha256(done.stdout).hexdigest() == tree.digests["1m.bin"]
    # --protocol http says the same
    explicit = cli("--quiet", "--protocol", "http", "--threads", "3")
    assert explicit.startup.group(3) == "http" and explicit.startup.group(6) == "3"
    assert exchange(explicit.address, get("/1k.bin")).body == tree.data["1k.bin"]


# ---------------------------------------------------------- access log --


def parse_clf(line: bytes):
    match = CLF.match(line)
    assert match, f"not a Common Log Format line: {line!r}"
    host, day, month, year, hh, mm, ss, request, status, size = match.groups()
    assert month.decode() in MONTHS, line
    stamp = calendar.timegm((int(year), MONTHS[month.decode()], int(day), int(hh), int(mm), int(ss)))
    assert abs(stamp - time.time()) < 120, f"log time is not now (UTC): {line!r}"
    return host.decode(), request, int(status), 0 if size == b"-" else int(size)


def test_access_log_common_log_format(cli, tree):
    server = cli()
    with HttpConn(server.address) as conn:
        etag = conn.exchange(get("/1k.bin"))["ETag"]
        conn.exchange(head("/1k.bin"))
        missing = conn.exchange(get("/missing.bin"))
        conn.exchange(get("/1m.bin", "Range: bytes=0-99"))
        conn.exchange(get("/1k.bin", f"If-None-Match: {etag}"))
        conn.exchange(get("/sub"))
        weird = conn.exchange(get('/we"ird\\x'))
        listing = conn.exchange(get("/listing/"))
    assert exchange(server.address, get("/sub/inner.bin", version="HTTP/1.0", host=None)).status == 200
    with HttpConn(server.address) as conn:
        assert conn.exchange(b"BAD\r\n\r\n").status == 400
    expected = [
        ("GET /1k.bin HTTP/1.1", 200, KIB),
        ("HEAD /1k.bin HTTP/1.1", 200, 0),
        ("GET /missing.bin HTTP/1.1", 404, missing.length),
        ("GET /1m.bin HTTP/1.1", 206, 100),
        ("GET /1k.bin HTTP/1.1", 304, 0),
        ("GET /sub HTTP/1.1", 301, 0),
        (None, weird.status, weird.length),
        ("GET /listing/ HTTP/1.1", 200, listing.length),
        ("GET /sub/inner.bin HTTP/1.0", 200, 3000),
        (None, 400, None),
    ]
    assert wait_for(lambda: len(server.access_lines()) >= len(expected), 10), server.access_lines()
    time.sleep(0.2)
    lines = server.access_lines()
    assert len(lines) == len(expected), lines
    # one line per answer, written when it went out (so across connections
    # not necessarily in request order)
    parsed = [(parse_clf(line), line) for line in lines]
    for request, status, size in expected:
        for i, ((host, logged_request, logged_status, logged_size), line) in enumerate(parsed):
            if (logged_status == status and (request is None or logged_request == request.encode())
                    and (size is None or logged_size == size) and host == "127.0.0.1"):
                del parsed[i]
                break
        else:
            raise AssertionError(f"no log line for {request} {status} {size}: {lines}")
    weird_line = [l for l in lines if b"/we" in l][0]
    # the client's quote is escaped, so the line still has exactly one request field
    assert parse_clf(weird_line)[1].startswith(b"GET /we") and b'we"ird' not in weird_line


def test_access_log_of_a_cut_download(cli, tree):
    server = cli()
    with HttpConn(server.address) as conn:
        conn.send(get("/" + BIG))
        conn.read_head()
        got = len(conn.buf)
        while got < MIB:
            got += len(conn.sock.recv(65536))
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    assert wait_for(lambda: len(server.access_lines()) >= 1, 10), server.stderr()
    [line] = server.access_lines()
    _, request, status, size = parse_clf(line)
    assert (request, status) == (f"GET /{BIG} HTTP/1.1".encode(), 200)
    assert size < BIG_SIZE, f"a cut transfer logged as complete: {line!r}"
    assert size >= got, f"the log counts less than the client read ({got}): {line!r}"


def test_quiet_has_no_access_log(cli, tree):
    server = cli("--quiet")
    with HttpConn(server.address) as conn:
        assert conn.exchange(get("/1k.bin")).status == 200
        assert conn.exchange(get("/missing")).status == 404
    assert exchange(server.address, b"BAD\r\n\r\n").status == 400
    time.sleep(0.3)
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait(15) == 0, server.stderr()
    server.wait_output_closed()
    assert len(server.stdout_lines()) == 1, server.stdout_lines()


# ------------------------------------------------------------- options --


BAD_TIMEOUTS = [("--header-timeout", "0"), ("--header-timeout", "-1"), ("--header-timeout", "nan"),
                ("--header-timeout", "soon"), ("--keepalive-timeout", "0"),
                ("--keepalive-timeout", "inf"), ("--keepalive-timeout", "x")]


@pytest.mark.parametrize("option, value", BAD_TIMEOUTS, ids=[f"{o}={v}" for o, v in BAD_TIMEOUTS])
def test_bad_timeout_exits_2(tree, option, value):
    done = run_pyiocp("serve", str(tree.root), "--port", "0", f"{option}={value}", timeout=20)
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 2, f"{option}={value}: exit code {done.returncode}, stderr {stderr!r}"
    assert done.stdout == b"" and "usage:" in stderr and option in stderr
    assert "Traceback" not in stderr


def test_no_listing(cli, tree):
    server = cli("--quiet", "--no-listing")
    with HttpConn(server.address) as conn:
        assert conn.exchange(get("/")).status == 403
        assert conn.exchange(get("/listing/")).status == 403
        assert conn.exchange(get("/withindex/")).body == tree.data["withindex/index.html"]
        assert conn.exchange(get("/listing/sp%20ace")).body == tree.data["listing/sp ace"]
    default = cli("--quiet")
    assert exchange(default.address, get("/listing/")).status == 200


def test_header_and_keepalive_timeouts(cli, tree):
    server = cli("--quiet", "--header-timeout", "0.5", "--keepalive-timeout", "0.7")
    with HttpConn(server.address) as idle, HttpConn(server.address) as slow:
        assert idle.exchange(get("/1k.bin")).status == 200
        idle_since = time.monotonic()
        slow.send(b"GET /1k.bin HTTP/1.1\r\nHo")
        slow_since = time.monotonic()
        results = {}

        def watch(key, conn, since):
            results[key] = (conn.closed_by_server(timeout=5), time.monotonic() - since)
        threads = [threading.Thread(target=watch, args=("idle", idle, idle_since), daemon=True),
                   threading.Thread(target=watch, args=("slow", slow, slow_since), daemon=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
    assert set(results) == {"idle", "slow"}, results
    assert 0.6 <= results["idle"][1] <= 1.6, f"keep-alive: closed after {results['idle'][1]:.2f} s"
    assert 0.4 <= results["slow"][1] <= 1.4, f"header: closed after {results['slow'][1]:.2f} s"


def test_max_connections_third_gets_503(cli, tree):
    server = cli("--quiet", "--max-connections", "2")
    with HttpConn(server.address) as first, HttpConn(server.address) as second:
        assert first.exchange(get("/1k.bin")).body == tree.data["1k.bin"]
        assert second.exchange(get("/1k.bin")).body == tree.data["1k.bin"]
        with HttpConn(server.address, timeout=3) as third:
            r = third.read_response()
            assert r.raw_head.startswith(b"HTTP/1.1 503 "), r.raw_head
            third.closed_by_server()
        assert first.exchange(get("/sub/inner.bin")).body == tree.data["sub/inner.bin"]
        assert second.exchange(head("/1m.bin")).status == 200

    def slot_free():
        try:
            return exchange(server.address, get("/1k.bin"), timeout=3).status == 200
        except (AssertionError, OSError):
            return False
    assert wait_for(slot_free, 5, interval=0.1), "slots were not given back"


# --------------------------------------------------------------- signals --


def test_sigterm_during_download_exits_0(cli, tree):
    server = cli("--quiet", "--drain-timeout", "3")
    with HttpConn(server.address, timeout=20, rcvbuf=256 * KIB) as conn:
        conn.send(get("/" + BIG))
        conn.read_head()
        digest = hashlib.sha256(bytes(conn.buf))
        got = len(conn.buf)
        conn.buf.clear()
        while got < MIB:
            chunk = conn.sock.recv(65536)
            assert chunk, "closed before the first MiB"
            digest.update(chunk)
            got += len(chunk)
        server.proc.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        deadline = signalled + 30
        while got < BIG_SIZE and time.monotonic() < deadline:
            try:
                chunk = conn.sock.recv(MIB)
            except ConnectionResetError:
                break
            if not chunk:
                break
            digest.update(chunk)
            got += len(chunk)
    rc = server.wait(15)
    stderr = server.stderr()
    assert rc == 0, f"exit code {rc} after SIGTERM during a download; stderr: {stderr[-800:]!r}"
    assert "Traceback" not in stderr
    assert got == BIG_SIZE and digest.hexdigest() == tree.digests[BIG], \
        f"the running download was cut at {got} bytes instead of drained"


# ----------------------------------------------------------- descriptors --


def abandon(address, reset: bool) -> None:
    with HttpConn(address) as conn:
        conn.send(get("/" + BIG))
        conn.read_head()
        if reset:
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


def test_server_fds_return_to_baseline_after_burst(cli, tree):
    server = cli()      # with the access log
    etag = exchange(server.address, head("/1k.bin"))["ETag"]
    # Warm-up: every file the burst asks for, so that descriptors the server
    # keeps on purpose (its open-file cache) are in the baseline.
    warm = ["/1k.bin", "/1m.bin", "/empty.bin", "/sub/inner.bin", "/cond.txt",
            "/withindex/index.html", "/withindex/", "/listing/", "/listing/a%26b", "/nope",
            "/%2e%2e/x", "/fifo", "/link_file", "/sub"]
    with HttpConn(server.address) as conn:
        for target in warm:
            conn.exchange(get(target))
    abandon(server.address, reset=False)
    time.sleep(0.3)
    baseline = server.fds()

    def request(i):
        kind = i % 10
        if kind == 0:
            r = exchange(server.address, get("/1k.bin", "Connection: close"))
            assert r.body == tree.data["1k.bin"]
        elif kind == 1:
            with HttpConn(server.address) as conn:
                assert conn.exchange(get("/1m.bin")).digest == tree.digests["1m.bin"]
                assert conn.exchange(head("/1m.bin")).status == 200
                assert conn.exchange(get("/nope")).status == 404
        elif kind == 2:
            sent = [get("/1k.bin", f"If-None-Match: {etag}"), get("/1m.bin", "Range: bytes=5-9"),
                    get("/empty.bin"), head("/sub/inner.bin"), get("/cond.txt", "Connection: close")]
            with HttpConn(server.address) as conn:
                conn.send(b"".join(sent))
                statuses = [conn.read_response(head_request=s.startswith(b"HEAD")).status
                            for s in sent]
                assert statuses == [304, 206, 200, 200, 200]
                conn.closed_by_server()
        elif kind == 3:
            assert exchange(server.address, get("/listing/")).status == 200
        elif kind == 4:
            with HttpConn(server.address) as conn:
                assert conn.exchange(b"GET / HTTP/1.1\r\nHost : x\r\n\r\n").status == 400
                conn.closed_by_server()
        elif kind in (5, 6):
            abandon(server.address, reset=kind == 6)
        elif kind == 7:
            HttpConn(server.address).close()
        elif kind == 8:
            with HttpConn(server.address) as conn:
                assert conn.exchange(get("/%2e%2e/x")).status == 403
                assert conn.exchange(get("/fifo")).status == 403
                assert conn.exchange(get("/link_file")).status == 403
                assert conn.exchange(get("/sub")).status == 301
                assert conn.exchange(get("/withindex/")).status == 200
        else:
            r = exchange(server.address, get("/1m.bin", version="HTTP/1.0", host=None))
            assert r.digest == tree.digests["1m.bin"]

    def client(worker):
        for i in range(worker, 200, 8):
            request(i)

    Workers(8, client).start().join(60)
    assert wait_for(lambda: server.fd_count() == len(baseline), 5), \
        f"server descriptors: {len(baseline)} before, {server.fd_count()} after: " \
        f"new {sorted(set(server.fds().items()) - set(baseline.items()))}"
    assert exchange(server.address, get("/1k.bin")).body == tree.data["1k.bin"]
    assert len(server.access_lines()) > 200
