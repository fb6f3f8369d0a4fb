"""The stubs against the runtime, and typed code against the stubs:
mypy's stubtest compares pyiocp/_core.pyi with the compiled module this
suite imports, and mypy --strict checks the examples and
tests/test_typed_api.py (which pytest also runs) against the stubs."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from example_process import PACKAGE_PARENT

pytest.importorskip("mypy", reason="mypy is not installed (pip install '.[test]' brings it)")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 300


def run(args, cwd, env) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=TIMEOUT)


def test_stubs_match_the_compiled_module(tmp_path):
    """stubtest imports pyiocp._core: the one this suite imports (a
    checkout's build, an installed package, the sanitizer build; with the
    sanitizer's runtime preloaded, as here), and reads the stub beside it.
    It runs from an empty folder so that a checkout's pyiocp/, which has
    no compiled module when the package is installed, cannot shadow it."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [PACKAGE_PARENT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    result = run(["-m", "mypy.stubtest", "pyiocp._core",
                  "--allowlist", os.path.join(REPO, ".ci", "stubtest-allowlist.txt")],
                 cwd=str(tmp_path), env=env)
    assert result.returncode == 0, result.stdout
    assert "Success" in result.stdout, result.stdout


def test_examples_and_typed_api_pass_mypy_strict(tmp_path):
    """Static only: run from the checkout, whose pyiocp/ holds the stubs
    (and pyiocp/aio.py is checked too).  Run from outside the source tree
    (.ci/test-installed.py), mypy finds the installed package through its
    py.typed, so a wheel without py.typed or the stubs fails here.
    The sanitizer's runtime is not preloaded: mypy imports no pyiocp."""
    env = dict(os.environ)
    env.pop("LD_PRELOAD", None)
    targets = ["examples", os.path.join("tests", "test_typed_api.py")]
    if os.path.exists(os.path.join(REPO, "pyiocp", "aio.py")):
        targets.append(os.path.join("pyiocp", "aio.py"))
    result = run(["-m", "mypy", "--strict", "--cache-dir", str(tmp_path / "mypy-cache"), *targets],
                 cwd=REPO, env=env)
    assert result.returncode == 0, result.stdout
    assert "Success: no issues found" in result.stdout, result.stdout
