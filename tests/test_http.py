"""HTTP/1.1 static files served in-process by pyiocp.StaticFiles (the native
handler): real clients (curl, wget, http.client, urllib), raw sockets for
pipelining, framing and every error class, conditional and range requests,
directory listings, timeouts, and no leaked descriptors.  Every test runs on
each available backend (the `backend` fixture via make_engine)."""
from __future__ import annotations

import hashlib
import http.client
import os
import re
import select
import socket
import struct
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from email.utils import parsedate_to_datetime
from types import SimpleNamespace

import pytest

import pyiocp
from conftest import tool_env
from http_helpers import (COND_MTIME, HOSTILE_DIR, HOSTILE_NAMES, TYPED, HttpConn, assert_served,
                          exchange, get, get_http_tree, head, http_date, parse_listing, req,
                          require_tool, sha256, sha256_file)
from raw_helpers import BIG, BIG_SIZE, KIB, MIB, SECRET, SIZES, Workers, wait_for


@pytest.fixture(scope="session")
def tree(tmp_path_factory):
    return get_http_tree(tmp_path_factory)


@pytest.fixture
def start_server(make_engine, tree):
    """start_server(engine_options=None, root=None, **StaticFiles options) ->
    a started engine serving tree.root over HTTP.  The namespaces are
    emptied at teardown so no_fd_leak sees the root directory closed."""
    made = []

    def start(engine_options=None, root=None, **options):
        engine = make_engine(**(engine_options or {}))
        server = pyiocp.StaticFiles(tree.root if root is None else root, **options)
        listener = engine.listen(("127.0.0.1", 0), server)
        engine.start()
        made.append(SimpleNamespace(engine=engine, server=server, address=listener.address,
                                    port=listener.address[1]))
        return made[-1]

    yield start
    for namespace in made:
        namespace.__dict__.clear()


@pytest.fixture
def served(start_server):
    return start_server()


def url(served, path: str) -> str:
    return f"http://127.0.0.1:{served.port}{path}"


def wait_no_connections(engine, timeout=5.0):
    assert wait_for(lambda: engine.connections == 0, timeout), \
        f"engine.connections stuck at {engine.connections}"


# ------------------------------------------------------------------ curl --


def curl(*args, timeout=90):
    exe = require_tool("curl")
    return subprocess.run([exe, "-sS", "--noproxy", "*", "--max-time", "60", *args], env=tool_env(),
                          capture_output=True, timeout=timeout)


