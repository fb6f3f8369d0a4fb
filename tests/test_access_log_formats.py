"""The native HTTP server's access-log formats (common, combined, json)
and its log file (--log-file, reopened on SIGHUP): real servers, clients
sending hostile Referer and User-Agent values (quotes, backslashes, tabs,
forged JSON, bytes that are not UTF-8, values over the line's caps), each
line parsed back (json.loads; a regex for combined).  Every test runs on
each available backend (make_engine's `backend`)."""
from __future__ import annotations

import json
import os
import re
import signal
import sys
from types import SimpleNamespace

import pytest

import pyiocp
from http_helpers import HttpConn, get, get_http_tree
from pyiocp.log_file import AccessLogFile
from raw_helpers import wait_for
from test_http_cli import CLF, HttpServer

# engine/log/entry.h: a line's bound, a header value's cap (escaped bytes)
LINE_MAX = 4608
FIELD_MAX = 1024

QUOTED = rb'"((?:[^"\\\x00-\x1f\x7f-\xff]|\\x[0-9a-f]{2})*)"'
COMBINED = re.compile(rb'^(\S+) - - \[(\d\d)/([A-Z][a-z]{2})/(\d{4}):(\d\d):(\d\d):(\d\d) \+0000\] '
                      + QUOTED + rb' (\d{3}) (\d+|-) (?:' + QUOTED + rb'|-) (?:' + QUOTED
                      + rb'|-)$')
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
JSON_KEYS = ["remote_addr", "time", "method", "target", "protocol", "status", "bytes",
             "referer", "user_agent", "duration_us"]

# Header values a client may send that a parser lets through (field-vchar,
# SP, HTAB, obs-text), as latin-1 text: req() sends each character as one
# byte.
HOSTILE_VALUES = [
    'a"b\\c',
    '" "-" 200 1 "forged',
    '{"forged":1}\t"}',
    "\\x22\\u0022",
    "\xff\xfe\x80 caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80 \xc0\xaf \xed\xa0\x80",
    "x" * 6000,
    '"\\' * 3000,
]


@pytest.fixture(scope="session")
def tree(tmp_path_factory):
    return get_http_tree(tmp_path_factory)


@pytest.fixture
def logged_server(make_engine, tree, tmp_path):
    """logged_server(log_format) -> a started StaticFiles with its access log
    in a file; .lines() reads it back."""
    made = []

    def start(log_format, **options):
        log = AccessLogFile(str(tmp_path / f"access-{len(made)}.log"))
        engine = make_engine()
        server = pyiocp.StaticFiles(tree.root, access_log=log, log_format=log_format,
                                    max_head=64 * 1024, **options)
        listener = engine.listen(("127.0.0.1", 0), server)
        engine.start()
        ns = SimpleNamespace(engine=engine, server=server, log=log, address=listener.address,
                             lines=lambda: _lines(log.path))
        made.append(ns)
        return ns

    yield start
    for ns in made:
        ns.engine.stop(drain_timeout=1.0)
        # every line was awaited in the file: the writer is idle
        ns.log.close()
        ns.__dict__.clear()     # so no_fd_leak sees the server freed


def _lines(path):
    with open(path, "rb") as f:
        data = f.read()
    assert not data or data.endswith(b"\n"), f"a torn last line: {data[-200:]!r}"
    return data.split(b"\n")[:-1]


def _send_all(address, requests):
    """Each request on its own connection (a rejected one closes it)."""
    for request in requests:
        with HttpConn(address) as conn:
            conn.send(request)
            conn.read_response(False)


def _as_logged_json(value: str) -> str:
    """What a JSON line holds for `value` sent as latin-1 bytes: valid
    UTF-8 decoded, any other byte as the character of its value (entry.h)."""
    text = value.encode("latin-1").decode("utf-8", "surrogateescape")
    return "".join(chr(ord(c) - 0xdc00) if 0xdc80 <= ord(c) <= 0xdcff else c for c in text)


def _unescape_combined(field: bytes) -> bytes:
    return re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]), field)


def _hostile_requests():
    requests = []
    for value in HOSTILE_VALUES:
        requests.append(get("/types/a.txt", f"Referer: {value}", f"User-Agent: {value}"))
    requests.append(get("/types/a.txt"))                              # neither header
    requests.append(get("/types/a.txt", "User-Agent: one", "user-agent: two", "REFERER: r"))
    requests.append(b"GET /\x01 HTTP/1.1\r\n\r\n")              # rejected: no request line
    return requests


