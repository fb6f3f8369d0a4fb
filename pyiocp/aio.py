"""pyiocp for asyncio programs: zero-copy file sends and native file serving
on the default event loop and on uvloop.

    await pyiocp.aio.sendfile(transport, file, offset, count)   # one send
    pyiocp.aio.install()        # loop.sendfile / sock_sendfile use the engine
    async with pyiocp.aio.serve(pyiocp.StaticFiles(root), "127.0.0.1", 8080):
        ...                     # files served by the engine's workers

The engine borrows the transport's socket for the transfer: the file's
bytes go from the page cache to the socket in C, on a worker thread, with
the GIL released, while the loop goes on with other work.  It follows
asyncio's own native sendfile: pause reading, wait until the transport has
written everything it holds, transmit, resume reading; the file position
ends at offset + bytes sent (also on error or cancellation).  The engine
changes nothing on the socket and never closes, shuts down or resets it.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import os
import socket
import stat
import threading
import weakref
from typing import (Any, AsyncIterator, Awaitable, Callable, Coroutine, Deque, Dict, Optional,
                    Tuple, Union)

from . import _core
from .handler import Handler

__all__ = ["Bridge", "Stream", "StreamServer", "connect", "default_bridge", "install", "uninstall",
           "sendfile", "serve", "start_server"]


class _Inbox:
    """Hands results from worker threads to one event loop: one
    call_soon_threadsafe (one wake-up of the loop) per batch, not per
    result."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._items: Deque[Tuple[Callable[..., None], Tuple[Any, ...]]] = collections.deque()
        self._lock = threading.Lock()
        self._scheduled = False

    def put(self, fn: Callable[..., None], *args: Any) -> None:
        self._items.append((fn, args))
        with self._lock:
            if self._scheduled:
                return            # the pending flush takes this one too
            self._scheduled = True
        try:
            self._loop.call_soon_threadsafe(self._flush)
        except RuntimeError:      # the loop is closed: nobody is waiting
            with self._lock:
                self._scheduled = False

    def _flush(self) -> None:
        with self._lock:
            self._scheduled = False   # a put from now on schedules again
        while self._items:
            fn, args = self._items.popleft()
            fn(*args)


def _settle(future: "asyncio.Future[Any]", value: Any) -> None:
    if not future.done():
        future.set_result(value)


class Bridge:
    """The engine asyncio code sends files through.  `async with Bridge():`
    makes and starts an engine and stops it on exit; Bridge(engine) uses a
    running engine it does not own.  default_bridge() is the one shared per
    process."""

    def __init__(self, engine: Optional[_core.Engine] = None, *,
                 threads: Optional[int] = None) -> None:
        self._own = engine is None
        self._engine = engine
        self._threads = threads
        self._inboxes: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Inbox]" = \
            weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    @property
    def engine(self) -> _core.Engine:
        """The engine (made and started on first use if the bridge owns it)."""
        with self._lock:
            if self._engine is None:
                from . import Engine
                engine = Engine(threads=self._threads)
                engine.start()
                self._engine = engine
            return self._engine

    def stats(self) -> Dict[str, Any]:
        """The engine's counters (sent_in_place, sent_in_place_bytes,
        borrowed, borrowed_bytes, transmit_file_bytes...): proof of which
        path moved the bytes."""
        return self.engine.stats()

    async def __aenter__(self) -> "Bridge":
        self.engine
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self, drain_timeout: float = 5.0) -> None:
        """Stops the engine if the bridge owns it (waiting in a thread, so
        the loop keeps running meanwhile)."""
        with self._lock:
            engine, own = self._engine, self._own
            if own:
                self._engine = None
        if engine is not None and own:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, engine.stop, drain_timeout)

    def _inbox(self, loop: asyncio.AbstractEventLoop) -> _Inbox:
        inbox = self._inboxes.get(loop)
        if inbox is None:
            inbox = self._inboxes.setdefault(loop, _Inbox(loop))
        return inbox

    async def sendfile(self, transport_or_socket: Any, file: Any, offset: int = 0,
                       count: Optional[int] = None, *, head: bytes = b"") -> int:
        """See pyiocp.aio.sendfile."""
        return await sendfile(transport_or_socket, file, offset, count, head=head, bridge=self)

    async def _transmit(self, sock_fd: int, file: Any, offset: int, count: Optional[int],
                        head: bytes) -> Tuple[int, Optional[OSError], bool]:
        """Lends the socket for one transmit; returns (bytes sent including
        the head, error, cancelled) once the socket is handed back.  A
        cancellation stops the transmit in C and still waits for the hand
        back (quick): the socket is not the loop's to touch before."""
        loop = asyncio.get_running_loop()
        future: "asyncio.Future[Tuple[int, Optional[OSError]]]" = loop.create_future()
        inbox = self._inbox(loop)

        def done(sent: int, error: Optional[OSError], returned_error: Optional[OSError]) -> None:
            inbox.put(_settle, future, (sent, error or returned_error))   # on a worker

        lending = self.engine.lend_transmit(sock_fd, file.fileno(), offset, count, head, done=done)
        cancelled = False
        while True:
            try:
                sent, error = await asyncio.shield(future)
                return sent, error, cancelled
            except asyncio.CancelledError:
                if future.cancelled():
                    raise                 # cannot happen: the future is ours alone
                cancelled = True
                lending.cancel()


