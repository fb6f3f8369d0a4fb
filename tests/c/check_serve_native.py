#!/usr/bin/env python3
"""Real clients against the native file servers (tests/c/serve_native.c).

Starts serve_native on a temporary tree (natively, or the Windows build
under Wine with --wine), fetches every file with curl (HTTP: whole files on
one keep-alive connection, ranges, HEAD, a 404, '..' escapes refused) or nc
(the raw protocol: one name a connection, then all of them pipelined on
one, and error lines), compares the bytes (a failure names their SHA-256),
then ends the server through its standard input and checks what it
printed: the answers counted, the file bytes transmitted, and on IOCP which
transmit path ran (--windows-transmit transmitfile: no byte copied;
read_send: every one).

Python 3 standard library only; curl and nc (netcat-openbsd) on PATH.
Every wait is bounded and the server is always killed.  Exit status: 0,
1 on a failure, 77 when the server says its backend is refused here.
"""
from __future__ import annotations

import argparse
import hashlib
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.parse
from pathlib import Path
from typing import Dict, List, Optional, Tuple

SKIP = 77
KIB = 1024
MIB = 1024 * KIB
# What the served tree holds: names chosen for what they test (a name with
# a space and UTF-8 must survive percent-decoding and, on Windows, the
# UTF-8 to UTF-16 conversion), sizes from empty to over 1 MiB and odd.
FILES = {
    "empty.bin": 0,
    "one.bin": 1,
    "kib.bin": KIB,
    "big.bin": MIB + 4093,
    "with space é.bin": 20 * KIB + 7,
    "sub/nested.txt": 100,
}
SECRET = b"SECRET-OUTSIDE-THE-ROOT\n"
# The servers send files up to this size from their cache with a plain send
# (engine/files/file_cache.h FILE_CACHE_SMALL_FILE), larger ones always by
# a transmit: what bounds transmit_file_bytes from below.
SMALL_FILE = 16 * KIB


class Failure(Exception):
    pass


def check(cond: bool, what: str) -> None:
    if not cond:
        raise Failure(what)


def sha(data: bytes) -> str:
    """A short SHA-256 for messages; the checks compare the bytes."""
    return hashlib.sha256(data).hexdigest()[:16]


class Tally:
    """What the clients asked for, to check the server's counters against."""

    def __init__(self) -> None:
        self.answers = 0        # answers the server must have counted
        self.body_bytes = 0     # file bytes received, however sent
        self.large_bytes = 0    # of those, bytes of files over SMALL_FILE

    def body(self, name: str, count: int) -> None:
        self.body_bytes += count
        if FILES[name] > SMALL_FILE:
            self.large_bytes += count


# ------------------------------------------------------------- the tree --

def make_tree(base: Path) -> Dict[str, bytes]:
    root = base / "root"
    contents: Dict[str, bytes] = {}
    for name, size in FILES.items():
        data = os.urandom(size)
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        contents[name] = data
    # beside the root, never to be served
    (base / "outside.txt").write_bytes(SECRET)
    return contents


# ----------------------------------------------------------- the server --

class Server:
    """serve_native as a child: READY, then the stats lines after stdin ends."""

    def __init__(self, command: List[str], env: Dict[str, str], timeout: float) -> None:
        self.timeout = timeout
        # stderr is inherited: sanitizer reports land in the test's output
        try:
            self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                         env=env)
        except OSError as e:
            raise Failure(f"cannot start {command[0]}: {e}")
        self.lines: "queue.Queue[Optional[str]]" = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            # the Windows C runtime writes text-mode "\r\n"
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\r\n"))
        self.lines.put(None)

    def next_line(self) -> Optional[str]:
        try:
            return self.lines.get(timeout=self.timeout)
        except queue.Empty:
            raise Failure(f"no line from the server within {self.timeout:.0f} s")

    def wait_ready(self) -> int:
        line = self.next_line()
        if line is None:
            rc = self.proc.wait(timeout=self.timeout)
            if rc == SKIP:
                raise SystemExit(SKIP)
            raise Failure(f"the server exited with {rc} before READY")
        word, _, port = line.partition(" ")
        check(word == "READY" and port.isdigit(), f"expected READY <port>, got {line!r}")
        return int(port)

    def finish(self) -> Dict[str, str]:
        """Ends stdin, collects the stats lines, and the exit status."""
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        stats: Dict[str, str] = {}
        while (line := self.next_line()) is not None:
            key, _, value = line.partition(" ")
            stats[key] = value
        rc = self.proc.wait(timeout=self.timeout)
        check(rc == 0, f"the server exited with {rc}")
        return stats

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=self.timeout)


