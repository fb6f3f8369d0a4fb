"""The completion contract as a Python handler sees it, checked on every
connection of a fault sweep's run (sweep.py), and the client side's
bounded socket helpers.

A Checked handler logs its callbacks and the operations it posted.  After
the run (its engine stopped) each must show: connection_made first and
exactly once, connection_lost exactly once and last (or, for a connect
that failed, connection_failed alone); no callback after connection_lost;
no more completions than posts (a recv completes at most once, and so
does a send or transmit, whose send_done/transmit_done only success
calls).  (connection_lost(None) does not say every send went out: an
abort, the user's or a stop's after its drain, reports None too.)"""
from __future__ import annotations

import selectors
import socket
import threading
import time
from typing import List, Optional, Tuple

import pyiocp

TERMINAL = ("lost", "failed")


class Registry:
    """The handlers made during one run, and what went wrong as it went."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.handlers: List["Checked"] = []
        self.problems: List[str] = []

    def reset(self) -> None:
        with self.lock:
            self.handlers = []
            self.problems = []

    def add(self, handler: "Checked") -> int:
        with self.lock:
            self.handlers.append(handler)
            return len(self.handlers)

    def problem(self, text: str) -> None:
        with self.lock:
            self.problems.append(text)

    def check(self) -> List[str]:
        """Every handler's log, once its engine has stopped."""
        with self.lock:
            handlers, problems = list(self.handlers), list(self.problems)
        for handler in handlers:
            problems.extend(handler.check())
        return problems


REGISTRY = Registry()


class Checked(pyiocp.Handler):
    """Logs every callback; posts through recv/send/transmit below, which
    count what was posted.  Subclasses add the protocol."""

    def __init__(self) -> None:
        self.label = f"{type(self).__name__}#{REGISTRY.add(self)}"
        self.events: List[str] = []
        self.lock = threading.Lock()
        self.conn: Optional[pyiocp.Connection] = None
        self.posted = {"recv": 0, "send": 0, "transmit": 0}
        self.lost_exc: Optional[BaseException] = None
        self.refused = False      # the call that was to connect it raised

    def event(self, name: str) -> None:
        with self.lock:
            if self.events and self.events[-1] in TERMINAL:
                REGISTRY.problem(f"{self.label}: {name} after {self.events[-1]} "
                                 f"(log {self.events})")
            self.events.append(name)

    # -- posting, counted --

    def recv(self) -> bool:
        ok = self.conn.recv()
        if ok:
            self.posted["recv"] += 1
        return ok

    def send(self, data: bytes) -> bool:
        ok = self.conn.send(data)
        if ok:
            self.posted["send"] += 1
        return ok

    def transmit(self, *args, **kwargs) -> bool:
        ok = self.conn.transmit_file(*args, **kwargs)
        if ok:
            self.posted["transmit"] += 1
        return ok

    # -- callbacks, logged --

    def connection_made(self, conn):
        self.conn = conn
        self.event("made")
        self.made()

    def made(self) -> None:
        self.recv()

    def data_received(self, conn, data):
        self.event("data")
        self.received(data)

    def received(self, data: bytes) -> None:
        self.recv()

    def eof_received(self, conn):
        self.event("eof")
        return None

    def send_done(self, conn, nbytes):
        self.event("sent")

    def transmit_done(self, conn, nbytes):
        self.event("transmitted")

    def pause_writing(self, conn):
        self.event("pause")

    def resume_writing(self, conn):
        self.event("resume")

    def stopping(self, conn):
        self.event("stopping")

    def connection_failed(self, exc):
        self.event("failed")
        self.lost_exc = exc

    def connection_lost(self, conn, exc):
        self.event("lost")
        self.lost_exc = exc

    def check(self) -> List[str]:
        events, label = self.events, self.label
        count = {name: events.count(name) for name in set(events)}
        if self.refused:
            return [f"{label}: callbacks though connect() raised: {events}"] if events else []
        if count.get("failed"):
            if events != ["failed"]:
                return [f"{label}: connection_failed with other callbacks: {events}"]
            return []
        problems = []
        if not events or events[0] != "made" or count.get("made") != 1:
            problems.append(f"{label}: connection_made not first and once: {events[:8]}")
        if count.get("lost", 0) != 1:
            problems.append(f"{label}: connection_lost called {count.get('lost', 0)} times "
                            f"(log {events[-8:]})")
        elif events[-1] != "lost":
            problems.append(f"{label}: connection_lost not last: {events[-8:]}")
        completions = count.get("data", 0) + count.get("eof", 0)
        if completions > self.posted["recv"]:
            problems.append(f"{label}: {completions} recv completions for "
                            f"{self.posted['recv']} recvs posted")
        if count.get("sent", 0) > self.posted["send"]:
            problems.append(f"{label}: {count['sent']} send_done for {self.posted['send']} sends")
        if count.get("transmitted", 0) > self.posted["transmit"]:
            problems.append(f"{label}: {count['transmitted']} transmit_done for "
                            f"{self.posted['transmit']} transmits")
        if count.get("resume", 0) > count.get("pause", 0):
            problems.append(f"{label}: more resume_writing than pause_writing: {events[-8:]}")
        return problems


