"""Runs the test suite against the pyiocp installed in this interpreter,
from outside the source tree.

    python .ci/test-installed.py [--tests-from DIR] [PYTEST ARGS...]

Copies the suite (tests/, the examples it runs, the stubtest allowlist)
from DIR (default: this checkout; an unpacked sdist, to test what the
sdist ships) into an empty temporary folder and runs pytest there, so
nothing can come from a checkout: no pyiocp/ is on the path, and
tests/conftest.py stops the run unless the pyiocp it imports is the one
in this interpreter's site-packages (PYIOCP_TEST_INSTALLED).  The tests
marked source_tree (they read C headers, pyproject.toml or benchmarks/)
are deselected.  PYTEST ARGS default to the whole suite, `tests`; test
files are named as tests/test_x.py.  Plain Python so that it runs where
cibuildwheel tests too (Linux and Windows).
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the suite reads besides tests/ (tests/test_typing.py's allowlist,
# the examples run as servers and checked by mypy).
SUITE = ["tests", "examples", os.path.join(".ci", "stubtest-allowlist.txt")]


def main(argv: list) -> int:
    source = CHECKOUT
    if argv[:1] == ["--tests-from"]:
        source, argv = argv[1], argv[2:]
    with tempfile.TemporaryDirectory(prefix="pyiocp-installed-") as work:
        for item in SUITE:
            src, dst = os.path.join(source, item), os.path.join(work, item)
            if os.path.isdir(src):
                shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                os.makedirs(os.path.dirname(dst), exist_ok=True)
                shutil.copy2(src, dst)
        env = dict(os.environ, PYIOCP_TEST_INSTALLED="1")
        env.pop("PYTHONPATH", None)
        command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                   "-m", "not source_tree", *(argv or ["tests"])]
        print(f"+ (cd {work} && {' '.join(command)})", flush=True)
        return subprocess.call(command, cwd=work, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