_default: Optional[Bridge] = None
_default_pid = 0
_default_lock = threading.Lock()


def default_bridge() -> Bridge:
    """The process's shared bridge: its engine is made on first use and
    stopped at interpreter exit.  A forked child must make its own."""
    global _default, _default_pid
    with _default_lock:
        if _default is not None and _default_pid != os.getpid():
            raise RuntimeError(
                f"pyiocp.aio's default engine was created in process {_default_pid} before a "
                "fork; use a Bridge() made in this process")
        if _default is None:
            _default = Bridge()
            _default_pid = os.getpid()
        return _default


# --------------------------------------------------------------- checks --

def _check_params(sock_type: int, file: Any, offset: int, count: Optional[int]) -> None:
    """asyncio's own checks (BaseEventLoop._check_sendfile_params), with its
    messages."""
    if sock_type != socket.SOCK_STREAM:
        raise ValueError("only SOCK_STREAM type sockets are supported")
    if "b" not in getattr(file, "mode", "b"):
        raise ValueError("file should be opened in binary mode")
    if count is not None:
        if not isinstance(count, int):
            raise TypeError(f"count must be a positive integer (got {count!r})")
        if count <= 0:
            raise ValueError(f"count must be a positive integer (got {count!r})")
    if not isinstance(offset, int):
        raise TypeError(f"offset must be a non-negative integer (got {offset!r})")
    if offset < 0:
        raise ValueError(f"offset must be a non-negative integer (got {offset!r})")


def _regular_fd(file: Any) -> Optional[int]:
    """The descriptor of a regular file, or None (BytesIO, a pipe...)."""
    try:
        fd = file.fileno()
    except (AttributeError, io.UnsupportedOperation):
        return None
    try:
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except OSError:
        return None


def _native_socket(transport: asyncio.BaseTransport) -> Optional[Any]:
    """The socket under a plain (not TLS) stream transport, or None."""
    if transport.get_extra_info("ssl_object") is not None:
        return None   # the bytes must be encrypted: the loop's own path
    mode = getattr(transport, "_sendfile_compatible", None)
    if mode is not None and mode.name != "TRY_NATIVE":
        return None   # asyncio says this transport cannot send natively
    sock = transport.get_extra_info("socket")
    if sock is None or getattr(sock, "type", None) != socket.SOCK_STREAM:
        return None
    return sock


async def _wait_written(transport: Any) -> bool:
    """Waits until the transport has handed all it holds to the kernel.
    asyncio's selector transports have a private waiter for this (which
    also makes write() refuse while it is set, as during its own sendfile);
    True if it was set and must be reset.  uvloop has none: poll."""
    make = getattr(transport, "_make_empty_waiter", None)
    if make is not None and hasattr(transport, "_reset_empty_waiter"):
        await make()
        return True
    delay = 0.0005
    while transport.get_write_buffer_size():
        if transport.is_closing():
            raise ConnectionResetError("Connection lost")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.05)
    return False


def _file_bytes(sent: int, head: bytes) -> int:
    return max(0, sent - len(head))


def _short_file(fd: int, offset: int, count: Optional[int]) -> bool:
    """The file ended before offset + count (it shrank while sent)."""
    return count is not None and os.fstat(fd).st_size < offset + count


