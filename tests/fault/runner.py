"""The fault sweep's child process (sweep.py starts it): reads one run a
line (JSON) on stdin, runs it, writes its result (JSON) on stdout.  A run
that crashes or hangs this process is the parent's to report.

A run: the scenario's server is made (armed already for "startup"), the
fault armed, the scenario's client run, the fault disarmed; then a fresh
client must be served (by the same engine, or by a new one when the
scenario stopped it or startup failed), the engines are stopped, and the
contract is checked: every handler's log (contract.py), descriptors,
threads and allocations (engine and binding) back to where they were."""
from __future__ import annotations

import atexit
import errno
import faulthandler
import gc
import json
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import List, Optional

from pyiocp import _core

from contract import REGISTRY
from scenarios import (DRAIN, SCENARIOS, STARTUP_KINDS, Env, Outcome, Server, make_root)

ALLOCATING = {"malloc"} | {p for p, e in getattr(_core, "_BINDING_POINTS", {}).items()
                           if e == (errno.ENOMEM,)}

# Errors the engine must hide from its user: it retries, waits or falls
# back.  A cut-short length always must be.  The fault layer makes a
# faulted call without effect, so a faulted accept leaves its connection
# queued and a faulted close has closed anyway: every error there is.
TRANSIENT = {
    errno.EINTR: None,      # at every point
    errno.EAGAIN: {"recv", "recv_drain", "send", "send_now", "sendfile", "accept",
                   "uring_enter", "inotify_read", "openat2", "pread", "write"},
    errno.EBUSY: {"uring_enter"},
}
ALL_TRANSIENT = {"accept", "close"}

# A scenario passes each point a few dozen times at most: thousands in one
# run is a worker going round without progress.
SPIN = 5000


def transient(point: str, error: Optional[int]) -> bool:
    if error is None or point in ALL_TRANSIENT or error == errno.EINTR:
        return True
    return point in (TRANSIENT.get(error) or ())


def arm(spec) -> None:
    if spec.get("record"):
        _core._fault_record(True)
    elif spec.get("point"):
        if spec["error"] is None:
            _core._fault_arm_short(spec["point"], spec["n"])
        else:
            _core._fault_arm(spec["point"], spec["n"], spec["error"], spec.get("times", 1))


def disarm(spec, result) -> None:
    _core._fault_disarm()
    result["fired"] = _core._fault_fired() if spec.get("point") else 0
    passes = {spec["point"]: _core._fault_passes()} if spec.get("point") else {}
    if spec.get("record"):
        _core._fault_record(False)
        result["recorded"] = _core._fault_recorded()
        passes = {point: n for point, n, _ in result["recorded"]}
    result["spins"] = [f"busy loop: {point} passed {n} times" for point, n in passes.items()
                       if n > SPIN]


def descriptors() -> dict:
    out = {}
    for name in os.listdir("/proc/self/fd"):
        try:
            out[int(name)] = os.readlink(f"/proc/self/fd/{name}")
        except OSError:
            pass     # listdir's own, closed by now
    return out


def python_threads() -> set:
    """Threads Python started (a worker that logged has a _DummyThread,
    which Python keeps for good: not ours to count)."""
    return {t.name for t in threading.enumerate() if not isinstance(t, threading._DummyThread)}


def judge(outcome: Outcome, spec, fired: int, what: str) -> List[str]:
    if outcome.status == "ok":
        return []
    if outcome.status == "stalled" and fired and "times" in spec and spec["times"] is None:
        return []    # nothing can go on while every such call fails (accepting pauses)
    failed = outcome.status in ("ended", "degraded")
    if failed and fired and not transient(spec.get("point", ""), spec.get("error")):
        return []    # the fault really failed something; the client saw it
    why = "" if not failed else (
        " (no fault fired)" if not fired else " (the fault was transient)")
    return [f"{what}: {outcome.status}{why}: {outcome.text}"]


def client(scenario, server) -> Outcome:
    try:
        return scenario.client(server)
    except (MemoryError, OSError) as exc:   # the API refused, as it may
        return Outcome("ended", f"raised {exc!r}")


def check_stop(seconds: float, env: Env) -> List[str]:
    if seconds > DRAIN + env.stall:
        return [f"stop took {seconds:.1f} s (drain timeout {DRAIN} s)"]
    return []