def curl_headers(text: bytes):
    """Status and headers (last response) of curl -I / -D output."""
    blocks = [b for b in text.replace(b"\r\n", b"\n").split(b"\n\n") if b.strip()]
    lines = blocks[-1].split(b"\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.decode("latin-1").partition(":")
        assert name.lower() not in headers, f"{name} repeated: {text!r}"
        headers[name.lower()] = value.strip()
    return status, headers


@pytest.mark.parametrize("name", list(SIZES))
def test_curl_get_byte_for_byte(served, tree, tmp_path, name):
    out = tmp_path / "download"
    done = curl("-o", str(out), "-w", "%{http_code} %{size_download}", url(served, "/" + name))
    assert done.returncode == 0, done.stderr
    assert done.stdout.decode().split() == ["200", str(tree.sizes[name])]
    try:
        assert out.stat().st_size == tree.sizes[name]
        assert sha256_file(out) == tree.digests[name]
    finally:
        out.unlink()    # do not keep 100 MiB per run in pytest's temporary directories


def test_curl_head_headers(served, tree):
    done = curl("-I", url(served, "/1m.bin"))
    assert done.returncode == 0, done.stderr
    status, h = curl_headers(done.stdout)
    assert status == 200
    st = os.stat(tree.path("1m.bin"))
    assert h["content-length"] == str(MIB)
    assert h["content-type"] == "application/octet-stream"
    assert h["accept-ranges"] == "bytes"
    assert h["last-modified"] == http_date(int(st.st_mtime))
    assert re.fullmatch(r'"[\x21\x23-\x7e]+"', h["etag"]), h["etag"]   # strong, quoted
    assert h["server"]
    date = h["date"]
    assert re.fullmatch(r"[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT", date), date
    assert abs(parsedate_to_datetime(date).timestamp() - time.time()) < 5
    # HEAD says what GET would send
    done = curl("-D", "-", "-o", os.devnull, url(served, "/1m.bin"))
    status, g = curl_headers(done.stdout)
    assert status == 200
    for name in ("content-length", "content-type", "etag", "last-modified", "accept-ranges"):
        assert g[name] == h[name], name


@pytest.mark.parametrize("spec, start, end", [("0-99", 0, 100), ("100-", 100, MIB),
                                             ("-100", MIB - 100, MIB)])
def test_curl_ranges(served, tree, tmp_path, spec, start, end):
    out = tmp_path / "part"
    done = curl("-r", spec, "-D", "-", "-o", str(out), url(served, "/1m.bin"))
    assert done.returncode == 0, done.stderr
    status, h = curl_headers(done.stdout)
    assert status == 206
    assert h["content-range"] == f"bytes {start}-{end - 1}/{MIB}"
    assert h["content-length"] == str(end - start)
    assert sha256_file(out) == sha256(tree.data["1m.bin"][start:end])


def test_curl_conditional_requests(served, tree):
    _, h = curl_headers(curl("-I", url(served, "/cond.txt")).stdout)
    etag, modified = h["etag"], h["last-modified"]
    assert modified == http_date(COND_MTIME)
    done = curl("-H", f"If-None-Match: {etag}", "-w", "%{http_code}", "-o", os.devnull,
                url(served, "/cond.txt"))
    assert done.stdout == b"304", done
    done = curl("-z", modified, "-w", "%{http_code}", "-o", os.devnull, url(served, "/cond.txt"))
    assert done.stdout == b"304", done
    # an older date: modified since, so the file
    done = curl("-z", http_date(COND_MTIME - 3600), "-w", "%{http_code}", url(served, "/cond.txt"))
    assert done.stdout.endswith(b"200") and done.stdout[:-3] == tree.data["cond.txt"], done


def test_curl_reuses_the_connection(served, tree):
    done = curl("-v", "-w", "%{num_connects}\n", "-o", os.devnull, "-o", os.devnull,
                url(served, "/1k.bin"), url(served, "/sub/inner.bin"))
    assert done.returncode == 0, done.stderr
    connects = [int(n) for n in done.stdout.split()]
    assert connects == [1, 0] or b"Re-using existing connection" in done.stderr, \
        (connects, done.stderr.decode(errors="replace")[-2000:])


@pytest.mark.parametrize("path", ["/../x", "/sub/../../x", "/%2e%2e/x", "/%2E%2E/outside/secret.txt",
                                  "/..%2fx", "/sub/..%2f..%2fx", "/sub%5c..%5c..%5cx",
                                  "/link_file", "/link_dir/secret.txt", "/link_dir/",
                                  "/link_devnull", "/fifo", "/devnull"])
def test_curl_path_as_is_escapes_are_forbidden(served, tree, path):
    done = curl("--path-as-is", "-w", "\n%{http_code}", url(served, path))
    assert done.returncode == 0, done.stderr
    body, _, status = done.stdout.rpartition(b"\n")
    assert status == b"403", (path, done.stdout)
    assert SECRET.strip() not in body


# ------------------------------------------------------------------ wget --


def wget(*args, timeout=60):
    exe = require_tool("wget")
    return subprocess.run([exe, "--no-proxy", "--tries=1", "--timeout=30", *args], env=tool_env(),
                          capture_output=True, timeout=timeout)


def test_wget_downloads_a_file(served, tree, tmp_path):
    out = tmp_path / "got"
    done = wget("-q", "-O", str(out), url(served, "/1m.bin"))
    assert done.returncode == 0, done.stderr
    assert sha256_file(out) == tree.digests["1m.bin"]
    out2 = tmp_path / "got2"
    done = wget("-q", "-O", str(out2), url(served, "/listing/" + urllib.parse.quote("sp ace")))
    assert done.returncode == 0, done.stderr
    assert out2.read_bytes() == tree.data["listing/sp ace"]


def test_wget_spider_exit_codes(served):
    ok = wget("--spider", url(served, "/1k.bin"))
    assert ok.returncode == 0, ok.stderr
    missing = wget("--spider", url(served, "/no-such-file.bin"))
    assert missing.returncode == 8, missing.stderr   # 8: the server issued an error response
    assert b"404" in missing.stderr


# ----------------------------------------------------- http.client/urllib --


def test_http_client_keepalive_mixed_requests(served, tree):
    conn = http.client.HTTPConnection("127.0.0.1", served.port, timeout=10)
    try:
        conn.connect()
        sock = conn.sock
        etag = None
        for i in range(40):
            kind = i % 8
            if kind == 0:
                conn.request("GET", "/1k.bin")
                r = conn.getresponse()
                assert (r.status, r.read()) == (200, tree.data["1k.bin"])
                etag = r.getheader("ETag")
            elif kind == 1:
                conn.request("HEAD", "/1m.bin")
                r = conn.getresponse()
                assert (r.status, r.getheader("Content-Length"), r.read()) == (200, str(MIB), b"")
            elif kind == 2:
                conn.request("GET", "/missing-%d.bin" % i)
                r = conn.getresponse()
                assert r.status == 404
                r.read()
            elif kind == 3:
                conn.request("GET", "/1m.bin", headers={"Range": "bytes=1000-1999"})
                r = conn.getresponse()
                assert r.status == 206
                assert r.read() == tree.data["1m.bin"][1000:2000]
            elif kind == 4:
                conn.request("GET", "/1k.bin", headers={"If-None-Match": etag})
                r = conn.getresponse()
                assert (r.status, r.read()) == (304, b"")
            elif kind == 5:
                conn.request("GET", "/sub")
                r = conn.getresponse()
                assert (r.status, r.getheader("Location")) == (301, "/sub/")
                r.read()
            elif kind == 6:
                conn.request("GET", "/sub/")
                r = conn.getresponse()
                assert r.status == 200 and b"inner.bin" in r.read()
            else:
                conn.request("HEAD", "/nope")
                r = conn.getresponse()
                assert (r.status, r.read()) == (404, b"")
            assert conn.sock is sock, f"request {i}: the connection was not kept alive"
    finally:
        conn.close()
    assert served.server.requests == 40


def test_urllib_get_range_and_304(served, tree):
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url(served, "/1m.bin"), timeout=10) as r:
        assert r.status == 200 and r.read() == tree.data["1m.bin"]
        etag = r.headers["ETag"]
    request = urllib.request.Request(url(served, "/1m.bin"), headers={"Range": "bytes=-10"})
    with opener.open(request, timeout=10) as r:
        assert r.status == 206 and r.read() == tree.data["1m.bin"][-10:]
        assert r.headers["Content-Range"] == f"bytes {MIB - 10}-{MIB - 1}/{MIB}"
    request = urllib.request.Request(url(served, "/1m.bin"), headers={"If-None-Match": etag})
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(request, timeout=10)
    assert info.value.code == 304
    info.value.close()
    with pytest.raises(urllib.error.HTTPError) as info:
        opener.open(url(served, "/nope.txt"), timeout=10)
    assert info.value.code == 404
    info.value.close()
    # the 301 to the directory is followed to its listing
    with opener.open(url(served, "/sub?x=1"), timeout=10) as r:
        assert r.geturl().endswith("/sub/?x=1") and b"inner.bin" in r.read()


# ------------------------------------------------------------- headers --


def test_response_headers(served, tree):
    with HttpConn(served.address) as conn:
        r = conn.exchange(get("/1k.bin"))
        st = os.stat(tree.path("1k.bin"))
        assert (r.status, r.reason, r.body) == (200, "OK", tree.data["1k.bin"])
        assert r["Content-Length"] == str(KIB)
        assert r["Content-Type"] == "application/octet-stream"
        assert r["Last-Modified"] == http_date(int(st.st_mtime))
        assert re.fullmatch(r'"[\x21\x23-\x7e]+"', r["ETag"])
        assert r["Accept-Ranges"] == "bytes"
        assert r["Server"] and r["Date"]
        assert r.get("Connection") is None or not r.has_token("Connection", "close")
        h = conn.exchange(head("/1k.bin"))
        assert h.status == 200 and h.body == b""
        for name in ("Content-Length", "Content-Type", "ETag", "Last-Modified", "Accept-Ranges"):
            assert h[name] == r[name], name
        other = conn.exchange(get("/empty.bin"))
        assert (other.status, other.body, other["Content-Length"]) == (200, b"", "0")
        assert other["ETag"] != r["ETag"]


@pytest.mark.parametrize("name", list(TYPED))
def test_content_type_by_extension(served, tree, name):
    r = exchange(served.address, get(f"/types/{name}"))
    assert r.status == 200 and r.body == tree.data[f"types/{name}"]
    assert r["Content-Type"] == TYPED[name]


def test_etag_follows_file_changes(start_server, tmp_path):
    (tmp_path / "f.txt").write_bytes(b"first version\n")
    os.utime(tmp_path / "f.txt", (1_500_000_000, 1_500_000_000))
    served = start_server(root=tmp_path)
    with HttpConn(served.address) as conn:
        first = conn.exchange(get("/f.txt"))
        assert first.body == b"first version\n"
        (tmp_path / "f.txt").write_bytes(b"second, longer version\n")
        # inotify (or, at the latest, the cache's validity period) brings the change
        deadline = time.monotonic() + served.server.cache_valid + 2.0
        while True:
            second = conn.exchange(get("/f.txt"))
            if second.body != first.body or time.monotonic() > deadline:
                break
            time.sleep(0.01)
        assert second.body == b"second, longer version\n"
        assert second["ETag"] != first["ETag"]
        stale = conn.exchange(get("/f.txt", f"If-None-Match: {first['ETag']}"))
        assert stale.status == 200 and stale.body == second.body