# ------------------------------------------------------------- sendfile --

async def sendfile(transport_or_socket: Any, file: Any, offset: int = 0,
                   count: Optional[int] = None, *, head: bytes = b"",
                   bridge: Optional[Bridge] = None) -> int:
    """Sends `head`, then `count` bytes (None: to the end) of `file` from
    `offset`, zero-copy through the engine, on an asyncio transport or a
    non-blocking stream socket.  Returns the number of file bytes sent (as
    loop.sendfile does); the file position is then offset + that, also on
    error or cancellation.  Cancelling stops the transfer where it is,
    without resetting the connection.  A peer that resets raises the
    matching OSError.  A TLS transport (or a file that is not a regular
    file) goes through the loop's own path instead."""
    head = bytes(head)
    sock = transport_or_socket
    if not isinstance(sock, socket.socket):
        # a transport: uvloop's TLS transport is not an asyncio.BaseTransport
        if not hasattr(sock, "get_extra_info"):
            raise TypeError(f"expected an asyncio transport or a socket, not {sock!r}")
        return await _sendfile_transport(sock, file, offset, count, head, bridge, None)
    _check_params(sock.type, file, offset, count)
    if sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")
    if _regular_fd(file) is None:
        loop = asyncio.get_running_loop()
        if head:
            await loop.sock_sendall(sock, head)
        return await _sock_fallback(loop, sock, file, offset, count)
    return await _send(bridge or default_bridge(), sock.fileno(), file, offset, count, head)


async def _send(bridge: Bridge, sock_fd: int, file: Any, offset: int, count: Optional[int],
                head: bytes) -> int:
    """Sends in place what the socket takes at once, then lends the socket
    for the rest.  Returns the file bytes sent."""
    done, sent, head = _send_in_place(bridge, sock_fd, file, offset, count, head)
    if done:
        return sent
    rest = None if count is None else count - sent
    return sent + await _lend_and_wait(bridge, sock_fd, file, offset + sent, rest, head)


def _send_in_place(bridge: Bridge, sock_fd: int, file: Any, offset: int, count: Optional[int],
                   head: bytes) -> Tuple[bool, int, bytes]:
    """(finished, file bytes sent, the head's unsent rest); raises the
    connection's error with the file position set as asyncio does."""
    head_sent, sent, finished, error = bridge.engine.send_in_place(
        sock_fd, file.fileno(), offset, count, head)
    if error or finished:
        file.seek(offset + sent)
    if error:
        raise OSError(error, os.strerror(error))
    return finished, sent, head[head_sent:]


async def _lend_and_wait(bridge: Bridge, sock_fd: int, file: Any, offset: int,
                         count: Optional[int], head: bytes) -> int:
    sent = 0
    try:
        total, error, cancelled = await bridge._transmit(sock_fd, file, offset, count, head)
        sent = _file_bytes(total, head)
        if cancelled:
            raise asyncio.CancelledError()
        if error is not None:
            if error.errno == _EIO and _short_file(file.fileno(), offset, count):
                return sent   # it shrank: what there was went out, as asyncio does
            raise error
        return sent
    finally:
        file.seek(offset + sent)


_EIO = 5


async def _sendfile_transport(transport: Any, file: Any, offset: int, count: Optional[int],
                              head: bytes, bridge: Optional[Bridge],
                              fallback: Optional[Callable[..., Awaitable[int]]]) -> int:
    sock = _native_socket(transport)
    _check_params(socket.SOCK_STREAM, file, offset, count)
    if transport.is_closing():
        raise RuntimeError("Transport is closing")
    if sock is None or _regular_fd(file) is None:
        if head:
            transport.write(head)
        if fallback is None:
            fallback = _loop_fallback(transport)
        # asyncio's fallback seeks only when offset is not 0: from 0 it
        # would read from wherever the file's position was left
        file.seek(offset)
        return await fallback(transport, file, offset, count)
    bridge = bridge or default_bridge()
    sent = 0
    tried = not transport.get_write_buffer_size()
    if tried:
        # nothing queued before it: what the socket takes now goes out in
        # this callback, with no reading paused and nothing lent
        done, sent, head = _send_in_place(bridge, sock.fileno(), file, offset, count, head)
        if done:
            return sent
    resume_reading = transport.is_reading()
    if resume_reading:
        transport.pause_reading()
    waiter = False
    try:
        try:
            waiter = await _wait_written(transport)
        except BaseException:
            file.seek(offset + sent)
            raise
        if not tried:
            return await _send(bridge, sock.fileno(), file, offset, count, head)
        rest = None if count is None else count - sent
        return sent + await _lend_and_wait(bridge, sock.fileno(), file, offset + sent, rest,
                                           head)
    finally:
        if waiter:
            transport._reset_empty_waiter()
        if resume_reading and not transport.is_closing():
            transport.resume_reading()


