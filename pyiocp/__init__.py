"""pyiocp: the I/O-completion-port model for Python.

Post an operation (recv, send, transmit a file), return at once, and react
when it completes; a small pool of native worker threads waits on one
completion queue without the GIL.
"""
from __future__ import annotations

from typing import Optional

from . import _core
from ._core import (Connection, Listener, MetricsArea, NativeHandler, RawFileServer,
                    StaticFiles, TimerHandle, available_backends, backend_names)
from .config import EngineConfig, cpu_info, default_threads
from .handler import Handler
from .workers import serve_workers

__version__ = _core.__version__
__all__ = [
    "Engine", "EngineConfig", "Handler", "Connection", "Listener", "MetricsArea", "NativeHandler",
    "RawFileServer", "StaticFiles", "TimerHandle", "available_backends", "backend_names",
    "cpu_info", "default_threads", "serve_workers", "__version__",
]


_DEFAULTS = EngineConfig()


class Engine(_core.Engine):
    """A completion engine.

    >>> engine = Engine(threads=4)                  # doctest: +SKIP
    >>> engine.listen(("127.0.0.1", 8000), Echo)    # doctest: +SKIP
    >>> engine.run()                                # doctest: +SKIP

    threads: worker threads (default: twice the CPUs this process may use,
    default_threads()); backend: "auto" or one of backend_names() (those
    this kernel allows: available_backends());
    backlog: listen backlog; recv_buffer_size: bytes per recv;
    max_connections: beyond this, new connections are closed at once;
    idle_timeout: seconds without progress before a peer is dropped;
    max_write_buffer: bytes held in memory for sends across all
    connections, past which send() raises BufferError; linger_timeout:
    seconds a graceful close waits for the peer to close its side too.
    The defaults are EngineConfig's, which reads the engine's from C.
    """

    def __init__(self, threads: Optional[int] = _DEFAULTS.threads,
                 backend: str = _DEFAULTS.backend, backlog: int = _DEFAULTS.backlog,
                 recv_buffer_size: int = _DEFAULTS.recv_buffer_size,
                 max_connections: int = _DEFAULTS.max_connections,
                 idle_timeout: Optional[float] = _DEFAULTS.idle_timeout,
                 max_write_buffer: int = _DEFAULTS.max_write_buffer,
                 linger_timeout: float = _DEFAULTS.linger_timeout) -> None:
        super().__init__(EngineConfig(threads=threads, backend=backend, backlog=backlog,
                                      recv_buffer_size=recv_buffer_size,
                                      max_connections=max_connections, idle_timeout=idle_timeout,
                                      max_write_buffer=max_write_buffer,
                                      linger_timeout=linger_timeout))

    def __repr__(self) -> str:
        return f"<pyiocp.Engine backend={self.backend} threads={self.threads}>"