# -------------------------------------------------------------- client --

class Stream:
    """A client connection whose every wait is bounded by `stall` seconds
    without progress.  `end` says how the server's side ended: None (still
    open), "eof", "reset" or "stalled"."""

    def __init__(self, address, stall: float, rcvbuf: int = 0) -> None:
        self.stall = stall
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:   # a slow reader: the server's sends wait on it
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(stall)
        try:
            self.sock.connect(address)
        except BaseException:
            self.sock.close()
            raise
        self.sock.setblocking(False)
        self.got = bytearray()
        self.end: Optional[str] = None

    @classmethod
    def adopt(cls, sock: socket.socket, stall: float) -> "Stream":
        """An accepted socket as a Stream."""
        stream = cls.__new__(cls)
        stream.stall, stream.sock, stream.got, stream.end = stall, sock, bytearray(), None
        sock.setblocking(False)
        return stream

    def close(self) -> None:
        self.sock.close()

    def pump(self, payload: bytes, want: int) -> None:
        """Sends `payload` while reading, until `want` bytes came in all
        told (counting what came before), the server's side ended, or
        nothing moved for `stall` seconds."""
        sel = selectors.DefaultSelector()
        sent = 0
        try:
            events = selectors.EVENT_READ | (selectors.EVENT_WRITE if payload else 0)
            sel.register(self.sock, events)
            last = time.monotonic()
            while self.end is None and (len(self.got) < want or sent < len(payload)):
                if time.monotonic() - last > self.stall:
                    self.end = "stalled"
                    break
                for _, mask in sel.select(0.05):
                    if mask & selectors.EVENT_READ and self._read():
                        last = time.monotonic()
                    if mask & selectors.EVENT_WRITE and sent < len(payload):
                        try:
                            sent += self.sock.send(payload[sent:sent + 65536])
                            last = time.monotonic()
                        except BlockingIOError:
                            pass
                        except OSError:
                            self.end = "reset"
                        if sent == len(payload):
                            sel.modify(self.sock, selectors.EVENT_READ)
        finally:
            sel.close()

    def _read(self) -> bool:
        try:
            chunk = self.sock.recv(262144)
        except BlockingIOError:
            return False
        except OSError:
            self.end = "reset"
            return True
        if not chunk:
            self.end = "eof"
            return True
        self.got += chunk
        return True

    def send(self, data: bytes) -> None:
        self.pump(data, 0)

    def shutdown(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def read_to_end(self, limit: int = 1 << 26) -> None:
        """Reads until the server's side ends (or stalls)."""
        self.pump(b"", limit)


def compare(got: bytes, expected: bytes, end: Optional[str]) -> Tuple[bool, str]:
    """(whole, text): `got` must be a prefix of `expected` in every run;
    whole when it is all of it and the stream then ended with EOF."""
    if not expected.startswith(bytes(got)):
        at = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b),
                  min(len(got), len(expected)))
        return False, f"wrong bytes at offset {at} of {len(got)} received"
    if len(got) == len(expected) and end == "eof":
        return True, "ok"
    return False, f"got {len(got)} of {len(expected)} bytes, then {end or 'nothing'}"
