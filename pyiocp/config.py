"""Engine configuration: defaults and validation, with errors that say what
was wrong and what is allowed.  The engine's own defaults and backend names
are read from C (pyiocp.h), never restated here."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from . import _core

_ENGINE = _core.engine_defaults()

# "auto", then every backend compiled in, best first
BACKENDS = ("auto", *_core.backend_names())

MAX_THREADS = _core.MAX_THREADS
MAX_CONNECTIONS = 1_000_000
MAX_RECV_BUFFER = 16 * 1024 * 1024
MAX_IDLE_TIMEOUT = 365 * 86400.0
MAX_WRITE_BUFFER = 1 << 48


def default_threads() -> int:
    """The worker count an engine gets by default (decided in C): twice
    cpu_info()["usable"], the CPUs this process may use."""
    return _core.default_threads()


def cpu_info() -> _core._CpuInfo:
    """The CPUs this process may use, and what limits them (read in C):
    {"online": the machine's, "affinity": its affinity mask (taskset, a
    cpuset), "quota_cpus": the tightest cgroup CPU quota such as 1.5, or
    None, "usable": the smaller of the two, quota rounded up}."""
    return _core.cpu_info()


@dataclass(frozen=True)
class EngineConfig:
    threads: Optional[int] = _ENGINE["threads"]            # None: default_threads()
    backend: str = _ENGINE["backend"]
    backlog: int = 1024                                    # the binding's own
    recv_buffer_size: int = 64 * 1024                      # the binding's own
    max_connections: int = _ENGINE["max_connections"]
    idle_timeout: Optional[float] = _ENGINE["idle_timeout"]  # seconds; None: never
    # bytes held in memory for sends, all connections together: send()
    # raises BufferError past it (the binding's own)
    max_write_buffer: int = 256 * 1024 * 1024
    # seconds a graceful close waits, after its FIN, for the peer to close
    linger_timeout: float = 5.0

    def __post_init__(self) -> None:
        _check_int("threads", self.threads, 1, MAX_THREADS, optional=True)
        if not isinstance(self.backend, str) or self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, not {self.backend!r}")
        _check_int("backlog", self.backlog, 1, 65535)
        _check_int("recv_buffer_size", self.recv_buffer_size, 1, MAX_RECV_BUFFER)
        _check_int("max_connections", self.max_connections, 1, MAX_CONNECTIONS)
        _check_int("max_write_buffer", self.max_write_buffer, 1, MAX_WRITE_BUFFER)
        if isinstance(self.linger_timeout, bool) or not isinstance(self.linger_timeout, (int, float)):
            raise TypeError(f"linger_timeout must be a number of seconds, not {self.linger_timeout!r}")
        if not 0 < self.linger_timeout <= MAX_IDLE_TIMEOUT:
            raise ValueError(f"linger_timeout must be in (0, {MAX_IDLE_TIMEOUT:.0f}] seconds, "
                             f"not {self.linger_timeout!r}")
        if self.idle_timeout is not None:
            if isinstance(self.idle_timeout, bool) or not isinstance(self.idle_timeout, (int, float)):
                raise TypeError(f"idle_timeout must be a number of seconds or None, not {self.idle_timeout!r}")
            if not 0 < self.idle_timeout <= MAX_IDLE_TIMEOUT:
                raise ValueError(f"idle_timeout must be in (0, {MAX_IDLE_TIMEOUT:.0f}] seconds "
                                 f"(or None for never), not {self.idle_timeout!r}")

    @property
    def effective_threads(self) -> int:
        return self.threads if self.threads is not None else default_threads()


def _check_int(name: str, value: object, low: int, high: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be in {low}..{high}, not {value}")
