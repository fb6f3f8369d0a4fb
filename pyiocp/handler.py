"""The base class of Python connection handlers."""
from __future__ import annotations

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

    def eof_received(self, conn: "Connection") -> None:
        """The peer closed its side.  The default closes the connection once
        pending sends have finished."""
        conn.close()

    def send_done(self, conn: "Connection", nbytes: int) -> None:
        """A send completed (only called if a subclass defines it)."""

    def transmit_done(self, conn: "Connection", nbytes: int) -> None:
        """A transmit_file completed (only called if a subclass defines it)."""

    def connection_lost(self, conn: "Connection", exc: Optional[OSError]) -> None:
        """The socket is closed and every operation on it has completed.
        `exc` is None for an orderly close, else the error that broke it
        (TimeoutError for an idle timeout)."""
