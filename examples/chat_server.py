"""A line-based chat room on pyiocp's Python API, with bounded memory.

Every line a client sends (ending in "\\n"; a "\\r" before it is dropped,
blank lines are ignored) goes to every *other* client as "NAME: TEXT\\n".
A client is greeted with "* you are NAME\\n" once it is in the room.

    python examples/chat_server.py [--host 127.0.0.1] [--port 7000] [--threads N]
    nc 127.0.0.1 7000

The first line on stdout says where it listens ("chat server on HOST:PORT",
so --port 0 works); then one line per join, leave, drop and refusal.

Slow readers.  A broadcast must never wait for its slowest listener, and a
listener that stops reading must not make the server hold an ever-growing
queue for it.  So the room never stops reading from the senders; each
client's queue of unsent messages is bounded instead, as IRC servers bound
their "SendQ":

- Above the high mark (--high, 64 KiB) the engine calls pause_writing: the
  client is behind.  Messages still queue for it (it may just be catching
  up), and a timer starts.
- A client whose queue holds --max-backlog bytes (256 KiB) when a message
  for it comes, or that is still behind --slow-timeout seconds (10) after
  pause_writing, is disconnected with a reset (abort(): what was queued
  for it is freed at once; a graceful close would wait for a reader that
  does not read).  resume_writing (the queue back down to a quarter of
  --high) stops the timer.

So the server holds at most --max-backlog bytes plus one message (the
lines of one 16 KiB read) for each of at most --max-clients clients,
whatever they do, and a stalled reader delays no one.

A line longer than --max-line bytes (4096) gets
"ERROR: line too long (over N bytes)\\n", and the connection is closed.

Callbacks of one engine run one at a time (README, "Threads"), so the room
needs no lock: pause_writing runs inside the send() that crossed the mark,
within the sender's callback, and the timers run on a worker in turn.
"""
from __future__ import annotations

import argparse
import itertools
from typing import Dict, Iterator, List, Optional

import pyiocp

MAX_LINE = 4096
HIGH_MARK = 64 * 1024
MAX_BACKLOG = 256 * 1024
SLOW_TIMEOUT = 10.0
MAX_CLIENTS = 1000
RECV_SIZE = 16 * 1024   # bytes per read: what one message can come from


class Room:
    """The clients in the room and the limits they are held to."""

    def __init__(self, max_line: int = MAX_LINE, high_mark: int = HIGH_MARK,
                 max_backlog: int = MAX_BACKLOG, slow_timeout: float = SLOW_TIMEOUT) -> None:
        if max_backlog < high_mark:
            raise ValueError("max_backlog must be at least the high mark")
        self.max_line = max_line
        self.high_mark = high_mark
        self.max_backlog = max_backlog
        self.slow_timeout = slow_timeout
        self.members: Dict[pyiocp.Connection, ChatClient] = {}
        self._numbers: Iterator[int] = itertools.count(1)

    def next_name(self) -> str:
        return f"guest{next(self._numbers)}"

    def broadcast(self, sender: ChatClient, message: bytes) -> None:
        for conn, member in list(self.members.items()):
            if member is not sender:
                member.deliver(conn, message)


def log(line: str) -> None:
    print(line, flush=True)


