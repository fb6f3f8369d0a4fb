"""A TCP proxy on pyiocp's Python API: each client gets its own upstream
connection, made with Engine.connect(), and the bytes flow both ways.

    python examples/tcp_proxy.py --listen 127.0.0.1:8000 --upstream example.org:80
    curl -H 'Host: example.org' http://127.0.0.1:8000/

The first line on stdout says where it listens ("proxy on HOST:PORT ->
UPSTREAM", so port 0 works).

- Backpressure, both ways: a side's data is only read while the other
  side can take it.  When one side's write buffer passes its high mark
  (--buffer, 256 KiB) the engine calls pause_writing, and no recv is posted
  on the other side until resume_writing: a fast sender facing a slow
  reader waits in the kernel's socket buffers, not in the proxy's memory.
- What a client sends before its upstream is connected is kept (the
  client is no longer read once --buffer bytes are), and forwarded first
  once connected.
- Half-close travels: an end of stream from one side (eof_received, which
  returns True to keep the connection open) becomes write_eof() on the
  other, after everything read before it; the pair is closed once both
  directions have ended.
- Errors travel too: if one side is reset or fails, the other is reset
  (abort()), so the peer cannot mistake a cut stream for a complete one; an
  orderly close of one side closes the other in order.  An upstream that
  cannot be reached (connection_failed: refused, --connect-timeout) resets
  the client.

Callbacks of one engine run one at a time (README, "Threads"), so the two
halves of a pair share state without a lock.
"""
from __future__ import annotations

import argparse
import logging
from typing import List, Optional, Tuple

import pyiocp

BUFFER = 256 * 1024
CONNECT_TIMEOUT = 10.0

log = logging.getLogger("tcp_proxy")


class Side(pyiocp.Handler):
    """One of the pair's two connections.  `peer` is the other side: what
    this side reads is sent there."""

    def __init__(self, buffer: int) -> None:
        self.buffer = buffer
        self.conn: Optional[pyiocp.Connection] = None   # None until connected
        self.peer: Optional[Side] = None
        self.reading = False        # a recv is posted
        self.read_ended = False     # this side's peer sent its end of stream
        self.paused = False         # our write buffer is over its high mark
        self.early: List[bytes] = []   # for this side, before it is connected
        self.early_size = 0
        self.lost = False           # connection_lost (or connection_failed) ran
        self.lost_error: Optional[OSError] = None

    # -- reading: only while the other side can take it --

    def can_take(self) -> bool:
        """Whether this side accepts more to send (the other side may read)."""
        if self.lost:
            return False
        if self.conn is None:
            return self.early_size < self.buffer
        return not self.paused

    def read_more(self) -> None:
        peer = self.peer
        if (self.conn is None or self.reading or self.read_ended or self.lost
                or peer is None or not peer.can_take()):
            return
        self.reading = True
        if not self.conn.recv():
            self.reading = False    # closed meanwhile: connection_lost follows

    def forward(self, data: bytes) -> None:
        """Sends bytes read from the other side, or keeps them until this
        side is connected."""
        if self.conn is None:
            if not self.lost:
                self.early.append(data)
                self.early_size += len(data)
            return
        try:
            self.conn.send(data)    # pause_writing may run inside this call
        except BufferError:
            # the engine's cap on all queued sends: this pair cannot go on
            log.warning("write buffer full; resetting the pair")
            self.reset_pair()

    def forward_eof(self) -> None:
        if self.conn is not None:
            self.conn.write_eof()   # after the sends posted before it
        # else: sent once connected, after the early bytes

    # -- the handler's callbacks --

    def connection_made(self, conn: pyiocp.Connection) -> None:
        self.conn = conn
        conn.set_write_buffer_limits(high=self.buffer)
        peer = self.peer
        if peer is None or peer.lost:
            # an upstream that connected after its client went away
            if peer is not None and peer.lost_error is not None:
                conn.abort()
            else:
                conn.close()
            return
        early, self.early, self.early_size = self.early, [], 0
        for data in early:
            self.forward(data)
        if peer.read_ended:
            self.forward_eof()
        self.read_more()
        peer.read_more()

    def data_received(self, conn: pyiocp.Connection, data: bytes) -> None:
        self.reading = False
        if self.peer is not None:
            self.peer.forward(data)
        self.read_more()

    def eof_received(self, conn: pyiocp.Connection) -> Optional[bool]:
        self.reading = False
        self.read_ended = True
        peer = self.peer
        if peer is not None:
            peer.forward_eof()
            if peer.read_ended:
                # both directions have ended: close both, in order (queued
                # sends and the end of stream go out first)
                conn.close()
                if peer.conn is not None:
                    peer.conn.close()
        return True                 # keep it open: the other direction goes on

    def pause_writing(self, conn: pyiocp.Connection) -> None:
        self.paused = True

    def resume_writing(self, conn: pyiocp.Connection) -> None:
        self.paused = False
        if self.peer is not None:
            self.peer.read_more()

    def connection_lost(self, conn: pyiocp.Connection, exc: Optional[OSError]) -> None:
        self.lost = True
        self.lost_error = exc
        peer = self.peer
        if peer is None or peer.conn is None:
            return                  # not connected yet: its connection_made sees `lost`
        if exc is not None:
            peer.conn.abort()       # a reset (or timeout) here is a reset there
        else:
            peer.conn.close()       # orderly: what is queued for it still goes

    def connection_failed(self, exc: OSError) -> None:
        self.lost = True
        self.lost_error = exc
        self.early.clear()
        self.early_size = 0
        log.warning("upstream: %s", exc)
        if self.peer is not None and self.peer.conn is not None:
            self.peer.conn.abort()

    def reset_pair(self) -> None:
        for side in (self, self.peer):
            if side is not None and side.conn is not None:
                side.conn.abort()


