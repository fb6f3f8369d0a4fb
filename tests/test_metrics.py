"""Metrics (issue 12, section 2): Engine.stats() counters from C, the
Prometheus endpoint an engine serves (Engine.listen_metrics, `serve
--metrics`), the areas pre-fork workers share, and `info --live`.

Every scrape is parsed with prometheus_client's own parser, so a line the
format does not allow fails here, as it would fail a real Prometheus."""
from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

import pyiocp
from pyiocp import _core
from conftest import recv_exactly
from test_cli import Server, run_pyiocp
from test_workers import alive, wait_for

BIG = 200_000   # sent by a transmit: bigger than the HTTP server's in-memory files


@pytest.fixture
def root(tmp_path):
    (tmp_path / "small.txt").write_bytes(b"hello\n")
    (tmp_path / "big.bin").write_bytes(os.urandom(BIG))
    return tmp_path


def scrape(address, path="/metrics"):
    with urllib.request.urlopen(f"http://{address[0]}:{address[1]}{path}", timeout=10) as answer:
        assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return answer.read().decode()


def samples(text):
    """{(name, frozenset(labels)): value}, through prometheus_client's parser."""
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, frozenset(sample.labels.items()))
            assert key not in found, f"sample twice: {key}"
            found[key] = sample.value
    return found


def value(found, name, **labels):
    return found[(name, frozenset(labels.items()))]


def http_get(address, path):
    try:
        with urllib.request.urlopen(f"http://{address[0]}:{address[1]}{path}",
                                    timeout=10) as answer:
            return answer.status, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


class Echo(pyiocp.Handler):
    def connection_made(self, conn):
        conn.recv()

    def data_received(self, conn, data):
        conn.send(data)
        conn.recv()


# ------------------------------------------------------------- stats() --


def test_stats_count_requests_bytes_and_python_batches(make_engine, backend):
    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Echo)
    engine.start()
    messages = [b"x" * n for n in (1, 100, 5000)]
    with socket.create_connection(listener.address, timeout=10) as client:
        for message in messages:
            client.sendall(message)
            assert recv_exactly(client, len(message)) == message
    sent = sum(map(len, messages))
    assert wait_for(lambda: engine.stats()["connections"] == 0)
    stats = engine.stats()
    assert stats["backend"] == backend and stats["backend_note"] == ""
    assert stats["accepted"] == 1 and stats["connections_opened"] == 1
    assert stats["connections_closed"] == 1
    assert stats["received_bytes"] == sent            # the recvs completed with them
    assert stats["sent_bytes"] == {"memory": sent, "file": 0}
    assert stats["requests"]["send"] == len(messages)
    assert stats["requests"]["recv"] == len(messages) + 1    # and the one that saw EOF
    assert set(stats["requests"]) == {"recv", "send", "transmit", "user", "shutdown",
                                      "timer", "connect"}
    # the connection and every recv went to Python, in batches of one or
    # more (a send that needs no callback may not)
    assert stats["python_completions"] >= 1 + stats["requests"]["recv"]
    assert 1 <= stats["python_batches"] <= stats["python_completions"]
    assert stats["http_responses"] == {"1xx": 0, "2xx": 0, "3xx": 0, "4xx": 0, "5xx": 0}
    engine.stop()
    assert engine.stats()["received_bytes"] == sent          # the final values stay


def test_stats_count_errors_by_operation_and_errno(make_engine):
    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), Echo)
    engine.start()
    client = socket.create_connection(listener.address, timeout=10)
    assert wait_for(lambda: engine.stats()["connections"] == 1)
    engine.stop(drain_timeout=0.5)      # the pending recv ends cancelled
    client.close()
    assert engine.stats()["errors"] == {"recv": {"ECANCELED": 1}}


