"""The base class of Python connection handlers."""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Optional

if TYPE_CHECKING:  # pragma: no cover
    from ._core import Connection


class Handler:
    """Callbacks run when operations posted on a connection complete.

    One handler instance serves one connection; the factory given to
    Engine.listen() makes them (a Handler subclass is such a factory).
    Callbacks of one connection never run concurrently, but different
    connections' callbacks may run on different worker threads.  An
    exception raised here is logged with its traceback and closes that
    connection only.
    """

    def connection_made(self, conn: "Connection") -> None:
        """A connection was accepted.  The default posts the first recv."""
        conn.recv()

    def data_received(self, conn: "Connection", data: bytes) -> None:
        """A recv completed with data.  Post conn.recv() to read more."""

    def eof_received(self, conn: "Connection") -> Optional[bool]:
        """The peer closed its side.  As in asyncio: return a true value to
        keep the connection open (to send more, then close() or
        write_eof()); a false one (the default, None) closes it once
        pending sends have finished."""
        return None

    def connection_failed(self, exc: OSError) -> None:
        """Engine.connect() could not connect (ConnectionRefusedError,
        TimeoutError, a name that does not resolve...).  The default logs
        it."""
        logging.getLogger("pyiocp").warning("pyiocp: connect failed for %r: %s", self, exc)

    def send_done(self, conn: "Connection", nbytes: int) -> None:
        """A send completed (only called if a subclass defines it)."""

    def transmit_done(self, conn: "Connection", nbytes: int) -> None:
        """A transmit_file completed (only called if a subclass defines it)."""

    def pause_writing(self, conn: "Connection") -> None:
        """The connection's write buffer went over its high mark
        (conn.set_write_buffer_limits()): stop sending until
        resume_writing.  Called inside the send() that crossed the mark, on
        the thread that called it, as asyncio's transports do."""

    def resume_writing(self, conn: "Connection") -> None:
        """The write buffer fell back to its low mark after pause_writing:
        sending may go on.  Runs on a worker, like the other callbacks."""

    def stopping(self, conn: "Connection") -> None:
        """The engine is stopping: it accepts no more connections, and this
        one's pending recv is about to be cancelled (unless nothing has been
        sent on it yet: then its first request is still read, for up to a
        second, and answered as usual).  Finish what was
        started (send a last answer, close()); called once per open
        connection whose connection_made has run, only if a subclass
        defines it (one accepted just before the stop may be closed by it
        before its connection_made is dispatched).  What is still open
        afterwards is drained and closed by the engine."""

    def connection_lost(self, conn: "Connection", exc: Optional[OSError]) -> None:
        """The socket is closed and every operation on it has completed.
        `exc` is None for an orderly close, else the error that broke it
        (TimeoutError for an idle timeout)."""
