"""The fault sweep's scenarios (sweep.py): servers made through the Python
API, and clients that drive them with bounded waits and judge what they
received.  Every scenario has a "+stop" variant that stops the engine in
the middle of the traffic.

An Outcome's status: "ok" (everything, and a clean end; for a +stop
variant: a clean end, after a prefix of what was expected), "ended" (the
server's side ended early) or "degraded" (an error answer in place of a
file), both acceptable when the fault really failed something, "stalled"
(nothing moved for `stall` seconds) or "wrong" (bytes that are not what
was asked for: never acceptable)."""
from __future__ import annotations

import os
import random
import socket
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional

import pyiocp

from contract import Checked, Stream, compare

DRAIN = 0.1          # every stop's drain timeout: short, as the issue asks
PAYLOAD = bytes(random.Random(13).getrandbits(8) for _ in range(96 * 1024))
HEAD1, HEAD2 = b"HEAD-ONE\r\n" * 7, b"H2\n"
OFFSET, COUNT = 1000, 50000


@dataclass
class Env:
    backend: str
    root: str
    stall: float
    files: Dict[str, bytes] = field(default_factory=dict)
    fd: int = -1                  # b.bin, open for transmit_file(fd)


def make_root(path: str) -> Dict[str, bytes]:
    rng = random.Random(7)
    files = {"a.txt": b"".join(b"line %d of a\n" % i for i in range(80)),
             "b.bin": bytes(rng.getrandbits(8) for _ in range(128 * 1024))}
    for name, data in files.items():
        with open(os.path.join(path, name), "wb") as f:
            f.write(data)
    return files


@dataclass
class Outcome:
    status: str
    text: str = ""


def judge(stream: Stream, expected: bytes, stop_mid: bool) -> Outcome:
    whole, text = compare(stream.got, expected, stream.end)
    if text.startswith("wrong"):
        return Outcome("wrong", text)
    if stream.end == "stalled":
        return Outcome("stalled", text)
    if whole or (stop_mid and stream.end in ("eof", "reset")):
        return Outcome("ok", text)
    return Outcome("ended", text)


# -------------------------------------------------------------- handlers --

class Echo(Checked):
    """Echoes, honouring flow control: no recv while writing is paused.  At
    the peer's end: write_eof(), then a timer closes (a shutdown request
    and a timer request, each an allocation of the binding)."""

    def made(self):
        self.paused = self.want = False
        self.conn.set_write_buffer_limits(high=16384)
        self.recv()

    def received(self, data):
        self.send(data)
        if self.paused:
            self.want = True
        else:
            self.recv()

    def pause_writing(self, conn):
        super().pause_writing(conn)
        self.paused = True

    def resume_writing(self, conn):
        super().resume_writing(conn)
        self.paused = False
        if self.want:
            self.want = False
            self.recv()

    def eof_received(self, conn):
        super().eof_received(conn)
        conn.write_eof()
        conn.engine.call_later(0.001, conn.close)
        return True


class Transmit(Checked):
    """On a line: a range of b.bin by path with a head, then all of it by
    descriptor with another head."""
    env: Env

    def made(self):
        self.buffer = b""
        self.recv()

    def received(self, data):
        if self.buffer is not None:
            self.buffer += data
            if b"\n" in self.buffer:
                self.buffer = None
                self.transmit(os.path.join(self.env.root, "b.bin"), OFFSET, COUNT, HEAD1)
                self.transmit(self.env.fd, head=HEAD2)
        self.recv()


class Outbound(Checked):
    """Engine.connect's side: sends PAYLOAD, closes once it came back."""

    def made(self):
        self.back = b""
        self.send(PAYLOAD)
        self.recv()

    def received(self, data):
        self.back += data
        if len(self.back) >= len(PAYLOAD):
            self.conn.close()
        else:
            self.recv()


# -------------------------------------------------------------- servers --

