"""Files that change while the native HTTP server serves them.

The open-file cache trusts an entry for `cache_valid` seconds without a
system call (inotify drops it sooner), so what a client may get while a
file changes is the guarantee README states ("Files that change"):

- every answer is framed: exactly Content-Length body bytes, or a reset
  before that many; never an orderly close after a short body, never a byte
  more (the next answer on the connection starts where the body ended);
- a file replaced by rename is served as one complete version, old or new;
- a file written in place (truncated and rewritten, or overwritten) has no
  content guarantee for an answer read from it meanwhile: its bytes may mix
  versions, but each byte is the byte some version has at that offset;
- once the change is cache_valid old, the new version is served.

Writers run in a thread against keep-alive clients in other threads; every
loop is bounded in time and in count.  Every test runs on each backend.
"""
from __future__ import annotations

import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from types import SimpleNamespace

import pytest

import pyiocp

NAME = "f.bin"
SMALL = [700, 1024, 3000, 5000, 9999]            # answered from the cache's copy in memory
BIG = [40_000, 70_000, 100_000, 130_000, 65_536]  # answered with sendfile from the descriptor
SAME_SIZE = 50_000                                # in-place overwrites keep the size
CLIENTS = 3
DURATION = 1.2          # seconds of concurrent writing per scenario
MAX_ANSWERS = 3000      # per client and scenario
HEAD_END = b"\r\n\r\n"
STATUS = re.compile(rb"HTTP/1\.1 (\d{3}) [^\r\n]*\r\n")


def versions(sizes, seed):
    rng = random.Random(seed)
    return [rng.randbytes(n) for n in sizes]


@pytest.fixture
def serve(make_engine, tmp_path):
    """serve(**StaticFiles options) -> namespace(root, address, server): the
    folder tmp_path/root served over HTTP on the backend under test."""
    made = []

    def start(**options):
        root = tmp_path / "root"
        root.mkdir(exist_ok=True)
        engine = make_engine()
        server = pyiocp.StaticFiles(root, **options)
        listener = engine.listen(("127.0.0.1", 0), server)
        engine.start()
        made.append(SimpleNamespace(root=root, address=listener.address, server=server, engine=engine))
        return made[-1]

    yield start
    for ns in made:      # let no_fd_leak see the root and the cache closed
        ns.__dict__.clear()


# ---------------------------------------------------------------- client --

class Answer:
    """One request's outcome: "body" (a complete answer), "reset" (cut by a
    reset, with the body bytes that came before it), or a failure: "eof"
    (an orderly close before the body ended) or "bad" (not a well-framed
    answer)."""

    def __init__(self, kind, status=0, length=0, body=b"", detail=""):
        self.kind, self.status, self.length, self.body, self.detail = kind, status, length, body, detail

    def __repr__(self):
        return (f"Answer({self.kind}, status {self.status}, Content-Length {self.length}, "
                f"{len(self.body)} body bytes{', ' + self.detail if self.detail else ''})")


class Client:
    """Keep-alive GETs, one at a time, read on a raw socket so that a reset
    and an orderly close stay distinguishable."""

    def __init__(self, address):
        self.address = address
        self.sock = None
        self.buf = b""

    def close(self):
        if self.sock is not None:
            self.sock.close()
        self.sock = None
        self.buf = b""

    def _recv(self):
        chunk = self.sock.recv(1 << 16)
        if not chunk:
            raise EOFError
        self.buf += chunk

    def get(self, path="/" + NAME) -> Answer:
        if self.sock is None:
            self.sock = socket.create_connection(self.address, timeout=10)
        body = b""
        try:
            self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            while HEAD_END not in self.buf:
                if len(self.buf) > 8192:
                    return Answer("bad", detail=f"no end of head: {self.buf[:100]!r}")
                self._recv()
            head, _, self.buf = self.buf.partition(HEAD_END)
            status = STATUS.match(head + b"\r\n")
            lengths = re.findall(rb"\r\ncontent-length: *(\d+)", head, re.I)
            if not status or len(lengths) != 1:
                return Answer("bad", detail=f"head {head[:200]!r}")
            length = int(lengths[0])
            while len(self.buf) < length:
                self._recv()
            body, self.buf = self.buf[:length], self.buf[length:]
            if self.buf:
                # one request at a time: nothing may follow its answer
                return Answer("bad", int(status.group(1)), length, body,
                              f"{len(self.buf)} bytes after the body: {self.buf[:40]!r}")
            return Answer("body", int(status.group(1)), length, body)
        except (ConnectionResetError, BrokenPipeError):
            got = self.buf if body == b"" else body
            self.close()
            return Answer("reset", body=got)
        except EOFError:
            got = len(self.buf)
            self.close()
            return Answer("eof", detail=f"orderly close after {got} bytes of head or body")

    def assert_quiet(self):
        """The server sent nothing beyond the answers asked for."""
        if self.sock is None:
            return
        readable, _, _ = select.select([self.sock], [], [], 0.05)
        if readable:
            try:
                extra = self.sock.recv(4096)
            except ConnectionResetError:
                extra = b"<reset>"
            assert not extra, f"unasked-for bytes from the server: {extra[:80]!r}"