# -------------------------------------------------------- conditionals --


def test_if_none_match_and_if_modified_since(served, tree):
    data = tree.data["cond.txt"]
    modified = http_date(COND_MTIME)
    with HttpConn(served.address) as conn:
        etag = conn.exchange(head("/cond.txt"))["ETag"]
        opaque = etag.strip('"')
        cases = [
            ([f"If-None-Match: {etag}"], 304),
            ([f"If-None-Match: W/{etag}"], 304),                     # weak comparison
            ([f'If-None-Match: "nope", {etag}'], 304),                # a list
            ([f'If-None-Match: "nope",W/"x" ,  {etag} '], 304),
            (["If-None-Match: *"], 304),
            (['If-None-Match: "nope"'], 200),
            ([f'If-None-Match: "{opaque}x"'], 200),
            ([f"If-Modified-Since: {modified}"], 304),
            ([f"If-Modified-Since: {http_date(COND_MTIME + 86400)}"], 304),
            ([f"If-Modified-Since: {http_date(COND_MTIME - 1)}"], 200),
            (["If-Modified-Since: Sunday, 13-Sep-20 12:26:40 GMT"], 304),   # RFC 850
            (["If-Modified-Since: Sun Sep 13 12:26:40 2020"], 304),          # asctime
            (["If-Modified-Since: yesterday"], 200),
            # If-Modified-Since only counts without If-None-Match
            (['If-None-Match: "nope"', f"If-Modified-Since: {modified}"], 200),
            ([f"If-None-Match: {etag}", f"If-Modified-Since: {http_date(COND_MTIME - 99)}"], 304),
            # a validator match wins over Range
            ([f"If-None-Match: {etag}", "Range: bytes=0-1"], 304),
        ]
        for headers, status in cases:
            r = conn.exchange(get("/cond.txt", *headers))
            assert r.status == status, (headers, r.raw_head)
            if status == 304:
                assert r["ETag"] == etag and r.body == b"" and r["Date"], headers
                assert r["Last-Modified"] == modified, headers
                assert r.get("Content-Type") is None or r["Content-Type"].startswith("text/plain")
            else:
                assert r.body == data, headers
        r = conn.exchange(head("/cond.txt", f"If-None-Match: {etag}"))
        assert r.status == 304
        # all on one connection: 304s keep it open
        assert conn.exchange(get("/1k.bin")).body == tree.data["1k.bin"]


RANGES = [
    ("bytes=0-99", 206, (0, 99)),
    ("bytes=100-", 206, (100, MIB - 1)),
    ("bytes=-100", 206, (MIB - 100, MIB - 1)),
    ("bytes=0-0", 206, (0, 0)),
    (f"bytes={MIB - 1}-", 206, (MIB - 1, MIB - 1)),
    ("bytes=5-99999999999", 206, (5, MIB - 1)),            # clipped to the end
    ("bytes=-99999999999", 206, (0, MIB - 1)),             # suffix longer than the file
    (f"bytes={MIB}-", 416, None),
    (f"bytes={MIB + 5}-{MIB + 10}", 416, None),
    ("bytes=-0", 416, None),
    ("bytes=0-1,5-6", 200, None),                            # several ranges: the whole file
    ("bytes=5-1", 200, None),                                # invalid: ignored
    ("items=0-1", 200, None),
    ("bytes=abc", 200, None),
]


@pytest.mark.parametrize("value, status, span", RANGES, ids=[r[0] for r in RANGES])
def test_range(served, tree, value, status, span):
    data = tree.data["1m.bin"]
    with HttpConn(served.address) as conn:
        r = conn.exchange(get("/1m.bin", f"Range: {value}"))
        assert r.status == status, r.raw_head
        if status == 206:
            first, last = span
            assert r["Content-Range"] == f"bytes {first}-{last}/{MIB}"
            assert r.body == data[first:last + 1]
        elif status == 416:
            assert r["Content-Range"] == f"bytes */{MIB}"
        else:
            assert r.get("Content-Range") is None and r.body == data
        # the connection stays usable
        assert conn.exchange(get("/1k.bin")).body == tree.data["1k.bin"]


def test_range_of_empty_file_is_unsatisfiable(served):
    r = exchange(served.address, get("/empty.bin", "Range: bytes=0-"))
    assert r.status == 416 and r["Content-Range"] == "bytes */0"


def test_if_range(served, tree):
    data = tree.data["cond.txt"]
    with HttpConn(served.address) as conn:
        etag = conn.exchange(head("/cond.txt"))["ETag"]
        cases = [
            (f"If-Range: {etag}", 206),
            ('If-Range: "other"', 200),
            (f"If-Range: W/{etag}", 200),        # a weak tag never validates a range
            (f"If-Range: {http_date(COND_MTIME)}", 206),
            (f"If-Range: {http_date(COND_MTIME - 1)}", 200),
            (f"If-Range: {http_date(COND_MTIME + 1)}", 200),
        ]
        for if_range, status in cases:
            r = conn.exchange(get("/cond.txt", "Range: bytes=2-5", if_range))
            assert r.status == status, (if_range, r.raw_head)
            assert r.body == (data[2:6] if status == 206 else data), if_range


# ------------------------------------------------------------ methods --


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "OPTIONS", "PATCH", "TRACE", "BREW"])
def test_other_methods_get_405(served, tree, method):
    with HttpConn(served.address) as conn:
        r = conn.exchange(req(method, "/1k.bin", "Content-Length: 5", body=b"hello"))
        assert r.status == 405, r.raw_head
        assert r["Allow"] == "GET, HEAD"
        # the body was skipped and the connection kept
        assert conn.exchange(get("/1k.bin")).body == tree.data["1k.bin"]


# ---------------------------------------------------------- pipelining --


def test_pipelined_requests_answered_in_order(served, tree):
    etag = exchange(served.address, head("/1k.bin"))["ETag"]
    one_m = tree.data["1m.bin"]
    requests = [
        (get("/1k.bin"), 200, tree.data["1k.bin"]),
        (head("/1m.bin"), 200, b""),
        (get("/missing.bin"), 404, None),
        (get("/1k.bin", f"If-None-Match: {etag}"), 304, b""),
        (get("/1m.bin", "Range: bytes=10-19"), 206, one_m[10:20]),
        (get("/empty.bin"), 200, b""),
        (head("/nope.bin"), 404, b""),
        (get("/sub"), 301, b""),
        (get("/sub/inner.bin"), 200, tree.data["sub/inner.bin"]),
        (req("DELETE", "/1k.bin"), 405, None),
        (get("/1k.bin", "Connection: close"), 200, tree.data["1k.bin"]),
    ]
    with HttpConn(served.address) as conn:
        conn.send(b"".join(r for r, _, _ in requests))
        for i, (raw, status, body) in enumerate(requests):
            r = conn.read_response(head_request=raw.startswith(b"HEAD"))
            assert r.status == status, (i, raw, r.raw_head)
            if body is not None:
                assert r.body == body, (i, raw)
        assert r.has_token("Connection", "close")
        conn.closed_by_server()
    assert served.server.requests >= len(requests)