def test_json_lines_survive_hostile_headers(logged_server):
    served = logged_server("json")
    assert served.server.log_format == "json"
    requests = _hostile_requests()
    _send_all(served.address, requests)
    assert wait_for(lambda: len(served.lines()) >= len(requests), 10), served.lines()
    lines = served.lines()
    assert len(lines) == len(requests), lines
    entries = [json.loads(line) for line in lines]      # every line is one valid object
    for line, entry in zip(lines, entries):
        assert len(line) + 1 <= LINE_MAX
        assert list(entry) == JSON_KEYS
        assert entry["remote_addr"] == "127.0.0.1"
        assert RFC3339_UTC.match(entry["time"]), entry["time"]
    for value, entry in zip(HOSTILE_VALUES, entries):
        assert (entry["method"], entry["target"], entry["protocol"], entry["status"]) == \
            ("GET", "/types/a.txt", "HTTP/1.1", 200)
        assert entry["bytes"] > 0 and entry["duration_us"] >= 0
        sent = _as_logged_json(value)
        for field in ("referer", "user_agent"):
            logged = entry[field]
            if len(json.dumps(sent, ensure_ascii=False).encode()) - 2 <= FIELD_MAX:
                assert logged == sent, (field, value)
            else:   # cut at the cap, between characters
                assert sent.startswith(logged) and len(logged) > FIELD_MAX // 8
    plain, repeated, rejected = entries[len(HOSTILE_VALUES):]
    assert plain["referer"] is None and plain["user_agent"] is None
    assert repeated["referer"] == "r" and repeated["user_agent"] == "one"   # the first
    assert rejected["status"] == 400 and rejected["method"] is None
    assert rejected["target"] is None and rejected["duration_us"] is None


def test_combined_lines_survive_hostile_headers(logged_server):
    served = logged_server("combined")
    requests = _hostile_requests()
    _send_all(served.address, requests)
    assert wait_for(lambda: len(served.lines()) >= len(requests), 10), served.lines()
    lines = served.lines()
    assert len(lines) == len(requests), lines
    matches = []
    for line in lines:
        assert len(line) + 1 <= LINE_MAX
        match = COMBINED.match(line)
        assert match, line
        matches.append(match)
    for value, match in zip(HOSTILE_VALUES, matches):
        request, status, referer, agent = match.group(8, 9, 11, 12)
        assert (request, status) == (b"GET /types/a.txt HTTP/1.1", b"200")
        sent = value.encode("latin-1")
        for field in (referer, agent):
            assert field is not None
            if len(sent) * 4 <= FIELD_MAX:
                assert _unescape_combined(field) == sent
            else:   # cut at the cap, between escapes
                assert len(field) <= FIELD_MAX and sent.startswith(_unescape_combined(field))
    plain, repeated, rejected = matches[len(HOSTILE_VALUES):]
    assert plain.group(0).endswith(b' "-" "-"')
    assert repeated.group(11, 12) == (b"r", b"one")
    assert rejected.group(8, 9) == (b"-", b"400")


def test_common_lines_are_unchanged(logged_server):
    """The default: the Common Log Format as before, no header fields."""
    served = logged_server("common")
    assert pyiocp._core.http_defaults()["log_format"] == "common"
    _send_all(served.address, [get("/types/a.txt", 'Referer: "x"', "User-Agent: y")])
    assert wait_for(lambda: len(served.lines()) >= 1, 10)
    [line] = served.lines()
    match = CLF.match(line)
    assert match and match.group(8, 9) == (b"GET /types/a.txt HTTP/1.1", b"200"), line
    assert b'"x"' not in line and b"\\x22x" not in line


def test_unknown_log_format_is_refused(tree):
    with pytest.raises(ValueError, match="log_format"):
        pyiocp.StaticFiles(tree.root, log_format="apache")
    with pytest.raises(ValueError, match="no access log"):
        pyiocp.StaticFiles(tree.root).swap_access_log(sys.stdout)