def hammer(address, stop, out, check):
    """A client thread: GETs until `stop`, each answer classified by check()."""
    client = Client(address)
    try:
        for _ in range(MAX_ANSWERS):
            if stop.is_set():
                break
            answer = client.get()
            out.append(check(answer))
        client.assert_quiet()
    except Exception as exc:        # reported by the test, not lost in a thread
        out.append(("error", repr(exc)))
    finally:
        client.close()


# ------------------------------------------------------------- checking --

def classifier(known, in_place):
    """check(answer) -> (outcome, detail): "complete" (one known version),
    "mixed" (bytes of several versions at their offsets: allowed only for
    files written in place), "reset", or a failure ("FAIL ...")."""
    by_body = {v: i for i, v in enumerate(known)}
    longest = max(len(v) for v in known)
    # for every offset, the bytes some version has there (a bit mask of 256)
    allowed = [0] * longest
    for v in known:
        for i, b in enumerate(v):
            allowed[i] |= 1 << b

    def check(answer):
        if answer.kind == "reset":
            return ("reset", len(answer.body))
        if answer.kind != "body":
            return (f"FAIL {answer.kind}", repr(answer))
        if answer.status != 200:
            return ("FAIL status", repr(answer))
        if answer.body in by_body:
            return ("complete", by_body[answer.body])
        if not in_place:
            return ("FAIL not one version", repr(answer))
        for i, b in enumerate(answer.body):
            if not allowed[i] >> b & 1:
                return ("FAIL byte from no version", f"{answer!r}: offset {i} has {b}")
        return ("mixed", len(answer.body))
    return check


def run_scenario(address, write, known, in_place, seconds=DURATION):
    """CLIENTS threads GET the file while write() is called again and again
    in this thread; returns the outcomes counted, failures listed."""
    stop = threading.Event()
    results = [[] for _ in range(CLIENTS)]
    check = classifier(known, in_place)
    threads = [threading.Thread(target=hammer, args=(address, stop, results[i], check), daemon=True)
               for i in range(CLIENTS)]
    for t in threads:
        t.start()
    rng = random.Random(7)
    writes = 0
    deadline = time.monotonic() + seconds
    try:
        while time.monotonic() < deadline and writes < 20_000:
            write(writes)
            writes += 1
            if rng.random() < 0.5:
                time.sleep(rng.random() / 1000)     # let some answers see a settled file
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not any(t.is_alive() for t in threads), "a client thread did not finish"
    outcomes = Counter(kind for r in results for kind, _ in r)
    failures = [(kind, detail) for r in results for kind, detail in r if kind.startswith(("FAIL", "error"))]
    return outcomes, failures, writes


def assert_serves(address, expected, within):
    """The file as it is now is served within `within` seconds (and from
    then on, for a few requests more)."""
    client = Client(address)
    deadline = time.monotonic() + within
    last = None
    try:
        while True:
            last = client.get()
            if last.kind == "body" and last.body == expected:
                break
            assert time.monotonic() < deadline, \
                f"the final version ({len(expected)} bytes) is not served {within} s after the change: {last!r}"
            time.sleep(0.02)
        for _ in range(5):
            again = client.get()
            assert again.kind == "body" and again.body == expected, again
    finally:
        client.close()


# ----------------------------------------------------------- scenarios --

def writer_rename(root, known):
    def write(i):
        tmp = root / f".{NAME}.{i % 4}.tmp"
        tmp.write_bytes(known[i % len(known)])
        os.replace(tmp, root / NAME)
    return write


def writer_truncate(root, known):
    def write(i):
        with open(root / NAME, "r+b") as f:
            f.truncate(0)
            f.write(known[i % len(known)])
    return write