def run_traffic(spec, env: Env, result) -> List[str]:
    scenario = SCENARIOS[spec["scenario"]]
    problems = []
    server = Server(env, scenario.kinds, slow=scenario.stop_mid)
    arm(spec)
    try:
        outcome = client(scenario, server)
    finally:
        disarm(spec, result)
    problems += judge(outcome, spec, result["fired"], "client") + result["spins"]
    if server.stopped:
        problems += check_stop(server.stop_seconds, env)
        server = Server(env, scenario.kinds)
    fresh = SCENARIOS[scenario.base]
    problems += judge(client(fresh, server), {}, 0, "fresh client")
    problems += check_stop(server.stop(), env)
    return problems


def run_startup(spec, env: Env, result) -> List[str]:
    problems = []
    server = failure = None
    arm(spec)
    try:
        server = Server(env, STARTUP_KINDS)
    except BaseException as exc:   # noqa: B902 - judged below
        failure = (type(exc), getattr(exc, "errno", None), repr(exc))
        del exc
    finally:
        disarm(spec, result)
    problems += result["spins"]
    if failure is not None:
        kind, number, text = failure
        point, error = spec.get("point"), spec.get("error")
        wanted = errno.ENOMEM if point in ALLOCATING else error
        if not result["fired"]:
            problems.append(f"startup failed with no fault fired: {text}")
        elif transient(point, error):
            problems.append(f"startup failed on a transient fault: {text}")
        elif not (issubclass(kind, OSError) and number == wanted) and not (
                kind is MemoryError and wanted == errno.ENOMEM):
            problems.append(f"startup raised {text}, not OSError({errno.errorcode[wanted]})")
        server = Server(env, STARTUP_KINDS)
    for name in ("echo", "transmit", "http", "raw"):
        problems += judge(client(SCENARIOS[name], server), {}, 0, f"{name} client after startup")
    problems += check_stop(server.stop(), env)
    return problems


def run(spec, env: Env) -> dict:
    result = {"fired": 0}
    REGISTRY.reset()
    gc.collect()
    fds, allocs, threads = descriptors(), _core._fault_allocs(), python_threads()
    started = time.monotonic()
    try:
        if spec["scenario"] == "startup":
            problems = run_startup(spec, env, result)
        else:
            problems = run_traffic(spec, env, result)
    except Exception as exc:   # the driver's own failure: reported, not hidden
        problems = [f"the run raised {exc!r}"]
        _core._fault_disarm()
    finally:
        while Server.made:           # stopped already, unless the run raised
            Server.made.pop().stop()
    problems += REGISTRY.check() + INTERNAL.seen
    REGISTRY.reset()
    INTERNAL.seen = []
    for _ in range(20):        # a closed socket object may wait for the collector
        gc.collect()
        now = (descriptors(), _core._fault_allocs(), python_threads())
        if now == (fds, allocs, threads):
            break
        time.sleep(0.05)
    leaked = {fd: target for fd, target in now[0].items() if fds.get(fd) != target}
    if leaked:
        problems.append(f"descriptors leaked: {leaked}")
    if now[1] != allocs:
        problems.append(f"allocations (engine, binding) {allocs} before, {now[1]} after")
    if now[2] != threads:
        problems.append(f"threads: {sorted(threads)} before, {sorted(now[2])} after")
    result["problems"] = problems
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


class InternalErrors(logging.Handler):
    """The binding logs "internal error" only when it has a bug: each is a
    problem of the run that logged it."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: List[str] = []

    def emit(self, record) -> None:
        if "internal error" in record.getMessage():
            error = record.exc_info[1] if record.exc_info else None
            self.seen.append(f"logged: {record.getMessage()} ({error!r})")


INTERNAL = InternalErrors()


def main() -> None:
    backends, stall = sys.argv[1].split(","), float(sys.argv[2])
    faulthandler.register(signal.SIGUSR1, all_threads=True)   # the parent's hang report
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("pyiocp").addHandler(INTERNAL)
    root = tempfile.mkdtemp(prefix="pyiocp-fault-")
    atexit.register(shutil.rmtree, root, True)
    files = make_root(root)
    fd = os.open(os.path.join(root, "b.bin"), os.O_RDONLY)
    envs = {b: Env(b, root, stall, files, fd) for b in backends}
    for env in envs.values():   # first uses of everything, before any baseline
        run({"scenario": "startup", "backend": env.backend}, env)
    for line in sys.stdin:
        spec = json.loads(line)
        print(json.dumps(run(spec, envs[spec["backend"]])), flush=True)


if __name__ == "__main__":
    main()