def _loop_fallback(transport: Any) -> Callable[..., Awaitable[int]]:
    """The running loop's own sendfile with fallback=True where it has one
    (the default loop), else a plain read-and-write loop (uvloop)."""
    loop = asyncio.get_running_loop()
    if isinstance(loop, _UVLOOP_TYPES):
        return _transport_fallback
    original = _originals.get(loop, {}).get("sendfile", loop.sendfile)
    return lambda t, f, o, c: original(t, f, o, c, fallback=True)


async def _transport_fallback(transport: Any, file: Any, offset: int,
                              count: Optional[int]) -> int:
    """Reads the file in chunks (in a thread) and writes them, keeping the
    transport's buffer under its high mark: for transports the engine
    cannot send on (TLS) on loops with no sendfile of their own."""
    loop = asyncio.get_running_loop()
    high = transport.get_write_buffer_limits()[1] or 65536
    chunk = min(count or 262144, 262144)
    sent = 0
    try:
        file.seek(offset)
        while count is None or sent < count:
            want = chunk if count is None else min(chunk, count - sent)
            data = await loop.run_in_executor(None, file.read, want)
            if not data:
                break
            delay = 0.0005
            while transport.get_write_buffer_size() > high:
                if transport.is_closing():
                    raise ConnectionResetError("Connection lost")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 0.05)
            if transport.is_closing():
                raise ConnectionResetError("Connection lost")
            transport.write(data)
            sent += len(data)
        return sent
    finally:
        file.seek(offset + sent)


async def _sock_fallback(loop: asyncio.AbstractEventLoop, sock: Any, file: Any, offset: int,
                         count: Optional[int]) -> int:
    sent = 0
    try:
        file.seek(offset)
        while count is None or sent < count:
            want = 262144 if count is None else min(262144, count - sent)
            data = await loop.run_in_executor(None, file.read, want)
            if not data:
                break
            await loop.sock_sendall(sock, data)
            sent += len(data)
        return sent
    finally:
        file.seek(offset + sent)


# -------------------------------------------------------------- install --

try:
    import uvloop as _uvloop
    _UVLOOP_TYPES: Tuple[type, ...] = (_uvloop.Loop,)
except ImportError:     # uvloop is optional
    _UVLOOP_TYPES = ()

_originals: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Dict[str, Callable[..., Awaitable[int]]]]" = \
    weakref.WeakKeyDictionary()


def install(loop: Optional[asyncio.AbstractEventLoop] = None, *,
            bridge: Optional[Bridge] = None) -> None:
    """Makes loop.sendfile(transport, file, offset=0, count=None, *,
    fallback=True) and loop.sock_sendfile(sock, file, ...) on `loop` (the
    running one by default) send through the engine; what the engine cannot
    send (TLS transports, files that are not regular) goes the loop's own
    way, with its own fallback rules.  uvloop has no sendfile of its own:
    there, with fallback=True, the file is read and written in chunks (as
    asyncio's fallback does), and with fallback=False its
    NotImplementedError is raised as before.  Idempotent; uninstall()
    undoes it."""
    if loop is None:
        loop = asyncio.get_running_loop()
    if loop in _originals:
        return
    if os.name == "nt":   # pragma: no cover - no Windows backend yet
        raise RuntimeError("pyiocp.aio.install: no Windows support yet; the loop is unchanged")
    target = loop
    originals: Dict[str, Callable[..., Awaitable[int]]] = {
        "sendfile": loop.sendfile, "sock_sendfile": loop.sock_sendfile}
    _originals[loop] = originals

    async def sendfile_method(transport: asyncio.WriteTransport, file: Any, offset: int = 0,
                              count: Optional[int] = None, *, fallback: bool = True) -> int:
        def own_way(t: Any, f: Any, o: int, c: Optional[int]) -> Awaitable[int]:
            if fallback and isinstance(target, _UVLOOP_TYPES):
                return _transport_fallback(t, f, o, c)
            return originals["sendfile"](t, f, o, c, fallback=fallback)
        return await _sendfile_transport(transport, file, offset, count, b"", bridge, own_way)

    async def sock_sendfile_method(sock: socket.socket, file: Any, offset: int = 0,
                                   count: Optional[int] = None, *,
                                   fallback: Optional[bool] = True) -> int:
        _check_params(sock.type, file, offset, count)
        if sock.gettimeout() != 0:
            raise ValueError("the socket must be non-blocking")
        if _regular_fd(file) is None:
            if fallback and isinstance(target, _UVLOOP_TYPES):
                return await _sock_fallback(target, sock, file, offset, count)
            return await originals["sock_sendfile"](sock, file, offset, count, fallback=fallback)
        return await _send(bridge or default_bridge(), sock.fileno(), file, offset, count, b"")

    target.sendfile = sendfile_method              # type: ignore[method-assign]
    target.sock_sendfile = sock_sendfile_method    # type: ignore[method-assign]