def test_deep_pipeline_in_small_pieces(served, tree):
    """More requests than the server answers at once, sent 7 bytes at a
    time and all at once: every answer, in order, nothing else."""
    names = ["1k.bin", "sub/inner.bin", "missing.bin", "empty.bin"]
    requests = [get("/" + names[i % 4]) for i in range(60)]
    blob = b"".join(requests)
    for pieces in (len(blob), 7):
        with HttpConn(served.address) as conn:
            for i in range(0, len(blob), pieces):
                conn.send(blob[i:i + pieces])
            for i in range(len(requests)):
                r = conn.read_response()
                name = names[i % 4]
                if name == "missing.bin":
                    assert r.status == 404, i
                else:
                    assert (r.status, r.body) == (200, tree.data[name]), i
            assert conn.still_open()


def test_body_on_get_is_read_and_discarded(start_server, tree):
    served = start_server(max_discard=1024)
    inner = tree.data["sub/inner.bin"]
    with HttpConn(served.address) as conn:
        # body and the next request in the same write
        conn.send(get("/1k.bin", "Content-Length: 11", body=b"hello world") + get("/sub/inner.bin"))
        assert conn.read_response().body == tree.data["1k.bin"]
        assert conn.read_response().body == inner
        # body that looks like a request, arriving later in pieces
        conn.send(get("/1k.bin", "Content-Length: 40"))
        assert conn.read_response().body == tree.data["1k.bin"]
        fake = get("/missing.bin", "X-Pad: " + "p" * 40)[:40]
        assert len(fake) == 40
        conn.send(fake[:13])
        time.sleep(0.05)
        conn.send(fake[13:])
        assert conn.exchange(get("/sub/inner.bin")).body == inner
        # exactly max_discard is still read and dropped
        conn.send(get("/1k.bin", "Content-Length: 1024", body=b"x" * 1024))
        assert conn.read_response().body == tree.data["1k.bin"]
        assert conn.exchange(head("/1k.bin")).status == 200
        # one byte more is refused, and the connection closed
        r = conn.exchange(get("/1k.bin", "Content-Length: 1025", body=b"y" * 1025))
        assert r.status == 413
        conn.closed_by_server()
    assert_served(served.address, tree)


# -------------------------------------------------------- HTTP/1.0 etc --


def test_http10_closes_without_keep_alive(served, tree):
    with HttpConn(served.address) as conn:
        r = conn.exchange(get("/1k.bin", version="HTTP/1.0", host=None))
        assert (r.status, r.body) == (200, tree.data["1k.bin"])
        assert r.has_token("Connection", "close")
        conn.closed_by_server()


def test_http10_keep_alive(served, tree):
    with HttpConn(served.address) as conn:
        for _ in range(3):
            r = conn.exchange(get("/1k.bin", "Connection: keep-alive", version="HTTP/1.0", host=None))
            assert (r.status, r.body) == (200, tree.data["1k.bin"])
            assert r.has_token("Connection", "keep-alive"), r.raw_head
        r = conn.exchange(head("/nope", "Connection: Keep-Alive", version="HTTP/1.0"))
        assert r.status == 404 and r.has_token("Connection", "keep-alive")
        r = conn.exchange(get("/sub/inner.bin", version="HTTP/1.0"))
        assert r.body == tree.data["sub/inner.bin"]
        conn.closed_by_server()


def test_http11_connection_close(served, tree):
    with HttpConn(served.address) as conn:
        r = conn.exchange(get("/1k.bin"))
        assert r.get("Connection") is None or not r.has_token("Connection", "close")
        assert conn.still_open()
        r = conn.exchange(get("/1k.bin", "Connection: close"))
        assert r.body == tree.data["1k.bin"] and r.has_token("Connection", "close")
        conn.closed_by_server()


def test_client_half_close_gets_its_answers(served, tree):
    with HttpConn(served.address) as conn:
        conn.send(get("/1k.bin") + get("/1m.bin"))
        conn.sock.shutdown(socket.SHUT_WR)
        assert conn.read_response().body == tree.data["1k.bin"]
        assert conn.read_response().body == tree.data["1m.bin"]
        conn.closed_by_server()


def test_absolute_form_target(served, tree):
    with HttpConn(served.address) as conn:
        r = conn.exchange(get("http://example.com/1k.bin", host="other.example"))
        assert (r.status, r.body) == (200, tree.data["1k.bin"])
        r = conn.exchange(get("HTTP://example.com:8080/sub/inner.bin?x=1"))
        assert (r.status, r.body) == (200, tree.data["sub/inner.bin"])
        r = conn.exchange(get("http://example.com/sub?x=1"))
        assert r.status == 301 and r["Location"].endswith("/sub/?x=1"), r.raw_head


def test_paths_are_percent_decoded_and_query_ignored(served, tree):
    with HttpConn(served.address) as conn:
        for target, name in [("/sub/%69nner.bin", "sub/inner.bin"),
                             ("/sub%2finner.bin", "sub/inner.bin"),
                             ("/1k.bin?download=1&x=%00", "1k.bin"),
                             ("/./sub/./inner.bin", "sub/inner.bin"),
                             ("//sub//inner.bin", "sub/inner.bin"),
                             ("/listing/sp%20ace", "listing/sp ace"),
                             ("/listing/caf%C3%A9.txt", "listing/caf\u00e9.txt"),
                             ("/listing/100%25", "listing/100%")]:
            r = conn.exchange(get(target))
            assert (r.status, r.body) == (200, tree.data[name]), target
        assert conn.exchange(get("/1k.bin/")).status == 404
        assert conn.exchange(get("/no/such/dir/")).status == 404


# ------------------------------------------------------------ bad input --

CLOSE, OPEN, ANY = "close", "open", "any"
LONG = 9000   # > the default max_head (8192)
H = "Host: t"


def raw(*lines: str, body: bytes = b"") -> bytes:
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


