"""The public API as typed code uses it: tests/test_typing.py checks this
module with mypy --strict against pyiocp's stubs, and pytest runs it, an
echo over 127.0.0.1 through a listener and an outbound connection of one
engine.  A stub that drifts from the runtime fails one or the other."""
from __future__ import annotations

import queue
from typing import Callable, List, Optional, Tuple

import pyiocp


class EchoServer(pyiocp.Handler):
    def __init__(self, events: queue.Queue[str]) -> None:
        self.events = events

    def connection_made(self, conn: pyiocp.Connection) -> None:
        conn.set_write_buffer_limits(high=1 << 20)
        limits: Tuple[int, int] = conn.get_write_buffer_limits()
        assert limits == (1 << 18, 1 << 20)
        conn.recv()

    def data_received(self, conn: pyiocp.Connection, data: bytes) -> None:
        sent: bool = conn.send(memoryview(data))
        assert sent
        conn.recv()

    def eof_received(self, conn: pyiocp.Connection) -> Optional[bool]:
        return None                 # close, once the echoes are sent

    def connection_lost(self, conn: pyiocp.Connection, exc: Optional[OSError]) -> None:
        self.events.put(f"server lost: {exc}")


class EchoClient(pyiocp.Handler):
    """Sends its messages one at a time, each once the last came back."""

    def __init__(self, messages: List[bytes], events: queue.Queue[str]) -> None:
        self.messages = messages
        self.echoed: List[bytes] = []
        self.buffer = b""
        self.events = events
        self.timer: Optional[pyiocp.TimerHandle] = None

    def connection_made(self, conn: pyiocp.Connection) -> None:
        peer: Tuple[object, ...] = conn.get_extra_info("peername")
        assert conn.sockname is not None and peer == conn.peername
        # a deadline that never fires: the echo ends long before it
        conn.set_deadline(60.0)
        self.timer = conn.engine.call_later(60.0, conn.abort)
        self.send_next(conn)
        conn.recv()

    def send_next(self, conn: pyiocp.Connection) -> None:
        if self.messages:
            conn.send(self.messages[0])
        elif conn.can_write_eof():
            conn.write_eof()        # the server sees the end, and closes

    def data_received(self, conn: pyiocp.Connection, data: bytes) -> None:
        self.buffer += data
        if self.messages and len(self.buffer) >= len(self.messages[0]):
            message = self.messages.pop(0)
            self.echoed.append(self.buffer[:len(message)])
            self.buffer = self.buffer[len(message):]
            self.send_next(conn)
        conn.recv()

    def eof_received(self, conn: pyiocp.Connection) -> Optional[bool]:
        if self.timer is not None:
            self.timer.cancel()
            assert self.timer.cancelled() and self.timer.when() > conn.engine.time()
        return None                 # close

    def connection_failed(self, exc: OSError) -> None:
        self.events.put(f"connect failed: {exc}")

    def connection_lost(self, conn: pyiocp.Connection, exc: Optional[OSError]) -> None:
        self.events.put(f"client lost: {exc}")


def test_typed_echo(make_engine: Callable[..., pyiocp.Engine]) -> None:
    """make_engine (conftest.py): an Engine on the backend under test,
    stopped after the test, which also fails if a descriptor leaked."""
    events: queue.Queue[str] = queue.Queue()
    engine = make_engine(threads=2, idle_timeout=30.0)
    listener: pyiocp.Listener = engine.listen(("127.0.0.1", 0), lambda: EchoServer(events))
    engine.start()
    host, port = listener.address[:2]
    messages = [b"ping", b"x" * 100_000, b"pong"]
    client: EchoClient = engine.connect((host, port), lambda: EchoClient(list(messages), events),
                                        timeout=10.0)
    posted: queue.Queue[int] = queue.Queue()
    engine.post(lambda: posted.put(engine.connections))
    assert posted.get(timeout=10) >= 0
    seen = {events.get(timeout=10), events.get(timeout=10)}
    assert seen == {"client lost: None", "server lost: None"}
    assert client.echoed == messages