def uninstall(loop: Optional[asyncio.AbstractEventLoop] = None) -> None:
    """Gives `loop` back its own sendfile and sock_sendfile."""
    if loop is None:
        loop = asyncio.get_running_loop()
    originals = _originals.pop(loop, None)
    if originals is not None:
        del loop.sendfile          # the instance attributes; the class's show again
        del loop.sock_sendfile


# ---------------------------------------------------------------- serve --

@contextlib.asynccontextmanager
async def serve(native: Union[_core.StaticFiles, _core.RawFileServer], host: str = "127.0.0.1",
                port: int = 0, *, threads: Optional[int] = None, backend: str = "auto",
                backlog: int = -1, drain_timeout: float = 5.0
                ) -> AsyncIterator[_core.Listener]:
    """Serves files with a native handler (StaticFiles, RawFileServer) on
    the engine's own workers, next to an asyncio application in the same
    process: the loop is not involved in serving.  Yields the Listener
    (`.address`); on exit the engine stops (drained in a thread, the loop
    keeps running)."""
    from . import Engine
    engine = Engine(threads=threads, backend=backend)
    try:
        listener = engine.listen((host, port), native, backlog=backlog)
        engine.start()
    except BaseException:
        engine.stop(0)
        raise
    try:
        yield listener
    finally:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, engine.stop, drain_timeout)


# -------------------------------------------------------------- streams --