def writer_overwrite(root, known):
    fd = os.open(root / NAME, os.O_WRONLY)

    def write(i):
        os.pwrite(fd, known[i % len(known)], 0)
    write.close = lambda: os.close(fd)
    return write


@pytest.mark.parametrize("sizes", [SMALL, BIG], ids=["small", "big"])
def test_rename_over_serves_one_complete_version(serve, sizes):
    """Replaced by rename (a temporary file renamed over the name): every
    answer is one whole version, old or new, never cut: the renamed-over
    inode is never written again, and the temporary file is complete before
    it takes the name."""
    known = versions(sizes, 1)
    final = versions([sizes[0] + 1], 2)[0]
    served = serve()
    (served.root / NAME).write_bytes(known[-1])
    outcomes, failures, writes = run_scenario(served.address, writer_rename(served.root, known), known,
                                              in_place=False)
    assert not failures, f"{len(failures)} bad answers, e.g. {failures[:3]} ({dict(outcomes)})"
    assert outcomes["complete"] > 0 and writes > 0, dict(outcomes)
    assert outcomes["reset"] == 0, f"no file shrank under an answer, yet: {dict(outcomes)}"
    (served.root / ".final.tmp").write_bytes(final)
    os.replace(served.root / ".final.tmp", served.root / NAME)
    assert_serves(served.address, final, served.server.cache_valid + 2.0)


@pytest.mark.parametrize("sizes", [SMALL, BIG], ids=["small", "big"])
def test_truncate_and_rewrite_is_framed(serve, sizes):
    """Truncated and rewritten in place with versions of other sizes: an
    answer may be a whole version, the file's state at some instant (empty,
    a prefix, bytes of two versions at their offsets), or cut by a reset
    when the file became shorter than its Content-Length; never an orderly
    close after a short body, never a byte beyond it."""
    known = versions(sizes, 3)
    final = versions([sizes[0] + 1], 4)[0]
    served = serve()
    (served.root / NAME).write_bytes(known[-1])
    outcomes, failures, writes = run_scenario(served.address, writer_truncate(served.root, known),
                                              known + [b""], in_place=True)
    assert not failures, f"{len(failures)} bad answers, e.g. {failures[:3]} ({dict(outcomes)})"
    assert outcomes["complete"] > 0 and writes > 0, dict(outcomes)
    writer_truncate(served.root, [final])(0)
    assert_serves(served.address, final, served.server.cache_valid + 2.0)


def test_overwrite_in_place_keeps_the_length(serve):
    """Overwritten in place with versions of the same size: answers may mix
    the versions' bytes (no server reading a file that is being written can
    do better), but always at their offsets and exactly Content-Length of
    them; the size never shrinks, so nothing is reset."""
    known = versions([SAME_SIZE] * 5, 5)
    final = versions([SAME_SIZE], 6)[0]
    served = serve()
    (served.root / NAME).write_bytes(known[-1])
    write = writer_overwrite(served.root, known)
    try:
        outcomes, failures, writes = run_scenario(served.address, write, known, in_place=True)
    finally:
        write.close()
    assert not failures, f"{len(failures)} bad answers, e.g. {failures[:3]} ({dict(outcomes)})"
    assert outcomes["reset"] == 0, dict(outcomes)
    assert outcomes["complete"] + outcomes["mixed"] > 0 and writes > 0, dict(outcomes)
    with open(served.root / NAME, "r+b") as f:
        f.write(final)
    assert_serves(served.address, final, served.server.cache_valid + 2.0)


# ------------------------------------------------------ the time bound --

@pytest.mark.parametrize("size", [1000, 40_000], ids=["small", "big"])
@pytest.mark.parametrize("cache_valid", [0.5, 0.0])
def test_change_inotify_misses_is_served_after_the_validity_period(serve, tmp_path, size, cache_valid):
    """A file rewritten in place through a hard link in another directory:
    inotify reports that to the other directory only, so only the time
    bound brings the change.  Within cache_valid of the entry's last check
    the old entry answers (for a small file its copy in memory: the old
    version whole; for a big one its descriptor: the new bytes cut to the
    old Content-Length, the in-place caveat); once cache_valid has passed
    since the change, the very next request gets the new version.  With
    cache_valid 0, every request checks the file: the next one already
    does."""
    served = serve(cache_valid=cache_valid)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    old, new = versions([size, size + 10], 8)
    (served.root / NAME).write_bytes(old)
    os.link(served.root / NAME, elsewhere / NAME)
    client = Client(served.address)
    try:
        checked = time.monotonic()              # the entry is checked after this
        assert client.get().body == old
        with open(elsewhere / NAME, "r+b") as f:
            f.truncate(0)
            f.write(new)
        changed = time.monotonic()
        soon = client.get()
        answered = time.monotonic()             # the server looked it up before this
        assert soon.kind == "body", soon
        if cache_valid == 0:
            assert soon.body == new
        elif answered - checked < 0.8 * cache_valid:   # else this machine was too slow to tell
            if size <= 16384:
                assert soon.body == old, soon
            else:
                assert (soon.length, soon.body) == (len(old), new[:len(old)]), soon
        # CLOCK_MONOTONIC_COARSE, which the cache reads, lags by up to a tick
        time.sleep(max(0.0, changed + cache_valid + 0.05 - time.monotonic()))
        later = client.get()
        assert later.kind == "body" and later.body == new, later
    finally:
        client.close()


