"""examples/haproxy.cfg, run: HAProxy in front of two `python -m pyiocp
serve` instances of one folder.  Traffic reaches both, and SIGTERM to one
while clients keep asking (kept-alive and new connections, a few at once)
loses no request: every answer is 200 with the file's bytes.

The configuration tested is the example itself, with its three ports
replaced by free ones.  Without haproxy the tests skip, unless
PYIOCP_REQUIRE_HAPROXY=1 (CI sets it): then they fail.  127.0.0.1 only;
bounded in time; every process is stopped."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import pytest

from conftest import tool_env
from http_helpers import HttpConn, get
from test_cli import Server
from test_http_cli import HttpServer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "haproxy.cfg"
FRONTEND, SERVERS = "127.0.0.1:8080", ("127.0.0.1:8081", "127.0.0.1:8082")
FILES = {"small.txt": b"a small file, answered with its head in one send\n" * 20,
         "big.bin": os.urandom(384 * 1024)}
LOAD_SECONDS = 3.0
STOP_AFTER = 1.0
CLIENTS = ("keep-alive", "keep-alive", "new connection", "new connection")


def haproxy_binary() -> str:
    path = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/usr/local/sbin")
    if path is None:
        message = "haproxy is not installed (apt-get install haproxy)"
        if os.environ.get("PYIOCP_REQUIRE_HAPROXY") == "1":
            pytest.fail(f"{message}, and PYIOCP_REQUIRE_HAPROXY=1 requires it")
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as probe:   # free now; a race with other programs, unlikely
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def configuration(frontend_port: int, server_ports) -> str:
    """The example with its ports replaced (in directives, not comments),
    each exactly once."""
    lines = EXAMPLE.read_text().splitlines(keepends=True)
    for old, port in zip((FRONTEND, *SERVERS), (frontend_port, *server_ports)):
        pattern = re.compile(rf"(?<![\w.]){re.escape(old)}\b")
        found = [i for i, line in enumerate(lines)
                 if not line.lstrip().startswith("#") and pattern.search(line)]
        assert len(found) == 1, f"{old} in {len(found)} directives of {EXAMPLE.name}"
        lines[found[0]] = pattern.sub(f"127.0.0.1:{port}", lines[found[0]])
    return "".join(lines)


class HAProxy(Server):
    """haproxy -db (foreground) with its log on stdout."""

    def __init__(self, config: Path):
        self._spawn([haproxy_binary(), "-db", "-f", str(config)], env=tool_env())

    def log(self) -> str:
        return b"".join(self.stdout_lines()).decode(errors="replace") + self.stderr()


@pytest.fixture
def cluster(tmp_path, no_fd_leak):
    """(frontend address, [instance a, instance b], haproxy)."""
    haproxy_binary()
    root = tmp_path / "www"
    root.mkdir()
    for name, data in FILES.items():
        (root / name).write_bytes(data)
    started = []
    try:
        for _ in SERVERS:
            started.append(HttpServer(root, "--threads", "2").wait_startup())
        instances = list(started)
        frontend = ("127.0.0.1", free_port())
        config = tmp_path / "haproxy.cfg"
        config.write_text(configuration(frontend[1], [s.port for s in instances]))
        proxy = HAProxy(config)
        started.append(proxy)
        wait_until_answering(frontend, proxy)
        yield frontend, instances, proxy
    finally:
        for process in started:
            process.kill()


def wait_until_answering(frontend, proxy, timeout=15.0):
    deadline = time.monotonic() + timeout
    while True:
        try:
            with HttpConn(frontend, timeout=5) as conn:
                if conn.exchange(get("/small.txt?ready")).status == 200:
                    return
        except (OSError, AssertionError):
            pass
        if time.monotonic() > deadline or proxy.proc.poll() is not None:
            raise AssertionError(f"haproxy did not answer within {timeout} s; its log:\n"
                                 f"{proxy.log()}")
        time.sleep(0.1)


def served(instance: HttpServer, name: str) -> int:
    """GET /NAME requests in the instance's access log (not the health
    checks' HEAD /, nor the readiness probe's query)."""
    needle = f'"GET /{name} HTTP/1.1" 200'.encode()
    return sum(1 for line in instance.access_lines() if needle in line)


def wait_logged(instances, name: str, total: int, timeout=10.0) -> list:
    """Each instance's count once they add up to total (the access log is
    written by a thread of its own, a little after the answer)."""
    deadline = time.monotonic() + timeout
    while True:
        counts = [served(instance, name) for instance in instances]
        if sum(counts) >= total or time.monotonic() > deadline:
            return counts
        time.sleep(0.05)


def check(response, name: str) -> None:
    assert (response.status, response.body) == (200, FILES[name]), \
        f"GET /{name}: {response.status}, {len(response.body or b'')} bytes"


def test_traffic_reaches_both_instances(cluster):
    frontend, instances, _ = cluster
    for _ in range(20):
        with HttpConn(frontend) as conn:
            check(conn.exchange(get("/small.txt")), "small.txt")
    counts = wait_logged(instances, "small.txt", 20)
    assert sum(counts) == 20 and min(counts) > 0, counts


class Client(threading.Thread):
    """Requests small.txt and big.bin in turn until `deadline`, on one
    kept-alive connection or on a new one each time; any error or wrong
    answer is recorded, not raised."""

    def __init__(self, frontend, kind: str, deadline: float):
        super().__init__(daemon=True)
        self.frontend, self.kind, self.deadline = frontend, kind, deadline
        self.answered = 0
        self.failures: list = []

    def run(self):
        conn = None
        names = ("small.txt", "big.bin")
        try:
            while time.monotonic() < self.deadline:
                name = names[self.answered % 2]
                try:
                    if conn is None:
                        conn = HttpConn(self.frontend, timeout=10)
                    check(conn.exchange(get(f"/{name}")), name)
                    self.answered += 1
                except (OSError, AssertionError) as exc:
                    self.failures.append(f"{self.kind}, request {self.answered + 1} "
                                         f"(/{name}) at {time.monotonic():.3f}: {exc!r}")
                    if conn is not None:
                        conn.close()
                    conn = None
                if self.kind != "keep-alive" and conn is not None:
                    conn.close()
                    conn = None
        finally:
            if conn is not None:
                conn.close()


def test_sigterm_to_one_instance_loses_no_request(cluster):
    frontend, (a, b), proxy = cluster
    start = time.monotonic()
    clients = [Client(frontend, kind, start + LOAD_SECONDS) for kind in CLIENTS]
    for client in clients:
        client.start()
    time.sleep(STOP_AFTER)
    before = [served(a, "big.bin") + served(a, "small.txt"),
              served(b, "big.bin") + served(b, "small.txt")]
    stopped_at = time.monotonic()
    a.proc.send_signal(signal.SIGTERM)
    for client in clients:
        client.join(LOAD_SECONDS + 30)   # a request's own timeout is 10 s
    assert not any(client.is_alive() for client in clients), "a client did not finish"
    assert a.wait(20) == 0, a.stderr()
    failures = [failure for client in clients for failure in client.failures]
    answered = sum(client.answered for client in clients)
    assert not failures, (f"{len(failures)} of {answered + len(failures)} requests failed "
                          f"(SIGTERM at {stopped_at:.3f}):\n" + "\n".join(failures) +
                          f"\nhaproxy's log:\n{proxy.log()}\ninstance a's stderr:\n{a.stderr()}")
    assert answered >= 40, answered   # the load was real
    assert min(before) > 0, before     # both served before the stop
    after = served(b, "big.bin") + served(b, "small.txt")
    assert after > before[1], "instance b served nothing after the stop"