def test_stats_count_transmits_as_file_bytes(make_engine, root):
    class SendFile(pyiocp.Handler):
        def connection_made(self, conn):
            conn.transmit_file(str(root / "big.bin"), head=b"HEAD")
            conn.close()

    engine = make_engine()
    listener = engine.listen(("127.0.0.1", 0), SendFile)
    engine.start()
    with socket.create_connection(listener.address, timeout=10) as client:
        assert len(recv_exactly(client, BIG + 4)) == BIG + 4
    assert wait_for(lambda: engine.stats()["requests"]["transmit"] == 1)
    stats = engine.stats()
    assert stats["sent_bytes"] == {"memory": 4, "file": BIG}
    assert stats["transmit_file_bytes"] == BIG and stats["transmit_copied_bytes"] == 0


# ------------------------------------------------------ listen_metrics --


def test_endpoint_counters_move_with_traffic(make_engine, backend, root):
    engine = make_engine()
    files = engine.listen(("127.0.0.1", 0), pyiocp.StaticFiles(str(root)))
    metrics = engine.listen_metrics(("127.0.0.1", 0))
    engine.start()
    before = samples(scrape(metrics.address))
    info = [key for key in before if key[0] == "pyiocp_info"]
    assert info == [("pyiocp_info", frozenset({("version", pyiocp.__version__),
                                               ("backend", backend)}))]
    assert http_get(files.address, "/big.bin") == (200, (root / "big.bin").read_bytes())
    assert http_get(files.address, "/small.txt")[0] == 200
    assert http_get(files.address, "/missing")[0] == 404
    after = samples(scrape(metrics.address))

    def moved(name, **labels):
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("pyiocp_http_responses_total", **{"class": "2xx"}) == 2
    assert moved("pyiocp_http_responses_total", **{"class": "4xx"}) == 1
    assert moved("pyiocp_sent_bytes_total", source="file") == BIG
    # three clients, and the first scrape's own connection
    assert moved("pyiocp_connections_accepted_total") == 4
    assert value(after, "pyiocp_connections_open") >= 1          # this scrape's
    assert moved("pyiocp_requests_total", op="transmit") >= 1
    assert engine.metrics_text().startswith("# HELP pyiocp_info ")


def test_endpoint_answers_other_paths_and_methods_clearly(make_engine):
    engine = make_engine()
    metrics = engine.listen_metrics(("127.0.0.1", 0))
    engine.start()
    assert http_get(metrics.address, "/")[0] == 404
    assert http_get(metrics.address, "/metrics?x=1")[0] == 200
    with socket.create_connection(metrics.address, timeout=10) as client:
        client.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        answer = client.makefile("rb").read()
    assert answer.startswith(b"HTTP/1.1 405 ") and b"\r\nAllow: GET, HEAD\r\n" in answer
    with socket.create_connection(metrics.address, timeout=10) as client:
        client.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = client.makefile("rb").read()
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 ") and body == b""
    assert int(re.search(rb"Content-Length: (\d+)", head).group(1)) > 1000
    with socket.create_connection(metrics.address, timeout=10) as client:
        client.sendall(b"GET /metrics HTTP/1.1\r\n" + b"X: " + b"y" * 5000 + b"\r\n")
        assert client.makefile("rb").read().startswith(b"HTTP/1.1 431 ")
    with socket.create_connection(metrics.address, timeout=10) as client:
        client.sendall(b"\x00garbage\r\n\r\n")
        assert client.makefile("rb").read().startswith(b"HTTP/1.1 400 ")
    assert http_get(metrics.address, "/metrics")[0] == 200     # still serving


def test_a_metrics_handler_serves_only_its_own_engine(make_engine):
    first, second = make_engine(), make_engine()
    listener = first.listen_metrics(("127.0.0.1", 0))
    with pytest.raises(ValueError, match="its own|made it"):
        second.listen(("127.0.0.1", 0), listener.native)


# ---------------------------------------------------------------- areas --


