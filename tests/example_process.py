"""Runs an example from examples/ as a server in its own process: what it
prints on stdout is collected line by line, its memory read from /proc."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from typing import List, Optional, Tuple

import pyiocp

EXAMPLES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples")
# the pyiocp these tests import (a checkout, an install, the sanitizer
# build): the example's process must import the same
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(pyiocp.__file__)))


class ExampleProcess:
    """`python examples/NAME ARGS...`; its first line on stdout must say
    where it listens ("... on HOST:PORT ...")."""

    def __init__(self, name: str, *args: str, stderr_path: str, start_timeout: float = 20.0,
                 measure_memory: bool = False):
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            [PACKAGE_PARENT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
        if measure_memory and "ASAN_OPTIONS" in env:
            # AddressSanitizer keeps freed memory in quarantine (256 MiB by
            # default) to catch late uses: resident, it would hide what the
            # server itself holds from rss_kib()
            env["ASAN_OPTIONS"] += ":quarantine_size_mb=0"
        self.stderr_path = stderr_path
        self._stderr = open(stderr_path, "wb")
        self.proc = subprocess.Popen([sys.executable, os.path.join(EXAMPLES, name), *args],
                                     stdout=subprocess.PIPE, stderr=self._stderr, env=env)
        self.lines: List[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read_stdout, daemon=True)
        self._reader.start()
        first = self.wait_for(r" on (\S+):(\d+)", start_timeout)
        if first is None:
            self.stop()
            raise RuntimeError(f"{name} did not start: {self.stderr()}")
        self.address: Tuple[str, int] = (first.group(1), int(first.group(2)))

    def _read_stdout(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with self._changed:
                self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float, start: int = 0) -> Optional[re.Match]:
        """The first line from index `start` on that matches `pattern`,
        waiting up to `timeout` seconds for it (None if it never came)."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines[start:]:
                    match = regex.search(line)
                    if match:
                        return match
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    return None
                self._changed.wait(min(left, 0.2))

    def rss_kib(self) -> int:
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    def stderr(self) -> str:
        self._stderr.flush()
        with open(self.stderr_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGTERM (engine.run() stops on it), SIGKILL if it hangs; the
        exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        self._stderr.close()
        return self.proc.returncode


def stalled(progress, quiet: float = 0.5, timeout: float = 30.0) -> bool:
    """Waits until progress() (a growing count) stops growing for `quiet`
    seconds; False if it still grew after `timeout`."""
    deadline = time.monotonic() + timeout
    last, since = progress(), time.monotonic()
    while time.monotonic() < deadline:
        time.sleep(0.05)
        now = progress()
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return True
    return False