# ------------------------------------------------- no system call per hit --

STAT_CALLS = ("stat", "lstat", "fstat", "newfstatat", "statx", "open", "openat", "openat2")
STRACE_LINE = re.compile(r"^(\d+) +(\d+\.\d+) (\w+)\(")


def child_env():
    """The package under test for a `python -m pyiocp` child, wherever it
    was imported from."""
    env = dict(os.environ)
    parent = os.path.dirname(os.path.dirname(os.path.abspath(pyiocp.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([parent] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep)
                                                    if p])
    return env, parent


def traced_calls(backend, root, cache_valid, requests, out):
    """Runs `python -m pyiocp serve` under strace, makes `requests` keep-alive
    GETs of a 1 KiB file after a first one (the miss that opens it), and
    returns the stat and open calls any thread made meanwhile, as
    (name, line) pairs."""
    strace = shutil.which("strace")
    env, parent = child_env()
    cmd = [strace, "-f", "-qq", "-ttt", "-o", str(out), "-e", "trace=" + ",".join(STAT_CALLS)]
    if "LD_PRELOAD" in env:
        # the sanitizer stage preloads ASan for Python: for the traced child only
        cmd += ["-E", "LD_PRELOAD=" + env.pop("LD_PRELOAD")]
    cmd += [sys.executable, "-m", "pyiocp", "serve", str(root), "--port", "0", "--quiet", "--threads", "1",
            "--backend", backend, "--cache-valid", str(cache_valid)]
    # its own session, so that whatever happens both strace and the server can be stopped
    proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=env, cwd=parent, start_new_session=True)
    server_pid = None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline().decode() if ready else ""
        port = re.search(r" on 127\.0\.0\.1:(\d+) ", line)
        assert port, f"no startup line from the traced server: {line!r} {proc.stderr.read1(4096)!r}"
        with open(f"/proc/{proc.pid}/task/{proc.pid}/children") as f:
            server_pid = int(f.read().split()[0])
        client = Client(("127.0.0.1", int(port.group(1))))
        try:
            assert client.get("/1k.bin").kind == "body"        # the miss: opened and cached
            start = time.time()
            for _ in range(requests):
                answer = client.get("/1k.bin")
                assert answer.kind == "body" and answer.length == 1024, answer
            end = time.time()
        finally:
            client.close()
    finally:
        # SIGTERM to the server alone: strace then writes out and exits with it
        if server_pid:
            os.kill(server_pid, signal.SIGTERM)
        else:
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    calls = []
    for line in out.read_text().splitlines():
        m = STRACE_LINE.match(line)
        if m and start <= float(m.group(2)) <= end and "resumed>" not in line:
            calls.append((m.group(3), line))
    return calls


def test_cache_hit_makes_no_system_call(backend, tmp_path):
    """Within the validity period a hit costs no system call on the file:
    strace sees no stat or open of any kind while a few hundred keep-alive
    requests are answered.  With cache_valid 0 it sees one per request,
    which shows that it would see them."""
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    root = tmp_path / "root"
    root.mkdir()
    (root / "1k.bin").write_bytes(os.urandom(1024))
    requests = 300
    calls = traced_calls(backend, root, 60, requests, tmp_path / "hits.strace")
    assert not calls, f"{len(calls)} file system calls during {requests} cached answers: {calls[:5]}"
    checked = traced_calls(backend, root, 0, requests, tmp_path / "checked.strace")
    assert len(checked) >= requests, \
        f"cache_valid 0 should check the file on every request; strace saw {len(checked)} calls"
