"""Fault sweep of the Python API (issue 13): every injection point a
scenario passes (the engine's and the binding's), failed in turn, with the
completion contract checked after each run (runner.py says what is
checked, scenarios.py what the scenarios are).  Needs the fault build:

    PYIOCP_FAULT_INJECTION=1 python setup.py -q build_ext --inplace

The bounded sweep (what CI runs through tests/test_fault_sweep.py): every
scenario on every backend, each recorded point at its first --max-n passes
(default 3), with each of the point's real errors and a cut-short length
where it takes one:

    PYTHONPATH=$PWD python tests/fault/sweep.py [--jobs 2]

The long randomised sweep: random points, passes, errors and repeat counts
(up to every pass from n on), for --minutes or --runs.  The draws depend
on the seed and on the recording runs' counts, so it prints the seed and
saves the recording: the printed command draws the same runs again.

    PYTHONPATH=$PWD python tests/fault/sweep.py --random --minutes 30 [--seed N]
    PYTHONPATH=$PWD python tests/fault/sweep.py --random --minutes 30 --seed N \
        --recording /tmp/pyiocp-sweep-N.json         # as printed: the same runs

A failing run prints the command that replays it alone, e.g.

    PYTHONPATH=$PWD python tests/fault/sweep.py --replay 'echo+stop:epoll:recv:2:ECONNRESET'

(SCENARIO:BACKEND:POINT:N:ERROR-or-short[:TIMES-or-all]).  Narrow a sweep
with --scenario, --backend, --point (each repeatable); --keep-going reports
every failure instead of stopping at the first; --stall S (default 3) is
how long a client waits for progress, and a run that has not finished
after 20 stalls is a hang.  The runs happen in child processes, so that a
crash or a hang is reported with its run (a hang with every thread's
stack) instead of ending the sweep unexplained.  Exit status 0: no
failure."""
from __future__ import annotations

import argparse
import errno
import json
import os
import random
import select
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import pyiocp  # noqa: E402
from pyiocp import _core  # noqa: E402


# ------------------------------------------------------------- run specs --

def spec_text(spec) -> str:
    parts = [spec["scenario"], spec["backend"]]
    if spec.get("point"):
        kind = "short" if spec["error"] is None else errno.errorcode[spec["error"]]
        parts += [spec["point"], str(spec["n"]), kind]
        times = spec.get("times", 1)
        if times != 1:
            parts.append("all" if times is None else str(times))
    return ":".join(parts)


def parse_spec(text: str) -> dict:
    parts = text.split(":")
    spec = {"scenario": parts[0], "backend": parts[1], "record": len(parts) == 2}
    if len(parts) > 2:
        spec.update(point=parts[2], n=int(parts[3]),
                    error=None if parts[4] == "short" else getattr(errno, parts[4]))
        if len(parts) > 5:
            spec["times"] = None if parts[5] == "all" else int(parts[5])
    return spec


def replay_command(spec) -> str:
    path = os.path.relpath(os.path.join(HERE, "sweep.py"))
    env = f"PYTHONPATH={shlex.quote(os.environ['PYTHONPATH'])} " \
        if os.environ.get("PYTHONPATH") else ""
    return f"{env}{shlex.quote(sys.executable)} {path} --replay '{spec_text(spec)}'"


# Faults a point's table lists that its call cannot really return here,
# whose injection would test the fault layer instead of the engine.
NOT_REAL = {
    # a non-blocking connect never waits, so is never interrupted; the
    # fault layer, which skips the call, leaves a socket nobody asked to
    # connect, which the engine (taking EINTR for "in progress") waits on
    ("connect", errno.EINTR),
}

# Failures the sweep finds that are known and reported, not yet fixed:
# (backend or None, start of the problem's text, why).  Printed as KNOWN,
# not counted as failures; remove an entry with its fix.
KNOWN = [
    ("io_uring", "busy loop: ",
     "io_uring backend: a POLLOUT wait completes at once once the peer has sent its FIN "
     "(a half-closed client that stops reading during a transmit): the worker spins"),
]


# Errors that can go on failing every call (resources run out, access is
# denied): the randomised sweep makes only these persistent.  An endless
# ECONNABORTED or EINTR is no kernel's.
PERSISTENT = {errno.ENOMEM, errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOSPC,
              errno.EACCES, errno.EPERM, errno.EIO}


def known(spec, problems) -> bool:
    return all(any(backend in (None, spec["backend"]) and problem.startswith(start)
                   for backend, start, _ in KNOWN) for problem in problems)


