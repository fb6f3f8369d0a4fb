"""pyiocp.serve_workers and the fork rule, with a real supervisor process
(tests/workers_supervisor.py; the test process itself never forks): every
worker gets connections, a killed worker is restarted while the others
serve on, SIGHUP reloads without losing a request, SIGTERM leaves no
process behind, and an Engine made before the fork is refused in the
worker.  127.0.0.1 only; every test stops what it started."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import pyiocp

HERE = Path(__file__).resolve().parent
PACKAGE_PARENT = str(Path(pyiocp.__file__).resolve().parent.parent)


class Supervisor:
    def __init__(self, *args):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([PACKAGE_PARENT] + [
            p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE / "workers_supervisor.py"), *args],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=env, cwd=PACKAGE_PARENT, start_new_session=True)
        self.out, self.err = [], []
        self.changed = threading.Condition()
        for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, lines), daemon=True).start()
        self.port = None

    def _read(self, stream, lines):
        for line in iter(stream.readline, b""):
            with self.changed:
                lines.append(line.decode(errors="replace").rstrip("\n"))
                self.changed.notify_all()

    def wait_line(self, prefix, timeout=15.0, stream="out"):
        lines = self.out if stream == "out" else self.err
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in lines:
                    if line.startswith(prefix):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self.changed.wait(left)

    def wait_ready(self):
        line = self.wait_line("READY ")
        assert line, f"no READY line; stderr: {self.err}"
        self.port = int(line.split()[1])
        return self

    def workers(self):
        path = f"/proc/{self.proc.pid}/task/{self.proc.pid}/children"
        with open(path) as f:
            return {int(pid) for pid in f.read().split()}

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)   # the session it leads: its workers
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=10)


@pytest.fixture
def start_supervisor():
    started = []

    def start(*args, ready=True):
        supervisor = Supervisor(*args)
        started.append(supervisor)
        return supervisor.wait_ready() if ready else supervisor

    yield start
    for supervisor in started:
        supervisor.stop()


def ask_pid(port, timeout=10.0, think=0.0) -> int:
    """One request on a new connection: the pid of the worker that served it.
    `think`: seconds between connecting and sending (a client still busy
    when the worker it reached begins to stop)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as client:
        if think:
            time.sleep(think)
        client.sendall(b"pid?\n")
        answer = b""
        while not answer.endswith(b"\n"):
            chunk = client.recv(64)
            if not chunk:
                break
            answer += chunk
    assert answer.endswith(b"\n"), f"cut answer {answer!r}"
    return int(answer)


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def alive(pid) -> bool:
    """Running, not a zombie: a zombie's sockets are already closed."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):   # reaped, before or while reading
        return False


@pytest.mark.parametrize("mode", [[], ["--reuse-port"]], ids=["shared-socket", "reuse-port"])
def test_every_worker_gets_connections(start_supervisor, mode):
    supervisor = start_supervisor("3", *mode)
    workers = supervisor.workers()
    assert len(workers) == 3
    seen = set()
    for _ in range(600):
        seen.add(ask_pid(supervisor.port))
        if seen == workers:
            break
    assert seen == workers


def test_killed_worker_is_restarted_and_the_others_serve_on(start_supervisor):
    supervisor = start_supervisor("3")
    workers = supervisor.workers()
    # connections open on at least two workers while one of them is killed
    # (with one shared socket, one worker may accept a whole burst: ask each
    # connection who holds it, and open more until two workers hold some)
    held = {}
    try:
        for _ in range(300):
            client = socket.create_connection(("127.0.0.1", supervisor.port), timeout=10)
            client.sendall(b"who?\n")
            held[client] = int(client.recv(64))
            if len(held) >= 10 and len(set(held.values())) >= 2:
                break
        assert len(set(held.values())) >= 2, f"every connection went to one of {workers}"
        victim = sorted(set(held.values()))[0]
        os.kill(victim, signal.SIGKILL)
        assert wait_for(lambda: not alive(victim))   # the kill lands asynchronously
        answers = {}
        for client, holder in held.items():
            try:
                client.sendall(b"pid?\n")
                answers[client] = client.recv(64)
            except (ConnectionResetError, BrokenPipeError):
                answers[client] = b""
    finally:
        for client in held:
            client.close()
    # only the victim's own connections are gone; the others answer
    for client, holder in held.items():
        if holder == victim:
            assert answers[client] == b""
        else:
            assert int(answers[client]) == holder
    assert wait_for(lambda: victim not in supervisor.workers() and len(supervisor.workers()) == 3)
    restarted = supervisor.workers() - workers
    assert len(restarted) == 1
    line = supervisor.wait_line("pyiocp: worker ", stream="err", timeout=5)
    assert line and f"(pid {victim}) was killed by SIGKILL" in line and "restarting" in line
    for _ in range(20):
        assert ask_pid(supervisor.port) != victim


def test_sighup_reload_loses_no_request(start_supervisor):
    supervisor = start_supervisor("2")
    old = supervisor.workers()
    answers, failures = [], []
    stop = threading.Event()

    def client(think):
        while not stop.is_set():
            try:
                answers.append(ask_pid(supervisor.port, think=think))
            except (OSError, AssertionError, ValueError) as exc:
                failures.append(repr(exc))

    # some clients send at once, some a moment after connecting: those are
    # the ones a stopping worker holds unanswered (their first request must
    # still be read and answered)
    threads = [threading.Thread(target=client, args=(think,)) for think in (0, 0, 0.02, 0.05)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        supervisor.proc.send_signal(signal.SIGHUP)
        assert supervisor.wait_line("pyiocp: reloaded", stream="err", timeout=20)
        assert wait_for(lambda: not (supervisor.workers() & old))   # the old ones drained
        time.sleep(0.5)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=20)
    new = supervisor.workers()
    assert not failures, failures[:5]
    assert len(new) == 2 and not (new & old)
    assert set(answers) & old and set(answers) & new
    print(f"{len(answers)} requests across the reload, none lost")


def test_sigterm_stops_everything(start_supervisor):
    supervisor = start_supervisor("3")
    workers = supervisor.workers()
    supervisor.proc.send_signal(signal.SIGTERM)
    assert supervisor.proc.wait(timeout=20) == 0
    for pid in workers:
        assert not os.path.exists(f"/proc/{pid}"), f"worker {pid} outlived its supervisor"


def test_engine_made_before_fork_is_refused(start_supervisor):
    supervisor = start_supervisor("1", "--engine-before-fork", ready=False)
    assert supervisor.proc.wait(timeout=20) == 1   # the first workers cannot start
    line = supervisor.wait_line("REFUSED", timeout=1)
    assert line and (f"this Engine was created in process {supervisor.proc.pid} before a fork; "
                     "create engines in the worker (after the fork)") in line


def test_refused_clearly_where_there_is_no_fork(monkeypatch):
    """Windows has no fork: pyiocp imports there, and serve_workers says why
    it cannot run instead of failing on a missing signal or os.fork."""
    monkeypatch.delattr(os, "fork")
    with pytest.raises(NotImplementedError, match="fork"):
        pyiocp.serve_workers(2, lambda sock: None, address=("127.0.0.1", 0))
