"""What the package claims and ships.

The [tool.cibuildwheel] configuration in pyproject.toml describes the
wheels the package claims: every CPython from requires-python on, for Linux
x86_64 and aarch64 and for Windows AMD64 (checked by asking cibuildwheel,
without building; needs the checkout).  An installed pyiocp (a wheel, or
`pip install .`) holds what a user needs, the compiled module, the stubs
and py.typed, and none of what built it."""
from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
from typing import Optional

import pytest

import pyiocp

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PYTHONS = ["cp39", "cp310", "cp311", "cp312", "cp313"]
BUILD_INPUTS = (".c", ".h", ".pyx", ".pxi", ".pxd")


def identifiers(platform: str) -> set:
    out = subprocess.run(
        [sys.executable, "-m", "cibuildwheel", "--print-build-identifiers", "--platform",
         platform, ROOT],
        capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.split())


@pytest.mark.source_tree
@pytest.mark.parametrize("platform, archs", [("linux", ["manylinux_x86_64", "manylinux_aarch64"]),
                                             ("windows", ["win_amd64"])])
def test_wheels_for_every_claimed_python(platform, archs):
    assert identifiers(platform) == {f"{py}-{arch}" for py in PYTHONS for arch in archs}


def installed_distribution() -> Optional[importlib.metadata.Distribution]:
    """The installed distribution the imported pyiocp comes from, or None
    when pyiocp is imported from a checkout (an in-place build, whose
    pyiocp.egg-info lists sources, not installed files: no RECORD)."""
    try:
        dist = importlib.metadata.distribution("pyiocp")
    except importlib.metadata.PackageNotFoundError:
        return None
    if dist.read_text("RECORD") is None:
        return None
    init = os.path.realpath(str(dist.locate_file("pyiocp/__init__.py")))
    return dist if init == os.path.realpath(pyiocp.__file__) else None


@pytest.fixture
def distribution() -> importlib.metadata.Distribution:
    dist = installed_distribution()
    if dist is None:
        assert not os.environ.get("PYIOCP_TEST_INSTALLED"), "pyiocp is not an installed distribution"
        pytest.skip("pyiocp is imported from a checkout, not from an installed distribution")
    return dist


def test_the_installed_package_ships_the_module_the_stubs_and_py_typed(distribution):
    files = {str(f).replace("\\", "/") for f in distribution.files or ()}
    package = {f for f in files if f.startswith("pyiocp/")}
    assert {"pyiocp/py.typed", "pyiocp/_core.pyi", "pyiocp/__init__.py", "pyiocp/aio.py",
            "pyiocp/cli.py"} <= package, sorted(package)
    compiled = [f for f in package if f.startswith("pyiocp/_core.") and f.endswith((".so", ".pyd"))]
    assert len(compiled) == 1, sorted(package)
    assert not [f for f in package if f.endswith(BUILD_INPUTS)], sorted(package)
    # nothing but the package (and its metadata, and the script outside site-packages)
    top = {f.split("/")[0] for f in files if not f.startswith("..")}
    assert {t for t in top if not t.endswith(".dist-info")} == {"pyiocp"}, sorted(files)


@pytest.mark.source_tree
def test_linux_wheels_are_built_for_the_oldest_glibc_and_tested_installed():
    """The same settings as .ci/wheel-test: Zig for glibc 2.12 on x86_64
    and 2.17 on aarch64, and the suite run by .ci/test-installed.py."""
    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python 3.11+")
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as f:
        config = tomllib.load(f)["tool"]["cibuildwheel"]
    assert config["test-command"].startswith("python {project}/.ci/test-installed.py ")
    assert config["linux"]["environment"] == {"PYIOCP_ZIG_GLIBC": "2.17"}
    assert [(o["select"], o["environment"]) for o in config["overrides"]] == [
        ("*-manylinux_x86_64", {"PYIOCP_ZIG_GLIBC": "2.12"})]
    with open(os.path.join(ROOT, ".ci", "wheel-test"), encoding="utf-8") as f:
        stage = f.read()
    assert "x86_64) glibc=2.12 ;;" in stage and "aarch64) glibc=2.17 ;;" in stage