def small_buffer_listener() -> socket.socket:
    """A listening socket whose connections have a 4 KiB send buffer (they
    inherit it): with a slow reader, a stop then finds sends waiting."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


class Server:
    """An engine listening for `kinds` ("echo", "transmit", "http", "raw"),
    started.  Whatever fails while it is made is undone before the error
    propagates (a startup fault must leak nothing)."""

    made: List["Server"] = []    # this run's, for the runner to stop whatever happens

    def __init__(self, env: Env, kinds, slow: bool = False) -> None:
        self.made.append(self)
        self.env = env
        self.addresses: Dict[str, tuple] = {}
        self.stopped = False
        self.engine: Optional[pyiocp.Engine] = None
        self.engine = pyiocp.Engine(threads=2, backend=env.backend, linger_timeout=0.5)
        try:
            for kind in kinds:
                if slow:
                    with small_buffer_listener() as sock:
                        listener = self.engine.listen(handler=self._handler(kind), sock=sock)
                else:
                    listener = self.engine.listen(("127.0.0.1", 0), self._handler(kind))
                self.addresses[kind] = listener.address
            self.engine.start()
        except BaseException:
            self.stop()
            raise

    def _handler(self, kind: str):
        if kind == "http":
            return pyiocp.StaticFiles(self.env.root, keepalive_timeout=2, header_timeout=2)
        if kind == "raw":
            return pyiocp.RawFileServer(self.env.root)
        if kind == "transmit":
            Transmit.env = self.env
            return Transmit
        return Echo

    def stop(self) -> float:
        """Stops it (once); returns how long that took (stop_seconds)."""
        start = time.monotonic()
        if not self.stopped and self.engine is not None:
            self.stopped = True
            self.engine.stop(DRAIN)
        self.stop_seconds = time.monotonic() - start
        return self.stop_seconds


# ------------------------------------------------------------ scenarios --

class Scenario:
    base = ""
    kinds: tuple = ()

    def __init__(self, stop_mid: bool) -> None:
        self.stop_mid = stop_mid
        self.name = self.base + ("+stop" if stop_mid else "")

    def client(self, server: Server) -> Outcome:
        raise NotImplementedError

    def stream(self, server: Server, kind: str) -> Stream:
        """A client of `kind`; for a +stop variant a slow reader, so that
        the stop finds the server's sends waiting for it."""
        return Stream(server.addresses[kind], server.env.stall, 4096 if self.stop_mid else 0)

    def _stop(self, server: Server, stream: Stream) -> None:
        """The +stop variants: stops the engine now, then reads to the end."""
        server.stop()
        stream.read_to_end()