BAD_INPUT = [
    # (id, bytes sent, acceptable (status, after) pairs)
    ("bare-cr-in-value", raw("GET /1k.bin HTTP/1.1", H, "X: a\rb"), {(400, CLOSE)}),
    ("bare-cr-ends-line", b"GET /1k.bin HTTP/1.1\rHost: t\r\n\r\n", {(400, CLOSE)}),
    ("space-before-colon", raw("GET /1k.bin HTTP/1.1", "Host : t"), {(400, CLOSE)}),
    ("obs-fold", raw("GET /1k.bin HTTP/1.1", H, "X-A: one", " two"), {(400, CLOSE)}),
    ("nul-in-header", raw("GET /1k.bin HTTP/1.1", H, "X: a\x00b"), {(400, CLOSE)}),
    ("no-colon", raw("GET /1k.bin HTTP/1.1", H, "JustAName"), {(400, CLOSE)}),
    ("space-before-first-header", raw("GET /1k.bin HTTP/1.1", " Host: t"), {(400, CLOSE)}),
    ("del-in-header", raw("GET /1k.bin HTTP/1.1", H, "X: a\x7fb"), {(400, CLOSE)}),
    ("userinfo-in-absolute-form", raw("GET http://user@example.com/1k.bin HTTP/1.1", H),
     {(400, CLOSE)}),
    ("two-content-lengths", raw("GET /1k.bin HTTP/1.1", H, "Content-Length: 5",
                                "Content-Length: 6", body=b"hello!"), {(400, CLOSE)}),
    ("content-length-list-differs", raw("GET /1k.bin HTTP/1.1", H, "Content-Length: 5, 6",
                                        body=b"hello!"), {(400, CLOSE)}),
    ("content-length-negative", raw("GET /1k.bin HTTP/1.1", H, "Content-Length: -1"),
     {(400, CLOSE)}),
    ("content-length-not-a-number", raw("GET /1k.bin HTTP/1.1", H, "Content-Length: 0x10"),
     {(400, CLOSE)}),
    ("content-length-and-chunked", raw("GET /1k.bin HTTP/1.1", H, "Content-Length: 5",
                                       "Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
     {(400, CLOSE)}),
    ("te-gzip", raw("GET /1k.bin HTTP/1.1", H, "Transfer-Encoding: gzip"), {(501, CLOSE)}),
    ("te-chunked-then-gzip", raw("GET /1k.bin HTTP/1.1", H, "Transfer-Encoding: chunked, gzip"),
     {(400, CLOSE)}),
    ("te-on-http10", raw("GET /1k.bin HTTP/1.0", "Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
     {(400, CLOSE)}),
    ("chunked-body-on-get", raw("GET /1k.bin HTTP/1.1", H, "Transfer-Encoding: chunked",
                                body=b"5\r\nhello\r\n0\r\n\r\n"), {(413, CLOSE)}),
    ("body-over-max-discard", raw("GET /1k.bin HTTP/1.1", H, "Content-Length: 70000"),
     {(413, CLOSE)}),
    ("missing-host-http11", raw("GET /1k.bin HTTP/1.1"), {(400, CLOSE)}),
    ("two-hosts", raw("GET /1k.bin HTTP/1.1", H, "Host: u"), {(400, CLOSE)}),
    ("bad-host", raw("GET /1k.bin HTTP/1.1", "Host: a b"), {(400, CLOSE)}),
    ("oversize-header", raw("GET /1k.bin HTTP/1.1", H, "X-Big: " + "a" * LONG), {(431, CLOSE)}),
    ("too-many-headers", raw("GET /1k.bin HTTP/1.1", H, *[f"X-{i}: {i}" for i in range(80)]),
     {(431, CLOSE)}),
    ("oversize-request-line", raw(f"GET /{'a' * LONG} HTTP/1.1", H), {(414, CLOSE)}),
    ("http-2.0", raw("GET /1k.bin HTTP/2.0", H), {(505, CLOSE)}),
    ("http-1.2", raw("GET /1k.bin HTTP/1.2", H), {(505, CLOSE)}),
    ("lowercase-version", raw("GET /1k.bin http/1.1", H), {(400, CLOSE)}),
    ("no-version", b"GET /1k.bin\r\n\r\n", {(400, CLOSE)}),
    ("double-space", raw("GET  /1k.bin HTTP/1.1", H), {(400, CLOSE)}),
    ("tls-client-hello", b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03" + b"\x00" * 40,
     {(400, CLOSE)}),
    ("many-empty-lines", b"\r\n" * 8 + raw("GET /1k.bin HTTP/1.1", H), {(400, CLOSE)}),
    # methods are case-sensitive: "get" is not GET
    ("lowercase-method", raw("get /1k.bin HTTP/1.1", H), {(405, OPEN), (400, CLOSE)}),
    ("post", raw("POST /1k.bin HTTP/1.1", H, "Content-Length: 3", body=b"a=b"), {(405, OPEN)}),
    ("pct00-in-path", raw("GET /1k.bin%00.txt HTTP/1.1", H), {(400, ANY)}),
    ("bad-pct-escape", raw("GET /1k%zz.bin HTTP/1.1", H), {(400, ANY)}),
    ("asterisk", raw("GET * HTTP/1.1", H), {(400, ANY)}),
    ("dotdot", raw("GET /../x HTTP/1.1", H), {(403, OPEN)}),
    ("pct-dotdot", raw("GET /%2e%2e/x HTTP/1.1", H), {(403, OPEN)}),
    ("pct-dotdot-mixed", raw("GET /sub/.%2E/.%2e/x HTTP/1.1", H), {(403, OPEN)}),
    ("dotdot-pct2f", raw("GET /..%2fx HTTP/1.1", H), {(403, OPEN)}),
    ("backslash", raw("GET /sub\\..\\..\\x HTTP/1.1", H), {(403, OPEN)}),
    ("pct5c-backslash", raw("GET /sub%5cinner.bin HTTP/1.1", H), {(403, OPEN)}),
    ("symlink-out-of-root", raw("GET /link_file HTTP/1.1", H), {(403, OPEN)}),
    ("symlink-dir-out-of-root", raw("GET /link_dir/secret.txt HTTP/1.1", H), {(403, OPEN)}),
    ("fifo", raw("GET /fifo HTTP/1.1", H), {(403, OPEN)}),
    ("device", raw("GET /devnull HTTP/1.1", H), {(403, OPEN)}),
    ("symlink-to-device", raw("GET /link_devnull HTTP/1.1", H), {(403, OPEN)}),
    ("missing-file", raw("GET /no-such.bin HTTP/1.1", H), {(404, OPEN)}),
]


@pytest.mark.parametrize("sent, allowed", [r[1:] for r in BAD_INPUT], ids=[r[0] for r in BAD_INPUT])
def test_bad_input(served, tree, sent, allowed):
    with HttpConn(served.address, timeout=5) as conn:
        conn.send(sent)
        r = conn.read_response()
        statuses = {status for status, _ in allowed}
        assert r.status in statuses, f"got {r.raw_head[:120]!r}, want one of {sorted(statuses)}"
        after = {a for s, a in allowed if s == r.status}.pop()
        assert SECRET.strip() not in r.raw_head + (r.body or b"")
        if after == CLOSE:
            assert r.has_token("Connection", "close"), r.raw_head
            conn.closed_by_server()
        elif after == OPEN:
            assert not r.has_token("Connection", "close"), r.raw_head
            follow = conn.exchange(get("/1k.bin"))
            assert (follow.status, follow.body) == (200, tree.data["1k.bin"])
    # the server still serves
    assert_served(served.address, tree)


def test_error_after_good_pipelined_requests(served, tree):
    """Answers queued before a malformed request still go out, then the
    400, then the close; nothing after it is answered."""
    with HttpConn(served.address) as conn:
        conn.send(get("/1k.bin") + get("/1m.bin") + b"GET /1k.bin HTTP/1.1\r\nHost : x\r\n\r\n"
                  + get("/1k.bin"))
        assert conn.read_response().body == tree.data["1k.bin"]
        assert conn.read_response().body == tree.data["1m.bin"]
        assert conn.read_response().status == 400
        conn.closed_by_server()


def test_no_request_smuggling_through_content_length(served, tree):
    """A body that holds a request: with a valid Content-Length it is never
    parsed; with conflicting framing the connection ends."""
    smuggled = get("/missing-smuggled.bin")
    with HttpConn(served.address) as conn:
        conn.send(get("/1k.bin", f"Content-Length: {len(smuggled)}", body=smuggled)
                  + get("/sub/inner.bin"))
        assert conn.read_response().status == 200
        second = conn.read_response()
        assert (second.status, second.body) == (200, tree.data["sub/inner.bin"])
        assert conn.still_open()
    with HttpConn(served.address) as conn:
        conn.send(raw("GET /1k.bin HTTP/1.1", H, "Content-Length: 0",
                      "Transfer-Encoding: chunked") + b"0\r\n\r\n" + smuggled)
        assert conn.read_response().status == 400
        conn.closed_by_server()


# --------------------------------------------------------------- listing --


def test_listing_escapes_names(served, tree):
    r = exchange(served.address, get("/listing/"))
    assert r.status == 200
    assert r["Content-Type"] == "text/html; charset=utf-8"
    body = r.body
    page = parse_listing(body)
    assert page.title == "Index of /listing/"
    links = dict((text, href) for href, text in page.links)
    expected = set(HOSTILE_NAMES) | {HOSTILE_DIR + "/", "../"}
    assert set(links) == expected, sorted(links)
    # nothing a browser would read as markup or as another attribute
    for bad in (b"<script>", b"a&b", b'"q"', b"<b>", b"&dir"):
        assert bad not in body, bad
    for text, href in links.items():
        if text == "../":
            assert href == "../"
            continue
        assert re.fullmatch(r"[A-Za-z0-9._~%-]+/?", href), href
        assert urllib.parse.unquote(href) == text
    with HttpConn(served.address) as conn:
        for name in HOSTILE_NAMES:
            got = conn.exchange(get("/listing/" + links[name]))
            assert (got.status, got.body) == (200, tree.data[f"listing/{name}"]), name
        inner = conn.exchange(get("/listing/" + links[HOSTILE_DIR + "/"]))
        assert inner.status == 200
        assert b"<b>" not in inner.body and b"&dir" not in inner.body.replace(b"&amp;dir", b"")
        sub_page = parse_listing(inner.body)
        assert sub_page.title == f"Index of /listing/{HOSTILE_DIR}/"
        assert ("x.txt", "x.txt") in sub_page.links
        x = conn.exchange(get("/listing/" + links[HOSTILE_DIR + "/"] + "x.txt"))
        assert x.body == tree.data[f"listing/{HOSTILE_DIR}/x.txt"]
        # HEAD of a listing: its length, no body
        h = conn.exchange(head("/listing/"))
        assert h.status == 200 and h["Content-Length"] == str(len(body))


def test_listing_of_root_and_empty_directory(served):
    root = exchange(served.address, get("/"))
    assert root.status == 200
    page = parse_listing(root.body)
    assert page.title == "Index of /"
    hrefs = {href for href, _ in page.links}
    assert "../" not in hrefs and {"1k.bin", "sub/", "listing/"} <= hrefs
    empty = parse_listing(exchange(served.address, get("/emptydir/")).body)
    assert empty.links == [("../", "../")]


def test_index_html_is_preferred(served, tree):
    with HttpConn(served.address) as conn:
        for target in ("/withindex/", "/withindex/?x=1", "/withindex/index.html", "/withindex/."):
            r = conn.exchange(get(target))
            assert (r.status, r.body) == (200, tree.data["withindex/index.html"]), target
            assert r["Content-Type"] == "text/html; charset=utf-8"
        r = conn.exchange(get("/withindex"))
        assert (r.status, r["Location"]) == (301, "/withindex/")
        r = conn.exchange(get("/withindex?a=1&b=%20"))
        assert (r.status, r["Location"]) == (301, "/withindex/?a=1&b=%20")
        r = conn.exchange(head("/sub"))
        assert (r.status, r["Location"]) == (301, "/sub/")


def test_listing_off_is_403(start_server, tree):
    served = start_server(listing=False)
    with HttpConn(served.address) as conn:
        for target in ("/", "/listing/", "/emptydir/", "/sub/"):
            assert conn.exchange(get(target)).status == 403, target
        assert conn.exchange(get("/withindex/")).body == tree.data["withindex/index.html"]
        assert conn.exchange(get("/listing/a%26b")).body == tree.data["listing/a&b"]
        assert conn.exchange(get("/sub")).status == 301


# -------------------------------------------------------------- timeouts --


def trickle(conn: HttpConn, data: bytes, interval: float):
    """Sends data a byte every `interval` s until the server closes; returns
    (seconds from the first byte to the close, bytes sent), or (None, n)."""
    first = None
    for i, byte in enumerate(data):
        try:
            conn.send(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            return time.monotonic() - first, i
        if first is None:
            first = time.monotonic()
        readable, _, _ = select.select([conn.sock], [], [], interval)
        if readable:
            try:
                chunk = conn.sock.recv(4096)
            except ConnectionResetError:
                chunk = b""
            assert chunk == b"", f"the server answered a partial head: {chunk[:200]!r}"
            return time.monotonic() - first, i + 1
    return None, len(data)


def test_header_timeout_drops_slowloris(start_server, tree):
    served = start_server(header_timeout=1.0, keepalive_timeout=10.0)
    slow = get("/1k.bin", "X-Pad: " + "a" * 60)[:40]      # 40 bytes x 0.2 s: 8 s at most
    with HttpConn(served.address) as conn:
        elapsed, sent = trickle(conn, slow, 0.2)
    assert elapsed is not None, "a client trickling its head for 8 s was never dropped"
    assert 0.8 <= elapsed <= 2.0, f"dropped {elapsed:.2f} s after the first byte ({sent} bytes)"
    assert_served(served.address, tree)


def test_trickled_body_is_bounded_by_the_header_timeout(start_server, tree):
    """A body we only read to drop it must not let a client hold the
    connection by trickling it (each byte used to restart the keep-alive
    timer)."""
    served = start_server(header_timeout=1.0, keepalive_timeout=10.0)
    with HttpConn(served.address) as conn:
        conn.send(get("/1k.bin", "Content-Length: 60"))
        status, _, _, raw_head = conn.read_head()
        assert status == 200, raw_head
        elapsed, sent = trickle(conn, b"x" * 60, 0.2)              # 12 s if never dropped
    assert elapsed is not None, "a body trickled for 12 s was never cut"
    assert elapsed <= 3.0, f"dropped only after {elapsed:.2f} s ({sent} bytes)"
    assert_served(served.address, tree)


def test_header_timeout_on_later_requests(start_server, tree):
    """The header timeout also holds for the second request of a kept-alive
    connection, and for a partial head pipelined behind a complete one."""
    served = start_server(header_timeout=1.0, keepalive_timeout=10.0)
    results = {}
    with HttpConn(served.address) as kept, HttpConn(served.address) as piped:
        assert kept.exchange(get("/1k.bin")).status == 200
        piped.send(get("/1k.bin") + b"GET /1k.bin HTTP/1.1\r\nHo")
        since = time.monotonic()
        assert piped.read_response().body == tree.data["1k.bin"]

        def run_kept():
            results["kept"] = trickle(kept, get("/sub/inner.bin", "X-Pad: " + "a" * 60)[:40], 0.2)

        def run_piped():
            piped.closed_by_server(timeout=8)
            results["piped"] = (time.monotonic() - since, None)
        threads = [threading.Thread(target=run_kept, daemon=True),
                   threading.Thread(target=run_piped, daemon=True)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
    assert set(results) == {"kept", "piped"}, results
    for key, (elapsed, _) in results.items():
        assert elapsed is not None, f"{key}: never dropped"
        assert 0.8 <= elapsed <= 2.0, f"{key}: dropped after {elapsed:.2f} s"


def test_header_timeout_counts_from_first_byte_of_each_request(start_server, tree):
    served = start_server(header_timeout=1.0, keepalive_timeout=10.0)
    with HttpConn(served.address) as conn:
        for _ in range(3):
            # a head that takes 0.5 s is served; three of them outlast the timeout
            data = get("/1k.bin")
            step = -(-len(data) // 5)
            for i in range(0, len(data), step):
                conn.send(data[i:i + step])
                time.sleep(0.1)
            assert conn.read_response().body == tree.data["1k.bin"]
        # between requests the keep-alive timeout (10 s) applies, not 1 s
        time.sleep(1.5)
        assert conn.exchange(get("/1k.bin")).status == 200


def test_keepalive_timeout(start_server, tree):
    served = start_server(keepalive_timeout=0.5, header_timeout=10.0)
    with HttpConn(served.address) as idle, HttpConn(served.address) as busy:
        assert idle.exchange(get("/1k.bin")).status == 200
        since = time.monotonic()
        closed = {}

        def watch():
            closed["how"] = idle.closed_by_server(timeout=5)
            closed["after"] = time.monotonic() - since
        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        # requests every 0.3 s keep a connection alive well past 0.5 s
        for _ in range(6):
            assert busy.exchange(get("/1k.bin")).status == 200
            time.sleep(0.3)
        watcher.join(10)
        assert "after" in closed, "the idle connection was not closed"
        assert 0.45 <= closed["after"] <= 1.5, f"idle connection closed after {closed['after']:.2f} s"
        # gracefully (FIN), so that a client may retry on a new connection
        assert closed["how"] == "eof", f"idle keep-alive connection ended with a {closed['how']}"
        assert busy.exchange(get("/sub/inner.bin")).status == 200


def test_slow_reader_is_not_cut_by_timeouts(start_server, tree):
    served = start_server(header_timeout=1.0, keepalive_timeout=0.5)
    with HttpConn(served.address, timeout=20, rcvbuf=64 * KIB) as conn:
        conn.send(get("/" + BIG))
        _, _, headers, raw_head = conn.read_head()
        assert raw_head.startswith(b"HTTP/1.1 200"), raw_head
        digest = hashlib.sha256(bytes(conn.buf))
        got = len(conn.buf)
        conn.buf.clear()
        stalled = False
        deadline = time.monotonic() + 60
        while got < BIG_SIZE and time.monotonic() < deadline:
            if not stalled and got >= MIB:
                time.sleep(2.0)   # longer than both timeouts, with the transfer running
                stalled = True
            chunk = conn.sock.recv(min(MIB, BIG_SIZE - got))
            if not chunk:
                break
            digest.update(chunk)
            got += len(chunk)
        assert got == BIG_SIZE, f"cut after {got} of {BIG_SIZE} bytes"
        assert digest.hexdigest() == tree.digests[BIG]
        # and the connection is still usable afterwards
        assert conn.exchange(get("/1k.bin")).body == tree.data["1k.bin"]


# ---------------------------------------------------- concurrency / fds --


def test_concurrent_mixed_clients_leave_nothing_open(served, tree):
    etag = exchange(served.address, head("/1k.bin"))["ETag"]

    def client(worker):
        with HttpConn(served.address) as conn:
            for i in range(15):
                kind = (worker + i) % 6
                if kind == 0:
                    assert conn.exchange(get("/1m.bin")).digest == tree.digests["1m.bin"]
                elif kind == 1:
                    assert conn.exchange(get("/nope")).status == 404
                elif kind == 2:
                    assert conn.exchange(get("/1k.bin", f"If-None-Match: {etag}")).status == 304
                elif kind == 3:
                    r = conn.exchange(get("/1m.bin", "Range: bytes=-5"))
                    assert r.body == tree.data["1m.bin"][-5:]
                elif kind == 4:
                    assert conn.exchange(get("/listing/")).status == 200
                else:
                    assert conn.exchange(get("/%2e%2e/x")).status == 403
        # abandoned downloads and bad requests
        with HttpConn(served.address) as conn:
            conn.send(get("/" + BIG))
            conn.read_head()
        with HttpConn(served.address) as conn:
            assert conn.exchange(b"BAD\r\n\r\n").status == 400

    Workers(12, client).start().join(60)
    wait_no_connections(served.engine)


# ----------------------------------------------------------------- more --


@pytest.mark.parametrize("target", ["//sub", "///sub?x=1", "//withindex"])
def test_directory_redirect_stays_on_this_server(served, target):
    """The 301 for a directory must lead to the same directory here: a
    Location starting with "//" is a network-path reference, i.e. another
    host (an open redirect for any directory name such as "evil.example")."""
    r = exchange(served.address, get(target))
    assert r.status == 301, r.raw_head
    location = r["Location"]
    # WHATWG URL parsing (browsers) reads "//x" and "///x" alike as host x
    assert not location.startswith("//"), \
        f"GET {target} redirects to another host: Location {location!r}"
    base = url(served, target)
    resolved = urllib.parse.urlsplit(urllib.parse.urljoin(base, r["Location"]))
    assert resolved.netloc == f"127.0.0.1:{served.port}", \
        f"GET {target} redirects to another host: Location {r['Location']!r} -> {resolved.geturl()}"
    assert re.sub("/+", "/", resolved.path) == re.sub("/+", "/", target.split("?")[0]) + "/"


def test_header_names_are_case_insensitive(served, tree):
    with HttpConn(served.address) as conn:
        etag = conn.exchange(head("/cond.txt"))["ETag"]
        r = conn.exchange(req("GET", "/cond.txt", "hOsT: t", f"if-none-match: {etag}", host=None))
        assert r.status == 304, r.raw_head
        r = conn.exchange(get("/1m.bin", "RANGE: bytes=0-3"))
        assert (r.status, r.body) == (206, tree.data["1m.bin"][:4])
        conn.send(get("/1k.bin", "content-LENGTH: 3", body=b"abc") + get("/empty.bin"))
        assert conn.read_response().body == tree.data["1k.bin"]
        assert conn.read_response().body == b""
        r = conn.exchange(get("/1k.bin", "CONNECTION: Close"))
        assert r.status == 200
        conn.closed_by_server()


def test_every_response_has_date_and_server(served, tree):
    etag = exchange(served.address, head("/1k.bin"))["ETag"]
    targets = [get("/1k.bin"), head("/1k.bin"), get("/nope"), get("/1k.bin", f"If-None-Match: {etag}"),
               get("/1m.bin", "Range: bytes=0-1"), get("/1m.bin", f"Range: bytes={MIB}-"),
               get("/sub"), get("/sub/"), req("PUT", "/x"), get("/%2e%2e/x")]
    with HttpConn(served.address) as conn:
        conn.send(b"".join(targets))
        for sent in targets:
            r = conn.read_response(head_request=sent.startswith(b"HEAD"))
            assert r["Server"] and r["Date"].endswith(" GMT"), (sent, r.raw_head)


def test_listing_of_names_that_are_not_utf8(start_server, tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    name = os.fsdecode(b"bad\xffname")
    (root / name).write_bytes(b"not utf-8\n")
    served = start_server(root=root)
    r = exchange(served.address, get("/"))
    page = parse_listing(r.body)     # the page itself is valid UTF-8
    [(href, text)] = page.links
    assert text == "bad\ufffdname" and href == "bad%FFname"
    got = exchange(served.address, get("/" + href))
    assert (got.status, got.body) == (200, b"not utf-8\n")


def test_pipelined_request_behind_a_big_download(served, tree):
    with HttpConn(served.address, timeout=20) as conn:
        conn.send(get("/" + BIG) + get("/1k.bin") + head("/" + BIG))
        big = conn.read_response()
        assert (big.length, big.digest) == (BIG_SIZE, tree.digests[BIG])
        assert conn.read_response().body == tree.data["1k.bin"]
        assert conn.read_response(head_request=True)["Content-Length"] == str(BIG_SIZE)


def test_over_max_connections_gets_503(start_server, tree):
    served = start_server(engine_options={"max_connections": 2})
    with HttpConn(served.address) as a, HttpConn(served.address) as b:
        assert a.exchange(get("/1k.bin")).status == 200
        assert b.exchange(get("/1k.bin")).status == 200
        with HttpConn(served.address) as third:
            r = third.read_response()
            assert r.status == 503 and r.has_token("Connection", "close"), r.raw_head
            third.closed_by_server()
        assert a.exchange(get("/sub/inner.bin")).status == 200
    assert wait_for(lambda: served.engine.connections == 0, 5)
    assert_served(served.address, tree)


@pytest.mark.parametrize("request_bytes, late", [
    (get("/1m.bin", "Connection: close"), get("/1k.bin")),       # a pipelining client
    (get("/1m.bin", version="HTTP/1.0", host=None), b"\r\n"),    # a stray CRLF
], ids=["http11-connection-close", "http10"])
def test_closing_answer_is_not_cut_by_late_client_bytes(served, tree, request_bytes, late):
    """RFC 9112 9.6: a server closing after an answer must not reset the
    connection under it.  Bytes the client sent after the request (here a
    next request, or a CRLF) are unread when the server closes; close(2)
    with unread data sends a RST and drops whatever of the answer is still
    in the send buffer, so the client gets a cut file."""
    with HttpConn(served.address, rcvbuf=64 * KIB) as conn:
        conn.send(request_bytes)
        status, _, headers, raw_head = conn.read_head()
        assert status == 200, raw_head
        conn.send(late)
        time.sleep(0.3)
        got = len(conn.buf)
        digest = hashlib.sha256(bytes(conn.buf))
        conn.buf.clear()
        outcome = "too long"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                chunk = conn.sock.recv(MIB)
            except ConnectionResetError:
                outcome = "reset"
                break
            if not chunk:
                outcome = "eof"
                break
            digest.update(chunk)
            got += len(chunk)
    assert (outcome, got) == ("eof", MIB), \
        f"the 1 MiB answer ended with {outcome} after {got} bytes"
    assert digest.hexdigest() == tree.digests["1m.bin"]


def test_name_too_long_for_the_file_system_is_404(served):
    """No file can have a 300-byte name component: it is not there (404),
    not forbidden (403 is for things that exist and are refused)."""
    r = exchange(served.address, get("/" + "a" * 300))
    assert r.status == 404, r.raw_head
    r = exchange(served.address, get("/sub/" + "b" * 256 + ".bin"))
    assert r.status == 404, r.raw_head


def test_max_head_option(start_server, tree):
    served = start_server(max_head=1024)
    fits = get("/1k.bin", "X-Pad: " + "a" * (1024 - len(get("/1k.bin", "X-Pad: "))))
    assert len(fits) == 1024
    with HttpConn(served.address) as conn:
        assert conn.exchange(fits).body == tree.data["1k.bin"]
        r = conn.exchange(get("/1k.bin", "X-Pad: " + "a" * 1100))
        assert r.status == 431
        conn.closed_by_server()
    assert_served(served.address, tree)


def test_access_log_counts_the_body_bytes_of_a_cut_download(start_server, tree, tmp_path):
    """A download the client resets part-way must be logged with the body
    bytes that went out (the transmit's `done`), as the raw protocol does,
    not as 0 ("-"): an operator reading the log must see that the transfer
    started and how far it got.  At least what the client read of the body
    went out; never more than the file."""
    log_path = tmp_path / "access.log"
    log_fd = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        served = start_server(access_log=log_fd)
        with HttpConn(served.address) as conn:
            conn.send(get("/" + BIG))
            status, _, _, _ = conn.read_head()
            assert status == 200
            body_read = len(conn.buf)
            while body_read < 300 * KIB:
                chunk = conn.sock.recv(64 * KIB)
                assert chunk, f"server closed after {body_read} body bytes"
                body_read += len(chunk)
            # SO_LINGER 0: close() resets, so the server's transmit fails
            conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        line_re = re.compile(rb'"GET /%s HTTP/1\.1" 200 (\d+|-)\n' % BIG.encode())
        assert wait_for(lambda: line_re.search(log_path.read_bytes()), 10), \
            f"no access line for the cut download: {log_path.read_bytes()!r}"
        served.engine.stop(drain_timeout=1.0)   # no more lines: the descriptor can go
        [logged] = line_re.findall(log_path.read_bytes())
        logged = 0 if logged == b"-" else int(logged)
        assert body_read <= logged <= BIG_SIZE, \
            f"logged {logged} body bytes; the client read {body_read} of {BIG_SIZE}"
    finally:
        os.close(log_fd)