class ChatClient(pyiocp.Handler):
    """One client: reads lines, hands them to the room, and is held to the
    room's limits as a listener."""

    def __init__(self, room: Room) -> None:
        self.room = room
        self.name = room.next_name()
        self.pending = b""          # the start of a line not ended yet
        self.behind: Optional[pyiocp.TimerHandle] = None   # the slow-timeout timer
        self.gone = False           # left the room (closing, closed or dropped)

    def connection_made(self, conn: pyiocp.Connection) -> None:
        conn.set_write_buffer_limits(high=self.room.high_mark)
        self.room.members[conn] = self
        conn.send(f"* you are {self.name}\n".encode())
        log(f"{self.name} joined from {conn.peername[0]}:{conn.peername[1]}")
        conn.recv()

    def data_received(self, conn: pyiocp.Connection, data: bytes) -> None:
        *lines, self.pending = (self.pending + data).split(b"\n")
        prefix = self.name.encode() + b": "
        out: List[bytes] = []
        # a line may still end in "\r" when its "\n" comes
        too_long = len(self.pending) > self.room.max_line + 1
        for line in lines:
            line = line.removesuffix(b"\r")
            if len(line) > self.room.max_line:
                too_long = True
                break
            if line:
                out.append(prefix + line + b"\n")
        if out:
            # one send per listener for everything this recv brought
            self.room.broadcast(self, b"".join(out))
        if too_long:
            self.refuse(conn, f"line too long (over {self.room.max_line} bytes)")
        elif not self.gone:
            conn.recv()

    def eof_received(self, conn: pyiocp.Connection) -> Optional[bool]:
        self.leave(conn, "left")
        # closed once what is queued for it is sent; bounded, as a drop is
        conn.set_deadline(self.room.slow_timeout, graceful=False)
        return None

    def deliver(self, conn: pyiocp.Connection, message: bytes) -> None:
        """Queues a message for this client, or drops the client if its
        queue is full already: so it holds at most max_backlog bytes plus
        one message (the lines of one read), and a message bigger than the
        bound still reaches a client that keeps up."""
        if conn.get_write_buffer_size() >= self.room.max_backlog:
            self.drop(conn, f"{self.room.max_backlog} bytes queued")
            return
        try:
            conn.send(message)      # may call pause_writing, right here
        except BufferError:
            # the engine's cap on all queued sends (max_write_buffer)
            self.drop(conn, "the server's write buffer is full")

    def pause_writing(self, conn: pyiocp.Connection) -> None:
        if self.behind is None and not self.gone:
            self.behind = conn.engine.call_later(self.room.slow_timeout, self.too_slow, conn)

    def resume_writing(self, conn: pyiocp.Connection) -> None:
        if self.behind is not None:
            self.behind.cancel()
            self.behind = None

    def too_slow(self, conn: pyiocp.Connection) -> None:
        self.behind = None
        self.drop(conn, f"behind for more than {self.room.slow_timeout:g} s")

    def refuse(self, conn: pyiocp.Connection, reason: str) -> None:
        """Says why, then closes.  A hard deadline bounds the close: a
        client that does not read would otherwise keep its queue."""
        self.leave(conn, f"refused: {reason}")
        try:
            conn.send(f"ERROR: {reason}\n".encode())
        except BufferError:         # the engine's cap: no room even for that
            conn.abort()
            return
        conn.close()
        conn.set_deadline(self.room.slow_timeout, graceful=False)

    def drop(self, conn: pyiocp.Connection, reason: str) -> None:
        if not self.gone:
            self.leave(conn, f"dropped: {reason}")
            conn.abort()            # a reset frees what was queued at once

    def leave(self, conn: pyiocp.Connection, how: str) -> None:
        """Out of the room: it gets no more messages."""
        if self.gone:
            return
        self.gone = True
        self.room.members.pop(conn, None)
        if self.behind is not None:
            self.behind.cancel()
            self.behind = None
        log(f"{self.name} {how}")

    def connection_lost(self, conn: pyiocp.Connection, exc: Optional[OSError]) -> None:
        self.leave(conn, "left" if exc is None else f"left ({exc})")


def main(argv: Optional[List[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7000)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--backend", default="auto", choices=["auto"] + pyiocp.backend_names())
    parser.add_argument("--max-line", type=int, default=MAX_LINE, metavar="BYTES")
    parser.add_argument("--high", type=int, default=HIGH_MARK, metavar="BYTES",
                        help="a client's queue above this is behind (pause_writing)")
    parser.add_argument("--max-backlog", type=int, default=MAX_BACKLOG, metavar="BYTES",
                        help="a client whose queue would pass this is dropped")
    parser.add_argument("--slow-timeout", type=float, default=SLOW_TIMEOUT, metavar="SECONDS",
                        help="a client behind for this long is dropped")
    parser.add_argument("--max-clients", type=int, default=MAX_CLIENTS)
    args = parser.parse_args(argv)
    try:
        room = Room(args.max_line, args.high, args.max_backlog, args.slow_timeout)
    except ValueError as exc:
        parser.error(str(exc))
    # The engine's cap on all queued sends, sized so that the per-client
    # bound bites first: a client holds at most max_backlog plus one
    # message, and a message is at most 16 times the read it came from (a
    # two-byte line "a\n" gets a name prefix of at most 30 bytes).
    engine = pyiocp.Engine(threads=args.threads, backend=args.backend,
                           recv_buffer_size=RECV_SIZE, max_connections=args.max_clients,
                           max_write_buffer=args.max_clients * (args.max_backlog + 16 * RECV_SIZE))
    listener = engine.listen((args.host, args.port), lambda: ChatClient(room))
    log(f"chat server on {listener.address[0]}:{listener.address[1]}")
    engine.run()


if __name__ == "__main__":
    main()