def test_area_sums_its_workers_and_keeps_what_a_gone_one_counted(make_engine):
    area = _core.MetricsArea(2, 2)
    engines = [make_engine(threads=2) for _ in range(2)]
    cells = [area.claim(slot) for slot in range(2)]
    listeners = []
    for engine, cell in zip(engines, cells):
        engine._use_metrics_cell(area, cell)
        listeners.append(engine.listen(("127.0.0.1", 0), Echo))
        engine.start()
    for listener, n in zip(listeners, (1, 3)):
        for _ in range(n):
            with socket.create_connection(listener.address, timeout=10) as client:
                client.sendall(b"ping")
                assert recv_exactly(client, 4) == b"ping"
    assert wait_for(lambda: all(e.stats()["connections"] == 0 for e in engines))
    found = samples(area.render())
    assert value(found, "pyiocp_connections_accepted_total", worker="0") == 1
    assert value(found, "pyiocp_connections_accepted_total", worker="1") == 3
    assert value(found, "pyiocp_connections_accepted_total") == 4
    assert value(found, "pyiocp_received_bytes_total") == 16
    pids = {dict(k[1])["worker"]: dict(k[1])["pid"] for k in found if k[0] == "pyiocp_info"}
    assert pids == {"0": str(os.getpid()), "1": str(os.getpid())}
    # worker 1 goes: its counts stay in its series, and it has nothing open
    engines[1].stop()
    area.release(cells[1])
    found = samples(area.render())
    assert value(found, "pyiocp_connections_accepted_total", worker="1") == 3
    assert value(found, "pyiocp_connections_open", worker="1") == 0
    with pytest.raises(ValueError):
        area.release(cells[1])                  # not claimed any more
    # its successor starts from a zeroed cell; the series carries on
    area.claim(1)
    found = samples(area.render())
    assert value(found, "pyiocp_connections_accepted_total", worker="1") == 3


def test_area_refuses_bad_use_clearly(make_engine):
    with pytest.raises(ValueError):
        _core.MetricsArea(0, 2)
    with pytest.raises(ValueError):
        _core.MetricsArea(1, 0)
    area = _core.MetricsArea(1, 2)
    claimed = [area.claim(0) for _ in range(3)]
    with pytest.raises(RuntimeError, match="no free metrics cell"):
        area.claim(0)
    with pytest.raises(ValueError):
        area.claim(1)
    with pytest.raises(ValueError):
        area.release(99)
    big = make_engine(threads=4)
    with pytest.raises(ValueError, match="does not fit"):
        big._use_metrics_cell(area, claimed[0])
    started = make_engine(threads=2)
    started.start()
    with pytest.raises(RuntimeError, match="before start"):
        started._use_metrics_cell(area, claimed[1])


# --------------------------------------------------------- the launcher --


class MetricsServer(Server):
    """`python -m pyiocp serve ROOT --port 0 --metrics 127.0.0.1:0 ARGS`, in
    its own session (killed whole: --workers has children)."""

    def __init__(self, root, *args):
        self._spawn([sys.executable, "-m", "pyiocp", "serve", str(root), "--port", "0",
                     "--metrics", "127.0.0.1:0", "--quiet", *args], new_session=True)

    def wait_startup(self, timeout=15.0):
        line = self.wait_line(lambda l: b": serving " in l, timeout)
        assert line, f"no startup line; stderr: {self.stderr()!r}"
        self.port = int(re.search(rb"on 127\.0\.0\.1:(\d+) ", line).group(1))
        metrics = self.wait_line(lambda l: l.startswith(b"pyiocp: metrics at "), 1)
        assert metrics, "no metrics line before the startup line"
        self.metrics = ("127.0.0.1", int(re.search(rb":(\d+)/metrics", metrics).group(1)))
        return self