class Stream:
    """A pyiocp Connection for coroutines, shaped like asyncio's
    StreamReader and StreamWriter in one object: await read(), readexactly(),
    readuntil(), readline(); write() then await drain(); write_eof();
    close() then await wait_closed().  Completions come from the engine's
    workers to the loop in batches (one call_soon_threadsafe per batch).

    Reading is bounded: at most `limit` bytes wait unread on the loop side
    (plus one recv's worth); past that no recv is posted until the program
    reads, so a fast peer waits in the kernel, not in memory.  Writing
    follows asyncio: drain() waits while the write buffer is over its high
    mark (set_write_buffer_limits)."""

    def __init__(self, loop: asyncio.AbstractEventLoop, inbox: _Inbox, limit: int) -> None:
        self._loop = loop
        self._inbox = inbox
        self._limit = limit
        self._conn: Optional[_core.Connection] = None
        self._buffer = bytearray()
        self._eof = False
        self._want_recv = False           # a recv is due once the buffer drains
        self._exc: Optional[BaseException] = None
        self._waiter: "Optional[asyncio.Future[None]]" = None    # a read waiting for data
        self._drain_waiter: "Optional[asyncio.Future[None]]" = None
        self._paused = False
        self._made: "asyncio.Future[None]" = loop.create_future()
        self._closed: "asyncio.Future[None]" = loop.create_future()

    # -- called on the loop (through the inbox) --

    def _connection_made(self, conn: _core.Connection) -> None:
        self._conn = conn
        _settle(self._made, None)

    def _connect_failed(self, exc: OSError) -> None:
        if not self._made.done():
            self._made.set_exception(exc)
        _settle(self._closed, None)

    def _feed(self, data: bytes) -> None:
        self._buffer += data
        self._wake()
        self._recv_if_room()

    def _feed_eof(self) -> None:
        self._eof = True
        self._wake()

    def _lost(self, exc: Optional[OSError]) -> None:
        self._eof = True
        if exc is not None and self._exc is None:
            self._exc = exc
        self._wake()
        if self._drain_waiter is not None and not self._drain_waiter.done():
            self._drain_waiter.set_exception(exc or ConnectionResetError("Connection lost"))
        _settle(self._closed, None)

    def _resume(self) -> None:
        self._paused = False
        if self._drain_waiter is not None:
            _settle(self._drain_waiter, None)

    def _wake(self) -> None:
        if self._waiter is not None:
            _settle(self._waiter, None)
            self._waiter = None

    def _recv_if_room(self) -> None:
        if self._conn is None or self._eof:
            return
        if len(self._buffer) < self._limit:
            self._want_recv = False
            self._conn.recv()
        else:
            self._want_recv = True

    async def _wait_data(self) -> None:
        if self._exc is not None:
            raise self._exc
        if self._eof:
            return
        if self._want_recv and self._conn is not None:
            # a reader that waits needs more than the limit holds (asyncio's
            # StreamReader resumes reading here too): read on
            self._want_recv = False
            self._conn.recv()
        self._waiter = self._loop.create_future()
        await self._waiter

    def _take(self, n: int) -> bytes:
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        if self._want_recv and len(self._buffer) < self._limit:
            self._recv_if_room()
        return data

    # -- reading --

    async def read(self, n: int = -1) -> bytes:
        """Up to n bytes (n < 0: everything until EOF); b"" at EOF."""
        if n == 0:
            return b""
        if n < 0:
            while not self._eof:
                await self._wait_data()
                if self._exc is not None:
                    raise self._exc
            return self._take(len(self._buffer))
        while not self._buffer and not self._eof:
            await self._wait_data()
        if not self._buffer and self._exc is not None:
            raise self._exc
        return self._take(n)

    async def readexactly(self, n: int) -> bytes:
        """Exactly n bytes, or asyncio.IncompleteReadError at EOF."""
        while len(self._buffer) < n:
            if self._eof:
                partial = self._take(len(self._buffer))
                raise asyncio.IncompleteReadError(partial, n)
            await self._wait_data()
        return self._take(n)

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        """Up to and including `separator`; asyncio.LimitOverrunError if
        `limit` bytes come without it, IncompleteReadError at EOF."""
        start = 0
        while True:
            found = self._buffer.find(separator, start)
            if found >= 0:
                return self._take(found + len(separator))
            if len(self._buffer) >= self._limit:
                raise asyncio.LimitOverrunError("separator is not found, and chunk exceed the limit",
                                                len(self._buffer))
            if self._eof:
                partial = self._take(len(self._buffer))
                raise asyncio.IncompleteReadError(partial, None)
            start = max(0, len(self._buffer) - len(separator) + 1)
            await self._wait_data()

    async def readline(self) -> bytes:
        """A line with its b"\\n", or what is left at EOF."""
        try:
            return await self.readuntil(b"\n")
        except asyncio.IncompleteReadError as exc:
            return exc.partial

    def at_eof(self) -> bool:
        return self._eof and not self._buffer

    # -- writing --

    def write(self, data: Any) -> None:
        """Queues data (copied or held by the engine); see drain()."""
        if self._conn is None or not self._conn.send(data):
            if self._exc is not None:
                raise self._exc
            raise ConnectionResetError("Connection lost")

    async def drain(self) -> None:
        """Waits while the write buffer is over its high mark."""
        if self._exc is not None:
            raise self._exc
        if self._closed.done() and self._conn is not None and self._conn.closed:
            raise ConnectionResetError("Connection lost")
        if self._paused:
            self._drain_waiter = self._loop.create_future()
            await self._drain_waiter

    def write_eof(self) -> None:
        if self._conn is not None:
            self._conn.write_eof()

    def can_write_eof(self) -> bool:
        return True

    def set_write_buffer_limits(self, high: Optional[int] = None, low: Optional[int] = None) -> None:
        if self._conn is not None:
            self._conn.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        return self._conn.get_write_buffer_size() if self._conn is not None else 0

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._conn.get_extra_info(name, default) if self._conn is not None else default

    def close(self) -> None:
        """Closes once what was written has gone out."""
        if self._conn is not None:
            self._conn.close()

    def is_closing(self) -> bool:
        return self._closed.done() or (self._conn is not None and self._conn.closed)

    async def wait_closed(self) -> None:
        await asyncio.shield(self._closed)


