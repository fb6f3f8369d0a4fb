"""Pre-fork workers: one listening socket, N processes serving it.

An engine's worker threads share one interpreter lock, so a Python handler
uses about one core however many threads run it.  serve_workers() uses the
others the way gunicorn's arbiter and nginx's master do: a supervisor makes
the listening socket, forks N workers that inherit it, and only watches
them.  Each worker makes its own Engine after the fork: threads, inotify
watches and the access-log writer do not survive fork(), and an Engine
made before it refuses to serve in the child.

Signals to the supervisor: SIGHUP reloads gracefully (new workers first;
once they are all ready the old ones get SIGTERM and drain); SIGTERM or
SIGINT stops (SIGTERM to every worker, SIGKILL after stop_timeout).  A
worker that dies is restarted, at once if it had served a while, with a
growing delay if it keeps dying young.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from types import FrameType
from typing import Any, Callable, Dict, Iterable, Optional, Tuple, Union

from . import _core

log = logging.getLogger("pyiocp.workers")

# A worker whose setup() failed exits with this (gunicorn's WORKER_BOOT_ERROR):
# at startup the supervisor gives up instead of restarting it for ever.
BOOT_ERROR = 3
# A worker that dies younger than this counts as failing: its restart waits
# RESTART_DELAY, doubled per failure in a row up to MAX_RESTART_DELAY.
MIN_UPTIME = 1.0
RESTART_DELAY = 0.1
MAX_RESTART_DELAY = 10.0
# How long a reload waits for the new workers before keeping the old ones.
RELOAD_TIMEOUT = 30.0
# POSIX only (fork, SIGHUP, SIGCHLD): empty on Windows, where serve_workers
# refuses, so that importing pyiocp works there.
SUPERVISOR_SIGNALS = ({signal.SIGHUP, signal.SIGTERM, signal.SIGINT, signal.SIGCHLD}
                      if hasattr(os, "fork") else set())

Setup = Callable[[socket.socket], "_core.Engine"]
Address = Tuple[Any, ...]    # (host, port), or IPv6's (host, port, flowinfo, scope_id)


def serve_workers(workers: int, setup: Setup, *, address: Optional[Address] = None,
                  sock: Optional[socket.socket] = None, reuse_port: bool = False,
                  backlog: int = 1024, drain_timeout: float = 5.0,
                  stop_timeout: Optional[float] = None,
                  on_ready: Optional[Callable[[Address], None]] = None,
                  metrics: Union[Address, socket.socket, None] = None,
                  metrics_threads: Optional[int] = None) -> int:
    """Serves with `workers` processes until SIGTERM or SIGINT; returns 0,
    or 1 if the first workers could not start (setup() failed).

    setup(listen_socket) runs in each worker, after the fork: it makes the
    Engine, its handlers and its listener (engine.listen(sock=listen_socket,
    handler=...)) and returns the engine, without starting it; the worker
    runs it until SIGTERM, lets transfers finish for up to drain_timeout
    seconds and exits with os._exit (the supervisor's atexit hooks never run
    in a worker).

    The socket: `sock` (already listening; it stays the caller's), or one
    bound here to `address` (host, port) with `backlog`.  Every worker
    inherits the same socket, so a worker that dies resets none of the
    connections queued on it.  reuse_port=True instead: each worker binds
    its own socket to `address` with SO_REUSEPORT and the kernel spreads
    connections over them (no herd, but connections queued on a dying
    worker's socket are reset); the supervisor keeps the port reserved.

    on_ready(address) runs in the supervisor once the first workers are all
    serving.  stop_timeout (default drain_timeout + 5 s): how long a stop
    waits for the workers before SIGKILL.  Call it from a process with no
    other thread running (fork copies only the calling thread) and with no
    Engine made yet.  POSIX only: on Windows it raises NotImplementedError
    (there is no fork; serve with one process and more threads).

    metrics=(host, port), or a listening socket (it stays the caller's):
    every worker's engine counts into memory the workers share (a
    MetricsArea), and serves GET /metrics on that address (one socket,
    served by whichever worker accepts): each
    worker's series with a `worker` label (its slot), and their sum without.
    A restarted worker's counts carry on from its predecessor's.
    metrics_threads: the most worker threads an engine made by setup() may
    have (default: pyiocp.default_threads()); one with more fails to start.
    """
    if not hasattr(os, "fork"):
        raise NotImplementedError("serve_workers needs fork(), which Windows does not have; "
                                  "serve with one process (Engine(threads=N)) instead")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, not {workers!r}")
    if not callable(setup):
        raise TypeError("setup must be callable: setup(listen_socket) -> Engine")
    if (address is None) == (sock is None):
        raise ValueError("serve_workers() takes an address or sock, exactly one")
    if reuse_port and sock is not None:
        raise ValueError("reuse_port binds a socket per worker: give an address, not sock")
    area = None
    if metrics is not None:
        area = _core.MetricsArea(workers, metrics_threads or _core.default_threads())
    owned = sock is None
    if sock is None:
        assert address is not None   # exactly one of the two, checked above
        sock = _bind(address, backlog, reuse_port)
    metrics_sock = metrics if isinstance(metrics, socket.socket) else None
    owned_metrics = isinstance(metrics, tuple)
    try:
        if isinstance(metrics, tuple):
            metrics_sock = socket.create_server(metrics, family=_family(metrics))
        supervisor = _Supervisor(sock, workers, setup, drain_timeout,
                                 drain_timeout + 5.0 if stop_timeout is None else stop_timeout)
        supervisor.metrics_area, supervisor.metrics_socket = area, metrics_sock
        if reuse_port:
            supervisor.worker_address = sock.getsockname()
            supervisor.backlog = backlog
        return supervisor.run(on_ready)
    finally:
        if owned_metrics and metrics_sock is not None:
            metrics_sock.close()
        if owned:
            sock.close()


def _bind(address: Address, backlog: int, reuse_port: bool) -> socket.socket:
    """The supervisor's socket.  With reuse_port it is bound but does not
    listen: it only holds the port (resolving port 0) for the workers'
    sockets; the kernel hands connections to listening sockets only."""
    if not reuse_port:
        return socket.create_server(address, family=_family(address), backlog=backlog)
    sock = socket.socket(_family(address), socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _family(address: Address) -> int:
    host = address[0]
    return socket.AF_INET6 if isinstance(host, str) and ":" in host else socket.AF_INET


def _describe_exit(status: int) -> str:
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        return f"was killed by {signal.Signals(-code).name}"
    return f"exited with status {code}"


@dataclass
class _Worker:
    pid: int
    slot: int
    started: float
    ready: bool = False
    cell: Optional[int] = None     # its metrics cell, released when it is reaped


class _Supervisor:
    def __init__(self, sock: socket.socket, count: int, setup: Setup, drain_timeout: float,
                 stop_timeout: float) -> None:
        self.socket = sock
        self.count = count
        self.setup = setup
        self.drain_timeout = drain_timeout
        self.stop_timeout = stop_timeout
        self.worker_address: Optional[Address] = None   # reuse_port: each worker binds this
        self.metrics_area: Optional[_core.MetricsArea] = None
        self.metrics_socket: Optional[socket.socket] = None
        self.backlog = 1024
        self.slots: Dict[int, Optional[_Worker]] = {slot: None for slot in range(count)}
        self.retiring: Dict[int, _Worker] = {}      # pid -> old worker, draining
        self.failures = {slot: 0 for slot in range(count)}
        self.restart_at = {slot: 0.0 for slot in range(count)}
        self.reload: Optional[Tuple[float, Dict[int, _Worker]]] = None  # deadline, old
        self.ever_ready = False
        self.ready_read = self.ready_write = -1

    # ------------------------------------------------------------ loop --

    def run(self, on_ready: Optional[Callable[[Address], None]]) -> int:
        self.ready_read, self.ready_write = os.pipe()
        os.set_blocking(self.ready_read, False)
        # Signals are taken with sigtimedwait, never by a handler running
        # in the middle of a fork or a wait; workers unblock them.
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, SUPERVISOR_SIGNALS)
        announced = False
        try:
            while True:
                if self._reap() == BOOT_ERROR and not self.ever_ready:
                    log.error("pyiocp: a worker could not start (see above); stopping")
                    self._stop_all()
                    return 1
                self._read_ready()
                self._start_due()
                self._advance_reload()
                if not announced and self._all_ready():
                    announced = True
                    self.ever_ready = True
                    if on_ready is not None:
                        on_ready(self.socket.getsockname())
                info = signal.sigtimedwait(SUPERVISOR_SIGNALS, 0.1)
                if info is None or info.si_signo == signal.SIGCHLD:
                    continue
                if info.si_signo == signal.SIGHUP:
                    self._begin_reload()
                    continue
                log.info("pyiocp: %s: stopping %d workers",
                         signal.Signals(info.si_signo).name, self._alive())
                self._stop_all()
                return 0
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
            os.close(self.ready_read)
            os.close(self.ready_write)

    def _alive(self) -> int:
        return sum(1 for w in self.slots.values() if w) + len(self.retiring)

    def _all_ready(self) -> bool:
        return all(w is not None and w.ready for w in self.slots.values())

    # ------------------------------------------------- starting workers --

    def _start_due(self) -> None:
        now = time.monotonic()
        for slot, worker in self.slots.items():
            if worker is None and now >= self.restart_at[slot]:
                self._spawn(slot)

    def _spawn(self, slot: int) -> None:
        cell = None
        if self.metrics_area is not None:
            try:
                cell = self.metrics_area.claim(slot)
            except RuntimeError as exc:   # not with 3 cells a slot; serve anyway
                log.warning("pyiocp: worker %d: %s; its counts will not show", slot, exc)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            _worker_main(self, slot, cell)   # never returns
        self.slots[slot] = _Worker(pid, slot, time.monotonic(), cell=cell)

    def _release_cell(self, worker: _Worker) -> None:
        """Its process is gone: its counts move to its slot's totals."""
        if self.metrics_area is not None and worker.cell is not None:
            self.metrics_area.release(worker.cell)
            worker.cell = None

    def _read_ready(self) -> None:
        try:
            data = os.read(self.ready_read, 4096)
        except BlockingIOError:
            return
        for offset in range(0, len(data) - 3, 4):
            pid = int.from_bytes(data[offset:offset + 4], "little")
            for worker in self.slots.values():
                if worker is not None and worker.pid == pid:
                    worker.ready = True

    # ------------------------------------------------- reaping workers --

    def _reap(self) -> Optional[int]:
        """Collects exited workers and schedules restarts; returns the exit
        code of a current worker that failed to boot, if one did."""
        boot_error = None
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return boot_error
            if pid == 0:
                return boot_error
            retired = self.retiring.pop(pid, None)
            if retired is not None:
                self._release_cell(retired)
                continue   # an old worker that drained and left, as asked
            worker = next((w for w in self.slots.values() if w and w.pid == pid), None)
            if worker is None:
                continue
            self._release_cell(worker)
            self.slots[worker.slot] = None
            code = os.waitstatus_to_exitcode(status)
            if code == BOOT_ERROR and not worker.ready:
                boot_error = BOOT_ERROR
                if not self.ever_ready:
                    continue   # the first workers cannot start: run() gives up
                if self.reload is not None:
                    self._abort_reload("a new worker could not start")
                    continue
            self._schedule_restart(worker, status)

    def _schedule_restart(self, worker: _Worker, status: int) -> None:
        slot = worker.slot
        uptime = time.monotonic() - worker.started
        self.failures[slot] = self.failures[slot] + 1 if uptime < MIN_UPTIME else 0
        delay = 0.0
        if self.failures[slot]:
            delay = min(RESTART_DELAY * 2 ** (self.failures[slot] - 1), MAX_RESTART_DELAY)
        self.restart_at[slot] = time.monotonic() + delay
        log.warning("pyiocp: worker %d (pid %d) %s after %.1f s; restarting it%s", slot,
                    worker.pid, _describe_exit(status), uptime,
                    f" in {delay:.1f} s" if delay else "")

    # ---------------------------------------------------------- reload --

    def _begin_reload(self) -> None:
        if self.reload is not None:
            log.info("pyiocp: SIGHUP: a reload is already under way")
            return
        old = {w.pid: w for w in self.slots.values() if w is not None}
        log.info("pyiocp: SIGHUP: starting %d new workers, then stopping the %d old ones",
                 self.count, len(old))
        self.reload = (time.monotonic() + RELOAD_TIMEOUT, old)
        # the old ones keep serving, out of the slots, until the new are ready
        self.retiring.update(old)
        for slot in self.slots:
            self.slots[slot] = None
            self.failures[slot] = 0
            self.restart_at[slot] = 0.0

    def _advance_reload(self) -> None:
        if self.reload is None:
            return
        deadline, old = self.reload
        if self._all_ready():
            self.reload = None
            self._terminate(w for w in old.values() if w.pid in self.retiring)
            log.info("pyiocp: reloaded: %d new workers serve, the old ones drain", self.count)
        elif time.monotonic() > deadline:
            self._abort_reload(f"the new workers were not ready within {RELOAD_TIMEOUT:.0f} s")

    def _abort_reload(self, reason: str) -> None:
        """Keeps the old workers (those still alive) and stops the new."""
        assert self.reload is not None   # called while one is under way
        _, old = self.reload
        self.reload = None
        log.error("pyiocp: reload failed (%s); keeping the running workers", reason)
        new = [w for w in self.slots.values() if w is not None]
        for slot in self.slots:
            self.slots[slot] = None
        for worker in old.values():
            if self.retiring.pop(worker.pid, None) is not None:
                self.slots[worker.slot] = worker
        self._terminate(new)
        self.retiring.update({w.pid: w for w in new})

    # ------------------------------------------------------------ stop --

    def _terminate(self, workers: Iterable[_Worker]) -> None:
        for worker in workers:
            try:
                os.kill(worker.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def _stop_all(self) -> None:
        everyone = {w.pid: w for w in self.slots.values() if w is not None}
        everyone.update(self.retiring)
        self._terminate(everyone.values())
        deadline = time.monotonic() + self.stop_timeout
        while everyone and time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid:
                gone = everyone.pop(pid, None)
                if gone is not None:
                    self._release_cell(gone)
            else:
                signal.sigtimedwait({signal.SIGCHLD}, 0.05)
        for pid in everyone:
            log.warning("pyiocp: worker pid %d did not stop within %.1f s; killing it",
                        pid, self.stop_timeout)
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        for slot in self.slots:
            self.slots[slot] = None
        self.retiring.clear()


# ---------------------------------------------------------------- worker --

def _worker_main(supervisor: _Supervisor, slot: int, cell: Optional[int]) -> None:
    """The child after fork: serves and leaves with os._exit, so that
    nothing of the supervisor (atexit hooks, finally blocks up its stack)
    runs twice."""
    code = 1
    try:
        code = _serve_in_worker(supervisor, cell)
    except BaseException:
        log.exception("pyiocp: worker %d failed", slot)
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def _serve_in_worker(supervisor: _Supervisor, cell: Optional[int]) -> int:
    engine = None
    stop_requested = False

    def on_sigterm(signum: int, frame: Optional[FrameType]) -> None:
        nonlocal stop_requested
        stop_requested = True
        if engine is not None:
            engine.request_stop()

    # The supervisor's disposition is inherited: SIGTERM drains this worker;
    # SIGINT (Ctrl-C reaches the whole process group) and SIGHUP are the
    # supervisor's to act on, which then sends SIGTERM.
    signal.signal(signal.SIGTERM, on_sigterm)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_SETMASK, set())
    os.close(supervisor.ready_read)
    listen_socket = supervisor.socket
    if supervisor.worker_address is not None:
        listen_socket.close()
        listen_socket = _listen_reuse_port(supervisor.worker_address, supervisor.backlog)
    try:
        engine = supervisor.setup(listen_socket)
        if not isinstance(engine, _core.Engine):
            raise TypeError(f"setup() must return the worker's Engine, not {engine!r}")
        if supervisor.metrics_area is not None:
            if cell is not None:
                engine._use_metrics_cell(supervisor.metrics_area, cell)
            engine.listen_metrics(sock=supervisor.metrics_socket, area=supervisor.metrics_area)
        engine.start()
    except BaseException:
        log.exception("pyiocp: worker setup failed")
        return BOOT_ERROR
    os.write(supervisor.ready_write, os.getpid().to_bytes(4, "little"))
    if stop_requested:
        engine.request_stop()
    engine.run(drain_timeout=supervisor.drain_timeout)
    return 0


def _listen_reuse_port(address: Address, backlog: int) -> socket.socket:
    return socket.create_server(address, family=_family(address), backlog=backlog,
                                reuse_port=True)