def kinds(point: str, can_short: bool) -> list:
    """The faults a point gets: its real errors, and None (cut short)."""
    errors = [e for e in _core._fault_point_errors(point) or () if (point, e) not in NOT_REAL]
    return errors + ([None] if can_short else [])


# ------------------------------------------------------------ the child --

class Child:
    """A runner.py process: one run at a time, each bounded in time."""

    def __init__(self, backends, stall: float) -> None:
        self.backends, self.stall = backends, stall
        self.proc = None

    def start(self) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix="pyiocp-sweep-", suffix=".log")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([HERE] + [p for p in env.get("PYTHONPATH", "")
                                                      .split(os.pathsep) if p])
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "runner.py"), ",".join(self.backends),
             str(self.stall)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=self.log, env=env)
        self.buffer = b""
        self.first = True

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()
            self.proc.wait(30)
            self.proc.stdout.close()
            self.proc = None
            self.log.close()

    def _line(self, deadline: float):
        poll = select.poll()
        poll.register(self.proc.stdout, select.POLLIN)
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if poll.poll(left * 1000):
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    return b""
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def run(self, spec) -> dict:
        if self.proc is None:
            self.start()
        at = os.path.getsize(self.log.name)
        self.proc.stdin.write(json.dumps(spec).encode() + b"\n")
        self.proc.stdin.flush()
        limit = 20 * self.stall + (60 if self.first else 0)   # the first warms up
        self.first = False
        line = self._line(time.monotonic() + limit)
        if line:
            return json.loads(line)
        if line is None:
            self.proc.send_signal(signal.SIGUSR1)   # faulthandler: every thread's stack
            time.sleep(2)
            self.proc.kill()
        code = self.proc.wait()
        self.proc.stdin.close()
        self.proc.stdout.close()
        problem = (f"hang: no result after {limit:.0f} s (stacks below)" if line is None
                   else f"crash: the run's process ended with status {code}")
        with open(self.log.name, "rb") as f:
            f.seek(at)
            tail = f.read().decode("utf-8", "replace").splitlines()[-80:]
        self.proc = None
        self.log.close()
        return {"problems": [problem], "fired": None, "stderr": tail}


# ------------------------------------------------------------ the sweep --

class Sweep:
    def __init__(self, args) -> None:
        self.args = args
        self.lock = threading.Lock()
        self.failures = self.known = 0
        self.runs = self.fired = 0
        self.stop = threading.Event()
        self.local = threading.local()
        self.children = []
        # one pool for the sweep: its threads each keep their child process
        self.pool = ThreadPoolExecutor(args.jobs)

    def child(self) -> Child:
        if not hasattr(self.local, "child"):
            self.local.child = Child(self.args.backend, self.args.stall)
            with self.lock:
                self.children.append(self.local.child)
        return self.local.child

    def run(self, spec) -> dict:
        if self.stop.is_set():
            return {}
        result = self.child().run(spec)
        with self.lock:
            self.runs += 1
            self.fired += 1 if result.get("fired") else 0
            if result["problems"] and known(spec, result["problems"]):
                self.known += 1
                print(f"KNOWN {spec_text(spec)}: {'; '.join(result['problems'])}\n"
                      f"  replay: {replay_command(spec)}", flush=True)
            elif result["problems"]:
                self.report(spec, result)
                if not self.args.keep_going:
                    self.stop.set()
            elif self.args.verbose:
                print(f"ok   {spec_text(spec)} fired {result['fired']} "
                      f"{result.get('seconds', 0):.2f} s", flush=True)
        return result

    def report(self, spec, result) -> None:
        self.failures += 1
        print(f"FAIL {spec_text(spec)} (fired {result.get('fired')})")
        for problem in result["problems"]:
            print(f"  - {problem}")
        print(f"  replay: {replay_command(spec)}")
        for line in result.get("stderr", ()):
            print(f"  | {line}")
        sys.stdout.flush()

    def map(self, specs) -> list:
        return list(self.pool.map(self.run, specs))

    def close(self) -> None:
        self.pool.shutdown()
        for child in self.children:
            child.close()

    def record(self) -> dict:
        """{(scenario, backend): [(point, passes, can_short)]}, from a
        recording run each (itself checked, with no fault)."""
        pairs = [(s, b) for b in self.args.backend for s in self.args.scenario]
        results = self.map([{"scenario": s, "backend": b, "record": True} for s, b in pairs])
        wanted = set(self.args.point or ())
        return {pair: [site for site in result.get("recorded") or ()
                       if not wanted or site[0] in wanted]
                for pair, result in zip(pairs, results)}

    def bounded(self, recorded) -> list:
        specs = []
        for (scenario, backend), sites in recorded.items():
            for point, passes, can_short in sites:
                for n in range(1, min(passes, self.args.max_n) + 1):
                    for error in kinds(point, can_short):
                        specs.append({"scenario": scenario, "backend": backend, "point": point,
                                      "n": n, "error": error})
        return specs

    def randomised(self, recorded, rng: random.Random):
        """Endless draws: the same seed and recording give the same ones."""
        pairs = sorted(recorded)
        while True:
            scenario, backend = pairs[int(rng.random() * len(pairs))]
            sites = sorted(recorded[(scenario, backend)])
            u_site, u_n, u_kind, u_times = (rng.random() for _ in range(4))
            if not sites:
                continue
            point, passes, can_short = sites[int(u_site * len(sites))]
            choices = kinds(point, can_short)
            if not choices:
                continue
            times = (1, 1, 1, 2, 3, None)[int(u_times * 6)]
            error = choices[int(u_kind * len(choices))]
            if times is None and error not in PERSISTENT:
                times = 3
            yield {"scenario": scenario, "backend": backend, "point": point,
                   "n": 1 + int(u_n * passes), "error": error, "times": times}


