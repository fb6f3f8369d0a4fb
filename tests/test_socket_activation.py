"""systemd socket activation: `python -m pyiocp serve` started the way
systemd starts a service with a .socket unit (tests/socket_activation_launcher.py
passes descriptors 3.. and LISTEN_FDS / LISTEN_PID, then execs), with one
process and with --workers 2, one socket and two; LISTEN_PID of another
process; passed descriptors that cannot be served (exit code 2, a clear
message); the variables and descriptors not handed on.  127.0.0.1 only;
every process is stopped, within bounded time."""
from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import sys
from pathlib import Path

import pytest

from conftest import tool_env
from http_helpers import exchange, get
from test_cli import Server, child_env
from test_metrics import samples, scrape, value

LAUNCHER = Path(__file__).resolve().parent / "socket_activation_launcher.py"
ACTIVATED = re.compile(r"^pyiocp \S+: serving (.+) over http on (.+) \(backend \S+, "
                       r"\d+ threads?(?: in each of (\d+) workers)?; "
                       r"socket-activated: --host/--port ignored\)$")
BOUND = re.compile(r"^pyiocp \S+: serving .+ over http on 127\.0\.0\.1:(\d+) "
                   r"\(backend \S+, \d+ threads?\)$")
BODY = b"served through an inherited socket\n"
METRICS_LINE = b"pyiocp: metrics at "


@pytest.fixture
def root(tmp_path):
    (tmp_path / "a.txt").write_bytes(BODY)
    return tmp_path