@pytest.fixture
def launch(root):
    servers = []

    def start(*args):
        server = MetricsServer(root, *args)
        servers.append(server)
        return server.wait_startup()

    yield start
    for server in servers:
        if server.proc.poll() is None:
            server.proc.send_signal(signal.SIGTERM)
            try:
                server.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(server.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.proc.wait(timeout=10)


def test_serve_metrics_one_process(launch, root):
    server = launch("--threads", "2")
    for _ in range(3):
        assert http_get(server.address, "/small.txt") == (200, b"hello\n")
    found = samples(scrape(server.metrics))
    assert value(found, "pyiocp_http_responses_total", **{"class": "2xx"}) == 3
    assert not any("worker" in dict(labels) for _, labels in found)
    live = run_pyiocp("info", "--live", f"127.0.0.1:{server.metrics[1]}")
    assert live.returncode == 0, live.stderr
    text = live.stdout.decode()
    assert f"pyiocp {pyiocp.__version__} at http://127.0.0.1:{server.metrics[1]}/metrics" in text
    assert re.search(r"^http +1xx 0  2xx 3  3xx 0  4xx 0  5xx 0$", text, re.M), text
    assert re.search(r"^errors +none$", text, re.M), text


def worker_values(found, name, **labels):
    return {dict(k[1])["worker"]: v for k, v in found.items()
            if k[0] == name and "worker" in dict(k[1])
            and all(dict(k[1]).get(l) == x for l, x in labels.items())}


def test_serve_metrics_with_workers_sums_them_and_survives_a_killed_one(launch, root):
    server = launch("--workers", "2", "--threads", "1")
    for _ in range(20):
        assert http_get(server.address, "/small.txt")[0] == 200
    found = samples(scrape(server.metrics))
    per_worker = worker_values(found, "pyiocp_http_responses_total", **{"class": "2xx"})
    assert set(per_worker) == {"0", "1"}
    assert sum(per_worker.values()) == 20
    assert value(found, "pyiocp_http_responses_total", **{"class": "2xx"}) == 20
    # every counter's sum is its workers' sum
    for (name, labels), total in found.items():
        if name.endswith("_total") and "worker" not in dict(labels):
            parts = [v for (n, l), v in found.items() if n == name and "worker" in dict(l)
                     and {k: x for k, x in l if k != "worker"} == dict(labels)]
            assert sum(parts) == total, name
    pids = {dict(k[1])["worker"]: int(dict(k[1])["pid"]) for k in found if k[0] == "pyiocp_info"}
    assert set(pids) == {"0", "1"}
    # SIGKILL worker 0: its counts stay, its replacement counts on
    os.kill(pids["0"], signal.SIGKILL)
    assert wait_for(lambda: not alive(pids["0"]))

    def replaced():
        now = samples(scrape(server.metrics))
        info = {dict(k[1])["worker"]: int(dict(k[1])["pid"])
                for k in now if k[0] == "pyiocp_info"}
        return info.get("0") not in (None, pids["0"]) and now

    assert wait_for(replaced, timeout=15)
    later = samples(scrape(server.metrics))
    for name in ("pyiocp_http_responses_total", "pyiocp_connections_accepted_total"):
        for (n, labels), old in found.items():
            if n == name:
                assert later[(n, labels)] >= old, (name, labels)
    assert value(later, "pyiocp_connections_open", worker="0") <= 1   # a scrape of its own
    live = run_pyiocp("info", "--live", f"http://127.0.0.1:{server.metrics[1]}/metrics")
    assert live.returncode == 0, live.stderr
    assert "2 workers" in live.stdout.decode()
    assert re.search(r"^ +0 +\d+ ", live.stdout.decode(), re.M)


def test_info_live_says_clearly_what_is_wrong(root):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    refused = run_pyiocp("info", "--live", f"127.0.0.1:{port}")
    assert refused.returncode == 1 and b"cannot read" in refused.stderr
    engine = pyiocp.Engine(threads=1)
    files = engine.listen(("127.0.0.1", 0), pyiocp.StaticFiles(str(root)))
    engine.start()
    try:
        other = run_pyiocp("info", "--live", f"http://127.0.0.1:{files.address[1]}/small.txt")
    finally:
        engine.stop()
    assert other.returncode == 1 and b"not Prometheus text" in other.stderr, other.stderr


def test_metrics_option_is_checked(root):
    for bad in ("9100", "host:", "x:99999"):
        done = run_pyiocp("serve", str(root), "--metrics", bad)
        assert done.returncode == 2 and b"[HOST]:PORT" in done.stderr, bad