def save(recorded, seed: int) -> str:
    """The recording a randomised sweep drew from, for --recording."""
    path = os.path.join(tempfile.gettempdir(), f"pyiocp-sweep-{seed}.json")
    with open(path, "w") as f:
        json.dump({f"{s}|{b}": sites for (s, b), sites in recorded.items()}, f)
    return path


def load(path: str) -> dict:
    with open(path) as f:
        return {tuple(key.split("|")): [tuple(site) for site in sites]
                for key, sites in json.load(f).items()}


def main(argv=None) -> int:
    from scenarios import SCENARIOS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenario", action="append", choices=["startup", *SCENARIOS])
    parser.add_argument("--backend", action="append", choices=pyiocp.available_backends())
    parser.add_argument("--point", action="append")
    parser.add_argument("--max-n", type=int, default=3)
    parser.add_argument("--random", action="store_true")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--minutes", type=float)
    parser.add_argument("--runs", type=int)
    parser.add_argument("--replay")
    parser.add_argument("--recording")
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--stall", type=float, default=3.0)
    parser.add_argument("--keep-going", action="store_true")
    parser.add_argument("--verbose", action="store_true")
    args = parser.parse_args(argv)
    if not getattr(_core, "_FAULT_INJECTION", False):
        print("pyiocp._core is not a fault build: PYIOCP_FAULT_INJECTION=1 python setup.py "
              "build_ext --inplace", file=sys.stderr)
        return 2
    args.scenario = args.scenario or ["startup", *SCENARIOS]
    args.backend = args.backend or pyiocp.available_backends()
    sweep = Sweep(args)
    started = time.monotonic()
    try:
        if args.replay:
            spec = parse_spec(args.replay)
            args.backend = [spec["backend"]]
            args.verbose = True
            sweep.run(spec)
        else:
            recorded = load(args.recording) if args.recording else sweep.record()
            if args.random:
                seed = args.seed if args.seed is not None else random.randrange(1 << 32)
                path = args.recording or save(recorded, seed)
                print(f"seed {seed}; the same runs again: --random --seed {seed} "
                      f"--recording {path}", flush=True)
                limit = time.monotonic() + 60 * args.minutes if args.minutes else None
                draws = sweep.randomised(recorded, random.Random(seed))
                count = 0
                while not sweep.stop.is_set() and (args.runs is None or count < args.runs) \
                        and (limit is None or time.monotonic() < limit):
                    batch = [next(draws) for _ in range(args.jobs)]
                    count += len(batch)
                    sweep.map(batch)
            elif not sweep.stop.is_set():
                sweep.map(sweep.bounded(recorded))
    finally:
        sweep.close()
    print(f"{sweep.runs} runs ({sweep.fired} with the fault fired), {sweep.failures} failed, "
          f"{sweep.known} known failures, {time.monotonic() - started:.0f} s; "
          f"backends {', '.join(args.backend)}", flush=True)
    return 1 if sweep.failures else 0


if __name__ == "__main__":
    sys.exit(main())