class _StreamHandler(Handler):
    """Runs on the engine's workers and hands everything to the loop."""

    def __init__(self, stream: Stream, on_made: Optional[Callable[[Stream], None]] = None) -> None:
        self.stream = stream
        self.on_made = on_made

    def connection_made(self, conn: _core.Connection) -> None:
        inbox = self.stream._inbox
        inbox.put(self.stream._connection_made, conn)
        if self.on_made is not None:
            inbox.put(self.on_made, self.stream)
        conn.recv()

    def data_received(self, conn: _core.Connection, data: bytes) -> None:
        # the next recv is the loop's to post, when there is room (_feed)
        self.stream._inbox.put(self.stream._feed, data)

    def eof_received(self, conn: _core.Connection) -> bool:
        self.stream._inbox.put(self.stream._feed_eof)
        return True       # the program may still write; close() ends it

    def pause_writing(self, conn: _core.Connection) -> None:
        self.stream._paused = True      # inside send(): on the caller's (the loop's) thread

    def resume_writing(self, conn: _core.Connection) -> None:
        self.stream._inbox.put(self.stream._resume)

    def connection_failed(self, exc: OSError) -> None:
        self.stream._inbox.put(self.stream._connect_failed, exc)

    def connection_lost(self, conn: _core.Connection, exc: Optional[OSError]) -> None:
        self.stream._inbox.put(self.stream._lost, exc)


async def connect(host: str, port: int, *, bridge: Optional[Bridge] = None,
                  limit: int = 1 << 16, timeout: Optional[float] = None) -> Stream:
    """Connects through the engine and returns a Stream once connected
    (OSError if the connection fails; `timeout` covers name resolution)."""
    bridge = bridge or default_bridge()
    loop = asyncio.get_running_loop()
    stream = Stream(loop, bridge._inbox(loop), limit)
    bridge.engine.connect((host, port), lambda: _StreamHandler(stream), timeout=timeout)
    await stream._made
    return stream


class StreamServer:
    """What start_server returns: `.address`; close() stops its engine
    (accepting ends, open connections drain for up to drain_timeout, in a
    thread: the loop keeps running); await wait_closed() for the end, and
    for the client tasks.  Also an async context manager."""

    def __init__(self, engine: _core.Engine, listener: _core.Listener,
                 tasks: "set[asyncio.Task[Any]]", drain_timeout: float) -> None:
        self._engine = engine
        self._tasks = tasks
        self._drain_timeout = drain_timeout
        self._stopped: "Optional[asyncio.Future[None]]" = None
        self.address = listener.address

    def close(self) -> None:
        if self._stopped is None:
            loop = asyncio.get_running_loop()
            self._stopped = loop.run_in_executor(None, self._engine.stop, self._drain_timeout)

    async def wait_closed(self) -> None:
        if self._stopped is not None:
            await self._stopped
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def __aenter__(self) -> "StreamServer":
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
        await self.wait_closed()


async def start_server(client_connected: Callable[[Stream], Coroutine[Any, Any, None]],
                       host: str = "127.0.0.1", port: int = 0, *, limit: int = 1 << 16,
                       threads: Optional[int] = None, backend: str = "auto",
                       drain_timeout: float = 5.0) -> StreamServer:
    """Accepts through an engine of its own; each connection runs
    client_connected(stream) as a task on this loop."""
    from . import Engine
    loop = asyncio.get_running_loop()
    engine = Engine(threads=threads, backend=backend)
    inbox = Bridge(engine)._inbox(loop)
    tasks: "set[asyncio.Task[Any]]" = set()

    def spawn(stream: Stream) -> None:
        task = loop.create_task(client_connected(stream))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    def factory() -> _StreamHandler:
        return _StreamHandler(Stream(loop, inbox, limit), spawn)

    try:
        listener = engine.listen((host, port), factory)
        engine.start()
    except BaseException:
        engine.stop(0)
        raise
    return StreamServer(engine, listener, tasks, drain_timeout)