class EchoScenario(Scenario):
    base, kinds = "echo", ("echo",)

    def client(self, server):
        s = self.stream(server, "echo")
        try:
            if self.stop_mid:
                s.pump(PAYLOAD[:len(PAYLOAD) // 2], len(PAYLOAD) // 4)
                self._stop(server, s)
            else:
                s.pump(PAYLOAD, len(PAYLOAD))
                s.shutdown()
                s.read_to_end()
            return judge(s, PAYLOAD, self.stop_mid)
        finally:
            s.close()


class TransmitScenario(Scenario):
    base, kinds = "transmit", ("transmit",)

    def client(self, server):
        b = server.env.files["b.bin"]
        expected = HEAD1 + b[OFFSET:OFFSET + COUNT] + HEAD2 + b
        s = self.stream(server, "transmit")
        try:
            if self.stop_mid:
                s.pump(b"T\n", len(expected) // 3)
                self._stop(server, s)
            else:
                s.pump(b"T\n", len(expected))
                s.shutdown()
                s.read_to_end()
            return judge(s, expected, self.stop_mid)
        finally:
            s.close()


def parse_http(data: bytes) -> List[tuple]:
    """Complete responses (status, body) at the start of `data`."""
    out, at = [], 0
    while True:
        end = data.find(b"\r\n\r\n", at)
        if end < 0:
            return out
        lines = data[at:end].split(b"\r\n")
        headers = dict(line.split(b": ", 1) for line in lines[1:] if b": " in line)
        length = int(headers.get(b"Content-Length", b"0"))
        if len(data) < end + 4 + length:
            return out
        out.append((int(lines[0].split()[1]), data[end + 4:end + 4 + length]))
        at = end + 4 + length


class HttpScenario(Scenario):
    """Three pipelined requests, the second a Range, the last closing."""
    base, kinds = "http", ("http",)
    REQUESTS = (b"GET /a.txt HTTP/1.1\r\nHost: x\r\n\r\n"
                b"GET /b.bin HTTP/1.1\r\nHost: x\r\nRange: bytes=1000-50999\r\n\r\n"
                b"GET /b.bin HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")

    def client(self, server):
        files = server.env.files
        expected = [(200, files["a.txt"]), (206, files["b.bin"][1000:51000]),
                    (200, files["b.bin"])]
        s = self.stream(server, "http")
        try:
            s.pump(self.REQUESTS, 60000 if self.stop_mid else 1 << 26)
            if self.stop_mid:
                self._stop(server, s)
            got = parse_http(bytes(s.got))
            # an error status in place of an answer: the fault failed it
            failed = [g for g, e in zip(got, expected) if g != e and g[0] >= 400]
            if len(got) > 3 or any(g != e and g[0] < 400 for g, e in zip(got, expected)):
                return Outcome("wrong", f"responses {[r[0] for r in got]}, not as asked")
            text = f"{len(got)} of 3 responses ({len(failed)} failed), then {s.end}"
            if s.end == "stalled":
                return Outcome("stalled", text)
            if failed:
                return Outcome("degraded", text)
            if (len(got) == 3 and s.end == "eof") or self.stop_mid:
                return Outcome("ok", text)
            return Outcome("ended", text)
        finally:
            s.close()


class RawScenario(Scenario):
    base, kinds = "raw", ("raw",)

    def client(self, server):
        files = server.env.files
        s = self.stream(server, "raw")
        try:
            s.pump(b"a.txt\nb.bin\n", 0)
            s.shutdown()
            if self.stop_mid:
                s.pump(b"", (len(files["a.txt"]) + len(files["b.bin"])) // 2)
                self._stop(server, s)
            else:
                s.read_to_end()
            # a name the fault failed is answered with an error line
            got, expected, failed = bytes(s.got), b"", 0
            for name in ("a.txt", "b.bin"):
                rest = got[len(expected):]
                if rest.startswith(b"ERROR: ") and b"\r\n" in rest:
                    expected += rest[:rest.index(b"\r\n") + 2]
                    failed += 1
                else:
                    expected += files[name]
            outcome = judge(s, expected, self.stop_mid)
            if failed and outcome.status in ("ok", "ended"):
                return Outcome("degraded", f"{failed} error lines; {outcome.text}")
            return outcome
        finally:
            s.close()


class ConnectScenario(Scenario):
    """Engine.connect to a plain socket here, which echoes PAYLOAD back."""
    base = "connect"

    def client(self, server):
        with socket.create_server(("127.0.0.1", 0)) as listening:
            made = []
            try:
                server.engine.connect(listening.getsockname(), lambda: made.append(Outbound())
                                      or made[-1])
            except BaseException:
                if made:   # refused at the call: it never hears of it
                    made[-1].refused = True
                raise
            handler = made[-1]
            listening.settimeout(0.05)
            deadline = time.monotonic() + server.env.stall
            while True:
                try:
                    peer, _ = listening.accept()
                    break
                except socket.timeout:
                    if "failed" in handler.events or time.monotonic() > deadline:
                        status = "ended" if "failed" in handler.events else "stalled"
                        return Outcome(status, f"not connected: {handler.lost_exc!r}")
        s = Stream.adopt(peer, server.env.stall)
        try:
            s.pump(b"", len(PAYLOAD) // 2 if self.stop_mid else len(PAYLOAD))
            if self.stop_mid:
                self._stop(server, s)
                return judge(s, PAYLOAD, True)
            s.pump(bytes(s.got), 1 << 26)      # back, then the handler closes
            outcome = judge(s, PAYLOAD, False)
            if outcome.status == "ok" and getattr(handler, "back", b"") != PAYLOAD:
                return Outcome("wrong", "the handler did not get PAYLOAD back whole")
            return outcome
        finally:
            s.close()


SCENARIOS = {s.name: s for cls in (EchoScenario, TransmitScenario, HttpScenario, RawScenario,
                                   ConnectScenario) for s in (cls(False), cls(True))}
# the startup sweep's server: every kind, and then every client once
STARTUP_KINDS = ("echo", "transmit", "http", "raw")