class Launched(Server):
    """PROGRAM ARGS run by the launcher with LAUNCHER_ARGS (or by the argv
    `launcher`), in a process group of its own; test_cli.Server's output
    readers, wait_line."""

    def __init__(self, launcher_args, program, launcher=None):
        if launcher is None:
            self._spawn([sys.executable, str(LAUNCHER), *launcher_args, "--", *program],
                        new_session=True)
        else:   # not ours: no sanitizer runtime (tool_env) for it, only for pyiocp
            self._spawn(launcher + program, env=tool_env(), new_session=True)

    def kill(self):
        """The whole group: a --workers supervisor killed alone would leave
        its workers serving, and holding the output pipes open."""
        try:
            os.killpg(self.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        super().kill()

    def passed(self, timeout=15.0):
        """The addresses the launcher passed, as "HOST:PORT" ("-": none)."""
        line = self.wait_line(lambda l: l.startswith(b"passed "), timeout)
        assert line is not None, f"the launcher said nothing; stderr: {self.stderr()!r}"
        return line.decode().split()[1:]

    def line(self, pattern, timeout=15.0):
        """The startup line (the first after the launcher's and --metrics'),
        matched with pattern."""
        line = self.wait_line(lambda l: not l.startswith((b"passed ", METRICS_LINE)), timeout)
        assert line is not None, (f"no line within {timeout} s (exit code {self.proc.poll()}); "
                                  f"stderr: {self.stderr()!r}")
        match = pattern.match(line.decode().rstrip("\n"))
        assert match, f"unexpected line: {line!r}"
        return match

    def stop(self):
        """SIGTERM, as systemd stops a service: exit code 0."""
        self.proc.send_signal(signal.SIGTERM)
        assert self.wait(20) == 0, self.stderr()


@pytest.fixture
def launch(no_fd_leak):
    started = []

    def start(launcher_args, program, launcher=None):
        process = Launched(launcher_args, program, launcher)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()


def serve(root, *args):
    return [sys.executable, "-m", "pyiocp", "serve", str(root), *args]


def fetch(where):
    host, port = where.rsplit(":", 1)
    response = exchange((host, int(port)), get("/a.txt"))
    assert (response.status, response.body) == (200, BODY)


@pytest.mark.parametrize("workers,sockets", [(1, 1), (2, 1), (1, 2), (2, 2)])
def test_serves_every_passed_socket(launch, root, workers, sockets):
    server = launch(["--kind", "listening"] * sockets,
                    serve(root, "--quiet", "--workers", str(workers)))
    passed = server.passed()
    served_root, where, worker_count = server.line(ACTIVATED).groups()
    assert (served_root, where) == (str(root), ", ".join(passed))
    assert worker_count == (None if workers == 1 else str(workers))
    for address in passed:
        fetch(address)
    server.stop()
    assert "ignored" not in server.stderr()   # no --host/--port given: no warning


def test_explicit_host_and_port_are_ignored_with_a_warning(launch, root):
    server = launch([], serve(root, "--quiet", "--host", "127.0.0.2", "--port", "9"))
    passed = server.passed()
    assert server.line(ACTIVATED).group(2) == passed[0]
    fetch(passed[0])
    server.stop()
    assert "socket-activated: --host and --port ignored, serving the passed sockets" in \
        server.stderr()


@pytest.mark.parametrize("workers", [1, 2])
def test_metrics_listen_beside_the_passed_socket(launch, root, workers):
    """--metrics binds its own address; the passed socket serves files."""
    server = launch([], serve(root, "--quiet", "--workers", str(workers), "--metrics", ":0"))
    passed = server.passed()
    assert server.line(ACTIVATED).group(2) == passed[0]
    metrics = server.wait_line(lambda l: l.startswith(METRICS_LINE), 5)
    host, port = re.match(rb"pyiocp: metrics at http://(.+):(\d+)/metrics$", metrics.strip()).groups()
    for _ in range(3):
        fetch(passed[0])
    found = samples(scrape((host.decode(), int(port))))
    assert value(found, "pyiocp_http_responses_total", **{"class": "2xx"}) == 3
    server.stop()


def test_listen_pid_of_another_process_is_ignored(launch, root):
    """The variables were meant for the launcher's parent: pyiocp binds
    --host/--port as if they were not there (here a free port, not the
    passed socket's)."""
    server = launch(["--pid", "parent"], serve(root, "--quiet", "--port", "0"))
    passed = server.passed()
    port = server.line(BOUND).group(1)
    assert f"127.0.0.1:{port}" != passed[0]
    fetch(f"127.0.0.1:{port}")
    server.stop()


@pytest.mark.parametrize("launcher_args,message", [
    (["--kind", "bound"], "descriptor 3 is not listening"),
    (["--kind", "udp"], "descriptor 3 is not a stream socket (SOCK_DGRAM)"),
    (["--kind", "file"], "descriptor 3 is not a socket"),
    (["--kind", "listening", "--fds", "2"], "descriptor 4 is not open"),
    (["--fds", "1x"], "LISTEN_FDS='1x' is not an integer"),
], ids=["not-listening", "udp", "file", "missing", "malformed"])
def test_a_descriptor_that_cannot_be_served_is_exit_code_2(launch, root, launcher_args,
                                                           message):
    server = launch(launcher_args, serve(root, "--workers", "2"))
    assert server.wait(20) == 2
    stderr = server.stderr()
    assert f"ERROR pyiocp: socket activation: {message}" in stderr
    assert "Traceback" not in stderr
    assert [l for l in server.stdout_lines() if not l.startswith(b"passed ")] == []


# Run through the launcher: the CLI, with a hook that reports the LISTEN_
# variables each forked worker sees.
WORKER_ENV = """\
import os, sys
from pyiocp.cli import main
def report():
    names = sorted(n for n in os.environ if n.startswith("LISTEN_"))
    os.write(1, f"worker sees {names}\\n".encode())   # one write: workers do not interleave
os.register_at_fork(after_in_child=report)
sys.exit(main(sys.argv[1:]))
"""


def test_workers_do_not_see_the_variables(launch, root):
    server = launch([], [sys.executable, "-c", WORKER_ENV, *serve(root, "--workers", "2")[3:]])
    server.passed()
    assert server.wait_line(lambda l: b"socket-activated" in l, 15) is not None, server.stderr()
    reports = [l for l in server.stdout_lines() if l.startswith(b"worker sees")]
    assert reports == [b"worker sees []\n"] * 2
    server.stop()


# The module itself: what it leaves to this process and to programs it starts.
ADOPT = """\
import os, subprocess, sys
from pyiocp import systemd
sockets = systemd.listen_sockets()
child = subprocess.run([sys.executable, "-c", "import os; print(sorted(n for n in os.environ "
                        "if n.startswith('LISTEN_')))"], capture_output=True, text=True)
print(len(sockets), sockets[0].fileno(), os.get_inheritable(3),
      sorted(n for n in os.environ if n.startswith("LISTEN_")), child.stdout.strip())
"""


def test_the_module_leaves_no_variable_and_no_inheritable_descriptor(launch):
    process = launch([], [sys.executable, "-c", ADOPT])
    process.passed()
    assert process.wait(20) == 0, process.stderr()
    assert process.stdout_lines()[1:] == [b"1 3 False [] []\n"]


def test_systemd_socket_activate(launch, root):
    """systemd's own implementation of the protocol: systemd-socket-activate
    listens, and execs pyiocp when the first connection arrives."""
    tool = shutil.which("systemd-socket-activate")
    if tool is None:
        pytest.skip("systemd-socket-activate is not installed (apt-get install systemd)")
    with socket.socket() as probe:   # a free port (a race with others, unlikely)
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    # it passes the children only the variables named: all of ours
    # (PYTHONPATH, a sanitizer's LD_PRELOAD...)
    keep = [f"--setenv={name}={value}" for name, value in child_env().items()]
    server = launch([], serve(root, "--quiet"), [tool, f"--listen=127.0.0.1:{port}", *keep])
    assert server.wait_line(lambda l: b"Listening on" in l, 15, stream="err"), server.stderr()
    fetch(f"127.0.0.1:{port}")   # waits in the queue while pyiocp starts
    assert server.line(ACTIVATED).group(2) == f"127.0.0.1:{port}"
    server.stop()