class Client(Side):
    """The accepted side: it connects its upstream as soon as it is made."""

    def __init__(self, engine: pyiocp.Engine, upstream: Tuple[str, int], buffer: int,
                 connect_timeout: float) -> None:
        super().__init__(buffer)
        self.engine = engine
        self.upstream = upstream
        self.connect_timeout = connect_timeout

    def connection_made(self, conn: pyiocp.Connection) -> None:
        self.conn = conn
        conn.set_write_buffer_limits(high=self.buffer)
        upstream = Side(self.buffer)
        upstream.peer, self.peer = self, upstream
        try:
            self.engine.connect(self.upstream, lambda: upstream, timeout=self.connect_timeout)
        except (OSError, RuntimeError) as exc:   # a stopping engine, a bad address
            log.warning("upstream: %s", exc)
            conn.abort()
            return
        self.read_more()            # kept in upstream.early until it is connected


def parse_address(text: str, default_host: str = "127.0.0.1") -> Tuple[str, int]:
    """HOST:PORT, [IPv6]:PORT or :PORT."""
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, not {text!r}")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return host or default_host, int(port)


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--listen", type=parse_address, default=("127.0.0.1", 8000),
                        metavar="HOST:PORT")
    parser.add_argument("--upstream", type=parse_address, required=True, metavar="HOST:PORT")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--backend", default="auto", choices=["auto"] + pyiocp.backend_names())
    parser.add_argument("--buffer", type=int, default=BUFFER, metavar="BYTES",
                        help="high mark of each side's write buffer")
    parser.add_argument("--connect-timeout", type=float, default=CONNECT_TIMEOUT,
                        metavar="SECONDS")
    parser.add_argument("--idle-timeout", type=float, default=None, metavar="SECONDS",
                        help="drop a connection that makes no progress this long")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    engine = pyiocp.Engine(threads=args.threads, backend=args.backend,
                           idle_timeout=args.idle_timeout)
    upstream: Tuple[str, int] = args.upstream
    buffer: int = args.buffer
    connect_timeout: float = args.connect_timeout
    listener = engine.listen(args.listen,
                             lambda: Client(engine, upstream, buffer, connect_timeout))
    host, port = listener.address[:2]
    print(f"proxy on {host}:{port} -> {upstream[0]}:{upstream[1]}", flush=True)
    engine.run()


if __name__ == "__main__":
    main()
