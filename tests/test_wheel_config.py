"""The [tool.cibuildwheel] configuration in pyproject.toml describes the
wheels the package claims: every CPython from requires-python on, for Linux
x86_64 and aarch64 and for Windows AMD64 (checked by asking cibuildwheel,
without building)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHONS = ["cp39", "cp310", "cp311", "cp312", "cp313"]


def identifiers(platform: str) -> set:
    out = subprocess.run(
        [sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform",
         platform, ROOT],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


@pytest.mark.parametrize("platform, archs", [("linux", ["manylinux_x86_64", "manylinux_aarch64"]),
                                             ("windows", ["win_amd64"])])
def test_wheels_for_every_claimed_python(platform, archs):
    assert identifiers(platform) == {f"{py}-{arch}" for py in PYTHONS for arch in archs}