def server_command(args: argparse.Namespace, root: Path) -> Tuple[List[str], Dict[str, str]]:
    env = dict(os.environ)
    command = [args.exe]
    root_arg = str(root)
    if args.wine:
        # as .ci/wine-ctest runs Wine: headless, quiet, the prefix it made
        # (WINEPREFIX, inherited); Z: is Wine's drive for the Unix root.
        # Wine converts Unix file names with the locale's charset: under a
        # C locale it cannot find "with space é.bin" (seen with Wine 8).
        command = [args.wine, args.exe]
        root_arg = "Z:" + root_arg.replace("/", "\\")
        env.update(WINEDEBUG="-all", WINEDLLOVERRIDES="mscoree,mshtml=", WINEARCH="win64",
                   LC_ALL="C.UTF-8")
        env.pop("DISPLAY", None)
    command += ["--root", root_arg, "--protocol", args.protocol, "--port", "0",
                "--backend", args.backend, "--windows-transmit", args.windows_transmit]
    return command, env


# ---------------------------------------------------------- the clients --

def run_client(command: List[str], stdin: bytes, timeout: float) -> bytes:
    try:
        done = subprocess.run(command, input=stdin, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Failure(f"{command[0]} did not finish within {timeout:.0f} s: {command}")
    check(done.returncode == 0,
          f"{command} exited with {done.returncode}: {done.stderr.decode(errors='replace')}")
    return done.stdout


class Curl:
    def __init__(self, port: int, out: Path, timeout: float) -> None:
        self.base = f"http://127.0.0.1:{port}/"
        self.out = out
        self.timeout = timeout
        self.count = 0

    def fetch(self, paths: List[str], *options: str) -> List[Tuple[int, bytes]]:
        """(status, body) per path, all on one connection when it stays open."""
        # -q (first): no ~/.curlrc; no proxy from the environment either
        command = ["curl", "-q", "-sS", "--noproxy", "*", "--http1.1", "--path-as-is",
                   "--max-time", str(int(self.timeout)), "-w", "%{http_code}\n", *options]
        files = []
        for path in paths:
            self.count += 1
            files.append(self.out / f"curl-{self.count}")
            command += ["-o", str(files[-1]), self.base + path]
        codes = run_client(command, b"", self.timeout + 5).decode().split()
        check(len(codes) == len(paths), f"curl reported {codes} for {paths}")
        return [(int(code), f.read_bytes() if f.exists() else b"")
                for code, f in zip(codes, files)]


def url_path(name: str) -> str:
    return urllib.parse.quote(name)  # "/" kept, space and UTF-8 escaped


def check_http(port: int, contents: Dict[str, bytes], out: Path, timeout: float) -> Tally:
    tally = Tally()
    curl = Curl(port, out, timeout)
    names = list(FILES)

    # every file, whole, on one keep-alive connection
    for name, (status, body) in zip(names, curl.fetch([url_path(n) for n in names])):
        check(status == 200, f"GET {name}: status {status}")
        check(body == contents[name],
              f"GET {name}: {len(body)} bytes, sha256 {sha(body)}; expected "
              f"{len(contents[name])}, {sha(contents[name])}")
        tally.body(name, len(body))
    tally.answers += len(names)

    # ranges: one in the middle of a transmitted file, one at a cached
    # file's end (a suffix range)
    for name, spec, want in (("big.bin", "70000-600000", contents["big.bin"][70000:600001]),
                             ("kib.bin", "-100", contents["kib.bin"][-100:])):
        [(status, body)] = curl.fetch([url_path(name)], "-r", spec)
        check(status == 206 and body == want,
              f"GET {name} Range {spec}: status {status}, {len(body)} bytes, "
              f"sha256 {sha(body)}; expected 206, {len(want)}, {sha(want)}")
        tally.body(name, len(body))
        tally.answers += 1

    # HEAD sends no body
    [(status, body)] = curl.fetch([url_path("big.bin")], "-I")
    check(status == 200 and b"Content-Length: %d" % FILES["big.bin"] in body,
          f"HEAD big.bin: status {status}, headers {body[:300]!r}")
    tally.answers += 1

    [(status, _)] = curl.fetch(["missing.bin"])
    check(status == 404, f"GET missing.bin: status {status}, expected 404")
    tally.answers += 1

    for path in ("../outside.txt", "%2e%2e/outside.txt", "sub/../../outside.txt"):
        [(status, body)] = curl.fetch([path])
        check(400 <= status < 500 and SECRET not in body,
              f"GET /{path}: status {status}, expected a refusal")
        tally.answers += 1
    return tally


def nc(port: int, names: List[str], timeout: float) -> bytes:
    """The raw protocol: names, one a line; -N: a FIN after the last, so that
    the server answers them and closes."""
    request = b"".join(n.encode() + b"\n" for n in names)
    return run_client([netcat() or "nc", "-N", "-w", str(int(timeout)), "127.0.0.1", str(port)],
                      request, timeout + 5)


def netcat() -> Optional[str]:
    """OpenBSD's nc: the traditional one has no -N."""
    return shutil.which("nc.openbsd") or shutil.which("nc")


def check_raw(port: int, contents: Dict[str, bytes], timeout: float) -> Tally:
    tally = Tally()
    names = list(FILES)
    # one name a connection, then every name pipelined on one
    for name in names:
        got = nc(port, [name], timeout)
        check(got == contents[name],
              f"raw {name}: {len(got)} bytes, sha256 {sha(got)}; expected "
              f"{len(contents[name])}, {sha(contents[name])}")
        tally.body(name, len(got))
        tally.answers += 1
    got = nc(port, names, timeout)
    want = b"".join(contents[n] for n in names)
    check(got == want, f"raw pipelined: {len(got)} bytes, sha256 {sha(got)}; expected "
                       f"{len(want)}, {sha(want)}")
    for name in names:
        tally.body(name, len(contents[name]))
    tally.answers += len(names)

    # refusals: one error line each, on a connection that stays usable
    refused = ["missing.bin", "../outside.txt", "sub/../../outside.txt", "sub"]
    got = nc(port, refused + ["one.bin"], timeout)
    lines = got.split(b"\r\n")
    check(len(lines) == len(refused) + 1 and lines[-1] == contents["one.bin"]
          and all(line.startswith(b"ERROR: ") for line in lines[:-1]) and SECRET not in got,
          f"raw refusals: got {got!r}")
    tally.body("one.bin", 1)
    tally.answers += len(refused) + 1
    return tally


# ----------------------------------------------------------- the checks --

def check_stats(stats: Dict[str, str], tally: Tally, windows_transmit: str) -> None:
    print("server: " + ", ".join(f"{k} {v}" for k, v in stats.items()))
    try:
        requests = int(stats["requests"])
        file_bytes = int(stats["transmit_file_bytes"])
        copied = int(stats["transmit_copied_bytes"])
    except (KeyError, ValueError):
        raise Failure(f"the server's stats are incomplete: {stats}")
    check(requests == tally.answers, f"the server counted {requests} answers, the clients "
                                     f"{tally.answers}")
    # small files may leave from the cache with a plain send, large ones
    # never do
    check(tally.large_bytes <= file_bytes <= tally.body_bytes,
          f"transmit_file_bytes {file_bytes}: expected from {tally.large_bytes} "
          f"(files over {SMALL_FILE} bytes) to {tally.body_bytes} (every file byte)")
    # Only IOCP has two paths; elsewhere windows_transmit is ignored.
    if stats.get("backend") != "iocp" or windows_transmit == "auto":
        return
    if windows_transmit == "transmitfile":
        check(copied == 0, f"TransmitFile forced, yet {copied} bytes went through a copy")
    else:
        check(copied == file_bytes, f"read + WSASend forced, yet only {copied} of "
                                    f"{file_bytes} file bytes went through a copy")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--exe", required=True, help="serve_native (or serve_native.exe)")
    parser.add_argument("--wine", nargs="?", const="/usr/lib/wine/wine64", default=None,
                        help="run it under this Wine loader (default %(const)s)")
    parser.add_argument("--protocol", choices=("raw", "http"), required=True)
    parser.add_argument("--backend", default="auto")
    parser.add_argument("--windows-transmit", default="auto",
                        choices=("auto", "transmitfile", "read_send"))
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds any one step may take")
    args = parser.parse_args()

    if (shutil.which("curl") if args.protocol == "http" else netcat()) is None:
        print("FAIL: curl and nc are needed (apt-get install curl netcat-openbsd)")
        return 1

    base = Path(tempfile.mkdtemp(prefix="pyiocp-serve-native-"))
    server = None
    try:
        contents = make_tree(base)
        command, env = server_command(args, base / "root")
        server = Server(command, env, args.timeout)
        port = server.wait_ready()
        if args.protocol == "http":
            tally = check_http(port, contents, base, args.timeout)
        else:
            tally = check_raw(port, contents, args.timeout)
        check_stats(server.finish(), tally, args.windows_transmit)
    except Failure as e:
        print(f"FAIL: {e}")
        return 1
    finally:
        if server is not None:
            server.kill()
        shutil.rmtree(base, ignore_errors=True)
    print(f"ok: {args.protocol}, backend {args.backend}, windows_transmit "
          f"{args.windows_transmit}: every file byte for byte")
    return 0


if __name__ == "__main__":
    sys.exit(main())
