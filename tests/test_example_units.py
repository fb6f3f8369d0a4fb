"""examples/pyiocp.socket and examples/pyiocp.service: what the README
tells people to install.  Read as systemd reads them (sections, repeatable
keys): the service runs `pyiocp serve` with options the CLI takes, stops by
SIGTERM with time to drain, runs unprivileged; the socket listens on a
stream.  With systemd-analyze installed, `systemd-analyze verify` too."""
from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import tool_env
from pyiocp.cli import build_parser
from pyiocp.workers import serve_workers

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
SOCKET = EXAMPLES / "pyiocp.socket"
SERVICE = EXAMPLES / "pyiocp.service"


def read_unit(path: Path) -> dict:
    """{section: {key: [values...]}}: a key may repeat (ListenStream=)."""
    sections: dict = {}
    current = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"{path.name}:{number}: {line!r}"
        assert not line.endswith("\\"), f"{path.name}:{number}: continuation lines are not read here"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def one(unit: dict, section: str, key: str) -> str:
    values = unit[section].get(key, [])
    assert len(values) == 1, f"[{section}] {key}= should be set once, not {values}"
    return values[0]


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*(s|sec|min)?", text)
    assert match, f"not a time span this test reads: {text!r}"
    return float(match.group(1)) * (60 if match.group(2) == "min" else 1)


def exec_start() -> list:
    return shlex.split(one(read_unit(SERVICE), "Service", "ExecStart"))


def test_the_service_runs_pyiocp_serve_with_options_the_cli_takes():
    argv = exec_start()
    assert Path(argv[0]).name == "pyiocp" and argv[1] == "serve", argv
    args = build_parser().parse_args(argv[1:])   # exits (fails the test) on a bad option
    service = read_unit(SERVICE)["Service"]
    assert args.root in service["ReadOnlyPaths"]
    assert args.host == "127.0.0.1" and not hasattr(args, "given"), \
        "the socket unit chooses the address: no --host/--port in ExecStart"


def test_the_service_stops_by_sigterm_with_time_to_drain():
    args = build_parser().parse_args(exec_start()[1:])
    unit = read_unit(SERVICE)
    assert one(unit, "Service", "KillSignal") == "SIGTERM"
    # with --workers the supervisor waits drain_timeout + 5 s (serve_workers'
    # default stop_timeout) before it kills a worker: systemd waits longer
    assert serve_workers.__kwdefaults__["stop_timeout"] is None
    assert seconds(one(unit, "Service", "TimeoutStopSec")) > args.drain_timeout + 5
    assert one(unit, "Service", "KillMode") == "mixed"
    assert one(unit, "Service", "ExecReload") == "/bin/kill -HUP $MAINPID"


def test_the_service_is_unprivileged_and_confined():
    service = read_unit(SERVICE)["Service"]
    assert service.get("DynamicUser") == ["yes"] or service.get("User")
    for key in ("NoNewPrivileges", "ProtectSystem", "PrivateTmp", "PrivateDevices"):
        assert key in service, key
    assert service["CapabilityBoundingSet"] == [""]   # none: systemd binds the port


def test_the_socket_passes_a_listening_stream_to_the_service():
    unit = read_unit(SOCKET)
    listen = unit["Socket"]["ListenStream"]
    assert listen and all(re.fullmatch(r"(\S+:)?\d+", value) for value in listen), listen
    assert unit["Socket"].get("Accept", ["no"]) == ["no"]   # the listening socket, not connections
    assert "Service" not in unit["Socket"]   # so it starts pyiocp.service, by name
    assert SOCKET.stem == SERVICE.stem
    assert "pyiocp.socket" in one(read_unit(SERVICE), "Unit", "Requires").split()


def test_systemd_analyze_verify(tmp_path):
    """systemd's own check: unknown keys, bad values, a command that is not
    executable.  The example's /opt/pyiocp/bin/pyiocp does not exist here:
    the copy verified runs the same CLI as `python -m pyiocp`."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (apt-get install systemd)")
    program = exec_start()[0]
    text = SERVICE.read_text()
    assert text.count(program) == 1
    (tmp_path / SERVICE.name).write_text(text.replace(program, f"{sys.executable} -m pyiocp"))
    shutil.copy(SOCKET, tmp_path / SOCKET.name)
    done = subprocess.run([analyze, "verify", "--man=no", "--recursive-errors=yes",
                           str(tmp_path / SOCKET.name), str(tmp_path / SERVICE.name)],
                          capture_output=True, text=True, timeout=60, env=tool_env())
    assert (done.returncode, done.stdout + done.stderr) == (0, "")