def test_swap_moves_lines_to_the_new_file_whole(logged_server, tmp_path):
    """Write, rename the file away, reopen, write more: the renamed file has
    the first lines, the new file the rest, none lost, none split."""
    served = logged_server("json")
    first, second = 40, 60
    _send_all(served.address, [get(f"/types/a.txt?first={i}") for i in range(first)])
    assert wait_for(lambda: len(served.lines()) >= first, 10)
    rotated = tmp_path / "rotated.log"
    os.rename(served.log.path, rotated)
    served.log.reopen(served.server)
    _send_all(served.address, [get(f"/types/a.txt?second={i}") for i in range(second)])
    assert wait_for(lambda: len(served.lines()) >= second, 10)
    old = [json.loads(line)["target"] for line in _lines(rotated)]
    new = [json.loads(line)["target"] for line in served.lines()]
    # sorted: two connections' lines may be logged in either order
    assert sorted(old) == sorted(f"/types/a.txt?first={i}" for i in range(first))
    assert sorted(new) == sorted(f"/types/a.txt?second={i}" for i in range(second))


def test_swap_under_load_loses_and_splits_nothing(logged_server, tmp_path):
    """Reopens while clients keep sending: every line whole, in one file."""
    import threading
    served = logged_server("combined")
    total, clients = 600, 3
    done = []

    def client(k):
        with HttpConn(served.address) as conn:
            for i in range(total // clients):
                conn.send(get(f"/types/a.txt?c{k}={i}"))
                assert conn.read_response(False).status == 200
        done.append(k)

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    rotated = []
    for n in range(5):
        path = tmp_path / f"rotated.{n}"
        os.rename(served.log.path, path)
        served.log.reopen(served.server)
        rotated.append(path)
    for t in threads:
        t.join(60)
    assert len(done) == clients
    files = rotated + [served.log.path]
    assert wait_for(lambda: sum(len(_lines(p)) for p in files) >= total, 10)
    seen = []
    for path in files:
        for line in _lines(path):
            match = COMBINED.match(line)
            assert match, line
            seen.append(match.group(8))
    assert sorted(seen) == sorted(f"GET /types/a.txt?c{k}={i} HTTP/1.1".encode()
                                  for k in range(clients) for i in range(total // clients))


# ----------------------------------------------------------------- the CLI --


@pytest.fixture
def cli(tree):
    servers = []

    def start(*args):
        server = HttpServer(tree.root, *args)
        servers.append(server)
        return server.wait_startup()

    yield start
    for server in servers:
        server.kill()


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX signals")
def test_cli_log_file_is_reopened_on_sighup(cli, tmp_path):
    log_path = tmp_path / "access.log"
    server = cli("--log-file", str(log_path), "--log-format", "combined")
    assert oct(log_path.stat().st_mode & 0o777) == oct(0o644 & ~_umask())
    address = ("127.0.0.1", server.port)
    _send_all(address, [get(f"/types/a.txt?before={i}", "User-Agent: ua") for i in range(20)])
    assert wait_for(lambda: len(_lines(log_path)) >= 20, 10)
    rotated = tmp_path / "access.log.1"
    os.rename(log_path, rotated)
    os.kill(server.pid, signal.SIGHUP)
    assert wait_for(lambda: log_path.exists(), 10), server.stderr()
    _send_all(address, [get(f"/types/a.txt?after={i}") for i in range(30)])
    assert wait_for(lambda: len(_lines(log_path)) >= 30, 10)
    server.proc.send_signal(signal.SIGTERM)
    assert server.wait(15) == 0, server.stderr()
    old, new = _lines(rotated), _lines(log_path)
    assert sorted(COMBINED.match(l).group(8) for l in old) == \
        sorted(f"GET /types/a.txt?before={i} HTTP/1.1".encode() for i in range(20))
    assert sorted(COMBINED.match(l).group(8) for l in new) == \
        sorted(f"GET /types/a.txt?after={i} HTTP/1.1".encode() for i in range(30))
    assert all(l.endswith(b' "-" "ua"') for l in old)
    assert server.access_lines() == []          # stdout has the startup line only
    stderr = server.stderr()
    # errors and notices through logging: time, level, message
    assert re.search(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO pyiocp: SIGHUP: reopened",
                     stderr, re.M), stderr
    assert "Traceback" not in stderr


@pytest.mark.skipif(not hasattr(os, "fork"), reason="--workers needs fork")
def test_cli_workers_log_file_is_reopened_by_the_reload(tree, tmp_path):
    """With --workers, SIGHUP is a reload: the new workers open PATH anew,
    the old ones finish in the renamed file.  Across the two files every
    request is logged once, whole, and the new file gets the later ones."""
    log_path = tmp_path / "access.log"
    server = HttpServer(tree.root, "--workers", "2", "--threads", "1", "--log-file",
                        str(log_path), "--log-format", "json")
    try:
        line = server.wait_line(lambda l: b": serving " in l, 20)
        assert line, server.stderr()
        port = int(re.search(rb"on 127\.0\.0\.1:(\d+) ", line).group(1))
        address = ("127.0.0.1", port)
        _send_all(address, [get(f"/types/a.txt?before={i}") for i in range(20)])
        assert wait_for(lambda: len(_lines(log_path)) >= 20, 10)
        rotated = tmp_path / "access.log.1"
        os.rename(log_path, rotated)
        os.kill(server.pid, signal.SIGHUP)
        assert server.wait_line(lambda l: b"reloaded" in l, 30, stream="err"), server.stderr()
        assert log_path.exists()
        _send_all(address, [get(f"/types/a.txt?after={i}") for i in range(30)])
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait(20) == 0, server.stderr()
    finally:
        server.kill()
    old, new = _lines(rotated), _lines(log_path)
    targets = sorted(json.loads(l)["target"] for l in old + new)
    assert targets == sorted([f"/types/a.txt?before={i}" for i in range(20)] +
                             [f"/types/a.txt?after={i}" for i in range(30)])
    assert all("before" not in json.loads(l)["target"] for l in new)
    # an old worker may take a last connection between the reload and its
    # SIGTERM; the new ones take the rest
    assert len(new) >= 20, (len(old), len(new))


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_cli_json_lines_on_stdout(cli):
    server = cli("--log-format", "json")
    _send_all(("127.0.0.1", server.port), [get("/types/a.txt", 'Referer: "r"')])
    assert wait_for(lambda: len(server.access_lines()) >= 1, 10)
    [line] = server.access_lines()
    entry = json.loads(line)
    assert entry["referer"] == '"r"' and entry["status"] == 200


@pytest.mark.parametrize("args", [("--quiet", "--log-file", "x.log"),
                                  ("--protocol", "raw", "--log-format", "json")])
def test_cli_refuses_log_options_that_do_not_go_together(tree, args):
    from test_cli import run_pyiocp
    done = run_pyiocp("serve", str(tree.root), "--port", "0", *args)
    stderr = done.stderr.decode()
    assert done.returncode == 2, stderr
    assert "ERROR" in stderr and "Traceback" not in stderr


def test_cli_reports_a_log_file_it_cannot_open(tree, tmp_path):
    from test_cli import run_pyiocp
    done = run_pyiocp("serve", str(tree.root), "--port", "0", "--log-file",
                      str(tmp_path / "no such dir" / "a.log"))
    stderr = done.stderr.decode()
    assert done.returncode == 1 and "ERROR" in stderr and "Traceback" not in stderr, stderr


def test_raw_server_log_is_swapped_too(make_engine, tmp_path):
    """RawFileServer's access log moves the same way (`serve --protocol raw
    --log-file` reopens it on SIGHUP)."""
    import socket
    root = tmp_path / "root"
    root.mkdir()
    (root / "x.txt").write_bytes(b"x" * 10)
    log = AccessLogFile(str(tmp_path / "raw.log"))
    engine = make_engine()
    server = pyiocp.RawFileServer(root, access_log=log)
    listener = engine.listen(("127.0.0.1", 0), server)
    engine.start()

    def fetch():
        with socket.create_connection(listener.address, timeout=10) as sock:
            sock.sendall(b"x.txt\n")
            got = b""
            while len(got) < 10:
                chunk = sock.recv(64)
                assert chunk
                got += chunk

    try:
        fetch()
        assert wait_for(lambda: len(_lines(log.path)) >= 1, 10)
        os.rename(log.path, tmp_path / "raw.log.1")
        log.reopen(server)
        fetch()
        fetch()
        assert wait_for(lambda: len(_lines(log.path)) >= 2, 10)
        assert len(_lines(tmp_path / "raw.log.1")) == 1
        assert all(b'"x.txt"' in line for line in _lines(log.path))
    finally:
        engine.stop(drain_timeout=1.0)
        log.close()
        del server, listener
